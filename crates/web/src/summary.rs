//! The paper's Table 2 from the stored ratings: per method and per model × method the mean
//! score with a confidence interval, the share of "shows morphological information", the
//! number of maps most of their raters gave the top level, raters, maps, inter-rater
//! agreement (Krippendorff's α, ordinal), and each rater's repeat consistency.
//!
//! Only the first showing of each sampled map counts; calibration maps never do; repeats
//! count only towards the rater's consistency.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use leukex_evaluate::stats::bootstrap_mean_ci;
use serde::Serialize;

use crate::round::{ItemKind, Scale};
use crate::store::FullRating;

/// Krippendorff's α for ordinal data. `units` holds, per unit (map), the values its raters
/// gave (missing ratings simply absent). Units with fewer than two values are not
/// pairable and left out. `None` when there is no disagreement to expect (fewer than two
/// pairable values, or every pairable value the same).
///
/// Coincidences o_ck = Σ_u (number of ordered pairs (c, k) in u) / (m_u − 1); with
/// n_c = Σ_k o_ck and n = Σ n_c, the ordinal distance is
/// δ²_ck = (Σ_{g between c and k} n_g − (n_c + n_k)/2)², and
/// α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck (Krippendorff 2011, "Computing
/// Krippendorff's Alpha-Reliability").
pub fn krippendorff_alpha_ordinal(units: &[Vec<f64>]) -> Option<f64> {
    let mut domain: Vec<f64> = units
        .iter()
        .filter(|u| u.len() >= 2)
        .flatten()
        .copied()
        .collect();
    domain.sort_by(|a, b| a.total_cmp(b));
    domain.dedup();
    let v = domain.len();
    if v < 2 {
        return None;
    }
    let index = |x: f64| domain.partition_point(|&d| d < x);
    let mut o = vec![vec![0.0f64; v]; v];
    for u in units.iter().filter(|u| u.len() >= 2) {
        let w = 1.0 / (u.len() as f64 - 1.0);
        for (i, &a) in u.iter().enumerate() {
            for (j, &b) in u.iter().enumerate() {
                if i != j {
                    o[index(a)][index(b)] += w;
                }
            }
        }
    }
    let nc: Vec<f64> = o.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = nc.iter().sum();
    let delta2 = |c: usize, k: usize| {
        let (lo, hi) = (c.min(k), c.max(k));
        let s: f64 = nc[lo..=hi].iter().sum::<f64>() - (nc[c] + nc[k]) / 2.0;
        s * s
    };
    let (mut observed, mut expected) = (0.0, 0.0);
    for c in 0..v {
        for k in 0..v {
            let d = delta2(c, k);
            observed += o[c][k] * d;
            expected += nc[c] * nc[k] * d;
        }
    }
    if expected == 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * observed / expected)
}

/// One row of Table 2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table2Row {
    /// `None` in the per-method table.
    pub model: Option<String>,
    pub method: String,
    pub ratings: usize,
    pub raters: usize,
    pub maps: usize,
    /// Mean over maps of each map's mean score.
    pub mean_score: f64,
    /// 95 % percentile bootstrap interval over maps (2000 resamples, seed 0).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Share of ratings saying "shows morphological information", in %.
    pub morphology_percent: f64,
    /// Maps that more than half of their raters gave the top level.
    pub top_level_maps: usize,
    /// Krippendorff's α (ordinal) over the maps of the row.
    pub alpha: Option<f64>,
}

/// A rater's agreement with themself on the repeated maps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaterConsistency {
    pub rater: String,
    pub expertise: String,
    /// Counted ratings (first showings of sampled maps).
    pub ratings: usize,
    /// Repeated maps rated twice.
    pub repeats: usize,
    /// Share of repeats given the same score (`None` without repeats).
    pub same_score: Option<f64>,
    pub mean_abs_difference: Option<f64>,
    pub same_morphology: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub scale: Scale,
    pub raters: usize,
    pub maps: usize,
    pub ratings: usize,
    /// Krippendorff's α (ordinal) over every counted map.
    pub alpha: Option<f64>,
    pub by_method: Vec<Table2Row>,
    pub by_model_method: Vec<Table2Row>,
    pub consistency: Vec<RaterConsistency>,
}

/// (model, method) of a map id `model/stem/method`.
fn model_method(map: &str) -> (String, String) {
    let mut p = map.splitn(3, '/');
    let model = p.next().unwrap_or_default().to_string();
    let _stem = p.next();
    (model, p.next().unwrap_or_default().to_string())
}

