//! Composites: which rule each linear layer gets.
//!
//! As in Zennit, a composite maps layers to rules by kind (convolution or dense), with a
//! special rule for the *first* linear layer (the stem convolution: the one that sees
//! pixels) and optional per-name overrides. Everything that is not a linear layer has a
//! fixed treatment in [`crate::lrp`]: activations pass relevance through, residual sums
//! and average pools split it in proportion to their inputs (Zennit's `Norm`), max pools
//! route it to the winner and concatenations by channel slice (the gradient).
//! [`Composite::innvestigate`] switches these treatments to iNNvestigate's.

use serde::{Deserialize, Serialize};

use crate::rules::Rule;

/// Kind of a linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Conv,
    Dense,
}

/// A layer-to-rule map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Composite {
    pub conv: Rule,
    pub dense: Rule,
    /// Rule of the first linear layer, if it differs.
    pub first: Option<Rule>,
    /// Rules for layers named explicitly (checkpoint module paths, e.g. `layer4.1.conv2`,
    /// `fc`); they win over everything else.
    pub by_name: Vec<(String, Rule)>,
    /// iNNvestigate 2.1.2 compatibility (`--innvestigate-compat`); `None`: leukex's
    /// conservative, Zennit-equal treatment.
    ///
    /// With `Some`, [`crate::lrp`] computes what iNNvestigate's analyzer computes on the
    /// same network built in Keras (layers with their activation fused, BatchNorm a layer of
    /// its own), instead of the default. Each difference from the default:
    ///
    /// * the rules of convolutions and dense layers are iNNvestigate's
    ///   ([`Rule::innvestigate_groups`]): `z + 1e-7·[z = 0]` as the stabiliser of every rule
    ///   but ε, the whole bias in both αβ denominators, no bias in z⁺, w² and zᴮ;
    /// * BatchNorm is not folded into the convolution before it: the convolution's rule
    ///   runs on its own weights, and the BatchNorm gets a rule of its own on iNNvestigate's
    ///   linearisation of it ([`Innvestigate::batch_norm`]);
    /// * Deep Taylor ([`Innvestigate::DeepTaylor`]): a residual sum *copies* its relevance
    ///   into both summands (the gradient; not conservative: the relevance of every skip
    ///   join is counted twice), average pools (global ones too) spread relevance evenly
    ///   over each bin (the gradient, not in proportion to the inputs), ReLU and ReLU6 pass
    ///   it only where they are active (the gradient, not unchanged), and the relevance
    ///   starts from ReLU(logit) (with `--init-relevance score`: a negative target logit
    ///   gives an all-zero map);
    /// * the other LRP methods ([`Innvestigate::Lrp`]): sums and average pools split
    ///   relevance in proportion to their inputs as by default, with the `1e-7·[z = 0]`
    ///   stabiliser.
    ///
    /// It does not change where relevance starts: iNNvestigate starts from the target's
    /// logit, leukex's `--init-relevance score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub innvestigate: Option<Innvestigate>,
}

/// Which iNNvestigate 2.1.2 analyzer family [`Composite::innvestigate`] reproduces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "analyzer", rename_all = "kebab-case")]
pub enum Innvestigate {
    /// `DeepTaylor` / `BoundedDeepTaylor` (`analyzer/deeptaylor.py`): everything without a
    /// kernel is its gradient (residual sums copy, average pools spread evenly, ReLUs mask,
    /// BatchNorm scales by `γ/√(σ² + eps)`, see [`BatchNormRule::Gradient`]), the output
    /// goes through a ReLU before the relevance starts.
    DeepTaylor,
    /// The `LRP` analyzers (`analyzer/relevance_based/relevance_analyzer.py`): residual sums
    /// and average pools are split in proportion to their inputs, BatchNorm gets
    /// `batch_norm`.
    Lrp { batch_norm: BatchNormRule },
}

