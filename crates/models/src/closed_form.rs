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

/// How far leukex's float32 result may be from the reference computed in float64, as a
/// multiple of the reference library's own float32 error on the same image (its
/// "yardstick", recorded in the fixtures by `scripts/fixtures/gen_f32_yardstick.py`:
/// the largest over the thread counts and convolution back-ends PyTorch runs in).
///
/// Why a multiple and not an absolute tolerance: float32 rounding depends on the summation
/// order, which gemm picks from the CPU's caches and instruction set, so two correct
/// float32 implementations, or one on two CPUs, differ by about their own rounding error.
/// 2 allows leukex's rounding to be twice the reference's worst configuration, no more.
pub const F32_K: f64 = 2.0;

/// The float32 bound of one image: `max(tolerance, F32_K × yardstick)`.
pub fn f32_bound(tolerance: f64, yardstick: f64) -> f64 {
    assert!(
        yardstick.is_finite() && yardstick >= 0.0,
        "yardstick {yardstick} is not a float32 error"
    );
    tolerance.max(F32_K * yardstick)
}

/// The reference library's own float32 error, as a fixture records it in its metadata
/// under `torch_f32_yardstick` (`scripts/fixtures/gen_f32_yardstick.py`): lists of per-image
/// errors (or single numbers) by name, possibly nested (`maps.<method>`). Every reference
/// test reads it here; a missing entry panics naming the fixture and the entry.
pub struct F32Yardstick {
    fixture: String,
    json: serde_json::Value,
}

impl F32Yardstick {
    /// The yardstick in `metadata` (the fixture's metadata entry), `fixture` naming the
    /// fixture in messages.
    pub fn from_metadata(fixture: &str, metadata: Option<&String>) -> Self {
        let raw = metadata.unwrap_or_else(|| {
            panic!("{fixture}: no torch_f32_yardstick (scripts/fixtures/gen_f32_yardstick.py)")
        });
        let json = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("{fixture}: torch_f32_yardstick is not JSON: {e}"));
        Self {
            fixture: fixture.to_string(),
            json,
        }
    }

    /// The entry at `path` (object keys), if present.
    fn entry(&self, path: &[&str]) -> Option<&serde_json::Value> {
        path.iter().try_fold(&self.json, |v, key| v.get(key))
    }

    fn missing(&self, path: &[&str]) -> ! {
        panic!(
            "{}: no float32 yardstick for {}",
            self.fixture,
            path.join(".")
        )
    }

    /// The per-image errors at `path`, if recorded.
    pub fn try_per_image(&self, path: &[&str]) -> Option<Vec<f64>> {
        let list = self.entry(path)?.as_array()?;
        Some(
            list.iter()
                .map(|e| {
                    e.as_f64().unwrap_or_else(|| {
                        panic!(
                            "{}: {} holds {e}, not a number",
                            self.fixture,
                            path.join(".")
                        )
                    })
                })
                .collect(),
        )
    }

    /// The per-image errors at `path`.
    pub fn per_image(&self, path: &[&str]) -> Vec<f64> {
        self.try_per_image(path)
            .unwrap_or_else(|| self.missing(path))
    }

    /// The single error at `path` (e.g. a training run's loss drift).
    pub fn number(&self, path: &[&str]) -> f64 {
        self.entry(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| self.missing(path))
    }

    /// The names under the object at `path` (e.g. the methods of `maps`).
    pub fn names(&self, path: &[&str]) -> Vec<String> {
        match self.entry(path).and_then(serde_json::Value::as_object) {
            Some(o) => o.keys().cloned().collect(),
            None => self.missing(path),
        }
    }
}

/// `distance(got_i, want_i)` of each of `n` equal-sized images.
fn per_image(
    got: &[f64],
    want: &[f64],
    n: usize,
    distance: impl Fn(&[f64], &[f64]) -> f64,
) -> Vec<f64> {
    assert_eq!(got.len(), want.len(), "sizes differ");
    assert!(
        n > 0 && got.len().is_multiple_of(n),
        "{} values in {n} images",
        got.len()
    );
    got.chunks(got.len() / n)
        .zip(want.chunks(want.len() / n))
        .map(|(g, w)| distance(g, w))
        .collect()
}

/// Relative L2 distance `‖got − want‖ / ‖want‖` of each of `n` equal-sized images.
pub fn rel_l2_per_image(got: &[f64], want: &[f64], n: usize) -> Vec<f64> {
    per_image(got, want, n, |g, w| {
        let num: f64 = g.iter().zip(w).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f64 = w.iter().map(|b| b * b).sum();
        assert!(
            den > 0.0,
            "an image of the reference is zero: a test cannot fail"
        );
        (num / den).sqrt()
    })
}

/// Largest absolute difference of each of `n` equal-sized images.
pub fn max_abs_per_image(got: &[f64], want: &[f64], n: usize) -> Vec<f64> {
    per_image(got, want, n, |g, w| {
        g.iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    })
}

/// Per image, `errors[i] <= f32_bound(tolerance, yardstick[i])`; the failures, each
/// naming the image, its error, the bound and the reference's own float32 error.
pub fn f32_failures(what: &str, errors: &[f64], tolerance: f64, yardstick: &[f64]) -> Vec<String> {
    assert_eq!(
        errors.len(),
        yardstick.len(),
        "{what}: one yardstick per image"
    );
    errors
        .iter()
        .zip(yardstick)
        .enumerate()
        .filter_map(|(i, (&e, &y))| {
            let bound = f32_bound(tolerance, y);
            (e.is_nan() || e > bound).then(|| {
                format!(
                    "{what}, image {i}: float32 error {e:.3e} > {bound:.3e} = max({tolerance:e}, \
                     {F32_K} × the reference's own float32 error {y:.3e})"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod f32_criterion_tests {
    use super::*;

    #[test]
    fn the_bound_is_the_larger_of_tolerance_and_k_times_the_yardstick() {
        assert_eq!(f32_bound(1e-3, 1e-4), 1e-3);
        assert_eq!(f32_bound(1e-3, 2e-3), 4e-3);
    }

    #[test]
    fn errors_above_the_bound_fail_per_image() {
        let fails = f32_failures("m", &[1e-3, 5e-3, f64::NAN], 1e-3, &[1e-4, 2e-3, 1.0]);
        assert_eq!(fails.len(), 2, "{fails:?}");
        assert!(fails[0].contains("image 1"), "{}", fails[0]);
        assert!(fails[1].contains("image 2"), "{}", fails[1]);
    }

    #[test]
    fn per_image_distances() {
        let want = [1.0, 0.0, 0.0, 2.0];
        let got = [1.0, 0.5, 0.0, 2.0];
        assert_eq!(rel_l2_per_image(&got, &want, 2), vec![0.5, 0.0]);
        assert_eq!(max_abs_per_image(&got, &want, 2), vec![0.5, 0.0]);
    }
}
