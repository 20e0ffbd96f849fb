//! The output factor of an LRP group, `c · m / stabilize(z)`, and stabilised denominators
//! themselves, each as one parallel pass.
//!
//! Written as tensor operations it was six passes on one thread — a comparison, `z + ε`,
//! `z − ε`, `mask_where`, the reciprocal, the coefficient, plus a comparison and a
//! product for the output mask — over every convolution's output, on every LRP pass: in
//! `leukex explain` with the paper's four methods the largest single piece of the time
//! one core worked while the other waited (perf). Here each element is computed once,
//! with the same operations in the same order, so the floats are the ones the tensor
//! operations gave (tested).
//!
//! Both are constants of the pass: the results are never tracked by autodiff.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::prelude::*;
use burn::tensor::DType;
use leukex_models::elementwise::{Real, map};

use crate::rules::{OutputMask, Stabilizer};

/// What [`output_factor`] computes: `coefficient · mask / stabilize(z)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factor {
    pub stabilizer: Stabilizer,
    pub epsilon: f64,
    pub coefficient: f64,
    /// Where the factor is kept (elsewhere 0), judged on the mask's source.
    pub mask: OutputMask,
}

/// [`Factor`] and stabilised denominators on a backend (module docs).
#[backend_extension(Flex, Autodiff)]
pub trait StabilizerBackend: Backend {
    /// `stabilize(z)` (see [`Stabilizer`]).
    fn stabilized(z: FloatTensor<Self>, stabilizer: Stabilizer, epsilon: f64) -> FloatTensor<Self>;
    /// The factor of `z`, its mask judged on `z` itself.
    fn output_factor(z: FloatTensor<Self>, factor: Factor) -> FloatTensor<Self>;
    /// The factor of `z`, its mask judged on `masked_by` (same shape).
    fn output_factor_masked(
        z: FloatTensor<Self>,
        masked_by: FloatTensor<Self>,
        factor: Factor,
    ) -> FloatTensor<Self>;
}

/// The stabilised denominator: `z ± ε` by the sign of `z` (+ at 0), or `ε` at exact zeros.
pub(crate) fn stabilized_value<E: Real>(z: E, stabilizer: Stabilizer, epsilon: E) -> E {
    match stabilizer {
        Stabilizer::Signed => {
            if z < E::ZERO {
                z - epsilon
            } else {
                z + epsilon
            }
        }
        Stabilizer::ZeroOnly => {
            if z == E::ZERO {
                epsilon
            } else {
                z
            }
        }
    }
}

/// The factor of `z`, `m` its mask's source: `1 / d`, times `c` unless `c` is 1, times
/// the mask as 1 or 0 (not a select: `∞ · 0` stays NaN, as the tensor product gave).
///
/// A denominator of exactly 0 (possible only with ε = 0, LRP-0, where float32 rounding
/// can cancel a pre-activation to exactly 0) gives the factor 0, not ∞: the relevance that
/// reaches such a unit is proportional to its value, 0, so the `0 · ∞ = NaN` the division
/// would give has the limit 0 (the gradient's `relu'(0) = 0` in LRP-0 = Input×Gradient).
/// Measured: under an Ice Lake cache blocking one unit of ResNet18's `layer2` summed to
/// exactly 0.0 in float32 and made the whole LRP-0 map NaN (docs/explanations.md).
fn factor_value<E: Real>(z: E, m: E, f: &Factor) -> E {
    let d = stabilized_value(z, f.stabilizer, E::of(f.epsilon));
    let mut s = if d == E::ZERO { E::ZERO } else { E::ONE / d };
    if f.coefficient != 1.0 {
        s = s * E::of(f.coefficient);
    }
    let keep = match f.mask {
        OutputMask::All => return s,
        OutputMask::Positive => m > E::ZERO,
        OutputMask::Negative => m < E::ZERO,
    };
    s * if keep { E::ONE } else { E::ZERO }
}

fn output_factor_typed<E: Real>(z: FlexTensor, masked_by: Option<&[E]>, f: Factor) -> FlexTensor {
    match masked_by {
        Some(m) => map(z, Some(m), move |z, m| factor_value(z, m, &f)),
        None => map(z, None, move |z: E, _| factor_value(z, z, &f)),
    }
}

