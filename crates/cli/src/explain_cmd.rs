//! `leukex explain`: attribution maps of one model for preprocessed `.npy` inputs or for
//! images, written in the layout `leukex evaluate` reads:
//!
//! ```text
//! OUT/<model-id>/<stem>/<method-id>.npy           float32 [H, W] ([3, H, W] with --keep-channels)
//! OUT/<model-id>/<stem>/<method-id>.png           the map in colour (unless --no-png)
//! OUT/<model-id>/<stem>/<method-id>_overlay.png   the map at 50 % over the image
//! OUT/<model-id>/explain.json                     model, preprocessing, methods, per image
//! ```
//!
//! `<model-id>` is the run folder's name with `--model RUN` (a `leukex train` run: model,
//! classes and preprocessing from `RUN/model.json`), else the weights file's stem;
//! `<method-id>` the method's name plus its non-default parameters ([`Method::id`]).
//! Images are stems of their file names; the rows of an `.npy` input `X.npy` are `X_0`,
//! `X_1`, … (always with the index, also for one row).
//! The maps themselves come from `leukex-explain`; this module reads inputs, picks targets,
//! resamples, renders and writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::prelude::*;
use burn::tensor::FloatDType;
use clap::Args;
use image::{Rgb, RgbImage};
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_data::image_io::{read_dimensions, read_rgb, write_rgb};
use leukex_data::npy;
use leukex_data::preprocess::{ChwImage, Normalization, Preprocessing};
use leukex_evaluate::colormap::render_rgb;
use leukex_evaluate::run::label_from_stem;
use leukex_explain::cam::CamError;
use leukex_explain::gradient::IgRule;
use leukex_explain::lrp::lrp_with_conservation;
use leukex_explain::preset::{PAPER_ASSUMPTIONS, PAPER_METHODS, PAPER_PRESET};
use leukex_explain::resize::resize_bilinear;
use leukex_explain::run::{ExplainOptions, explain_batch_with};
use leukex_explain::{
    CamStyle, METHOD_NAMES, Method, MethodParams, OPT_IN_METHODS, Target, default_layer,
};
use leukex_explain::{InitRelevance, Score};
use leukex_models::predict::softmax;
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::model_cmd::{ModelArgs, ResolvedModel, has_ext, image_paths};

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Methods (repeatable or comma-separated; `all` = every method except the opt-in score-cam): gradient, input-x-gradient, integrated-gradients, smoothgrad, guided-backprop (only positive gradient through every ReLU/ReLU6), grad-cam, grad-cam++, hires-cam, xgrad-cam, layer-cam, score-cam (one forward pass per channel of the layer: slow), lrp-0, lrp-epsilon, lrp-zplus, lrp-alpha2-beta1, lrp-alpha1-beta0, lrp-gamma, lrp-epsilon-plus-flat, lrp-epsilon-gamma-box, lrp-epsilon-alpha2-beta1, lrp-epsilon-plus, lrp-preset-a, lrp-preset-b, deep-taylor (z+ without bias on every conv and dense layer: the rule of iNNvestigate's deep_taylor), deep-taylor-bounded (the same with zB and the input bounds on the first conv: deep_taylor.bounded).
    #[arg(long = "method", value_delimiter = ',')]
    methods: Vec<String>,
    /// A custom LRP composite (repeatable), e.g. first=flat,conv=alpha2-beta1,dense=epsilon:0.1 (targets conv, dense, first, name:<layer>); its id is lrp-custom_<spec>.
    #[arg(long = "composite")]
    composites: Vec<String>,
    /// One preprocessed float32 .npy of shape [N, 3, H, W] (used as it is; rows become <npy-stem>_<i>), or image files and/or folders of images (preprocessed for the model).
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Output folder; maps go to OUT/<model-id>/<stem>/<method-id>.npy (<model-id>: the run folder's name with --model, else the weights file's stem).
    #[arg(long)]
    out: PathBuf,
    /// Class explained: pred (the arg-max logit), true (the label Y of an ALL-IDB2 name ImNNN_Y) or a class index.
    #[arg(long, default_value = "pred", value_parser = parse_target)]
    target: Target,
    /// CAM methods (score-cam too): the layer (a named output, e.g. layer4.1.conv2; default: resnet layer4, vgg19 features.35, googlenet inception5b, efficientnet-lite0 extract_features).
    #[arg(long)]
    layer: Option<String>,
    /// LRP ε (default 1e-6) of lrp-epsilon and the ε-composites' dense layers.
    #[arg(long, allow_negative_numbers = true)]
    epsilon: Option<f64>,
    /// LRP γ (default 0.25) of lrp-gamma and lrp-epsilon-gamma-box.
    #[arg(long, allow_negative_numbers = true)]
    gamma: Option<f64>,
    /// Integrated Gradients: number of steps (default 50).
    #[arg(long)]
    steps: Option<usize>,
    /// Integrated Gradients: gauss-legendre (default), riemann-left, riemann-right, riemann-middle, riemann-trapezoid.
    #[arg(long)]
    ig_rule: Option<String>,
    /// SmoothGrad: number of noisy samples (default 25).
    #[arg(long)]
    samples: Option<usize>,
    /// SmoothGrad: noise standard deviation in network-input units (default 0.675).
    #[arg(long, allow_negative_numbers = true)]
    sigma: Option<f64>,
    /// SmoothGrad: seed of the noise (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Images per forward/backward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Score-CAM: masked inputs per forward pass (default 32; speed and memory only).
    #[arg(long)]
    score_cam_batch: Option<usize>,
    /// Images: network input side in pixels (default: the run's size with --model, else 224).
    #[arg(long)]
    size: Option<u32>,
    /// Keep the colour channels: gradient and LRP maps as [3, H, W] instead of summed to [H, W] (CAMs stay [H, W]).
    #[arg(long)]
    keep_channels: bool,
    /// How CAMs are finished: pytorch-grad-cam (min-max, bilinear to the input, min-max), matlab (MATLAB gradCAM: softmax score, bicubic imresize to the input, no scaling; method ids get _matlab) or raw (layer resolution, no scaling, no resampling).
    #[arg(long, default_value = "pytorch-grad-cam", value_parser = parse_cam_style)]
    cam_style: CamStyle,
    /// The conventions of the paper's tools: methods lrp-epsilon, deep-taylor, input-x-gradient, grad-cam (unless --method is given), LRP and Deep Taylor as iNNvestigate computes them (--innvestigate-compat, epsilon 1e-7, logit start), MATLAB gradCAM style for the CAMs; the assumptions are written into explain.json.
    #[arg(long, conflicts_with_all = ["score", "init_relevance", "cam_style", "cam_raw"])]
    paper: bool,
    /// Same as --cam-style raw.
    #[arg(long, conflicts_with = "cam_style")]
    cam_raw: bool,
    /// Write only the .npy maps and explain.json, no PNG renderings.
    #[arg(long)]
    no_png: bool,
    /// LRP methods (Deep Taylor too): write conservation.csv (relevance sum at every conv/dense layer's output and at the input, per image, against the relevance put in at the logits); costs one more pass per LRP method.
    #[arg(long)]
    conservation: bool,
    /// What the gradient and CAM families differentiate: logit (Captum, pytorch-grad-cam), softmax (MATLAB gradCAM), logit-diff (target minus the largest other logit).
    #[arg(long, default_value = "logit", value_parser = parse_score)]
    score: Score,
    /// Where LRP starts: onehot (1 at the target, Zennit) or score (the target's logit, iNNvestigate; a negative logit flips the map).
    #[arg(long, default_value = "onehot", value_parser = parse_init_relevance)]
    init_relevance: InitRelevance,
    /// LRP methods (Deep Taylor too): compute them as iNNvestigate 2.1.2 does instead of the conservative default: its rule forms (whole bias in both alpha-beta terms, no bias in z+ / w^2 / zB, safe_divide stabiliser, lrp-epsilon's default epsilon 1e-7), BatchNorm as a layer of its own; Deep Taylor copies relevance into both branches of a residual sum, spreads it evenly in average pools and starts from ReLU(logit). Ids get _innvestigate. Use with --init-relevance score for iNNvestigate's start.
    #[arg(long)]
    innvestigate_compat: bool,
}

