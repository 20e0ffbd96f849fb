//! The two small networks of `scripts/fixtures/gen_innvestigate_small.py`, written against
//! leukex's [`Ops`] like every leukex model, with the same closed-form weights (see that
//! script for the layers; names are the Keras layer names there).

use burn::module::{Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use leukex_models::closed_form::{param_value, unit};
use leukex_models::{Network, Ops};

fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), &Device::default())
}

fn scaled(data: Vec<f32>, scale: f32) -> Vec<f32> {
    data.into_iter().map(|v| v * scale).collect()
}

/// Conv `name` (`cin`→`cout`, k×k, torch's symmetric padding `k/2`), closed-form weights,
/// the bias (if any) times `bias_scale`.
fn conv(
    name: &str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    bias: bool,
    bias_scale: f32,
) -> Conv2d {
    let pad = k / 2;
    let mut c = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .init(&Device::default());
    let shape = [cout, cin, k, k];
    c.weight = Param::from_tensor(tensor(
        param_value(&format!("{name}.weight"), &shape),
        shape,
    ));
    if bias {
        let b = scaled(param_value(&format!("{name}.bias"), &[cout]), bias_scale);
        c.bias = Some(Param::from_tensor(tensor(b, [cout])));
    }
    c
}

/// BatchNorm `name` (eps 1e-5): γ, β (times `bias_scale`) closed form, running mean `u/10`
/// and variance `1 + u/10`.
fn batch_norm(name: &str, c: usize, bias_scale: f32) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c)
        .with_epsilon(1e-5)
        .init(&Device::default());
    let stat = |key: &str, base: f64| -> Tensor<1> {
        let v = unit(&format!("{name}.{key}"), c)
            .map(|u| (base + 0.1 * u) as f32)
            .collect();
        tensor(v, [c])
    };
    bn.gamma = Param::from_tensor(tensor(param_value(&format!("{name}.weight"), &[c]), [c]));
    let beta = scaled(param_value(&format!("{name}.bias"), &[c]), bias_scale);
    bn.beta = Param::from_tensor(tensor(beta, [c]));
    bn.running_mean = RunningState::new(stat("running_mean", 0.0));
    bn.running_var = RunningState::new(stat("running_var", 1.0));
    bn
}

/// Dense `name` (torch `[out, in]` weight, stored transposed as burn does).
fn linear(name: &str, cin: usize, cout: usize, bias_scale: f32) -> Linear {
    let mut l = LinearConfig::new(cin, cout).init(&Device::default());
    let w = tensor(
        param_value(&format!("{name}.weight"), &[cout, cin]),
        [cout, cin],
    );
    l.weight = Param::from_tensor(w.transpose());
    let b = scaled(param_value(&format!("{name}.bias"), &[cout]), bias_scale);
    l.bias = Some(Param::from_tensor(tensor(b, [cout])));
    l
}

/// `seq`: conv1 (5×5) ReLU pool, conv2 ReLU pool, conv3 ReLU, flatten, fc1 ReLU, fc2.
#[derive(Module, Debug)]
pub struct SequentialNet {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

impl SequentialNet {
    pub fn new(classes: usize, bias_scale: f32) -> Self {
        Self {
            convs: vec![
                conv("conv1", 3, 8, 5, 1, true, bias_scale),
                conv("conv2", 8, 16, 3, 1, true, bias_scale),
                conv("conv3", 16, 16, 3, 1, true, bias_scale),
            ],
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: linear("fc1", 16 * 8 * 8, 32, bias_scale),
            fc2: linear("fc2", 32, classes, bias_scale),
        }
    }
}

impl Network for SequentialNet {
    fn forward_ops(&self, x: Tensor<4>, ops: &mut dyn Ops) -> Tensor<2> {
        let mut x = x;
        for (i, c) in self.convs.iter().enumerate() {
            x = ops.conv(&format!("conv{}", i + 1), c, None, x);
            x = ops.relu(x);
            if i < 2 {
                x = ops.max_pool(&self.pool, x);
            }
        }
        // torch's flatten order (NCHW), which the Keras kernel rows were permuted to.
        let [n, c, h, w] = x.dims();
        let x = ops.linear("fc1", &self.fc1, x.reshape([n, c * h * w]));
        let x = ops.relu2(x);
        ops.linear("fc2", &self.fc2, x)
    }
}

/// A convolution with its BatchNorm, or with a bias instead (`res` without BatchNorm).
#[derive(Module, Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

impl ConvBn {
    /// `shape`: input channels, output channels, kernel size, stride.
    fn new(
        (name, bn_name): (&str, &str),
        [cin, cout, k, stride]: [usize; 4],
        with_bn: bool,
        bias_scale: f32,
    ) -> Self {
        Self {
            conv: conv(name, cin, cout, k, stride, !with_bn, bias_scale),
            bn: with_bn.then(|| batch_norm(bn_name, cout, bias_scale)),
        }
    }

    /// The names only matter to name-based composites; the rules here go by layer kind.
    fn forward(&self, ops: &mut dyn Ops, x: Tensor<4>) -> Tensor<4> {
        ops.conv("conv", &self.conv, self.bn.as_ref().map(|b| ("bn", b)), x)
    }
}

/// `res` / `res-bn`: stem conv-(BN-)ReLU, an identity block (8 channels), a stride-2 block
/// with a 1×1 downsample (16 channels), global average pool, fc.
#[derive(Module, Debug)]
pub struct ResidualNet {
    stem: ConvBn,
    layer1: Vec<ConvBn>,
    layer2: Vec<ConvBn>,
    downsample: ConvBn,
    fc: Linear,
}

impl ResidualNet {
    pub fn new(classes: usize, with_bn: bool, bias_scale: f32) -> Self {
        let cb = |name: &str, bn: &str, cin, cout, k, stride| {
            ConvBn::new((name, bn), [cin, cout, k, stride], with_bn, bias_scale)
        };
        Self {
            stem: cb("conv1", "bn1", 3, 8, 3, 1),
            layer1: vec![
                cb("layer1.conv1", "layer1.bn1", 8, 8, 3, 1),
                cb("layer1.conv2", "layer1.bn2", 8, 8, 3, 1),
            ],
            layer2: vec![
                cb("layer2.conv1", "layer2.bn1", 8, 16, 3, 2),
                cb("layer2.conv2", "layer2.bn2", 16, 16, 3, 1),
            ],
            downsample: cb("layer2.downsample.0", "layer2.downsample.1", 8, 16, 1, 2),
            fc: linear("fc", 16, classes, bias_scale),
        }
    }
}

impl Network for ResidualNet {
    fn forward_ops(&self, x: Tensor<4>, ops: &mut dyn Ops) -> Tensor<2> {
        let x = self.stem.forward(ops, x);
        let x = ops.relu(x);
        let block = |ops: &mut dyn Ops, convs: &[ConvBn], skip: Tensor<4>, x: Tensor<4>| {
            let y = convs[0].forward(ops, x);
            let y = ops.relu(y);
            let y = convs[1].forward(ops, y);
            let y = ops.add(y, skip);
            ops.relu(y)
        };
        let x = block(ops, &self.layer1, x.clone(), x);
        let skip = self.downsample.forward(ops, x.clone());
        let x = block(ops, &self.layer2, skip, x);
        let x = ops.avg_pool([1, 1], x);
        let [n, c, _, _] = x.dims();
        ops.linear("fc", &self.fc, x.reshape([n, c]))
    }
}
