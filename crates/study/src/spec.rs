//! The study file (`leukex run STUDY.toml`): what data, which networks trained how, which
//! heat-map methods, which evaluation — and its resolution into the concrete models of the
//! grid. Unknown keys and bad values are errors that name the key and the line.

use std::path::{Path, PathBuf};

use leukex_models::Arch;
use leukex_synth::Shortcut;
use leukex_train::{BnStatistics, OptimizerKind, Schedule, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::StudyError;

/// The built-in study `leukex demo` runs: the paper's four networks on synthetic data.
pub const DEMO_STUDY: &str = include_str!("../studies/demo.toml");
/// `leukex demo --quick`: one small network on a small synthetic set.
pub const QUICK_STUDY: &str = include_str!("../studies/quick.toml");

/// A study file as written (every key optional unless the docs say otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub name: String,
    pub data: DataSpec,
    #[serde(default)]
    pub split: SplitSpec,
    /// Defaults of every `[[models]]` entry.
    #[serde(default)]
    pub train: TrainSpec,
    pub models: Vec<TrainSpec>,
    pub explain: ExplainSpec,
    #[serde(default)]
    pub evaluate: EvaluateSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<ShortcutSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The built-in synthetic ALL-IDB2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth: Option<SynthSpec>,
    /// The user's data: ALL-IDB2 folder, class folders or a manifest.csv (relative paths
    /// are taken from the study file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    /// Class order for class folders or manifest names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The class whose sensitivity and ROC are reported (default: `all`/`blast`, else class 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    #[serde(default = "default_synth_n")]
    pub n: usize,
    #[serde(default = "default_synth_size")]
    pub size: u32,
    #[serde(default)]
    pub seed: u64,
}

fn default_synth_n() -> usize {
    260
}
fn default_synth_size() -> u32 {
    257
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_test_per_class")]
    pub test_per_class: usize,
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    #[serde(default)]
    pub group_split: bool,
}

fn default_test_per_class() -> usize {
    30
}
fn default_val_fraction() -> f64 {
    0.1
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            seed: 0,
            test_per_class: default_test_per_class(),
            val_fraction: default_val_fraction(),
            group_split: false,
        }
    }
}

/// How one network is trained; in `[train]` the defaults of every model, in `[[models]]`
/// one model (`arch` required there, not allowed in `[train]`). Unset keys fall back to
/// `[train]`, then to the paper's setting ([`TrainConfig::paper`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Names the model's folders (default: the architecture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `imagenet`, `none` (random init) or a weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_backbone: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment_per_class: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_statistics: Option<String>,
    /// One model per seed (ids `<id>-s<seed>` when there are several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainSpec {
    /// Add the paper's four methods with its conventions (`leukex explain --paper`).
    #[serde(default)]
    pub paper: bool,
    /// Methods with leukex's defaults (`leukex explain --method` names).
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default = "default_target")]
    pub target: String,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_images_per_cell")]
    pub images_per_cell: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    #[serde(default)]
    pub seed: u64,
}

