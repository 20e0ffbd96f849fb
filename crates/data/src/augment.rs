//! Augmentation by rotation and reflection (paper §3.3).
//!
//! Each class is brought to N images: first the 8 lossless dihedral
//! transforms of every source image (identity first), then rotations by
//! arbitrary angles with an optional reflection. The morphology mask of an
//! image always receives the identical geometric transform: nearest
//! neighbour for the mask, bilinear for the image, both with the same
//! sampling positions and the same reflect padding.
//!
//! # Geometry
//!
//! Pixel `(x, y)` is column `x` (to the right) and row `y` (downwards), as
//! an image is displayed. Rotations are **counter-clockwise as displayed**
//! (as `numpy.rot90`, `torch.rot90` over (H, W), PIL's `Image.rotate` and
//! torchvision's `rotate` with a positive angle). [`Dihedral::FlipH`] mirrors
//! left and right (`x → W−1−x`). `FlipHRotK` means: first `FlipH`, then
//! `RotK`; [`Transform::Rotate`] with `flip` likewise reflects first, then
//! rotates. For a `W×H` source:
//!
//! | transform        | source `(x, y)` lands at | output size |
//! |------------------|--------------------------|-------------|
//! | `Identity`       | `(x, y)`                 | `W×H`       |
//! | `Rot90`          | `(y, W−1−x)`             | `H×W`       |
//! | `Rot180`         | `(W−1−x, H−1−y)`         | `W×H`       |
//! | `Rot270`         | `(H−1−y, x)`             | `H×W`       |
//! | `FlipH`          | `(W−1−x, y)`             | `W×H`       |
//! | `FlipHRot90`     | `(y, x)` (transpose)     | `H×W`       |
//! | `FlipHRot180`    | `(x, H−1−y)` (vertical flip) | `W×H`   |
//! | `FlipHRot270`    | `(H−1−y, W−1−x)`         | `H×W`       |
//!
//! [`Transform::Rotate`] turns about the image centre `((W−1)/2, (H−1)/2)`
//! in pixel-index coordinates, so a quarter turn of a square image maps
//! pixel centres onto pixel centres and equals [`Dihedral::Rot90`]. The
//! output keeps the input size. Positions outside the source are filled by
//! half-sample symmetric reflection about the image border (`… b a | a b …`,
//! scipy's `reflect`, torch `grid_sample(padding_mode="reflection",
//! align_corners=False)`), so no artificial black corners appear.
//!
//! # Determinism
//!
//! [`plan`] uses ChaCha8 streams and integer sampling only, so the same
//! sources and seed give the same plan everywhere. Arbitrary angles are
//! rounded to 0.01°. [`apply_image`] for arbitrary angles uses `f64`
//! sine and cosine of the platform's maths library; a last-bit difference
//! there could in rare cases move a pixel's rounding by one grey level.

use crate::morphology::MorphologyMask;
use crate::split::{below, shuffle};
use image::{Rgb, RgbImage};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The 8 lossless symmetries of the square; see the module docs for the
/// exact geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dihedral {
    Identity,
    /// A quarter turn counter-clockwise as displayed.
    Rot90,
    Rot180,
    /// A quarter turn clockwise as displayed.
    Rot270,
    /// Left–right mirror.
    #[serde(rename = "fliph")]
    FlipH,
    /// `FlipH`, then `Rot90`: the transpose.
    #[serde(rename = "fliph_rot90")]
    FlipHRot90,
    /// `FlipH`, then `Rot180`: the top–bottom mirror.
    #[serde(rename = "fliph_rot180")]
    FlipHRot180,
    /// `FlipH`, then `Rot270`: the anti-transpose.
    #[serde(rename = "fliph_rot270")]
    FlipHRot270,
}

