//! Faithfulness metrics: does removing (or adding) what a heat map calls
//! relevant change the model's output the way the map says it should?
//!
//! The crate has no deep-learning dependency: the model is a callback,
//! wrapped in a [`Classifier`], that scores a batch of images
//! (`n` images of C×H×W values, row-major, concatenated) and returns
//! `n × k` class scores (logits or probabilities, as the caller chooses);
//! the metrics read column `target`. Every perturbed copy of an image goes
//! through the callback in batches of [`Classifier::with_batch`] images
//! (default 64, Quantus's `batch_size`), never one by one.
//!
//! | metric | reference | curve | scalar | forward passes |
//! |---|---|---|---|---|
//! | [`pixel_flipping`] (deletion) | Quantus 0.6 `PixelFlipping` | score after each step | `auc` = `np.trapz(curve, dx=1)` (`return_auc_per_sample`); `deletion_auc` as RISE | ⌈C·H·W / features_in_step⌉ + 1 |
//! | [`region_perturbation`] | Quantus 0.6 `RegionPerturbation` | f(x) − f(x after k patches) | `auc` = `np.trapz(curve, dx=1)` (`get_auc_score`); `aopc` (Samek et al.) | 1 + min(regions_evaluation, ⌈H/p⌉·⌈W/p⌉) |
//! | [`insertion`] | RISE (Petsiuk et al. 2018); not in Quantus 0.6 | score from the baseline image to the full image | `auc` = `np.trapezoid(curve, dx=1/steps)` | ⌈C·H·W / features_in_step⌉ + 1 |
//! | [`road`] | Quantus 0.6 `ROAD` | still predicted as `target` after imputing the top p % pixels (plus the target score) | mean over the percentages | one per percentage (50 by default) and one sparse linear solve per percentage and channel |
//!
//! On a 3×224×224 image, `features_in_step = 1` (Quantus's default) costs
//! 150 529 forward passes; one row of pixels a step (`features_in_step =
//! 3·224`, RISE's step) costs 225.
//!
//! # Features, order and ties
//!
//! As in Quantus, an H×W map is broadcast over the C channels and the
//! *features* are the C·H·W values of the image; a C×H×W map is used as it
//! is. Features are removed (or inserted) from the largest attribution down
//! (`abs` ranks |a| instead, as Quantus's `abs=True`). Quantus first divides
//! the map by its largest |value| (`normalise=True`); that positive scale
//! does not change the order, so it is skipped here (region sums are summed
//! from the raw values: the same order up to rounding).
//!
//! **Tie-break.** Equal attributions keep their flat C×H×W index ascending
//! (`np.argsort(-a, kind="stable")` of the broadcast map): with an H×W map
//! the channel-0 copy of a pixel goes before its channel-1 copy, and equal
//! pixels go in row-major order. Quantus uses `np.argsort(-a)`, whose order
//! among equal values NumPy does not fix; the two agree on maps without ties
//! and, for H×W maps, whenever `features_in_step` is a multiple of C (every
//! step then takes whole pixels). Region perturbation orders patches by
//! their summed attribution, ties by lower patch index (`morf` descending,
//! `lerf` ascending, each stable). ROAD ranks the H×W pixels the same way.
//!
//! # Baselines
//!
//! [`Baseline`] is what a removed feature becomes, exactly as Quantus's
//! `perturb_baseline` (`quantus.helpers.utils.get_baseline_value`):
//! `black` is the **minimum of the image** (over all channels), `white` its
//! maximum, `mean` its mean, `uniform` one draw from U(low, high) — not 0
//! and 1 unless the image is so scaled. Quantus recomputes the value at
//! every step from the partly perturbed image; min and max do not move under
//! that, but `mean` does, and the mean is recomputed here too. A fixed number
//! (`zero` = 0.0) is Quantus's numeric `perturb_baseline`. One value fills
//! every feature of one step. Quantus draws `uniform` from NumPy's global
//! generator; here it comes from a ChaCha8 generator seeded with `seed`, one
//! draw per step.
//!
//! # Agreement with Quantus
//!
//! `tests/faithfulness.rs` compares every curve value and scalar with Quantus
//! 0.6 on a closed-form MLP (fixtures by `scripts/fixtures/gen_faithfulness.py`).
//! Where leukex differs:
//! * Quantus asserts `H·W % features_in_step == 0`; any step ≥ 1 is accepted
//!   here and the last step is shorter when C·H·W is not a multiple of it
//!   (what Quantus's loop would do).
//! * Quantus 0.6's ROAD fails on images with more than one channel (it indexes
//!   an H·W mask with C·H·W feature indices); leukex ranks the H·W pixels and
//!   imputes every channel of the chosen pixels, which is the ROAD paper's
//!   and Quantus's own `noisy_linear_imputation`'s intent. On one-channel
//!   images the two are the same.
//! * Quantus normalises a batch by its joint maximum; these functions take one
//!   image (no effect on the order, see above).
//! * Random region order and the noise of ROAD come from seeded ChaCha8
//!   generators, not NumPy's global one; they cannot equal Quantus bit for bit
//!   and are tested for determinism and their distribution instead.
//! * Quantus 0.6's AUC helper calls `np.trapz`, which NumPy 2.4 removed (it
//!   was an alias of `np.trapezoid`), so `return_auc_per_sample=True` raises
//!   there; the fixture script restores the alias to run Quantus's own code.
//!
//! Measured on the fixtures (float32 torch against f64 here): curves and
//! scores within 1.5e-6, AUCs within 2.3e-6 (relative), ROAD's flags equal.

use crate::error::{BoxError, EvalError, Result};
use crate::rank::descending_order;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

type PredictFn<'a> = dyn FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, BoxError> + 'a;

/// The model seen by the metrics: a batched scoring callback and the class
/// whose score is followed.
pub struct Classifier<'a> {
    predict: Box<PredictFn<'a>>,
    target: usize,
    batch: usize,
    classes: Option<usize>,
    calls: usize,
    images: usize,
}

impl std::fmt::Debug for Classifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("target", &self.target)
            .field("batch", &self.batch)
            .field("classes", &self.classes)
            .field("calls", &self.calls)
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

impl<'a> Classifier<'a> {
    /// `predict(images, n)` gets `n` images (each C×H×W, row-major,
    /// concatenated) and returns `n × k` scores, row-major, the same `k ≥ 1`
    /// at every call. Only [`road`] needs all `k` classes (it takes the
    /// argmax); the other metrics read column `target` only, so a callback
    /// that returns just the target's score (`k = 1`, `target = 0`) does for
    /// them.
    pub fn new<F, E>(target: usize, mut predict: F) -> Self
    where
        F: FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, E> + 'a,
        E: Into<BoxError>,
    {
        Classifier {
            predict: Box::new(move |x, n| predict(x, n).map_err(Into::into)),
            target,
            batch: 64,
            classes: None,
            calls: 0,
            images: 0,
        }
    }

    /// At most `batch` images per call (at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn target(&self) -> usize {
        self.target
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Callback calls so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Images scored so far (forward passes).
    pub fn images(&self) -> usize {
        self.images
    }

