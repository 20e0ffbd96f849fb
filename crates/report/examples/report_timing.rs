//! How long a report of a study of the size takes: 5 models × 10 methods ×
//! 60 test images (128 px maps), the evaluation done beforehand by leukex-evaluate.
//! `cargo run --release -p leukex-report --example report_timing [-- DIR]`
//! (DIR keeps the study; a temporary folder otherwise).

use leukex_report::synthetic::SyntheticStudy;
use std::time::Instant;

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let study = SyntheticStudy {
        archs: [
            "googlenet",
            "resnet18",
            "resnet50",
            "vgg19",
            "efficientnet-lite0",
        ]
        .map(String::from)
        .to_vec(),
        seeds: 1,
        methods: (0..10).map(|k| format!("method-{k}")).collect(),
        images: 60,
        side: 128,
        shortcut: false,
        model_metrics: true,
        per_image: true,
        resamples: 200,
    };
    let t = Instant::now();
    study.write(&dir);
    println!(
        "study written and evaluated in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for run in 1..=3 {
        let s = leukex_report::write_report(&dir).unwrap();
        println!(
            "report {run}: {} figure files in {:.2} s",
            s.figures.len(),
            s.seconds
        );
    }
}
