//! Guided Backpropagation (Springenberg et al. 2015, "Striving for simplicity").
//!
//! The gradient of the target score, except that every ReLU-type activation lets only
//! positive gradient pass, and only where its input is active:
//!
//! ```text
//! ReLU:   ∂in = [x > 0]     · max(∂out, 0)
//! ReLU6:  ∂in = [0 < x < 6] · max(∂out, 0)
//! ```
//!
//! The clamp of the upstream gradient is not linear in that gradient, so it cannot be
//! written as LRP's `z + g(x) − sg(g(x))` (whose backward is a fixed linear map). It is an
//! autodiff operation of its own instead: [`GuidedBackend::guided_relu`], a burn backend
//! extension whose forward is the activation (same values as `relu` / `relu6`) and whose
//! backward step is the rule above. The model's own forward
//! ([`Classifier::forward_ops`]) runs with [`GuidedOps`], which routes `relu`, `relu2` and
//! `relu6` through it and leaves every other operation plain, as [`crate::lrp::LrpOps`]
//! does for the LRP rules.
//!
//! Unlike Captum's `GuidedBackprop` (which hooks `torch.nn.ReLU` modules only, so the
//! functional ReLUs of torchvision's GoogLeNet and the ReLU6 of EfficientNet-Lite keep
//! their plain gradient there), every activation of every architecture is guided here.
//!
//! The extension is implemented for `Autodiff<B, C>` over any backend and checkpointing
//! strategy, and for the `Flex` backend leukex builds; another execution backend would
//! need its own (one-line, forward-only) `impl GuidedBackend` and its name in the
//! `backend_extension` list, or the call panics.

use core::marker::PhantomData;

use burn::backend::TensorMetadata;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind, unary};
use burn::backend::get_or_init_device_settings;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use leukex_models::{Classifier, Ops};

use crate::gradient::input_gradient;
use crate::target::Score;

/// The upper clip of ReLU6.
const RELU6_MAX: f64 = 6.0;

/// ReLU-type activation with the Guided Backpropagation backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait GuidedBackend: Backend {
    /// Forward: `max(x, 0)`, or `min(max(x, 0), upper)` with an upper clip (ReLU6).
    /// Backward (autodiff): `[0 < x (< upper)] · max(∂out, 0)`.
    fn guided_relu(x: FloatTensor<Self>, upper: Option<f64>) -> FloatTensor<Self>;
}

/// The activation's forward value, on any backend: exactly what `relu` / `relu6` compute.
fn activation<B: Backend>(x: FloatTensor<B>, upper: Option<f64>) -> FloatTensor<B> {
    match upper {
        None => B::relu(x),
        Some(u) => B::float_clamp(x, 0f64.into(), u.into()),
    }
}

/// Without autodiff there is no backward pass to modify: the plain activation.
impl GuidedBackend for Flex {
    fn guided_relu(x: FloatTensor<Self>, upper: Option<f64>) -> FloatTensor<Self> {
        activation::<Self>(x, upper)
    }
}

/// The backward step; its state is the activation's input (checkpointed) and the clip.
#[derive(Debug)]
struct GuidedReluBackward;

impl<B: Backend> Backward<B, 1> for GuidedReluBackward {
    type State = (NodeId, Option<f64>);

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (input, upper) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(input);
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let bool_dtype = get_or_init_device_settings::<B>(&x.device()).bool_dtype;
            // max(∂out, 0), then 0 where the unit is inactive (x ≤ 0) or clipped (x ≥ upper).
            let grad = B::relu(grad);
            let off = B::float_lower_equal_elem(x.clone(), 0f64.into(), bool_dtype);
            let grad = B::float_mask_fill(grad, off, 0f64.into());
            match upper {
                None => grad,
                Some(u) => {
                    let off = B::float_greater_equal_elem(x, u.into(), bool_dtype);
                    B::float_mask_fill(grad, off, 0f64.into())
                }
            }
        });
    }
}

/// Recomputes the activation's output from its input when a checkpointing strategy chose
/// not to keep it (the activation is cheap: marked memory bound, like burn's own ReLU).
#[derive(Debug)]
struct GuidedReluRetro<B> {
    input: NodeId,
    upper: Option<f64>,
    _backend: PhantomData<B>,
}

impl<B: Backend> RetroForward for GuidedReluRetro<B> {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let x = states.get_state::<FloatTensor<B>>(&self.input);
        states.save(out_node, activation::<B>(x, self.upper))
    }
}

impl<B: Backend, C: CheckpointStrategy> GuidedBackend for Autodiff<B, C> {
    fn guided_relu(x: FloatTensor<Self>, upper: Option<f64>) -> FloatTensor<Self> {
        let retro = GuidedReluRetro::<B> {
            input: x.id(),
            upper,
            _backend: PhantomData,
        };
        match GuidedReluBackward
            .prepare::<C>([x.node()])
            .memory_bound()
            .retro_forward(retro)
            .parents([&x])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let input = prep.checkpoint(&x);
                prep.finish((input, upper), activation::<B>(x.into_primitive(), upper))
            }
            OpsKind::UnTracked(prep) => prep.finish(activation::<B>(x.into_primitive(), upper)),
        }
    }
}

