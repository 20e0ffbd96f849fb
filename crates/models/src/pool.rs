//! Max pooling with a kernel of its own, forward and backward.
//!
//! burn-flex pools through its generic 3-D kernel: for every output element it works out
//! the window's valid taps again (six integer divisions) and keeps an `i64` index even
//! when no gradient is wanted. ResNet18's one max pool (`[8, 64, 112, 112]`, 3×3, stride
//! 2) took 37 ms on 2 cores, a sixth of the network's forward pass, and `leukex explain
//! --method gradient` runs it twice (perf, docs/benchmarks.md). Here the valid taps of each
//! output row and column are worked out once per call, the planes run in parallel, and
//! indices (plane-relative `u32`) are kept only for a tracked backward pass.
//!
//! The results are burn's to the bit: the first maximum of a window wins a tie, a NaN
//! always wins (the last one of the window), and the backward pass adds each output's
//! gradient into its input position in output order, as burn's does.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind, unary};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::elementwise::Real;

/// Marks an output whose window holds no input element (only possible with padding of
/// more than half the kernel, which PyTorch refuses): its value is −∞, no gradient flows.
const NO_TAP: u32 = u32::MAX;

/// A max pool's window: kernel, stride, symmetric padding and dilation per axis (height,
/// width), and whether the output size rounds up (PyTorch's `ceil_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindow {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl PoolWindow {
    /// The output length along `axis` for an input of length `input` (PyTorch's rule, as
    /// burn-flex computes it: with `ceil_mode` a last window that would start in the
    /// trailing padding is dropped).
    pub fn output_len(&self, axis: usize, input: usize) -> usize {
        let (k, s, p, d) = (
            self.kernel[axis],
            self.stride[axis],
            self.padding[axis],
            self.dilation[axis],
        );
        assert!(k > 0 && s > 0, "max pool: kernel and stride must be > 0");
        let span = d * (k - 1) + 1;
        let padded = input + 2 * p;
        if padded < span {
            return usize::from(self.ceil_mode);
        }
        if !self.ceil_mode {
            return (padded - span) / s + 1;
        }
        let out = (padded - span).div_ceil(s) + 1;
        if (out - 1) * s >= input + p {
            out - 1
        } else {
            out
        }
    }

    /// For each output position along `axis`: the input position of its first tap and
    /// the taps `start..end` that fall inside the input (`input = first + tap·dilation`).
    fn taps(&self, axis: usize, input: usize) -> Vec<(isize, usize, usize)> {
        let (k, s, p, d) = (
            self.kernel[axis] as isize,
            self.stride[axis] as isize,
            self.padding[axis] as isize,
            self.dilation[axis] as isize,
        );
        (0..self.output_len(axis, input) as isize)
            .map(|o| {
                let first = o * s - p;
                let inside = |t: &isize| (0..input as isize).contains(&(first + t * d));
                let start = (0..k).find(inside).unwrap_or(k);
                let end = (start..k).rfind(inside).map_or(start, |t| t + 1);
                (first, start as usize, end as usize)
            })
            .collect()
    }
}

/// Max pooling with its own backward pass (module docs).
#[backend_extension(Flex, Autodiff)]
pub trait MaxPoolBackend: Backend {
    fn max_pool(x: FloatTensor<Self>, window: PoolWindow) -> FloatTensor<Self>;
}

/// The kernels behind [`MaxPoolBackend`] on a backend without autodiff.
pub trait MaxPoolKernels: Backend {
    /// The pooled values and, per output element, the plane-relative position of the
    /// input element it took.
    fn max_pool_with_indices(
        x: FloatTensor<Self>,
        window: PoolWindow,
    ) -> (FloatTensor<Self>, Vec<u32>);

    /// The input gradient of a `[N, C, H, W]` input (`input_dims`) from the output
    /// gradient and the forward pass's indices.
    fn max_pool_grad(
        grad: FloatTensor<Self>,
        indices: &[u32],
        input_dims: [usize; 4],
    ) -> FloatTensor<Self>;
}

/// One plane's pooling: `rows`/`cols` from [`PoolWindow::taps`], `w` the input width.
fn pool_plane<E: Real>(
    src: &[E],
    w: usize,
    window: &PoolWindow,
    rows: &[(isize, usize, usize)],
    cols: &[(isize, usize, usize)],
    out: &mut [MaybeUninit<E>],
    mut at: Option<&mut [MaybeUninit<u32>]>,
) {
    let [dh, dw] = window.dilation;
    for (oh, &(first_h, h0, h1)) in rows.iter().enumerate() {
        for (ow, &(first_w, w0, w1)) in cols.iter().enumerate() {
            let mut best = E::NEG_INFINITY;
            let mut best_at = NO_TAP;
            for th in h0..h1 {
                let ih = (first_h + (th * dh) as isize) as usize;
                for tw in w0..w1 {
                    let pos = ih * w + (first_w + (tw * dw) as isize) as usize;
                    let v = src[pos];
                    // burn's (and PyTorch's) order: the first tap, then a strictly
                    // larger value or any NaN.
                    if best_at == NO_TAP || v > best || v.is_nan() {
                        best = v;
                        best_at = pos as u32;
                    }
                }
            }
            let o = oh * cols.len() + ow;
            out[o].write(best);
            if let Some(at) = at.as_deref_mut() {
                at[o].write(best_at);
            }
        }
    }
}

