//! Layer constructors shared by the architectures, the operations a forward pass is
//! written in ([`Ops`]), the named-output tap and the parameter visitor used for loading, key listing and head replacement.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;

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

/// The operations every architecture's forward pass is written in. A model's forward is
/// written once, against this trait; the default methods are the plain PyTorch
/// operations, and [`output`](Ops::output) is called at every named module output (see
/// the crate docs for the names). An explanation method overrides some operations, e.g.
/// LRP replaces the backward pass of `conv`/`linear`/`add`/`avg_pool`/activations by
/// its rules while the forward values stay the same.
///
/// 2-D outputs (`fc`, `classifier.N`, ...) are passed to [`output`](Ops::output) as
/// `[N, C, 1, 1]`; the 2-D operations (`linear`, `relu2`) see the 2-D tensor.
pub trait Ops {
    /// Called with every named module output; the return value replaces it.
    fn output(&mut self, _name: &str, x: Tensor<4>) -> Tensor<4> {
        x
    }

    /// Convolution `name`, optionally followed by its BatchNorm `bn = (name, module)`
    /// (eval mode once the model is [`valid`](burn::module::AutodiffModule::valid)).
    /// Calls [`output`](Ops::output) after the convolution and after the BatchNorm.
    /// The convolution is `conv.forward(x)` with a faster backward pass
    /// ([`conv2d_module`](crate::conv::conv2d_module)).
    fn conv(
        &mut self,
        name: &str,
        conv: &Conv2d,
        bn: Option<(&str, &BatchNorm)>,
        x: Tensor<4>,
    ) -> Tensor<4> {
        plain_conv(self, name, conv, bn, x)
    }

    /// Fully connected layer on `[N, in]`; the caller hooks the output.
    fn linear(&mut self, _name: &str, linear: &Linear, x: Tensor<2>) -> Tensor<2> {
        linear.forward(x)
    }

    fn relu(&mut self, x: Tensor<4>) -> Tensor<4> {
        crate::relu::relu(x)
    }

    /// ReLU on `[N, C]` (VGG's classifier); by default the 4-D [`relu`](Ops::relu).
    fn relu2(&mut self, x: Tensor<2>) -> Tensor<2> {
        let [n, c] = x.dims();
        self.relu(x.reshape([n, c, 1, 1])).reshape([n, c])
    }

    fn relu6(&mut self, x: Tensor<4>) -> Tensor<4> {
        crate::relu::relu6(x)
    }

    fn max_pool(&mut self, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
        crate::pool::max_pool2d(pool, x)
    }

    /// Adaptive average pooling to `size` (`[1, 1]`: global average pooling).
    fn avg_pool(&mut self, size: [usize; 2], x: Tensor<4>) -> Tensor<4> {
        adaptive_avg_pool(x, size)
    }

    /// Residual addition `a + b` (`b` the skip connection).
    fn add(&mut self, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
        a + b
    }

    /// Concatenation along channels (GoogLeNet's inception modules).
    fn cat(&mut self, xs: Vec<Tensor<4>>) -> Tensor<4> {
        Tensor::cat(xs, 1)
    }
}

/// [`Ops::conv`]'s default: the convolution, then its BatchNorm, each output passed to
/// `ops.output`; for an `Ops` that overrides `conv` but keeps the plain operation for
/// some layers.
pub fn plain_conv<O: Ops + ?Sized>(
    ops: &mut O,
    name: &str,
    conv: &Conv2d,
    bn: Option<(&str, &BatchNorm)>,
    x: Tensor<4>,
) -> Tensor<4> {
    let y = ops.output(name, crate::conv::conv2d_module(conv, x));
    match bn {
        Some((bn_name, bn)) => ops.output(bn_name, batch_norm(bn, y)),
        None => y,
    }
}

