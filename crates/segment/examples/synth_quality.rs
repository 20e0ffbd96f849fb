//! Segments a fresh synthetic ALL-IDB2 (exact masks) and prints per-class
//! IoU and Dice against the truth, the vacuole tallies, and per-kind
//! nucleus/cytoplasm IoU.
//!
//! `cargo run --release -p leukex-segment --example synth_quality -- [N] [SEED]`
//! (default 260 images, seed 17). Optional third argument: a folder where
//! the worst images are written (image, truth, prediction) for a look.

use leukex_data::MorphologyClass;
use leukex_segment::quality::Quality;
use leukex_segment::{SegmentOptions, segment};
use leukex_synth::{SynthConfig, generate_one};
use rayon::prelude::*;
use std::collections::BTreeMap;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(260, |a| a.parse().expect("N"));
    let seed: u64 = args.get(1).map_or(17, |a| a.parse().expect("SEED"));
    let dump = args.get(2).map(std::path::PathBuf::from);
    let cfg = SynthConfig {
        n,
        seed,
        ..SynthConfig::default()
    };
    let opts = SegmentOptions::default();
    let results: Vec<(String, &'static str, Quality, f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let s = generate_one(&cfg, i);
            let seg = segment(&s.image, &opts);
            let mut q = Quality::default();
            q.add(&s.mask, &seg.mask);
            if let Some(dir) = &dump {
                std::fs::create_dir_all(dir).unwrap();
                s.image.save(dir.join(format!("{}.png", s.stem))).unwrap();
                let show = |m: &leukex_data::MorphologyMask| {
                    image::GrayImage::from_raw(
                        m.width(),
                        m.height(),
                        m.raw().iter().map(|&v| v * 60).collect(),
                    )
                    .unwrap()
                };
                show(&s.mask)
                    .save(dir.join(format!("{}_truth.png", s.stem)))
                    .unwrap();
                show(&seg.mask)
                    .save(dir.join(format!("{}_pred.png", s.stem)))
                    .unwrap();
            }
            (s.stem, s.kind.name(), q, seg.report.confidence)
        })
        .collect();
    let mut total = Quality::default();
    let mut by_kind: BTreeMap<&str, Quality> = BTreeMap::new();
    for (_, kind, q, _) in &results {
        total.merge(q);
        by_kind.entry(kind).or_default().merge(q);
    }
    println!("{n} synthetic images, seed {seed}\n");
    print!("{}", total.markdown());
    println!(
        "\n| cell kind | images | nucleus IoU | cytoplasm IoU | vacuole IoU |\n|---|---|---|---|---|"
    );
    for (kind, q) in &by_kind {
        println!(
            "| {kind} | {} | {:.3} | {:.3} | {:.3} |",
            q.images,
            q.score(MorphologyClass::Nucleus).iou,
            q.score(MorphologyClass::Cytoplasm).iou,
            q.score(MorphologyClass::Vacuole).iou
        );
    }
    let mut worst: Vec<(f64, &str, f32)> = results
        .iter()
        .map(|(stem, _, q, c)| {
            let s = [
                MorphologyClass::Nucleus,
                MorphologyClass::Cytoplasm,
                MorphologyClass::Rbc,
            ]
            .map(|c| q.score(c).iou)
            .into_iter()
            .fold(f64::MAX, f64::min);
            (s, stem.as_str(), *c)
        })
        .collect();
    worst.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut confidences: Vec<f32> = results.iter().map(|r| r.3).collect();
    confidences.sort_by(f32::total_cmp);
    println!(
        "\nconfidence: min {:.3}, median {:.3}, max {:.3}",
        confidences[0],
        confidences[confidences.len() / 2],
        confidences[confidences.len() - 1]
    );
    println!("\nworst images (min of nucleus, cytoplasm, red-cell IoU; confidence):");
    for (s, stem, c) in worst.iter().take(8) {
        println!("  {stem}: {s:.3} (confidence {c:.3})");
    }
}
