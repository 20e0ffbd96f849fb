//! iNNvestigate's BatchNorm layer in the LRP pass (`--innvestigate-compat`, `--paper`),
//! each of its element-wise steps as one parallel pass.
//!
//! Written as tensor operations, the layer was burn's broadcasting arithmetic: `(x −
//! mean)·slope + β` for the value, `x·k`, `+ c`, the stabiliser and a division for the
//! ε rule's factor, then an autodiff product `x · f` whose forward value nobody used.
//! burn-flex runs broadcasting operations on the calling thread: in `leukex explain
//! --paper` on 2 cores they were 40 % of the main thread's samples while the other core
//! waited (perf, docs/benchmarks.md). Here each element is computed once with the same
//! operations in the same order, so the floats are the ones the tensor operations gave
//! (tested), and the factor enters the backward pass only.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::DType;
use leukex_models::elementwise::{ElementwiseKernels, Real, map_channels};

use crate::composite::BatchNormRule;

use crate::rules::{INNVESTIGATE_SAFE_DIVIDE, Stabilizer};
use crate::stabilizer::{stabilized, stabilized_value};

/// The layer's element-wise steps on a backend (module docs). Per-channel operands are
/// `[1, C, 1, 1]`.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormCompatBackend: Backend {
    /// `(x − a)·b + d` per channel; untracked.
    fn channel_affine(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The ε rule's factor `x·k / stabilize(x·k + c)` (signed stabiliser); untracked.
    fn epsilon_factor(
        x: FloatTensor<Self>,
        k: FloatTensor<Self>,
        c: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// Forward: `value`. Backward: `∂x = ∂y ⊙ f`, `f` of `x`'s shape or per channel (what
    /// autodiff through `with_backward_of(value, x · f)` computes, without the product's
    /// forward pass).
    fn scaled_backward(
        value: FloatTensor<Self>,
        x: FloatTensor<Self>,
        f: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Per-channel values of a `[1, C, 1, 1]` tensor.
fn channel_values<E: Real>(t: &FlexTensor) -> Vec<E> {
    t.clone()
        .to_contiguous()
        .as_slice::<E>()
        .expect("contiguous tensor")
        .to_vec()
}

fn channel_affine_typed<E: Real>(
    x: FlexTensor,
    a: &FlexTensor,
    b: &FlexTensor,
    d: &FlexTensor,
) -> FlexTensor {
    let (a, b, d) = (
        channel_values::<E>(a),
        channel_values::<E>(b),
        channel_values::<E>(d),
    );
    let (a, b, d) = (&a[..], &b[..], &d[..]);
    map_channels(x, move |v: E, c| (v - a[c]) * b[c] + d[c])
}

fn epsilon_factor_typed<E: Real>(
    x: FlexTensor,
    k: &FlexTensor,
    c: &FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let (k, cs) = (channel_values::<E>(k), channel_values::<E>(c));
    let (k, cs, epsilon) = (&k[..], &cs[..], E::of(epsilon));
    map_channels(x, move |v: E, ch| {
        let xk = v * k[ch];
        xk / stabilized_value(xk + cs[ch], Stabilizer::Signed, epsilon)
    })
}

/// `grad ⊙ f`, `f` of `grad`'s shape or per channel.
fn scale(grad: FlexTensor, f: FlexTensor) -> FlexTensor {
    if f.shape() == grad.shape() {
        return Flex::product(grad, f);
    }
    match grad.dtype() {
        DType::F32 => {
            let f = channel_values::<f32>(&f);
            let f = &f[..];
            map_channels(grad, move |g: f32, c| g * f[c])
        }
        DType::F64 => {
            let f = channel_values::<f64>(&f);
            let f = &f[..];
            map_channels(grad, move |g: f64, c| g * f[c])
        }
        other => panic!("BatchNorm (iNNvestigate): {other:?} is not supported"),
    }
}

impl BatchNormCompatBackend for Flex {
    fn channel_affine(x: FlexTensor, a: FlexTensor, b: FlexTensor, d: FlexTensor) -> FlexTensor {
        match x.dtype() {
            DType::F32 => channel_affine_typed::<f32>(x, &a, &b, &d),
            DType::F64 => channel_affine_typed::<f64>(x, &a, &b, &d),
            other => panic!("BatchNorm (iNNvestigate): {other:?} is not supported"),
        }
    }

    fn epsilon_factor(x: FlexTensor, k: FlexTensor, c: FlexTensor, epsilon: f64) -> FlexTensor {
        match x.dtype() {
            DType::F32 => epsilon_factor_typed::<f32>(x, &k, &c, epsilon),
            DType::F64 => epsilon_factor_typed::<f64>(x, &k, &c, epsilon),
            other => panic!("BatchNorm (iNNvestigate): {other:?} is not supported"),
        }
    }

    /// Without autodiff there is nothing to propagate: the value.
    fn scaled_backward(value: FlexTensor, _x: FlexTensor, _f: FlexTensor) -> FlexTensor {
        value
    }
}

#[derive(Debug)]
struct ScaledBackward;

impl Backward<Flex, 1> for ScaledBackward {
    /// The factor.
    type State = FlexTensor;

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let f = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| scale(grad, f));
    }
}

/// Under autodiff: the affine value and the factor untracked (constants of the pass).
impl<C: CheckpointStrategy> BatchNormCompatBackend for Autodiff<Flex, C> {
    fn channel_affine(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let i = Self::inner;
        Self::from_inner(Flex::channel_affine(i(x), i(a), i(b), i(d)))
    }

    fn epsilon_factor(
        x: FloatTensor<Self>,
        k: FloatTensor<Self>,
        c: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let i = Self::inner;
        Self::from_inner(Flex::epsilon_factor(i(x), i(k), i(c), epsilon))
    }

    fn scaled_backward(
        value: FloatTensor<Self>,
        x: FloatTensor<Self>,
        f: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match ScaledBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(Self::inner(f), Self::inner(value)),
            OpsKind::UnTracked(prep) => prep.finish(Self::inner(value)),
        }
    }
}

