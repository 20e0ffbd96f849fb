//! Layer randomisation for the model parameter randomisation test (MPRT, Adebayo et al.
//! 2018) as Quantus 0.6 runs it (`quantus.MPRT`, `PyTorchModel.get_random_layer_generator`).
//!
//! # What Quantus randomises
//!
//! Quantus's layers are the modules of `named_modules()` that have a `reset_parameters`
//! method: for the five architectures exactly the convolutions, BatchNorms and linear
//! layers, which are the layers [`Classifier::visit_layers`] visits, under the same
//! torchvision module paths. [`Classifier::randomisable_layers`] lists them in Quantus's
//! `top_down` order, the output side first (the reverse of PyTorch's registration order,
//! which for these networks is also the visiting order); `tests/randomise.rs` checks the
//! list against Quantus module by module.
//!
//! A layer is re-initialised with torch's `reset_parameters` (not torchvision's
//! construction-time init): convolution and linear weights `kaiming_uniform(a=√5)`, i.e.
//! `U(−1/√fan_in, 1/√fan_in)` with `fan_in = in/groups · kh · kw` (linear: `in`), biases
//! `U(−1/√fan_in, 1/√fan_in)`; BatchNorm weight 1, bias 0, running mean 0 and running
//! variance 1. A model in inference mode stays in it, so a reset BatchNorm then divides by
//! `√(1 + ε)`, as in PyTorch's eval mode.
//!
//! # Orders and cascading
//!
//! [`LayerOrder`] is Quantus's `layer_order`: `top_down` randomises cumulatively from the
//! output side (step *k* has the first *k* layers randomised), `bottom_up` cumulatively
//! from the input side, and `independent` one layer at a time on the original model, in
//! registration (input-first) order as Quantus iterates it. [`Classifier::randomisation_steps`]
//! turns an order into the set of modules randomised at every step; since each module's
//! values come from a stream of its own, randomising a step's whole set on a copy of the
//! original model equals randomising one layer more on the previous step's model.
//!
//! # Seeding
//!
//! Values are drawn from a SplitMix64 stream per state-dict key, seeded with `seed` and
//! the key: the same seed gives the same weights whatever else is randomised, and two
//! modules of the same shape get different weights. (Quantus re-seeds torch's global
//! generator with `seed + 1` before every reset, so there two modules of the same shape,
//! e.g. ResNet18's `layer4.1.conv1` and `layer4.1.conv2`, get identical weights; the
//! values cannot equal torch's anyway, as they come from another generator.)
//!
//! # Layer groups
//!
//! [`Granularity::Group`] cascades over coarser blocks a researcher names in a figure:
//!
//! * ResNet: `fc`, `layer4`, `layer3`, `layer2`, `layer1`, `stem` (`conv1`, `bn1`).
//! * VGG19: every linear (`classifier.6`, `classifier.3`, `classifier.0`) and every
//!   convolution (`features.34` … `features.0`) on its own, as Adebayo et al.'s VGG
//!   cascades (VGG19 has no BatchNorm, so a group is one module).
//! * GoogLeNet: `fc`, `inception5b` … `inception3a`, `stem` (`conv1`, `conv2`, `conv3`).
//! * EfficientNet-Lite0: `_fc`, `conv_head` (`_conv_head`, `_bn1`), `_blocks.15` …
//!   `_blocks.0`, `stem` (`_conv_stem`, `_bn0`).
//!
//! Groups are contiguous runs of the top-down module list.

use std::collections::BTreeSet;
use std::fmt;

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

use crate::export::seeded_uniform;
use crate::layers::LayerVisitor;
use crate::{Arch, Classifier};

/// The type of a randomisable module (torch's class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// `nn.Conv2d` (also EfficientNet's `Conv2dStaticSamePadding`).
    Conv2d,
    /// `nn.BatchNorm2d`.
    BatchNorm2d,
    /// `nn.Linear`.
    Linear,
}

/// A module with parameters that MPRT re-initialises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomisableLayer {
    /// torchvision module path (`fc`, `layer4.1.bn2`, `features.34`, `_blocks.3._bn1`).
    pub name: String,
    pub kind: LayerKind,
    /// Weight shape in torch layout: `[out, in/groups, kh, kw]`, `[out, in]` or `[C]`.
    pub weight_shape: Vec<usize>,
    /// Whether the module has a bias (always for BatchNorm).
    pub bias: bool,
}

