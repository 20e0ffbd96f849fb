//! All requested methods for one batch, sharing what can be shared: the plain gradient
//! pass serves Gradient and Input×Gradient; one pass per target layer serves every CAM
//! on that layer; each LRP composite, Integrated Gradients and SmoothGrad run their own.

use std::collections::HashMap;

use burn::prelude::*;
use leukex_models::Classifier;

use crate::cam::{CamError, default_layer, layer_gradients};
use crate::gradient::{gradient, integrated_gradients, smoothgrad};
use crate::lrp::lrp;
use crate::method::Method;

/// Maps for `methods`, in the same order: `[N, C, H, W]` for gradient and LRP methods,
/// `[N, 1, h, w]` at layer resolution for CAMs (see [`crate::cam::scale_and_resize`]).
pub fn explain_batch(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    methods: &[Method],
) -> Result<Vec<Tensor<4>>, CamError> {
    let needs_gradient = methods
        .iter()
        .any(|m| matches!(m, Method::Gradient | Method::InputXGradient));
    let grad = needs_gradient.then(|| gradient(model, x.clone(), targets));
    let mut layers: HashMap<String, (Tensor<4>, Tensor<4>)> = HashMap::new();
    let mut out = Vec::with_capacity(methods.len());
    for m in methods {
        let map = match m {
            Method::Gradient => grad.clone().expect("computed above"),
            Method::InputXGradient => x.clone() * grad.clone().expect("computed above"),
            Method::IntegratedGradients { steps, rule } => {
                integrated_gradients(model, x.clone(), None, targets, *steps, *rule)
            }
            Method::SmoothGrad {
                samples,
                sigma,
                seed,
            } => smoothgrad(model, x.clone(), targets, *samples, *sigma, *seed),
            Method::Cam { kind, layer } => {
                let layer = layer
                    .clone()
                    .unwrap_or_else(|| default_layer(model.arch()).to_string());
                if !layers.contains_key(&layer) {
                    let lg = layer_gradients(model, x.clone(), targets, &layer)?;
                    layers.insert(layer.clone(), (lg.activations, lg.gradients));
                }
                let (a, g) = layers[&layer].clone();
                kind.cam(a, g)
            }
            Method::Lrp { composite, .. } => lrp(model, x.clone(), targets, composite),
        };
        out.push(map);
    }
    Ok(out)
}