    fn run(&mut self, images: &[f32], n: usize) -> Result<Vec<Prediction>> {
        let out = (self.predict)(images, n).map_err(EvalError::Model)?;
        self.calls += 1;
        self.images += n;
        if out.is_empty() || out.len() % n != 0 {
            return Err(model_err(format!(
                "returned {} scores for {n} images; expected n × classes",
                out.len()
            )));
        }
        let k = out.len() / n;
        match self.classes {
            Some(c) if c != k => {
                return Err(model_err(format!(
                    "returned {k} scores per image, {c} at an earlier call"
                )));
            }
            _ => self.classes = Some(k),
        }
        if self.target >= k {
            return Err(model_err(format!(
                "target class {} but the model returns {k} scores per image",
                self.target
            )));
        }
        out.chunks(k)
            .enumerate()
            .map(|(i, row)| {
                if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                    return Err(model_err(format!(
                        "non-finite score {} (image {i} of the batch, class {j})",
                        row[j]
                    )));
                }
                // First maximum, as np.argmax.
                let top = row
                    .iter()
                    .enumerate()
                    .fold(0, |b, (j, &v)| if v > row[b] { j } else { b });
                Ok(Prediction {
                    score: row[self.target],
                    top,
                })
            })
            .collect()
    }
}

fn model_err(msg: String) -> EvalError {
    EvalError::Model(msg.into())
}

#[derive(Debug, Clone, Copy)]
struct Prediction {
    score: f32,
    top: usize,
}

/// Collects images into batches of the classifier's size.
struct Batcher<'c, 'a> {
    model: &'c mut Classifier<'a>,
    dim: usize,
    buf: Vec<f32>,
    n: usize,
    out: Vec<Prediction>,
}

impl<'c, 'a> Batcher<'c, 'a> {
    fn new(model: &'c mut Classifier<'a>, dim: usize) -> Self {
        let cap = model.batch * dim;
        Batcher {
            model,
            dim,
            buf: Vec::with_capacity(cap),
            n: 0,
            out: Vec::new(),
        }
    }

    fn push(&mut self, image: &[f32]) -> Result<()> {
        self.push_with(|slot| slot.copy_from_slice(image))
    }

    /// Appends one image written by `fill` into its slot.
    fn push_with(&mut self, fill: impl FnOnce(&mut [f32])) -> Result<()> {
        let start = self.buf.len();
        self.buf.resize(start + self.dim, 0.0);
        fill(&mut self.buf[start..]);
        self.n += 1;
        if self.n == self.model.batch {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.n > 0 {
            let p = self.model.run(&self.buf, self.n)?;
            self.out.extend(p);
            self.buf.clear();
            self.n = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Prediction>> {
        self.flush()?;
        Ok(self.out)
    }
}

/// One image, C×H×W row-major (channel first).
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub data: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl<'a> Image<'a> {
    /// Checks the size and that every value is finite.
    pub fn new(data: &'a [f32], channels: usize, height: usize, width: usize) -> Result<Self> {
        let im = Image {
            data,
            channels,
            height,
            width,
        };
        im.validate()?;
        Ok(im)
    }

    fn validate(&self) -> Result<()> {
        let (c, h, w) = (self.channels, self.height, self.width);
        if c == 0 || h == 0 || w == 0 {
            return Err(opt(format!("image of shape {c}x{h}x{w} is empty")));
        }
        if self.data.len() != c * h * w {
            return Err(opt(format!(
                "image has {} values but its shape {c}x{h}x{w} needs {}",
                self.data.len(),
                c * h * w
            )));
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(opt(format!(
                "image value {} at channel {}, y={}, x={} is not finite",
                self.data[i],
                i / (h * w),
                i % (h * w) / w,
                i % w
            )));
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    fn pixels(&self) -> usize {
        self.height * self.width
    }
}

fn opt(msg: String) -> EvalError {
    EvalError::Options(msg)
}

/// What a removed feature becomes (Quantus `perturb_baseline`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Baseline {
    /// The minimum of the image over all channels (Quantus "black").
    #[default]
    Black,
    /// The maximum of the image (Quantus "white").
    White,
    /// The mean of the (partly perturbed) image, recomputed at every step
    /// (Quantus "mean").
    Mean,
    /// One value from U(low, high) per step, seeded (Quantus "uniform",
    /// whose defaults are low 0, high 1).
    Uniform { low: f32, high: f32, seed: u64 },
    /// A fixed value (Quantus numeric `perturb_baseline`; "zero" is 0).
    Value { value: f32 },
}

impl Baseline {
    /// Parses `black`, `white`, `mean`, `zero`, a number, `uniform`
    /// (U(0, 1), seed 0) or `uniform:LOW:HIGH[:SEED]`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            opt(format!(
                "unknown baseline `{s}`; use black (image minimum), white (maximum), mean, zero, \
                 a number, uniform or uniform:LOW:HIGH[:SEED]"
            ))
        };
        let l = s.to_ascii_lowercase();
        if let Some(rest) = l.strip_prefix("uniform:") {
            let p: Vec<&str> = rest.split(':').collect();
            if !(2..=3).contains(&p.len()) {
                return Err(bad());
            }
            let low: f32 = p[0].parse().map_err(|_| bad())?;
            let high: f32 = p[1].parse().map_err(|_| bad())?;
            let seed = p.get(2).map_or(Ok(0), |v| v.parse()).map_err(|_| bad())?;
            return Ok(Baseline::Uniform { low, high, seed });
        }
        Ok(match l.as_str() {
            "black" => Baseline::Black,
            "white" => Baseline::White,
            "mean" => Baseline::Mean,
            "zero" => Baseline::Value { value: 0.0 },
            "uniform" => Baseline::Uniform {
                low: 0.0,
                high: 1.0,
                seed: 0,
            },
            l => Baseline::Value {
                value: l.parse().map_err(|_| bad())?,
            },
        })
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Baseline::Uniform { low, high, .. } if !(low.is_finite() && high.is_finite()) => {
                Err(opt(format!(
                    "uniform baseline bounds {low}, {high} must be finite"
                )))
            }
            Baseline::Uniform { low, high, .. } if low > high => Err(opt(format!(
                "uniform baseline low {low} is above high {high}"
            ))),
            Baseline::Value { value } if !value.is_finite() => {
                Err(opt(format!("baseline value {value} is not finite")))
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Baseline::Black => f.write_str("black"),
            Baseline::White => f.write_str("white"),
            Baseline::Mean => f.write_str("mean"),
            Baseline::Uniform { low, high, seed } => write!(f, "uniform:{low}:{high}:{seed}"),
            Baseline::Value { value } => write!(f, "{value}"),
        }
    }
}

/// The baseline value of each step, computed on the array being perturbed
/// as Quantus does (min / max / mean of its current values).
struct Fill {
    kind: Baseline,
    sum: f64,
    len: f64,
    fixed: f32,
    rng: Option<ChaCha8Rng>,
}