fn pool<E: Real>(x: FlexTensor, window: PoolWindow, keep_indices: bool) -> (FlexTensor, Vec<u32>) {
    let x = x.to_contiguous();
    let [n, c, h, w]: [usize; 4] = x.shape().dims();
    assert!(
        h * w <= NO_TAP as usize,
        "max pool: a {h}×{w} plane is too large"
    );
    let (rows, cols) = (window.taps(0, h), window.taps(1, w));
    let (plane_in, plane_out) = (h * w, rows.len() * cols.len());
    let src = x.as_slice::<E>().expect("contiguous tensor");
    // Not zeroed first: `calloc` of reused heap memory is a `memset` on the calling
    // thread, while the planes below write every element in parallel.
    let len = n * c * plane_out;
    let mut out = Vec::<E>::with_capacity(len);
    let mut at = Vec::<u32>::with_capacity(if keep_indices { len } else { 0 });
    if plane_out > 0 {
        type Plane<'a, E> = (
            usize,
            (&'a mut [MaybeUninit<E>], Option<&'a mut [MaybeUninit<u32>]>),
        );
        let plane = |(p, (o, a)): Plane<E>| {
            let s = &src[p * plane_in..][..plane_in];
            pool_plane(s, w, &window, &rows, &cols, o, a);
        };
        let out = &mut out.spare_capacity_mut()[..len];
        if keep_indices {
            out.par_chunks_mut(plane_out)
                .zip(
                    at.spare_capacity_mut()[..len]
                        .par_chunks_mut(plane_out)
                        .map(Some),
                )
                .enumerate()
                .for_each(plane);
        } else {
            out.par_chunks_mut(plane_out)
                .map(|o| (o, None))
                .enumerate()
                .for_each(plane);
        }
    }
    // SAFETY: `pool_plane` writes every output position of its plane (each of the
    // `rows × cols` positions once), and the planes cover all `len` elements; with
    // `plane_out == 0`, `len` is 0.
    unsafe {
        out.set_len(len);
        if keep_indices {
            at.set_len(len);
        }
    }
    let shape = Shape::new([n, c, rows.len(), cols.len()]);
    let y = FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), x.dtype());
    (y, at)
}

fn pool_grad<E: Real>(grad: FlexTensor, indices: &[u32], [n, c, h, w]: [usize; 4]) -> FlexTensor {
    let grad = grad.to_contiguous();
    let g = grad.as_slice::<E>().expect("contiguous tensor");
    assert_eq!(
        g.len(),
        indices.len(),
        "max pool backward: indices and gradient differ"
    );
    let plane_out = g.len() / (n * c).max(1);
    let plane_in = h * w;
    // Zeroed plane by plane in parallel, not by `calloc`: that is a `memset` of reused
    // heap memory on the calling thread (25 MB for ResNet18's max pool at batch 8).
    let len = n * c * plane_in;
    let mut out = Vec::<E>::with_capacity(len);
    if plane_in > 0 {
        let planes = out.spare_capacity_mut()[..len].par_chunks_mut(plane_in);
        planes.enumerate().for_each(|(p, o)| {
            for v in o.iter_mut() {
                v.write(E::ZERO);
            }
            // SAFETY: every element of `o` was initialised just above.
            let o = unsafe { &mut *(o as *mut [MaybeUninit<E>] as *mut [E]) };
            let g = &g[p * plane_out..][..plane_out];
            let at = &indices[p * plane_out..][..plane_out];
            for (&g, &i) in g.iter().zip(at) {
                if i != NO_TAP {
                    o[i as usize] = o[i as usize] + g;
                }
            }
        });
    }
    // SAFETY: the planes above initialised all `len` elements (`len` is 0 when
    // `plane_in` is).
    unsafe { out.set_len(len) };
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::new([n, c, h, w])),
        grad.dtype(),
    )
}

impl MaxPoolBackend for Flex {
    fn max_pool(x: FlexTensor, window: PoolWindow) -> FlexTensor {
        match x.dtype() {
            DType::F32 => pool::<f32>(x, window, false).0,
            DType::F64 => pool::<f64>(x, window, false).0,
            other => panic!("max pool: {other:?} is not supported"),
        }
    }
}

impl MaxPoolKernels for Flex {
    fn max_pool_with_indices(x: FlexTensor, window: PoolWindow) -> (FlexTensor, Vec<u32>) {
        match x.dtype() {
            DType::F32 => pool::<f32>(x, window, true),
            DType::F64 => pool::<f64>(x, window, true),
            other => panic!("max pool: {other:?} is not supported"),
        }
    }

