//! Identities every correct implementation must satisfy, on every architecture, with
//! closed-form weights (no reference library needed):
//!
//! * LRP-0 with BatchNorm folded equals Input×Gradient on ReLU networks (Kindermans et
//!   al. 2016; iNNvestigate issue #126): the proportional split of sums and average pools
//!   and the pass-through of ReLU are exactly what the gradient does there.
//! * LRP passes through the network without changing its forward values (the logits).
//! * Rules that differ give maps that differ (a method wired to another's code fails).
//! * Deep Taylor is z⁺ with the bias dropped: the same map as lrp-zplus without biases,
//!   a different one with them.

use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_explain::composite::Composite;
use leukex_explain::gradient::input_x_gradient;
use leukex_explain::lrp::lrp_with_logits;
use leukex_explain::rules::Rule;
use leukex_explain::target::InitRelevance;
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig};

fn model(arch: Arch) -> Classifier {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(arch, 3), &dev);
    let sd = closed_form_state_dict(&m, None);
    m.load_state_dict(&sd).unwrap();
    m.valid().cast_float(FloatDType::F64)
}

fn input(shape: [usize; 4]) -> Tensor<4> {
    let dev = Device::default();
    Tensor::<4>::from_data(TensorData::new(input_value(&shape), shape), &dev).cast(FloatDType::F64)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().try_into_vec::<f64>().unwrap()
}

fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn lrp_zero_equals_input_times_gradient_on_relu_networks() {
    for arch in [Arch::ResNet18, Arch::Vgg19, Arch::GoogLeNet] {
        let m = model(arch);
        let x = input([2, 3, 64, 64]);
        let targets = [1, 2];
        let composite = Composite::uniform(Rule::Epsilon { epsilon: 0.0 });
        let (r, logits) =
            lrp_with_logits(&m, x.clone(), &targets, &composite, InitRelevance::OneHot);
        let ixg = values(input_x_gradient(&m, x.clone(), &targets));
        // LRP starts from relevance 1 at the target (Zennit's one-hot `attr_output`);
        // Input×Gradient is that map times the target logit.
        let lg = logits.clone().into_data().try_into_vec::<f64>().unwrap();
        let per = ixg.len() / targets.len();
        let r: Vec<f64> = values(r)
            .iter()
            .enumerate()
            .map(|(i, v)| v * lg[(i / per) * 3 + targets[i / per]])
            .collect();
        let d = rel_l2(&r, &ixg);
        // Not bit-equal: Zennit's Norm rule on sums and average pools stabilises its
        // denominator with 1e-6, a relative change of about 1e-6 per residual sum.
        eprintln!("{arch}: LRP-0 vs input x gradient rel L2 {d:e}");
        assert!(d < 1e-3, "{arch}: LRP-0 vs input x gradient rel L2 {d:e}");
        assert!(ixg.iter().any(|v| v.abs() > 1e-6), "{arch}: zero map");
        // The forward values are untouched by the LRP operations.
        let plain = m.forward(x).into_data().try_into_vec::<f64>().unwrap();
        let lrp_logits = logits.into_data().try_into_vec::<f64>().unwrap();
        for (a, b) in plain.iter().zip(&lrp_logits) {
            assert!(
                (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                "{arch}: logits {a} vs {b}"
            );
        }
    }
}

#[test]
fn rules_that_differ_give_different_maps() {
    // A method wired to another's code would make two of these equal.
    let m = model(Arch::ResNet18);
    let x = input([1, 3, 64, 64]);
    let rules = [
        Rule::Epsilon { epsilon: 1e-6 },
        Rule::ZPlus,
        Rule::AlphaBeta {
            alpha: 2.0,
            beta: 1.0,
        },
        Rule::Gamma { gamma: 0.25 },
        Rule::Flat,
    ];
    let maps: Vec<Vec<f64>> = rules
        .iter()
        .map(|r| {
            values(leukex_explain::lrp::lrp(
                &m,
                x.clone(),
                &[1],
                &Composite::uniform(r.clone()),
            ))
        })
        .collect();
    for i in 0..maps.len() {
        assert!(
            maps[i].iter().all(|v| v.is_finite()),
            "{:?} not finite",
            rules[i]
        );
        for j in i + 1..maps.len() {
            let d = rel_l2(&maps[i], &maps[j]);
            assert!(d > 0.1, "{:?} vs {:?}: rel L2 {d}", rules[i], rules[j]);
        }
    }
}

#[test]
fn scores_and_starting_relevance_follow_their_definitions() {
    use leukex_explain::gradient::gradient_with_logits;
    use leukex_explain::target::Score;
    let m = model(Arch::ResNet18);
    let x = input([1, 3, 64, 64]);
    let grad_of = |k: usize, s: Score| {
        let (g, l) = gradient_with_logits(&m, x.clone(), &[k], s);
        (values(g), l.into_data().try_into_vec::<f64>().unwrap())
    };
    let (g0, logits) = grad_of(0, Score::Logit);
    let (g1, _) = grad_of(1, Score::Logit);
    let (g2, _) = grad_of(2, Score::Logit);
    let g = [g0, g1, g2];
    // softmax: d p_t / dx = p_t (g_t − Σ_j p_j g_j)
    let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
    let p: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
    let t = 1;
    let want: Vec<f64> = (0..g[0].len())
        .map(|i| p[t] * (g[t][i] - (0..3).map(|j| p[j] * g[j][i]).sum::<f64>()))
        .collect();
    let (got, _) = grad_of(t, Score::Softmax);
    assert!(rel_l2(&got, &want) < 1e-9, "softmax score gradient");
    // logit-diff: g_t − g_k with k the largest other logit
    let other = (0..3)
        .filter(|&j| j != t)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    let want: Vec<f64> = (0..g[0].len()).map(|i| g[t][i] - g[other][i]).collect();
    let (got, _) = grad_of(t, Score::LogitDiff);
    assert!(rel_l2(&got, &want) < 1e-9, "logit-diff score gradient");

    // iNNvestigate's start (the logit itself) scales the one-hot map by the logit.
    let c = Composite::epsilon_plus_flat(1e-6);
    let (a, _) = lrp_with_logits(&m, x.clone(), &[t], &c, InitRelevance::OneHot);
    let (b, _) = lrp_with_logits(&m, x.clone(), &[t], &c, InitRelevance::Score);
    let scaled: Vec<f64> = values(a).iter().map(|v| v * logits[t]).collect();
    assert!(
        rel_l2(&values(b), &scaled) < 1e-12,
        "score start = logit x one-hot start"
    );
}

/// `model(arch)` with every bias, BatchNorm shift and running mean set to 0: nothing can
/// absorb relevance.
fn bias_free_model(arch: Arch) -> Classifier {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(arch, 3), &dev);
    let mut sd = closed_form_state_dict(&m, None);
    let keys: Vec<(String, Vec<usize>)> = m.state_dict_keys();
    for (k, shape) in keys {
        if k.ends_with(".bias") || k.ends_with(".running_mean") {
            sd.insert(k, shape.clone(), vec![0.0; shape.iter().product()]);
        }
    }
    m.load_state_dict(&sd).unwrap();
    m.valid().cast_float(FloatDType::F64)
}

