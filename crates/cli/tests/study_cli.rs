//! `leukex run` end to end on a tiny study, as a researcher runs it: the whole grid, a
//! second run that is all cache hits, a change that recomputes only what it touches, a run
//! killed at any moment that ends with the tables of an uninterrupted one, shards merged
//! into the tables of an unsharded run, and the same study driven by Snakemake.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{leukex, s, text};

/// Two seeds of one small network on 24 built-in crops: two models, so that shards differ.
const TINY: &str = r#"
name = "tiny"

[data]
synth = { n = 24, size = 64, seed = 5 }

[split]
test_per_class = 3
val_fraction = 0.0

[train]
weights = "none"
optimizer = "adam"
lr = 1e-3
epochs = 2
batch_size = 8
augment_per_class = 8
image_size = 32
seeds = [0, 1]

[[models]]
arch = "resnet18"

[explain]
paper = true
methods = ["gradient"]
batch = 4
images_per_cell = 4

[evaluate]
modes = ["paper", "raw-mean", "top-10"]
bootstrap = 50
"#;

/// The files whose bytes must not depend on how the study was run.
const TABLES: [&str; 3] = ["eval/per_image.csv", "eval/summary.csv", "eval/tables.md"];

fn write_study(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("study.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(study: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", s(study), "--out", s(out)];
    args.extend_from_slice(extra);
    let o = leukex(&args);
    let t = text(&o);
    assert!(o.status.success(), "leukex {args:?} failed:\n{t}");
    t
}

