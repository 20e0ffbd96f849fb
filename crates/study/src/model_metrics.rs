//! The metrics that need the model, on the maps `leukex explain` wrote: faithfulness
//! (region perturbation, deletion, insertion, ROAD) of the maps already written, and the
//! model parameter randomisation test (MPRT) of methods recomputed on a cascade of
//! randomised models.
//!
//! Both run on a seeded subset of the images ([`ModelMetricsOptions::subset`]), because
//! they cost many forward passes: every perturbed copy of an image is a network input,
//! sent in batches. The maps of `leukex explain` lie on the original image's grid; for
//! faithfulness they are resized bilinearly to the network input, whose pixels are
//! perturbed. The score followed is the softmax probability of the explained class
//! (Quantus's `softmax=True` default; the class from explain.json, else the predicted
//! one). With baselines, a random map and the oracle map (1 on the region of the image's
//! mask, 0 elsewhere) are measured beside the methods, as in the morphology tables.
//!
//! Outputs: `faithfulness.csv` (one row per model × method × image × metric),
//! `faithfulness_curves.json`, `sanity.csv` (one row per method × step × image) and
//! `model_metrics.json` / `model_metrics.md` (means with bootstrap CIs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_data::dataset::Dataset;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_data::image_io::read_rgb;
use leukex_data::npy;
use leukex_data::preprocess::Preprocessing;
use leukex_data::{DataError, LabelTable, MorphologyMask};
use leukex_evaluate::faithfulness::{
    Baseline, Classifier as Scorer, Image, InsertionOptions, PixelFlippingOptions, RegionOrder,
    RegionPerturbationOptions, RoadOptions, insertion, pixel_flipping, region_perturbation, road,
};
use leukex_evaluate::localisation::{oracle_map, random_map};
use leukex_evaluate::sanity::{MprtResult, SimilarityOptions};
use leukex_evaluate::stats::bootstrap_mean_ci;
use leukex_evaluate::{EvalError, Region};
use leukex_explain::cam::CamError;
use leukex_explain::pipeline::input_bounds;
use leukex_explain::run::{ExplainOptions, explain_batch_with};
use leukex_explain::{Method, MethodParams, scale_and_resize};
use leukex_hash::fnv1a64;
use leukex_models::Classifier;
use leukex_models::predict::{NonFinite, softmax};
use leukex_models::randomise::{Granularity, LayerOrder};
use leukex_render::resample::{PixelGrid, resize_bilinear};
use serde::Serialize;
use serde_json::{Value, json};

