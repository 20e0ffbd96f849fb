//! One image: the white cell in the centre (nucleus, cytoplasm, vacuoles),
//! red cells, and background, by stain separation, Otsu thresholds and
//! morphology. Every step is a plain rule a person can check on the image.

use crate::binary::{self, Components, convex_pixels, fill_holes, fill_holes_where, subtract};
use crate::otsu::Otsu;
use crate::stain::Stains;
use crate::watershed;
use image::{GrayImage, RgbImage};
use imageproc::distance_transform::{Norm, euclidean_squared_distance_transform};
use imageproc::morphology::{close, dilate, open};
use leukex_data::{MorphologyClass, MorphologyMask};
use serde::{Deserialize, Serialize};

/// What becomes of white cells other than the one the crop is centred on
/// (usually cells cut by the crop's border). The paper does not say; ALL-IDB2
/// crops are centred on one cell, and that is the cell the class label is
/// about, so by default the others are background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OtherCells {
    /// Labelled background, like the film around them.
    #[default]
    Background,
    /// Segmented like the centred cell (nucleus, cytoplasm, vacuoles).
    Segment,
}

impl OtherCells {
    pub fn name(self) -> &'static str {
        match self {
            OtherCells::Background => "background",
            OtherCells::Segment => "segment",
        }
    }
}

/// Choices of the segmentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentOptions {
    pub other_cells: OtherCells,
}

/// What the segmentation found in one image, and how sure it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImageReport {
    /// The weakest of the separabilities that apply (0..1; 0 when no cell
    /// was found): check the masks with the lowest values first.
    pub confidence: f32,
    /// Otsu separability of the basic stain over the image: white cell
    /// against film and red cells.
    pub cell_separability: f32,
    /// Otsu separability of the density inside the cell: nucleus against
    /// cytoplasm.
    pub nucleus_separability: f32,
    /// Otsu separability of the density outside white cells: red cells
    /// against film (left out of the confidence when red cells cover under
    /// 2 % of the image).
    pub rbc_separability: f32,
    pub cell_found: bool,
    /// The centred cell reaches the border: part of it is missing.
    pub cell_touches_border: bool,
    pub nucleus_px: usize,
    pub cytoplasm_px: usize,
    pub vacuole_px: usize,
    pub rbc_px: usize,
    pub vacuoles: usize,
    /// Red cells after splitting touching ones.
    pub red_cells: usize,
    /// White cells other than the centred one.
    pub other_cells: usize,
}

/// A segmented image.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub mask: MorphologyMask,
    pub report: ImageReport,
}

/// The crop size of ALL-IDB2, at which the sizes below are given; they
/// scale with the image.
const REF_SIZE: f32 = 257.0;
/// Smallest white cell, as a share of the image area (a platelet is ~0.1 %,
/// a small lymphocyte ~5 %).
const MIN_CELL_SHARE: f32 = 0.008;
/// Smallest red-cell fragment kept, as a share of the image area (a whole
/// red cell is ~5 %; smaller pieces are mostly border slivers and debris).
const MIN_RBC_SHARE: f32 = 0.002;
/// Basic stain below this is film or red cell whatever Otsu says: it keeps a
/// crop without any white cell from splitting its noise.
const MIN_BASIC: f32 = 0.08;
/// The white-cell cut as a share of Otsu's threshold of the basic stain.
const CELL_CUT_SHARE: f32 = 0.5;
/// Dense pixels with less than this share of a red cell's eosin ratio are
/// cytoplasm when they touch the centred cell.
const PALE_CYTOPLASM_EOSIN_SHARE: f32 = 0.5;
/// A vacuole is paler than this share of the cytoplasm's median density.
const VACUOLE_PALENESS: f32 = 0.5;
/// ... and somewhere paler than this share of it (a clear centre).
const VACUOLE_CLEARNESS: f32 = 0.25;
/// A hole in the red-cell mask is a pale centre (filled) when its median
/// density lies above this share of the way from the film to the threshold.
const PALLOR_SHARE: f32 = 0.5;
/// Otsu's lower class is bare film only if its mean density is under this
/// share of the upper class's.
const FILM_MEAN_SHARE: f32 = 0.25;
/// A red cell is nearly convex: a watershed region covering less than this
/// share of its convex hull is two cells left joined, and is not filled out
/// to the hull.
const MIN_SOLIDITY: f32 = 0.85;
/// Seeds of the red-cell watershed: pixels deeper in the red-cell mask than
/// this quantile of all its depths (see [`red_cells`]).
const SEED_QUANTILE: f32 = 0.9;

