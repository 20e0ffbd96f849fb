//! `leukex evaluate --model RUN --data DIR`: the arguments of the metrics that need the
//! model (the run itself is `leukex_study::model_metrics`) — faithfulness
//! (region perturbation, deletion, insertion, ROAD) of the maps already written, and the
//! model parameter randomisation test (MPRT) of methods recomputed on a cascade of
//! randomised models.
//!
//! Both run on a seeded subset of the images (`--subset`), because they cost many forward
//! passes: every perturbed copy of an image is a network input, sent in batches. The maps
//! of `leukex explain` lie on the original image's grid; for faithfulness they are resized
//! bilinearly to the network input, whose pixels are perturbed. The score followed is the
//! softmax probability of the explained class (Quantus's `softmax=True` default; the class
//! from explain.json, else the predicted one). Unless `--no-baselines`, a random map and the
//! oracle map (1 on `--region` of the image's mask, 0 elsewhere) are measured beside the
//! methods, as in the morphology tables.
//!
//! Outputs (beside the morphology tables): `faithfulness.csv` (one row per model × method ×
//! image × metric), `faithfulness_curves.json`, `sanity.csv` (one row per method × step ×
//! image) and `model_metrics.json` / `model_metrics.md` (means with bootstrap CIs).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use clap::Args;
use leukex_evaluate::Region;
use leukex_evaluate::faithfulness::Baseline;
use leukex_models::randomise::Granularity;
use leukex_study::{
    FaithfulnessMetric, ModelMetricsOptions, StudyError, StudyModel, run_model_metrics,
};

use crate::model_cmd::ModelArgs;

#[derive(Args, Debug, Clone)]
pub struct ModelMetricsArgs {
    /// A run folder of `leukex train`: enables the metrics that need the model (faithfulness, MPRT) on its maps, MAPS/<run name>/.
    #[arg(long, value_name = "RUN", requires = "data")]
    model: Option<PathBuf>,
    /// The data set the maps were made from (images found by stem), for --model.
    #[arg(long, value_name = "DIR", requires = "model")]
    data: Option<PathBuf>,
    /// Faithfulness metrics (comma-separated): region-perturbation (8x8 patches, most relevant first), deletion (pixel flipping), insertion, road; `none` to skip.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "region-perturbation,deletion,insertion"
    )]
    faithfulness: Vec<String>,
    /// Methods for the model parameter randomisation test (comma-separated leukex method names, recomputed on the randomised models); none by default.
    #[arg(long, value_delimiter = ',')]
    sanity: Vec<String>,
    /// MPRT units: group (ResNet stages, inception blocks, ...) or module (every conv/BN/linear, as Quantus).
    #[arg(long, default_value = "group")]
    sanity_granularity: String,
    /// Images evaluated with the model (seeded choice among the maps' images; 0 = all).
    #[arg(long, default_value_t = 8)]
    subset: usize,
    /// Deletion and insertion: number of steps (each step takes H*W/steps whole pixels).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Region perturbation: patch side in pixels.
    #[arg(long, default_value_t = 8)]
    patch: usize,
    /// Region perturbation: number of patches perturbed (Quantus regions_evaluation).
    #[arg(long, default_value_t = 100)]
    regions: usize,
    /// What perturbed pixels become: black (image minimum, Quantus), white, mean, zero, a number, uniform[:LOW:HIGH[:SEED]].
    #[arg(long, default_value = "black")]
    baseline: String,
    /// ROAD: percentages of pixels imputed (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,30,40,50,60,70,80,90"
    )]
    road_percentages: Vec<f64>,
    /// Perturbed images per forward pass.
    #[arg(long, default_value_t = 32)]
    model_batch: usize,
}

impl ModelMetricsArgs {
    pub fn enabled(&self) -> bool {
        self.model.is_some()
    }
}

/// Runs the model metrics on `maps/<run name>/` and writes them into `out`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    a: &ModelMetricsArgs,
    maps: &Path,
    methods_filter: Option<&[String]>,
    baselines: bool,
    region: Region,
    seed: u64,
    resamples: usize,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (Some(model_path), Some(data)) = (&a.model, &a.data) else {
        return Ok(Vec::new());
    };
    let faithfulness: Vec<FaithfulnessMetric> = a
        .faithfulness
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty() && *m != "none")
        .map(|m| {
            FaithfulnessMetric::parse(m).ok_or_else(|| {
                let known: Vec<&str> = FaithfulnessMetric::ALL.map(|m| m.name()).to_vec();
                anyhow!(
                    "--faithfulness: unknown metric {m:?} (expected {})",
                    known.join(", ")
                )
            })
        })
        .collect::<Result<_>>()?;
    let baseline = Baseline::parse(&a.baseline).map_err(|e| anyhow!("--baseline: {e}"))?;
    let granularity = match a.sanity_granularity.as_str() {
        "group" => Granularity::Group,
        "module" => Granularity::Module,
        g => bail!("--sanity-granularity: expected group or module, got {g:?}"),
    };
    if a.steps == 0 || a.patch == 0 || a.model_batch == 0 {
        bail!("--steps, --patch and --model-batch must be at least 1");
    }
    let resolved = ModelArgs::run_folder(model_path).resolve()?;
    let model = resolved.load()?.valid();
    let study_model = StudyModel {
        model: &model,
        id: resolved.id.clone(),
        preprocessing: resolved.image_preprocessing(None),
    };
    let options = ModelMetricsOptions {
        faithfulness,
        sanity: a.sanity.clone(),
        granularity,
        subset: a.subset,
        steps: a.steps,
        patch: a.patch,
        regions: a.regions,
        baseline,
        road_percentages: a.road_percentages.clone(),
        model_batch: a.model_batch,
        methods_filter: methods_filter.map(<[String]>::to_vec),
        baselines,
        region,
        seed,
        resamples,
    };
    run_model_metrics(&study_model, data, maps, &options, out).map_err(|e| match e {
        StudyError::NoMaps { .. } => anyhow!("--model {}: {e}", model_path.display()),
        StudyError::SanityMethod(_) => anyhow!("--{e}"),
        StudyError::Data(_) => anyhow!(e).context(format!("--data {}", data.display())),
        e => anyhow!(e),
    })
}