impl Dihedral {
    /// All 8, in the order [`plan`] uses them (identity first).
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Identity,
        Dihedral::Rot90,
        Dihedral::Rot180,
        Dihedral::Rot270,
        Dihedral::FlipH,
        Dihedral::FlipHRot90,
        Dihedral::FlipHRot180,
        Dihedral::FlipHRot270,
    ];

    /// Counter-clockwise quarter turns after the optional flip.
    pub fn parts(self) -> (bool, u8) {
        let i = self as u8;
        (i >= 4, i % 4)
    }

    pub fn from_parts(flip: bool, quarter_turns: u8) -> Dihedral {
        Dihedral::ALL[usize::from(flip) * 4 + usize::from(quarter_turns % 4)]
    }

    /// The transform that undoes this one.
    pub fn inverse(self) -> Dihedral {
        match self.parts() {
            (false, k) => Dihedral::from_parts(false, (4 - k) % 4),
            // Reflections are their own inverses.
            (true, _) => self,
        }
    }

    /// `self` followed by `then`.
    pub fn then(self, then: Dihedral) -> Dihedral {
        let (f1, k1) = self.parts();
        let (f2, k2) = then.parts();
        // R^k2 F^f2 R^k1 F^f1 with F R = R^-1 F.
        let k = if f2 { (4 + k2 - k1) % 4 } else { (k1 + k2) % 4 };
        Dihedral::from_parts(f1 ^ f2, k)
    }

    /// The short tag used in augmented file names.
    pub fn tag(self) -> &'static str {
        match self {
            Dihedral::Identity => "id",
            Dihedral::Rot90 => "rot90",
            Dihedral::Rot180 => "rot180",
            Dihedral::Rot270 => "rot270",
            Dihedral::FlipH => "fliph",
            Dihedral::FlipHRot90 => "fliph_rot90",
            Dihedral::FlipHRot180 => "fliph_rot180",
            Dihedral::FlipHRot270 => "fliph_rot270",
        }
    }

    /// Output size `(width, height)` for a `w×h` source.
    pub fn output_dims(self, w: u32, h: u32) -> (u32, u32) {
        if self.parts().1 % 2 == 1 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Where source pixel `(x, y)` of a `w×h` image lands.
    pub fn map_pixel(self, x: u32, y: u32, w: u32, h: u32) -> (u32, u32) {
        let (flip, k) = self.parts();
        let (mut x, mut y, mut w, mut h) = (x, y, w, h);
        if flip {
            x = w - 1 - x;
        }
        for _ in 0..k {
            // One counter-clockwise quarter turn.
            (x, y) = (y, w - 1 - x);
            (w, h) = (h, w);
        }
        (x, y)
    }
}

impl fmt::Display for Dihedral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// A geometric transform applied identically to an image and its mask.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Exact: pixels are only moved.
    Dihedral(Dihedral),
    /// Counter-clockwise (as displayed) rotation by `degrees` about the
    /// centre, after a left–right mirror when `flip`; output keeps the size.
    Rotate { degrees: f32, flip: bool },
}

impl Transform {
    /// Output size `(width, height)` for a `w×h` source.
    pub fn output_dims(&self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Transform::Dihedral(d) => d.output_dims(w, h),
            Transform::Rotate { .. } => (w, h),
        }
    }

    /// Where the source point `(x, y)` (pixel-index coordinates) of a `w×h`
    /// image lands, before any reflect padding.
    pub fn map_point(&self, x: f64, y: f64, w: u32, h: u32) -> (f64, f64) {
        match *self {
            Transform::Dihedral(d) => {
                let (flip, k) = d.parts();
                let x = if flip { f64::from(w) - 1.0 - x } else { x };
                // Exact quarter turns; the sizes swap with each.
                let (mut x, mut y, mut w, mut h) = (x, y, f64::from(w), f64::from(h));
                for _ in 0..k {
                    (x, y) = (y, w - 1.0 - x);
                    (w, h) = (h, w);
                }
                (x, y)
            }
            Transform::Rotate { degrees, flip } => {
                let x = if flip { f64::from(w) - 1.0 - x } else { x };
                let (cx, cy) = centre(w, h);
                let (s, c) = f64::from(degrees).to_radians().sin_cos();
                let (dx, dy) = (x - cx, y - cy);
                (cx + dx * c + dy * s, cy - dx * s + dy * c)
            }
        }
    }

    /// The short tag used in augmented file names.
    pub fn tag(&self) -> String {
        match *self {
            Transform::Dihedral(d) => d.tag().to_string(),
            Transform::Rotate { degrees, flip } => {
                format!("{}rot{degrees:.2}", if flip { "fliph_" } else { "" })
            }
        }
    }
}

