//! Similarity of explanations for the model parameter randomisation test (MPRT, Adebayo et
//! al. 2018), as Quantus 0.6's `quantus.MPRT` computes it, and the aggregation of its
//! scores.
//!
//! # What Quantus compares
//!
//! Per image, the explanation of the original model and the one recomputed after a layer
//! (or, cascading, several) has been re-initialised. Before comparing, Quantus's
//! `explain_batch` divides each batch of maps by its largest |value|
//! (`normalise_by_max` over the whole batch; nothing for an all-zero batch) and takes the
//! absolute value (MPRT's defaults `normalise=True`, `abs=True`); the maps are then
//! flattened (`reshape(batch, -1)`, every channel kept) and compared with
//! `correlation_spearman` (default), `correlation_pearson` or `ssim`:
//!
//! * [`spearman`] is `scipy.stats.spearmanr`: Pearson's r of the average ranks (ties share
//!   the mean of their ranks, so the flat zero regions of CAM and ReLU maps count as one
//!   tie group). Quantus's batched call returns the same per-image values.
//! * [`pearson`] is `scipy.stats.pearsonr`.
//! * [`ssim`] is `skimage.metrics.structural_similarity` on the flattened maps, i.e. the
//!   1-D SSIM with a uniform window of 7 values, sample covariance, `K1 = 0.01`,
//!   `K2 = 0.03`, `data_range` the range of both maps together, averaged over the windows
//!   that lie inside the map (skimage's crop).
//!
//! Rank and Pearson correlations do not change when a map is multiplied by a positive
//! constant, so Quantus's batch-wide normalisation does not affect them; SSIM does depend
//! on it (and so, in Quantus, on which images share a batch). [`SimilarityOptions`]
//! normalises per map, which equals Quantus with a batch of one image.
//!
//! # Undefined values
//!
//! Where SciPy or skimage return `nan` — a constant map (zero variance: an all-zero
//! gradient, a CAM that is zero everywhere), fewer than two values (seven for SSIM), a NaN
//! in a map — the functions return `None`, never a silent number. (Quantus 0.6 itself fails
//! on a constant map in a batch of one: `correlation_spearman` calls `.shape` on SciPy's
//! plain float `nan`.)
//!
//! # Aggregation
//!
//! [`MprtResult`] holds what `quantus.MPRT` returns as its score dictionary: the
//! `"original"` entry (each image's explanation against itself recomputed on the unchanged
//! model: 1 for a deterministic method) and one entry per randomisation step, per image.
//! [`MprtResult::average_correlation`] and [`MprtResult::last_correlation`] are Quantus's
//! `return_average_correlation` and `return_last_correlation`. Quantus 0.6's average
//! includes the `"original"` entry (its loop skips a key named `"orig"`, which never
//! occurs); [`MprtResult::average_correlation_layers`] is the mean over the randomised
//! steps only.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::rank::descending_order;

