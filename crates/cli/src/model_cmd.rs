//! `leukex weights import` and `leukex predict`: thin wrappers over leukex-models
//! (loading, checking, logits) and leukex-data (images, preprocessing, `.npy`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leukex_data::fsutil::write_bytes_atomic;
use leukex_data::image_io::{is_image_path, read_rgb};
use leukex_data::npy;
use leukex_data::preprocess::Preprocessing;
use leukex_models::{Arch, Classifier, ModelConfig, StateDict, import_weights, predict};
use leukex_train::ModelCard;
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

/// The model `predict` and `explain` run: a run folder of `leukex train`, or an
/// architecture and a weights file (flattened into both commands' arguments).
#[derive(Args)]
pub struct ModelArgs {
    /// A run folder of `leukex train` (or its model.json), instead of --arch/--weights: architecture, weights, classes and image preprocessing (size, normalisation) come from the card.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["arch", "weights", "num_classes", "transform_input"])]
    model: Option<PathBuf>,
    /// Architecture: resnet18, resnet50, vgg19, googlenet, efficientnet-lite0.
    #[arg(long, required_unless_present = "model")]
    arch: Option<Arch>,
    /// Weights (.safetensors, zip .pth or legacy .pth with torchvision key names).
    #[arg(long, required_unless_present = "model")]
    weights: Option<PathBuf>,
    /// Number of classes (default: rows of the weights' classification head).
    #[arg(long)]
    num_classes: Option<usize>,
    /// GoogLeNet only: torchvision's transform_input (on for torchvision's ImageNet weights).
    #[arg(long)]
    transform_input: bool,
}

/// A run's model card and where it was read from.
pub struct RunCard {
    /// The `model.json` file.
    pub path: PathBuf,
    pub card: ModelCard,
}

/// [`ModelArgs`] resolved: what to load and how to feed it.
pub struct ResolvedModel {
    pub arch: Arch,
    pub weights: PathBuf,
    /// `None`: the rows of the weights' classification head.
    pub num_classes: Option<usize>,
    pub transform_input: bool,
    /// Names the model's output folder of `explain`: the run folder's name with
    /// `--model`, else the weights file's stem.
    pub id: String,
    /// With `--model`: the card (classes, preprocessing).
    pub run: Option<RunCard>,
}

impl ModelArgs {
    /// The model of a `leukex train` run folder (or its model.json), as `--model RUN`.
    pub fn run_folder(path: &Path) -> Self {
        Self {
            model: Some(path.to_path_buf()),
            arch: None,
            weights: None,
            num_classes: None,
            transform_input: false,
        }
    }

    pub fn resolve(&self) -> Result<ResolvedModel> {
        let Some(model) = &self.model else {
            // clap requires both when --model is absent.
            let arch = self.arch.context("--arch is required without --model")?;
            let weights = self
                .weights
                .clone()
                .context("--weights is required without --model")?;
            if self.transform_input && arch != Arch::GoogLeNet {
                bail!("--transform-input applies to googlenet only");
            }
            let id = weights
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .with_context(|| {
                    format!("{}: no file name to name the model", weights.display())
                })?;
            return Ok(ResolvedModel {
                arch,
                weights,
                num_classes: self.num_classes,
                transform_input: self.transform_input,
                id,
                run: None,
            });
        };
        let (card, weights) = ModelCard::read(model)?;
        let path = if model.is_dir() {
            model.join("model.json")
        } else {
            model.clone()
        };
        let k = card.model.num_classes;
        if card.classes.len() != k {
            bail!(
                "{}: {} class names for a model with {k} classes",
                path.display(),
                card.classes.len()
            );
        }
        if !weights.is_file() {
            bail!(
                "{}: the card's weights file {} does not exist",
                path.display(),
                weights.display()
            );
        }
        // The run folder's name: `runs/resnet18` and `runs/resnet18/model.json` are both
        // `resnet18`.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let id = dir
            .file_name()
            .map(|s| s.to_os_string())
            .or_else(|| {
                dir.canonicalize()
                    .ok()?
                    .file_name()
                    .map(|s| s.to_os_string())
            })
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("{}: no folder name to name the model", path.display()))?;
        Ok(ResolvedModel {
            arch: card.model.arch,
            weights,
            num_classes: Some(k),
            transform_input: card.model.transform_input,
            id,
            run: Some(RunCard { path, card }),
        })
    }
}

impl ResolvedModel {
    /// The model, in training mode (as [`load_model`]).
    pub fn load(&self) -> Result<Classifier> {
        load_model(
            self.arch,
            &self.weights,
            self.num_classes,
            self.transform_input,
        )
    }

    /// How images become network input: the run's preprocessing with `--model` (its
    /// normalisation at `size` when given), else the architecture's at `size` (default 224).
    pub fn image_preprocessing(&self, size: Option<u32>) -> Preprocessing {
        match &self.run {
            Some(run) => {
                let mut p = run.card.preprocessing.clone();
                if let Some(s) = size {
                    p.size = [s, s];
                }
                p
            }
            None => leukex_train::preprocessing_for(self.arch, size.unwrap_or(224)),
        }
    }

