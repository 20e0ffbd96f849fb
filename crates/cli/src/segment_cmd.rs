//! `leukex segment`: 5-class morphology masks of smear crops by classical
//! image analysis, to start from where no hand-drawn masks exist.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use leukex_segment::{OtherCells, SegmentOptions, collect_images, segment_files};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum OtherCellsArg {
    /// Background, like the film (the default: the crop's label is about its centred cell).
    Background,
    /// Nucleus, cytoplasm and vacuoles, like the centred cell.
    Segment,
}

#[derive(Args)]
pub struct SegmentArgs {
    /// Images (TIFF, PNG, JPEG, BMP) or folders of images (not searched recursively).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Output folder: STEM.png (ids 0 background, 1 nucleus, 2 cytoplasm, 3 vacuole, 4 rbc), labels.json,
    /// segment.csv (per-image confidence: check the lowest first), segment.json (method, options, assumptions).
    #[arg(long)]
    out: PathBuf,
    /// White cells other than the one nearest the crop's centre (usually cut by the border).
    #[arg(long, value_enum, default_value = "background")]
    other_cells: OtherCellsArg,
    /// Shorthand for --other-cells segment.
    #[arg(long, conflicts_with = "other_cells")]
    keep_border_cells: bool,
}

pub fn run(args: SegmentArgs) -> Result<()> {
    let other_cells = match (args.keep_border_cells, args.other_cells) {
        (true, _) | (_, OtherCellsArg::Segment) => OtherCells::Segment,
        _ => OtherCells::Background,
    };
    let opts = SegmentOptions { other_cells };
    let images = collect_images(&args.images)?;
    let bar = crate::progress::bar(images.len() as u64, "segmenting");
    let report = segment_files(&images, &args.out, &opts, &|_| bar.inc(1))?;
    bar.finish_and_clear();
    let no_cell = report
        .results
        .iter()
        .filter(|r| !r.report.cell_found)
        .count();
    println!(
        "{} masks in {} ({} without a white cell near the centre)",
        report.results.len(),
        args.out.display(),
        no_cell
    );
    let mut lowest: Vec<_> = report.results.iter().collect();
    lowest.sort_by(|a, b| a.report.confidence.total_cmp(&b.report.confidence));
    if !lowest.is_empty() {
        let names: Vec<String> = lowest
            .iter()
            .take(5)
            .map(|r| format!("{} ({:.2})", r.image.display(), r.report.confidence))
            .collect();
        println!("check first (lowest confidence): {}", names.join(", "));
    }
    for e in &report.failures {
        eprintln!("error: {e}");
    }
    if !report.failures.is_empty() {
        bail!(
            "{} of {} images failed",
            report.failures.len(),
            images.len()
        );
    }
    Ok(())
}
