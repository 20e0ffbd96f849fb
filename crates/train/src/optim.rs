//! SGD with momentum and Adam exactly as `torch.optim` defines them, applied by parameter
//! name (the model's torchvision keys), so the optimiser state is saved and resumed under
//! stable names and frozen parameters (no gradient) are simply skipped.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::Gradients;
use leukex_models::{Classifier, LayerVisitor, StateDict};
use serde::{Deserialize, Serialize};

/// Which update rule, with PyTorch's parameters and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD(momentum, dampening=0, nesterov)`; momentum 0 is plain SGD.
    Sgd { momentum: f64, nesterov: bool },
    /// `torch.optim.Adam(betas=(beta1, beta2), eps)` (L2 weight decay added to the
    /// gradient, as in PyTorch's Adam; not AdamW).
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    /// `sgdm`, `sgd` (no momentum), `nesterov` or `adam`; `momentum` for the SGD kinds.
    pub fn parse(name: &str, momentum: f64) -> Result<Self, String> {
        Ok(match name {
            "sgdm" => OptimizerKind::sgdm(momentum),
            "sgd" => OptimizerKind::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            "nesterov" => OptimizerKind::Sgd {
                momentum,
                nesterov: true,
            },
            "adam" => OptimizerKind::adam(),
            other => {
                return Err(format!(
                    "unknown optimizer {other:?} (expected sgdm, sgd, nesterov, adam)"
                ));
            }
        })
    }

    pub fn sgdm(momentum: f64) -> Self {
        OptimizerKind::Sgd {
            momentum,
            nesterov: false,
        }
    }

    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Per-parameter state: SGD's momentum buffer, or Adam's two moments.
// One per parameter; the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Slot {
    Momentum(Tensor<1>),
    Adam { m: Tensor<1>, v: Tensor<1> },
}

/// An optimiser: the rule, the L2 weight decay and the state of every parameter that has
/// received a gradient, by torchvision key.
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
    /// Steps taken (Adam's bias correction uses it; PyTorch counts per parameter, which is
    /// the same number here because every trained parameter gets a gradient every step).
    pub steps: u64,
    state: BTreeMap<String, Slot>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, weight_decay: f64) -> Self {
        Self {
            kind,
            weight_decay,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// Applies one update with learning rate `lr` to every parameter of `model` that has a
    /// gradient in `grads` (frozen parameters have none and are left as they are).
    pub fn step(&mut self, model: &mut Classifier, grads: &Gradients, lr: f64) {
        self.steps += 1;
        let mut v = Update {
            opt: self,
            grads,
            lr,
        };
        model.visit_layers(&mut v);
    }

    /// The state as a state dict: `<key>.momentum_buffer` (SGD) or `<key>.exp_avg` and
    /// `<key>.exp_avg_sq` (Adam), flat, plus `step`. Used for checkpoints.
    pub fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new("optimizer state");
        sd.insert("step", vec![1], vec![self.steps as f32]);
        let flat = |t: &Tensor<1>| -> Vec<f32> {
            t.clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("float tensor")
        };
        for (key, slot) in &self.state {
            match slot {
                Slot::Momentum(b) => {
                    let d = flat(b);
                    sd.insert(format!("{key}.momentum_buffer"), vec![d.len()], d);
                }
                Slot::Adam { m, v } => {
                    let d = flat(m);
                    sd.insert(format!("{key}.exp_avg"), vec![d.len()], d);
                    let d = flat(v);
                    sd.insert(format!("{key}.exp_avg_sq"), vec![d.len()], d);
                }
            }
        }
        sd
    }

    /// Restores the state written by [`state_dict`](Self::state_dict) on `device` with
    /// `dtype`. Note: checkpoint state is stored in float32.
    pub fn load_state_dict(&mut self, sd: &StateDict, device: &Device) -> Result<(), String> {
        let step = sd.get("step").ok_or("optimizer state has no `step`")?;
        self.steps = step.data[0] as u64;
        self.state.clear();
        let tensor = |key: &str| -> Result<Tensor<1>, String> {
            let t = sd
                .get(key)
                .ok_or_else(|| format!("optimizer state lacks {key}"))?;
            Ok(Tensor::from_data(
                TensorData::new(t.data.clone(), [t.data.len()]),
                device,
            ))
        };
        for key in sd.keys() {
            if let Some(p) = key.strip_suffix(".momentum_buffer") {
                self.state
                    .insert(p.to_string(), Slot::Momentum(tensor(key)?));
            } else if let Some(p) = key.strip_suffix(".exp_avg") {
                let m = tensor(key)?;
                let v = tensor(&format!("{p}.exp_avg_sq"))?;
                self.state.insert(p.to_string(), Slot::Adam { m, v });
            }
        }
        Ok(())
    }
}

/// The visitor that applies one step.
struct Update<'a> {
    opt: &'a mut Optimizer,
    grads: &'a Gradients,
    lr: f64,
}

impl Update<'_> {
    fn param<const D: usize>(&mut self, key: String, p: &mut Param<Tensor<D>>) {
        let value = p.val();
        let Some(grad) = value.grad(self.grads) else {
            return;
        };
        let dims = value.dims();
        let n: usize = dims.iter().product();
        let w = value.inner().reshape([n]);
        let mut g = grad.reshape([n]);
        let wd = self.opt.weight_decay;
        if wd != 0.0 {
            g = g + w.clone() * wd;
        }
        let step = self.opt.steps;
        let update = match self.opt.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                if momentum == 0.0 {
                    g
                } else {
                    let buf = match self.opt.state.remove(&key) {
                        Some(Slot::Momentum(b)) => b * momentum + g.clone(),
                        _ => g.clone(),
                    };
                    self.opt.state.insert(key, Slot::Momentum(buf.clone()));
                    if nesterov { g + buf * momentum } else { buf }
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                let (m, v) = match self.opt.state.remove(&key) {
                    Some(Slot::Adam { m, v }) => (m, v),
                    _ => (g.zeros_like(), g.zeros_like()),
                };
                let m = m * beta1 + g.clone() * (1.0 - beta1);
                let v = v * beta2 + g.clone() * g * (1.0 - beta2);
                self.opt.state.insert(
                    key,
                    Slot::Adam {
                        m: m.clone(),
                        v: v.clone(),
                    },
                );
                // torch.optim.Adam (single-tensor, non-amsgrad):
                // denom = sqrt(v) / sqrt(1 − β2^t) + eps; p −= lr / (1 − β1^t) · m / denom.
                let bc1 = 1.0 - beta1.powi(step as i32);
                let bc2 = 1.0 - beta2.powi(step as i32);
                let denom = v.sqrt() / bc2.sqrt() + eps;
                (m / denom) / bc1
            }
        };
        let new = (w - update * self.lr).reshape(dims);
        // A fresh leaf of the autodiff graph, under the same id.
        let (id, _, mapper) = p.clone().consume();
        *p = Param::from_mapped_value(id, Tensor::from_inner(new).require_grad(), mapper);
    }
}

impl LayerVisitor for Update<'_> {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        self.param(format!("{name}.weight"), &mut m.weight);
        if let Some(b) = &mut m.bias {
            self.param(format!("{name}.bias"), b);
        }
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        self.param(format!("{name}.weight"), &mut m.gamma);
        self.param(format!("{name}.bias"), &mut m.beta);
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        self.param(format!("{name}.weight"), &mut m.weight);
        if let Some(b) = &mut m.bias {
            self.param(format!("{name}.bias"), b);
        }
    }
}
