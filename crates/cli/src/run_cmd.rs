//! `leukex run`, `leukex merge` and `leukex demo`: the whole study as one grid of cached
//! cells (leukex-study), with one progress bar per stage on a terminal and plain lines
//! otherwise (the run also writes them to DIR/run.log).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use leukex_study::grid::Grid;
use leukex_study::{Cell, Observer, RunSummary, Selection, Stage, Study};

#[derive(Args)]
pub struct RunArgs {
    /// The study file (`leukex run --print-default > study.toml` writes one to start from).
    #[arg(required_unless_present = "print_default")]
    study: Option<PathBuf>,
    /// Output folder (default: the study's name).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the paper's study on the built-in data as commented TOML and exit.
    #[arg(long)]
    print_default: bool,
    /// With --print-default: the quick study.
    #[arg(long, requires = "print_default")]
    quick: bool,
    /// Print the grid as JSON lines (cell id, stage, needs, outputs, record, done, the command that runs just that cell) and exit.
    #[arg(long, conflicts_with_all = ["cell", "shard"])]
    plan: bool,
    /// Run only this cell (its needs must be done): what `--plan`'s commands and workflows/Snakefile call.
    #[arg(long, conflicts_with = "shard")]
    cell: Option<String>,
    /// Run shard K of N (e.g. 2/4): the pipelines (train, explain, model metrics) of every N-th model; `leukex merge` joins the shards and finishes the study.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Output folders of `leukex run --shard K/N` of one study.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Where the merged study goes (evaluation and report are computed there).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Output folder.
    #[arg(long, default_value = "demo")]
    out: PathBuf,
    /// The quick study (one small network; about a minute on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Only these networks (comma-separated architectures).
    #[arg(long, value_delimiter = ',')]
    arch: Option<Vec<String>>,
    /// Network input side in pixels, for every network.
    #[arg(long)]
    size: Option<u32>,
    /// Training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Augmented training images per class.
    #[arg(long)]
    per_class: Option<usize>,
    /// Heat-map methods computed with leukex's defaults (comma-separated; the paper's four with its conventions are always added).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Seed of the data, the split and the training.
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(a: RunArgs) -> Result<()> {
    if a.print_default {
        print!(
            "{}",
            if a.quick {
                leukex_study::QUICK_STUDY
            } else {
                leukex_study::DEMO_STUDY
            }
        );
        return Ok(());
    }
    let path = a.study.expect("clap requires the study file");
    let study = Study::read(&path)?;
    let out = a.out.unwrap_or_else(|| PathBuf::from(&study.name));
    let grid = Grid::new(study, &out)?;
    if a.plan {
        for line in grid.plan_lines(&path) {
            println!("{line}");
        }
        return Ok(());
    }
    let sel = match (a.cell, a.shard) {
        (Some(id), _) => Selection::Cell(id),
        (None, Some(s)) => parse_shard(&s)?,
        (None, None) => Selection::All,
    };
    let summary = run_with_progress(|obs| leukex_study::run(&grid, &sel, obs))?;
    finish(&grid.out, &summary, &sel);
    Ok(())
}

pub fn merge(a: MergeArgs) -> Result<()> {
    let summary = run_with_progress(|obs| leukex_study::merge::merge(&a.shards, &a.out, obs))
        .context("cannot merge the shards")?;
    finish(&a.out, &summary, &Selection::All);
    Ok(())
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let (text, name) = if a.quick {
        (leukex_study::QUICK_STUDY, "quick.toml")
    } else {
        (leukex_study::DEMO_STUDY, "demo.toml")
    };
    let mut study = Study::parse(text, Path::new(name))?;
    if let Some(archs) = &a.arch {
        study.models.retain(|m| {
            m.arch
                .is_some_and(|x| archs.iter().any(|a| a == x.as_str()))
        });
        if study.models.is_empty() {
            bail!(
                "--arch {}: none of the demo's networks (googlenet, resnet18, resnet50, vgg19)",
                archs.join(",")
            );
        }
        if let Some(s) = &mut study.shortcut {
            s.models.retain(|m| archs.contains(m));
            if s.models.is_empty() {
                study.shortcut = None;
            }
        }
    }
    for m in std::iter::once(&mut study.train).chain(study.models.iter_mut()) {
        if a.size.is_some() {
            m.image_size = None;
        }
        if a.epochs.is_some() {
            m.epochs = None;
        }
        if a.per_class.is_some() {
            m.augment_per_class = None;
        }
        if a.seed.is_some() {
            m.seeds = None;
        }
    }
    study.train.image_size = a.size.or(study.train.image_size);
    study.train.epochs = a.epochs.or(study.train.epochs);
    study.train.augment_per_class = a.per_class.or(study.train.augment_per_class);
    if let Some(seed) = a.seed {
        study.train.seeds = Some(vec![seed]);
        study.split.seed = seed;
        if let Some(s) = &mut study.data.synth {
            s.seed = seed;
        }
    }
    if let Some(methods) = a.methods {
        study.explain.methods = methods;
    }
    // The overrides are checked like a study file.
    let study = Study::parse(&study.to_toml(), Path::new(name))?;
    let grid = Grid::new(study, &a.out)?;
    let summary = run_with_progress(|obs| leukex_study::run(&grid, &Selection::All, obs))?;
    finish(&grid.out, &summary, &Selection::All);
    Ok(())
}

fn parse_shard(s: &str) -> Result<Selection> {
    let parsed = s
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if k >= 1 && k <= n => Ok(Selection::Shard { k, n }),
        _ => bail!("--shard {s}: expected K/N with 1 <= K <= N, e.g. 2/4"),
    }
}

