//! Population BatchNorm statistics equal PyTorch's `momentum=None` statistics of one
//! train-mode pass: the models' fixtures (scripts/fixtures/gen_models.py, `calibrate_bn`)
//! store exactly that for a closed-form calibration batch `1.5 u("calib:4x3x128x128")`.

use burn::prelude::*;
use leukex_models::closed_form::{closed_form_state_dict, unit};
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};
use leukex_train::Images;
use leukex_train::bn_stats::population_statistics;

fn check(arch: Arch, fixture: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures")
        .join(fixture);
    let fx = StateDict::read_safetensors(&path).expect("models fixture");
    let ad = Device::default().autodiff();
    let config = ModelConfig::new(arch, 3);
    // Parameters closed-form, running statistics closed-form too (not the fixture's):
    // the pass must replace them.
    let mut model = Classifier::new(&config, &ad);
    let sd = closed_form_state_dict(&model, None);
    model.load_state_dict(&sd).unwrap();
    let shape = [4usize, 3, 128, 128];
    let n: usize = shape.iter().product();
    let images = Images {
        data: unit("calib:4x3x128x128", n)
            .map(|u| (1.5 * u) as f32)
            .collect(),
        labels: vec![0; 4],
        names: (0..4).map(|i| i.to_string()).collect(),
        chw: [3, 128, 128],
    };
    let updated = population_statistics(&mut model, &images, 4);
    let after = model.to_state_dict(0);
    let mut checked = 0;
    for (key, _) in model.state_dict_keys() {
        if !(key.ends_with("running_mean") || key.ends_with("running_var")) {
            continue;
        }
        let want = &fx.get(&format!("bn.{key}")).unwrap().data;
        let got = &after.get(&key).unwrap().data;
        let before = &sd.get(&key).unwrap().data;
        let (mut d, mut nrm, mut moved) = (0.0f64, 0.0f64, 0.0f64);
        for ((g, w), b) in got.iter().zip(want).zip(before) {
            d += (*g as f64 - *w as f64).powi(2);
            nrm += (*w as f64).powi(2);
            moved += (*b as f64 - *w as f64).powi(2);
        }
        let rel = (d / nrm).sqrt();
        assert!(
            (moved / nrm).sqrt() > 1e-3,
            "{arch} {key}: start equals the reference"
        );
        assert!(
            rel < 1e-4,
            "{arch} {key}: rel L2 {rel:.2e} from PyTorch's statistics"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        2 * updated,
        "{arch}: every BatchNorm updated and checked"
    );
    assert!(updated > 10);
}

#[test]
fn population_statistics_equal_pytorch_resnet18() {
    check(Arch::ResNet18, "resnet18.safetensors");
}

#[test]
fn population_statistics_equal_pytorch_efficientnet_lite0() {
    check(Arch::EfficientNetLite0, "efficientnet-lite0.safetensors");
}

#[test]
fn frozen_batch_norms_keep_their_statistics() {
    let ad = Device::default().autodiff();
    let config = ModelConfig::new(Arch::ResNet18, 2);
    let mut model = Classifier::new(&config, &ad);
    let sd = closed_form_state_dict(&model, None);
    model.load_state_dict(&sd).unwrap();
    let mut model = model.freeze_backbone();
    let images = Images {
        data: unit("x", 2 * 3 * 64 * 64).map(|u| u as f32).collect(),
        labels: vec![0, 1],
        names: vec!["a".into(), "b".into()],
        chw: [3, 64, 64],
    };
    assert_eq!(population_statistics(&mut model, &images, 2), 0);
    let after = model.to_state_dict(0);
    assert_eq!(
        after.get("bn1.running_var").unwrap().data,
        sd.get("bn1.running_var").unwrap().data
    );
}
