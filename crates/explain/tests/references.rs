//! Maps equal to the reference libraries on the same weights and inputs.
//!
//! Fixtures: `crates/explain/tests/fixtures/<case>.safetensors`, written by
//! `scripts/fixtures/gen_explain.py` (pinned Zennit, Captum, pytorch-grad-cam) with the
//! closed-form weights of `leukex_models::closed_form` and the BatchNorm statistics stored
//! in the fixture. Inputs `[2, 3, 128, 128]`, targets class 1 for image 0 and class 2 for
//! image 1, maps summed over colour channels.
//!
//! Tolerances (the explanation issue): gradient family and CAMs relative L2 ≤ 1e-3 and
//! Pearson ≥ 0.9999 against Captum / pytorch-grad-cam; LRP (Deep Taylor included: stored
//! for resnet18 and vgg19) relative L2 ≤ 5e-3 and Pearson ≥ 0.999 against Zennit.
//!
//! The gradient family and LRP references are computed in float64 (stored as float32),
//! because with these closed-form weights a float32 input gradient is only good to
//! 1e-3..1e-2 relative (PyTorch's own float32 result against its float64 one), and tiny
//! LRP stabilisers amplify float32 rounding. They are compared with leukex in float64 at
//! the tolerances above, and with leukex in float32 at a float32-sized tolerance
//! (gradients rel L2 ≤ 3e-2; LRP composites ≤ 5e-3; the pure ε/0 rules, whose 1e-6
//! stabiliser is below float32 resolution, are checked in float64 only). CAMs are float32
//! on both sides, as pytorch-grad-cam computes them. Score-CAM (`cam.score-cam`, one forward
//! pass per channel) is stored for resnet18 and vgg19 only.
//!
//! Guided Backpropagation (`fixtures/guided-backprop.safetensors`, one map per case, float64
//! reference): Captum's `GuidedBackprop` with its hook on every ReLU *and* ReLU6 module and
//! GoogLeNet's functional ReLUs made modules (stock Captum would leave GoogLeNet and
//! EfficientNet-Lite0 with the plain gradient), equal to Zennit's `GuidedBackprop` composite
//! with ReLU6 added. Same tolerances as the gradient family (float64 relative L2 ≤ 1e-3,
//! Pearson ≥ 0.9999; float32 ≤ 3e-2, ≥ 0.999); the plain gradient must be clearly off
//! (relative L2 > 0.1) from it, so that a method wired to the gradient fails. (ReLU6's upper
//! clip is tested too: without it EfficientNet-Lite0's map moves by 6.7e-2, see the
//! fixture's metadata.)

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_explain::cam::{CamKind, layer_gradients, scale_and_resize};
use leukex_explain::gradient::{IgRule, smoothgrad_with_noise};
use leukex_explain::lrp::lrp;
use leukex_explain::method::{Method, MethodParams};
use leukex_explain::run::explain_batch;
use leukex_explain::score_cam::{DEFAULT_SCORE_CAM_BATCH, score_cam};
use leukex_explain::target::Score;
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};

const TARGETS: [usize; 2] = [1, 2];
const SHAPE: [usize; 4] = [2, 3, 128, 128];

struct Case {
    name: &'static str,
    arch: Arch,
    tensors: StateDict,
}

