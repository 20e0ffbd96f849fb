//! 2-D convolution whose backward pass computes the weight gradient with one large
//! matrix product per chunk of output positions (im2col + gemm).
//!
//! burn-flex 0.22.1 does not implement `conv2d_weight_backward`, so burn's generic one
//! runs: a convolution of the input with batch and channel axes swapped, the output
//! gradient as its kernel, whose output is only `kh × kw` (3×3 or 1×1) — gemm shapes with
//! a handful of columns, which the gemm crate runs in its narrowest, slowest microkernel.
//! The input gradient is burn-flex's transposed convolution.
//!
//! Here, for `groups == 1` and `f32`, the output positions of the whole batch (all
//! `N · Ho · Wo` of them) are cut into chunks of whole output rows (a chunk may span
//! images; about 1 Mi im2col elements, at least 256 positions) and, per chunk,
//!
//! ```text
//! col  [Cin·kh·kw, P]  = im2col(x) over the chunk's positions (zeros in the padding)
//! dYc  [Cout, P]       = the output gradient at those positions
//! dW  += dYc · colᵀ                                   (gemm: Cout × Cin·kh·kw × P)
//! ```
//!
//! The chunks are split into four fixed runs, one accumulator each, that run in
//! parallel (im2col and a single-threaded `gemm` product on the same thread, so the
//! chunk is still in cache), and the four partial sums are added in order: the result
//! does not depend on the number of threads. Stride, dilation and any padding, including
//! TensorFlow "SAME"'s asymmetric one, only change which input element a column reads:
//! only the padding before the input matters, the output size comes from the output
//! gradient.
//!
//! The forward pass (`groups == 1`) is [`conv_forward`](crate::conv_forward)'s im2col +
//! gemm written straight into the output, and so is the input gradient of a stride-1
//! convolution (the convolution of the output gradient with the flipped, transposed
//! kernel). Strided input gradients stay burn-flex's transposed convolution (an im2col +
//! col2im route measured 1–4× *slower*: the scatter-add of col2im). Depthwise
//! convolutions (`groups == Cin == Cout`, EfficientNet) keep burn-flex's forward pass
//! and get direct per-channel loops for both gradients; any other grouped convolution,
//! and other dtypes, keep burn's forward pass and gradients. Values differ from burn's
//! by float rounding (another summation order), not more.
//!
//! The operation is a burn backend extension ([`TrainConvBackend`]) implemented for the
//! `Flex` backend (forward only: there is no backward pass without autodiff) and for
//! `Autodiff<B, C>` over any backend with [`ConvGradients`], following the pattern of
//! `leukex_explain::guided`.

use crate::conv_forward;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

/// A 2-D convolution with a fast backward pass (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait TrainConvBackend: Backend {
    /// Forward: exactly `ModuleOps::conv2d` without bias. Backward (autodiff):
    /// [`ConvGradients`].
    fn conv2d_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// Forward: exactly `ModuleOps::conv2d` with bias. Backward (autodiff):
    /// [`ConvGradients`] and burn's bias gradient.
    fn conv2d_train_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// The forward pass and gradients of a 2-D convolution; by default burn's.
pub trait ConvGradients: Backend {
    /// The convolution itself (`ModuleOps::conv2d`).
    fn conv2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, bias, options)
    }

    /// Gradient with respect to the input `x`.
    fn conv2d_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient with respect to the weight.
    fn conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }
}

impl TrainConvBackend for Flex {
    fn conv2d_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Flex::conv2d_forward(x, weight, None, options)
    }

    fn conv2d_train_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Flex::conv2d_forward(x, weight, Some(bias), options)
    }
}

impl ConvGradients for Flex {
    fn conv2d_forward(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let f32_bias = bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
        match conv_forward::forward_geometry(&x, &weight, &options) {
            Some(g) if f32_bias => {
                let w = contiguous_f32(&weight);
                let b = bias.map(|b| contiguous_f32(&b));
                conv_forward::conv2d(&g, &x, f32s(&w), b.as_ref().map(f32s))
            }
            _ => Flex::conv2d(x, weight, bias, options),
        }
    }

