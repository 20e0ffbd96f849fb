//! BatchNorm folded into the convolution before it: one convolution with
//! `w' = w·γ/√(σ²+eps)` and `b' = (b − μ)·γ/√(σ²+eps) + β` computes what the convolution
//! and the BatchNorm compute (up to rounding). The explanation engine's LRP rules and its
//! shared gradient pass see the folded convolution (Zennit's `SequentialMergeBatchNorm`).
//! The model's own forward does not fold: the rounding moved ResNet50's logits beyond the
//! 1e-4 they must meet against torchvision.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::{DType, Shape};

use crate::elementwise::{Real, map_channels};

/// `w ⊙ s`, the `[O]` factor `s` broadcast along the first axis of `w`.
///
/// burn-flex's broadcasting product runs on the calling thread; folding ResNet18's
/// BatchNorms that way was 24 ms of `leukex explain --method gradient` on 2 cores (perf),
/// while the other core waited. On `Flex` one parallel pass (the same products); under
/// autodiff burn's own, tracked.
#[backend_extension(Flex, Autodiff)]
pub trait OutChannelScaleBackend: Backend {
    fn scale_out_channels(w: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl OutChannelScaleBackend for Flex {
    fn scale_out_channels(w: FlexTensor, s: FlexTensor) -> FlexTensor {
        fn typed<E: Real>(w: FlexTensor, s: FlexTensor) -> FlexTensor {
            let shape = w.shape();
            let out = shape[0];
            let s = s.to_contiguous();
            let s = s.as_slice::<E>().expect("contiguous tensor");
            assert_eq!(
                s.len(),
                out,
                "per-channel factor: {} for {out} channels",
                s.len()
            );
            // `[O, …]` seen as `[1, O, rest, 1]`: the output channel is the channel axis.
            let rest = shape.num_elements() / out.max(1);
            let w = Flex::float_reshape(w, Shape::new([1, out, rest, 1]));
            Flex::float_reshape(map_channels(w, move |v: E, c| v * s[c]), shape)
        }
        match w.dtype() {
            DType::F32 => typed::<f32>(w, s),
            DType::F64 => typed::<f64>(w, s),
            other => panic!("BatchNorm folding: {other:?} is not supported"),
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> OutChannelScaleBackend for Autodiff<B, C> {
    fn scale_out_channels(w: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self> {
        let mut dims = vec![1; w.shape().num_dims()];
        dims[0] = s.shape()[0];
        let s = Self::float_reshape(s, Shape::from(dims));
        Self::float_mul(w, s)
    }
}

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
    debug_assert_eq!(w.dims()[0], out);
    let w = Tensor::from_dispatch(<Dispatch as OutChannelScaleBackend>::scale_out_channels(
        w.into_dispatch(),
        scale.clone().into_dispatch(),
    ));
    let b0 = b.unwrap_or_else(|| scale.zeros_like());
    let b = (b0 - bn.running_mean.value()) * scale + bn.beta.val();
    (w, Some(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(t: Tensor<4>) -> Vec<u64> {
        let t = t.cast(burn::tensor::FloatDType::F64);
        let v = t.into_data().try_to_vec::<f64>().expect("f64 values");
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The parallel per-channel product equals burn's broadcasting product bit for bit
    /// (f32 and f64, on a weight larger than a task), and under autodiff it stays
    /// differentiable in both operands.
    #[test]
    fn scaling_out_channels_equals_the_broadcast_product() {
        for dtype in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::F64] {
            let dev = Device::default();
            let dims = [37, 64, 3, 3];
            let n: usize = dims.iter().product();
            let w: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 997) as f32 - 498.0) * 1e-3)
                .collect();
            let w = Tensor::<4>::from_data(TensorData::new(w, dims), &dev).cast(dtype);
            let s: Vec<f32> = (0..dims[0]).map(|i| 0.3 + 0.17 * i as f32).collect();
            let s = Tensor::<1>::from_data(TensorData::new(s, [dims[0]]), &dev).cast(dtype);
            let theirs = w.clone() * s.clone().reshape([dims[0], 1, 1, 1]);
            let ours = Tensor::<4>::from_dispatch(
                <Dispatch as OutChannelScaleBackend>::scale_out_channels(
                    w.clone().into_dispatch(),
                    s.clone().into_dispatch(),
                ),
            );
            assert_eq!(bits(theirs), bits(ours), "{dtype:?}");

            let (wa, sa) = (w.autodiff().require_grad(), s.autodiff().require_grad());
            let y = Tensor::<4>::from_dispatch(
                <Dispatch as OutChannelScaleBackend>::scale_out_channels(
                    wa.clone().into_dispatch(),
                    sa.clone().into_dispatch(),
                ),
            );
            let g = y.sum().backward();
            assert!(wa.grad(&g).is_some() && sa.grad(&g).is_some());
        }
    }
}