/// A per-channel constant `[C]` as `[1, C, 1, 1]` on the autodiff device.
fn channel(t: Tensor<1>) -> Tensor<4> {
    let c = t.dims()[0];
    t.autodiff().reshape([1, c, 1, 1])
}

/// The layer's per-channel constants, `[1, C, 1, 1]` on the autodiff device.
struct Constants {
    mean: Tensor<4>,
    beta: Tensor<4>,
    /// The layer's own slope `γ/√(σ² + eps)`: its value is `(x − μ)·slope + β`, its
    /// gradient the slope.
    slope: Tensor<4>,
    /// iNNvestigate 2.1.2's "one_linear" fusion `y' = k·x + c`, as written there:
    /// `k = γ/√(σ⁴ + eps)`, `c = β − μ/√(σ⁴ + eps)` (no γ in c).
    k: Tensor<4>,
    c: Tensor<4>,
}

impl Constants {
    fn of(bn: &BatchNorm) -> Self {
        let (gamma, beta) = (channel(bn.gamma.val()), channel(bn.beta.val()));
        let (mean, var) = (
            channel(bn.running_mean.value()),
            channel(bn.running_var.value()),
        );
        let slope = gamma.clone() / (var.clone() + bn.epsilon).sqrt();
        let root = (var.clone() * var + bn.epsilon).sqrt();
        let k = gamma / root.clone();
        let c = beta.clone() - mean.clone() / root;
        Self {
            mean,
            beta,
            slope,
            k,
            c,
        }
    }
}

