//! `DIR/study.json`: what the study runner ran, in the words the report needs.
//! The runner (`leukex run`) builds and writes these structs; the report reads them.

use serde::{Deserialize, Serialize};

/// The `format` value of a study manifest this crate reads.
pub const STUDY_FORMAT: &str = "leukex-study-1";

/// The whole manifest (`DIR/study.json`). Paths inside are relative to the study folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyManifest {
    /// Always [`STUDY_FORMAT`].
    pub format: String,
    /// The study's name (title of the report).
    pub name: String,
    /// Whether the study ran on the reduced `--quick` schedule.
    #[serde(default)]
    pub quick: bool,
    pub data: DataInfo,
    /// One entry per data variant (the clean data, and the shortcut data if any).
    pub variants: Vec<Variant>,
    /// Every trained model (several seeds of one architecture share a `group`).
    pub models: Vec<ModelEntry>,
    /// The explanation methods, in the order the report shows them.
    pub methods: Vec<MethodEntry>,
    /// Free-text lines the report shows near the top (reduced schedule, smaller inputs...).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataInfo {
    /// `synth` (built-in synthetic data) or `user` (the user's folders).
    pub kind: String,
    /// One line saying what the data is.
    pub description: String,
    /// True only when the data are the paper's own images and masks.
    #[serde(default)]
    pub reproduction: bool,
    /// True when the split kept slide groups apart (a manifest `group` column); false
    /// means crops of one slide may sit on both sides of the split.
    #[serde(default)]
    pub groups_known: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// `main`, `shortcut`, ...
    pub id: String,
    /// Data folder (images, labels.json, manifest.csv).
    pub data: String,
    /// Mask folder (`<stem>.png`).
    pub masks: String,
    /// `leukex evaluate` output folder of this variant.
    pub eval: String,
    /// The shortcut planted in the data (`rbc-density`), `None` for clean data.
    #[serde(default)]
    pub shortcut: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Folder name under `runs/` and `maps/` (e.g. `resnet18`, `resnet18-s1`).
    pub id: String,
    /// Models of one group are the same recipe with other seeds.
    pub group: String,
    /// Architecture (`resnet18`, `googlenet`, `resnet50`, `vgg19`, ...).
    pub arch: String,
    pub seed: u64,
    /// Which [`Variant`] the model was trained and evaluated on.
    pub variant: String,
    pub image_size: u32,
    /// `none`, `imagenet` or a file.
    pub weights: String,
    pub epochs: usize,
    /// The `leukex train` run folder.
    pub run: String,
    /// The `leukex explain` folder of this model (holds `explain.json`).
    pub maps: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodEntry {
    /// The method id as in the maps' file names.
    pub id: String,
    /// One of the paper's four methods (with the paper's conventions).
    #[serde(default)]
    pub paper: bool,
}
