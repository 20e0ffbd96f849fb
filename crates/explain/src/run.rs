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

use crate::cam::{
    CamError, CamStyle, ProbedPass, Targets, default_layer, forward_sharing, probed_pass,
    probed_pass_picking,
};
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
    // The gradient pass and the LRP composites share their convolutions' forward values.
    // The gradient's backward pass also serves the CAMs when they differentiate the same
    // score (not with MATLAB-style CAMs on logit gradients, which take a pass of their own,
    // on the same values).
    let pass = match GradientPass::of_gradient_methods(model, methods, options) {
        None => None,
        Some(plan) => Some(probed_pass(
            model,
            x.clone(),
            targets,
            &plan.layers,
            plan.score,
            &mut values,
            plan.input_gradient,
        )?),
    };
    methods_after(model, x, targets, methods, options, values, pass)
}

/// One batch explained with targets picked from its logits: the logits, the targets and
/// the maps of the methods in order.
pub struct PickedBatch {
    pub logits: Tensor<2>,
    pub targets: Vec<usize>,
    pub maps: Vec<Tensor<4>>,
}

/// [`explain_batch_with`] for targets picked from the batch's logits (the predicted
/// class, say): `pick` gets the logits and returns the targets.
///
/// With Gradient or Input×Gradient among the methods, or only CAMs of one score, the
/// plain gradient pass's own forward half gives the logits: the batch takes one forward
/// pass, not two. When that pass serves every method, no convolution output is kept
/// beyond its use (a tenth of `leukex explain --method gradient`'s run on ResNet18 went
/// to the second forward pass and to the fresh memory of the kept outputs); otherwise the
/// outputs are kept for the other methods. Without such a pass a forward pass picks the
/// targets and keeps its convolution outputs for the methods
/// ([`crate::cam::forward_sharing`], [`explain_batch_sharing`]). Either way `pick` sees
/// the same logits, bit for bit, and the maps are the same.
pub fn explain_batch_picking(
    model: &Classifier,
    x: Tensor<4>,
    methods: &[Method],
    options: &ExplainOptions,
    pick: impl FnOnce(&Tensor<2>) -> Vec<usize>,
) -> Result<PickedBatch, CamError> {
    // A gradient pass picks the targets from its own logits: when it serves every
    // method, without keeping a convolution output beyond its use; otherwise keeping
    // them for the other methods.
    let single = GradientPass::serving_all(model, methods, options);
    let serves_all = single.is_some();
    if let Some(plan) =
        single.or_else(|| GradientPass::of_gradient_methods(model, methods, options))
    {
        let mut seen = None;
        let picker = |logits: &Tensor<2>| {
            seen = Some(logits.clone());
            pick(logits)
        };
        let mut values = match serves_all {
            true => LayerValues::weights_only(),
            false => LayerValues::default(),
        };
        let (pass, targets) = probed_pass_picking(
            model,
            x.clone(),
            Targets::Picked(Box::new(picker)),
            &plan.layers,
            plan.score,
            &mut values,
            plan.input_gradient,
        )?;
        let logits = seen.expect("picked after the forward pass");
        let maps = methods_after(model, x, &targets, methods, options, values, Some(pass))?;
        return Ok(PickedBatch {
            logits,
            targets,
            maps,
        });
    }
    // Otherwise a forward pass picks them and keeps its convolution outputs.
    let mut values = LayerValues::default();
    let logits = match shares_forward_values(methods) {
        true => forward_sharing(model, x.clone(), &mut values),
        false => model.forward(x.clone()),
    };
    let targets = pick(&logits);
    let maps = methods_after(model, x, &targets, methods, options, values, None)?;
    Ok(PickedBatch {
        logits,
        targets,
        maps,
    })
}

/// The plain gradient pass some methods share: the CAM layers it probes, the score it
/// differentiates, and whether it takes the input's gradient.
struct GradientPass {
    layers: Vec<String>,
    score: Score,
    input_gradient: bool,
}

impl GradientPass {
    /// The pass Gradient and Input×Gradient need, with the CAMs that differentiate the
    /// same score; none without those two methods.
    fn of_gradient_methods(
        model: &Classifier,
        methods: &[Method],
        options: &ExplainOptions,
    ) -> Option<Self> {
        let needs_gradient = methods
            .iter()
            .any(|m| matches!(m, Method::Gradient | Method::InputXGradient));
        let same_score = options.cam_style.score(options.score) == options.score;
        needs_gradient.then(|| Self {
            layers: cam_layers(model, methods, same_score),
            score: options.score,
            input_gradient: true,
        })
    }

