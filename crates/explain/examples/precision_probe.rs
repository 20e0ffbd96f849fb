//! Where float32 rounding enters a backward pass: per named layer, the gradient of the
//! target logit with respect to that layer's output in float32 against float64 (relative
//! L2 per image), for a network with the closed-form weights of the reference fixtures.
//!
//! ```text
//! cargo run --profile test -p leukex-explain --example precision_probe -- resnet18 FIXTURE [SIZE]
//! cargo run --profile test -p leukex-explain --example precision_probe -- ARCH WEIGHTS INPUT.bin
//! ```
//! The first form: the closed-form network with a reference fixture's BatchNorm statistics
//! and the fixtures' `[2, 3, SIZE, SIZE]` input, targets 1 and 2. The second: a full weights
//! file (2 classes) and a raw float32 `[1, 3, S, S]` input, target 1, as written by
//! `scripts/fixtures/measure_f32_precision.py`. Prints the input gradient's and the batch
//! engine's maps' errors (`PROBE_METHODS`: a comma-separated list, default gradient,
//! input-x-gradient, lrp-epsilon-plus-flat); `PROBE_CAM_LAYERS=layer3,layer1,...` adds the
//! raw Grad-CAM at each layer; with `PROBE_LAYERS=1` also every named layer's gradient.

use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_explain::cam::layer_gradients;
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.cast(FloatDType::F64)
        .into_data()
        .try_into_vec::<f64>()
        .unwrap()
}

fn rel_per_image(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    leukex_models::closed_form::rel_l2_per_image(a, b, n)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arch: Arch = args.get(1).map_or("resnet18", |s| s).parse().unwrap();
    let dev = Device::default();
    // Full weights + raw f32 input (`ARCH WEIGHTS INPUT.bin`), or the closed-form
    // network with a fixture's BatchNorm statistics (`ARCH FIXTURE SIZE`).
    let full = args.get(3).is_some_and(|a| a.ends_with(".bin"));
    let classes = if full { 2 } else { 3 };
    let bn = args.get(2).map(|p| StateDict::read_safetensors(p).unwrap());
    let model = |dtype| {
        let mut m = Classifier::new(&ModelConfig::new(arch, classes), &dev);
        let sd = if full {
            bn.clone().unwrap()
        } else {
            closed_form_state_dict(&m, bn.as_ref())
        };
        m.load_state_dict(&sd).unwrap();
        m.valid().cast_float(dtype)
    };
    let (m32, m64) = (model(FloatDType::F32), model(FloatDType::F64));
    let (x, targets, n) = if full {
        let bytes = std::fs::read(&args[3]).unwrap();
        let v: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let side = ((v.len() / 3) as f64).sqrt() as usize;
        let shape = [1, 3, side, side];
        (
            Tensor::<4>::from_data(TensorData::new(v, shape), &dev),
            vec![1usize],
            1,
        )
    } else {
        let size: usize = args.get(3).map_or(128, |s| s.parse().unwrap());
        let shape = [2, 3, size, size];
        let x = Tensor::<4>::from_data(TensorData::new(input_value(&shape), shape), &dev);
        (x, vec![1usize, 2], 2)
    };
    let g32 = vals(leukex_explain::gradient::gradient(
        &m32,
        x.clone(),
        &targets,
    ));
    let g64 = vals(leukex_explain::gradient::gradient(
        &m64,
        x.clone().cast(FloatDType::F64),
        &targets,
    ));
    println!(
        "{:<28} {:?}",
        "input",
        rel_per_image(&g32, &g64, n)
            .iter()
            .map(|v| format!("{v:.2e}"))
            .collect::<Vec<_>>()
    );
    // The product path: the batch engine (shared, BatchNorm-folded passes).
    let p = leukex_explain::method::MethodParams::default();
    for name in std::env::var("PROBE_METHODS")
        .unwrap_or_else(|_| "gradient,input-x-gradient,lrp-epsilon-plus-flat".into())
        .split(',')
    {
        let method = leukex_explain::method::Method::parse(name, &p).unwrap();
        let run = |m: &Classifier, x: Tensor<4>| {
            let maps =
                leukex_explain::run::explain_batch(m, x, &targets, std::slice::from_ref(&method));
            vals(maps.unwrap().remove(0).sum_dim(1))
        };
        let a = run(&m32, x.clone());
        let b = run(&m64, x.clone().cast(FloatDType::F64));
        println!("batch engine {name:<15} {:?}", rel_per_image(&a, &b, n));
    }
    // Raw Grad-CAM (Σ_c mean(dlogit/dA_c) · A_c, no ReLU, no scaling) at the layers named
    // in PROBE_CAM_LAYERS: where along the network the float32 error enters the CAMs.
    if let Ok(layers) = std::env::var("PROBE_CAM_LAYERS") {
        for layer in layers.split(',') {
            let cam = |m: &Classifier, x: Tensor<4>| {
                let l = layer_gradients(m, x, &targets, layer).unwrap();
                let [_, _, h, w] = l.gradients.dims();
                let weights = l.gradients.sum_dim(3).sum_dim(2) / (h * w) as f64;
                vals((l.activations * weights).sum_dim(1))
            };
            let a = cam(&m32, x.clone());
            let b = cam(&m64, x.clone().cast(FloatDType::F64));
            println!(
                "raw grad-cam {layer:<15} {:?}",
                rel_per_image(&a, &b, n)
                    .iter()
                    .map(|v| format!("{v:.2e}"))
                    .collect::<Vec<_>>()
            );
        }
    }
    if std::env::var("PROBE_LAYERS").is_err() {
        return;
    }
    for layer in m32.layer_names() {
        let a = layer_gradients(&m32, x.clone(), &targets, &layer).unwrap();
        let b = layer_gradients(&m64, x.clone().cast(FloatDType::F64), &targets, &layer).unwrap();
        let (ga, gb) = (vals(a.gradients), vals(b.gradients));
        let (aa, ab) = (vals(a.activations), vals(b.activations));
        println!(
            "{layer:<28} grad {:?} act {:?}",
            rel_per_image(&ga, &gb, n)
                .iter()
                .map(|v| format!("{v:.2e}"))
                .collect::<Vec<_>>(),
            rel_per_image(&aa, &ab, n)
                .iter()
                .map(|v| format!("{v:.2e}"))
                .collect::<Vec<_>>()
        );
    }
}
