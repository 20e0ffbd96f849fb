//! Layer-wise relevance propagation as one forward pass whose backward pass is the
//! relevance propagation.
//!
//! The model's own forward ([`Network::forward_ops`]) runs with [`LrpOps`], which keeps
//! every forward value exact but gives each operation the backward pass of its rule:
//!
//! ```text
//! y = z + (g(x) − sg(g(x)))      z = the layer's true output (untracked)
//! ```
//!
//! where `sg` stops the gradient, so `y == z` bit for bit, and `g` is chosen so that the
//! gradient it passes back *is* the rule's relevance: for a term with modified input `x_k`
//! and modified weights `W_k`, `g_k = sg(c·m/stabilize(Σ s_k z_k)) ⊙ s_k z_k(t_k)` where
//! `z_k = f_k(t_k)` is the term's layer output on `t_k`, which equals `x_k` in value and has
//! derivative `diag(x_k)` in `x`; its vector–Jacobian product with the upper relevance `R`
//! is `s_k x_k ⊙ W_kᵀ(c·m ⊙ R / stabilize(Σ s_k z_k))` — Zennit's `BasicHook` (see
//! [`crate::rules`]), with each term's layer run once. Seeding the backward pass with the one-hot target gives the input
//! relevance as the input's "gradient". Branch points sum relevance, as the gradient does.
//!
//! Per operation (Zennit's composites' defaults): convolutions and dense layers get the
//! composite's rule, with BatchNorm folded into the convolution before it (Zennit's
//! `SequentialMergeBatchNorm`); ReLU and ReLU6 pass relevance through unchanged (`Pass`);
//! residual sums and average pools split relevance in proportion to their inputs
//! (`Norm`); max pools route it to the maximum and concatenations by channel slice (the
//! plain gradient).
//!
//! # iNNvestigate compatibility
//!
//! With [`Composite::innvestigate`] set (`--innvestigate-compat`), the same pass computes
//! what iNNvestigate 2.1.2's analyzers compute on the network rebuilt in Keras (activations
//! fused into the layers as `keras.applications` does, BatchNorm a layer of its own).
//! Differences from the default above, each one of iNNvestigate's choices:
//!
//! | operation | default (Zennit) | iNNvestigate-compatible |
//! |---|---|---|
//! | stabiliser of the non-ε rules | `z + 1e-6·sign(z)` | `z + 1e-7·[z = 0]` (`safe_divide`) |
//! | αβ bias | `b⁺` in the activator, `b⁻` in the inhibitor | the whole `b` in both |
//! | z⁺ (`lrp-zplus`), w², zᴮ | with bias (`b⁺`, `b²`, cancelling) | without bias |
//! | BatchNorm | folded into the convolution | own layer, own rule ([`crate::composite::BatchNormRule`]) |
//! | residual sum, Deep Taylor | split in proportion | *copied* into both summands |
//! | average pool, Deep Taylor | split in proportion | spread evenly (gradient) |
//! | ReLU / ReLU6, Deep Taylor | pass unchanged | gradient (zero where inactive) |
//! | start, Deep Taylor | the seed | the seed with the logit through a ReLU |
//!
//! (Rule details: [`Rule::innvestigate_groups`].) The LRP analyzers' residual sums and
//! average pools stay proportional (iNNvestigate's `AddReverseLayer`,
//! `AveragePoolingReverseLayer`), with its stabiliser. Copying at residual sums makes Deep
//! Taylor non-conservative on ResNets and EfficientNet: every skip join counts the
//! relevance of its output twice. `tests/innvestigate.rs` compares every row with
//! iNNvestigate's own maps: on VGG-19 (the rule rows) and on small sequential, residual and
//! BatchNorm networks (the others; Deep Taylor's BatchNorm row excepted: iNNvestigate 2.1.2
//! fails there, see [`BatchNormRule::Gradient`]).

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::Gradients;
use burn::tensor::activation;
// leukex's convolution (same values as burn's up to rounding, faster forward and
// backward passes), so that every pass of an explanation computes a layer alike.
use leukex_models::conv::conv2d_train as conv2d;
use leukex_models::{Network, Ops, adaptive_avg_pool, conv_options, fold_batch_norm};

