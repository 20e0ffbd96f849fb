//! BatchNorm in inference as one pass: `y = x · scale[c] + shift[c]`.
//!
//! burn's inference BatchNorm is four tensor operations — subtract the mean, divide by
//! the standard deviation, multiply by γ, add β — each one pass over the activation (in
//! place where the tensor is uniquely owned). PyTorch's CPU kernel folds the statistics
//! into a per-channel scale and shift first (`scale = γ / √(var + ε)`, `shift = β −
//! mean · scale`, in `f32`) and makes one fused multiply-add pass; so does this
//! operation, with the same arithmetic. (Rounding matters here: the separate multiply
//! and add, or the scale and shift computed in `f64`, moved the logits of the ResNet50
//! fixture 1.4e-4 from PyTorch's, past the 1e-4 the models issue allows.)
//!
//! It is a burn backend extension: on `Flex` one parallel pass over `f32` channel planes;
//! under autodiff one node whose backward pass gives `∂x = ∂y · scale[c]` and, where the
//! scale and shift are tracked (trainable γ and β in an evaluation-mode BatchNorm),
//! `∂scale[c] = Σ ∂y · x` and `∂shift[c] = Σ ∂y` over batch and positions, from which
//! autodiff reaches γ, β (and the statistics) through the few `[C]`-sized operations
//! that made them.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

/// A per-channel affine map of a `[N, C, H, W]` tensor (module docs).
#[backend_extension(Flex, Autodiff)]
pub trait ChannelAffineBackend: Backend {
    /// `y[n, c, i, j] = x[n, c, i, j] · scale[c] + shift[c]`; `scale` and `shift` are `[C]`.
    fn channel_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl ChannelAffineBackend for Flex {
    fn channel_affine(x: FlexTensor, scale: FlexTensor, shift: FlexTensor) -> FlexTensor {
        let f32s = [&x, &scale, &shift].iter().all(|t| t.dtype() == DType::F32);
        if !f32s {
            return generic_affine::<Flex>(x, scale, shift);
        }
        let [_, c, h, w] = x.shape().dims();
        let plane = h * w;
        let (scale, shift) = (scale.to_contiguous(), shift.to_contiguous());
        let sc = scale.as_slice::<f32>().expect("contiguous f32");
        let sh = shift.as_slice::<f32>().expect("contiguous f32");
        // In place where x owns its buffer alone (a convolution's fresh output), else on
        // a contiguous copy.
        let whole = x.layout().start_offset() == 0 && x.layout().is_contiguous();
        let mut y = if whole && x.is_unique() {
            x
        } else {
            let copy = x.to_contiguous().as_slice::<f32>().expect("f32").to_vec();
            FlexTensor::new(
                Bytes::from_elems(copy),
                Layout::contiguous(x.shape()),
                DType::F32,
            )
        };
        let n = y.shape().num_elements();
        let data = y.try_storage_mut::<f32>().expect("a buffer of its own");
        if plane > 0 {
            data[..n]
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(nc, p)| fused_multiply_add(p, sc[nc % c], sh[nc % c]));
        }
        y
    }
}

/// `v = v · a + b` with one rounding (a fused multiply-add, as PyTorch's vectorised
/// kernel computes it); the FMA instructions where the CPU has them (checked at run
/// time), otherwise the same result from the C library's `fmaf`.
fn fused_multiply_add(values: &mut [f32], a: f32, b: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: `fused_multiply_add_fma` is compiled for AVX2 and FMA, and the CPU has
        // both (checked just above); it only reads and writes `values`.
        unsafe { fused_multiply_add_fma(values, a, b) };
        return;
    }
    values.iter_mut().for_each(|v| *v = v.mul_add(a, b));
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fused_multiply_add_fma(values: &mut [f32], a: f32, b: f32) {
    values.iter_mut().for_each(|v| *v = v.mul_add(a, b));
}

/// `x · scale + shift` in the backend's own operations (broadcast over `[1, C, 1, 1]`).
fn generic_affine<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
) -> FloatTensor<B> {
    let y = B::float_mul(x, per_channel::<B>(scale));
    B::float_add(y, per_channel::<B>(shift))
}

/// A `[C]` tensor as `[1, C, 1, 1]`.
fn per_channel<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let [c] = t.shape().dims();
    B::float_reshape(t, [1, c, 1, 1].into())
}

/// The sum of a `[N, C, H, W]` tensor over all axes but the channel axis, as `[C]`.
fn sum_per_channel<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let [_, c, _, _] = t.shape().dims();
    let t = B::float_sum_dim(t, 3);
    let t = B::float_sum_dim(t, 2);
    let t = B::float_sum_dim(t, 0);
    B::float_reshape(t, [c].into())
}

#[derive(Debug)]
struct ChannelAffineBackward;

impl<B: Backend> Backward<B, 3> for ChannelAffineBackward {
    /// The input (kept only when the scale is tracked) and the scale.
    type State = (Option<FloatTensor<B>>, FloatTensor<B>);

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_scale, node_shift] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, scale) = ops.state;
        if let Some(node) = node_shift {
            grads.register::<B>(node.id, sum_per_channel::<B>(grad.clone()));
        }
        if let (Some(node), Some(x)) = (node_scale, x) {
            let g = sum_per_channel::<B>(B::float_mul(grad.clone(), x));
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::float_mul(grad, per_channel::<B>(scale)));
        }
    }
}

