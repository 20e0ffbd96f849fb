//! Running the `leukex` binary from the integration tests.

use std::path::{Path, PathBuf};

use leukex_data::preprocess::Preprocessing;
use leukex_models::closed_form::closed_form_state_dict;
use leukex_models::{Arch, Classifier, ModelConfig};
use leukex_train::run::MODEL_CARD_FORMAT;
use leukex_train::{ModelCard, TrainConfig};
use std::process::{Command, Output};

/// Runs `leukex` with `args` and returns what it did.
#[allow(dead_code)] // not used by the tests that run the demo only
pub fn leukex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(args)
        .output()
        .expect("leukex runs")
}

/// `leukex demo --quick --out OUT` with tiny settings (one epoch on 8 images a class of
/// 32 pixels, two methods besides the paper's four): the whole study in about 40 s of a
/// debug build.
#[allow(dead_code)] // used by the tests that need a study folder
pub fn quick_demo(out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["demo", "--quick", "--out"])
        .arg(out)
        .args(["--epochs", "1", "--per-class", "8", "--size", "32"])
        .args(["--methods", "gradient,grad-cam"])
        .output()
        .expect("run leukex")
}

/// Standard output and standard error together, for assertions and messages.
#[allow(dead_code)]
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A path as a command-line argument (test paths are UTF-8).
#[allow(dead_code)] // not every test file passes paths
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// The class names of [`fake_run`].
#[allow(dead_code)]
pub const CLASSES: [&str; 2] = ["healthy", "blast"];

/// `dir` as a run folder of a 2-class ResNet18: `model.safetensors` (closed-form
/// weights) and `model.json` with `prep` (no training).
#[allow(dead_code)] // used by the tests that need a trained model
pub fn fake_run(dir: &Path, prep: Preprocessing) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = ModelConfig::new(Arch::ResNet18, 2);
    let model = Classifier::new(&config, &Default::default());
    let sd = closed_form_state_dict(&model, None);
    std::fs::write(dir.join("model.safetensors"), sd.to_safetensors(&[])).unwrap();
    let mut hyper = TrainConfig::paper(Arch::ResNet18);
    hyper.image_size = prep.size[0];
    let card = ModelCard {
        format: MODEL_CARD_FORMAT.into(),
        model: config,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        positive_class: 1,
        preprocessing: prep,
        weights: "model.safetensors".into(),
        initial_weights: "closed-form (test)".into(),
        split_hash: "test".into(),
        hyper_parameters: hyper,
        best_epoch: 1,
        code_version: "test".into(),
    };
    std::fs::write(
        dir.join("model.json"),
        serde_json::to_string_pretty(&card).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}
