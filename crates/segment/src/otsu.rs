//! Otsu's threshold on any selection of pixel values, with the
//! separability that says how well it splits them. imageproc's
//! `otsu_level` works on a whole 8-bit image only; segmentation needs it
//! inside a region (e.g. nucleus against cytoplasm within the cell) and on
//! stain densities, which are real numbers.

/// Histogram bins between the smallest and largest value.
const BINS: usize = 256;

/// The threshold that best splits the values into two classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Otsu {
    /// Values above this belong to the upper class.
    pub threshold: f32,
    /// Between-class variance over total variance (Otsu's η), in [0, 1]:
    /// 1 for two spikes, near 0.6 or below for one bell curve. How clearly
    /// the two classes exist.
    pub separability: f32,
    pub lower_mean: f32,
    pub upper_mean: f32,
}

impl Otsu {
    /// Otsu's split of `values`; `None` when there are fewer than two
    /// distinct values.
    pub fn of(values: impl Iterator<Item = f32> + Clone) -> Option<Otsu> {
        let (lo, hi) = values
            .clone()
            .filter(|v| v.is_finite())
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
        if hi <= lo {
            return None;
        }
        let scale = BINS as f32 / (hi - lo);
        let bin = |v: f32| (((v - lo) * scale) as usize).min(BINS - 1);
        let centre = |b: usize| lo + (b as f32 + 0.5) / scale;
        let mut hist = [0f64; BINS];
        for v in values.filter(|v| v.is_finite()) {
            hist[bin(v)] += 1.0;
        }
        let total: f64 = hist.iter().sum();
        let sum: f64 = hist
            .iter()
            .enumerate()
            .map(|(b, &n)| n * centre(b) as f64)
            .sum();
        let mean = sum / total;
        let var_total: f64 = hist
            .iter()
            .enumerate()
            .map(|(b, &n)| n * (centre(b) as f64 - mean).powi(2))
            .sum::<f64>()
            / total;
        let (mut best, mut best_var) = (None, -1.0);
        let (mut n0, mut s0) = (0.0, 0.0);
        for (b, &n) in hist.iter().enumerate().take(BINS - 1) {
            n0 += n;
            s0 += n * centre(b) as f64;
            let n1 = total - n0;
            if n0 == 0.0 || n1 == 0.0 {
                continue;
            }
            let (m0, m1) = (s0 / n0, (sum - s0) / n1);
            let var_between = n0 * n1 * (m0 - m1).powi(2) / (total * total);
            if var_between > best_var {
                best_var = var_between;
                best = Some((b, m0, m1));
            }
        }
        let (b, m0, m1) = best?;
        Some(Otsu {
            threshold: lo + (b as f32 + 1.0) / scale,
            separability: if var_total > 0.0 {
                (best_var / var_total) as f32
            } else {
                0.0
            },
            lower_mean: m0 as f32,
            upper_mean: m1 as f32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_spikes_split_between_them_with_separability_one() {
        let v: Vec<f32> = [0.2f32; 30].iter().chain(&[0.9f32; 10]).copied().collect();
        let o = Otsu::of(v.iter().copied()).unwrap();
        assert!(o.threshold > 0.2 && o.threshold <= 0.9, "{o:?}");
        assert!((o.separability - 1.0).abs() < 1e-6, "{o:?}");
        assert!((o.lower_mean - 0.2).abs() < 0.01 && (o.upper_mean - 0.9).abs() < 0.01);
        assert!(Otsu::of([1.0f32; 5].iter().copied()).is_none());
    }

    #[test]
    fn a_uniform_spread_is_split_in_the_middle_and_is_poorly_separable() {
        // The continuous uniform distribution has η = 3/4 at its midpoint.
        let v: Vec<f32> = (0..1000).map(|i| i as f32 / 999.0).collect();
        let o = Otsu::of(v.iter().copied()).unwrap();
        assert!((o.threshold - 0.5).abs() < 0.01, "{o:?}");
        assert!((o.separability - 0.75).abs() < 0.01, "{o:?}");
    }
}