use crate::batch_norm_compat::batch_norm_compat;
use crate::composite::{Composite, Innvestigate, LayerKind};
use crate::relevance_conv::{ConvTerm, proportional_sum, relevance_conv, with_backward_of};
use crate::rules::{
    Group, INNVESTIGATE_SAFE_DIVIDE, InputMod, OutputMask, ParamMod, Rule, Stabilizer, Term,
};
use crate::stabilizer::{Factor, output_factor};
use crate::target::InitRelevance;

/// Input relevance `[N, C, H, W]` of `composite` for `targets` (one class per image),
/// starting from a one-hot relevance at the logits (Zennit's `attr_output`). `model` must
/// be in inference mode (`.valid()`).
pub fn lrp(
    model: &(impl Network + ?Sized),
    x: Tensor<4>,
    targets: &[usize],
    composite: &Composite,
) -> Tensor<4> {
    let (relevance, _) = lrp_with_logits(model, x, targets, composite, InitRelevance::OneHot);
    relevance
}

/// [`lrp`] from a chosen starting relevance, also returning the logits of the same
/// forward pass.
pub fn lrp_with_logits(
    model: &(impl Network + ?Sized),
    x: Tensor<4>,
    targets: &[usize],
    composite: &Composite,
    init: InitRelevance,
) -> (Tensor<4>, Tensor<2>) {
    lrp_with_values(
        model,
        x,
        targets,
        composite,
        init,
        &mut LayerValues::default(),
    )
}

/// [`lrp_with_logits`] reusing (and adding to) the convolutions' term values of earlier
/// LRP passes over the same batch `x` ([`LayerValues`]): each composite after the first
/// computes only the convolution terms no earlier one had.
pub fn lrp_with_values(
    model: &(impl Network + ?Sized),
    x: Tensor<4>,
    targets: &[usize],
    composite: &Composite,
    init: InitRelevance,
    values: &mut LayerValues,
) -> (Tensor<4>, Tensor<2>) {
    let x = x.inner().autodiff().require_grad();
    let mut ops = LrpOps::with_values(composite, std::mem::take(values));
    let logits = model.forward_ops(x.clone(), &mut ops);
    *values = ops.into_values();
    let seed = start(composite, init, &logits, targets);
    let grads = (logits.clone() * seed).sum().backward();
    let relevance = x
        .grad(&grads)
        .unwrap_or_else(|| x.clone().inner().zeros_like());
    (relevance, logits.inner())
}

/// Relevance sums through the network, per image: the check that LRP conserves (or
/// where it loses) relevance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conservation {
    /// The relevance put in at the logits (1 with a one-hot start, the logit with a score
    /// start), per image.
    pub output: Vec<f64>,
    /// Per linear layer in forward order: its name and the relevance arriving at its
    /// output, per image.
    pub layers: Vec<(String, Vec<f64>)>,
    /// The relevance at the input, per image.
    pub input: Vec<f64>,
}

/// [`lrp_with_logits`] that also reports the relevance sum at every linear layer's output
/// and at the input ([`Conservation`]). One more backward pass than [`lrp`] is not
/// needed: the sums come from zero probes added in the same pass.
pub fn lrp_with_conservation(
    model: &(impl Network + ?Sized),
    x: Tensor<4>,
    targets: &[usize],
    composite: &Composite,
    init: InitRelevance,
) -> (Tensor<4>, Conservation) {
    let x = x.inner().autodiff().require_grad();
    let mut ops = LrpOps::probing(composite);
    let logits = model.forward_ops(x.clone(), &mut ops);
    let seed = start(composite, init, &logits, targets);
    let grads = (logits * seed.clone()).sum().backward();
    let relevance = x
        .grad(&grads)
        .unwrap_or_else(|| x.clone().inner().zeros_like());
    let output = per_image_sums(seed.inner());
    let layers = ops
        .probes
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, read)| (name, read(&grads)))
        .collect();
    let input = per_image_sums(relevance.clone());
    (
        relevance,
        Conservation {
            output,
            layers,
            input,
        },
    )
}

