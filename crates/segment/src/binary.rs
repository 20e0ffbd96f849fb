//! Binary-mask operations that `imageproc` lacks or that need a different
//! shape of answer: hole filling, component statistics, convex filling.
//! Masks are `GrayImage`s holding 0 (off) or 255 (on), as imageproc's
//! morphology expects.

use image::GrayImage;
use imageproc::geometry::convex_hull;
use imageproc::point::Point;
use imageproc::region_labelling::Connectivity;

pub const ON: u8 = 255;

/// Offsets of a pixel's 4 and 8 neighbours, in row-major order.
pub const NEIGHBOURS_4: [(i64, i64); 4] = [(0, -1), (-1, 0), (1, 0), (0, 1)];
pub const NEIGHBOURS_8: [(i64, i64); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// A mask of `width`×`height` from a per-pixel predicate on the index.
pub fn from_fn(width: u32, height: u32, mut on: impl FnMut(usize) -> bool) -> GrayImage {
    let mut m = GrayImage::new(width, height);
    for (i, p) in m.as_mut().iter_mut().enumerate() {
        *p = if on(i) { ON } else { 0 };
    }
    m
}

pub fn count(mask: &GrayImage) -> usize {
    mask.as_raw().iter().filter(|&&p| p != 0).count()
}

/// `a AND NOT b`, in place.
pub fn subtract(a: &mut GrayImage, b: &GrayImage) {
    for (p, &q) in a.as_mut().iter_mut().zip(b.as_raw()) {
        if q != 0 {
            *p = 0;
        }
    }
}

/// Connected components of the on-pixels (8-connected), with the pixel
/// indices of each. Component `k` of the answer has label `k + 1` in `labels`.
pub struct Components {
    pub labels: Vec<u32>,
    pub members: Vec<Vec<u32>>,
    width: u32,
    height: u32,
}

impl Components {
    pub fn of(mask: &GrayImage) -> Self {
        Self::with(mask, Connectivity::Eight)
    }

    /// Labels by flood fill straight on the pixel buffer: imageproc's
    /// `connected_components`, generic over image types, took a quarter of
    /// the segmentation's time for the same labels up to numbering.
    pub fn with(mask: &GrayImage, conn: Connectivity) -> Self {
        let (width, height) = mask.dimensions();
        let (w, h) = (width as i64, height as i64);
        let on = mask.as_raw();
        let mut labels = vec![0u32; on.len()];
        let mut members: Vec<Vec<u32>> = Vec::new();
        let mut stack: Vec<u32> = Vec::new();
        let steps: &[(i64, i64)] = match conn {
            Connectivity::Four => &NEIGHBOURS_4,
            Connectivity::Eight => &NEIGHBOURS_8,
        };
        for start in 0..on.len() {
            if on[start] == 0 || labels[start] != 0 {
                continue;
            }
            let label = members.len() as u32 + 1;
            let mut px = Vec::new();
            labels[start] = label;
            stack.push(start as u32);
            while let Some(i) = stack.pop() {
                px.push(i);
                let (x, y) = (i as i64 % w, i as i64 / w);
                for &(dx, dy) in steps {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w || ny >= h {
                        continue;
                    }
                    let j = (ny * w + nx) as usize;
                    if on[j] != 0 && labels[j] == 0 {
                        labels[j] = label;
                        stack.push(j as u32);
                    }
                }
            }
            px.sort_unstable();
            members.push(px);
        }
        Components {
            labels,
            members,
            width,
            height,
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Does component `k` reach the image border?
    pub fn touches_border(&self, k: usize) -> bool {
        let (w, h) = (self.width, self.height);
        self.members[k].iter().any(|&i| {
            let (x, y) = (i % w, i / w);
            x == 0 || y == 0 || x + 1 == w || y + 1 == h
        })
    }

    /// Squared distance from `(cx, cy)` to the nearest pixel of component `k`.
    pub fn distance2_to(&self, k: usize, cx: f32, cy: f32) -> f32 {
        let w = self.width;
        self.members[k]
            .iter()
            .map(|&i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                (x - cx).powi(2) + (y - cy).powi(2)
            })
            .fold(f32::MAX, f32::min)
    }

    /// A mask of the components `keep` says yes to.
    pub fn select(&self, mut keep: impl FnMut(usize) -> bool) -> GrayImage {
        let mut m = GrayImage::new(self.width, self.height);
        let raw = m.as_mut();
        for (k, px) in self.members.iter().enumerate() {
            if keep(k) {
                for &i in px {
                    raw[i as usize] = ON;
                }
            }
        }
        m
    }
}

/// Fills the holes of `mask`: off-regions (4-connected, so a diagonal gap
/// in an 8-connected outline does not leak) that do not reach the border.
pub fn fill_holes(mask: &GrayImage) -> GrayImage {
    fill_holes_where(mask, |_| true)
}

/// Fills the holes of `mask` for which `fill` (given the hole's pixel
/// indices) says yes.
pub fn fill_holes_where(mask: &GrayImage, mut fill: impl FnMut(&[u32]) -> bool) -> GrayImage {
    let inverse = from_fn(mask.width(), mask.height(), |i| mask.as_raw()[i] == 0);
    let holes = Components::with(&inverse, Connectivity::Four);
    let mut out = mask.clone();
    let raw = out.as_mut();
    for k in 0..holes.len() {
        if !holes.touches_border(k) && fill(&holes.members[k]) {
            for &i in &holes.members[k] {
                raw[i as usize] = ON;
            }
        }
    }
    out
}

/// The pixels whose centres lie in the convex hull of `pixels` (indices
/// into a `width`-wide image): a red cell's pale centre and the part of it
/// that an image border or a neighbour's outline cut open.
pub fn convex_pixels(width: u32, pixels: &[u32]) -> Vec<u32> {
    let w = width;
    let points: Vec<Point<i32>> = pixels
        .iter()
        .map(|&i| Point::new((i % w) as i32, (i / w) as i32))
        .collect();
    if points.is_empty() {
        return Vec::new();
    }
    let hull = convex_hull(points);
    let (mut x0, mut y0, mut x1, mut y1) = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
    for p in &hull {
        (x0, y0, x1, y1) = (x0.min(p.x), y0.min(p.y), x1.max(p.x), y1.max(p.y));
    }
    // The hull's orientation, from its signed area; degenerate hulls (a
    // line or a point) keep only their own pixels.
    let n = hull.len();
    let area2: i64 = (0..n)
        .map(|k| {
            let (a, b) = (hull[k], hull[(k + 1) % n]);
            a.x as i64 * b.y as i64 - b.x as i64 * a.y as i64
        })
        .sum();
    if n < 3 || area2 == 0 {
        return pixels.to_vec();
    }
    let sign = area2.signum();
    let mut out = Vec::new();
    for y in y0..=y1 {
        // The row's span inside the hull: each edge bounds x from one side.
        let (mut lo, mut hi) = (x0 as i64, x1 as i64);
        for k in 0..n {
            let (a, b) = (hull[k], hull[(k + 1) % n]);
            // Inside: sign * ((b.x-a.x)(y-a.y) - (b.y-a.y)(x-a.x)) >= 0,
            // i.e. c + slope * x >= 0; integers, so the bounds are exact.
            let c =
                sign * ((b.x - a.x) as i64 * (y - a.y) as i64 + (b.y - a.y) as i64 * a.x as i64);
            let slope = -sign * (b.y - a.y) as i64;
            if slope > 0 {
                lo = lo.max(-c.div_euclid(slope));
            } else if slope < 0 {
                hi = hi.min(c.div_euclid(-slope));
            } else if c < 0 {
                lo = i64::MAX;
            }
        }
        for x in lo..=hi {
            out.push(y as u32 * w + x as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> GrayImage {
        let (w, h) = (rows[0].len() as u32, rows.len() as u32);
        from_fn(w, h, |i| {
            rows[i / w as usize].as_bytes()[i % w as usize] == b'#'
        })
    }

    fn show(m: &GrayImage) -> Vec<String> {
        m.as_raw()
            .chunks(m.width() as usize)
            .map(|r| r.iter().map(|&p| if p != 0 { '#' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn components_equal_imageproc_up_to_numbering() {
        use image::Luma;
        use imageproc::region_labelling::connected_components;
        use std::collections::HashMap;
        // A speckled mask from a fixed linear congruential sequence.
        let mut state = 12345u32;
        let m = from_fn(61, 47, |_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 30 == 0
        });
        for conn in [Connectivity::Four, Connectivity::Eight] {
            let ours = Components::with(&m, conn);
            let theirs = connected_components(&m, conn, Luma([0u8])).into_raw();
            let mut map: HashMap<u32, u32> = HashMap::new();
            for (&a, &b) in ours.labels.iter().zip(&theirs) {
                assert_eq!(a == 0, b == 0);
                assert_eq!(*map.entry(a).or_insert(b), b, "{conn:?}");
            }
            let distinct: std::collections::HashSet<u32> = map.values().copied().collect();
            assert_eq!(
                distinct.len(),
                map.len(),
                "{conn:?}: two of ours are one of theirs"
            );
            assert!(ours.len() > 3);
        }
    }

    #[test]
    fn holes_are_filled_but_bays_open_to_the_border_are_not() {
        let m = mask(&["#####.", "#..#..", "#####.", "#.#...", "#.#..."]);
        assert_eq!(
            show(&fill_holes(&m)),
            ["#####.", "####..", "#####.", "#.#...", "#.#..."]
        );
    }

    #[test]
    fn convex_fill_closes_a_ring_cut_by_the_border() {
        // A "C" open to the left border: its hull covers the gap.
        let m = mask(&["#####", "#....", "#....", "#....", "#####"]);
        let comps = Components::of(&m);
        assert_eq!(comps.len(), 1);
        assert_eq!(convex_pixels(5, &comps.members[0]).len(), 25);
        // A single row stays a row.
        let line = mask(&[".....", ".###.", "....."]);
        let px = Components::of(&line).members[0].clone();
        assert_eq!(convex_pixels(5, &px), px);
    }
}