impl RandomisableLayer {
    /// torch's `fan_in` of the weight (`in/groups · kh · kw`, linear `in`); `None` for
    /// BatchNorm, whose reset draws nothing.
    pub fn fan_in(&self) -> Option<usize> {
        match self.kind {
            LayerKind::BatchNorm2d => None,
            _ => Some(self.weight_shape[1..].iter().product()),
        }
    }

    /// Half-width of the uniform distribution torch's `reset_parameters` draws the weight
    /// and the bias from: `1/√fan_in`; `None` for BatchNorm (reset to fixed values).
    pub fn reset_bound(&self) -> Option<f64> {
        self.fan_in()
            .filter(|&f| f > 0)
            .map(|f| 1.0 / (f as f64).sqrt())
    }
}

/// Which units a randomisation step covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// Every randomisable module on its own (Quantus's unit).
    #[default]
    Module,
    /// Blocks: stages, inception modules, MBConv blocks (see the module docs).
    Group,
}

/// Quantus's `layer_order`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerOrder {
    /// Cumulative from the output side (Quantus's default, the cascading MPRT).
    #[default]
    TopDown,
    /// Cumulative from the input side.
    BottomUp,
    /// One unit at a time on the original model, input side first (Quantus's order).
    Independent,
}

/// A named set of randomisable modules (one module at [`Granularity::Module`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerGroup {
    pub name: String,
    /// Module paths, output side first.
    pub modules: Vec<String>,
}

/// One step of an MPRT run: its name (the unit randomised last) and every module that is
/// randomised, relative to the original model, when the explanation is recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomisationStep {
    pub name: String,
    pub modules: Vec<String>,
}

/// Names passed to [`Classifier::randomise`] that are neither a randomisable module nor a
/// layer group of the architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{arch} has no randomisable module or layer group named {} (modules are conv, BatchNorm and linear layers by torchvision path, e.g. {example}; groups: {groups})",
    quoted(.names),
    example = .example,
    groups = .groups.join(", ")
)]
pub struct UnknownLayers {
    pub arch: String,
    pub names: Vec<String>,
    /// The first randomisable module, as an example of a valid name.
    pub example: String,
    /// The architecture's layer groups, output side first.
    pub groups: Vec<String>,
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for LayerOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerOrder::TopDown => "top_down",
            LayerOrder::BottomUp => "bottom_up",
            LayerOrder::Independent => "independent",
        })
    }
}

/// The group of module `name` of `arch` (see the module docs).
fn group_of(arch: Arch, name: &str) -> String {
    let first = name.split('.').next().unwrap_or(name);
    match arch {
        Arch::ResNet18 | Arch::ResNet50 => match first {
            "conv1" | "bn1" => "stem".into(),
            other => other.into(),
        },
        Arch::Vgg19 => name.into(),
        Arch::GoogLeNet => match first {
            "conv1" | "conv2" | "conv3" => "stem".into(),
            other => other.into(),
        },
        Arch::EfficientNetLite0 => match first {
            "_conv_stem" | "_bn0" => "stem".into(),
            "_conv_head" | "_bn1" => "conv_head".into(),
            "_blocks" => name.splitn(3, '.').take(2).collect::<Vec<_>>().join("."),
            other => other.into(),
        },
    }
}

/// Lists the parameterised layers in visiting (= torch registration) order.
#[derive(Default)]
struct Lister(Vec<RandomisableLayer>);

impl LayerVisitor for Lister {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        self.0.push(RandomisableLayer {
            name: name.into(),
            kind: LayerKind::Conv2d,
            weight_shape: m.weight.lazy_shape().to_vec(),
            bias: m.bias.is_some(),
        });
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        self.0.push(RandomisableLayer {
            name: name.into(),
            kind: LayerKind::BatchNorm2d,
            weight_shape: m.gamma.lazy_shape().to_vec(),
            bias: true,
        });
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        let s = m.weight.lazy_shape().to_vec(); // burn [in, out]
        self.0.push(RandomisableLayer {
            name: name.into(),
            kind: LayerKind::Linear,
            weight_shape: vec![s[1], s[0]],
            bias: m.bias.is_some(),
        });
    }
}

