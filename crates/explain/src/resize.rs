//! Bilinear resampling of one map with half-pixel centres (`align_corners = false`): the
//! rule of `torch.nn.functional.interpolate(mode="bilinear")` and OpenCV's `INTER_LINEAR`
//! when enlarging. Used to bring layer-resolution maps to the input or image size.
//! [`resize_bilinear_align_corners`] is the `align_corners = true` variant
//! (`torch.nn.UpsamplingBilinear2d`), which Score-CAM uses for its masks.
//! [`resize_bicubic_matlab`] is MATLAB's `imresize(…, "bicubic")`, which MATLAB's
//! `gradCAM` uses to bring its map to the network input (`--cam-style matlab`).

/// Resizes the row-major `h`×`w` map `src` to `out_h`×`out_w`.
pub fn resize_bilinear(src: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    assert_eq!(src.len(), h * w, "map size");
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
    let ys = axis(h, out_h);
    let xs = axis(w, out_w);
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

/// Resizes the row-major `h`×`w` map `src` to `out_h`×`out_w` bilinearly with
/// `align_corners = true` (`torch.nn.UpsamplingBilinear2d`): the corner pixels of input and
/// output coincide, output `o` samples input position `o·(n_in − 1)/(n_out − 1)` (position 0
/// when `n_out = 1`).
pub fn resize_bilinear_align_corners(
    src: &[f64],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f64> {
    assert_eq!(src.len(), h * w, "map size");
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
    let ys = axis(h, out_h);
    let xs = axis(w, out_w);
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

/// One output sample of a separable resize: input indices and their weights.
type Taps = Vec<(usize, f64)>;

/// Keys' cubic convolution kernel with a = −0.5 (MATLAB's `cubic`).
fn keys_cubic(x: f64) -> f64 {
    let a = x.abs();
    if a <= 1.0 {
        (1.5 * a - 2.5) * a * a + 1.0
    } else if a <= 2.0 {
        ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
    } else {
        0.0
    }
}

/// MATLAB's `contributions` for one axis: output `o` (0-based) sits at input position
/// `(o + ½)/s − ½` with `s = n_out/n_in`; when shrinking (`s < 1`) the kernel is widened
/// by `1/s` and scaled by `s` (antialiasing). Taps outside the input are mirrored with the
/// edge sample repeated (`[1:n, n:-1:1]`) and the weights normalised to sum 1.
fn bicubic_axis(n_in: usize, n_out: usize) -> Vec<Taps> {
    let s = n_out as f64 / n_in as f64;
    let (width, k_scale) = if s < 1.0 { (4.0 / s, s) } else { (4.0, 1.0) };
    let taps = width.ceil() as i64 + 2;
    let period = 2 * n_in as i64;
    (0..n_out)
        .map(|o| {
            let u = (o as f64 + 0.5) / s - 0.5;
            let left = (u - width / 2.0).floor() as i64;
            let mut row: Taps = (left..left + taps)
                .map(|j| {
                    let wgt = k_scale * keys_cubic(k_scale * (u - j as f64));
                    let m = j.rem_euclid(period);
                    let idx = if m < n_in as i64 { m } else { period - 1 - m };
                    (idx as usize, wgt)
                })
                .filter(|&(_, wgt)| wgt != 0.0)
                .collect();
            let total: f64 = row.iter().map(|&(_, wgt)| wgt).sum();
            for t in &mut row {
                t.1 /= total;
            }
            row
        })
        .collect()
}

/// Resizes the row-major `h`×`w` map `src` to `out_h`×`out_w` as MATLAB's
/// `imresize(src, [out_h out_w], "bicubic")` does for floating-point images: Keys' cubic
/// kernel (a = −0.5) on the half-pixel grid, mirrored borders, antialiasing when
/// shrinking, rows and columns resized one after the other (the axis with the smaller
/// scale first, as MATLAB orders them). Values are not clamped: cubic interpolation
/// overshoots, so a non-negative map can get small negative values next to its peaks.
/// Checked against ResizeRight, an independent reimplementation of `imresize`
/// (`scripts/fixtures/gen_bicubic.py`).
pub fn resize_bicubic_matlab(
    src: &[f32],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    assert_eq!(src.len(), h * w, "map size");
    let rows = bicubic_axis(h, out_h);
    let cols = bicubic_axis(w, out_w);
    let src: Vec<f64> = src.iter().map(|&v| f64::from(v)).collect();
    let resize_rows = |img: &[f64], width: usize| -> Vec<f64> {
        rows.iter()
            .flat_map(|taps| {
                (0..width).map(move |x| taps.iter().map(|&(y, wt)| wt * img[y * width + x]).sum())
            })
            .collect()
    };
    let resize_cols = |img: &[f64], height: usize| -> Vec<f64> {
        (0..height)
            .flat_map(|y| {
                cols.iter()
                    .map(move |taps| taps.iter().map(|&(x, wt)| wt * img[y * w + x]).sum())
            })
            .collect()
    };
    let rows_first = out_h as f64 / h as f64 <= out_w as f64 / w as f64;
    let out = if rows_first {
        let tmp = resize_rows(&src, w);
        // `resize_cols` indexes with the input width `w`, which `tmp` still has.
        resize_cols(&tmp, out_h)
    } else {
        let tmp = resize_cols(&src, h);
        resize_rows(&tmp, out_w)
    };
    out.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy_and_constants_stay_constant() {
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(resize_bilinear(&src, 3, 4, 3, 4), src);
        let c = vec![2.5f32; 16];
        assert!(resize_bilinear(&c, 4, 4, 9, 7).iter().all(|&v| v == 2.5));
    }

    #[test]
    fn doubling_matches_half_pixel_rule() {
        // torch.nn.functional.interpolate(tensor([[0., 1.]]), size=4, mode="linear",
        // align_corners=False) = [0, 0.25, 0.75, 1].
        let got = resize_bilinear(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(got, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn align_corners_keeps_the_corners() {
        // torch.nn.UpsamplingBilinear2d(size=(1, 4))(tensor([[[[0., 3.]]]])) = [0, 1, 2, 3].
        let got = resize_bilinear_align_corners(&[0.0, 3.0], 1, 2, 1, 4);
        assert_eq!(got, vec![0.0, 1.0, 2.0, 3.0]);
        // 2×2 → 3×3: the centre is the mean of the four corners.
        let got = resize_bilinear_align_corners(&[0.0, 1.0, 2.0, 5.0], 2, 2, 3, 3);
        assert_eq!(got, vec![0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 2.0, 3.5, 5.0]);
        let c = vec![1.5; 16];
        assert!(
            resize_bilinear_align_corners(&c, 4, 4, 9, 7)
                .iter()
                .all(|&v| v == 1.5)
        );
    }
}
