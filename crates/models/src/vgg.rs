//! torchvision VGG-19 without batch norm (`torchvision.models.vgg19`).

use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::layers::{LayerVisitor, Tap, conv, linear};

/// Configuration "E": channel counts, 0 = max pool.
const CFG: [usize; 21] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

/// `features` is `Sequential(conv, relu, ..., maxpool)` with torchvision's indices
/// (convs at 0, 2, 5, 7, 10, ...; 37 modules, `features.36` the last max pool),
/// `avgpool` = `AdaptiveAvgPool2d((7, 7))`, `classifier` = `Sequential(Linear(25088, 4096),
/// ReLU, Dropout(0.5), Linear(4096, 4096), ReLU, Dropout(0.5), Linear(4096, K))`.
#[derive(Module, Debug)]
pub struct Vgg19 {
    /// The 16 convolutions in order (`features.0`, `features.2`, `features.5`, ...).
    pub convs: Vec<Conv2d>,
    pub pool: MaxPool2d,
    pub avgpool: AdaptiveAvgPool2d,
    /// `classifier.0`, `classifier.3`, `classifier.6`.
    pub classifier: Vec<Linear>,
    pub dropout: Dropout,
}

impl Vgg19 {
    pub fn new(num_classes: usize, dev: &Device) -> Self {
        let mut convs = Vec::new();
        let mut cin = 3;
        for &c in CFG.iter().filter(|&&c| c != 0) {
            convs.push(conv(cin, c, 3, 1, 1, true, dev));
            cin = c;
        }
        Self {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            avgpool: AdaptiveAvgPool2dConfig::new([7, 7]).init(),
            classifier: vec![
                linear(512 * 7 * 7, 4096, dev),
                linear(4096, 4096, dev),
                linear(4096, num_classes, dev),
            ],
            dropout: DropoutConfig::new(0.5).init(),
        }
    }

    /// torchvision index in `features` of the i-th convolution.
    fn conv_indices() -> Vec<usize> {
        let mut idx = Vec::new();
        let mut k = 0;
        for &c in CFG.iter() {
            if c == 0 {
                k += 1;
            } else {
                idx.push(k);
                k += 2;
            }
        }
        idx
    }

    pub(crate) fn forward(&self, x: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let mut x = x;
        let mut k = 0;
        let mut ci = 0;
        for &c in CFG.iter() {
            if c == 0 {
                let y = tap.ops.max_pool(&self.pool, x);
                x = tap.at(&format!("features.{k}"), y);
                k += 1;
            } else {
                let y = tap
                    .ops
                    .conv(&format!("features.{k}"), &self.convs[ci], None, x);
                let y = tap.ops.relu(y);
                x = tap.at(&format!("features.{}", k + 1), y);
                ci += 1;
                k += 2;
            }
        }
        let x = tap.at("features", x);
        let x = tap.ops.avg_pool(self.avgpool.output_size, x);
        let x = tap.at("avgpool", x);
        let mut h = x.flatten(1, 3);
        for (i, lin) in self.classifier.iter().enumerate() {
            let k = 3 * i;
            h = tap.linear(&format!("classifier.{k}"), lin, h);
            if i < 2 {
                let r = tap.ops.relu2(h);
                h = tap.at2(&format!("classifier.{}", k + 1), r);
                h = tap.at2(&format!("classifier.{}", k + 2), self.dropout.forward(h));
            }
        }
        tap.at2("classifier", h)
    }

    pub(crate) fn names() -> Vec<String> {
        let n_features = CFG
            .iter()
            .map(|&c| if c == 0 { 1 } else { 2 })
            .sum::<usize>();
        let mut out: Vec<String> = (0..n_features).map(|k| format!("features.{k}")).collect();
        out.extend(["features", "avgpool"].map(String::from));
        out.extend((0..7).map(|k| format!("classifier.{k}")));
        out.push("classifier".into());
        out
    }

    pub(crate) fn visit_params(&mut self, v: &mut dyn LayerVisitor) {
        for (c, k) in self.convs.iter_mut().zip(Self::conv_indices()) {
            v.conv(&format!("features.{k}"), c);
        }
        for (i, lin) in self.classifier.iter_mut().enumerate() {
            v.linear(&format!("classifier.{}", 3 * i), lin);
        }
    }

    pub(crate) fn head_mut(&mut self) -> (&'static str, &mut Linear) {
        ("classifier.6", &mut self.classifier[2])
    }
}
