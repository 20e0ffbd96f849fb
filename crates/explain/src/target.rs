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
