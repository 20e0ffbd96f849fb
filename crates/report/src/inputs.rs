//! Reading the files a study folder holds (each reader names the file when it fails).
//! The structs mirror what `leukex train`, `leukex explain` and `leukex evaluate` write,
//! keeping only the fields the report shows; unknown fields are ignored so that a
//! writer may add some.

use crate::error::{ReportError, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads and parses a JSON file; `what` says what the file should be.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ReportError::invalid(path, format!("not {what}: {e}")))
}

/// A number that leukex-evaluate writes as `null` when it is undefined (NaN: no pair of
/// images differs, a map without relevant pixels): read back as NaN, shown as "n/a".
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_if_null_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// `MeanCi` of leukex-evaluate: a mean with its bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct MeanCi {
    pub n: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub lo: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hi: f64,
}

/// Pooled counts of one (model, method, mode): the fields of leukex-evaluate's
/// `ClassShares` the report uses. Arrays are in `MorphologyClass` order
/// (background, nucleus, cytoplasm, vacuole, rbc).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pooled {
    pub amount: [f64; 5],
    pub total: f64,
    pub share: [Option<f64>; 5],
    pub area_share: [Option<f64>; 5],
    pub cell_amount: f64,
    pub cell_share: Option<f64>,
    pub cell_area_share: Option<f64>,
    pub within_cell: [Option<f64>; 3],
}

pub const BACKGROUND: usize = 0;
pub const RBC: usize = 4;

impl Pooled {
    /// The paper's three categories: cell, red cells, background.
    pub fn categories(&self) -> [Option<f64>; 3] {
        [self.cell_share, self.share[RBC], self.share[BACKGROUND]]
    }
    /// The chance levels of the same three categories (their share of the labelled area).
    pub fn chance(&self) -> [Option<f64>; 3] {
        [
            self.cell_area_share,
            self.area_share[RBC],
            self.area_share[BACKGROUND],
        ]
    }
}

/// One row of `summary.json`'s `summary`.
#[derive(Debug, Clone, Deserialize)]
pub struct SummaryRow {
    pub model: String,
    pub method: String,
    pub mode: String,
    pub images: usize,
    pub undefined: usize,
    pub pooled: Pooled,
    pub mean_share: BTreeMap<String, Option<MeanCi>>,
    #[serde(deserialize_with = "nan_if_null_map")]
    pub mean_amount: BTreeMap<String, f64>,
    /// Keyed by the true label index as text (`"0"`, `"1"`, or `"unknown"`).
    pub within_cell_by_label: BTreeMap<String, [Option<f64>; 3]>,
    pub localisation: BTreeMap<String, Option<MeanCi>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Friedman {
    #[serde(deserialize_with = "nan_if_null")]
    pub statistic: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub pvalue: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PairTest {
    pub a: String,
    pub b: String,
    pub n: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub median_difference: f64,
    pub pvalue: Option<f64>,
    pub pvalue_holm: Option<f64>,
    /// `a>b`, `a<b` or `none`.
    pub verdict: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MethodTests {
    pub model: String,
    pub mode: String,
    pub metric: String,
    pub methods: Vec<String>,
    pub complete_images: usize,
    pub friedman: Option<Friedman>,
    pub pairs: Vec<PairTest>,
}

/// `summary.json` of `leukex evaluate`.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalSummary {
    pub modes: Vec<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub confidence: f64,
    pub alpha: f64,
    pub summary: Vec<SummaryRow>,
    pub tests: Vec<MethodTests>,
}

impl EvalSummary {
    pub fn row(&self, model: &str, method: &str, mode: &str) -> Option<&SummaryRow> {
        self.summary
            .iter()
            .find(|r| r.model == model && r.method == method && r.mode == mode)
    }
}

/// The test (or validation) metrics of a training run.
#[derive(Debug, Clone, Deserialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub f1: f64,
    pub roc_auc: Option<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
}

/// `metrics.json` of a `leukex train` run (its `RunOutcome`).
#[derive(Debug, Clone, Deserialize)]
pub struct RunMetrics {
    pub test: Metrics,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
}

/// `model.json` of a run: the class names and which one is positive.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelCard {
    pub classes: Vec<String>,
    pub positive_class: usize,
    #[serde(default)]
    pub initial_weights: Option<String>,
}