/// The norm that makes imageproc's morphology of radius `k` a digital
/// disc. Up to radius 2 the L1 norm gives the same discs as the L2 norm
/// (imageproc rounds L2 distances up) at a fraction of the cost, which is
/// most of the segmentation's time otherwise.
fn disc(k: u8) -> Norm {
    if k <= 2 { Norm::L1 } else { Norm::L2 }
}

/// The value below which a share `q` of `values` lies (nearest rank).
///
/// # Panics
/// If `values` is empty.
fn quantile(mut values: Vec<f32>, q: f32) -> f32 {
    let at = ((values.len() as f32 * q) as usize).min(values.len() - 1);
    *values.select_nth_unstable_by(at, f32::total_cmp).1
}

/// Segments one RGB smear crop.
pub fn segment(img: &RgbImage, opts: &SegmentOptions) -> Segmentation {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let scale = (w.min(h) as f32 / REF_SIZE).max(0.1);
    let stains = Stains::of(img);
    let mut report = ImageReport::default();

    // White cells: where the basic dye is.
    let cell_otsu = Otsu::of(stains.basic.iter().copied());
    report.cell_separability = cell_otsu.map_or(0.0, |o| o.separability);
    // Half Otsu's cut: with a deep blue cytoplasm (L3) the basic stain has
    // three levels — film, a purple nucleus, a bluer cytoplasm — and Otsu's
    // cut can fall between the last two.
    let cut = cell_otsu.map_or(f32::MAX, |o| (CELL_CUT_SHARE * o.threshold).max(MIN_BASIC));
    let stained = open(
        &binary::from_fn(w, h, |i| stains.basic[i] > cut),
        disc(1),
        1,
    );
    let blobs = Components::of(&stained);
    let min_cell = (MIN_CELL_SHARE * n as f32) as usize;
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let big: Vec<usize> = (0..blobs.len())
        .filter(|&k| blobs.members[k].len() >= min_cell)
        .collect();
    // The centred cell: the big blob nearest the centre, if it comes within
    // a quarter of the crop of it.
    let reach2 = (0.25 * w.min(h) as f32).powi(2);
    let central = big
        .iter()
        .copied()
        .map(|k| (blobs.distance2_to(k, cx, cy), k))
        .filter(|&(d2, _)| d2 <= reach2)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);

    let mut classes = vec![MorphologyClass::Background as u8; n];

    // The centred cell: its basic-stained blob, grown by cytoplasm that is
    // dense but not eosin-coloured (pale cytoplasm takes up little basic dye).
    let stained_filled = fill_holes(&stained);
    let central_cell = central.map(|k| {
        let core = fill_holes(&blobs.select(|j| j == k));
        grow_by_pale_cytoplasm(&core, &stained_filled, &stains)
    });

    // Red cells first: white cells lie on top of them.
    let mut white = stained_filled.clone();
    if let Some(cell) = &central_cell {
        for (p, &q) in white.as_mut().iter_mut().zip(cell.as_raw()) {
            *p |= q;
        }
    }
    let all_stained = dilate(&white, disc(1), 1);
    let outside: Vec<bool> = all_stained.as_raw().iter().map(|&p| p == 0).collect();
    let (rbc, rbc_otsu, red_cells) = red_cells(&stains, &outside, scale);
    report.rbc_separability = rbc_otsu.map_or(0.0, |o| o.separability);
    report.red_cells = red_cells;
    for (c, &p) in classes.iter_mut().zip(rbc.as_raw()) {
        if p != 0 {
            *c = MorphologyClass::Rbc as u8;
        }
    }

    let mut white_cells: Vec<usize> = Vec::new();
    if let Some(k) = central {
        report.cell_found = true;
        report.cell_touches_border = blobs.touches_border(k);
        white_cells.push(k);
    }
    let others: Vec<usize> = big
        .iter()
        .copied()
        .filter(|&k| Some(k) != central)
        .collect();
    report.other_cells = others.len();
    if opts.other_cells == OtherCells::Segment {
        white_cells.extend(&others);
    }
    for (i, &k) in white_cells.iter().enumerate() {
        let cell = match (&central_cell, i) {
            (Some(cell), 0) => cell.clone(),
            _ => fill_holes(&blobs.select(|j| j == k)),
        };
        let parts = label_cell(&cell, &stains, scale, &mut classes);
        if i == 0 && central.is_some() {
            report.nucleus_separability = parts.nucleus_separability;
        }
        report.vacuoles += parts.vacuoles;
    }
    // Platelets and other small basic-stained blobs are background, and no
    // red cell's filled outline may cover them.
    let unlabelled_blobs = blobs.select(|k| !white_cells.contains(&k));
    for (c, &p) in classes.iter_mut().zip(unlabelled_blobs.as_raw()) {
        if p != 0 && *c == MorphologyClass::Rbc as u8 {
            *c = MorphologyClass::Background as u8;
        }
    }

    for &c in &classes {
        match MorphologyClass::from_index(c as usize) {
            Some(MorphologyClass::Nucleus) => report.nucleus_px += 1,
            Some(MorphologyClass::Cytoplasm) => report.cytoplasm_px += 1,
            Some(MorphologyClass::Vacuole) => report.vacuole_px += 1,
            Some(MorphologyClass::Rbc) => report.rbc_px += 1,
            _ => {}
        }
    }
    report.confidence = if report.cell_found {
        let mut c = report.cell_separability.min(report.nucleus_separability);
        if report.rbc_px as f32 >= 0.02 * n as f32 {
            c = c.min(report.rbc_separability);
        }
        c
    } else {
        0.0
    };
    let mask =
        MorphologyMask::from_raw(w, h, classes).expect("the segmentation writes class ids only");
    Segmentation { mask, report }
}

