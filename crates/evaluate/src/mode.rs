//! Which pixels count as "relevant": the paper's rule and the corrected ones.

use crate::colormap::{Colormap, innvestigate_indices, matlab_indices};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// How the paper's tools rendered a heat map before its red channel was
/// thresholded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rendering {
    /// iNNvestigate `heatmap`: channel sum, /absmax, (x+1)/2, `seismic`.
    Innvestigate,
    /// MATLAB `imagesc` (min–max autoscale) with `jet(256)`.
    Matlab,
}

impl Rendering {
    /// The paper rendered Grad-CAM maps in MATLAB and everything else with
    /// iNNvestigate; CAM-family method ids (`grad-cam`, `grad-cam++`,
    /// `score-cam`, `cam`, ...) get MATLAB's jet.
    pub fn for_method(method_id: &str) -> Rendering {
        let m = method_id.to_ascii_lowercase();
        if m == "cam" || m.contains("cam") {
            Rendering::Matlab
        } else {
            Rendering::Innvestigate
        }
    }

    pub fn colormap(self) -> &'static Colormap {
        static SEISMIC: OnceLock<Colormap> = OnceLock::new();
        static JET: OnceLock<Colormap> = OnceLock::new();
        match self {
            Rendering::Innvestigate => SEISMIC.get_or_init(Colormap::seismic),
            Rendering::Matlab => JET.get_or_init(Colormap::matlab_jet),
        }
    }

    /// The red value of every pixel of the rendered map.
    pub fn red_channel(self, values: &[f32]) -> Vec<f64> {
        let cm = self.colormap();
        let idx = match self {
            Rendering::Innvestigate => innvestigate_indices(values),
            Rendering::Matlab => matlab_indices(values, Colormap::N),
        };
        idx.into_iter().map(|i| cm.red(i as usize)).collect()
    }
}

/// A rule that selects the relevant pixels of a map (or, for `Mass`,
/// weighs them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "String")]
pub enum Mode {
    /// The paper: red channel of the rendered image above its mean. `None`
    /// chooses the rendering from the method id ([`Rendering::for_method`]).
    Paper(Option<Rendering>),
    /// Relevance above the map's mean.
    RawMean,
    /// Relevance above zero.
    Positive,
    /// The `k` % most relevant pixels (ties: see [`crate::rank`]).
    TopK(f64),
    /// Relevance above Otsu's threshold (256 bins between min and max, as
    /// scikit-image's `threshold_otsu`).
    Otsu,
    /// No selection: each class's share of the positive relevance.
    Mass,
}

impl Mode {
    /// The default modes: paper, raw-mean, positive, top-5, top-10, top-20,
    /// otsu, mass.
    pub fn defaults() -> Vec<Mode> {
        vec![
            Mode::Paper(None),
            Mode::RawMean,
            Mode::Positive,
            Mode::TopK(5.0),
            Mode::TopK(10.0),
            Mode::TopK(20.0),
            Mode::Otsu,
            Mode::Mass,
        ]
    }

    /// Weighted modes report summed relevance, not pixel counts.
    pub fn is_mass(self) -> bool {
        matches!(self, Mode::Mass)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Paper(None) => f.write_str("paper"),
            Mode::Paper(Some(Rendering::Innvestigate)) => f.write_str("paper-innvestigate"),
            Mode::Paper(Some(Rendering::Matlab)) => f.write_str("paper-matlab"),
            Mode::RawMean => f.write_str("raw-mean"),
            Mode::Positive => f.write_str("positive"),
            Mode::TopK(k) => write!(f, "top-{k}"),
            Mode::Otsu => f.write_str("otsu"),
            Mode::Mass => f.write_str("mass"),
        }
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        m.to_string()
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "paper" => Mode::Paper(None),
            "paper-innvestigate" | "paper-seismic" => Mode::Paper(Some(Rendering::Innvestigate)),
            "paper-matlab" | "paper-jet" => Mode::Paper(Some(Rendering::Matlab)),
            "raw-mean" | "mean" => Mode::RawMean,
            "positive" => Mode::Positive,
            "otsu" => Mode::Otsu,
            "mass" => Mode::Mass,
            _ => {
                let k = t
                    .strip_prefix("top-")
                    .and_then(|k| k.trim_end_matches('%').parse::<f64>().ok())
                    .filter(|k| *k > 0.0 && *k <= 100.0);
                match k {
                    Some(k) => Mode::TopK(k),
                    None => {
                        return Err(format!(
                            "unknown mode `{s}`; accepted: paper, paper-innvestigate, paper-matlab, \
                             raw-mean, positive, top-K (K in (0, 100], e.g. top-10), otsu, mass"
                        ));
                    }
                }
            }
        })
    }
}

/// The pixels a mode keeps: a 0/1 weight per pixel for counting modes, the
/// positive relevance for `mass`.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    Pixels(Vec<bool>),
    Weights(Vec<f64>),
}

