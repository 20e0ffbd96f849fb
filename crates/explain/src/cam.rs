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

use burn::prelude::*;
use burn::tensor::activation::relu;
use leukex_models::Classifier;
use serde::{Deserialize, Serialize};

use crate::resize::{resize_bicubic_matlab, resize_bilinear};
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
    let mut captured: Option<(Tensor<4>, Tensor<4>)> = None;
    let logits = model.forward_with(x.inner(), &mut |name, t| {
        if name == layer && captured.is_none() {
            let probe = t.zeros_like().autodiff().require_grad();
            captured = Some((t.clone(), probe.clone()));
            t.autodiff() + probe
        } else {
            t
        }
    });
    let Some((activations, probe)) = captured else {
        return Err(unknown_layer(model, layer));
    };
    let grads = score.objective(logits.clone(), targets).backward();
    let gradients = probe
        .grad(&grads)
        .unwrap_or_else(|| activations.zeros_like());
    Ok(LayerGradients {
        activations: activations.inner(),
        gradients,
        logits: logits.inner(),
    })
}

/// A layer's name with its activations and their gradients (or the probe reading them).
pub(crate) type AtLayer = (String, Tensor<4>, Tensor<4>);

/// One backward pass for the plain gradient and the CAMs that differentiate the same
/// `score`: d score[target] / d input `[N, C, H, W]`, and per layer of `layers` its
/// activations and d score / d activations (zero probes added there change no value, so
/// each result equals its own pass bit for bit).
pub(crate) fn gradient_and_layer_gradients(
    model: &Classifier,
    x: Tensor<4>,
    targets: &[usize],
    layers: &[String],
    score: Score,
) -> Result<(Tensor<4>, Vec<AtLayer>), CamError> {
    let x = x.inner().autodiff().require_grad();
    // (name, activations, zero probe) per layer.
    let mut captured: Vec<AtLayer> = Vec::new();
    let logits = model.forward_with(x.clone(), &mut |name, t| {
        let wanted = layers.iter().any(|l| l == name);
        if wanted && !captured.iter().any(|(n, _, _)| n == name) {
            let probe = t.zeros_like().detach().require_grad();
            captured.push((name.to_string(), t.clone(), probe.clone()));
            t + probe
        } else {
            t
        }
    });
    if let Some(missing) = layers
        .iter()
        .find(|l| !captured.iter().any(|(n, _, _)| n == *l))
    {
        return Err(unknown_layer(model, missing));
    }
    let grads = score.objective(logits, targets).backward();
    let input_gradient = x
        .grad(&grads)
        .unwrap_or_else(|| x.clone().inner().zeros_like());
    let layers = captured
        .into_iter()
        .map(|(name, activations, probe)| {
            let gradients = probe
                .grad(&grads)
                .unwrap_or_else(|| activations.clone().inner().zeros_like());
            (name, activations.inner(), gradients)
        })
        .collect();
    Ok((input_gradient, layers))
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
        min_max(&resize_bilinear(&min_max(plane), h, w, out_h, out_w))
    })
}
