//! `leukex train`: fine-tune a network on a data set's split (leukex-train), with a
//! progress bar per epoch.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use leukex_data::split::{Split, SplitConfig, TestSize};
use leukex_models::{Arch, StateDict};
use leukex_train::{BnStatistics, Event, Init, OptimizerKind, Schedule, TrainConfig};

use crate::data_cmd::{DatasetArgs, make_split};

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DatasetArgs,
    /// Architecture: resnet18, resnet50, vgg19, googlenet, efficientnet-lite0.
    #[arg(long)]
    arch: Arch,
    /// Initial weights: a state-dict file (.safetensors / .pth), `imagenet` (torchvision's,
    /// fetched into the cache; see `leukex weights fetch`) or `none` (torchvision's
    /// from-scratch init, seeded). A head with another number of classes is replaced.
    #[arg(long, default_value = "none")]
    weights: String,
    /// ImageNet weights variant for --weights imagenet (v1, or v2 for resnet50).
    #[arg(long)]
    variant: Option<String>,
    /// Weights cache for --weights imagenet (default: $LEUKEX_CACHE or the platform cache).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Run folder: model.safetensors, model.json, metrics.json, test_predictions.csv, checkpoint/.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out after its last finished epoch (same settings required).
    #[arg(long)]
    resume: bool,
    /// Use this split.json (`leukex data split`) instead of making one.
    #[arg(long, value_name = "FILE")]
    split: Option<PathBuf>,
    /// Never-seen test images per class when making the split (paper: 30).
    #[arg(long, default_value_t = 30)]
    test_per_class: usize,
    /// Validation share of each class's training sources (for early stopping and the best epoch).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Seed of the split, the augmentation, the head / scratch init, epoch orders and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Preset the other options start from: paper (MathWorks' transfer-learning settings:
    /// sgdm, lr 1e-4, momentum 0.9, batch 10, 6 epochs, L2 1e-4, 224 px, 1000 images per class).
    #[arg(long, default_value = "paper")]
    preset: String,
    /// Optimiser: sgdm (momentum), sgd, nesterov, adam.
    #[arg(long)]
    optimizer: Option<String>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    momentum: Option<f64>,
    /// L2 weight decay (PyTorch weight_decay, MATLAB L2Regularization).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule per epoch: constant, step:EVERY:FACTOR, cosine[:MIN_LR].
    #[arg(long)]
    schedule: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Early stopping: stop after this many epochs without a lower validation loss.
    #[arg(long)]
    patience: Option<usize>,
    /// Train only the classification head (backbone frozen, its BatchNorms in inference mode).
    #[arg(long)]
    freeze_backbone: bool,
    /// Class-balanced batches (smaller classes cycled).
    #[arg(long)]
    balanced: bool,
    /// Augmented training images per class (rotations and reflections; 0: none).
    #[arg(long)]
    augment_per_class: Option<usize>,
    /// Network input side in pixels.
    #[arg(long)]
    size: Option<u32>,
    /// GoogLeNet's transform_input (default: on with --weights imagenet, off otherwise).
    #[arg(long)]
    transform_input: Option<bool>,
    /// BatchNorm statistics for inference: population (recomputed over the training data
    /// after every epoch, MATLAB's default) or moving (PyTorch's running averages).
    #[arg(long, default_value = "population", value_parser = ["population", "moving"])]
    bn_statistics: String,
    /// Class counted as positive in sensitivity, precision, F1, ROC-AUC (name or index;
    /// default: a class named all/blast/blasts, else index 1).
    #[arg(long)]
    positive_class: Option<String>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let ds = a.data.open()?;
    let split = match &a.split {
        Some(p) => Split::read_json(p)?,
        None => make_split(
            &ds,
            &a.data.dir,
            &SplitConfig {
                seed: a.seed,
                test: TestSize::PerClass(a.test_per_class),
                val_fraction: a.val_fraction,
                group_split: false,
            },
        )?,
    };
    let mut cfg = match a.preset.as_str() {
        "paper" => TrainConfig::paper(a.arch),
        other => bail!("unknown preset {other:?} (expected paper)"),
    };
    cfg.seed = a.seed;
    let momentum = a.momentum.unwrap_or(0.9);
    if let Some(o) = &a.optimizer {
        cfg.optimizer =
            OptimizerKind::parse(o, momentum).map_err(|e| anyhow::anyhow!("--optimizer: {e}"))?;
    } else if let (Some(m), OptimizerKind::Sgd { nesterov, .. }) = (a.momentum, cfg.optimizer) {
        cfg.optimizer = OptimizerKind::Sgd {
            momentum: m,
            nesterov,
        };
    }
    if let Some(v) = a.lr {
        cfg.lr = v;
    }
    if let Some(v) = a.weight_decay {
        cfg.weight_decay = v;
    }
    if let Some(s) = &a.schedule {
        cfg.schedule = Schedule::parse(s).map_err(|e| anyhow::anyhow!("--schedule: {e}"))?;
    }
    if let Some(v) = a.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = a.batch_size {
        cfg.batch_size = v;
    }
    cfg.patience = a.patience;
    cfg.bn_statistics = if a.bn_statistics == "moving" {
        BnStatistics::Moving
    } else {
        BnStatistics::Population
    };
    cfg.freeze_backbone = a.freeze_backbone;
    cfg.balanced_batches = a.balanced;
    if let Some(v) = a.augment_per_class {
        cfg.augment_per_class = v;
    }
    if let Some(v) = a.size {
        cfg.image_size = v;
    }
    let imagenet = a.weights == "imagenet";
    cfg.transform_input = a.arch == Arch::GoogLeNet && a.transform_input.unwrap_or(imagenet);

    let init = match a.weights.as_str() {
        "none" => Init::Scratch,
        "imagenet" => {
            let path = leukex_fetch::imagenet_weights(
                a.arch.as_str(),
                a.variant.as_deref(),
                a.cache.as_deref(),
                |_, _| {},
            )?;
            weights_init(path)?
        }
        file => weights_init(PathBuf::from(file))?,
    };
    let positive = leukex_train::positive_class(a.positive_class.as_deref(), &ds.classes)
        .map_err(|e| anyhow::anyhow!("--{e}"))?;

    eprintln!(
        "training {} on {} ({} classes: {}), positive class {:?}; run folder {}",
        a.arch,
        a.data.dir.display(),
        ds.classes.len(),
        ds.classes.join(", "),
        ds.classes[positive],
        a.out.display()
    );
    let mut bar: Option<ProgressBar> = None;
    let epochs = cfg.epochs;
    let outcome = leukex_train::train(
        &a.out,
        &cfg,
        &ds,
        &split,
        init,
        positive,
        a.resume,
        &mut |e| match e {
            Event::Ready {
                train,
                val,
                test,
                start_epoch,
            } => {
                eprintln!(
                    "{train} training images (augmented), {val} validation, {test} test{}",
                    if start_epoch > 0 {
                        format!("; resuming after epoch {start_epoch}")
                    } else {
                        String::new()
                    }
                );
            }
            Event::EpochStart { epoch, batches } => {
                let b = ProgressBar::new(batches as u64);
                b.set_style(
                    ProgressStyle::with_template(
                        "epoch {prefix} [{bar:25}] {pos}/{len} {msg} ({eta} left)",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("{}/{epochs}", epoch + 1));
                bar = Some(b);
            }
            Event::Batch {
                loss,
                accuracy,
                images_per_second,
                ..
            } => {
                if let Some(b) = &bar {
                    b.inc(1);
                    b.set_message(format!(
                        "loss {loss:.4} acc {:.1}% {images_per_second:.1} img/s",
                        100.0 * accuracy
                    ));
                }
            }
            Event::EpochEnd(r) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let val = match (r.val_loss, r.val_accuracy) {
                    (Some(l), Some(acc)) => format!(", val loss {l:.4} acc {:.1}%", 100.0 * acc),
                    _ => String::new(),
                };
                eprintln!(
                    "epoch {}/{epochs}: lr {:.2e}, train loss {:.4} acc {:.1}%{val}, {:.0} s ({:.1} img/s)",
                    r.epoch + 1,
                    r.lr,
                    r.train_loss,
                    100.0 * r.train_accuracy,
                    r.seconds,
                    r.images_per_second
                );
            }
        },
    )?;
    let t = &outcome.test;
    println!(
        "test ({} images, best epoch {}): accuracy {:.1}%, sensitivity {:.1}%, specificity {:.1}%, F1 {:.3}, ROC-AUC {}",
        t.n,
        outcome.best_epoch + 1,
        100.0 * t.accuracy,
        100.0 * t.sensitivity,
        100.0 * t.specificity,
        t.f1,
        t.roc_auc.map_or("n/a".into(), |v| format!("{v:.3}"))
    );
    println!("wrote {}", a.out.display());
    Ok(())
}

fn weights_init(path: PathBuf) -> Result<Init> {
    let sd = StateDict::read(&path)
        .with_context(|| format!("cannot read initial weights {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Init::Weights { sd, name })
}