fn load(name: &'static str, arch: Arch) -> Case {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"));
    let tensors = StateDict::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let bytes = std::fs::read(&path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: HashMap<String, String> = md.metadata().clone().unwrap_or_default();
    // The fixture was made for this architecture, input and targets.
    assert_eq!(
        meta.get("arch").map(String::as_str),
        Some(arch.as_str()),
        "{name}"
    );
    assert_eq!(
        meta.get("targets").map(String::as_str),
        Some("[1, 2]"),
        "{name}"
    );
    assert_eq!(
        meta.get("input_shape").map(String::as_str),
        Some("[2, 3, 128, 128]"),
        "{name}"
    );
    Case {
        name,
        arch,
        tensors,
    }
}

impl Case {
    fn model(&self, dtype: FloatDType) -> Classifier {
        let dev = Device::default();
        let mut m = Classifier::new(&ModelConfig::new(self.arch, 3), &dev);
        let sd = closed_form_state_dict(&m, Some(&self.tensors));
        m.load_state_dict(&sd).unwrap();
        m.valid().cast_float(dtype)
    }

    fn get(&self, key: &str) -> Option<(Vec<usize>, Vec<f64>)> {
        self.tensors
            .get(key)
            .map(|t| (t.shape.clone(), t.data.iter().map(|&v| v as f64).collect()))
    }

    fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.tensors.keys().map(String::from).collect();
        k.sort();
        k
    }

    fn bounds(&self) -> (Vec<f64>, Vec<f64>) {
        if self.arch == Arch::EfficientNetLite0 {
            (vec![-127.0 / 128.0; 3], vec![1.0; 3])
        } else {
            let mean = [0.485f64, 0.456, 0.406];
            let std = [0.229f64, 0.224, 0.225];
            (
                (0..3).map(|c| (0.0 - mean[c]) / std[c]).collect(),
                (0..3).map(|c| (1.0 - mean[c]) / std[c]).collect(),
            )
        }
    }
}

fn input(dtype: FloatDType) -> Tensor<4> {
    Tensor::<4>::from_data(
        TensorData::new(input_value(&SHAPE), SHAPE),
        &Device::default(),
    )
    .cast(dtype)
}

fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.cast(FloatDType::F64)
        .into_data()
        .try_into_vec::<f64>()
        .unwrap()
}

/// `[N, C, H, W]` → `[N, H, W]` summed over channels.
fn channel_sum(t: Tensor<4>) -> Vec<f64> {
    to_f64(t.sum_dim(1))
}

struct Agreement {
    rel_l2: f64,
    pearson: f64,
}

fn agreement(got: &[f64], want: &[f64]) -> Agreement {
    assert_eq!(got.len(), want.len(), "sizes differ");
    assert!(got.iter().all(|v| v.is_finite()), "non-finite map");
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    assert!(
        den > 0.0,
        "the reference map is zero: a test against it cannot fail"
    );
    let n = got.len() as f64;
    let (mg, mw) = (got.iter().sum::<f64>() / n, want.iter().sum::<f64>() / n);
    let cov: f64 = got.iter().zip(want).map(|(a, b)| (a - mg) * (b - mw)).sum();
    let vg: f64 = got.iter().map(|a| (a - mg).powi(2)).sum();
    let vw: f64 = want.iter().map(|b| (b - mw).powi(2)).sum();
    Agreement {
        rel_l2: (num / den).sqrt(),
        pearson: cov / (vg * vw).sqrt(),
    }
}

/// Compares and prints; returns the failure message, if any, so that one run reports
/// every method of a case.
fn compare(
    case: &str,
    key: &str,
    got: &[f64],
    want: &[f64],
    max_rel: f64,
    min_r: f64,
) -> Option<String> {
    let a = agreement(got, want);
    eprintln!(
        "{case:>18} {key:<40} rel L2 {:.2e}  Pearson {:.7}",
        a.rel_l2, a.pearson
    );
    (a.rel_l2 > max_rel || a.pearson < min_r).then(|| {
        format!(
            "{case} {key}: rel L2 {:.3e} (max {max_rel:e}), Pearson {:.6} (min {min_r})",
            a.rel_l2, a.pearson
        )
    })
}

fn check(case: &str, key: &str, got: &[f64], want: &[f64], max_rel: f64, min_r: f64) {
    if let Some(msg) = compare(case, key, got, want, max_rel, min_r) {
        panic!("{msg}");
    }
}

fn params_for(case: &Case) -> MethodParams {
    MethodParams {
        steps: Some(16),
        bounds: Some(case.bounds()),
        ..Default::default()
    }
}

