//! A convolution whose forward value is given and whose backward pass is a sum of
//! rule-modified convolution input gradients: the one autodiff operation every LRP
//! convolution needs.
//!
//! ```text
//! forward:   y = value                       (computed before, e.g. shared by composites)
//! backward:  ∂x = Σ_k a_k ⊙ W_kᵀ(s_k ⊙ ∂y)   (W_kᵀ: the convolution's input gradient)
//! ```
//!
//! A rule term `k` with modified input `a_k`, modified weights `W_k` and output factor
//! `s_k` (its group's `coefficient / stabilize(Σ z)`, its sign and output mask) passes
//! back exactly the relevance of Zennit's `BasicHook` (see [`crate::rules`]). Written
//! with plain autodiff operations (`z + (g − sg(g))`, as [`crate::lrp`] does for the dense
//! layers) each term's convolution would run forward once more on every pass; here the
//! forward values come from whoever computed them (once per batch for all composites, see
//! [`crate::lrp::LayerValues`]) and the pass records one node per layer.
//!
//! Like [`crate::guided`], a burn backend extension implemented for `Autodiff<B, C>` and
//! for `Flex`, whose forward-only implementation returns `value`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use leukex_models::conv::ConvGradients;
use leukex_models::elementwise::ElementwiseKernels;

/// Which factors of [`RelevanceConvBackend::relevance_conv`] apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorsUsed {
    pub input: bool,
    pub output: bool,
}

/// Convolution with a given forward value and a rule's backward pass (module docs).
#[backend_extension(Flex, Autodiff)]
pub trait RelevanceConvBackend: Backend {
    /// Forward: `value`. Backward: `in_factor ⊙ conv2d_input_grad(x, weight, out_factor ⊙
    /// ∂y)`, a factor whose flag in `used` is false being 1 (its tensor is ignored: the
    /// extension macro passes no optional tensors). One term; the caller sums terms.
    fn relevance_conv(
        x: FloatTensor<Self>,
        value: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        in_factor: FloatTensor<Self>,
        out_factor: FloatTensor<Self>,
        used: FactorsUsed,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// A tensor with one tensor's value and another's backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait WithBackwardBackend: Backend {
    /// Forward: `value`. Backward: the upstream gradient, unchanged, to `g` (which must have
    /// `value`'s shape).
    fn with_backward_of(value: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl WithBackwardBackend for Flex {
    fn with_backward_of(value: FloatTensor<Self>, _g: FloatTensor<Self>) -> FloatTensor<Self> {
        value
    }
}

#[derive(Debug)]
struct WithBackwardOf;

impl<B: Backend> Backward<B, 1> for WithBackwardOf {
    type State = ();

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| grad);
    }
}

impl<B: Backend, C: CheckpointStrategy> WithBackwardBackend for Autodiff<B, C> {
    fn with_backward_of(value: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        WithBackwardOf
            .prepare::<C>([g.node()])
            .compute_bound()
            .stateless(value.into_primitive())
    }
}

/// `value` in value, `g`'s backward pass: what `value + (g − sg(g))` computes, as one
/// autodiff node and no arithmetic (the value is exactly `value`, not `value + 0`).
pub fn with_backward_of<const D: usize>(value: Tensor<D>, g: Tensor<D>) -> Tensor<D> {
    assert_eq!(value.dims(), g.dims(), "with_backward_of: shapes differ");
    Tensor::from_dispatch(<Dispatch as WithBackwardBackend>::with_backward_of(
        value.inner().autodiff().into_dispatch(),
        g.into_dispatch(),
    ))
}

/// A sum whose backward pass splits the upstream relevance between its two terms in
/// proportion to their values (LRP's rule for residual sums).
#[backend_extension(Flex, Autodiff)]
pub trait ProportionalSumBackend: Backend {
    /// Forward: `value` (the sum `a + b`, computed by the caller). Backward: `∂a = (∂y ⊙
    /// s) ⊙ a` and `∂b = (∂y ⊙ s) ⊙ b`, `a` and `b` their forward values and `s` a
    /// constant (`1 / stabilize(a + b)`). As autodiff through `(a_d ⊙ a + b_d ⊙ b) ⊙ s`
    /// (`_d`: detached) computes it, in the same order, without that expression's five
    /// forward passes over the tensors.
    fn proportional_sum(
        value: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl ProportionalSumBackend for Flex {
    fn proportional_sum(
        value: FloatTensor<Self>,
        _a: FloatTensor<Self>,
        _b: FloatTensor<Self>,
        _scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        value
    }
}

#[derive(Debug)]
struct ProportionalSumBackward;

impl<B: ElementwiseKernels> Backward<B, 2> for ProportionalSumBackward {
    /// The values of `a` and `b`, and the scale.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (a, b, scale) = ops.state;
        let [node_a, node_b] = ops.parents;
        let share = B::product(grads.consume::<B>(&ops.node), scale);
        if let Some(node) = node_a {
            grads.register::<B>(node.id, B::product(share.clone(), a));
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, B::product(share, b));
        }
    }
}

impl<B: ElementwiseKernels, C: CheckpointStrategy> ProportionalSumBackend for Autodiff<B, C> {
    fn proportional_sum(
        value: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match ProportionalSumBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (
                    a.into_primitive(),
                    b.into_primitive(),
                    scale.into_primitive(),
                ),
                value.into_primitive(),
            ),
            OpsKind::UnTracked(prep) => prep.finish(value.into_primitive()),
        }
    }
}

