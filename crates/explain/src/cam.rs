//! The CAM family (pytorch-grad-cam's definitions): Grad-CAM, Grad-CAM++, HiResCAM,
//! XGradCAM and LayerCAM (Score-CAM, gradient-free, is in [`crate::score_cam`]).
//!
//! One forward pass with a zero "probe" tensor added to the target layer's output, one
//! backward pass from the target logit: the probe's gradient is d score / d A, and only
//! the layers after the target layer are differentiated. Every CAM is then a weighting of
//! the activations `A` (`[N, K, h, w]`) by the gradients `G`:
//!
//! * Grad-CAM: `w_k = mean_ij G_kij`, cam = ReLU(Σ_k w_k A_k)
//! * HiResCAM: cam = ReLU(Σ_k G_k ⊙ A_k)
//! * LayerCAM: cam = ReLU(Σ_k ReLU(G_k) ⊙ A_k)
//! * XGradCAM: `w_k = Σ_ij G_kij A_kij / (Σ_ij A_kij + 1e-7)`
//! * Grad-CAM++: `α = G² / (2G² + (Σ_ij A)·G³ + 1e-6)` (0 where G = 0),
//!   `w_k = Σ_ij ReLU(G_kij)·α_kij`
//!
//! [`scale_and_resize`] then does what pytorch-grad-cam 1.5.7 does to its output: per image
//! `cam − min`, divided by `1e-7 + max`, bilinear resize to the input size, and the same
//! min–max scaling once more (its `aggregate_multi_layers` rescales the resized map, whose
//! maximum is below 1 when the peak falls between output pixel centres).
//!
//! [`CamStyle::Matlab`] instead finishes the map as MATLAB's `gradCAM` does (the paper
//! made its Grad-CAM maps in MATLAB): the softmax output is differentiated (MATLAB's
//! reduction layer is the softmax), the map is upsampled to the network input with
//! `imresize(…, "bicubic")` ([`crate::resize::resize_bicubic_matlab`]) and not min–max
//! scaled, so its values keep the units of the score's gradient (and the bicubic
//! overshoot: small negative values beside the peaks).

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::relu;
// leukex's convolution (same values as burn's up to rounding, faster forward and
// backward passes), so that every pass of an explanation computes a layer alike.
use leukex_models::conv::conv2d_train as conv2d;
use leukex_models::{Classifier, Ops, conv_options, fold_batch_norm, plain_conv};
use serde::{Deserialize, Serialize};

use crate::lrp::{Chain, LayerKey, LayerValues, PLAIN};
use crate::relevance_conv::{ConvTerm, relevance_conv};
use crate::resize::{PixelGrid::HalfPixel, resize_bicubic_matlab, resize_bilinear};
use crate::rules::ParamMod;
use crate::target::Score;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CamKind {
    GradCam,
    GradCamPlusPlus,
    HiResCam,
    XGradCam,
    LayerCam,
}

impl CamKind {
    pub const ALL: [CamKind; 5] = [
        CamKind::GradCam,
        CamKind::GradCamPlusPlus,
        CamKind::HiResCam,
        CamKind::XGradCam,
        CamKind::LayerCam,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CamKind::GradCam => "grad-cam",
            CamKind::GradCamPlusPlus => "grad-cam++",
            CamKind::HiResCam => "hires-cam",
            CamKind::XGradCam => "xgrad-cam",
            CamKind::LayerCam => "layer-cam",
        }
    }

    /// The CAM from activations and gradients of the target layer, `[N, 1, h, w]`.
    pub fn cam(self, a: Tensor<4>, g: Tensor<4>) -> Tensor<4> {
        let spatial_sum = |t: Tensor<4>| t.sum_dim(3).sum_dim(2);
        let weighted = match self {
            CamKind::GradCam => g.mean_dim(3).mean_dim(2) * a,
            CamKind::HiResCam => g * a,
            CamKind::LayerCam => relu(g) * a,
            CamKind::XGradCam => {
                let w = spatial_sum(g * a.clone()) / (spatial_sum(a.clone()) + 1e-7);
                w * a
            }
            CamKind::GradCamPlusPlus => {
                let g2 = g.clone() * g.clone();
                let g3 = g2.clone() * g.clone();
                let sum_a = spatial_sum(a.clone());
                let alpha = g2.clone() / (g2 * 2.0 + sum_a * g3 + 1e-6);
                let nonzero = g.clone().not_equal_elem(0.0).float().cast(g.dtype());
                let w = spatial_sum(relu(g) * alpha * nonzero);
                w * a
            }
        };
        relu(weighted.sum_dim(1))
    }
}