impl Fill {
    fn new(kind: Baseline, data: &[f32]) -> Self {
        let fixed = match kind {
            Baseline::Black => data.iter().copied().fold(f32::INFINITY, f32::min),
            Baseline::White => data.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Baseline::Value { value } => value,
            _ => 0.0,
        };
        let rng = match kind {
            Baseline::Uniform { seed, .. } => Some(ChaCha8Rng::seed_from_u64(seed)),
            _ => None,
        };
        let sum = if kind == Baseline::Mean {
            data.iter().map(|&v| v as f64).sum()
        } else {
            0.0
        };
        Fill {
            kind,
            sum,
            len: data.len() as f64,
            fixed,
            rng,
        }
    }

    /// The value for the next step. Replacing values by the minimum (or
    /// maximum) keeps it, so only `mean` and `uniform` change.
    fn next(&mut self) -> f32 {
        match self.kind {
            Baseline::Mean => (self.sum / self.len) as f32,
            Baseline::Uniform { low, high, .. } => {
                let u: f64 = self.rng.as_mut().unwrap().random();
                (low as f64 + (high as f64 - low as f64) * u) as f32
            }
            _ => self.fixed,
        }
    }

    #[inline]
    fn replace(&mut self, data: &mut [f32], i: usize, v: f32) {
        if self.kind == Baseline::Mean {
            self.sum += v as f64 - data[i] as f64;
        }
        data[i] = v;
    }
}

/// Feature values of the map: broadcast over the channels if H×W.
fn features(image: &Image, attribution: &[f32], abs: bool) -> Result<Vec<f32>> {
    let (d, hw) = (image.len(), image.pixels());
    let a: Vec<f32> = if attribution.len() == d {
        attribution.to_vec()
    } else if attribution.len() == hw {
        (0..image.channels)
            .flat_map(|_| attribution.iter().copied())
            .collect()
    } else {
        return Err(opt(format!(
            "attribution has {} values; the {}x{}x{} image needs H*W = {hw} or C*H*W = {d}",
            attribution.len(),
            image.channels,
            image.height,
            image.width
        )));
    };
    check_finite(attribution, image.height, image.width)?;
    Ok(if abs {
        a.into_iter().map(f32::abs).collect()
    } else {
        a
    })
}

fn check_finite(attribution: &[f32], height: usize, width: usize) -> Result<()> {
    if let Some(i) = attribution.iter().position(|v| !v.is_finite()) {
        let bad = attribution.iter().filter(|v| !v.is_finite()).count();
        return Err(opt(format!(
            "attribution has {bad} non-finite values (first at channel {}, y={}, x={}: {})",
            i / (height * width),
            i % (height * width) / width,
            i % width,
            attribution[i]
        )));
    }
    Ok(())
}

/// `np.trapz(y, dx=dx)`.
fn trapz(y: &[f64], dx: f64) -> f64 {
    y.windows(2).map(|w| (w[0] + w[1]) / 2.0 * dx).sum()
}

fn check_step(features_in_step: usize) -> Result<()> {
    if features_in_step == 0 {
        return Err(opt("features_in_step must be at least 1".into()));
    }
    Ok(())
}

// ------------------------------------------------------------------ pixel flipping

/// Options of [`pixel_flipping`]; defaults are Quantus's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PixelFlippingOptions {
    /// Features (C·H·W values) replaced per step (Quantus default 1).
    pub features_in_step: usize,
    pub baseline: Baseline,
    /// Rank |a| (Quantus `abs`, default false).
    pub abs: bool,
}

impl Default for PixelFlippingOptions {
    fn default() -> Self {
        PixelFlippingOptions {
            features_in_step: 1,
            baseline: Baseline::Black,
            abs: false,
        }
    }
}

/// Pixel flipping of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PixelFlipping {
    /// Target score of the unperturbed image.
    pub original: f64,
    /// Target score after each step (Quantus's curve; the unperturbed score
    /// is not part of it). Length ⌈C·H·W / features_in_step⌉.
    pub curve: Vec<f64>,
    /// `np.trapz(curve, dx=1)`: Quantus's `return_auc_per_sample=True`.
    /// Lower is better; it grows with the number of steps.
    pub auc: f64,
    /// RISE's deletion AUC: the trapezoid over `[original, curve...]` with
    /// the x axis scaled to [0, 1] (`dx = 1/steps`). Differs from `auc` by
    /// including the unperturbed point and by the 1/steps scale, so it stays
    /// in the score's range whatever the step. (RISE itself replaces whole
    /// pixels with 0; pick `features_in_step` a multiple of C and
    /// `Baseline::Value { value: 0.0 }` for that.)
    pub deletion_auc: f64,
}

/// Quantus 0.6 `PixelFlipping` (Bach et al. 2015): replaces the most
/// relevant features by the baseline, `features_in_step` at a time,
/// cumulatively, and records the target score after each step. See the
/// module docs for features, ties and baselines.
pub fn pixel_flipping(
    image: Image,
    attribution: &[f32],
    opts: &PixelFlippingOptions,
    model: &mut Classifier,
) -> Result<PixelFlipping> {
    image.validate()?;
    opts.baseline.validate()?;
    check_step(opts.features_in_step)?;
    let order = descending_order(&features(&image, attribution, opts.abs)?);
    let d = image.len();
    let fis = opts.features_in_step;
    let steps = d.div_ceil(fis);
    let mut x = image.data.to_vec();
    let mut fill = Fill::new(opts.baseline, &x);
    let mut batch = Batcher::new(model, d);
    batch.push(&x)?;
    for chunk in order.chunks(fis) {
        let v = fill.next();
        for &i in chunk {
            fill.replace(&mut x, i as usize, v);
        }
        batch.push(&x)?;
    }
    let scores: Vec<f64> = batch.finish()?.iter().map(|p| p.score as f64).collect();
    let original = scores[0];
    let curve = scores[1..].to_vec();
    debug_assert_eq!(curve.len(), steps);
    Ok(PixelFlipping {
        original,
        auc: trapz(&curve, 1.0),
        deletion_auc: trapz(&scores, 1.0 / steps as f64),
        curve,
    })
}

// ------------------------------------------------------------------ insertion

/// Options of [`insertion`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InsertionOptions {
    /// Features restored per step (default 1, as pixel flipping).
    pub features_in_step: usize,
    /// The start image: every feature set to this baseline, computed once on
    /// the original image.
    pub baseline: Baseline,
    pub abs: bool,
}

impl Default for InsertionOptions {
    fn default() -> Self {
        InsertionOptions {
            features_in_step: 1,
            baseline: Baseline::Black,
            abs: false,
        }
    }
}

/// Insertion curve of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insertion {
    /// Target score of the start image, then after each step; the last
    /// point is the original image. Length ⌈C·H·W / features_in_step⌉ + 1.
    pub curve: Vec<f64>,
    /// RISE's AUC: `np.trapezoid(curve, dx=1/steps)`, x axis in [0, 1].
    /// Higher is better.
    pub auc: f64,
}

