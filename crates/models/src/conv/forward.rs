//! Forward 2-D convolution (`groups == 1`, `f32`) as im2col + one matrix product per
//! chunk of output positions, written straight into the NCHW output.
//!
//! burn-flex 0.22.1's general convolution first copies the whole input to NHWC on one
//! thread, then, per tile of 512 output positions, allocates an im2col tile and a result
//! buffer and scatters the result into the output one element at a time with a stride
//! of a whole output plane. On ResNet18's 3×3 layers those copies, not the products,
//! are most of the difference to PyTorch. Here, per chunk of whole output rows:
//!
//! ```text
//! col [Cin·kh·kw, P] = im2col(x) over the chunk's P positions (from NCHW directly)
//! out[n, :, chunk]   = W [Cout, Cin·kh·kw] · col       (one gemm, written in place)
//! ```
//!
//! A chunk is a run of rows of one image (written in place, the output rows of one
//! channel being contiguous), or, where one image has few positions (the 7×7 and 14×14
//! layers), several whole images (the product goes to a buffer and is copied out one
//! channel plane at a time). Chunks run in parallel, each with a single-threaded
//! product, and their sizes do not depend on the number of threads, so neither do the
//! results. A 1×1 convolution with stride 1 and no padding needs no im2col: the input
//! plane is the right-hand side as it is.
//!
//! The same routine serves the input gradient of a stride-1 convolution, which is the
//! convolution of the output gradient with the kernel flipped and its channel axes
//! swapped ([`super::backward::input_grad_stride1`]).

use super::geometry::{Geometry, Scratch, f32s, im2col, rows_per_chunk, tensor};
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

/// Split a layer into at least this many chunks where it has the rows for them, so
/// that both cores (and more) have work on the small late layers. A constant, not
/// the thread count: chunk sizes, and so the summation order, stay machine-independent.
const MIN_CHUNKS: usize = 8;

/// `conv2d(x, weight, bias)` for a geometry from [`forward_geometry`]; the weight is
/// `[Cout, Cin, kh, kw]` contiguous, the bias `[Cout]`.
pub(crate) fn conv2d(
    g: &Geometry,
    x: &FlexTensor,
    weight: &[f32],
    bias: Option<&[f32]>,
) -> FlexTensor {
    let x = x.to_contiguous();
    let xs = f32s(&x);
    let plane = g.oh * g.ow;
    // Every element is written below (by gemm, which does not read its destination
    // here, or by the copies), so the buffer is not zeroed first: zeroing was a
    // separate pass over every convolution's output.
    let len = g.n * g.cout * plane;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = SharedOut(out.as_mut_ptr());
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0;
    let chunks = chunks(g);
    chunks.par_iter().for_each(|&(r0, r1)| {
        let mut scratch = Scratch::take();
        let (n, oy) = (r0 / g.oh, r0 % g.oh);
        let p = (r1 - r0) * g.ow;
        let within_image = r1 - r0 <= g.oh - oy;
        // The right-hand side: the input itself (1×1) or the chunk's im2col.
        let (rhs, rhs_rs): (*const f32, usize) = if pointwise && within_image {
            (xs[n * g.cin * plane + oy * g.ow..].as_ptr(), plane)
        } else {
            let col = scratch.col(g.k() * p);
            im2col(g, xs, r0, r1, col);
            (col.as_ptr(), p)
        };
        if within_image {
            // SAFETY: chunks are disjoint runs of output rows; this one writes rows
            // oy..oy + p/ow of image n in every channel, inside `out`.
            let at = unsafe { dst.get().add(n * g.cout * plane + oy * g.ow) };
            // SAFETY: `rhs` holds K rows of p columns (the im2col buffer or the input
            // plane), and `at` Cout rows of p elements `plane` apart that only this chunk
            // writes.
            unsafe { product(g, weight, rhs, rhs_rs, at, plane, p) };
            if let Some(b) = bias {
                for (co, &bv) in b.iter().enumerate() {
                    // SAFETY: as above.
                    let row = unsafe { std::slice::from_raw_parts_mut(at.add(co * plane), p) };
                    row.iter_mut().for_each(|v| *v += bv);
                }
            }
        } else {
            // Whole images: product into a buffer, then one plane per (image, channel).
            let buf = scratch.product(g.cout * p);
            // SAFETY: `buf` is this chunk's own Cout × p buffer; `rhs` as above.
            unsafe { product(g, weight, rhs, rhs_rs, buf.as_mut_ptr(), p, p) };
            for (co, row) in buf.chunks_exact(p).enumerate() {
                let bv = bias.map_or(0.0, |b| b[co]);
                for (i, src) in row.chunks_exact(plane).enumerate() {
                    // SAFETY: image n + i lies in this chunk only; raw writes, as the
                    // buffer is not initialised yet.
                    let d = unsafe { dst.get().add(((n + i) * g.cout + co) * plane) };
                    for (j, s) in src.iter().enumerate() {
                        // SAFETY: j < plane, inside that (image, channel) plane.
                        unsafe { d.add(j).write(s + bv) };
                    }
                }
            }
        }
    });
    // SAFETY: the chunks cover every output row of every image and channel, and each
    // element was written above.
    unsafe { out.set_len(len) };
    tensor(out, [g.n, g.cout, g.oh, g.ow])
}

/// `dst[Cout × p] = W[Cout × K] · rhs[K × p]`, rows of `dst` `dst_rs` apart, rows of
/// `rhs` `rhs_rs` apart, single-threaded.
///
/// # Safety
/// `rhs` must hold `K` rows of `p` readable floats `rhs_rs` apart, and `dst` `Cout`
/// rows of `p` writable floats `dst_rs` apart that nothing else touches meanwhile.
unsafe fn product(
    g: &Geometry,
    weight: &[f32],
    rhs: *const f32,
    rhs_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    p: usize,
) {
    let k = g.k();
    assert!(weight.len() >= g.cout * k);
    // SAFETY: the weight is bounded by the assert, rhs and dst by the caller.
    unsafe {
        gemm::gemm(
            g.cout,
            p,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            weight.as_ptr(),
            1,
            k as isize,
            rhs,
            1,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The chunks of global output rows (`n · oh + oy`): runs of rows inside one image
/// where an image has enough positions, otherwise groups of whole images.
fn chunks(g: &Geometry) -> Vec<(usize, usize)> {
    // The weight gradient's chunk size (about 1 Mi im2col elements, at least 256
    // positions), capped so that a layer has at least MIN_CHUNKS chunks.
    let balanced = (g.n * g.oh).div_ceil(MIN_CHUNKS).max(1);
    let rows = rows_per_chunk(g).min(balanced);
    let mut out = Vec::new();
    if rows < g.oh {
        for n in 0..g.n {
            let mut oy = 0;
            while oy < g.oh {
                let end = (oy + rows).min(g.oh);
                out.push((n * g.oh + oy, n * g.oh + end));
                oy = end;
            }
        }
    } else {
        let images = (rows / g.oh).max(1);
        let mut n = 0;
        while n < g.n {
            let end = (n + images).min(g.n);
            out.push((n * g.oh, end * g.oh));
            n = end;
        }
    }
    out
}

/// Raw output pointer shared by chunks that write disjoint elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: only used where every chunk writes a disjoint set of elements.
unsafe impl Send for SharedOut {}
// SAFETY: as for Send: no two threads touch the same element through it.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn get(&self) -> *mut f32 {
        self.0
    }
}
