//! Evaluating a folder of heat maps against their masks and writing the
//! results.
//!
//! # Layout
//!
//! ```text
//! MAPS/<model-id>/<stem>/<method-id>.npy     one map per image and method
//! MAPS/<model-id>/explain.json               optional, see below
//! MASKS/<stem>.png                           morphology mask (label PNG)
//! ```
//!
//! `explain.json` (optional) gives what the model did on each image:
//!
//! ```json
//! {"images": {"Im001_1": {"true_label": 1, "predicted": 1, "score": 0.97}}}
//! ```
//!
//! Every field is optional. Without it the true label is taken from an
//! ALL-IDB2 stem `ImNNN_Y` (Y = 1: ALL blast, 0: healthy).
//!
//! # Outputs (written atomically into `out_dir`)
//!
//! * `per_image.csv`: one row per image × model × method × mode.
//! * `summary.csv` / `summary.json`: per (model, method, mode) pooled shares
//!   (ratios of summed counts, the paper's way), mean per-image shares with
//!   bootstrap CIs, mean counts (Fig. 10), the within-cell split per true
//!   class (Fig. 11), localisation means; plus the tests between methods.
//! * `tables.md`: the paper-style tables.

use crate::error::{EvalError, Result};
use crate::fused::{MAX_PIXELS, Scratch, evaluate_fused};
use crate::heatmap::HeatMap;
use crate::localisation::{
    Localisation, LocalisationOptions, Region, localise, oracle_map, random_map,
};
use crate::mode::{Mode, select};
use crate::rank::descending_order;
use crate::shares::ClassShares;
use crate::stats::{self, MeanCi, ZeroMethod};
use leukex_data::dataset::label_from_stem;
use leukex_data::{LabelTable, MorphologyClass, MorphologyMask};
use leukex_hash::fnv1a64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Pseudo-methods evaluated beside the real ones.
pub const RANDOM_BASELINE: &str = "@random";
pub const ORACLE: &str = "@oracle";

/// What `leukex evaluate` needs.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    pub maps_dir: PathBuf,
    pub masks_dir: PathBuf,
    pub out_dir: PathBuf,
    pub label_table: LabelTable,
    pub modes: Vec<Mode>,
    /// Only these models / methods (all when `None`).
    pub models: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    /// Region for the localisation metrics (default: the cell).
    pub region: Region,
    pub localisation: LocalisationOptions,
    /// Resize maps bilinearly to the mask grid instead of refusing them.
    pub resize_maps: bool,
    /// Add the random-map baseline and the oracle map (= the region).
    pub baselines: bool,
    pub confidence: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// Significance level after Holm correction.
    pub alpha: f64,
    pub zero_method: ZeroMethod,
}

impl EvaluateOptions {
    pub fn new(
        maps_dir: impl Into<PathBuf>,
        masks_dir: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
    ) -> Self {
        EvaluateOptions {
            maps_dir: maps_dir.into(),
            masks_dir: masks_dir.into(),
            out_dir: out_dir.into(),
            label_table: LabelTable::leukex_written(),
            modes: Mode::defaults(),
            models: None,
            methods: None,
            region: Region::cell(),
            localisation: LocalisationOptions::default(),
            resize_maps: false,
            baselines: true,
            confidence: 0.95,
            bootstrap_resamples: 2000,
            seed: 0x1e0c,
            alpha: 0.05,
            zero_method: ZeroMethod::Wilcox,
        }
    }
}

/// One map evaluated in every mode.
#[derive(Debug, Clone, Serialize)]
pub struct MapEvaluation {
    pub shares: Vec<(String, ClassShares)>,
    pub localisation: Localisation,
    /// Why everything is undefined (constant map), if so.
    pub undefined: Option<String>,
}

