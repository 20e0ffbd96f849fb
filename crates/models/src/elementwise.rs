//! Parallel element-wise passes over `Flex` tensors.
//!
//! burn-flex runs its element-wise operations (comparisons, `mask_where`, scalar and
//! binary arithmetic, ReLU) on the calling thread. Between the parallel convolutions of a
//! pass they leave the other cores idle: in `leukex explain` on 2 cores they were a fifth
//! of the process's CPU time, spent on one core while the other waited (perf, see
//! docs/benchmarks.md). The activations and the LRP rules' stabilisers that sit on that
//! path are written with [`map`] instead: one pass, cut into tasks, in place where the
//! tensor owns its buffer alone.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata};
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;
use std::ops::{Add, Div, Mul, Sub};

/// Elements per parallel task.
pub const CHUNK: usize = 1 << 14;

/// The float types the kernels handle (`f32`, and `f64` for the reference checks).
pub trait Real:
    burn::tensor::Element
    + bytemuck::Pod
    + PartialOrd
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// `v` rounded to this type, as burn rounds a scalar operand (`v as f32`).
    fn of(v: f64) -> Self;
    fn is_nan(self) -> bool;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn of(v: f64) -> Self {
                v as $t
            }
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
pub fn map<E: Real, F: Fn(E, E) -> E + Copy + Send + Sync>(
    mut t: FlexTensor,
    other: Option<&[E]>,
    f: F,
) -> FlexTensor {
    let shape = t.shape();
    let dtype = t.dtype();
    let whole = t.layout().start_offset() == 0 && t.layout().is_contiguous();
    let n = shape.num_elements();
    if let Some(o) = other {
        assert_eq!(o.len(), n, "element-wise pass: operands differ in length");
    }
    if whole && let Some(data) = t.try_storage_mut::<E>() {
        data[..n]
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, d)| match other.map(|o| &o[i * CHUNK..][..d.len()]) {
                Some(o) => d.iter_mut().zip(o).for_each(|(d, o)| *d = f(*d, *o)),
                None => d.iter_mut().for_each(|d| *d = f(*d, E::ZERO)),
            });
        return t;
    }
    let t = t.to_contiguous();
    let src = t.as_slice::<E>().expect("contiguous tensor");
    // A new buffer, written once (not zeroed first: that was a pass of its own).
    let mut out: Vec<E> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, d)| {
            let s = &src[i * CHUNK..][..d.len()];
            match other.map(|o| &o[i * CHUNK..][..d.len()]) {
                Some(o) => d
                    .iter_mut()
                    .zip(s.iter().zip(o))
                    .for_each(|(d, (s, o))| _ = d.write(f(*s, *o))),
                None => d
                    .iter_mut()
                    .zip(s)
                    .for_each(|(d, s)| _ = d.write(f(*s, E::ZERO))),
            }
        });
    // SAFETY: the chunks above cover `0..n` and write every element of them.
    unsafe { out.set_len(n) };
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), dtype)
}

/// Bits per word of a [`map_marking`] mask.
pub const MARK_BITS: usize = 64;

/// [`map`] without a second operand that also marks elements: `mark(chunk, words)` sets,
/// for each element of a finished chunk of the result, bit `i % 64` of `words[i / 64]`
/// (`words` is zeroed and holds `chunk.len().div_ceil(64)` words). It runs on each chunk
/// right after it is written, while the chunk is in cache. Returns the result and the
/// marks of all elements (element `i`: bit `i % 64` of word `i / 64`).
pub fn map_marking<E, F, M>(mut t: FlexTensor, f: F, mark: M) -> (FlexTensor, Vec<u64>)
where
    E: Real,
    F: Fn(E, E) -> E + Copy + Send + Sync,
    M: Fn(&[E], &mut [u64]) + Copy + Send + Sync,
{
    const WORDS: usize = CHUNK / MARK_BITS;
    let shape = t.shape();
    let dtype = t.dtype();
    let whole = t.layout().start_offset() == 0 && t.layout().is_contiguous();
    let n = shape.num_elements();
    let mut words = vec![0u64; n.div_ceil(MARK_BITS)];
    if whole && let Some(data) = t.try_storage_mut::<E>() {
        data[..n]
            .par_chunks_mut(CHUNK)
            .zip(words.par_chunks_mut(WORDS))
            .for_each(|(d, w)| {
                d.iter_mut().for_each(|d| *d = f(*d, E::ZERO));
                mark(d, w);
            });
        return (t, words);
    }
    let t = t.to_contiguous();
    let src = t.as_slice::<E>().expect("contiguous tensor");
    let mut out: Vec<E> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .zip(words.par_chunks_mut(WORDS))
        .for_each(|((d, s), w)| {
            d.iter_mut()
                .zip(s)
                .for_each(|(d, s)| _ = d.write(f(*s, E::ZERO)));
            // SAFETY: every element of `d` was written just above.
            let d = unsafe { &*(d as *const [std::mem::MaybeUninit<E>] as *const [E]) };
            mark(d, w);
        });
    // SAFETY: the chunks above cover `0..n` and write every element of them.
    unsafe { out.set_len(n) };
    let y = FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), dtype);
    (y, words)
}

