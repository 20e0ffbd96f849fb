//! torchvision GoogLeNet (Inception v1, `torchvision.models.googlenet`).
//!
//! `BasicConv2d` = conv (no bias) + BatchNorm (eps 1e-3) + functional ReLU; its output
//! (after the ReLU) is named after the module (`conv1`, `inception3a.branch1`, ...), the
//! children `*.conv` / `*.bn` name the pre-activation outputs. Max pools use
//! `ceil_mode=True`. The auxiliary heads (`aux1`, `aux2`) only run in torchvision's
//! training mode; they are not part of this model and their keys are ignored when loading.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::layers::{LayerVisitor, Tap, bn, conv, join, linear};

const EPS: f64 = 1e-3;
const MOMENTUM: f64 = 0.1;

#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl BasicConv2d {
    fn new(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, dev: &Device) -> Self {
        Self {
            conv: conv(cin, cout, k, stride, pad, false, dev),
            bn: bn(cout, EPS, MOMENTUM, dev),
        }
    }

    fn forward(&self, x: Tensor<4>, p: &str, tap: &mut Tap) -> Tensor<4> {
        let x = tap.conv_bn(&join(p, "conv"), &self.conv, &join(p, "bn"), &self.bn, x);
        let x = tap.ops.relu(x);
        tap.at(p, x)
    }

    fn visit_params(&mut self, p: &str, v: &mut dyn LayerVisitor) {
        v.conv(&join(p, "conv"), &mut self.conv);
        v.bn(&join(p, "bn"), &mut self.bn);
    }

    fn names(p: &str, out: &mut Vec<String>) {
        out.extend(["conv", "bn"].map(|c| join(p, c)));
        out.push(p.to_string());
    }
}