fn check_lengths(a: &[f32], b: &[f32]) -> Result<()> {
    if a.len() != b.len() {
        return Err(EvalError::Options(format!(
            "maps to compare have {} and {} values; an original explanation and its recomputed \
             one must have the same shape",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// Average ranks (1-based, ties get the mean of their ranks), as
/// `scipy.stats.rankdata(method="average")`; `-0.0` and `0.0` are equal. `None` if a value
/// is NaN. Linear in the number of values (radix sort).
pub fn average_ranks(values: &[f32]) -> Option<Vec<f64>> {
    if values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let n = values.len();
    let order = descending_order(values);
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let v = values[order[i] as usize];
        let mut j = i + 1;
        while j < n && values[order[j] as usize] == v {
            j += 1;
        }
        // Descending positions i..j are ascending ranks n-i down to n-j+1.
        let r = n as f64 - (i + j - 1) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k as usize] = r;
        }
        i = j;
    }
    Some(ranks)
}

/// Pearson's r of two equally long f64 vectors with the given means, clipped to [-1, 1];
/// `None` when either has zero spread.
fn pearson_centred(x: &[f64], mx: f64, y: &[f64], my: f64) -> Option<f64> {
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    // sqrt of the product (not the product of square roots): for identical inputs
    // sqrt(fl(s·s)) = s exactly, so a map compared with itself gives exactly 1.
    let r = sxy / (sxx * syy).sqrt();
    r.is_finite().then(|| r.clamp(-1.0, 1.0))
}

/// Spearman's rank correlation of two maps, equal to `scipy.stats.spearmanr(a, b)[0]` on
/// the flattened maps (average ranks for ties). `None` where SciPy gives `nan`: a
/// constant map, fewer than two values, a NaN. Maps of different lengths are an error.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    check_lengths(a, b)?;
    if a.len() < 2 {
        return Ok(None);
    }
    let (Some(ra), Some(rb)) = (average_ranks(a), average_ranks(b)) else {
        return Ok(None);
    };
    // Average ranks of n values always have mean (n + 1) / 2 (exact in f64).
    let m = (a.len() as f64 + 1.0) / 2.0;
    Ok(pearson_centred(&ra, m, &rb, m))
}

/// Pearson's correlation of two maps, equal to `scipy.stats.pearsonr(a, b)[0]` (computed
/// in f64). `None` where SciPy gives `nan`: a constant map, fewer than two values, a
/// non-finite value.
pub fn pearson(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    check_lengths(a, b)?;
    if a.len() < 2 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return Ok(None);
    }
    // SciPy tests constancy by equality; a mean can be off by an ulp from the values.
    if a.iter().all(|&v| v == a[0]) || b.iter().all(|&v| v == b[0]) {
        return Ok(None);
    }
    let x: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let y: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    Ok(pearson_centred(&x, mx, &y, my))
}

/// Window of [`ssim`] (skimage's default `win_size` without Gaussian weights).
pub const SSIM_WINDOW: usize = 7;

/// Structural similarity of two flattened maps as Quantus's `ssim` computes it:
/// `skimage.metrics.structural_similarity(a, b, data_range=max(a∪b) − min(a∪b))` on 1-D
/// arrays — uniform window of [`SSIM_WINDOW`] values, sample covariance (`7/6`),
/// `C1 = (0.01·R)²`, `C2 = (0.03·R)²`, mean over the windows inside the map. Computed in
/// f64 (skimage computes float32 maps in float32, which moved the fixture values by up
/// to 1.2e-8).
/// `None` where skimage fails or gives `nan`: fewer than 7 values, two equal constant
/// maps (`R = 0`), a non-finite value.
pub fn ssim(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    check_lengths(a, b)?;
    let n = a.len();
    if n < SSIM_WINDOW || a.iter().chain(b).any(|v| !v.is_finite()) {
        return Ok(None);
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in a.iter().chain(b) {
        lo = lo.min(v as f64);
        hi = hi.max(v as f64);
    }
    let range = hi - lo;
    let (c1, c2) = ((0.01 * range).powi(2), (0.03 * range).powi(2));
    let np = SSIM_WINDOW as f64;
    let cov_norm = np / (np - 1.0);
    let pad = (SSIM_WINDOW - 1) / 2;
    let x: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let y: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let mut total = 0.0;
    let count = n - 2 * pad;
    for c in pad..n - pad {
        let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in c - pad..=c + pad {
            sx += x[i];
            sy += y[i];
            sxx += x[i] * x[i];
            syy += y[i] * y[i];
            sxy += x[i] * y[i];
        }
        let (ux, uy) = (sx / np, sy / np);
        let vx = cov_norm * (sxx / np - ux * ux);
        let vy = cov_norm * (syy / np - uy * uy);
        let vxy = cov_norm * (sxy / np - ux * uy);
        let num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2);
        let den = (ux * ux + uy * uy + c1) * (vx + vy + c2);
        total += num / den;
    }
    let s = total / count as f64;
    Ok(s.is_finite().then_some(s))
}

