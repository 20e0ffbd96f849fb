//! Weight import to safetensors (`import_weights`, `StateDict::to_safetensors`) and batched
//! inference (`predict`), on the closed-form weights of the torch-equality fixtures.

mod common;

use burn::module::Module;
use burn::prelude::*;
use common::{Fixture, closed_form_state_dict, fixture_path, input_value};
use leukex_models::{
    Arch, Classifier, ModelConfig, StateDict, WeightsError, import_weights, predict,
};

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

fn assert_same_dict(a: &StateDict, b: &StateDict) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{} vs {}",
        a.source(),
        b.source()
    );
    for k in a.keys() {
        assert_eq!(a.get(k), b.get(k), "{k}: {} vs {}", a.source(), b.source());
    }
}

#[test]
fn every_format_round_trips_through_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "formats.safetensors",
        "formats_zip.pth",
        "formats_legacy.pth",
    ] {
        let sd = StateDict::read(fixture_path(name)).unwrap();
        let out = tmp.path().join(format!("{name}.safetensors"));
        std::fs::write(&out, sd.to_safetensors(&[("leukex.test", "1".into())])).unwrap();
        let back = StateDict::read(&out).unwrap();
        assert_same_dict(&sd, &back);
        // PyTorch's dtypes: float32 everywhere, int64 for the step counter.
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (key, view) in st.tensors() {
            let want = if key.ends_with("num_batches_tracked") {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            assert_eq!(view.dtype(), want, "{key}");
        }
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let md = md.metadata().clone().unwrap();
        assert_eq!(md["format"], "pt");
        assert_eq!(md["leukex.test"], "1");
    }
}

#[test]
fn import_rejects_a_partial_file_and_names_it() {
    // The format fixtures hold a few of resnet18's keys only.
    for name in ["formats_zip.pth", "formats_legacy.pth"] {
        let path = fixture_path(name);
        let err = import_weights(Arch::ResNet18, &path, None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("missing") && msg.contains("layer1.0.conv1.weight"),
            "{msg}"
        );
        match err {
            WeightsError::Mismatch {
                missing,
                unexpected,
                wrong_shape,
                ..
            } => {
                assert!(unexpected.is_empty() && wrong_shape.is_empty());
                assert!(!missing.contains(&"fc.weight".to_string()));
            }
            other => panic!("{other}"),
        }
        // The file's 3-class head is recognised; forcing 5 classes misshapes it.
        let err = import_weights(Arch::ResNet18, &path, Some(5)).unwrap_err();
        assert!(
            err.to_string()
                .contains("fc.weight (expected [5, 512], found [3, 512])")
        );
    }
}

/// The closed-form EfficientNet-Lite0 (3 classes) of the torch-equality fixture.
fn closed_form_lite0() -> (StateDict, Fixture) {
    let fx = Fixture::load("efficientnet-lite0");
    let model = Classifier::new(
        &ModelConfig::new(Arch::EfficientNetLite0, 3),
        &Default::default(),
    );
    (closed_form_state_dict(&model, Some(&fx.tensors)), fx)
}

#[test]
fn import_then_predict_equals_direct_forward_and_pytorch() {
    let (mut sd, fx) = closed_form_lite0();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("closed_form.safetensors");
    std::fs::write(&src, sd.to_safetensors(&[])).unwrap();

    let (config, bytes) = import_weights(Arch::EfficientNetLite0, &src, None).unwrap();
    assert_eq!(config, ModelConfig::new(Arch::EfficientNetLite0, 3));
    let out = tmp.path().join("imported.safetensors");
    std::fs::write(&out, &bytes).unwrap();
    assert_same_dict(
        &StateDict::read(&src).unwrap(),
        &StateDict::read(&out).unwrap(),
    );
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = md.metadata().clone().unwrap();
    assert_eq!(md["leukex.arch"], "efficientnet-lite0");
    assert_eq!(md["leukex.num_classes"], "3");
    assert_eq!(md["leukex.source"], "closed_form.safetensors");

    let dev = Device::default();
    let model = Classifier::from_file(&config, &out, &dev).unwrap();
    let shape: Vec<usize> = serde_json::from_str(&fx.meta["input_shape"]).unwrap();
    let shape: [usize; 4] = shape.try_into().unwrap();
    let x = input_value(&shape);

    // Direct forward in inference mode.
    let direct = Classifier::from_state_dict(&config, &sd, &dev)
        .unwrap()
        .valid();
    let want: Vec<f32> = direct
        .forward(Tensor::from_data(TensorData::new(x.clone(), shape), &dev))
        .into_data()
        .try_to_vec()
        .unwrap();
    let got = predict::logits(&model, &x, shape, shape[0]).unwrap();
    assert_eq!(got, want, "same batch, same weights: identical logits");
    // Batch of one: the same up to float rounding of a different GEMM shape.
    let got1 = predict::logits(&model, &x, shape, 1).unwrap();
    assert!(max_abs(&got1, &want) < 1e-5, "{}", max_abs(&got1, &want));
    // And PyTorch's float32 logits.
    let torch = &fx.tensors.get("logits").unwrap().data;
    assert!(max_abs(&got, torch) < 1e-4, "{}", max_abs(&got, torch));
    let preds = predict::predictions(&got, 3);
    for (p, row) in preds.iter().zip(got.chunks(3)) {
        assert_eq!(p.predicted, predict::top_k(row, 1)[0]);
        assert!((p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    // A broken file: one key missing, one unexpected, one misshaped; all listed.
    sd.remove("_fc.bias").unwrap();
    sd.insert("extra.weight", vec![2], vec![0.0, 1.0]);
    let t = sd.remove("_conv_stem.weight").unwrap();
    sd.insert("_conv_stem.weight", vec![t.data.len()], t.data);
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(&bad, sd.to_safetensors(&[])).unwrap();
    let msg = import_weights(Arch::EfficientNetLite0, &bad, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(msg.contains("missing: _fc.bias"), "{msg}");
    assert!(msg.contains("unexpected: extra.weight"), "{msg}");
    assert!(
        msg.contains("wrong shape: _conv_stem.weight (expected [32, 3, 3, 3], found [864])"),
        "{msg}"
    );
}

#[test]
fn predict_rejects_bad_input_shapes() {
    let model = Classifier::new(
        &ModelConfig::new(Arch::EfficientNetLite0, 3),
        &Default::default(),
    );
    assert!(predict::logits(&model, &[0.0; 12], [1, 1, 3, 4], 1).is_err());
    assert!(predict::logits(&model, &[0.0; 11], [1, 3, 2, 2], 1).is_err());
}