/// iNNvestigate's BatchNorm layer after a convolution: the value is the BatchNorm's true
/// output of `x` (the convolution's output, carrying its rule's backward), the backward
/// pass is `rule` on iNNvestigate's linearisation `y' = k·x + c` ([`BatchNormRule`]).
/// Every rule on an elementwise layer is a factor `f` per element, `R_in = f·R`.
pub(crate) fn batch_norm_compat(x: Tensor<4>, bn: &BatchNorm, rule: &BatchNormRule) -> Tensor<4> {
    let xd = x.clone().detach();
    let Constants {
        mean,
        beta,
        slope,
        k,
        c,
    } = Constants::of(bn);
    let y = Tensor::from_dispatch(<Dispatch as BatchNormCompatBackend>::channel_affine(
        xd.clone().into_dispatch(),
        mean.clone().into_dispatch(),
        slope.clone().into_dispatch(),
        beta.clone().into_dispatch(),
    ));
    let safe = |t: Tensor<4>| stabilized(t, Stabilizer::ZeroOnly, INNVESTIGATE_SAFE_DIVIDE);
    // The positive and negative parts, for the αβ rules only (each is a pass over `x`).
    let parts = || {
        let (xp, xn) = (xd.clone().clamp_min(0.0), xd.clone().clamp_max(0.0));
        let (kp, kn) = (k.clone().clamp_min(0.0), k.clone().clamp_max(0.0));
        let (cp, cn) = (c.clone().clamp_min(0.0), c.clone().clamp_max(0.0));
        (xp, xn, kp, kn, cp, cn)
    };
    let f = match rule {
        // The slope per channel, `[1, C, 1, 1]`.
        BatchNormRule::Gradient => slope,
        BatchNormRule::Epsilon { epsilon } => {
            Tensor::from_dispatch(<Dispatch as BatchNormCompatBackend>::epsilon_factor(
                xd.clone().into_dispatch(),
                k.into_dispatch(),
                c.into_dispatch(),
                *epsilon,
            ))
        }
        BatchNormRule::AlphaBeta { alpha, beta, bias } => {
            let (xp, xn, kp, kn, cp, cn) = parts();
            let (cp, cn) = if *bias {
                (cp, cn)
            } else {
                (cp.zeros_like(), cn.zeros_like())
            };
            let act = xp.clone() * kp.clone() + xn.clone() * kn.clone();
            let mut f = (act.clone() / safe(act + cp.clone() + cn.clone())) * *alpha;
            if *beta != 0.0 {
                let inh = xp * kn + xn * kp;
                f = f - (inh.clone() / safe(inh + cp + cn)) * *beta;
            }
            f
        }
        BatchNormRule::AlphaBetaX2m100 => {
            let (xp, _, kp, kn, cp, cn) = parts();
            let pp = xp.clone() * kp;
            let pn = xp * kn;
            (pp.clone() / safe(pp + cp)) * 2.0 - pn.clone() / safe(pn + cn)
        }
        BatchNormRule::Dedicated => {
            let d = (xd.clone() - mean) * y.clone();
            xd * (y.clone() - beta) / stabilized(d, Stabilizer::Signed, INNVESTIGATE_SAFE_DIVIDE)
        }
    };
    Tensor::from_dispatch(<Dispatch as BatchNormCompatBackend>::scaled_backward(
        y.into_dispatch(),
        x.into_dispatch(),
        f.detach().into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relevance_conv::with_backward_of;

    /// The layer as tensor operations (what `lrp.rs` computed before): value, then
    /// `with_backward_of(y, x · f)`.
    fn by_tensor_ops(x: Tensor<4>, bn: &BatchNorm, rule: &BatchNormRule) -> Tensor<4> {
        let xd = x.clone().detach();
        let Constants {
            mean,
            beta,
            slope,
            k,
            c,
        } = Constants::of(bn);
        let y = (xd.clone() - mean) * slope.clone() + beta;
        let f = match rule {
            BatchNormRule::Gradient => slope,
            BatchNormRule::Epsilon { epsilon } => {
                let xk = xd.clone() * k;
                let z = xk.clone() + c;
                let negative = z.clone().lower_elem(0.0);
                let d = (z.clone() + *epsilon).mask_where(negative, z - *epsilon);
                xk / d
            }
            other => panic!("not compared: {other:?}"),
        };
        with_backward_of(y, x * f.detach())
    }

    fn bits<const D: usize>(t: Tensor<D>) -> Vec<u64> {
        match t.dtype() {
            DType::F64 => t
                .into_data()
                .try_to_vec::<f64>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect(),
            _ => t
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits() as u64)
                .collect(),
        }
    }

    /// Values and input gradients equal the tensor operations' bit for bit, for the
    /// Gradient (Deep Taylor) and ε rules, in f32 and f64, with values near the
    /// stabiliser's sign change, on planes smaller and larger than a task.
    #[test]
    fn values_and_gradients_equal_the_tensor_operations() {
        use burn::module::{Param, RunningState};
        use burn::nn::BatchNormConfig;
        let dev = Device::default().autodiff();
        for dtype in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::F64] {
            for dims in [[2, 5, 3, 3], [1, 3, 150, 130]] {
                let c = dims[1];
                let mut bn: BatchNorm = BatchNormConfig::new(c).init(&dev);
                let per = |f: fn(usize) -> f32| {
                    Tensor::<1>::from_data(TensorData::new((0..c).map(f).collect(), [c]), &dev)
                        .cast(dtype)
                };
                bn.gamma = Param::from_tensor(per(|i| 0.5 + 0.3 * i as f32 - 0.4 * (i % 2) as f32));
                bn.beta = Param::from_tensor(per(|i| 0.2 * i as f32 - 0.3));
                bn.running_mean = RunningState::new(per(|i| 0.1 * i as f32 - 0.15));
                bn.running_var = RunningState::new(per(|i| 0.7 + 0.2 * i as f32));
                let n: usize = dims.iter().product();
                let data: Vec<f32> = (0..n)
                    .map(|i| ((i * 7919 % 1001) as f32 - 500.0) * 2e-3)
                    .collect();
                let x = Tensor::<4>::from_data(TensorData::new(data, dims), &dev)
                    .cast(dtype)
                    .require_grad();
                let wv: Vec<f32> = (0..n).map(|i| (i % 11) as f32 - 5.0).collect();
                let w = Tensor::<4>::from_data(TensorData::new(wv, dims), &dev).cast(dtype);
                for rule in [
                    BatchNormRule::Gradient,
                    BatchNormRule::Epsilon { epsilon: 1e-7 },
                    BatchNormRule::Epsilon { epsilon: 0.25 },
                ] {
                    let tag = format!("{rule:?} on {dims:?} in {dtype:?}");
                    let (theirs, ours) = (
                        by_tensor_ops(x.clone(), &bn, &rule),
                        batch_norm_compat(x.clone(), &bn, &rule),
                    );
                    assert_eq!(bits(theirs.clone()), bits(ours.clone()), "{tag}: values");
                    let grad = |y: Tensor<4>| {
                        let g = (y * w.clone()).sum().backward();
                        bits(x.grad(&g).expect("input gradient"))
                    };
                    let (gt, go) = (grad(theirs), grad(ours));
                    assert!(go.iter().any(|b| *b != 0), "{tag}: zero gradient");
                    assert_eq!(gt, go, "{tag}: gradients");
                }
            }
        }
    }
}