fn centre(w: u32, h: u32) -> (f64, f64) {
    ((f64::from(w) - 1.0) / 2.0, (f64::from(h) - 1.0) / 2.0)
}

/// One augmented image to write: which source, which transform, its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentItem {
    /// Stem of the source image.
    pub source: String,
    pub label: usize,
    pub transform: Transform,
    /// Unique file stem, e.g. `Im001_1__rot90` or `Im001_1__a0_fliph_rot123.45`.
    pub name: String,
}

/// Smallest distance (degrees) of an arbitrary angle from a multiple of 90°.
pub const MIN_ANGLE_FROM_QUARTER: f64 = 1.0;

/// First ChaCha8 stream of [`plan`] (plus the class index): apart from the
/// streams of [`crate::split`], so a split and a plan with the same seed do
/// not share random numbers.
const AUGMENT_STREAM: u64 = 1 << 48;

/// Plans `n_per_class` images for every class that has sources.
///
/// Per class (classes in ascending label order): the sources are put in a
/// seeded order; then the 8 dihedral transforms round-robin — the identity
/// of every source, then `Rot90` of every source, and so on — truncated
/// when the class needs fewer than `8 × sources` images. The rest are
/// arbitrary rotations, again round-robin over the sources, with an angle
/// uniform over `[90k + 1°, 90k + 89°]` (k uniform in 0..4; angles closer
/// than [`MIN_ANGLE_FROM_QUARTER`] to a quarter turn would repeat a dihedral
/// copy), rounded to 0.01°, and a reflection with probability ½.
/// If `n_per_class` is smaller than the number of sources, only the first
/// `n_per_class` sources of the seeded order are used.
///
/// Deterministic: the same sources (in any order) and seed give the same
/// plan. Each class has its own ChaCha8 stream.
pub fn plan(sources: &[(String, usize)], n_per_class: usize, seed: u64) -> Vec<AugmentItem> {
    let Some(max_label) = sources.iter().map(|s| s.1).max() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for label in 0..=max_label {
        let mut stems: Vec<&str> = sources
            .iter()
            .filter(|s| s.1 == label)
            .map(|s| s.0.as_str())
            .collect();
        if stems.is_empty() {
            continue;
        }
        stems.sort_unstable();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(AUGMENT_STREAM + label as u64);
        shuffle(&mut stems, &mut rng);
        let mut count = 0;
        'dihedral: for d in Dihedral::ALL {
            for &stem in &stems {
                if count == n_per_class {
                    break 'dihedral;
                }
                out.push(AugmentItem {
                    source: stem.to_string(),
                    label,
                    transform: Transform::Dihedral(d),
                    name: format!("{stem}__{}", d.tag()),
                });
                count += 1;
            }
        }
        let mut extra = 0;
        while count < n_per_class {
            let stem = stems[extra % stems.len()];
            let round = extra / stems.len();
            let quarter = below(&mut rng, 4) as f64;
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let span = 90.0 - 2.0 * MIN_ANGLE_FROM_QUARTER;
            let deg = 90.0 * quarter + MIN_ANGLE_FROM_QUARTER + span * u;
            let degrees = ((deg * 100.0).round() / 100.0) as f32;
            let flip = below(&mut rng, 2) == 1;
            let transform = Transform::Rotate { degrees, flip };
            out.push(AugmentItem {
                source: stem.to_string(),
                label,
                transform,
                name: format!("{stem}__a{round}_{}", transform.tag()),
            });
            extra += 1;
            count += 1;
        }
    }
    out
}

/// For each output pixel, where to sample the source: exact for dihedral
/// transforms, continuous (pixel-index coordinates) for rotations.
enum Sampling {
    Exact(Dihedral),
    Continuous { flip: bool, cos: f64, sin: f64 },
}

