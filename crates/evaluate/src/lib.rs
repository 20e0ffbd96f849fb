//! Heat maps measured against cell morphology.
//!
//! Velázquez-Arreola et al. scored heat maps of ALL-IDB2 cells by the share
//! of their "relevant" pixels that falls on each morphology class
//! (background, nucleus, cytoplasm, vacuole, red blood cell). This crate
//! reproduces that measure exactly and puts corrected measures, chance
//! levels, localisation metrics and statistics beside it.
//!
//! * [`mode`]: which pixels are relevant — the paper's rule
//!   ([`Mode::Paper`]) and the corrected ones (`raw-mean`, `positive`,
//!   `top-k`, `otsu`, `mass`).
//! * [`shares`]: counts and shares per class, the class's share of the area
//!   (chance) and the lift; pooled shares as the paper computed them.
//! * [`localisation`]: pointing game, attribution localisation, top-k
//!   intersection, relevance rank/mass accuracy and ROC-AUC, equal to
//!   Quantus 0.6.
//! * [`faithfulness`]: pixel flipping, region perturbation and ROAD equal to
//!   Quantus 0.6, and RISE insertion, with the model as a batched scoring
//!   callback ([`Classifier`]).
//! * [`stats`]: bootstrap CIs, Wilcoxon, Friedman, Holm (equal to SciPy /
//!   statsmodels).
//! * [`run`]: [`evaluate_dir`] over a folder of `.npy` maps and mask PNGs,
//!   writing `per_image.csv`, `summary.csv`, `summary.json`, `tables.md`.
//! * [`fused`]: what [`evaluate_map`] runs — every mode and metric of one
//!   map from one stable radix ranking, linear in the pixels; the per-mode
//!   functions above stay the reference it is tested against.
//! * [`sanity`]: the similarity functions of the model parameter randomisation
//!   test (Spearman, Pearson, SSIM, equal to SciPy / skimage as Quantus 0.6
//!   calls them) and its per-layer, per-image scores ([`MprtResult`]).
//!
//! # The paper-mode artefact
//!
//! The paper kept the pixels whose *red channel of the rendered heat map
//! image* exceeds the mean red value (§3.3 step 5). Both colormaps its tools
//! used are non-monotonic in red: iNNvestigate renders zero relevance as
//! white (red = 1) in matplotlib's `seismic` and the strongest positive
//! relevance as dark red (red = 0.5); MATLAB's `jet` also falls back to red
//! = 0.5 at the top. So "red above the mean" selects zero-relevance pixels
//! and can drop the most relevant ones. For a map whose only relevance lies
//! on the nucleus, `raw-mean` puts every relevant pixel on the nucleus while
//! `paper` selects the zero-relevance background instead (test
//! `paper_mode_selects_zero_relevance_instead_of_the_nucleus`). Both are
//! reported; compare the paper's numbers with `paper`, and draw conclusions
//! from the corrected modes.
//!
//! # Undefined values
//!
//! A map whose size differs from its mask is an error naming both files (or
//! is resized bilinearly with `resize_maps`); a non-finite map is an error
//! naming the pixel; a constant map, an empty selection or an empty region
//! gives `None` ("undefined" in the files), never a silent 0.

/// The colour tables live in `leukex-render` (shared with `leukex-explain`).
pub use leukex_render::colormap;
pub mod error;
pub mod faithfulness;
pub mod fused;
pub mod heatmap;
pub mod localisation;
pub mod mode;
pub mod rank;
pub mod run;
pub mod sanity;
pub mod shares;
pub mod stats;

pub use colormap::Colormap;
pub use error::{BoxError, EvalError, Result};
pub use faithfulness::{Baseline, Classifier, Image, RegionOrder};
pub use heatmap::{HeatMap, Reduction};
pub use localisation::{Localisation, LocalisationOptions, Region};
pub use mode::{Mode, Rendering, Selection};
pub use run::{EvaluateOptions, EvaluateReport, MapEvaluation, evaluate_dir, evaluate_map};
pub use sanity::{MprtLayer, MprtResult, Similarity, SimilarityOptions};
pub use shares::ClassShares;
