//! `leukex predict --model RUN` and `leukex explain --model RUN` on a fake run folder
//! (closed-form ResNet18 weights with 2 classes and a hand-written `model.json`, no
//! training): the card's architecture, classes and preprocessing are used, the output
//! folder is named after the run, and the errors name the file.

mod common;

use std::path::{Path, PathBuf};

use common::{CLASSES, fake_run, leukex, s, text};
use leukex_data::image_io::read_rgb;
use leukex_data::npy;
use leukex_data::preprocess::{Normalization, Preprocessing};
use leukex_models::{Arch, Classifier, ModelConfig, predict};
use leukex_train::preprocessing_for;
use serde_json::Value;

/// Two small PNGs of different sizes in `dir/imgs`, sorted by name.
fn images(dir: &Path) -> Vec<PathBuf> {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    [("cell_a", (80u32, 60u32)), ("cell_b", (50, 70))]
        .into_iter()
        .enumerate()
        .map(|(i, (name, (w, h)))| {
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([
                    (x * 3 + i as u32 * 90) as u8,
                    (y * 4) as u8,
                    ((x ^ y) * 5) as u8,
                ])
            });
            let p = imgs.join(format!("{name}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect()
}

/// `leukex predict` with `model` (the model arguments) on `imgs`; returns the CSV and
/// the logits.
fn predict_images(tmp: &Path, tag: &str, model: &[&str], imgs: &[PathBuf]) -> (String, Vec<f32>) {
    let csv = tmp.join(format!("{tag}.csv"));
    let logits = tmp.join(format!("{tag}.npy"));
    let mut args = vec!["predict"];
    args.extend_from_slice(model);
    args.push("--input");
    args.extend(imgs.iter().map(|p| s(p)));
    args.extend(["--out", s(&csv), "--logits", s(&logits)]);
    let o = leukex(&args);
    assert!(o.status.success(), "{tag}: {}", text(&o));
    let l = npy::read_f32(&logits).unwrap();
    assert_eq!(l.shape, [imgs.len(), 2], "{tag}");
    (std::fs::read_to_string(&csv).unwrap(), l.data)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The logits of the run's model for `imgs` preprocessed with `prep`, in-process.
fn logits_in_process(run: &Path, prep: &Preprocessing, imgs: &[PathBuf]) -> Vec<f32> {
    let model = Classifier::from_file(
        &ModelConfig::new(Arch::ResNet18, 2),
        run.join("model.safetensors"),
        &Default::default(),
    )
    .unwrap();
    let x: Vec<f32> = imgs
        .iter()
        .flat_map(|p| prep.apply(&read_rgb(p).unwrap()).data)
        .collect();
    let [h, w] = prep.size.map(|v| v as usize);
    predict::logits(&model, &x, [imgs.len(), 3, h, w], 8).unwrap()
}

#[test]
fn run_folder_drives_predict_and_explain() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fake_run(
        &tmp.path().join("runs/resnet18"),
        preprocessing_for(Arch::ResNet18, 64),
    );
    let imgs = images(tmp.path());
    let weights = run.join("model.safetensors");

    // predict --model: the card's class names in the CSV; the same logits as
    // --arch/--weights at the card's size.
    let (csv, with_model) = predict_images(tmp.path(), "model", &["--model", s(&run)], &imgs);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "stem,predicted,score,prob_healthy,prob_blast");
    assert_eq!(lines.len(), 3, "{csv}");
    for (line, stem) in lines[1..].iter().zip(["cell_a", "cell_b"]) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!(fields[0], stem);
        assert!(CLASSES.contains(&fields[1]), "{line}");
    }
    let (csv_plain, plain) = predict_images(
        tmp.path(),
        "plain",
        &[
            "--arch",
            "resnet18",
            "--weights",
            s(&weights),
            "--size",
            "64",
        ],
        &imgs,
    );
    assert!(csv_plain.starts_with("stem,predicted,score,prob_0,prob_1\n"));
    assert_eq!(with_model, plain);
    // Without --size, --arch/--weights use 224: the card's size really was applied.
    let (_, at_224) = predict_images(
        tmp.path(),
        "at224",
        &["--arch", "resnet18", "--weights", s(&weights)],
        &imgs,
    );
    assert_ne!(with_model, at_224);
    // model.json itself names the same run.
    let (_, via_json) = predict_images(
        tmp.path(),
        "json",
        &["--model", s(&run.join("model.json"))],
        &imgs,
    );
    assert_eq!(with_model, via_json);

    // explain --model: OUT/<run folder name>/, maps at the images' sizes, the card recorded.
    let out = tmp.path().join("maps");
    let mut args = vec!["explain", "--model", s(&run), "--input"];
    args.extend(imgs.iter().map(|p| s(p)));
    args.extend(["--method", "gradient", "--out", s(&out)]);
    let o = leukex(&args);
    assert!(o.status.success(), "{}", text(&o));
    let model_dir = out.join("resnet18");
    for (stem, [h, w]) in [("cell_a", [60usize, 80usize]), ("cell_b", [70, 50])] {
        let m = npy::read_f32(&model_dir.join(stem).join("gradient.npy")).unwrap();
        assert_eq!(m.shape, [h, w], "{stem}");
        assert!(m.data.iter().all(|v| v.is_finite()), "{stem}");
        assert!(model_dir.join(stem).join("gradient_overlay.png").is_file());
    }
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir.join("explain.json")).unwrap())
            .unwrap();
    assert_eq!(j["model"]["id"], "resnet18");
    assert_eq!(j["model"]["arch"], "resnet18");
    assert_eq!(j["model"]["num_classes"], 2);
    assert_eq!(j["model"]["card"], s(&run.join("model.json")));
    assert_eq!(j["model"]["classes"], serde_json::json!(CLASSES));
    assert_eq!(j["model"]["weights"], s(&weights));
    assert_eq!(j["preprocessing"]["size"], serde_json::json!([64, 64]));
    // Its logits are predict's.
    for (i, stem) in ["cell_a", "cell_b"].into_iter().enumerate() {
        let got: Vec<f32> = j["images"][stem]["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let err = max_abs(&got, &with_model[2 * i..2 * i + 2]);
        assert!(err < 1e-4, "{stem}: {err}");
    }
}

