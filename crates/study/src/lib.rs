//! The study's runs that need a model, its heat maps and their evaluation together, so
//! that neither `leukex-explain` nor `leukex-evaluate` depends on the other:
//!
//! * [`model_metrics`]: faithfulness (region perturbation, deletion, insertion, ROAD) of
//!   the maps `leukex explain` wrote, and the model parameter randomisation test (MPRT) of
//!   methods recomputed on randomised models (`leukex evaluate --model`).

pub mod model_metrics;

pub use model_metrics::{
    FaithfulnessMetric, ModelMetricsOptions, StudyError, StudyModel, run_model_metrics,
};