impl Innvestigate {
    /// The BatchNorm rule of this analyzer family.
    pub fn batch_norm(&self) -> BatchNormRule {
        match self {
            Innvestigate::DeepTaylor => BatchNormRule::Gradient,
            Innvestigate::Lrp { batch_norm } => batch_norm.clone(),
        }
    }
}

/// iNNvestigate's rule for a BatchNorm layer. Except for `Dedicated`, the rule runs on the
/// BatchNorm linearised as `y' = k·x + c` per channel (`apply_mapping_to_fused_bn_layer`,
/// "one_linear"), with `k = γ/√(σ⁴ + eps)` and `c = β − μ/√(σ⁴ + eps)`, as iNNvestigate
/// 2.1.2 writes it (the variance squared and `γ` missing from `c`, so `y'` is not the
/// layer's output); `x` is the BatchNorm's input and `R` the relevance at its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum BatchNormRule {
    /// `BatchNormalizationReverseLayer` (the `LRP` base class with `bn_layer_rule=None`):
    /// `R_in = x·(y − β)·R / ((x − μ)·y ± 1e-7)`, `y` the layer's true output.
    Dedicated,
    /// ε on `y'` (`LRPEpsilon`, `LRPZ` with ε = 0): `R_in = x·k·R / (y' ± ε)`.
    Epsilon { epsilon: f64 },
    /// αβ on `y'` (`LRPAlphaBeta` and its presets; `bias: false` for the `IgnoreBias`
    /// ones, e.g. `LRPZPlus`).
    AlphaBeta { alpha: f64, beta: f64, bias: bool },
    /// `AlphaBetaX2m100Rule` on `y'` (the sequential presets): `2·x⁺k⁺R/(x⁺k⁺ + c⁺) −
    /// x⁺k⁻R/(x⁺k⁻ + c⁻)`.
    AlphaBetaX2m100,
    /// The layer's gradient, `R_in = γ/√(σ² + eps)·R` (Deep Taylor). iNNvestigate 2.1.2's
    /// `DeepTaylor` declares w² on the fused BatchNorm, but its dispatch never reaches it:
    /// the condition "no kernel, no activation but ReLU" (its gradient mapping) is added
    /// first and matches a BatchNormalization layer too. The analysis then fails in
    /// TensorFlow's graph mode, so iNNvestigate itself gives no Deep Taylor map on networks
    /// with BatchNorm; this is the rule its dispatch selects (not checked against a map).
    Gradient,
}

/// Zennit's default ε for dense layers in its composites.
pub const DEFAULT_EPSILON: f64 = 1e-6;
/// Zennit's default γ.
pub const DEFAULT_GAMMA: f64 = 0.25;
/// iNNvestigate's ε for the dense layers of its sequential presets.
pub const PRESET_EPSILON: f64 = 0.1;
/// iNNvestigate's default ε of `lrp.epsilon` (`LRPEpsilon`).
pub const INNVESTIGATE_EPSILON: f64 = 1e-7;

impl Composite {
    /// The same rule on every linear layer.
    pub fn uniform(rule: Rule) -> Self {
        Self {
            conv: rule.clone(),
            dense: rule,
            first: None,
            by_name: Vec::new(),
            innvestigate: None,
        }
    }

    /// Zennit's `EpsilonPlusFlat`: convs z⁺, dense ε, first layer flat.
    pub fn epsilon_plus_flat(epsilon: f64) -> Self {
        Self {
            first: Some(Rule::Flat),
            ..Self::epsilon_plus(epsilon)
        }
    }

    /// Zennit's `EpsilonPlus`: convs z⁺, dense ε.
    pub fn epsilon_plus(epsilon: f64) -> Self {
        Self {
            conv: Rule::ZPlus,
            dense: Rule::Epsilon { epsilon },
            first: None,
            by_name: Vec::new(),
            innvestigate: None,
        }
    }

    /// Zennit's `EpsilonGammaBox`: convs γ, dense ε, first layer zᴮ with the input bounds.
    pub fn epsilon_gamma_box(epsilon: f64, gamma: f64, low: Vec<f64>, high: Vec<f64>) -> Self {
        Self {
            conv: Rule::Gamma { gamma },
            dense: Rule::Epsilon { epsilon },
            first: Some(Rule::ZBox { low, high }),
            by_name: Vec::new(),
            innvestigate: None,
        }
    }