#[test]
fn lrp_zero_conserves_relevance_without_biases() {
    // With no bias anywhere, LRP-0 (ε = 1e-9) passes on exactly what each layer receives (up to the
    // 1e-6 stabilisers of the proportional split at sums and average pools): the input
    // relevance equals the one-hot start on every architecture, and on VGG19 (no
    // branches) every layer's incoming relevance does too. A lost or doubled branch
    // (residual sum, inception concatenation, MBConv skip) shows up as a sum away from 1.
    use leukex_explain::lrp::lrp_with_conservation;
    for arch in Arch::ALL {
        let m = bias_free_model(arch);
        let x = input([2, 3, 64, 64]);
        // ε = 1e-9 rather than 0: without biases a depthwise window of dead units has
        // z = 0 exactly, and 0/0 would be NaN.
        let composite = Composite::uniform(Rule::Epsilon { epsilon: 1e-9 });
        let (r, c) = lrp_with_conservation(&m, x, &[1, 2], &composite, InitRelevance::OneHot);
        assert_eq!(c.output, vec![1.0, 1.0]);
        let n_linear = m
            .state_dict_keys()
            .iter()
            .filter(|(k, s)| k.ends_with(".weight") && s.len() >= 2)
            .count();
        assert_eq!(
            c.layers.len(),
            n_linear,
            "{arch}: one probe per conv/dense layer"
        );
        for s in &c.input {
            assert!((s - 1.0).abs() < 1e-4, "{arch}: input relevance sum {s}");
        }
        if arch == Arch::Vgg19 {
            for (name, sums) in &c.layers {
                for s in sums {
                    assert!((s - 1.0).abs() < 1e-4, "{arch} {name}: relevance sum {s}");
                }
            }
        }
        let total: f64 = values(r).iter().sum();
        assert!(
            (total - 2.0).abs() < 2e-4,
            "{arch}: input relevance {total}"
        );
    }
}

#[test]
fn deep_taylor_is_zplus_with_the_bias_dropped() {
    // Deep Taylor's z⁺ (iNNvestigate's Alpha1Beta0IgnoreBias) differs from Zennit's ZPlus
    // (lrp-zplus) only in the bias, which ZPlus keeps on its positive term. With every
    // bias (and BatchNorm shift) zero the two are the same map; with the closed-form
    // biases they are not, so the bias is really dropped.
    use leukex_explain::method::{Method, MethodParams};
    let composite = |name: &str| match Method::parse(name, &MethodParams::default()).unwrap() {
        Method::Lrp { composite, .. } => composite,
        _ => unreachable!("{name} is an LRP method"),
    };
    let (deep_taylor, zplus) = (composite("deep-taylor"), composite("lrp-zplus"));
    for arch in [Arch::ResNet18, Arch::Vgg19] {
        let x = input([1, 3, 32, 32]);
        let map =
            |m: &Classifier, c: &Composite| values(leukex_explain::lrp::lrp(m, x.clone(), &[1], c));
        let m = model(arch);
        let (dt, zp) = (map(&m, &deep_taylor), map(&m, &zplus));
        assert!(
            dt.iter().all(|v| v.is_finite()),
            "{arch}: deep-taylor not finite"
        );
        let with_bias = rel_l2(&dt, &zp);
        let m = bias_free_model(arch);
        let without_bias = rel_l2(&map(&m, &deep_taylor), &map(&m, &zplus));
        eprintln!(
            "{arch}: deep-taylor vs lrp-zplus rel L2 {with_bias:e} (biases), {without_bias:e} (no biases)"
        );
        // Far above float64 rounding (the bias-free maps are bit-equal): 1.6e-2 (ResNet18)
        // and 5.8e-2 (VGG19) here.
        assert!(with_bias > 1e-3, "{arch}: rel L2 {with_bias:e} with biases");
        assert!(
            without_bias < 1e-12,
            "{arch}: rel L2 {without_bias:e} without biases"
        );
    }
}