fn row(model: Option<String>, method: String, ratings: &[&FullRating], top: i64) -> Table2Row {
    // map → scores of its raters
    let mut by_map: BTreeMap<&str, Vec<&FullRating>> = BTreeMap::new();
    for r in ratings {
        by_map.entry(&r.map).or_default().push(r);
    }
    let map_means: Vec<f64> = by_map
        .values()
        .map(|rs| rs.iter().map(|r| r.score as f64).sum::<f64>() / rs.len() as f64)
        .collect();
    let ci = bootstrap_mean_ci(&map_means, 0.95, 2000, 0).expect("rows have ratings");
    let raters: BTreeSet<&str> = ratings.iter().map(|r| r.rater.as_str()).collect();
    let units: Vec<Vec<f64>> = by_map
        .values()
        .map(|rs| rs.iter().map(|r| r.score as f64).collect())
        .collect();
    Table2Row {
        model,
        method,
        ratings: ratings.len(),
        raters: raters.len(),
        maps: by_map.len(),
        mean_score: ci.mean,
        ci_low: ci.lo,
        ci_high: ci.hi,
        morphology_percent: 100.0 * ratings.iter().filter(|r| r.morphology).count() as f64
            / ratings.len() as f64,
        top_level_maps: by_map
            .values()
            .filter(|rs| 2 * rs.iter().filter(|r| r.score == top).count() > rs.len())
            .count(),
        alpha: krippendorff_alpha_ordinal(&units),
    }
}