impl StabilizerBackend for Flex {
    fn stabilized(z: FlexTensor, stabilizer: Stabilizer, epsilon: f64) -> FlexTensor {
        fn typed<E: Real>(z: FlexTensor, stabilizer: Stabilizer, epsilon: f64) -> FlexTensor {
            map(z, None, move |z: E, _| {
                stabilized_value(z, stabilizer, E::of(epsilon))
            })
        }
        match z.dtype() {
            DType::F32 => typed::<f32>(z, stabilizer, epsilon),
            DType::F64 => typed::<f64>(z, stabilizer, epsilon),
            other => panic!("LRP stabiliser: {other:?} is not supported"),
        }
    }

    fn output_factor(z: FlexTensor, factor: Factor) -> FlexTensor {
        match z.dtype() {
            DType::F32 => output_factor_typed::<f32>(z, None, factor),
            DType::F64 => output_factor_typed::<f64>(z, None, factor),
            other => panic!("LRP output factor: {other:?} is not supported"),
        }
    }

    fn output_factor_masked(z: FlexTensor, masked_by: FlexTensor, factor: Factor) -> FlexTensor {
        assert_eq!(
            z.shape(),
            masked_by.shape(),
            "LRP output factor: shapes differ"
        );
        assert_eq!(
            z.dtype(),
            masked_by.dtype(),
            "LRP output factor: dtypes differ"
        );
        let m = masked_by.to_contiguous();
        match z.dtype() {
            DType::F32 => output_factor_typed::<f32>(z, m.as_slice(), factor),
            DType::F64 => output_factor_typed::<f64>(z, m.as_slice(), factor),
            other => panic!("LRP output factor: {other:?} is not supported"),
        }
    }
}

/// Under autodiff: the inner backend's value, untracked (a constant of the pass).
impl<B: StabilizerBackend, C: CheckpointStrategy> StabilizerBackend for Autodiff<B, C> {
    fn stabilized(z: FloatTensor<Self>, stabilizer: Stabilizer, epsilon: f64) -> FloatTensor<Self> {
        Self::from_inner(B::stabilized(Self::inner(z), stabilizer, epsilon))
    }

    fn output_factor(z: FloatTensor<Self>, factor: Factor) -> FloatTensor<Self> {
        Self::from_inner(B::output_factor(Self::inner(z), factor))
    }

    fn output_factor_masked(
        z: FloatTensor<Self>,
        masked_by: FloatTensor<Self>,
        factor: Factor,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::output_factor_masked(
            Self::inner(z),
            Self::inner(masked_by),
            factor,
        ))
    }
}

/// `stabilize(z)`: `z ± ε` by the sign of `z` (+ at 0) for [`Stabilizer::Signed`], `ε`
/// at exact zeros for [`Stabilizer::ZeroOnly`]; untracked.
pub fn stabilized<const D: usize>(z: Tensor<D>, stabilizer: Stabilizer, epsilon: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as StabilizerBackend>::stabilized(
        z.into_dispatch(),
        stabilizer,
        epsilon,
    ))
}