impl Sampling {
    fn of(t: &Transform) -> Sampling {
        match *t {
            Transform::Dihedral(d) => Sampling::Exact(d),
            Transform::Rotate { degrees, flip } => {
                let (sin, cos) = f64::from(degrees).to_radians().sin_cos();
                Sampling::Continuous { flip, cos, sin }
            }
        }
    }
}

/// The source position (continuous, unreflected) seen by output pixel
/// `(xo, yo)` of a rotation of a `w×h` image.
fn source_point(xo: u32, yo: u32, w: u32, h: u32, flip: bool, cos: f64, sin: f64) -> (f64, f64) {
    let (cx, cy) = centre(w, h);
    let (dx, dy) = (f64::from(xo) - cx, f64::from(yo) - cy);
    // Inverse of the forward rotation in `Transform::map_point`.
    let x = cx + dx * cos - dy * sin;
    let y = cy + dx * sin + dy * cos;
    let x = if flip { f64::from(w) - 1.0 - x } else { x };
    (x, y)
}

/// Half-sample symmetric reflection of a continuous coordinate into
/// `[0, n−1]` (borders at −0.5 and n−0.5).
fn reflect(u: f64, n: u32) -> f64 {
    let n = f64::from(n);
    let period = 2.0 * n;
    let mut v = (u + 0.5).rem_euclid(period);
    if v >= n {
        v = period - v;
    }
    (v - 0.5).clamp(0.0, n - 1.0)
}

/// Moves pixels of a `w×h` row-major buffer with `channels` bytes each.
fn dihedral_bytes(src: &[u8], w: u32, h: u32, channels: usize, d: Dihedral) -> (u32, u32, Vec<u8>) {
    let (ow, oh) = d.output_dims(w, h);
    let mut out = vec![0u8; src.len()];
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = d.map_pixel(x, y, w, h);
            let s = (y as usize * w as usize + x as usize) * channels;
            let o = (yo as usize * ow as usize + xo as usize) * channels;
            out[o..o + channels].copy_from_slice(&src[s..s + channels]);
        }
    }
    (ow, oh, out)
}

/// Applies `t` to an RGB image: exact for dihedral transforms; bilinear
/// with reflect padding for rotations, rounded to the nearest grey level.
pub fn apply_image(img: &RgbImage, t: &Transform) -> RgbImage {
    let (w, h) = img.dimensions();
    match Sampling::of(t) {
        Sampling::Exact(d) => {
            let (ow, oh, out) = dihedral_bytes(img.as_raw(), w, h, 3, d);
            RgbImage::from_raw(ow, oh, out).expect("size kept")
        }
        Sampling::Continuous { flip, cos, sin } => {
            let src = img.as_raw();
            let px = |x: usize, y: usize, c: usize| f64::from(src[(y * w as usize + x) * 3 + c]);
            RgbImage::from_fn(w, h, |xo, yo| {
                let (x, y) = source_point(xo, yo, w, h, flip, cos, sin);
                let (x, y) = (reflect(x, w), reflect(y, h));
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let (x0, y0) = (x0 as usize, y0 as usize);
                let x1 = (x0 + 1).min(w as usize - 1);
                let y1 = (y0 + 1).min(h as usize - 1);
                let mut rgb = [0u8; 3];
                for (c, v) in rgb.iter_mut().enumerate() {
                    let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                    let bottom = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                    let value = top * (1.0 - fy) + bottom * fy;
                    *v = (value + 0.5).floor().clamp(0.0, 255.0) as u8;
                }
                Rgb(rgb)
            })
        }
    }
}

