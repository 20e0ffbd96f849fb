//! `leukex demo` (the README's main job) runs every stage on the built-in data and keeps
//! finished stages on a second run. Tiny settings: the point is the chain, not the model.

use std::process::Command;

fn demo(out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["demo", "--out"])
        .arg(out)
        .args(["--epochs", "1", "--per-class", "8", "--size", "32"])
        .args(["--methods", "gradient,grad-cam"])
        .output()
        .expect("run leukex")
}

#[test]
fn demo_runs_the_whole_study_and_keeps_finished_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = demo(&out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "demo failed:\n{err}");
    for f in [
        "data/manifest.csv",
        "runs/resnet18/model.safetensors",
        "runs/resnet18/model.json",
        "runs/resnet18/metrics.json",
        "eval/tables.md",
        "eval/summary.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing; stderr:\n{err}");
    }
    // Heat maps of exactly the 60 never-seen test images, both methods.
    let maps = out.join("maps/resnet18");
    let stems: Vec<_> = std::fs::read_dir(&maps)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(stems.len(), 60);
    for s in &stems {
        for m in ["gradient.npy", "grad-cam.npy"] {
            assert!(s.path().join(m).is_file(), "{:?} lacks {m}", s.path());
        }
    }
    let tables = std::fs::read_to_string(out.join("eval/tables.md")).unwrap();
    assert!(tables.contains("| resnet18 | grad-cam |"), "{tables}");
    // `leukex serve` reads the demo folder as it is: every map, with its image and mask.
    let study = leukex_web::study::Study::open(&out).unwrap();
    assert_eq!(study.maps.len(), 60 * 2);
    assert!(study.images.iter().all(|i| i.has_image && i.has_mask));
    assert!(
        study
            .maps
            .iter()
            .all(|m| m.true_class.is_some() && m.correct.is_some())
    );

    let again = demo(&out);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "second demo failed:\n{err}");
    assert!(err.contains("kept the finished run"), "{err}");
    assert!(err.contains("synthetic data: kept"), "{err}");
}
