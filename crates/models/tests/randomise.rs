//! Layer randomisation for MPRT against Quantus 0.6 and torch 2.15
//! (fixture: scripts/fixtures/gen_sanity.py -> tests/fixtures/sanity_layers.json):
//! Quantus's top-down and independent orders module by module, torch's reset_parameters
//! bounds per module, cascading vs independent steps, and the drawn values.

mod common;

use std::collections::{BTreeSet, HashMap};

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{
    Arch, Classifier, Granularity, LayerKind, LayerOrder, LayerVisitor, ModelConfig, StateDict,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = common::fixture_path("sanity_layers.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn lazy(arch: Arch) -> Classifier {
    Classifier::new(&ModelConfig::new(arch, 2), &Device::default())
}

fn resnet18() -> Classifier {
    let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &Device::default());
    let sd = closed_form_state_dict(&m, None);
    m.load_state_dict(&sd).unwrap();
    m.valid()
}

#[test]
fn top_down_and_independent_orders_equal_quantus_module_by_module() {
    let f = fixture();
    for arch in Arch::ALL {
        let q = &f["archs"][arch.as_str()];
        let m = lazy(arch);
        let ours = m.randomisable_layers();
        let names: Vec<String> = ours.iter().map(|l| l.name.clone()).collect();
        assert_eq!(names, strings(&q["top_down"]), "{arch}: top_down order");
        let independent: Vec<String> = m
            .randomisation_steps(LayerOrder::Independent, Granularity::Module)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            independent,
            strings(&q["independent"]),
            "{arch}: independent order"
        );

        // Per module: class, torch weight shape, bias, and reset_parameters' bound.
        let by_name: HashMap<&str, &Value> = q["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        let mut max_rel = 0.0f64;
        for l in &ours {
            let t = by_name[l.name.as_str()];
            let kind = match l.kind {
                LayerKind::Conv2d => "conv2d",
                LayerKind::BatchNorm2d => "batch_norm2d",
                LayerKind::Linear => "linear",
            };
            assert_eq!(kind, t["kind"].as_str().unwrap(), "{arch} {}", l.name);
            let shape: Vec<usize> = t["weight_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(l.weight_shape, shape, "{arch} {}", l.name);
            assert_eq!(l.bias, t["bias"].as_bool().unwrap(), "{arch} {}", l.name);
            match (l.reset_bound(), t["bound"].as_f64()) {
                (None, None) => {}
                (Some(a), Some(b)) => max_rel = max_rel.max((a - b).abs() / b),
                other => panic!("{arch} {}: bound {other:?}", l.name),
            }
        }
        eprintln!(
            "{arch}: {} modules equal to Quantus; reset bounds max rel diff {max_rel:e}",
            ours.len()
        );
        assert!(max_rel <= 1e-15, "{arch}: bound rel diff {max_rel:e}");
    }
}

#[test]
fn layer_groups_are_contiguous_blocks_of_the_module_order() {
    let expected: [(Arch, Vec<String>); 5] = [
        (
            Arch::ResNet18,
            ["fc", "layer4", "layer3", "layer2", "layer1", "stem"]
                .map(String::from)
                .to_vec(),
        ),
        (
            Arch::ResNet50,
            ["fc", "layer4", "layer3", "layer2", "layer1", "stem"]
                .map(String::from)
                .to_vec(),
        ),
        (
            Arch::Vgg19,
            ["classifier.6", "classifier.3", "classifier.0"]
                .into_iter()
                .map(String::from)
                .chain(
                    [34, 32, 30, 28, 25, 23, 21, 19, 16, 14, 12, 10, 7, 5, 2, 0]
                        .map(|k| format!("features.{k}")),
                )
                .collect(),
        ),
        (
            Arch::GoogLeNet,
            [
                "fc",
                "inception5b",
                "inception5a",
                "inception4e",
                "inception4d",
                "inception4c",
                "inception4b",
                "inception4a",
                "inception3b",
                "inception3a",
                "stem",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            Arch::EfficientNetLite0,
            ["_fc", "conv_head"]
                .into_iter()
                .map(String::from)
                .chain((0..16).rev().map(|i| format!("_blocks.{i}")))
                .chain(["stem".to_string()])
                .collect(),
        ),
    ];
    for (arch, names) in expected {
        let m = lazy(arch);
        let modules: Vec<String> = m
            .randomisable_layers()
            .into_iter()
            .map(|l| l.name)
            .collect();
        let groups = m.layer_groups(Granularity::Group);
        let got: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
        assert_eq!(got, names, "{arch}");
        let flat: Vec<String> = groups.iter().flat_map(|g| g.modules.clone()).collect();
        assert_eq!(
            flat, modules,
            "{arch}: groups must partition the top-down module list"
        );
        let per_module = m.layer_groups(Granularity::Module);
        assert_eq!(per_module.len(), modules.len());
        assert!(
            per_module
                .iter()
                .zip(&modules)
                .all(|(g, n)| g.modules == [n.clone()])
        );
    }
    let r = lazy(Arch::ResNet18).layer_groups(Granularity::Group);
    assert_eq!(r[5].modules, ["bn1", "conv1"]);
    let e = lazy(Arch::EfficientNetLite0).layer_groups(Granularity::Group);
    assert_eq!(e[1].modules, ["_bn1", "_conv_head"]);
    let g = lazy(Arch::GoogLeNet).layer_groups(Granularity::Group);
    assert_eq!(g.last().unwrap().modules.len(), 6);
}

#[test]
fn cascading_and_independent_steps_equal_quantus_generator() {
    let f = fixture();
    let m = lazy(Arch::ResNet18);
    for (order, key) in [
        (LayerOrder::TopDown, "top_down"),
        (LayerOrder::Independent, "independent"),
    ] {
        let steps = m.randomisation_steps(order, Granularity::Module);
        let q = f["cascade"][key].as_array().unwrap();
        assert_eq!(steps.len(), q.len());
        for (s, t) in steps.iter().zip(q) {
            let t = t.as_array().unwrap();
            assert_eq!(s.name, t[0].as_str().unwrap());
            let ours: BTreeSet<String> = s.modules.iter().cloned().collect();
            let theirs: BTreeSet<String> = strings(&t[1]).into_iter().collect();
            assert_eq!(ours, theirs, "{key} step {}", s.name);
        }
    }
    // Bottom-up: cumulative from the input side.
    let b = m.randomisation_steps(LayerOrder::BottomUp, Granularity::Group);
    assert_eq!(b[0].name, "stem");
    assert_eq!(b.last().unwrap().modules.len(), 41);
    let t = m.randomisation_steps(LayerOrder::TopDown, Granularity::Group);
    assert_eq!(t[1].name, "layer4");
    assert_eq!(t[1].modules.len(), 1 + 10); // fc + 5 convs and 5 BatchNorms
}

/// Parameters of one named module, torch layout (weight, bias).
struct Grab {
    name: String,
    found: Option<(Vec<f32>, Option<Vec<f32>>)>,
}

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

impl LayerVisitor for Grab {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        if name == self.name {
            self.found = Some((vals(m.weight.val()), m.bias.as_ref().map(|b| vals(b.val()))));
        }
    }
    fn bn(&mut self, _: &str, _: &mut BatchNorm) {}
    fn linear(&mut self, _: &str, _: &mut Linear) {}
}

fn grab(m: &mut Classifier, name: &str) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut g = Grab {
        name: name.into(),
        found: None,
    };
    m.visit_layers(&mut g);
    g.found.expect(name)
}

