//! Which output is explained.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The class whose score is explained, per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The predicted class (arg-max logit), as Captum and pytorch-grad-cam users do.
    Predicted,
    /// The image's true label (needs labels).
    True,
    /// A fixed class index.
    Index(usize),
}

impl Target {
    /// `true`, `pred` / `predicted`, or a class index.
    pub fn parse(s: &str) -> Result<Target, String> {
        match s {
            "pred" | "predicted" => Ok(Target::Predicted),
            "true" => Ok(Target::True),
            k => k
                .parse::<usize>()
                .map(Target::Index)
                .map_err(|_| format!("expected pred, true or a class index, got {s:?}")),
        }
    }
}

/// A `[N, K]` one-hot seed with `like`'s dtype and device.
pub fn one_hot(targets: &[usize], k: usize, like: &Tensor<2>) -> Tensor<2> {
    let n = targets.len();
    let mut data = vec![0f32; n * k];
    for (i, &t) in targets.iter().enumerate() {
        assert!(t < k, "target class {t} out of range for {k} classes");
        data[i * k + t] = 1.0;
    }
    Tensor::<2>::from_data(TensorData::new(data, [n, k]), &like.device()).cast(like.dtype())
}

/// Arg-max class per row of `[N, K]` logits (first maximum on ties).
pub fn predicted(logits: &Tensor<2>) -> Vec<usize> {
    let [n, k] = logits.dims();
    let v = logits
        .clone()
        .inner()
        .cast(burn::tensor::FloatDType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits");
    (0..n)
        .map(|i| {
            let row = &v[i * k..(i + 1) * k];
            let mut best = 0;
            for (j, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// What the backward pass of the gradient and CAM families differentiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Score {
    /// The target's logit (Captum and pytorch-grad-cam).
    #[default]
    Logit,
    /// The target's softmax probability (MATLAB's `gradCAM` reduces at the softmax layer).
    Softmax,
    /// The target's logit minus the largest other logit.
    LogitDiff,
}

impl Score {
    pub fn as_str(self) -> &'static str {
        match self {
            Score::Logit => "logit",
            Score::Softmax => "softmax",
            Score::LogitDiff => "logit-diff",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Score::Logit, Score::Softmax, Score::LogitDiff]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// The score of one row of logits (one image) for class `target`, in float64.
    pub fn of_row(self, row: &[f64], target: usize) -> f64 {
        assert!(target < row.len(), "target class {target} out of range");
        match self {
            Score::Logit => row[target],
            Score::Softmax => {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
                (row[target] - max).exp() / sum
            }
            Score::LogitDiff => {
                let others = row
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != target)
                    .map(|(_, &v)| v)
                    .fold(f64::NEG_INFINITY, f64::max);
                row[target] - others
            }
        }
    }

    /// The scalar to differentiate: the score of each image's target, summed over the
    /// batch (images do not interact, so each image gets its own gradient).
    pub fn objective(self, logits: Tensor<2>, targets: &[usize]) -> Tensor<1> {
        let k = logits.dims()[1];
        let seed = one_hot(targets, k, &logits);
        match self {
            Score::Logit => (logits * seed).sum(),
            Score::Softmax => (burn::tensor::activation::softmax(logits, 1) * seed).sum(),
            Score::LogitDiff => {
                let target = (logits.clone() * seed.clone()).sum_dim(1);
                // The target pushed far down so that the maximum is over the others.
                let others = (logits - seed * 1e30).max_dim(1);
                (target - others).sum()
            }
        }
    }
}

/// The relevance LRP starts from at the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitRelevance {
    /// 1 at the target, 0 elsewhere (Zennit's one-hot `attr_output`).
    #[default]
    OneHot,
    /// The target's logit itself (iNNvestigate): a negative logit flips the map.
    Score,
}

impl InitRelevance {
    pub fn as_str(self) -> &'static str {
        match self {
            InitRelevance::OneHot => "onehot",
            InitRelevance::Score => "score",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [InitRelevance::OneHot, InitRelevance::Score]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// The seed `[N, K]` of the relevance backward pass.
    pub fn seed(self, logits: &Tensor<2>, targets: &[usize]) -> Tensor<2> {
        let onehot = one_hot(targets, logits.dims()[1], logits);
        match self {
            InitRelevance::OneHot => onehot,
            InitRelevance::Score => onehot * logits.clone().detach(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_scores_equal_the_objective() {
        let row = [0.5f64, -1.25, 2.0, 1.5];
        let logits = Tensor::<2>::from_data(
            TensorData::new(row.iter().map(|&v| v as f32).collect::<Vec<_>>(), [1, 4]),
            &Device::default(),
        );
        for score in [Score::Logit, Score::Softmax, Score::LogitDiff] {
            for t in [0, 2] {
                let want = score.objective(logits.clone(), &[t]).into_scalar::<f32>() as f64;
                let got = score.of_row(&row, t);
                assert!((got - want).abs() < 1e-6, "{score:?} {t}: {got} vs {want}");
            }
        }
    }
}
