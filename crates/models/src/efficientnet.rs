//! EfficientNet-Lite0 as in PyPI `efficientnet-lite-pytorch==0.1.0`
//! (`EfficientNet.from_name("efficientnet-lite0")`).
//!
//! Lite: ReLU6 instead of swish, no squeeze-and-excitation, stem (32) and head (1280)
//! not scaled. BatchNorm eps 1e-3, PyTorch momentum 0.01 (TF 0.99). Convolutions use
//! TensorFlow "SAME" padding computed from the actual input size (the package's
//! `Conv2dStaticSamePadding` computes it once from `image_size`, 224 by default; both
//! agree whenever every feature map entering a strided conv has even size, e.g. at 128 and
//! 224 px). Drop-connect and dropout are training-only.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::layers::{LayerVisitor, Tap, bn, conv_same, join, linear};

const EPS: f64 = 1e-3;
const MOMENTUM: f64 = 0.01;

/// (repeats, kernel, stride, expand ratio, in, out) of the seven stages.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Mobile inverted bottleneck without SE: [1x1 expand + BN + ReLU6] + depthwise kxk + BN +
/// ReLU6 + 1x1 project + BN, plus identity skip when stride 1 and in == out.
#[derive(Module, Debug)]
pub struct MBConvBlock {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    pub skip: bool,
}

impl MBConvBlock {
    fn new(k: usize, stride: usize, expand: usize, cin: usize, cout: usize, dev: &Device) -> Self {
        let mid = cin * expand;
        let (expand_conv, bn0) = if expand != 1 {
            (
                Some(conv_same(cin, mid, 1, 1, 1, dev)),
                Some(bn(mid, EPS, MOMENTUM, dev)),
            )
        } else {
            (None, None)
        };
        Self {
            expand_conv,
            bn0,
            depthwise_conv: conv_same(mid, mid, k, stride, mid, dev),
            bn1: bn(mid, EPS, MOMENTUM, dev),
            project_conv: conv_same(mid, cout, 1, 1, 1, dev),
            bn2: bn(cout, EPS, MOMENTUM, dev),
            skip: stride == 1 && cin == cout,
        }
    }

    fn forward(&self, x: Tensor<4>, p: &str, tap: &mut Tap) -> Tensor<4> {
        let mut y = x.clone();
        if let (Some(c), Some(b)) = (&self.expand_conv, &self.bn0) {
            y = tap.conv_bn(&join(p, "_expand_conv"), c, &join(p, "_bn0"), b, y);
            y = tap.ops.relu6(y);
        }
        let y = tap.conv_bn(
            &join(p, "_depthwise_conv"),
            &self.depthwise_conv,
            &join(p, "_bn1"),
            &self.bn1,
            y,
        );
        let y = tap.ops.relu6(y);
        let y = tap.conv_bn(
            &join(p, "_project_conv"),
            &self.project_conv,
            &join(p, "_bn2"),
            &self.bn2,
            y,
        );
        let y = if self.skip { tap.ops.add(y, x) } else { y };
        tap.at(p, y)
    }

    fn visit_params(&mut self, p: &str, v: &mut dyn LayerVisitor) {
        if let Some(c) = &mut self.expand_conv {
            v.conv(&join(p, "_expand_conv"), c);
        }
        if let Some(b) = &mut self.bn0 {
            v.bn(&join(p, "_bn0"), b);
        }
        v.conv(&join(p, "_depthwise_conv"), &mut self.depthwise_conv);
        v.bn(&join(p, "_bn1"), &mut self.bn1);
        v.conv(&join(p, "_project_conv"), &mut self.project_conv);
        v.bn(&join(p, "_bn2"), &mut self.bn2);
    }

    fn names(&self, p: &str, out: &mut Vec<String>) {
        if self.expand_conv.is_some() {
            out.extend(["_expand_conv", "_bn0"].map(|c| join(p, c)));
        }
        out.extend(["_depthwise_conv", "_bn1", "_project_conv", "_bn2"].map(|c| join(p, c)));
        out.push(p.to_string());
    }
}

/// EfficientNet-Lite0 (16 blocks `_blocks.0` .. `_blocks.15`).
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MBConvBlock>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
    pub dropout: Dropout,
    pub fc: Linear,
}

impl EfficientNetLite0 {
    pub fn new(num_classes: usize, dev: &Device) -> Self {
        let mut blocks = Vec::new();
        for &(r, k, s, e, cin, cout) in STAGES.iter() {
            blocks.push(MBConvBlock::new(k, s, e, cin, cout, dev));
            for _ in 1..r {
                blocks.push(MBConvBlock::new(k, 1, e, cout, cout, dev));
            }
        }
        Self {
            conv_stem: conv_same(3, 32, 3, 2, 1, dev),
            bn0: bn(32, EPS, MOMENTUM, dev),
            blocks,
            conv_head: conv_same(320, 1280, 1, 1, 1, dev),
            bn1: bn(1280, EPS, MOMENTUM, dev),
            dropout: DropoutConfig::new(0.2).init(),
            fc: linear(1280, num_classes, dev),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = tap.conv_bn("_conv_stem", &self.conv_stem, "_bn0", &self.bn0, x);
        let mut x = tap.ops.relu6(x);
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward(x, &format!("_blocks.{i}"), tap);
        }
        let x = tap.conv_bn("_conv_head", &self.conv_head, "_bn1", &self.bn1, x);
        let x = tap.ops.relu6(x);
        let x = tap.at("extract_features", x);
        let x = tap.ops.avg_pool([1, 1], x);
        let x = tap.at("_avg_pooling", x);
        let x = tap.at2("_dropout", self.dropout.forward(x.flatten(1, 3)));
        tap.linear("_fc", &self.fc, x)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = vec!["_conv_stem".into(), "_bn0".into()];
        for (i, b) in self.blocks.iter().enumerate() {
            b.names(&format!("_blocks.{i}"), &mut out);
        }
        out.extend(
            [
                "_conv_head",
                "_bn1",
                "extract_features",
                "_avg_pooling",
                "_dropout",
                "_fc",
            ]
            .map(String::from),
        );
        out
    }

    pub(crate) fn visit_params(&mut self, v: &mut dyn LayerVisitor) {
        v.conv("_conv_stem", &mut self.conv_stem);
        v.bn("_bn0", &mut self.bn0);
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.visit_params(&format!("_blocks.{i}"), v);
        }
        v.conv("_conv_head", &mut self.conv_head);
        v.bn("_bn1", &mut self.bn1);
        v.linear("_fc", &mut self.fc);
    }

    pub(crate) fn head_mut(&mut self) -> (&'static str, &mut Linear) {
        ("_fc", &mut self.fc)
    }
}