/// Values drawn from U(-bound, bound): inside it, with the uniform's mean and variance.
fn assert_uniform(what: &str, v: &[f32], bound: f64) {
    let n = v.len() as f64;
    let max = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let var_ratio = var / (bound * bound / 3.0);
    // Sample variance of a uniform: relative sd sqrt(0.8 / n); the mean: bound / sqrt(3n).
    let var_tol = 6.0 * (0.8 / n).sqrt();
    let mean_tol = 6.0 / (3.0 * n).sqrt();
    assert!(
        max <= bound * (1.0 + 1e-7),
        "{what}: max |w| {max} > bound {bound}"
    );
    assert!(
        max >= bound * (1.0 - 20.0 / n),
        "{what}: max |w| {max} far below {bound}"
    );
    assert!(
        (var_ratio - 1.0).abs() <= var_tol,
        "{what}: var / (b^2/3) = {var_ratio} (n = {n})"
    );
    assert!(
        (mean / bound).abs() <= mean_tol,
        "{what}: mean / b = {}",
        mean / bound
    );
}

fn torch_bound(f: &Value, case: &str) -> f64 {
    f["reset"][case]["bound"].as_f64().unwrap()
}

#[test]
fn reset_draws_torch_distributions_and_changes_only_the_named_modules() {
    let f = fixture();
    let m = resnet18();
    let before = m.to_state_dict(0);
    let mut r = m.clone();
    let names = ["fc", "layer4", "layer1.0.conv1", "conv1"];
    r.randomise(&names, 11).unwrap();
    let after = r.to_state_dict(0);
    let modules = m.resolve_layers(&names).unwrap();
    let layers: HashMap<String, _> = m
        .randomisable_layers()
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    let bn = &f["reset"]["batch_norm2d"];
    let mut checked = 0;
    for key in before.keys() {
        let (a, b) = (before.get(key).unwrap(), after.get(key).unwrap());
        let module = key.rsplit_once('.').unwrap().0;
        if !modules.contains(module) || key.ends_with("num_batches_tracked") {
            assert_eq!(a.data, b.data, "{key} must be unchanged");
            continue;
        }
        checked += 1;
        let layer = &layers[module];
        let suffix = key.rsplit_once('.').unwrap().1;
        match layer.kind {
            LayerKind::BatchNorm2d => {
                let want = bn[suffix][0].as_f64().unwrap() as f32;
                assert!(b.data.iter().all(|&v| v == want), "{key} reset to {want}");
            }
            _ => {
                assert_uniform(key, &b.data, layer.reset_bound().unwrap());
                let same = a.data.iter().zip(&b.data).filter(|(x, y)| x == y).count();
                assert!(
                    same * 1000 <= a.data.len(),
                    "{key}: {same} values unchanged"
                );
            }
        }
    }
    // fc weight and bias, layer4's 5 conv weights and 5 x 4 BatchNorm tensors, 2 convs.
    assert_eq!(checked, 2 + 5 + 5 * 4 + 2);
    // The shapes of torch's measured cases have the bounds torch uses.
    assert_eq!(
        layers["layer1.0.conv1"].reset_bound(),
        Some(torch_bound(&f, "conv2d_3x3_64_64"))
    );
    // torch's own draws are as tight as ours (fixture: max |w| / bound and variance ratio).
    for case in [
        "conv2d_3x3_64_64",
        "linear_512_1000",
        "conv2d_depthwise_3x3_96",
    ] {
        let c = &f["reset"][case];
        assert!(c["weight_max_abs_over_bound"].as_f64().unwrap() <= 1.0);
        assert!((c["weight_var_over_bound_sq_third"].as_f64().unwrap() - 1.0).abs() < 0.05);
    }
    // BatchNorm also resets the running statistics and torch keeps the module's mode.
    assert_eq!(bn["running_mean"][0].as_f64(), Some(0.0));
    assert_eq!(bn["running_var"][0].as_f64(), Some(1.0));
    assert_eq!(bn["eval_mode_kept"].as_bool(), Some(true));
}