/// `a + b` in value (`value`, computed by the caller), splitting the relevance in
/// proportion to `a` and `b`, scaled by the constant `scale` (see
/// [`ProportionalSumBackend`]).
pub fn proportional_sum(
    value: Tensor<4>,
    a: Tensor<4>,
    b: Tensor<4>,
    scale: Tensor<4>,
) -> Tensor<4> {
    let on = |t: Tensor<4>| t.inner().autodiff().into_dispatch();
    Tensor::from_dispatch(<Dispatch as ProportionalSumBackend>::proportional_sum(
        on(value),
        a.into_dispatch(),
        b.into_dispatch(),
        on(scale),
    ))
}

/// Without autodiff there is nothing to propagate: the value.
impl RelevanceConvBackend for Flex {
    fn relevance_conv(
        _x: FloatTensor<Self>,
        value: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _in_factor: FloatTensor<Self>,
        _out_factor: FloatTensor<Self>,
        _used: FactorsUsed,
        _options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        value
    }
}

/// The backward step. Its state holds the input's shape (as [`shape_only`]), the
/// weight and the factors: constants of the pass, not tracked.
#[derive(Debug)]
struct RelevanceConvBackward;

/// (input's shape, weight, input factor, output factor, options).
type State<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    Option<FloatTensor<B>>,
    Option<FloatTensor<B>>,
    ConvOptions<2>,
);

impl<B: ConvGradients + ElementwiseKernels> Backward<B, 1> for RelevanceConvBackward {
    type State = State<B>;

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (x, weight, in_factor, out_factor, options) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let grad = match out_factor {
                Some(s) => B::product(grad, s),
                None => grad,
            };
            let grad = B::conv2d_input_grad(x, weight, grad, options);
            match in_factor {
                Some(a) => B::product(grad, a),
                None => grad,
            }
        });
    }
}

impl<B: ConvGradients + ElementwiseKernels, C: CheckpointStrategy> RelevanceConvBackend
    for Autodiff<B, C>
{
    fn relevance_conv(
        x: FloatTensor<Self>,
        value: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        in_factor: FloatTensor<Self>,
        out_factor: FloatTensor<Self>,
        used: FactorsUsed,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match RelevanceConvBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (
                    shape_only::<B>(x.into_primitive()),
                    weight.into_primitive(),
                    used.input.then(|| in_factor.into_primitive()),
                    used.output.then(|| out_factor.into_primitive()),
                    options,
                ),
                value.into_primitive(),
            ),
            OpsKind::UnTracked(prep) => prep.finish(value.into_primitive()),
        }
    }
}

/// A tensor of `x`'s shape, dtype and device that holds one zero, broadcast: all an
/// input gradient reads of the convolution's input (its values only enter the weight
/// gradient, never taken here). Keeping `x` itself would hold every layer's input until
/// the backward pass reached it; with the rectifiers' bit masks
/// ([`leukex_models::relu`]) nothing else does, so `leukex explain --method gradient`
/// frees each activation once the next layer has read it.
fn shape_only<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    use burn::backend::TensorMetadata;
    let (shape, dtype, device) = (x.shape(), x.dtype(), x.device());
    let one = Shape::new([1; 4]);
    B::float_expand(B::float_zeros(one, &device, dtype.into()), shape)
}

