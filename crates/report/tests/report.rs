//! The report over a tiny study folder built here: hand-written runs and maps, the
//! evaluation computed by the real `leukex-evaluate`, so the numbers the page must
//! show come from a writer this crate does not control.

use leukex_data::MorphologyMask;
use leukex_evaluate::{EvaluateOptions, evaluate_dir};
use leukex_report::{ReportError, write_report};
use serde_json::{Value, json};
use std::path::Path;

const STEMS: [&str; 6] = [
    "Im001_1", "Im002_1", "Im003_1", "Im131_0", "Im132_0", "Im133_0",
];
const METHODS: [&str; 2] = ["grad-cam", "lrp-epsilon"];
const SIDE: usize = 16;

struct Options {
    shortcut: bool,
    model_metrics: bool,
    per_image: bool,
}

const FULL: Options = Options {
    shortcut: true,
    model_metrics: true,
    per_image: true,
};

/// (model id, group, seed, variant)
fn models(o: &Options) -> Vec<(&'static str, &'static str, u64, &'static str)> {
    let mut v = vec![
        ("resnet18", "resnet18", 0, "main"),
        ("resnet18-s1", "resnet18", 1, "main"),
    ];
    if o.shortcut {
        v.push(("resnet18-shortcut", "resnet18-shortcut", 0, "shortcut"));
    }
    v
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn build(dir: &Path, o: &Options) {
    let data = dir.join("data");
    // 16x16: nucleus top-left block, cytoplasm ring right of it, red cells in the
    // bottom rows, background elsewhere.
    let mask: Vec<u8> = (0..SIDE * SIDE)
        .map(|i| {
            let (x, y) = (i % SIDE, i / SIDE);
            if x < 5 && y < 5 {
                1
            } else if x < 8 && y < 8 {
                2
            } else if y >= 12 {
                4
            } else {
                0
            }
        })
        .collect();
    for (s, stem) in STEMS.iter().enumerate() {
        MorphologyMask::from_raw(SIDE as u32, SIDE as u32, mask.clone())
            .unwrap()
            .write_png(&data.join("masks").join(format!("{stem}.png")))
            .unwrap();
        let img = image::RgbImage::from_fn(SIDE as u32, SIDE as u32, |x, y| {
            image::Rgb([(x * 15) as u8, (y * 15) as u8, (s * 40) as u8])
        });
        img.save(data.join(format!("{stem}.png"))).unwrap();
    }
    for (id, _, seed, _) in models(o) {
        let run = dir.join("runs").join(id);
        write(
            &run.join("model.json"),
            r#"{"format": "leukex-model/1", "classes": ["healthy", "all"], "positive_class": 1}"#,
        );
        let metrics = json!({
            "test": {"n": 6, "loss": 0.4, "accuracy": 5.0 / 6.0, "positive_class": 1,
                     "sensitivity": 1.0, "specificity": 2.0 / 3.0, "precision": 0.75, "f1": 6.0 / 7.0,
                     "roc_auc": 0.8888888888888888, "confusion": [[2, 1], [0, 3]]},
            "val": null, "best_epoch": 1, "epochs_run": 2, "stopped_early": false,
            "history": [
                {"epoch": 0, "lr": 0.001, "train_loss": 0.7, "train_accuracy": 0.5, "val_loss": 0.69,
                 "val_accuracy": 0.5, "seconds": 1.0, "images_per_second": 10.0},
                {"epoch": 1, "lr": 0.001, "train_loss": 0.4, "train_accuracy": 0.8, "val_loss": 0.5,
                 "val_accuracy": 0.75, "seconds": 1.0, "images_per_second": 10.0}],
            "train_seconds": 2.0
        });
        write(&run.join("metrics.json"), &metrics.to_string());
        // Im131_0 is predicted "all": the one wrong prediction.
        let mut csv = String::from("name,label,predicted,p_healthy,p_all\n");
        for (i, stem) in STEMS.iter().enumerate() {
            let label = if stem.ends_with("_1") {
                "all"
            } else {
                "healthy"
            };
            let predicted = if *stem == "Im131_0" { "all" } else { label };
            let p_all = if predicted == "all" {
                0.6 + 0.05 * i as f64
            } else {
                0.2
            };
            csv.push_str(&format!(
                "{stem},{label},{predicted},{:.6},{:.6}\n",
                1.0 - p_all,
                p_all
            ));
        }
        write(&run.join("test_predictions.csv"), &csv);

        let maps = dir.join("maps").join(id);
        let mut images = serde_json::Map::new();
        for (s, stem) in STEMS.iter().enumerate() {
            let true_label = i64::from(stem.ends_with("_1"));
            images.insert(
                stem.to_string(),
                json!({"source": data.join(format!("{stem}.png")), "true_label": true_label,
                       "target": true_label}),
            );
            for (m, method) in METHODS.iter().enumerate() {
                let v: Vec<f32> = (0..SIDE * SIDE)
                    .map(|i| {
                        let (x, y) = (i % SIDE, i / SIDE);
                        let focus = if id.contains("shortcut") {
                            y >= 12
                        } else {
                            x < 7 && y < 7
                        };
                        let signed = if m == 1 { -0.3 } else { 0.0 };
                        (focus as u8 as f32) * (1.0 + m as f32 + seed as f32)
                            + ((i * 7 + s * 3 + m + seed as usize) % 5) as f32 * 0.1
                            + signed
                    })
                    .collect();
                leukex_data::npy::write_f32(
                    &maps.join(stem).join(format!("{method}.npy")),
                    &[SIDE, SIDE],
                    &v,
                )
                .unwrap();
            }
        }
        write(
            &maps.join("explain.json"),
            &json!({"target": "true", "images": images}).to_string(),
        );
    }
    let mut variants = vec![json!({"id": "main", "data": "data", "masks": "data/masks",
                                    "eval": "eval", "shortcut": null})];
    if o.shortcut {
        variants.push(
            json!({"id": "shortcut", "data": "data", "masks": "data/masks",
                             "eval": "eval-shortcut", "shortcut": "rbc-density"}),
        );
    }
    for v in &variants {
        let ids: Vec<String> = models(o)
            .iter()
            .filter(|m| m.3 == v["id"])
            .map(|m| m.0.to_string())
            .collect();
        let eval = dir.join(v["eval"].as_str().unwrap());
        let mut opts = EvaluateOptions::new(dir.join("maps"), data.join("masks"), &eval);
        opts.models = Some(ids.clone());
        opts.bootstrap_resamples = 200;
        evaluate_dir(&opts).unwrap();
        if !o.per_image {
            std::fs::remove_file(eval.join("per_image.csv")).unwrap();
        }
        if o.model_metrics {
            for id in &ids {
                write(
                    &eval.join("models").join(id).join("model_metrics.json"),
                    &json!({"model": id, "faithfulness": [
                        {"method": "grad-cam", "metric": "deletion-auc", "mean": 0.4321, "ci_lo": 0.4, "ci_hi": 0.45}],
                        "sanity": []}).to_string(),
                );
            }
        }
    }
    let manifest = json!({
        "format": "leukex-study-1", "name": "tiny <study>", "quick": true,
        "data": {"kind": "synth", "description": "hand-made 16 px crops", "reproduction": false,
                 "groups_known": false},
        "variants": variants,
        "models": models(o).iter().map(|(id, group, seed, variant)| json!({
            "id": id, "group": group, "arch": "resnet18", "seed": seed, "variant": variant,
            "image_size": 16, "weights": "none", "epochs": 2, "run": format!("runs/{id}"),
            "maps": format!("maps/{id}")})).collect::<Vec<_>>(),
        "methods": METHODS.iter().map(|m| json!({"id": m, "paper": *m == "grad-cam"})).collect::<Vec<_>>(),
        "notes": ["a tiny study for tests"]
    });
    write(&dir.join("study.json"), &manifest.to_string());
    write(
        &dir.join("study.toml"),
        "[study]\nname = \"tiny <study>\" # & more\n",
    );
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("–".into(), |v| format!("{:.2}", v * 100.0))
}

#[test]
fn full_study_report_has_every_part_and_the_evaluation_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    // LEUKEX_REPORT_KEEP=DIR keeps the study (and its report) there, to look at.
    let kept = std::env::var_os("LEUKEX_REPORT_KEEP").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(tmp.path());
    build(dir, &FULL);
    let s = write_report(dir).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    assert_eq!(s.index, dir.join("report/index.html"));

    for (id, ..) in models(&FULL) {
        assert!(html.contains(id), "model {id} not named");
    }
    for m in METHODS {
        assert!(html.contains(m), "method {m} not named");
    }
    // Escaped title and study.toml.
    assert!(html.contains("tiny &lt;study&gt;"));
    assert!(html.contains("name = &quot;tiny &lt;study&gt;&quot; # &amp; more"));
    assert!(!html.contains("<study>"));
    // Warnings and the parts that are present.
    assert!(html.contains("Not a reproduction"));
    assert!(html.contains("Leakage cannot be ruled out"));
    assert!(html.contains("The shortcut experiment"));
    assert!(html.contains("Spread across training seeds"));
    assert!(html.contains("deletion-auc") && html.contains("0.4321"));
    assert!(html.contains("No ratings yet"));
    assert!(html.contains("leukex serve DIR"));
    // Fig. 11 names the classes, not 0/1.
    assert!(html.contains("grad-cam/paper/healthy/nucleus"));
    assert!(html.contains("grad-cam/paper/all/nucleus"));

    // Every number of the main variant's Fig. 9 table equals summary.json's (read
    // here as plain JSON, not through the crate's structs).
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval/summary.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for r in summary["summary"].as_array().unwrap() {
        let (model, method, mode) = (
            r["model"].as_str().unwrap(),
            r["method"].as_str().unwrap(),
            r["mode"].as_str().unwrap(),
        );
        let cell = pct(&r["pooled"]["cell_share"]);
        let rbc = pct(&r["pooled"]["share"][4]);
        let key = format!("<span title=\"{model}/{method}/{mode}/cell\">{cell}</span>");
        assert!(html.contains(&key), "{key} missing");
        let key = format!("<span title=\"{model}/{method}/{mode}/rbc\">{rbc}</span>");
        assert!(html.contains(&key), "{key} missing");
        checked += 1;
    }
    // 2 models × (2 methods + 2 baselines) × 8 modes.
    assert_eq!(checked, 2 * 4 * 8);
    // A number that is not in summary.json is not shown under its key.
    assert!(!html.contains("<span title=\"resnet18/grad-cam/paper/cell\">100.01</span>"));
    // Classification numbers from metrics.json.
    assert!(html.contains("<span title=\"resnet18/accuracy\">83.33</span>"));
    assert!(html.contains("<span title=\"resnet18/roc_auc\">0.889</span>"));

    // Figures: every one as a PNG that decodes and an SVG document, referenced by the page.
    assert!(
        s.figures.len() >= 2 * 12,
        "{} figure files",
        s.figures.len()
    );
    for f in &s.figures {
        assert!(f.is_file(), "{} missing", f.display());
        let rel = f
            .strip_prefix(dir.join("report"))
            .unwrap()
            .to_str()
            .unwrap();
        assert!(html.contains(rel), "{rel} not linked");
        match f.extension().unwrap().to_str().unwrap() {
            "png" => {
                let decoder =
                    png::Decoder::new(std::io::BufReader::new(std::fs::File::open(f).unwrap()));
                let mut reader = decoder.read_info().unwrap();
                let mut buf = vec![0; reader.output_buffer_size().unwrap()];
                let info = reader.next_frame(&mut buf).unwrap();
                assert!(info.width > 100 && info.height > 100);
                // Not a blank image: some dark pixels (text, axes).
                assert!(buf.iter().any(|&b| b < 60), "{} is blank", f.display());
            }
            "svg" => {
                let t = std::fs::read_to_string(f).unwrap();
                assert!(t.trim_start().starts_with("<svg") || t.starts_with("<?xml"));
                assert!(t.trim_end().ends_with("</svg>"), "{}", f.display());
                assert_eq!(t.matches("<svg").count(), 1);
                assert!(t.contains("<text"), "{} has no text", f.display());
            }
            other => panic!("unexpected figure type {other}"),
        }
    }
    for name in [
        "fig7_maps_main_all",
        "fig7_maps_main_healthy",
        "fig8_overlays_main_all",
        "fig9_main_paper",
        "fig9_main_raw-mean",
        "fig10_main_paper",
        "fig11_main_paper",
        "roc_main",
        "training_resnet18",
        "shortcut_paper",
    ] {
        assert!(
            dir.join(format!("report/figures/{name}.png")).is_file(),
            "{name}"
        );
        assert!(
            dir.join(format!("report/figures/{name}.svg")).is_file(),
            "{name}"
        );
    }
}

