//! The conventions of the paper's tools for its four methods (`leukex explain --paper`).
//!
//! Velázquez-Arreola et al. made LRP, Deep Taylor and Input×Gradient maps with
//! iNNvestigate and Grad-CAM maps with MATLAB's `gradCAM` (§2, §3.3 step 4). They name no
//! LRP variant, no parameters and no target. Where the paper is silent the preset takes
//! the tools' defaults; each such choice is listed in [`PAPER_ASSUMPTIONS`] and written
//! into `explain.json`, so a reader can see what is assumed and change it.

use crate::cam::CamStyle;
use crate::target::{InitRelevance, Score};

/// The paper's four methods, by leukex name.
pub const PAPER_METHODS: [&str; 4] = ["lrp-epsilon", "deep-taylor", "input-x-gradient", "grad-cam"];

/// iNNvestigate's `EpsilonRule` default ε.
pub const INNVESTIGATE_EPSILON: f64 = 1e-7;

/// The run options of the paper preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperPreset {
    /// ε of `lrp-epsilon`.
    pub epsilon: f64,
    /// LRP and Deep Taylor start from the logit (iNNvestigate's `_head_mapping`).
    pub init_relevance: InitRelevance,
    /// Input×Gradient differentiates the logit (iNNvestigate works on the model without
    /// its softmax).
    pub score: Score,
    /// Grad-CAM as MATLAB's `gradCAM` (softmax score, bicubic upsampling, no scaling).
    pub cam_style: CamStyle,
    /// LRP and Deep Taylor as iNNvestigate 2.1.2 computes them
    /// ([`crate::method::Method::innvestigate_compat`]).
    pub innvestigate_compat: bool,
}

pub const PAPER_PRESET: PaperPreset = PaperPreset {
    epsilon: INNVESTIGATE_EPSILON,
    init_relevance: InitRelevance::Score,
    score: Score::Logit,
    cam_style: CamStyle::Matlab,
    innvestigate_compat: true,
};

/// What the preset assumes where the paper is silent, in words.
pub const PAPER_ASSUMPTIONS: [&str; 7] = [
    "LRP is iNNvestigate's lrp.epsilon with its default epsilon 1e-7 (the paper says only 'LRP'; \
     lrp.z would equal Input x Gradient on these ReLU networks, and the paper's LRP and Input x Gradient maps differ)",
    "Deep Taylor is iNNvestigate's deep_taylor (unbounded): z+ without bias on the kernel layers",
    "LRP and Deep Taylor are computed as iNNvestigate 2.1.2 computes them (--innvestigate-compat: its \
     stabiliser and bias handling, BatchNorm as a layer of its own, Deep Taylor copying relevance into both \
     branches of a residual sum); the paper's Keras models are not available, so its layer layout is assumed \
     to be torchvision's",
    "the explained class is the predicted one (iNNvestigate's neuron_selection_mode='max_activation'; \
     MATLAB examples pass the classified label)",
    "LRP and Deep Taylor start from the target's logit, as iNNvestigate does; a negative logit flips the map \
     and Deep Taylor (output passed through a ReLU) then gives an all-zero map",
    "Input x Gradient differentiates the logit (iNNvestigate analyses the model without its softmax)",
    "Grad-CAM follows MATLAB gradCAM: the softmax output is differentiated at the architecture's default \
     feature layer, ReLU, bicubic imresize to the network input, no [0, 1] scaling",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::METHOD_NAMES;

    #[test]
    fn the_paper_methods_exist() {
        for m in PAPER_METHODS {
            assert!(METHOD_NAMES.contains(&m), "{m}");
        }
    }
}
