//! A training run: initial weights, epochs, validation, early stopping, checkpoints,
//! resume, and the outputs under the run folder:
//!
//! ```text
//! RUN/model.safetensors     best model (lowest validation loss; the last epoch without a
//!                           validation side), torchvision keys, loads in torchvision
//! RUN/model.json            ModelCard: arch, classes, preprocessing, seed, split hash,
//!                           hyper-parameters, initial weights, code version
//! RUN/metrics.json          test metrics of the best model, its validation metrics, the
//!                           per-epoch curves
//! RUN/test_predictions.csv  per test image: name, true class, predicted class, probabilities
//! RUN/split.json            the split the run used
//! RUN/checkpoint/           state after the last finished epoch (resume)
//! ```
//!
//! After every epoch the trained BatchNorms get the population statistics of the training
//! data ([`BnStatistics::Population`], MATLAB's default; `Moving` keeps PyTorch's moving
//! averages) before the validation pass.
//!
//! Every file is written to a temporary name and renamed, so a killed run leaves either
//! the previous or the new version; `resume` continues after the last finished epoch
//! and, because epoch orders and dropout are seeded per epoch, ends with the numbers an
//! uninterrupted run gives.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{FloatDType, Int};
use leukex_data::dataset::Dataset;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_data::preprocess::Preprocessing;
use leukex_data::split::Split;
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::bn_stats::population_statistics;
use crate::data::{Images, epoch_order, load_augmented, load_images};
use crate::metrics::{Metrics, argmax};
use crate::optim::{Optimizer, OptimizerKind};
use crate::schedule::Schedule;

/// The hyper-parameters of a run (recorded in `model.json`; a resumed run must use the
/// same ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    /// Side of the square network input in pixels.
    pub image_size: u32,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// L2 penalty added to the gradient (PyTorch `weight_decay`, MATLAB `L2Regularization`).
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub epochs: usize,
    pub batch_size: usize,
    /// Stop after this many epochs without a lower validation loss (needs a validation side).
    pub patience: Option<usize>,
    /// Train only the classification head (see `Classifier::freeze_backbone`).
    pub freeze_backbone: bool,
    /// Batches with the classes in equal shares (smaller classes cycled).
    pub balanced_batches: bool,
    /// Augmented training images per class (paper: 1000); 0: the source images only.
    pub augment_per_class: usize,
    /// Seeds the head / scratch init, the augmentation plan, epoch orders and dropout.
    pub seed: u64,
    /// GoogLeNet's torchvision `transform_input` (on for its ImageNet weights).
    pub transform_input: bool,
    /// How the BatchNorm statistics used at inference are obtained (see [`BnStatistics`]).
    #[serde(default)]
    pub bn_statistics: BnStatistics,
}

/// The running statistics a trained BatchNorm uses at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BnStatistics {
    /// Recomputed over the training data after every epoch (MATLAB `trainNetwork`'s
    /// default `"population"`; see [`crate::bn_stats`]).
    #[default]
    Population,
    /// PyTorch's moving averages (`momentum`), as they stand after the last step.
    Moving,
}

impl TrainConfig {
    /// The paper's setting as far as it is known: the paper gives no hyper-parameters, so
    /// this is MathWorks' transfer-learning example (sgdm, learning rate 1e-4, momentum
    /// 0.9, mini-batch 10, 6 epochs) with MATLAB's default L2 regularisation 1e-4, on
    /// 224 px inputs and 1000 augmented images per class.
    pub fn paper(arch: Arch) -> Self {
        TrainConfig {
            arch,
            image_size: 224,
            optimizer: OptimizerKind::sgdm(0.9),
            lr: 1e-4,
            weight_decay: 1e-4,
            schedule: Schedule::Constant,
            epochs: 6,
            batch_size: 10,
            patience: None,
            freeze_backbone: false,
            balanced_batches: false,
            augment_per_class: 1000,
            seed: 0,
            transform_input: false,
            bn_statistics: BnStatistics::Population,
        }
    }
}

/// Where the initial weights come from.
pub enum Init {
    /// torchvision's from-scratch initialisation, seeded.
    Scratch,
    /// A state dict (e.g. ImageNet weights); its head is replaced by a fresh seeded one
    /// when its number of classes differs from the data set's.
    Weights { sd: StateDict, name: String },
}