/// Gradient family and CAMs against Captum / pytorch-grad-cam.
fn check_gradient_and_cams(case: &Case) {
    let m = case.model(FloatDType::F32);
    let x = input(FloatDType::F32);
    let (_, logits) = case.get("logits").expect("logits");
    let got_logits = to_f64(m.forward(x.clone()));
    let worst = got_logits
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-4, "{}: logits differ by {worst:e}", case.name);
    let mut failures = Vec::new();
    for (dtype, max_rel, min_r) in [
        (FloatDType::F64, 1e-3, 0.9999),
        (FloatDType::F32, 3e-2, 0.999),
    ] {
        let label = |key: &str| format!("{key} [{dtype:?}]");
        let m = case.model(dtype);
        let x = input(dtype);
        failures.extend(gradient_family(case, &m, &x, max_rel, min_r, &label));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cams(case, &m, x);
}

fn gradient_family(
    case: &Case,
    m: &Classifier,
    x: &Tensor<4>,
    max_rel: f64,
    min_r: f64,
    label: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut failures = Vec::new();
    let p = params_for(case);
    let mut methods = Vec::new();
    let mut keys = Vec::new();
    for key in case.keys() {
        let method = match key.as_str() {
            "gradient" | "input-x-gradient" | "integrated-gradients" => {
                Method::parse(&key, &p).unwrap()
            }
            "integrated-gradients_riemann-trapezoid" => Method::IntegratedGradients {
                steps: 16,
                rule: IgRule::RiemannTrapezoid,
            },
            _ => continue,
        };
        methods.push(method);
        keys.push(key);
    }
    assert!(
        !methods.is_empty(),
        "{}: no gradient-family maps",
        case.name
    );
    let maps = explain_batch(m, x.clone(), &TARGETS, &methods).unwrap();
    for (key, map) in keys.iter().zip(maps) {
        let (_, want) = case.get(key).unwrap();
        failures.extend(compare(
            case.name,
            &label(key),
            &channel_sum(map),
            &want,
            max_rel,
            min_r,
        ));
    }
    if let Some((_, want)) = case.get("gradient.full") {
        // The fixture stores the per-channel gradient; `gradient` and `input-x-gradient`
        // are its channel sums (and input times it), asserted bit-exact by the generator.
        let g = leukex_explain::gradient::gradient(m, x.clone(), &TARGETS);
        let xs = to_f64(x.clone());
        failures.extend(compare(
            case.name,
            &label("gradient.full"),
            &to_f64(g.clone()),
            &want,
            max_rel,
            min_r,
        ));
        let plane = 128 * 128;
        let sum3 = |v: &[f64]| -> Vec<f64> {
            (0..2 * plane)
                .map(|i| {
                    let (n, p) = (i / plane, i % plane);
                    (0..3).map(|c| v[(n * 3 + c) * plane + p]).sum()
                })
                .collect()
        };
        let ixg_want: Vec<f64> = want.iter().zip(&xs).map(|(g, x)| g * x).collect();
        failures.extend(compare(
            case.name,
            &label("gradient"),
            &channel_sum(g.clone()),
            &sum3(&want),
            max_rel,
            min_r,
        ));
        let ixg = to_f64(x.clone() * g);
        failures.extend(compare(
            case.name,
            &label("input-x-gradient"),
            &sum3(&ixg),
            &sum3(&ixg_want),
            max_rel,
            min_r,
        ));
    }
    if let Some((shape, noise)) = case.get("smoothgrad.noise") {
        let per: usize = shape[1..].iter().product();
        let dev = Device::default();
        let noise: Vec<Tensor<4>> = noise
            .chunks(per)
            .map(|c| {
                let v: Vec<f32> = c.iter().map(|&v| v as f32).collect();
                Tensor::<4>::from_data(TensorData::new(v, SHAPE), &dev).cast(x.dtype())
            })
            .collect();
        let got = smoothgrad_with_noise(m, x.clone(), &TARGETS, &noise, Score::Logit);
        let (_, want) = case.get("smoothgrad").expect("smoothgrad map");
        failures.extend(compare(
            case.name,
            &label("smoothgrad"),
            &channel_sum(got),
            &want,
            max_rel,
            min_r,
        ));
    }
    failures
}