pub fn summarise(all: &[FullRating], scale: &Scale) -> Summary {
    let counted: Vec<&FullRating> = all.iter().filter(|r| r.kind == ItemKind::Main).collect();
    let top = scale.top();
    let mut by_method: BTreeMap<String, Vec<&FullRating>> = BTreeMap::new();
    let mut by_pair: BTreeMap<(String, String), Vec<&FullRating>> = BTreeMap::new();
    for r in &counted {
        let (model, method) = model_method(&r.map);
        by_method.entry(method.clone()).or_default().push(r);
        by_pair.entry((model, method)).or_default().push(r);
    }
    let mut units: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in &counted {
        units.entry(&r.map).or_default().push(r.score as f64);
    }
    let mut raters: BTreeMap<&str, &str> = BTreeMap::new();
    for r in all {
        raters.insert(&r.rater, &r.expertise);
    }
    let consistency = raters
        .iter()
        .map(|(&name, &expertise)| {
            let first: BTreeMap<&str, &FullRating> = counted
                .iter()
                .filter(|r| r.rater == name)
                .map(|r| (r.map.as_str(), *r))
                .collect();
            let pairs: Vec<(&FullRating, &FullRating)> = all
                .iter()
                .filter(|r| r.rater == name && r.kind == ItemKind::Repeat)
                .filter_map(|r| first.get(r.map.as_str()).map(|f| (*f, r)))
                .collect();
            let share = |f: &dyn Fn(&(&FullRating, &FullRating)) -> f64| {
                (!pairs.is_empty()).then(|| pairs.iter().map(f).sum::<f64>() / pairs.len() as f64)
            };
            RaterConsistency {
                rater: name.to_string(),
                expertise: expertise.to_string(),
                ratings: first.len(),
                repeats: pairs.len(),
                same_score: share(&|(a, b)| f64::from(u8::from(a.score == b.score))),
                mean_abs_difference: share(&|(a, b)| (a.score - b.score).abs() as f64),
                same_morphology: share(&|(a, b)| f64::from(u8::from(a.morphology == b.morphology))),
            }
        })
        .collect();
    Summary {
        scale: scale.clone(),
        raters: counted
            .iter()
            .map(|r| r.rater.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        maps: units.len(),
        ratings: counted.len(),
        alpha: krippendorff_alpha_ordinal(&units.into_values().collect::<Vec<_>>()),
        by_method: by_method
            .into_iter()
            .map(|(method, rs)| row(None, method, &rs, top))
            .collect(),
        by_model_method: by_pair
            .into_iter()
            .map(|((model, method), rs)| row(Some(model), method, &rs, top))
            .collect(),
        consistency,
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The summary as Markdown tables.
pub fn to_markdown(s: &Summary) -> String {
    let mut out = String::new();
    let top = s
        .scale
        .levels
        .last()
        .map(|l| l.label.as_str())
        .unwrap_or("");
    let _ = writeln!(
        out,
        "# Expert rating of the heat maps (Table 2)\n\n{} ratings of {} maps by {} raters; \
         Krippendorff's α (ordinal) {}. Scale {}–{}; top level: {} ({}).\n",
        s.ratings,
        s.maps,
        s.raters,
        opt(s.alpha, 3),
        s.scale.levels.first().map_or(0, |l| l.score),
        s.scale.top(),
        s.scale.top(),
        top
    );
    for (title, rows) in [
        ("Per method", &s.by_method),
        ("Per model × method", &s.by_model_method),
    ] {
        let _ = writeln!(
            out,
            "## {title}\n\n| model | method | mean score [95 % CI] | morphological information | maps at the top level | raters | maps | α |\n|---|---|---|---|---|---|---|---|"
        );
        for r in rows.iter() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} [{:.2}, {:.2}] | {:.1} % | {} | {} | {} | {} |",
                r.model.as_deref().unwrap_or("all"),
                r.method,
                r.mean_score,
                r.ci_low,
                r.ci_high,
                r.morphology_percent,
                r.top_level_maps,
                r.raters,
                r.maps,
                opt(r.alpha, 3)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## Repeat consistency\n\n| rater | expertise | ratings | repeats | same score | mean |Δ score| | same morphology answer |\n|---|---|---|---|---|---|---|"
    );
    for c in &s.consistency {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.rater,
            c.expertise,
            c.ratings,
            c.repeats,
            opt(c.same_score.map(|v| v * 100.0), 0)
                + if c.same_score.is_some() { " %" } else { "" },
            opt(c.mean_abs_difference, 2),
            opt(c.same_morphology.map(|v| v * 100.0), 0)
                + if c.same_morphology.is_some() {
                    " %"
                } else {
                    ""
                },
        );
    }
    out
}

/// Both tables of Table 2 as one CSV (`model` is `all` in the per-method rows).
pub fn to_csv(s: &Summary) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "model",
        "method",
        "mean_score",
        "ci_low",
        "ci_high",
        "morphology_percent",
        "top_level_maps",
        "raters",
        "maps",
        "ratings",
        "alpha",
    ])
    .expect("writing CSV to memory");
    for r in s.by_method.iter().chain(&s.by_model_method) {
        w.write_record([
            r.model.as_deref().unwrap_or("all").to_string(),
            r.method.clone(),
            r.mean_score.to_string(),
            r.ci_low.to_string(),
            r.ci_high.to_string(),
            r.morphology_percent.to_string(),
            r.top_level_maps.to_string(),
            r.raters.to_string(),
            r.maps.to_string(),
            r.ratings.to_string(),
            r.alpha.map_or(String::new(), |a| a.to_string()),
        ])
        .expect("writing CSV to memory");
    }
    w.into_inner().expect("in-memory writer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_one_for_perfect_agreement_and_undefined_without_variation() {
        let units = vec![vec![0.0, 0.0], vec![3.0, 3.0, 3.0], vec![1.0, 1.0]];
        assert_eq!(krippendorff_alpha_ordinal(&units), Some(1.0));
        assert_eq!(krippendorff_alpha_ordinal(&[vec![2.0, 2.0]]), None);
        assert_eq!(krippendorff_alpha_ordinal(&[vec![2.0], vec![1.0]]), None);
    }

    fn rating(rater: &str, map: &str, kind: ItemKind, score: i64, morphology: bool) -> FullRating {
        FullRating {
            id: 0,
            rater: rater.into(),
            expertise: "x".into(),
            position: 0,
            kind,
            token: String::new(),
            map: map.into(),
            score,
            morphology,
            created: String::new(),
        }
    }

    #[test]
    fn table_2_counts_first_showings_only() {
        use ItemKind::*;
        let rows = vec![
            rating("a", "m1/s1/lrp", Calibration, 0, false),
            rating("a", "m1/s1/lrp", Main, 3, true),
            rating("b", "m1/s1/lrp", Main, 3, true),
            rating("c", "m1/s1/lrp", Main, 1, false),
            rating("a", "m1/s2/lrp", Main, 2, true),
            rating("b", "m1/s2/lrp", Main, 3, false),
            rating("a", "m2/s1/cam", Main, 0, false),
            rating("b", "m2/s1/cam", Main, 1, false),
            rating("a", "m1/s1/lrp", Repeat, 2, true),
            rating("b", "m1/s2/lrp", Repeat, 3, true),
        ];
        let s = summarise(&rows, &Scale::default());
        assert_eq!((s.raters, s.maps, s.ratings), (3, 3, 7));
        let lrp = s.by_method.iter().find(|r| r.method == "lrp").unwrap();
        // Map means 7/3 and 5/2; mean of maps 29/12.
        assert!((lrp.mean_score - 29.0 / 12.0).abs() < 1e-12);
        assert_eq!((lrp.raters, lrp.maps, lrp.ratings), (3, 2, 5));
        assert!((lrp.morphology_percent - 60.0).abs() < 1e-12);
        // s1: 2 of 3 gave 3 (a majority); s2: 1 of 2 (not).
        assert_eq!(lrp.top_level_maps, 1);
        assert!(lrp.ci_low <= lrp.mean_score && lrp.mean_score <= lrp.ci_high);
        assert_eq!(s.by_model_method.len(), 2);
        let a = s.consistency.iter().find(|c| c.rater == "a").unwrap();
        assert_eq!((a.ratings, a.repeats), (3, 1));
        assert_eq!(a.same_score, Some(0.0));
        assert_eq!(a.mean_abs_difference, Some(1.0));
        let b = s.consistency.iter().find(|c| c.rater == "b").unwrap();
        assert_eq!((b.same_score, b.same_morphology), (Some(1.0), Some(0.0)));
        let c = s.consistency.iter().find(|c| c.rater == "c").unwrap();
        assert_eq!((c.repeats, c.same_score), (0, None));
        let md = to_markdown(&s);
        assert!(md.contains("| all | lrp | 2.42 ["), "{md}");
        let csv = String::from_utf8(to_csv(&s)).unwrap();
        assert_eq!(csv.lines().count(), 1 + 2 + 2);
    }
}