/// Evaluates one map (already finite and on the mask grid) in `modes` and
/// against `region`. A constant map is undefined in every mode.
pub fn evaluate_map(
    map: &HeatMap,
    mask: &MorphologyMask,
    method_id: &str,
    modes: &[Mode],
    region: Region,
    loc: &LocalisationOptions,
) -> MapEvaluation {
    assert_eq!(
        map.values.len(),
        mask.raw().len(),
        "map and mask grids differ"
    );
    if map.is_constant() {
        let reason = "constant map: no pixel is more relevant than another".to_string();
        let empty = ClassShares::count(
            &crate::Selection::Pixels(vec![false; map.values.len()]),
            mask,
        );
        let empty = ClassShares {
            undefined: Some(reason.clone()),
            ..empty
        };
        return MapEvaluation {
            shares: modes
                .iter()
                .map(|m| (m.to_string(), empty.clone()))
                .collect(),
            localisation: Localisation::default(),
            undefined: Some(reason),
        };
    }
    // One ranking serves every mode and the rank metrics (see
    // `crate::fused`); buffers are reused per thread.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
    }
    let (shares, localisation) = if map.values.len() < MAX_PIXELS {
        SCRATCH.with_borrow_mut(|s| {
            evaluate_fused(&map.values, mask, method_id, modes, region, loc, s)
        })
    } else {
        evaluate_map_reference(map, mask, method_id, modes, region, loc)
    };
    MapEvaluation {
        shares,
        localisation,
        undefined: None,
    }
}

