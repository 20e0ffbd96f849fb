//! Reading time of the speed requirement's workload, measured apart from
//! the counting benchmark (`benches/counting.rs`): writes 60 masks and
//! 60 images × 5 models × 20 methods = 6 000 maps of 224×224 (`.npy`, f4,
//! shape [1,224,224]) to a temporary folder once, then times
//!
//! 1. reading alone: every map read, reduced and checked finite, in
//!    parallel (as `evaluate_dir` does), and
//! 2. `evaluate_dir` end to end (baselines off, 10 bootstrap resamples), whose
//!    report splits `read_seconds` from `compute_seconds`.
//!
//! The files were just written, so reads come from the page cache (warm).
//!
//! `cargo run --release -p leukex-evaluate --example read_timing [DIR]`
use leukex_data::MorphologyMask;
use leukex_evaluate::{EvaluateOptions, HeatMap, evaluate_dir};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

const SIDE: usize = 224;
const IMAGES: usize = 60;
const MODELS: usize = 5;
const METHODS: usize = 20;

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let stems: Vec<String> = (0..IMAGES)
        .map(|i| format!("Im{:03}_{}", i + 1, i % 2))
        .collect();
    let t = Instant::now();
    for (s, stem) in stems.iter().enumerate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s as u64);
        let (cx, cy) = (rng.random_range(80.0..144.0), rng.random_range(80.0..144.0));
        let raw = (0..SIDE * SIDE)
            .map(|i| {
                let (x, y) = ((i % SIDE) as f64, (i / SIDE) as f64);
                let r2: f64 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if r2 < 900.0 {
                    1
                } else if r2 < 2500.0 {
                    2
                } else if (x as usize / 40 + y as usize / 40).is_multiple_of(3) {
                    4
                } else {
                    0
                }
            })
            .collect();
        MorphologyMask::from_raw(SIDE as u32, SIDE as u32, raw)
            .unwrap()
            .write_png(&root.join("masks").join(format!("{stem}.png")))
            .unwrap();
    }
    let jobs: Vec<(usize, usize, usize)> = (0..MODELS)
        .flat_map(|m| (0..IMAGES).flat_map(move |s| (0..METHODS).map(move |k| (m, s, k))))
        .collect();
    let paths: Vec<PathBuf> = jobs
        .par_iter()
        .map(|&(m, s, k)| {
            let seed = ((m * IMAGES + s) * METHODS + k) as u64;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let cam = k % 4 == 0;
            let (cx, cy) = (
                rng.random_range(60.0..160.0f32),
                rng.random_range(60.0..160.0f32),
            );
            let v: Vec<f32> = (0..SIDE * SIDE)
                .map(|i| {
                    let (x, y) = ((i % SIDE) as f32, (i / SIDE) as f32);
                    let blob = 1.0 - ((x - cx).powi(2) + (y - cy).powi(2)) / 4000.0;
                    if cam {
                        blob.max(0.0)
                    } else {
                        blob + rng.random_range(-1.0f32..1.0)
                    }
                })
                .collect();
            let method = if cam {
                format!("grad-cam-{k}")
            } else {
                format!("lrp-{k}")
            };
            let p = root
                .join("maps")
                .join(format!("model{m}"))
                .join(&stems[s])
                .join(format!("{method}.npy"));
            leukex_data::npy::write_f32(&p, &[1, SIDE, SIDE], &v).unwrap();
            p
        })
        .collect();
    println!(
        "wrote {} maps + {IMAGES} masks in {:.2} s to {}",
        paths.len(),
        t.elapsed().as_secs_f64(),
        root.display()
    );

    for round in 0..3 {
        let t = Instant::now();
        let pixels: usize = paths
            .par_iter()
            .map(|p| {
                let m = HeatMap::read_npy(p).unwrap();
                m.check_finite(p).unwrap();
                m.values.len()
            })
            .sum();
        println!(
            "read only, round {round}: {} maps ({pixels} pixels) in {:.3} s on {} threads",
            paths.len(),
            t.elapsed().as_secs_f64(),
            rayon::current_num_threads()
        );
    }

    let mut opts = EvaluateOptions::new(root.join("maps"), root.join("masks"), root.join("out"));
    opts.baselines = false;
    opts.bootstrap_resamples = 10;
    let t = Instant::now();
    let rep = evaluate_dir(&opts).unwrap();
    println!(
        "evaluate_dir: read {:.3} s (maps + masks), compute {:.3} s (counting, localisation, \
         summaries, tests), total with writing {:.3} s; {} rows",
        rep.read_seconds,
        rep.compute_seconds,
        t.elapsed().as_secs_f64(),
        rep.rows.len()
    );
}