    fn max_pool_grad(grad: FlexTensor, indices: &[u32], input_dims: [usize; 4]) -> FlexTensor {
        match grad.dtype() {
            DType::F32 => pool_grad::<f32>(grad, indices, input_dims),
            DType::F64 => pool_grad::<f64>(grad, indices, input_dims),
            other => panic!("max pool backward: {other:?} is not supported"),
        }
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

impl<B: MaxPoolKernels> Backward<B, 1> for MaxPoolBackward {
    /// The input's dimensions and the forward pass's indices.
    type State = ([usize; 4], Vec<u32>);

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (dims, indices) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::max_pool_grad(grad, &indices, dims)
        });
    }
}

impl<B: MaxPoolBackend + MaxPoolKernels, C: CheckpointStrategy> MaxPoolBackend for Autodiff<B, C> {
    fn max_pool(x: FloatTensor<Self>, window: PoolWindow) -> FloatTensor<Self> {
        match MaxPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let dims: [usize; 4] = x.shape().dims();
                let (y, indices) = B::max_pool_with_indices(x, window);
                prep.finish((dims, indices), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool(x.into_primitive(), window)),
        }
    }
}

/// `pool.forward(x)` with the kernels of this module (f32 and f64 with symmetric
/// padding; anything else goes to burn's).
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match pool.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    };
    let (Some(padding), DType::F32 | DType::F64) = (padding, x.dtype()) else {
        return pool.forward(x);
    };
    let window = PoolWindow {
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding,
        dilation: pool.dilation,
        ceil_mode: pool.ceil_mode,
    };
    Tensor::from_dispatch(<Dispatch as MaxPoolBackend>::max_pool(
        x.into_dispatch(),
        window,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        let t = t.cast(burn::tensor::FloatDType::F64);
        t.into_data().try_into_vec::<f64>().expect("f64 values")
    }

    /// Input values with many ties (five levels, most of them negative), NaNs and
    /// infinities.
    fn input(dims: [usize; 4], dtype: burn::tensor::FloatDType, dev: &Device) -> Tensor<4> {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| match i % 97 {
                13 => f32::NAN,
                41 => f32::INFINITY,
                42 => f32::NEG_INFINITY,
                _ => ((i * 37 % 5) as f32 - 3.0) * 0.5,
            })
            .collect();
        Tensor::<4>::from_data(TensorData::new(data, dims), dev).cast(dtype)
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// Values and input gradients equal burn's max pool bit for bit, for the pools of
    /// ResNet (3×3, stride 2, padding 1), GoogLeNet (3×3, stride 2, ceil mode; 3×3 stride
    /// 1 padding 1, ceil mode), VGG (2×2, stride 2) and a dilated, rectangular one, on
    /// odd sizes, in f32 and f64, with ties, NaNs and infinities.
    #[test]
    fn values_and_gradients_equal_burns_max_pool() {
        let dev = Device::default().autodiff();
        let pools = [
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_ceil_mode(true),
            MaxPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_ceil_mode(true),
            MaxPool2dConfig::new([2, 2]).with_strides([2, 2]),
            MaxPool2dConfig::new([3, 2])
                .with_strides([2, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_dilation([2, 1]),
        ];
        for dtype in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::F64] {
            for config in &pools {
                let pool = config.init();
                for dims in [[2, 3, 15, 13], [1, 2, 14, 16], [3, 1, 7, 9]] {
                    let x = input(dims, dtype, &dev).require_grad();
                    let (theirs, ours) = (pool.forward(x.clone()), max_pool2d(&pool, x.clone()));
                    assert_eq!(theirs.dims(), ours.dims(), "{config:?} on {dims:?}");
                    let tag = format!("{config:?} on {dims:?} in {dtype:?}");
                    assert!(
                        same(&values(theirs.clone()), &values(ours.clone())),
                        "{tag}: values"
                    );
                    // Weights that differ per output, so that a misrouted gradient shows.
                    let m = theirs.dims().iter().product::<usize>();
                    let wv: Vec<f32> = (0..m).map(|i| (i % 7) as f32 - 2.5).collect();
                    let wt = Tensor::<1>::from_data(TensorData::new(wv, [m]), &dev)
                        .reshape(theirs.dims())
                        .cast(dtype);
                    let grad = |y: Tensor<4>| {
                        let g = (y * wt.clone()).sum().backward();
                        values(x.grad(&g).expect("input gradient"))
                    };
                    let (gt, go) = (grad(theirs), grad(ours));
                    assert!(go.iter().filter(|v| **v != 0.0).count() > 0, "{tag}");
                    assert!(same(&gt, &go), "{tag}: gradients");
                }
            }
        }
    }

    /// Without autodiff the same values come out, and no indices are kept.
    #[test]
    fn untracked_values_equal_tracked_ones() {
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let dev = Device::default();
        let x = input([2, 4, 33, 31], burn::tensor::FloatDType::F32, &dev);
        let plain = values(max_pool2d(&pool, x.clone()));
        let tracked = values(max_pool2d(&pool, x.clone().autodiff().require_grad()));
        assert!(same(&plain, &tracked));
        assert!(same(&plain, &values(pool.forward(x))));
    }
}
