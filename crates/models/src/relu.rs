//! ReLU and ReLU6 (`min(max(x, 0), 6)`, EfficientNet-Lite0's activation) as one
//! parallel pass each way ([`crate::elementwise::map`]).
//!
//! burn-flex runs ReLU on the calling thread and its backward pass as a `mask_fill` over
//! the gradient; ReLU6 is burn's `clamp(0, 6)`, a per-element closure with a NaN test,
//! whose backward pass is burn's generic one, two `mask_fill`s over the gradient — a third
//! of EfficientNet-Lite0's forward + backward time before this (perf). Here the forward
//! pass is written in place where the tensor is uniquely owned, and the backward pass
//! keeps the gradient where `0 < y` (ReLU, PyTorch's `threshold_backward`) or `0 < y < 6`
//! (ReLU6, PyTorch's `hardtanh_backward`, strict on both sides) and zeroes it elsewhere (a
//! NaN gives 0), in place too. A NaN input stays NaN, as in PyTorch.
//!
//! The backward pass needs only where the gradient passes, so that is all a tracked
//! pass keeps: one bit per element, taken while the forward pass writes each chunk
//! ([`map_marking`]), not the output itself. The output can then be freed as soon as the
//! next layer has read it, unless that layer keeps it (a convolution whose weight
//! gradient is wanted does). In `leukex explain --method gradient` on ResNet18 the kept
//! outputs were 74 MB of a 204 MB peak, each one fresh pages to fault in.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;

use crate::elementwise::{MARK_BITS, Real, map, map_marked, map_marking};

/// Where a rectifier clips from above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// ReLU: no upper bound.
    None,
    /// ReLU6.
    Six,
}

/// ReLU and ReLU6 with their own backward passes (module docs).
#[backend_extension(Flex, Autodiff)]
pub trait RectifierBackend: Backend {
    fn rectify(x: FloatTensor<Self>, ceiling: Ceiling) -> FloatTensor<Self>;
}

/// The kernels behind [`RectifierBackend`] on a backend without autodiff.
pub trait RectifierKernels: Backend {
    /// The rectified tensor and where its gradient passes: `0 < y` (and `y < 6` under
    /// [`Ceiling::Six`]), bit `i % 64` of word `i / 64` for element `i`.
    fn rectify_marking(x: FloatTensor<Self>, ceiling: Ceiling) -> (FloatTensor<Self>, Vec<u64>);

    /// `∂x = ∂y` where the bit of [`rectify_marking`](Self::rectify_marking) is set, else 0.
    fn rectify_grad(passes: &[u64], grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn relu_value<E: Real>(x: E, _: E) -> E {
    // max maps NaN to 0; PyTorch's ReLU keeps it.
    if x.is_nan() { x } else { x.max(E::ZERO) }
}

fn relu6_value<E: Real>(x: E, _: E) -> E {
    // max/min map NaN to a bound; PyTorch's clamp keeps it.
    let c = x.max(E::ZERO).min(E::of(6.0));
    if x.is_nan() { x } else { c }
}

/// Whether the gradient passes an output `y`: `0 < y` (and `y < 6` under ReLU6); false
/// for NaN.
fn passes<E: Real>(y: E, ceiling: Ceiling) -> bool {
    match ceiling {
        Ceiling::None => y > E::ZERO,
        Ceiling::Six => y > E::ZERO && y < E::of(6.0),
    }
}

/// Sets bit `i % 64` of `words[i / 64]` where the gradient passes `y[i]`.
fn mark_passes<E: Real>(y: &[E], words: &mut [u64], ceiling: Ceiling) {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        let y32: &[f32] = bytemuck::cast_slice(y);
        let whole = y.len() / MARK_BITS;
        mark_passes_sse2(&y32[..whole * MARK_BITS], &mut words[..whole], ceiling);
        return mark_passes_scalar(&y[whole * MARK_BITS..], &mut words[whole..], ceiling);
    }
    mark_passes_scalar(y, words, ceiling)
}

fn mark_passes_scalar<E: Real>(y: &[E], words: &mut [u64], ceiling: Ceiling) {
    for (y, w) in y.chunks(MARK_BITS).zip(words) {
        *w = y.iter().enumerate().fold(0, |bits, (j, v)| {
            bits | (u64::from(passes(*v, ceiling)) << j)
        });
    }
}

/// [`mark_passes_scalar`] on whole words of `f32`, four comparisons at a time (the
/// scalar loop is not vectorised and cost as much as the rectifier itself).
#[cfg(target_arch = "x86_64")]
fn mark_passes_sse2(y: &[f32], words: &mut [u64], ceiling: Ceiling) {
    use std::arch::x86_64::*;
    for (y, w) in y.chunks_exact(MARK_BITS).zip(words) {
        let mut bits = 0u64;
        for (k, v) in y.chunks_exact(4).enumerate() {
            // SAFETY: SSE2 is part of every x86-64 CPU; the load reads the 4 floats of `v`.
            // `cmpgt` / `cmplt` are false for NaN, as `passes` is.
            let mask = unsafe {
                let v = _mm_loadu_ps(v.as_ptr());
                let above = _mm_cmpgt_ps(v, _mm_setzero_ps());
                let inside = match ceiling {
                    Ceiling::None => above,
                    Ceiling::Six => _mm_and_ps(above, _mm_cmplt_ps(v, _mm_set1_ps(6.0))),
                };
                _mm_movemask_ps(inside)
            };
            bits |= u64::from(mask as u8 & 0xf) << (4 * k);
        }
        *w = bits;
    }
}

fn rectify_marking_typed<E: Real>(x: FlexTensor, ceiling: Ceiling) -> (FlexTensor, Vec<u64>) {
    let mark = move |y: &[E], w: &mut [u64]| mark_passes(y, w, ceiling);
    match ceiling {
        Ceiling::None => map_marking(x, relu_value::<E>, mark),
        Ceiling::Six => map_marking(x, relu6_value::<E>, mark),
    }
}

fn pass_grad<E: Real>(grad: E, passes: bool) -> E {
    if passes { grad } else { E::ZERO }
}

impl RectifierBackend for Flex {
    fn rectify(x: FlexTensor, ceiling: Ceiling) -> FlexTensor {
        match (x.dtype(), ceiling) {
            (DType::F32, Ceiling::None) => map(x, None, relu_value::<f32>),
            (DType::F64, Ceiling::None) => map(x, None, relu_value::<f64>),
            (DType::F32, Ceiling::Six) => map(x, None, relu6_value::<f32>),
            (DType::F64, Ceiling::Six) => map(x, None, relu6_value::<f64>),
            (_, Ceiling::None) => Flex::relu(x),
            (_, Ceiling::Six) => Flex::float_clamp(x, 0.0.into(), 6.0.into()),
        }
    }
}

impl RectifierKernels for Flex {
    fn rectify_marking(x: FlexTensor, ceiling: Ceiling) -> (FlexTensor, Vec<u64>) {
        match x.dtype() {
            DType::F32 => rectify_marking_typed::<f32>(x, ceiling),
            DType::F64 => rectify_marking_typed::<f64>(x, ceiling),
            other => panic!("rectifier: {other:?} is not supported with a backward pass"),
        }
    }

