//! `leukex evaluate --model RUN --data DIR`: the metrics that need the model — faithfulness
//! (region perturbation, deletion, insertion, ROAD) of the maps already written, and the
//! model parameter randomisation test (MPRT) of methods recomputed on a cascade of
//! randomised models.
//!
//! Both run on a seeded subset of the images (`--subset`), because they cost many forward
//! passes: every perturbed copy of an image is a network input, sent in batches. The maps
//! of `leukex explain` lie on the original image's grid; for faithfulness they are resized
//! bilinearly to the network input, whose pixels are perturbed. The score followed is the
//! softmax probability of the explained class (Quantus's `softmax=True` default; the class
//! from explain.json, else the predicted one). Unless `--no-baselines`, a random map and the
//! oracle map (1 on `--region` of the image's mask, 0 elsewhere) are measured beside the
//! methods, as in the morphology tables.
//!
//! Outputs (beside the morphology tables): `faithfulness.csv` (one row per model × method ×
//! image × metric), `faithfulness_curves.json`, `sanity.csv` (one row per method × step ×
//! image) and `model_metrics.json` / `model_metrics.md` (means with bootstrap CIs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::prelude::*;
use burn::tensor::FloatDType;
use clap::Args;
use leukex_data::dataset::Dataset;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_data::image_io::read_rgb;
use leukex_data::npy;
use leukex_data::preprocess::Preprocessing;
use leukex_data::{LabelTable, MorphologyMask};
use leukex_evaluate::Region;
use leukex_evaluate::faithfulness::{
    Baseline, Classifier as Scorer, Image, InsertionOptions, PixelFlippingOptions, RegionOrder,
    RegionPerturbationOptions, RoadOptions, insertion, pixel_flipping, region_perturbation, road,
};
use leukex_evaluate::localisation::{oracle_map, random_map};
use leukex_evaluate::sanity::{MprtResult, SimilarityOptions};
use leukex_evaluate::stats::bootstrap_mean_ci;
use leukex_explain::resize::resize_bilinear;
use leukex_explain::run::{ExplainOptions, explain_batch_with};
use leukex_explain::{Method, MethodParams, scale_and_resize};
use leukex_models::Classifier;
use leukex_models::predict::softmax;
use leukex_models::randomise::{Granularity, LayerOrder};
use serde_json::{Value, json};

use crate::explain_cmd::input_bounds;
use crate::model_cmd::{ModelArgs, ResolvedModel};

/// Faithfulness metrics `--faithfulness` accepts.
pub const FAITHFULNESS_METRICS: [&str; 4] =
    ["region-perturbation", "deletion", "insertion", "road"];

#[derive(Args, Debug, Clone)]
pub struct ModelMetricsArgs {
    /// A run folder of `leukex train`: enables the metrics that need the model (faithfulness, MPRT) on its maps, MAPS/<run name>/.
    #[arg(long, value_name = "RUN", requires = "data")]
    model: Option<PathBuf>,
    /// The data set the maps were made from (images found by stem), for --model.
    #[arg(long, value_name = "DIR", requires = "model")]
    data: Option<PathBuf>,
    /// Faithfulness metrics (comma-separated): region-perturbation (8x8 patches, most relevant first), deletion (pixel flipping), insertion, road; `none` to skip.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "region-perturbation,deletion,insertion"
    )]
    faithfulness: Vec<String>,
    /// Methods for the model parameter randomisation test (comma-separated leukex method names, recomputed on the randomised models); none by default.
    #[arg(long, value_delimiter = ',')]
    sanity: Vec<String>,
    /// MPRT units: group (ResNet stages, inception blocks, ...) or module (every conv/BN/linear, as Quantus).
    #[arg(long, default_value = "group")]
    sanity_granularity: String,
    /// Images evaluated with the model (seeded choice among the maps' images; 0 = all).
    #[arg(long, default_value_t = 8)]
    subset: usize,
    /// Deletion and insertion: number of steps (each step takes H*W/steps whole pixels).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Region perturbation: patch side in pixels.
    #[arg(long, default_value_t = 8)]
    patch: usize,
    /// Region perturbation: number of patches perturbed (Quantus regions_evaluation).
    #[arg(long, default_value_t = 100)]
    regions: usize,
    /// What perturbed pixels become: black (image minimum, Quantus), white, mean, zero, a number, uniform[:LOW:HIGH[:SEED]].
    #[arg(long, default_value = "black")]
    baseline: String,
    /// ROAD: percentages of pixels imputed (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,30,40,50,60,70,80,90"
    )]
    road_percentages: Vec<f64>,
    /// Perturbed images per forward pass.
    #[arg(long, default_value_t = 32)]
    model_batch: usize,
}

