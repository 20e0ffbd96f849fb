//! Method names (the command-line contract) and their parameters.

use serde::Serialize;

use crate::cam::CamKind;
use crate::composite::{
    BatchNormRule, Composite, DEFAULT_EPSILON, DEFAULT_GAMMA, INNVESTIGATE_EPSILON, Innvestigate,
};
use crate::gradient::IgRule;
use crate::rules::Rule;
use crate::score_cam::DEFAULT_SCORE_CAM_BATCH;

/// Default number of Integrated Gradients steps (Captum's `n_steps`).
pub const DEFAULT_IG_STEPS: usize = 50;
/// Default SmoothGrad sample count.
pub const DEFAULT_SMOOTHGRAD_SAMPLES: usize = 25;
/// Default SmoothGrad σ in input units (≈ 15 % of the range of an ImageNet-normalised input).
pub const DEFAULT_SMOOTHGRAD_SIGMA: f64 = 0.15 * 4.5;

/// Every method name `leukex explain --method` accepts.
pub const METHOD_NAMES: [&str; 25] = [
    "gradient",
    "input-x-gradient",
    "integrated-gradients",
    "smoothgrad",
    "guided-backprop",
    "grad-cam",
    "grad-cam++",
    "hires-cam",
    "xgrad-cam",
    "layer-cam",
    "score-cam",
    "lrp-0",
    "lrp-epsilon",
    "lrp-zplus",
    "lrp-alpha2-beta1",
    "lrp-alpha1-beta0",
    "lrp-gamma",
    "lrp-epsilon-plus-flat",
    "lrp-epsilon-gamma-box",
    "lrp-epsilon-alpha2-beta1",
    "lrp-epsilon-plus",
    "lrp-preset-a",
    "lrp-preset-b",
    "deep-taylor",
    "deep-taylor-bounded",
];

/// Methods only run when named: `--method all` leaves them out because of their cost
/// (Score-CAM: one forward pass per channel of the target layer per image).
pub const OPT_IN_METHODS: [&str; 1] = ["score-cam"];

/// Optional parameters shared by the methods; `None` = the method's default.
#[derive(Debug, Clone, Default)]
pub struct MethodParams {
    pub epsilon: Option<f64>,
    pub gamma: Option<f64>,
    pub steps: Option<usize>,
    pub ig_rule: Option<IgRule>,
    pub samples: Option<usize>,
    pub sigma: Option<f64>,
    pub seed: Option<u64>,
    pub layer: Option<String>,
    /// Score-CAM: masked inputs per forward pass (default [`DEFAULT_SCORE_CAM_BATCH`]).
    pub score_cam_batch: Option<usize>,
    /// Input bounds per channel (for zᴮ), from the model's preprocessing.
    pub bounds: Option<(Vec<f64>, Vec<f64>)>,
    /// LRP and Deep Taylor as iNNvestigate 2.1.2 computes them (`--innvestigate-compat`,
    /// see [`Composite::innvestigate`]; `lrp-epsilon`'s default ε becomes iNNvestigate's
    /// 1e-7); the id gets `_innvestigate`.
    pub innvestigate: bool,
}

/// A fully specified attribution method.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum Method {
    Gradient,
    InputXGradient,
    IntegratedGradients {
        steps: usize,
        rule: IgRule,
    },
    SmoothGrad {
        samples: usize,
        sigma: f64,
        seed: u64,
    },
    /// Guided Backpropagation ([`crate::guided`]): the gradient with every ReLU-type
    /// activation passing only positive gradient at active units.
    GuidedBackprop,
    Cam {
        kind: CamKind,
        /// `None`: the architecture's default layer.
        layer: Option<String>,
    },
    /// Score-CAM ([`crate::score_cam`]): no gradients, one forward pass per channel.
    ScoreCam {
        /// `None`: the architecture's default layer.
        layer: Option<String>,
        /// Masked inputs per forward pass (speed and memory only, not the map: not in the id).
        batch: usize,
    },
    Lrp {
        name: String,
        composite: Composite,
    },
}

