//! `leukex serve DIR` (the web viewer and blinded rating) and `leukex ratings summary DIR`
//! (the paper's Table 2 from the stored ratings). The work is in `leukex-web`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use leukex_web::{RoundConfig, Scale, ServeOptions};

#[derive(Args)]
pub struct ServeArgs {
    /// A study folder (data/, runs/, maps/<model>/explain.json, eval/) or a folder of `leukex explain` outputs.
    dir: PathBuf,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on; the default is loopback only. Anything else lets other machines in.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Rating scale as JSON ([{"score": 0, "label": ..., "definition": ...}, ...]); default 0-3.
    #[arg(long)]
    scale: Option<PathBuf>,
    /// Blinded rounds: maps sampled per method x model x true class.
    #[arg(long, default_value_t = 5)]
    per_stratum: usize,
    /// Blinded rounds: calibration maps shown first (not counted).
    #[arg(long, default_value_t = 3)]
    calibration: usize,
    /// Blinded rounds: share of the sampled maps shown a second time (rater consistency).
    #[arg(long, default_value_t = 0.1)]
    repeat_fraction: f64,
    /// Seed of the rounds' sample and of each rater's order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Subcommand)]
pub enum RatingsCommand {
    /// The paper's Table 2 from DIR/ratings.sqlite: mean score with CI, % morphological information, maps at the top level, raters, maps, repeat consistency, Krippendorff's alpha.
    Summary(SummaryArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Csv,
    Json,
}

#[derive(Args)]
pub struct SummaryArgs {
    /// The folder `leukex serve` served (holds ratings.sqlite).
    dir: PathBuf,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
}

pub fn run_serve(a: ServeArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.repeat_fraction) {
        bail!("--repeat-fraction must be between 0 and 1");
    }
    let scale = match &a.scale {
        Some(p) => Scale::read_json(p)?,
        None => Scale::default(),
    };
    let opts = ServeOptions {
        dir: a.dir.clone(),
        scale,
        round: RoundConfig {
            seed: a.seed,
            per_stratum: a.per_stratum,
            calibration: a.calibration,
            repeat_fraction: a.repeat_fraction,
        },
    };
    let addr = SocketAddr::new(a.bind, a.port);
    leukex_web::serve_blocking(&opts, addr, |bound, app| {
        let s = &app.study;
        if !a.bind.is_loopback() {
            eprintln!(
                "warning: listening on {} — other machines can reach the viewer and its ratings",
                a.bind
            );
        }
        println!(
            "{}: {} models, {} methods, {} images, {} heat maps; ratings in {}",
            s.root.display(),
            s.models.len(),
            s.methods.len(),
            s.images.len(),
            s.maps.len(),
            leukex_web::server::ratings_path(&s.root).display()
        );
        for note in &s.notes {
            eprintln!("note: {note}");
        }
        println!("serving http://{bound}/ (Ctrl-C stops)");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

pub fn run_ratings(cmd: RatingsCommand) -> Result<()> {
    match cmd {
        RatingsCommand::Summary(a) => {
            let s = leukex_web::summarise_dir(&a.dir)?;
            let mut out = std::io::stdout().lock();
            match a.format {
                Format::Md => out.write_all(leukex_web::summary::to_markdown(&s).as_bytes())?,
                Format::Csv => out.write_all(&leukex_web::summary::to_csv(&s))?,
                Format::Json => {
                    serde_json::to_writer_pretty(&mut out, &s)?;
                    writeln!(out)?;
                }
            }
            Ok(())
        }
    }
}