    fn conv2d_input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        match Geometry::new(&x, &weight, &output_grad, &options) {
            Some(g) if g.depthwise() => depthwise_input_grad(&g, &weight, &output_grad),
            Some(g) if g.groups == 1 => conv_forward::input_grad_stride1(&g, &weight, &output_grad)
                .unwrap_or_else(|| Flex::conv2d_x_backward(x, weight, output_grad, options)),
            _ => Flex::conv2d_x_backward(x, weight, output_grad, options),
        }
    }

    fn conv2d_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        match Geometry::new(&x, &weight, &output_grad, &options) {
            Some(g) if g.depthwise() => depthwise_weight_grad(&g, &x, &output_grad),
            Some(g) if g.groups == 1 => flex_weight_grad(&g, &x, &output_grad),
            _ => Flex::conv2d_weight_backward(x, weight, output_grad, options),
        }
    }
}

/// Bias gradient: the output gradient summed over batch and positions (burn's own).
fn bias_grad<B: Backend>(
    x: FloatTensor<B>,
    bias: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    B::conv2d_bias_backward(x, bias, output_grad)
}

#[derive(Debug)]
struct ConvWithBiasBackward;

#[derive(Debug)]
struct ConvNoBiasBackward;

impl<B: ConvGradients> Backward<B, 3> for ConvWithBiasBackward {
    type State = (NodeId, NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, b_state, options) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_state);
        let b: FloatTensor<B> = checkpointer.retrieve_node_output(b_state);
        if let Some(node) = node_x {
            let g = B::conv2d_input_grad(x.clone(), w.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_w {
            let g = B::conv2d_weight_grad(x.clone(), w, grad.clone(), options);
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, bias_grad::<B>(x, b, grad));
        }
    }
}

impl<B: ConvGradients> Backward<B, 2> for ConvNoBiasBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: AutodiffOps<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, options) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_state);
        if let Some(node) = node_x {
            let g = B::conv2d_input_grad(x.clone(), w.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, B::conv2d_weight_grad(x, w, grad, options));
        }
    }
}

impl<B: ConvGradients, C: CheckpointStrategy> TrainConvBackend for Autodiff<B, C> {
    fn conv2d_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match ConvNoBiasBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y = B::conv2d_forward(
                    x.into_primitive(),
                    weight.into_primitive(),
                    None,
                    options.clone(),
                );
                prep.finish((x_state, w_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_forward(
                x.into_primitive(),
                weight.into_primitive(),
                None,
                options,
            )),
        }
    }

    fn conv2d_train_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match ConvWithBiasBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let b_state = prep.checkpoint(&bias);
                let y = B::conv2d_forward(
                    x.into_primitive(),
                    weight.into_primitive(),
                    Some(bias.into_primitive()),
                    options.clone(),
                );
                prep.finish((x_state, w_state, b_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_forward(
                x.into_primitive(),
                weight.into_primitive(),
                Some(bias.into_primitive()),
                options,
            )),
        }
    }
}

/// [`TrainConvBackend`]'s convolution on dispatch tensors.
pub fn conv2d_train(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    Tensor::from_dispatch(match bias {
        None => <Dispatch as TrainConvBackend>::conv2d_train(
            x.into_dispatch(),
            weight.into_dispatch(),
            options,
        ),
        Some(b) => <Dispatch as TrainConvBackend>::conv2d_train_bias(
            x.into_dispatch(),
            weight.into_dispatch(),
            b.into_dispatch(),
            options,
        ),
    })
}

/// TF "SAME" padding of one axis: total `max((ceil(i/s) − 1)·s + k − i, 0)`, half before
/// and the rest after (burn's `PaddingConfig2d::Same`).
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
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

/// `conv.forward(x)` with the fast backward pass: same forward values.
pub fn conv2d_module(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let options = conv_options(conv, h, w);
    conv2d_train(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
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
    fn new(x: &FlexTensor, w: &FlexTensor, dy: &FlexTensor, o: &ConvOptions<2>) -> Option<Self> {
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

    fn depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.cin && self.cout == self.cin
    }

    /// Rows of the im2col matrix: `Cin · kh · kw` (weight order: channel, ky, kx).
    pub(crate) fn k(&self) -> usize {
        self.cin_g * self.kh * self.kw
    }

    /// The output columns `[lo, hi)` whose input column `ox·sw + kx·dw − pl` lies inside
    /// the input, and the input column of `lo` (as an offset `lo·sw + kx·dw − pl`).
    fn col_range(&self, kx: usize) -> (usize, usize) {
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
    fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.pt)
            .filter(|&iy| iy < self.h)
    }
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

fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
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
            d[..lo].fill(0.0);
            d[hi..].fill(0.0);
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

/// The output gradient at global output rows `r0..r1` into `out`: `[Cout, (r1 − r0) · ow]`.
fn gather_dy(g: &Geometry, dy: &[f32], r0: usize, r1: usize, out: &mut [f32]) {
    let p = (r1 - r0) * g.ow;
    let plane = g.oh * g.ow;
    out.chunks_mut(p).enumerate().for_each(|(co, dst)| {
        let mut r = r0;
        let mut at = 0;
        while r < r1 {
            let (n, oy) = (r / g.oh, r % g.oh);
            let rows = (g.oh - oy).min(r1 - r);
            let len = rows * g.ow;
            let src = &dy[(n * g.cout + co) * plane + oy * g.ow..][..len];
            dst[at..at + len].copy_from_slice(src);
            at += len;
            r += rows;
        }
    });
}

/// Independent accumulators of the weight gradient (fixed, so that the summation order
/// and the result do not depend on the number of threads).
const PARTS: usize = 4;

/// `dst[m × n] += lhs[m × k] · rhs[n × k]ᵀ`, all row-major, on the calling thread.
fn gemm_acc_abt(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, n: usize, k: usize) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= n * k);
    // SAFETY: the asserts above bound every element gemm reads or writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Weight gradient, `groups == 1`: `Σ_chunks dYc · colᵀ`. The chunks are split into
