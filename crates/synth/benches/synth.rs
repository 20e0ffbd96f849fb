//! How fast the synthetic ALL-IDB2 is made: all 260 images at 257×257
//! (rendered in parallel, in memory), the dataset written to disk, and the
//! latency of one image. Target: 260 images in under 3 s on 2 cores.

use criterion::{Criterion, criterion_group, criterion_main};
use leukex_synth::{SynthConfig, generate_one, write_dataset};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let cfg = SynthConfig::default();
    let mut g = c.benchmark_group("synth");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    g.bench_function("one image 257", |b| {
        b.iter(|| generate_one(black_box(&cfg), black_box(137)))
    });
    g.bench_function("260 images 257 in memory", |b| {
        b.iter(|| {
            (0..cfg.n)
                .into_par_iter()
                .map(|i| generate_one(&cfg, i).image.len())
                .sum::<usize>()
        })
    });
    let dir = tempfile::tempdir().expect("temp folder");
    g.bench_function("260 images 257 written", |b| {
        b.iter(|| write_dataset(&cfg, dir.path(), &|_| {}).expect("write"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