fn finish(out: &Path, summary: &RunSummary, sel: &Selection) {
    eprintln!(
        "{} cells run, {} found in the cache",
        summary.ran.len(),
        summary.cached.len()
    );
    for (stage, s) in &summary.stage_seconds {
        if *s >= 0.05 {
            eprintln!("  {:<9} {s:>8.1} s", stage.name());
        }
    }
    match sel {
        Selection::All => {
            let report = out.join("report").join("index.html");
            if report.is_file() {
                println!("report: {}", report.display());
            } else {
                println!("study: {}", out.display());
            }
        }
        Selection::Shard { k, n } => println!(
            "shard {k}/{n} done in {}; join the shards with `leukex merge`",
            out.display()
        ),
        Selection::Cell(id) => println!("cell {id} done in {}", out.display()),
    }
}

/// Progress bars per stage on a terminal; plain lines on stderr otherwise.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Stage, ProgressBar>>,
    plain: bool,
}

impl Observer for Bars {
    fn stage(&self, stage: Stage, total: usize, done: usize) {
        if self.plain {
            eprintln!("{}: {total} cells ({done} cached)", stage.name());
            return;
        }
        let b = self.multi.add(ProgressBar::new(total as u64));
        b.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:25}] {pos}/{len} cells {msg} ({eta} left)",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_prefix(stage.name());
        self.bars.lock().expect("bars").insert(stage, b);
    }

    fn cell(&self, cell: &Cell, cached: bool, seconds: f64) {
        if self.plain {
            if !cached {
                eprintln!("{}: done in {seconds:.1} s", cell.id);
            }
            return;
        }
        if let Some(b) = self.bars.lock().expect("bars").get(&cell.stage) {
            b.inc(1);
            b.set_message(cell.id.clone());
            if b.position() >= b.length().unwrap_or(0) {
                b.finish();
            }
        }
    }

    fn within(&self, cell: &Cell, done: usize, total: usize) {
        if self.plain {
            return;
        }
        if let Some(b) = self.bars.lock().expect("bars").get(&cell.stage) {
            b.set_message(format!("{} {done}/{total}", cell.id));
        }
    }
}

fn run_with_progress<T>(
    f: impl FnOnce(&dyn Observer) -> Result<T, leukex_study::StudyError>,
) -> Result<T> {
    let bars = Bars {
        multi: MultiProgress::new(),
        bars: Mutex::new(HashMap::new()),
        plain: !std::io::stderr().is_terminal(),
    };
    Ok(f(&bars)?)
}
