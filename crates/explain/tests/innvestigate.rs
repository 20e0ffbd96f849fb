//! Deep Taylor and LRP equal to iNNvestigate 2.1.2 itself, with `--innvestigate-compat`
//! ([`Composite::innvestigate`]).
//!
//! Fixture: `crates/explain/tests/fixtures/innvestigate_vgg19.safetensors`, written by
//! `scripts/fixtures/gen_innvestigate.py` (pinned venv: `make_innvestigate_env.sh`):
//! torchvision's VGG-19 rebuilt in Keras (ReLUs fused into the layers, as `keras.applications` does) with the
//! closed-form weights of `leukex_models::closed_form`, its logits checked against
//! torchvision's; input `input_value([1, 3, 224, 224])` (so the 7×7 adaptive pool is the
//! identity), targets from the fixture, iNNvestigate's analyzers with
//! `neuron_selection_mode="index"` run in float64, maps summed over the colour channels.
//! iNNvestigate starts from the target's logit: leukex runs with `InitRelevance::Score`.
//!
//! Tolerances (the issue): relative L2 ≤ 5e-3 and Pearson ≥ 0.999 against the reference of
//! the same method, relative L2 of the relevance sums ≤ 5e-3, and relative L2 > 0.1 against
//! every other method's reference, so that a method wired to another's rules fails — except
//! the two pairs of [`CLOSE_PAIRS`], which these weights do not separate that far (held
//! above their own floors instead). leukex runs in float64. VGG-19 at 224 px in float64 is
//! slow on two cores (several minutes for the nine methods).
//!
//! Measured (float64 leukex against the float32-stored references): every method with the
//! compatibility mode at relative L2 ≈ 2.5e-8 (the storage rounding), Pearson 1.0000000. The
//! default (Zennit-equal) methods against the same references (`--ignored` test below):
//! deep-taylor 1.6e-6 and deep-taylor-bounded 1.3e-6 (only the stabiliser differs on VGG-19:
//! no sum, pool or BatchNorm), lrp-epsilon 2.0e-3 (ε 1e-6 instead of 1e-7), the αβ rules and
//! presets 1.0e-2…2.6e-2 (Zennit's `b⁺`/`b⁻` split of the bias against iNNvestigate's whole
//! bias in both terms): above the 5e-3 limit, which is why the mode exists.
//!
//! Second fixture, `innvestigate_small.safetensors` (`scripts/fixtures/gen_innvestigate_small.py`):
//! a small sequential CNN and a small residual CNN without and with BatchNorm, at 32 px,
//! rebuilt here in [`small_nets`] with the same closed-form weights. Same tolerances, and
//! every pair of methods > 0.1 apart with no exception. Measured: 25 maps at relative L2
//! 2.0e-8…3.8e-8. Together with VGG-19 this is the issue's "small sequential CNN and a
//! VGG-style net", plus the residual sums, pools and BatchNorm of the compatibility mode.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_explain::composite::Composite;
use leukex_explain::lrp::lrp_with_logits;
use leukex_explain::method::{Method, MethodParams};
use leukex_explain::target::InitRelevance;
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig, Network, Ops, StateDict, cast_float};

mod small_nets;

const SHAPE: [usize; 4] = [1, 3, 224, 224];

/// Pairs of references these closed-form weights do not separate by 0.1 (measured 0.0060
/// and 0.043, see `gen_innvestigate.py`'s `CLOSE_PAIRS`): z⁺ without bias against α1β0 with
/// the whole bias (VGG-19's biases `u/10` are small against `W⁺x⁺`), and the two flat presets
/// (the flat first layer hides most of the α1β0 / α2β1 difference above it). Both still lie
/// above the 5e-3 a method must reach against its own reference, so a method wired to the
/// other's rules fails there.
const CLOSE_PAIRS: [(&str, &str, f64); 2] = [
    ("deep-taylor", "lrp-alpha1-beta0", 5e-3),
    ("lrp-preset-a-flat", "lrp-preset-b-flat", 0.03),
];

fn floor(a: &str, b: &str) -> f64 {
    CLOSE_PAIRS
        .iter()
        .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
        .map_or(0.1, |p| p.2)
}