/// `f(value, bit)` for every element of `t`, `bit` its mark from [`map_marking`]; in
/// place where `t` owns its contiguous buffer alone, else into a new one (as [`map`]).
pub fn map_marked<E, F>(t: FlexTensor, marks: &[u64], f: F) -> FlexTensor
where
    E: Real,
    F: Fn(E, bool) -> E + Copy + Send + Sync,
{
    let n = t.shape().num_elements();
    assert_eq!(
        marks.len(),
        n.div_ceil(MARK_BITS),
        "element-wise pass: marks and tensor differ in length"
    );
    let shape = t.shape();
    let dtype = t.dtype();
    let mut t = t;
    let whole = t.layout().start_offset() == 0 && t.layout().is_contiguous();
    if whole && let Some(data) = t.try_storage_mut::<E>() {
        data[..n]
            .par_chunks_mut(CHUNK)
            .zip(marks.par_chunks(CHUNK / MARK_BITS))
            .for_each(|(d, w)| {
                for (d, &w) in d.chunks_mut(MARK_BITS).zip(w) {
                    for (j, d) in d.iter_mut().enumerate() {
                        *d = f(*d, (w >> j) & 1 == 1);
                    }
                }
            });
        return t;
    }
    let t = t.to_contiguous();
    let src = t.as_slice::<E>().expect("contiguous tensor");
    let mut out: Vec<E> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .zip(marks.par_chunks(CHUNK / MARK_BITS))
        .for_each(|((d, s), w)| {
            let words = d.chunks_mut(MARK_BITS).zip(s.chunks(MARK_BITS)).zip(w);
            for ((d, s), &w) in words {
                for (j, (d, s)) in d.iter_mut().zip(s).enumerate() {
                    d.write(f(*s, (w >> j) & 1 == 1));
                }
            }
        });
    // SAFETY: the chunks above cover `0..n` and write every element of them.
    unsafe { out.set_len(n) };
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), dtype)
}

/// `f(value, channel)` for every element of a `[N, C, H, W]` tensor (`channel` in
/// `0..C`), in parallel, in place where `t` owns its contiguous buffer alone, else into
/// a new one (as [`map`]).
pub fn map_channels<E: Real, F: Fn(E, usize) -> E + Copy + Send + Sync>(
    mut t: FlexTensor,
    f: F,
) -> FlexTensor {
    let shape = t.shape();
    let dtype = t.dtype();
    assert_eq!(
        shape.num_dims(),
        4,
        "per-channel pass: [N, C, H, W] expected"
    );
    let (channels, plane) = (shape[1], shape[2] * shape[3]);
    let n = shape.num_elements();
    if n == 0 {
        return t;
    }
    // Whole planes per task, at least CHUNK elements where the planes are small.
    let planes_per_task = CHUNK.div_ceil(plane).max(1);
    let task = plane * planes_per_task;
    // The channel of plane `p` of task `k`.
    let channel_of = move |k: usize, p: usize| (k * planes_per_task + p) % channels;
    let whole = t.layout().start_offset() == 0 && t.layout().is_contiguous();
    if whole && let Some(data) = t.try_storage_mut::<E>() {
        data[..n]
            .par_chunks_mut(task)
            .enumerate()
            .for_each(|(k, d)| {
                for (p, d) in d.chunks_mut(plane).enumerate() {
                    let c = channel_of(k, p);
                    d.iter_mut().for_each(|v| *v = f(*v, c));
                }
            });
        return t;
    }
    let t = t.to_contiguous();
    let src = t.as_slice::<E>().expect("contiguous tensor");
    let mut out: Vec<E> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(task)
        .enumerate()
        .for_each(|(k, d)| {
            let s = &src[k * task..][..d.len()];
            for (p, (d, s)) in d.chunks_mut(plane).zip(s.chunks(plane)).enumerate() {
                let c = channel_of(k, p);
                d.iter_mut().zip(s).for_each(|(d, s)| _ = d.write(f(*s, c)));
            }
        });
    // SAFETY: the tasks above cover `0..n` and write every element of it.
    unsafe { out.set_len(n) };
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), dtype)
}

