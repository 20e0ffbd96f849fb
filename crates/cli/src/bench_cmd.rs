//! `leukex bench`: images per second of every network for forward, forward + backward to
//! the input, and training steps (leukex-train's `bench`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use leukex_models::Arch;
use leukex_train::bench::{Job, measure};

#[derive(Args)]
pub struct BenchArgs {
    /// Architectures, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    arch: String,
    /// Jobs: forward, forward+backward, train-step, train-step-frozen (comma-separated) or `all`.
    #[arg(long, default_value = "all")]
    jobs: String,
    /// Batch of the forward and forward+backward jobs.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Batch of the training steps.
    #[arg(long, default_value_t = 16)]
    train_batch: usize,
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Timed runs per job (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also write the timings as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let archs: Vec<Arch> = if a.arch == "all" {
        Arch::ALL.to_vec()
    } else {
        a.arch
            .split(',')
            .map(|s| s.trim().parse::<Arch>())
            .collect::<Result<_, _>>()?
    };
    let jobs: Vec<Job> = if a.jobs == "all" {
        Job::ALL.to_vec()
    } else {
        a.jobs
            .split(',')
            .map(|s| {
                Job::parse(s.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown job {s:?} (expected forward, forward+backward, train-step, train-step-frozen)"
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if a.batch == 0 || a.train_batch == 0 || a.size < 32 {
        bail!("batches must be positive and --size at least 32");
    }
    let threads = rayon::current_num_threads();
    println!("| network | job | batch | size | s / batch | images / s |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut all = Vec::new();
    for &arch in &archs {
        for &job in &jobs {
            let batch = match job {
                Job::Forward | Job::ForwardBackward => a.batch,
                _ => a.train_batch,
            };
            let t = measure(arch, job, batch, a.size, a.runs);
            println!(
                "| {} | {} | {} | {} | {:.3} | {:.1} |",
                t.arch, t.job, t.batch, t.size, t.seconds, t.images_per_second
            );
            all.push(t);
        }
    }
    println!(
        "({threads} threads, median of {} runs after one warm-up)",
        a.runs
    );
    if let Some(path) = &a.json {
        leukex_data::fsutil::write_json_atomic(
            path,
            &serde_json::json!({"threads": threads, "timings": all}),
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
