//! BatchNorm folded into the convolution before it: one convolution with
//! `w' = w·γ/√(σ²+eps)` and `b' = (b − μ)·γ/√(σ²+eps) + β` computes what the convolution
//! and the BatchNorm compute (up to rounding). The explanation engine's LRP rules and its
//! shared gradient pass see the folded convolution (Zennit's `SequentialMergeBatchNorm`).
//! The model's own forward does not fold: the rounding moved ResNet50's logits beyond the
//! 1e-4 they must meet against torchvision.

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// The convolution's weight and bias with the BatchNorm after it folded in:
/// `w' = w·γ/√(σ²+eps)`, `b' = (b − μ)·γ/√(σ²+eps) + β` (Zennit's `merge_batch_norm`).
/// Differentiable in every parameter.
pub fn fold_batch_norm(conv: &Conv2d, bn: Option<&BatchNorm>) -> (Tensor<4>, Option<Tensor<1>>) {
    let w = conv.weight.val();
    let b = conv.bias.as_ref().map(|b| b.val());
    let Some(bn) = bn else {
        return (w, b);
    };
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let out = scale.dims()[0];
    let w = w * scale.clone().reshape([out, 1, 1, 1]);
    let b0 = b.unwrap_or_else(|| scale.zeros_like());
    let b = (b0 - bn.running_mean.value()) * scale + bn.beta.val();
    (w, Some(b))
}
