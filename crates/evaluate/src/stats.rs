//! Statistics for comparing methods on the same images: seeded bootstrap
//! confidence intervals, the Wilcoxon signed-rank test, the Friedman test
//! and Holm's correction, each equal to SciPy 1.17 / statsmodels 0.15 on
//! fixtures with ties and zero differences.

use rand::{Rng, SeedableRng};
use serde::Serialize;

// ---------------------------------------------------------------- special functions

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // reflection
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        1.0 - gamma_p_series(a, x)
    } else {
        gamma_q_cf(a, x)
    }
}

fn gamma_p_series(a: f64, x: f64) -> f64 {
    let mut sum = 1.0 / a;
    let mut term = sum;
    let mut ap = a;
    for _ in 0..10_000 {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * 1e-17 {
            break;
        }
    }
    sum * (-x + a * x.ln() - ln_gamma(a)).exp()
}

fn gamma_q_cf(a: f64, x: f64) -> f64 {
    // Modified Lentz for the continued fraction of Γ(a, x).
    let tiny = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / tiny;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < tiny {
            d = tiny;
        }
        c = b + an / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// Complementary error function, via erfc(x) = Q(1/2, x²) for x ≥ 0.
pub fn erfc(x: f64) -> f64 {
    if x >= 0.0 {
        gamma_q(0.5, x * x)
    } else {
        2.0 - gamma_q(0.5, x * x)
    }
}

/// Standard normal survival function P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Chi-square survival function with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

// ---------------------------------------------------------------- ranks

/// Average ranks (1-based), as `scipy.stats.rankdata(method="average")`,
/// and the sizes of the tie groups (only groups of two or more).
pub fn average_ranks(x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].partial_cmp(&x[b]).expect("no NaN"));
    let mut ranks = vec![0.0; x.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && x[idx[j]] == x[idx[i]] {
            j += 1;
        }
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        if j - i > 1 {
            ties.push(j - i);
        }
        i = j;
    }
    (ranks, ties)
}

// ---------------------------------------------------------------- bootstrap

/// A mean with its percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Percentile bootstrap CI of the mean: `resamples` resamples with
/// replacement drawn from ChaCha8 seeded with `seed`, interval = the
/// (1−level)/2 and (1+level)/2 quantiles of the resampled means (linear
/// interpolation, NumPy's default). Deterministic for a seed. `None` for an
/// empty sample.
pub fn bootstrap_mean_ci(x: &[f64], level: f64, resamples: usize, seed: u64) -> Option<MeanCi> {
    if x.is_empty() {
        return None;
    }
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| x[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| {
        let h = p * (means.len() - 1) as f64;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(means.len() - 1);
        means[lo] + (h - lo as f64) * (means[hi] - means[lo])
    };
    Some(MeanCi {
        n,
        mean,
        lo: q((1.0 - level) / 2.0),
        hi: q((1.0 + level) / 2.0),
    })
}

// ---------------------------------------------------------------- Wilcoxon

/// How zero differences are treated (SciPy's `zero_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroMethod {
    /// Drop zero differences (SciPy's default).
    Wilcox,
    /// Rank zeros, then drop them from the statistic (Pratt 1959).
    Pratt,
    /// Rank zeros and split their ranks between both sides.
    Zsplit,
}

/// Which p-value computation was used (SciPy `method="auto"` picks one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WilcoxonMethod {
    Exact,
    Permutation,
    Asymptotic,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WilcoxonResult {
    /// min(W+, W−), as SciPy reports for the two-sided test.
    pub statistic: f64,
    pub pvalue: f64,
    pub method: WilcoxonMethod,
    /// Pairs left after dropping zeros (`wilcox`) or all pairs.
    pub n: usize,
}

