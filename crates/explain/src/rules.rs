//! LRP rules as small values.
//!
//! A rule for a linear layer (convolution or dense, BatchNorm folded in) is a list of
//! *groups*; each group is a list of *terms* `(input modifier, parameter modifier)`.
//! With `z_k = f(x_k; W_k, b_k)` the layer run on the modified input and parameters of
//! term `k`, a group `g` sends relevance
//!
//! ```text
//! R_in = c_g · Σ_{k∈g} s_k · x_k ⊙ J_kᵀ( m_g ⊙ R_out / stabilize(Σ_{k∈g} s_k z_k) )
//! ```
//!
//! back, where `J_kᵀ` is the transposed layer with the modified weights, `s_k` a term
//! sign, `c_g` the group coefficient and `m_g` an optional mask on the sign of the
//! unmodified output. `stabilize(z) = z + ε·(sign(z) + [z = 0])`, as Zennit does. This is
//! Zennit's `BasicHook` (input modifiers, parameter modifiers, gradient mapper, reducer)
//! written as data, and it covers every rule below with one implementation
//! ([`crate::lrp`]).

use serde::{Deserialize, Serialize};

/// Zennit's default stabiliser for the rules that are not ε.
pub const STABILIZER: f64 = 1e-6;

/// iNNvestigate's `safe_divide` factor (Keras' `epsilon()`): it divides by `z + 1e-7·[z = 0]`
/// in every rule but ε.
pub const INNVESTIGATE_SAFE_DIVIDE: f64 = 1e-7;

/// One LRP rule for a linear layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Rule {
    /// LRP-ε (ε = 0: LRP-0). Zennit `Epsilon`.
    Epsilon { epsilon: f64 },
    /// Generalised γ rule (positive and negative outputs handled apart). Zennit `Gamma`.
    Gamma { gamma: f64 },
    /// z⁺ allowing negative inputs (= α1β0 with the bias only on the positive part).
    /// Zennit `ZPlus`.
    ZPlus,
    /// z⁺ without the bias: `x⁺⊙W⁺ᵀr + x⁻⊙W⁻ᵀr`, `r = R / s(W⁺x⁺ + W⁻x⁻)` (Deep Taylor's
    /// rule). iNNvestigate `Alpha1Beta0IgnoreBias`; Zennit `AlphaBeta(1, 0,
    /// zero_params='bias')`.
    ZPlusNoBias,
    /// αβ with α − β = 1. Zennit `AlphaBeta`.
    AlphaBeta { alpha: f64, beta: f64 },
    /// zᴮ for inputs bounded by `low`/`high` per input channel. Zennit `ZBox`.
    ZBox { low: Vec<f64>, high: Vec<f64> },
    /// All weights 1, no bias, input ignored. Zennit `Flat`.
    Flat,
    /// Squared weights (and squared bias), input ignored. Zennit `WSquare`.
    WSquare,
}

/// What a term feeds the layer instead of its input.
#[derive(Debug, Clone, PartialEq)]
pub enum InputMod {
    Identity,
    /// `max(x, 0)`
    Positive,
    /// `min(x, 0)`
    Negative,
    Ones,
    /// A constant per input channel (zᴮ's bounds).
    PerChannel(Vec<f64>),
}

/// What a term does to the weights (and the bias, when the term keeps it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamMod {
    Identity,
    /// `max(w, 0)`
    Positive,
    /// `min(w, 0)`
    Negative,
    /// `w + γ·max(w, 0)`
    GammaPositive(f64),
    /// `w + γ·min(w, 0)`
    GammaNegative(f64),
    Square,
    Ones,
}

impl ParamMod {
    /// Applies the modifier to one value (used on folded weights and biases).
    pub fn apply(self, w: f64) -> f64 {
        match self {
            ParamMod::Identity => w,
            ParamMod::Positive => w.max(0.0),
            ParamMod::Negative => w.min(0.0),
            ParamMod::GammaPositive(g) => w + g * w.max(0.0),
            ParamMod::GammaNegative(g) => w + g * w.min(0.0),
            ParamMod::Square => w * w,
            ParamMod::Ones => 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub input: InputMod,
    pub params: ParamMod,
    /// Whether the (modified) bias takes part in this term's output.
    pub bias: bool,
    /// `s_k`: +1, or −1 for zᴮ's bound terms.
    pub sign: f64,
}

/// Which outputs a group sends relevance from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputMask {
    All,
    /// Only where the unmodified output is > 0.
    Positive,
    /// Only where the unmodified output is < 0.
    Negative,
}

/// How a group's denominator is kept away from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stabilizer {
    /// `z + ε·(sign(z) + [z = 0])` (Zennit's `stabilize`; iNNvestigate's ε rule).
    Signed,
    /// `z + ε·[z = 0]`: only exact zeros are moved (iNNvestigate's `safe_divide`).
    ZeroOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub terms: Vec<Term>,
    pub coefficient: f64,
    pub mask: OutputMask,
    pub epsilon: f64,
    pub stabilizer: Stabilizer,
}

