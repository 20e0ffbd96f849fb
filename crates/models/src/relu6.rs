//! ReLU6 (`min(max(x, 0), 6)`, EfficientNet-Lite0's activation) as one vectorised pass
//! each way.
//!
//! burn computes it as `clamp(0, 6)`: burn-flex's clamp is a per-element closure with a
//! NaN test, and its backward pass is burn's generic one, two `mask_fill`s over the
//! gradient — a third of EfficientNet-Lite0's forward + backward time before this
//! (perf). Here the forward pass is written in place where the tensor is uniquely owned,
//! and the backward pass keeps the gradient where `0 < y < 6` and zeroes it elsewhere
//! (PyTorch's `hardtanh_backward`, strict on both sides; a NaN gives 0), in place too.
//! A NaN input stays NaN, as in PyTorch.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind, unary};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

/// ReLU6 with its own backward pass (module docs).
#[backend_extension(Flex, Autodiff)]
pub trait Relu6Backend: Backend {
    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The kernels behind [`Relu6Backend`] on a backend without autodiff.
pub trait Relu6Kernels: Backend {
    /// `∂x = ∂y` where `0 < y < 6`, else 0; `y` is the forward output.
    fn relu6_grad(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The float types the kernels handle (`f32`, and `f64` for the reference checks).
trait Real: burn::tensor::Element + bytemuck::Pod + PartialOrd + Send + Sync {
    const ZERO: Self;
    const SIX: Self;
    fn is_nan(self) -> bool;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const SIX: Self = 6.0;
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
        }
    };
}
real!(f32);
real!(f64);

/// `f(value, other)` for every element of `t` (`other` read alongside, or 0), in place
/// where `t` owns its contiguous buffer alone, else into a new one.
/// (`f` is a type parameter, not a `fn` pointer, so that it is inlined and the loop
/// vectorised: as a pointer it was a call per element.)
fn map<E: Real, F: Fn(E, E) -> E + Copy + Send + Sync>(
    mut t: FlexTensor,
    other: Option<&[E]>,
    f: F,
) -> FlexTensor {
    let shape = t.shape();
    let dtype = t.dtype();
    let whole = t.layout().start_offset() == 0 && t.layout().is_contiguous();
    let n = shape.num_elements();
    let apply = move |d: &mut [E], s: Option<&[E]>, o: Option<&[E]>| match (s, o) {
        (Some(s), Some(o)) => d
            .iter_mut()
            .zip(s.iter().zip(o))
            .for_each(|(d, (s, o))| *d = f(*s, *o)),
        (Some(s), None) => d.iter_mut().zip(s).for_each(|(d, s)| *d = f(*s, E::ZERO)),
        (None, Some(o)) => d.iter_mut().zip(o).for_each(|(d, o)| *d = f(*d, *o)),
        (None, None) => d.iter_mut().for_each(|d| *d = f(*d, E::ZERO)),
    };
    if whole && let Some(data) = t.try_storage_mut::<E>() {
        data[..n]
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, d)| apply(d, None, other.map(|o| &o[i * CHUNK..][..d.len()])));
        return t;
    }
    let t = t.to_contiguous();
    let src = t.as_slice::<E>().expect("contiguous tensor");
    let mut out = vec![E::ZERO; n];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, d)| {
        let s = &src[i * CHUNK..][..d.len()];
        apply(d, Some(s), other.map(|o| &o[i * CHUNK..][..d.len()]))
    });
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), dtype)
}

fn relu6_value<E: Real>(x: E, _: E) -> E {
    // max/min map NaN to a bound; PyTorch's clamp keeps it.
    let c = x.max(E::ZERO).min(E::SIX);
    if x.is_nan() { x } else { c }
}

fn relu6_grad_value<E: Real>(grad: E, y: E) -> E {
    if y > E::ZERO && y < E::SIX {
        grad
    } else {
        E::ZERO
    }
}

impl Relu6Backend for Flex {
    fn relu6(x: FlexTensor) -> FlexTensor {
        match x.dtype() {
            DType::F32 => map(x, None, relu6_value::<f32>),
            DType::F64 => map(x, None, relu6_value::<f64>),
            _ => Flex::float_clamp(x, 0.0.into(), 6.0.into()),
        }
    }
}

impl Relu6Kernels for Flex {
    fn relu6_grad(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        assert_eq!(y.shape(), grad.shape(), "relu6 backward: shapes differ");
        assert_eq!(y.dtype(), grad.dtype(), "relu6 backward: dtypes differ");
        let y = y.to_contiguous();
        match y.dtype() {
            DType::F32 => map(grad, y.as_slice(), relu6_grad_value::<f32>),
            DType::F64 => map(grad, y.as_slice(), relu6_grad_value::<f64>),
            other => panic!("relu6 backward: {other:?} is not supported"),
        }
    }
}

#[derive(Debug)]
struct Relu6Backward;

impl<B: Relu6Kernels> Backward<B, 1> for Relu6Backward {
    /// The forward output.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let y = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::relu6_grad(y, grad));
    }
}

impl<B: Relu6Backend + Relu6Kernels, C: CheckpointStrategy> Relu6Backend for Autodiff<B, C> {
    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match Relu6Backward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::relu6(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::relu6(x.into_primitive())),
        }
    }
}

/// `min(max(x, 0), 6)` on dispatch tensors, with the backward pass of the module docs.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Relu6Backend>::relu6(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    /// Values equal burn's `clamp(0, 6)`; input gradients equal burn's off the bounds and
    /// are 0 at them (PyTorch's `hardtanh_backward`; burn's clamp passes the gradient
    /// there), on a tensor big enough to be cut into parallel tasks; a NaN stays NaN.
    #[test]
    fn relu6_equals_burns_clamp_with_pytorchs_gradient_at_the_bounds() {
        let dev = Device::default().autodiff();
        let n = 3 * CHUNK + 7;
        let data: Vec<f32> = (0..n)
            .map(|i| match i % 9 {
                0 => 0.0,
                1 => 6.0,
                _ => ((i * 31 % 200) as f32 - 60.0) * 0.08,
            })
            .collect();
        let weights: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
        let x = Tensor::<1>::from_data(TensorData::new(data.clone(), [n]), &dev).require_grad();
        let w = Tensor::<1>::from_data(TensorData::new(weights, [n]), &dev);

        let reference = x.clone().clamp(0.0, 6.0);
        let ours = relu6(x.clone());
        assert!(
            values(reference.clone()) == values(ours.clone()),
            "values differ"
        );
        let g_ref = (reference * w.clone()).sum().backward();
        let g_ours = (ours * w).sum().backward();
        let (r, o) = (
            values(x.grad(&g_ref).expect("gradient")),
            values(x.grad(&g_ours).expect("gradient")),
        );
        for (i, ((x, r), o)) in data.iter().zip(&r).zip(&o).enumerate() {
            let want = if *x == 0.0 || *x == 6.0 { 0.0 } else { *r };
            assert!(
                *o == want,
                "element {i} (x = {x}): gradient {o}, want {want}"
            );
        }
        assert!(o.iter().filter(|v| **v != 0.0).count() > n / 4);

        let nan = Tensor::<1>::from_data([f32::NAN, -1.0, 7.0, 3.0], &Device::default());
        let v = values(relu6(nan));
        assert!(v[0].is_nan());
        assert_eq!(&v[1..], &[0.0, 6.0, 3.0]);
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
