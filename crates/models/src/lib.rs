//! torchvision-compatible CNNs for leukex, in burn 0.22.
//!
//! Architectures ([`Arch`]): `resnet18`, `resnet50`, `vgg19` (no BN), `googlenet`
//! (torchvision Inception v1) and `efficientnet-lite0` (PyPI `efficientnet-lite-pytorch`
//! 0.1.0). Each is defined once; parameters are addressed by the checkpoint's own keys, so
//! a PyTorch `state_dict` loads as it is ([`Classifier::load_state_dict`],
//! [`Classifier::load_weights`]; `.safetensors`, zip `.pth` and legacy pickle `.pth`).
//!
//! # Inference mode
//!
//! Models are built in training mode (BatchNorm uses batch statistics and dropout is active
//! whenever the *input* lives on an autodiff device). For inference and for explanations
//! call [`Module::valid`] first (`let m = m.valid();`): BatchNorm then uses its running
//! statistics and dropout is off, also for an autodiff input used to take input gradients.
//!
//! # Named outputs
//!
//! [`Classifier::forward_with`] runs the forward pass and calls a hook at every named
//! module output; the hook may return a modified tensor (e.g. `x + probe` with a zero
//! autodiff leaf `probe`, to read d score / d activation for Grad-CAM). Names are the
//! checkpoint's module paths ([`Classifier::layer_names`] lists them in call order):
//!
//! * **ResNet**: `conv1`, `bn1`, `relu` (stem), `maxpool`; per block `layerL.B.conv1`,
//!   `.bn1`, `.conv2`, `.bn2` (`.conv3`, `.bn3` for Bottleneck), `.downsample.0`,
//!   `.downsample.1`, `.downsample` when present, then `layerL.B` (block output, after the
//!   final ReLU); `layerL` (stage output); `avgpool`; `fc`. The ReLUs inside a block share
//!   one torchvision module and have no name of their own: the block output is the
//!   post-ReLU activation, `bnK` the pre-activation.
//! * **VGG19**: `features.0` … `features.36` (conv, ReLU and max-pool modules with
//!   torchvision's indices), `features`, `avgpool` (7×7), `classifier.0` … `classifier.6`,
//!   `classifier`.
//! * **GoogLeNet**: `conv1`, `maxpool1`, `conv2`, `conv3`, `maxpool2`, `inception3a`,
//!   `inception3b`, `maxpool3`, `inception4a` … `inception4e`, `maxpool4`, `inception5a`,
//!   `inception5b`, `avgpool`, `dropout`, `fc`; every `BasicConv2d` (`conv1`,
//!   `inception4a.branch2.1`, …) names its post-ReLU output and has children `.conv`,
//!   `.bn`; inside an inception module `branch1`, `branch2.0`, `branch2.1`, `branch2`,
//!   `branch3.*`, `branch4.0` (max pool), `branch4.1`, `branch4`, and the module name for
//!   the concatenation. `transform_input` (if on) is applied before `conv1` and has no name.
//! * **EfficientNet-Lite0**: `_conv_stem`, `_bn0`, per block `_blocks.N._expand_conv`,
//!   `._bn0` (absent in block 0), `._depthwise_conv`, `._bn1`, `._project_conv`, `._bn2`,
//!   `_blocks.N` (after the skip connection), then `_conv_head`, `_bn1`, `extract_features`
//!   (ReLU6 of `_bn1`: the package's `extract_features` output, the one name that is not a
//!   module path, because `_swish` is one module reused everywhere), `_avg_pooling`,
//!   `_dropout`, `_fc`. The ReLU6 activations inside blocks have no name (`_bnK` is the
//!   pre-activation).
//!
//! Hook tensors are 4-D: 2-D outputs (`fc`, `classifier.N`, `_fc`, `dropout`, `_dropout`)
//! are passed as `[N, C, 1, 1]` and reshaped back. The last name of every architecture is
//! the logits.
//!
//! # Randomisation (MPRT)
//!
//! [`Classifier::randomisable_layers`], [`Classifier::layer_groups`],
//! [`Classifier::randomisation_steps`] and [`Classifier::randomise`] are the model side of
//! the model parameter randomisation test as Quantus 0.6 runs it (see [`randomise`]).