/// Adds to `core` (the centred cell's basic-stained blob) the touching
/// pixels that are dense (Otsu's cut of the density off the basic-stained
/// blobs) but far from eosin's colour: less than half the eosin ratio of the
/// typical dense pixel, which is a red cell's.
fn grow_by_pale_cytoplasm(core: &GrayImage, stained: &GrayImage, stains: &Stains) -> GrayImage {
    let (w, h) = core.dimensions();
    let n = (w * h) as usize;
    let off = |i: usize| stained.as_raw()[i] == 0;
    let Some(dense) = dense_cut((0..n).filter(|&i| off(i)).map(|i| stains.density[i])) else {
        return core.clone();
    };
    let dense_px: Vec<usize> = (0..n)
        .filter(|&i| off(i) && stains.density[i] > dense.threshold)
        .collect();
    if dense_px.is_empty() {
        return core.clone();
    }
    let ratio = |i: usize| stains.eosin[i] / stains.density[i].max(1e-3);
    let typical = quantile(dense_px.iter().map(|&i| ratio(i)).collect(), 0.5);
    if typical <= 0.0 {
        // No eosin-coloured majority to tell cytoplasm from.
        return core.clone();
    }
    let cut = PALE_CYTOPLASM_EOSIN_SHARE * typical;
    let mut pale = GrayImage::new(w, h);
    for &i in &dense_px {
        if ratio(i) < cut {
            pale.as_mut()[i] = binary::ON;
        }
    }
    let mut grown = open(&pale, disc(1), 1);
    for (p, &q) in grown.as_mut().iter_mut().zip(core.as_raw()) {
        *p |= q;
    }
    let pieces = Components::of(&grown);
    let touching = |k: usize| {
        pieces.members[k]
            .iter()
            .any(|&i| core.as_raw()[i as usize] != 0)
    };
    // Granular cytoplasm leaves a ragged edge; a cell's outline is smooth.
    fill_holes(&close(&pieces.select(touching), disc(2), 2))
}