/// Insertion (Petsiuk et al. 2018, RISE). Quantus 0.6 has no insertion
/// metric; this one is built on Quantus's pieces and tested against a
/// reference written with them (`scripts/fixtures/gen_faithfulness.py`):
/// the start image is every feature replaced by the baseline (Quantus's
/// `batch_baseline_replacement_by_indices` over all indices, so `black` is
/// the image minimum), and the features are restored from the image in the
/// order of pixel flipping (most relevant first, same ties),
/// `features_in_step` at a time. RISE starts from a blurred copy instead;
/// no blur is offered here.
pub fn insertion(
    image: Image,
    attribution: &[f32],
    opts: &InsertionOptions,
    model: &mut Classifier,
) -> Result<Insertion> {
    image.validate()?;
    opts.baseline.validate()?;
    check_step(opts.features_in_step)?;
    let order = descending_order(&features(&image, attribution, opts.abs)?);
    let d = image.len();
    let steps = d.div_ceil(opts.features_in_step);
    let v = Fill::new(opts.baseline, image.data).next();
    let mut x = vec![v; d];
    let mut batch = Batcher::new(model, d);
    batch.push(&x)?;
    for chunk in order.chunks(opts.features_in_step) {
        for &i in chunk {
            x[i as usize] = image.data[i as usize];
        }
        batch.push(&x)?;
    }
    let curve: Vec<f64> = batch.finish()?.iter().map(|p| p.score as f64).collect();
    Ok(Insertion {
        auc: trapz(&curve, 1.0 / steps as f64),
        curve,
    })
}

// ------------------------------------------------------------------ region perturbation

/// In which order the patches are perturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RegionOrder {
    /// Most relevant first (Quantus default "morf").
    Morf,
    /// Least relevant first ("lerf").
    Lerf,
    /// A random permutation from a ChaCha8 generator seeded with `seed`
    /// (Quantus: NumPy's global generator, unseeded).
    Random { seed: u64 },
}

impl RegionOrder {
    /// `morf`, `lerf`, `random` (seed 0) or `random:SEED`.
    pub fn parse(s: &str) -> Result<Self> {
        let l = s.trim().to_ascii_lowercase();
        if let Some(seed) = l.strip_prefix("random:") {
            return seed
                .parse()
                .map(|seed| RegionOrder::Random { seed })
                .map_err(|_| opt(format!("bad seed in `{s}`")));
        }
        match l.as_str() {
            "morf" => Ok(RegionOrder::Morf),
            "lerf" => Ok(RegionOrder::Lerf),
            "random" => Ok(RegionOrder::Random { seed: 0 }),
            _ => Err(opt(format!(
                "unknown region order `{s}`; use morf, lerf, random or random:SEED"
            ))),
        }
    }
}

/// Options of [`region_perturbation`]; defaults are Quantus's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegionPerturbationOptions {
    /// Side of the square patches (8, as Samek et al. and Quantus).
    pub patch_size: usize,
    pub order: RegionOrder,
    /// How many patches to perturb (Quantus default 100).
    pub regions_evaluation: usize,
    pub baseline: Baseline,
    pub abs: bool,
}

impl Default for RegionPerturbationOptions {
    fn default() -> Self {
        RegionPerturbationOptions {
            patch_size: 8,
            order: RegionOrder::Morf,
            regions_evaluation: 100,
            baseline: Baseline::Black,
            abs: false,
        }
    }
}

/// Region perturbation of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionPerturbation {
    /// Target score of the unperturbed image.
    pub original: f64,
    /// `original − score` after each perturbed patch (Quantus's curve).
    pub curve: Vec<f64>,
    /// `np.trapz(curve, dx=1)`, Quantus's `get_auc_score` for one image.
    /// With `morf`, higher is better.
    pub auc: f64,
    /// AOPC of Samek et al.: `Σ curve / (len + 1)` (the step-0 difference
    /// is 0); not in Quantus.
    pub aopc: f64,
    /// The perturbed patches in order, as indices into the patch grid
    /// (row-major, `grid[1]` patches a row).
    pub regions: Vec<usize>,
    /// Patch rows and columns of the padded image.
    pub grid: [usize; 2],
    /// Padding (top, bottom, left, right) that makes H and W multiples of
    /// the patch size (Quantus's `get_padding_size`).
    pub padding: [usize; 4],
}

/// Quantus's `get_padding_size`: (floor, ceil) halves of what is missing.
fn padding(dim: usize, patch: usize) -> (usize, usize) {
    let m = dim % patch;
    if m == 0 {
        return (0, 0);
    }
    let t = patch - m;
    (t / 2, t - t / 2)
}

/// Quantus 0.6 `RegionPerturbation` (Samek et al. 2017). The image is
/// padded to multiples of `patch_size` (edge values, split as
/// `get_padding_size`: the smaller half on top / left), the map with zeros;
/// the patches of the padded grid are ranked by their summed attribution
/// (over all channels) and perturbed one after another, every channel of the
/// patch set to the baseline computed on the whole padded image (so `mean`
/// includes the padding, as in Quantus). The padding is cropped before each
/// forward pass.
pub fn region_perturbation(
    image: Image,
    attribution: &[f32],
    opts: &RegionPerturbationOptions,
    model: &mut Classifier,
) -> Result<RegionPerturbation> {
    image.validate()?;
    opts.baseline.validate()?;
    let ps = opts.patch_size;
    if ps == 0 {
        return Err(opt("patch_size must be at least 1".into()));
    }
    if opts.regions_evaluation == 0 {
        return Err(opt("regions_evaluation must be at least 1".into()));
    }
    let (c, h, w) = (image.channels, image.height, image.width);
    let a = features(&image, attribution, opts.abs)?;
    let (pt, pb) = padding(h, ps);
    let (pl, pr) = padding(w, ps);
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    let (rows, cols) = (hp / ps, wp / ps);

    // Attribution per patch (zero padding adds nothing).
    let mut sums = vec![0.0f64; rows * cols];
    for ch in 0..c {
        for y in 0..h {
            let row = &a[(ch * h + y) * w..][..w];
            let py = (y + pt) / ps;
            for (x, &v) in row.iter().enumerate() {
                sums[py * cols + (x + pl) / ps] += v as f64;
            }
        }
    }
    let mut regions: Vec<usize> = (0..rows * cols).collect();
    match opts.order {
        RegionOrder::Morf => {
            regions.sort_by(|&i, &j| sums[j].partial_cmp(&sums[i]).unwrap().then(i.cmp(&j)))
        }
        RegionOrder::Lerf => {
            regions.sort_by(|&i, &j| sums[i].partial_cmp(&sums[j]).unwrap().then(i.cmp(&j)))
        }
        RegionOrder::Random { seed } => {
            regions.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
    }
    regions.truncate(opts.regions_evaluation);

    // Edge-padded working image.
    let mut xp = vec![0.0f32; c * hp * wp];
    for ch in 0..c {
        for yy in 0..hp {
            let y = yy.saturating_sub(pt).min(h - 1);
            let src = &image.data[(ch * h + y) * w..][..w];
            let dst = &mut xp[(ch * hp + yy) * wp..][..wp];
            for (xx, d) in dst.iter_mut().enumerate() {
                *d = src[xx.saturating_sub(pl).min(w - 1)];
            }
        }
    }
    let mut fill = Fill::new(opts.baseline, &xp);
    let mut batch = Batcher::new(model, image.len());
    batch.push(image.data)?;
    for &r in &regions {
        let (by, bx) = (r / cols, r % cols);
        let v = fill.next();
        for ch in 0..c {
            for yy in by * ps..(by + 1) * ps {
                let base = (ch * hp + yy) * wp;
                for xx in bx * ps..(bx + 1) * ps {
                    fill.replace(&mut xp, base + xx, v);
                }
            }
        }
        batch.push_with(|slot| {
            for ch in 0..c {
                for y in 0..h {
                    let src = &xp[(ch * hp + y + pt) * wp + pl..][..w];
                    slot[(ch * h + y) * w..][..w].copy_from_slice(src);
                }
            }
        })?;
    }
    let scores = batch.finish()?;
    let original = scores[0].score as f64;
    let curve: Vec<f64> = scores[1..]
        .iter()
        .map(|p| original - p.score as f64)
        .collect();
    Ok(RegionPerturbation {
        original,
        auc: trapz(&curve, 1.0),
        aopc: curve.iter().sum::<f64>() / (curve.len() + 1) as f64,
        curve,
        regions,
        grid: [rows, cols],
        padding: [pt, pb, pl, pr],
    })
}

// ------------------------------------------------------------------ ROAD

/// Options of [`road`]; defaults are Quantus's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoadOptions {
    /// Percentages of the H·W pixels imputed (default 1, 3, …, 99).
    pub percentages: Vec<f64>,
    /// Standard deviation of the Gaussian noise added to the imputed values
    /// (Quantus default 0.01).
    pub noise: f64,
    /// Seed of the noise: percentage `i` draws from ChaCha8 seeded with
    /// `seed`, stream `i`.
    pub seed: u64,
    pub abs: bool,
}