    /// A pass that serves every one of `methods`, if there is one: only Gradient,
    /// Input×Gradient and CAMs, the CAMs differentiating the gradient's score.
    fn serving_all(
        model: &Classifier,
        methods: &[Method],
        options: &ExplainOptions,
    ) -> Option<Self> {
        let served = |m: &Method| {
            matches!(
                m,
                Method::Gradient | Method::InputXGradient | Method::Cam { .. }
            )
        };
        if methods.is_empty() || !methods.iter().all(served) {
            return None;
        }
        let cam_score = options.cam_style.score(options.score);
        let has_cams = methods.iter().any(|m| m.is_cam());
        match Self::of_gradient_methods(model, methods, options) {
            Some(pass) if has_cams && cam_score != pass.score => None,
            Some(pass) => Some(pass),
            None => Some(Self {
                layers: cam_layers(model, methods, true),
                score: cam_score,
                input_gradient: false,
            }),
        }
    }
}

/// The distinct layers of the CAMs among `methods` (none unless `included`).
fn cam_layers(model: &Classifier, methods: &[Method], included: bool) -> Vec<String> {
    let mut layers: Vec<String> = Vec::new();
    for m in methods.iter().filter(|_| included) {
        if let Method::Cam { layer, .. } = m {
            let layer = cam_layer(model, layer);
            if !layers.contains(&layer) {
                layers.push(layer);
            }
        }
    }
    layers
}

/// A CAM's layer: the given one, else the architecture's default.
fn cam_layer(model: &Classifier, layer: &Option<String>) -> String {
    layer
        .clone()
        .unwrap_or_else(|| default_layer(model.arch()).to_string())
}