fn cams(case: &Case, m: &Classifier, x: Tensor<4>) {
    // CAMs at layer resolution, and Grad-CAM after pytorch-grad-cam's scaling.
    let layer = leukex_explain::default_layer(case.arch);
    let lg = layer_gradients(m, x.clone(), &TARGETS, layer).unwrap();
    let mut cams = 0;
    for kind in CamKind::ALL {
        let key = format!("cam.{}", kind.as_str());
        let Some((_, want)) = case.get(&key) else {
            continue;
        };
        let cam = kind.cam(lg.activations.clone(), lg.gradients.clone());
        check(case.name, &key, &to_f64(cam.clone()), &want, 1e-3, 0.9999);
        if kind == CamKind::GradCam
            && let Some((_, want)) = case.get("grad-cam")
        {
            let scaled = scale_and_resize(cam, 128, 128);
            check(case.name, "grad-cam", &to_f64(scaled), &want, 1e-3, 0.9999);
        }
        cams += 1;
    }
    assert_eq!(
        cams, 5,
        "{}: expected all five CAMs in the fixture",
        case.name
    );
    // Score-CAM where the fixture has it (gradient-free: 512 masked forward passes per image).
    match case.get("cam.score-cam") {
        Some((_, want)) => {
            let cam = score_cam(m, x, &TARGETS, layer, DEFAULT_SCORE_CAM_BATCH).unwrap();
            check(
                case.name,
                "cam.score-cam",
                &to_f64(cam),
                &want,
                1e-3,
                0.9999,
            );
        }
        None => assert!(
            !matches!(case.arch, Arch::ResNet18 | Arch::Vgg19),
            "{}: expected cam.score-cam in the fixture",
            case.name
        ),
    }
}

/// Whether fixture key `key` is an LRP map (the `lrp-*` methods and Deep Taylor, which
/// the fixture computes with Zennit as LRP composites); `.sum` keys are not maps.
fn is_lrp_map(key: &str) -> bool {
    (key.starts_with("lrp-") || key.starts_with("deep-taylor")) && !key.ends_with(".sum")
}