    fn rectify_grad(passes: &[u64], grad: FlexTensor) -> FlexTensor {
        match grad.dtype() {
            DType::F32 => map_marked(grad, passes, pass_grad::<f32>),
            DType::F64 => map_marked(grad, passes, pass_grad::<f64>),
            other => panic!("rectifier backward: {other:?} is not supported"),
        }
    }
}

#[derive(Debug)]
struct RectifierBackward;

impl<B: RectifierKernels> Backward<B, 1> for RectifierBackward {
    /// Where the gradient passes ([`RectifierKernels::rectify_marking`]).
    type State = Vec<u64>;

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let passes = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::rectify_grad(&passes, grad)
        });
    }
}

impl<B: RectifierBackend + RectifierKernels, C: CheckpointStrategy> RectifierBackend
    for Autodiff<B, C>
{
    fn rectify(x: FloatTensor<Self>, ceiling: Ceiling) -> FloatTensor<Self> {
        match RectifierBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, passes) = B::rectify_marking(x.into_primitive(), ceiling);
                prep.finish(passes, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rectify(x.into_primitive(), ceiling)),
        }
    }
}

/// `max(x, 0)` on dispatch tensors, with the backward pass of the module docs.
pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as RectifierBackend>::rectify(
        x.into_dispatch(),
        Ceiling::None,
    ))
}

