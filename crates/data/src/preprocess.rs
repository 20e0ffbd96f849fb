//! Preprocessing for the CNNs: a plain resize to the network's input size
//! with one named filter, then the model's normalisation. A [`Preprocessing`]
//! is recorded with every trained model, so explanation feeds the network
//! exactly what training fed it.
//!
//! # The resize
//!
//! [`ResizeFilter::BilinearAntialias`] is torch's
//! `interpolate(mode="bilinear", align_corners=False, antialias=True)` on a
//! *float* tensor, which is what torchvision's `Resize(size, antialias=True)`
//! does to a tensor: a separable triangle filter whose support grows with the
//! downscale factor (PIL's `BILINEAR` algorithm), sample centres at
//! `(i + 0.5)·in/out`, weights renormalised at the borders. The weights are
//! computed with torch's own `f32` arithmetic (which shifts sample positions
//! by a few 10⁻⁵ px against exact maths); the sums are taken in `f64` and
//! stored as `f32`. It matches torch to float rounding (see
//! `tests/resize_vs_torchvision.rs`).
//!
//! Why the float path and not PIL's: torchvision's `Resize` on a PIL image
//! runs the same filter in fixed point and rounds to `u8` twice (after the
//! horizontal pass and at the end), so it differs from the float result by up
//! to one grey level for no benefit. leukex's definition is therefore the
//! tensor pipeline `ToTensor() → Resize(antialias=True) → Normalize(mean,
//! std)`; the PIL pipeline `Resize → ToTensor → Normalize` agrees with it
//! within 1/255 before normalisation.
//!
//! # Normalisation
//!
//! Values are on the 0..255 scale after the resize. [`Normalization::ImageNet`]
//! is `(x/255 − mean)/std` with torchvision's ImageNet constants;
//! [`Normalization::EfficientNetLite`] is `(x − 127)/128`, TensorFlow Lite's
//! EfficientNet-Lite input; [`Normalization::MeanStd`] takes mean and std on
//! the 0..1 scale like torchvision's `Normalize`.

use crate::morphology::MorphologyMask;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// torchvision's ImageNet mean (on 0..1).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// torchvision's ImageNet standard deviation (on 0..1).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A named resize filter.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// torch `interpolate(mode="bilinear", align_corners=False,
    /// antialias=True)` on float values (torchvision `Resize(antialias=True)`
    /// on a tensor); no rounding to `u8`. See the module docs.
    BilinearAntialias,
}

/// How resized 0..255 values become network input.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(x/255 − [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`.
    #[serde(rename = "imagenet")]
    ImageNet,
    /// `(x − 127) / 128` on 0..255 values.
    #[serde(rename = "efficientnet_lite")]
    EfficientNetLite,
    /// `(x/255 − mean) / std`, mean and std on the 0..1 scale.
    MeanStd { mean: [f32; 3], std: [f32; 3] },
}

impl Normalization {
    /// The same normalisation as `(x/255 − mean)/std` with mean and std on
    /// the 0..1 scale (EfficientNet-Lite: mean 127/255, std 128/255).
    pub fn mean_std(&self) -> ([f32; 3], [f32; 3]) {
        match *self {
            Normalization::ImageNet => (IMAGENET_MEAN, IMAGENET_STD),
            Normalization::EfficientNetLite => ([127.0 / 255.0; 3], [128.0 / 255.0; 3]),
            Normalization::MeanStd { mean, std } => (mean, std),
        }
    }

    /// `(scale, offset)` per channel such that `normalised = x·scale +
    /// offset` for `x` on 0..255, computed in `f64`.
    fn affine(&self) -> [(f64, f64); 3] {
        match *self {
            Normalization::EfficientNetLite => [(1.0 / 128.0, -127.0 / 128.0); 3],
            _ => {
                let (mean, std) = self.mean_std();
                std::array::from_fn(|c| {
                    let (m, s) = (f64::from(mean[c]), f64::from(std[c]));
                    (1.0 / (255.0 * s), -m / s)
                })
            }
        }
    }

    /// Maps 0..255 values to network input, channel by channel.
    pub fn normalize(&self, x: &mut ChwImage) {
        let affine = self.affine();
        let plane = x.height * x.width;
        for (c, chunk) in x.data.chunks_mut(plane).enumerate() {
            let (scale, offset) = affine[c % 3];
            for v in chunk {
                *v = (f64::from(*v) * scale + offset) as f32;
            }
        }
    }