fn default_target() -> String {
    "true".into()
}
fn default_batch() -> usize {
    16
}
fn default_images_per_cell() -> usize {
    20
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSpec {
    #[serde(default = "default_modes")]
    pub modes: Vec<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    #[serde(default = "default_eval_seed")]
    pub seed: u64,
    /// Faithfulness metrics (`deletion`, `insertion`, `region-perturbation`, `road`).
    #[serde(default)]
    pub faithfulness: Vec<String>,
    /// Methods of the model parameter randomisation test.
    #[serde(default)]
    pub sanity: Vec<String>,
}

fn default_modes() -> Vec<String> {
    leukex_evaluate::Mode::defaults()
        .iter()
        .map(ToString::to_string)
        .collect()
}
fn default_region() -> String {
    "cell".into()
}
fn default_bootstrap() -> usize {
    2000
}
fn default_eval_seed() -> u64 {
    0x1e0c
}

impl Default for EvaluateSpec {
    fn default() -> Self {
        EvaluateSpec {
            modes: default_modes(),
            region: default_region(),
            bootstrap: default_bootstrap(),
            seed: default_eval_seed(),
            faithfulness: Vec::new(),
            sanity: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortcutSpec {
    pub kind: Shortcut,
    /// Model ids (or architectures) trained again on the data with the shortcut.
    pub models: Vec<String>,
}

impl Study {
    /// Parses a study file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Study, StudyError> {
        let study: Study = toml::from_str(text).map_err(|e| StudyError::Spec {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
        study.check(origin)?;
        Ok(study)
    }

    pub fn read(path: &Path) -> Result<Study, StudyError> {
        let text = std::fs::read_to_string(path).map_err(|e| StudyError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut study = Study::parse(&text, path)?;
        // Relative data paths are the study file's.
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut Option<PathBuf>| {
            if let Some(q) = p.as_mut().filter(|q| q.is_relative()) {
                *q = base.join(&*q);
            }
        };
        abs(&mut study.data.path);
        abs(&mut study.data.masks);
        abs(&mut study.data.labels);
        for m in std::iter::once(&mut study.train).chain(study.models.iter_mut()) {
            if let Some(w) = m.weights.as_mut().filter(|w| is_weights_file(w)) {
                let p = Path::new(w.as_str());
                if p.is_relative() {
                    *w = base.join(p).display().to_string();
                }
            }
        }
        Ok(study)
    }

    /// The study as TOML (every default written out).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a study serialises")
    }

    fn check(&self, origin: &Path) -> Result<(), StudyError> {
        let bad = |key: &str, reason: String| StudyError::Spec {
            path: origin.to_path_buf(),
            reason: format!("{key}: {reason}"),
        };
        match (&self.data.synth, &self.data.path) {
            (Some(_), Some(_)) => {
                return Err(bad("data", "give either synth or path, not both".into()));
            }
            (None, None) => {
                return Err(bad(
                    "data",
                    "give synth = { n, size, seed } or path = \"your data folder\"".into(),
                ));
            }
            _ => {}
        }
        if let Some(s) = &self.data.synth {
            let cfg = leukex_synth::SynthConfig {
                n: s.n,
                seed: s.seed,
                size: s.size,
                shortcut: None,
                without_cell: false,
            };
            cfg.validate().map_err(|e| bad("data.synth", e))?;
        }
        if !(0.0..1.0).contains(&self.split.val_fraction) {
            return Err(bad(
                "split.val_fraction",
                format!("must be in [0, 1), got {}", self.split.val_fraction),
            ));
        }
        if self.train.arch.is_some() || self.train.id.is_some() {
            return Err(bad(
                "train",
                "arch and id belong in [[models]] entries, not in the defaults".into(),
            ));
        }
        if self.models.is_empty() {
            return Err(bad("models", "the study names no [[models]]".into()));
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.arch.is_none() {
                return Err(bad(&format!("models[{i}].arch"), "missing".into()));
            }
        }
        // Resolving checks every training value.
        let models = self.resolve_models().map_err(|e| match e {
            StudyError::Spec { reason, .. } => StudyError::Spec {
                path: origin.to_path_buf(),
                reason,
            },
            e => e,
        })?;
        let mut ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(
                "models",
                format!("two models are named {:?}: give them distinct ids", w[0]),
            ));
        }
        for id in &ids {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                || id.starts_with('.')
            {
                return Err(bad(
                    "models.id",
                    format!("{id:?}: use letters, digits, '-', '_' and '.' only"),
                ));
            }
        }
        let e = &self.explain;
        if !e.paper && e.methods.is_empty() {
            return Err(bad(
                "explain",
                "no method: set paper = true or methods".into(),
            ));
        }
        if e.batch == 0 || e.images_per_cell == 0 {
            return Err(bad(
                "explain",
                "batch and images_per_cell must be at least 1".into(),
            ));
        }
        leukex_explain::Target::parse(&e.target).map_err(|r| bad("explain.target", r))?;
        for name in &e.methods {
            if !leukex_explain::METHOD_NAMES.contains(&name.as_str()) {
                return Err(bad(
                    "explain.methods",
                    format!(
                        "unknown method {name:?}; known: {}",
                        leukex_explain::METHOD_NAMES.join(", ")
                    ),
                ));
            }
        }
        for m in &self.evaluate.modes {
            m.parse::<leukex_evaluate::Mode>()
                .map_err(|r| bad("evaluate.modes", r))?;
        }
        leukex_evaluate::Region::parse(&self.evaluate.region)
            .map_err(|r| bad("evaluate.region", r))?;
        for f in &self.evaluate.faithfulness {
            if crate::FaithfulnessMetric::parse(f).is_none() {
                return Err(bad(
                    "evaluate.faithfulness",
                    format!(
                        "unknown metric {f:?}; known: {}",
                        crate::FaithfulnessMetric::ALL.map(|m| m.name()).join(", ")
                    ),
                ));
            }
        }
        if let Some(s) = &self.shortcut {
            if self.data.synth.is_none() {
                return Err(bad(
                    "shortcut",
                    "the shortcut experiment needs the built-in data (data.synth)".into(),
                ));
            }
            for name in &s.models {
                if !self.models.iter().any(|m| {
                    m.id.as_deref() == Some(name) || m.arch.is_some_and(|a| a.as_str() == name)
                }) {
                    return Err(bad(
                        "shortcut.models",
                        format!("{name:?} is not a model of the study"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every model of the grid: each `[[models]]` entry once per seed, and again on the
    /// shortcut data where `[shortcut]` names it; sorted by id.
    pub fn resolve_models(&self) -> Result<Vec<ModelPlan>, StudyError> {
        let mut out = Vec::new();
        for (i, m) in self.models.iter().enumerate() {
            let key = |k: &str| format!("models[{i}].{k}");
            // A value set in [train] is named there.
            let from = |k: &str, own: bool| {
                if own { key(k) } else { format!("train.{k}") }
            };
            let arch = m.arch.ok_or_else(|| spec_err(&key("arch"), "missing"))?;
            let base_id = m.id.clone().unwrap_or_else(|| arch.as_str().to_string());
            let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
            let d = &self.train;
            let mut cfg = TrainConfig::paper(arch);
            let momentum = m.momentum.or(d.momentum).unwrap_or(0.9);
            if let Some(o) = pick(&m.optimizer, &d.optimizer) {
                cfg.optimizer = OptimizerKind::parse(&o, momentum)
                    .map_err(|r| spec_err(&from("optimizer", m.optimizer.is_some()), r))?;
            } else if let OptimizerKind::Sgd { nesterov, .. } = cfg.optimizer {
                cfg.optimizer = OptimizerKind::Sgd { momentum, nesterov };
            }
            if let Some(v) = m.lr.or(d.lr) {
                positive(&from("lr", m.lr.is_some()), v)?;
                cfg.lr = v;
            }
            if let Some(v) = m.weight_decay.or(d.weight_decay) {
                cfg.weight_decay = v;
            }
            if let Some(s) = pick(&m.schedule, &d.schedule) {
                cfg.schedule = Schedule::parse(&s)
                    .map_err(|r| spec_err(&from("schedule", m.schedule.is_some()), r))?;
            }
            if let Some(v) = m.epochs.or(d.epochs) {
                cfg.epochs = v;
            }
            if let Some(v) = m.batch_size.or(d.batch_size) {
                cfg.batch_size = v;
            }
            if cfg.epochs == 0 || cfg.batch_size == 0 {
                return Err(spec_err(
                    &key("epochs"),
                    "epochs and batch_size must be at least 1",
                ));
            }
            cfg.patience = m.patience.or(d.patience);
            cfg.freeze_backbone = m.freeze_backbone.or(d.freeze_backbone).unwrap_or(false);
            cfg.balanced_batches = m.balanced.or(d.balanced).unwrap_or(false);
            if let Some(v) = m.augment_per_class.or(d.augment_per_class) {
                cfg.augment_per_class = v;
            }
            if let Some(v) = m.image_size.or(d.image_size) {
                if v < 16 {
                    return Err(spec_err(&key("image_size"), "must be at least 16 pixels"));
                }
                cfg.image_size = v;
            }
            cfg.bn_statistics = match pick(&m.bn_statistics, &d.bn_statistics).as_deref() {
                None | Some("population") => BnStatistics::Population,
                Some("moving") => BnStatistics::Moving,
                Some(o) => {
                    return Err(spec_err(
                        &key("bn_statistics"),
                        format!("expected population or moving, got {o:?}"),
                    ));
                }
            };
            let weights_name = pick(&m.weights, &d.weights).unwrap_or_else(|| "none".into());
            let weights = match weights_name.as_str() {
                "none" => WeightsSource::Scratch,
                "imagenet" => WeightsSource::ImageNet,
                file => WeightsSource::File(PathBuf::from(file)),
            };
            cfg.transform_input =
                arch == Arch::GoogLeNet && matches!(weights, WeightsSource::ImageNet);
            let seeds = m
                .seeds
                .clone()
                .or_else(|| d.seeds.clone())
                .unwrap_or_else(|| vec![0]);
            if seeds.is_empty() {
                return Err(spec_err(&key("seeds"), "give at least one seed"));
            }
            let shortcut = self.shortcut.as_ref().filter(|s| {
                s.models
                    .iter()
                    .any(|n| *n == base_id || (m.id.is_none() && n == arch.as_str()))
            });
            let variants = std::iter::once(None).chain(shortcut.map(|s| Some(s.kind)));
            for variant in variants {
                for &seed in &seeds {
                    let mut id = base_id.clone();
                    if variant.is_some() {
                        id.push_str("-shortcut");
                    }
                    let group = id.clone();
                    if seeds.len() > 1 {
                        id = format!("{id}-s{seed}");
                    }
                    let mut config = cfg.clone();
                    config.seed = seed;
                    out.push(ModelPlan {
                        id,
                        group,
                        config,
                        weights: weights.clone(),
                        shortcut: variant,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

fn spec_err(key: &str, reason: impl std::fmt::Display) -> StudyError {
    StudyError::Spec {
        path: PathBuf::new(),
        reason: format!("{key}: {reason}"),
    }
}

fn positive(key: &str, v: f64) -> Result<(), StudyError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(spec_err(key, format!("must be a positive number, got {v}")))
    }
}

fn is_weights_file(w: &str) -> bool {
    w != "none" && w != "imagenet"
}

/// Where a model's initial weights come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum WeightsSource {
    Scratch,
    ImageNet,
    File(PathBuf),
}

impl WeightsSource {
    pub fn name(&self) -> String {
        match self {
            WeightsSource::Scratch => "none".into(),
            WeightsSource::ImageNet => "imagenet".into(),
            WeightsSource::File(p) => p.display().to_string(),
        }
    }
}

/// One model of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    /// Names `runs/<id>`, `maps/<id>`.
    pub id: String,
    /// The id without the seed: models that differ only by their training seed.
    pub group: String,
    pub config: TrainConfig,
    pub weights: WeightsSource,
    /// Trained on the data variant with this confounder.
    pub shortcut: Option<Shortcut>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Study, StudyError> {
        Study::parse(text, Path::new("study.toml"))
    }

    #[test]
    fn the_built_in_studies_parse_and_resolve() {
        let demo = parse(DEMO_STUDY).unwrap();
        let ids: Vec<String> = demo
            .resolve_models()
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(
            ids,
            [
                "googlenet",
                "resnet18",
                "resnet18-shortcut",
                "resnet50",
                "vgg19"
            ]
        );
        let quick = parse(QUICK_STUDY).unwrap();
        assert_eq!(quick.resolve_models().unwrap().len(), 1);
    }

    #[test]
    fn written_out_the_study_reads_back_equal() {
        let demo = parse(DEMO_STUDY).unwrap();
        assert_eq!(parse(&demo.to_toml()).unwrap(), demo);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = QUICK_STUDY.replace("epochs = 1", "epocs = 1");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("epocs"), "{e}");
        let line = QUICK_STUDY
            .lines()
            .position(|l| l.starts_with("epochs"))
            .unwrap()
            + 1;
        assert!(e.contains(&format!("line {line}")), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (from, to, key) in [
            ("lr = 1e-3", "lr = -1.0", "train.lr"),
            (
                "optimizer = \"adam\"",
                "optimizer = \"adagrad\"",
                "optimizer",
            ),
            ("\"gradient\"", "\"gradiant\"", "explain.methods"),
            ("\"top-10\"", "\"top-200\"", "evaluate.modes"),
            ("target = \"true\"", "target = \"blast\"", "explain.target"),
        ] {
            let text = QUICK_STUDY.replace(from, to);
            assert_ne!(text, QUICK_STUDY, "{from}");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn several_seeds_make_several_models_of_one_group() {
        let text = QUICK_STUDY.replace("seeds = [0]", "seeds = [0, 7]");
        let models = parse(&text).unwrap().resolve_models().unwrap();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["resnet18-s0", "resnet18-s7"]);
        assert!(models.iter().all(|m| m.group == "resnet18"));
        assert_eq!(models[1].config.seed, 7);
    }
}