impl Method {
    /// Builds method `name` with `p`; the error says what is wrong.
    pub fn parse(name: &str, p: &MethodParams) -> Result<Self, String> {
        let eps = p.epsilon.unwrap_or(DEFAULT_EPSILON);
        let gamma = p.gamma.unwrap_or(DEFAULT_GAMMA);
        let lrp = |composite: Composite| Method::Lrp {
            name: name.to_string(),
            composite,
        };
        let eps = match (p.innvestigate, name) {
            (true, "lrp-epsilon") => p.epsilon.unwrap_or(INNVESTIGATE_EPSILON),
            _ => eps,
        };
        let m = match name {
            "gradient" => Method::Gradient,
            "input-x-gradient" => Method::InputXGradient,
            "integrated-gradients" => Method::IntegratedGradients {
                steps: p.steps.unwrap_or(DEFAULT_IG_STEPS),
                rule: p.ig_rule.unwrap_or(IgRule::GaussLegendre),
            },
            "smoothgrad" => Method::SmoothGrad {
                samples: p.samples.unwrap_or(DEFAULT_SMOOTHGRAD_SAMPLES),
                sigma: p.sigma.unwrap_or(DEFAULT_SMOOTHGRAD_SIGMA),
                seed: p.seed.unwrap_or(0),
            },
            "guided-backprop" => Method::GuidedBackprop,
            "score-cam" => Method::ScoreCam {
                layer: p.layer.clone(),
                batch: match p.score_cam_batch.unwrap_or(DEFAULT_SCORE_CAM_BATCH) {
                    0 => return Err("the score-cam batch must be at least 1".to_string()),
                    b => b,
                },
            },
            "lrp-0" => lrp(Composite::uniform(Rule::Epsilon { epsilon: 0.0 })),
            "lrp-epsilon" => lrp(Composite::uniform(Rule::Epsilon { epsilon: eps })),
            "lrp-zplus" => lrp(Composite::uniform(Rule::ZPlus)),
            "lrp-alpha2-beta1" => lrp(Composite::uniform(Rule::AlphaBeta {
                alpha: 2.0,
                beta: 1.0,
            })),
            "lrp-alpha1-beta0" => lrp(Composite::uniform(Rule::AlphaBeta {
                alpha: 1.0,
                beta: 0.0,
            })),
            "lrp-gamma" => lrp(Composite::uniform(Rule::Gamma { gamma })),
            "lrp-epsilon-plus-flat" => lrp(Composite::epsilon_plus_flat(eps)),
            "lrp-epsilon-plus" => lrp(Composite::epsilon_plus(eps)),
            "lrp-epsilon-alpha2-beta1" => lrp(Composite::epsilon_alpha2_beta1(eps)),
            "lrp-epsilon-gamma-box" => {
                let (low, high) = p.bounds.clone().ok_or(
                    "lrp-epsilon-gamma-box needs the input bounds of the model's preprocessing",
                )?;
                lrp(Composite::epsilon_gamma_box(eps, gamma, low, high))
            }
            "lrp-preset-a" => lrp(Composite::sequential_preset(1.0, false)),
            "lrp-preset-b" => lrp(Composite::sequential_preset(2.0, false)),
            "deep-taylor" => lrp(Composite::deep_taylor()),
            "deep-taylor-bounded" => {
                let (low, high) = p.bounds.clone().ok_or(
                    "deep-taylor-bounded needs the input bounds of the model's preprocessing",
                )?;
                lrp(Composite::deep_taylor_bounded(low, high))
            }
            other => match CamKind::ALL.into_iter().find(|k| k.as_str() == other) {
                Some(kind) => Method::Cam {
                    kind,
                    layer: p.layer.clone(),
                },
                None => {
                    return Err(format!(
                        "unknown method {other:?}; known: {}",
                        METHOD_NAMES.join(", ")
                    ));
                }
            },
        };
        Ok(if p.innvestigate {
            m.innvestigate_compat()
        } else {
            m
        })
    }

    /// This method as iNNvestigate 2.1.2 computes it ([`Composite::innvestigate`]): Deep
    /// Taylor as its `DeepTaylor` analyzers, every other LRP method as its `LRP` analyzers,
    /// with the BatchNorm rule of the analyzer of the same name (`lrp-epsilon`: ε,
    /// `lrp-0`: Z, the αβ rules: αβ with bias, `lrp-zplus`: αβ without, the presets:
    /// `AlphaBetaX2m100`) or, for composites iNNvestigate lacks, its base class's dedicated
    /// BatchNorm rule. Other methods are returned unchanged.
    pub fn innvestigate_compat(self) -> Self {
        let Method::Lrp { name, composite } = self else {
            return self;
        };
        let mode = if name.starts_with("deep-taylor") {
            Innvestigate::DeepTaylor
        } else {
            let batch_norm = match (name.as_str(), &composite.conv) {
                ("lrp-epsilon" | "lrp-0", Rule::Epsilon { epsilon }) => {
                    BatchNormRule::Epsilon { epsilon: *epsilon }
                }
                ("lrp-alpha2-beta1" | "lrp-alpha1-beta0", Rule::AlphaBeta { alpha, beta }) => {
                    BatchNormRule::AlphaBeta {
                        alpha: *alpha,
                        beta: *beta,
                        bias: true,
                    }
                }
                ("lrp-zplus", _) => BatchNormRule::AlphaBeta {
                    alpha: 1.0,
                    beta: 0.0,
                    bias: false,
                },
                (n, _) if n.starts_with("lrp-preset-") => BatchNormRule::AlphaBetaX2m100,
                _ => BatchNormRule::Dedicated,
            };
            Innvestigate::Lrp { batch_norm }
        };
        Method::Lrp {
            name,
            composite: composite.with_innvestigate(mode),
        }
    }