    /// Maps network input back to 0..255 values (not clamped).
    pub fn denormalize(&self, x: &mut ChwImage) {
        let affine = self.affine();
        let plane = x.height * x.width;
        for (c, chunk) in x.data.chunks_mut(plane).enumerate() {
            let (scale, offset) = affine[c % 3];
            for v in chunk {
                *v = ((f64::from(*v) - offset) / scale) as f32;
            }
        }
    }
}

/// How an RGB image becomes network input: resize to `size`, then normalise.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Preprocessing {
    /// `[height, width]` of the network input.
    pub size: [u32; 2],
    pub filter: ResizeFilter,
    pub normalization: Normalization,
}

/// A float image, channels first, row-major: `data[(c·H + y)·W + x]`.
#[derive(Clone, PartialEq, Debug)]
pub struct ChwImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl ChwImage {
    /// Wraps `data`; panics when its length is not `channels·height·width`.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            channels * height * width,
            "ChwImage data length does not match {channels}×{height}×{width}"
        );
        ChwImage {
            channels,
            height,
            width,
            data,
        }
    }

    /// An RGB image as 3 planes of 0..255 values.
    pub fn from_rgb(img: &RgbImage) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut data = vec![0f32; 3 * h * w];
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * h * w + i] = f32::from(px[c]);
            }
        }
        ChwImage::new(3, h, w, data)
    }

    /// Back to 8-bit RGB, rounding and clamping 0..255 values (3 channels).
    pub fn to_rgb(&self) -> RgbImage {
        assert_eq!(self.channels, 3, "to_rgb needs 3 channels");
        let plane = self.height * self.width;
        RgbImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            let i = y as usize * self.width + x as usize;
            image::Rgb(std::array::from_fn(|c| {
                self.data[c * plane + i].round().clamp(0.0, 255.0) as u8
            }))
        })
    }

    pub fn get(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// One channel plane.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
}

impl Preprocessing {
    /// The torchvision nets: `size×size`, bilinear antialias, ImageNet mean/std.
    pub fn imagenet(size: u32) -> Self {
        Preprocessing {
            size: [size, size],
            filter: ResizeFilter::BilinearAntialias,
            normalization: Normalization::ImageNet,
        }
    }

    /// EfficientNet-Lite0: `size×size`, bilinear antialias, `(x − 127)/128`.
    pub fn efficientnet_lite(size: u32) -> Self {
        Preprocessing {
            size: [size, size],
            filter: ResizeFilter::BilinearAntialias,
            normalization: Normalization::EfficientNetLite,
        }
    }

    fn out_hw(&self) -> (usize, usize) {
        (self.size[0] as usize, self.size[1] as usize)
    }

    /// Resizes an RGB image to `size` on the 0..255 scale (no normalisation).
    pub fn resize(&self, img: &RgbImage) -> ChwImage {
        let (h, w) = self.out_hw();
        match self.filter {
            ResizeFilter::BilinearAntialias => {
                resize_bilinear_antialias(&ChwImage::from_rgb(img), h, w)
            }
        }
    }

    /// The network input for `img`: resize, then normalise.
    pub fn apply(&self, img: &RgbImage) -> ChwImage {
        let mut x = self.resize(img);
        self.normalization.normalize(&mut x);
        x
    }

    /// Undoes the normalisation: network input back to 0..255 values (at the
    /// network's size; not clamped), e.g. to display what the network saw.
    pub fn invert(&self, x: &ChwImage) -> ChwImage {
        let mut out = x.clone();
        self.normalization.denormalize(&mut out);
        out
    }

    /// A morphology mask at the network's size (torch `nearest`).
    pub fn resize_mask(&self, mask: &MorphologyMask) -> MorphologyMask {
        let (h, w) = self.out_hw();
        resize_mask_nearest(mask, h, w)
    }
}

/// The taps of one output sample: first source index and weights.
struct Taps {
    start: usize,
    weights: Vec<f64>,
}