/// Why the model metrics could not run.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Explain(#[from] CamError),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("no maps of this model ({model}) in {maps} (expected the folder {expected})")]
    NoMaps {
        model: String,
        maps: PathBuf,
        expected: PathBuf,
    },
    #[error("sanity method: {0}")]
    SanityMethod(String),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },
    /// A study file (or the study's options) is wrong: names the file and the key.
    #[error("{path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("cell {cell}: {source}")]
    Cell {
        cell: String,
        source: Box<StudyError>,
    },
    #[error(transparent)]
    Train(#[from] leukex_train::TrainError),
    #[error(transparent)]
    ExplainRun(#[from] leukex_explain::pipeline::ExplainRunError),
    #[error(transparent)]
    Synth(#[from] leukex_synth::SynthError),
    #[error(transparent)]
    Split(#[from] leukex_data::split::SplitError),
    #[error(transparent)]
    Report(#[from] leukex_report::ReportError),
}

type Result<T> = std::result::Result<T, StudyError>;

/// A faithfulness metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaithfulnessMetric {
    /// Region perturbation (patches, most relevant first): AOPC.
    RegionPerturbation,
    /// Pixel flipping: AUC of the score as the most relevant pixels are removed.
    Deletion,
    /// AUC of the score as the most relevant pixels are inserted.
    Insertion,
    /// ROAD: mean accuracy over the imputed percentages.
    Road,
}

impl FaithfulnessMetric {
    pub const ALL: [FaithfulnessMetric; 4] = [
        FaithfulnessMetric::RegionPerturbation,
        FaithfulnessMetric::Deletion,
        FaithfulnessMetric::Insertion,
        FaithfulnessMetric::Road,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaithfulnessMetric::RegionPerturbation => "region-perturbation",
            FaithfulnessMetric::Deletion => "deletion",
            FaithfulnessMetric::Insertion => "insertion",
            FaithfulnessMetric::Road => "road",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl std::fmt::Display for FaithfulnessMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the model metrics run.
#[derive(Debug, Clone)]
pub struct ModelMetricsOptions {
    pub faithfulness: Vec<FaithfulnessMetric>,
    /// Methods of the MPRT (leukex method names, recomputed on the randomised models).
    pub sanity: Vec<String>,
    pub granularity: Granularity,
    /// Images evaluated (seeded choice among the maps' images; 0 = all).
    pub subset: usize,
    /// Deletion and insertion: number of steps.
    pub steps: usize,
    /// Region perturbation: patch side in pixels.
    pub patch: usize,
    /// Region perturbation: number of patches perturbed.
    pub regions: usize,
    pub baseline: Baseline,
    /// ROAD: percentages of pixels imputed.
    pub road_percentages: Vec<f64>,
    /// Perturbed images per forward pass.
    pub model_batch: usize,
    /// Only these method ids (all maps when `None`).
    pub methods_filter: Option<Vec<String>>,
    /// Measure the random and oracle maps too.
    pub baselines: bool,
    /// The oracle's region.
    pub region: Region,
    pub seed: u64,
    /// Bootstrap resamples of the confidence intervals.
    pub resamples: usize,
}

/// The model whose maps are measured.
pub struct StudyModel<'a> {
    /// In inference mode.
    pub model: &'a Classifier,
    /// Its maps are `maps/<id>/`.
    pub id: String,
    pub preprocessing: Preprocessing,
}

/// One image of the subset: its network input and explained class.
struct Item {
    stem: String,
    x: Vec<f32>,
    /// Original image grid (the maps' grid).
    size: [usize; 2],
    target: usize,
    /// The oracle map (1 on the region, 0 elsewhere) on the original grid, when the image
    /// has a mask.
    oracle: Option<Vec<f32>>,
}

pub(crate) fn file_error(path: &Path, reason: impl ToString) -> StudyError {
    StudyError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Runs the model metrics on `maps/<model id>/` for the images of `data` and writes them
/// into `out`; returns the files written.
pub fn run_model_metrics(
    m: &StudyModel,
    data: &Path,
    maps: &Path,
    o: &ModelMetricsOptions,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    if o.steps == 0 {
        return Err(StudyError::Zero("steps"));
    }
    if o.patch == 0 {
        return Err(StudyError::Zero("patch"));
    }
    if o.model_batch == 0 {
        return Err(StudyError::Zero("model batch"));
    }
    let (model, prep, seed) = (m.model, &m.preprocessing, o.seed);
    let model_dir = maps.join(&m.id);
    if !model_dir.is_dir() {
        return Err(StudyError::NoMaps {
            model: m.id.clone(),
            maps: maps.to_path_buf(),
            expected: model_dir,
        });
    }
    // The MPRT methods are checked before any work.
    let params = MethodParams {
        bounds: Some(input_bounds(&prep.normalization)),
        ..Default::default()
    };
    let sanity_methods: Vec<Method> = o
        .sanity
        .iter()
        .map(|n| Method::parse(n.trim(), &params).map_err(StudyError::SanityMethod))
        .collect::<Result<_>>()?;
    let ds = Dataset::open(data, &Default::default())?;
    // explain.json names the explained class of each image; without it (maps written by
    // other tools) the predicted class is explained. A file that is there must be readable.
    let explain_path = model_dir.join("explain.json");
    let explain_json: Option<Value> = if explain_path.is_file() {
        let text = std::fs::read_to_string(&explain_path)
            .map_err(|e| file_error(&explain_path, format!("cannot read: {e}")))?;
        Some(
            serde_json::from_str(&text)
                .map_err(|e| file_error(&explain_path, format!("not valid JSON: {e}")))?,
        )
    } else {
        None
    };

    // The subset: images with maps, seeded.
    let mut stems: Vec<String> = std::fs::read_dir(&model_dir)
        .map_err(|e| file_error(&model_dir, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    if stems.is_empty() {
        return Err(file_error(&model_dir, "no image folders with maps"));
    }
    let stems = subset(stems, o.subset, seed);

    let t_read = Instant::now();
    let items = read_items(&stems, &ds, prep, model, explain_json.as_ref(), o.region)?;
    eprintln!(
        "model metrics: {} images of {} ({:.1} s to read and classify)",
        items.len(),
        m.id,
        t_read.elapsed().as_secs_f64()
    );
    let [h, w] = prep.size.map(|s| s as usize);

    let mut files = Vec::new();
    let mut summary = json!({"model": m.id, "images": stems, "faithfulness": [], "sanity": []});
    if !o.faithfulness.is_empty() {
        let (rows, curves, means) = faithfulness(o, model, &model_dir, &items, [h, w])?;
        let path = out.join("faithfulness.csv");
        write_bytes_atomic(&path, rows.as_bytes())?;
        files.push(path);
        let path = out.join("faithfulness_curves.json");
        write_json_atomic(&path, &curves)?;
        files.push(path);
        summary["faithfulness"] = means;
    }
    if !o.sanity.is_empty() {
        let (rows, means) = sanity(o, m, &sanity_methods, &items)?;
        let path = out.join("sanity.csv");
        write_bytes_atomic(&path, rows.as_bytes())?;
        files.push(path);
        summary["sanity"] = means;
    }
    summary["options"] = json!({
        "faithfulness": o.faithfulness,
        "score": "softmax probability of the explained class",
        "baseline": o.baseline,
        "steps": o.steps,
        "patch": o.patch,
        "regions": o.regions,
        "road_percentages": o.road_percentages,
        "sanity_granularity": match o.granularity {
            Granularity::Group => "group",
            Granularity::Module => "module",
        },
        "subset": o.subset,
        "seed": seed,
    });
    let path = out.join("model_metrics.json");
    write_json_atomic(&path, &summary)?;
    files.push(path);
    let path = out.join("model_metrics.md");
    write_bytes_atomic(&path, markdown(&summary).as_bytes())?;
    files.push(path);
    Ok(files)
}

fn read_items(
    stems: &[String],
    ds: &Dataset,
    prep: &Preprocessing,
    model: &Classifier,
    explain_json: Option<&Value>,
    region: Region,
) -> Result<Vec<Item>> {
    let table = ds
        .label_table
        .clone()
        .unwrap_or_else(LabelTable::leukex_written);
    let mut items = Vec::with_capacity(stems.len());
    for stem in stems {
        let i = ds.find_stem(stem).ok_or_else(|| {
            file_error(
                &ds.root,
                format!("image {stem} has maps but is not in this data set"),
            )
        })?;
        let img = read_rgb(&ds.samples[i].image)?;
        let x = prep.apply(&img).data;
        let target = match explain_json.and_then(|j| j["images"][stem]["target"].as_u64()) {
            Some(t) => t as usize,
            None => {
                let p = scores(model, &x, 1, prep.size.map(|s| s as usize))?;
                argmax(&p)
            }
        };
        let size = [img.height() as usize, img.width() as usize];
        let oracle = match &ds.samples[i].mask {
            Some(path) => {
                let mask = MorphologyMask::read_png(path, &table)?;
                if [mask.height() as usize, mask.width() as usize] != size {
                    return Err(file_error(
                        path,
                        format!(
                            "mask of {}x{} for an image of {}x{}",
                            mask.height(),
                            mask.width(),
                            size[0],
                            size[1]
                        ),
                    ));
                }
                Some(oracle_map(&mask, region))
            }
            None => None,
        };
        items.push(Item {
            stem: stem.clone(),
            x,
            size,
            target,
            oracle,
        });
    }
    Ok(items)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv { (i, x) } else { (bi, bv) }
        })
        .0
}

/// Softmax probabilities `n × k` of `n` network inputs of `h`×`w`.
fn scores(model: &Classifier, x: &[f32], n: usize, [h, w]: [usize; 2]) -> Result<Vec<f32>> {
    let t = Tensor::<4>::from_data(
        TensorData::new(x.to_vec(), [n, 3, h, w]),
        &Device::default(),
    );
    let logits = model
        .forward(t)
        .cast(FloatDType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| StudyError::Model {
            model: "scores".into(),
            reason: format!("reading logits: {e:?}"),
        })?;
    let k = logits.len() / n;
    Ok(logits.chunks(k).flat_map(softmax).collect())
}

/// The method ids of one image folder (the `.npy` maps), filtered.
fn method_ids(dir: &Path, filter: Option<&[String]>) -> Result<Vec<String>> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|id| filter.is_none_or(|f| f.iter().any(|m| m == id)))
        .collect();
    ids.sort();
    Ok(ids)
}

/// A map file as an `[H, W]` plane (channels summed) resized to the network input.
fn map_on_input(path: &Path, size: [usize; 2], input: [usize; 2]) -> Result<Vec<f32>> {
    let m = npy::read_f32(path)?;
    let (mh, mw) = match m.shape.as_slice() {
        [h, w] => (*h, *w),
        [_, h, w] => (*h, *w),
        s => {
            return Err(file_error(
                path,
                format!("a map must be [H, W] or [C, H, W], not {s:?}"),
            ));
        }
    };
    let plane: Vec<f32> = if m.shape.len() == 3 {
        let p = mh * mw;
        (0..p)
            .map(|i| m.data.iter().skip(i).step_by(p).sum())
            .collect()
    } else {
        m.data
    };
    if [mh, mw] != size && [mh, mw] != input {
        return Err(file_error(
            path,
            format!(
                "map of {mh}x{mw} fits neither the image ({}x{}) nor the network input ({}x{})",
                size[0], size[1], input[0], input[1]
            ),
        ));
    }
    if let Some(bad) = NonFinite::find(&plane, [1, mh, mw]) {
        return Err(file_error(path, format!("map value {bad} is not finite")));
    }
    Ok(if [mh, mw] == input {
        plane
    } else {
        resize_bilinear(&plane, mh, mw, input[0], input[1], PixelGrid::HalfPixel)
    })
}

type Curves = BTreeMap<String, Value>;

fn faithfulness(
    o: &ModelMetricsOptions,
    model: &Classifier,
    model_dir: &Path,
    items: &[Item],
    [h, w]: [usize; 2],
) -> Result<(String, Curves, Value)> {
    let c = 3usize;
    let (baseline, seed) = (o.baseline, o.seed);
    let pixels_per_step = (h * w).div_ceil(o.steps);
    let mut csv = String::from("model,method,stem,target,metric,value\n");
    let mut curves: Curves = BTreeMap::new();
    let mut values: BTreeMap<(String, FaithfulnessMetric), Vec<f64>> = BTreeMap::new();
    let model_id = model_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (ii, it) in items.iter().enumerate() {
        let t0 = Instant::now();
        let dir = model_dir.join(&it.stem);
        let mut maps: Vec<(String, Vec<f32>)> = method_ids(&dir, o.methods_filter.as_deref())?
            .into_iter()
            .map(|id| {
                let m = map_on_input(&dir.join(format!("{id}.npy")), it.size, [h, w])?;
                Ok((id, m))
            })
            .collect::<Result<_>>()?;
        if o.baselines {
            maps.push((
                "@random".to_string(),
                random_map(h * w, seed ^ fnv1a64(&it.stem)),
            ));
            if let Some(o) = &it.oracle {
                let [oh, ow] = it.size;
                maps.push((
                    "@oracle".to_string(),
                    resize_bilinear(o, oh, ow, h, w, PixelGrid::HalfPixel),
                ));
            }
        }
        let image = Image::new(&it.x, c, h, w)?;
        for (id, map) in &maps {
            let mut scorer =
                Scorer::new(it.target, |x: &[f32], n: usize| scores(model, x, n, [h, w]))
                    .with_batch(o.model_batch);
            for &metric in &o.faithfulness {
                let (value, curve): (f64, Value) = match metric {
                    FaithfulnessMetric::RegionPerturbation => {
                        let o = RegionPerturbationOptions {
                            patch_size: o.patch,
                            order: RegionOrder::Morf,
                            regions_evaluation: o.regions,
                            baseline,
                            abs: false,
                        };
                        let r = region_perturbation(image, map, &o, &mut scorer)?;
                        (
                            r.aopc,
                            json!({"original": r.original, "curve": r.curve, "auc": r.auc}),
                        )
                    }
                    FaithfulnessMetric::Deletion => {
                        let o = PixelFlippingOptions {
                            features_in_step: c * pixels_per_step,
                            baseline,
                            abs: false,
                        };
                        let r = pixel_flipping(image, map, &o, &mut scorer)?;
                        (
                            r.deletion_auc,
                            json!({"original": r.original, "curve": r.curve, "auc": r.auc}),
                        )
                    }
                    FaithfulnessMetric::Insertion => {
                        let o = InsertionOptions {
                            features_in_step: c * pixels_per_step,
                            baseline,
                            abs: false,
                        };
                        let r = insertion(image, map, &o, &mut scorer)?;
                        (r.auc, json!({"curve": r.curve}))
                    }
                    FaithfulnessMetric::Road => {
                        let o = RoadOptions {
                            percentages: o.road_percentages.clone(),
                            seed,
                            ..Default::default()
                        };
                        let r = road(image, map, &o, &mut scorer)?;
                        let curve = serde_json::to_value(&r)
                            .map_err(|e| file_error(model_dir, format!("ROAD result: {e}")))?;
                        (r.accuracy, curve)
                    }
                };
                csv.push_str(&format!(
                    "{model_id},{id},{},{},{metric},{value}\n",
                    it.stem, it.target
                ));
                curves.insert(format!("{model_id}/{}/{id}/{metric}", it.stem), curve);
                values.entry((id.clone(), metric)).or_default().push(value);
            }
        }
        eprintln!(
            "faithfulness: {}/{} {} ({} maps, {:.1} s)",
            ii + 1,
            items.len(),
            it.stem,
            maps.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let means: Vec<Value> = values
        .iter()
        .map(|((method, metric), v)| {
            let ci = bootstrap_mean_ci(v, 0.95, o.resamples, seed);
            json!({"method": method, "metric": metric, "n": v.len(), "ci95": ci})
        })
        .collect();
    Ok((csv, curves, Value::Array(means)))
}

fn sanity(
    o: &ModelMetricsOptions,
    sm: &StudyModel,
    methods: &[Method],
    items: &[Item],
) -> Result<(String, Value)> {
    let (model, seed, resamples) = (sm.model, o.seed, o.resamples);
    let [h, w] = sm.preprocessing.size.map(|s| s as usize);
    let n = items.len();
    let x: Vec<f32> = items.iter().flat_map(|it| it.x.clone()).collect();
    let targets: Vec<usize> = items.iter().map(|it| it.target).collect();
    // Maps `[method][image]`, finished as `leukex explain` writes them at input size.
    let explain = |m: &Classifier| -> Result<Vec<Vec<Vec<f32>>>> {
        let mut per_method = vec![Vec::with_capacity(n); methods.len()];
        for (bx, bt) in x.chunks(8 * 3 * h * w).zip(targets.chunks(8)) {
            let b = bt.len();
            let t = Tensor::<4>::from_data(
                TensorData::new(bx.to_vec(), [b, 3, h, w]),
                &Device::default(),
            );
            let maps = explain_batch_with(m, t, bt, methods, &ExplainOptions::default())?;
            for (mi, (map, method)) in maps.into_iter().zip(methods).enumerate() {
                let map = if method.is_cam() {
                    scale_and_resize(map, h, w)
                } else {
                    map.sum_dim(1)
                };
                let v = map
                    .cast(FloatDType::F32)
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| StudyError::Model {
                        model: sm.id.clone(),
                        reason: format!("reading a map: {e:?}"),
                    })?;
                per_method[mi].extend(v.chunks(h * w).map(|p| p.to_vec()));
            }
        }
        Ok(per_method)
    };
    let sim = SimilarityOptions::default();
    let t0 = Instant::now();
    let original = explain(model)?;
    let again = explain(model)?;
    let mut results: Vec<MprtResult> = original
        .iter()
        .zip(&again)
        .map(|(o, r)| Ok(MprtResult::new(sim.compare_all(o, r)?)))
        .collect::<Result<_>>()?;
    let steps = model.randomisation_steps(LayerOrder::TopDown, o.granularity);
    for (si, step) in steps.iter().enumerate() {
        let mut randomised = model.clone();
        randomised
            .randomise(&step.modules, seed)
            .map_err(|e| StudyError::Model {
                model: sm.id.clone(),
                reason: e.to_string(),
            })?;
        let maps = explain(&randomised)?;
        for (res, (o, r)) in results.iter_mut().zip(original.iter().zip(&maps)) {
            res.push(step.name.clone(), sim.compare_all(o, r)?)?;
        }
        eprintln!(
            "MPRT: step {}/{} ({}), {:.1} s",
            si + 1,
            steps.len(),
            step.name,
            t0.elapsed().as_secs_f64()
        );
    }
    let mut csv = String::from("model,method,step,layer,stem,similarity\n");
    let mut means = Vec::new();
    let cell = |v: Option<f64>| v.map_or("undefined".to_string(), |v| v.to_string());
    for (name, res) in o.sanity.iter().zip(&results) {
        for (i, it) in items.iter().enumerate() {
            csv.push_str(&format!(
                "{},{name},0,original,{},{}\n",
                sm.id,
                it.stem,
                cell(res.original[i])
            ));
        }
        for (si, layer) in res.layers.iter().enumerate() {
            for (i, it) in items.iter().enumerate() {
                csv.push_str(&format!(
                    "{},{name},{},{},{},{}\n",
                    sm.id,
                    si + 1,
                    layer.name,
                    it.stem,
                    cell(layer.scores[i])
                ));
            }
        }
        let last: Vec<f64> = res.last_correlation().into_iter().flatten().collect();
        means.push(json!({
            "method": name,
            "similarity": "spearman of |normalised maps| (Quantus MPRT defaults)",
            "layers": res.layer_means(),
            "last_correlation": bootstrap_mean_ci(&last, 0.95, resamples, seed),
            "average_correlation": res.average_correlation(),
        }));
    }
    Ok((csv, Value::Array(means)))
}

fn markdown(summary: &Value) -> String {
    let mut s = format!(
        "# Model metrics: {}\n\nImages: {}\n\n",
        summary["model"].as_str().unwrap_or(""),
        summary["images"].as_array().map_or(0, |a| a.len())
    );
    let fmt = |v: &Value| -> String {
        v.as_f64()
            .map_or("undefined".to_string(), |x| format!("{x:.4}"))
    };
    if let Some(rows) = summary["faithfulness"].as_array().filter(|r| !r.is_empty()) {
        s.push_str("## Faithfulness (mean, 95 % bootstrap CI)\n\n");
        s.push_str("Region perturbation: AOPC (higher = more faithful); deletion: AUC of the score as the most relevant pixels are removed (lower = more faithful); insertion: AUC as they are inserted (higher = more faithful); ROAD: mean accuracy over the percentages (lower = more faithful).\n\n| method | metric | n | mean | CI low | CI high |\n|---|---|---|---|---|---|\n");
        for r in rows {
            let ci = &r["ci95"];
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r["method"].as_str().unwrap_or(""),
                r["metric"].as_str().unwrap_or(""),
                r["n"],
                fmt(&ci["mean"]),
                fmt(&ci["lo"]),
                fmt(&ci["hi"])
            ));
        }
        s.push('\n');
    }
    if let Some(rows) = summary["sanity"].as_array().filter(|r| !r.is_empty()) {
        s.push_str("## Model parameter randomisation (cascading, output side first)\n\nMean Spearman correlation between the original map and the map of the model randomised down to each layer; a map that stays near 1 does not depend on the weights.\n\n");
        for r in rows {
            s.push_str(&format!(
                "### {}\n\n| randomised down to | mean similarity |\n|---|---|\n",
                r["method"].as_str().unwrap_or("")
            ));
            for l in r["layers"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "| {} | {} |\n",
                    l[0].as_str().unwrap_or(""),
                    fmt(&l[1])
                ));
            }
            s.push('\n');
        }
    }
    s
}

