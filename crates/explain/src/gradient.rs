//! The gradient family: Gradient, Input×Gradient, Integrated Gradients, SmoothGrad.
//!
//! Each is the plain backward pass of the model ([`Classifier::forward`] on an input that
//! requires a gradient) seeded with the one-hot target, i.e. the gradient of the target
//! logit, as Captum computes it.

use burn::prelude::*;
use leukex_models::Classifier;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::target::Score;

/// d score[target] / d input, per image: `[N, C, H, W]`, and the logits.
pub fn gradient_with_logits(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    score: Score,
) -> (Tensor<4>, Tensor<2>) {
    input_gradient(x, targets, score, |x| model.forward(x))
}

/// d score[target] / d input through `forward`, and the logits: the plain gradient with
/// the model's own forward pass, a rule-modified one (Guided Backpropagation) with a
/// forward pass whose operations have modified backward passes.
pub(crate) fn input_gradient(
    x: Tensor<4>,
    targets: &[usize],
    score: Score,
    forward: impl FnOnce(Tensor<4>) -> Tensor<2>,
) -> (Tensor<4>, Tensor<2>) {
    let x = x.inner().autodiff().require_grad();
    let logits = forward(x.clone());
    let grads = score.objective(logits.clone(), targets).backward();
    let g = x
        .grad(&grads)
        .unwrap_or_else(|| x.clone().inner().zeros_like());
    (g, logits.inner())
}

/// d logit[target] / d input (Captum `Saliency(abs=False)`).
pub fn gradient(model: &Classifier, x: Tensor<4>, targets: &[usize]) -> Tensor<4> {
    gradient_with_logits(model, x, targets, Score::Logit).0
}

/// input ⊙ gradient (Captum `InputXGradient`).
pub fn input_x_gradient(model: &Classifier, x: Tensor<4>, targets: &[usize]) -> Tensor<4> {
    x.clone() * gradient(model, x, targets)
}

/// How Integrated Gradients places its points on the path (Captum's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IgRule {
    /// Gauss–Legendre quadrature on [0, 1] (Captum's default `gausslegendre`).
    GaussLegendre,
    RiemannLeft,
    RiemannRight,
    RiemannMiddle,
    RiemannTrapezoid,
}

impl IgRule {
    pub fn as_str(self) -> &'static str {
        match self {
            IgRule::GaussLegendre => "gauss-legendre",
            IgRule::RiemannLeft => "riemann-left",
            IgRule::RiemannRight => "riemann-right",
            IgRule::RiemannMiddle => "riemann-middle",
            IgRule::RiemannTrapezoid => "riemann-trapezoid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            IgRule::GaussLegendre,
            IgRule::RiemannLeft,
            IgRule::RiemannRight,
            IgRule::RiemannMiddle,
            IgRule::RiemannTrapezoid,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Points α on [0, 1] and their weights, as Captum's `approximation_parameters`
    /// makes them: Gauss–Legendre nodes mapped to [0, 1] with halved weights; Riemann
    /// points from a float32 `torch.linspace` (so rounded to float32), all weights `1/n`,
    /// and for the trapezoid the two end weights halved — Captum's trapezoid weights sum
    /// to `(n − 1)/n`, not 1, and leukex keeps that so that its maps equal Captum's.
    pub fn nodes(self, n: usize) -> (Vec<f64>, Vec<f64>) {
        assert!(n >= 1, "at least one step");
        let nf = n as f64;
        let linspace = |start: f64, end: f64| -> Vec<f64> {
            if n == 1 {
                return vec![start as f32 as f64];
            }
            (0..n)
                .map(|i| (start + (end - start) * i as f64 / (nf - 1.0)) as f32 as f64)
                .collect()
        };
        let mut weights = vec![1.0 / nf; n];
        let alphas = match self {
            IgRule::GaussLegendre => {
                let (x, w) = gauss_legendre(n);
                weights = w.iter().map(|w| 0.5 * w).collect();
                x.iter().map(|x| 0.5 * (x + 1.0)).collect()
            }
            IgRule::RiemannLeft => linspace(0.0, 1.0 - 1.0 / nf),
            IgRule::RiemannRight => linspace(1.0 / nf, 1.0),
            IgRule::RiemannMiddle => linspace(0.5 / nf, 1.0 - 0.5 / nf),
            IgRule::RiemannTrapezoid => {
                assert!(n >= 2, "the trapezoid rule needs at least two steps");
                weights[0] /= 2.0;
                weights[n - 1] /= 2.0;
                linspace(0.0, 1.0)
            }
        };
        (alphas, weights)
    }
}

/// Nodes (ascending) and weights of the n-point Gauss–Legendre rule on [−1, 1]
/// (Newton's method on the Legendre polynomial, as `numpy.polynomial.legendre.leggauss`
/// refines its roots).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n {
        // Tricomi's initial guess for the i-th root, descending.
        let mut r = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, r);
            dp = d;
            let step = p / d;
            r -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        let (_, d) = legendre(n, r);
        dp = if d != 0.0 { d } else { dp };
        x[n - 1 - i] = r;
        w[n - 1 - i] = 2.0 / ((1.0 - r * r) * dp * dp);
    }
    (x, w)
}

