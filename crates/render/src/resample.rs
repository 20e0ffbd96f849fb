//! Bilinear resampling of one row-major map, the one implementation behind every
//! bilinear map resize in leukex: layer-resolution CAMs to the input, maps to the image
//! or mask grid, Score-CAM's masks, overlays.
//!
//! The arithmetic runs in the sample type `T` with the weights computed in `f64` and then
//! converted to `T`, so an `f32` map is interpolated in `f32` (as PyTorch does on float32
//! tensors) and an `f64` map in `f64`.

use std::ops::{Add, Mul, Sub};

/// Where output pixel `o` samples the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelGrid {
    /// Half-pixel centres (`align_corners = false`): input position `(o + ½)·n_in/n_out − ½`,
    /// clamped at 0 — `torch.nn.functional.interpolate(mode="bilinear")`, OpenCV's
    /// `INTER_LINEAR` when enlarging.
    HalfPixel,
    /// Corners coincide (`align_corners = true`, `torch.nn.UpsamplingBilinear2d`): input
    /// position `o·(n_in − 1)/(n_out − 1)` (0 when `n_out = 1`).
    AlignCorners,
}

/// A sample type the resampler interpolates in.
pub trait Sample: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    const ONE: Self;
    /// A weight computed in `f64`, rounded to this type.
    fn weight(w: f64) -> Self;
}

impl Sample for f32 {
    const ONE: Self = 1.0;
    fn weight(w: f64) -> Self {
        w as f32
    }
}

impl Sample for f64 {
    const ONE: Self = 1.0;
    fn weight(w: f64) -> Self {
        w
    }
}

/// For each output index along one axis: the two input indices and the second one's weight.
fn axis<T: Sample>(n_in: usize, n_out: usize, grid: PixelGrid) -> Vec<(usize, usize, T)> {
    let position = |o: usize| -> f64 {
        match grid {
            PixelGrid::HalfPixel => {
                let scale = n_in as f64 / n_out as f64;
                ((o as f64 + 0.5) * scale - 0.5).max(0.0)
            }
            PixelGrid::AlignCorners if n_out > 1 => {
                o as f64 * ((n_in - 1) as f64 / (n_out - 1) as f64)
            }
            PixelGrid::AlignCorners => 0.0,
        }
    };
    (0..n_out)
        .map(|o| {
            let s = position(o);
            let i0 = (s.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, T::weight(s - i0 as f64))
        })
        .collect()
}