    /// Builds an LRP method from a custom composite specification (see
    /// [`Composite::parse`]); its id is `lrp-custom_<spec>`.
    pub fn custom_composite(spec: &str, bounds: Option<(&[f64], &[f64])>) -> Result<Self, String> {
        Ok(Method::Lrp {
            name: format!("lrp-custom_{}", sanitize(spec)),
            composite: Composite::parse(spec, bounds)?,
        })
    }

    /// The file stem of this method's maps: the name plus every non-default parameter,
    /// so that runs with different parameters never overwrite each other
    /// (`lrp-epsilon`, `lrp-epsilon_eps0.25`).
    pub fn id(&self, p: &MethodParams) -> String {
        let mut id = self.name().to_string();
        let mut push = |s: String| {
            id.push('_');
            id.push_str(&s);
        };
        let uses_eps = matches!(self, Method::Lrp { name, .. } if matches!(name.as_str(),
            "lrp-epsilon" | "lrp-epsilon-plus-flat" | "lrp-epsilon-plus" | "lrp-epsilon-alpha2-beta1" | "lrp-epsilon-gamma-box"));
        let innvestigate =
            matches!(self, Method::Lrp { composite, .. } if composite.innvestigate.is_some());
        // Compatible lrp-epsilon defaults to iNNvestigate's ε.
        let default_eps = if innvestigate && self.name() == "lrp-epsilon" {
            INNVESTIGATE_EPSILON
        } else {
            DEFAULT_EPSILON
        };
        let uses_gamma = matches!(self, Method::Lrp { name, .. } if matches!(name.as_str(), "lrp-gamma" | "lrp-epsilon-gamma-box"));
        if uses_eps && let Some(e) = p.epsilon.filter(|&e| e != default_eps) {
            push(format!("eps{e}"));
        }
        if uses_gamma && let Some(g) = p.gamma.filter(|&g| g != DEFAULT_GAMMA) {
            push(format!("gamma{g}"));
        }
        match self {
            Method::IntegratedGradients { steps, rule } => {
                if *steps != DEFAULT_IG_STEPS {
                    push(format!("steps{steps}"));
                }
                if *rule != IgRule::GaussLegendre {
                    push(rule.as_str().to_string());
                }
            }
            Method::SmoothGrad {
                samples,
                sigma,
                seed,
            } => {
                if *samples != DEFAULT_SMOOTHGRAD_SAMPLES {
                    push(format!("n{samples}"));
                }
                if *sigma != DEFAULT_SMOOTHGRAD_SIGMA {
                    push(format!("sigma{sigma}"));
                }
                if *seed != 0 {
                    push(format!("seed{seed}"));
                }
            }
            Method::Cam {
                layer: Some(layer), ..
            }
            | Method::ScoreCam {
                layer: Some(layer), ..
            } => push(format!("layer-{}", sanitize(layer))),
            _ => {}
        }
        if innvestigate {
            push("innvestigate".to_string());
        }
        id
    }

    /// The method's name as given on the command line.
    pub fn name(&self) -> &str {
        match self {
            Method::Gradient => "gradient",
            Method::InputXGradient => "input-x-gradient",
            Method::IntegratedGradients { .. } => "integrated-gradients",
            Method::SmoothGrad { .. } => "smoothgrad",
            Method::GuidedBackprop => "guided-backprop",
            Method::Cam { kind, .. } => kind.as_str(),
            Method::ScoreCam { .. } => "score-cam",
            Method::Lrp { name, .. } => name,
        }
    }

    /// Whether this is a CAM: a non-negative `[N, 1, h, w]` map at the target layer's
    /// resolution, scaled and resized by [`crate::cam::scale_and_resize`].
    pub fn is_cam(&self) -> bool {
        matches!(self, Method::Cam { .. } | Method::ScoreCam { .. })
    }

    /// Whether maps are signed (diverging colour map) or non-negative (CAMs).
    pub fn is_signed(&self) -> bool {
        !self.is_cam()
    }
}

