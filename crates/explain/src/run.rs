//! All requested methods for one batch, sharing what can be shared: the plain gradient
//! pass serves Gradient and Input×Gradient, and the CAMs too when they differentiate the
//! same score; otherwise one pass per target layer serves every CAM on that layer; each
//! LRP composite, Guided Backpropagation, Integrated Gradients, SmoothGrad and Score-CAM
//! run their own.

use std::collections::HashMap;

use burn::prelude::*;
use leukex_models::Classifier;

use serde::{Deserialize, Serialize};

use crate::cam::{
    CamError, CamStyle, default_layer, gradient_and_layer_gradients, layer_gradients_for,
};
use crate::gradient::{gradient_with_logits, integrated_gradients, smoothgrad};
use crate::guided::guided_backprop_with_logits;
use crate::lrp::lrp_with_logits;
use crate::method::Method;
use crate::score_cam::score_cam_for;
use crate::target::{InitRelevance, Score};

/// Options shared by all methods of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainOptions {
    /// What the gradient and CAM families differentiate (Score-CAM: what weights its
    /// masked inputs).
    pub score: Score,
    /// Where LRP starts.
    pub init_relevance: InitRelevance,
    /// How CAMs are finished; [`CamStyle::Matlab`] also makes the CAMs differentiate the
    /// softmax output. (The finishing itself, [`CamStyle::finish`], is left to the caller,
    /// who knows the output size.)
    pub cam_style: CamStyle,
}

/// Maps for `methods`, in the same order: `[N, C, H, W]` for the gradient, Guided
/// Backpropagation and LRP methods, `[N, 1, h, w]` at layer resolution for CAMs (see
/// [`crate::cam::scale_and_resize`]).
/// Default options: logit score, one-hot LRP start.
pub fn explain_batch(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    methods: &[Method],
) -> Result<Vec<Tensor<4>>, CamError> {
    explain_batch_with(model, x, targets, methods, &ExplainOptions::default())
}

/// [`explain_batch`] with explicit options.
pub fn explain_batch_with(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    methods: &[Method],
    options: &ExplainOptions,
) -> Result<Vec<Tensor<4>>, CamError> {
    let score = options.score;
    let cam_score = options.cam_style.score(score);
    let needs_gradient = methods
        .iter()
        .any(|m| matches!(m, Method::Gradient | Method::InputXGradient));
    let cam_layer = |layer: &Option<String>| {
        layer
            .clone()
            .unwrap_or_else(|| default_layer(model.arch()).to_string())
    };
    let mut layers: HashMap<String, (Tensor<4>, Tensor<4>)> = HashMap::new();
    // The gradient's backward pass also serves the CAMs when they differentiate the same
    // score (not with MATLAB-style CAMs on logit gradients).
    let grad = if !needs_gradient {
        None
    } else if cam_score == score {
        let mut shared: Vec<String> = Vec::new();
        for m in methods {
            if let Method::Cam { layer, .. } = m {
                let layer = cam_layer(layer);
                if !shared.contains(&layer) {
                    shared.push(layer);
                }
            }
        }
        let (g, at_layers) =
            gradient_and_layer_gradients(model, x.clone(), targets, &shared, score)?;
        for (name, a, lg) in at_layers {
            layers.insert(name, (a, lg));
        }
        Some(g)
    } else {
        Some(gradient_with_logits(model, x.clone(), targets, score).0)
    };
    let mut out = Vec::with_capacity(methods.len());
    for m in methods {
        let map = match m {
            Method::Gradient => grad.clone().expect("computed above"),
            Method::InputXGradient => x.clone() * grad.clone().expect("computed above"),
            Method::IntegratedGradients { steps, rule } => {
                integrated_gradients(model, x.clone(), None, targets, *steps, *rule, score)
            }
            Method::SmoothGrad {
                samples,
                sigma,
                seed,
            } => smoothgrad(model, x.clone(), targets, *samples, *sigma, *seed, score),
            Method::GuidedBackprop => {
                guided_backprop_with_logits(model, x.clone(), targets, score).0
            }
            Method::Cam { kind, layer } => {
                let layer = cam_layer(layer);
                if !layers.contains_key(&layer) {
                    let lg = layer_gradients_for(model, x.clone(), targets, &layer, cam_score)?;
                    layers.insert(layer.clone(), (lg.activations, lg.gradients));
                }
                let (a, g) = layers[&layer].clone();
                kind.cam(a, g)
            }
            Method::ScoreCam { layer, batch } => {
                let layer = cam_layer(layer);
                score_cam_for(model, x.clone(), targets, &layer, *batch, cam_score)?
            }
            Method::Lrp { composite, .. } => {
                lrp_with_logits(model, x.clone(), targets, composite, options.init_relevance).0
            }
        };
        out.push(map);
    }
    Ok(out)
}