/// Stream key of a reset value: distinct from [`crate::export::ScratchInit`]'s keys, so
/// that a model initialised from scratch and randomised with the same seed does not get
/// values drawn from the same uniforms.
fn reset_key(key: &str) -> String {
    format!("reset_parameters:{key}")
}

/// Replaces `p` by `data` (torch layout = burn layout for these shapes), keeping its id,
/// device, require-grad flag and float dtype.
fn replace_param<const D: usize>(p: &mut Param<Tensor<D>>, data: Vec<f32>, shape: [usize; D]) {
    let dev = p.lazy_device();
    let mut t = Tensor::<D>::from_data(TensorData::new(data, shape), &dev);
    if p.is_initialized() {
        let dtype = p.val().dtype();
        if t.dtype() != dtype {
            t = t.cast(FloatDType::from(dtype));
        }
    }
    *p = p.clone().transform_for_load(t, p.id);
}

/// A fresh running state holding `value` with `state`'s id, device and dtype. A new state,
/// not an update of the old one: clones of a model share their running states, and
/// resetting a copy must leave the original model as it was.
fn replace_running(state: &mut RunningState<Tensor<1>>, value: f32) {
    struct IdOf(Option<ParamId>);
    impl ModuleVisitor for IdOf {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 = Some(param.id);
        }
    }
    let mut id = IdOf(None);
    state.visit(&mut id);
    let old = state.value_sync();
    let t = old.ones_like() * value;
    let t = t.detach();
    *state = match id.0 {
        Some(id) => RunningState::with_id(id, t),
        None => RunningState::new(t),
    };
}

/// Re-initialises the named modules as torch's `reset_parameters` does.
struct Reset<'a> {
    targets: &'a BTreeSet<String>,
    seed: u64,
}

impl Reset<'_> {
    fn uniform(&self, key: &str, n: usize, bound: f64) -> Vec<f32> {
        seeded_uniform(self.seed, &reset_key(key), n, bound)
    }
}

impl LayerVisitor for Reset<'_> {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        if !self.targets.contains(name) {
            return;
        }
        let s = m.weight.lazy_shape().to_vec(); // [out, in/groups, kh, kw]
        let shape = [s[0], s[1], s[2], s[3]];
        let fan_in = s[1] * s[2] * s[3];
        let bound = if fan_in > 0 {
            1.0 / (fan_in as f64).sqrt()
        } else {
            0.0
        };
        let w = self.uniform(&format!("{name}.weight"), s.iter().product(), bound);
        replace_param(&mut m.weight, w, shape);
        if let Some(b) = &mut m.bias {
            let v = self.uniform(&format!("{name}.bias"), s[0], bound);
            replace_param(b, v, [s[0]]);
        }
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        if !self.targets.contains(name) {
            return;
        }
        let c = m.gamma.lazy_shape().as_slice()[0];
        replace_param(&mut m.gamma, vec![1.0; c], [c]);
        replace_param(&mut m.beta, vec![0.0; c], [c]);
        replace_running(&mut m.running_mean, 0.0);
        replace_running(&mut m.running_var, 1.0);
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        if !self.targets.contains(name) {
            return;
        }
        let s = m.weight.lazy_shape().to_vec(); // burn [in, out]
        let (din, dout) = (s[0], s[1]);
        let bound = if din > 0 {
            1.0 / (din as f64).sqrt()
        } else {
            0.0
        };
        // Drawn in torch layout [out, in] (index o·in + i), stored as burn's [in, out].
        let w_torch = self.uniform(&format!("{name}.weight"), din * dout, bound);
        let mut w = vec![0f32; din * dout];
        for o in 0..dout {
            for i in 0..din {
                w[i * dout + o] = w_torch[o * din + i];
            }
        }
        replace_param(&mut m.weight, w, [din, dout]);
        if let Some(b) = &mut m.bias {
            let v = self.uniform(&format!("{name}.bias"), dout, bound);
            replace_param(b, v, [dout]);
        }
    }
}

