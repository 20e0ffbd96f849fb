//! End to end over the folder layout MAPS/<model>/<stem>/<method>.npy.

use leukex_data::MorphologyMask;
use leukex_evaluate::{EvalError, EvaluateOptions, evaluate_dir};

fn setup(dir: &std::path::Path, map_side: usize) {
    let masks = dir.join("masks");
    for (s, stem) in ["Im001_1", "Im002_0", "Im003_1", "Im004_0"]
        .iter()
        .enumerate()
    {
        // 8x8: nucleus in the top-left quarter, rbc bottom row, rest background
        let raw: Vec<u8> = (0..64)
            .map(|i| {
                if i % 8 < 4 && i / 8 < 4 {
                    1
                } else if i / 8 == 7 {
                    4
                } else {
                    0
                }
            })
            .collect();
        MorphologyMask::from_raw(8, 8, raw)
            .unwrap()
            .write_png(&masks.join(format!("{stem}.png")))
            .unwrap();
        for (m, method) in ["grad-cam", "lrp", "saliency"].iter().enumerate() {
            let v: Vec<f32> = (0..map_side * map_side)
                .map(|i| {
                    let (x, y) = (i % map_side, i / map_side);
                    let on_nucleus = x * 8 / map_side < 4 && y * 8 / map_side < 4;
                    (on_nucleus as u8 as f32) * (m as f32 + 1.0)
                        + ((i * 7 + s * 3 + m) % 5) as f32 * 0.1
                })
                .collect();
            let p = dir
                .join("maps/resnet18")
                .join(stem)
                .join(format!("{method}.npy"));
            leukex_data::npy::write_f32(&p, &[1, map_side, map_side], &v).unwrap();
        }
    }
    std::fs::write(
        dir.join("maps/resnet18/explain.json"),
        r#"{"images": {"Im001_1": {"predicted": 1, "score": 0.9}}}"#,
    )
    .unwrap();
}

#[test]
fn writes_all_outputs_with_one_row_per_image_method_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), 8);
    let mut opts = EvaluateOptions::new(
        dir.path().join("maps"),
        dir.path().join("masks"),
        dir.path().join("out"),
    );
    opts.bootstrap_resamples = 200;
    let rep = evaluate_dir(&opts).unwrap();
    // 4 images × (3 methods + 2 baselines) × 8 modes
    assert_eq!(rep.rows.len(), 4 * 5 * 8);
    for f in ["per_image.csv", "summary.csv", "summary.json", "tables.md"] {
        assert!(dir.path().join("out").join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(dir.path().join("out/per_image.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("resnet18,Im001_1,grad-cam,paper,1,1,true,0.9")),
        "{}",
        &csv[..400]
    );
    // The oracle localises perfectly.
    let oracle = rep
        .summary
        .iter()
        .find(|s| s.method == "@oracle" && s.mode == "raw-mean")
        .unwrap();
    assert_eq!(oracle.localisation["auc"].unwrap().mean, 1.0);
    assert_eq!(oracle.pooled.cell_share, Some(1.0));
    let tables = std::fs::read_to_string(dir.path().join("out/tables.md")).unwrap();
    assert!(tables.contains("## Mode `paper`") && tables.contains("Friedman"));
}

#[test]
fn a_map_on_another_grid_is_an_error_naming_both_files_unless_resized() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), 16);
    let mut opts = EvaluateOptions::new(
        dir.path().join("maps"),
        dir.path().join("masks"),
        dir.path().join("out"),
    );
    opts.bootstrap_resamples = 50;
    let e = evaluate_dir(&opts).unwrap_err();
    assert!(matches!(e, EvalError::SizeMismatch { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains(".npy")
            && msg.contains(".png")
            && msg.contains("16x16")
            && msg.contains("8x8"),
        "{msg}"
    );
    opts.resize_maps = true;
    assert!(evaluate_dir(&opts).is_ok());
}

#[test]
fn a_constant_map_is_undefined_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), 8);
    let p = dir.path().join("maps/resnet18/Im002_0/lrp.npy");
    leukex_data::npy::write_f32(&p, &[8, 8], &[0.5; 64]).unwrap();
    let mut opts = EvaluateOptions::new(
        dir.path().join("maps"),
        dir.path().join("masks"),
        dir.path().join("out"),
    );
    opts.bootstrap_resamples = 50;
    let rep = evaluate_dir(&opts).unwrap();
    let r = rep
        .rows
        .iter()
        .find(|r| r.stem == "Im002_0" && r.method == "lrp")
        .unwrap();
    assert!(r.shares.undefined.as_deref().unwrap().contains("constant"));
    assert_eq!(r.shares.cell_share, None);
    assert_eq!(r.localisation.auc, None);
    let csv = std::fs::read_to_string(dir.path().join("out/per_image.csv")).unwrap();
    assert!(csv.contains("undefined"));
}
