//! `leukex weights import` and `leukex predict` end to end, on a small EfficientNet-Lite0
//! (2 classes) with deterministic weights, against the library called in-process.

mod common;

use common::{leukex, s, text};

use leukex_data::image_io::read_rgb;
use leukex_data::npy;
use leukex_data::preprocess::Preprocessing;
use leukex_models::{Arch, Classifier, ModelConfig, StateDict, predict};

/// Deterministic values in [-1, 1) (SplitMix64 over a running counter).
struct Unit(u64);

impl Unit {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A complete state dict for `config` (He-scaled weights, BN near identity) plus
/// `num_batches_tracked` counters, as torch would save them.
fn state_dict(config: &ModelConfig) -> StateDict {
    let model = Classifier::new(config, &Default::default());
    let mut u = Unit(7);
    let mut sd = StateDict::new("<test>");
    for (key, shape) in model.state_dict_keys() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let x = u.next();
                (if key.ends_with(".weight") && shape.len() >= 2 {
                    let fan_in: usize = shape[1..].iter().product();
                    x * (6.0 / fan_in as f64).sqrt()
                } else if key.ends_with(".weight") || key.ends_with(".running_var") {
                    1.0 + 0.2 * x
                } else {
                    0.1 * x
                }) as f32
            })
            .collect();
        if let Some(bn) = key.strip_suffix(".running_var") {
            sd.insert(format!("{bn}.num_batches_tracked"), vec![], vec![3.0]);
        }
        sd.insert(key, shape, v);
    }
    sd
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
fn import_then_predict_npy_and_images() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ModelConfig::new(Arch::EfficientNetLite0, 2);
    let sd = state_dict(&config);
    let src = tmp.path().join("trained.safetensors");
    std::fs::write(&src, sd.to_safetensors(&[])).unwrap();

    // weights import: checked, converted, keys and values kept.
    let weights = tmp.path().join("w.safetensors");
    let out = leukex(&[
        "weights",
        "import",
        s(&src),
        "--arch",
        "efficientnet-lite0",
        "--out",
        s(&weights),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("fits efficientnet-lite0 (2 classes)"),
        "{}",
        text(&out)
    );
    let back = StateDict::read(&weights).unwrap();
    assert_eq!(back.len(), sd.len());
    for k in sd.keys() {
        assert_eq!(back.get(k), sd.get(k), "{k}");
    }

    // A wrong architecture fails, names the file and lists keys.
    let out = leukex(&[
        "weights",
        "import",
        s(&src),
        "--arch",
        "resnet18",
        "--out",
        s(&tmp.path().join("x.safetensors")),
    ]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains(s(&src))
            && msg.contains("missing: conv1.weight")
            && msg.contains("unexpected:"),
        "{msg}"
    );
    // First what the keys are, then only the first few keys of each kind.
    assert!(
        msg.contains("these are efficientnet-lite0 weights"),
        "{msg}"
    );
    let missing = msg.lines().find(|l| l.contains("missing: ")).unwrap();
    assert!(
        missing.matches(", ").count() <= 5 && missing.contains("more)"),
        "{missing}"
    );
    assert!(!tmp.path().join("x.safetensors").exists());

    let dev = Default::default();
    let model = Classifier::from_file(&config, &weights, &dev).unwrap();

    // predict on a preprocessed .npy: logits [N, C], no preprocessing.
    let shape = [3usize, 3, 64, 64];
    let mut u = Unit(99);
    let x: Vec<f32> = (0..shape.iter().product())
        .map(|_| (1.5 * u.next()) as f32)
        .collect();
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &x).unwrap();
    let logits_path = tmp.path().join("logits.npy");
    let out = leukex(&[
        "predict",
        "--arch",
        "efficientnet-lite0",
        "--weights",
        s(&weights),
        "--input",
        s(&input),
        "--out",
        s(&logits_path),
        "--batch",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let got = npy::read_f32(&logits_path).unwrap();
    assert_eq!(got.shape, [3, 2]);
    let want = predict::logits(&model, &x, shape, 2).unwrap();
    assert!(
        max_abs(&got.data, &want) < 1e-5,
        "{}",
        max_abs(&got.data, &want)
    );

    // predict on images (a folder): efficientnet-lite preprocessing at --size, CSV.
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for (i, (w, h)) in [(50u32, 40u32), (80, 64), (64, 64)].into_iter().enumerate() {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 5 + i as u32 * 60) as u8,
                (y * 3) as u8,
                ((x ^ y) * 7) as u8,
            ])
        });
        img.save(imgs.join(format!("cell_{i}.png"))).unwrap();
    }
    std::fs::write(imgs.join("notes.txt"), "not an image").unwrap();
    let csv_path = tmp.path().join("preds.csv");
    let img_logits = tmp.path().join("img_logits.npy");
    let out = leukex(&[
        "predict",
        "--arch",
        "efficientnet-lite0",
        "--weights",
        s(&weights),
        "--input",
        s(&imgs),
        "--size",
        "64",
        "--batch",
        "2",
        "--out",
        s(&csv_path),
        "--logits",
        s(&img_logits),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "stem,predicted,score,prob_0,prob_1");
    assert_eq!(lines.len(), 4, "{csv}");

    let prep = Preprocessing::efficientnet_lite(64);
    let mut xi = Vec::new();
    for i in 0..3 {
        xi.extend(
            prep.apply(&read_rgb(&imgs.join(format!("cell_{i}.png"))).unwrap())
                .data,
        );
    }
    let want = predict::logits(&model, &xi, [3, 3, 64, 64], 2).unwrap();
    let got = npy::read_f32(&img_logits).unwrap();
    assert_eq!(got.shape, [3, 2]);
    assert!(
        max_abs(&got.data, &want) < 1e-5,
        "{}",
        max_abs(&got.data, &want)
    );
    for (i, (line, pred)) in lines[1..]
        .iter()
        .zip(predict::predictions(&want, 2))
        .enumerate()
    {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], format!("cell_{i}"));
        assert_eq!(f[1].parse::<usize>().unwrap(), pred.predicted);
        let score: f32 = f[2].parse().unwrap();
        assert!((score - pred.score).abs() < 1e-5);
        let p: Vec<f32> = f[3..].iter().map(|v| v.parse().unwrap()).collect();
        assert!((p[0] + p[1] - 1.0).abs() < 1e-5 && p[pred.predicted] == score);
    }

    // Image files given one by one, CSV on standard output; same rows.
    let out = leukex(&[
        "predict",
        "--arch",
        "efficientnet-lite0",
        "--weights",
        s(&weights),
        "--input",
        s(&imgs.join("cell_0.png")),
        s(&imgs.join("cell_1.png")),
        "--size",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed[0], lines[0]);
    assert_eq!(printed.len(), 3, "{stdout}");
    for (a, b) in printed[1..].iter().zip(&lines[1..3]) {
        assert_eq!(
            a.split(',').take(2).collect::<Vec<_>>(),
            b.split(',').take(2).collect::<Vec<_>>()
        );
    }

    // A .npy without --out is refused; so is a wrong head size.
    let out = leukex(&[
        "predict",
        "--arch",
        "efficientnet-lite0",
        "--weights",
        s(&weights),
        "--input",
        s(&input),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("--out"),
        "{}",
        text(&out)
    );
    let out = leukex(&[
        "predict",
        "--arch",
        "efficientnet-lite0",
        "--weights",
        s(&weights),
        "--input",
        s(&input),
        "--out",
        s(&logits_path),
        "--num-classes",
        "5",
    ]);
    assert!(
        !out.status.success()
            && text(&out).contains("_fc.weight (expected [5, 1280], found [2, 1280])"),
        "{}",
        text(&out)
    );
}