fn assert_same_tables(a: &Path, b: &Path) {
    for f in TABLES {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap_or_else(|e| panic!("{}: {e}", a.join(f).display())),
            std::fs::read(b.join(f)).unwrap_or_else(|e| panic!("{}: {e}", b.join(f).display())),
        );
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn a_tiny_study_runs_whole_then_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let study = write_study(tmp.path(), TINY);
    let out = tmp.path().join("out");
    let t = run(&study, &out, &[]);
    assert!(t.contains("0 found in the cache"), "{t}");
    for f in [
        "study.toml",
        "study.json",
        "split.json",
        "runs/resnet18-s0/model.safetensors",
        "runs/resnet18-s1/metrics.json",
        "maps/resnet18-s1/explain.json",
        "eval/tables.md",
        "run.log",
    ] {
        assert!(out.join(f).is_file(), "{f} missing:\n{t}");
    }
    // Six test images, each explained by the paper's four methods and the gradient.
    let explain: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("maps/resnet18-s0/explain.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(explain["images"].as_object().unwrap().len(), 6);
    assert_eq!(explain["methods"].as_array().unwrap().len(), 5);
    // Shares are fractions; every model x method x mode has its row. (A CAM of this tiny
    // network's 1x1 last layer is constant: its shares are undefined, and say so.)
    let summary = std::fs::read_to_string(out.join("eval/summary.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(summary.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let cell = headers
        .iter()
        .position(|h| h == "cell_pooled_share")
        .expect("a cell column");
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    // 2 models x (5 methods + 2 baselines) x 3 modes.
    assert_eq!(rows.len(), 2 * 7 * 3, "{summary}");
    for r in &rows {
        match r[cell].parse::<f64>() {
            Ok(v) => assert!((0.0..=1.0).contains(&v), "{r:?}"),
            Err(_) => assert!(&r[cell] == "undefined" && r[1].contains("cam"), "{r:?}"),
        }
    }

    // Nothing changed: every cell is a cache hit.
    let t = run(&study, &out, &[]);
    assert!(t.contains("0 cells run"), "{t}");

    // One more method: only the explain cells (that method alone), the evaluation and the
    // report run; the maps already made are not recomputed.
    let old_map = out
        .join("maps/resnet18-s0")
        .join(first_stem(&out))
        .join("gradient.npy");
    let before = std::fs::metadata(&old_map).unwrap().modified().unwrap();
    let more = TINY.replace(
        "methods = [\"gradient\"]",
        "methods = [\"gradient\", \"grad-cam++\"]",
    );
    std::fs::write(&study, more).unwrap();
    let t = run(&study, &out, &[]);
    assert!(!t.contains("train-"), "training ran again:\n{t}");
    assert_eq!(
        std::fs::metadata(&old_map).unwrap().modified().unwrap(),
        before
    );
    assert!(
        out.join("maps/resnet18-s0")
            .join(first_stem(&out))
            .join("grad-cam++.npy")
            .is_file()
    );
    let tables = std::fs::read_to_string(out.join("eval/tables.md")).unwrap();
    assert!(tables.contains("| resnet18-s1 | grad-cam++ |"), "{tables}");
}

fn first_stem(out: &Path) -> String {
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    split["test"][0].as_str().unwrap().to_string()
}

#[test]
fn bad_study_files_name_the_key_and_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let study = write_study(tmp.path(), &TINY.replace("epochs = 2", "epoch = 2"));
    let o = leukex(&["run", s(&study), "--out", s(&tmp.path().join("o"))]);
    let t = text(&o);
    assert!(!o.status.success());
    let line = TINY.lines().position(|l| l.starts_with("epochs")).unwrap() + 1;
    assert!(
        t.contains("study.toml") && t.contains("epoch") && t.contains(&format!("line {line}")),
        "{t}"
    );
    // The printed default studies are valid study files.
    for quick in [false, true] {
        let mut args = vec!["run", "--print-default"];
        if quick {
            args.push("--quick");
        }
        let o = leukex(&args);
        assert!(o.status.success(), "{}", text(&o));
        let p = write_study(
            &tmp.path().join(format!("d{quick}")),
            &String::from_utf8_lossy(&o.stdout),
        );
        let plan = leukex(&["run", s(&p), "--plan"]);
        assert!(plan.status.success(), "{}", text(&plan));
    }
}

#[test]
fn the_plan_lists_every_cell_with_its_command_and_a_cell_runs_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let study = write_study(tmp.path(), TINY);
    let out = tmp.path().join("out");
    let o = leukex(&["run", s(&study), "--out", s(&out), "--plan"]);
    assert!(o.status.success(), "{}", text(&o));
    let cells: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = cells.iter().map(|c| c["id"].as_str().unwrap()).collect();
    // data, split, 2 x (train + 2 explain batches of 4 and 2 images), evaluate, report.
    assert_eq!(ids.len(), 2 + 2 * 3 + 2, "{ids:?}");
    assert!(ids.contains(&"explain-resnet18-s1-1"), "{ids:?}");
    assert!(cells.iter().all(|c| c["done"] == false));
    // A cell whose needs are not done is refused, naming the need.
    let o = leukex(&[
        "run",
        s(&study),
        "--out",
        s(&out),
        "--cell",
        "train-resnet18-s0",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("needs cell data-main"), "{}", text(&o));
    for id in ["data-main", "split"] {
        run(&study, &out, &["--cell", id]);
    }
    assert!(out.join("split.json").is_file());
    assert!(!out.join("runs").exists());
}

/// Kills `leukex run` after `after`, then reruns it to the end.
fn kill_then_finish(study: &Path, out: &Path, after: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["run", s(study), "--out", s(out)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    run(study, out, &[]);
}

#[test]
#[ignore = "slow: several runs of the tiny study (run by .ci/run)"]
fn killed_at_any_moment_a_rerun_ends_with_the_tables_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let study = write_study(tmp.path(), TINY);
    let whole = tmp.path().join("whole");
    let t0 = Instant::now();
    run(&study, &whole, &[]);
    let total = t0.elapsed();
    // Kill points spread over the run: data, training, explaining, evaluating.
    for (i, frac) in [0.03, 0.2, 0.45, 0.7, 0.9].into_iter().enumerate() {
        let out = tmp.path().join(format!("killed{i}"));
        kill_then_finish(&study, &out, total.mul_f64(frac));
        assert_same_tables(&whole, &out);
        // Twice in one run folder, too.
        if i == 1 {
            let out2 = tmp.path().join("killed-twice");
            let mut child = Command::new(env!("CARGO_BIN_EXE_leukex"))
                .args(["run", s(&study), "--out", s(&out2)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(total.mul_f64(0.3));
            let _ = child.kill();
            let _ = child.wait();
            kill_then_finish(&study, &out2, total.mul_f64(0.3));
            assert_same_tables(&whole, &out2);
        }
    }
}

#[test]
#[ignore = "slow: three runs of the tiny study (run by .ci/run)"]
fn shards_merged_give_the_tables_of_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let study = write_study(tmp.path(), TINY);
    let whole = tmp.path().join("whole");
    run(&study, &whole, &[]);
    let (a, b) = (tmp.path().join("shard1"), tmp.path().join("shard2"));
    run(&study, &a, &["--shard", "1/2"]);
    run(&study, &b, &["--shard", "2/2"]);
    // Each shard trained one of the two models.
    assert!(a.join("runs/resnet18-s0").is_dir() && !a.join("runs/resnet18-s1").exists());
    assert!(b.join("runs/resnet18-s1").is_dir() && !b.join("runs/resnet18-s0").exists());
    let merged = tmp.path().join("merged");
    let o = leukex(&["merge", s(&a), s(&b), "--out", s(&merged)]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_tables(&whole, &merged);
    // One shard alone cannot be merged into the whole study.
    let o = leukex(&["merge", s(&a), "--out", s(&tmp.path().join("half"))]);
    assert!(!o.status.success());
    assert!(text(&o).contains("resnet18-s1"), "{}", text(&o));
    // Shards of another study are refused, naming the difference.
    let other_study = write_study(
        &tmp.path().join("other"),
        &TINY.replace("lr = 1e-3", "lr = 2e-3"),
    );
    let c = tmp.path().join("other-shard2");
    run(&other_study, &c, &["--shard", "2/2"]);
    let o = leukex(&["merge", s(&a), s(&c), "--out", s(&tmp.path().join("mixed"))]);
    assert!(!o.status.success());
    assert!(text(&o).contains("train.lr"), "{}", text(&o));
}

#[test]
#[ignore = "needs Snakemake: LEUKEX_SNAKEMAKE=path/to/snakemake (run by .ci/run)"]
fn snakemake_runs_the_study_cell_by_cell_to_the_same_tables() {
    let snakemake = std::env::var("LEUKEX_SNAKEMAKE")
        .expect("set LEUKEX_SNAKEMAKE to a snakemake executable (.ci/run makes one)");
    let tmp = tempfile::tempdir().unwrap();
    let study = write_study(tmp.path(), TINY);
    let whole = tmp.path().join("whole");
    run(&study, &whole, &[]);
    let out = tmp.path().join("snake");
    let snakefile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows/Snakefile");
    let o = Command::new(&snakemake)
        .args([
            "-s",
            s(&snakefile),
            "--cores",
            "2",
            "--directory",
            s(tmp.path()),
        ])
        .arg("--config")
        .arg(format!("study={}", s(&study)))
        .arg(format!("out={}", s(&out)))
        .arg(format!("leukex={}", env!("CARGO_BIN_EXE_leukex")))
        .output()
        .unwrap();
    assert!(o.status.success(), "snakemake failed:\n{}", text(&o));
    assert_same_tables(&whole, &out);
    // Every cell ran as its own job.
    let log = text(&o);
    assert!(log.contains("explain-resnet18-s1-1"), "{log}");
}
