//! Everything the report reads from a study folder, loaded once.

use crate::error::{ReportError, Result};
use crate::inputs::{
    EvalSummary, ExplainJson, ImageRow, ModelCard, Prediction, RunMetrics, read_json,
    read_per_image, read_predictions,
};
use crate::manifest::{ModelEntry, STUDY_FORMAT, StudyManifest, Variant};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One trained model with what its run wrote.
pub struct LoadedModel {
    pub entry: ModelEntry,
    pub card: ModelCard,
    pub metrics: RunMetrics,
    pub predictions: Vec<Prediction>,
    /// `explain.json` of its maps, when there.
    pub explain: Option<ExplainJson>,
    pub maps_dir: PathBuf,
    /// `model_metrics.json` (faithfulness, sanity), when the study asked for them.
    pub model_metrics: Option<serde_json::Value>,
}

impl LoadedModel {
    /// The class name of a label index (`"healthy"`, `"all"`), or the index as text.
    pub fn class_name(&self, label: &str) -> String {
        label
            .parse::<usize>()
            .ok()
            .and_then(|i| self.card.classes.get(i))
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }
}

/// One data variant with its evaluation.
pub struct LoadedVariant {
    pub variant: Variant,
    pub summary: EvalSummary,
    pub summary_path: PathBuf,
    /// `per_image.csv`, when there.
    pub per_image: Option<Vec<ImageRow>>,
}

pub struct Study {
    pub dir: PathBuf,
    pub manifest: StudyManifest,
    pub toml: Option<String>,
    pub models: Vec<LoadedModel>,
    pub variants: Vec<LoadedVariant>,
    /// The Table 2 summary of `ratings.sqlite`, when someone rated.
    pub ratings: Option<std::result::Result<leukex_web::summary::Summary, String>>,
}

fn required(path: &Path, reason: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ReportError::Missing {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        })
    }
}

impl Study {
    pub fn load(dir: &Path) -> Result<Study> {
        let manifest_path = dir.join("study.json");
        required(&manifest_path, "the study manifest written by `leukex run`")?;
        let manifest: StudyManifest = read_json(&manifest_path, "a study manifest")?;
        if manifest.format != STUDY_FORMAT {
            return Err(ReportError::invalid(
                &manifest_path,
                format!(
                    "format {:?}, this leukex reads {STUDY_FORMAT:?}",
                    manifest.format
                ),
            ));
        }
        for m in &manifest.models {
            if !manifest.variants.iter().any(|v| v.id == m.variant) {
                return Err(ReportError::invalid(
                    &manifest_path,
                    format!(
                        "model {} names variant {:?}, which is not listed",
                        m.id, m.variant
                    ),
                ));
            }
        }
        let toml_path = dir.join("study.toml");
        let toml = if toml_path.is_file() {
            Some(std::fs::read_to_string(&toml_path).map_err(|e| ReportError::io(&toml_path, e))?)
        } else {
            None
        };

        let mut variants = Vec::new();
        for v in &manifest.variants {
            if !manifest.models.iter().any(|m| m.variant == v.id) {
                continue;
            }
            let eval = dir.join(&v.eval);
            let summary_path = eval.join("summary.json");
            required(
                &summary_path,
                "the `leukex evaluate` summary of this variant",
            )?;
            let summary: EvalSummary =
                read_json(&summary_path, "a `leukex evaluate` summary.json")?;
            let per_image_path = eval.join("per_image.csv");
            let per_image = if per_image_path.is_file() {
                Some(read_per_image(&per_image_path)?)
            } else {
                None
            };
            variants.push(LoadedVariant {
                variant: v.clone(),
                summary,
                summary_path,
                per_image,
            });
        }

        let mut models = Vec::new();
        for m in &manifest.models {
            let run = dir.join(&m.run);
            let card_path = run.join("model.json");
            required(&card_path, "the model card of a `leukex train` run")?;
            let card: ModelCard = read_json(&card_path, "a model card (model.json)")?;
            let metrics_path = run.join("metrics.json");
            required(
                &metrics_path,
                "the metrics of a finished `leukex train` run",
            )?;
            let metrics: RunMetrics = read_json(&metrics_path, "a run's metrics.json")?;
            let pred_path = run.join("test_predictions.csv");
            let predictions = if pred_path.is_file() {
                read_predictions(&pred_path, &card)?
            } else {
                Vec::new()
            };
            let maps_dir = dir.join(&m.maps);
            let explain_path = maps_dir.join("explain.json");
            let explain = if explain_path.is_file() {
                Some(read_json(&explain_path, "an explain.json")?)
            } else {
                None
            };
            let variant = manifest
                .variants
                .iter()
                .find(|v| v.id == m.variant)
                .unwrap();
            let mm_path = dir
                .join(&variant.eval)
                .join("models")
                .join(&m.id)
                .join("model_metrics.json");
            let model_metrics = if mm_path.is_file() {
                Some(read_json(&mm_path, "a model_metrics.json")?)
            } else {
                None
            };
            models.push(LoadedModel {
                entry: m.clone(),
                card,
                metrics,
                predictions,
                explain,
                maps_dir,
                model_metrics,
            });
        }

        let ratings = if dir.join("ratings.sqlite").is_file() {
            Some(leukex_web::summarise_dir(dir).map_err(|e| e.to_string()))
        } else {
            None
        };
        Ok(Study {
            dir: dir.to_path_buf(),
            manifest,
            toml,
            models,
            variants,
            ratings,
        })
    }

    pub fn models_of<'a>(&'a self, variant: &'a str) -> impl Iterator<Item = &'a LoadedModel> + 'a {
        self.models
            .iter()
            .filter(move |m| m.entry.variant == variant)
    }

    pub fn model(&self, id: &str) -> Option<&LoadedModel> {
        self.models.iter().find(|m| m.entry.id == id)
    }

    /// Method ids in report order: the manifest's, then any other the summary has
    /// (the real ones), then the baselines.
    pub fn methods_in(&self, summary: &EvalSummary) -> Vec<String> {
        let mut out: Vec<String> = self.manifest.methods.iter().map(|m| m.id.clone()).collect();
        let mut extra: Vec<String> = summary
            .summary
            .iter()
            .map(|r| r.method.clone())
            .filter(|m| !out.contains(m))
            .collect();
        extra.sort();
        extra.dedup();
        extra.sort_by_key(|m| m.starts_with('@'));
        out.extend(extra);
        out.retain(|m| summary.summary.iter().any(|r| &r.method == m));
        out
    }

    /// Groups of models of one recipe (several seeds), in manifest order.
    pub fn groups(&self) -> BTreeMap<String, Vec<&LoadedModel>> {
        let mut g: BTreeMap<String, Vec<&LoadedModel>> = BTreeMap::new();
        for m in &self.models {
            g.entry(format!("{}\u{0}{}", m.entry.variant, m.entry.group))
                .or_default()
                .push(m);
        }
        g
    }
}
