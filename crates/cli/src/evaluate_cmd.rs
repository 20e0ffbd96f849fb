//! `leukex evaluate`: heat maps against morphology masks.

use anyhow::{Context, Result};
use clap::Args;
use leukex_data::LabelTable;
use leukex_evaluate::{EvaluateOptions, Mode, Region, evaluate_dir};
use std::path::PathBuf;

use crate::model_metrics::{self, ModelMetricsArgs};

#[derive(Args)]
pub struct EvaluateArgs {
    /// Heat maps in the layout of `leukex explain`: MAPS/<model-id>/<stem>/<method-id>.npy.
    #[arg(long)]
    maps: PathBuf,
    /// Folder of mask PNGs named by image stem.
    #[arg(long)]
    masks: PathBuf,
    /// Label table JSON of the masks (default: leukex's ids, 255 = unlabelled).
    #[arg(long, conflicts_with = "label_map")]
    labels: Option<PathBuf>,
    /// Label table inline, e.g. 0=background,1=nucleus,2=cytoplasm,3=vacuole,4=rbc.
    #[arg(long)]
    label_map: Option<String>,
    /// Modes (repeatable): paper, paper-innvestigate, paper-matlab, raw-mean, positive, top-K, otsu, mass.
    /// Default: paper, raw-mean, positive, top-5, top-10, top-20, otsu, mass.
    #[arg(long = "mode")]
    modes: Vec<Mode>,
    /// Region of the localisation metrics: cell, or classes joined by +, e.g. nucleus+cytoplasm.
    #[arg(long, default_value = "cell")]
    region: String,
    /// Only these model folders (comma-separated).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Only these methods (comma-separated method ids).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Resize maps bilinearly to the mask grid instead of refusing a size mismatch.
    #[arg(long)]
    resize_maps: bool,
    /// Leave out the random-map baseline and the oracle map.
    #[arg(long)]
    no_baselines: bool,
    /// Seed of the bootstrap and the random baseline.
    #[arg(long, default_value_t = 0x1e0c)]
    seed: u64,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 2000)]
    bootstrap: usize,
    /// Output folder: per_image.csv, summary.csv, summary.json, tables.md (with --model also faithfulness.csv, sanity.csv, model_metrics.json/.md).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model_metrics: ModelMetricsArgs,
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    let mut opts = EvaluateOptions::new(&args.maps, &args.masks, &args.out);
    if let Some(path) = &args.labels {
        opts.label_table = LabelTable::read_json(path)?;
    } else if let Some(spec) = &args.label_map {
        opts.label_table =
            LabelTable::parse_spec(spec).map_err(|e| anyhow::anyhow!("--label-map: {e}"))?;
    }
    if !args.modes.is_empty() {
        opts.modes = args.modes;
    }
    opts.region = Region::parse(&args.region).map_err(|e| anyhow::anyhow!("--region: {e}"))?;
    opts.models = args.models.clone();
    opts.methods = args.methods.clone();
    opts.resize_maps = args.resize_maps;
    opts.baselines = !args.no_baselines;
    opts.seed = args.seed;
    opts.bootstrap_resamples = args.bootstrap;
    let report =
        evaluate_dir(&opts).with_context(|| format!("cannot evaluate {}", args.maps.display()))?;
    println!(
        "{} evaluations (image x model x method x mode); read {:.2} s, computed {:.2} s",
        report.rows.len(),
        report.read_seconds,
        report.compute_seconds
    );
    for f in &report.files {
        println!("wrote {}", f.display());
    }
    if args.model_metrics.enabled() {
        let files = model_metrics::run(
            &args.model_metrics,
            &args.maps,
            args.methods.as_deref(),
            !args.no_baselines,
            opts.region,
            args.seed,
            args.bootstrap,
            &args.out,
        )
        .context("model metrics (--model)")?;
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}
