//! leukex's 2-D convolution: the forward pass, the input and weight gradients, and their
//! place in burn's autodiff graph.
//!
//! burn-flex 0.22.1's convolution spends most of its time copying (an NHWC copy of the
//! whole input on one thread, an element-by-element scatter of every result tile), and
//! it has no `conv2d_weight_backward`, so burn's generic one runs as a convolution whose
//! output is only `kh × kw`: gemm shapes with a handful of columns, run in gemm's
//! narrowest, slowest microkernel. Here every `groups == 1`, `f32` convolution is im2col
//! plus one matrix product per chunk of output positions:
//!
//! - `forward`: the forward pass, written straight into the NCHW output; it also serves
//!   the input gradient of a stride-1 convolution (the convolution of the output gradient
//!   with the flipped, transposed kernel);
//! - `backward`: the weight gradient (`dW += dYc · colᵀ` per chunk, in four fixed
//!   partial sums), the strided input gradients (burn-flex's transposed convolution: an
//!   im2col + col2im route measured 1–4× *slower*, the scatter-add of col2im), the
//!   depthwise gradients (EfficientNet: direct per-channel loops), and the autodiff node;
//! - `geometry`: shapes, padding (TensorFlow "SAME" included), chunk sizes, im2col.
//!
//! Chunk sizes depend on the layer, never on the thread count, so results do not depend
//! on the number of threads. Values differ from burn's by float rounding (another
//! summation order), not more. Other dtypes and other grouped convolutions keep burn's
//! forward pass and gradients.
//!
//! The operation is a burn backend extension ([`TrainConvBackend`]) implemented for the
//! `Flex` backend (forward only: there is no backward pass without autodiff) and for
//! `Autodiff<B, C>` over any backend with [`ConvGradients`], following the pattern of
//! `leukex_explain::guided`.

mod backward;
mod forward;
mod geometry;

pub use geometry::conv_options;

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use geometry::{Geometry, contiguous_f32, f32s, forward_geometry};

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
        match forward_geometry(&x, &weight, &options) {
            Some(g) if f32_bias => {
                let w = contiguous_f32(&weight);
                let b = bias.map(|b| contiguous_f32(&b));
                forward::conv2d(&g, &x, f32s(&w), b.as_ref().map(f32s))
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
            Some(g) if g.depthwise() => backward::depthwise_input_grad(&g, &weight, &output_grad),
            Some(g) if g.groups == 1 => backward::input_grad_stride1(&g, &weight, &output_grad)
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
            Some(g) if g.depthwise() => backward::depthwise_weight_grad(&g, &x, &output_grad),
            Some(g) if g.groups == 1 => backward::flex_weight_grad(&g, &x, &output_grad),
            _ => Flex::conv2d_weight_backward(x, weight, output_grad, options),
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
    use burn::nn::PaddingConfig2d;
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

    /// A convolution reads nothing a previous one left in the thread's scratch buffers:
    /// on one worker thread whose buffers hold NaN, every case (padding, strides,
    /// whole-image chunks) still equals burn's.
    #[test]
    fn scratch_buffers_left_by_earlier_layers_are_never_read() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let dev = Device::default().autodiff();
            for case in CASES {
                geometry::poison_scratch(1 << 16);
                let reference = run(case, &dev, false);
                geometry::poison_scratch(1 << 16);
                let fast = run(case, &dev, true);
                for (r, f) in reference.iter().zip(&fast) {
                    let d = rel_diff(r, f);
                    assert!(d < 1e-5, "{case:?}: differs by {d:e}");
                }
            }
        });
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