impl Classifier {
    /// The modules MPRT randomises (convolutions, BatchNorms, linear layers) in Quantus's
    /// `top_down` order: output side first. Needs no allocated weights.
    pub fn randomisable_layers(&self) -> Vec<RandomisableLayer> {
        let mut lister = Lister::default();
        // The visitor takes `&mut`; a module clone shares its tensors and is cheap.
        self.clone().visit_layers(&mut lister);
        let mut layers = lister.0;
        layers.reverse();
        layers
    }

    /// The randomisation units at `granularity`, output side first: every module on its
    /// own, or the layer groups of the module docs.
    pub fn layer_groups(&self, granularity: Granularity) -> Vec<LayerGroup> {
        let arch = self.arch();
        let mut groups: Vec<LayerGroup> = Vec::new();
        for layer in self.randomisable_layers() {
            let name = match granularity {
                Granularity::Module => layer.name.clone(),
                Granularity::Group => group_of(arch, &layer.name),
            };
            match groups.last_mut() {
                Some(g) if g.name == name => g.modules.push(layer.name),
                _ => groups.push(LayerGroup {
                    name,
                    modules: vec![layer.name],
                }),
            }
        }
        groups
    }

    /// The steps of an MPRT run: for each unit in the order Quantus visits it, the name of
    /// the unit and all modules randomised at that step relative to the original model
    /// (cumulative for [`LayerOrder::TopDown`] and [`LayerOrder::BottomUp`], the unit
    /// alone for [`LayerOrder::Independent`]). Randomise a copy of the original model
    /// with [`randomise`](Self::randomise)`(&step.modules, seed)` for each step.
    pub fn randomisation_steps(
        &self,
        order: LayerOrder,
        granularity: Granularity,
    ) -> Vec<RandomisationStep> {
        let mut units = self.layer_groups(granularity);
        if order != LayerOrder::TopDown {
            // Quantus iterates `independent` in registration order (input side first).
            units.reverse();
        }
        let mut done: Vec<String> = Vec::new();
        units
            .into_iter()
            .map(|u| {
                let modules = if order == LayerOrder::Independent {
                    u.modules
                } else {
                    done.extend(u.modules);
                    done.clone()
                };
                RandomisationStep {
                    name: u.name,
                    modules,
                }
            })
            .collect()
    }

    /// Re-initialises, in place, the named modules (torchvision paths from
    /// [`randomisable_layers`](Self::randomisable_layers)) and layer groups (names from
    /// [`layer_groups`](Self::layer_groups)`(Granularity::Group)`) as torch's
    /// `reset_parameters` does (see the module docs), drawing from streams seeded by `seed`
    /// and each key: the same seed gives the same weights. Parameters keep their ids,
    /// device, float dtype and require-grad flag, the model its inference or training
    /// mode. A clone of the model is not affected (BatchNorm running statistics get new
    /// storage). Unknown names are an error, and then nothing is changed.
    pub fn randomise<S: AsRef<str>>(
        &mut self,
        names: &[S],
        seed: u64,
    ) -> Result<(), UnknownLayers> {
        let modules = self.resolve_layers(names)?;
        let mut reset = Reset {
            targets: &modules,
            seed,
        };
        self.visit_layers(&mut reset);
        Ok(())
    }

    /// The module paths that `names` (modules or groups) stand for.
    pub fn resolve_layers<S: AsRef<str>>(
        &self,
        names: &[S],
    ) -> Result<BTreeSet<String>, UnknownLayers> {
        let layers = self.randomisable_layers();
        let groups = self.layer_groups(Granularity::Group);
        let mut modules = BTreeSet::new();
        let mut unknown = Vec::new();
        for name in names {
            let name = name.as_ref();
            if layers.iter().any(|l| l.name == name) {
                modules.insert(name.to_string());
            } else if let Some(g) = groups.iter().find(|g| g.name == name) {
                modules.extend(g.modules.iter().cloned());
            } else {
                unknown.push(name.to_string());
            }
        }
        if !unknown.is_empty() {
            return Err(UnknownLayers {
                arch: self.arch().to_string(),
                names: unknown,
                example: layers.first().map(|l| l.name.clone()).unwrap_or_default(),
                groups: groups.into_iter().map(|g| g.name).collect(),
            });
        }
        Ok(modules)
    }
}
