//! Where a training step (default ResNet18, batch 16, 224², SGD with momentum and weight
//! decay as `leukex bench`) spends its time: train-mode forward, loss, backward and
//! optimiser timed apart, median of `RUNS` (default 7) after one warm-up.
//!
//!     cargo run --release -p leukex-train --example profile_step [ARCH] [BATCH]
//!
//! `OPT=burn` replaces leukex's optimiser by burn's plain `Sgd` (no momentum, no weight
//! decay). See docs/benchmarks.md, "Model speed".

use std::time::Instant;

use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, Int};
use leukex_models::{Arch, Classifier, ModelConfig};
use leukex_train::{Optimizer, OptimizerKind};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let arch: Arch = args
        .next()
        .unwrap_or_else(|| "resnet18".into())
        .parse()
        .expect("architecture");
    let batch: usize = args.next().map_or(16, |s| s.parse().expect("batch"));
    let runs: usize = std::env::var("RUNS")
        .ok()
        .map_or(7, |s| s.parse().expect("RUNS"));
    let ad = Device::default().autodiff();
    let mut m = Classifier::new(&ModelConfig::new(arch, 2), &ad);
    m.init_from_scratch(0);
    let burn_opt = std::env::var("OPT").is_ok_and(|s| s == "burn");
    let mut sgd = SgdConfig::new().init();
    let mut opt = Optimizer::new(OptimizerKind::sgdm(0.9), 1e-4);
    let x = Tensor::<4>::random([batch, 3, 224, 224], Distribution::Uniform(-1.0, 1.0), &ad);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 2).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &ad);
    let names = ["forward", "loss", "backward", "optimiser", "step"];
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for run in 0..=runs {
        let t0 = Instant::now();
        let logits = m.forward(x.clone());
        let _ = logits.clone().detach().sum().into_scalar::<f32>();
        let t1 = Instant::now();
        let loss = log_softmax(logits, 1)
            .gather(1, y.clone().reshape([batch, 1]))
            .mean()
            .neg();
        let _ = loss.clone().detach().into_scalar::<f32>();
        let t2 = Instant::now();
        let grads = loss.backward();
        let t3 = Instant::now();
        if burn_opt {
            let gp = GradientsParams::from_grads(grads, &m);
            m = sgd.step(1e-4, m, gp);
        } else {
            opt.step(&mut m, &grads, 1e-4);
            drop(grads);
        }
        let t4 = Instant::now();
        if run > 0 {
            let d = [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0];
            for (v, d) in t.iter_mut().zip(d) {
                v.push(d.as_secs_f64());
            }
        }
    }
    for (n, v) in names.iter().zip(t) {
        println!("{n:>10}: {:.3} s (median of {runs})", median(v));
    }
}
