//! Weight files: formats (.safetensors, zip .pth, legacy .pth), key/shape errors,
//! head replacement and the named-output hook.

mod common;

use burn::module::Module;
use burn::prelude::*;
use common::{Fixture, closed_form_state_dict, fixture_path, input_value, param_value};
use leukex_models::{
    Arch, Classifier, ModelConfig, StateDict, WeightsError, WeightsFormat, layer_names,
};

const FORMAT_FILES: [&str; 3] = [
    "formats.safetensors",
    "formats_zip.pth",
    "formats_legacy.pth",
];

fn check_format_dict(sd: &StateDict) {
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(
        keys,
        [
            "bn1.bias",
            "bn1.num_batches_tracked",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.weight",
            "conv1.weight",
            "fc.bias",
            "fc.weight",
            "layer2.0.downsample.0.weight",
        ],
        "{}",
        sd.source()
    );
    for (key, shape) in [
        ("conv1.weight", vec![64, 3, 7, 7]),
        ("bn1.weight", vec![64]),
        ("bn1.bias", vec![64]),
        ("layer2.0.downsample.0.weight", vec![128, 64, 1, 1]),
        ("fc.weight", vec![3, 512]),
        ("fc.bias", vec![3]),
    ] {
        let t = sd.get(key).unwrap();
        assert_eq!(t.shape, shape, "{key} in {}", sd.source());
        assert_eq!(t.data, param_value(key, &shape), "{key} in {}", sd.source());
    }
    let n = sd.get("bn1.num_batches_tracked").unwrap();
    assert_eq!(
        (n.shape.as_slice(), n.data.as_slice()),
        (&[][..], &[7.0f32][..])
    );
}

#[test]
fn reads_safetensors_zip_and_legacy_pth() {
    let mut dicts = Vec::new();
    for name in FORMAT_FILES {
        let path = fixture_path(name);
        let format = StateDict::detect(&path).unwrap();
        let expected = if name.ends_with(".safetensors") {
            WeightsFormat::Safetensors
        } else {
            WeightsFormat::Pytorch
        };
        assert_eq!(format, expected, "{name}");
        let sd = StateDict::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_format_dict(&sd);
        dicts.push(sd);
    }
    for d in &dicts[1..] {
        for k in dicts[0].keys() {
            assert_eq!(d.get(k), dicts[0].get(k), "{k}: {}", d.source());
        }
    }
}

/// A damaged `.safetensors` file is a parse error that names the file and what is wrong:
/// cut short, a header length past the end, a header that is not JSON, extra bytes.
#[test]
fn a_damaged_safetensors_file_is_an_error_naming_it() {
    let good = std::fs::read(fixture_path("formats.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut huge_header = good.clone();
    huge_header[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    let mut not_json = good.clone();
    not_json[8] = b'[';
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 4]);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, says) in [
        ("cut.safetensors", &good[..good.len() - 3], "tensor data"),
        (
            "cut_header.safetensors",
            &good[..8 + header_len / 2],
            "header length",
        ),
        ("tiny.safetensors", &good[..5], "too short"),
        ("huge_header.safetensors", &huge_header[..], "header length"),
        ("not_json.safetensors", &not_json[..], "invalid header"),
        ("longer.safetensors", &longer[..], "tensor data"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = StateDict::read_safetensors(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, WeightsError::Parse { .. }), "{name}: {text}");
        assert!(text.contains(name) && text.contains(says), "{name}: {text}");
    }
}

#[test]
fn incomplete_file_lists_missing_and_misshaped_keys_and_names_file() {
    let dev = Device::default();
    for name in FORMAT_FILES {
        // 2 classes: the file's fc (3 classes) has the wrong shape.
        let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &dev);
        let err = m.load_weights(fixture_path(name)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name), "message must name the file: {msg}");
        let WeightsError::Mismatch {
            missing,
            unexpected,
            wrong_shape,
            ..
        } = err
        else {
            panic!("expected Mismatch, got {msg}");
        };
        assert!(unexpected.is_empty(), "{unexpected:?}");
        assert!(missing.contains(&"layer1.0.conv1.weight".to_string()));
        assert!(missing.contains(&"layer2.0.downsample.1.running_var".to_string()));
        assert!(
            !missing
                .iter()
                .any(|k| k == "conv1.weight" || k.starts_with("bn1."))
        );
        assert!(!missing.iter().any(|k| k == "layer2.0.downsample.0.weight"));
        let bad: Vec<&str> = wrong_shape.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(bad, ["fc.weight", "fc.bias"]);
        assert_eq!(wrong_shape[0].expected, vec![2, 512]);
        assert_eq!(wrong_shape[0].found, vec![3, 512]);
        assert!(msg.contains("layer1.0.conv1.weight") && msg.contains("fc.weight"));
    }
}

