//! MATLAB's `imresize(…, "bicubic")` ([`resize_bicubic_matlab`]), which MATLAB's `gradCAM`
//! uses to bring its map to the network input (`--cam-style matlab`). Bilinear
//! resampling (both pixel grids) is `leukex_render::resample`, re-exported here.

pub use leukex_render::resample::{PixelGrid, resize_bilinear};

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