/// The relevance at the logits: `init`'s seed, for iNNvestigate-compatible Deep Taylor with
/// the logit through a ReLU (`DeepTaylor._prepare_model`).
fn start(
    composite: &Composite,
    init: InitRelevance,
    logits: &Tensor<2>,
    targets: &[usize],
) -> Tensor<2> {
    let seed = init.seed(logits, targets);
    match composite.innvestigate {
        Some(Innvestigate::DeepTaylor) => seed.clamp_min(0.0),
        _ => seed,
    }
}

/// Reads one probe's relevance sums per image from the gradients.
type Probe = Box<dyn Fn(&Gradients) -> Vec<f64>>;

/// Sum over everything but the batch axis, per image.
fn per_image_sums<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    let n = t.dims()[0];
    t.reshape([n as i32, -1])
        .sum_dim(1)
        .cast(burn::tensor::FloatDType::F64)
        .into_data()
        .try_into_vec::<f64>()
        .expect("f64 sums")
}

/// [`Ops`] that give each operation its LRP backward pass (see the module docs).
pub struct LrpOps<'a> {
    composite: &'a Composite,
    linear_layers_seen: usize,
    /// With [`LrpOps::probing`]: a zero tensor added to every linear layer's output, whose
    /// gradient is the relevance arriving there.
    probes: Option<Vec<(String, Probe)>>,
    /// The convolutions' term values, possibly from earlier passes over the same batch.
    values: LayerValues,
}

impl<'a> LrpOps<'a> {
    pub fn new(composite: &'a Composite) -> Self {
        Self {
            composite,
            linear_layers_seen: 0,
            probes: None,
            values: LayerValues::default(),
        }
    }

    /// Like [`new`](Self::new), reusing the term values of earlier passes over the same
    /// batch ([`LayerValues`]); [`into_values`](Self::into_values) hands them on.
    pub fn with_values(composite: &'a Composite, values: LayerValues) -> Self {
        Self {
            values,
            ..Self::new(composite)
        }
    }

    pub fn into_values(self) -> LayerValues {
        self.values
    }

    /// Like [`new`](Self::new), also collecting the relevance at every linear layer's
    /// output (for conservation checks).
    pub fn probing(composite: &'a Composite) -> Self {
        Self {
            probes: Some(Vec::new()),
            ..Self::new(composite)
        }
    }

    fn probe<const D: usize>(&mut self, name: &str, y: Tensor<D>) -> Tensor<D> {
        let Some(probes) = &mut self.probes else {
            return y;
        };
        let probe = y.zeros_like().detach().require_grad();
        let leaf = probe.clone();
        let read: Probe = Box::new(move |grads: &Gradients| {
            leaf.grad(grads)
                .map(per_image_sums)
                .unwrap_or_else(|| vec![0.0; leaf.dims()[0]])
        });
        probes.push((name.to_string(), read));
        y + probe
    }

    fn next_rule(&mut self, name: &str, kind: LayerKind) -> Rule {
        let first = self.linear_layers_seen == 0;
        self.linear_layers_seen += 1;
        self.composite.rule_for(name, kind, first).clone()
    }

    /// The rule's groups: Zennit's, or iNNvestigate's in compatibility mode.
    fn groups(&self, rule: &Rule) -> Vec<Group> {
        match self.composite.innvestigate {
            Some(_) => rule.innvestigate_groups(),
            None => rule.groups(),
        }
    }

    /// Which chain of forward values this pass computes: iNNvestigate-compatible passes
    /// keep BatchNorm a layer of its own, whose outputs round differently from the folded
    /// convolution's, so their values are shared only among themselves.
    fn chain(&self) -> Chain {
        match self.composite.innvestigate {
            Some(_) => Chain::BatchNormSeparate,
            None => Chain::BatchNormFolded,
        }
    }