fn parse_score(s: &str) -> Result<Score, String> {
    Score::parse(s)
        .ok_or_else(|| format!("unknown score {s:?} (expected logit, softmax or logit-diff)"))
}

fn parse_cam_style(s: &str) -> Result<CamStyle, String> {
    CamStyle::parse(s).ok_or_else(|| {
        format!("unknown CAM style {s:?} (expected pytorch-grad-cam, matlab or raw)")
    })
}

fn parse_init_relevance(s: &str) -> Result<InitRelevance, String> {
    InitRelevance::parse(s)
        .ok_or_else(|| format!("unknown initial relevance {s:?} (expected onehot or score)"))
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s {
        "pred" | "predicted" => Ok(Target::Predicted),
        "true" => Ok(Target::True),
        k => k
            .parse::<usize>()
            .map(Target::Index)
            .map_err(|_| format!("expected pred, true or a class index, got {s:?}")),
    }
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

/// One image (or `.npy` row) to explain.
struct Item {
    stem: String,
    source: PathBuf,
    /// Row of the `.npy` input.
    row: Option<usize>,
    true_label: Option<usize>,
    /// `[H, W]` of the written maps: the original image, or the `.npy`'s own size.
    size: [usize; 2],
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

/// Methods explained by one [`explain_batch_with`] call (they share a pass) and timed together.
struct Group {
    methods: Vec<usize>,
}

pub fn run(mut a: ExplainArgs) -> Result<()> {
    let t_start = Instant::now();
    if a.cam_raw {
        a.cam_style = CamStyle::Raw;
    }
    if a.paper {
        if a.methods.is_empty() && a.composites.is_empty() {
            a.methods = PAPER_METHODS.iter().map(|m| m.to_string()).collect();
        }
        a.epsilon = a.epsilon.or(Some(PAPER_PRESET.epsilon));
        a.score = PAPER_PRESET.score;
        a.init_relevance = PAPER_PRESET.init_relevance;
        a.cam_style = PAPER_PRESET.cam_style;
        a.innvestigate_compat = PAPER_PRESET.innvestigate_compat;
    }
    let cam_style = a.cam_style;
    let options = ExplainOptions {
        score: a.score,
        init_relevance: a.init_relevance,
        cam_style,
    };
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let resolved = a.model.resolve()?;
    let arch = resolved.arch;

    // Inputs (cheap checks first: shapes, names, image headers).
    let npy_input = a.input.len() == 1 && has_ext(&a.input[0], "npy");
    if !npy_input && a.input.iter().any(|p| has_ext(p, "npy")) {
        bail!("a .npy input must be the only --input");
    }
    let (source, items, prep) = if npy_input {
        if a.size.is_some() {
            bail!("--size applies to image inputs only (a .npy is used at its own size)");
        }
        read_npy_input(&a.input[0], &resolved)?
    } else {
        let paths = image_paths(&a.input)?;
        let items = image_items(&paths)?;
        let prep = resolved.image_preprocessing(a.size);
        (Source::Images, items, prep)
    };

    // Methods.
    let bounds = input_bounds(&prep.normalization);
    let params = method_params(&a, bounds.clone())?;
    let methods = parse_methods(&a.methods, &a.composites, &params, &bounds)?;
    // Non-default run options are part of the id too, so that runs never overwrite
    // each other: `grad-cam_softmax`, `lrp-epsilon_init-score`.
    let ids: Vec<String> = methods
        .iter()
        .map(|m| {
            let mut id = m.id(&params);
            let is_lrp = matches!(m, Method::Lrp { .. });
            let is_cam = m.is_cam();
            if is_cam && cam_style == CamStyle::Matlab {
                // MATLAB's style fixes the score (softmax): one suffix says both.
                id = format!("{id}_matlab");
            } else if !is_lrp && a.score != Score::Logit {
                id = format!("{id}_{}", a.score.as_str());
            }
            if is_lrp && a.init_relevance != InitRelevance::OneHot {
                id = format!("{id}_init-{}", a.init_relevance.as_str());
            }
            id
        })
        .collect();

    // Model.
    let model = resolved.load()?.valid();
    let k = model.num_classes();
    let cam_layer = a
        .layer
        .clone()
        .unwrap_or_else(|| default_layer(arch).to_string());
    let has_cam = methods.iter().any(Method::is_cam);
    if let Some(layer) = &a.layer {
        let names = model.layer_names();
        if !names.contains(layer) {
            let hint = names[names.len().saturating_sub(8)..].join(", ");
            let e = CamError::UnknownLayer {
                layer: layer.clone(),
                hint,
            };
            bail!(
                "--layer: {e} (the default for {} is {})",
                arch,
                default_layer(arch)
            );
        }
        if !has_cam {
            eprintln!("note: --layer applies to the CAM methods only; none was asked for");
        }
    }

    // Targets that do not depend on the model's output are checked before any work.
    match a.target {
        Target::Index(t) if t >= k => {
            bail!("--target {t}: the model has {k} classes (0..{})", k - 1)
        }
        Target::True => {
            if let Source::Npy { path, .. } = &source {
                bail!(
                    "--target true needs true labels from ALL-IDB2 file names (ImNNN_Y); {} is a .npy without labels",
                    path.display()
                );
            }
            for it in &items {
                match it.true_label {
                    None => bail!(
                        "--target true: {} has no label in its name (ALL-IDB2 names are ImNNN_Y, Y = 0 or 1)",
                        it.source.display()
                    ),
                    Some(y) if y >= k => bail!(
                        "--target true: {} has label {y}, but the model has {k} classes",
                        it.source.display()
                    ),
                    Some(_) => {}
                }
            }
        }
        _ => {}
    }

    let groups = group_methods(&methods, &cam_layer);
    let model_dir = a.out.join(&resolved.id);
    let device = Device::default();
    let [h, w] = match &source {
        Source::Npy { shape, .. } => [shape[2], shape[3]],
        Source::Images => prep.size.map(|s| s as usize),
    };

    let mut per_image: Vec<Value> = Vec::with_capacity(items.len());
    let mut batch_timings: Vec<Value> = Vec::new();
    let mut conservation_rows: Vec<String> = Vec::new();
    let bar = crate::progress::bar(items.len() as u64, "explaining");
    for (bi, chunk) in items.chunks(a.batch).enumerate() {
        let t_batch = Instant::now();
        let b = chunk.len();
        // Network inputs and what the overlays are drawn on.
        let (x, backgrounds): (Vec<f32>, Vec<RgbImage>) = match &source {
            Source::Npy { data, shape, .. } => {
                let per = shape[1] * h * w;
                let first = chunk[0].row.expect("npy rows");
                let x = data[first * per..(first + b) * per].to_vec();
                let bgs = if a.no_png {
                    Vec::new()
                } else {
                    x.chunks(per)
                        .map(|v| prep.invert(&ChwImage::new(3, h, w, v.to_vec())).to_rgb())
                        .collect()
                };
                (x, bgs)
            }
            Source::Images => {
                let read: Vec<(Vec<f32>, RgbImage)> = chunk
                    .par_iter()
                    .map(|it| {
                        let img = read_rgb(&it.source)?;
                        Ok((prep.apply(&img).data, img))
                    })
                    .collect::<Result<_>>()?;
                let (xs, imgs): (Vec<Vec<f32>>, Vec<RgbImage>) = read.into_iter().unzip();
                (xs.concat(), if a.no_png { Vec::new() } else { imgs })
            }
        };
        let x = Tensor::<4>::from_data(TensorData::new(x, [b, 3, h, w]), &device);

        let t_forward = Instant::now();
        let logits_t = model.forward(x.clone());
        let predicted = leukex_explain::predicted(&logits_t);
        let logits = values(logits_t)?;
        let forward_seconds = t_forward.elapsed().as_secs_f64();
        let targets: Vec<usize> = match a.target {
            Target::Predicted => predicted.clone(),
            Target::True => chunk
                .iter()
                .map(|it| it.true_label.expect("checked"))
                .collect(),
            Target::Index(t) => vec![t; b],
        };

        let mut group_timings = Vec::with_capacity(groups.len());
        for g in &groups {
            let ms: Vec<Method> = g.methods.iter().map(|&i| methods[i].clone()).collect();
            let t0 = Instant::now();
            let maps = explain_batch_with(&model, x.clone(), &targets, &ms, &options)
                .with_context(|| {
                    format!(
                        "explaining {}",
                        chunk
                            .iter()
                            .map(|it| it.source.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let maps: Vec<([usize; 4], Vec<f32>)> = maps
                .into_iter()
                .zip(&ms)
                .map(|(m, method)| {
                    let m = if method.is_cam() {
                        cam_style.finish(m, h, w)
                    } else {
                        m
                    };
                    let dims = m.dims();
                    Ok((dims, values(m)?))
                })
                .collect::<Result<_>>()?;
            let seconds = t0.elapsed().as_secs_f64();
            group_timings.push(json!({
                "methods": g.methods.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>(),
                "seconds": seconds,
            }));
            for ((dims, data), &mi) in maps.iter().zip(&g.methods) {
                let method = &methods[mi];
                let is_cam = method.is_cam();
                let [_, c, mh, mw] = *dims;
                let plane = c * mh * mw;
                chunk
                    .par_iter()
                    .enumerate()
                    .map(|(i, it)| {
                        let v = &data[i * plane..(i + 1) * plane];
                        // Channels summed (CAMs have one), then resampled to the image.
                        let (c_out, v) = if is_cam || !a.keep_channels {
                            (1, sum_channels(v, c, mh * mw))
                        } else {
                            (c, v.to_vec())
                        };
                        let resample = matches!(source, Source::Images)
                            && !(is_cam && cam_style == CamStyle::Raw)
                            && [mh, mw] != it.size;
                        let ([oh, ow], v) = if resample {
                            let [oh, ow] = it.size;
                            let v: Vec<f32> = v
                                .chunks(mh * mw)
                                .flat_map(|p| resize_bilinear(p, mh, mw, oh, ow))
                                .collect();
                            ([oh, ow], v)
                        } else {
                            ([mh, mw], v)
                        };
                        let shape: Vec<usize> = if c_out == 1 {
                            vec![oh, ow]
                        } else {
                            vec![c_out, oh, ow]
                        };
                        let dir = model_dir.join(&it.stem);
                        let id = &ids[mi];
                        npy::write_f32(&dir.join(format!("{id}.npy")), &shape, &v)?;
                        if !a.no_png {
                            let shown = sum_channels(&v, c_out, oh * ow);
                            let colour = colourise(&shown, oh, ow, method.is_signed());
                            write_rgb(&dir.join(format!("{id}.png")), &colour)?;
                            let overlay = blend(&backgrounds[i], &colour);
                            write_rgb(&dir.join(format!("{id}_overlay.png")), &overlay)?;
                        }
                        Ok(())
                    })
                    .collect::<Result<Vec<()>>>()?;
            }
        }

        let k = logits.len() / b;
        for (i, it) in chunk.iter().enumerate() {
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
        if a.conservation {
            // One more LRP pass per LRP method, with probes at every conv/dense output.
            for (m, id) in methods.iter().zip(&ids) {
                let Method::Lrp { composite, .. } = m else {
                    continue;
                };
                let (_, c) =
                    lrp_with_conservation(&model, x.clone(), &targets, composite, a.init_relevance);
                let input = ("input".to_string(), c.input.clone());
                for (i, it) in chunk.iter().enumerate() {
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
            "stems": chunk.iter().map(|it| it.stem.clone()).collect::<Vec<_>>(),
            "forward_seconds": forward_seconds,
            "methods": group_timings,
            "seconds": t_batch.elapsed().as_secs_f64(),
        }));
        bar.inc(b as u64);
    }
    bar.finish_and_clear();

    let images: serde_json::Map<String, Value> = per_image
        .into_iter()
        .map(|v| (v["stem"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    let method_entries: Vec<Value> = methods
        .iter()
        .zip(&ids)
        .map(|(m, id)| {
            let mut e = json!({
                "id": id,
                "name": m.name(),
                "signed": m.is_signed(),
                "method": m,
            });
            if m.is_cam() {
                e["layer"] = json!(cam_layer);
            }
            e
        })
        .collect();
    let (preprocessing, map_size) = match &source {
        Source::Npy { .. } => (
            json!({
                "applied": false,
                "size": [h, w],
                "normalization": prep.normalization,
                "note": "the .npy is taken as network input; this normalisation (the run's with --model, else the architecture's) is assumed for the zB bounds and the overlays",
            }),
            "the .npy input's [H, W]",
        ),
        Source::Images => {
            let mut p = serde_json::to_value(&prep)?;
            p["applied"] = json!(true);
            (
                p,
                "the original image's [H, W] (bilinear, align_corners=false)",
            )
        }
    };
    let report = json!({
        "leukex_version": env!("CARGO_PKG_VERSION"),
        "model": {
            "id": resolved.id,
            "arch": arch,
            "weights": resolved.weights,
            "num_classes": k,
            "transform_input": resolved.transform_input,
            "card": resolved.run.as_ref().map(|r| &r.path),
            "classes": resolved.classes(),
        },
        "preprocessing": preprocessing,
        "input_bounds": {"low": bounds.0, "high": bounds.1},
        "target": a.target,
        "score": a.score,
        "init_relevance": a.init_relevance,
        "cam_style": cam_style,
        "preset": a.paper.then(|| json!({
            "name": "paper",
            "assumptions": PAPER_ASSUMPTIONS,
        })),
        "methods": method_entries,
        "maps": {
            "dtype": "float32",
            "size": map_size,
            "channels": if a.keep_channels { "kept ([3, H, W]; CAMs [H, W])" } else { "summed ([H, W])" },
            "cam": match cam_style {
                CamStyle::Raw => "raw: layer resolution, not scaled, not resampled",
                CamStyle::PytorchGradCam => "pytorch-grad-cam's scale_cam_image: (cam - min) / (1e-7 + max), bilinear to the network input, then to the map size",
                CamStyle::Matlab => "MATLAB gradCAM: softmax score, no scaling, bicubic imresize to the network input (cubic overshoot kept), then bilinear to the map size",
            },
        },
        "batch": a.batch,
        "images": images,
        "timings": {
            "note": "seconds per batch; methods that share a pass (gradient and input-x-gradient, CAMs on one layer) are timed together",
            "batches": batch_timings,
            "total_seconds": t_start.elapsed().as_secs_f64(),
        },
    });
    write_json_atomic(&model_dir.join("explain.json"), &report)?;
    if a.conservation {
        // Relevance arriving at each conv/dense layer's output (forward order), then at the
        // input, against the relevance put in at the logits.
        let mut csv = String::from("stem,method,layer,relevance_sum,output_relevance\n");
        for r in &conservation_rows {
            csv.push_str(r);
            csv.push('\n');
        }
        write_bytes_atomic(&model_dir.join("conservation.csv"), csv.as_bytes())?;
    }
    println!(
        "{} images × {} methods ({}); wrote {}",
        items.len(),
        methods.len(),
        ids.join(", "),
        model_dir.display()
    );
    Ok(())
}

/// The `.npy` input: `[N, 3, H, W]` float values, rows named `<stem>_<i>`.
fn read_npy_input(
    path: &Path,
    model: &ResolvedModel,
) -> Result<(Source, Vec<Item>, Preprocessing)> {
    let x = npy::read_f32(path)?;
    let shape: [usize; 4] = match x.shape.as_slice() {
        &[n, 3, h, w] if n > 0 && h > 0 && w > 0 => [n, 3, h, w],
        s => bail!(
            "{}: shape {s:?} is not [N, 3, H, W] (N, H, W > 0)",
            path.display()
        ),
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
    // The run's (with --model) or the architecture's normalisation, at the array's size
    // (bounds and overlays only).
    let mut prep = model.image_preprocessing(Some(shape[2] as u32));
    prep.size = [shape[2] as u32, shape[3] as u32];
    let source = Source::Npy {
        path: path.to_path_buf(),
        data: x.data,
        shape,
    };
    Ok((source, items, prep))
}

/// Image files: stems (unique), ALL-IDB2 labels, sizes (from the headers).
fn image_items(paths: &[PathBuf]) -> Result<Vec<Item>> {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    paths
        .iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(other) = seen.insert(stem.clone(), p) {
                bail!(
                    "{} and {} have the same stem {stem:?}; maps are stored by stem",
                    other.display(),
                    p.display()
                );
            }
            let (w, h) = read_dimensions(p)?;
            Ok(Item {
                true_label: label_from_stem(&stem).map(|y| y as usize),
                stem,
                source: p.clone(),
                row: None,
                size: [h as usize, w as usize],
            })
        })
        .collect()
}

fn method_params(a: &ExplainArgs, bounds: (Vec<f64>, Vec<f64>)) -> Result<MethodParams> {
    let non_negative = |name: &str, v: Option<f64>| -> Result<()> {
        match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => {
                bail!("--{name} must be a finite number >= 0, got {x}")
            }
            _ => Ok(()),
        }
    };
    non_negative("epsilon", a.epsilon)?;
    non_negative("gamma", a.gamma)?;
    non_negative("sigma", a.sigma)?;
    let ig_rule = a
        .ig_rule
        .as_deref()
        .map(|s| {
            IgRule::parse(s).ok_or_else(|| {
                anyhow!(
                    "unknown --ig-rule {s:?}; known: gauss-legendre, riemann-left, riemann-right, riemann-middle, riemann-trapezoid"
                )
            })
        })
        .transpose()?;
    let min_steps = if ig_rule == Some(IgRule::RiemannTrapezoid) {
        2
    } else {
        1
    };
    if let Some(s) = a.steps.filter(|&s| s < min_steps) {
        bail!("--steps must be at least {min_steps}, got {s}");
    }
    if a.samples == Some(0) {
        bail!("--samples must be at least 1");
    }
    if a.score_cam_batch == Some(0) {
        bail!("--score-cam-batch must be at least 1");
    }
    Ok(MethodParams {
        epsilon: a.epsilon,
        gamma: a.gamma,
        steps: a.steps,
        ig_rule,
        samples: a.samples,
        sigma: a.sigma,
        seed: a.seed,
        layer: a.layer.clone(),
        score_cam_batch: a.score_cam_batch,
        bounds: Some(bounds),
        innvestigate: a.innvestigate_compat,
    })
}

/// The methods named (`all` = every name but the opt-in ones) and the custom composites,
/// without duplicate ids (the first wins).
fn parse_methods(
    names: &[String],
    composites: &[String],
    params: &MethodParams,
    bounds: &(Vec<f64>, Vec<f64>),
) -> Result<Vec<Method>> {
    if names.is_empty() && composites.is_empty() {
        bail!(
            "no method: give --method (or --composite); known methods: {}, or all",
            METHOD_NAMES.join(", ")
        );
    }
    let mut out: Vec<Method> = Vec::new();
    let mut push = |m: Method| {
        let id = m.id(params);
        if !out.iter().any(|o| o.id(params) == id) {
            out.push(m);
        }
    };
    for name in names.iter().map(|n| n.trim()) {
        if name == "all" {
            // Opt-in methods (score-cam: one forward pass per channel of the target layer,
            // 512 to 2048 per image) only run when named.
            for n in METHOD_NAMES
                .into_iter()
                .filter(|n| !OPT_IN_METHODS.contains(n))
            {
                push(Method::parse(n, params).map_err(|e| anyhow!(e))?);
            }
        } else {
            push(Method::parse(name, params).map_err(|e| anyhow!("--method: {e}, or all"))?);
        }
    }
    for spec in composites {
        let m = Method::custom_composite(spec, Some((&bounds.0, &bounds.1)))
            .map_err(|e| anyhow!("--composite {spec:?}: {e}"))?;
        push(if params.innvestigate {
            m.innvestigate_compat()
        } else {
            m
        });
    }
    Ok(out)
}

/// Methods that [`explain_batch_with`] computes from one shared pass go together: Gradient
/// and Input×Gradient; the CAMs (all on `cam_layer`). Every other method is alone.
fn group_methods(methods: &[Method], cam_layer: &str) -> Vec<Group> {
    let mut keys: Vec<String> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        let key = match m {
            Method::Gradient | Method::InputXGradient => "gradient".to_string(),
            Method::Cam { layer, .. } => {
                format!("cam:{}", layer.as_deref().unwrap_or(cam_layer))
            }
            _ => format!("#{i}"),
        };
        match keys.iter().position(|k| *k == key) {
            Some(g) => groups[g].methods.push(i),
            None => {
                keys.push(key);
                groups.push(Group { methods: vec![i] });
            }
        }
    }
    groups
}

/// All values of a tensor as `f32`.
fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.cast(FloatDType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("reading a map: {e:?}"))
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

/// The map in leukex's colours ([`render_rgb`]: seismic for signed maps, MATLAB jet for CAMs).
fn colourise(v: &[f32], h: usize, w: usize, signed: bool) -> RgbImage {
    RgbImage::from_raw(w as u32, h as u32, render_rgb(v, signed)).expect("one RGB pixel per value")
}

/// `colour` at 50 % over `background` (the colour image resampled bilinearly to the
/// background's size when they differ, e.g. raw CAMs).
fn blend(background: &RgbImage, colour: &RgbImage) -> RgbImage {
    let (bw, bh) = background.dimensions();
    let colour = if colour.dimensions() == (bw, bh) {
        colour.clone()
    } else {
        let (cw, ch) = colour.dimensions();
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|c| {
                let p: Vec<f32> = colour.pixels().map(|px| f32::from(px[c])).collect();
                resize_bilinear(&p, ch as usize, cw as usize, bh as usize, bw as usize)
            })
            .collect();
        RgbImage::from_fn(bw, bh, |x, y| {
            let i = (y * bw + x) as usize;
            Rgb(std::array::from_fn(|c| {
                planes[c][i].round().clamp(0.0, 255.0) as u8
            }))
        })
    };
    RgbImage::from_fn(bw, bh, |x, y| {
        let (a, b) = (background.get_pixel(x, y), colour.get_pixel(x, y));
        Rgb(std::array::from_fn(|c| {
            (u16::from(a[c]) + u16::from(b[c])).div_ceil(2) as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn targets_parse() {
        assert_eq!(parse_target("pred"), Ok(Target::Predicted));
        assert_eq!(parse_target("true"), Ok(Target::True));
        assert_eq!(parse_target("3"), Ok(Target::Index(3)));
        assert!(parse_target("blast").is_err());
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
        let norm = Normalization::ImageNet;
        let bounds = input_bounds(&norm);
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
        let zbox = leukex_explain::Rule::ZBox {
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
    fn shared_passes_are_grouped() {
        let p = MethodParams::default();
        let ms: Vec<Method> = [
            "gradient",
            "grad-cam",
            "lrp-zplus",
            "input-x-gradient",
            "layer-cam",
        ]
        .iter()
        .map(|n| Method::parse(n, &p).unwrap())
        .collect();
        let g: Vec<Vec<usize>> = group_methods(&ms, "layer4")
            .into_iter()
            .map(|g| g.methods)
            .collect();
        assert_eq!(g, vec![vec![0, 3], vec![1, 4], vec![2]]);
    }
}
