//! Inference: batched logits for already preprocessed inputs, softmax and top-k.
//!
//! No preprocessing happens here; inputs are `[N, 3, H, W]` float32 network inputs (see
//! `leukex_data::preprocess` for how images become such inputs).

use burn::module::Module;
use burn::prelude::*;

use crate::Classifier;

/// An input that is not `[N, 3, H, W]` with matching data length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad network input: {0}")]
pub struct InputError(pub String);

/// Logits `[N, num_classes]` (row-major) of `input` with shape `[N, 3, H, W]`, computed
/// in inference mode ([`Module::valid`]: BatchNorm running statistics, no dropout)
/// `batch` images at a time (at least 1) on the model's device. The model must be in
/// float32 (the default; see [`Classifier::cast_float`]).
pub fn logits(
    model: &Classifier,
    input: &[f32],
    shape: [usize; 4],
    batch: usize,
) -> Result<Vec<f32>, InputError> {
    let [n, c, h, w] = shape;
    if c != 3 {
        return Err(InputError(format!(
            "expected 3 channels ([N, 3, H, W]), got shape {shape:?}"
        )));
    }
    if h == 0 || w == 0 {
        return Err(InputError(format!("empty image size in shape {shape:?}")));
    }
    if input.len() != n * c * h * w {
        return Err(InputError(format!(
            "{} values do not fill shape {shape:?}",
            input.len()
        )));
    }
    let model = model.clone().valid();
    let device = model.head().1.weight.lazy_device();
    let k = model.num_classes();
    let per = c * h * w;
    let mut out = Vec::with_capacity(n * k);
    for chunk in input.chunks(batch.max(1) * per) {
        let b = chunk.len() / per;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [b, c, h, w]), &device);
        let y = model.forward(x).into_data();
        out.extend(
            y.try_to_vec::<f32>()
                .expect("f32 logits (model in float32)"),
        );
    }
    Ok(out)
}

/// Softmax of one row of logits (computed in f64, max-subtracted).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The class decision for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Arg-max class.
    pub predicted: usize,
    /// Softmax probability of the predicted class.
    pub score: f32,
    /// Softmax probabilities of all classes.
    pub probs: Vec<f32>,
}

/// Predictions for logits `[N, num_classes]` (row-major).
pub fn predictions(logits: &[f32], num_classes: usize) -> Vec<Prediction> {
    assert!(num_classes > 0 && logits.len().is_multiple_of(num_classes));
    logits
        .chunks(num_classes)
        .map(|row| {
            let probs = softmax(row);
            let predicted = top_k(row, 1)[0];
            Prediction {
                predicted,
                score: probs[predicted],
                probs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_top_k() {
        let p = softmax(&[1.0, 3.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0] && p[1] == p[3]);
        assert_eq!(top_k(&[1.0, 3.0, 2.0, 3.0], 3), vec![1, 3, 2]);
        let preds = predictions(&[0.0, 1.0, 5.0, -5.0], 2);
        assert_eq!(preds[0].predicted, 1);
        assert_eq!(preds[1].predicted, 0);
        assert!((preds[1].score - softmax(&[5.0, -5.0])[0]).abs() < 1e-7);
        // Large logits do not overflow.
        assert!(softmax(&[1e4, 0.0]).iter().all(|v| v.is_finite()));
    }
}