impl Default for RoadOptions {
    fn default() -> Self {
        RoadOptions {
            percentages: (1..100).step_by(2).map(f64::from).collect(),
            noise: 0.01,
            seed: 0,
            abs: false,
        }
    }
}

/// ROAD of one image, one entry per percentage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Road {
    pub percentages: Vec<f64>,
    /// Pixels imputed: `⌊H·W·p/100⌋`.
    pub pixels: Vec<usize>,
    /// Whether the imputed image is still classified as `target` (argmax of
    /// the scores, first maximum on ties): Quantus's ROAD value for one image.
    pub correct: Vec<bool>,
    /// The target score of each imputed image (not in Quantus).
    pub scores: Vec<f64>,
    /// Mean of `correct`. Quantus returns the per-percentage accuracy
    /// averaged over its first batch of images; for one image that is
    /// `correct`, and this is its mean over the percentages. Lower is better
    /// (MoRF).
    pub accuracy: f64,
}

/// Quantus 0.6 `ROAD` (Rong et al. 2022), most relevant first: for each
/// percentage p, independently, the top `⌊H·W·p/100⌋` pixels of the map
/// (H×W; ties by lower index) are replaced, in every channel, by noisy
/// linear imputation ([`noisy_linear_imputation`]) from the original image,
/// and the imputed image is classified.
///
/// **Noise.** Quantus adds `noise · N(0,1)` from NumPy's global generator,
/// which Rust cannot reproduce; the equality test against Quantus therefore
/// runs with `noise = 0`, and the seeded noise is tested for determinism,
/// mean 0 and standard deviation `noise` instead.
pub fn road(
    image: Image,
    attribution: &[f32],
    opts: &RoadOptions,
    model: &mut Classifier,
) -> Result<Road> {
    image.validate()?;
    let hw = image.pixels();
    if attribution.len() != hw {
        return Err(opt(format!(
            "ROAD ranks pixels: the attribution must be H×W = {hw} values for the {}x{}x{} image \
             (got {}; reduce a C×H×W map over its channels first)",
            image.channels,
            image.height,
            image.width,
            attribution.len()
        )));
    }
    check_finite(attribution, image.height, image.width)?;
    check_noise(opts.noise)?;
    let a: Vec<f32> = if opts.abs {
        attribution.iter().map(|v| v.abs()).collect()
    } else {
        attribution.to_vec()
    };
    let order: Vec<usize> = descending_order(&a)
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let mut pixels = Vec::with_capacity(opts.percentages.len());
    for &p in &opts.percentages {
        let k = (hw as f64 * p / 100.0).floor();
        if !(p >= 0.0 && k < hw as f64) {
            return Err(opt(format!(
                "ROAD percentage {p} would impute {k} of the {hw} pixels; use 0 <= p < 100 \
                 with at least one pixel left to impute from"
            )));
        }
        pixels.push(k as usize);
    }
    if model.classes == Some(1) {
        return Err(road_classes_err());
    }
    let jobs: Vec<(usize, usize)> = pixels.iter().copied().enumerate().collect();
    let chunk = model.batch;
    let mut batch = Batcher::new(model, image.len());
    for part in jobs.chunks(chunk) {
        let imputed: Vec<Vec<f32>> = part
            .par_iter()
            .map(|&(i, k)| {
                let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
                rng.set_stream(i as u64);
                impute(&image, &order[..k], opts.noise, &mut rng)
            })
            .collect::<Result<_>>()?;
        for x in &imputed {
            batch.push(x)?;
        }
    }
    let preds = batch.finish()?;
    if model.classes == Some(1) {
        return Err(road_classes_err());
    }
    let target = model.target;
    let correct: Vec<bool> = preds.iter().map(|p| p.top == target).collect();
    let n = correct.len().max(1) as f64;
    Ok(Road {
        percentages: opts.percentages.clone(),
        pixels,
        accuracy: correct.iter().filter(|&&b| b).count() as f64 / n,
        scores: preds.iter().map(|p| p.score as f64).collect(),
        correct,
    })
}

fn road_classes_err() -> EvalError {
    model_err(
        "ROAD compares the predicted class (argmax) with the target: the callback must return \
         every class's score, not only the target's (got 1 score per image)"
            .into(),
    )
}

fn check_noise(noise: f64) -> Result<()> {
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(opt(format!("ROAD noise {noise} must be finite and >= 0")));
    }
    Ok(())
}

/// Neighbours of the imputation and their weights, in Quantus's order:
/// (row offset, column offset, weight).
const IMPUTATION_STENCIL: [(isize, isize, f64); 8] = [
    (1, 1, 1.0 / 12.0),
    (0, 1, 1.0 / 6.0),
    (-1, 1, 1.0 / 12.0),
    (1, -1, 1.0 / 12.0),
    (0, -1, 1.0 / 6.0),
    (-1, -1, 1.0 / 12.0),
    (1, 0, 1.0 / 6.0),
    (-1, 0, 1.0 / 6.0),
];

