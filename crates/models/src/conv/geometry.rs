//! The shapes of one convolution, its chunks of output rows, and im2col.

use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::ConvOptions;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use std::cell::Cell;

/// TF "SAME" padding of one axis: total `max((ceil(i/s) − 1)·s + k − i, 0)`, half before
/// and the rest after (burn's `PaddingConfig2d::Same`).
pub(crate) fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

/// The convolution options `Conv2d::forward` uses for an input of `height × width`.
pub fn conv_options(conv: &Conv2d, height: usize, width: usize) -> ConvOptions<2> {
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same_padding(kh, sh, height), same_padding(kw, sw, width)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    };
    ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups)
}

/// Shapes and options of one convolution, `f32` only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) cin: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) cout: usize,
    /// Input channels per group (the weight's second axis).
    pub(crate) cin_g: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
    /// Padding before the input (top, left); the padding after only sets `oh`, `ow`.
    pub(crate) pt: usize,
    pub(crate) pl: usize,
    pub(crate) groups: usize,
}

impl Geometry {
    pub(crate) fn new(
        x: &FlexTensor,
        w: &FlexTensor,
        dy: &FlexTensor,
        o: &ConvOptions<2>,
    ) -> Option<Self> {
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 || dy.dtype() != DType::F32 {
            return None;
        }
        let [n, cin, _, _] = x.shape().dims();
        let [cout, cin_g, _, _] = w.shape().dims();
        let [n2, cout2, oh, ow] = dy.shape().dims();
        if n != n2 || cout != cout2 || cin_g * o.groups != cin {
            return None;
        }
        Some(Self::from_shapes(
            x.shape().dims(),
            w.shape().dims(),
            [oh, ow],
            o,
        ))
    }

    /// The geometry of input `[N, Cin, H, W]`, weight `[Cout, Cin/groups, kh, kw]` and
    /// output size `[oh, ow]` under `o` (only the padding before the input is kept).
    pub(crate) fn from_shapes(
        [n, cin, h, w]: [usize; 4],
        [cout, cin_g, kh, kw]: [usize; 4],
        [oh, ow]: [usize; 2],
        o: &ConvOptions<2>,
    ) -> Self {
        Self {
            n,
            cin,
            h,
            w,
            cout,
            cin_g,
            kh,
            kw,
            oh,
            ow,
            sh: o.stride[0],
            sw: o.stride[1],
            dh: o.dilation[0],
            dw: o.dilation[1],
            pt: o.padding[0].0,
            pl: o.padding[1].0,
            groups: o.groups,
        }
    }

    pub(crate) fn depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.cin && self.cout == self.cin
    }

    /// Rows of the im2col matrix: `Cin · kh · kw` (weight order: channel, ky, kx).
    pub(crate) fn k(&self) -> usize {
        self.cin_g * self.kh * self.kw
    }

    /// The output columns `[lo, hi)` whose input column `ox·sw + kx·dw − pl` lies inside
    /// the input, and the input column of `lo` (as an offset `lo·sw + kx·dw − pl`).
    pub(crate) fn col_range(&self, kx: usize) -> (usize, usize) {
        let off = kx * self.dw;
        let lo = if off >= self.pl {
            0
        } else {
            (self.pl - off).div_ceil(self.sw)
        };
        let hi = if self.w + self.pl > off {
            (self.w + self.pl - off).div_ceil(self.sw)
        } else {
            0
        };
        (lo.min(self.ow), hi.min(self.ow).max(lo.min(self.ow)))
    }

    /// The input row of output row `oy` and kernel row `ky`, if inside the input.
    pub(crate) fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.pt)
            .filter(|&iy| iy < self.h)
    }
}

/// The geometry of `conv2d(x, weight)` with `options`, if this module handles it:
/// `f32`, `groups == 1`.
pub(crate) fn forward_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || options.groups != 1 {
        return None;
    }
    let [n, cin, h, w] = x.shape().dims();
    let [cout, cin_g, kh, kw] = weight.shape().dims();
    if cin_g != cin || n == 0 || cout == 0 {
        return None;
    }
    let size = |axis: usize, k: usize, i: usize| {
        let (before, after) = options.padding[axis];
        let padded = i + before + after;
        let span = options.dilation[axis] * (k - 1) + 1;
        (padded >= span).then(|| (padded - span) / options.stride[axis] + 1)
    };
    let out = [size(0, kh, h)?, size(1, kw, w)?];
    Some(Geometry::from_shapes(
        x.shape().dims(),
        weight.shape().dims(),
        out,
        options,
    ))
}

