//! Closed-form parameters and inputs for reference tests.
//!
//! Every learnable parameter and every test input is a formula of (name, flat index)
//! that `scripts/fixtures/gen_models.py` implements bit-identically in Python, so the
//! PyTorch reference fixtures need no stored weights (see that script's docstring):
//! `u = ((splitmix64(fnv1a64(name) ^ i) >> 40) - 2^23) / 2^23`, then conv/linear
//! weights `u·sqrt(6/fan_in)`, BatchNorm gamma `1 + u/4`, biases `u/10`, inputs `1.5u`
//! (name `input:NxCxHxW`). BatchNorm running statistics come from a real forward pass in
//! the reference and are passed in.

use crate::{Classifier, StateDict};

pub use leukex_hash::{fnv1a64, splitmix64};

/// u(name, i) in [-1, 1), exactly representable in f32 (24 bits).
pub fn unit(name: &str, n: usize) -> impl Iterator<Item = f64> {
    let h = fnv1a64(name);
    (0..n as u64).map(move |i| {
        let top = (splitmix64(h ^ i) >> 40) as i64 - (1 << 23);
        top as f64 / (1u64 << 23) as f64
    })
}

/// Closed-form value of a learnable parameter (torch layout).
pub fn param_value(key: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    if key.ends_with(".weight") && shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        let s = (6.0 / fan_in as f64).sqrt();
        unit(key, n).map(|u| (u * s) as f32).collect()
    } else if key.ends_with(".weight") {
        unit(key, n).map(|u| (1.0 + 0.25 * u) as f32).collect()
    } else if key.ends_with(".bias") {
        unit(key, n).map(|u| (0.1 * u) as f32).collect()
    } else {
        panic!("no closed form for {key}")
    }
}

/// Closed-form input of shape [N, C, H, W].
pub fn input_value(shape: &[usize]) -> Vec<f32> {
    let name = format!(
        "input:{}",
        shape
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("x")
    );
    let n: usize = shape.iter().product();
    unit(&name, n).map(|u| (1.5 * u) as f32).collect()
}

/// The model's full state dict: closed-form parameters plus BatchNorm running statistics
/// taken from `bn` under the keys `bn.<state-dict key>` (a reference fixture), or, when
/// `bn` is `None`, closed-form statistics (mean `u/10`, variance `1 + u/10`).
pub fn closed_form_state_dict(model: &Classifier, bn: Option<&StateDict>) -> StateDict {
    let mut sd = StateDict::new("<closed-form>");
    for (key, shape) in model.state_dict_keys() {
        if key.ends_with(".running_mean") || key.ends_with(".running_var") {
            let data = match bn {
                Some(f) => {
                    let t = f
                        .get(&format!("bn.{key}"))
                        .unwrap_or_else(|| panic!("fixture lacks bn.{key}"));
                    assert_eq!(t.shape, shape, "{key}");
                    t.data.clone()
                }
                None => {
                    let n: usize = shape.iter().product();
                    let base = if key.ends_with("mean") { 0.0 } else { 1.0 };
                    unit(&key, n).map(|u| (base + 0.1 * u) as f32).collect()
                }
            };
            sd.insert(key, shape, data);
        } else {
            let data = param_value(&key, &shape);
            sd.insert(key, shape, data);
        }
    }
    sd
}