    /// The card's class names (with `--model`).
    pub fn classes(&self) -> Option<&[String]> {
        self.run.as_ref().map(|r| r.card.classes.as_slice())
    }
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// One preprocessed float32 .npy of shape [N, 3, H, W] (used as it is), or image files and/or folders of images (preprocessed for the model).
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// .npy input: the logits .npy [N, C] (required). Images: the predictions CSV (default: standard output), columns stem,predicted,score,prob_0,prob_1,… (class indices; with --model the card's class names: predicted=<name>, prob_<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Images: also write the logits [N, C] as .npy, rows in CSV order.
    #[arg(long)]
    logits: Option<PathBuf>,
    /// Images: network input side in pixels (default: the run's size with --model, else 224).
    #[arg(long)]
    size: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
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
    Ok(Classifier::from_owned_state_dict(
        &config,
        sd,
        &Default::default(),
    )?)
}

pub fn run_predict(a: PredictArgs) -> Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let npy_input = a.input.len() == 1 && has_ext(&a.input[0], "npy");
    if !npy_input && a.input.iter().any(|p| has_ext(p, "npy")) {
        bail!("a .npy input must be the only --input");
    }
    let resolved = a.model.resolve()?;
    let model = resolved.load()?;
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
        let rows = predict::logits_per_row(&model, &x.data, shape, a.batch)
            .with_context(|| a.input[0].display().to_string())?;
        // A refused row keeps its place in the output, as NaN logits.
        let mut logits = Vec::with_capacity(shape[0] * k);
        let mut failed = 0;
        for (i, r) in rows.iter().enumerate() {
            match r {
                Ok(l) => logits.extend_from_slice(l),
                Err(e) => {
                    eprintln!("error: {} row {i}: {e}", a.input[0].display());
                    logits.extend(std::iter::repeat_n(f32::NAN, k));
                    failed += 1;
                }
            }
        }
        npy::write_f32(out, &[shape[0], k], &logits)?;
        println!("wrote {} ({}×{} logits)", out.display(), shape[0], k);
        return failures(failed, shape[0], "rows (their logits are NaN)");
    }

    let paths = image_paths(&a.input)?;
    let prep = resolved.image_preprocessing(a.size);
    let [h, w] = prep.size.map(|s| s as usize);
    let bar = crate::progress::bar(paths.len() as u64, "predicting");
    let mut logits = Vec::with_capacity(paths.len() * k);
    let mut predicted: Vec<PathBuf> = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(a.batch) {
        let images: Vec<Vec<f32>> = chunk
            .par_iter()
            .map(|p| Ok(prep.apply(&read_rgb(p)?).data))
            .collect::<Result<_>>()?;
        let x = images.concat();
        let rows = predict::logits_per_row(&model, &x, [chunk.len(), 3, h, w], a.batch)?;
        for (p, r) in chunk.iter().zip(rows) {
            match r {
                Ok(l) => {
                    logits.extend(l);
                    predicted.push(p.clone());
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("error: {}: {e}", p.display()));
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let csv = predictions_csv(&predicted, &logits, k, resolved.classes());
    match &a.out {
        Some(out) => {
            write_bytes_atomic(out, csv.as_bytes())?;
            println!("wrote {} ({} images)", out.display(), predicted.len());
        }
        None => print!("{csv}"),
    }
    if let Some(path) = &a.logits {
        npy::write_f32(path, &[predicted.len(), k], &logits)?;
        eprintln!("wrote {}", path.display());
    }
    failures(
        paths.len() - predicted.len(),
        paths.len(),
        "images (left out of the output)",
    )
}

/// Exit status of a run in which `failed` of `total` inputs were refused (each named on
/// standard error as it happened).
fn failures(failed: usize, total: usize, what: &str) -> Result<()> {
    if failed > 0 {
        bail!("{failed} of {total} {what} failed: see the errors above");
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

/// `stem,predicted,score,prob_0,…` with one row per image; with `classes` (a run's card)
/// the class names instead of the indices: `predicted` holds the name, the columns are
/// `prob_<name>`.
fn predictions_csv(
    paths: &[PathBuf],
    logits: &[f32],
    k: usize,
    classes: Option<&[String]>,
) -> String {
    let name = |c: usize| match classes {
        Some(names) => names[c].clone(),
        None => c.to_string(),
    };
    let mut s = String::from("stem,predicted,score");
    for c in 0..k {
        s += ",";
        s += &csv_field(&format!("prob_{}", name(c)));
    }
    s.push('\n');
    for (p, pred) in paths.iter().zip(predict::predictions(logits, k)) {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        s += &csv_field(&stem);
        s += ",";
        s += &csv_field(&name(pred.predicted));
        s += &format!(",{}", pred.score);
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