/// A network whose forward pass is written in [`Ops`]: all the explanation engine needs of a
/// model. [`Classifier`](crate::Classifier) is one; a network written elsewhere (e.g. the
/// small reference networks of the explanation tests) is explained by the same code.
pub trait Network {
    /// Logits `[N, classes]` of `x`, every operation run through `ops`.
    fn forward_ops(&self, x: Tensor<4>, ops: &mut dyn Ops) -> Tensor<2>;
}

/// BatchNorm as PyTorch computes it. In inference (and for a frozen layer) one pass with
/// PyTorch's per-channel scale and shift
/// ([`batch_norm_inference`](crate::channel_affine::batch_norm_inference)). In training it normalises with the batch statistics like burn, but
/// updates `running_var` with the *unbiased* batch variance (`n / (n − 1)` times the
/// biased one, `n` = values per channel), as `torch.nn.BatchNorm2d` does; burn updates it
/// with the biased one, which would leave trained running variances (and so every
/// evaluation after training) off from PyTorch's by up to `1/n`.
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !batch_norm_is_training(bn, &x) {
        return crate::channel_affine::batch_norm_inference(bn, x);
    }
    let [n, _, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let out = burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    let unbiased = if count > 1.0 {
        count / (count - 1.0)
    } else {
        1.0
    };
    let m = bn.momentum;
    let dev = out.output.device();
    let mean = bn.running_mean.value_sync().to_device(&dev);
    let var = bn.running_var.value_sync().to_device(&dev);
    bn.running_mean
        .update((mean * (1.0 - m) + out.mean.detach() * m).detach());
    bn.running_var
        .update((var * (1.0 - m) + out.variance.detach() * (m * unbiased)).detach());
    out.output
}

/// Whether [`batch_norm`] normalises `x` with batch statistics (training) rather than
/// the running ones.
fn batch_norm_is_training(bn: &BatchNorm, x: &Tensor<4>) -> bool {
    x.device().is_autodiff() && bn.training.is_enabled()
}

/// PyTorch's `AdaptiveAvgPool2d(size)`; `[1, 1]` (global average pooling) as a mean.
pub fn adaptive_avg_pool(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    if size == [1, 1] {
        x.mean_dim(3).mean_dim(2)
    } else {
        adaptive_avg_pool2d(x, size)
    }
}

/// [`Ops`] with the plain operations and a user hook at named outputs.
pub(crate) struct HookOps<'a> {
    pub(crate) hook: &'a mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>,
}

impl Ops for HookOps<'_> {
    fn output(&mut self, name: &str, x: Tensor<4>) -> Tensor<4> {
        (self.hook)(name, x)
    }
}

/// What the architectures' forward functions call: the [`Ops`] of this pass plus naming
/// helpers.
pub(crate) struct Tap<'a> {
    pub(crate) ops: &'a mut dyn Ops,
}

impl Tap<'_> {
    pub(crate) fn at(&mut self, name: &str, x: Tensor<4>) -> Tensor<4> {
        self.ops.output(name, x)
    }

    pub(crate) fn at2(&mut self, name: &str, x: Tensor<2>) -> Tensor<2> {
        let [n, c] = x.dims();
        let y = self.ops.output(name, x.reshape([n, c, 1, 1]));
        y.reshape([n, c])
    }

    /// Convolution `name` followed by BatchNorm `bn_name`.
    pub(crate) fn conv_bn(
        &mut self,
        name: &str,
        conv: &Conv2d,
        bn_name: &str,
        bn: &BatchNorm,
        x: Tensor<4>,
    ) -> Tensor<4> {
        self.ops.conv(name, conv, Some((bn_name, bn)), x)
    }

    /// Linear layer `name` with its output hooked.
    pub(crate) fn linear(&mut self, name: &str, linear: &Linear, x: Tensor<2>) -> Tensor<2> {
        let y = self.ops.linear(name, linear, x);
        self.at2(name, y)
    }
}

/// Visits every parameterised layer under its torchvision module path (see
/// [`Classifier::visit_layers`](crate::Classifier::visit_layers)): how weights are loaded,
/// exported, initialised and updated by an optimiser, by name.
pub trait LayerVisitor {
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