/// Every method's map, those the gradient `pass` serves taken from it.
fn methods_after(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    methods: &[Method],
    options: &ExplainOptions,
    mut values: LayerValues,
    pass: Option<ProbedPass>,
) -> Result<Vec<Tensor<4>>, CamError> {
    let score = options.score;
    let cam_score = options.cam_style.score(score);
    let mut layers: HashMap<String, (Tensor<4>, Tensor<4>)> = HashMap::new();
    let mut grad = None;
    if let Some(pass) = pass {
        grad = pass.input_gradient;
        for (name, a, lg) in pass.layers {
            layers.insert(name, (a, lg));
        }
    }
    // LRP last: when no LRP method takes the values of the gradient passes' chain
    // (iNNvestigate's keeps BatchNorm apart), those are dropped before it, and its
    // own values reuse their memory instead of fresh pages.
    let is_lrp = |i: &usize| matches!(methods[*i], Method::Lrp { .. });
    let folded_lrp = methods
        .iter()
        .any(|m| matches!(m, Method::Lrp { composite, .. } if composite.innvestigate.is_none()));
    let (lrp, others): (Vec<usize>, Vec<usize>) = (0..methods.len()).partition(is_lrp);
    let mut out: Vec<Option<Tensor<4>>> = vec![None; methods.len()];
    let mut dropped = false;
    for i in others.into_iter().chain(lrp) {
        let m = &methods[i];
        if is_lrp(&i) && !folded_lrp && !dropped {
            values.clear();
            layers.clear();
            grad = None;
            dropped = true;
        }
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
                let layer = cam_layer(model, layer);
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
                let layer = cam_layer(model, layer);
                score_cam_for(model, x.clone(), targets, &layer, *batch, cam_score)?
            }
            Method::Lrp { composite, .. } => {
                let init = options.init_relevance;
                lrp_with_values(model, x.clone(), targets, composite, init, &mut values).0
            }
        };
        out[i] = Some(map);
    }
    Ok(out.into_iter().map(|m| m.expect("every method")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cam::CamKind;
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

    /// A batch of `shape` of the closed-form test input.
    fn input(shape: [usize; 4]) -> Tensor<4> {
        let values = TensorData::new(input_value(&shape), shape);
        Tensor::<4>::from_data(values, &Device::default())
    }

    fn rel_l2(a: Tensor<4>, b: Tensor<4>) -> f64 {
        let d = (a - b.clone()).powf_scalar(2.0).sum().into_scalar::<f64>();
        (d / b.powf_scalar(2.0).sum().into_scalar::<f64>()).sqrt()
    }

    #[test]
    fn the_gradient_pass_leaves_lrp_every_plain_convolution_output() {
        let m = resnet18();
        let x = input([1, 3, 64, 64]);
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

    fn bits(t: Tensor<4>) -> Vec<u32> {
        let v = t.into_data().try_into_vec::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
    }

    /// Targets that follow every bit of the logits (any class may come out; the
    /// predicted one is class 0 for every image of these weights).
    fn pick_by_bits(logits: &Tensor<2>) -> Vec<usize> {
        let [n, k] = logits.dims();
        let v = logits.clone().into_data().try_into_vec::<f32>().unwrap();
        (0..n)
            .map(|i| {
                let row = &v[i * k..(i + 1) * k];
                let h = row.iter().fold(0u64, |h, x| {
                    (h ^ u64::from(x.to_bits())).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                });
                (h >> 32) as usize % k
            })
            .collect()
    }

    /// The batch explained as before this function: a forward pass that picks the
    /// targets and keeps its convolution outputs, then the methods.
    fn two_passes(
        m: &Classifier,
        x: Tensor<4>,
        methods: &[Method],
        options: &ExplainOptions,
    ) -> PickedBatch {
        let mut values = LayerValues::default();
        let logits = forward_sharing(m, x.clone(), &mut values);
        let targets = pick_by_bits(&logits);
        let maps = explain_batch_sharing(m, x, &targets, methods, options, values).unwrap();
        PickedBatch {
            logits,
            targets,
            maps,
        }
    }

    #[test]
    fn picking_the_targets_in_the_gradient_pass_changes_no_bit() {
        let m = resnet18();
        let x = input([3, 3, 64, 64]);
        let cam = |kind, layer: Option<&str>| Method::Cam {
            kind,
            layer: layer.map(String::from),
        };
        let params = crate::method::MethodParams::default();
        let innvestigate = crate::method::MethodParams {
            innvestigate: true,
            ..params.clone()
        };
        let matlab = ExplainOptions {
            cam_style: CamStyle::Matlab,
            ..ExplainOptions::default()
        };
        let cases: Vec<(Vec<Method>, ExplainOptions, bool)> = vec![
            // one pass: the gradient family with CAMs of the same score
            (
                vec![
                    Method::Gradient,
                    Method::InputXGradient,
                    cam(CamKind::GradCam, None),
                    cam(CamKind::LayerCam, Some("layer3")),
                ],
                ExplainOptions::default(),
                true,
            ),
            // one pass: CAMs only, several layers
            (
                vec![
                    cam(CamKind::GradCam, Some("layer2")),
                    cam(CamKind::HiResCam, None),
                ],
                matlab,
                true,
            ),
            // one pass, run unfolded: a CAM before a BatchNorm
            (
                vec![
                    Method::Gradient,
                    cam(CamKind::GradCam, Some("layer2.0.conv1")),
                ],
                ExplainOptions::default(),
                true,
            ),
            // two passes: CAMs on the softmax, the gradient on the logit
            (
                vec![Method::Gradient, cam(CamKind::GradCam, None)],
                matlab,
                false,
            ),
            // the gradient pass picks, LRP takes its kept convolution outputs
            (
                vec![
                    Method::parse("lrp-epsilon-plus", &params).unwrap(),
                    Method::InputXGradient,
                    cam(CamKind::GradCam, None),
                ],
                ExplainOptions::default(),
                false,
            ),
            // iNNvestigate's LRP keeps BatchNorm apart: the gradient passes' values are
            // dropped before it
            (
                vec![
                    Method::parse("lrp-epsilon", &innvestigate).unwrap(),
                    Method::InputXGradient,
                    cam(CamKind::GradCam, None),
                ],
                matlab,
                false,
            ),
            // no gradient pass: a forward pass picks
            (
                vec![Method::parse("lrp-zplus", &params).unwrap()],
                ExplainOptions::default(),
                false,
            ),
        ];
        let mut classes = std::collections::BTreeSet::new();
        for (methods, options, single) in cases {
            let plan = GradientPass::serving_all(&m, &methods, &options);
            assert_eq!(plan.is_some(), single, "{methods:?}");
            let mut calls = 0;
            let pick = |logits: &Tensor<2>| {
                calls += 1;
                pick_by_bits(logits)
            };
            let one = explain_batch_picking(&m, x.clone(), &methods, &options, pick).unwrap();
            assert_eq!(calls, 1);
            let two = two_passes(&m, x.clone(), &methods, &options);
            let logit_bits = |t: Tensor<2>| bits(t.unsqueeze_dim(0));
            assert_eq!(
                logit_bits(one.logits),
                logit_bits(two.logits),
                "{methods:?}"
            );
            assert_eq!(one.targets, two.targets, "{methods:?}");
            classes.extend(one.targets.iter().copied());
            for (a, b) in one.maps.iter().zip(two.maps) {
                assert_eq!(bits(a.clone()), bits(b), "{methods:?}");
            }
            // Each LRP map is the method's own, explained alone: taking the gradient
            // pass's values, running last and dropping values change no bit.
            let lrp = |(m, _): &(&Method, Tensor<4>)| matches!(m, Method::Lrp { .. });
            for (method, a) in methods.iter().zip(one.maps).filter(lrp) {
                let alone = std::slice::from_ref(method);
                let own = explain_batch_with(&m, x.clone(), &one.targets, alone, &options);
                assert_eq!(bits(a), bits(own.unwrap().remove(0)), "{method:?}");
            }
        }
        // The images take different classes: a picker given other logits would show.
        assert!(classes.len() > 1, "{classes:?}");
    }
}