/// How a CAM is finished after [`CamKind::cam`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CamStyle {
    /// pytorch-grad-cam 1.5.7: the requested score, min–max, bilinear, min–max
    /// ([`scale_and_resize`]).
    #[default]
    PytorchGradCam,
    /// MATLAB `gradCAM`: softmax score, bicubic `imresize` to the input, no scaling.
    Matlab,
    /// As computed: layer resolution, no scaling.
    Raw,
}

impl CamStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            CamStyle::PytorchGradCam => "pytorch-grad-cam",
            CamStyle::Matlab => "matlab",
            CamStyle::Raw => "raw",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pytorch-grad-cam" | "grad-cam-lib" => Some(CamStyle::PytorchGradCam),
            "matlab" => Some(CamStyle::Matlab),
            "raw" => Some(CamStyle::Raw),
            _ => None,
        }
    }

    /// What the CAM differentiates when `requested` was asked for: MATLAB's `gradCAM`
    /// always differentiates the softmax output.
    pub fn score(self, requested: Score) -> Score {
        match self {
            CamStyle::Matlab => Score::Softmax,
            _ => requested,
        }
    }

    /// The finished map `[N, 1, out_h, out_w]` (layer resolution for [`CamStyle::Raw`])
    /// from a CAM `[N, 1, h, w]` at layer resolution.
    pub fn finish(self, cam: Tensor<4>, out_h: usize, out_w: usize) -> Tensor<4> {
        match self {
            CamStyle::PytorchGradCam => scale_and_resize(cam, out_h, out_w),
            CamStyle::Matlab => map_planes(cam, out_h, out_w, |p, h, w| {
                resize_bicubic_matlab(p, h, w, out_h, out_w)
            }),
            CamStyle::Raw => cam,
        }
    }
}

