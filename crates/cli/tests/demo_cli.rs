//! `leukex demo` (the README's main job) is `leukex run` on the built-in study: every stage
//! on the built-in data, finished cells kept on a second run. Tiny settings: the point is
//! the chain, not the model.

mod common;

use common::quick_demo as demo;

#[test]
fn demo_runs_the_whole_study_and_keeps_finished_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = demo(&out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "demo failed:\n{err}");
    for f in [
        "study.toml",
        "study.json",
        "split.json",
        "data/manifest.csv",
        "runs/resnet18/model.safetensors",
        "runs/resnet18/model.json",
        "runs/resnet18/metrics.json",
        "maps/resnet18/explain.json",
        "eval/tables.md",
        "eval/summary.csv",
        // The quick study asks for deletion, insertion and the MPRT of the gradient.
        "eval/models/resnet18/faithfulness.csv",
        "eval/models/resnet18/sanity.csv",
        "eval/models/resnet18/model_metrics.json",
        "report/index.html",
        "run.log",
    ] {
        assert!(out.join(f).is_file(), "{f} missing; stderr:\n{err}");
    }
    // A finished run keeps its model, not its optimiser state.
    assert!(!out.join("runs/resnet18/checkpoint").exists());
    // Heat maps of exactly the 20 never-seen test images of the quick study: the paper's
    // four methods with its conventions and the two asked for with leukex's defaults.
    let methods = [
        "lrp-epsilon_innvestigate_init-score",
        "deep-taylor_innvestigate_init-score",
        "input-x-gradient",
        "grad-cam_matlab",
        "gradient",
        "grad-cam",
    ];
    let maps = out.join("maps/resnet18");
    let stems: Vec<_> = std::fs::read_dir(&maps)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(stems.len(), 20);
    for s in &stems {
        for m in methods {
            assert!(
                s.path().join(format!("{m}.npy")).is_file(),
                "{:?} lacks {m}",
                s.path()
            );
        }
    }
    let tables = std::fs::read_to_string(out.join("eval/tables.md")).unwrap();
    for m in methods {
        assert!(
            tables.contains(&format!("| resnet18 | {m} |")),
            "{m}: {tables}"
        );
    }
    // `leukex serve` reads the study folder as it is: every map, with its image and mask.
    let study = leukex_web::study::Study::open(&out).unwrap();
    assert_eq!(study.maps.len(), 20 * methods.len());
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
    assert!(err.contains("0 cells run"), "{err}");
}