/// [`GuidedBackend::guided_relu`] on a tensor of any rank.
pub fn guided_relu<const D: usize>(x: Tensor<D>, upper: Option<f64>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GuidedBackend>::guided_relu(
        x.into_dispatch(),
        upper,
    ))
}

/// [`Ops`] whose activations have the Guided Backpropagation backward pass; every other
/// operation is the plain one, so the forward values (and logits) are the model's own.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuidedOps;

impl Ops for GuidedOps {
    fn relu(&mut self, x: Tensor<4>) -> Tensor<4> {
        guided_relu(x, None)
    }

    fn relu2(&mut self, x: Tensor<2>) -> Tensor<2> {
        guided_relu(x, None)
    }

    fn relu6(&mut self, x: Tensor<4>) -> Tensor<4> {
        guided_relu(x, Some(RELU6_MAX))
    }
}

/// Guided Backpropagation of `score` for `targets` (one class per image): `[N, C, H, W]`,
/// and the logits of the same forward pass. `model` must be in inference mode.
pub fn guided_backprop_with_logits(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    score: Score,
) -> (Tensor<4>, Tensor<2>) {
    input_gradient(x, targets, score, |x| model.forward_ops(x, &mut GuidedOps))
}

/// Guided Backpropagation of the target logit (Captum `GuidedBackprop`, with every
/// ReLU-type activation guided; see the module docs).
pub fn guided_backprop(model: &Classifier, x: Tensor<4>, targets: &[usize]) -> Tensor<4> {
    guided_backprop_with_logits(model, x, targets, Score::Logit).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    /// The activation's output and d(Σ w ⊙ act(2x)/2)/dx, on `device`: a tracked operation
    /// on either side of the activation, so that a checkpointing device has inputs and
    /// outputs to recompute.
    fn run(device: &Device, x: &[f32], w: &[f32], upper: Option<f64>) -> (Vec<f32>, Vec<f32>) {
        let x = Tensor::<1>::from_floats(x, device).require_grad();
        let w = Tensor::<1>::from_floats(w, device);
        let y = guided_relu(x.clone() * 2.0, upper) / 2.0;
        let grads = (y.clone() * w).sum().backward();
        (
            values(y.inner()),
            values(x.grad(&grads).expect("a gradient")),
        )
    }

    #[test]
    fn backward_passes_positive_gradient_at_active_units_only() {
        // 2x: -4, 0, 1, 6, 10, 12, 16 (ReLU6 clips the last three; 12 exactly at the clip)
        let x = [-2.0, 0.0, 0.5, 3.0, 5.0, 6.0, 8.0];
        let w = [1.0, 1.0, -1.0, 2.0, 1.0, 3.0, 1.0];
        for device in [
            Device::default().autodiff(),
            Device::default().autodiff().gradient_checkpointing(),
        ] {
            // ReLU: where 2x > 0 the weight if positive (times 2 / 2), else 0
            let (y, g) = run(&device, &x, &w, None);
            assert_eq!(y, [0.0, 0.0, 0.5, 3.0, 5.0, 6.0, 8.0]);
            assert_eq!(g, [0.0, 0.0, 0.0, 2.0, 1.0, 3.0, 1.0]);
            // ReLU6: also 0 where 2x ≥ 6, as PyTorch's hardtanh gradient is there
            let (y, g) = run(&device, &x, &w, Some(6.0));
            assert_eq!(y, [0.0, 0.0, 0.5, 3.0, 3.0, 3.0, 3.0]);
            assert_eq!(g, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
            let (_, g) = run(&device, &[1.0, 2.0, 2.5], &[-1.0, 1.0, 4.0], Some(6.0));
            assert_eq!(g, [0.0, 1.0, 4.0]);
        }
    }

    #[test]
    fn forward_is_the_plain_activation() {
        let dev = Device::default();
        let x = Tensor::<2>::from_floats([[-1.5, 0.0, 2.0], [5.9, 6.0, 7.25]], &dev);
        let relu = values(burn::tensor::activation::relu(x.clone()));
        let relu6 = values(burn::tensor::activation::relu6(x.clone()));
        // without autodiff, and with it
        assert_eq!(values(guided_relu(x.clone(), None)), relu);
        assert_eq!(values(guided_relu(x.clone(), Some(RELU6_MAX))), relu6);
        let xa = x.clone().autodiff().require_grad();
        assert_eq!(values(guided_relu(xa.clone(), None).inner()), relu);
        assert_eq!(values(guided_relu(xa, Some(RELU6_MAX)).inner()), relu6);
    }
}
