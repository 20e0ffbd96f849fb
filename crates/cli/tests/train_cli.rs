//! `leukex train` on the command line: options reach the run (model.json), the positive
//! class is chosen by name, and bad combinations are refused with a clear message.

use std::process::Command;

fn leukex(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(args)
        .output()
        .expect("run leukex")
}

#[test]
fn train_records_its_settings_and_refuses_bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let o = leukex(&["synth", "--out", data_s, "--n", "24", "--size", "64"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let common = [
        "train",
        data_s,
        "--arch",
        "resnet18",
        "--size",
        "32",
        "--test-per-class",
        "4",
        "--augment-per-class",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "4",
    ];
    let mut args = common.to_vec();
    args.extend([
        "--out",
        run_s,
        "--optimizer",
        "nesterov",
        "--momentum",
        "0.8",
        "--schedule",
        "step:1:0.5",
        "--weight-decay",
        "0",
        "--positive-class",
        "healthy",
        "--bn-statistics",
        "moving",
    ]);
    let o = leukex(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("positive class \"healthy\""), "{err}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    let hp = &card["hyper_parameters"];
    assert_eq!(hp["optimizer"]["name"], "sgd");
    assert_eq!(hp["optimizer"]["nesterov"], true);
    assert_eq!(hp["optimizer"]["momentum"], 0.8);
    assert_eq!(hp["schedule"]["name"], "step");
    assert_eq!(hp["bn_statistics"], "moving");
    assert_eq!(hp["image_size"], 32);
    assert_eq!(card["positive_class"], 0);
    assert_eq!(card["classes"], serde_json::json!(["healthy", "all"]));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["test"]["n"], 8);

    // The same folder again without --resume: refused, nothing overwritten.
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let o = leukex(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    assert_eq!(
        before,
        std::fs::read(run.join("model.safetensors")).unwrap()
    );

    // Early stopping without a validation side; unknown names.
    let other = tmp.path().join("other");
    for (extra, says) in [
        (vec!["--val-fraction", "0", "--patience", "2"], "validation"),
        (vec!["--optimizer", "rmsprop"], "unknown optimizer"),
        (vec!["--schedule", "linear"], "unknown schedule"),
        (vec!["--positive-class", "lymphoma"], "not a class name"),
    ] {
        let mut a = common.to_vec();
        a.extend(["--out", other.to_str().unwrap()]);
        a.extend(extra);
        let o = leukex(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{says}: {err}");
    }
}