    fn deep_taylor_compat(&self) -> bool {
        matches!(self.composite.innvestigate, Some(Innvestigate::DeepTaylor))
    }

    /// `1 / stabilize(z)` of the proportional (`Norm`) sums and average pools, a constant
    /// of the pass.
    fn norm_factor<const D: usize>(&self, z: Tensor<D>) -> Tensor<D> {
        let (stabilizer, epsilon) = match self.composite.innvestigate {
            Some(_) => (Stabilizer::ZeroOnly, INNVESTIGATE_SAFE_DIVIDE),
            None => (Stabilizer::Signed, crate::rules::STABILIZER),
        };
        let factor = Factor {
            stabilizer,
            epsilon,
            coefficient: 1.0,
            mask: OutputMask::All,
        };
        output_factor(z, None, factor)
    }
}

/// `z + (g − sg(g))`: the value of `z`, the gradient of `g` (one autodiff node, see
/// [`with_backward_of`]).
fn with_backward<const D: usize>(z: Tensor<D>, g: Tensor<D>) -> Tensor<D> {
    with_backward_of(z, g)
}

fn modify<const D: usize>(w: Tensor<D>, m: ParamMod) -> Tensor<D> {
    match m {
        ParamMod::Identity => w,
        ParamMod::Positive => w.clamp_min(0.0),
        ParamMod::Negative => w.clamp_max(0.0),
        ParamMod::GammaPositive(g) => w.clone() + w.clamp_min(0.0) * g,
        ParamMod::GammaNegative(g) => w.clone() + w.clamp_max(0.0) * g,
        ParamMod::Square => w.clone() * w,
        ParamMod::Ones => w.ones_like(),
    }
}

/// A constant per channel (axis 1) with `like`'s shape, dtype and device.
fn per_channel<const D: usize>(values: &[f64], like: &Tensor<D>) -> Tensor<D> {
    let dims = like.dims();
    let c = dims[1];
    assert_eq!(
        values.len(),
        c,
        "the rule has {} per-channel bounds but the layer input has {c} channels",
        values.len()
    );
    let mut shape = [1usize; D];
    shape[1] = c;
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let device = like.device();
    let t = Tensor::<D>::from_data(TensorData::new(data, shape), &device).cast(like.dtype());
    like.zeros_like() + t
}

fn modify_input<const D: usize>(x: &Tensor<D>, m: &InputMod) -> Tensor<D> {
    match m {
        InputMod::Identity => x.clone(),
        InputMod::Positive => x.clone().clamp_min(0.0),
        InputMod::Negative => x.clone().clamp_max(0.0),
        InputMod::Ones => x.ones_like(),
        InputMod::PerChannel(v) => per_channel(v, x),
    }
}

/// `x_k` in value, with `d/dx = diag(x_k)`: `x_k + (x_k ⊙ x − x_k ⊙ sg(x))`, the bracket
/// being exactly 0. Its layer output's backward is then the term's `x_k ⊙ W_kᵀ(·)`.
fn tracked_input<const D: usize>(xk: Tensor<D>, x: &Tensor<D>, xd: &Tensor<D>) -> Tensor<D> {
    let zero = xk.clone() * x.clone() - xk.clone() * xd.clone();
    xk + zero
}

/// The layer itself: unmodified input and parameters, with bias.
pub(crate) const PLAIN: Term = Term {
    input: InputMod::Identity,
    params: ParamMod::Identity,
    bias: true,
    sign: 1.0,
};

fn is_plain(t: &Term) -> bool {
    t.input == InputMod::Identity && t.params == ParamMod::Identity && t.bias && t.sign == 1.0
}

/// What a rule's backward pass needs on one linear layer: the layer's true output and
/// every term that carries relevance, `R_in = Σ_k a_k ⊙ W_kᵀ(s_k ⊙ R)`. All values are
/// constants (no autodiff).
struct RuleBackward<const D: usize> {
    /// The layer's output.
    z: Tensor<D>,
    terms: Vec<TermBackward<D>>,
}