/// One rule term of a convolution (see the module docs); `x` is tracked, the others are
/// constants of the pass.
pub struct ConvTerm {
    pub weight: Tensor<4>,
    /// `a_k`, the modified input (`None`: 1).
    pub in_factor: Option<Tensor<4>>,
    /// `s_k`, the output factor (`None`: 1).
    pub out_factor: Option<Tensor<4>>,
}

/// A tensor with the value `value` whose backward pass to `x` is the sum of the terms'
/// (module docs). With no terms, `value` untracked.
pub fn relevance_conv(
    x: Tensor<4>,
    value: Tensor<4>,
    terms: Vec<ConvTerm>,
    options: &ConvOptions<2>,
) -> Tensor<4> {
    // The constants join `x` on the autodiff backend, untracked (as the LRP weights do).
    let on = |t: Tensor<4>| t.inner().autodiff().into_dispatch();
    let mut value = Some(value);
    let mut out: Option<Tensor<4>> = None;
    for term in terms {
        // The first term carries the value, the others exactly 0, so the sum is `value`.
        let v = match value.take() {
            Some(v) => v,
            None => out
                .as_ref()
                .expect("set by the first term")
                .clone()
                .inner()
                .zeros_like(),
        };
        let used = FactorsUsed {
            input: term.in_factor.is_some(),
            output: term.out_factor.is_some(),
        };
        // An unused factor's place is taken by the weight (any tensor; ignored).
        let placeholder = || term.weight.clone();
        let in_factor = term.in_factor.unwrap_or_else(placeholder);
        let out_factor = term.out_factor.unwrap_or_else(placeholder);
        let y = Tensor::from_dispatch(<Dispatch as RelevanceConvBackend>::relevance_conv(
            x.clone().into_dispatch(),
            on(v),
            on(term.weight),
            on(in_factor),
            on(out_factor),
            used,
            options.clone(),
        ));
        out = Some(match out {
            Some(o) => o + y,
            None => y,
        });
    }
    match (out, value) {
        (Some(out), _) => out,
        (None, Some(value)) => value.inner().autodiff(),
        (None, None) => unreachable!("the value is taken only by a term"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    fn seq(shape: [usize; 4], scale: f32, offset: f32) -> Tensor<4> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.37 + offset).sin()) * scale)
            .collect();
        Tensor::from_data(TensorData::new(data, shape), &Device::default())
    }

    /// The backward step keeps the input's shape, not the input: once the caller drops
    /// its own handle, the input's buffer is free (the gradient pass frees each layer's
    /// activations this way).
    #[test]
    fn the_backward_step_does_not_hold_the_input() {
        use burn::backend::AutodiffBackend;
        use burn::backend::ops::FloatTensorOps;
        type Tracked = Autodiff<Flex>;
        let flex = |shape: [usize; 4]| {
            let n = shape.iter().product();
            let data = TensorData::new((0..n).map(|i| i as f32 * 0.1).collect::<Vec<_>>(), shape);
            Tracked::from_inner(Flex::float_from_data(data, &Default::default()))
        };
        let x = Tracked::float_set_require_grad(flex([1, 2, 5, 5]), true);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let kept = x.clone();
        let used = FactorsUsed {
            input: false,
            output: false,
        };
        let w = flex([3, 2, 3, 3]);
        let y = <Tracked as RelevanceConvBackend>::relevance_conv(
            x,
            flex([1, 3, 5, 5]),
            w.clone(),
            w.clone(),
            w,
            used,
            options,
        );
        assert!(Tracked::inner(kept).is_unique());
        drop(y);
    }

    /// The backward pass equals autodiff through `Σ_k s_k ⊙ conv(a_k ⊙ x; W_k)`, whose
    /// x-gradient is `Σ_k a_k ⊙ W_kᵀ(s_k ⊙ ∂y)`, on a strided, asymmetrically padded,
    /// grouped convolution; the forward value is `value`, untouched.
    #[test]
    fn backward_is_the_sum_of_the_terms_input_gradients() {
        let options = ConvOptions::new_with_padding([2, 1], [(0, 1), (1, 2)], [1, 1], 2);
        let x = seq([2, 4, 7, 6], 1.0, 0.1);
        let w = [seq([6, 2, 3, 3], 0.5, 1.0), seq([6, 2, 3, 3], 0.3, 2.0)];
        let a = [seq([2, 4, 7, 6], 1.0, 3.0), x.ones_like()];
        let y_shape = conv2d(x.clone(), w[0].clone(), None, options.clone()).dims();
        let s = [seq(y_shape, 2.0, 4.0), seq(y_shape, 1.0, 5.0)];
        let upstream = seq(y_shape, 1.0, 6.0);

        let xa = x.clone().autodiff().require_grad();
        let mut reference = None;
        for k in 0..2 {
            let term = conv2d(
                xa.clone() * a[k].clone().autodiff(),
                w[k].clone().autodiff(),
                None,
                options.clone(),
            ) * s[k].clone().autodiff();
            reference = Some(match reference {
                Some(r) => r + term,
                None => term,
            });
        }
        let grads = (reference.unwrap() * upstream.clone().autodiff())
            .sum()
            .backward();
        let expected = values(xa.grad(&grads).unwrap());

        let value = seq(y_shape, 3.0, 7.0);
        let xb = x.autodiff().require_grad();
        let terms = (0..2)
            .map(|k| ConvTerm {
                weight: w[k].clone(),
                in_factor: Some(a[k].clone()),
                out_factor: Some(s[k].clone()),
            })
            .collect();
        let y = relevance_conv(xb.clone(), value.clone(), terms, &options);
        assert_eq!(values(y.clone().inner()), values(value));
        let grads = (y * upstream.autodiff()).sum().backward();
        let got = values(xb.grad(&grads).unwrap());
        assert_eq!(got.len(), expected.len());
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.1);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5 * scale, "{g} vs {e}");
        }
    }

    /// The split equals autodiff through `(a_d ⊙ a + b_d ⊙ b) ⊙ s` bit for bit, in value
    /// (`value`, untouched) and in both gradients.
    #[test]
    fn proportional_sum_splits_as_the_autodiff_expression() {
        let shape = [2, 3, 4, 5];
        let (a0, b0) = (seq(shape, 1.0, 0.3), seq(shape, 0.7, 1.9));
        let s = seq(shape, 2.0, 3.1);
        let w = seq(shape, 1.0, 4.4);
        let (a, b) = (
            a0.clone().autodiff().require_grad(),
            b0.clone().autodiff().require_grad(),
        );
        let value = a0.clone() + b0.clone();
        let reference = with_backward_of(
            value.clone(),
            (a0.clone().autodiff() * a.clone() + b0.clone().autodiff() * b.clone())
                * s.clone().autodiff(),
        );
        let g_ref = (reference * w.clone().autodiff()).sum().backward();
        let (a2, b2) = (a0.autodiff().require_grad(), b0.autodiff().require_grad());
        let ours = proportional_sum(value.clone(), a2.clone(), b2.clone(), s);
        assert_eq!(values(ours.clone().inner()), values(value));
        let g = (ours * w.autodiff()).sum().backward();
        assert_eq!(
            values(a2.grad(&g).unwrap()),
            values(a.grad(&g_ref).unwrap())
        );
        assert_eq!(
            values(b2.grad(&g).unwrap()),
            values(b.grad(&g_ref).unwrap())
        );
        assert!(values(a.grad(&g_ref).unwrap()).iter().any(|v| *v != 0.0));
    }

    #[test]
    fn with_backward_of_has_one_value_and_the_others_gradient() {
        let x = seq([1, 2, 3, 2], 1.0, 0.5).autodiff().require_grad();
        let value = seq([1, 2, 3, 2], 2.0, 1.5);
        let w = seq([1, 2, 3, 2], 1.0, 2.5);
        let y = with_backward_of(value.clone(), x.clone() * 3.0);
        assert_eq!(values(y.clone().inner()), values(value));
        let grads = (y * w.clone().autodiff()).sum().backward();
        let expected: Vec<f32> = values(w).iter().map(|v| v * 3.0).collect();
        assert_eq!(values(x.grad(&grads).unwrap()), expected);
    }
}
