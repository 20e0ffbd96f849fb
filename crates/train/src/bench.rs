//! Speed of the networks (`leukex bench`): forward, forward + backward to the input
//! (what every explanation method costs), and a training step, in images per second.
//! Random inputs and weights: speed does not depend on the values.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::{Distribution, Int};
use leukex_models::{Arch, Classifier, ModelConfig};
use serde::Serialize;

use crate::{Optimizer, OptimizerKind, train_step};

/// One measured job.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub arch: Arch,
    /// `forward`, `forward+backward` (to the input), `train-step` (all weights),
    /// `train-step-frozen` (head only).
    pub job: &'static str,
    pub batch: usize,
    pub size: usize,
    /// Median seconds per batch.
    pub seconds: f64,
    pub images_per_second: f64,
    pub runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(runs: usize, warmup: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    median(
        (0..runs.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Which jobs to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Forward,
    ForwardBackward,
    TrainStep,
    TrainStepFrozen,
}

impl Job {
    pub const ALL: [Job; 4] = [
        Job::Forward,
        Job::ForwardBackward,
        Job::TrainStep,
        Job::TrainStepFrozen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Forward => "forward",
            Job::ForwardBackward => "forward+backward",
            Job::TrainStep => "train-step",
            Job::TrainStepFrozen => "train-step-frozen",
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == s)
    }
}

/// Times `job` on `arch` (2 classes) with `batch` images of `size`², median of `runs`
/// after one warm-up. The training steps use SGD with momentum, as `leukex train`.
pub fn measure(arch: Arch, job: Job, batch: usize, size: usize, runs: usize) -> Timing {
    let dev = Device::default();
    let config = ModelConfig::new(arch, 2);
    let shape = [batch, 3, size, size];
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 2).collect();
    let seconds = match job {
        Job::Forward | Job::ForwardBackward => {
            let mut m = Classifier::new(&config, &dev);
            m.init_from_scratch(0);
            let m = m.valid();
            let x = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &dev);
            if job == Job::Forward {
                time(runs, 1, || {
                    let _ = m.forward(x.clone()).into_data();
                })
            } else {
                time(runs, 1, || {
                    let xa = x.clone().autodiff().require_grad();
                    let g = m.forward(xa.clone()).narrow(1, 1, 1).sum().backward();
                    let _ = xa.grad(&g).expect("input gradient").into_data();
                })
            }
        }
        Job::TrainStep | Job::TrainStepFrozen => {
            let ad = dev.autodiff();
            let mut m = Classifier::new(&config, &ad);
            m.init_from_scratch(0);
            if job == Job::TrainStepFrozen {
                m = m.freeze_backbone();
            }
            let mut opt = Optimizer::new(OptimizerKind::sgdm(0.9), 1e-4);
            let x = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &ad);
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &ad);
            time(runs, 1, || {
                let _ = train_step(&mut m, &mut opt, x.clone(), y.clone(), 1e-4);
            })
        }
    };
    Timing {
        arch,
        job: job.name(),
        batch,
        size,
        seconds,
        images_per_second: batch as f64 / seconds,
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_and_reports_a_rate() {
        for job in Job::ALL {
            let t = measure(Arch::ResNet18, job, 2, 32, 1);
            assert_eq!(t.job, job.name());
            assert!(t.seconds > 0.0 && t.images_per_second.is_finite(), "{t:?}");
            assert_eq!(Job::parse(job.name()), Some(job));
        }
        assert_eq!(Job::parse("backward"), None);
    }
}