/// The similarity function of an MPRT run (Quantus's `similarity_func`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Similarity {
    /// `correlation_spearman` (Quantus's default).
    #[default]
    Spearman,
    /// `correlation_pearson`.
    Pearson,
    /// `ssim`.
    Ssim,
}

impl Similarity {
    /// The similarity of two flattened maps (see [`spearman`], [`pearson`], [`ssim`]).
    pub fn compute(self, a: &[f32], b: &[f32]) -> Result<Option<f64>> {
        match self {
            Similarity::Spearman => spearman(a, b),
            Similarity::Pearson => pearson(a, b),
            Similarity::Ssim => ssim(a, b),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Similarity::Spearman => "spearman",
            Similarity::Pearson => "pearson",
            Similarity::Ssim => "ssim",
        }
    }
}

/// How MPRT compares an original explanation with a recomputed one. The default is
/// Quantus's: Spearman, normalised, absolute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimilarityOptions {
    pub similarity: Similarity,
    /// Compare |values| (Quantus's `abs`).
    pub abs: bool,
    /// Divide each map by its largest |value| first, in f32 as NumPy does (Quantus's
    /// `normalise` with `normalise_by_max`, which Quantus applies per batch; equal for a
    /// batch of one). No effect on the correlations; all-zero maps are left as they are.
    pub normalise: bool,
}

impl Default for SimilarityOptions {
    fn default() -> Self {
        Self {
            similarity: Similarity::Spearman,
            abs: true,
            normalise: true,
        }
    }
}

impl SimilarityOptions {
    /// The map as Quantus compares it: normalised (if set), then |·| (if set).
    pub fn prepare(&self, map: &[f32]) -> Vec<f32> {
        let mut v = map.to_vec();
        if self.normalise {
            let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            if max > 0.0 && max.is_finite() {
                for x in &mut v {
                    *x /= max;
                }
            }
        }
        if self.abs {
            for x in &mut v {
                *x = x.abs();
            }
        }
        v
    }

    /// Similarity of an original map and a recomputed one (flattened, equally long).
    pub fn compare(&self, original: &[f32], recomputed: &[f32]) -> Result<Option<f64>> {
        check_lengths(original, recomputed)?;
        self.similarity
            .compute(&self.prepare(original), &self.prepare(recomputed))
    }

    /// [`compare`](Self::compare) image by image; the two lists must be equally long.
    pub fn compare_all<A: AsRef<[f32]>, B: AsRef<[f32]>>(
        &self,
        originals: &[A],
        recomputed: &[B],
    ) -> Result<Vec<Option<f64>>> {
        if originals.len() != recomputed.len() {
            return Err(EvalError::Options(format!(
                "{} original maps but {} recomputed ones",
                originals.len(),
                recomputed.len()
            )));
        }
        originals
            .iter()
            .zip(recomputed)
            .map(|(a, b)| self.compare(a.as_ref(), b.as_ref()))
            .collect()
    }
}

/// The per-image scores of one randomisation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MprtLayer {
    /// The layer or layer group randomised at this step (last, when cascading).
    pub name: String,
    /// Similarity per image; `None` where undefined.
    pub scores: Vec<Option<f64>>,
}

/// The scores of an MPRT run: Quantus's score dictionary, per step and per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MprtResult {
    /// Quantus's `"original"`: each image's explanation against itself recomputed on the
    /// unchanged model.
    pub original: Vec<Option<f64>>,
    /// The randomisation steps in the order they were run.
    pub layers: Vec<MprtLayer>,
}