fn term(input: InputMod, params: ParamMod, bias: bool) -> Term {
    Term {
        input,
        params,
        bias,
        sign: 1.0,
    }
}

fn group(terms: Vec<Term>, coefficient: f64) -> Group {
    Group {
        terms,
        coefficient,
        mask: OutputMask::All,
        epsilon: STABILIZER,
        stabilizer: Stabilizer::Signed,
    }
}

impl Rule {
    /// The rule's groups and terms (see the module docs).
    pub fn groups(&self) -> Vec<Group> {
        use InputMod as I;
        use ParamMod as P;
        match self {
            Rule::Epsilon { epsilon } => vec![Group {
                epsilon: *epsilon,
                ..group(vec![term(I::Identity, P::Identity, true)], 1.0)
            }],
            Rule::ZPlus => vec![group(
                vec![
                    term(I::Positive, P::Positive, true),
                    term(I::Negative, P::Negative, false),
                ],
                1.0,
            )],
            Rule::ZPlusNoBias => vec![group(
                vec![
                    term(I::Positive, P::Positive, false),
                    term(I::Negative, P::Negative, false),
                ],
                1.0,
            )],
            Rule::AlphaBeta { alpha, beta } => vec![
                group(
                    vec![
                        term(I::Positive, P::Positive, true),
                        term(I::Negative, P::Negative, false),
                    ],
                    *alpha,
                ),
                group(
                    vec![
                        term(I::Positive, P::Negative, true),
                        term(I::Negative, P::Positive, false),
                    ],
                    -*beta,
                ),
            ],
            Rule::Gamma { gamma } => {
                let (up, down) = (P::GammaPositive(*gamma), P::GammaNegative(*gamma));
                vec![
                    Group {
                        mask: OutputMask::Positive,
                        ..group(
                            vec![term(I::Positive, up, true), term(I::Negative, down, false)],
                            1.0,
                        )
                    },
                    Group {
                        mask: OutputMask::Negative,
                        ..group(
                            vec![term(I::Positive, down, true), term(I::Negative, up, false)],
                            1.0,
                        )
                    },
                ]
            }
            Rule::ZBox { low, high } => vec![group(
                vec![
                    term(I::Identity, P::Identity, true),
                    Term {
                        sign: -1.0,
                        ..term(I::PerChannel(low.clone()), P::Positive, true)
                    },
                    Term {
                        sign: -1.0,
                        ..term(I::PerChannel(high.clone()), P::Negative, true)
                    },
                ],
                1.0,
            )],
            Rule::Flat => vec![group(vec![term(I::Ones, P::Ones, false)], 1.0)],
            Rule::WSquare => vec![group(vec![term(I::Ones, P::Square, true)], 1.0)],
        }
    }

    /// The groups of iNNvestigate 2.1.2's rule of the same name
    /// (`analyzer/relevance_based/relevance_rule.py`), where it differs from Zennit's
    /// ([`groups`](Self::groups)):
    ///
    /// * every rule but ε divides by `z + 1e-7·[z = 0]` (`safe_divide`), not by Zennit's
    ///   `z + 1e-6·sign(z)`;
    /// * αβ (`AlphaBetaRule(bias=True)`) gives the positive-weight layer copy the bias `b⁺`
    ///   and the negative-weight copy `b⁻`, and runs each copy on both input parts, so the
    ///   *whole* bias `b = b⁺ + b⁻` enters both the activator's `W⁺x⁺ + W⁻x⁻ + b` and the
    ///   inhibitor's `W⁻x⁺ + W⁺x⁻ + b` (Zennit: `b⁺` in one, `b⁻` in the other); with β = 0
    ///   the inhibitor is not computed at all;
    /// * z⁺ is iNNvestigate's `ZPlusRule` = `Alpha1Beta0IgnoreBias` (no bias; Zennit's `ZPlus`
    ///   keeps `b⁺`);
    /// * w² (`WSquareRule`) drops the bias (Zennit squares it and keeps it);
    /// * zᴮ (`BoundedRule`) runs its three layer copies without bias (Zennit keeps them; they
    ///   cancel up to rounding).
    ///
    /// ε, flat and z⁺ without bias are otherwise the same; γ has no iNNvestigate counterpart
    /// and keeps Zennit's groups (and stabiliser).
    pub fn innvestigate_groups(&self) -> Vec<Group> {
        let mut groups = self.groups();
        let bias = match self {
            Rule::Epsilon { .. } | Rule::Gamma { .. } => return groups,
            Rule::AlphaBeta { beta, .. } => {
                if *beta == 0.0 {
                    groups.truncate(1);
                }
                true
            }
            Rule::ZPlus | Rule::ZPlusNoBias | Rule::WSquare | Rule::Flat | Rule::ZBox { .. } => {
                false
            }
        };
        for g in &mut groups {
            g.epsilon = INNVESTIGATE_SAFE_DIVIDE;
            g.stabilizer = Stabilizer::ZeroOnly;
            for t in &mut g.terms {
                t.bias = bias;
            }
        }
        groups
    }