pub mod allocator;
pub mod channel_affine;
/// Closed-form weights and inputs of the reference tests: test support only.
#[cfg(feature = "test-support")]
pub mod closed_form;
pub mod conv;
mod efficientnet;
pub mod elementwise;
mod export;
mod fold;
mod googlenet;
mod layers;
pub mod pool;
pub mod predict;
pub mod randomise;
pub mod relu;
mod resnet;
mod vgg;
mod weights;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::{ModuleMapper, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

pub use efficientnet::{EfficientNetLite0, MBConvBlock};
pub use googlenet::{BasicConv2d, GoogLeNet, Inception};
pub use randomise::{
    Granularity, LayerGroup, LayerKind, LayerOrder, RandomisableLayer, RandomisationStep,
    UnknownLayers,
};
pub use resnet::{Block, Downsample, ResNet};
pub use vgg::Vgg19;
pub use weights::{ShapeMismatch, StateDict, StateTensor, WeightsError, WeightsFormat};

pub use conv::conv_options;
pub use fold::fold_batch_norm;
use layers::{HookOps, Tap};
pub use layers::{LayerVisitor, Network, Ops, adaptive_avg_pool, batch_norm, plain_conv};
use leukex_hash::SplitMix64;
use weights::{KeyLister, Loader, ignorable};

/// The supported architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "resnet18")]
    ResNet18,
    #[serde(rename = "resnet50")]
    ResNet50,
    #[serde(rename = "vgg19")]
    Vgg19,
    #[serde(rename = "googlenet")]
    GoogLeNet,
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

impl Arch {
    pub const ALL: [Arch; 5] = [
        Arch::ResNet18,
        Arch::ResNet50,
        Arch::Vgg19,
        Arch::GoogLeNet,
        Arch::EfficientNetLite0,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
            Arch::Vgg19 => "vgg19",
            Arch::GoogLeNet => "googlenet",
            Arch::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    /// State-dict key of the classification head's weight (`[num_classes, in]`).
    pub fn head_weight_key(self) -> &'static str {
        match self {
            Arch::ResNet18 | Arch::ResNet50 | Arch::GoogLeNet => "fc.weight",
            Arch::Vgg19 => "classifier.6.weight",
            Arch::EfficientNetLite0 => "_fc.weight",
        }
    }

    /// Number of classes of `sd`'s head for this architecture (rows of
    /// [`head_weight_key`](Self::head_weight_key)); `None` when the key is absent or
    /// not 2-D.
    pub fn num_classes_in(self, sd: &StateDict) -> Option<usize> {
        sd.get(self.head_weight_key())
            .filter(|t| t.shape.len() == 2)
            .map(|t| t.shape[0])
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unknown architecture name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown architecture {0:?} (expected one of resnet18, resnet50, vgg19, googlenet, efficientnet-lite0)"
)]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownArch(s.to_string()))
    }
}

/// What is needed to rebuild a model's structure (recorded next to its weights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub num_classes: usize,
    /// GoogLeNet only: torchvision's `transform_input` (on for torchvision's ImageNet
    /// weights, off otherwise). Ignored by the other architectures.
    #[serde(default)]
    pub transform_input: bool,
}

impl ModelConfig {
    pub fn new(arch: Arch, num_classes: usize) -> Self {
        Self {
            arch,
            num_classes,
            transform_input: false,
        }
    }

    pub fn with_transform_input(mut self, on: bool) -> Self {
        self.transform_input = on;
        self
    }
}

/// A classifier of any supported architecture.
// One value per model; the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier {
    ResNet(ResNet),
    Vgg19(Vgg19),
    GoogLeNet(GoogLeNet),
    EfficientNetLite0(EfficientNetLite0),
}

