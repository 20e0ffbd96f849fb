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
//! The run itself is `leukex_explain::pipeline::run_explain`; this module parses the
//! arguments into its request and prints the outcome.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use clap::Args;
use leukex_explain::gradient::IgRule;
use leukex_explain::pipeline::{
    ExplainInput, ExplainRequest, ExplainRunError, ModelInfo, input_bounds, parse_methods,
    run_explain,
};
use leukex_explain::preset::{PAPER_METHODS, PAPER_PRESET};
use leukex_explain::run::ExplainOptions;
use leukex_explain::{CamStyle, InitRelevance, Method, MethodParams, Score, Target};

use crate::model_cmd::{ModelArgs, has_ext, image_paths};

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
    #[arg(long, default_value = "pred", value_parser = Target::parse)]
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

pub fn run(mut a: ExplainArgs) -> Result<()> {
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
    let options = ExplainOptions {
        score: a.score,
        init_relevance: a.init_relevance,
        cam_style: a.cam_style,
    };
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let resolved = a.model.resolve()?;

    // Inputs: one .npy (used at its own size), or images preprocessed for the model.
    let npy_input = a.input.len() == 1 && has_ext(&a.input[0], "npy");
    if !npy_input && a.input.iter().any(|p| has_ext(p, "npy")) {
        bail!("a .npy input must be the only --input");
    }
    let input = if npy_input {
        if a.size.is_some() {
            bail!("--size applies to image inputs only (a .npy is used at its own size)");
        }
        ExplainInput::Npy(a.input[0].clone())
    } else {
        ExplainInput::Images(image_paths(&a.input)?)
    };
    let preprocessing = resolved.image_preprocessing(a.size);

    // Methods (zB's bounds from the preprocessing).
    let bounds = input_bounds(&preprocessing.normalization);
    let params = method_params(&a, bounds.clone())?;
    let methods =
        parse_methods(&a.methods, &a.composites, &params, &bounds).map_err(|e| match e {
            ExplainRunError::UnknownMethod { .. } | ExplainRunError::Composite { .. } => {
                anyhow!("--{e}")
            }
            e => anyhow!(e),
        })?;
    if a.layer.is_some() && !methods.iter().any(Method::is_cam) {
        eprintln!("note: --layer applies to the CAM methods only; none was asked for");
    }

    let model = resolved.load()?.valid();
    let info = ModelInfo {
        id: resolved.id.clone(),
        weights: resolved.weights.clone(),
        transform_input: resolved.transform_input,
        card: resolved.run.as_ref().map(|r| r.path.clone()),
        classes: resolved.classes().map(<[String]>::to_vec),
    };
    let request = ExplainRequest {
        input,
        preprocessing,
        methods,
        params,
        options,
        target: a.target,
        batch: a.batch,
        keep_channels: a.keep_channels,
        png: !a.no_png,
        conservation: a.conservation,
        write_report: true,
        paper: a.paper,
        out: a.out.clone(),
    };
    let bar = crate::progress::bar(0, "explaining");
    let summary = run_explain(&model, &info, &request, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .map_err(|e| match e {
        ExplainRunError::Layer { .. }
        | ExplainRunError::TargetOutOfRange { .. }
        | ExplainRunError::TrueTargetOfNpy { .. }
        | ExplainRunError::NoTrueLabel { .. }
        | ExplainRunError::TrueLabelOutOfRange { .. } => anyhow!("--{e}"),
        e => anyhow!(e),
    })?;
    bar.finish_and_clear();
    for f in &summary.failed {
        eprintln!("error: {f}");
    }
    println!(
        "{} images × {} methods ({}); wrote {}",
        summary.explained,
        summary.method_ids.len(),
        summary.method_ids.join(", "),
        summary.model_dir.display()
    );
    if !summary.failed.is_empty() {
        bail!(
            "{} of {} images failed (listed above and in {})",
            summary.failed.len(),
            summary.failed.len() + summary.explained,
            summary.model_dir.join("explain.json").display()
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("pred"), Ok(Target::Predicted));
        assert_eq!(Target::parse("true"), Ok(Target::True));
        assert_eq!(Target::parse("3"), Ok(Target::Index(3)));
        assert!(Target::parse("blast").is_err());
    }
}