/// P_n(x) and P_n'(x) by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    let d = n as f64 * (x * p1 - p0) / (x * x - 1.0);
    (p1, d)
}

/// Integrated Gradients from `baseline` (zeros when `None`):
/// `(x − b) ⊙ Σ_k w_k ∇f(b + α_k (x − b))` (Captum `IntegratedGradients`).
pub fn integrated_gradients(
    model: &Classifier,
    x: Tensor<4>,
    baseline: Option<Tensor<4>>,
    targets: &[usize],
    steps: usize,
    rule: IgRule,
    score: Score,
) -> Tensor<4> {
    let b = baseline.unwrap_or_else(|| x.zeros_like());
    let delta = x - b.clone();
    let (alphas, weights) = rule.nodes(steps);
    let mut sum = delta.zeros_like();
    for (a, w) in alphas.iter().zip(&weights) {
        let point = b.clone() + delta.clone() * *a;
        sum = sum + gradient_with_logits(model, point, targets, score).0 * *w;
    }
    delta * sum
}

/// SmoothGrad: the mean gradient over `noise.len()` noisy copies `x + noise[s]` (Captum
/// `NoiseTunnel(Saliency(abs=False), nt_type="smoothgrad")` when given Captum's noise).
pub fn smoothgrad_with_noise(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    noise: &[Tensor<4>],
    score: Score,
) -> Tensor<4> {
    assert!(!noise.is_empty(), "SmoothGrad needs at least one sample");
    let mut sum = x.zeros_like();
    for n in noise {
        sum = sum + gradient_with_logits(model, x.clone() + n.clone(), targets, score).0;
    }
    sum / noise.len() as f64
}

/// Gaussian noise of standard deviation `sigma` (input units, Captum's `stdevs`) for
/// SmoothGrad, `samples` tensors shaped like `x`, from a ChaCha8 stream seeded with `seed`.
pub fn smoothgrad_noise(x: &Tensor<4>, samples: usize, sigma: f64, seed: u64) -> Vec<Tensor<4>> {
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f64, sigma.max(0.0)).expect("finite sigma");
    (0..samples)
        .map(|_| {
            let data: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(data, dims), &x.device()).cast(x.dtype())
        })
        .collect()
}

/// SmoothGrad with seeded noise ([`smoothgrad_noise`]).
pub fn smoothgrad(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    samples: usize,
    sigma: f64,
    seed: u64,
    score: Score,
) -> Tensor<4> {
    let noise = smoothgrad_noise(&x, samples, sigma, seed);
    smoothgrad_with_noise(model, x, targets, &noise, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        // An n-point rule is exact up to degree 2n - 1.
        for n in [1, 2, 5, 16, 50] {
            let (x, w) = gauss_legendre(n);
            assert!(x.windows(2).all(|p| p[0] < p[1]), "ascending nodes");
            let deg = 2 * n - 1;
            let got: f64 = x
                .iter()
                .zip(&w)
                .map(|(x, w)| w * x.powi(deg as i32 - 1))
                .sum();
            // ∫_{-1}^{1} x^(deg-1) dx with deg-1 even = 2/deg.
            assert!((got - 2.0 / deg as f64).abs() < 1e-12, "n={n}: {got}");
            assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        }
        // numpy.polynomial.legendre.leggauss(3)
        let (x, w) = gauss_legendre(3);
        assert!((x[0] + 0.774_596_669_241_483_4).abs() < 1e-15);
        assert!((w[1] - 8.0 / 9.0).abs() < 1e-15);
    }

    #[test]
    fn path_weights_are_captums() {
        for r in [
            IgRule::RiemannLeft,
            IgRule::RiemannRight,
            IgRule::RiemannMiddle,
            IgRule::GaussLegendre,
        ] {
            let (a, w) = r.nodes(7);
            assert_eq!(a.len(), 7);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{r:?}");
            assert!(a.iter().all(|&a| (0.0..=1.0).contains(&a)));
        }
        // Captum's trapezoid: 1/n with halved ends, summing to (n - 1)/n.
        let (a, w) = IgRule::RiemannTrapezoid.nodes(16);
        assert_eq!(w[0], 1.0 / 32.0);
        assert_eq!(w[1], 1.0 / 16.0);
        assert!((w.iter().sum::<f64>() - 15.0 / 16.0).abs() < 1e-12);
        assert_eq!((a[0], a[15]), (0.0, 1.0));
        assert_eq!(a[1], (1.0f64 / 15.0) as f32 as f64);
    }
}