#[test]
fn depthwise_and_biased_convolutions_use_their_own_fan_in() {
    let f = fixture();
    let mut e = lazy(Arch::EfficientNetLite0);
    e.randomise(&["_blocks.1._depthwise_conv"], 3).unwrap();
    let (w, b) = grab(&mut e, "_blocks.1._depthwise_conv");
    assert!(b.is_none());
    let bound = torch_bound(&f, "conv2d_depthwise_3x3_96");
    assert_eq!(w.len(), 96 * 9);
    assert_uniform("depthwise", &w, bound);

    let mut v = lazy(Arch::Vgg19);
    v.randomise(&["features.0"], 3).unwrap();
    let (w, b) = grab(&mut v, "features.0");
    let bound = 1.0 / 27f64.sqrt();
    assert_uniform("features.0.weight", &w, bound);
    assert_uniform("features.0.bias", &b.unwrap(), bound);
}

#[test]
fn same_seed_same_weights_clones_untouched_and_cascades_compose() {
    let m = resnet18();
    let before = m.to_state_dict(0);
    let sd = |names: &[&str], seed: u64| -> StateDict {
        let mut c = m.clone();
        c.randomise(names, seed).unwrap();
        c.to_state_dict(0)
    };
    let a = sd(&["layer4"], 5);
    let b = sd(&["layer4"], 5);
    let c = sd(&["layer4"], 6);
    for k in a.keys() {
        assert_eq!(a.get(k).unwrap().data, b.get(k).unwrap().data, "{k}");
    }
    let w = "layer4.0.conv1.weight";
    assert_ne!(a.get(w).unwrap().data, c.get(w).unwrap().data);
    // The original (sharing tensors and BatchNorm running states with its clones) is
    // unchanged, running statistics included.
    let now = m.to_state_dict(0);
    for k in before.keys() {
        assert_eq!(before.get(k).unwrap().data, now.get(k).unwrap().data, "{k}");
    }
    // Step by step equals all at once (a cascade can randomise one more unit per step).
    let mut step = m.clone();
    step.randomise(&["fc"], 9).unwrap();
    step.randomise(&["layer4"], 9).unwrap();
    let once = sd(&["fc", "layer4"], 9);
    let step = step.to_state_dict(0);
    for k in once.keys() {
        assert_eq!(once.get(k).unwrap().data, step.get(k).unwrap().data, "{k}");
    }
    // Same-shape modules get different values (unlike Quantus's re-seeding, fixture).
    let f = fixture();
    assert_eq!(
        f["quantus_seeding"]["layer4.1.conv1_equals_layer4.1.conv2_after_reset"].as_bool(),
        Some(true)
    );
    assert_ne!(
        a.get("layer4.1.conv1.weight").unwrap().data,
        a.get("layer4.1.conv2.weight").unwrap().data
    );
    // Nothing to randomise: the model is unchanged.
    let none = sd(&[], 1);
    for k in before.keys() {
        assert_eq!(
            before.get(k).unwrap().data,
            none.get(k).unwrap().data,
            "{k}"
        );
    }
}