/// torch's `_compute_indices_min_size_weights_aa` for the triangle filter
/// (`align_corners=False`, no explicit scale), for float tensors: like PIL's
/// `precompute_coeffs`, but with torch's `float` arithmetic reproduced term
/// by term (the scale `in/out` is an `f32`, sample centres are rounded to
/// `f32`, and so on). That rounding moves the centres by up to ~3·10⁻⁵ px
/// (257 → 224) and the values by up to ~3·10⁻³ grey levels against an exact
/// `f64` computation, which is why it is reproduced rather than improved.
fn aa_taps(input: usize, output: usize) -> Vec<Taps> {
    // area_pixel_compute_scale<float>: static_cast<float>(in) / out.
    let scale = input as f32 / output as f32;
    // (interp_size * 0.5) * scale in double, stored as float.
    let support: f32 = if scale >= 1.0 { scale } else { 1.0 };
    let invscale: f32 = if scale >= 1.0 {
        (1.0 / f64::from(scale)) as f32
    } else {
        1.0
    };
    let max_interp = f64::from(support).ceil() as i64 * 2 + 1;
    let filter = |x: f32| -> f32 {
        let x = x.abs();
        if x < 1.0 {
            (1.0 - f64::from(x)) as f32
        } else {
            0.0
        }
    };
    (0..output)
        .map(|i| {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            // (center ∓ support) in float, + 0.5 in double, truncated.
            let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
            let xsize = (((f64::from(center + support) + 0.5) as i64).min(input as i64) - xmin)
                .clamp(0, max_interp);
            let mut weights: Vec<f32> = (0..xsize)
                .map(|j| {
                    // (j + xmin - center + 0.5) * invscale: int - float in
                    // float, the rest in double, passed to the float filter.
                    let d = ((j + xmin) as f32 - center) as f64 + 0.5;
                    filter((d * f64::from(invscale)) as f32)
                })
                .collect();
            let total: f32 = weights.iter().sum();
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            Taps {
                start: xmin as usize,
                weights: weights.into_iter().map(f64::from).collect(),
            }
        })
        .collect()
}

/// Resizes every channel of `src` to `out_h × out_w` with torch's
/// antialiased bilinear filter (float path; see the module docs). Width
/// first, then height, as torch does; a dimension whose size does not
/// change is copied.
pub fn resize_bilinear_antialias(src: &ChwImage, out_h: usize, out_w: usize) -> ChwImage {
    assert!(out_h > 0 && out_w > 0, "resize to an empty image");
    assert!(src.height > 0 && src.width > 0, "resize of an empty image");
    let (c, h, w) = (src.channels, src.height, src.width);
    // Horizontal pass into f64.
    let mut tmp = vec![0f64; c * h * out_w];
    if w == out_w {
        for (t, s) in tmp.iter_mut().zip(&src.data) {
            *t = f64::from(*s);
        }
    } else {
        let taps = aa_taps(w, out_w);
        for row in 0..c * h {
            let s = &src.data[row * w..(row + 1) * w];
            let t = &mut tmp[row * out_w..(row + 1) * out_w];
            for (o, tap) in t.iter_mut().zip(&taps) {
                *o = tap
                    .weights
                    .iter()
                    .zip(&s[tap.start..])
                    .map(|(wt, v)| wt * f64::from(*v))
                    .sum();
            }
        }
    }
    // Vertical pass.
    let mut data = vec![0f32; c * out_h * out_w];
    if h == out_h {
        for (d, t) in data.iter_mut().zip(&tmp) {
            *d = *t as f32;
        }
    } else {
        let taps = aa_taps(h, out_h);
        for ch in 0..c {
            let plane = &tmp[ch * h * out_w..(ch + 1) * h * out_w];
            for (y, tap) in taps.iter().enumerate() {
                let out = &mut data[(ch * out_h + y) * out_w..(ch * out_h + y + 1) * out_w];
                let mut acc = vec![0f64; out_w];
                for (k, wt) in tap.weights.iter().enumerate() {
                    let row = &plane[(tap.start + k) * out_w..(tap.start + k + 1) * out_w];
                    for (a, v) in acc.iter_mut().zip(row) {
                        *a += wt * v;
                    }
                }
                for (o, a) in out.iter_mut().zip(&acc) {
                    *o = *a as f32;
                }
            }
        }
    }
    ChwImage::new(c, out_h, out_w, data)
}

/// torch `interpolate(mode="nearest")` source index: `floor(dst·in/out)` in
/// `f32`, as torch computes it, clamped to the last index.
fn nearest_index(dst: usize, input: usize, output: usize) -> usize {
    if input == output {
        return dst;
    }
    let scale = input as f32 / output as f32;
    ((dst as f32 * scale).floor() as usize).min(input - 1)
}

