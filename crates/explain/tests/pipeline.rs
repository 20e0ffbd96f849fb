//! `run_explain`, the whole explanation run, against the engine's methods run one by one:
//! handing every method to the batch engine at once (one forward pass, shared backward
//! passes, shared convolution values) must write, bit for bit, the files each method's
//! own run writes.

use std::path::Path;

use burn::prelude::*;
use leukex_data::npy;
use leukex_data::preprocess::Preprocessing;
use leukex_explain::pipeline::{
    ExplainInput, ExplainRequest, ModelInfo, input_bounds, parse_methods, run_explain,
};
use leukex_explain::run::ExplainOptions;
use leukex_explain::{CamStyle, InitRelevance, MethodParams, Score, Target};
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig};

fn model() -> Classifier {
    let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &Default::default());
    m.load_state_dict(&closed_form_state_dict(&m, None))
        .unwrap();
    m.valid()
}

fn request(input: &Path, out: &Path, names: &[&str], options: ExplainOptions) -> ExplainRequest {
    let preprocessing = Preprocessing::imagenet(64);
    let bounds = input_bounds(&preprocessing.normalization);
    let params = MethodParams {
        bounds: Some(bounds.clone()),
        ..Default::default()
    };
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    ExplainRequest {
        input: ExplainInput::Npy(input.to_path_buf()),
        preprocessing,
        methods: parse_methods(&names, &[], &params, &bounds).unwrap(),
        params,
        options,
        target: Target::Predicted,
        batch: 3,
        keep_channels: false,
        png: false,
        conservation: false,
        write_report: true,
        paper: false,
        out: out.to_path_buf(),
    }
}

#[test]
fn one_engine_call_writes_the_maps_of_separate_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = [3usize, 3, 64, 64];
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &input_value(&shape)).unwrap();
    let m = model();
    let info = ModelInfo {
        id: "r18".into(),
        weights: "closed-form".into(),
        transform_input: false,
        card: None,
        classes: None,
    };
    let names = [
        "gradient",
        "input-x-gradient",
        "grad-cam",
        "layer-cam",
        "lrp-epsilon",
        "lrp-epsilon-plus",
        "deep-taylor",
    ];
    let styles = [
        ExplainOptions::default(),
        // The paper's: CAMs on the softmax (a pass of their own), LRP from the logit.
        ExplainOptions {
            score: Score::Logit,
            init_relevance: InitRelevance::Score,
            cam_style: CamStyle::Matlab,
        },
    ];
    for (si, options) in styles.into_iter().enumerate() {
        let together = tmp.path().join(format!("together{si}"));
        let req = request(&input, &together, &names, options);
        let summary = run_explain(&m, &info, &req, &|_, _| {}).unwrap();
        assert_eq!(summary.explained, 3);
        assert!(summary.failed.is_empty());
        for (name, id) in names.iter().zip(&summary.method_ids) {
            let alone = tmp.path().join(format!("alone{si}_{name}"));
            let req = request(&input, &alone, &[name], options);
            let one = run_explain(&m, &info, &req, &|_, _| {}).unwrap();
            assert_eq!(&one.method_ids[0], id);
            for stem in ["x_0", "x_1", "x_2"] {
                let file = format!("r18/{stem}/{id}.npy");
                let a = std::fs::read(together.join(&file)).unwrap();
                let b = std::fs::read(alone.join(&file)).unwrap();
                let values = npy::read_f32(&together.join(&file)).unwrap().data;
                assert!(values.iter().any(|v| *v != values[0]), "{file}: constant");
                assert!(a == b, "{file} ({options:?}): differs from its own run");
            }
        }
    }
}
