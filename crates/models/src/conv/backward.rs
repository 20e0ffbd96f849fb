//! The gradients of a convolution and its autodiff node.
//!
//! Weight gradient, `groups == 1`: the output positions of the whole batch (all
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
//! The input gradient of a stride-1 convolution is a forward convolution
//! ([`input_grad_stride1`]); strided ones stay burn-flex's transposed convolution.
//! Depthwise convolutions (`groups == Cin == Cout`) get direct per-channel loops for both
//! gradients.

use super::forward::conv2d;
use super::geometry::{Geometry, Scratch, contiguous_f32, f32s, im2col, rows_per_chunk, tensor};
use super::{ConvGradients, TrainConvBackend};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops as AutodiffOps, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};
use rayon::prelude::*;

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

/// The input gradient of a stride-1, `groups == 1` convolution as a forward
/// convolution: `dx = conv2d(dy, W')` with `W'[ci, co, ky, kx] = W[co, ci, kh−1−ky,
/// kw−1−kx]`, the same dilation, and `d·(k−1) − p_before` padding before. `None` where
/// that padding would be negative (a convolution padded by more than its kernel span).
pub(super) fn input_grad_stride1(
    g: &Geometry,
    weight: &FlexTensor,
    dy: &FlexTensor,
) -> Option<FlexTensor> {
    if g.groups != 1 || g.sh != 1 || g.sw != 1 {
        return None;
    }
    let pt = (g.dh * (g.kh - 1)).checked_sub(g.pt)?;
    let pl = (g.dw * (g.kw - 1)).checked_sub(g.pl)?;
    let w = weight.to_contiguous();
    let ws = f32s(&w);
    let kk = g.kh * g.kw;
    // One input channel's kernels per task: this transposing copy runs on every backward
    // pass of every such convolution, and on one thread it left the other cores idle.
    // Written once, not zeroed first (that was 37 MB of `memset` per ResNet18 pass).
    let mut flipped: Vec<f32> = Vec::with_capacity(ws.len());
    flipped.spare_capacity_mut()[..ws.len()]
        .par_chunks_mut(g.cout * kk)
        .enumerate()
        .for_each(|(ci, row)| {
            for (co, dst) in row.chunks_exact_mut(kk).enumerate() {
                let src = &ws[(co * g.cin + ci) * kk..][..kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    d.write(*s);
                }
            }
        });
    // SAFETY: the `cin` tasks write all `cout · kh · kw` elements of their row each.
    unsafe { flipped.set_len(ws.len()) };
    // Stride 1, the same dilation, padding `pt`, `pl` before the output gradient.
    let options = ConvOptions::new_with_padding([1, 1], [(pt, 0), (pl, 0)], [g.dh, g.dw], 1);
    let t = Geometry::from_shapes(
        [g.n, g.cout, g.oh, g.ow],
        [g.cin, g.cout, g.kh, g.kw],
        [g.h, g.w],
        &options,
    );
    Some(conv2d(&t, dy, &flipped, None))
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
pub(super) fn flex_weight_grad(g: &Geometry, x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
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
            let mut scratch = Scratch::take();
            for chunk in (part * chunks / parts)..((part + 1) * chunks / parts) {
                let r0 = chunk * rows;
                let r1 = (r0 + rows).min(total);
                let p = (r1 - r0) * g.ow;
                let (col, dyc) = scratch.both(k * p, g.cout * p);
                im2col(g, xs, r0, r1, col);
                gather_dy(g, dys, r0, r1, dyc);
                gemm_acc_abt(&mut acc, dyc, col, g.cout, k, p);
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
pub(super) fn depthwise_weight_grad(g: &Geometry, x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
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
pub(super) fn depthwise_input_grad(
    g: &Geometry,
    weight: &FlexTensor,
    dy: &FlexTensor,
) -> FlexTensor {
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