#[test]
fn card_preprocessing_is_applied_and_size_overrides_it() {
    let tmp = tempfile::tempdir().unwrap();
    // A normalisation no architecture defaults to, at a size other than 224.
    let mut prep = preprocessing_for(Arch::ResNet18, 48);
    prep.normalization = Normalization::MeanStd {
        mean: [0.5, 0.4, 0.3],
        std: [0.2, 0.25, 0.3],
    };
    let run = fake_run(&tmp.path().join("custom"), prep.clone());
    let imgs = images(tmp.path());

    let (_, got) = predict_images(tmp.path(), "card", &["--model", s(&run)], &imgs);
    let want = logits_in_process(&run, &prep, &imgs);
    assert!(max_abs(&got, &want) < 1e-5, "{}", max_abs(&got, &want));

    // --size: the card's normalisation at that size.
    let (_, got) = predict_images(
        tmp.path(),
        "sized",
        &["--model", s(&run), "--size", "40"],
        &imgs,
    );
    let mut at40 = prep.clone();
    at40.size = [40, 40];
    let want = logits_in_process(&run, &at40, &imgs);
    assert!(max_abs(&got, &want) < 1e-5, "{}", max_abs(&got, &want));
}

#[test]
fn model_conflicts_and_bad_run_folders_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = images(tmp.path());
    let img = s(&imgs[0]);
    let out = tmp.path().join("maps");

    // clap refuses --model with --arch/--weights/--num-classes, and needs --arch and
    // --weights without it.
    for extra in [
        &["--arch", "resnet18"][..],
        &["--weights", "w.safetensors"],
        &["--num-classes", "2"],
        &["--transform-input"],
    ] {
        let mut p = vec!["predict", "--model", "runs/x", "--input", img];
        p.extend_from_slice(extra);
        let mut e = vec![
            "explain",
            "--model",
            "runs/x",
            "--input",
            img,
            "--method",
            "gradient",
            "--out",
            s(&out),
        ];
        e.extend_from_slice(extra);
        for args in [p, e] {
            let o = leukex(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
            assert!(text(&o).contains("cannot be used with"), "{}", text(&o));
        }
    }
    let o = leukex(&["predict", "--arch", "resnet18", "--input", img]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--weights"), "{}", text(&o));

    // A run folder without model.json: the error names the card's path.
    let empty = tmp.path().join("runs/empty");
    std::fs::create_dir_all(&empty).unwrap();
    let card = empty.join("model.json");
    for args in [
        vec!["predict", "--model", s(&empty), "--input", img],
        vec![
            "explain",
            "--model",
            s(&empty),
            "--input",
            img,
            "--method",
            "gradient",
            "--out",
            s(&out),
        ],
    ] {
        let o = leukex(&args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(s(&card)), "{}", text(&o));
    }

    // An unreadable card names itself.
    std::fs::write(&card, "{ not json").unwrap();
    let o = leukex(&["predict", "--model", s(&empty), "--input", img]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(s(&card)) && text(&o).contains("not a leukex model card"),
        "{}",
        text(&o)
    );

    // A card whose weights file is missing names the card and the weights file.
    let run = fake_run(
        &tmp.path().join("runs/noweights"),
        preprocessing_for(Arch::ResNet18, 64),
    );
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    let o = leukex(&["predict", "--model", s(&run), "--input", img]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains(s(&run.join("model.json")))
            && msg.contains(s(&run.join("model.safetensors")))
            && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(!out.exists(), "nothing written on errors");
}