#[test]
fn shared_passes_give_the_maps_of_separate_runs() {
    // explain_batch serves Gradient, Input×Gradient and the CAMs on two layers from one
    // backward pass when they differentiate the same score, and the LRP composites share
    // their convolutions' forward values: each map must be the one its method gives
    // alone, bit for bit (float64, ResNet18).
    use leukex_explain::method::{Method, MethodParams};
    use leukex_explain::run::{ExplainOptions, explain_batch_with};
    use leukex_explain::target::Score;
    let m = model(Arch::ResNet18);
    let x = input([2, 3, 64, 64]);
    let targets = [1, 2];
    let p = MethodParams::default();
    let mut methods: Vec<Method> = [
        "gradient",
        "input-x-gradient",
        "grad-cam",
        "layer-cam",
        "lrp-epsilon",
        "lrp-epsilon-plus",
        "deep-taylor",
        "lrp-alpha2-beta1",
    ]
    .iter()
    .map(|n| Method::parse(n, &p).unwrap())
    .collect();
    let layer3 = MethodParams {
        layer: Some("layer3".into()),
        ..Default::default()
    };
    methods.push(Method::parse("grad-cam++", &layer3).unwrap());
    for score in [Score::Logit, Score::Softmax] {
        let options = ExplainOptions {
            score,
            ..Default::default()
        };
        let together = explain_batch_with(&m, x.clone(), &targets, &methods, &options).unwrap();
        for (method, map) in methods.iter().zip(together) {
            let alone = explain_batch_with(
                &m,
                x.clone(),
                &targets,
                std::slice::from_ref(method),
                &options,
            )
            .unwrap()
            .remove(0);
            let (a, b) = (values(map), values(alone));
            assert!(a.iter().any(|v| *v != 0.0), "{method:?}: zero map");
            assert_eq!(a, b, "{method:?} with {score:?}");
        }
    }
}

#[test]
fn the_forward_pass_that_picks_the_targets_serves_every_later_pass() {
    // `leukex explain` first runs the network to pick each image's target class. With
    // `forward_sharing` that pass keeps every convolution's output, and the methods' passes
    // take them: the maps must be bit for bit those of a run without it, and the pass's
    // logits the network's up to rounding (float64, ResNet18).
    use leukex_explain::cam::forward_sharing;
    use leukex_explain::lrp::LayerValues;
    use leukex_explain::method::{Method, MethodParams};
    use leukex_explain::run::{ExplainOptions, explain_batch_sharing, explain_batch_with};
    let m = model(Arch::ResNet18);
    let x = input([2, 3, 64, 64]);
    let convs = 1 + 8 * 2 + 3;
    let mut shared = LayerValues::default();
    let logits = forward_sharing(&m, x.clone(), &mut shared);
    assert_eq!(shared.len(), convs, "one kept output per convolution");
    let (a, b) = (values(logits), values(m.forward(x.clone())));
    let scale = b.iter().fold(0f64, |s, v| s.max(v.abs()));
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() <= 1e-12 * scale, "logit {u} vs {v}");
    }
    let p = MethodParams::default();
    let methods: Vec<Method> = [
        "input-x-gradient",
        "grad-cam",
        "lrp-epsilon",
        "lrp-epsilon-plus",
    ]
    .iter()
    .map(|n| Method::parse(n, &p).unwrap())
    .collect();
    let targets = [1, 0];
    let options = ExplainOptions::default();
    let alone = explain_batch_with(&m, x.clone(), &targets, &methods, &options).unwrap();
    let with_shared = explain_batch_sharing(&m, x, &targets, &methods, &options, shared).unwrap();
    for ((method, a), b) in methods.iter().zip(alone).zip(with_shared) {
        assert_eq!(values(a), values(b), "{method:?}");
    }
}

#[test]
fn lrp_composites_compute_shared_convolution_terms_once() {
    // ε needs each convolution's plain output z; EpsilonPlus needs z (its output mask)
    // and z⁺ (on the first layer, whose input has both signs, also the negative-part
    // term): after ε, EpsilonPlus adds only its own terms.
    use leukex_explain::lrp::{LayerValues, lrp_with_values};
    let m = model(Arch::ResNet18);
    let x = input([1, 3, 64, 64]);
    let convs = 1 + 8 * 2 + 3;
    let mut values = LayerValues::default();
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
    let plus = Composite::epsilon_plus(1e-6);
    lrp_with_values(
        &m,
        x.clone(),
        &[1],
        &plus,
        InitRelevance::OneHot,
        &mut values,
    );
    assert_eq!(values.len(), convs + convs + 1);
    // A second run of a composite adds nothing.
    lrp_with_values(&m, x, &[1], &plus, InitRelevance::OneHot, &mut values);
    assert_eq!(values.len(), 2 * convs + 1);
}