/// Applies `t` to a mask with the same geometry as [`apply_image`]: exact
/// for dihedral transforms; nearest neighbour with the same reflect padding
/// for rotations, so every value comes from the source mask.
pub fn apply_mask(mask: &MorphologyMask, t: &Transform) -> MorphologyMask {
    let (w, h) = mask.dimensions();
    match Sampling::of(t) {
        Sampling::Exact(d) => {
            let (ow, oh, out) = dihedral_bytes(mask.raw(), w, h, 1, d);
            MorphologyMask::from_raw(ow, oh, out).expect("values kept")
        }
        Sampling::Continuous { flip, cos, sin } => {
            let src = mask.raw();
            let mut out = Vec::with_capacity(src.len());
            for yo in 0..h {
                for xo in 0..w {
                    let (x, y) = source_point(xo, yo, w, h, flip, cos, sin);
                    let x = (reflect(x, w) + 0.5).floor().min(f64::from(w - 1)) as usize;
                    let y = (reflect(y, h) + 0.5).floor().min(f64::from(h - 1)) as usize;
                    out.push(src[y * w as usize + x]);
                }
            }
            MorphologyMask::from_raw(w, h, out).expect("values kept")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::MorphologyClass;

    fn noise_image(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        RgbImage::from_fn(w, h, |_, _| {
            let v = rng.next_u32().to_le_bytes();
            Rgb([v[0], v[1], v[2]])
        })
    }

    fn noise_mask(w: u32, h: u32, seed: u64) -> MorphologyMask {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let raw = (0..w * h)
            .map(|_| match below(&mut rng, 6) {
                5 => MorphologyMask::UNLABELLED,
                c => c as u8,
            })
            .collect();
        MorphologyMask::from_raw(w, h, raw).unwrap()
    }

    fn d(t: Dihedral) -> Transform {
        Transform::Dihedral(t)
    }

    #[test]
    fn four_quarter_turns_and_two_flips_are_identity() {
        for (w, h) in [(9, 9), (7, 4)] {
            let img = noise_image(w, h, 1);
            let mask = noise_mask(w, h, 2);
            let (mut i, mut m) = (img.clone(), mask.clone());
            for k in 0..4 {
                if k > 0 {
                    assert_ne!(i, img);
                }
                i = apply_image(&i, &d(Dihedral::Rot90));
                m = apply_mask(&m, &d(Dihedral::Rot90));
            }
            assert_eq!((&i, &m), (&img, &mask));
            let flip = d(Dihedral::FlipH);
            let once = apply_image(&img, &flip);
            assert_ne!(once, img);
            assert_eq!(apply_image(&once, &flip), img);
            assert_eq!(apply_mask(&apply_mask(&mask, &flip), &flip), mask);
        }
    }

    #[test]
    fn class_counts_are_invariant_under_dihedral_transforms() {
        let mask = noise_mask(13, 8, 3);
        let counts = mask.counts();
        for t in Dihedral::ALL {
            let m = apply_mask(&mask, &d(t));
            assert_eq!(m.counts(), counts, "{t}");
            assert_eq!(m.dimensions(), t.output_dims(13, 8));
        }
    }

    #[test]
    fn marked_pixel_lands_where_the_table_says() {
        let (w, h) = (7u32, 5u32);
        let (x, y) = (1u32, 3u32);
        let expected = |t: Dihedral| -> (u32, u32) {
            match t {
                Dihedral::Identity => (x, y),
                Dihedral::Rot90 => (y, w - 1 - x),
                Dihedral::Rot180 => (w - 1 - x, h - 1 - y),
                Dihedral::Rot270 => (h - 1 - y, x),
                Dihedral::FlipH => (w - 1 - x, y),
                Dihedral::FlipHRot90 => (y, x),
                Dihedral::FlipHRot180 => (x, h - 1 - y),
                Dihedral::FlipHRot270 => (h - 1 - y, w - 1 - x),
            }
        };
        let mut mask = MorphologyMask::filled(w, h, 0);
        mask.set(x, y, Some(MorphologyClass::Vacuole));
        let mut img = RgbImage::new(w, h);
        img.put_pixel(x, y, Rgb([255, 10, 20]));
        for t in Dihedral::ALL {
            let (ex, ey) = expected(t);
            assert_eq!(t.map_pixel(x, y, w, h), (ex, ey), "{t}");
            let m = apply_mask(&mask, &d(t));
            let i = apply_image(&img, &d(t));
            for (px, py, _) in i.enumerate_pixels() {
                let hit = (px, py) == (ex, ey);
                assert_eq!(m.get(px, py) == Some(MorphologyClass::Vacuole), hit, "{t}");
                assert_eq!(i.get_pixel(px, py)[0] == 255, hit, "{t}");
            }
            let (fx, fy) = d(t).map_point(f64::from(x), f64::from(y), w, h);
            assert_eq!((fx, fy), (f64::from(ex), f64::from(ey)));
        }
        // Counter-clockwise as displayed: the top-right corner goes top-left.
        assert_eq!(Dihedral::Rot90.map_pixel(w - 1, 0, w, h), (0, 0));
    }

    #[test]
    fn inverse_and_composition_agree_with_pixels() {
        let img = noise_image(6, 4, 9);
        for a in Dihedral::ALL {
            let ia = apply_image(&img, &d(a));
            assert_eq!(apply_image(&ia, &d(a.inverse())), img, "{a}");
            for b in Dihedral::ALL {
                assert_eq!(
                    apply_image(&ia, &d(b)),
                    apply_image(&img, &d(a.then(b))),
                    "{a} then {b}"
                );
            }
        }
    }

    #[test]
    fn quarter_rotate_equals_rot90() {
        for n in [9u32, 10] {
            let img = noise_image(n, n, 4);
            let mask = noise_mask(n, n, 5);
            for (deg, flip, dih) in [
                (90.0, false, Dihedral::Rot90),
                (180.0, false, Dihedral::Rot180),
                (-90.0, false, Dihedral::Rot270),
                (90.0, true, Dihedral::FlipHRot90),
            ] {
                let r = Transform::Rotate { degrees: deg, flip };
                assert_eq!(
                    apply_image(&img, &r),
                    apply_image(&img, &d(dih)),
                    "{deg} {flip}"
                );
                assert_eq!(
                    apply_mask(&mask, &r),
                    apply_mask(&mask, &d(dih)),
                    "{deg} {flip}"
                );
            }
            // A marked pixel under Rotate{90} lands where Rot90 puts it.
            let mut m = MorphologyMask::filled(n, n, 0);
            m.set(2, 7, Some(MorphologyClass::Nucleus));
            let r = apply_mask(
                &m,
                &Transform::Rotate {
                    degrees: 90.0,
                    flip: false,
                },
            );
            let (ex, ey) = Dihedral::Rot90.map_pixel(2, 7, n, n);
            assert_eq!(r.get(ex, ey), Some(MorphologyClass::Nucleus));
            assert_eq!(r.counts(), m.counts());
            let (fx, fy) = Transform::Rotate {
                degrees: 90.0,
                flip: false,
            }
            .map_point(2.0, 7.0, n, n);
            assert!((fx - f64::from(ex)).abs() < 1e-9 && (fy - f64::from(ey)).abs() < 1e-9);
        }
    }

    #[test]
    fn marked_block_follows_map_point_under_arbitrary_rotation() {
        let (w, h) = (41u32, 33u32);
        for (deg, flip) in [(37.0f32, false), (200.5, true)] {
            let t = Transform::Rotate { degrees: deg, flip };
            for (x, y) in [(8u32, 10u32), (30, 20)] {
                let mut m = MorphologyMask::filled(w, h, 0);
                for yy in y - 1..=y + 1 {
                    for xx in x - 1..=x + 1 {
                        m.set(xx, yy, Some(MorphologyClass::Rbc));
                    }
                }
                let (fx, fy) = t.map_point(f64::from(x), f64::from(y), w, h);
                let r = apply_mask(&m, &t);
                let (rx, ry) = (fx.round() as u32, fy.round() as u32);
                assert_eq!(
                    r.get(rx, ry),
                    Some(MorphologyClass::Rbc),
                    "{deg} {flip} ({x},{y})"
                );
                let mut img = RgbImage::new(w, h);
                for yy in y - 1..=y + 1 {
                    for xx in x - 1..=x + 1 {
                        img.put_pixel(xx, yy, Rgb([250, 250, 250]));
                    }
                }
                assert!(apply_image(&img, &t).get_pixel(rx, ry)[0] > 120);
            }
        }
    }

    #[test]
    fn arbitrary_rotation_keeps_size_values_and_alignment() {
        // Blobs of classes on a 120×90 mask; the image's colour encodes the class.
        let (w, h) = (120u32, 90u32);
        let palette = [
            [20u8, 20, 20],
            [200, 30, 30],
            [30, 200, 30],
            [30, 30, 200],
            [220, 220, 40],
        ];
        let class_at = |x: u32, y: u32| -> u8 {
            let (fx, fy) = (f64::from(x), f64::from(y));
            if (fx - 40.0).powi(2) + (fy - 40.0).powi(2) < 18.0f64.powi(2) {
                1
            } else if (fx - 40.0).powi(2) + (fy - 40.0).powi(2) < 28.0f64.powi(2) {
                2
            } else if (fx - 90.0).abs() < 15.0 && (fy - 60.0).abs() < 20.0 {
                4
            } else if (x / 10 + y / 10) % 7 == 3 {
                3
            } else {
                0
            }
        };
        let raw: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| class_at(x, y))
            .collect();
        let mask = MorphologyMask::from_raw(w, h, raw).unwrap();
        let img = RgbImage::from_fn(w, h, |x, y| Rgb(palette[class_at(x, y) as usize]));
        for (deg, flip) in [
            (37.25f32, false),
            (123.4, true),
            (-13.0, false),
            (271.5, true),
        ] {
            let t = Transform::Rotate { degrees: deg, flip };
            let ri = apply_image(&img, &t);
            let rm = apply_mask(&mask, &t);
            assert_eq!(ri.dimensions(), (w, h));
            assert_eq!(rm.dimensions(), (w, h));
            assert!(
                rm.raw().iter().all(|v| v <= &4),
                "values only from the source set"
            );
            assert_ne!(rm, mask);
            let (mut agree, mut total) = (0usize, 0usize);
            for y in 1..h - 1 {
                for x in 1..w - 1 {
                    let c = rm.raw()[(y * w + x) as usize];
                    // Away from class boundaries: the 3×3 neighbourhood is one class.
                    let interior = (y - 1..=y + 1)
                        .all(|yy| (x - 1..=x + 1).all(|xx| rm.raw()[(yy * w + xx) as usize] == c));
                    if !interior {
                        continue;
                    }
                    total += 1;
                    if ri.get_pixel(x, y).0 == palette[c as usize] {
                        agree += 1;
                    }
                }
            }
            let share = agree as f64 / total as f64;
            assert!(
                total > 5000 && share >= 0.99,
                "{deg} {flip}: {agree}/{total}"
            );
            // Control: a mask turned 6° further disagrees with the image.
            let off = apply_mask(
                &mask,
                &Transform::Rotate {
                    degrees: deg + 6.0,
                    flip,
                },
            );
            let wrong = (0..w * h)
                .filter(|&i| {
                    ri.get_pixel(i % w, i / w).0 != palette[off.raw()[i as usize] as usize]
                })
                .count();
            assert!(
                wrong as f64 > 0.05 * f64::from(w * h),
                "{deg} {flip}: control {wrong}"
            );
        }
    }

    #[test]
    fn same_plan_same_bytes() {
        let img = noise_image(31, 31, 11);
        let mask = noise_mask(31, 31, 12);
        let sources = [("a".to_string(), 0usize)];
        let p1 = plan(&sources, 12, 5);
        let p2 = plan(&sources, 12, 5);
        assert_eq!(p1, p2);
        for (a, b) in p1.iter().zip(&p2) {
            assert_eq!(
                apply_image(&img, &a.transform),
                apply_image(&img, &b.transform)
            );
            assert_eq!(
                apply_mask(&mask, &a.transform),
                apply_mask(&mask, &b.transform)
            );
        }
    }

    #[test]
    fn reflect_padding_is_half_sample_symmetric() {
        assert_eq!(reflect(-1.0, 5), 0.0);
        assert_eq!(reflect(-2.0, 5), 1.0);
        assert_eq!(reflect(5.0, 5), 4.0);
        assert_eq!(reflect(6.0, 5), 3.0);
        assert_eq!(reflect(2.25, 5), 2.25);
        assert_eq!(reflect(-0.25, 5), 0.0);
        assert_eq!(reflect(13.0, 5), 3.0);
        assert_eq!(reflect(-7.0, 5), 3.0);
    }

    #[test]
    fn plan_100_sources_to_1000() {
        let sources: Vec<(String, usize)> = (0..200)
            .map(|i| (format!("Im{i:03}_{}", i % 2), i % 2))
            .collect();
        let p = plan(&sources, 1000, 42);
        assert_eq!(p.len(), 2000);
        for label in 0..2 {
            let items: Vec<&AugmentItem> = p.iter().filter(|a| a.label == label).collect();
            assert_eq!(items.len(), 1000);
            let dihedral = items
                .iter()
                .filter(|a| matches!(a.transform, Transform::Dihedral(_)))
                .count();
            assert_eq!(dihedral, 800);
            // Identity first for every source, in one block.
            assert!(
                items[..100]
                    .iter()
                    .all(|a| a.transform == d(Dihedral::Identity))
            );
            for (k, t) in Dihedral::ALL.iter().enumerate() {
                let block = &items[k * 100..(k + 1) * 100];
                assert!(block.iter().all(|a| a.transform == d(*t)));
                let mut s: Vec<&str> = block.iter().map(|a| a.source.as_str()).collect();
                s.sort();
                s.dedup();
                assert_eq!(s.len(), 100, "every source once per dihedral transform");
            }
            // 200 arbitrary: every source twice, angles away from quarter turns.
            let mut per_source = std::collections::BTreeMap::new();
            let mut flips = 0;
            for a in &items[800..] {
                *per_source.entry(a.source.as_str()).or_insert(0) += 1;
                let Transform::Rotate { degrees, flip } = a.transform else {
                    panic!("{a:?}")
                };
                flips += usize::from(flip);
                let r = f64::from(degrees).rem_euclid(90.0);
                assert!((0.99..=89.01).contains(&r), "{degrees}");
                assert!((0.0..360.0).contains(&degrees));
            }
            assert_eq!(per_source.len(), 100);
            assert!(per_source.values().all(|&n| n == 2));
            assert!((60..140).contains(&flips), "{flips}");
            assert!(
                items
                    .iter()
                    .all(|a| a.source.ends_with(&format!("_{label}")))
            );
        }
        let mut names: Vec<&str> = p.iter().map(|a| a.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 2000, "names are unique");
        // Deterministic, independent of input order; another seed differs.
        let mut rev = sources.clone();
        rev.reverse();
        assert_eq!(plan(&rev, 1000, 42), p);
        assert_ne!(plan(&sources, 1000, 43), p);
        assert_eq!(
            serde_json::to_string(&p[0].transform).unwrap(),
            "{\"dihedral\":\"identity\"}"
        );
        for t in Dihedral::ALL.into_iter().skip(4) {
            let j = serde_json::to_string(&t).unwrap();
            assert_eq!(j, format!("\"{}\"", t.tag()));
            assert_eq!(serde_json::from_str::<Dihedral>(&j).unwrap(), t);
        }
    }

    #[test]
    fn plan_truncates_in_round_robin_order() {
        let sources: Vec<(String, usize)> = (0..130).map(|i| (format!("s{i}"), 0)).collect();
        let p = plan(&sources, 1000, 0);
        assert_eq!(p.len(), 1000);
        assert!(
            p.iter()
                .all(|a| matches!(a.transform, Transform::Dihedral(_)))
        );
        let last = p
            .iter()
            .filter(|a| a.transform == d(Dihedral::FlipHRot270))
            .count();
        assert_eq!(last, 1000 - 7 * 130);
        let few = plan(&sources, 50, 0);
        assert_eq!(few.len(), 50);
        assert!(few.iter().all(|a| a.transform == d(Dihedral::Identity)));
        assert!(plan(&[], 10, 0).is_empty());
    }
}