/// What a model file is and how to feed it: `model.json` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub model: ModelConfig,
    pub classes: Vec<String>,
    pub positive_class: usize,
    pub preprocessing: Preprocessing,
    pub weights: String,
    pub initial_weights: String,
    pub split_hash: String,
    pub hyper_parameters: TrainConfig,
    pub best_epoch: usize,
    pub code_version: String,
}

pub const MODEL_CARD_FORMAT: &str = "leukex-model/1";

impl ModelCard {
    /// Reads `RUN/model.json` (or a `model.json` path).
    pub fn read(path: &Path) -> Result<(ModelCard, PathBuf), TrainError> {
        let file = if path.is_dir() {
            path.join("model.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| TrainError::Run {
            path: file.clone(),
            reason: format!("cannot read the model card: {e}"),
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| TrainError::Run {
            path: file.clone(),
            reason: format!("not a leukex model card: {e}"),
        })?;
        if card.format != MODEL_CARD_FORMAT {
            return Err(TrainError::Run {
                path: file,
                reason: format!("format {:?}, expected {MODEL_CARD_FORMAT:?}", card.format),
            });
        }
        let weights = file.parent().unwrap_or(Path::new(".")).join(&card.weights);
        Ok((card, weights))
    }
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// Progress reports for a user interface.
pub enum Event<'a> {
    /// Data loaded and augmented.
    Ready {
        train: usize,
        val: usize,
        test: usize,
        start_epoch: usize,
    },
    EpochStart {
        epoch: usize,
        batches: usize,
    },
    Batch {
        epoch: usize,
        batch: usize,
        loss: f64,
        accuracy: f64,
        images_per_second: f64,
    },
    EpochEnd(&'a EpochRecord),
}

/// The result of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    pub test: Metrics,
    pub val: Option<Metrics>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
}

/// Resume state, written after every epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    format: String,
    config: TrainConfig,
    split_hash: String,
    initial_weights: String,
    epochs_done: usize,
    steps: u64,
    best_epoch: usize,
    best_val_loss: Option<f64>,
    history: Vec<EpochRecord>,
    stopped_early: bool,
}

const STATE_FORMAT: &str = "leukex-train-state/1";

/// The checkpoint files written after `epochs_done` epochs.
fn tagged_checkpoint_files(ckpt: &Path, epochs_done: usize) -> (PathBuf, PathBuf) {
    (
        ckpt.join(format!("model.{epochs_done}.safetensors")),
        ckpt.join(format!("optimizer.{epochs_done}.safetensors")),
    )
}

/// The checkpoint files of `epochs_done` epochs; checkpoints of earlier leukex versions
/// used untagged names.
fn checkpoint_files(ckpt: &Path, epochs_done: usize) -> (PathBuf, PathBuf) {
    let tagged = tagged_checkpoint_files(ckpt, epochs_done);
    if tagged.0.exists() {
        tagged
    } else {
        (
            ckpt.join("model.safetensors"),
            ckpt.join("optimizer.safetensors"),
        )
    }
}