/// A worker thread's im2col and product (or gathered output gradient) buffers, kept
/// from one chunk (and layer) to the next. Before, each rayon job of the forward
/// convolution made its own and zeroed them (`resize`): 900 MB of `memset` in one
/// ResNet18 `explain --method gradient` run, and the allocations with it; the weight
/// gradient zeroed two per part and layer. Nothing read from them is stale: im2col writes
/// every element it hands on (zeros in the padding included), the product does not read
/// its destination, and the weight gradient writes every element of the output gradient
/// it gathers. They stay for the thread's life: at most one chunk each (about 1 Mi
/// floats, 4–5 MB on the largest layers of ResNet and VGG) per worker thread.
pub(crate) struct Scratch {
    col: Vec<f32>,
    product: Vec<f32>,
}

thread_local! {
    static SCRATCH: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

impl Scratch {
    /// The thread's buffers, taken out until this value drops (a nested use on the same
    /// thread gets empty ones).
    pub(crate) fn take() -> Self {
        let (col, product) = SCRATCH.take();
        Self { col, product }
    }

    /// `len` elements for im2col (grown and zeroed only when a layer needs more).
    pub(crate) fn col(&mut self, len: usize) -> &mut [f32] {
        at_least(&mut self.col, len)
    }

    /// [`col`](Self::col) and [`product`](Self::product) at once.
    pub(crate) fn both(&mut self, col: usize, product: usize) -> (&mut [f32], &mut [f32]) {
        (
            at_least(&mut self.col, col),
            at_least(&mut self.product, product),
        )
    }

    /// `len` elements for a product (or an output gradient), apart from
    /// [`col`](Self::col)'s.
    pub(crate) fn product(&mut self, len: usize) -> &mut [f32] {
        at_least(&mut self.product, len)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffers = (
            std::mem::take(&mut self.col),
            std::mem::take(&mut self.product),
        );
        SCRATCH.set(buffers);
    }
}

/// Fills the calling thread's scratch buffers with `len` NaNs each: a test that a
/// convolution never reads what an earlier one left there.
#[cfg(test)]
pub(crate) fn poison_scratch(len: usize) {
    SCRATCH.set((vec![f32::NAN; len], vec![f32::NAN; len]));
}

fn at_least(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Elements of one im2col chunk (`K × P` floats, 4 MiB). 256 Ki and 4 Mi elements timed
/// the same on ResNet18's layers (`examples/conv_grads.rs`).
const CHUNK_ELEMS: usize = 1 << 20;

/// Global output rows (`n · oh + oy`) per chunk: about [`CHUNK_ELEMS`] im2col elements,
/// at least 256 columns.
pub(crate) fn rows_per_chunk(g: &Geometry) -> usize {
    let by_size = CHUNK_ELEMS / (g.k() * g.ow).max(1);
    let min_rows = 256usize.div_ceil(g.ow);
    by_size.max(min_rows).clamp(1, g.n * g.oh)
}

pub(crate) fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

pub(crate) fn tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::new(shape)),
        DType::F32,
    )
}

/// im2col of global output rows `r0..r1` into `col` (`K` rows of `(r1 − r0) · ow`).
pub(crate) fn im2col(g: &Geometry, x: &[f32], r0: usize, r1: usize, col: &mut [f32]) {
    let p = (r1 - r0) * g.ow;
    let kk = g.kh * g.kw;
    col.chunks_mut(p).enumerate().for_each(|(row, dst)| {
        let (c, kyx) = (row / kk, row % kk);
        let (ky, kx) = (kyx / g.kw, kyx % g.kw);
        let (lo, hi) = g.col_range(kx);
        for (rr, d) in (r0..r1).zip(dst.chunks_exact_mut(g.ow)) {
            let (n, oy) = (rr / g.oh, rr % g.oh);
            let Some(iy) = g.in_row(oy, ky) else {
                d.fill(0.0);
                continue;
            };
            let src = &x[((n * g.cin + c) * g.h + iy) * g.w..][..g.w];
            zero_few(&mut d[..lo]);
            zero_few(&mut d[hi..]);
            let ix0 = lo * g.sw + kx * g.dw - g.pl;
            if g.sw == 1 {
                d[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
            } else {
                for (j, v) in d[lo..hi].iter_mut().enumerate() {
                    *v = src[ix0 + j * g.sw];
                }
            }
        }
    });
}

/// Zeroes a padding run of a few elements (usually none or one, at most the padding).
/// `fill` calls `memset` even for an empty slice: in im2col, which zeroes both ends of
/// every row it copies, those calls were 3 % of a ResNet18 gradient run (perf).
#[inline(always)]
fn zero_few(d: &mut [f32]) {
    match d {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        _ => d.fill(0.0),
    }
}