fn pool(k: usize, stride: usize, pad: usize) -> MaxPool2d {
    MaxPool2dConfig::new([k, k])
        .with_strides([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_ceil_mode(true)
        .init()
}

/// Inception module: `branch1` (1x1), `branch2` (1x1, 3x3), `branch3` (1x1, 3x3 — torchvision
/// uses 3x3 here, not 5x5), `branch4` (`0`: max pool 3x3/1 pad 1 ceil, `1`: 1x1); outputs
/// concatenated along channels.
#[derive(Module, Debug)]
pub struct Inception {
    pub branch1: BasicConv2d,
    pub branch2: Vec<BasicConv2d>,
    pub branch3: Vec<BasicConv2d>,
    pub branch4_pool: MaxPool2d,
    pub branch4: BasicConv2d,
}

impl Inception {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cin: usize,
        ch1x1: usize,
        ch3x3red: usize,
        ch3x3: usize,
        ch5x5red: usize,
        ch5x5: usize,
        pool_proj: usize,
        dev: &Device,
    ) -> Self {
        Self {
            branch1: BasicConv2d::new(cin, ch1x1, 1, 1, 0, dev),
            branch2: vec![
                BasicConv2d::new(cin, ch3x3red, 1, 1, 0, dev),
                BasicConv2d::new(ch3x3red, ch3x3, 3, 1, 1, dev),
            ],
            branch3: vec![
                BasicConv2d::new(cin, ch5x5red, 1, 1, 0, dev),
                BasicConv2d::new(ch5x5red, ch5x5, 3, 1, 1, dev),
            ],
            branch4_pool: pool(3, 1, 1),
            branch4: BasicConv2d::new(cin, pool_proj, 1, 1, 0, dev),
        }
    }

    fn forward(&self, x: Tensor<4>, p: &str, tap: &mut Tap) -> Tensor<4> {
        let b1 = self.branch1.forward(x.clone(), &join(p, "branch1"), tap);
        let b2 = Self::seq(&x, &self.branch2, &join(p, "branch2"), tap);
        let b3 = Self::seq(&x, &self.branch3, &join(p, "branch3"), tap);
        let bp = join(p, "branch4");
        let y = tap.ops.max_pool(&self.branch4_pool, x);
        let y = tap.at(&format!("{bp}.0"), y);
        let y = self.branch4.forward(y, &format!("{bp}.1"), tap);
        let b4 = tap.at(&bp, y);
        let y = tap.ops.cat(vec![b1, b2, b3, b4]);
        tap.at(p, y)
    }

    /// `Sequential(BasicConv2d, BasicConv2d)` named `bp`.
    fn seq(x: &Tensor<4>, convs: &[BasicConv2d], bp: &str, tap: &mut Tap) -> Tensor<4> {
        let mut y = x.clone();
        for (i, c) in convs.iter().enumerate() {
            y = c.forward(y, &format!("{bp}.{i}"), tap);
        }
        tap.at(bp, y)
    }

    fn visit_params(&mut self, p: &str, v: &mut dyn LayerVisitor) {
        self.branch1.visit_params(&join(p, "branch1"), v);
        for (name, convs) in [
            ("branch2", &mut self.branch2),
            ("branch3", &mut self.branch3),
        ] {
            for (i, c) in convs.iter_mut().enumerate() {
                c.visit_params(&format!("{}.{i}", join(p, name)), v);
            }
        }
        self.branch4.visit_params(&join(p, "branch4.1"), v);
    }

    fn names(p: &str, out: &mut Vec<String>) {
        BasicConv2d::names(&join(p, "branch1"), out);
        for name in ["branch2", "branch3"] {
            let bp = join(p, name);
            for i in 0..2 {
                BasicConv2d::names(&format!("{bp}.{i}"), out);
            }
            out.push(bp);
        }
        let bp = join(p, "branch4");
        out.push(format!("{bp}.0"));
        BasicConv2d::names(&format!("{bp}.1"), out);
        out.push(bp);
        out.push(p.to_string());
    }
}

/// torchvision GoogLeNet without the auxiliary heads.
#[derive(Module, Debug)]
pub struct GoogLeNet {
    pub conv1: BasicConv2d,
    pub maxpool1: MaxPool2d,
    pub conv2: BasicConv2d,
    pub conv3: BasicConv2d,
    pub maxpool2: MaxPool2d,
    /// inception3a, 3b, 4a, 4b, 4c, 4d, 4e, 5a, 5b.
    pub inceptions: Vec<Inception>,
    pub maxpool3: MaxPool2d,
    pub maxpool4: MaxPool2d,
    pub dropout: Dropout,
    pub fc: Linear,
    /// torchvision's `transform_input`: re-normalise ImageNet-normalised input to the
    /// (x - 0.5) / 0.5 convention of the original Caffe weights. torchvision turns it on
    /// when loading its ImageNet weights; off otherwise.
    pub transform_input: bool,
}

const INCEPTION_NAMES: [&str; 9] = [
    "inception3a",
    "inception3b",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "inception5a",
    "inception5b",
];

impl GoogLeNet {
    pub fn new(num_classes: usize, transform_input: bool, dev: &Device) -> Self {
        let cfg: [[usize; 7]; 9] = [
            [192, 64, 96, 128, 16, 32, 32],
            [256, 128, 128, 192, 32, 96, 64],
            [480, 192, 96, 208, 16, 48, 64],
            [512, 160, 112, 224, 24, 64, 64],
            [512, 128, 128, 256, 24, 64, 64],
            [512, 112, 144, 288, 32, 64, 64],
            [528, 256, 160, 320, 32, 128, 128],
            [832, 256, 160, 320, 32, 128, 128],
            [832, 384, 192, 384, 48, 128, 128],
        ];
        Self {
            conv1: BasicConv2d::new(3, 64, 7, 2, 3, dev),
            maxpool1: pool(3, 2, 0),
            conv2: BasicConv2d::new(64, 64, 1, 1, 0, dev),
            conv3: BasicConv2d::new(64, 192, 3, 1, 1, dev),
            maxpool2: pool(3, 2, 0),
            inceptions: cfg
                .iter()
                .map(|c| Inception::new(c[0], c[1], c[2], c[3], c[4], c[5], c[6], dev))
                .collect(),
            maxpool3: pool(3, 2, 0),
            maxpool4: pool(2, 2, 0),
            dropout: DropoutConfig::new(0.2).init(),
            fc: linear(1024, num_classes, dev),
            transform_input,
        }
    }

    /// torchvision's `_transform_input`, op for op (per channel `x * s + b`, then concat).
    fn transform(x: Tensor<4>) -> Tensor<4> {
        let scale = [0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5];
        let shift = [
            (0.485 - 0.5) / 0.5,
            (0.456 - 0.5) / 0.5,
            (0.406 - 0.5) / 0.5,
        ];
        let channels = (0..3)
            .map(|c| {
                x.clone()
                    .narrow(1, c, 1)
                    .mul_scalar(scale[c])
                    .add_scalar(shift[c])
            })
            .collect();
        Tensor::cat(channels, 1)
    }

    pub(crate) fn forward(&self, x: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = if self.transform_input {
            Self::transform(x)
        } else {
            x
        };
        let x = self.conv1.forward(x, "conv1", tap);
        let x = tap.ops.max_pool(&self.maxpool1, x);
        let x = tap.at("maxpool1", x);
        let x = self.conv2.forward(x, "conv2", tap);
        let x = self.conv3.forward(x, "conv3", tap);
        let x = tap.ops.max_pool(&self.maxpool2, x);
        let mut x = tap.at("maxpool2", x);
        for (i, (inc, name)) in self.inceptions.iter().zip(INCEPTION_NAMES).enumerate() {
            x = inc.forward(x, name, tap);
            if i == 1 {
                let y = tap.ops.max_pool(&self.maxpool3, x);
                x = tap.at("maxpool3", y);
            } else if i == 6 {
                let y = tap.ops.max_pool(&self.maxpool4, x);
                x = tap.at("maxpool4", y);
            }
        }
        let x = tap.ops.avg_pool([1, 1], x);
        let x = tap.at("avgpool", x);
        let x = tap.at2("dropout", self.dropout.forward(x.flatten(1, 3)));
        tap.linear("fc", &self.fc, x)
    }

    pub(crate) fn names() -> Vec<String> {
        let mut out = Vec::new();
        BasicConv2d::names("conv1", &mut out);
        out.push("maxpool1".into());
        BasicConv2d::names("conv2", &mut out);
        BasicConv2d::names("conv3", &mut out);
        out.push("maxpool2".into());
        for (i, name) in INCEPTION_NAMES.iter().enumerate() {
            Inception::names(name, &mut out);
            if i == 1 {
                out.push("maxpool3".into());
            } else if i == 6 {
                out.push("maxpool4".into());
            }
        }
        out.extend(["avgpool", "dropout", "fc"].map(String::from));
        out
    }

    pub(crate) fn visit_params(&mut self, v: &mut dyn LayerVisitor) {
        self.conv1.visit_params("conv1", v);
        self.conv2.visit_params("conv2", v);
        self.conv3.visit_params("conv3", v);
        for (inc, name) in self.inceptions.iter_mut().zip(INCEPTION_NAMES) {
            inc.visit_params(name, v);
        }
        v.linear("fc", &mut self.fc);
    }

    pub(crate) fn head_mut(&mut self) -> (&'static str, &mut Linear) {
        ("fc", &mut self.fc)
    }
}