impl<B: ChannelAffineBackend, C: CheckpointStrategy> ChannelAffineBackend for Autodiff<B, C> {
    fn channel_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let keep_x = scale.is_tracked();
        match ChannelAffineBackward
            .prepare::<C>([x.node(), scale.node(), shift.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, scale, shift) = (
                    x.into_primitive(),
                    scale.into_primitive(),
                    shift.into_primitive(),
                );
                let y = B::channel_affine(x.clone(), scale.clone(), shift);
                prep.finish((keep_x.then_some(x), scale), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::channel_affine(
                x.into_primitive(),
                scale.into_primitive(),
                shift.into_primitive(),
            )),
        }
    }
}

/// `x · scale[c] + shift[c]` on dispatch tensors.
pub fn channel_affine(x: Tensor<4>, scale: Tensor<1>, shift: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ChannelAffineBackend>::channel_affine(
        x.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
    ))
}

/// An evaluation-mode BatchNorm as one pass, with PyTorch's arithmetic: `scale = (1 /
/// √(var + ε)) · γ`, `shift = β − mean · scale` in the model's precision, then `x · scale
/// + shift` fused.
pub fn batch_norm_inference(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let dev = x.device();
    let mean = bn.running_mean.value().to_device(&dev);
    let var = bn.running_var.value().to_device(&dev);
    let inv_std = (var + bn.epsilon).sqrt().recip();
    let scale = inv_std * bn.gamma.val();
    let shift = bn.beta.val() - mean * scale.clone();
    channel_affine(x, scale, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = a.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= tol * scale,
            "{what}: differs by {diff:e} (scale {scale:e})"
        );
    }

    fn ramp<const D: usize>(shape: [usize; D], step: f32, dev: &Device) -> Tensor<D> {
        let len: usize = shape.iter().product();
        let data: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * step)
            .collect();
        Tensor::from_data(TensorData::new(data, shape), dev)
    }

    /// Value and gradients (to the input, γ and β) of an evaluation-mode BatchNorm,
    /// burn's four operations against the fused pass.
    #[test]
    fn fused_batch_norm_equals_burns_with_gradients() {
        let dev = Device::default().autodiff();
        let (c, eps) = (5, 1e-3);
        let x = ramp([3, c, 4, 6], 0.1, &dev).require_grad();
        let gamma = (ramp([c], 0.05, &dev) + 1.0).detach().require_grad();
        let beta = ramp([c], 0.2, &dev).detach().require_grad();
        let mean = ramp([c], 0.03, &dev).detach();
        let var = (ramp([c], 0.02, &dev).abs() + 0.5).detach();
        let weights = ramp([3, c, 4, 6], 0.7, &dev).detach();

        let reference = burn::tensor::module::batch_norm(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            mean.clone(),
            var.clone(),
            eps,
        );
        let inv_std = (var + eps).sqrt().recip();
        let scale = inv_std * gamma.clone();
        let shift = beta.clone() - mean * scale.clone();
        let fused = channel_affine(x.clone(), scale, shift);
        close(
            "value",
            &values(reference.clone()),
            &values(fused.clone()),
            1e-6,
        );

        let g_ref = (reference * weights.clone()).sum().backward();
        let g_fused = (fused * weights).sum().backward();
        close(
            "input",
            &values(x.grad(&g_ref).expect("input gradient")),
            &values(x.grad(&g_fused).expect("input gradient")),
            1e-5,
        );
        close(
            "gamma",
            &values(gamma.grad(&g_ref).expect("γ gradient")),
            &values(gamma.grad(&g_fused).expect("γ gradient")),
            1e-5,
        );
        close(
            "beta",
            &values(beta.grad(&g_ref).expect("β gradient")),
            &values(beta.grad(&g_fused).expect("β gradient")),
            1e-5,
        );
    }

    /// Without autodiff the pass is plain `x · scale + shift`, per channel.
    #[test]
    fn channel_affine_scales_and_shifts_each_channel() {
        let dev = Device::default();
        let x = ramp([2, 3, 2, 2], 1.0, &dev);
        let scale = Tensor::<1>::from_data([2.0f32, -1.0, 0.5], &dev);
        let shift = Tensor::<1>::from_data([1.0f32, 0.0, -3.0], &dev);
        let want =
            x.clone() * scale.clone().reshape([1, 3, 1, 1]) + shift.clone().reshape([1, 3, 1, 1]);
        let before = values(x.clone());
        // Shared with `kept`: computed on a copy; then unshared: in place.
        let kept = x.clone();
        let shared = channel_affine(x, scale.clone(), shift.clone());
        assert_eq!(values(kept.clone()), before, "a shared input is left alone");
        assert_eq!(values(shared), values(want.clone()));
        assert_eq!(values(channel_affine(kept, scale, shift)), values(want));
    }
}