#[test]
fn unknown_names_are_an_error_and_change_nothing() {
    let m = resnet18();
    let before = m.to_state_dict(0);
    let mut r = m.clone();
    let err = r.randomise(&["fc", "layer5", "relu"], 1).unwrap_err();
    assert_eq!(err.names, ["layer5", "relu"]);
    let msg = err.to_string();
    assert!(msg.contains("\"layer5\"") && msg.contains("layer4") && msg.contains("stem"));
    let now = r.to_state_dict(0);
    for k in before.keys() {
        assert_eq!(before.get(k).unwrap().data, now.get(k).unwrap().data, "{k}");
    }
}

#[test]
fn randomised_model_stays_in_inference_mode_and_keeps_its_dtype() {
    let dev = Device::default();
    let shape = [3, 3, 32, 32];
    let x = Tensor::<4>::from_data(TensorData::new(input_value(&shape), shape), &dev);
    let mut m = resnet18();
    m.randomise(&["layer4", "fc", "stem"], 2).unwrap();
    // Inference mode: BatchNorm uses the (reset) running statistics even for an autodiff
    // input, so each image's logits do not depend on the rest of the batch.
    let all = vals(m.forward(x.clone().autodiff().require_grad()).inner());
    let one = vals(
        m.forward(x.clone().narrow(0, 0, 1).autodiff().require_grad())
            .inner(),
    );
    for (a, b) in one.iter().zip(&all[..2]) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
    }
    // A model cast to f64 stays f64 after randomisation.
    let mut m64 = resnet18().cast_float(FloatDType::F64);
    m64.randomise(&["layer4", "fc"], 2).unwrap();
    let y = m64.forward(x.cast(FloatDType::F64));
    let v = y.into_data().try_into_vec::<f64>().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
}