/// Mean of values that must all be defined; `None` if any is undefined or there are none
/// (NumPy's `mean` gives `nan` for both).
fn mean_defined(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut n = 0usize;
    let mut sum = 0.0;
    for v in values {
        sum += v?;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

impl MprtResult {
    /// A result with the `"original"` scores (one per image) and no step yet.
    pub fn new(original: Vec<Option<f64>>) -> Self {
        Self {
            original,
            layers: Vec::new(),
        }
    }

    /// Number of images.
    pub fn images(&self) -> usize {
        self.original.len()
    }

    /// Appends the scores of the next step; one score per image.
    pub fn push(&mut self, name: impl Into<String>, scores: Vec<Option<f64>>) -> Result<()> {
        let name = name.into();
        if scores.len() != self.images() {
            return Err(EvalError::Options(format!(
                "MPRT step {name:?} has {} scores but the run has {} images",
                scores.len(),
                self.images()
            )));
        }
        self.layers.push(MprtLayer { name, scores });
        Ok(())
    }

    /// Quantus's `return_average_correlation=True`: per image, the mean over the
    /// `"original"` entry and every step (Quantus 0.6 includes `"original"`, see the module
    /// docs). `None` where a value is undefined.
    pub fn average_correlation(&self) -> Vec<Option<f64>> {
        (0..self.images())
            .map(|i| {
                mean_defined(
                    std::iter::once(self.original[i])
                        .chain(self.layers.iter().map(|l| l.scores[i])),
                )
            })
            .collect()
    }

    /// Per image, the mean over the randomisation steps only (without `"original"`).
    pub fn average_correlation_layers(&self) -> Vec<Option<f64>> {
        (0..self.images())
            .map(|i| mean_defined(self.layers.iter().map(|l| l.scores[i])))
            .collect()
    }

    /// Quantus's `return_last_correlation=True`: the scores of the last step (with
    /// `top_down` the fully randomised model); the `"original"` scores if no step ran.
    pub fn last_correlation(&self) -> Vec<Option<f64>> {
        self.layers
            .last()
            .map_or_else(|| self.original.clone(), |l| l.scores.clone())
    }

    /// Per step, the mean over the images (`None` if one is undefined): the curve of a
    /// cascading-randomisation figure.
    pub fn layer_means(&self) -> Vec<(String, Option<f64>)> {
        self.layers
            .iter()
            .map(|l| (l.name.clone(), mean_defined(l.scores.iter().copied())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties_and_equal_signed_zeros() {
        let r = average_ranks(&[0.0, 3.0, -0.0, -1.0, 3.0, 2.0]).unwrap();
        assert_eq!(r, vec![2.5, 5.5, 2.5, 1.0, 5.5, 4.0]);
        assert!(average_ranks(&[1.0, f32::NAN]).is_none());
    }

    #[test]
    fn identical_maps_give_exactly_one_and_constants_none() {
        let a: Vec<f32> = (0..500).map(|i| ((i * 37) % 101) as f32 * 0.013).collect();
        assert_eq!(spearman(&a, &a).unwrap(), Some(1.0));
        assert_eq!(pearson(&a, &a).unwrap(), Some(1.0));
        let neg: Vec<f32> = a.iter().map(|v| -v).collect();
        assert_eq!(spearman(&a, &neg).unwrap(), Some(-1.0));
        let zero = vec![0.0f32; 500];
        assert_eq!(spearman(&a, &zero).unwrap(), None);
        assert_eq!(pearson(&zero, &a).unwrap(), None);
        assert_eq!(ssim(&zero, &zero).unwrap(), None);
        assert!(spearman(&a, &a[1..]).is_err());
    }

    #[test]
    fn average_includes_original_and_last_is_the_final_step() {
        let mut r = MprtResult::new(vec![Some(1.0), Some(1.0)]);
        r.push("fc", vec![Some(0.5), Some(0.7)]).unwrap();
        r.push("layer4", vec![Some(0.2), None]).unwrap();
        assert!(r.push("layer3", vec![Some(0.1)]).is_err());
        assert_eq!(r.average_correlation(), vec![Some(1.7 / 3.0), None]);
        assert_eq!(r.average_correlation_layers()[0], Some(0.35));
        assert_eq!(r.last_correlation(), vec![Some(0.2), None]);
        assert_eq!(r.layer_means()[0], ("fc".to_string(), Some(0.6)));
    }
}
