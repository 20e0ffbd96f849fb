//! Where the evidence lies: in the white cell, and nowhere else (unless the
//! shortcut puts it elsewhere on purpose).
//!
//! The procedure:
//! 1. Counterfactual twins (the same scene rendered with a blast and with a
//!    healthy cell) are pixel-identical away from the cell; with the cell
//!    removed they are identical everywhere.
//! 2. A simple classifier on colour and texture statistics, under 5-fold
//!    cross-validation, cannot beat chance on 260 images whose cell was
//!    replaced by background, yet scores far above chance on the normal
//!    images and on cell-less images with the red-cell shortcut (positive
//!    controls: the classifier is able to see such differences).
//! 3. Statistics of the surroundings (red-cell share, background colour)
//!    do not differ between the classes in normal images.

use image::RgbImage;
use leukex_data::{MorphologyClass, MorphologyMask};
use leukex_synth::{Shortcut, SynthConfig, SynthSample, generate_one, generate_with_label};
use rayon::prelude::*;

fn render_all(cfg: &SynthConfig) -> Vec<SynthSample> {
    (0..cfg.n)
        .into_par_iter()
        .map(|i| generate_one(cfg, i))
        .collect()
}

/// The seed under test: 2024, or `LEUKEX_SYNTH_EVIDENCE_SEED` to repeat the
/// procedure on another draw.
fn seed() -> u64 {
    std::env::var("LEUKEX_SYNTH_EVIDENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2024)
}

fn cfg(without_cell: bool, shortcut: Option<Shortcut>) -> SynthConfig {
    SynthConfig {
        seed: seed(),
        without_cell,
        shortcut,
        ..Default::default()
    }
}

/// Cell pixels of either mask, grown by `grow` pixels.
fn near_cell(a: &MorphologyMask, b: &MorphologyMask, grow: i64) -> Vec<bool> {
    let (w, h) = a.dimensions();
    let is_cell = |m: &MorphologyMask, x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < w as i64
            && y < h as i64
            && m.get(x as u32, y as u32).unwrap().is_cell()
    };
    let mut out = vec![false; (w * h) as usize];
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            if is_cell(a, x, y) || is_cell(b, x, y) {
                for dy in -grow..=grow {
                    for dx in -grow..=grow {
                        let (nx, ny) = (x + dx, y + dy);
                        if nx >= 0 && ny >= 0 && nx < w as i64 && ny < h as i64 {
                            out[(ny * w as i64 + nx) as usize] = true;
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn counterfactual_twins_differ_only_at_the_cell() {
    let c = cfg(false, None);
    for i in (0..c.n).step_by(13) {
        let blast = generate_with_label(&c, i, 1);
        let healthy = generate_with_label(&c, i, 0);
        assert_eq!(blast.group, healthy.group);
        // Blur reach (3σ, σ ≤ 1.2 px) plus the 0.6 px anti-aliasing ramp.
        let near = near_cell(&blast.mask, &healthy.mask, 5);
        let mut compared = 0;
        for (k, &n) in near.iter().enumerate() {
            if n {
                continue;
            }
            compared += 1;
            let (x, y) = ((k % 257) as u32, (k / 257) as u32);
            assert_eq!(
                blast.image.get_pixel(x, y),
                healthy.image.get_pixel(x, y),
                "image {i}: pixel ({x}, {y}) away from the cell depends on the class"
            );
            assert_eq!(blast.mask.get(x, y), healthy.mask.get(x, y));
        }
        assert!(compared > 257 * 257 / 4, "image {i}: too little compared");
        assert_ne!(blast.image, healthy.image);
    }
}

#[test]
fn without_the_cell_the_class_changes_nothing_unless_the_shortcut_is_on() {
    let plain = cfg(true, None);
    let cheat = cfg(true, Some(Shortcut::RbcDensity));
    let mut shortcut_changed = 0;
    for i in (0..plain.n).step_by(7) {
        let (a, b) = (
            generate_with_label(&plain, i, 1),
            generate_with_label(&plain, i, 0),
        );
        assert_eq!(a.image, b.image, "image {i}");
        assert_eq!(a.mask, b.mask, "image {i}");
        let (a, b) = (
            generate_with_label(&cheat, i, 1),
            generate_with_label(&cheat, i, 0),
        );
        shortcut_changed += usize::from(a.image != b.image);
        let rbc = |s: &SynthSample| s.mask.counts().get(MorphologyClass::Rbc);
        assert!(
            rbc(&a) >= rbc(&b),
            "image {i}: shortcut gives blasts fewer red cells"
        );
    }
    assert_eq!(shortcut_changed, plain.n.div_ceil(7));
}

// ---------------------------------------------------------------- features

fn features(img: &RgbImage) -> Vec<f64> {
    let (w, h) = img.dimensions();
    let n = (w * h) as f64;
    let mut sum = [0.0f64; 3];
    let mut sq = [0.0f64; 3];
    let (mut purple, mut reddish, mut bluish) = (0.0, 0.0, 0.0);
    let mut lum = Vec::with_capacity((w * h) as usize);
    for p in img.pixels() {
        let [r, g, b] = p.0.map(f64::from);
        for (k, v) in [r, g, b].into_iter().enumerate() {
            sum[k] += v;
            sq[k] += v * v;
        }
        let l = 0.299 * r + 0.587 * g + 0.114 * b;
        lum.push(l);
        purple += f64::from(l < 130.0 && b > g + 25.0);
        reddish += f64::from(r > g + 25.0 && r > b + 25.0);
        bluish += f64::from(b > r + 10.0);
    }
    let mut edge = 0.0;
    for y in 0..h as usize - 1 {
        for x in 0..w as usize - 1 {
            let i = y * w as usize + x;
            edge += (lum[i + 1] - lum[i]).abs() + (lum[i + w as usize] - lum[i]).abs();
        }
    }
    let mut sorted = lum.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let mut f = Vec::new();
    for k in 0..3 {
        let m = sum[k] / n;
        f.push(m);
        f.push((sq[k] / n - m * m).max(0.0).sqrt());
    }
    f.extend([
        purple / n,
        reddish / n,
        bluish / n,
        edge / n,
        pct(0.05),
        pct(0.5),
        pct(0.95),
    ]);
    f
}

fn standardise(train: &[Vec<f64>], rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let d = train[0].len();
    let m = train.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| train.iter().map(|r| r[j]).sum::<f64>() / m)
        .collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = train.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / m;
            v.sqrt().max(1e-9)
        })
        .collect();
    rows.iter()
        .map(|r| (0..d).map(|j| (r[j] - mean[j]) / sd[j]).collect())
        .collect()
}

/// L2-regularised logistic regression by gradient descent.
fn logistic(train: &[Vec<f64>], y: &[f64], test: &[Vec<f64>]) -> Vec<f64> {
    let d = train[0].len();
    let (mut w, mut b) = (vec![0.0; d], 0.0);
    for _ in 0..800 {
        let mut gw = vec![0.0; d];
        let mut gb = 0.0;
        for (x, &t) in train.iter().zip(y) {
            let z: f64 = b + x.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>();
            let e = 1.0 / (1.0 + (-z).exp()) - t;
            gb += e;
            for j in 0..d {
                gw[j] += e * x[j];
            }
        }
        let m = train.len() as f64;
        for j in 0..d {
            w[j] -= 0.3 * (gw[j] / m + 1e-3 * w[j]);
        }
        b -= 0.3 * gb / m;
    }
    test.iter()
        .map(|x| f64::from(b + x.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() > 0.0))
        .collect()
}

fn nearest_centroid(train: &[Vec<f64>], y: &[f64], test: &[Vec<f64>]) -> Vec<f64> {
    let d = train[0].len();
    let centroid = |label: f64| {
        let rows: Vec<_> = train.iter().zip(y).filter(|(_, t)| **t == label).collect();
        (0..d)
            .map(|j| rows.iter().map(|(r, _)| r[j]).sum::<f64>() / rows.len() as f64)
            .collect::<Vec<f64>>()
    };
    let (c0, c1) = (centroid(0.0), centroid(1.0));
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    test.iter()
        .map(|x| f64::from(dist(x, &c1) < dist(x, &c0)))
        .collect()
}

type Classifier = fn(&[Vec<f64>], &[f64], &[Vec<f64>]) -> Vec<f64>;

/// 5-fold cross-validated accuracy; folds interleave the indices, so each
/// holds both classes equally.
fn cv_accuracy(samples: &[SynthSample], classify: Classifier) -> f64 {
    let x: Vec<Vec<f64>> = samples.par_iter().map(|s| features(&s.image)).collect();
    let y: Vec<f64> = samples.iter().map(|s| f64::from(s.label)).collect();
    let k = 5;
    let mut correct = 0;
    for fold in 0..k {
        let (mut tr, mut ytr, mut te, mut yte) = (vec![], vec![], vec![], vec![]);
        for i in 0..x.len() {
            if i % k == fold {
                te.push(x[i].clone());
                yte.push(y[i]);
            } else {
                tr.push(x[i].clone());
                ytr.push(y[i]);
            }
        }
        let tr_s = standardise(&tr, &tr);
        let te_s = standardise(&tr, &te);
        let pred = classify(&tr_s, &ytr, &te_s);
        correct += pred.iter().zip(&yte).filter(|(p, t)| p == t).count();
    }
    correct as f64 / x.len() as f64
}

/// Upper end of what chance reaches on `n` balanced images: the one-sided
/// 99.9 % binomial bound around 0.5 (0.596 for 260), plus 0.02 for the
/// extra variance of cross-validation (the folds share training images).
fn chance_bound(n: usize) -> f64 {
    0.5 + 3.09 * (0.25 / n as f64).sqrt() + 0.02
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m, var.sqrt())
}

/// Difference of class means in pooled standard deviations.
fn effect_size(samples: &[SynthSample], stat: impl Fn(&SynthSample) -> f64 + Sync) -> f64 {
    let vals: Vec<(u8, f64)> = samples.par_iter().map(|s| (s.label, stat(s))).collect();
    let of = |l: u8| {
        vals.iter()
            .filter(|v| v.0 == l)
            .map(|v| v.1)
            .collect::<Vec<_>>()
    };
    let ((m1, s1), (m0, s0)) = (mean_sd(&of(1)), mean_sd(&of(0)));
    (m1 - m0) / ((s1 * s1 + s0 * s0) / 2.0).sqrt().max(1e-12)
}

fn rbc_share_outside_cell(s: &SynthSample) -> f64 {
    let c = s.mask.counts();
    let outside = c.get(MorphologyClass::Background) + c.get(MorphologyClass::Rbc);
    c.get(MorphologyClass::Rbc) as f64 / outside as f64
}

/// Mean of channel `k` over the crop's corners (beyond 0.45 of the size from
/// the centre), where no cell of either class reaches.
fn corner_mean(s: &SynthSample, k: usize) -> f64 {
    let (w, h) = s.image.dimensions();
    let (cx, cy, r) = (w as f64 / 2.0, h as f64 / 2.0, 0.45 * w as f64);
    let (mut sum, mut n) = (0.0, 0.0);
    for (x, y, p) in s.image.enumerate_pixels() {
        if (x as f64 + 0.5 - cx).hypot(y as f64 + 0.5 - cy) > r {
            sum += p.0[k] as f64;
            n += 1.0;
        }
    }
    sum / n
}

/// Mean of channel `k` over background pixels in the corners.
fn corner_background(s: &SynthSample, k: usize) -> f64 {
    let (w, h) = s.image.dimensions();
    let (cx, cy, r) = (w as f64 / 2.0, h as f64 / 2.0, 0.45 * w as f64);
    let (mut sum, mut n) = (0.0, 0.0);
    for (x, y, p) in s.image.enumerate_pixels() {
        if (x as f64 + 0.5 - cx).hypot(y as f64 + 0.5 - cy) > r
            && s.mask.get(x, y) == Some(MorphologyClass::Background)
        {
            sum += p.0[k] as f64;
            n += 1.0;
        }
    }
    if n > 0.0 { sum / n } else { 0.0 }
}

#[test]
fn a_classifier_sees_the_class_only_in_the_cell_or_through_the_shortcut() {
    let normal = render_all(&cfg(false, None));
    let no_cell = render_all(&cfg(true, None));
    let no_cell_shortcut = render_all(&cfg(true, Some(Shortcut::RbcDensity)));
    // Every normal image shows all of its classes (vacuoles in L3 blasts).
    for s in &normal {
        let c = s.mask.counts();
        let needs_vacuole = s.kind == leukex_synth::CellKind::L3;
        for class in MorphologyClass::ALL {
            let wanted = class != MorphologyClass::Vacuole || needs_vacuole;
            assert_eq!(c.get(class) > 0, wanted, "{}: {class}", s.stem);
        }
    }
    let bound = chance_bound(no_cell.len());
    for (name, clf) in [
        ("logistic regression", logistic as Classifier),
        ("nearest centroid", nearest_centroid as Classifier),
    ] {
        let acc_normal = cv_accuracy(&normal, clf);
        let acc_no_cell = cv_accuracy(&no_cell, clf);
        let acc_shortcut = cv_accuracy(&no_cell_shortcut, clf);
        eprintln!(
            "{name}: with cell {acc_normal:.3}, cell removed {acc_no_cell:.3}, \
             cell removed + rbc-density shortcut {acc_shortcut:.3} (chance bound {bound:.3})"
        );
        assert!(
            acc_no_cell < bound,
            "{name}: {acc_no_cell:.3} on cell-less images"
        );
        assert!(
            acc_normal > 0.85,
            "{name}: only {acc_normal:.3} with the cell"
        );
        assert!(
            acc_shortcut > 0.8,
            "{name}: only {acc_shortcut:.3} with the shortcut"
        );
    }

    // The surroundings of normal images: the same for both classes.
    let mut stats: Vec<(String, f64)> = vec![(
        "red-cell share outside the cell".into(),
        effect_size(&normal, rbc_share_outside_cell),
    )];
    for k in 0..3 {
        stats.push((
            format!("corner mean, channel {k}"),
            effect_size(&normal, |s| corner_mean(s, k)),
        ));
        stats.push((
            format!("corner background colour, channel {k}"),
            effect_size(&normal, |s| corner_background(s, k)),
        ));
    }
    // The standard error of a difference in pooled sds is sqrt(2/130) =
    // 0.124 for 130 images a class; 3.2 of them (0.40 sd) keeps the chance
    // of a false alarm over these 7 statistics near 1 %, while a real leak
    // of half a standard deviation would show.
    let limit = 3.2 * (2.0 / (normal.len() / 2) as f64).sqrt();
    for (name, d) in &stats {
        eprintln!("{name}: class difference {d:+.3} sd (limit {limit:.2})");
        assert!(
            d.abs() < limit,
            "{name} differs between classes by {d:.3} sd"
        );
    }
    let d = effect_size(&no_cell_shortcut, rbc_share_outside_cell);
    eprintln!("with the shortcut, red-cell share: class difference {d:+.3} sd");
    assert!(
        d > 1.0,
        "the shortcut barely changes the red-cell share ({d:.3} sd)"
    );
}
