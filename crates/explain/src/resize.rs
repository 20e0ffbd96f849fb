//! Bilinear resampling of one map with half-pixel centres (`align_corners = false`): the
//! rule of `torch.nn.functional.interpolate(mode="bilinear")` and OpenCV's `INTER_LINEAR`
//! when enlarging. Used to bring layer-resolution maps to the input or image size.
//! [`resize_bilinear_align_corners`] is the `align_corners = true` variant
//! (`torch.nn.UpsamplingBilinear2d`), which Score-CAM uses for its masks.

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
