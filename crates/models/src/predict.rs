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

/// The first NaN or infinity of an array, located: an input image `[C, H, W]`, a map
/// `[C, H, W]` / `[H, W]` or a row of logits `[K]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFinite {
    /// Flat (row-major) index.
    pub index: usize,
    pub value: f32,
    /// The array's shape, for the coordinates of `index`.
    pub shape: [usize; 3],
}

impl NonFinite {
    /// The first non-finite value of `values`, an array of `shape` (`[1, 1, K]` for a
    /// vector, `[1, H, W]` for a plane).
    pub fn find(values: &[f32], shape: [usize; 3]) -> Option<Self> {
        let index = crate::elementwise::first_non_finite(values)?;
        Some(Self {
            index,
            value: values[index],
            shape,
        })
    }
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let (ch, y, x) = (self.index / plane, self.index % plane / w, self.index % w);
        match (c, h) {
            (1, 1) => write!(f, "{} at index {x}", self.value),
            (1, _) => write!(
                f,
                "{} at [y={y}, x={x}] (flat index {})",
                self.value, self.index
            ),
            _ => write!(
                f,
                "{} at [c={ch}, y={y}, x={x}] (flat index {})",
                self.value, self.index
            ),
        }
    }
}

/// Why one row of [`logits_per_row`] has no logits.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("input value {0}")]
    Input(NonFinite),
    #[error("logit {0}")]
    Logit(NonFinite),
}

/// [`logits`] row by row, refusing non-finite input: a row holding a NaN or an infinity
/// is not run (it would give NaN logits, and an arg-max of NaN is class 0), and a row
/// whose logits are not finite is refused too; the other rows are computed as usual.
pub fn logits_per_row(
    model: &Classifier,
    input: &[f32],
    shape: [usize; 4],
    batch: usize,
) -> Result<Vec<Result<Vec<f32>, RowError>>, InputError> {
    let [n, c, h, w] = shape;
    let per = c * h * w;
    if input.len() != n * per {
        return Err(InputError(format!(
            "{} values do not fill shape {shape:?}",
            input.len()
        )));
    }
    let rows: Vec<Result<&[f32], RowError>> = input
        .chunks(per.max(1))
        .map(|row| match NonFinite::find(row, [c, h, w]) {
            Some(bad) => Err(RowError::Input(bad)),
            None => Ok(row),
        })
        .collect();
    let finite: Vec<f32> = rows
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|row| row.iter().copied())
        .collect();
    let m = finite.len() / per.max(1);
    let k = model.num_classes();
    let out = if m == 0 {
        Vec::new()
    } else {
        logits(model, &finite, [m, c, h, w], batch)?
    };
    let mut computed = out.chunks(k);
    Ok(rows
        .into_iter()
        .map(|r| {
            r?;
            let l = computed.next().expect("one row of logits per finite input");
            match NonFinite::find(l, [1, 1, k]) {
                Some(bad) => Err(RowError::Logit(bad)),
                None => Ok(l.to_vec()),
            }
        })
        .collect())
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
    fn non_finite_values_are_located() {
        let mut v = vec![0.0f32; 2 * 3 * 4];
        v[12 + 5] = f32::NAN;
        v[20] = f32::INFINITY;
        let bad = NonFinite::find(&v, [2, 3, 4]).unwrap();
        assert_eq!(bad.index, 17);
        assert_eq!(bad.to_string(), "NaN at [c=1, y=1, x=1] (flat index 17)");
        let plane = NonFinite::find(&v[12..], [1, 3, 4]).unwrap();
        assert_eq!(plane.to_string(), "NaN at [y=1, x=1] (flat index 5)");
        let row = NonFinite::find(&[1.0, f32::NEG_INFINITY], [1, 1, 2]).unwrap();
        assert_eq!(row.to_string(), "-inf at index 1");
        assert_eq!(NonFinite::find(&[1.0, 2.0], [1, 1, 2]), None);
    }

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
