//! Fine-tuning of leukex's CNNs (paper §3.3 step 3) on a data set's stratified split.
//!
//! * [`optim`]: SGD with momentum and Adam as `torch.optim` defines them, by parameter
//!   name (checked against PyTorch: the losses of the first 10 steps from the same
//!   weights and batches, `tests/torch_steps.rs`).
//! * [`schedule`]: constant, step and cosine learning-rate schedules, per epoch.
//! * [`data`]: the training side augmented in memory with the same plan as
//!   `leukex data augment`, validation and test sides preprocessed as they are, seeded
//!   epoch orders (optionally class-balanced).
//! * [`bench`]: forward, forward + backward and training-step speed (`leukex bench`).
//! * [`bn_stats`]: BatchNorm population statistics after training (MATLAB's default).
//! * [`run`]: a whole run — initial weights (scratch, a file, ImageNet), epochs with
//!   validation-based early stopping, atomic checkpoints after every epoch and `resume`,
//!   the best model written as a torchvision `state_dict` with `model.json`, and test
//!   metrics ([`metrics`]) in `metrics.json`.

pub mod bench;
pub mod bn_stats;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod run;
pub mod schedule;

use std::path::PathBuf;

pub use data::Images;
pub use metrics::{Metrics, positive_class};
pub use optim::{Optimizer, OptimizerKind};
pub use run::{
    BnStatistics, EpochRecord, Event, Init, ModelCard, RunOutcome, TrainConfig, evaluate,
    preprocessing_for, train, train_step,
};
pub use schedule::Schedule;

/// What can go wrong in a training run; every variant names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    DataSet(#[from] leukex_data::DataError),
    #[error(transparent)]
    Weights(#[from] leukex_models::WeightsError),
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Run { path: PathBuf, reason: String },
}
