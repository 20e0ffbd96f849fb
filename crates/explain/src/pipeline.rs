//! An explanation run from inputs to files: what `leukex explain` does after parsing its
//! arguments, for every caller (the command, the study runner, the web viewer) alike.
//!
//! ```text
//! OUT/<model-id>/<stem>/<method-id>.npy           float32 [H, W] ([3, H, W] with keep_channels)
//! OUT/<model-id>/<stem>/<method-id>.png           the map in colour (with png)
//! OUT/<model-id>/<stem>/<method-id>_overlay.png   the map at 50 % over the image
//! OUT/<model-id>/explain.json                     model, preprocessing, methods, per image
//! OUT/<model-id>/conservation.csv                 with conservation
//! ```
//!
//! Every batch goes through [`explain_batch_with`] once with every requested method, so
//! the methods share one forward pass, the gradient family and the CAMs share their plain
//! backward pass and the LRP composites share their convolutions' values.
//!
//! Non-finite values never become a class or a map: an input row (or image) with a NaN or
//! an infinity, non-finite logits or a non-finite map stop that image with an
//! [`ImageFailure`] naming the file, the row and the first offending index; the other
//! images complete, and [`ExplainSummary::failed`] lists the failures (also written into
//! `explain.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::FloatDType;
use image::RgbImage;
use leukex_data::DataError;
use leukex_data::dataset::label_from_stem;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_data::image_io::{read_dimensions, read_rgb, write_rgb};
use leukex_data::npy;
use leukex_data::preprocess::{ChwImage, Normalization, Preprocessing};
use leukex_models::predict::{NonFinite, softmax};
use leukex_models::{Arch, Classifier};
use leukex_render::resample::{PixelGrid, resize_bilinear};
use leukex_render::{colourise, overlay};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::cam::{CamError, CamStyle, default_layer};
use crate::lrp::lrp_with_conservation;
use crate::method::{METHOD_NAMES, Method, MethodParams, OPT_IN_METHODS};
use crate::preset::PAPER_ASSUMPTIONS;
use crate::run::{ExplainOptions, explain_batch_picking};
use crate::target::{InitRelevance, Score, Target};

/// Why a run could not start or could not finish. Problems of one image are
/// [`ImageFailure`]s instead, and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum ExplainRunError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{path}: shape {shape:?} is not [N, 3, H, W] (N, H, W > 0)")]
    NpyShape { path: PathBuf, shape: Vec<usize> },
    #[error("a .npy input must be the only input")]
    NpyNotAlone,
    #[error("no input: give a .npy or image files")]
    NoInput,
    #[error("{first} and {second} have the same stem {stem:?}; maps are stored by stem")]
    DuplicateStem {
        first: PathBuf,
        second: PathBuf,
        stem: String,
    },
    #[error("no method; known methods: {known}, or all")]
    NoMethod { known: String },
    #[error("method: {reason}, or all")]
    UnknownMethod { reason: String },
    #[error("composite {spec:?}: {reason}")]
    Composite { spec: String, reason: String },
    #[error("batch size must be at least 1")]
    ZeroBatch,
    #[error("layer: {source} (the default for {arch} is {default})")]
    Layer {
        source: CamError,
        arch: Arch,
        default: &'static str,
    },
    #[error("target {target}: the model has {classes} classes (0..{})", classes - 1)]
    TargetOutOfRange { target: usize, classes: usize },
    #[error(
        "target true needs true labels from ALL-IDB2 file names (ImNNN_Y); {path} is a .npy without labels"
    )]
    TrueTargetOfNpy { path: PathBuf },
    #[error(
        "target true: {path} has no label in its name (ALL-IDB2 names are ImNNN_Y, Y = 0 or 1)"
    )]
    NoTrueLabel { path: PathBuf },
    #[error("target true: {path} has label {label}, but the model has {classes} classes")]
    TrueLabelOutOfRange {
        path: PathBuf,
        label: usize,
        classes: usize,
    },
    #[error("explaining {images}: {source}")]
    Explain { images: String, source: CamError },
    #[error("reading a map: {reason}")]
    MapValues { reason: String },
    #[error("{path}: {reason}")]
    Json { path: PathBuf, reason: String },
}

