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
//! The gradient family and LRP references are computed in float64 (stored as float32).
//! leukex in float64 is held to the tolerances above. leukex in float32 (the production
//! dtype) is judged per image against the same float64 reference with the reference
//! library's own float32 error as the yardstick: relative L2 ≤ max(tolerance, 2 × the
//! library's float32 error on that image), the fixture's `torch_f32_yardstick` written by
//! `scripts/fixtures/gen_f32_yardstick.py` (the worst of 1, 2, 4 threads and oneDNN on/off).
//! With these closed-form weights PyTorch's own float32 input gradient is only within
//! 1e-3..3e-2 of its float64 one (units within rounding of a ReLU threshold flip), and tiny
//! LRP stabilisers amplify float32 rounding (the pure ε/0 rules: the 1e-6 stabiliser is
//! below float32 resolution), so a fixed float32 tolerance would either judge the CPU's
//! summation order or let real errors through. The logits likewise: float32 within
//! max(1e-4, 2 × PyTorch's float32 error) of the float64 logits. The CAMs at layer
//! resolution are compared in float32 with the same criterion against `cam64.<method>`,
//! the CAM formula on the float64 network's activations and gradients (checked against
//! pytorch-grad-cam by the generator); the final, min-max scaled Grad-CAM and Score-CAM
//! (`cam.score-cam`, one forward pass per channel; resnet18 and vgg19 only) against
//! pytorch-grad-cam's float32 output at 1e-3.
//!
//! Guided Backpropagation (`fixtures/guided-backprop.safetensors`, one map per case, float64
//! reference): Captum's `GuidedBackprop` with its hook on every ReLU *and* ReLU6 module and
//! GoogLeNet's functional ReLUs made modules (stock Captum would leave GoogLeNet and
//! EfficientNet-Lite0 with the plain gradient), equal to Zennit's `GuidedBackprop` composite
//! with ReLU6 added. Same tolerances as the gradient family (float64 relative L2 ≤ 1e-3,
//! Pearson ≥ 0.9999; float32 ≤ 3e-2, ≥ 0.999); the plain gradient must be clearly off
//! (relative L2 > 0.1) from it, so that a method wired to the gradient fails. (ReLU6's upper
//! clip is tested too: without it EfficientNet-Lite0's map moves by 6.7e-2, see the
//! fixture's metadata.) Float32 is judged as above, with Captum's own float32 error.

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
use leukex_models::closed_form::{
    F32Yardstick, closed_form_state_dict, f32_failures, input_value, max_abs_per_image,
    rel_l2_per_image,
};
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};

const TARGETS: [usize; 2] = [1, 2];
const SHAPE: [usize; 4] = [2, 3, 128, 128];

struct Case {
    name: &'static str,
    arch: Arch,
    tensors: StateDict,
    yardstick: Yardstick,
}

/// The reference libraries' own float32 error per image (see the module docs).
struct Yardstick {
    logits_max_abs: Vec<f64>,
    maps: HashMap<String, Vec<f64>>,
}

impl Yardstick {
    fn from_meta(what: &str, meta: &HashMap<String, String>) -> Self {
        let y = F32Yardstick::from_metadata(what, meta.get("torch_f32_yardstick"));
        Yardstick {
            logits_max_abs: y.try_per_image(&["logits_max_abs"]).unwrap_or_default(),
            maps: y
                .names(&["maps"])
                .into_iter()
                .map(|k| {
                    let v = y.per_image(&["maps", &k]);
                    (k, v)
                })
                .collect(),
        }
    }

    fn of(&self, what: &str, key: &str) -> &[f64] {
        self.maps
            .get(key)
            .unwrap_or_else(|| panic!("{what}: no float32 yardstick for {key}"))
    }
}

/// How a map is judged: in float64 at fixed tolerances, in float32 per image against the
/// float64 reference with the reference library's own float32 error as the yardstick.
#[derive(Clone, Copy)]
enum Criterion {
    Float64 { max_rel: f64, min_r: f64 },
    Float32 { tolerance: f64 },
}

impl Criterion {
    fn for_dtype(dtype: FloatDType, max_rel: f64, min_r: f64) -> Self {
        match dtype {
            FloatDType::F64 => Criterion::Float64 { max_rel, min_r },
            _ => Criterion::Float32 { tolerance: max_rel },
        }
    }
}

/// Compares one map under `criterion`; returns the failure messages.
fn judge(
    case: &str,
    yardstick: &Yardstick,
    key: &str,
    label: &str,
    got: &[f64],
    want: &[f64],
    criterion: Criterion,
) -> Vec<String> {
    match criterion {
        Criterion::Float64 { max_rel, min_r } => compare(case, label, got, want, max_rel, min_r)
            .into_iter()
            .collect(),
        Criterion::Float32 { tolerance } => {
            assert!(
                got.iter().all(|v| v.is_finite()),
                "{case} {label}: non-finite map"
            );
            let errors = rel_l2_per_image(got, want, TARGETS.len());
            let own = yardstick.of(case, key);
            eprintln!(
                "{case:>18} {label:<40} rel L2 per image {} (reference's own float32 {})",
                sci(&errors),
                sci(own)
            );
            f32_failures(&format!("{case} {label}"), &errors, tolerance, own)
        }
    }
}