impl Classifier {
    /// Builds the architecture with lazily initialised (burn default) parameters; load
    /// weights with [`load_state_dict`](Self::load_state_dict) / [`load_weights`](Self::load_weights).
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let k = config.num_classes;
        match config.arch {
            Arch::ResNet18 => Classifier::ResNet(ResNet::new(18, k, device)),
            Arch::ResNet50 => Classifier::ResNet(ResNet::new(50, k, device)),
            Arch::Vgg19 => Classifier::Vgg19(Vgg19::new(k, device)),
            Arch::GoogLeNet => {
                Classifier::GoogLeNet(GoogLeNet::new(k, config.transform_input, device))
            }
            Arch::EfficientNetLite0 => {
                Classifier::EfficientNetLite0(EfficientNetLite0::new(k, device))
            }
        }
    }

    /// Builds the model and loads `sd` (see [`load_state_dict`](Self::load_state_dict)).
    pub fn from_state_dict(
        config: &ModelConfig,
        sd: &StateDict,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let mut m = Self::new(config, device);
        m.load_state_dict(sd)?;
        Ok(m)
    }

    /// [`from_state_dict`](Self::from_state_dict) moving the values out of `sd` instead
    /// of copying them.
    pub fn from_owned_state_dict(
        config: &ModelConfig,
        sd: StateDict,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let mut m = Self::new(config, device);
        m.load_owned_state_dict(sd)?;
        Ok(m)
    }

    /// Builds the model and loads a state dict file (see [`StateDict::read`]).
    pub fn from_file(
        config: &ModelConfig,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let mut m = Self::new(config, device);
        m.load_weights(path)?;
        Ok(m)
    }

    pub fn arch(&self) -> Arch {
        match self {
            Classifier::ResNet(r) if r.depth == 18 => Arch::ResNet18,
            Classifier::ResNet(_) => Arch::ResNet50,
            Classifier::Vgg19(_) => Arch::Vgg19,
            Classifier::GoogLeNet(_) => Arch::GoogLeNet,
            Classifier::EfficientNetLite0(_) => Arch::EfficientNetLite0,
        }
    }

    pub fn config(&self) -> ModelConfig {
        let transform_input = matches!(self, Classifier::GoogLeNet(g) if g.transform_input);
        ModelConfig::new(self.arch(), self.num_classes()).with_transform_input(transform_input)
    }

    /// Number of output classes (rows of the classification head).
    pub fn num_classes(&self) -> usize {
        let (_, head) = self.head();
        head.weight.lazy_shape().as_slice()[1]
    }

    /// Logits `[N, num_classes]` for images `[N, 3, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        // BatchNorm stays a pass of its own: folding it into the convolutions moved
        // ResNet50's logits 1.07e-4 from torchvision's, beyond the 1e-4 they must meet.
        self.forward_with(x, &mut |_, t| t)
    }

    /// Forward pass calling `hook(name, output)` at every named module output (see the
    /// crate docs for the names); the hook's return value replaces the output.
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        hook: &mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>,
    ) -> Tensor<2> {
        self.forward_ops(x, &mut HookOps { hook })
    }

    /// Forward pass written in `ops` (see [`Ops`]): the model's one definition, run with
    /// the operations of an explanation method.
    pub fn forward_ops(&self, x: Tensor<4>, ops: &mut dyn Ops) -> Tensor<2> {
        let mut tap = Tap { ops };
        match self {
            Classifier::ResNet(m) => m.forward(x, &mut tap),
            Classifier::Vgg19(m) => m.forward(x, &mut tap),
            Classifier::GoogLeNet(m) => m.forward(x, &mut tap),
            Classifier::EfficientNetLite0(m) => m.forward(x, &mut tap),
        }
    }

    /// The names [`forward_with`](Self::forward_with) calls its hook with, in call order.
    pub fn layer_names(&self) -> Vec<String> {
        match self {
            Classifier::ResNet(m) => m.names(),
            Classifier::Vgg19(_) => Vgg19::names(),
            Classifier::GoogLeNet(_) => GoogLeNet::names(),
            Classifier::EfficientNetLite0(m) => m.names(),
        }
    }

    /// The state-dict keys this model loads, with their torch-layout shapes, in module
    /// order (`num_batches_tracked` not included).
    pub fn state_dict_keys(&self) -> Vec<(String, Vec<usize>)> {
        let mut lister = KeyLister::default();
        // The visitor takes `&mut`; a module clone shares its tensors and is cheap.
        self.clone().visit_layers(&mut lister);
        lister.keys
    }

    /// Loads a state dict file (`.safetensors`, zip `.pth`, legacy `.pth`).
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        self.load_owned_state_dict(StateDict::read(path)?)
    }

    /// Loads a state dict with torchvision key names. Every key of the model must be
    /// present with the right shape and no other key may be present (except
    /// `*.num_batches_tracked`, and `aux1.*` / `aux2.*` for GoogLeNet); otherwise
    /// [`WeightsError::Mismatch`] lists all offending keys and the model is left unchanged.
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<(), WeightsError> {
        self.check_state_dict(sd)?;
        let mut loader = Loader::new(sd, true);
        self.visit_layers(&mut loader);
        Ok(())
    }

    /// [`load_state_dict`](Self::load_state_dict) moving the values out of `sd` instead
    /// of copying them (same checks, same errors).
    pub fn load_owned_state_dict(&mut self, sd: StateDict) -> Result<(), WeightsError> {
        self.check_state_dict(&sd)?;
        self.visit_layers(&mut Loader::owning(sd));
        Ok(())
    }

    /// The checks of [`load_state_dict`](Self::load_state_dict) without loading: every
    /// key present with the right shape, no unexpected key. Allocates no tensor (the
    /// parameters of a fresh model stay lazy).
    pub fn check_state_dict(&mut self, sd: &StateDict) -> Result<(), WeightsError> {
        let ignore_aux = matches!(self, Classifier::GoogLeNet(_));
        let mut check = Loader::new(sd, false);
        self.visit_layers(&mut check);
        let unexpected: Vec<String> = sd
            .keys()
            .filter(|k| !check.used.contains(*k) && !ignorable(k, ignore_aux))
            .map(String::from)
            .collect();
        if !check.missing.is_empty() || !check.wrong_shape.is_empty() || !unexpected.is_empty() {
            let looks_like = (!check.missing.is_empty() || !unexpected.is_empty())
                .then(|| {
                    let keys = sd.keys().collect();
                    weights::architecture_of_keys(&keys, |k| ignorable(k, true))
                })
                .flatten()
                .filter(|&a| a != self.arch());
            return Err(WeightsError::Mismatch {
                source_name: sd.source().to_string(),
                arch: self.arch(),
                looks_like,
                missing: check.missing,
                unexpected,
                wrong_shape: check.wrong_shape,
            });
        }
        // A NaN or infinity in the weights would make every output NaN: a class 0
        // "prediction" and maps of nothing. Named by tensor instead.
        if let Some((key, index, value)) = weights::first_non_finite(sd, check.used.iter()) {
            return Err(WeightsError::NonFinite {
                source_name: sd.source().to_string(),
                key,
                index,
                value,
            });
        }
        Ok(())
    }

    /// Replaces the classification head by a freshly initialised `Linear(in, num_classes)`
    /// (PyTorch's default `nn.Linear` init: weight and bias ~ U(-1/√in, 1/√in)), drawn from
    /// a SplitMix64 stream seeded with `seed`, so the same seed gives the same head.
    pub fn replace_head(&mut self, num_classes: usize, seed: u64) {
        let (_, head) = self.head_mut();
        let dev = head.weight.lazy_device();
        let d_in = head.weight.lazy_shape().as_slice()[0];
        let bound = 1.0 / (d_in as f64).sqrt();
        let mut rng = SplitMix64(seed);
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        // torch layout [out, in], stored transposed as burn's [in, out].
        let w_torch = uniform(num_classes * d_in);
        let b = uniform(num_classes);
        let mut w = vec![0f32; d_in * num_classes];
        for o in 0..num_classes {
            for i in 0..d_in {
                w[i * num_classes + o] = w_torch[o * d_in + i];
            }
        }
        let mut lin: Linear = LinearConfig::new(d_in, num_classes).init(&dev);
        lin.weight = lin.weight.clone().transform_for_load(
            Tensor::from_data(TensorData::new(w, [d_in, num_classes]), &dev),
            lin.weight.id,
        );
        if let Some(bias) = lin.bias.take() {
            let id = bias.id;
            lin.bias = Some(bias.transform_for_load(
                Tensor::from_data(TensorData::new(b, [num_classes]), &dev),
                id,
            ));
        }
        *head = lin;
    }

    /// Freezes everything but the classification head (for `--freeze-backbone`
    /// fine-tuning): the backbone's parameters get no gradient, and its BatchNorm layers
    /// use their running statistics and leave them unchanged (burn's `freeze`; PyTorch:
    /// `requires_grad_(False)` plus `.eval()` on those BatchNorms), so the head learns
    /// on the very features it will see at test time. Dropout layers are frozen (off) too.
    pub fn freeze_backbone(self) -> Self {
        let mut m = self.freeze();
        let (_, head) = m.head_mut();
        *head = head.clone().unfreeze();
        m
    }

    /// Casts every float parameter and buffer to `dtype` (e.g. `FloatDType::F64` for
    /// reference checks, `F16` for inference); inputs must then use the same dtype.
    pub fn cast_float(self, dtype: FloatDType) -> Self {
        cast_float(self, dtype)
    }

    /// The classification head and its torchvision name (`fc`, `classifier.6`, `_fc`).
    pub fn head(&self) -> (&'static str, &Linear) {
        match self {
            Classifier::ResNet(m) => ("fc", &m.fc),
            Classifier::Vgg19(m) => ("classifier.6", &m.classifier[2]),
            Classifier::GoogLeNet(m) => ("fc", &m.fc),
            Classifier::EfficientNetLite0(m) => ("_fc", &m.fc),
        }
    }

    fn head_mut(&mut self) -> (&'static str, &mut Linear) {
        match self {
            Classifier::ResNet(m) => m.head_mut(),
            Classifier::Vgg19(m) => m.head_mut(),
            Classifier::GoogLeNet(m) => m.head_mut(),
            Classifier::EfficientNetLite0(m) => m.head_mut(),
        }
    }

    /// The current parameters and BatchNorm statistics as a torchvision `state_dict`
    /// (torch layout; loads back with [`load_state_dict`](Self::load_state_dict) and into
    /// torchvision with `strict=True`). Every `*.num_batches_tracked` is set to `batches`.
    pub fn to_state_dict(&self, batches: u64) -> StateDict {
        let mut ex = export::Exporter {
            sd: StateDict::new(format!("{} (in memory)", self.arch())),
            batches,
        };
        self.clone().visit_layers(&mut ex);
        ex.sd
    }

    /// Re-initialises every parameter as torchvision does for training from scratch
    /// (Kaiming-normal fan-out convolutions, BatchNorm 1/0, PyTorch's default linear init),
    /// each key drawn from its own stream seeded by `seed` and the key's name: the same
    /// seed gives the same weights whatever the visiting order.
    pub fn init_from_scratch(&mut self, seed: u64) {
        let mut init = export::ScratchInit {
            sd: StateDict::new(format!("{} scratch init (seed {seed})", self.arch())),
            seed,
        };
        self.visit_layers(&mut init);
        self.visit_layers(&mut Loader::owning(init.sd));
    }

    /// Calls `v` with every parameterised layer (conv, BatchNorm, linear) under its
    /// torchvision module path, in module order.
    pub fn visit_layers(&mut self, v: &mut dyn LayerVisitor) {
        match self {
            Classifier::ResNet(m) => m.visit_params(v),
            Classifier::Vgg19(m) => m.visit_params(v),
            Classifier::GoogLeNet(m) => m.visit_params(v),
            Classifier::EfficientNetLite0(m) => m.visit_params(v),
        }
    }
}