/// [`PARTS`] contiguous runs, one accumulator each, run in parallel (each chunk's im2col
/// and product on one thread), then summed in order.
fn flex_weight_grad(g: &Geometry, x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
    let x = contiguous_f32(x);
    let dy = contiguous_f32(dy);
    let (xs, dys) = (f32s(&x), f32s(&dy));
    let k = g.k();
    let total = g.n * g.oh;
    let rows = rows_per_chunk(g);
    let chunks = total.div_ceil(rows);
    let parts = chunks.min(PARTS);
    let partials: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0f32; g.cout * k];
            let mut col = vec![0f32; k * rows * g.ow];
            let mut dyc = vec![0f32; g.cout * rows * g.ow];
            for chunk in (part * chunks / parts)..((part + 1) * chunks / parts) {
                let r0 = chunk * rows;
                let r1 = (r0 + rows).min(total);
                let p = (r1 - r0) * g.ow;
                im2col(g, xs, r0, r1, &mut col[..k * p]);
                gather_dy(g, dys, r0, r1, &mut dyc[..g.cout * p]);
                gemm_acc_abt(&mut acc, &dyc, &col, g.cout, k, p);
            }
            acc
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().expect("at least one part");
    for part in partials {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    tensor(dw, [g.cout, g.cin_g, g.kh, g.kw])
}

/// Depthwise weight gradient: `dW[c, 0, ky, kx] = Σ_{n, oy, ox} dy[n, c, oy, ox] ·
/// x[n, c, iy, ix]`, one channel per task.
fn depthwise_weight_grad(g: &Geometry, x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
    let x = contiguous_f32(x);
    let dy = contiguous_f32(dy);
    let (xs, dys) = (f32s(&x), f32s(&dy));
    let kk = g.kh * g.kw;
    let mut dw = vec![0f32; g.cout * kk];
    dw.par_chunks_mut(kk).enumerate().for_each(|(c, out)| {
        for (kyx, o) in out.iter_mut().enumerate() {
            let (ky, kx) = (kyx / g.kw, kyx % g.kw);
            let (lo, hi) = g.col_range(kx);
            if lo >= hi {
                continue;
            }
            let ix0 = lo * g.sw + kx * g.dw - g.pl;
            let mut sum = 0f32;
            for n in 0..g.n {
                let xp = &xs[(n * g.cin + c) * g.h * g.w..][..g.h * g.w];
                let dp = &dys[(n * g.cout + c) * g.oh * g.ow..][..g.oh * g.ow];
                for oy in 0..g.oh {
                    let Some(iy) = g.in_row(oy, ky) else { continue };
                    let d = &dp[oy * g.ow + lo..oy * g.ow + hi];
                    let xr = &xp[iy * g.w + ix0..];
                    sum += if g.sw == 1 {
                        dot(d, &xr[..hi - lo])
                    } else {
                        d.iter()
                            .enumerate()
                            .map(|(j, v)| v * xr[j * g.sw])
                            .sum::<f32>()
                    };
                }
            }
            *o = sum;
        }
    });
    tensor(dw, [g.cout, 1, g.kh, g.kw])
}