/// Two-sided paired Wilcoxon signed-rank test of `x - y`, as
/// `scipy.stats.wilcoxon(x, y, zero_method, correction, method="auto")` in
/// SciPy 1.17: more than 50 pairs → normal approximation; otherwise exact
/// null distribution when there are neither ties nor zeros, an exhaustive
/// sign-flip permutation test when there are and n ≤ 13, else the normal
/// approximation (with tie correction). `None` when no difference is left.
pub fn wilcoxon(
    x: &[f64],
    y: &[f64],
    zero_method: ZeroMethod,
    correction: bool,
) -> Option<WilcoxonResult> {
    assert_eq!(x.len(), y.len());
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    let total = d.len();
    let n_zero = d.iter().filter(|&&v| v == 0.0).count();
    let st = wilcoxon_statistic(&d, zero_method);
    if st.count == 0 {
        return None;
    }
    let method = if total > 50 {
        WilcoxonMethod::Asymptotic
    } else if !(st.has_ties || n_zero > 0) {
        WilcoxonMethod::Exact
    } else if total <= 13 {
        WilcoxonMethod::Permutation
    } else {
        WilcoxonMethod::Asymptotic
    };
    let pvalue = match method {
        WilcoxonMethod::Asymptotic => {
            let mut z = (st.r_plus - st.mn) / st.se;
            if correction {
                z -= z.signum() * 0.5 / st.se;
            }
            (2.0 * normal_sf(z.abs())).min(1.0)
        }
        WilcoxonMethod::Exact => {
            let pmf = wilcoxon_pmf(st.count);
            let cdf = |k: f64| pmf[..=(k as usize).min(pmf.len() - 1)].iter().sum::<f64>();
            let sf = |k: f64| pmf[(k as usize).min(pmf.len())..].iter().sum::<f64>();
            (2.0 * sf(st.r_plus.floor()).min(cdf(st.r_plus.ceil()))).clamp(0.0, 1.0)
        }
        WilcoxonMethod::Permutation => {
            let obs = st.r_plus;
            let gamma = (f64::EPSILON * 100.0 * obs).abs();
            let (mut le, mut ge) = (0u64, 0u64);
            let m = 1u64 << total;
            let mut flipped = d.clone();
            for signs in 0..m {
                for (i, v) in flipped.iter_mut().enumerate() {
                    *v = if signs >> i & 1 == 1 { -d[i] } else { d[i] };
                }
                let r = wilcoxon_statistic(&flipped, zero_method).r_plus;
                le += (r <= obs + gamma) as u64;
                ge += (r >= obs - gamma) as u64;
            }
            (2.0 * (le.min(ge) as f64) / m as f64).clamp(0.0, 1.0)
        }
    };
    Some(WilcoxonResult {
        statistic: st.r_plus.min(st.r_minus),
        pvalue,
        method,
        n: st.count,
    })
}

struct WStat {
    r_plus: f64,
    r_minus: f64,
    mn: f64,
    se: f64,
    count: usize,
    has_ties: bool,
}

fn wilcoxon_statistic(d: &[f64], zm: ZeroMethod) -> WStat {
    let kept: Vec<f64> = match zm {
        ZeroMethod::Wilcox => d.iter().copied().filter(|&v| v != 0.0).collect(),
        _ => d.to_vec(),
    };
    let count = kept.len();
    let absd: Vec<f64> = kept.iter().map(|v| v.abs()).collect();
    let (r, ties) = average_ranks(&absd);
    let mut r_plus: f64 = kept
        .iter()
        .zip(&r)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| r)
        .sum();
    let mut r_minus: f64 = kept
        .iter()
        .zip(&r)
        .filter(|(v, _)| **v < 0.0)
        .map(|(_, r)| r)
        .sum();
    let has_ties = !ties.is_empty();
    let n_zero_kept = kept.iter().filter(|&&v| v == 0.0).count() as f64;
    if zm == ZeroMethod::Zsplit {
        let rz: f64 = kept
            .iter()
            .zip(&r)
            .filter(|(v, _)| **v == 0.0)
            .map(|(_, r)| r)
            .sum::<f64>()
            / 2.0;
        r_plus += rz;
        r_minus += rz;
    }
    let c = count as f64;
    let mut mn = c * (c + 1.0) * 0.25;
    let mut se = c * (c + 1.0) * (2.0 * c + 1.0);
    let mut tie_correct: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
    if zm == ZeroMethod::Pratt {
        let z = n_zero_kept;
        mn -= z * (z + 1.0) * 0.25;
        se -= z * (z + 1.0) * (2.0 * z + 1.0);
        // the zeros' tie group (the smallest |d|) is left out of the correction
        if z >= 2.0 {
            tie_correct -= z * z * z - z;
        }
    }
    let se = ((se - tie_correct / 2.0) / 24.0).sqrt();
    WStat {
        r_plus,
        r_minus,
        mn,
        se,
        count,
        has_ties,
    }
}