/// Selects the relevant pixels of `values` (already checked finite).
/// `method_id` resolves `Paper(None)`; `order` is the descending rank order
/// if the caller has it (top-k reuses it instead of sorting again).
pub fn select(mode: Mode, values: &[f32], method_id: &str, order: Option<&[u32]>) -> Selection {
    match mode {
        Mode::Paper(r) => {
            let r = r.unwrap_or_else(|| Rendering::for_method(method_id));
            let red = r.red_channel(values);
            let mean = red.iter().sum::<f64>() / red.len() as f64;
            Selection::Pixels(red.iter().map(|&v| v > mean).collect())
        }
        Mode::RawMean => {
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
            Selection::Pixels(values.iter().map(|&v| v as f64 > mean).collect())
        }
        Mode::Positive => Selection::Pixels(values.iter().map(|&v| v > 0.0).collect()),
        Mode::TopK(pct) => {
            let k = top_k_count(pct, values.len());
            let owned;
            let order = match order {
                Some(o) => o,
                None => {
                    owned = crate::rank::descending_order(values);
                    &owned
                }
            };
            let mut keep = vec![false; values.len()];
            for &i in &order[..k] {
                keep[i as usize] = true;
            }
            Selection::Pixels(keep)
        }
        Mode::Otsu => {
            let t = otsu_threshold(values);
            Selection::Pixels(values.iter().map(|&v| v as f64 > t).collect())
        }
        Mode::Mass => Selection::Weights(values.iter().map(|&v| (v as f64).max(0.0)).collect()),
    }
}

/// Number of pixels in the top `pct` %: ceil(pct / 100 · n), so any
/// positive percentage keeps at least one pixel.
pub fn top_k_count(pct: f64, n: usize) -> usize {
    ((pct / 100.0 * n as f64).ceil() as usize).clamp(0, n)
}

/// scikit-image `threshold_otsu(image, nbins=256)`: histogram of 256 equal
/// bins between min and max, threshold = centre of the bin that maximises
/// the between-class variance (first maximum). A constant map returns its
/// value, so nothing lies above it.
pub fn otsu_threshold(values: &[f32]) -> f64 {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v as f64), hi.max(v as f64))
        });
    if lo >= hi {
        return lo;
    }
    let width = otsu_width(lo, hi);
    let mut hist = [0f64; OTSU_BINS];
    for &v in values {
        hist[otsu_bin(v, lo, width)] += 1.0;
    }
    otsu_from_histogram(&hist, lo, width)
}

/// Number of histogram bins of [`otsu_threshold`].
pub(crate) const OTSU_BINS: usize = 256;

/// Bin width of [`otsu_threshold`] for a map spanning `lo..=hi`.
#[inline]
pub(crate) fn otsu_width(lo: f64, hi: f64) -> f64 {
    (hi - lo) / OTSU_BINS as f64
}

/// Bin of `v` in [`otsu_threshold`]'s histogram; non-decreasing in `v`.
#[inline]
pub(crate) fn otsu_bin(v: f32, lo: f64, width: f64) -> usize {
    (((v as f64 - lo) / width) as usize).min(OTSU_BINS - 1)
}

/// The threshold from a histogram built with [`otsu_bin`] (shared by the
/// per-pixel reference and the fused evaluation, so both agree exactly).
pub(crate) fn otsu_from_histogram(hist: &[f64; OTSU_BINS], lo: f64, width: f64) -> f64 {
    let centre = |i: usize| lo + (i as f64 + 0.5) * width;
    // weight1/mean1 over bins 0..=i, weight2/mean2 over bins i+1..
    let total_w: f64 = hist.iter().sum();
    let total_m: f64 = hist.iter().enumerate().map(|(i, h)| h * centre(i)).sum();
    let (mut w1, mut m1) = (0.0, 0.0);
    let (mut best, mut best_i) = (f64::NEG_INFINITY, 0);
    for (i, &h) in hist.iter().enumerate().take(OTSU_BINS - 1) {
        w1 += h;
        m1 += h * centre(i);
        let w2 = total_w - w1;
        if w1 == 0.0 || w2 == 0.0 {
            continue;
        }
        let d = m1 / w1 - (total_m - m1) / w2;
        let var = w1 * w2 * d * d;
        if var > best {
            best = var;
            best_i = i;
        }
    }
    centre(best_i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_back() {
        for s in [
            "paper",
            "paper-innvestigate",
            "paper-matlab",
            "raw-mean",
            "positive",
            "top-5",
            "top-12.5",
            "otsu",
            "mass",
        ] {
            assert_eq!(s.parse::<Mode>().unwrap().to_string(), s);
        }
        assert!("top-0".parse::<Mode>().is_err());
        assert!("redness".parse::<Mode>().unwrap_err().contains("accepted"));
    }

    #[test]
    fn cam_methods_get_matlab_jet_and_the_rest_seismic() {
        for m in ["grad-cam", "grad-cam++", "score-cam", "GradCAM"] {
            assert_eq!(Rendering::for_method(m), Rendering::Matlab, "{m}");
        }
        for m in ["lrp-epsilon", "deep-taylor", "input-x-gradient"] {
            assert_eq!(Rendering::for_method(m), Rendering::Innvestigate, "{m}");
        }
    }

    #[test]
    fn top_k_keeps_ceil_of_the_percentage() {
        assert_eq!(top_k_count(10.0, 224 * 224), 5018);
        assert_eq!(top_k_count(5.0, 10), 1);
        assert_eq!(top_k_count(100.0, 10), 10);
    }

    #[test]
    fn otsu_splits_a_bimodal_map_between_its_modes() {
        let mut v = vec![0.0f32; 100];
        v.extend(vec![10.0f32; 50]);
        let t = otsu_threshold(&v);
        assert!(t > 0.0 && t < 10.0, "{t}");
        assert_eq!(otsu_threshold(&[3.0, 3.0]), 3.0);
    }
}
