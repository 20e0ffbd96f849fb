//! The study: the whole paper's procedure as one grid of cached cells, and the runs that
//! need a model, its heat maps and their evaluation together (so that neither
//! `leukex-explain` nor `leukex-evaluate` depends on the other):
//!
//! * [`spec`]: the study file (`leukex run STUDY.toml`) and its models;
//! * [`grid`]: its cells (data, split, train, explain per image batch, model metrics,
//!   evaluate, report), what each needs, and each one's cache key;
//! * [`runner`]: runs cells not yet done, atomically, resumable after `kill -9`; shards;
//! * [`merge`]: joins shard outputs and finishes the study-wide cells;
//! * [`model_metrics`]: faithfulness (region perturbation, deletion, insertion, ROAD) of
//!   the maps `leukex explain` wrote, and the model parameter randomisation test (MPRT) of
//!   methods recomputed on randomised models (`leukex evaluate --model`).

pub mod grid;
pub mod merge;
pub mod model_metrics;
pub mod runner;
pub mod spec;

pub use grid::{Cell, Grid, Stage};
pub use model_metrics::{
    FaithfulnessMetric, ModelMetricsOptions, StudyError, StudyModel, run_model_metrics,
};
pub use runner::{Observer, Quiet, RunSummary, Selection, run};
pub use spec::{DEMO_STUDY, QUICK_STUDY, Study};
