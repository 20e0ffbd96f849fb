//! Speed of the attribution methods against the Python references (explanation issue):
//! ResNet18, batch 8 at 224×224 (and ResNet50 Grad-CAM), closed-form weights (speed does
//! not depend on the values). Reference times on this machine with 2 threads (shared
//! README, 2026-11-26): Captum Input×Gradient 0.42 s, pytorch-grad-cam Grad-CAM 0.56 s,
//! Zennit EpsilonPlusFlat 1.41 s, ResNet50 Grad-CAM 1.37 s.
//!
//! `LEUKEX_BENCH_METHODS=grad-cam,lrp-epsilon-plus-flat` restricts the methods.
//! `score-cam` is opt-in (only when named there): one forward pass per channel of `layer4`
//! per image (8 × 512 at 224×224) takes minutes, so it is timed by one run, not by
//! criterion's ten samples.

use std::time::Instant;

use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use leukex_explain::method::{Method, MethodParams};
use leukex_explain::run::explain_batch;
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig};

const BATCH: usize = 8;
const SIDE: usize = 224;

fn model(arch: Arch) -> Classifier {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(arch, 2), &dev);
    let sd = closed_form_state_dict(&m, None);
    m.load_state_dict(&sd).unwrap();
    m.valid()
}

fn run(m: &Classifier, x: &Tensor<4>, targets: &[usize], methods: &[Method]) -> f32 {
    let maps = explain_batch(m, x.clone(), targets, methods).unwrap();
    maps.iter()
        .map(|t| t.clone().sum().into_scalar::<f32>())
        .sum()
}

fn bench(c: &mut Criterion) {
    // As the `leukex` command does (see leukex_models::allocator).
    leukex_models::allocator::reuse_freed_memory();
    let only: Option<Vec<String>> = std::env::var("LEUKEX_BENCH_METHODS")
        .ok()
        .map(|s| s.split(',').map(String::from).collect());
    let wanted = |m: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == m));
    let named = |m: &str| only.as_ref().is_some_and(|o| o.iter().any(|x| x == m));
    let shape = [BATCH, 3, SIDE, SIDE];
    let x = Tensor::<4>::from_data(
        TensorData::new(input_value(&shape), shape),
        &Device::default(),
    );
    let targets: Vec<usize> = (0..BATCH).map(|i| i % 2).collect();
    let params = MethodParams {
        bounds: Some((vec![-2.2; 3], vec![2.7; 3])),
        ..Default::default()
    };
    let mut group = c.benchmark_group("resnet18_b8_224");
    group.sample_size(10);
    let m18 = model(Arch::ResNet18);
    let defaults = [
        "gradient",
        "input-x-gradient",
        "grad-cam",
        "lrp-epsilon-plus-flat",
        "lrp-epsilon-gamma-box",
        "lrp-epsilon-alpha2-beta1",
    ];
    // Any other single method named in LEUKEX_BENCH_METHODS is timed too.
    let extra = only.iter().flatten().filter(|n| {
        !defaults.contains(&n.as_str())
            && !["paper-four", "score-cam", "resnet50-grad-cam"].contains(&n.as_str())
    });
    for name in defaults.iter().copied().chain(extra.map(String::as_str)) {
        if wanted(name) {
            let method = [Method::parse(name, &params).unwrap()];
            group.bench_function(name, |b| b.iter(|| run(&m18, &x, &targets, &method)));
        }
    }
    // The paper's four methods on one batch, sharing passes.
    if wanted("paper-four") {
        let four: Vec<Method> = [
            "lrp-epsilon",
            "lrp-epsilon-plus",
            "input-x-gradient",
            "grad-cam",
        ]
        .iter()
        .map(|n| Method::parse(n, &params).unwrap())
        .collect();
        group.bench_function("paper-four", |b| b.iter(|| run(&m18, &x, &targets, &four)));
    }
    group.finish();
    if named("score-cam") {
        // Opt-in and timed once (see the module docs); default batch of masked inputs.
        let method = [Method::parse("score-cam", &params).unwrap()];
        let t = Instant::now();
        let checksum = run(&m18, &x, &targets, &method);
        println!(
            "resnet18_b8_224/score-cam (one run, batch {} masked inputs): {:.2} s (checksum {checksum})",
            leukex_explain::DEFAULT_SCORE_CAM_BATCH,
            t.elapsed().as_secs_f64()
        );
    }
    if wanted("resnet50-grad-cam") {
        let mut group = c.benchmark_group("resnet50_b8_224");
        group.sample_size(10);
        let m50 = model(Arch::ResNet50);
        let method = [Method::parse("grad-cam", &params).unwrap()];
        group.bench_function("grad-cam", |b| b.iter(|| run(&m50, &x, &targets, &method)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