struct CellParts {
    nucleus_separability: f32,
    vacuoles: usize,
}

/// Labels one white cell (a filled outline) as nucleus, cytoplasm and
/// vacuoles in `classes`.
fn label_cell(cell: &GrayImage, stains: &Stains, scale: f32, classes: &mut [u8]) -> CellParts {
    let (w, h) = cell.dimensions();
    let inside = |i: usize| cell.as_raw()[i] != 0;
    let cell_px: Vec<usize> = (0..classes.len()).filter(|&i| inside(i)).collect();

    // Nucleus: the denser part. Chromatin absorbs green far more than the
    // cytoplasm's thin basophilic film.
    let otsu = Otsu::of(cell_px.iter().map(|&i| stains.density[i]));
    let cut = otsu.map_or(f32::MAX, |o| o.threshold);
    let dense = open(
        &binary::from_fn(w, h, |i| inside(i) && stains.density[i] > cut),
        disc(1),
        1,
    );
    let pieces = Components::of(&dense);
    let largest = pieces.members.iter().map(Vec::len).max().unwrap_or(0);
    // Lobes and fragments of one nucleus count; specks of dense cytoplasm
    // do not. Nucleoli are pale holes inside the nucleus: filled.
    let nucleus = fill_holes(&pieces.select(|k| pieces.members[k].len() * 5 >= largest));

    // Vacuoles: nearly clear holes, paler than half the cytoplasm, enclosed
    // by the cell (a pale fringe on the cell's edge is not a vacuole).
    let cyto_total: Vec<f32> = cell_px
        .iter()
        .copied()
        .filter(|&i| nucleus.as_raw()[i] == 0)
        .map(|i| stains.total[i])
        .collect();
    let pale_cut = if cyto_total.is_empty() {
        f32::MIN
    } else {
        VACUOLE_PALENESS * quantile(cyto_total, 0.5)
    };
    let pale = binary::from_fn(w, h, |i| inside(i) && stains.total[i] < pale_cut);
    let holes = Components::of(&pale);
    let cell_area = cell_px.len();
    let min_vacuole = (3.0 * scale * scale).max(2.0) as usize;
    let max_vacuole = cell_area / 20;
    let enclosed = |k: usize| {
        holes.members[k].iter().all(|&i| {
            let (x, y) = (i % w, i / w);
            x > 0
                && y > 0
                && x + 1 < w
                && y + 1 < h
                && [i - 1, i + 1, i - w, i + w]
                    .iter()
                    .all(|&j| inside(j as usize))
        })
    };
    // A clear centre: granular cytoplasm has pale gaps between granules,
    // but only a vacuole is nearly as clear as the film somewhere.
    let clear_cut = VACUOLE_CLEARNESS / VACUOLE_PALENESS * pale_cut;
    let clear = |k: usize| {
        holes.members[k]
            .iter()
            .any(|&i| stains.total[i as usize] < clear_cut)
    };
    let vacuole_ids: Vec<usize> = (0..holes.len())
        .filter(|&k| {
            (min_vacuole..=max_vacuole).contains(&holes.members[k].len()) && enclosed(k) && clear(k)
        })
        .collect();
    // The threshold sits halfway down the blurred edge of a hole a few
    // pixels wide, where the hole's dark rim pulls it inwards: one pixel
    // more is the drawn outline.
    let vacuoles = dilate(&holes.select(|k| vacuole_ids.contains(&k)), disc(1), 1);

    for &i in &cell_px {
        classes[i] = if vacuoles.as_raw()[i] != 0 {
            MorphologyClass::Vacuole
        } else if nucleus.as_raw()[i] != 0 {
            MorphologyClass::Nucleus
        } else {
            MorphologyClass::Cytoplasm
        } as u8;
    }
    CellParts {
        nucleus_separability: otsu.map_or(0.0, |o| o.separability),
        vacuoles: vacuole_ids.len(),
    }
}