struct TermBackward<const D: usize> {
    /// `a_k`, the modified input.
    input: Tensor<D>,
    /// `W_k`'s modifier.
    params: ParamMod,
    /// `s_k`: the group's `coefficient / stabilize(Σ sign·z)`, the term's sign and the
    /// group's output mask.
    out_factor: Tensor<D>,
}

/// The rule's terms on a linear layer with input `x` (a constant), `value(a_k, term)`
/// giving a term's layer output on its modified input.
fn rule_backward<const D: usize>(
    x: &Tensor<D>,
    groups: &[Group],
    value: &mut dyn FnMut(&Tensor<D>, &Term) -> Tensor<D>,
) -> RuleBackward<D> {
    // Inputs after a ReLU are non-negative: terms on the negative part are then exactly 0
    // (no bias on them), in their denominators and in their relevance, and are skipped.
    // This halves the work of z⁺, αβ and γ on every layer but the first.
    let has_negative_terms = groups
        .iter()
        .any(|g| g.terms.iter().any(|t| t.input == InputMod::Negative));
    let non_negative = has_negative_terms && x.clone().min().into_scalar::<f64>() >= 0.0;
    let skipped = |t: &Term| non_negative && t.input == InputMod::Negative && !t.bias;
    // A negative-part term that kept its bias (iNNvestigate's αβ) is only its bias on such
    // inputs: in the denominator, with no relevance.
    let carries_relevance = |t: &Term| !(non_negative && t.input == InputMod::Negative);
    let mut outputs: Vec<Vec<(Term, Tensor<D>, Tensor<D>)>> = groups
        .iter()
        .map(|g| {
            g.terms
                .iter()
                .filter(|t| !skipped(t))
                .map(|t| {
                    // On a non-negative input the positive part is the input itself: no
                    // copy to compute, and none for the backward pass to keep.
                    let a = match t.input {
                        InputMod::Positive if non_negative => x.clone(),
                        _ => modify_input(x, &t.input),
                    };
                    let z = value(&a, t);
                    (t.clone(), a, z)
                })
                .collect()
        })
        .collect();
    // The layer's true output: a plain term's value when there is one (ε, zᴮ).
    let plain = outputs
        .iter()
        .flatten()
        .find(|(t, _, _)| is_plain(t))
        .map(|(_, _, z)| z.clone());
    let z = plain.unwrap_or_else(|| value(x, &PLAIN));
    let mut terms = Vec::new();
    for (g, outs) in groups.iter().zip(outputs.iter_mut()) {
        if outs.is_empty() {
            continue;
        }
        let denominator = outs
            .iter()
            .map(|(t, _, o)| {
                if t.sign == 1.0 {
                    o.clone()
                } else {
                    o.clone() * t.sign
                }
            })
            .reduce(|a, b| a + b)
            .expect("a group has terms");
        let factor = Factor {
            stabilizer: g.stabilizer,
            epsilon: g.epsilon,
            coefficient: g.coefficient,
            mask: g.mask,
        };
        let masked_by = (g.mask != OutputMask::All).then(|| z.clone());
        let scale = output_factor(denominator, masked_by, factor);
        for (t, a, _) in outs.drain(..) {
            if !carries_relevance(&t) {
                continue;
            }
            let out_factor = if t.sign == 1.0 {
                scale.clone()
            } else {
                scale.clone() * t.sign
            };
            terms.push(TermBackward {
                input: a,
                params: t.params,
                out_factor,
            });
        }
    }
    RuleBackward { z, terms }
}