/// Applies `f(plane, h, w)` to every `h`×`w` plane of `t`, giving `out_h`×`out_w` planes.
fn map_planes(
    t: Tensor<4>,
    out_h: usize,
    out_w: usize,
    f: impl Fn(&[f32], usize, usize) -> Vec<f32>,
) -> Tensor<4> {
    let [n, c, h, w] = t.dims();
    let device = t.device();
    let dtype = t.dtype();
    let v = t
        .cast(burn::tensor::FloatDType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 cam");
    let out: Vec<f32> = v.chunks(h * w).flat_map(|p| f(p, h, w)).collect();
    Tensor::<4>::from_data(TensorData::new(out, [n, c, out_h, out_w]), &device).cast(dtype)
}

/// Activations and gradients of `layer` for `targets`, with the logits.
pub struct LayerGradients {
    pub activations: Tensor<4>,
    pub gradients: Tensor<4>,
    pub logits: Tensor<2>,
}

/// Errors of the CAM family.
#[derive(Debug, thiserror::Error)]
pub enum CamError {
    #[error("the model has no layer named {layer:?}; named outputs include {hint}")]
    UnknownLayer { layer: String, hint: String },
}

/// One forward and one backward pass collecting `A` and `d logit / dA` at `layer`.
pub fn layer_gradients(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    layer: &str,
) -> Result<LayerGradients, CamError> {
    layer_gradients_for(model, x, targets, layer, Score::Logit)
}

/// [`layer_gradients`] differentiating `score`.
pub fn layer_gradients_for(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    layer: &str,
    score: Score,
) -> Result<LayerGradients, CamError> {
    let layers = [layer.to_string()];
    let mut values = LayerValues::default();
    let pass = probed_pass(model, x, targets, &layers, score, &mut values, false)?;
    let (_, activations, gradients) = pass.layers.into_iter().next().expect("one layer");
    Ok(LayerGradients {
        activations,
        gradients,
        logits: pass.logits,
    })
}

/// A layer's name with its activations and their gradients (or the probe reading them).
pub(crate) type AtLayer = (String, Tensor<4>, Tensor<4>);

/// What [`probed_pass`] returns.
pub(crate) struct ProbedPass {
    /// d score / d input, when asked for.
    pub(crate) input_gradient: Option<Tensor<4>>,
    /// Per requested layer: name, activations, d score / d activations.
    pub(crate) layers: Vec<AtLayer>,
    pub(crate) logits: Tensor<2>,
}

/// One forward and one backward pass of `score` for `targets`, collecting at each of
/// `layers` its activations and their gradient through a zero probe added there (which
/// changes no value), and, with `input_gradient`, the input's gradient. Without it only
/// the layers after the first probe are differentiated. The plain gradient and every CAM
/// that differentiates the same score are served by one such pass.
///
/// The pass runs with every BatchNorm folded into its convolution and takes the
/// convolutions' outputs from `values` (computing and keeping the missing ones), the plain
/// outputs the LRP passes over the same batch use too ([`LayerValues`]); the gradient is
/// the same function's, the values differ from the unfolded network's by rounding. When a
/// requested layer is a convolution's output before its BatchNorm, that convolution and
/// every layer after it run without `values`, and `values` is emptied: the values after
/// it belong to another chain.
pub(crate) fn probed_pass(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    layers: &[String],
    score: Score,
    values: &mut LayerValues,
    input_gradient: bool,
) -> Result<ProbedPass, CamError> {
    let targets = Targets::Given(targets);
    probed_pass_picking(model, x, targets, layers, score, values, input_gradient).map(|(p, _)| p)
}

/// Picks a batch's targets from its logits.
pub(crate) type TargetPicker<'a> = Box<dyn FnOnce(&Tensor<2>) -> Vec<usize> + 'a>;

/// The targets of a [`probed_pass_picking`].
pub(crate) enum Targets<'a> {
    Given(&'a [usize]),
    /// Picked from the logits.
    Picked(TargetPicker<'a>),
}

/// [`probed_pass`] that may pick its targets from the logits of its own forward pass,
/// between the forward and the backward half: the targets and the maps of one batch from
/// a single forward pass. The picker sees the logits [`forward_sharing`] gives (bit for
/// bit): when the pass runs unfolded (a probe before a BatchNorm), those are computed by
/// a forward pass of their own.
pub(crate) fn probed_pass_picking(
    model: &Classifier,
    x: Tensor<4>,
    targets: Targets,
    layers: &[String],
    score: Score,
    values: &mut LayerValues,
    input_gradient: bool,
) -> Result<(ProbedPass, Vec<usize>), CamError> {
    let x_plain = x.clone();
    let x = match input_gradient {
        true => x.inner().autodiff().require_grad(),
        false => x.inner(),
    };
    let mut ops = SharedGradientOps::new(layers, std::mem::take(values));
    let logits = model.forward_ops(x.clone(), &mut ops);
    let captured = ops.captured;
    *values = ops.values;
    if let Some(missing) = layers
        .iter()
        .find(|l| !captured.iter().any(|(n, _, _)| n == *l))
    {
        return Err(unknown_layer(model, missing));
    }
    if ops.unfolded {
        values.clear();
    }
    let targets = match targets {
        Targets::Given(t) => t.to_vec(),
        Targets::Picked(pick) if !ops.unfolded => pick(&logits.clone().inner()),
        Targets::Picked(pick) => pick(&forward_sharing(
            model,
            x_plain,
            &mut LayerValues::default(),
        )),
    };
    let grads = score.objective(logits.clone(), &targets).backward();
    let input_gradient = input_gradient.then(|| {
        x.grad(&grads)
            .unwrap_or_else(|| x.clone().inner().zeros_like())
    });
    let layers = captured
        .into_iter()
        .map(|(name, activations, probe)| {
            let gradients = probe
                .grad(&grads)
                .unwrap_or_else(|| activations.clone().inner().zeros_like());
            (name, activations.inner(), gradients)
        })
        .collect();
    let pass = ProbedPass {
        input_gradient,
        layers,
        logits: logits.inner(),
    };
    Ok((pass, targets))
}

/// The logits of `model` on `x` with every BatchNorm folded into its convolution, keeping
/// the convolutions' outputs in `values`: the forward pass that picks a batch's targets
/// when no gradient pass does ([`crate::run::explain_batch_picking`]), after which the
/// CAM and LRP passes over the same batch take those outputs instead of computing them
/// again ([`crate::run::explain_batch_sharing`]). The logits differ from
/// [`Classifier::forward`]'s by rounding only.
pub fn forward_sharing(model: &Classifier, x: Tensor<4>, values: &mut LayerValues) -> Tensor<2> {
    let mut ops = SharedGradientOps::new(&[], std::mem::take(values));
    let logits = model.forward_ops(x.inner(), &mut ops);
    *values = ops.values;
    logits.inner()
}

/// The plain operations with folded BatchNorm, convolution outputs from [`LayerValues`]
/// and zero probes at the requested layers (see [`gradient_and_layer_gradients`]).
struct SharedGradientOps<'a> {
    layers: &'a [String],
    /// (name, activations, zero probe) per layer.
    captured: Vec<AtLayer>,
    values: LayerValues,
    linear_layers_seen: usize,
    /// Whether a convolution ran unfolded (its pre-BatchNorm output was requested).
    unfolded: bool,
}

impl<'a> SharedGradientOps<'a> {
    /// Probes at `layers`, convolution outputs from (and into) `values`.
    fn new(layers: &'a [String], values: LayerValues) -> Self {
        Self {
            layers,
            captured: Vec::new(),
            values,
            linear_layers_seen: 0,
            unfolded: false,
        }
    }
}

impl Ops for SharedGradientOps<'_> {
    fn output(&mut self, name: &str, t: Tensor<4>) -> Tensor<4> {
        let wanted = self.layers.iter().any(|l| l == name);
        if wanted && !self.captured.iter().any(|(n, _, _)| n == name) {
            // On the autodiff backend from here on, if the input was not.
            let probe = t.zeros_like().inner().autodiff().require_grad();
            self.captured
                .push((name.to_string(), t.clone(), probe.clone()));
            t.autodiff() + probe
        } else {
            t
        }
    }

    fn conv(
        &mut self,
        name: &str,
        conv: &Conv2d,
        bn: Option<(&str, &BatchNorm)>,
        x: Tensor<4>,
    ) -> Tensor<4> {
        self.linear_layers_seen += 1;
        if bn.is_some() && self.layers.iter().any(|l| l == name) {
            self.unfolded = true;
            return plain_conv(self, name, conv, bn, x);
        }
        let [_, _, h, wd] = x.dims();
        let options = conv_options(conv, h, wd);
        let key = LayerKey {
            ordinal: self.linear_layers_seen,
            name,
            chain: Chain::BatchNormFolded,
        };
        let (w, b) = self.values.weights(&key, ParamMod::Identity, || {
            let (w, b) = fold_batch_norm(conv, bn.map(|(_, b)| b));
            (w.inner(), b.map(|b| b.inner()))
        });
        let xd = x.clone().inner();
        let compute = || conv2d(xd.clone(), w.clone(), b, options.clone());
        let z = match self.unfolded {
            true => compute(),
            false => self.values.term(&key, &PLAIN, &xd, compute),
        };
        let term = ConvTerm {
            weight: w,
            in_factor: None,
            out_factor: None,
        };
        let y = relevance_conv(x, z, vec![term], &options);
        let out_name = bn.map_or(name, |(bn_name, _)| bn_name);
        self.output(out_name, y)
    }

    fn linear(&mut self, _name: &str, linear: &Linear, x: Tensor<2>) -> Tensor<2> {
        self.linear_layers_seen += 1;
        linear.forward(x)
    }
}

