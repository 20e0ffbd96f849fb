//! The first 10 optimiser steps of ResNet18 equal PyTorch's (fixture from
//! `scripts/fixtures/gen_train.py`): same closed-form initial weights, same batches,
//! cross-entropy in train mode (BatchNorm batch statistics, running statistics updated
//! with the unbiased variance), `torch.optim.SGD(lr=1e-3, momentum=0.9,
//! weight_decay=1e-4)`, `torch.optim.Adam(lr=1e-4, weight_decay=1e-4)`, and SGD with a
//! frozen backbone (BatchNorm in eval mode, only `fc` trained).
//!
//! In float64 the losses and the weights after the 10 steps must match the float64
//! reference tightly. The float32 run (what `leukex train` does) is judged by how far
//! PyTorch's own float32 run drifts from its float64 one: every loss within
//! max(1e-3, 2 × that drift) of the float64 reference, the drift being the fixture's
//! `torch_f32_yardstick` (`scripts/fixtures/gen_f32_yardstick.py`: the largest over the
//! 10 steps and over 1, 2, 4 threads and oneDNN on/off). Ten steps amplify rounding —
//! Adam most, as it divides tiny gradients by their own square roots — and the rounding
//! depends on the summation order gemm picks for the CPU, so a fixed float32 tolerance
//! would judge the machine, not the optimiser.

use burn::prelude::*;
use burn::tensor::{FloatDType, Int};
use leukex_models::closed_form::{F32Yardstick, closed_form_state_dict, f32_failures, unit};
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};
use leukex_train::{Optimizer, OptimizerKind, train_step};

const STEPS: usize = 10;
const BATCH: [usize; 4] = [4, 3, 128, 128];

fn fixture() -> StateDict {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resnet18_steps.safetensors");
    StateDict::read_safetensors(p).expect("fixture")
}

/// PyTorch's own float32 loss drift of `case` (see the module docs).
fn float32_drift(case: &str) -> f64 {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resnet18_steps.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let raw = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get("torch_f32_yardstick").cloned());
    F32Yardstick::from_metadata("resnet18_steps", raw.as_ref()).number(&["losses_max_abs", case])
}

fn get<'a>(f: &'a StateDict, key: &str) -> &'a [f32] {
    &f.get(key)
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .data
}

/// Batch of step `t`: `1.5 u("train-input:t")`, labels `(i + t) mod 2`, channel 0 shifted
/// by ±0.25 by class.
fn batch(t: usize, dev: &Device, dtype: FloatDType) -> (Tensor<4>, Tensor<1, Int>) {
    let n: usize = BATCH.iter().product();
    let mut x: Vec<f32> = unit(&format!("train-input:{t}"), n)
        .map(|u| (1.5 * u) as f32)
        .collect();
    let labels: Vec<i64> = (0..BATCH[0]).map(|i| ((i + t) % 2) as i64).collect();
    let plane = BATCH[2] * BATCH[3];
    for (i, &y) in labels.iter().enumerate() {
        let shift = 0.25 * (2.0 * y as f32 - 1.0);
        let start = i * BATCH[1] * plane;
        for v in &mut x[start..start + plane] {
            *v += shift;
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(x, BATCH), dev).cast(dtype);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH[0]]), dev);
    (x, y)
}

/// Runs one case; returns the losses and the final state dict.
fn run(case: &str, dtype: FloatDType, fx: &StateDict) -> (Vec<f64>, StateDict) {
    let ad = Device::default().autodiff();
    let config = ModelConfig::new(Arch::ResNet18, 2);
    let probe = Classifier::new(&config, &Device::default());
    let mut sd = closed_form_state_dict(&probe, None);
    if case == "frozen" {
        for (key, shape) in probe.state_dict_keys() {
            if key.ends_with("running_mean") || key.ends_with("running_var") {
                sd.insert(
                    key.clone(),
                    shape,
                    get(fx, &format!("frozen.init.{key}")).to_vec(),
                );
            }
        }
    }
    let mut model = Classifier::from_state_dict(&config, &sd, &ad).unwrap();
    if dtype != FloatDType::F32 {
        model = model.cast_float(dtype);
    }
    let kind = match case {
        "adam" => OptimizerKind::adam(),
        _ => OptimizerKind::sgdm(0.9),
    };
    let lr = if case == "adam" { 1e-4 } else { 1e-3 };
    if case == "frozen" {
        model = model.freeze_backbone();
    }
    let mut opt = Optimizer::new(kind, 1e-4);
    let mut losses = Vec::new();
    for t in 0..STEPS {
        let (x, y) = batch(t, &ad, dtype);
        let (loss, _) = train_step(&mut model, &mut opt, x, y, lr);
        losses.push(loss);
    }
    (losses, model.to_state_dict(STEPS as u64))
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        d += (*x as f64 - *y as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    assert!(n > 0.0, "reference is zero");
    (d / n).sqrt()
}

const KEYS: [&str; 10] = [
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "layer4.1.bn2.running_var",
    "layer4.1.bn2.weight",
    "layer1.0.conv1.weight",
    "fc.weight",
    "fc.bias",
];

fn check_case(case: &str) {
    let fx = fixture();
    let reference: Vec<f64> = get(&fx, &format!("{case}.losses"))
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert!(reference.iter().all(|v| v.is_finite()));
    assert!(
        reference[0] - reference[STEPS - 1] > 1e-3,
        "{case}: the reference must make progress"
    );

    let (l64, sd64) = run(case, FloatDType::F64, &fx);
    let worst = l64
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("{case} f64: losses {l64:.6?}\n  max |Δ| vs PyTorch {worst:.2e}");
    assert!(
        worst < 1e-5,
        "{case} f64: losses {l64:?} vs PyTorch {reference:?}"
    );
    let initial = {
        let probe = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &Device::default());
        closed_form_state_dict(&probe, None)
    };
    for key in KEYS {
        let want = get(&fx, &format!("{case}.{key}"));
        // The reference itself moved (frozen: only the head), so equality means something.
        let trained = case != "frozen" || key.starts_with("fc.");
        if trained {
            let moved = rel_l2(&initial.get(key).unwrap().data, want);
            assert!(
                moved > 1e-6,
                "{case}: {key} did not change in the reference ({moved:.1e})"
            );
        }
        let got = &sd64.get(key).unwrap().data;
        let e = rel_l2(got, want);
        println!("  {key}: rel L2 {e:.2e}");
        assert!(
            e < 1e-5,
            "{case} f64: {key} after {STEPS} steps differs from PyTorch by {e:.2e}"
        );
    }

    let (l32, _) = run(case, FloatDType::F32, &fx);
    let worst32 = l32
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let drift = float32_drift(case);
    println!(
        "{case} f32: max |Δ| vs PyTorch float64 {worst32:.2e} (PyTorch's own float32 drift \
         {drift:.2e})"
    );
    let failures = f32_failures(&format!("{case} losses"), &[worst32], 1e-3, &[drift]);
    assert!(
        failures.is_empty(),
        "{}\n losses {l32:?}\n PyTorch float64 {reference:?}",
        failures.join("\n")
    );
}

#[test]
fn sgd_momentum_steps_equal_pytorch() {
    check_case("sgd");
}

#[test]
fn adam_steps_equal_pytorch() {
    check_case("adam");
}

#[test]
fn frozen_backbone_steps_equal_pytorch() {
    check_case("frozen");
}