/// Quantus's `noisy_linear_imputation` (after Rong et al.'s
/// `road_evaluation`): the values of `pixels` (flat H×W indices, distinct),
/// in every channel, become the solution of the linear system that makes
/// each of them the weighted mean of its 8 neighbours inside the image
/// (weights 1/6 for the 4 direct, 1/12 for the 4 diagonal neighbours,
/// renormalised at the border), the other pixels staying fixed; then
/// `noise · N(0,1)` is added (drawn channel by channel, pixel by pixel in the
/// order given, from ChaCha8 seeded with `seed`). Quantus solves with
/// SuperLU; here the system (symmetric positive definite after a sign
/// change) is solved by conjugate gradients in f64, preconditioned by a
/// modified incomplete Cholesky factorisation, to a relative residual of
/// 1e-12 (equal to Quantus's imputation within 1e-7 in the tests). Returns
/// the whole image.
pub fn noisy_linear_imputation(
    image: Image,
    pixels: &[usize],
    noise: f64,
    seed: u64,
) -> Result<Vec<f32>> {
    image.validate()?;
    check_noise(noise)?;
    if pixels.len() >= image.pixels() {
        return Err(opt(format!(
            "cannot impute {} of {} pixels: at least one must stay known",
            pixels.len(),
            image.pixels()
        )));
    }
    impute(&image, pixels, noise, &mut ChaCha8Rng::seed_from_u64(seed))
}

fn impute(image: &Image, pixels: &[usize], noise: f64, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
    use rand_distr::{Distribution, StandardNormal};
    let (c, h, w) = (image.channels, image.height, image.width);
    let hw = h * w;
    let mut out = image.data.to_vec();
    let k = pixels.len();
    if k == 0 {
        return Ok(out);
    }
    const KNOWN: u32 = u32::MAX;
    let mut var = vec![KNOWN; hw];
    for &p in pixels {
        if p >= hw {
            return Err(opt(format!("pixel index {p} is outside the {h}x{w} image")));
        }
        if var[p] != KNOWN {
            return Err(opt(format!("pixel index {p} is listed twice")));
        }
        var[p] = 0;
    }
    // Unknowns numbered in row-major pixel order (the order of the
    // preconditioner's triangular sweeps).
    let mut at = Vec::with_capacity(k);
    for (p, v) in var.iter_mut().enumerate() {
        if *v != KNOWN {
            *v = at.len() as u32;
            at.push(p);
        }
    }
    // The system, negated: diag_t v_t − Σ_j w_tj v_j = Σ_known w_tq x_q,
    // with each row's unknown neighbours sorted by index.
    let mut start = Vec::with_capacity(k + 1);
    let mut mid = Vec::with_capacity(k);
    let mut cols: Vec<u32> = Vec::with_capacity(k * 8);
    let mut vals: Vec<f64> = Vec::with_capacity(k * 8);
    let mut diag = vec![0.0f64; k];
    let mut rhs = vec![0.0f64; c * k];
    start.push(0);
    for (t, &p) in at.iter().enumerate() {
        let (y, x) = ((p / w) as isize, (p % w) as isize);
        let mut s = 1.0f64;
        let mut row = [(0u32, 0.0f64); 8];
        let mut len = 0;
        for &(dy, dx, wt) in &IMPUTATION_STENCIL {
            let (ny, nx) = (y + dy, x + dx);
            if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                s -= wt;
                continue;
            }
            let q = ny as usize * w + nx as usize;
            if var[q] != KNOWN {
                row[len] = (var[q], wt);
                len += 1;
            } else {
                for ch in 0..c {
                    rhs[ch * k + t] += wt * image.data[ch * hw + q] as f64;
                }
            }
        }
        let row = &mut row[..len];
        row.sort_unstable_by_key(|e| e.0);
        mid.push(cols.len() + row.iter().filter(|e| (e.0 as usize) < t).count());
        cols.extend(row.iter().map(|e| e.0));
        vals.extend(row.iter().map(|e| e.1));
        diag[t] = s;
        start.push(cols.len());
    }
    let system = Stencil::new(start, mid, cols, vals, diag);
    let solved: Vec<Vec<f64>> = (0..c)
        .into_par_iter()
        .map(|ch| system.solve(&rhs[ch * k..][..k]))
        .collect::<Result<_>>()?;
    for (ch, v) in solved.iter().enumerate() {
        for &p in pixels {
            let mut val = v[var[p] as usize];
            if noise != 0.0 {
                let z: f64 = StandardNormal.sample(rng);
                val += noise * z;
            }
            out[ch * hw + p] = val as f32;
        }
    }
    Ok(out)
}

/// The imputation system (symmetric, positive definite, an M-matrix) and
/// its modified incomplete Cholesky preconditioner
/// (D + L) D⁻¹ (D + Lᵀ), L the strictly lower part of the matrix, D chosen
/// so that the product keeps the row sums (MIC(0), ω = 1: about 150
/// iterations for 50 000 unknowns on 224×224, against 1 270 with a Jacobi
/// preconditioner).
struct Stencil {
    start: Vec<usize>,
    /// End of the lower (column < row) entries of each row.
    mid: Vec<usize>,
    cols: Vec<u32>,
    /// Neighbour weights w (the matrix entries are −w).
    vals: Vec<f64>,
    diag: Vec<f64>,
    pivots: Vec<f64>,
}

impl Stencil {
    fn new(
        start: Vec<usize>,
        mid: Vec<usize>,
        cols: Vec<u32>,
        vals: Vec<f64>,
        diag: Vec<f64>,
    ) -> Self {
        const OMEGA: f64 = 1.0;
        let n = diag.len();
        // Σ of the upper weights of each row.
        let upper: Vec<f64> = (0..n)
            .map(|t| vals[mid[t]..start[t + 1]].iter().sum())
            .collect();
        let mut pivots = vec![0.0f64; n];
        for i in 0..n {
            let mut d = diag[i];
            for e in start[i]..mid[i] {
                let (j, wij) = (cols[e] as usize, vals[e]);
                d -= wij / pivots[j] * (wij + OMEGA * (upper[j] - wij));
            }
            // Any positive pivot keeps the preconditioner positive definite
            // (only the speed depends on it).
            pivots[i] = d.max(1e-3 * diag[i]);
        }
        Stencil {
            start,
            mid,
            cols,
            vals,
            diag,
            pivots,
        }
    }

    fn apply(&self, p: &[f64], q: &mut [f64]) {
        for (t, qt) in q.iter_mut().enumerate() {
            let mut s = self.diag[t] * p[t];
            for e in self.start[t]..self.start[t + 1] {
                s -= self.vals[e] * p[self.cols[e] as usize];
            }
            *qt = s;
        }
    }

