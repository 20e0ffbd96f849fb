//! BatchNorm population statistics: after training, the running mean and variance of every
//! trained BatchNorm are replaced by the statistics of the training data, as MATLAB's
//! `trainNetwork` does by default (`BatchNormalizationStatistics = "population"`: one more
//! pass over the training data) and as "precise BN" does in PyTorch (a train-mode pass with
//! `momentum=None`). Moving averages lag the weights while the network learns fast; with
//! EfficientNet's slow momentum (0.01) a short fine-tuning leaves inference-mode outputs far
//! from training-mode ones.
//!
//! The pass runs the network as in training (every BatchNorm normalises with the batch's
//! statistics, so each layer sees the activations it saw in training) and averages the batch
//! means and unbiased batch variances over all batches: with one batch this is exactly
//! PyTorch's `momentum=None` running statistics (tested against the models' fixtures).
//! Frozen BatchNorms (`--freeze-backbone`) keep their statistics.

use std::collections::{BTreeMap, BTreeSet};

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_models::{Classifier, LayerVisitor, Ops};

use crate::data::Images;

/// Sums of batch means and unbiased variances per BatchNorm.
#[derive(Default)]
struct Sums {
    mean: Vec<f64>,
    var: Vec<f64>,
    batches: usize,
}

struct StatsOps<'a> {
    trained: &'a BTreeSet<String>,
    sums: BTreeMap<String, Sums>,
}

fn values(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .expect("float tensor")
}

impl Ops for StatsOps<'_> {
    fn conv(
        &mut self,
        _name: &str,
        conv: &Conv2d,
        bn: Option<(&str, &BatchNorm)>,
        x: Tensor<4>,
    ) -> Tensor<4> {
        let y = conv.forward(x);
        let Some((bn_name, bn)) = bn else {
            return y;
        };
        if !self.trained.contains(bn_name) {
            return bn.forward(y);
        }
        let [n, _, h, w] = y.dims();
        let count = (n * h * w) as f64;
        let out =
            burn::tensor::module::batch_norm_train(y, bn.gamma.val(), bn.beta.val(), bn.epsilon);
        let unbiased = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let s = self.sums.entry(bn_name.to_string()).or_default();
        let (mean, var) = (values(out.mean), values(out.variance));
        if s.mean.is_empty() {
            s.mean = vec![0.0; mean.len()];
            s.var = vec![0.0; var.len()];
        }
        for (a, v) in s.mean.iter_mut().zip(&mean) {
            *a += v;
        }
        for (a, v) in s.var.iter_mut().zip(&var) {
            *a += v * unbiased;
        }
        s.batches += 1;
        out.output
    }
}

/// Names of the BatchNorms that train (not frozen).
struct TrainedNorms(BTreeSet<String>);

impl LayerVisitor for TrainedNorms {
    fn conv(&mut self, _: &str, _: &mut Conv2d) {}
    fn linear(&mut self, _: &str, _: &mut burn::nn::Linear) {}
    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        if m.training.is_enabled() {
            self.0.insert(name.to_string());
        }
    }
}

/// Writes the averaged statistics into the model's BatchNorms.
struct SetStats(BTreeMap<String, Sums>);

impl LayerVisitor for SetStats {
    fn conv(&mut self, _: &str, _: &mut Conv2d) {}
    fn linear(&mut self, _: &str, _: &mut burn::nn::Linear) {}
    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        let Some(s) = self.0.get(name) else { return };
        let dev = m.gamma.lazy_device();
        let k = s.batches as f64;
        let avg = |v: &[f64]| -> Tensor<1> {
            let data: Vec<f32> = v.iter().map(|x| (x / k) as f32).collect();
            let len = data.len();
            Tensor::<1>::from_data(TensorData::new(data, [len]), &dev)
        };
        m.running_mean.update(avg(&s.mean));
        m.running_var.update(avg(&s.var));
    }
}

/// Replaces the running statistics of `model`'s trained BatchNorms by their averages over
/// `images` in batches of `batch` (in order). Returns the number of BatchNorms updated.
pub fn population_statistics(model: &mut Classifier, images: &Images, batch: usize) -> usize {
    let mut trained = TrainedNorms(BTreeSet::new());
    model.visit_layers(&mut trained);
    if trained.0.is_empty() || images.is_empty() {
        return 0;
    }
    let inference = model.clone().valid();
    let dev = Device::default();
    let mut ops = StatsOps {
        trained: &trained.0,
        sums: BTreeMap::new(),
    };
    let idx: Vec<usize> = (0..images.len()).collect();
    for chunk in idx.chunks(batch.max(2)) {
        let (x, _) = images.batch(chunk, &dev, FloatDType::F32);
        let _ = inference.forward_ops(x, &mut ops);
    }
    let updated = ops.sums.len();
    model.visit_layers(&mut SetStats(ops.sums));
    updated
}