#[test]
fn optional_parts_may_be_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(
        dir,
        &Options {
            shortcut: false,
            model_metrics: false,
            per_image: false,
        },
    );
    std::fs::remove_file(dir.join("study.toml")).unwrap();
    // A ratings file that is not a database is reported on the page, not fatal.
    std::fs::write(dir.join("ratings.sqlite"), b"not a database").unwrap();
    let s = write_report(dir).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    assert!(!html.contains("The shortcut experiment"));
    assert!(html.contains("No faithfulness or sanity metrics"));
    assert!(html.contains("No per_image.csv"));
    assert!(html.contains("No study.toml"));
    assert!(html.contains("could not be summarised"));
    assert!(!dir.join("report/figures/shortcut_paper.png").exists());
}

#[test]
fn corrupt_summary_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, &FULL);
    let path = dir.join("eval-shortcut/summary.json");
    std::fs::write(&path, "{\"modes\": [\"paper\"], \"summ").unwrap();
    let err = write_report(dir).unwrap_err();
    assert!(matches!(err, ReportError::Invalid { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!dir.join("report/index.html").exists());
}

#[test]
fn missing_manifest_and_unknown_variant_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let err = write_report(dir).unwrap_err().to_string();
    assert!(
        err.contains("study.json") && err.contains("missing"),
        "{err}"
    );

    build(dir, &FULL);
    let p = dir.join("study.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"variant\":\"shortcut\"", "\"variant\":\"nope\"");
    std::fs::write(&p, text).unwrap();
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains("study.json") && err.contains("nope"), "{err}");
}