/// LRP methods (Deep Taylor included) against Zennit (float64 references): leukex in
/// float64 for every rule, and in float32 for the composites (not the pure ε/0 rules, see
/// the module docs).
fn check_lrp(case: &Case) {
    let p = params_for(case);
    let mut n = 0;
    let mut failures = Vec::new();
    // Deep Taylor (iNNvestigate's `deep_taylor` and `deep_taylor.bounded`, as Zennit
    // composites) is stored for the two cases with every LRP method.
    if matches!(case.arch, Arch::ResNet18 | Arch::Vgg19) {
        for key in ["deep-taylor", "deep-taylor-bounded"] {
            assert!(
                case.get(key).is_some(),
                "{}: expected {key} in the fixture",
                case.name
            );
        }
    }
    for dtype in [FloatDType::F64, FloatDType::F32] {
        let m = case.model(dtype);
        let x = input(dtype);
        for key in case.keys() {
            if !is_lrp_map(&key) {
                continue;
            }
            if dtype == FloatDType::F32 && matches!(key.as_str(), "lrp-epsilon" | "lrp-0") {
                continue;
            }
            let Method::Lrp { composite, .. } = Method::parse(&key, &p).unwrap() else {
                unreachable!()
            };
            let r = lrp(&m, x.clone(), &TARGETS, &composite);
            let got = channel_sum(r);
            let (_, want) = case.get(&key).unwrap();
            let label = format!("{key} [{dtype:?}]");
            failures.extend(compare(case.name, &label, &got, &want, 5e-3, 0.999));
            // Relevance sums (conservation) in float64: in float32 they inherit the map's
            // rounding amplified by small target logits (ResNet50: sums of 419 and 10 013).
            let sums = case
                .get(&format!("{key}.sum"))
                .filter(|_| dtype == FloatDType::F64);
            if let Some((_, sums)) = sums {
                let per = got.len() / 2;
                for (i, s) in sums.iter().enumerate() {
                    let mine: f64 = got[i * per..(i + 1) * per].iter().sum();
                    if (mine - s).abs() > 5e-3 * s.abs().max(1e-3) {
                        failures.push(format!(
                            "{} {label}: relevance sum {mine} vs Zennit {s}",
                            case.name
                        ));
                    }
                }
            }
            n += 1;
        }
    }
    // At least the four composites of the smaller cases, in both precisions.
    assert!(n >= 7, "{}: expected LRP maps in the fixture", case.name);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The Guided Backpropagation references of every case (see the module docs).
fn guided_fixture() -> StateDict {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/guided-backprop.safetensors");
    let tensors = StateDict::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let bytes = std::fs::read(&path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: HashMap<String, String> = md.metadata().clone().unwrap_or_default();
    assert_eq!(meta.get("targets").map(String::as_str), Some("[1, 2]"));
    assert_eq!(
        meta.get("input_shape").map(String::as_str),
        Some("[2, 3, 128, 128]")
    );
    tensors
}

/// Guided Backpropagation against Captum (every ReLU-type activation guided), in float64
/// at the gradient family's tolerance and in float32 at a float32-sized one; the plain
/// gradient must fail the comparison clearly.
fn check_guided_backprop(case: &Case) {
    let fixture = guided_fixture();
    let want: Vec<f64> = fixture
        .get(case.name)
        .unwrap_or_else(|| panic!("{}: no guided-backprop map in the fixture", case.name))
        .data
        .iter()
        .map(|&v| v as f64)
        .collect();
    let methods = [
        Method::parse("guided-backprop", &params_for(case)).unwrap(),
        Method::Gradient,
    ];
    let mut failures = Vec::new();
    for (dtype, max_rel, min_r) in [
        (FloatDType::F64, 1e-3, 0.9999),
        (FloatDType::F32, 3e-2, 0.999),
    ] {
        let m = case.model(dtype);
        let maps = explain_batch(&m, input(dtype), &TARGETS, &methods).unwrap();
        let mut maps = maps.into_iter().map(channel_sum);
        let (guided, gradient) = (maps.next().unwrap(), maps.next().unwrap());
        let label = format!("guided-backprop [{dtype:?}]");
        failures.extend(compare(case.name, &label, &guided, &want, max_rel, min_r));
        let off = agreement(&gradient, &want).rel_l2;
        eprintln!(
            "{:>18} {:<40} rel L2 {off:.2e}",
            case.name,
            format!("gradient vs guided-backprop [{dtype:?}]")
        );
        if off <= 0.1 {
            failures.push(format!(
                "{} [{dtype:?}]: the plain gradient is within rel L2 {off:.3e} of the guided \
                 reference: the test could not tell them apart",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! reference_tests {
    ($($test:ident: $case:literal, $arch:expr;)*) => {$(
        mod $test {
            use super::*;

            #[test]
            fn gradient_family_and_cams_equal_captum_and_grad_cam() {
                check_gradient_and_cams(&load($case, $arch));
            }

            #[test]
            fn lrp_equals_zennit() {
                check_lrp(&load($case, $arch));
            }

            #[test]
            fn guided_backprop_equals_captum() {
                check_guided_backprop(&load($case, $arch));
            }
        }
    )*};
}

reference_tests! {
    resnet18: "resnet18", Arch::ResNet18;
    resnet50: "resnet50", Arch::ResNet50;
    vgg19: "vgg19", Arch::Vgg19;
    googlenet: "googlenet", Arch::GoogLeNet;
    efficientnet_lite0: "efficientnet-lite0", Arch::EfficientNetLite0;
}