/// Forward values of the convolutions' rule terms, kept across the passes over one batch:
/// a term's value depends only on the layer, the term and the layer's input, and every
/// pass over the same batch sees the same layer inputs when it computes the same chain of
/// forward values ([`Chain`]; every pass's forward values are exact), so passes that share
/// a term (the plain output `z`: the gradient pass, ε, and every rule's output mask; z⁺ of
/// EpsilonPlus and Deep Taylor) compute it once. Valid for one input batch only.
///
/// It also keeps each convolution's weight and bias as the passes use them (BatchNorm
/// folded in on [`Chain::BatchNormFolded`], a rule's parameter modifier applied): a fold
/// or a modifier is one pass over all of the network's weights and a fresh buffer of
/// their size, so it is made once per batch, not once per pass and term.
#[derive(Default)]
pub struct LayerValues {
    values: std::collections::HashMap<String, Tensor<4>>,
    weights: std::collections::HashMap<String, ConvParams>,
    /// Terms are computed but not kept (a pass no other pass follows): each convolution
    /// output is freed after its use instead of staying alive to the batch's end.
    terms_unkept: bool,
}

/// A convolution's weight and bias.
pub(crate) type ConvParams = (Tensor<4>, Option<Tensor<1>>);

/// How a pass computes its forward values; passes share values only within one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Every BatchNorm folded into its convolution (LRP, and the shared gradient pass).
    BatchNormFolded,
    /// BatchNorm a layer of its own (iNNvestigate compatibility).
    BatchNormSeparate,
}

/// A convolution's place in a pass.
pub(crate) struct LayerKey<'a> {
    /// Its position among the linear layers of the forward pass (the same in every pass;
    /// names need not be unique).
    pub(crate) ordinal: usize,
    pub(crate) name: &'a str,
    pub(crate) chain: Chain,
}

impl LayerValues {
    /// Keeps weights only: for a single pass, whose convolution outputs no later pass
    /// takes.
    pub(crate) fn weights_only() -> Self {
        Self {
            terms_unkept: true,
            ..Self::default()
        }
    }

    /// The value of `term` on input `a` at `layer`: kept, or `compute`d and kept (only
    /// computed with [`weights_only`](Self::weights_only)).
    pub(crate) fn term(
        &mut self,
        layer: &LayerKey,
        term: &Term,
        a: &Tensor<4>,
        compute: impl FnOnce() -> Tensor<4>,
    ) -> Tensor<4> {
        if self.terms_unkept {
            return compute();
        }
        let key = format!(
            "{}|{}|{:?}|{:?}|{:?}|{}|{:?}",
            layer.ordinal,
            layer.name,
            layer.chain,
            term.input,
            term.params,
            term.bias,
            a.dims()
        );
        self.values.entry(key).or_insert_with(compute).clone()
    }

    /// The weight and bias of `layer` under `params`: kept, or `compute`d and kept.
    pub(crate) fn weights(
        &mut self,
        layer: &LayerKey,
        params: ParamMod,
        compute: impl FnOnce() -> ConvParams,
    ) -> ConvParams {
        let key = format!(
            "{}|{}|{:?}|{:?}",
            layer.ordinal, layer.name, layer.chain, params
        );
        self.weights.entry(key).or_insert_with(compute).clone()
    }

    /// How many term values are kept.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.weights.clear();
    }
}