#[test]
fn unexpected_missing_and_wrong_shape_keys_are_listed() {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 3), &dev);
    let mut sd = closed_form_state_dict(&m, None);
    sd.remove("layer3.1.bn2.bias").unwrap();
    sd.insert("layer5.0.conv1.weight", vec![1], vec![0.0]);
    sd.insert("aux1.conv.conv.weight", vec![1], vec![0.0]); // only GoogLeNet ignores aux
    sd.insert("layer1.0.bn1.num_batches_tracked", vec![], vec![3.0]); // always ignored
    sd.remove("layer4.0.downsample.0.weight").unwrap();
    sd.insert(
        "layer4.0.downsample.0.weight",
        vec![512, 256, 3, 3],
        vec![0.0; 512 * 256 * 9],
    );
    let err = m.load_state_dict(&sd).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("<closed-form>") && msg.contains("resnet18"),
        "{msg}"
    );
    match err {
        WeightsError::Mismatch {
            missing,
            unexpected,
            wrong_shape,
            ..
        } => {
            assert_eq!(missing, ["layer3.1.bn2.bias"]);
            assert_eq!(
                unexpected,
                ["aux1.conv.conv.weight", "layer5.0.conv1.weight"]
            );
            assert_eq!(wrong_shape.len(), 1);
            assert_eq!(wrong_shape[0].key, "layer4.0.downsample.0.weight");
            assert_eq!(wrong_shape[0].expected, vec![512, 256, 1, 1]);
            assert_eq!(wrong_shape[0].found, vec![512, 256, 3, 3]);
        }
        other => panic!("expected Mismatch, got {other}"),
    }
}

/// Loading from an owned state dict moves the values instead of copying them: the same
/// model, and the same errors, as loading from a borrowed one.
#[test]
fn an_owned_state_dict_loads_as_a_borrowed_one() {
    let dev = Device::default();
    for arch in [Arch::ResNet18, Arch::GoogLeNet, Arch::EfficientNetLite0] {
        let config = ModelConfig::new(arch, 3);
        let sd = closed_form_state_dict(&Classifier::new(&config, &dev), None);
        let borrowed = Classifier::from_state_dict(&config, &sd, &dev).unwrap();
        let owned = Classifier::from_owned_state_dict(&config, sd.clone(), &dev).unwrap();
        let (a, b) = (borrowed.to_state_dict(0), owned.to_state_dict(0));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for k in a.keys() {
            assert_eq!(a.get(k), b.get(k), "{arch}: {k}");
        }
        // Every value came from the file: none is the fresh model's own.
        let fresh = Classifier::new(&config, &dev).to_state_dict(0);
        assert!(a.keys().any(|k| a.get(k) != fresh.get(k)), "{arch}");

        let mut wrong = sd;
        let first = wrong.keys().next().unwrap().to_string();
        wrong.remove(&first).unwrap();
        wrong.insert("extra.weight", vec![1], vec![0.0]);
        let by_ref = Classifier::from_state_dict(&config, &wrong, &dev).unwrap_err();
        let by_value = Classifier::from_owned_state_dict(&config, wrong, &dev).unwrap_err();
        assert_eq!(by_ref.to_string(), by_value.to_string());
    }
}

#[test]
fn googlenet_ignores_aux_heads() {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(Arch::GoogLeNet, 3), &dev);
    let mut sd = closed_form_state_dict(&m, None);
    for (k, shape) in [
        ("aux1.conv.conv.weight", vec![128, 512, 1, 1]),
        ("aux1.fc1.weight", vec![1024, 2048]),
        ("aux2.fc2.bias", vec![3]),
    ] {
        let n = shape.iter().product();
        sd.insert(k, shape, vec![0.0; n]);
    }
    m.load_state_dict(&sd).unwrap();
}

