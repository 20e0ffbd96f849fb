//! torchvision ResNet-18 / ResNet-50 (`torchvision.models.resnet`).

use burn::nn::BatchNorm;
use burn::nn::Linear;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;

use crate::layers::{LayerVisitor, Tap, bn, conv, join, linear};

const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// `downsample` = `Sequential(conv1x1, BatchNorm2d)`: torchvision keys `downsample.0.*`
/// (conv) and `downsample.1.*` (bn).
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// BasicBlock (`conv3`/`bn3` absent) or Bottleneck.
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm>,
    pub downsample: Option<Downsample>,
}

impl Block {
    fn forward(&self, x: Tensor<4>, p: &str, tap: &mut Tap) -> Tensor<4> {
        let y = tap.conv_bn(
            &join(p, "conv1"),
            &self.conv1,
            &join(p, "bn1"),
            &self.bn1,
            x.clone(),
        );
        let y = tap.ops.relu(y);
        let mut y = tap.conv_bn(
            &join(p, "conv2"),
            &self.conv2,
            &join(p, "bn2"),
            &self.bn2,
            y,
        );
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            let z = tap.ops.relu(y);
            y = tap.conv_bn(&join(p, "conv3"), c3, &join(p, "bn3"), b3, z);
        }
        let identity = match &self.downsample {
            Some(d) => {
                let z = tap.conv_bn(
                    &join(p, "downsample.0"),
                    &d.conv,
                    &join(p, "downsample.1"),
                    &d.bn,
                    x,
                );
                tap.at(&join(p, "downsample"), z)
            }
            None => x,
        };
        let sum = tap.ops.add(y, identity);
        let out = tap.ops.relu(sum);
        tap.at(p, out)
    }

    fn visit_params(&mut self, p: &str, v: &mut dyn LayerVisitor) {
        v.conv(&join(p, "conv1"), &mut self.conv1);
        v.bn(&join(p, "bn1"), &mut self.bn1);
        v.conv(&join(p, "conv2"), &mut self.conv2);
        v.bn(&join(p, "bn2"), &mut self.bn2);
        if let Some(c) = &mut self.conv3 {
            v.conv(&join(p, "conv3"), c);
        }
        if let Some(b) = &mut self.bn3 {
            v.bn(&join(p, "bn3"), b);
        }
        if let Some(d) = &mut self.downsample {
            v.conv(&join(p, "downsample.0"), &mut d.conv);
            v.bn(&join(p, "downsample.1"), &mut d.bn);
        }
    }

    fn names(&self, p: &str, out: &mut Vec<String>) {
        out.extend(["conv1", "bn1", "conv2", "bn2"].map(|c| join(p, c)));
        if self.conv3.is_some() {
            out.extend(["conv3", "bn3"].map(|c| join(p, c)));
        }
        if self.downsample.is_some() {
            out.extend(["downsample.0", "downsample.1", "downsample"].map(|c| join(p, c)));
        }
        out.push(p.to_string());
    }
}

/// torchvision ResNet (depth 18: BasicBlock [2,2,2,2]; depth 50: Bottleneck [3,4,6,3]).
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
    pub fc: Linear,
    /// 18 or 50.
    pub depth: usize,
}

impl ResNet {
    pub fn new(depth: usize, num_classes: usize, dev: &Device) -> Self {
        let (counts, bottleneck) = match depth {
            18 => ([2, 2, 2, 2], false),
            50 => ([3, 4, 6, 3], true),
            _ => panic!("unsupported ResNet depth {depth}"),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut cin = 64;
        let mut layers: Vec<Vec<Block>> = Vec::new();
        for (li, &count) in counts.iter().enumerate() {
            let planes = 64 << li;
            let cout = planes * expansion;
            let mut blocks = Vec::new();
            for bi in 0..count {
                // torchvision v1.5: the stride sits on the 3x3 conv (conv2 in Bottleneck).
                let s = if bi == 0 && li > 0 { 2 } else { 1 };
                let downsample = (s != 1 || cin != cout).then(|| Downsample {
                    conv: conv(cin, cout, 1, s, 0, false, dev),
                    bn: bn(cout, EPS, MOMENTUM, dev),
                });
                let block = if bottleneck {
                    Block {
                        conv1: conv(cin, planes, 1, 1, 0, false, dev),
                        bn1: bn(planes, EPS, MOMENTUM, dev),
                        conv2: conv(planes, planes, 3, s, 1, false, dev),
                        bn2: bn(planes, EPS, MOMENTUM, dev),
                        conv3: Some(conv(planes, cout, 1, 1, 0, false, dev)),
                        bn3: Some(bn(cout, EPS, MOMENTUM, dev)),
                        downsample,
                    }
                } else {
                    Block {
                        conv1: conv(cin, planes, 3, s, 1, false, dev),
                        bn1: bn(planes, EPS, MOMENTUM, dev),
                        conv2: conv(planes, planes, 3, 1, 1, false, dev),
                        bn2: bn(planes, EPS, MOMENTUM, dev),
                        conv3: None,
                        bn3: None,
                        downsample,
                    }
                };
                blocks.push(block);
                cin = cout;
            }
            layers.push(blocks);
        }
        let mut it = layers.into_iter();
        let mut next = || it.next().expect("four stages");
        Self {
            conv1: conv(3, 64, 7, 2, 3, false, dev),
            bn1: bn(64, EPS, MOMENTUM, dev),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            fc: linear(cin, num_classes, dev),
            depth,
        }
    }

    fn stages(&self) -> [(&'static str, &Vec<Block>); 4] {
        [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
            ("layer4", &self.layer4),
        ]
    }

    pub(crate) fn forward(&self, x: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = tap.conv_bn("conv1", &self.conv1, "bn1", &self.bn1, x);
        let x = tap.ops.relu(x);
        let x = tap.at("relu", x);
        let x = tap.ops.max_pool(&self.maxpool, x);
        let mut x = tap.at("maxpool", x);
        for (name, blocks) in self.stages() {
            for (i, b) in blocks.iter().enumerate() {
                x = b.forward(x, &format!("{name}.{i}"), tap);
            }
            x = tap.at(name, x);
        }
        let x = tap.ops.avg_pool([1, 1], x);
        let x = tap.at("avgpool", x);
        tap.linear("fc", &self.fc, x.flatten(1, 3))
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = ["conv1", "bn1", "relu", "maxpool"]
            .map(String::from)
            .to_vec();
        for (name, blocks) in self.stages() {
            for (i, b) in blocks.iter().enumerate() {
                b.names(&format!("{name}.{i}"), &mut out);
            }
            out.push(name.to_string());
        }
        out.extend(["avgpool", "fc"].map(String::from));
        out
    }

    pub(crate) fn visit_params(&mut self, v: &mut dyn LayerVisitor) {
        v.conv("conv1", &mut self.conv1);
        v.bn("bn1", &mut self.bn1);
        for (name, blocks) in [
            ("layer1", &mut self.layer1),
            ("layer2", &mut self.layer2),
            ("layer3", &mut self.layer3),
            ("layer4", &mut self.layer4),
        ] {
            for (i, b) in blocks.iter_mut().enumerate() {
                b.visit_params(&format!("{name}.{i}"), v);
            }
        }
        v.linear("fc", &mut self.fc);
    }

    pub(crate) fn head_mut(&mut self) -> (&'static str, &mut Linear) {
        ("fc", &mut self.fc)
    }
}
