//! Layer constructors shared by the architectures, the named-output tap and the
//! parameter visitor used for loading, key listing and head replacement.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

/// Convolution with torchvision's explicit symmetric padding.
pub(crate) fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
    dev: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .init(dev)
}

/// Bias-free convolution with TensorFlow "SAME" padding computed from the input size at
/// every call (burn's `PaddingConfig2d::Same`: total = max((ceil(i/s)-1)*s + k - i, 0),
/// `total/2` before and the rest after, exactly as TF and `Conv2dDynamicSamePadding`).
pub(crate) fn conv_same(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    dev: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init(dev)
}

/// BatchNorm with PyTorch's momentum convention (burn uses the same one).
pub(crate) fn bn(c: usize, eps: f64, momentum: f64, dev: &Device) -> BatchNorm {
    BatchNormConfig::new(c)
        .with_epsilon(eps)
        .with_momentum(momentum)
        .init(dev)
}

pub(crate) fn linear(cin: usize, cout: usize, dev: &Device) -> Linear {
    LinearConfig::new(cin, cout).init(dev)
}

/// Global average pooling to `[N, C, 1, 1]` (`AdaptiveAvgPool2d((1, 1))`).
pub(crate) fn global_avg(x: Tensor<4>) -> Tensor<4> {
    x.mean_dim(3).mean_dim(2)
}

/// Calls the user hook at each named output. 2-D outputs (`fc`, `classifier.N`, ...)
/// are handed to the hook as `[N, C, 1, 1]` and reshaped back.
pub(crate) struct Tap<'a> {
    pub(crate) hook: &'a mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>,
}

impl Tap<'_> {
    pub(crate) fn at(&mut self, name: &str, x: Tensor<4>) -> Tensor<4> {
        (self.hook)(name, x)
    }

    pub(crate) fn at2(&mut self, name: &str, x: Tensor<2>) -> Tensor<2> {
        let [n, c] = x.dims();
        let y = (self.hook)(name, x.reshape([n, c, 1, 1]));
        y.reshape([n, c])
    }
}

/// Visits every parameterised layer under its torchvision module path.
pub(crate) trait LayerVisitor {
    fn conv(&mut self, name: &str, m: &mut Conv2d);
    fn bn(&mut self, name: &str, m: &mut BatchNorm);
    fn linear(&mut self, name: &str, m: &mut Linear);
}

/// Joins a module path prefix and a child name (`""` + `"conv1"` = `"conv1"`).
pub(crate) fn join(prefix: &str, child: &str) -> String {
    if prefix.is_empty() {
        child.to_string()
    } else {
        format!("{prefix}.{child}")
    }
}