    /// Checks the parameters (α − β = 1, α, β ≥ 0, ε ≥ 0, γ ≥ 0, finite bounds).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Rule::Epsilon { epsilon } if !(*epsilon >= 0.0 && epsilon.is_finite()) => Err(format!(
                "epsilon must be a finite number >= 0, got {epsilon}"
            )),
            Rule::Gamma { gamma } if !(*gamma >= 0.0 && gamma.is_finite()) => {
                Err(format!("gamma must be a finite number >= 0, got {gamma}"))
            }
            Rule::AlphaBeta { alpha, beta } => {
                if *alpha < 0.0 || *beta < 0.0 || ((alpha - beta) - 1.0).abs() > 1e-12 {
                    Err(format!(
                        "alpha-beta needs alpha, beta >= 0 and alpha - beta = 1, got alpha {alpha}, beta {beta}"
                    ))
                } else {
                    Ok(())
                }
            }
            Rule::ZBox { low, high } => {
                if low.len() != high.len() || low.is_empty() {
                    Err("z-box needs one low and one high bound per input channel".into())
                } else if low
                    .iter()
                    .zip(high)
                    .any(|(l, h)| l.partial_cmp(h) != Some(std::cmp::Ordering::Less))
                {
                    Err(format!("z-box needs low < high, got {low:?} and {high:?}"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_beta_must_differ_by_one() {
        assert!(
            Rule::AlphaBeta {
                alpha: 2.0,
                beta: 1.0
            }
            .validate()
            .is_ok()
        );
        assert!(
            Rule::AlphaBeta {
                alpha: 2.0,
                beta: 0.5
            }
            .validate()
            .is_err()
        );
        assert!(Rule::Epsilon { epsilon: -1.0 }.validate().is_err());
    }

    #[test]
    fn gamma_modifier_adds_scaled_positive_part() {
        assert_eq!(ParamMod::GammaPositive(0.25).apply(2.0), 2.5);
        assert_eq!(ParamMod::GammaPositive(0.25).apply(-2.0), -2.0);
        assert_eq!(ParamMod::GammaNegative(0.25).apply(-2.0), -2.5);
    }

    #[test]
    fn innvestigate_alpha_beta_keeps_the_whole_bias_in_both_groups() {
        let g = Rule::AlphaBeta {
            alpha: 2.0,
            beta: 1.0,
        }
        .innvestigate_groups();
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|g| g.terms.iter().all(|t| t.bias)));
        assert!(g.iter().all(|g| g.stabilizer == Stabilizer::ZeroOnly));
        // β = 0: no inhibitor group (iNNvestigate skips it).
        let g = Rule::AlphaBeta {
            alpha: 1.0,
            beta: 0.0,
        }
        .innvestigate_groups();
        assert_eq!(g.len(), 1);
        for rule in [Rule::ZPlus, Rule::WSquare, Rule::Flat] {
            assert!(rule.innvestigate_groups()[0].terms.iter().all(|t| !t.bias));
        }
        // ε is iNNvestigate's as it is.
        let eps = Rule::Epsilon { epsilon: 0.1 };
        assert_eq!(eps.innvestigate_groups(), eps.groups());
    }

    #[test]
    fn zplus_without_bias_is_zplus_with_every_term_bias_free() {
        let with = Rule::ZPlus.groups();
        let without = Rule::ZPlusNoBias.groups();
        assert_eq!(with.len(), 1);
        assert_eq!(without.len(), 1);
        assert!(with[0].terms.iter().any(|t| t.bias));
        assert!(without[0].terms.iter().all(|t| !t.bias));
        let strip = |g: &Group| -> Vec<(InputMod, ParamMod)> {
            g.terms
                .iter()
                .map(|t| (t.input.clone(), t.params))
                .collect()
        };
        assert_eq!(strip(&with[0]), strip(&without[0]));
    }
}