/// Null distribution of W+ for n pairs without ties: P(W+ = k), k = 0..n(n+1)/2.
fn wilcoxon_pmf(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut c = vec![0f64; max + 1];
    c[0] = 1.0;
    for i in 1..=n {
        for k in (i..=max).rev() {
            c[k] += c[k - i];
        }
    }
    let total = 2f64.powi(n as i32);
    c.into_iter().map(|v| v / total).collect()
}

// ---------------------------------------------------------------- Friedman

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FriedmanResult {
    pub statistic: f64,
    pub pvalue: f64,
    pub blocks: usize,
    pub groups: usize,
}

/// Friedman test of `groups` treatments over the same blocks (images),
/// `data[g][b]`, with SciPy's tie correction
/// (`scipy.stats.friedmanchisquare(*data)`). Needs ≥ 3 groups and ≥ 1 block;
/// `None` otherwise or when every block is one big tie.
pub fn friedman(data: &[Vec<f64>]) -> Option<FriedmanResult> {
    let k = data.len();
    if k < 3 {
        return None;
    }
    let n = data[0].len();
    if n == 0 || data.iter().any(|g| g.len() != n) {
        return None;
    }
    let mut rank_sums = vec![0.0; k];
    let mut ties = 0.0;
    for b in 0..n {
        let row: Vec<f64> = data.iter().map(|g| g[b]).collect();
        let (r, t) = average_ranks(&row);
        for (s, v) in rank_sums.iter_mut().zip(r) {
            *s += v;
        }
        ties += t.iter().map(|&t| (t * (t * t - 1)) as f64).sum::<f64>();
    }
    let (kf, nf) = (k as f64, n as f64);
    let c = 1.0 - ties / (kf * (kf * kf - 1.0) * nf);
    if c <= 0.0 {
        return None;
    }
    let ssbn: f64 = rank_sums.iter().map(|s| s * s).sum();
    let chisq = (12.0 / (kf * nf * (kf + 1.0)) * ssbn - 3.0 * nf * (kf + 1.0)) / c;
    Some(FriedmanResult {
        statistic: chisq,
        pvalue: chi2_sf(chisq, kf - 1.0),
        blocks: n,
        groups: k,
    })
}

// ---------------------------------------------------------------- Holm

/// Holm's step-down adjusted p-values, as
/// `statsmodels.stats.multitest.multipletests(p, method="holm")[1]`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| p[a].partial_cmp(&p[b]).unwrap());
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        running = running.max(p[i] * (m - rank) as f64);
        out[i] = running.min(1.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_functions_match_scipy() {
        // scipy.special / scipy.stats values
        assert!((normal_sf(1.959963984540054) - 0.025).abs() < 1e-15);
        assert!((normal_sf(-1.0) - 0.8413447460685429).abs() < 1e-15);
        assert!((normal_sf(8.0) / 6.22096057427174e-16 - 1.0).abs() < 1e-12);
        assert!((chi2_sf(3.0, 2.0) - 0.22313016014842982).abs() < 1e-15);
        assert!((chi2_sf(20.0, 7.0) / 0.005569683072945574 - 1.0).abs() < 1e-12);
        assert!((ln_gamma(10.0) - 362880f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_deterministic_and_covers_the_true_mean() {
        let x: Vec<f64> = (0..60).map(|i| (i % 7) as f64).collect();
        let a = bootstrap_mean_ci(&x, 0.95, 500, 3).unwrap();
        assert_eq!(a, bootstrap_mean_ci(&x, 0.95, 500, 3).unwrap());
        assert!(a.lo < a.mean && a.mean < a.hi);
        // Coverage on a known distribution: 95 % CIs of the mean of 60
        // uniform(0,1) draws contain 0.5 in roughly 95 % of 200 trials.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut hits = 0;
        for t in 0..200 {
            let s: Vec<f64> = (0..60).map(|_| rng.random::<f64>()).collect();
            let ci = bootstrap_mean_ci(&s, 0.95, 400, t).unwrap();
            hits += (ci.lo <= 0.5 && 0.5 <= ci.hi) as usize;
        }
        assert!((180..=198).contains(&hits), "coverage {hits}/200");
    }

    #[test]
    fn holm_multiplies_by_the_remaining_count_and_keeps_order() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert_eq!(adj, vec![0.04, 0.09, 0.09, 0.5]);
    }
}