/// `n` of `stems` (all for 0), chosen by a seeded hash of each name: the same seed gives
/// the same images, and adding images to the folder does not change which of the old ones
/// are chosen unless a new one ranks before them. Returned sorted.
fn subset(stems: Vec<String>, n: usize, seed: u64) -> Vec<String> {
    if n == 0 || n >= stems.len() {
        return stems;
    }
    let mut ranked: Vec<(u64, String)> = stems
        .into_iter()
        .map(|s| (fnv1a64(&s) ^ seed.wrapping_mul(0x9e3779b97f4a7c15), s))
        .map(|(h, s)| (h.wrapping_mul(0xff51afd7ed558ccd) ^ (h >> 33), s))
        .collect();
    ranked.sort();
    let chosen: BTreeSet<String> = ranked.into_iter().take(n).map(|(_, s)| s).collect();
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_serialise_as_written() {
        for m in FaithfulnessMetric::ALL {
            assert_eq!(FaithfulnessMetric::parse(m.name()), Some(m));
            assert_eq!(
                serde_json::to_value(m).unwrap(),
                Value::String(m.name().into())
            );
        }
        assert_eq!(FaithfulnessMetric::parse("aopc"), None);
    }

    #[test]
    fn subsets_are_seeded_and_stable() {
        let stems: Vec<String> = (0..20).map(|i| format!("Im{i:03}_1")).collect();
        let a = subset(stems.clone(), 5, 3);
        assert_eq!(a.len(), 5);
        assert_eq!(a, subset(stems.clone(), 5, 3));
        assert_ne!(a, subset(stems.clone(), 5, 4));
        // Adding an image that ranks after the chosen ones changes nothing.
        let mut more = stems.clone();
        more.push("Im999_0".into());
        let b = subset(more, 5, 3);
        assert!(b == a || b.contains(&"Im999_0".to_string()));
        assert_eq!(subset(stems.clone(), 0, 3), stems);
    }
}