impl ModelMetricsArgs {
    pub fn enabled(&self) -> bool {
        self.model.is_some()
    }
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

/// Runs the model metrics on `maps/<run name>/` and writes them into `out`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    a: &ModelMetricsArgs,
    maps: &Path,
    methods_filter: Option<&[String]>,
    baselines: bool,
    region: Region,
    seed: u64,
    resamples: usize,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (Some(model_path), Some(data)) = (&a.model, &a.data) else {
        return Ok(Vec::new());
    };
    let metrics: Vec<String> = a
        .faithfulness
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty() && m != "none")
        .collect();
    for m in &metrics {
        if !FAITHFULNESS_METRICS.contains(&m.as_str()) {
            bail!(
                "--faithfulness: unknown metric {m:?} (expected {})",
                FAITHFULNESS_METRICS.join(", ")
            );
        }
    }
    let baseline = Baseline::parse(&a.baseline).map_err(|e| anyhow!("--baseline: {e}"))?;
    let granularity = match a.sanity_granularity.as_str() {
        "group" => Granularity::Group,
        "module" => Granularity::Module,
        g => bail!("--sanity-granularity: expected group or module, got {g:?}"),
    };
    if a.steps == 0 || a.patch == 0 || a.model_batch == 0 {
        bail!("--steps, --patch and --model-batch must be at least 1");
    }

    let resolved = ModelArgs::run_folder(model_path).resolve()?;
    let model = resolved.load()?.valid();
    let prep = resolved.image_preprocessing(None);
    let model_dir = maps.join(&resolved.id);
    if !model_dir.is_dir() {
        bail!(
            "--model {}: no maps of this model in {} (expected the folder {})",
            model_path.display(),
            maps.display(),
            model_dir.display()
        );
    }
    // The MPRT methods are checked before any work.
    let params = MethodParams {
        bounds: Some(input_bounds(&prep.normalization)),
        ..Default::default()
    };
    let sanity_methods: Vec<Method> = a
        .sanity
        .iter()
        .map(|n| Method::parse(n.trim(), &params).map_err(|e| anyhow!("--sanity: {e}")))
        .collect::<Result<_>>()?;
    let ds = Dataset::open(data, &Default::default())
        .with_context(|| format!("--data {}", data.display()))?;
    // explain.json names the explained class of each image; without it (maps written by
    // other tools) the predicted class is explained. A file that is there must be readable.
    let explain_path = model_dir.join("explain.json");
    let explain_json: Option<Value> = if explain_path.is_file() {
        let text = std::fs::read_to_string(&explain_path)
            .with_context(|| format!("cannot read {}", explain_path.display()))?;
        Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", explain_path.display()))?,
        )
    } else {
        None
    };

    // The subset: images with maps, seeded.
    let mut stems: Vec<String> = std::fs::read_dir(&model_dir)
        .with_context(|| format!("cannot list {}", model_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    if stems.is_empty() {
        bail!("{}: no image folders with maps", model_dir.display());
    }
    let stems = subset(stems, a.subset, seed);

    let t_read = Instant::now();
    let items = read_items(&stems, &ds, &prep, &model, explain_json.as_ref(), region)?;
    eprintln!(
        "model metrics: {} images of {} ({:.1} s to read and classify)",
        items.len(),
        resolved.id,
        t_read.elapsed().as_secs_f64()
    );
    let [h, w] = prep.size.map(|s| s as usize);

    let mut files = Vec::new();
    let mut summary =
        json!({"model": resolved.id, "images": stems, "faithfulness": [], "sanity": []});
    if !metrics.is_empty() {
        let (rows, curves, means) = faithfulness(
            a,
            &metrics,
            baseline,
            &model,
            &model_dir,
            &items,
            [h, w],
            methods_filter,
            baselines,
            seed,
            resamples,
        )?;
        let path = out.join("faithfulness.csv");
        write_bytes_atomic(&path, rows.as_bytes())?;
        files.push(path);
        let path = out.join("faithfulness_curves.json");
        write_json_atomic(&path, &curves)?;
        files.push(path);
        summary["faithfulness"] = means;
    }
    if !a.sanity.is_empty() {
        let (rows, means) = sanity(
            a,
            granularity,
            &model,
            &resolved,
            &prep,
            &sanity_methods,
            &items,
            seed,
            resamples,
        )?;
        let path = out.join("sanity.csv");
        write_bytes_atomic(&path, rows.as_bytes())?;
        files.push(path);
        summary["sanity"] = means;
    }
    summary["options"] = json!({
        "faithfulness": metrics,
        "score": "softmax probability of the explained class",
        "baseline": baseline,
        "steps": a.steps,
        "patch": a.patch,
        "regions": a.regions,
        "road_percentages": a.road_percentages,
        "sanity_granularity": a.sanity_granularity,
        "subset": a.subset,
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
        let i = ds.find_stem(stem).with_context(|| {
            format!("image {stem} has maps but is not in {}", ds.root.display())
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
                    bail!(
                        "{}: mask of {}x{} for an image of {}x{}",
                        path.display(),
                        mask.height(),
                        mask.width(),
                        size[0],
                        size[1]
                    );
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
        .map_err(|e| anyhow!("logits: {e:?}"))?;
    let k = logits.len() / n;
    Ok(logits.chunks(k).flat_map(softmax).collect())
}

/// The method ids of one image folder (the `.npy` maps), filtered.
fn method_ids(dir: &Path, filter: Option<&[String]>) -> Result<Vec<String>> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
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
        s => bail!(
            "{}: a map must be [H, W] or [C, H, W], not {s:?}",
            path.display()
        ),
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
        bail!(
            "{}: map of {mh}x{mw} fits neither the image ({}x{}) nor the network input ({}x{})",
            path.display(),
            size[0],
            size[1],
            input[0],
            input[1]
        );
    }
    if let Some(i) = plane.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {} at index {i} is not finite",
            path.display(),
            plane[i]
        );
    }
    Ok(if [mh, mw] == input {
        plane
    } else {
        resize_bilinear(&plane, mh, mw, input[0], input[1])
    })
}

type Curves = BTreeMap<String, Value>;

#[allow(clippy::too_many_arguments)]
fn faithfulness(
    a: &ModelMetricsArgs,
    metrics: &[String],
    baseline: Baseline,
    model: &Classifier,
    model_dir: &Path,
    items: &[Item],
    [h, w]: [usize; 2],
    filter: Option<&[String]>,
    baselines: bool,
    seed: u64,
    resamples: usize,
) -> Result<(String, Curves, Value)> {
    let c = 3usize;
    let pixels_per_step = (h * w).div_ceil(a.steps);
    let mut csv = String::from("model,method,stem,target,metric,value\n");
    let mut curves: Curves = BTreeMap::new();
    let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let model_id = model_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (ii, it) in items.iter().enumerate() {
        let t0 = Instant::now();
        let dir = model_dir.join(&it.stem);
        let mut maps: Vec<(String, Vec<f32>)> = method_ids(&dir, filter)?
            .into_iter()
            .map(|id| {
                let m = map_on_input(&dir.join(format!("{id}.npy")), it.size, [h, w])?;
                Ok((id, m))
            })
            .collect::<Result<_>>()?;
        if baselines {
            maps.push((
                "@random".to_string(),
                random_map(h * w, seed ^ fnv(&it.stem)),
            ));
            if let Some(o) = &it.oracle {
                let [oh, ow] = it.size;
                maps.push(("@oracle".to_string(), resize_bilinear(o, oh, ow, h, w)));
            }
        }
        let image = Image::new(&it.x, c, h, w)?;
        for (id, map) in &maps {
            let mut scorer =
                Scorer::new(it.target, |x: &[f32], n: usize| scores(model, x, n, [h, w]))
                    .with_batch(a.model_batch);
            for metric in metrics {
                let (value, curve): (f64, Value) = match metric.as_str() {
                    "region-perturbation" => {
                        let o = RegionPerturbationOptions {
                            patch_size: a.patch,
                            order: RegionOrder::Morf,
                            regions_evaluation: a.regions,
                            baseline,
                            abs: false,
                        };
                        let r = region_perturbation(image, map, &o, &mut scorer)?;
                        (
                            r.aopc,
                            json!({"original": r.original, "curve": r.curve, "auc": r.auc}),
                        )
                    }
                    "deletion" => {
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
                    "insertion" => {
                        let o = InsertionOptions {
                            features_in_step: c * pixels_per_step,
                            baseline,
                            abs: false,
                        };
                        let r = insertion(image, map, &o, &mut scorer)?;
                        (r.auc, json!({"curve": r.curve}))
                    }
                    "road" => {
                        let o = RoadOptions {
                            percentages: a.road_percentages.clone(),
                            seed,
                            ..Default::default()
                        };
                        let r = road(image, map, &o, &mut scorer)?;
                        (r.accuracy, serde_json::to_value(&r)?)
                    }
                    _ => unreachable!("checked"),
                };
                csv.push_str(&format!(
                    "{model_id},{id},{},{},{metric},{value}\n",
                    it.stem, it.target
                ));
                curves.insert(format!("{model_id}/{}/{id}/{metric}", it.stem), curve);
                values
                    .entry((id.clone(), metric.clone()))
                    .or_default()
                    .push(value);
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
            let ci = bootstrap_mean_ci(v, 0.95, resamples, seed);
            json!({"method": method, "metric": metric, "n": v.len(), "ci95": ci})
        })
        .collect();
    Ok((csv, curves, Value::Array(means)))
}

#[allow(clippy::too_many_arguments)]
fn sanity(
    a: &ModelMetricsArgs,
    granularity: Granularity,
    model: &Classifier,
    resolved: &ResolvedModel,
    prep: &Preprocessing,
    methods: &[Method],
    items: &[Item],
    seed: u64,
    resamples: usize,
) -> Result<(String, Value)> {
    let [h, w] = prep.size.map(|s| s as usize);
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
                    .map_err(|e| anyhow!("map: {e:?}"))?;
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
    let steps = model.randomisation_steps(LayerOrder::TopDown, granularity);
    for (si, step) in steps.iter().enumerate() {
        let mut randomised = model.clone();
        randomised
            .randomise(&step.modules, seed)
            .map_err(|e| anyhow!("{}: {e}", resolved.id))?;
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
    for (name, res) in a.sanity.iter().zip(&results) {
        for (i, it) in items.iter().enumerate() {
            csv.push_str(&format!(
                "{},{name},0,original,{},{}\n",
                resolved.id,
                it.stem,
                cell(res.original[i])
            ));
        }
        for (si, layer) in res.layers.iter().enumerate() {
            for (i, it) in items.iter().enumerate() {
                csv.push_str(&format!(
                    "{},{name},{},{},{},{}\n",
                    resolved.id,
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

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
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
        .map(|s| (fnv(&s) ^ seed.wrapping_mul(0x9e3779b97f4a7c15), s))
        .map(|(h, s)| (h.wrapping_mul(0xff51afd7ed558ccd) ^ (h >> 33), s))
        .collect();
    ranked.sort();
    let chosen: BTreeSet<String> = ranked.into_iter().take(n).map(|(_, s)| s).collect();
    chosen.into_iter().collect()
}
