//! Attribution maps for leukex on the models of `leukex-models`. Most methods are one
//! forward pass plus one (possibly rule-modified) backward pass, shared where methods
//! allow it ([`run::explain_batch_with`]); Integrated Gradients takes one pass per step,
//! SmoothGrad one per noisy sample and Score-CAM one forward pass per channel of its layer
//! (the README's table gives every method's cost).
//!
//! * [`lrp`]: LRP rules ([`rules::Rule`]) mapped to layers by composites
//!   ([`composite::Composite`]), through the model's own forward pass with operations
//!   whose backward pass is the rule (no second model definition, no per-architecture
//!   code). Deep Taylor (iNNvestigate's `deep_taylor`, `deep_taylor.bounded`) is such a
//!   composite: z⁺ without bias ([`rules::Rule::ZPlusNoBias`]), zᴮ on the first layer when
//!   bounded.
//! * [`gradient`]: Gradient, Input×Gradient, Integrated Gradients, SmoothGrad.
//! * [`guided`]: Guided Backpropagation, through the model's own forward pass with
//!   activations whose backward pass lets only positive gradient through (a custom
//!   autodiff operation: the rule is not linear in the upstream gradient).
//! * [`cam`]: Grad-CAM, Grad-CAM++, HiResCAM, XGradCAM, LayerCAM; [`score_cam`]: Score-CAM
//!   (one forward pass per channel of the target layer, opt-in).
//!
//! Maps are `[N, C, H, W]` (input resolution, per channel) for the gradient, Guided
//! Backpropagation and LRP families and `[N, 1, h, w]` (layer resolution, before
//! pytorch-grad-cam's scaling) for CAMs; [`run::explain_batch`] returns every requested
//! method for a batch, sharing passes. [`pipeline::run_explain`] is a whole run as
//! `leukex explain` does it: inputs read and checked, maps finished, files and
//! `explain.json` written.
//! Models must be in inference mode (`model.valid()`).

pub mod batch_norm_compat;
pub mod cam;
pub mod composite;
pub mod gradient;
pub mod guided;
pub mod lrp;
pub mod method;
pub mod pipeline;
pub mod preset;
pub mod relevance_conv;
pub mod resize;
pub mod rules;
pub mod run;
pub mod score_cam;
pub mod stabilizer;
pub mod target;

pub use cam::{CamKind, CamStyle, default_layer, scale_and_resize};
pub use composite::Composite;
pub use method::{METHOD_NAMES, Method, MethodParams, OPT_IN_METHODS};
pub use pipeline::{
    ExplainInput, ExplainRequest, ExplainRunError, ExplainSummary, ImageFailure, ModelInfo,
    run_explain,
};
pub use rules::Rule;
pub use run::{
    ExplainOptions, PickedBatch, explain_batch, explain_batch_picking, explain_batch_sharing,
    explain_batch_with,
};
pub use score_cam::{DEFAULT_SCORE_CAM_BATCH, score_cam};
pub use target::{InitRelevance, Score, Target, predicted};