/// The preprocessing of `arch` at `size`: ImageNet mean/std for the torchvision nets,
/// `(x − 127)/128` for EfficientNet-Lite0; antialiased bilinear resize.
pub fn preprocessing_for(arch: Arch, size: u32) -> Preprocessing {
    match arch {
        Arch::EfficientNetLite0 => Preprocessing::efficientnet_lite(size),
        _ => Preprocessing::imagenet(size),
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .expect("float")[0]
}

/// One optimiser step on a batch: cross-entropy (mean over the batch) of `model`'s
/// logits in training mode, backward, update with `lr`. Returns the loss before the
/// update and the number of correct predictions in the batch.
pub fn train_step(
    model: &mut Classifier,
    opt: &mut Optimizer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    lr: f64,
) -> (f64, usize) {
    let [b] = y.dims();
    let logits = model.forward(x);
    let pred = logits.clone().detach().argmax(1).reshape([b]);
    let correct = pred.equal(y.clone()).int().sum().into_scalar::<i64>() as usize;
    let picked = log_softmax(logits, 1).gather(1, y.reshape([b, 1]));
    let loss = picked.mean().neg();
    let value = scalar(loss.clone().detach());
    let grads = loss.backward();
    opt.step(model, &grads, lr);
    (value, correct)
}

/// Softmax probabilities and per-image cross-entropy of an inference-mode model
/// (`model.valid()`) on `images`, in batches of `batch`.
pub fn evaluate(model: &Classifier, images: &Images, batch: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let dev = Device::default();
    let mut probs = Vec::with_capacity(images.len());
    let mut losses = Vec::with_capacity(images.len());
    let idx: Vec<usize> = (0..images.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (x, _) = images.batch(chunk, &dev, FloatDType::F32);
        let logits = model.forward(x);
        let [n, k] = logits.dims();
        let p = softmax(logits.clone(), 1)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .expect("float");
        let lp = log_softmax(logits, 1)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .expect("float");
        for (r, &i) in chunk.iter().enumerate().take(n) {
            probs.push(p[r * k..(r + 1) * k].to_vec());
            losses.push(-lp[r * k + images.labels[i]]);
        }
    }
    (probs, losses)
}

fn fnv_hex(s: &str) -> String {
    format!("{:016x}", leukex_hash::fnv1a64(s))
}

fn run_err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Run {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn save_model(
    path: &Path,
    model: &Classifier,
    steps: u64,
    card: &[(&str, String)],
) -> Result<(), TrainError> {
    let bytes = model.to_state_dict(steps).to_safetensors(card);
    write_bytes_atomic(path, &bytes)?;
    Ok(())
}

/// Trains `cfg.arch` on `ds` with `split` into `run_dir` (see the module docs), starting
/// from `init`, or from the checkpoint in `run_dir` when `resume` is set. `positive`
/// is the class whose sensitivity, precision, F1 and ROC-AUC are reported.
#[allow(clippy::too_many_arguments)]
pub fn train(
    run_dir: &Path,
    cfg: &TrainConfig,
    ds: &Dataset,
    split: &Split,
    init: Init,
    positive: usize,
    resume: bool,
    progress: &mut dyn FnMut(Event),
) -> Result<RunOutcome, TrainError> {
    let k = ds.classes.len();
    if k < 2 {
        return Err(run_err(&ds.root, "training needs at least two classes"));
    }
    if positive >= k {
        return Err(run_err(
            &ds.root,
            format!("positive class {positive} but only {k} classes"),
        ));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(run_err(run_dir, "batch size and epochs must be positive"));
    }
    if cfg.patience.is_some() && split.val.is_empty() {
        return Err(run_err(
            run_dir,
            "early stopping (patience) needs a validation side: split with a validation fraction",
        ));
    }
    let ckpt = run_dir.join("checkpoint");
    let state_path = ckpt.join("state.json");
    let split_hash = fnv_hex(&serde_json::to_string(split).expect("split serialises"));
    let initial_weights = match &init {
        Init::Scratch => format!("scratch (seed {})", cfg.seed),
        Init::Weights { name, .. } => name.clone(),
    };
    let previous: Option<RunState> = if state_path.exists() {
        if !resume {
            return Err(run_err(
                run_dir,
                "holds a checkpoint of an earlier run; pass --resume to continue it or choose another output folder",
            ));
        }
        let text = std::fs::read_to_string(&state_path)
            .map_err(|e| run_err(&state_path, e.to_string()))?;
        let st: RunState = serde_json::from_str(&text)
            .map_err(|e| run_err(&state_path, format!("unreadable: {e}")))?;
        if st.format != STATE_FORMAT {
            return Err(run_err(
                &state_path,
                format!("format {:?}, expected {STATE_FORMAT:?}", st.format),
            ));
        }
        if st.config != *cfg {
            return Err(run_err(
                &state_path,
                format!(
                    "was started with other settings; resume with the same ones.\n  checkpoint: {}\n  now:        {}",
                    serde_json::to_string(&st.config).unwrap_or_default(),
                    serde_json::to_string(cfg).unwrap_or_default()
                ),
            ));
        }
        if st.split_hash != split_hash {
            return Err(run_err(&state_path, "was started with another split"));
        }
        Some(st)
    } else {
        if run_dir.join("metrics.json").exists() {
            return Err(run_err(
                run_dir,
                "holds a finished run (metrics.json); choose another output folder",
            ));
        }
        None
    };
    std::fs::create_dir_all(&ckpt).map_err(|e| run_err(&ckpt, e.to_string()))?;
    split.write_json(&run_dir.join("split.json"))?;

    // Data.
    let prep = preprocessing_for(cfg.arch, cfg.image_size);
    let train_set = load_augmented(ds, &split.train, cfg.augment_per_class, cfg.seed, &prep)?;
    let val_set = load_images(ds, &split.val, "validation", &prep)?;
    let test_set = load_images(ds, &split.test, "test", &prep)?;
    if train_set.is_empty() {
        return Err(run_err(&ds.root, "the split has no training image"));
    }

    // Model and optimiser.
    let dev = Device::default();
    let ad = dev.clone().autodiff();
    let config = ModelConfig::new(cfg.arch, k).with_transform_input(cfg.transform_input);
    let mut opt = Optimizer::new(cfg.optimizer, cfg.weight_decay);
    let mut st = match previous {
        Some(st) => st,
        None => RunState {
            format: STATE_FORMAT.into(),
            config: cfg.clone(),
            split_hash: split_hash.clone(),
            initial_weights: initial_weights.clone(),
            epochs_done: 0,
            steps: 0,
            best_epoch: 0,
            best_val_loss: None,
            history: Vec::new(),
            stopped_early: false,
        },
    };
    let mut model = if st.epochs_done > 0 {
        let (model_file, optimizer_file) = checkpoint_files(&ckpt, st.epochs_done);
        let sd = StateDict::read(&model_file)?;
        let osd = StateDict::read(&optimizer_file)?;
        opt.load_state_dict(&osd, &dev)
            .map_err(|e| run_err(&optimizer_file, e))?;
        Classifier::from_owned_state_dict(&config, sd, &ad)?
    } else {
        match init {
            Init::Scratch => {
                let mut m = Classifier::new(&config, &ad);
                m.init_from_scratch(cfg.seed);
                m
            }
            Init::Weights { sd, .. } => {
                let k_file = cfg.arch.num_classes_in(&sd).unwrap_or(k);
                let file_config =
                    ModelConfig::new(cfg.arch, k_file).with_transform_input(cfg.transform_input);
                let mut m = Classifier::from_state_dict(&file_config, &sd, &ad)?;
                if k_file != k {
                    m.replace_head(k, cfg.seed);
                }
                m
            }
        }
    };
    if cfg.freeze_backbone {
        model = model.freeze_backbone();
    }
    let mut best_sd = if st.epochs_done > 0 && run_dir.join("model.safetensors").exists() {
        Some(StateDict::read(run_dir.join("model.safetensors"))?)
    } else {
        None
    };

    progress(Event::Ready {
        train: train_set.len(),
        val: val_set.len(),
        test: test_set.len(),
        start_epoch: st.epochs_done,
    });
    let card_meta = |epoch: usize| {
        vec![
            ("leukex.arch", cfg.arch.to_string()),
            ("leukex.num_classes", k.to_string()),
            ("leukex.epoch", epoch.to_string()),
        ]
    };
    let started = Instant::now();
    let mut epoch = st.epochs_done;
    while epoch < cfg.epochs && !st.stopped_early {
        let t0 = Instant::now();
        let lr = cfg.schedule.lr(cfg.lr, epoch, cfg.epochs);
        // Dropout draws from the backend's generator: seeded per epoch, so a resumed run
        // draws what an uninterrupted one would.
        ad.seed(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let order = epoch_order(&train_set.labels, epoch, cfg.seed, cfg.balanced_batches);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        progress(Event::EpochStart {
            epoch,
            batches: batches.len(),
        });
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        for (bi, idx) in batches.iter().enumerate() {
            let (x, y) = train_set.batch(idx, &ad, FloatDType::F32);
            let (loss, c) = train_step(&mut model, &mut opt, x, y, lr);
            if !loss.is_finite() {
                return Err(run_err(
                    run_dir,
                    format!(
                        "the training loss became {loss} in epoch {} batch {bi}; lower the learning rate",
                        epoch + 1
                    ),
                ));
            }
            st.steps += 1;
            loss_sum += loss * idx.len() as f64;
            correct += c;
            seen += idx.len();
            progress(Event::Batch {
                epoch,
                batch: bi,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_second: seen as f64 / t0.elapsed().as_secs_f64(),
            });
        }
        let secs_train = t0.elapsed().as_secs_f64();
        if cfg.bn_statistics == BnStatistics::Population {
            population_statistics(&mut model, &train_set, cfg.batch_size);
        }
        let valid = model.valid();
        let (val_loss, val_accuracy) = if val_set.is_empty() {
            (None, None)
        } else {
            let (probs, losses) = evaluate(&valid, &val_set, cfg.batch_size.max(16));
            let m = Metrics::compute(&probs, &val_set.labels, &losses, positive);
            (Some(m.loss), Some(m.accuracy))
        };
        let record = EpochRecord {
            epoch,
            lr,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            val_loss,
            val_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / secs_train,
        };
        progress(Event::EpochEnd(&record));
        st.history.push(record);
        let improved = match (val_loss, st.best_val_loss) {
            (None, _) => true,
            (Some(v), None) => v.is_finite(),
            (Some(v), Some(b)) => v < b,
        };
        if improved {
            st.best_epoch = epoch;
            st.best_val_loss = val_loss;
            let sd = model.to_state_dict(st.steps);
            write_bytes_atomic(
                &run_dir.join("model.safetensors"),
                &sd.to_safetensors(&card_meta(epoch)),
            )?;
            best_sd = Some(sd);
        } else if let Some(p) = cfg.patience
            && epoch - st.best_epoch >= p
        {
            st.stopped_early = true;
        }
        epoch += 1;
        st.epochs_done = epoch;
        // Named by epoch, so that a run killed before the state file below is written
        // resumes from the files that state names, not from newer ones.
        let (model_file, optimizer_file) = tagged_checkpoint_files(&ckpt, epoch);
        save_model(&model_file, &model, st.steps, &card_meta(epoch - 1))?;
        write_bytes_atomic(&optimizer_file, &opt.state_dict().to_safetensors(&[]))?;
        // The state file last: it is what says the epoch is done.
        write_json_atomic(&state_path, &st)?;
        let (old_model, old_optimizer) = checkpoint_files(&ckpt, epoch - 1);
        for f in [old_model, old_optimizer] {
            let _ = std::fs::remove_file(f);
        }
    }

    // Test the best model.
    let best_sd = best_sd.ok_or_else(|| run_err(run_dir, "no epoch finished"))?;
    let best = Classifier::from_owned_state_dict(&config, best_sd, &dev)?;
    let (probs, losses) = evaluate(&best, &test_set, cfg.batch_size.max(16));
    let test = Metrics::compute(&probs, &test_set.labels, &losses, positive);
    let val = (!val_set.is_empty()).then(|| {
        let (p, l) = evaluate(&best, &val_set, cfg.batch_size.max(16));
        Metrics::compute(&p, &val_set.labels, &l, positive)
    });
    let outcome = RunOutcome {
        test,
        val,
        best_epoch: st.best_epoch,
        epochs_run: st.epochs_done,
        stopped_early: st.stopped_early,
        history: st.history.clone(),
        train_seconds: started.elapsed().as_secs_f64(),
    };
    let mut csv = String::from("name,label,predicted");
    for c in &ds.classes {
        csv.push_str(&format!(",p_{c}"));
    }
    csv.push('\n');
    for (i, p) in probs.iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{}",
            test_set.names[i],
            ds.classes[test_set.labels[i]],
            ds.classes[argmax(p)]
        ));
        for v in p {
            csv.push_str(&format!(",{v:.6}"));
        }
        csv.push('\n');
    }
    write_bytes_atomic(&run_dir.join("test_predictions.csv"), csv.as_bytes())?;
    let card = ModelCard {
        format: MODEL_CARD_FORMAT.into(),
        model: config,
        classes: ds.classes.clone(),
        positive_class: positive,
        preprocessing: prep,
        weights: "model.safetensors".into(),
        initial_weights: st.initial_weights.clone(),
        split_hash,
        hyper_parameters: cfg.clone(),
        best_epoch: st.best_epoch,
        code_version: format!("leukex {}", env!("CARGO_PKG_VERSION")),
    };
    write_json_atomic(&run_dir.join("model.json"), &card)?;
    write_json_atomic(&run_dir.join("metrics.json"), &outcome)?;
    Ok(outcome)
}