    /// Zennit's `EpsilonAlpha2Beta1`: convs α2β1, dense ε.
    pub fn epsilon_alpha2_beta1(epsilon: f64) -> Self {
        Self {
            conv: Rule::AlphaBeta {
                alpha: 2.0,
                beta: 1.0,
            },
            dense: Rule::Epsilon { epsilon },
            first: None,
            by_name: Vec::new(),
            innvestigate: None,
        }
    }

    /// iNNvestigate's `DeepTaylor`: z⁺ without bias (`Alpha1Beta0IgnoreBias`) on every
    /// convolution and dense layer.
    ///
    /// The output layer too: iNNvestigate 2.1.2 means to give kernel layers without an
    /// activation w² (`deep_taylor_kernel_wo_relu`), but it tests for that with
    /// `contains_activation(layer)`, which is true for every Keras `Dense` and `Conv2D` (they
    /// all have an `activation` attribute, `linear` included), so its w² mapping never
    /// fires on them; its own maps (`tests/innvestigate.rs`) are z⁺ on the linear output
    /// layer.
    pub fn deep_taylor() -> Self {
        Self::uniform(Rule::ZPlusNoBias)
    }

    /// iNNvestigate's `BoundedDeepTaylor`: zᴮ with the input bounds on the first layer, z⁺
    /// without bias everywhere else.
    pub fn deep_taylor_bounded(low: Vec<f64>, high: Vec<f64>) -> Self {
        Self {
            first: Some(Rule::ZBox { low, high }),
            ..Self::deep_taylor()
        }
    }

    /// iNNvestigate's `LRPSequentialPresetA` (convs α1β0, dense ε = 0.1) or `B` (convs
    /// α2β1); `flat` puts the flat rule on the first layer (`...Flat` variants).
    pub fn sequential_preset(alpha: f64, flat: bool) -> Self {
        Self {
            conv: Rule::AlphaBeta {
                alpha,
                beta: alpha - 1.0,
            },
            dense: Rule::Epsilon {
                epsilon: PRESET_EPSILON,
            },
            first: flat.then_some(Rule::Flat),
            by_name: Vec::new(),
            innvestigate: None,
        }
    }

    /// This composite with iNNvestigate compatibility `mode` (see
    /// [`innvestigate`](Self::innvestigate)).
    pub fn with_innvestigate(self, mode: Innvestigate) -> Self {
        Self {
            innvestigate: Some(mode),
            ..self
        }
    }

    /// The rule for linear layer `name` of `kind`; `first` marks the first linear layer
    /// of the forward pass.
    pub fn rule_for(&self, name: &str, kind: LayerKind, first: bool) -> &Rule {
        if let Some((_, r)) = self.by_name.iter().find(|(n, _)| n == name) {
            return r;
        }
        if first && let Some(r) = &self.first {
            return r;
        }
        match kind {
            LayerKind::Conv => &self.conv,
            LayerKind::Dense => &self.dense,
        }
    }

    /// Parses a custom composite: comma-separated `target=rule` pairs, where target is
    /// `conv`, `dense`, `first` or `name:<layer>` and rule is `epsilon[:E]`, `zero`,
    /// `gamma[:G]`, `zplus`, `zplus-no-bias`, `alpha2-beta1`, `alpha1-beta0`,
    /// `alpha<A>-beta<B>`, `flat`, `w-square` or `z-box` (bounds from `bounds`). Unnamed
    /// targets default to ε on dense layers and z⁺ on convs. Example:
    /// `first=flat,conv=alpha2-beta1,dense=epsilon:0.1`.
    pub fn parse(spec: &str, bounds: Option<(&[f64], &[f64])>) -> Result<Self, String> {
        let mut c = Self::epsilon_plus(DEFAULT_EPSILON);
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (target, rule) = part
                .split_once('=')
                .ok_or_else(|| format!("composite entry {part:?} is not target=rule"))?;
            let rule = parse_rule(rule.trim(), bounds)?;
            match target.trim() {
                "conv" => c.conv = rule,
                "dense" => c.dense = rule,
                "first" => c.first = Some(rule),
                t => match t.strip_prefix("name:") {
                    Some(n) if !n.is_empty() => c.by_name.push((n.to_string(), rule)),
                    _ => {
                        return Err(format!(
                            "unknown composite target {t:?} (expected conv, dense, first or name:<layer>)"
                        ));
                    }
                },
            }
        }
        Ok(c)
    }
}

