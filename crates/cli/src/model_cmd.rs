//! `leukex weights import` and `leukex predict`: thin wrappers over leukex-models
//! (loading, checking, logits) and leukex-data (images, preprocessing, `.npy`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leukex_data::fsutil::write_bytes_atomic;
use leukex_data::image_io::{is_image_path, read_rgb};
use leukex_data::npy;
use leukex_data::preprocess::Preprocessing;
use leukex_models::{Arch, Classifier, ModelConfig, StateDict, import_weights, predict};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// Convert a PyTorch state dict (.safetensors, zip .pth, legacy .pth) to .safetensors, after checking that it fits the architecture.
    Import(ImportArgs),
    /// Download torchvision's ImageNet weights of ARCH into the cache (resumable, SHA-256 checked) and print their path.
    Fetch(crate::fetch_cmd::FetchArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// The weights file (format detected from its content).
    file: PathBuf,
    /// Architecture: resnet18, resnet50, vgg19, googlenet, efficientnet-lite0.
    #[arg(long)]
    arch: Arch,
    /// Output .safetensors (torchvision key names kept; written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Number of classes (default: rows of the file's classification head).
    #[arg(long)]
    num_classes: Option<usize>,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Architecture: resnet18, resnet50, vgg19, googlenet, efficientnet-lite0.
    #[arg(long)]
    arch: Arch,
    /// Weights (.safetensors, zip .pth or legacy .pth with torchvision key names).
    #[arg(long)]
    weights: PathBuf,
    /// One preprocessed float32 .npy of shape [N, 3, H, W] (used as it is), or image files and/or folders of images (preprocessed for the model).
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// .npy input: the logits .npy [N, C] (required). Images: the predictions CSV (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Images: also write the logits [N, C] as .npy, rows in CSV order.
    #[arg(long)]
    logits: Option<PathBuf>,
    /// Number of classes (default: rows of the weights' classification head).
    #[arg(long)]
    num_classes: Option<usize>,
    /// Images: network input side in pixels (default 224).
    #[arg(long)]
    size: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// GoogLeNet only: torchvision's transform_input (on for torchvision's ImageNet weights).
    #[arg(long)]
    transform_input: bool,
}

pub fn run_weights(cmd: WeightsCommand) -> Result<()> {
    match cmd {
        WeightsCommand::Import(a) => {
            let (config, bytes) = import_weights(a.arch, &a.file, a.num_classes)?;
            write_bytes_atomic(&a.out, &bytes)?;
            println!(
                "{} fits {} ({} classes); wrote {}",
                a.file.display(),
                config.arch,
                config.num_classes,
                a.out.display()
            );
            Ok(())
        }
        WeightsCommand::Fetch(a) => crate::fetch_cmd::run(a),
    }
}

/// The preprocessing `leukex predict` applies to images for `arch`: ImageNet mean/std
/// for the torchvision nets, `(x − 127)/128` for EfficientNet-Lite0.
pub fn default_preprocessing(arch: Arch, size: u32) -> Preprocessing {
    match arch {
        Arch::EfficientNetLite0 => Preprocessing::efficientnet_lite(size),
        _ => Preprocessing::imagenet(size),
    }
}

/// The model `predict` and `explain` run: `arch` with the weights file's number of
/// classes (rows of its head) unless `num_classes` is given, loaded from `weights`.
pub fn load_model(
    arch: Arch,
    weights: &Path,
    num_classes: Option<usize>,
    transform_input: bool,
) -> Result<Classifier> {
    let sd = StateDict::read(weights)?;
    let k = num_classes
        .or_else(|| arch.num_classes_in(&sd))
        .unwrap_or(1000);
    let config = ModelConfig::new(arch, k).with_transform_input(transform_input);
    Ok(Classifier::from_state_dict(
        &config,
        &sd,
        &Default::default(),
    )?)
}

pub fn run_predict(a: PredictArgs) -> Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if a.transform_input && a.arch != Arch::GoogLeNet {
        bail!("--transform-input applies to googlenet only");
    }
    let npy_input = a.input.len() == 1 && has_ext(&a.input[0], "npy");
    if !npy_input && a.input.iter().any(|p| has_ext(p, "npy")) {
        bail!("a .npy input must be the only --input");
    }
    let model = load_model(a.arch, &a.weights, a.num_classes, a.transform_input)?;
    let k = model.num_classes();

    if npy_input {
        let out = a
            .out
            .as_deref()
            .context("--out FILE.npy is required for a .npy input")?;
        if a.size.is_some() || a.logits.is_some() {
            bail!("--size and --logits apply to image inputs only");
        }
        let x = npy::read_f32(&a.input[0])?;
        let shape: [usize; 4] = x.shape.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{}: shape {:?} is not [N, 3, H, W]",
                a.input[0].display(),
                x.shape
            )
        })?;
        let logits = predict::logits(&model, &x.data, shape, a.batch)
            .with_context(|| a.input[0].display().to_string())?;
        npy::write_f32(out, &[shape[0], k], &logits)?;
        println!("wrote {} ({}×{} logits)", out.display(), shape[0], k);
        return Ok(());
    }

    let paths = image_paths(&a.input)?;
    let prep = default_preprocessing(a.arch, a.size.unwrap_or(224));
    let [h, w] = prep.size.map(|s| s as usize);
    let bar = crate::progress::bar(paths.len() as u64, "predicting");
    let mut logits = Vec::with_capacity(paths.len() * k);
    for chunk in paths.chunks(a.batch) {
        let images: Vec<Vec<f32>> = chunk
            .par_iter()
            .map(|p| Ok(prep.apply(&read_rgb(p)?).data))
            .collect::<Result<_>>()?;
        let x = images.concat();
        logits.extend(predict::logits(
            &model,
            &x,
            [chunk.len(), 3, h, w],
            a.batch,
        )?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let csv = predictions_csv(&paths, &logits, k);
    match &a.out {
        Some(out) => {
            write_bytes_atomic(out, csv.as_bytes())?;
            println!("wrote {} ({} images)", out.display(), paths.len());
        }
        None => print!("{csv}"),
    }
    if let Some(path) = &a.logits {
        npy::write_f32(path, &[paths.len(), k], &logits)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

pub(crate) fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Files as given; folders expanded to their image files (not recursive, sorted by name).
pub(crate) fn image_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("cannot list {}", p.display()))?;
            found.retain(|f| f.is_file() && is_image_path(f));
            found.sort();
            if found.is_empty() {
                bail!("{}: no image files", p.display());
            }
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

/// `stem,predicted,score,prob_0,…` with one row per image.
fn predictions_csv(paths: &[PathBuf], logits: &[f32], k: usize) -> String {
    let mut s = String::from("stem,predicted,score");
    for c in 0..k {
        s += &format!(",prob_{c}");
    }
    s.push('\n');
    for (p, pred) in paths.iter().zip(predict::predictions(logits, k)) {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        s += &csv_field(&stem);
        s += &format!(",{},{}", pred.predicted, pred.score);
        for v in &pred.probs {
            s += &format!(",{v}");
        }
        s.push('\n');
    }
    s
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}