/// The model as `explain.json` describes it (the loaded [`Classifier`] is passed apart).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Names the output folder `OUT/<id>`.
    pub id: String,
    pub weights: PathBuf,
    pub transform_input: bool,
    /// The `model.json` of a `leukex train` run, when the model came from one.
    pub card: Option<PathBuf>,
    pub classes: Option<Vec<String>>,
}

/// What is explained.
#[derive(Debug, Clone)]
pub enum ExplainInput {
    /// One preprocessed float32 `.npy` of shape `[N, 3, H, W]`, used as it is; its rows
    /// become `<npy-stem>_<i>` and its maps stay at `[H, W]`.
    Npy(PathBuf),
    /// Image files, preprocessed by [`ExplainRequest::preprocessing`]; maps are
    /// resampled to each image's size.
    Images(Vec<PathBuf>),
}

/// One explanation run.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub input: ExplainInput,
    /// For images: how they become network input. For a `.npy`: only its normalisation
    /// counts (the overlays' backgrounds; the size is the array's).
    pub preprocessing: Preprocessing,
    /// Distinct methods (see [`parse_methods`]), with the parameters they were parsed with.
    pub methods: Vec<Method>,
    pub params: MethodParams,
    pub options: ExplainOptions,
    pub target: Target,
    /// Images per forward/backward pass.
    pub batch: usize,
    /// Gradient and LRP maps as `[3, H, W]` instead of summed over channels.
    pub keep_channels: bool,
    /// Write the PNG renderings and overlays.
    pub png: bool,
    /// Write `conservation.csv` (one more pass per LRP method).
    pub conservation: bool,
    /// Write `out/<model id>/explain.json`; off when the caller assembles it from several
    /// runs (the study runner explains one image batch per call).
    pub write_report: bool,
    /// The paper preset was applied (its assumptions go into `explain.json`).
    pub paper: bool,
    /// Maps go to `out/<model id>/`.
    pub out: PathBuf,
}

/// An image that was not explained, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFailure {
    pub stem: String,
    pub source: PathBuf,
    /// The row of a `.npy` input.
    pub row: Option<usize>,
    pub reason: String,
}

impl std::fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            Some(r) => write!(f, "{} row {r}: {}", self.source.display(), self.reason),
            None => write!(f, "{}: {}", self.source.display(), self.reason),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct ExplainSummary {
    /// `out/<model id>`.
    pub model_dir: PathBuf,
    /// The file ids of the methods, in request order.
    pub method_ids: Vec<String>,
    /// Images whose maps were written.
    pub explained: usize,
    pub failed: Vec<ImageFailure>,
    pub seconds: f64,
    /// What `explain.json` holds (written only with [`ExplainRequest::write_report`]).
    pub report: serde_json::Value,
}

/// zᴮ's input bounds per channel: the network inputs of pixel values 0 and 255 under
/// `norm` (ImageNet: `(0 − mean)/std`, `(1 − mean)/std`; EfficientNet-Lite: −127/128, 1).
pub fn input_bounds(norm: &Normalization) -> (Vec<f64>, Vec<f64>) {
    match norm {
        Normalization::EfficientNetLite => (vec![-127.0 / 128.0; 3], vec![1.0; 3]),
        _ => {
            let (mean, std) = norm.mean_std();
            (0..3)
                .map(|c| {
                    let (m, s) = (f64::from(mean[c]), f64::from(std[c]));
                    (-m / s, (1.0 - m) / s)
                })
                .unzip()
        }
    }
}

/// The methods named (`all` = every name but the opt-in ones) and the custom composites
/// (`bounds`: zᴮ's), without duplicate ids (the first wins).
pub fn parse_methods(
    names: &[String],
    composites: &[String],
    params: &MethodParams,
    bounds: &(Vec<f64>, Vec<f64>),
) -> Result<Vec<Method>, ExplainRunError> {
    if names.is_empty() && composites.is_empty() {
        return Err(ExplainRunError::NoMethod {
            known: METHOD_NAMES.join(", "),
        });
    }
    let mut out: Vec<Method> = Vec::new();
    let mut push = |m: Method| {
        let id = m.id(params);
        if !out.iter().any(|o| o.id(params) == id) {
            out.push(m);
        }
    };
    let unknown = |reason| ExplainRunError::UnknownMethod { reason };
    for name in names.iter().map(|n| n.trim()) {
        if name == "all" {
            // Opt-in methods (score-cam: one forward pass per channel of the target layer,
            // 512 to 2048 per image) only run when named.
            for n in METHOD_NAMES
                .into_iter()
                .filter(|n| !OPT_IN_METHODS.contains(n))
            {
                push(Method::parse(n, params).map_err(unknown)?);
            }
        } else {
            push(Method::parse(name, params).map_err(unknown)?);
        }
    }
    for spec in composites {
        let m = Method::custom_composite(spec, Some((&bounds.0, &bounds.1))).map_err(|reason| {
            ExplainRunError::Composite {
                spec: spec.clone(),
                reason,
            }
        })?;
        push(if params.innvestigate {
            m.innvestigate_compat()
        } else {
            m
        });
    }
    Ok(out)
}

