//! `leukex demo`: the whole study on the built-in data in one command — synthetic
//! ALL-IDB2 with exact masks, a network trained from scratch at a demo size, heat maps of
//! its never-seen test images, and their evaluation against the cells' morphology.
//! Each stage is the ordinary subcommand (the same code and outputs as running them one
//! by one); finished stages are kept, so a second run continues where the first stopped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use leukex_data::split::Split;

#[derive(Args)]
pub struct DemoArgs {
    /// Output folder: data/, runs/<arch>/, maps/, eval/.
    #[arg(long, default_value = "demo")]
    out: PathBuf,
    /// Network trained from scratch.
    #[arg(long, default_value = "resnet18")]
    arch: String,
    /// Network input side in pixels (the demo size; real runs use 224).
    #[arg(long, default_value_t = 96)]
    size: u32,
    /// Training epochs.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Augmented training images per class.
    #[arg(long, default_value_t = 300)]
    per_class: usize,
    /// Heat-map methods (comma-separated; `leukex explain --method`).
    #[arg(
        long,
        default_value = "lrp-epsilon-plus-flat,lrp-preset-a,input-x-gradient,grad-cam,integrated-gradients"
    )]
    methods: String,
    /// Seed of every random step.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn stage(title: &str, args: Vec<String>) -> Result<()> {
    // Long file lists (the test images) are summarised, not printed.
    let shown: Vec<&str> = args.iter().take(16).map(String::as_str).collect();
    let more = args.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" … ({more} more)")
    } else {
        String::new()
    };
    eprintln!("\n== {title}: leukex {}{tail}", shown.join(" "));
    crate::run_args(std::iter::once("leukex".to_string()).chain(args))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn run(a: DemoArgs) -> Result<()> {
    let data = a.out.join("data");
    let run_dir = a.out.join("runs").join(&a.arch);
    let maps = a.out.join("maps");
    let eval = a.out.join("eval");
    let seed = a.seed.to_string();

    if data.join("manifest.csv").is_file() {
        eprintln!("== synthetic data: kept {}", data.display());
    } else {
        stage(
            "synthetic ALL-IDB2",
            vec![
                "synth".into(),
                "--out".into(),
                s(&data),
                "--seed".into(),
                seed.clone(),
            ],
        )?;
    }

    if run_dir.join("metrics.json").is_file() {
        eprintln!("== training: kept the finished run {}", run_dir.display());
    } else {
        let mut args: Vec<String> = [
            "train",
            &s(&data),
            "--arch",
            &a.arch,
            "--weights",
            "none",
            "--out",
            &s(&run_dir),
            "--size",
            &a.size.to_string(),
            "--augment-per-class",
            &a.per_class.to_string(),
            "--optimizer",
            "adam",
            "--lr",
            "1e-3",
            "--schedule",
            "cosine",
            "--epochs",
            &a.epochs.to_string(),
            "--batch-size",
            "16",
            "--balanced",
            "--seed",
            &seed,
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        if run_dir.join("checkpoint/state.json").is_file() {
            args.push("--resume".into());
        }
        stage("training from scratch", args)?;
    }

    // Heat maps of the never-seen test images only.
    let split_path = run_dir.join("split.json");
    let split = Split::read_json(&split_path)
        .with_context(|| format!("cannot read the run's split {}", split_path.display()))?;
    let ds = leukex_data::dataset::Dataset::open(&data, &Default::default())?;
    let mut args: Vec<String> = vec![
        "explain".into(),
        "--model".into(),
        s(&run_dir),
        "--method".into(),
        a.methods.clone(),
        "--target".into(),
        "true".into(),
        "--out".into(),
        s(&maps),
        "--input".into(),
    ];
    for stem in &split.test {
        let i = ds
            .find_stem(stem)
            .with_context(|| format!("test image {stem} is not in {}", data.display()))?;
        args.push(s(&ds.samples[i].image));
    }
    stage("heat maps of the test images", args)?;

    stage(
        "evaluation against morphology",
        vec![
            "evaluate".into(),
            "--maps".into(),
            s(&maps),
            "--masks".into(),
            s(&data.join("masks")),
            "--out".into(),
            s(&eval),
        ],
    )?;
    eprintln!(
        "\ndone: model and test metrics in {}, heat maps in {}, tables in {}",
        run_dir.display(),
        maps.display(),
        eval.join("tables.md").display()
    );
    Ok(())
}