/// Resizes the row-major `h`×`w` map `src` to `out_h`×`out_w` bilinearly on `grid`.
pub fn resize_bilinear<T: Sample>(
    src: &[T],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    grid: PixelGrid,
) -> Vec<T> {
    assert_eq!(src.len(), h * w, "map size");
    let ys = axis::<T>(h, out_h, grid);
    let xs = axis::<T>(w, out_w, grid);
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, ly) in &ys {
        for &(x0, x1, lx) in &xs {
            let top = src[y0 * w + x0] * (T::ONE - lx) + src[y0 * w + x1] * lx;
            let bottom = src[y1 * w + x0] * (T::ONE - lx) + src[y1 * w + x1] * lx;
            out.push(top * (T::ONE - ly) + bottom * ly);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PixelGrid::{AlignCorners, HalfPixel};

    #[test]
    fn identity_size_is_a_copy_and_constants_stay_constant() {
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(resize_bilinear(&src, 3, 4, 3, 4, HalfPixel), src);
        let c = vec![2.5f32; 16];
        assert!(
            resize_bilinear(&c, 4, 4, 9, 7, HalfPixel)
                .iter()
                .all(|&v| v == 2.5)
        );
    }

    #[test]
    fn doubling_matches_half_pixel_rule() {
        // torch.nn.functional.interpolate(tensor([[0., 1.]]), size=4, mode="linear",
        // align_corners=False) = [0, 0.25, 0.75, 1].
        let got = resize_bilinear(&[0.0f32, 1.0], 1, 2, 1, 4, HalfPixel);
        assert_eq!(got, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn align_corners_keeps_the_corners() {
        // torch.nn.UpsamplingBilinear2d(size=(1, 4))(tensor([[[[0., 3.]]]])) = [0, 1, 2, 3].
        let got = resize_bilinear(&[0.0f64, 3.0], 1, 2, 1, 4, AlignCorners);
        assert_eq!(got, vec![0.0, 1.0, 2.0, 3.0]);
        // 2×2 → 3×3: the centre is the mean of the four corners.
        let got = resize_bilinear(&[0.0f64, 1.0, 2.0, 5.0], 2, 2, 3, 3, AlignCorners);
        assert_eq!(got, vec![0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 2.0, 3.5, 5.0]);
        assert_eq!(
            resize_bilinear(&[4.0f64, 9.0], 1, 2, 1, 1, AlignCorners),
            [4.0]
        );
    }

    #[test]
    fn f32_maps_are_interpolated_in_f32() {
        // 2×2 → 3×3: output (1, 1) sits at input (0.5, 0.5), the mean of the four taken
        // in two f32 steps, as an f32 tensor interpolation does.
        let a = resize_bilinear(&[0.1f32, 0.7, 0.3, 0.9], 2, 2, 3, 3, HalfPixel);
        let lerp = |x0: f32, x1: f32, l: f32| x0 * (1.0 - l) + x1 * l;
        assert_eq!(a[4], lerp(lerp(0.1, 0.7, 0.5), lerp(0.3, 0.9, 0.5), 0.5));
    }

    /// The three bilinear resizes this module replaced (explain's f32 half-pixel and f64
    /// align-corners ones, evaluate's `HeatMap::resized` in f64), kept verbatim so that a
    /// change of numerics shows here bit for bit.
    mod replaced {
        pub fn explain_half_pixel(
            src: &[f32],
            h: usize,
            w: usize,
            out_h: usize,
            out_w: usize,
        ) -> Vec<f32> {
            let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
                let scale = n_in as f64 / n_out as f64;
                (0..n_out)
                    .map(|o| {
                        let s = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                        let i0 = (s.floor() as usize).min(n_in - 1);
                        let i1 = (i0 + 1).min(n_in - 1);
                        (i0, i1, (s - i0 as f64) as f32)
                    })
                    .collect()
            };
            let (ys, xs) = (axis(h, out_h), axis(w, out_w));
            let mut out = Vec::with_capacity(out_h * out_w);
            for &(y0, y1, ly) in &ys {
                for &(x0, x1, lx) in &xs {
                    let top = src[y0 * w + x0] * (1.0 - lx) + src[y0 * w + x1] * lx;
                    let bottom = src[y1 * w + x0] * (1.0 - lx) + src[y1 * w + x1] * lx;
                    out.push(top * (1.0 - ly) + bottom * ly);
                }
            }
            out
        }

        pub fn explain_align_corners(
            src: &[f64],
            h: usize,
            w: usize,
            out_h: usize,
            out_w: usize,
        ) -> Vec<f64> {
            let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f64)> {
                let scale = if n_out > 1 {
                    (n_in - 1) as f64 / (n_out - 1) as f64
                } else {
                    0.0
                };
                (0..n_out)
                    .map(|o| {
                        let s = o as f64 * scale;
                        let i0 = (s.floor() as usize).min(n_in - 1);
                        let i1 = (i0 + 1).min(n_in - 1);
                        (i0, i1, s - i0 as f64)
                    })
                    .collect()
            };
            let (ys, xs) = (axis(h, out_h), axis(w, out_w));
            let mut out = Vec::with_capacity(out_h * out_w);
            for &(y0, y1, ly) in &ys {
                for &(x0, x1, lx) in &xs {
                    let top = src[y0 * w + x0] * (1.0 - lx) + src[y0 * w + x1] * lx;
                    let bottom = src[y1 * w + x0] * (1.0 - lx) + src[y1 * w + x1] * lx;
                    out.push(top * (1.0 - ly) + bottom * ly);
                }
            }
            out
        }

        pub fn evaluate_heatmap(
            values: &[f32],
            src_w: usize,
            src_h: usize,
            width: usize,
            height: usize,
        ) -> Vec<f32> {
            let sx = src_w as f64 / width as f64;
            let sy = src_h as f64 / height as f64;
            let src = |x: usize, y: usize| values[y * src_w + x] as f64;
            let axis = |o: usize, scale: f64, len: usize| {
                let p = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (p.floor() as usize).min(len - 1);
                let i1 = (i0 + 1).min(len - 1);
                (i0, i1, p - i0 as f64)
            };
            let mut out = Vec::with_capacity(width * height);
            for y in 0..height {
                let (y0, y1, fy) = axis(y, sy, src_h);
                for x in 0..width {
                    let (x0, x1, fx) = axis(x, sx, src_w);
                    let top = src(x0, y0) * (1.0 - fx) + src(x1, y0) * fx;
                    let bottom = src(x0, y1) * (1.0 - fx) + src(x1, y1) * fx;
                    out.push((top * (1.0 - fy) + bottom * fy) as f32);
                }
            }
            out
        }
    }

    #[test]
    fn numerics_equal_the_resizes_it_replaced_bit_for_bit() {
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            // xorshift32: any spread of values with long mantissas will do.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 8.0 - 3.0
        };
        for (h, w, oh, ow) in [(7, 7, 224, 224), (14, 9, 5, 31), (3, 5, 3, 5), (1, 4, 6, 1)] {
            let src: Vec<f32> = (0..h * w).map(|_| next()).collect();
            let src64: Vec<f64> = src.iter().map(|&v| f64::from(v)).collect();
            let new = resize_bilinear(&src, h, w, oh, ow, HalfPixel);
            let old = replaced::explain_half_pixel(&src, h, w, oh, ow);
            assert!(
                new.iter()
                    .zip(&old)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
            let new = resize_bilinear(&src64, h, w, oh, ow, AlignCorners);
            let old = replaced::explain_align_corners(&src64, h, w, oh, ow);
            assert!(
                new.iter()
                    .zip(&old)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
            let new: Vec<f32> = resize_bilinear(&src64, h, w, oh, ow, HalfPixel)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let old = replaced::evaluate_heatmap(&src, w, h, ow, oh);
            assert!(
                new.iter()
                    .zip(&old)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }
}