impl Ops for LrpOps<'_> {
    fn conv(
        &mut self,
        name: &str,
        conv: &Conv2d,
        bn: Option<(&str, &BatchNorm)>,
        x: Tensor<4>,
    ) -> Tensor<4> {
        let rule = self.next_rule(name, LayerKind::Conv);
        // iNNvestigate keeps BatchNorm a layer of its own (see `batch_norm_compat`).
        let separate_bn = self.composite.innvestigate.as_ref().zip(bn);
        let [_, _, h, wd] = x.dims();
        let options = conv_options(conv, h, wd);
        let xd = x.clone().inner();
        let groups = self.groups(&rule);
        let key = LayerKey {
            ordinal: self.linear_layers_seen,
            name,
            chain: self.chain(),
        };
        let values = &mut self.values;
        let (w, b) = values.weights(&key, ParamMod::Identity, || {
            let (w, b) = match separate_bn {
                Some(_) => fold_batch_norm(conv, None),
                None => fold_batch_norm(conv, bn.map(|(_, b)| b)),
            };
            (w.inner(), b.map(|b| b.inner()))
        });
        let modified = |values: &mut LayerValues, params: ParamMod| {
            values.weights(&key, params, || {
                (
                    modify(w.clone(), params),
                    b.clone().map(|b| modify(b, params)),
                )
            })
        };
        let mut value = |a: &Tensor<4>, t: &Term| {
            let (wk, bk) = modified(values, t.params);
            values.term(&key, t, a, || {
                conv2d(a.clone(), wk, bk.filter(|_| t.bias), options.clone())
            })
        };
        let rule = rule_backward(&xd, &groups, &mut value);
        let terms = rule
            .terms
            .into_iter()
            .map(|t| ConvTerm {
                weight: modified(&mut self.values, t.params).0,
                in_factor: Some(t.input),
                out_factor: Some(t.out_factor),
            })
            .collect();
        let y = relevance_conv(x, rule.z, terms, &options);
        let y = match separate_bn {
            Some((mode, (_, bn))) => batch_norm_compat(y, bn, &mode.batch_norm()),
            None => y,
        };
        self.probe(name, y)
    }

    fn linear(&mut self, name: &str, linear: &Linear, x: Tensor<2>) -> Tensor<2> {
        let rule = self.next_rule(name, LayerKind::Dense);
        let w = linear.weight.val().inner();
        let b = linear.bias.as_ref().map(|b| b.val().inner());
        let dense = |input: Tensor<2>, m: ParamMod, bias: Option<&Tensor<1>>| {
            let y = input.matmul(modify(w.clone(), m));
            match bias {
                Some(b) => y + modify(b.clone(), m).unsqueeze_dim(0),
                None => y,
            }
        };
        let xd = x.clone().inner();
        let mut value =
            |a: &Tensor<2>, t: &Term| dense(a.clone(), t.params, b.as_ref().filter(|_| t.bias));
        let rule = rule_backward(&xd, &self.groups(&rule), &mut value);
        // Dense layers are small: each term's backward through autodiff, the layer run
        // again on its tracked input (`tracked_input`), without bias.
        let (xa, xda) = (x.clone(), xd.autodiff());
        let g = rule
            .terms
            .into_iter()
            .map(|t| {
                let wk = modify(w.clone(), t.params).autodiff();
                tracked_input(t.input.autodiff(), &xa, &xda).matmul(wk) * t.out_factor.autodiff()
            })
            .reduce(|a, b| a + b);
        let z = rule.z.autodiff();
        let y = match g {
            Some(g) => with_backward(z, g),
            None => z,
        };
        self.probe(name, y)
    }

    // iNNvestigate-compatible Deep Taylor: activations, average pools and sums are their
    // gradient (see the module docs).

    fn relu(&mut self, x: Tensor<4>) -> Tensor<4> {
        if self.deep_taylor_compat() {
            return leukex_models::relu::relu(x);
        }
        let z = leukex_models::relu::relu(x.clone().detach());
        with_backward(z, x)
    }

    fn relu2(&mut self, x: Tensor<2>) -> Tensor<2> {
        if self.deep_taylor_compat() {
            return leukex_models::relu::relu(x);
        }
        let z = leukex_models::relu::relu(x.clone().detach());
        with_backward(z, x)
    }

    fn relu6(&mut self, x: Tensor<4>) -> Tensor<4> {
        if self.deep_taylor_compat() {
            return activation::relu6(x);
        }
        let z = leukex_models::relu::relu6(x.clone().detach());
        with_backward(z, x)
    }

    fn avg_pool(&mut self, size: [usize; 2], x: Tensor<4>) -> Tensor<4> {
        let pool = |t: Tensor<4>| adaptive_avg_pool(t, size);
        if self.deep_taylor_compat() {
            return pool(x);
        }
        let xd = x.clone().detach();
        let z = pool(xd.clone());
        let scale = self.norm_factor(z.clone());
        let g = pool(xd * x) * scale;
        with_backward(z, g)
    }

    fn add(&mut self, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
        if self.deep_taylor_compat() {
            return a + b;
        }
        let z = a.clone().detach() + b.clone().detach();
        let scale = self.norm_factor(z.clone());
        proportional_sum(z, a, b, scale)
    }
}