/// [`evaluate_map`] mode by mode through [`select`] and [`localise`]: the
/// straightforward reference the fused path is tested against (and the path
/// for maps too large for its word layout).
pub fn evaluate_map_reference(
    map: &HeatMap,
    mask: &MorphologyMask,
    method_id: &str,
    modes: &[Mode],
    region: Region,
    loc: &LocalisationOptions,
) -> (Vec<(String, ClassShares)>, Localisation) {
    // One ranking serves the top-k modes and the rank metrics.
    let order = descending_order(&map.values);
    let shares = modes
        .iter()
        .map(|&m| {
            let sel = select(m, &map.values, method_id, Some(&order));
            (m.to_string(), ClassShares::count(&sel, mask))
        })
        .collect();
    let localisation = localise(&map.values, mask, region, loc, Some(&order));
    (shares, localisation)
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExplainInfo {
    pub true_label: Option<i64>,
    pub predicted: Option<i64>,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ExplainFile {
    #[serde(default)]
    images: BTreeMap<String, ExplainInfo>,
}

/// One row of `per_image.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub model: String,
    pub stem: String,
    pub method: String,
    pub mode: String,
    pub info: ExplainInfo,
    pub shares: ClassShares,
    pub localisation: Localisation,
}

#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub model: String,
    pub method: String,
    pub mode: String,
    pub images: usize,
    /// Images whose shares are undefined (no relevant pixel, constant map).
    pub undefined: usize,
    pub pooled: ClassShares,
    /// Mean per-image share with CI: background..rbc, then cell.
    pub mean_share: BTreeMap<String, Option<MeanCi>>,
    /// Mean amount (relevant pixels) per image: the paper's Fig. 10.
    pub mean_amount: BTreeMap<String, f64>,
    /// Pooled nucleus/cytoplasm/vacuole split of the cell per true label
    /// (Fig. 11), keyed by the label.
    pub within_cell_by_label: BTreeMap<String, [Option<f64>; 3]>,
    pub localisation: BTreeMap<String, Option<MeanCi>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairTest {
    pub a: String,
    pub b: String,
    pub n: usize,
    pub median_difference: f64,
    pub statistic: Option<f64>,
    pub pvalue: Option<f64>,
    pub pvalue_holm: Option<f64>,
    /// `a>b`, `a<b`, or `none` when the data cannot support a difference.
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodTests {
    pub model: String,
    pub mode: String,
    pub metric: String,
    pub methods: Vec<String>,
    /// Images on which every method is defined (Friedman blocks).
    pub complete_images: usize,
    pub friedman: Option<stats::FriedmanResult>,
    pub pairs: Vec<PairTest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvaluateReport {
    pub rows: Vec<ImageRow>,
    pub summary: Vec<SummaryRow>,
    pub tests: Vec<MethodTests>,
    pub read_seconds: f64,
    pub compute_seconds: f64,
    pub files: Vec<PathBuf>,
}

struct Job {
    model: String,
    stem: String,
    method: String,
    path: Option<PathBuf>,
}

fn list_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| EvalError::io(dir, e))? {
        let e = e.map_err(|e| EvalError::io(dir, e))?;
        if e.file_type()
            .map_err(|err| EvalError::io(e.path(), err))?
            .is_dir()
        {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

/// Reads, evaluates and writes everything (see the module docs).
pub fn evaluate_dir(opts: &EvaluateOptions) -> Result<EvaluateReport> {
    if opts.modes.is_empty() {
        return Err(EvalError::Options("no mode given".into()));
    }
    let t0 = Instant::now();
    let mut models = list_dirs(&opts.maps_dir)?;
    if let Some(want) = &opts.models {
        models.retain(|m| want.contains(m));
    }
    if models.is_empty() {
        return Err(EvalError::invalid(
            &opts.maps_dir,
            "no model folder (MAPS/<model-id>/<stem>/<method-id>.npy)",
        ));
    }
    let mut jobs = Vec::new();
    let mut infos: BTreeMap<(String, String), ExplainInfo> = BTreeMap::new();
    let mut stems_all = std::collections::BTreeSet::new();
    for model in &models {
        let mdir = opts.maps_dir.join(model);
        let ej = mdir.join("explain.json");
        let explain: ExplainFile = if ej.exists() {
            let text = std::fs::read_to_string(&ej).map_err(|e| EvalError::io(&ej, e))?;
            serde_json::from_str(&text).map_err(|e| {
                EvalError::invalid(&ej, format!("not an explain.json ({{\"images\": {{stem: {{true_label, predicted, score}}}}}}): {e}"))
            })?
        } else {
            ExplainFile::default()
        };
        for stem in list_dirs(&mdir)? {
            let mut info = explain.images.get(&stem).cloned().unwrap_or_default();
            if info.true_label.is_none() {
                info.true_label = label_from_stem(&stem).map(|y| y as i64);
            }
            infos.insert((model.clone(), stem.clone()), info);
            stems_all.insert(stem.clone());
            let sdir = mdir.join(&stem);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&sdir)
                .map_err(|e| EvalError::io(&sdir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "npy"))
                .collect();
            files.sort();
            for f in files {
                let method = f.file_stem().unwrap().to_string_lossy().into_owned();
                if opts.methods.as_ref().is_some_and(|w| !w.contains(&method)) {
                    continue;
                }
                jobs.push(Job {
                    model: model.clone(),
                    stem: stem.clone(),
                    method,
                    path: Some(f),
                });
            }
            if opts.baselines {
                for b in [RANDOM_BASELINE, ORACLE] {
                    jobs.push(Job {
                        model: model.clone(),
                        stem: stem.clone(),
                        method: b.into(),
                        path: None,
                    });
                }
            }
        }
    }
    // Masks, once per stem.
    let masks: BTreeMap<String, (PathBuf, MorphologyMask)> = stems_all
        .par_iter()
        .map(|stem| {
            let p = opts.masks_dir.join(format!("{stem}.png"));
            let m = MorphologyMask::read_png(&p, &opts.label_table)?;
            Ok((stem.clone(), (p, m)))
        })
        .collect::<Result<_>>()?;
    // Maps.
    let maps: Vec<HeatMap> = jobs
        .par_iter()
        .map(|j| {
            let (mpath, mask) = &masks[&j.stem];
            let (w, h) = (mask.width() as usize, mask.height() as usize);
            let Some(path) = &j.path else {
                let values = if j.method == ORACLE {
                    oracle_map(mask, opts.region)
                } else {
                    random_map(w * h, opts.seed ^ fnv1a64(&j.stem))
                };
                return Ok(HeatMap::new(w, h, values));
            };
            let mut map = HeatMap::read_npy(path)?;
            map.check_finite(path)?;
            if (map.width, map.height) != (w, h) {
                if !opts.resize_maps {
                    return Err(EvalError::SizeMismatch {
                        map: path.clone(),
                        mask: mpath.clone(),
                        map_width: map.width,
                        map_height: map.height,
                        mask_width: w,
                        mask_height: h,
                    });
                }
                map = map.resized(w, h);
            }
            Ok(map)
        })
        .collect::<Result<_>>()?;
    let read_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let evals: Vec<MapEvaluation> = jobs
        .par_iter()
        .zip(&maps)
        .map(|(j, map)| {
            let mask = &masks[&j.stem].1;
            evaluate_map(
                map,
                mask,
                &j.method,
                &opts.modes,
                opts.region,
                &opts.localisation,
            )
        })
        .collect();
    let mut rows = Vec::new();
    for (j, ev) in jobs.iter().zip(evals) {
        let info = infos[&(j.model.clone(), j.stem.clone())].clone();
        for (mode, sh) in ev.shares {
            rows.push(ImageRow {
                model: j.model.clone(),
                stem: j.stem.clone(),
                method: j.method.clone(),
                mode,
                info: info.clone(),
                shares: sh,
                localisation: ev.localisation,
            });
        }
    }
    let summary = summarise(&rows, opts);
    let tests = compare_methods(&rows, opts);
    let compute_seconds = t1.elapsed().as_secs_f64();

    let mut report = EvaluateReport {
        rows,
        summary,
        tests,
        read_seconds,
        compute_seconds,
        files: Vec::new(),
    };
    report.files = write_outputs(&report, opts)?;
    Ok(report)
}

const SHARE_KEYS: [&str; 6] = [
    "background",
    "nucleus",
    "cytoplasm",
    "vacuole",
    "rbc",
    "cell",
];

fn share_of(s: &ClassShares, key: &str) -> Option<f64> {
    match key {
        "cell" => s.cell_share,
        k => MorphologyClass::ALL
            .iter()
            .find(|c| c.name() == k)
            .and_then(|c| s.share[c.index()]),
    }
}

type GroupKey = (String, String, String);

fn group_rows(rows: &[ImageRow]) -> BTreeMap<GroupKey, Vec<&ImageRow>> {
    let mut g: BTreeMap<GroupKey, Vec<&ImageRow>> = BTreeMap::new();
    for r in rows {
        g.entry((r.model.clone(), r.method.clone(), r.mode.clone()))
            .or_default()
            .push(r);
    }
    g
}

fn summarise(rows: &[ImageRow], opts: &EvaluateOptions) -> Vec<SummaryRow> {
    let groups = group_rows(rows);
    groups
        .into_par_iter()
        .map(|((model, method, mode), rs)| {
            let seed = opts.seed ^ fnv1a64(&format!("{model}/{method}/{mode}"));
            let ci = |v: Vec<f64>, k: u64| {
                stats::bootstrap_mean_ci(&v, opts.confidence, opts.bootstrap_resamples, seed ^ k)
            };
            let pooled = ClassShares::pooled(rs.iter().map(|r| &r.shares));
            let mut mean_share = BTreeMap::new();
            for (k, key) in SHARE_KEYS.iter().enumerate() {
                let v: Vec<f64> = rs.iter().filter_map(|r| share_of(&r.shares, key)).collect();
                mean_share.insert(key.to_string(), ci(v, k as u64));
            }
            let n = rs.len() as f64;
            let mut mean_amount = BTreeMap::new();
            for c in MorphologyClass::ALL {
                mean_amount.insert(
                    c.name().to_string(),
                    rs.iter().map(|r| r.shares.amount[c.index()]).sum::<f64>() / n,
                );
            }
            mean_amount.insert(
                "cell".into(),
                rs.iter().map(|r| r.shares.cell_amount).sum::<f64>() / n,
            );
            let mut by_label: BTreeMap<String, Vec<&ClassShares>> = BTreeMap::new();
            for r in &rs {
                let l = r
                    .info
                    .true_label
                    .map_or("unknown".to_string(), |l| l.to_string());
                by_label.entry(l).or_default().push(&r.shares);
            }
            let within_cell_by_label = by_label
                .into_iter()
                .map(|(l, v)| (l, ClassShares::pooled(v).within_cell))
                .collect();
            let mut localisation = BTreeMap::new();
            for (k, name) in Localisation::NAMES.iter().enumerate() {
                let v: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| r.localisation.values()[k])
                    .collect();
                localisation.insert(name.to_string(), ci(v, 100 + k as u64));
            }
            SummaryRow {
                undefined: rs.iter().filter(|r| r.shares.undefined.is_some()).count(),
                images: rs.len(),
                model,
                method,
                mode,
                pooled,
                mean_share,
                mean_amount,
                within_cell_by_label,
                localisation,
            }
        })
        .collect()
}

/// Friedman across methods and pairwise Wilcoxon with Holm correction, per
/// (model, mode) on the per-image cell share, and per model on the
/// localisation AUC. Baselines are left out. A pair gets a direction only
/// when its Holm-adjusted p-value is below `alpha`.
fn compare_methods(rows: &[ImageRow], opts: &EvaluateOptions) -> Vec<MethodTests> {
    // (model, mode, metric) → method → stem → value
    type Table = BTreeMap<(String, String, String), BTreeMap<String, BTreeMap<String, f64>>>;
    let mut t: Table = BTreeMap::new();
    let first_mode = opts.modes[0].to_string();
    for r in rows.iter().filter(|r| !r.method.starts_with('@')) {
        if let Some(v) = r.shares.cell_share {
            t.entry((r.model.clone(), r.mode.clone(), "cell_share".into()))
                .or_default()
                .entry(r.method.clone())
                .or_default()
                .insert(r.stem.clone(), v);
        }
        // Localisation does not depend on the mode: take it once.
        if r.mode == first_mode
            && let Some(v) = r.localisation.auc
        {
            t.entry((r.model.clone(), "-".into(), "auc".into()))
                .or_default()
                .entry(r.method.clone())
                .or_default()
                .insert(r.stem.clone(), v);
        }
    }
    t.into_par_iter()
        .filter(|(_, m)| m.len() >= 2)
        .map(|((model, mode, metric), by_method)| {
            let methods: Vec<String> = by_method.keys().cloned().collect();
            let stems: Vec<&String> = by_method
                .values()
                .next()
                .unwrap()
                .keys()
                .filter(|s| by_method.values().all(|m| m.contains_key(*s)))
                .collect();
            let friedman = stats::friedman(
                &methods
                    .iter()
                    .map(|m| stems.iter().map(|s| by_method[m][*s]).collect())
                    .collect::<Vec<_>>(),
            );
            let mut pairs = Vec::new();
            for i in 0..methods.len() {
                for j in i + 1..methods.len() {
                    let (a, b) = (&by_method[&methods[i]], &by_method[&methods[j]]);
                    let common: Vec<&String> = a.keys().filter(|s| b.contains_key(*s)).collect();
                    let x: Vec<f64> = common.iter().map(|s| a[*s]).collect();
                    let y: Vec<f64> = common.iter().map(|s| b[*s]).collect();
                    let mut d: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p - q).collect();
                    d.sort_by(|p, q| p.partial_cmp(q).unwrap());
                    let median = if d.is_empty() {
                        f64::NAN
                    } else if d.len() % 2 == 1 {
                        d[d.len() / 2]
                    } else {
                        (d[d.len() / 2 - 1] + d[d.len() / 2]) / 2.0
                    };
                    let w = stats::wilcoxon(&x, &y, opts.zero_method, false);
                    pairs.push(PairTest {
                        a: methods[i].clone(),
                        b: methods[j].clone(),
                        n: common.len(),
                        median_difference: median,
                        statistic: w.map(|w| w.statistic),
                        pvalue: w.map(|w| w.pvalue),
                        pvalue_holm: None,
                        verdict: "none".into(),
                    });
                }
            }
            let idx: Vec<usize> = (0..pairs.len())
                .filter(|&i| pairs[i].pvalue.is_some())
                .collect();
            let adj = stats::holm(
                &idx.iter()
                    .map(|&i| pairs[i].pvalue.unwrap())
                    .collect::<Vec<_>>(),
            );
            for (&i, p) in idx.iter().zip(adj) {
                pairs[i].pvalue_holm = Some(p);
                if p < opts.alpha && pairs[i].median_difference != 0.0 {
                    pairs[i].verdict = if pairs[i].median_difference > 0.0 {
                        "a>b"
                    } else {
                        "a<b"
                    }
                    .into();
                }
            }
            MethodTests {
                model,
                mode,
                metric,
                complete_images: stems.len(),
                methods,
                friedman,
                pairs,
            }
        })
        .collect()
}

fn opt(v: Option<f64>) -> String {
    v.map_or("undefined".into(), |v| format!("{v:.6}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("undefined".into(), |v| format!("{:.2}", v * 100.0))
}

fn csv_bytes(
    header: &[String],
    rows: impl Iterator<Item = Vec<String>>,
) -> std::io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(&r)?;
    }
    w.into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

fn write_outputs(rep: &EvaluateReport, opts: &EvaluateOptions) -> Result<Vec<PathBuf>> {
    let out = &opts.out_dir;
    let mut files = Vec::new();
    let classes: Vec<&str> = MorphologyClass::ALL.iter().map(|c| c.name()).collect();

    // per_image.csv
    let mut header: Vec<String> = [
        "model",
        "stem",
        "method",
        "mode",
        "true_label",
        "predicted",
        "correct",
        "score",
        "unlabelled",
        "total",
    ]
    .map(String::from)
    .to_vec();
    for c in classes.iter().chain(["cell"].iter()) {
        header.push(format!("{c}_amount"));
        header.push(format!("{c}_share"));
        header.push(format!("{c}_area_share"));
        header.push(format!("{c}_lift"));
    }
    header.extend(Localisation::NAMES.iter().map(|s| s.to_string()));
    header.push("undefined_reason".into());
    let body = rep.rows.iter().map(|r| {
        let s = &r.shares;
        let mut v = vec![
            r.model.clone(),
            r.stem.clone(),
            r.method.clone(),
            r.mode.clone(),
            r.info.true_label.map_or(String::new(), |v| v.to_string()),
            r.info.predicted.map_or(String::new(), |v| v.to_string()),
            match (r.info.true_label, r.info.predicted) {
                (Some(t), Some(p)) => (t == p).to_string(),
                _ => String::new(),
            },
            r.info.score.map_or(String::new(), |v| v.to_string()),
            s.unlabelled.to_string(),
            s.total.to_string(),
        ];
        for i in 0..5 {
            v.extend([
                s.amount[i].to_string(),
                opt(s.share[i]),
                opt(s.area_share[i]),
                opt(s.lift[i]),
            ]);
        }
        v.extend([
            s.cell_amount.to_string(),
            opt(s.cell_share),
            opt(s.cell_area_share),
            opt(s.cell_lift),
        ]);
        v.extend(r.localisation.values().map(opt));
        v.push(s.undefined.clone().unwrap_or_default());
        v
    });
    let p = out.join("per_image.csv");
    let bytes = csv_bytes(&header, body).map_err(|e| EvalError::io(&p, e))?;
    leukex_data::fsutil::write_bytes_atomic(&p, &bytes)?;
    files.push(p);

    // summary.csv
    let mut header: Vec<String> = ["model", "method", "mode", "images", "undefined"]
        .map(String::from)
        .to_vec();
    for c in classes.iter().chain(["cell"].iter()) {
        header.extend([
            format!("{c}_pooled_share"),
            format!("{c}_pooled_area_share"),
            format!("{c}_pooled_lift"),
            format!("{c}_mean_share"),
            format!("{c}_ci_lo"),
            format!("{c}_ci_hi"),
            format!("{c}_mean_amount"),
        ]);
    }
    for n in Localisation::NAMES {
        header.extend([
            format!("{n}_mean"),
            format!("{n}_ci_lo"),
            format!("{n}_ci_hi"),
        ]);
    }
    let body = rep.summary.iter().map(|s| {
        let mut v = vec![
            s.model.clone(),
            s.method.clone(),
            s.mode.clone(),
            s.images.to_string(),
            s.undefined.to_string(),
        ];
        for (i, c) in classes.iter().chain(["cell"].iter()).enumerate() {
            let (sh, ar, li) = if i < 5 {
                (s.pooled.share[i], s.pooled.area_share[i], s.pooled.lift[i])
            } else {
                (
                    s.pooled.cell_share,
                    s.pooled.cell_area_share,
                    s.pooled.cell_lift,
                )
            };
            let m = s.mean_share[*c];
            v.extend([
                opt(sh),
                opt(ar),
                opt(li),
                opt(m.map(|m| m.mean)),
                opt(m.map(|m| m.lo)),
                opt(m.map(|m| m.hi)),
                format!("{:.3}", s.mean_amount[*c]),
            ]);
        }
        for n in Localisation::NAMES {
            let m = s.localisation[n];
            v.extend([
                opt(m.map(|m| m.mean)),
                opt(m.map(|m| m.lo)),
                opt(m.map(|m| m.hi)),
            ]);
        }
        v
    });
    let p = out.join("summary.csv");
    let bytes = csv_bytes(&header, body).map_err(|e| EvalError::io(&p, e))?;
    leukex_data::fsutil::write_bytes_atomic(&p, &bytes)?;
    files.push(p);

    // summary.json
    let p = out.join("summary.json");
    let json = serde_json::json!({
        "modes": opts.modes.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "region": opts.region.name(),
        "localisation_options": opts.localisation,
        "confidence": opts.confidence,
        "bootstrap_resamples": opts.bootstrap_resamples,
        "seed": opts.seed,
        "alpha": opts.alpha,
        "zero_method": opts.zero_method,
        "summary": rep.summary,
        "tests": rep.tests,
    });
    leukex_data::fsutil::write_json_atomic(&p, &json)?;
    files.push(p);

    let p = out.join("tables.md");
    leukex_data::fsutil::write_bytes_atomic(&p, tables_md(rep, opts).as_bytes())?;
    files.push(p);
    Ok(files)
}

fn tables_md(rep: &EvaluateReport, opts: &EvaluateOptions) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Heat maps against cell morphology\n");
    let _ = writeln!(
        s,
        "Shares are pooled (summed counts divided by the summed total, as the paper computed them); \
         chance = the class's share of the labelled area; lift = share ÷ chance. `paper` thresholds the red \
         channel of the rendered map (see the crate docs: it selects zero-relevance pixels); the other modes \
         threshold the relevance itself.\n"
    );
    for mode in &opts.modes {
        let mode = mode.to_string();
        let _ = writeln!(s, "## Mode `{mode}`: share of relevant pixels (%)\n");
        let _ = writeln!(
            s,
            "| model | method | n | cell | rbc | background | cell chance | cell lift | mean cell share [95 % CI] |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for r in rep.summary.iter().filter(|r| r.mode == mode) {
            let [cell, rbc, bg] = r.pooled.paper_categories();
            let m = r.mean_share["cell"];
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.model,
                r.method,
                r.images - r.undefined,
                pct(cell),
                pct(rbc),
                pct(bg),
                pct(r.pooled.cell_area_share),
                r.pooled
                    .cell_lift
                    .map_or("undefined".into(), |v| format!("{v:.2}")),
                m.map_or("undefined".into(), |m| format!(
                    "{:.2} [{:.2}, {:.2}]",
                    m.mean * 100.0,
                    m.lo * 100.0,
                    m.hi * 100.0
                )),
            );
        }
        let _ = writeln!(s, "\n### Mean relevant amount per image (paper Fig. 10)\n");
        let _ = writeln!(
            s,
            "| model | method | cell | rbc | background | nucleus | cytoplasm | vacuole |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in rep.summary.iter().filter(|r| r.mode == mode) {
            let a = &r.mean_amount;
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                r.model,
                r.method,
                a["cell"],
                a["rbc"],
                a["background"],
                a["nucleus"],
                a["cytoplasm"],
                a["vacuole"]
            );
        }
        let _ = writeln!(
            s,
            "\n### Within the cell, per true label (paper Fig. 11; %)\n"
        );
        let _ = writeln!(
            s,
            "| model | method | label | nucleus | cytoplasm | vacuole |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for r in rep.summary.iter().filter(|r| r.mode == mode) {
            for (l, w) in &r.within_cell_by_label {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.model,
                    r.method,
                    l,
                    pct(w[0]),
                    pct(w[1]),
                    pct(w[2])
                );
            }
        }
        s.push('\n');
    }
    let first = opts.modes[0].to_string();
    let _ = writeln!(
        s,
        "## Localisation against `{}` (mean [95 % CI])\n",
        opts.region.name()
    );
    let _ = writeln!(
        s,
        "| model | method | {} |",
        Localisation::NAMES.join(" | ")
    );
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(6));
    for r in rep.summary.iter().filter(|r| r.mode == first) {
        let cells: Vec<String> = Localisation::NAMES
            .iter()
            .map(|n| {
                r.localisation[*n].map_or("undefined".into(), |m| {
                    format!("{:.3} [{:.3}, {:.3}]", m.mean, m.lo, m.hi)
                })
            })
            .collect();
        let _ = writeln!(s, "| {} | {} | {} |", r.model, r.method, cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "\n## Differences between methods\n\nWilcoxon signed-rank on the same images, Holm-corrected per \
         (model, mode, metric); a direction is reported only when the adjusted p < {}. \"none\" means the data \
         cannot support a ranking.\n",
        opts.alpha
    );
    for t in &rep.tests {
        let _ = writeln!(
            s,
            "### {} / {} / {}: Friedman {} over {} complete images\n",
            t.model,
            t.mode,
            t.metric,
            t.friedman.map_or("undefined".into(), |f| format!(
                "χ² = {:.3}, p = {:.4}",
                f.statistic, f.pvalue
            )),
            t.complete_images
        );
        let _ = writeln!(s, "| a | b | n | median a−b | p | p (Holm) | verdict |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for p in &t.pairs {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.4} | {} | {} | {} |",
                p.a,
                p.b,
                p.n,
                p.median_difference,
                opt(p.pvalue),
                opt(p.pvalue_holm),
                p.verdict
            );
        }
        s.push('\n');
    }
    s
}