/// Depthwise input gradient: `dx[n, c, iy, ix] += w[c, 0, ky, kx] · dy[n, c, oy, ox]`.
fn depthwise_input_grad(g: &Geometry, weight: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
    let w = contiguous_f32(weight);
    let dy = contiguous_f32(dy);
    let (ws, dys) = (f32s(&w), f32s(&dy));
    let kk = g.kh * g.kw;
    let mut dx = vec![0f32; g.n * g.cin * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(nc, xp)| {
            let (n, c) = (nc / g.cin, nc % g.cin);
            let dp = &dys[(n * g.cout + c) * g.oh * g.ow..][..g.oh * g.ow];
            for kyx in 0..kk {
                let (ky, kx) = (kyx / g.kw, kyx % g.kw);
                let wv = ws[c * kk + kyx];
                let (lo, hi) = g.col_range(kx);
                if lo >= hi {
                    continue;
                }
                let ix0 = lo * g.sw + kx * g.dw - g.pl;
                for oy in 0..g.oh {
                    let Some(iy) = g.in_row(oy, ky) else { continue };
                    let d = &dp[oy * g.ow + lo..oy * g.ow + hi];
                    let xr = &mut xp[iy * g.w + ix0..];
                    if g.sw == 1 {
                        for (o, v) in xr[..hi - lo].iter_mut().zip(d) {
                            *o += wv * v;
                        }
                    } else {
                        for (j, v) in d.iter().enumerate() {
                            xr[j * g.sw] += wv * v;
                        }
                    }
                }
            }
        });
    tensor(dx, [g.n, g.cin, g.h, g.w])
}

/// Dot product with 8 independent partial sums (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Direct access for benchmarks and tests: burn-flex's gradients and these ones, on
/// `Flex` tensors.
#[doc(hidden)]
pub mod flex {
    use super::*;

    pub fn input_grad_fast(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        o: ConvOptions<2>,
    ) -> FlexTensor {
        <Flex as ConvGradients>::conv2d_input_grad(x, w, dy, o)
    }

    pub fn weight_grad_fast(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        o: ConvOptions<2>,
    ) -> FlexTensor {
        <Flex as ConvGradients>::conv2d_weight_grad(x, w, dy, o)
    }

    pub fn input_grad_burn(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        o: ConvOptions<2>,
    ) -> FlexTensor {
        Flex::conv2d_x_backward(x, w, dy, o)
    }

