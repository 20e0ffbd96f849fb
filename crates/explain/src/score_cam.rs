//! Score-CAM, as pytorch-grad-cam 1.5.7's `ScoreCAM` computes it: no gradients; each
//! channel of the target layer masks the input, and the masked input's score weights it.
//!
//! With `A` the target layer's activations `[N, K, h, w]` for the input `x` `[N, C, H, W]`:
//!
//! 1. `U_k` = `A_k` resized to `H`×`W` bilinearly with **`align_corners = true`**
//!    (`torch.nn.UpsamplingBilinear2d`, not the half-pixel rule of the final resize);
//! 2. mask `M_k = (U_k − min U_k) / (max U_k − min U_k + 1e-8)` (per image and channel;
//!    a constant channel gives an all-zero mask);
//! 3. `s_k` = the target's score (the logit by default) of the model at `x ⊙ M_k`, the mask
//!    broadcast over the colour channels;
//! 4. `w = softmax_k(s)` — a softmax over the **channels** of one image, not over classes;
//! 5. cam = ReLU(Σ_k w_k A_k), `[N, 1, h, w]`, before the same
//!    [`scale_and_resize`](crate::cam::scale_and_resize) as the other CAMs.
//!
//! Cost: one forward pass per channel per image at the default layers: 512 for ResNet18's
//! `layer4` and VGG19's `features.35`, 1024 for GoogLeNet's `inception5b`, 1280 for
//! EfficientNet-Lite0's head, 2048 for ResNet50's `layer4` — hundreds of times a Grad-CAM.
//! The masked inputs go through the model `batch` at a time (forward only, no autodiff);
//! pytorch-grad-cam runs 16 at a time. The batch size does not change the result.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::{DType, FloatDType};
use leukex_models::Classifier;

use crate::cam::{CamError, unknown_layer};
use crate::resize::{PixelGrid, resize_bilinear};
use crate::target::Score;

/// Default number of masked inputs per forward pass.
pub const DEFAULT_SCORE_CAM_BATCH: usize = 32;

/// Score-CAM at `layer` for `targets` (the target logit as score): `[N, 1, h, w]` at the
/// layer's resolution. `batch` masked inputs go through the model at a time (≥ 1).
pub fn score_cam(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    layer: &str,
    batch: usize,
) -> Result<Tensor<4>, CamError> {
    score_cam_for(model, x, targets, layer, batch, Score::Logit)
}

/// [`score_cam`] weighting the channels by `score` of the masked inputs (pytorch-grad-cam:
/// the logit, [`Score::Logit`]).
pub fn score_cam_for(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    layer: &str,
    batch: usize,
    score: Score,
) -> Result<Tensor<4>, CamError> {
    assert!(batch >= 1, "score-cam batch must be at least 1");
    let x = x.inner();
    let [n, c, hh, ww] = x.dims();
    assert_eq!(targets.len(), n, "one target per image");
    let a = layer_activations(model, x.clone(), layer)?;
    let [_, k, h, w] = a.dims();
    let device = x.device();
    let dtype = x.dtype();
    let av = a
        .clone()
        .cast(FloatDType::F64)
        .into_data()
        .try_into_vec::<f64>()
        .expect("f64 activations");
    let mut weights = Vec::with_capacity(n * k);
    for (i, &target) in targets.iter().enumerate() {
        let xi = x.clone().narrow(0, i, 1);
        let mut scores = Vec::with_capacity(k);
        for k0 in (0..k).step_by(batch) {
            let b = batch.min(k - k0);
            let masks: Vec<f64> = (k0..k0 + b)
                .flat_map(|ch| {
                    let plane = &av[(i * k + ch) * h * w..(i * k + ch + 1) * h * w];
                    mask(plane, h, w, hh, ww)
                })
                .collect();
            let data = if dtype == DType::F64 {
                TensorData::new(masks, [b, 1, hh, ww])
            } else {
                let v: Vec<f32> = masks.iter().map(|&m| m as f32).collect();
                TensorData::new(v, [b, 1, hh, ww])
            };
            let m = Tensor::<4>::from_data(data, &device)
                .cast(dtype)
                .expand([b, c, hh, ww]);
            let logits = model.forward(xi.clone().expand([b, c, hh, ww]) * m);
            let classes = logits.dims()[1];
            let lv = logits
                .cast(FloatDType::F64)
                .into_data()
                .try_into_vec::<f64>()
                .expect("f64 logits");
            scores.extend(lv.chunks(classes).map(|row| score.of_row(row, target)));
        }
        weights.extend(softmax(&scores));
    }
    let wt = Tensor::<4>::from_data(TensorData::new(weights, [n, k, 1, 1]), &device).cast(dtype);
    Ok(relu((wt * a).sum_dim(1)))
}

/// The target layer's output for `x` (one plain forward pass).
pub fn layer_activations(
    model: &Classifier,
    x: Tensor<4>,
    layer: &str,
) -> Result<Tensor<4>, CamError> {
    let mut captured: Option<Tensor<4>> = None;
    model.forward_with(x, &mut |name, t| {
        if name == layer && captured.is_none() {
            captured = Some(t.clone());
        }
        t
    });
    captured.ok_or_else(|| unknown_layer(model, layer))
}

/// One channel's mask: bilinear (align_corners) to `out_h`×`out_w`, then min–max scaled
/// with pytorch-grad-cam's `+ 1e-8`.
fn mask(plane: &[f64], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f64> {
    let up = resize_bilinear(plane, h, w, out_h, out_w, PixelGrid::AlignCorners);
    let min = up.iter().copied().fold(f64::INFINITY, f64::min);
    let max = up.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let den = max - min + 1e-8;
    up.into_iter().map(|u| (u - min) / den).collect()
}

fn softmax(s: &[f64]) -> Vec<f64> {
    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_span_zero_to_one_and_constant_channels_vanish() {
        let m = mask(&[1.0, 2.0, 3.0, 5.0], 2, 2, 5, 5);
        assert_eq!(m[0], 0.0);
        assert!((m[24] - 1.0).abs() < 1e-8);
        assert!(m.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(mask(&[0.0; 4], 2, 2, 3, 3).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn softmax_sums_to_one() {
        let w = softmax(&[1000.0, 1000.0, 999.0]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((w[0] - w[1]).abs() < 1e-15 && w[2] < w[0]);
    }
}