/// Resizes a mask with torch's `nearest` rule (not `nearest-exact`): output
/// pixel `(x, y)` takes source `(floor(x·W/w), floor(y·H/h))`.
pub fn resize_mask_nearest(mask: &MorphologyMask, out_h: usize, out_w: usize) -> MorphologyMask {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let xs: Vec<usize> = (0..out_w).map(|x| nearest_index(x, w, out_w)).collect();
    let raw = mask.raw();
    let mut out = Vec::with_capacity(out_h * out_w);
    for y in 0..out_h {
        let sy = nearest_index(y, h, out_h);
        out.extend(xs.iter().map(|&sx| raw[sy * w + sx]));
    }
    MorphologyMask::from_raw(out_w as u32, out_h as u32, out).expect("values kept")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_and_identity_size_is_identity() {
        for (i, o) in [(257, 224), (257, 128), (64, 100), (10, 3), (3, 10)] {
            for t in aa_taps(i, o) {
                let s: f64 = t.weights.iter().sum();
                assert!((s - 1.0).abs() < 1e-6);
                assert!(t.start + t.weights.len() <= i);
            }
        }
        let img = ChwImage::new(1, 2, 3, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(resize_bilinear_antialias(&img, 2, 3), img);
    }

    #[test]
    fn halving_averages_pairs() {
        // Downscale by 2: support 2, weights 1/4, 3/4, 3/4, 1/4 at centres.
        let img = ChwImage::new(1, 1, 8, vec![0., 8., 16., 24., 32., 40., 48., 56.]);
        let r = resize_bilinear_antialias(&img, 1, 4);
        // Output 0: centre 1.0, taps 0,1,2 with (1−|j+0.5−1|/2) = .75, .75, .25.
        let expect0 = (0.75 * 0.0 + 0.75 * 8.0 + 0.25 * 16.0) / 1.75;
        assert!((r.data[0] as f64 - expect0).abs() < 1e-5, "{:?}", r.data);
        // Interior output 1: centre 3, taps 1..=4: .25, .75, .75, .25.
        assert!((r.data[1] - 20.0).abs() < 1e-5);
    }

    #[test]
    fn constant_stays_constant_and_normalisation_inverts() {
        let img = RgbImage::from_pixel(257, 257, image::Rgb([200, 100, 50]));
        for p in [
            Preprocessing::imagenet(224),
            Preprocessing::efficientnet_lite(224),
        ] {
            let x = p.apply(&img);
            assert_eq!((x.channels, x.height, x.width), (3, 224, 224));
            let (mean, std) = p.normalization.mean_std();
            for (c, v) in [200f32, 100., 50.].iter().enumerate() {
                let e = (v / 255.0 - mean[c]) / std[c];
                assert!(x.plane(c).iter().all(|&y| (y - e).abs() < 1e-5), "{c}");
            }
            let back = p.invert(&x);
            assert_eq!(
                back.to_rgb(),
                RgbImage::from_pixel(224, 224, image::Rgb([200, 100, 50]))
            );
        }
        let lite = Preprocessing::efficientnet_lite(4).apply(&RgbImage::from_pixel(
            4,
            4,
            image::Rgb([255, 127, 0]),
        ));
        assert_eq!(
            (lite.get(0, 0, 0), lite.get(1, 0, 0), lite.get(2, 0, 0)),
            (1.0, 0.0, -127.0 / 128.0)
        );
        let imagenet =
            Preprocessing::imagenet(2).apply(&RgbImage::from_pixel(2, 2, image::Rgb([0, 0, 0])));
        assert!((imagenet.get(0, 1, 1) - (-0.485 / 0.229)).abs() < 1e-6);
        assert!((imagenet.get(2, 1, 1) - (-0.406 / 0.225)).abs() < 1e-6);
    }

    #[test]
    fn preprocessing_serialises_by_name() {
        let p = Preprocessing::efficientnet_lite(224);
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(
            j,
            r#"{"size":[224,224],"filter":"bilinear_antialias","normalization":"efficientnet_lite"}"#
        );
        assert_eq!(serde_json::from_str::<Preprocessing>(&j).unwrap(), p);
        let m = Preprocessing {
            normalization: Normalization::MeanStd {
                mean: [0.5; 3],
                std: [0.25; 3],
            },
            ..Preprocessing::imagenet(100)
        };
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Preprocessing>(&j).unwrap(), m);
    }

    #[test]
    fn nearest_mask_follows_torch_rule() {
        let raw: Vec<u8> = (0..10u8).map(|i| i % 5).collect();
        let m = MorphologyMask::from_raw(10, 1, raw).unwrap();
        let r = resize_mask_nearest(&m, 1, 4);
        // floor(x · 10/4) = 0, 2, 5, 7.
        assert_eq!(r.raw(), &[0, 2, 0, 2]);
        let up = resize_mask_nearest(&m, 2, 20);
        assert_eq!(up.raw()[..4], [0, 0, 1, 1]);
        assert_eq!(up.dimensions(), (20, 2));
    }
}
