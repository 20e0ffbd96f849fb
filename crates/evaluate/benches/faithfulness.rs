//! Speed of the faithfulness metrics on one 3×224×224 image with a cheap
//! fake model (two classes, one dot product over the image per class), so
//! the time is the metric's own: building the perturbed copies, ranking,
//! and for ROAD the imputation solves. With a real CNN the forward passes
//! dominate: multiply the pass counts in the bench names by the model's
//! time per image.

use criterion::{Criterion, criterion_group, criterion_main};
use leukex_evaluate::BoxError;
use leukex_evaluate::faithfulness::{
    Classifier, Image, InsertionOptions, PixelFlippingOptions, RegionPerturbationOptions,
    RoadOptions, insertion, pixel_flipping, region_perturbation, road,
};
use rand::{Rng, SeedableRng};

const C: usize = 3;
const S: usize = 224;
const D: usize = C * S * S;

fn data() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let image: Vec<f32> = (0..D)
        .map(|i| {
            let (y, x) = ((i / S) % S, i % S);
            0.5 + 0.3 * ((x as f32 / 20.0).sin() * (y as f32 / 30.0).cos())
                + rng.random_range(-0.1..0.1)
        })
        .collect();
    let map: Vec<f32> = (0..S * S)
        .map(|i| {
            let (y, x) = ((i / S) as f32, (i % S) as f32);
            1.0 - ((x - 100.0).powi(2) + (y - 120.0).powi(2)) / 5000.0 + rng.random_range(-0.2..0.2)
        })
        .collect();
    let weights: Vec<f32> = (0..D).map(|_| rng.random_range(-1.0..1.0)).collect();
    (image, map, weights)
}

fn model(weights: &[f32]) -> Classifier<'_> {
    Classifier::new(0, move |x: &[f32], n: usize| {
        let mut out = Vec::with_capacity(2 * n);
        for img in x.chunks(D) {
            let s: f32 = img.iter().zip(weights).map(|(a, b)| a * b).sum();
            out.push((s / 100.0).tanh());
            out.push(0.0);
        }
        Ok::<_, BoxError>(out)
    })
    .with_batch(64)
}

fn bench(c: &mut Criterion) {
    let (data, map, weights) = data();
    let image = Image::new(&data, C, S, S).unwrap();
    let mut g = c.benchmark_group("faithfulness 3x224x224");
    g.sample_size(10);
    g.bench_function("pixel flipping, 672 features a step (225 passes)", |b| {
        let opts = PixelFlippingOptions {
            features_in_step: C * S,
            ..Default::default()
        };
        b.iter(|| pixel_flipping(image, &map, &opts, &mut model(&weights)).unwrap())
    });
    g.bench_function(
        "pixel flipping, mean baseline, 672 a step (225 passes)",
        |b| {
            let opts = PixelFlippingOptions {
                features_in_step: C * S,
                baseline: leukex_evaluate::Baseline::Mean,
                ..Default::default()
            };
            b.iter(|| pixel_flipping(image, &map, &opts, &mut model(&weights)).unwrap())
        },
    );
    g.bench_function("insertion, 672 features a step (225 passes)", |b| {
        let opts = InsertionOptions {
            features_in_step: C * S,
            ..Default::default()
        };
        b.iter(|| insertion(image, &map, &opts, &mut model(&weights)).unwrap())
    });
    g.bench_function("region perturbation, 8x8, 100 regions (101 passes)", |b| {
        let opts = RegionPerturbationOptions::default();
        b.iter(|| region_perturbation(image, &map, &opts, &mut model(&weights)).unwrap())
    });
    for p in [10.0, 50.0, 90.0, 99.0] {
        g.bench_function(format!("ROAD, one percentage: {p} % (1 pass)"), |b| {
            let opts = RoadOptions {
                percentages: vec![p],
                ..Default::default()
            };
            b.iter(|| road(image, &map, &opts, &mut model(&weights)).unwrap())
        });
    }
    if std::env::var_os("LEUKEX_BENCH_ROAD_FULL").is_some() {
        g.bench_function("ROAD, default 50 percentages (50 passes)", |b| {
            let opts = RoadOptions::default();
            b.iter(|| road(image, &map, &opts, &mut model(&weights)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