impl Network for Classifier {
    fn forward_ops(&self, x: Tensor<4>, ops: &mut dyn Ops) -> Tensor<2> {
        Classifier::forward_ops(self, x, ops)
    }
}

/// Casts every float parameter and buffer of any module to `dtype` (see
/// [`Classifier::cast_float`]).
pub fn cast_float<M: Module>(module: M, dtype: FloatDType) -> M {
    struct CastFloat(FloatDType);
    impl ModuleMapper for CastFloat {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            // On an autodiff device the cast values must be leaves again (a cast node
            // would tie every later pass to this one's graph); keep require-grad.
            p.map(|t| {
                if t.is_autodiff() {
                    let rg = t.is_require_grad();
                    t.cast(dtype).detach().set_require_grad(rg)
                } else {
                    t.cast(dtype)
                }
            })
        }
    }
    module.map(&mut CastFloat(dtype))
}

/// Converts a weights file of any supported format (see [`StateDict::read`]) to
/// safetensors bytes, after checking that it fits `arch` with `num_classes` classes
/// (default: the rows of the file's head, [`Arch::num_classes_in`]; 1000 when the head is
/// absent, which the check then reports). All keys are kept under their torchvision
/// names, `num_batches_tracked` included (see [`StateDict::to_safetensors`]); the header
/// metadata records `leukex.arch`, `leukex.num_classes` and `leukex.source` (the file
/// name). Errors name the file and list missing, unexpected and wrongly shaped keys.
pub fn import_weights(
    arch: Arch,
    src: impl AsRef<Path>,
    num_classes: Option<usize>,
) -> Result<(ModelConfig, Vec<u8>), WeightsError> {
    let src = src.as_ref();
    let sd = StateDict::read(src)?;
    let k = num_classes
        .or_else(|| arch.num_classes_in(&sd))
        .unwrap_or(1000);
    let config = ModelConfig::new(arch, k);
    Classifier::new(&config, &Device::default()).check_state_dict(&sd)?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = sd.to_safetensors(&[
        ("leukex.arch", arch.to_string()),
        ("leukex.num_classes", k.to_string()),
        ("leukex.source", name),
    ]);
    Ok((config, bytes))
}

/// Named outputs of `arch` in call order (see the crate docs); builds the structure
/// lazily (no weights are allocated).
pub fn layer_names(arch: Arch) -> Vec<String> {
    Classifier::new(&ModelConfig::new(arch, 2), &Device::default()).layer_names()
}