/// The error for a layer name `model` does not have, listing its last named outputs.
pub(crate) fn unknown_layer(model: &Classifier, layer: &str) -> CamError {
    let names = model.layer_names();
    let hint = names[names.len().saturating_sub(8)..].join(", ");
    CamError::UnknownLayer {
        layer: layer.to_string(),
        hint,
    }
}

/// pytorch-grad-cam's default target layer per architecture (see the explanation issue):
/// ResNets `layer4`, VGG19 `features.35`, GoogLeNet `inception5b`, EfficientNet-Lite0
/// the head's ReLU6 output `extract_features`.
pub fn default_layer(arch: leukex_models::Arch) -> &'static str {
    use leukex_models::Arch;
    match arch {
        Arch::ResNet18 | Arch::ResNet50 => "layer4",
        Arch::Vgg19 => "features.35",
        Arch::GoogLeNet => "inception5b",
        Arch::EfficientNetLite0 => "extract_features",
    }
}

/// Per image: `cam − min`, divided by `1e-7 + max`, then bilinear (half-pixel,
/// align_corners = false) resize to `out_h`×`out_w`, then the min–max scaling again
/// (pytorch-grad-cam's order). `[N, 1, h, w]` → `[N, 1, H, W]`.
pub fn scale_and_resize(cam: Tensor<4>, out_h: usize, out_w: usize) -> Tensor<4> {
    let min_max = |plane: &[f32]| -> Vec<f32> {
        let min = plane.iter().copied().fold(f32::INFINITY, f32::min);
        let shifted: Vec<f32> = plane.iter().map(|x| x - min).collect();
        let max = shifted.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        shifted.iter().map(|x| x / (1e-7 + max)).collect()
    };
    map_planes(cam, out_h, out_w, |plane, h, w| {
        min_max(&resize_bilinear(
            &min_max(plane),
            h,
            w,
            out_h,
            out_w,
            HalfPixel,
        ))
    })
}