/// Parses one rule name (see [`Composite::parse`]).
pub fn parse_rule(s: &str, bounds: Option<(&[f64], &[f64])>) -> Result<Rule, String> {
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let num = |default: f64| -> Result<f64, String> {
        arg.map_or(Ok(default), |a| {
            a.parse::<f64>()
                .map_err(|_| format!("rule {s:?}: {a:?} is not a number"))
        })
    };
    let rule = match name {
        "epsilon" => Rule::Epsilon {
            epsilon: num(DEFAULT_EPSILON)?,
        },
        "zero" => Rule::Epsilon { epsilon: 0.0 },
        "gamma" => Rule::Gamma {
            gamma: num(DEFAULT_GAMMA)?,
        },
        "zplus" => Rule::ZPlus,
        "zplus-no-bias" => Rule::ZPlusNoBias,
        "flat" => Rule::Flat,
        "w-square" => Rule::WSquare,
        "z-box" => {
            let (low, high) = bounds.ok_or("z-box needs the input bounds of the model")?;
            Rule::ZBox {
                low: low.to_vec(),
                high: high.to_vec(),
            }
        }
        ab if ab.starts_with("alpha") => {
            let (a, b) = ab["alpha".len()..]
                .split_once("-beta")
                .ok_or_else(|| format!("rule {s:?}: expected alpha<A>-beta<B>"))?;
            let alpha: f64 = a.parse().map_err(|_| format!("rule {s:?}: bad alpha"))?;
            let beta: f64 = b.parse().map_err(|_| format!("rule {s:?}: bad beta"))?;
            Rule::AlphaBeta { alpha, beta }
        }
        _ => return Err(format!("unknown LRP rule {s:?}")),
    };
    rule.validate().map_err(|e| format!("rule {s:?}: {e}"))?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_composite_parses() {
        let c = Composite::parse(
            "first=flat, conv=alpha2-beta1, dense=epsilon:0.1, name:fc=zero",
            None,
        )
        .unwrap();
        assert_eq!(c.first, Some(Rule::Flat));
        assert_eq!(
            c.conv,
            Rule::AlphaBeta {
                alpha: 2.0,
                beta: 1.0
            }
        );
        assert_eq!(c.dense, Rule::Epsilon { epsilon: 0.1 });
        assert_eq!(
            c.rule_for("fc", LayerKind::Dense, false),
            &Rule::Epsilon { epsilon: 0.0 }
        );
        assert_eq!(c.rule_for("conv1", LayerKind::Conv, true), &Rule::Flat);
        let c = Composite::parse("conv=zplus-no-bias,dense=zplus-no-bias", None).unwrap();
        assert_eq!(c, Composite::deep_taylor());
        let bounds = ([-1.0; 3], [1.0; 3]);
        let c = Composite::parse(
            "first=z-box,conv=zplus-no-bias,dense=zplus-no-bias",
            Some((&bounds.0, &bounds.1)),
        )
        .unwrap();
        assert_eq!(
            c,
            Composite::deep_taylor_bounded(bounds.0.to_vec(), bounds.1.to_vec())
        );
        assert!(Composite::parse("conv=alpha2-beta2", None).is_err());
        assert!(Composite::parse("conv=z-box", None).is_err());
        assert!(Composite::parse("layer=flat", None).is_err());
    }
}
