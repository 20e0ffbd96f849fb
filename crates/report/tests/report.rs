//! The report over a tiny study folder built here: hand-written runs and maps, the
//! evaluation computed by the real `leukex-evaluate`, so the numbers the page must
//! show come from a writer this crate does not control.

use leukex_report::synthetic::SyntheticStudy;
use leukex_report::{ReportError, write_report};
use serde_json::Value;
use std::path::Path;

const METHODS: [&str; 2] = ["grad-cam", "lrp-epsilon"];
const MODELS: [&str; 3] = ["resnet18", "resnet18-s1", "resnet18-shortcut"];

fn build(dir: &Path, o: &SyntheticStudy) {
    o.write(dir);
}

/// The default study without its shortcut variant, in a temporary folder.
fn clean_study() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    build(
        tmp.path(),
        &SyntheticStudy {
            shortcut: false,
            ..Default::default()
        },
    );
    tmp
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
    build(dir, &SyntheticStudy::default());
    let s = write_report(dir).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    assert_eq!(s.index, dir.join("report/index.html"));

    for id in MODELS {
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
    // The shortcut model's maps sit on the red cells: on the raw maps every method's
    // red-cell share rises; paper mode (red channel of seismic) loses the signed map's.
    let raw_mean = &html[html.find("<h4>Mode raw-mean</h4>").unwrap()..];
    assert!(raw_mean.contains("resnet18 grad-cam (+"));
    assert!(raw_mean.contains("resnet18 lrp-epsilon (+"));
    let paper = &html[html.find("<h4>Mode paper</h4>").unwrap()..];
    assert!(paper.contains("resnet18 lrp-epsilon (-"));
    assert!(html.contains("Spread across training seeds"));
    assert!(html.contains("<th>localisation AUC</th>"));
    assert!(html.contains("deletion-auc") && html.contains("0.4321 [0.4000, 0.4500]"));
    assert!(html.contains("Sanity (MPRT)") && html.contains("2 values"));
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
        &SyntheticStudy {
            shortcut: false,
            model_metrics: false,
            per_image: false,
            ..Default::default()
        },
    );
    std::fs::remove_file(dir.join("study.toml")).unwrap();
    // Without test predictions the heat-map images come from explain.json's labels.
    for id in ["resnet18", "resnet18-s1"] {
        std::fs::remove_file(dir.join("runs").join(id).join("test_predictions.csv")).unwrap();
    }
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
    assert!(dir.join("report/figures/fig7_maps_main_all.png").exists());
    assert!(
        dir.join("report/figures/fig7_maps_main_healthy.png")
            .exists()
    );
    assert!(!dir.join("report/figures/roc_main.png").exists());
}

#[test]
fn corrupt_summary_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, &SyntheticStudy::default());
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

    build(dir, &SyntheticStudy::default());
    let p = dir.join("study.json");
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    manifest["models"][2]["variant"] = "nope".into();
    std::fs::write(&p, manifest.to_string()).unwrap();
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains("study.json") && err.contains("nope"), "{err}");
}

#[test]
fn ratings_fill_table_2() {
    use leukex_web::round::{ItemKind, RoundItem};
    let tmp = clean_study();
    let dir = tmp.path();
    let mut store = leukex_web::store::Store::open(&dir.join("ratings.sqlite")).unwrap();
    let items: Vec<RoundItem> = ["Im001_1", "Im002_1"]
        .iter()
        .enumerate()
        .map(|(i, stem)| RoundItem {
            position: i,
            token: format!("t{i}"),
            map: format!("resnet18/{stem}/grad-cam"),
            kind: ItemKind::Main,
        })
        .collect();
    store.add_rater("ann", "haematologist", &items).unwrap();
    store.add_rating("ann", "t0", 3, true).unwrap();
    store.add_rating("ann", "t1", 1, false).unwrap();
    drop(store);
    let html = std::fs::read_to_string(write_report(dir).unwrap().index).unwrap();
    assert!(!html.contains("No ratings yet"));
    assert!(html.contains("Table 2, per method"));
    // 1 rater, 2 maps, 2 ratings; mean score (3 + 1) / 2; half say "morphology".
    assert!(html.contains("1 rater(s), 2 map(s), 2 rating(s)"), "{html}");
    assert!(html.contains("<td>2.00 ["));
    assert!(html.contains("<td>50.0</td>"));
}

#[test]
fn a_bad_per_image_row_names_the_file_and_row() {
    let tmp = clean_study();
    let dir = tmp.path();
    let path = dir.join("eval/per_image.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "cell_amount").unwrap();
    let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
    cells[col] = "lots".into();
    lines[3] = cells.join(",");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("row 4") && err.contains("cell_amount"),
        "{err}"
    );
}