/// Element-wise kernels of a backend without autodiff, for the backward passes that
/// leukex writes itself (burn's own operations elsewhere).
pub trait ElementwiseKernels: Backend {
    /// `a ⊙ b`; `b` must have `a`'s shape (no broadcasting).
    fn product(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl ElementwiseKernels for Flex {
    fn product(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        assert_eq!(a.shape(), b.shape(), "element-wise product: shapes differ");
        assert_eq!(a.dtype(), b.dtype(), "element-wise product: dtypes differ");
        // In place into whichever operand owns its buffer alone.
        let (a, b) = if !a.is_unique() && b.is_unique() {
            (b, a)
        } else {
            (a, b)
        };
        let b = b.to_contiguous();
        match a.dtype() {
            DType::F32 => map(a, b.as_slice::<f32>(), |x, y| x * y),
            DType::F64 => map(a, b.as_slice::<f64>(), |x, y| x * y),
            _ => Flex::float_mul(a, b),
        }
    }
}

/// The index of the first NaN or infinity in `values`. Checked in parallel tasks of
/// [`CHUNK`] elements, each a branch-free test the compiler vectorises: a loaded
/// ResNet18 (11.7 M weights) is checked in about a millisecond instead of ten on the
/// calling thread, where it held up every command that loads weights (perf).
pub fn first_non_finite(values: &[f32]) -> Option<usize> {
    // Exponent bits all set: infinity or NaN.
    const EXPONENT: u32 = 0x7f80_0000;
    let clean = |chunk: &[f32]| {
        chunk
            .iter()
            .fold(true, |ok, v| ok & (v.to_bits() & EXPONENT != EXPONENT))
    };
    let (i, chunk) = values
        .par_chunks(CHUNK)
        .enumerate()
        .find_first(|(_, chunk)| !clean(chunk))?;
    let j = chunk.iter().position(|v| !v.is_finite())?;
    Some(i * CHUNK + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flex(values: &[f32]) -> FlexTensor {
        let data = burn::tensor::TensorData::new(values.to_vec(), [values.len()]);
        Flex::float_from_data(data, &Default::default())
    }

    fn floats(t: FlexTensor) -> Vec<f32> {
        t.as_slice::<f32>().expect("contiguous").to_vec()
    }

    /// In place (a buffer owned alone) and into a new buffer (a shared one), the values
    /// are `f`'s, the marks `mark`'s, element `i` at bit `i % 64` of word `i / 64`, over
    /// several tasks and a partial last word; `map_marked` reads the same bits back.
    #[test]
    fn marks_follow_the_elements_in_place_and_not() {
        let n = 2 * CHUNK + 3 * MARK_BITS + 11;
        let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
        let f = |v: f32, _| v * 0.5;
        let mark = |y: &[f32], w: &mut [u64]| {
            for (j, v) in y.iter().enumerate() {
                w[j / MARK_BITS] |= u64::from(*v > 3.0) << (j % MARK_BITS);
            }
        };
        let shared = flex(&x);
        let keep = shared.clone();
        for (case, t) in [("in place", flex(&x)), ("new buffer", shared)] {
            let (y, marks) = map_marking(t, f, mark);
            let y = floats(y);
            assert_eq!(marks.len(), n.div_ceil(MARK_BITS), "{case}");
            for i in 0..n {
                assert_eq!(y[i], x[i] * 0.5, "{case}: value {i}");
                let bit = (marks[i / MARK_BITS] >> (i % MARK_BITS)) & 1 == 1;
                assert_eq!(bit, y[i] > 3.0, "{case}: mark {i}");
            }
            let shared_y = flex(&y);
            let keep_y = shared_y.clone();
            for (how, t) in [("in place", flex(&y)), ("new buffer", shared_y)] {
                let back = floats(map_marked(t, &marks, |v: f32, m| if m { v } else { -1.0 }));
                for i in 0..n {
                    let want = if y[i] > 3.0 { y[i] } else { -1.0 };
                    assert_eq!(back[i], want, "{case}, {how}: element {i}");
                }
            }
            assert_eq!(
                floats(keep_y),
                y,
                "{case}: a shared buffer is left untouched"
            );
        }
        assert_eq!(floats(keep), x, "a shared buffer is left untouched");
    }

    #[test]
    fn first_non_finite_finds_the_first_nan_or_infinity() {
        let mut v = vec![1.5f32; 3 * CHUNK + 17];
        assert_eq!(first_non_finite(&v), None);
        for (i, bad) in [
            (3 * CHUNK + 16, f32::NAN),
            (2 * CHUNK, f32::INFINITY),
            (CHUNK + 5, f32::NEG_INFINITY),
            (0, -f32::NAN),
        ] {
            v[i] = bad;
            assert_eq!(first_non_finite(&v), Some(i), "{bad} at {i}");
        }
        // The largest finite values and subnormals are finite.
        let edge = [f32::MAX, f32::MIN, f32::MIN_POSITIVE / 2.0, -0.0];
        assert_eq!(first_non_finite(&edge), None);
        assert_eq!(first_non_finite(&[]), None);
    }
}
