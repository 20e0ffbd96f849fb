//! A whole run on a small synthetic ALL-IDB2: outputs, determinism, resume after a kill,
//! and the refusal to overwrite a run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use leukex_data::dataset::{Dataset, OpenOptions};
use leukex_data::split::{Split, SplitConfig, SplitItem, TestSize};
use leukex_models::Arch;
use leukex_synth::{SynthConfig, write_dataset};
use leukex_train::{Event, Init, RunOutcome, Schedule, TrainConfig, train};

fn synth(dir: &Path) -> (Dataset, Split) {
    let cfg = SynthConfig {
        n: 24,
        seed: 3,
        size: 64,
        ..SynthConfig::default()
    };
    write_dataset(&cfg, dir, &|_| {}).unwrap();
    let ds = Dataset::open(dir, &OpenOptions::default()).unwrap();
    let items: Vec<SplitItem> = ds
        .samples
        .iter()
        .map(|s| SplitItem {
            stem: s.stem.clone(),
            label: s.label,
            group: None,
        })
        .collect();
    let split = Split::stratified(
        &items,
        &ds.classes,
        &SplitConfig {
            seed: 0,
            test: TestSize::PerClass(4),
            val_fraction: 0.25,
            group_split: false,
        },
    )
    .unwrap();
    (ds, split)
}

fn config() -> TrainConfig {
    TrainConfig {
        image_size: 32,
        lr: 1e-3,
        epochs: 3,
        batch_size: 8,
        augment_per_class: 16,
        schedule: Schedule::Cosine { min_lr: 0.0 },
        balanced_batches: true,
        ..TrainConfig::paper(Arch::ResNet18)
    }
}

/// The numbers of a run without its timings.
fn numbers(o: &RunOutcome) -> String {
    let mut o = o.clone();
    o.train_seconds = 0.0;
    for h in &mut o.history {
        h.seconds = 0.0;
        h.images_per_second = 0.0;
    }
    serde_json::to_string(&o).unwrap()
}

#[test]
fn a_run_writes_its_outputs_and_resumes_to_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let (ds, split) = synth(&tmp.path().join("data"));
    let cfg = config();
    let positive = 1;

    let a = tmp.path().join("a");
    let out_a = train(
        &a,
        &cfg,
        &ds,
        &split,
        Init::Scratch,
        positive,
        false,
        &mut |_| {},
    )
    .unwrap();
    for f in [
        "model.safetensors",
        "model.json",
        "metrics.json",
        "test_predictions.csv",
        "split.json",
        "checkpoint/state.json",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    assert_eq!(out_a.history.len(), 3);
    assert_eq!(out_a.test.n, 8);
    assert!(out_a.history.iter().all(|h| h.train_loss.is_finite()));
    // The cosine schedule: epoch 0 at the base rate, then lower.
    assert_eq!(out_a.history[0].lr, 1e-3);
    assert!(out_a.history[2].lr < out_a.history[1].lr);
    let (card, weights) = leukex_train::ModelCard::read(&a).unwrap();
    assert_eq!(card.classes, ds.classes);
    assert_eq!(card.model.num_classes, 2);
    assert!(weights.is_file());

    // Same seed, same numbers.
    let b = tmp.path().join("b");
    let out_b = train(
        &b,
        &cfg,
        &ds,
        &split,
        Init::Scratch,
        positive,
        false,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(numbers(&out_a), numbers(&out_b));

    // Killed at the start of epoch 1, then resumed: the numbers of the uninterrupted run.
    let c = tmp.path().join("c");
    let killed = catch_unwind(AssertUnwindSafe(|| {
        train(
            &c,
            &cfg,
            &ds,
            &split,
            Init::Scratch,
            positive,
            false,
            &mut |e| {
                if let Event::EpochStart { epoch: 1, .. } = e {
                    panic!("killed");
                }
            },
        )
    }));
    assert!(killed.is_err());
    assert!(!c.join("metrics.json").exists());
    let again = train(
        &c,
        &cfg,
        &ds,
        &split,
        Init::Scratch,
        positive,
        false,
        &mut |_| {},
    );
    let msg = again
        .expect_err("a checkpoint without --resume is refused")
        .to_string();
    assert!(msg.contains("--resume"), "{msg}");
    let mut started_at = None;
    let out_c = train(
        &c,
        &cfg,
        &ds,
        &split,
        Init::Scratch,
        positive,
        true,
        &mut |e| {
            if let Event::Ready { start_epoch, .. } = e {
                started_at = Some(start_epoch);
            }
        },
    )
    .unwrap();
    assert_eq!(started_at, Some(1));
    assert_eq!(numbers(&out_a), numbers(&out_c));

    // Other settings cannot resume this run; a finished run is not overwritten.
    let other = TrainConfig {
        lr: 0.5,
        ..cfg.clone()
    };
    let msg = train(
        &c,
        &other,
        &ds,
        &split,
        Init::Scratch,
        positive,
        true,
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(msg.contains("other settings"), "{msg}");
}