    pub fn weight_grad_burn(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        o: ConvOptions<2>,
    ) -> FlexTensor {
        Flex::conv2d_weight_backward(x, w, dy, o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;

    /// Deterministic values in [-1, 1).
    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn t4(shape: [usize; 4], seed: u64, dev: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(noise(shape.iter().product(), seed), shape),
            dev,
        )
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    /// Largest difference relative to the largest reference value.
    fn rel_diff(reference: &[f32], other: &[f32]) -> f32 {
        assert_eq!(reference.len(), other.len());
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = reference
            .iter()
            .zip(other)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        diff / scale
    }

    /// One convolution case: input `[n, cin, h, w]`, `cout` outputs, kernel, stride,
    /// padding `[(top, bottom), (left, right)]`, dilation, groups, bias.
    #[derive(Debug, Clone, Copy)]
    struct Case {
        x: [usize; 4],
        cout: usize,
        k: [usize; 2],
        stride: [usize; 2],
        pad: [(usize, usize); 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    }

    const CASES: [Case; 13] = [
        // stride 1, padding 1: chunks of rows within each image, input gradient as a
        // forward convolution
        Case {
            x: [2, 8, 40, 40],
            cout: 6,
            k: [3, 3],
            stride: [1, 1],
            pad: [(1, 1), (1, 1)],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        // small planes: several whole images per chunk
        Case {
            x: [20, 3, 3, 3],
            cout: 5,
            k: [3, 3],
            stride: [1, 1],
            pad: [(1, 1), (1, 1)],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        // 1×1, stride 1: the input plane is the product's right-hand side
        Case {
            x: [3, 6, 20, 20],
            cout: 7,
            k: [1, 1],
            stride: [1, 1],
            pad: [(0, 0), (0, 0)],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        // 1×1, stride 1, small planes (whole images per chunk)
        Case {
            x: [16, 4, 2, 2],
            cout: 3,
            k: [1, 1],
            stride: [1, 1],
            pad: [(0, 0), (0, 0)],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        },
        // stride 1, dilation, asymmetric padding
        Case {
            x: [2, 3, 13, 11],
            cout: 4,
            k: [3, 3],
            stride: [1, 1],
            pad: [(2, 1), (0, 3)],
            dilation: [2, 1],
            groups: 1,
            bias: false,
        },
        // stride 1, padded by more than the kernel's span (burn's input gradient)
        Case {
            x: [2, 3, 6, 6],
            cout: 4,
            k: [3, 3],
            stride: [1, 1],
            pad: [(3, 0), (1, 1)],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        // stride 2, symmetric padding, bias
        Case {
            x: [2, 3, 11, 9],
            cout: 5,
            k: [3, 3],
            stride: [2, 2],
            pad: [(1, 1), (1, 1)],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        // TF "SAME"-like asymmetric padding, stride 2, rectangular kernel
        Case {
            x: [3, 4, 10, 12],
            cout: 6,
            k: [3, 2],
            stride: [2, 2],
            pad: [(0, 1), (1, 0)],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        },
        // dilation 2, different strides per axis
        Case {
            x: [2, 3, 13, 11],
            cout: 4,
            k: [3, 3],
            stride: [1, 2],
            pad: [(2, 2), (1, 3)],
            dilation: [2, 2],
            groups: 1,
            bias: true,
        },
        // 1×1, stride 2 (ResNet downsample)
        Case {
            x: [4, 6, 8, 8],
            cout: 8,
            k: [1, 1],
            stride: [2, 2],
            pad: [(0, 0), (0, 0)],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        },
        // depthwise, stride 2, asymmetric "SAME" padding (EfficientNet)
        Case {
            x: [2, 5, 9, 10],
            cout: 5,
            k: [3, 3],
            stride: [2, 2],
            pad: [(0, 1), (1, 1)],
            dilation: [1, 1],
            groups: 5,
            bias: false,
        },
        // depthwise 5×5 with dilation and bias
        Case {
            x: [3, 4, 12, 12],
            cout: 4,
            k: [5, 5],
            stride: [1, 1],
            pad: [(3, 1), (2, 2)],
            dilation: [2, 1],
            groups: 4,
            bias: true,
        },
        // grouped, not depthwise (burn's gradients)
        Case {
            x: [2, 6, 7, 7],
            cout: 4,
            k: [3, 3],
            stride: [2, 1],
            pad: [(1, 0), (0, 1)],
            dilation: [1, 1],
            groups: 2,
            bias: true,
        },
    ];

    /// Output, and the gradients of Σ r ⊙ conv(x) with respect to x, weight, bias.
    fn run(case: Case, dev: &Device, fast: bool) -> Vec<Vec<f32>> {
        let [_, cin, _, _] = case.x;
        let options =
            ConvOptions::new_with_padding(case.stride, case.pad, case.dilation, case.groups);
        let x = t4(case.x, 1, dev).require_grad();
        let w = t4([case.cout, cin / case.groups, case.k[0], case.k[1]], 2, dev).require_grad();
        let b = case.bias.then(|| {
            Tensor::<1>::from_data(TensorData::new(noise(case.cout, 3), [case.cout]), dev)
                .require_grad()
        });
        let y = if fast {
            conv2d_train(x.clone(), w.clone(), b.clone(), options)
        } else {
            conv2d(x.clone(), w.clone(), b.clone(), options)
        };
        let r = t4(y.dims(), 4, dev);
        let grads = (y.clone() * r).sum().backward();
        let mut out = vec![
            values(y.inner()),
            values(x.grad(&grads).expect("x gradient")),
            values(w.grad(&grads).expect("weight gradient")),
        ];
        if let Some(b) = b {
            out.push(values(b.grad(&grads).expect("bias gradient")));
        }
        out
    }

    #[test]
    fn gradients_match_burns_convolution() {
        for dev in [
            Device::default().autodiff(),
            Device::default().autodiff().gradient_checkpointing(),
        ] {
            for case in CASES {
                let reference = run(case, &dev, false);
                let fast = run(case, &dev, true);
                for (what, (r, f)) in ["output", "input", "weight", "bias"]
                    .iter()
                    .zip(reference.iter().zip(&fast))
                {
                    let d = rel_diff(r, f);
                    assert!(d < 1e-5, "{case:?}: {what} gradient differs by {d:e}");
                }
            }
        }
    }

    #[test]
    fn same_padding_is_burns() {
        let dev = Device::default();
        let conv = burn::nn::conv::Conv2dConfig::new([3, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Same)
            .init(&dev);
        for (h, w) in [(10, 11), (9, 8), (1, 2)] {
            let x = t4([2, 3, h, w], 5, &dev);
            let d = rel_diff(
                &values(conv.forward(x.clone())),
                &values(conv2d_module(&conv, x)),
            );
            assert!(d < 1e-6, "{h}×{w}: differs by {d:e}");
        }
    }
}