/// Fixture key → the leukex method computing it. The `-flat` presets have no method name of
/// their own (`--composite first=flat,conv=alpha1-beta0,dense=epsilon:0.1` on the command
/// line): they are built from [`Composite::sequential_preset`].
const KEYS: [&str; 9] = [
    "deep-taylor",
    "deep-taylor-bounded",
    "lrp-epsilon",
    "lrp-alpha2-beta1",
    "lrp-alpha1-beta0",
    "lrp-preset-a",
    "lrp-preset-b",
    "lrp-preset-a-flat",
    "lrp-preset-b-flat",
];

struct Fixture {
    tensors: StateDict,
    meta: HashMap<String, String>,
}

fn fixture(file: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let tensors = StateDict::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let bytes = std::fs::read(&path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = md.metadata().clone().unwrap_or_default();
    assert_eq!(meta.get("floatx").map(String::as_str), Some("float64"));
    Fixture { tensors, meta }
}

fn vgg19_fixture() -> Fixture {
    let f = fixture("innvestigate_vgg19.safetensors");
    assert_eq!(f.meta.get("arch").map(String::as_str), Some("vgg19"));
    assert_eq!(
        f.meta.get("input_shape").map(String::as_str),
        Some("[1, 3, 224, 224]")
    );
    f
}

impl Fixture {
    fn get(&self, key: &str) -> Vec<f64> {
        let t = self
            .tensors
            .get(key)
            .unwrap_or_else(|| panic!("fixture lacks {key}"));
        t.data.iter().map(|&v| v as f64).collect()
    }

    fn has(&self, key: &str) -> bool {
        self.tensors.get(key).is_some()
    }

    fn targets(&self, key: &str) -> Vec<usize> {
        serde_json::from_str(&self.meta[key]).unwrap()
    }

    fn scale(&self, key: &str) -> f32 {
        self.meta[key].parse().unwrap()
    }

    fn bounds(&self) -> (Vec<f64>, Vec<f64>) {
        let b: serde_json::Value = serde_json::from_str(&self.meta["bounds"]).unwrap();
        let v = |k: &str| -> Vec<f64> {
            b[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        (v("low"), v("high"))
    }
}

/// The closed-form VGG-19 with the convolutions' biases times the fixture's `bias_scale`
/// (a power of two: exact in float32).
fn model(f: &Fixture) -> Classifier {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(Arch::Vgg19, 3), &dev);
    let mut sd = closed_form_state_dict(&m, None);
    let scale = f.scale("bias_scale");
    let biases: Vec<String> = sd
        .keys()
        .filter(|k| k.starts_with("features.") && k.ends_with(".bias"))
        .map(String::from)
        .collect();
    for key in biases {
        let t = sd.get(&key).unwrap().clone();
        let data = t.data.iter().map(|v| v * scale).collect();
        sd.insert(key, t.shape, data);
    }
    m.load_state_dict(&sd).unwrap();
    m.valid().cast_float(FloatDType::F64)
}

/// The closed-form input times the fixture's `input_scale` (exact: a power of two).
fn input(f: &Fixture) -> Tensor<4> {
    let scale = f.scale("input_scale");
    let data: Vec<f32> = input_value(&SHAPE).iter().map(|v| v * scale).collect();
    Tensor::<4>::from_data(TensorData::new(data, SHAPE), &Device::default()).cast(FloatDType::F64)
}

fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.cast(FloatDType::F64)
        .into_data()
        .try_into_vec::<f64>()
        .unwrap()
}

/// The leukex method for fixture key `key`, with or without iNNvestigate compatibility.
fn method(key: &str, bounds: &(Vec<f64>, Vec<f64>), compat: bool) -> Method {
    let p = MethodParams {
        bounds: Some(bounds.clone()),
        innvestigate: compat,
        ..Default::default()
    };
    let m = match key {
        "lrp-preset-a-flat" | "lrp-preset-b-flat" => Method::Lrp {
            name: key.to_string(),
            composite: Composite::sequential_preset(
                if key.contains("-a-") { 1.0 } else { 2.0 },
                true,
            ),
        },
        _ => return Method::parse(key, &p).unwrap(),
    };
    if compat { m.innvestigate_compat() } else { m }
}

fn rel_l2(got: &[f64], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    assert!(den > 0.0, "a zero reference cannot fail a test");
    (num / den).sqrt()
}

fn pearson(got: &[f64], want: &[f64]) -> f64 {
    let n = got.len() as f64;
    let (mg, mw) = (got.iter().sum::<f64>() / n, want.iter().sum::<f64>() / n);
    let cov: f64 = got.iter().zip(want).map(|(a, b)| (a - mg) * (b - mw)).sum();
    let vg: f64 = got.iter().map(|a| (a - mg).powi(2)).sum();
    let vw: f64 = want.iter().map(|b| (b - mw).powi(2)).sum();
    cov / (vg * vw).sqrt()
}

/// Channel-summed `[N, H, W]` map and per-image sums of `method`.
fn run(
    m: &(impl Network + ?Sized),
    x: &Tensor<4>,
    targets: &[usize],
    method: &Method,
) -> (Vec<f64>, Vec<f64>) {
    let Method::Lrp { composite, .. } = method else {
        unreachable!()
    };
    let (r, _) = lrp_with_logits(m, x.clone(), targets, composite, InitRelevance::Score);
    let map = to_f64(r.sum_dim(1));
    assert!(map.iter().all(|v| v.is_finite()), "non-finite map");
    let per = map.len() / targets.len();
    let sums = map.chunks(per).map(|c| c.iter().sum()).collect();
    (map, sums)
}

/// Compares leukex's compatibility mode on `net` with the fixture's maps under
/// `prefix` (`""` or `"seq/"`, ...): logits, then per method of `keys` the map (relative L2
/// ≤ 5e-3, Pearson ≥ 0.999), its per-image sums, and its distance to every other method's
/// reference (> `floor`). Returns the failures.
fn compare_with_fixture(
    net: &(impl Network + ?Sized),
    x: &Tensor<4>,
    f: &Fixture,
    prefix: &str,
    keys: &[&str],
    floor: impl Fn(&str, &str) -> f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    // The network is the fixture's (logits of the Keras model).
    let logits = to_f64(net.forward_ops(x.clone(), &mut PlainOps));
    let want = f.get(&format!("{prefix}logits"));
    let worst = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-5,
        "{prefix}logits differ from Keras' by {worst:e}"
    );
    let targets = f.targets(&format!("{prefix}targets"));
    let bounds = f.bounds();
    let refs: Vec<Vec<f64>> = keys
        .iter()
        .map(|k| f.get(&format!("{prefix}{k}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let meth = method(key, &bounds, true);
        assert!(meth.id(&MethodParams::default()).ends_with("_innvestigate"));
        let (got, sums) = run(net, x, &targets, &meth);
        let (rel, r) = (rel_l2(&got, &refs[i]), pearson(&got, &refs[i]));
        let want_sums = f.get(&format!("{prefix}{key}.sum"));
        eprintln!(
            "{prefix}{key:<22} compat: rel L2 {rel:.2e}  Pearson {r:.7}  sums {sums:?} vs {want_sums:?}"
        );
        if rel > 5e-3 || r < 0.999 {
            failures.push(format!(
                "{prefix}{key}: rel L2 {rel:.3e} (max 5e-3), Pearson {r:.6} (min 0.999)"
            ));
        }
        for (s, w) in sums.iter().zip(&want_sums) {
            if (s - w).abs() > 5e-3 * w.abs().max(1e-3) {
                failures.push(format!(
                    "{prefix}{key}: relevance sum {s} vs iNNvestigate {w}"
                ));
            }
        }
        // Not mistakable for any other method.
        for (j, other) in keys.iter().enumerate() {
            if j != i {
                let d = rel_l2(&got, &refs[j]);
                if d <= floor(key, other) {
                    failures.push(format!(
                        "{prefix}{key} is {d:.4} (rel L2) from {other}'s reference"
                    ));
                }
            }
        }
    }
    failures
}

/// The plain forward pass of a [`Network`].
struct PlainOps;
impl Ops for PlainOps {}

#[test]
fn vgg19_equals_innvestigate_with_compat() {
    let f = vgg19_fixture();
    let (m, x) = (model(&f), input(&f));
    let failures = compare_with_fixture(&m, &x, &f, "", &KEYS, floor);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A small sequential CNN (conv, max pool, flatten, dense: `seq`) and a small residual CNN
/// without and with BatchNorm (`res`, `res-bn`: residual sums, a strided downsample, global
/// average pooling, BatchNorm as a layer of its own), built in Keras and here with the same
/// weights (`scripts/fixtures/gen_innvestigate_small.py`). Every pair of methods is > 0.1
/// apart on each net. `res-bn` has no Deep Taylor references: iNNvestigate 2.1.2's
/// `DeepTaylor` fails on a network with BatchNormalization (the generator asserts that it
/// still does).
#[test]
fn small_networks_equal_innvestigate_with_compat() {
    let f = fixture("innvestigate_small.safetensors");
    let nets: Vec<String> = serde_json::from_str(&f.meta["nets"]).unwrap();
    assert_eq!(nets, ["seq", "res", "res-bn"]);
    let shape: [usize; 4] = serde_json::from_str(&f.meta["input_shape"]).unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(input_value(&shape), shape),
        &Device::default(),
    )
    .cast(FloatDType::F64);
    let classes: usize = f.meta["num_classes"].parse().unwrap();
    let mut failures = Vec::new();
    for name in &nets {
        let prefix = format!("{name}/");
        let scale = f.scale(&format!("{prefix}bias_scale"));
        let keys: Vec<&str> = KEYS
            .iter()
            .copied()
            .filter(|k| f.has(&format!("{prefix}{k}")))
            .collect();
        let expected = if name == "res-bn" { 7 } else { 9 };
        assert_eq!(keys.len(), expected, "{name}: {keys:?}");
        let no_floor = |_: &str, _: &str| 0.1;
        failures.extend(match name.as_str() {
            "seq" => {
                let net = small_nets::SequentialNet::new(classes, scale);
                let net = cast_float(net.valid(), FloatDType::F64);
                compare_with_fixture(&net, &x, &f, &prefix, &keys, no_floor)
            }
            _ => {
                let net = small_nets::ResidualNet::new(classes, name == "res-bn", scale);
                let net = cast_float(net.valid(), FloatDType::F64);
                compare_with_fixture(&net, &x, &f, &prefix, &keys, no_floor)
            }
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The compatibility mode on a real architecture with BatchNorm, residual sums and global
/// average pooling (ResNet18; the same layer kinds are checked against iNNvestigate on the
/// small networks above): finite, non-zero, different from the default, and Deep Taylor's
/// copying at residual sums visible in its relevance sum.
#[test]
fn resnet18_compat_paths_run() {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 3), &dev);
    let sd = closed_form_state_dict(&m, None);
    m.load_state_dict(&sd).unwrap();
    let m = m.valid().cast_float(FloatDType::F64);
    let shape = [1, 3, 64, 64];
    let x = Tensor::<4>::from_data(TensorData::new(input_value(&shape), shape), &dev)
        .cast(FloatDType::F64);
    let logits = to_f64(m.forward(x.clone()));
    let target = (0..3)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    assert!(logits[target] > 0.0);
    let bounds = (vec![-2.2; 3], vec![2.7; 3]);
    for key in [
        "deep-taylor",
        "lrp-epsilon",
        "lrp-alpha2-beta1",
        "lrp-zplus",
        "lrp-preset-a",
        "lrp-epsilon-plus",
    ] {
        let (compat, sums) = run(&m, &x, &[target], &method(key, &bounds, true));
        let (default, default_sums) = run(&m, &x, &[target], &method(key, &bounds, false));
        let d = rel_l2(&compat, &default);
        eprintln!(
            "resnet18 {key:<18} compat vs default rel L2 {d:.3e}, sums {sums:?} vs {default_sums:?} (logit {})",
            logits[target]
        );
        assert!(compat.iter().any(|v| *v != 0.0), "{key}: zero map");
        assert!(d > 1e-3, "{key}: the mode changed nothing ({d:e})");
        if key == "deep-taylor" {
            // z⁺ without bias conserves by default (up to its 1e-6 stabiliser); copying at the eight
            // residual sums (and BatchNorm passing relevance unchanged) does not.
            assert!((default_sums[0] - logits[target]).abs() < 1e-4 * logits[target]);
            assert!((sums[0] - logits[target]).abs() > 1e-3 * logits[target]);
        }
    }
}
