//! How fast `leukex segment` is: 260 synthetic crops of 257×257 read from
//! TIFF files, segmented and written (masks, labels.json, segment.csv,
//! segment.json) exactly as the command does, on every core; and one image
//! in memory. Target: 260 crops in under 10 s on 2 cores.

use criterion::{Criterion, criterion_group, criterion_main};
use leukex_segment::{SegmentOptions, collect_images, segment, segment_files};
use leukex_synth::{SynthConfig, generate_one};
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    // A seed of its own, not the one the quality figures use.
    let cfg = SynthConfig {
        seed: 2026,
        ..SynthConfig::default()
    };
    let dir = tempfile::tempdir().expect("temp folder");
    let images = dir.path().join("img");
    for i in 0..cfg.n {
        let s = generate_one(&cfg, i);
        leukex_data::image_io::write_rgb(&images.join(format!("{}.tif", s.stem)), &s.image)
            .expect("write image");
    }
    let files = collect_images(std::slice::from_ref(&images)).expect("images");
    let out = dir.path().join("masks");
    let opts = SegmentOptions::default();

    let mut g = c.benchmark_group("segment");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(30));
    let one = generate_one(&cfg, 137).image;
    g.bench_function("one image 257 in memory", |b| {
        b.iter(|| segment(black_box(&one), &opts))
    });
    g.bench_function("260 images 257 files to masks", |b| {
        b.iter(|| segment_files(&files, &out, &opts, &|_| {}).expect("segment"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