/// `min(max(x, 0), 6)` on dispatch tensors, with the backward pass of the module docs.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as RectifierBackend>::rectify(
        x.into_dispatch(),
        Ceiling::Six,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    /// `ours` against `reference` on `data` (an autodiff tensor cut into parallel tasks):
    /// the values must be equal; returns the input gradients of `Σ w·f(x)`, reference's
    /// and ours, for weights `w` that vary.
    fn against(
        data: &[f32],
        reference: impl Fn(Tensor<1>) -> Tensor<1>,
        ours: impl Fn(Tensor<1>) -> Tensor<1>,
    ) -> (Vec<f32>, Vec<f32>) {
        let dev = Device::default().autodiff();
        let n = data.len();
        let weights: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
        let x = Tensor::<1>::from_data(TensorData::new(data.to_vec(), [n]), &dev).require_grad();
        let w = Tensor::<1>::from_data(TensorData::new(weights, [n]), &dev);
        let (r, o) = (reference(x.clone()), ours(x.clone()));
        assert!(values(r.clone()) == values(o.clone()), "values differ");
        let gradient = |y: Tensor<1>| {
            let g = (y * w.clone()).sum().backward();
            values(x.grad(&g).expect("gradient"))
        };
        let (r, o) = (gradient(r), gradient(o));
        assert!(o.iter().filter(|v| **v != 0.0).count() > n / 4);
        (r, o)
    }

    /// Values equal burn's `clamp(0, 6)`; input gradients equal burn's off the bounds and
    /// are 0 at them (PyTorch's `hardtanh_backward`; burn's clamp passes the gradient
    /// there); a NaN stays NaN.
    #[test]
    fn relu6_equals_burns_clamp_with_pytorchs_gradient_at_the_bounds() {
        let n = 3 * crate::elementwise::CHUNK + 7;
        let data: Vec<f32> = (0..n)
            .map(|i| match i % 9 {
                0 => 0.0,
                1 => 6.0,
                _ => ((i * 31 % 200) as f32 - 60.0) * 0.08,
            })
            .collect();
        let (r, o) = against(&data, |x| x.clamp(0.0, 6.0), relu6);
        for (i, ((x, r), o)) in data.iter().zip(&r).zip(&o).enumerate() {
            let want = if *x == 0.0 || *x == 6.0 { 0.0 } else { *r };
            assert!(
                *o == want,
                "element {i} (x = {x}): gradient {o}, want {want}"
            );
        }
        let nan = Tensor::<1>::from_data([f32::NAN, -1.0, 7.0, 3.0], &Device::default());
        let v = values(relu6(nan));
        assert!(v[0].is_nan());
        assert_eq!(&v[1..], &[0.0, 6.0, 3.0]);
    }

    /// Values and input gradients equal burn's ReLU (0 at 0, as PyTorch's
    /// `threshold_backward`); a NaN stays NaN.
    #[test]
    fn relu_equals_burns_with_its_gradient() {
        let n = 3 * crate::elementwise::CHUNK + 5;
        let data: Vec<f32> = (0..n)
            .map(|i| match i % 7 {
                0 => 0.0,
                _ => ((i * 29 % 150) as f32 - 70.0) * 0.05,
            })
            .collect();
        let (r, o) = against(&data, burn::tensor::activation::relu, relu);
        assert!(r == o, "gradients differ");
        let nan = Tensor::<1>::from_data([f32::NAN, -1.0, 7.0], &Device::default());
        let v = values(relu(nan));
        assert!(v[0].is_nan());
        assert_eq!(&v[1..], &[0.0, 7.0]);
    }

    /// The SIMD marks equal the scalar ones (and `passes`) on the edge values: NaN, ±0,
    /// 6, ±∞, subnormals, both rectifiers, a partial last word.
    #[test]
    fn marks_are_set_exactly_where_the_gradient_passes() {
        let edge = [
            f32::NAN,
            -f32::NAN,
            0.0,
            -0.0,
            6.0,
            6.0 + f32::EPSILON * 6.0,
            6.0 - f32::EPSILON * 3.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE / 4.0,
            -f32::MIN_POSITIVE / 4.0,
            1.5,
            -2.5,
        ];
        let y: Vec<f32> = (0..5 * MARK_BITS + 9)
            .map(|i| edge[i * 7 % edge.len()])
            .collect();
        for ceiling in [Ceiling::None, Ceiling::Six] {
            let words = y.len().div_ceil(MARK_BITS);
            let (mut fast, mut scalar) = (vec![0u64; words], vec![0u64; words]);
            mark_passes(&y, &mut fast, ceiling);
            mark_passes_scalar(&y, &mut scalar, ceiling);
            assert_eq!(fast, scalar, "{ceiling:?}");
            for (i, v) in y.iter().enumerate() {
                let bit = (fast[i / MARK_BITS] >> (i % MARK_BITS)) & 1 == 1;
                assert_eq!(bit, passes(*v, ceiling), "{ceiling:?}: element {i} = {v}");
            }
        }
    }

    /// A tracked rectifier keeps its bit mask, not its output: the output's buffer is
    /// owned by the caller alone, so it is freed once the next layer has read it.
    #[test]
    fn a_tracked_rectifier_does_not_hold_its_output() {
        use burn::backend::AutodiffBackend;
        type Tracked = Autodiff<Flex>;
        let data = TensorData::new(vec![-1.0f32, 2.0, 0.5, -3.0], [4]);
        let x = Flex::float_from_data(data, &Default::default());
        let x = Tracked::float_set_require_grad(Tracked::from_inner(x), true);
        for ceiling in [Ceiling::None, Ceiling::Six] {
            let y = <Tracked as RectifierBackend>::rectify(x.clone(), ceiling);
            assert!(Tracked::inner(y).is_unique(), "{ceiling:?}");
        }
    }

    /// A tensor shared with another owner is left untouched.
    #[test]
    fn relu6_does_not_write_into_a_shared_tensor() {
        let x = Tensor::<1>::from_data([-2.0f32, 8.0, 1.0], &Device::default());
        let y = relu6(x.clone());
        assert_eq!(values(x), vec![-2.0, 8.0, 1.0]);
        assert_eq!(values(y), vec![0.0, 6.0, 1.0]);
    }
}