/// The file id of `m` in a run: [`Method::id`] plus the run options that change its map,
/// so that runs never overwrite each other (`grad-cam_softmax`, `grad-cam_matlab`,
/// `lrp-epsilon_init-score`).
pub fn method_file_id(m: &Method, params: &MethodParams, options: &ExplainOptions) -> String {
    let mut id = m.id(params);
    let is_lrp = matches!(m, Method::Lrp { .. });
    if m.is_cam() && options.cam_style == CamStyle::Matlab {
        // MATLAB's style fixes the score (softmax): one suffix says both.
        id = format!("{id}_matlab");
    } else if !is_lrp && options.score != Score::Logit {
        id = format!("{id}_{}", options.score.as_str());
    }
    if is_lrp && options.init_relevance != InitRelevance::OneHot {
        id = format!("{id}_init-{}", options.init_relevance.as_str());
    }
    id
}

/// One image (or `.npy` row) of the run.
struct Item {
    stem: String,
    source: PathBuf,
    row: Option<usize>,
    true_label: Option<usize>,
    /// `[H, W]` of the written maps: the original image, or the `.npy`'s own size.
    size: [usize; 2],
}

impl Item {
    fn failure(&self, reason: String) -> ImageFailure {
        ImageFailure {
            stem: self.stem.clone(),
            source: self.source.clone(),
            row: self.row,
            reason,
        }
    }
}

/// Where the network inputs come from.
enum Source {
    Npy {
        path: PathBuf,
        data: Vec<f32>,
        shape: [usize; 4],
    },
    /// Image files, read batch by batch (the items hold their paths).
    Images,
}

/// One image's network input (CHW, preprocessed) and the picture its overlays are drawn on.
type NetworkInput = (Vec<f32>, Option<RgbImage>);

