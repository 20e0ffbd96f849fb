//! Speed requirement: the counting modes and localisation metrics for
//! 60 images × 5 models × 20 methods (6 000 maps of 224×224, already in
//! memory) in under 2 s on 2 cores. Runs the 8 default modes (paper,
//! raw-mean, positive, top-5, top-10, top-20, otsu, mass) plus the six
//! localisation metrics per map, through `evaluate_map` (fused) and through
//! the mode-by-mode reference it replaced.

use criterion::{Criterion, criterion_group, criterion_main};
use leukex_data::MorphologyMask;
use leukex_evaluate::run::evaluate_map_reference;
use leukex_evaluate::{HeatMap, LocalisationOptions, Mode, Region, evaluate_map};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

const SIDE: usize = 224;
const IMAGES: usize = 60;
const MODELS: usize = 5;
const METHODS: usize = 20;

fn mask(seed: u64) -> MorphologyMask {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (cx, cy) = (rng.random_range(80.0..144.0), rng.random_range(80.0..144.0));
    let raw = (0..SIDE * SIDE)
        .map(|i| {
            let (x, y) = ((i % SIDE) as f64, (i / SIDE) as f64);
            let r2 = (x - cx).powi(2) + (y - cy).powi(2);
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
    MorphologyMask::from_raw(SIDE as u32, SIDE as u32, raw).unwrap()
}

/// Half the maps CAM-like (ReLU'd smooth blob: flat zeros), half signed noise.
fn map(seed: u64) -> HeatMap {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let cam = seed.is_multiple_of(2);
    let (cx, cy) = (rng.random_range(60.0..160.0), rng.random_range(60.0..160.0));
    let values = (0..SIDE * SIDE)
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
    HeatMap::new(SIDE, SIDE, values)
}

fn bench(c: &mut Criterion) {
    let masks: Vec<MorphologyMask> = (0..IMAGES as u64).map(mask).collect();
    let maps: Vec<HeatMap> = (0..(IMAGES * MODELS * METHODS) as u64)
        .into_par_iter()
        .map(map)
        .collect();
    let modes = Mode::defaults();
    let methods: Vec<String> = (0..METHODS)
        .map(|m| {
            if m % 4 == 0 {
                format!("grad-cam-{m}")
            } else {
                format!("lrp-{m}")
            }
        })
        .collect();
    let opts = LocalisationOptions::default();
    let mut g = c.benchmark_group("evaluate");
    g.sample_size(10);
    g.bench_function("6000 maps 224x224, 8 modes + 6 localisation metrics", |b| {
        b.iter(|| {
            maps.par_iter()
                .enumerate()
                .map(|(i, m)| {
                    let e = evaluate_map(
                        m,
                        &masks[i % IMAGES],
                        &methods[i % METHODS],
                        &modes,
                        Region::cell(),
                        &opts,
                    );
                    e.shares.len()
                })
                .sum::<usize>()
        })
    });
    // The mode-by-mode reference (the code `evaluate_map` ran before the
    // fused path), for the before/after figure. Skip with
    // `LEUKEX_BENCH_FUSED_ONLY=1`.
    if std::env::var_os("LEUKEX_BENCH_FUSED_ONLY").is_none() {
        g.bench_function("reference: 6000 maps, mode by mode", |b| {
            b.iter(|| {
                maps.par_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let (shares, _) = evaluate_map_reference(
                            m,
                            &masks[i % IMAGES],
                            &methods[i % METHODS],
                            &modes,
                            Region::cell(),
                            &opts,
                        );
                        shares.len()
                    })
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