/// Otsu's split of densities into bare film and dye. Where red cells crowd
/// and overlap, film is the small class and Otsu splits single red cells
/// from overlaps instead; then the lower class's mean is far from the
/// film's (zero, by the film-relative density) and the lower class is split
/// again.
fn dense_cut(values: impl Iterator<Item = f32> + Clone) -> Option<Otsu> {
    let o = Otsu::of(values.clone())?;
    if o.lower_mean > FILM_MEAN_SHARE * o.upper_mean {
        let lower = Otsu::of(values.filter(move |&v| v <= o.threshold));
        if let Some(lower) = lower.filter(|l| l.lower_mean <= FILM_MEAN_SHARE * l.upper_mean) {
            return Some(lower);
        }
    }
    Some(o)
}

/// Red cells among the `outside` pixels (not basic-stained): dense in
/// green, split where they touch, each filled to its convex outline (the
/// pale centre, and the part cut open by the border or a white cell).
fn red_cells(stains: &Stains, outside: &[bool], scale: f32) -> (GrayImage, Option<Otsu>, usize) {
    let (w, h) = (stains.width, stains.height);
    let n = outside.len();
    let otsu = dense_cut((0..n).filter(|&i| outside[i]).map(|i| stains.density[i]));
    let Some(o) = otsu else {
        return (GrayImage::new(w, h), None, 0);
    };
    // Two cuts: Otsu's gives the outline; a fainter one also takes in the
    // pale centres (which still hold some eosin, unlike the bare film), so
    // that each cell is one solid blob for the distance transform.
    let faint = o.lower_mean + PALLOR_SHARE * (o.threshold - o.lower_mean);
    let radius = (2.0 * scale).round().max(1.0) as u8;
    let solid = fill_holes_where(
        &open(
            &binary::from_fn(w, h, |i| outside[i] && stains.density[i] > faint),
            disc(radius),
            radius,
        ),
        |hole| {
            quantile(
                hole.iter().map(|&i| stains.density[i as usize]).collect(),
                0.5,
            ) > faint
        },
    );
    let blobs = Components::of(&solid);
    let min_rbc = (MIN_RBC_SHARE * n as f32) as usize;
    let kept = blobs.select(|k| blobs.members[k].len() >= min_rbc);
    let kept_blobs = Components::of(&kept);
    if kept_blobs.is_empty() {
        return (kept, otsu, 0);
    }

    // Distance to the nearest non-red pixel or the border: a chain of cells
    // cut by the border must not get one long ridge along it.
    let mut background = GrayImage::from_pixel(w + 2, h + 2, image::Luma([binary::ON]));
    for (i, &p) in kept.as_raw().iter().enumerate() {
        if p != 0 {
            background.put_pixel(i as u32 % w + 1, i as u32 / w + 1, image::Luma([0]));
        }
    }
    let padded = euclidean_squared_distance_transform(&background);
    let dist: Vec<f32> = (0..n)
        .map(|i| (padded.get_pixel(i as u32 % w + 1, i as u32 / w + 1)[0] as f32).sqrt())
        .collect();
    // Seeds: the cores of the cells. In a disc of radius R, a tenth of the
    // pixels lie deeper than 0.68 R, and two cells overlapping by a fifth
    // of their diameters have a neck ~0.6 R wide: the 90th percentile of the
    // depths cuts chains of cells apart at their necks, without knowing R.
    let depths: Vec<f32> = kept_blobs
        .members
        .iter()
        .flatten()
        .map(|&i| dist[i as usize])
        .collect();
    let seed_cut = quantile(depths, SEED_QUANTILE);
    let cores = binary::from_fn(w, h, |i| dist[i] >= seed_cut && kept.as_raw()[i] != 0);
    let core_blobs = Components::of(&cores);
    let mut seeds = vec![0u32; n];
    for (k, px) in core_blobs.members.iter().enumerate() {
        for &i in px {
            seeds[i as usize] = k as u32 + 1;
        }
    }
    // A small red cell (or a sliver at the border) has no core: its deepest
    // pixel seeds it.
    let mut next = core_blobs.len() as u32;
    for px in &kept_blobs.members {
        if px.iter().all(|&i| seeds[i as usize] == 0) {
            let top = px
                .iter()
                .copied()
                .max_by(|&a, &b| dist[a as usize].total_cmp(&dist[b as usize]))
                .expect("components are not empty");
            next += 1;
            seeds[top as usize] = next;
        }
    }
    let inside: Vec<bool> = kept.as_raw().iter().map(|&p| p != 0).collect();
    let labels = watershed::flood(w, &dist, &inside, seeds);
    // Each cell's outline: the convex hull of its pixels above Otsu's cut —
    // unless the hull is far larger than the cell (two cells the watershed
    // left joined): then the cell's own pixels, holes filled.
    let mut members = vec![Vec::new(); next as usize];
    for (i, &l) in labels.iter().enumerate() {
        if l > 0 {
            members[l as usize - 1].push(i as u32);
        }
    }
    let mut out = GrayImage::new(w, h);
    let raw = out.as_mut();
    let mut count = 0;
    for px in members.iter().filter(|m| !m.is_empty()) {
        let outline: Vec<u32> = px
            .iter()
            .copied()
            .filter(|&i| stains.density[i as usize] > o.threshold)
            .collect();
        let hull = convex_pixels(w, &outline);
        let fill = if px.len() as f32 >= MIN_SOLIDITY * hull.len() as f32 {
            &hull
        } else {
            px
        };
        for &i in fill {
            raw[i as usize] = binary::ON;
        }
        count += 1;
    }
    // The convex outline must not reach under white cells.
    let covered = binary::from_fn(w, h, |i| !outside[i]);
    subtract(&mut out, &covered);
    (out, otsu, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// Film with two red-cell discs of radius 25 whose centres are 42 px
    /// apart (they overlap), each with a paler centre.
    fn two_touching_red_cells() -> (RgbImage, usize) {
        let centres = [(60.0f32, 64.0f32), (102.0, 64.0)];
        let mut union = 0;
        let img = RgbImage::from_fn(160, 128, |x, y| {
            let d =
                centres.map(|(cx, cy)| ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt());
            let inside = d.iter().filter(|&&d| d < 25.0).count();
            union += usize::from(inside > 0);
            match (inside, d.iter().any(|&d| d < 9.0)) {
                (0, _) => Rgb([225, 215, 205]),
                (_, true) => Rgb([215, 185, 180]),
                (1, _) => Rgb([205, 150, 150]),
                _ => Rgb([190, 110, 115]),
            }
        });
        (img, union)
    }

    #[test]
    fn touching_red_cells_are_split_and_their_pale_centres_filled() {
        let (img, union) = two_touching_red_cells();
        let seg = segment(&img, &SegmentOptions::default());
        assert_eq!(seg.report.red_cells, 2, "{:?}", seg.report);
        assert!(!seg.report.cell_found);
        // Each cell filled to its convex outline, the gap beside the neck
        // left out: the red area is the union of the discs within a pixel
        // of outline.
        let rbc = seg.report.rbc_px as f32;
        assert!(
            (rbc - union as f32).abs() < 0.03 * union as f32,
            "{rbc} vs {union}"
        );
        assert_eq!(seg.mask.get(60, 64), Some(MorphologyClass::Rbc));
        assert_eq!(seg.mask.get(81, 40), Some(MorphologyClass::Background));
    }
}