/// `factor.coefficient · mask / stabilize(z)`, the mask judged on `masked_by` (or on `z`
/// when `None`); untracked.
pub fn output_factor<const D: usize>(
    z: Tensor<D>,
    masked_by: Option<Tensor<D>>,
    factor: Factor,
) -> Tensor<D> {
    let z = z.into_dispatch();
    Tensor::from_dispatch(match masked_by {
        None => <Dispatch as StabilizerBackend>::output_factor(z, factor),
        Some(m) => {
            <Dispatch as StabilizerBackend>::output_factor_masked(z, m.into_dispatch(), factor)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stabilised denominator as the tensor operations compute it.
    fn denominator_by_tensor_ops<const D: usize>(z: Tensor<D>, f: Factor) -> Tensor<D> {
        match f.stabilizer {
            Stabilizer::Signed => {
                let negative = z.clone().lower_elem(0.0);
                (z.clone() + f.epsilon).mask_where(negative, z - f.epsilon)
            }
            Stabilizer::ZeroOnly => {
                let zero = z.clone().equal_elem(0.0);
                z.mask_fill(zero, f.epsilon)
            }
        }
    }

    /// The factor as the tensor operations compute it (what `lrp.rs` did before), with 0
    /// where the denominator is exactly 0.
    fn by_tensor_ops<const D: usize>(z: Tensor<D>, m: Tensor<D>, f: Factor) -> Tensor<D> {
        let d = denominator_by_tensor_ops(z, f);
        let zero = d.clone().equal_elem(0.0);
        let mut s = d.recip().mask_fill(zero, 0.0);
        if f.coefficient != 1.0 {
            s = s * f.coefficient;
        }
        match f.mask {
            OutputMask::All => s,
            OutputMask::Positive => s * m.clone().greater_elem(0.0).float().cast(m.dtype()),
            OutputMask::Negative => s * m.clone().lower_elem(0.0).float().cast(m.dtype()),
        }
    }

    fn bits(t: Tensor<1>) -> Vec<u64> {
        match t.dtype() {
            DType::F64 => t
                .into_data()
                .try_to_vec::<f64>()
                .unwrap()
                .into_iter()
                .map(f64::to_bits)
                .collect(),
            _ => t
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(|v| v.to_bits() as u64)
                .collect(),
        }
    }

    /// Every stabiliser (alone, and in the factor with every coefficient and mask), in
    /// `f32` and `f64`, with exact zeros,
    /// values within ε of zero, a NaN and ε = 0 (a factor of 0 where the denominator is 0):
    /// the same bits as the tensor operations, on tensors cut into parallel tasks.
    #[test]
    fn one_pass_gives_the_floats_of_the_tensor_operations() {
        let n = 2 * leukex_models::elementwise::CHUNK + 11;
        let z: Vec<f64> = (0..n)
            .map(|i| match i % 10 {
                0 => 0.0,
                1 => -0.0,
                2 => 3e-7,
                3 => -4e-7,
                4 if i == 4 => f64::NAN,
                _ => ((i * 37 % 101) as f64 - 50.0) * 0.013,
            })
            .collect();
        let m: Vec<f64> = (0..n).map(|i| ((i * 13 % 7) as f64) - 3.0).collect();
        for dtype in [DType::F32, DType::F64] {
            let dev = Device::default();
            let t = |v: &[f64]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &dev);
            let (zt, mt) = (t(&z).cast(dtype), t(&m).cast(dtype));
            for stabilizer in [Stabilizer::Signed, Stabilizer::ZeroOnly] {
                for epsilon in [1e-6, 0.25, 0.0] {
                    for coefficient in [1.0, 2.0, -1.0] {
                        for mask in [OutputMask::All, OutputMask::Positive, OutputMask::Negative] {
                            let f = Factor {
                                stabilizer,
                                epsilon,
                                coefficient,
                                mask,
                            };
                            let what = format!("{dtype:?} {f:?}");
                            let want = denominator_by_tensor_ops(zt.clone(), f);
                            let got = stabilized(zt.clone(), stabilizer, epsilon);
                            assert!(bits(got) == bits(want), "{what}, denominator");
                            let want = by_tensor_ops(zt.clone(), mt.clone(), f);
                            let got = output_factor(zt.clone(), Some(mt.clone()), f);
                            assert!(bits(got) == bits(want), "{what}, mask from m");
                            let want = by_tensor_ops(zt.clone(), zt.clone(), f);
                            let got = output_factor(zt.clone(), None, f);
                            assert!(bits(got) == bits(want), "{what}, mask from z");
                        }
                    }
                }
            }
        }
    }

    /// On autodiff tensors the factor is a constant: a backward pass through it reaches
    /// nothing; and a tensor shared with another owner is left untouched.
    #[test]
    fn the_factor_is_an_untracked_constant_and_leaves_its_input_alone() {
        let dev = Device::default().autodiff();
        let z = Tensor::<1>::from_data([1.0f32, -2.0, 0.0, 4.0], &dev).require_grad();
        let f = Factor {
            stabilizer: Stabilizer::Signed,
            epsilon: 0.5,
            coefficient: 1.0,
            mask: OutputMask::All,
        };
        let s = output_factor(z.clone(), None, f);
        let grads = (s.clone() * z.clone()).sum().backward();
        let g = z.grad(&grads).expect("z is reached through the product");
        assert_eq!(
            g.into_data().try_to_vec::<f32>().unwrap(),
            s.clone().into_data().try_to_vec::<f32>().unwrap(),
            "d(s·z)/dz is s alone: s is a constant"
        );
        assert_eq!(
            s.into_data().try_to_vec::<f32>().unwrap(),
            vec![1.0 / 1.5, 1.0 / -2.5, 1.0 / 0.5, 1.0 / 4.5]
        );
        let kept = Tensor::<1>::from_data([1.0f32, -2.0], &Device::default());
        let _ = output_factor(kept.clone(), None, f);
        assert_eq!(
            kept.into_data().try_to_vec::<f32>().unwrap(),
            vec![1.0, -2.0]
        );
    }
}