/// One row of `test_predictions.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub stem: String,
    pub label: String,
    pub predicted: String,
    /// Probability of the positive class.
    pub p_positive: f64,
}

/// Reads `test_predictions.csv` (`name,label,predicted,p_<class>...`).
pub fn read_predictions(path: &Path, card: &ModelCard) -> Result<Vec<Prediction>> {
    let positive = card
        .classes
        .get(card.positive_class)
        .ok_or_else(|| ReportError::invalid(path, "model.json's positive class is not a class"))?;
    let (mut r, header) = open_csv(path)?;
    let col = |name: &str| column(path, &header, name);
    let (cn, cl, cp, cq) = (
        col("name")?,
        col("label")?,
        col("predicted")?,
        col(&format!("p_{positive}"))?,
    );
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| csv_error(path, e))?;
        let p: f64 = rec[cq]
            .parse()
            .map_err(|e| ReportError::invalid(path, format!("row {}: p_{positive}: {e}", i + 2)))?;
        out.push(Prediction {
            stem: rec[cn].to_string(),
            label: rec[cl].to_string(),
            predicted: rec[cp].to_string(),
            p_positive: p,
        });
    }
    Ok(out)
}

/// A CSV reader and its header row.
fn open_csv(path: &Path) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord)> {
    let mut r = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
    let header = r.headers().map_err(|e| csv_error(path, e))?.clone();
    Ok((r, header))
}

/// The index of column `name`, or an error naming the file.
fn column(path: &Path, header: &csv::StringRecord, name: &str) -> Result<usize> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| ReportError::invalid(path, format!("no column {name:?}")))
}

fn csv_error(path: &Path, e: csv::Error) -> ReportError {
    ReportError::invalid(path, format!("not a readable CSV: {e}"))
}

/// The columns of `per_image.csv` the report uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub model: String,
    pub stem: String,
    pub method: String,
    pub mode: String,
    pub true_label: Option<i64>,
    pub predicted: Option<i64>,
    /// Amounts of cell, red cells, background.
    pub amounts: [f64; 3],
}

/// Reads `per_image.csv` of `leukex evaluate`.
pub fn read_per_image(path: &Path) -> Result<Vec<ImageRow>> {
    let (mut r, header) = open_csv(path)?;
    let col = |name: &str| column(path, &header, name);
    let c: Vec<usize> = [
        "model",
        "stem",
        "method",
        "mode",
        "true_label",
        "predicted",
        "cell_amount",
        "rbc_amount",
        "background_amount",
    ]
    .iter()
    .map(|n| col(n))
    .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| csv_error(path, e))?;
        let row = i + 2;
        let int = |k: usize| -> Result<Option<i64>> {
            let s = &rec[c[k]];
            if s.is_empty() {
                return Ok(None);
            }
            s.parse().map(Some).map_err(|e| {
                ReportError::invalid(path, format!("row {row}: {}: {e}", &header[c[k]]))
            })
        };
        let num = |k: usize| -> Result<f64> {
            rec[c[k]].parse().map_err(|e| {
                ReportError::invalid(path, format!("row {row}: {}: {e}", &header[c[k]]))
            })
        };
        out.push(ImageRow {
            model: rec[c[0]].to_string(),
            stem: rec[c[1]].to_string(),
            method: rec[c[2]].to_string(),
            mode: rec[c[3]].to_string(),
            true_label: int(4)?,
            predicted: int(5)?,
            amounts: [num(6)?, num(7)?, num(8)?],
        });
    }
    Ok(out)
}

/// What `explain.json` says about the explained class.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExplainJson {
    /// `true`, `predicted` or a class index, as the run was asked.
    #[serde(default)]
    pub target: Option<serde_json::Value>,
    #[serde(default)]
    pub images: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_numbers_written_as_null_read_back_as_nan() {
        // What leukex-evaluate writes for a pair of methods with no usable image pair.
        let p: PairTest = serde_json::from_str(
            r#"{"a": "x", "b": "y", "n": 0, "median_difference": null, "statistic": null,
                "pvalue": null, "pvalue_holm": null, "verdict": "none"}"#,
        )
        .unwrap();
        assert!(p.median_difference.is_nan() && p.pvalue.is_none());
        let m: MeanCi =
            serde_json::from_str(r#"{"n": 0, "mean": null, "lo": null, "hi": null}"#).unwrap();
        assert!(m.mean.is_nan() && m.hi.is_nan());
    }
}
