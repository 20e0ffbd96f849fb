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

use burn::backend::TensorMetadata;
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

use crate::elementwise::{Real, map};

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
    /// `∂x = ∂y` where `0 < y` (and `y < 6` under [`Ceiling::Six`]), else 0; `y` is the
    /// forward output.
    fn rectify_grad(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        ceiling: Ceiling,
    ) -> FloatTensor<Self>;
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

fn relu_grad_value<E: Real>(grad: E, y: E) -> E {
    if y > E::ZERO { grad } else { E::ZERO }
}

fn relu6_grad_value<E: Real>(grad: E, y: E) -> E {
    if y > E::ZERO && y < E::of(6.0) {
        grad
    } else {
        E::ZERO
    }
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
    fn rectify_grad(y: FlexTensor, grad: FlexTensor, ceiling: Ceiling) -> FlexTensor {
        assert_eq!(y.shape(), grad.shape(), "rectifier backward: shapes differ");
        assert_eq!(y.dtype(), grad.dtype(), "rectifier backward: dtypes differ");
        let y = y.to_contiguous();
        match (y.dtype(), ceiling) {
            (DType::F32, Ceiling::None) => map(grad, y.as_slice(), relu_grad_value::<f32>),
            (DType::F64, Ceiling::None) => map(grad, y.as_slice(), relu_grad_value::<f64>),
            (DType::F32, Ceiling::Six) => map(grad, y.as_slice(), relu6_grad_value::<f32>),
            (DType::F64, Ceiling::Six) => map(grad, y.as_slice(), relu6_grad_value::<f64>),
            (other, _) => panic!("rectifier backward: {other:?} is not supported"),
        }
    }
}

#[derive(Debug)]
struct RectifierBackward(Ceiling);

impl<B: RectifierKernels> Backward<B, 1> for RectifierBackward {
    /// The forward output.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let y = ops.state;
        let ceiling = self.0;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::rectify_grad(y, grad, ceiling)
        });
    }
}

impl<B: RectifierBackend + RectifierKernels, C: CheckpointStrategy> RectifierBackend
    for Autodiff<B, C>
{
    fn rectify(x: FloatTensor<Self>, ceiling: Ceiling) -> FloatTensor<Self> {
        match RectifierBackward(ceiling)
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::rectify(x.into_primitive(), ceiling);
                prep.finish(y.clone(), y)
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

    /// A tensor shared with another owner is left untouched.
    #[test]
    fn relu6_does_not_write_into_a_shared_tensor() {
        let x = Tensor::<1>::from_data([-2.0f32, 8.0, 1.0], &Device::default());
        let y = relu6(x.clone());
        assert_eq!(values(x), vec![-2.0, 8.0, 1.0]);
        assert_eq!(values(y), vec![0.0, 6.0, 1.0]);
    }
}
