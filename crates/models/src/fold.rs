//! BatchNorm folded into the convolution before it, for inference: one convolution with
//! `w' = w·γ/√(σ²+eps)` and `b' = (b − μ)·γ/√(σ²+eps) + β` computes what the convolution
//! and the BatchNorm compute (up to rounding), without the BatchNorm's passes over the
//! activations. [`Classifier::forward`](crate::Classifier::forward) runs this way when the
//! BatchNorms are in inference mode; the explanation engine's LRP rules see the folded
//! convolution too (Zennit's `SequentialMergeBatchNorm`).

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::module::conv2d;

use crate::conv_grad::{conv_options, conv2d_module};
use crate::layers::{Ops, batch_norm_is_training};

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

/// The plain operations, every BatchNorm in inference mode folded into its convolution.
/// No named outputs are reported (a convolution's own output before its BatchNorm does
/// not exist here): for hooks, use the unfolded [`Ops`] defaults.
pub(crate) struct FoldedOps;

impl Ops for FoldedOps {
    fn conv(
        &mut self,
        _name: &str,
        conv: &Conv2d,
        bn: Option<(&str, &BatchNorm)>,
        x: Tensor<4>,
    ) -> Tensor<4> {
        match bn {
            Some((_, b)) if !batch_norm_is_training(b, &x) => {
                let [_, _, h, w] = x.dims();
                let (weight, bias) = fold_batch_norm(conv, Some(b));
                conv2d(x, weight, bias, conv_options(conv, h, w))
            }
            _ => {
                // Training, or no BatchNorm: the default convolution (its fast backward).
                let y = conv2d_module(conv, x);
                match bn {
                    Some((_, b)) => crate::layers::batch_norm(b, y),
                    None => y,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::closed_form::{closed_form_state_dict, input_value};
    use crate::{Arch, Classifier, ModelConfig};
    use burn::prelude::*;

    /// The folded forward is the unfolded one (conv, then BatchNorm) up to rounding, on
    /// every architecture with BatchNorm; VGG19 has none and is unchanged.
    #[test]
    fn folded_forward_equals_conv_then_batch_norm() {
        let dev = Device::default();
        for arch in [
            Arch::ResNet18,
            Arch::GoogLeNet,
            Arch::EfficientNetLite0,
            Arch::Vgg19,
        ] {
            let mut m = Classifier::new(&ModelConfig::new(arch, 3), &dev);
            m.load_state_dict(&closed_form_state_dict(&m, None))
                .unwrap();
            let m = m.valid();
            let shape = [2, 3, 64, 64];
            let x = Tensor::<4>::from_data(TensorData::new(input_value(&shape), shape), &dev);
            let folded = m.forward(x.clone());
            let unfolded = m.forward_with(x, &mut |_, t| t);
            let scale = unfolded.clone().abs().max().into_scalar::<f32>();
            let diff = (folded - unfolded).abs().max().into_scalar::<f32>();
            assert!(scale > 1e-3, "{arch}: degenerate logits");
            assert!(diff <= 1e-5 * scale, "{arch}: {diff} against {scale}");
        }
    }
}