/// A complete resnet18 written as a .safetensors file loads from disk and reproduces
/// PyTorch's logits (the .pth readers are covered on the small dicts above).
#[test]
fn full_safetensors_file_reproduces_torch_logits() {
    let fx = Fixture::load("resnet18");
    let dev = Device::default();
    let config = ModelConfig::new(Arch::ResNet18, 3);
    let m = Classifier::new(&config, &dev);
    let sd = closed_form_state_dict(&m, Some(&fx.tensors));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = sd
        .keys()
        .map(|k| {
            let t = sd.get(k).unwrap();
            let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (k.to_string(), t.shape.clone(), b)
        })
        .collect();
    let views = bytes.iter().map(|(k, s, b)| {
        (
            k.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();

    let m = Classifier::from_file(&config, &path, &dev).unwrap().valid();
    let x = Tensor::<4>::from_data(
        TensorData::new(input_value(&[2, 3, 128, 128]), [2, 3, 128, 128]),
        &dev,
    );
    let got = m.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let want = &fx.tensors.get("logits").unwrap().data;
    let d = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-4, "max|diff| {d}: {got:?} vs {want:?}");
}

#[test]
fn replace_head_is_seeded() {
    let dev = Device::default();
    let mut a = Classifier::new(&ModelConfig::new(Arch::EfficientNetLite0, 1000), &dev);
    let mut b = Classifier::new(&ModelConfig::new(Arch::EfficientNetLite0, 1000), &dev);
    a.replace_head(2, 7);
    b.replace_head(2, 7);
    assert_eq!(a.num_classes(), 2);
    assert_eq!(a.config().num_classes, 2);
    let w = |m: &Classifier| {
        m.head()
            .1
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let bias = |m: &Classifier| {
        m.head()
            .1
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b));
    assert_eq!(bias(&a), bias(&b));
    let bound = 1.0 / (1280f32).sqrt();
    assert!(w(&a).iter().all(|v| v.abs() <= bound));
    assert!(w(&a).iter().any(|v| v.abs() > bound / 2.0));
    b.replace_head(2, 8);
    assert_ne!(w(&a), w(&b));
    // The new head is what state_dict_keys / load_state_dict see.
    let keys = a.state_dict_keys();
    let fc = keys.iter().find(|(k, _)| k == "_fc.weight").unwrap();
    assert_eq!(fc.1, vec![2, 1280]);
}

#[test]
fn hook_output_replaces_layer_output() {
    let dev = Device::default();
    let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 3), &dev);
    let sd = closed_form_state_dict(&m, None);
    m.load_state_dict(&sd).unwrap();
    let m = m.valid();
    let x = Tensor::<4>::from_data(
        TensorData::new(input_value(&[1, 3, 64, 64]), [1, 3, 64, 64]),
        &dev,
    );
    // Zeroing layer4 leaves only the fc bias.
    let logits = m.forward_with(x.clone(), &mut |name, t| {
        if name == "layer4" { t.zeros_like() } else { t }
    });
    let got = logits.into_data().try_to_vec::<f32>().unwrap();
    let bias = param_value("fc.bias", &[3]);
    for (g, b) in got.iter().zip(&bias) {
        assert!((g - b).abs() < 1e-6, "{got:?} vs {bias:?}");
    }
    // Grad-CAM style probe: d score / d layer4 through a zero leaf.
    let xa = x.autodiff();
    let mut probe = None;
    let logits = m.forward_with(xa, &mut |name, t| {
        if name == "layer4" {
            let p = t.zeros_like().require_grad();
            probe = Some(p.clone());
            t + p
        } else {
            t
        }
    });
    assert_eq!(logits.dims(), [1, 3]);
    let grads = logits.narrow(1, 0, 1).sum().backward();
    let g = probe.unwrap().grad(&grads).expect("probe gradient");
    assert_eq!(g.dims(), [1, 512, 2, 2]);
    // d fc / d layer4 = fc.weight[0, c] / (H*W) for every position.
    let w = param_value("fc.weight", &[3, 512]);
    let g = g.into_data().try_to_vec::<f32>().unwrap();
    for c in 0..512 {
        for p in 0..4 {
            assert!((g[c * 4 + p] - w[c] / 4.0).abs() < 1e-6);
        }
    }
}

#[test]
fn layer_names_cover_the_usual_targets() {
    let has = |a: Arch, n: &str| layer_names(a).iter().any(|x| x == n);
    for (a, n) in [
        (Arch::ResNet18, "layer4"),
        (Arch::ResNet18, "layer4.1.conv2"),
        (Arch::ResNet50, "layer4.2.bn3"),
        (Arch::ResNet50, "layer1.0.downsample.0"),
        (Arch::Vgg19, "features.35"),
        (Arch::Vgg19, "features.36"),
        (Arch::Vgg19, "classifier.6"),
        (Arch::GoogLeNet, "inception5b"),
        (Arch::GoogLeNet, "inception4a.branch4.0"),
        (Arch::GoogLeNet, "conv1.bn"),
        (Arch::EfficientNetLite0, "_conv_head"),
        (Arch::EfficientNetLite0, "_blocks.15._project_conv"),
        (Arch::EfficientNetLite0, "extract_features"),
    ] {
        assert!(has(a, n), "{a} lacks {n}");
    }
    assert!(!has(Arch::EfficientNetLite0, "_blocks.0._expand_conv"));
    assert!(!has(Arch::EfficientNetLite0, "_blocks.16"));
    assert!(!has(Arch::ResNet18, "layer1.0.downsample"));
    assert_eq!(layer_names(Arch::Vgg19).last().unwrap(), "classifier");
    assert_eq!(layer_names(Arch::ResNet50).last().unwrap(), "fc");
}