    /// z = (D + L)⁻ᵀ D (D + L)⁻¹ r: a forward and a backward sweep.
    fn precondition(&self, r: &[f64], z: &mut [f64]) {
        let n = r.len();
        for i in 0..n {
            let mut s = r[i];
            for e in self.start[i]..self.mid[i] {
                s += self.vals[e] * z[self.cols[e] as usize];
            }
            z[i] = s / self.pivots[i];
        }
        for i in (0..n).rev() {
            let mut s = 0.0;
            for e in self.mid[i]..self.start[i + 1] {
                s += self.vals[e] * z[self.cols[e] as usize];
            }
            z[i] += s / self.pivots[i];
        }
    }

    /// Preconditioned conjugate gradients to a relative residual of 1e-12.
    fn solve(&self, b: &[f64]) -> Result<Vec<f64>> {
        let n = b.len();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let bnorm = dot(b, b).sqrt();
        let mut x = vec![0.0f64; n];
        if bnorm == 0.0 {
            return Ok(x);
        }
        let mut r = b.to_vec();
        let mut z = vec![0.0f64; n];
        self.precondition(&r, &mut z);
        let mut p = z.clone();
        let mut q = vec![0.0f64; n];
        let mut rz = dot(&r, &z);
        let tol = 1e-12 * bnorm;
        let max_iter = 20 * n + 1000;
        let mut rnorm = bnorm;
        for _ in 0..max_iter {
            self.apply(&p, &mut q);
            let alpha = rz / dot(&p, &q);
            for (xi, pi) in x.iter_mut().zip(&p) {
                *xi += alpha * pi;
            }
            for (ri, qi) in r.iter_mut().zip(&q) {
                *ri -= alpha * qi;
            }
            rnorm = dot(&r, &r).sqrt();
            if rnorm <= tol {
                return Ok(x);
            }
            self.precondition(&r, &mut z);
            let rz_new = dot(&r, &z);
            let beta = rz_new / rz;
            rz = rz_new;
            for (pi, zi) in p.iter_mut().zip(&z) {
                *pi = zi + beta * *pi;
            }
        }
        // Rounding can stall just above the target; accept what is still
        // far below any visible difference.
        if rnorm <= 1e-9 * bnorm {
            return Ok(x);
        }
        Err(opt(format!(
            "ROAD imputation of {n} pixels did not converge (relative residual {:e})",
            rnorm / bnorm
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake model: score of class 0 = mean of the image, class 1 = 0.5.
    fn mean_model(images: &[f32], n: usize) -> std::result::Result<Vec<f32>, BoxError> {
        let d = images.len() / n;
        Ok(images
            .chunks(d)
            .flat_map(|x| [x.iter().sum::<f32>() / d as f32, 0.5])
            .collect())
    }

    #[test]
    fn ties_keep_the_lower_flat_index_first() {
        // 2 channels, 1x3 pixels, map [1, 2, 1]: pixel 1 first (both
        // channels, channel 0 first), then the tie 0/2 in flat order:
        // ch0 px0, ch0 px2, ch1 px0, ch1 px2.
        let data = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        let img = Image::new(&data, 2, 1, 3).unwrap();
        let mut seen: Vec<Vec<f32>> = Vec::new();
        let mut model = Classifier::new(0, |x: &[f32], n: usize| {
            seen.extend(x.chunks(6).map(|c| c.to_vec()));
            Ok::<_, BoxError>(vec![0.0; n])
        })
        .with_batch(3);
        let opts = PixelFlippingOptions {
            features_in_step: 1,
            baseline: Baseline::Value { value: 0.0 },
            abs: false,
        };
        let r = pixel_flipping(img, &[1.0, 2.0, 1.0], &opts, &mut model).unwrap();
        assert_eq!(r.curve.len(), 6);
        assert_eq!(model.calls(), 3); // 7 images in batches of 3
        drop(model);
        let zeroed: Vec<usize> = seen
            .windows(2)
            .map(|w| (0..6).find(|&i| w[0][i] != w[1][i]).unwrap())
            .collect();
        assert_eq!(zeroed, vec![1, 4, 0, 2, 3, 5]);
    }

    #[test]
    fn batches_and_forward_passes_are_as_documented() {
        let data: Vec<f32> = (0..3 * 10 * 12).map(|i| (i % 17) as f32).collect();
        let img = Image::new(&data, 3, 10, 12).unwrap();
        let map: Vec<f32> = (0..120).map(|i| ((i * 37) % 120) as f32).collect();
        let mut sizes = Vec::new();
        let mut model = Classifier::new(0, |x: &[f32], n: usize| {
            sizes.push(n);
            mean_model(x, n)
        })
        .with_batch(16);
        let pf = PixelFlippingOptions {
            features_in_step: 7,
            ..Default::default()
        };
        let r = pixel_flipping(img, &map, &pf, &mut model).unwrap();
        assert_eq!(r.curve.len(), 360usize.div_ceil(7));
        assert_eq!(model.images(), 360usize.div_ceil(7) + 1);
        let rp = RegionPerturbationOptions {
            patch_size: 4,
            ..Default::default()
        };
        let before = model.images();
        let r = region_perturbation(img, &map, &rp, &mut model).unwrap();
        // 10x12 padded to 12x12: 3x3 patches
        assert_eq!((r.grid, r.padding), ([3, 3], [1, 1, 0, 0]));
        assert_eq!(r.curve.len(), 9);
        assert_eq!(model.images() - before, 10);
        drop(model);
        assert!(sizes.iter().all(|&n| n <= 16));
        assert!(sizes.iter().filter(|&&n| n < 16).count() <= 2);
    }

    #[test]
    fn baselines_follow_quantus() {
        let data = [0.2, 0.9, 0.4, 0.5];
        let img = Image::new(&data, 1, 2, 2).unwrap();
        let mut seen: Vec<Vec<f32>> = Vec::new();
        let mut run = |b: Baseline| {
            seen.clear();
            let mut model = Classifier::new(0, |x: &[f32], n: usize| {
                seen.extend(x.chunks(4).map(|c| c.to_vec()));
                Ok::<_, BoxError>(vec![0.0; n])
            });
            let opts = PixelFlippingOptions {
                features_in_step: 1,
                baseline: b,
                abs: false,
            };
            pixel_flipping(img, &[4.0, 3.0, 2.0, 1.0], &opts, &mut model).unwrap();
            drop(model);
            seen.clone()
        };
        assert_eq!(run(Baseline::Black)[4], vec![0.2; 4]);
        assert_eq!(run(Baseline::White)[4], vec![0.9; 4]);
        // mean of the current image at each step
        let m = run(Baseline::Mean);
        let m1 = (0.2 + 0.9 + 0.4 + 0.5) / 4.0f32;
        assert!((m[1][0] - m1).abs() < 1e-7);
        let m2 = (m1 + 0.9 + 0.4 + 0.5) / 4.0;
        assert!((m[2][1] - m2).abs() < 1e-7);
        let u = run(Baseline::Uniform {
            low: -1.0,
            high: -0.5,
            seed: 3,
        });
        let u2 = run(Baseline::Uniform {
            low: -1.0,
            high: -0.5,
            seed: 3,
        });
        assert_eq!(u, u2);
        let vals: Vec<f32> = (0..4).map(|i| u[i + 1][i]).collect();
        assert!(vals.iter().all(|v| (-1.0..-0.5).contains(v)), "{vals:?}");
        assert!(vals.windows(2).any(|w| w[0] != w[1]));
        assert_eq!(
            Baseline::parse("zero").unwrap(),
            Baseline::Value { value: 0.0 }
        );
        assert_eq!(
            Baseline::parse("uniform:0:2:9").unwrap(),
            Baseline::Uniform {
                low: 0.0,
                high: 2.0,
                seed: 9
            }
        );
        assert_eq!(
            Baseline::parse("-0.5").unwrap(),
            Baseline::Value { value: -0.5 }
        );
        assert!(Baseline::parse("grey").is_err());
        assert!(Baseline::parse("random").is_err());
    }

    #[test]
    fn random_region_order_is_a_seeded_permutation() {
        let data: Vec<f32> = (0..16 * 16).map(|i| i as f32 / 256.0).collect();
        let img = Image::new(&data, 1, 16, 16).unwrap();
        let map = vec![0.0; 256];
        let run = |seed| {
            let mut model = Classifier::new(0, mean_model);
            let opts = RegionPerturbationOptions {
                patch_size: 4,
                order: RegionOrder::Random { seed },
                ..Default::default()
            };
            region_perturbation(img, &map, &opts, &mut model)
                .unwrap()
                .regions
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..16).collect::<Vec<_>>());
        assert_eq!(
            RegionOrder::parse("random:5").unwrap(),
            RegionOrder::Random { seed: 5 }
        );
        // ties: morf and lerf both keep the lower patch index first
        let mut model = Classifier::new(0, mean_model);
        let opts = RegionPerturbationOptions {
            patch_size: 4,
            order: RegionOrder::Lerf,
            ..Default::default()
        };
        let r = region_perturbation(img, &map, &opts, &mut model).unwrap();
        assert_eq!(r.regions, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn imputation_is_exact_on_a_linear_ramp_inside() {
        let (h, w) = (9, 11);
        let data: Vec<f32> = (0..h * w)
            .map(|i| 0.3 + 0.05 * (i / w) as f32 - 0.02 * (i % w) as f32)
            .collect();
        let img = Image::new(&data, 1, h, w).unwrap();
        // an interior block of unknowns
        let px: Vec<usize> = (2..7)
            .flat_map(|y| (3..9).map(move |x| y * w + x))
            .collect();
        let out = noisy_linear_imputation(img, &px, 0.0, 0).unwrap();
        for &p in &px {
            assert!(
                (out[p] - data[p]).abs() < 1e-6,
                "{p}: {} {}",
                out[p],
                data[p]
            );
        }
        assert!(noisy_linear_imputation(img, &[3, 3], 0.0, 0).is_err());
        assert!(noisy_linear_imputation(img, &[h * w], 0.0, 0).is_err());
    }

    #[test]
    fn road_noise_is_seeded_with_mean_zero_and_the_given_sd() {
        let (h, w) = (40, 40);
        let data: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0)
            .collect();
        let img = Image::new(&data, 3, h, w).unwrap();
        let px: Vec<usize> = (0..h * w).filter(|p| p % 3 != 0).collect();
        let clean = noisy_linear_imputation(img, &px, 0.0, 0).unwrap();
        let a = noisy_linear_imputation(img, &px, 0.05, 11).unwrap();
        assert_eq!(a, noisy_linear_imputation(img, &px, 0.05, 11).unwrap());
        assert_ne!(a, noisy_linear_imputation(img, &px, 0.05, 12).unwrap());
        let d: Vec<f64> = (0..3)
            .flat_map(|c| px.iter().map(move |&p| c * h * w + p))
            .map(|i| (a[i] - clean[i]) as f64)
            .collect();
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        // n = 3201: se(mean) = 0.05/sqrt(n) ≈ 9e-4, se(sd) ≈ 6e-4
        assert!(mean.abs() < 4e-3, "mean {mean}");
        assert!((sd - 0.05).abs() < 3e-3, "sd {sd}");
        // untouched pixels stay
        assert_eq!(a[0], data[0]);

        // ROAD itself: same seed, same result; another seed moves the scores
        let map: Vec<f32> = (0..h * w).map(|i| ((i * 31) % 1601) as f32).collect();
        let run = |seed| {
            let mut model = Classifier::new(0, mean_model).with_batch(7);
            let opts = RoadOptions {
                seed,
                noise: 0.05,
                ..Default::default()
            };
            road(img, &map, &opts, &mut model).unwrap()
        };
        let r = run(4);
        assert_eq!(r.scores.len(), 50);
        assert_eq!(r, run(4));
        assert_ne!(r.scores, run(5).scores);
        assert_eq!(r.pixels[0], 16); // ⌊1600·1/100⌋
    }

    #[test]
    fn errors_name_the_problem() {
        let data = [0.0f32; 12];
        let img = Image::new(&data, 3, 2, 2).unwrap();
        let mut model = Classifier::new(5, mean_model);
        let e = pixel_flipping(img, &[0.0; 4], &Default::default(), &mut model).unwrap_err();
        assert!(e.to_string().contains("target class 5"), "{e}");
        let mut model = Classifier::new(0, mean_model);
        let e = pixel_flipping(img, &[0.0; 5], &Default::default(), &mut model).unwrap_err();
        assert!(e.to_string().contains("H*W = 4 or C*H*W = 12"), "{e}");
        let e = pixel_flipping(
            img,
            &[0.0, f32::NAN, 0.0, 0.0],
            &Default::default(),
            &mut model,
        )
        .unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        let e = road(img, &[0.0; 12], &Default::default(), &mut model).unwrap_err();
        assert!(e.to_string().contains("ROAD ranks pixels"), "{e}");
        let opts = RoadOptions {
            percentages: vec![100.0],
            ..Default::default()
        };
        let e = road(img, &[0.0; 4], &opts, &mut model).unwrap_err();
        assert!(e.to_string().contains("at least one pixel"), "{e}");
        let mut one = Classifier::new(0, |_: &[f32], n: usize| Ok::<_, BoxError>(vec![1.0; n]));
        let e = road(img, &[0.0; 4], &Default::default(), &mut one).unwrap_err();
        assert!(e.to_string().contains("every class"), "{e}");
        let mut bad = Classifier::new(0, |_: &[f32], n: usize| {
            Ok::<_, BoxError>(vec![1.0; 2 * n + 1])
        });
        let e = pixel_flipping(img, &[0.0; 4], &Default::default(), &mut bad).unwrap_err();
        assert!(e.to_string().contains("expected n × classes"), "{e}");
        let mut failing =
            Classifier::new(0, |_: &[f32], _: usize| Err::<Vec<f32>, _>("out of memory"));
        let e = pixel_flipping(img, &[0.0; 4], &Default::default(), &mut failing).unwrap_err();
        assert_eq!(e.to_string(), "model callback failed: out of memory");
        assert!(Image::new(&data, 3, 2, 3).is_err());
    }
}