/// Runs `req` with `model` (in inference mode); `progress` is called with the number of
/// images finished and the number of images after every batch.
pub fn run_explain(
    model: &Classifier,
    info: &ModelInfo,
    req: &ExplainRequest,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ExplainSummary, ExplainRunError> {
    let t_start = Instant::now();
    if req.batch == 0 {
        return Err(ExplainRunError::ZeroBatch);
    }
    if req.methods.is_empty() {
        return Err(ExplainRunError::NoMethod {
            known: METHOD_NAMES.join(", "),
        });
    }
    let arch = model.arch();
    let (source, items, prep) = match &req.input {
        ExplainInput::Npy(path) => read_npy_input(path, &req.preprocessing)?,
        ExplainInput::Images(paths) if paths.is_empty() => return Err(ExplainRunError::NoInput),
        ExplainInput::Images(paths) => (
            Source::Images,
            image_items(paths)?,
            req.preprocessing.clone(),
        ),
    };
    let (options, params) = (&req.options, &req.params);
    let cam_style = options.cam_style;
    let methods = &req.methods;
    let ids: Vec<String> = methods
        .iter()
        .map(|m| method_file_id(m, params, options))
        .collect();
    let k = model.num_classes();
    let cam_layer = params
        .layer
        .clone()
        .unwrap_or_else(|| default_layer(arch).to_string());
    if let Some(layer) = &params.layer {
        let names = model.layer_names();
        if !names.contains(layer) {
            let hint = names[names.len().saturating_sub(8)..].join(", ");
            return Err(ExplainRunError::Layer {
                source: CamError::UnknownLayer {
                    layer: layer.clone(),
                    hint,
                },
                arch,
                default: default_layer(arch),
            });
        }
    }
    check_target(req.target, k, &source, &items)?;

    let model_dir = req.out.join(&info.id);
    let device = Device::default();
    let [h, w] = match &source {
        Source::Npy { shape, .. } => [shape[2], shape[3]],
        Source::Images => prep.size.map(|s| s as usize),
    };
    let mut per_image: Vec<Value> = Vec::with_capacity(items.len());
    let mut failed: Vec<ImageFailure> = Vec::new();
    let mut batch_timings: Vec<Value> = Vec::new();
    let mut conservation_rows: Vec<String> = Vec::new();
    let mut done = 0usize;
    for (bi, chunk) in items.chunks(req.batch).enumerate() {
        let t_batch = Instant::now();
        // Network inputs (finite rows only) and what the overlays are drawn on.
        let inputs: Vec<Result<NetworkInput, String>> = match &source {
            Source::Npy { data, shape, .. } => {
                let per = shape[1] * h * w;
                chunk
                    .par_iter()
                    .map(|it| {
                        let row = it.row.expect("npy rows");
                        let v = &data[row * per..(row + 1) * per];
                        if let Some(bad) = NonFinite::find(v, [3, h, w]) {
                            return Err(format!("input value {bad}"));
                        }
                        let bg = req
                            .png
                            .then(|| prep.invert(&ChwImage::new(3, h, w, v.to_vec())).to_rgb());
                        Ok((v.to_vec(), bg))
                    })
                    .collect()
            }
            Source::Images => chunk
                .par_iter()
                .map(|it| {
                    let img = read_rgb(&it.source).map_err(|e| e.message())?;
                    let x = prep.apply(&img).data;
                    if let Some(bad) = NonFinite::find(&x, [3, h, w]) {
                        return Err(format!("preprocessed value {bad}"));
                    }
                    Ok((x, req.png.then_some(img)))
                })
                .collect(),
        };
        let mut ok: Vec<(&Item, Vec<f32>, Option<RgbImage>)> = Vec::with_capacity(chunk.len());
        for (it, r) in chunk.iter().zip(inputs) {
            match r {
                Ok((x, bg)) => ok.push((it, x, bg)),
                Err(reason) => failed.push(it.failure(reason)),
            }
        }
        let b = ok.len();
        if b == 0 {
            done += chunk.len();
            progress(done, items.len());
            continue;
        }
        let x: Vec<f32> = ok.iter().flat_map(|(_, x, _)| x.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [b, 3, h, w]), &device);

        // Every method in one call: one forward pass (which also picks the targets),
        // shared backward passes and shared convolution values.
        let t_forward = Instant::now();
        let mut forward_seconds = 0.0;
        let mut predicted = Vec::new();
        let pick = |logits: &Tensor<2>| {
            forward_seconds = t_forward.elapsed().as_secs_f64();
            predicted = crate::target::predicted(logits);
            match req.target {
                Target::Predicted => predicted.clone(),
                Target::True => ok
                    .iter()
                    .map(|(it, ..)| it.true_label.expect("checked"))
                    .collect(),
                Target::Index(t) => vec![t; b],
            }
        };
        let batch =
            explain_batch_picking(model, x.clone(), methods, options, pick).map_err(|source| {
                ExplainRunError::Explain {
                    images: ok
                        .iter()
                        .map(|(it, ..)| it.source.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    source,
                }
            })?;
        let logits = values(batch.logits)?;
        let (targets, maps) = (batch.targets, batch.maps);
        let maps: Vec<([usize; 4], Vec<f32>)> = maps
            .into_iter()
            .zip(methods)
            .map(|(m, method)| {
                let m = if method.is_cam() {
                    cam_style.finish(m, h, w)
                } else {
                    m
                };
                Ok((m.dims(), values(m)?))
            })
            .collect::<Result<_, ExplainRunError>>()?;
        let methods_seconds = t_forward.elapsed().as_secs_f64() - forward_seconds;

        let written: Vec<Result<(), String>> = ok
            .par_iter()
            .enumerate()
            .map(|(i, (it, _, bg))| {
                let row = &logits[i * k..(i + 1) * k];
                if let Some(bad) = NonFinite::find(row, [1, 1, k]) {
                    return Err(format!("logit {bad}"));
                }
                // Every map of the image is checked before any file is written.
                let finished: Vec<FinishedMap> = maps
                    .iter()
                    .zip(methods)
                    .zip(&ids)
                    .map(|(((dims, data), method), id)| {
                        finish_map(req, &source, it, method, id, *dims, data, i)
                    })
                    .collect::<Result<_, String>>()?;
                let dir = model_dir.join(&it.stem);
                for m in &finished {
                    write_map(&dir, m, bg.as_ref()).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .collect();
        for (i, ((it, ..), r)) in ok.iter().zip(written).enumerate() {
            if let Err(reason) = r {
                failed.push(it.failure(reason));
                continue;
            }
            let row = &logits[i * k..(i + 1) * k];
            let probs = softmax(row);
            per_image.push(json!({
                "stem": it.stem,
                "source": it.source,
                "row": it.row,
                "size": it.size,
                "true_label": it.true_label,
                "predicted": predicted[i],
                "score": probs[predicted[i]],
                "logits": row,
                "softmax": probs,
                "target": targets[i],
                "batch": bi,
            }));
        }
        if req.conservation {
            // One more LRP pass per LRP method, with probes at every conv/dense output.
            for (m, id) in methods.iter().zip(&ids) {
                let Method::Lrp { composite, .. } = m else {
                    continue;
                };
                let (_, c) = lrp_with_conservation(
                    model,
                    x.clone(),
                    &targets,
                    composite,
                    options.init_relevance,
                );
                let input = ("input".to_string(), c.input.clone());
                for (i, (it, ..)) in ok.iter().enumerate() {
                    for (layer, sums) in c.layers.iter().chain(std::iter::once(&input)) {
                        conservation_rows.push(format!(
                            "{},{id},{layer},{},{}",
                            it.stem, sums[i], c.output[i]
                        ));
                    }
                }
            }
        }
        batch_timings.push(json!({
            "stems": ok.iter().map(|(it, ..)| it.stem.clone()).collect::<Vec<_>>(),
            "forward_seconds": forward_seconds,
            "methods_seconds": methods_seconds,
            "seconds": t_batch.elapsed().as_secs_f64(),
        }));
        done += chunk.len();
        progress(done, items.len());
    }

    let explained = per_image.len();
    let report = report_json(ReportParts {
        info,
        req,
        arch,
        k,
        source: &source,
        prep: &prep,
        ids: &ids,
        cam_layer: &cam_layer,
        map_hw: [h, w],
        per_image,
        failed: &failed,
        batch_timings,
        seconds: t_start.elapsed().as_secs_f64(),
    })?;
    if req.write_report {
        write_json_atomic(&model_dir.join("explain.json"), &report)?;
    }
    if req.conservation {
        // Relevance arriving at each conv/dense layer's output (forward order), then at the
        // input, against the relevance put in at the logits.
        let mut csv = String::from("stem,method,layer,relevance_sum,output_relevance\n");
        for r in &conservation_rows {
            csv.push_str(r);
            csv.push('\n');
        }
        write_bytes_atomic(&model_dir.join("conservation.csv"), csv.as_bytes())?;
    }
    Ok(ExplainSummary {
        model_dir,
        method_ids: ids,
        explained,
        failed,
        seconds: t_start.elapsed().as_secs_f64(),
        report,
    })
}

/// One image's map of one method, ready to write.
struct FinishedMap<'a> {
    id: &'a str,
    signed: bool,
    /// `[C, H, W]`, `C` = 1 when summed.
    shape: [usize; 3],
    values: Vec<f32>,
}

/// Image `i`'s part of a batch map `data` (`dims` = `[N, C, mh, mw]`): channels summed
/// (CAMs have one) unless kept, resampled to the image's size, checked to be finite.
#[allow(clippy::too_many_arguments)]
fn finish_map<'a>(
    req: &ExplainRequest,
    source: &Source,
    it: &Item,
    method: &Method,
    id: &'a str,
    dims: [usize; 4],
    data: &[f32],
    i: usize,
) -> Result<FinishedMap<'a>, String> {
    let is_cam = method.is_cam();
    let [_, c, mh, mw] = dims;
    let plane = c * mh * mw;
    let v = &data[i * plane..(i + 1) * plane];
    if let Some(bad) = NonFinite::find(v, [c, mh, mw]) {
        return Err(format!("{id}: map value {bad}"));
    }
    let (c_out, v) = if is_cam || !req.keep_channels {
        (1, sum_channels(v, c, mh * mw))
    } else {
        (c, v.to_vec())
    };
    let resample = matches!(source, Source::Images)
        && !(is_cam && req.options.cam_style == CamStyle::Raw)
        && [mh, mw] != it.size;
    let ([oh, ow], v) = if resample {
        let [oh, ow] = it.size;
        let v: Vec<f32> = v
            .chunks(mh * mw)
            .flat_map(|p| resize_bilinear(p, mh, mw, oh, ow, PixelGrid::HalfPixel))
            .collect();
        ([oh, ow], v)
    } else {
        ([mh, mw], v)
    };
    // Finite values can still sum to infinity.
    if let Some(bad) = NonFinite::find(&v, [c_out, oh, ow]) {
        return Err(format!("{id}: map value {bad} after summing channels"));
    }
    Ok(FinishedMap {
        id,
        signed: method.is_signed(),
        shape: [c_out, oh, ow],
        values: v,
    })
}

/// `dir/<id>.npy`, and with a background the PNG rendering and the overlay.
fn write_map(dir: &Path, m: &FinishedMap, background: Option<&RgbImage>) -> Result<(), DataError> {
    let [c, h, w] = m.shape;
    let shape: Vec<usize> = if c == 1 { vec![h, w] } else { vec![c, h, w] };
    npy::write_f32(&dir.join(format!("{}.npy", m.id)), &shape, &m.values)?;
    if let Some(bg) = background {
        let shown = sum_channels(&m.values, c, h * w);
        let colour = colourise(&shown, h, w, m.signed);
        write_rgb(&dir.join(format!("{}.png", m.id)), &colour)?;
        write_rgb(
            &dir.join(format!("{}_overlay.png", m.id)),
            &overlay(bg, &colour),
        )?;
    }
    Ok(())
}

/// Targets that do not depend on the model's output, checked before any work.
fn check_target(
    target: Target,
    k: usize,
    source: &Source,
    items: &[Item],
) -> Result<(), ExplainRunError> {
    match target {
        Target::Index(t) if t >= k => Err(ExplainRunError::TargetOutOfRange {
            target: t,
            classes: k,
        }),
        Target::True => {
            if let Source::Npy { path, .. } = source {
                return Err(ExplainRunError::TrueTargetOfNpy { path: path.clone() });
            }
            for it in items {
                match it.true_label {
                    None => {
                        return Err(ExplainRunError::NoTrueLabel {
                            path: it.source.clone(),
                        });
                    }
                    Some(y) if y >= k => {
                        return Err(ExplainRunError::TrueLabelOutOfRange {
                            path: it.source.clone(),
                            label: y,
                            classes: k,
                        });
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What `explain.json` is made of.
struct ReportParts<'a> {
    info: &'a ModelInfo,
    req: &'a ExplainRequest,
    arch: Arch,
    k: usize,
    source: &'a Source,
    prep: &'a Preprocessing,
    ids: &'a [String],
    cam_layer: &'a str,
    map_hw: [usize; 2],
    per_image: Vec<Value>,
    failed: &'a [ImageFailure],
    batch_timings: Vec<Value>,
    seconds: f64,
}

fn report_json(p: ReportParts) -> Result<Value, ExplainRunError> {
    let req = p.req;
    let images: serde_json::Map<String, Value> = p
        .per_image
        .into_iter()
        .map(|v| (v["stem"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    let failed: serde_json::Map<String, Value> = p
        .failed
        .iter()
        .map(|f| {
            (
                f.stem.clone(),
                json!({"source": f.source, "row": f.row, "error": f.reason}),
            )
        })
        .collect();
    let method_entries: Vec<Value> = req
        .methods
        .iter()
        .zip(p.ids)
        .map(|(m, id)| {
            let mut e = json!({
                "id": id,
                "name": m.name(),
                "signed": m.is_signed(),
                "method": m,
            });
            if m.is_cam() {
                e["layer"] = json!(p.cam_layer);
            }
            e
        })
        .collect();
    let (preprocessing, map_size) = match p.source {
        Source::Npy { .. } => (
            json!({
                "applied": false,
                "size": p.map_hw,
                "normalization": p.prep.normalization,
                "note": "the .npy is taken as network input; this normalisation (the run's with --model, else the architecture's) is assumed for the zB bounds and the overlays",
            }),
            "the .npy input's [H, W]",
        ),
        Source::Images => {
            let mut v = serde_json::to_value(p.prep).map_err(|e| ExplainRunError::Json {
                path: req.out.clone(),
                reason: e.to_string(),
            })?;
            v["applied"] = json!(true);
            (
                v,
                "the original image's [H, W] (bilinear, align_corners=false)",
            )
        }
    };
    let bounds = input_bounds(&p.prep.normalization);
    let options = &req.options;
    Ok(json!({
        "leukex_version": env!("CARGO_PKG_VERSION"),
        "model": {
            "id": p.info.id,
            "arch": p.arch,
            "weights": p.info.weights,
            "num_classes": p.k,
            "transform_input": p.info.transform_input,
            "card": p.info.card,
            "classes": p.info.classes,
        },
        "preprocessing": preprocessing,
        "input_bounds": {"low": bounds.0, "high": bounds.1},
        "target": req.target,
        "score": options.score,
        "init_relevance": options.init_relevance,
        "cam_style": options.cam_style,
        "preset": req.paper.then(|| json!({
            "name": "paper",
            "assumptions": PAPER_ASSUMPTIONS,
        })),
        "methods": method_entries,
        "maps": {
            "dtype": "float32",
            "size": map_size,
            "channels": if req.keep_channels { "kept ([3, H, W]; CAMs [H, W])" } else { "summed ([H, W])" },
            "cam": match options.cam_style {
                CamStyle::Raw => "raw: layer resolution, not scaled, not resampled",
                CamStyle::PytorchGradCam => "pytorch-grad-cam's scale_cam_image: (cam - min) / (1e-7 + max), bilinear to the network input, then to the map size",
                CamStyle::Matlab => "MATLAB gradCAM: softmax score, no scaling, bicubic imresize to the network input (cubic overshoot kept), then bilinear to the map size",
            },
        },
        "batch": req.batch,
        "images": images,
        "failed": failed,
        "timings": {
            "note": "seconds per batch: forward = until the targets are picked (by the gradient pass's forward half when it serves the gradient methods, else by a forward pass of its own), methods = the rest of every method's passes, finishing and writing included in seconds",
            "batches": p.batch_timings,
            "total_seconds": p.seconds,
        },
    }))
}

/// The `.npy` input: `[N, 3, H, W]` float values, rows named `<stem>_<i>`, and the
/// preprocessing at the array's size (its normalisation for the overlays).
fn read_npy_input(
    path: &Path,
    prep: &Preprocessing,
) -> Result<(Source, Vec<Item>, Preprocessing), ExplainRunError> {
    let x = npy::read_f32(path)?;
    let shape: [usize; 4] = match x.shape.as_slice() {
        &[n, 3, h, w] if n > 0 && h > 0 && w > 0 => [n, 3, h, w],
        s => {
            return Err(ExplainRunError::NpyShape {
                path: path.to_path_buf(),
                shape: s.to_vec(),
            });
        }
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let items = (0..shape[0])
        .map(|i| Item {
            stem: format!("{stem}_{i}"),
            source: path.to_path_buf(),
            row: Some(i),
            true_label: None,
            size: [shape[2], shape[3]],
        })
        .collect();
    let mut prep = prep.clone();
    prep.size = [shape[2] as u32, shape[3] as u32];
    let source = Source::Npy {
        path: path.to_path_buf(),
        data: x.data,
        shape,
    };
    Ok((source, items, prep))
}

/// Image files: stems (unique), ALL-IDB2 labels, sizes (from the headers).
fn image_items(paths: &[PathBuf]) -> Result<Vec<Item>, ExplainRunError> {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    paths
        .iter()
        .map(|p| {
            if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
                return Err(ExplainRunError::NpyNotAlone);
            }
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(other) = seen.insert(stem.clone(), p) {
                return Err(ExplainRunError::DuplicateStem {
                    first: other.to_path_buf(),
                    second: p.clone(),
                    stem,
                });
            }
            let (w, h) = read_dimensions(p)?;
            Ok(Item {
                true_label: label_from_stem(&stem),
                stem,
                source: p.clone(),
                row: None,
                size: [h as usize, w as usize],
            })
        })
        .collect()
}

/// All values of a tensor as `f32`.
fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ExplainRunError> {
    t.cast(FloatDType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ExplainRunError::MapValues {
            reason: format!("{e:?}"),
        })
}

/// Sum of `c` planes of `plane` values each.
fn sum_channels(v: &[f32], c: usize, plane: usize) -> Vec<f32> {
    if c == 1 {
        return v.to_vec();
    }
    let mut out = v[..plane].to_vec();
    for ch in 1..c {
        for (o, x) in out.iter_mut().zip(&v[ch * plane..(ch + 1) * plane]) {
            *o += x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn bounds_are_the_inputs_of_black_and_white() {
        let (lo, hi) = input_bounds(&Normalization::EfficientNetLite);
        assert_eq!((lo[0], hi[2]), (-127.0 / 128.0, 1.0));
        let (lo, hi) = input_bounds(&Normalization::ImageNet);
        assert!((lo[0] - (-0.485 / 0.229)).abs() < 1e-6);
        assert!((hi[2] - (1.0 - 0.406) / 0.225).abs() < 1e-6);
        // The same numbers the preprocessing produces for pixel values 0 and 255.
        let black = Preprocessing::imagenet(1).apply(&RgbImage::from_pixel(1, 1, Rgb([0; 3])));
        let white = Preprocessing::imagenet(1).apply(&RgbImage::from_pixel(1, 1, Rgb([255; 3])));
        for c in 0..3 {
            assert!((f64::from(black.data[c]) - lo[c]).abs() < 1e-6);
            assert!((f64::from(white.data[c]) - hi[c]).abs() < 1e-6);
        }
    }

    #[test]
    fn all_leaves_out_the_opt_in_methods() {
        let bounds = (vec![-2.0; 3], vec![2.0; 3]);
        let p = MethodParams {
            bounds: Some(bounds.clone()),
            ..Default::default()
        };
        let all = parse_methods(&["all".into()], &[], &p, &bounds).unwrap();
        assert_eq!(all.len(), METHOD_NAMES.len() - OPT_IN_METHODS.len());
        assert!(!all.iter().any(|m| OPT_IN_METHODS.contains(&m.name())));
        let named = parse_methods(&["all".into(), "score-cam".into()], &[], &p, &bounds).unwrap();
        assert_eq!(named.last().map(Method::name), Some("score-cam"));
    }

    #[test]
    fn bounded_methods_get_the_preprocessing_bounds() {
        // deep-taylor-bounded, like lrp-epsilon-gamma-box, takes zB's bounds from the
        // preprocessing (pixel values 0 and 255).
        let bounds = input_bounds(&Normalization::ImageNet);
        let p = MethodParams {
            bounds: Some(bounds.clone()),
            ..Default::default()
        };
        let names: Vec<String> = [
            "deep-taylor-bounded",
            "lrp-epsilon-gamma-box",
            "deep-taylor",
        ]
        .map(String::from)
        .to_vec();
        let ms = parse_methods(&names, &[], &p, &bounds).unwrap();
        let zbox = crate::Rule::ZBox {
            low: bounds.0.clone(),
            high: bounds.1.clone(),
        };
        for m in &ms[..2] {
            let Method::Lrp { composite, .. } = m else {
                panic!("{} is not an LRP method", m.name())
            };
            assert_eq!(composite.first.as_ref(), Some(&zbox), "{}", m.name());
        }
        assert!(ms.iter().all(Method::is_signed));
        let all = parse_methods(&["all".into()], &[], &p, &bounds).unwrap();
        for name in ["deep-taylor", "deep-taylor-bounded"] {
            assert!(all.iter().any(|m| m.name() == name), "{name} in all");
        }
    }

    #[test]
    fn file_ids_carry_the_run_options() {
        let p = MethodParams::default();
        let cam = Method::parse("grad-cam", &p).unwrap();
        let eps = Method::parse("lrp-epsilon", &p).unwrap();
        let grad = Method::parse("gradient", &p).unwrap();
        let softmax = ExplainOptions {
            score: Score::Softmax,
            init_relevance: InitRelevance::Score,
            ..Default::default()
        };
        assert_eq!(method_file_id(&cam, &p, &softmax), "grad-cam_softmax");
        assert_eq!(method_file_id(&grad, &p, &softmax), "gradient_softmax");
        assert_eq!(method_file_id(&eps, &p, &softmax), "lrp-epsilon_init-score");
        let matlab = ExplainOptions {
            cam_style: CamStyle::Matlab,
            score: Score::Softmax,
            ..Default::default()
        };
        assert_eq!(method_file_id(&cam, &p, &matlab), "grad-cam_matlab");
        assert_eq!(
            method_file_id(&eps, &p, &ExplainOptions::default()),
            "lrp-epsilon"
        );
    }
}
