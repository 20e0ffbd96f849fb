//! Learning-rate schedules, stepped once per epoch (PyTorch's `StepLR` and
//! `CosineAnnealingLR(T_max = epochs)` as usually used, MATLAB's `piecewise`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// The rate times `gamma` every `every` epochs (MATLAB `piecewise`: drop period, factor).
    Step { every: usize, gamma: f64 },
    /// Cosine annealing from the base rate at epoch 0 towards `min_lr` at epoch `epochs`.
    Cosine { min_lr: f64 },
}

impl Schedule {
    /// Learning rate of epoch `epoch` (0-based) of `epochs`.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { min_lr } => {
                let t = epoch as f64 / epochs.max(1) as f64;
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }

    /// Parses `constant`, `step:EVERY:GAMMA` (e.g. `step:10:0.1`) or `cosine[:MIN_LR]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str, what: &str| -> Result<f64, String> {
            p.parse::<f64>()
                .map_err(|_| format!("schedule {s:?}: {what} {p:?} is not a number"))
        };
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["step", every, gamma] => {
                let every = every
                    .parse::<usize>()
                    .ok()
                    .filter(|&e| e > 0)
                    .ok_or_else(|| format!("schedule {s:?}: period must be a positive integer"))?;
                Ok(Schedule::Step {
                    every,
                    gamma: num(gamma, "factor")?,
                })
            }
            ["cosine"] => Ok(Schedule::Cosine { min_lr: 0.0 }),
            ["cosine", min] => Ok(Schedule::Cosine {
                min_lr: num(min, "minimum rate")?,
            }),
            _ => Err(format!(
                "unknown schedule {s:?} (expected constant, step:EVERY:GAMMA or cosine[:MIN_LR])"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_definitions() {
        assert_eq!(Schedule::Constant.lr(0.1, 7, 10), 0.1);
        let step = Schedule::parse("step:2:0.5").unwrap();
        let lrs: Vec<f64> = (0..5).map(|e| step.lr(1.0, e, 5)).collect();
        assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25]);
        let cos = Schedule::parse("cosine").unwrap();
        assert_eq!(cos.lr(1.0, 0, 4), 1.0);
        assert!((cos.lr(1.0, 2, 4) - 0.5).abs() < 1e-12);
        assert!(cos.lr(1.0, 3, 4) < 0.5 && cos.lr(1.0, 3, 4) > 0.0);
        assert!(Schedule::parse("step:0:0.1").is_err());
        assert!(Schedule::parse("linear").is_err());
    }
}
