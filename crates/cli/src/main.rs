//! `leukex`: the command-line front of the leukex crates. It parses
//! arguments, draws progress bars and turns library errors into messages;
//! the work itself lives in the library crates.

mod bench_cmd;
mod data_cmd;
mod evaluate_cmd;
mod explain_cmd;
mod fetch_cmd;
mod model_cmd;
mod model_metrics;
mod progress;
mod run_cmd;
mod segment_cmd;
mod serve_cmd;
mod train_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "leukex",
    version,
    about = "Does the network look at the cell? Heat maps of ALL blood-smear classifiers, evaluated against cell morphology."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The paper's study on the built-in data (`leukex run` on the built-in study): synthetic ALL-IDB2, four networks trained from scratch, heat maps of their test images, evaluation against morphology, the report.
    Demo(run_cmd::DemoArgs),
    /// Run a whole study (STUDY.toml: data, split, models, methods, evaluation) as a grid of cached cells: a rerun does only what changed; --shard, --plan and --cell spread it over a cluster.
    Run(run_cmd::RunArgs),
    /// Join the outputs of `leukex run --shard K/N` and finish the study (evaluation, report).
    Merge(run_cmd::MergeArgs),
    /// Write (again) a study's report, DIR/report/index.html with its figures (PNG and SVG): after expert ratings in `leukex serve`, for example.
    Report(ReportArgs),
    /// Generate the built-in synthetic ALL-IDB2: smear crops with exact morphology masks.
    Synth(SynthArgs),
    /// Inspect, split and augment a data set.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Measure heat maps against morphology masks: the paper's measure, corrected measures, localisation, statistics.
    Evaluate(evaluate_cmd::EvaluateArgs),
    /// Check and convert model weights; fetch torchvision's ImageNet weights.
    #[command(subcommand)]
    Weights(model_cmd::WeightsCommand),
    /// Class predictions (or logits of preprocessed .npy input) of a model.
    Predict(model_cmd::PredictArgs),
    /// Fine-tune a network on a data set's split: SGD/Adam equal to PyTorch's, schedules, early stopping, resumable; test metrics.
    Train(train_cmd::TrainArgs),
    /// Speed of every network: forward, forward+backward to the input, training steps (images/s).
    Bench(bench_cmd::BenchArgs),
    /// Heat maps of a model (gradient, CAM and LRP methods) for images or preprocessed .npy input, as OUT/<model-id>/<stem>/<method-id>.npy (+ PNG) and explain.json.
    Explain(explain_cmd::ExplainArgs),
    /// 5-class morphology masks (background, nucleus, cytoplasm, vacuole, rbc) of May-Grünwald-Giemsa crops by classical image analysis.
    Segment(segment_cmd::SegmentArgs),
    /// A local web viewer over a study or explain/evaluate output folder: images, masks, every model x method heat map, evaluation modes, blinded expert rating (stored in DIR/ratings.sqlite).
    Serve(serve_cmd::ServeArgs),
    /// Expert ratings of heat maps made in `leukex serve`.
    #[command(subcommand)]
    Ratings(serve_cmd::RatingsCommand),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The study folder (`leukex run` / `leukex demo` output).
    dir: PathBuf,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output folder (ALL-IDB2 layout: ImNNN_Y.tif, masks/, labels.json, manifest.csv).
    #[arg(long)]
    out: PathBuf,
    /// Number of images; the first half are blasts (Y=1), the rest healthy (Y=0).
    #[arg(long, default_value_t = 260)]
    n: usize,
    /// Seed of every random choice; same seed, same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the square crops in pixels (ALL-IDB2: 257).
    #[arg(long, default_value_t = 257)]
    size: u32,
    /// Inject a known confounder outside the cell (rbc-density: blasts get more red cells).
    #[arg(long)]
    shortcut: Option<leukex_synth::Shortcut>,
    /// Negative control: the same scenes with the white cell left out.
    #[arg(long)]
    without_cell: bool,
}

fn main() {
    // Tensor buffers are reused instead of being unmapped and faulted back in.
    leukex_models::allocator::reuse_freed_memory();
    if let Err(e) = dispatch(Cli::parse().command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Demo(args) => run_cmd::demo(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Merge(args) => run_cmd::merge(args),
        Command::Report(args) => {
            let r = leukex_report::write_report(&args.dir)?;
            println!(
                "{} figures in {:.1} s; report: {}",
                r.figures.len(),
                r.seconds,
                r.index.display()
            );
            Ok(())
        }
        Command::Synth(args) => synth(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Evaluate(args) => evaluate_cmd::run(args),
        Command::Weights(cmd) => model_cmd::run_weights(cmd),
        Command::Predict(args) => model_cmd::run_predict(args),
        Command::Explain(args) => explain_cmd::run(args),
        Command::Train(args) => train_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Segment(args) => segment_cmd::run(args),
        Command::Serve(args) => serve_cmd::run_serve(args),
        Command::Ratings(cmd) => serve_cmd::run_ratings(cmd),
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    let cfg = leukex_synth::SynthConfig {
        n: args.n,
        seed: args.seed,
        size: args.size,
        shortcut: args.shortcut,
        without_cell: args.without_cell,
    };
    let bar = progress::bar(args.n as u64, "rendering");
    let report = leukex_synth::write_dataset(&cfg, &args.out, &|_| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "{} images: {} blasts (L1 {}, L2 {}, L3 with vacuoles {}), {} healthy lymphocytes",
        report.images,
        report.blasts,
        report.kinds.l1,
        report.kinds.l2,
        report.kinds.l3,
        report.healthy
    );
    println!("wrote {}", args.out.display());
    Ok(())
}