fn sci(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|e| format!("{e:.2e}")).collect();
    format!("[{}]", items.join(", "))
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
    let yardstick = Yardstick::from_meta(name, &meta);
    Case {
        name,
        arch,
        tensors,
        yardstick,
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
    let (_, logits64) = case.get("logits_f64").expect("logits_f64");
    let got_logits = to_f64(m.forward(x.clone()));
    let mut failures = f32_failures(
        &format!("{} logits", case.name),
        &max_abs_per_image(&got_logits, &logits64, TARGETS.len()),
        1e-4,
        &case.yardstick.logits_max_abs,
    );
    for dtype in [FloatDType::F64, FloatDType::F32] {
        let criterion = Criterion::for_dtype(dtype, 1e-3, 0.9999);
        let label = |key: &str| format!("{key} [{dtype:?}]");
        let m = case.model(dtype);
        let x = input(dtype);
        failures.extend(gradient_family(case, &m, &x, criterion, &label));
    }
    failures.extend(cams(case, &m, x));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn gradient_family(
    case: &Case,
    m: &Classifier,
    x: &Tensor<4>,
    criterion: Criterion,
    label: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut failures = Vec::new();
    let check = |key: &str, got: &[f64], want: &[f64]| {
        judge(
            case.name,
            &case.yardstick,
            key,
            &label(key),
            got,
            want,
            criterion,
        )
    };
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
        failures.extend(check(key, &channel_sum(map), &want));
    }
    if let Some((_, want)) = case.get("gradient.full") {
        // The fixture stores the per-channel gradient; `gradient` and `input-x-gradient`
        // are its channel sums (and input times it), asserted bit-exact by the generator.
        let g = leukex_explain::gradient::gradient(m, x.clone(), &TARGETS);
        let xs = to_f64(x.clone());
        failures.extend(check("gradient.full", &to_f64(g.clone()), &want));
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
        failures.extend(check("gradient", &channel_sum(g.clone()), &sum3(&want)));
        let ixg = to_f64(x.clone() * g);
        failures.extend(check("input-x-gradient", &sum3(&ixg), &sum3(&ixg_want)));
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
        failures.extend(check("smoothgrad", &channel_sum(got), &want));
    }
    failures
}

/// The CAMs of a float32 model: at layer resolution against the float64 network's
/// (`cam64.*`), and Grad-CAM after pytorch-grad-cam's scaling; returns the failures.
fn cams(case: &Case, m: &Classifier, x: Tensor<4>) -> Vec<String> {
    let layer = leukex_explain::default_layer(case.arch);
    let lg = layer_gradients(m, x.clone(), &TARGETS, layer).unwrap();
    let mut cams = 0;
    let mut failures = Vec::new();
    for kind in CamKind::ALL {
        let key = format!("cam.{}", kind.as_str());
        let Some((_, want)) = case.get(&format!("cam64.{}", kind.as_str())) else {
            continue;
        };
        let cam = kind.cam(lg.activations.clone(), lg.gradients.clone());
        failures.extend(judge(
            case.name,
            &case.yardstick,
            &key,
            &format!("{key} [F32]"),
            &to_f64(cam.clone()),
            &want,
            Criterion::Float32 { tolerance: 1e-3 },
        ));
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
    failures
}

/// Whether fixture key `key` is an LRP map (the `lrp-*` methods and Deep Taylor, which
/// the fixture computes with Zennit as LRP composites); `.sum` keys are not maps.
fn is_lrp_map(key: &str) -> bool {
    (key.starts_with("lrp-") || key.starts_with("deep-taylor")) && !key.ends_with(".sum")
}

/// LRP methods (Deep Taylor included) against Zennit (float64 references): leukex in
/// float64 at the fixed tolerances, and in float32 with Zennit's own float32 error as the
/// yardstick (see the module docs).
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
            let Method::Lrp { composite, .. } = Method::parse(&key, &p).unwrap() else {
                unreachable!()
            };
            let r = lrp(&m, x.clone(), &TARGETS, &composite);
            let got = channel_sum(r);
            let (_, want) = case.get(&key).unwrap();
            let label = format!("{key} [{dtype:?}]");
            let criterion = Criterion::for_dtype(dtype, 5e-3, 0.999);
            failures.extend(judge(
                case.name,
                &case.yardstick,
                &key,
                &label,
                &got,
                &want,
                criterion,
            ));
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
    // At least the four composites of every case, in both precisions.
    assert!(n >= 8, "{}: expected LRP maps in the fixture", case.name);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The Guided Backpropagation references of every case (see the module docs).
fn guided_fixture() -> (StateDict, Yardstick) {
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
    (tensors, Yardstick::from_meta("guided-backprop", &meta))
}

/// Guided Backpropagation against Captum (every ReLU-type activation guided), in float64
/// at the gradient family's tolerance and in float32 with Captum's own float32 error as
/// the yardstick; the plain gradient must fail the comparison clearly.
fn check_guided_backprop(case: &Case) {
    let (fixture, yardstick) = guided_fixture();
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
    for dtype in [FloatDType::F64, FloatDType::F32] {
        let m = case.model(dtype);
        let maps = explain_batch(&m, input(dtype), &TARGETS, &methods).unwrap();
        let mut maps = maps.into_iter().map(channel_sum);
        let (guided, gradient) = (maps.next().unwrap(), maps.next().unwrap());
        let label = format!("guided-backprop [{dtype:?}]");
        failures.extend(judge(
            case.name,
            &yardstick,
            case.name,
            &label,
            &guided,
            &want,
            Criterion::for_dtype(dtype, 1e-3, 0.9999),
        ));
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
