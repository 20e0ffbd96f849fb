//! All requested methods for one batch, sharing what can be shared: the plain gradient
//! pass serves Gradient and Input×Gradient, and the CAMs too when they differentiate the
//! same score; otherwise one pass per target layer serves every CAM on that layer; each
//! LRP composite, Guided Backpropagation, Integrated Gradients, SmoothGrad and Score-CAM
//! run their own backward pass. The gradient and CAM passes and the LRP composites also
//! share their convolutions' forward values ([`LayerValues`]): each convolution term is
//! computed once per batch, whichever pass needs it first.

use std::collections::HashMap;

use burn::prelude::*;
use leukex_models::Classifier;

use serde::{Deserialize, Serialize};

use crate::cam::{CamError, CamStyle, default_layer, probed_pass};
use crate::gradient::{integrated_gradients, smoothgrad};
use crate::guided::guided_backprop_with_logits;
use crate::lrp::{LayerValues, lrp_with_values};
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
    explain_batch_sharing(model, x, targets, methods, options, LayerValues::default())
}

/// Whether any of `methods` takes its convolutions' forward values from [`LayerValues`]
/// (the gradient family, the CAMs, LRP), so that a [`forward_sharing`] pass before them
/// saves their forward convolutions.
///
/// [`forward_sharing`]: crate::cam::forward_sharing
pub fn shares_forward_values(methods: &[Method]) -> bool {
    methods.iter().any(|m| {
        matches!(
            m,
            Method::Gradient | Method::InputXGradient | Method::Cam { .. } | Method::Lrp { .. }
        )
    })
}

/// [`explain_batch_with`] taking the convolutions' forward values of earlier passes over
/// the same batch `x` (those of [`crate::cam::forward_sharing`], which picked the targets):
/// no convolution output is computed twice.
pub fn explain_batch_sharing(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    methods: &[Method],
    options: &ExplainOptions,
    mut values: LayerValues,
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
    // The gradient pass and the LRP composites share their convolutions' forward values.
    // The gradient's backward pass also serves the CAMs when they differentiate the same
    // score (not with MATLAB-style CAMs on logit gradients, which take a pass of their own,
    // on the same values).
    let grad = if !needs_gradient {
        None
    } else {
        // The CAMs' layers are probed in the same pass when they differentiate the same
        // score; otherwise the pass serves the gradient alone.
        let mut shared: Vec<String> = Vec::new();
        for m in methods {
            if let Method::Cam { layer, .. } = m {
                let layer = cam_layer(layer);
                if cam_score == score && !shared.contains(&layer) {
                    shared.push(layer);
                }
            }
        }
        let pass = probed_pass(model, x.clone(), targets, &shared, score, &mut values, true)?;
        for (name, a, lg) in pass.layers {
            layers.insert(name, (a, lg));
        }
        pass.input_gradient
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
                    let wanted = [layer.clone()];
                    let pass = probed_pass(
                        model,
                        x.clone(),
                        targets,
                        &wanted,
                        cam_score,
                        &mut values,
                        false,
                    )?;
                    let (_, a, g) = pass.layers.into_iter().next().expect("one layer");
                    layers.insert(layer.clone(), (a, g));
                }
                let (a, g) = layers[&layer].clone();
                kind.cam(a, g)
            }
            Method::ScoreCam { layer, batch } => {
                let layer = cam_layer(layer);
                score_cam_for(model, x.clone(), targets, &layer, *batch, cam_score)?
            }
            Method::Lrp { composite, .. } => {
                let init = options.init_relevance;
                lrp_with_values(model, x.clone(), targets, composite, init, &mut values).0
            }
        };
        out.push(map);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composite::Composite;
    use crate::gradient::gradient_with_logits;
    use crate::lrp::lrp_with_values;
    use crate::rules::Rule;
    use leukex_models::closed_form::{closed_form_state_dict, input_value};
    use leukex_models::{Arch, ModelConfig};

    fn resnet18() -> Classifier {
        let dev = Device::default();
        let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 3), &dev);
        m.load_state_dict(&closed_form_state_dict(&m, None))
            .unwrap();
        m.valid()
    }

    fn rel_l2(a: Tensor<4>, b: Tensor<4>) -> f64 {
        let d = (a - b.clone()).powf_scalar(2.0).sum().into_scalar::<f64>();
        (d / b.powf_scalar(2.0).sum().into_scalar::<f64>()).sqrt()
    }

    #[test]
    fn the_gradient_pass_leaves_lrp_every_plain_convolution_output() {
        let m = resnet18();
        let shape = [1, 3, 64, 64];
        let x = Tensor::<4>::from_data(
            TensorData::new(input_value(&shape), shape),
            &Device::default(),
        );
        let convs = 1 + 8 * 2 + 3;
        let plain = gradient_with_logits(&m, x.clone(), &[1], Score::Logit).0;
        let mut values = LayerValues::default();
        let layer4 = ["layer4".to_string()];
        let pass = probed_pass(
            &m,
            x.clone(),
            &[1],
            &layer4,
            Score::Logit,
            &mut values,
            true,
        );
        let folded = pass.unwrap().input_gradient.unwrap();
        assert_eq!(values.len(), convs);
        // Folding BatchNorm changes the values by rounding only: the same gradient.
        assert!(rel_l2(folded, plain.clone()) < 1e-4);
        // ε needs nothing more.
        let eps = Composite::uniform(Rule::Epsilon { epsilon: 1e-6 });
        lrp_with_values(
            &m,
            x.clone(),
            &[1],
            &eps,
            InitRelevance::OneHot,
            &mut values,
        );
        assert_eq!(values.len(), convs);
        // A convolution's pre-BatchNorm output requested: the pass runs that convolution
        // unfolded, and the values of the other chain are dropped.
        let pre_bn = ["layer2.0.conv1".to_string()];
        let pass = probed_pass(&m, x, &[1], &pre_bn, Score::Logit, &mut values, true);
        let unfolded = pass.unwrap();
        assert!(values.is_empty());
        assert_eq!(unfolded.layers[0].1.dims(), [1, 128, 8, 8]);
        assert!(rel_l2(unfolded.input_gradient.unwrap(), plain) < 1e-4);
    }
}