/// Keeps `[A-Za-z0-9.-]`, maps everything else to `-` (file-name safe ids).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_non_default_parameters() {
        let p = MethodParams::default();
        for name in METHOD_NAMES {
            let p = MethodParams {
                bounds: Some((vec![-1.0; 3], vec![1.0; 3])),
                ..p.clone()
            };
            let m = Method::parse(name, &p).unwrap();
            assert_eq!(m.id(&p), name, "default id");
            assert_eq!(m.name(), name);
        }
        let p = MethodParams {
            epsilon: Some(0.25),
            ..Default::default()
        };
        let m = Method::parse("lrp-epsilon", &p).unwrap();
        assert_eq!(m.id(&p), "lrp-epsilon_eps0.25");
        assert_eq!(Method::parse("lrp-zplus", &p).unwrap().id(&p), "lrp-zplus");
        assert!(Method::parse("lrp-epsilon-gamma-box", &MethodParams::default()).is_err());
        assert!(Method::parse("deep-taylor-bounded", &MethodParams::default()).is_err());
        // Deep Taylor has no ε or γ: neither is part of its id.
        let p = MethodParams {
            epsilon: Some(0.25),
            gamma: Some(0.5),
            bounds: Some((vec![-1.0; 3], vec![1.0; 3])),
            ..Default::default()
        };
        for name in ["deep-taylor", "deep-taylor-bounded"] {
            let m = Method::parse(name, &p).unwrap();
            assert_eq!(m.id(&p), name);
            assert!(m.is_signed() && !m.is_cam());
        }
        let Method::Lrp { composite, .. } = Method::parse("deep-taylor-bounded", &p).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            composite.first,
            Some(Rule::ZBox {
                low: vec![-1.0; 3],
                high: vec![1.0; 3]
            })
        );
        assert_eq!(composite.conv, Rule::ZPlusNoBias);
        assert_eq!(composite.dense, Rule::ZPlusNoBias);
        let p = MethodParams {
            epsilon: Some(0.25),
            ..Default::default()
        };
        assert!(Method::parse("deep-dream", &p).is_err());
        // Score-CAM: the layer is part of the id, the batch size is not.
        let p = MethodParams {
            layer: Some("layer4.1".into()),
            score_cam_batch: Some(7),
            ..Default::default()
        };
        let m = Method::parse("score-cam", &p).unwrap();
        assert_eq!(
            m,
            Method::ScoreCam {
                layer: Some("layer4.1".into()),
                batch: 7
            }
        );
        assert_eq!(m.id(&p), "score-cam_layer-layer4.1");
        assert!(m.is_cam() && !m.is_signed());
        let p = MethodParams {
            score_cam_batch: Some(0),
            ..Default::default()
        };
        assert!(Method::parse("score-cam", &p).is_err());
        assert!(OPT_IN_METHODS.iter().all(|n| METHOD_NAMES.contains(n)));
    }

    #[test]
    fn innvestigate_compat_reaches_the_composite_and_the_id() {
        use crate::composite::{BatchNormRule, Innvestigate};
        let p = MethodParams {
            innvestigate: true,
            bounds: Some((vec![-1.0; 3], vec![1.0; 3])),
            ..Default::default()
        };
        let lrp = |name: &str, p: &MethodParams| match Method::parse(name, p).unwrap() {
            Method::Lrp { composite, .. } => composite,
            _ => unreachable!(),
        };
        assert_eq!(
            lrp("deep-taylor-bounded", &p).innvestigate,
            Some(Innvestigate::DeepTaylor)
        );
        assert_eq!(
            lrp("lrp-preset-b", &p).innvestigate,
            Some(Innvestigate::Lrp {
                batch_norm: BatchNormRule::AlphaBetaX2m100
            })
        );
        // lrp-epsilon: iNNvestigate's default ε, part of the id only when changed.
        let c = lrp("lrp-epsilon", &p);
        assert_eq!(c.conv, Rule::Epsilon { epsilon: 1e-7 });
        assert_eq!(
            c.innvestigate,
            Some(Innvestigate::Lrp {
                batch_norm: BatchNormRule::Epsilon { epsilon: 1e-7 }
            })
        );
        let m = Method::parse("lrp-epsilon", &p).unwrap();
        assert_eq!(m.id(&p), "lrp-epsilon_innvestigate");
        let p6 = MethodParams {
            epsilon: Some(1e-6),
            ..p.clone()
        };
        assert_eq!(
            Method::parse("lrp-epsilon", &p6).unwrap().id(&p6),
            "lrp-epsilon_eps0.000001_innvestigate"
        );
        assert_eq!(
            Method::parse("deep-taylor", &p).unwrap().id(&p),
            "deep-taylor_innvestigate"
        );
        // Off by default, and nothing but LRP is touched.
        assert_eq!(
            lrp("deep-taylor", &MethodParams::default()).innvestigate,
            None
        );
        assert_eq!(Method::parse("gradient", &p).unwrap().id(&p), "gradient");
        // Serialised only when on.
        let off = serde_json::to_value(lrp("lrp-preset-a", &MethodParams::default())).unwrap();
        assert!(off.get("innvestigate").is_none());
        let on = serde_json::to_value(lrp("lrp-preset-a", &p)).unwrap();
        assert_eq!(on["innvestigate"]["analyzer"], "lrp");
    }
}
