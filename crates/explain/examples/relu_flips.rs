//! How often float32 rounding moves a unit across a ReLU threshold or a max-pool choice:
//! per pre-activation, the units whose sign differs between the float32 and the float64
//! forward pass of the same network on the same input, and per max-pool, the windows
//! whose chosen element (PyTorch's rule: the first maximum in row-major order) differs.
//! One such unit changes the gradient below it by a whole path, which is why the float32
//! input gradient of a ReLU network is judged against the reference's own spread over
//! equally valid roundings (docs/explanations.md, "Float32 against float64").
//!
//! ```text
//! cargo run --profile test -p leukex-explain --example relu_flips -- ARCH WEIGHTS INPUT.bin
//! ```
//! `ARCH` is resnet18, resnet50 or vgg19; the weights (2 classes) and the raw float32
//! `[1, 3, S, S]` input as written by `scripts/fixtures/measure_f32_precision.py`.

use burn::prelude::*;
use burn::tensor::FloatDType;
use leukex_explain::cam::layer_gradients;
use leukex_models::{Arch, Classifier, ModelConfig, StateDict};
use std::collections::HashMap;

/// A layer's activations in float32 and float64 (as f64), with its shape.
struct Pair {
    a32: Vec<f64>,
    a64: Vec<f64>,
    shape: [usize; 4],
}

fn vals(t: Tensor<4>) -> Vec<f64> {
    t.cast(FloatDType::F64)
        .into_data()
        .try_into_vec::<f64>()
        .unwrap()
}

/// Units whose sign differs, and the units within `1e-5 · max|a|` of zero in float64.
fn sign_flips(p32: &[f64], p64: &[f64]) -> (usize, usize) {
    let scale = p64.iter().fold(0f64, |m, v| m.max(v.abs()));
    let flips = p32
        .iter()
        .zip(p64)
        .filter(|(a, b)| (**a > 0.0) != (**b > 0.0))
        .count();
    let near = p64.iter().filter(|v| v.abs() <= 1e-5 * scale).count();
    (flips, near)
}

/// Indices of the chosen element of every max-pool window (first maximum), padding
/// excluded.
fn pool_argmax(a: &[f64], shape: [usize; 4], k: usize, s: usize, pad: usize) -> Vec<usize> {
    let [n, c, h, w] = shape;
    let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        let base = plane * h * w;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = (f64::NEG_INFINITY, usize::MAX);
                for dy in 0..k {
                    for dx in 0..k {
                        let (y, x) = (
                            (oy * s + dy) as isize - pad as isize,
                            (ox * s + dx) as isize - pad as isize,
                        );
                        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                            continue;
                        }
                        let i = base + y as usize * w + x as usize;
                        if a[i] > best.0 {
                            best = (a[i], i);
                        }
                    }
                }
                out.push(best.1);
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arch: Arch = args[1].parse().unwrap();
    let dev = Device::default();
    let sd = StateDict::read_safetensors(&args[2]).unwrap();
    let model = |dtype| {
        let mut m = Classifier::new(&ModelConfig::new(arch, 2), &dev);
        m.load_state_dict(&sd).unwrap();
        m.valid().cast_float(dtype)
    };
    let (m32, m64) = (model(FloatDType::F32), model(FloatDType::F64));
    let bytes = std::fs::read(&args[3]).unwrap();
    let v: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let side = ((v.len() / 3) as f64).sqrt() as usize;
    let x = Tensor::<4>::from_data(TensorData::new(v, [1, 3, side, side]), &dev);
    // (name of the pre-activation, the layers whose sum it is)
    let mut pre: Vec<(String, Vec<String>)> = Vec::new();
    // (name of the pool, its input layer, kernel, stride, padding)
    let mut pools: Vec<(String, String, usize, usize, usize)> = Vec::new();
    let names = m32.layer_names();
    match arch {
        Arch::ResNet18 | Arch::ResNet50 => {
            pre.push(("bn1".into(), vec!["bn1".into()]));
            pools.push(("maxpool".into(), "relu".into(), 3, 2, 1));
            let mut prev = "maxpool".to_string();
            let last_bn = if arch == Arch::ResNet18 { "bn2" } else { "bn3" };
            for stage in ["layer1", "layer2", "layer3", "layer4"] {
                let mut i = 0;
                while names.contains(&format!("{stage}.{i}")) {
                    let b = format!("{stage}.{i}");
                    for bn in ["bn1", "bn2"] {
                        if bn != last_bn {
                            pre.push((format!("{b}.{bn}"), vec![format!("{b}.{bn}")]));
                        }
                    }
                    let ds = format!("{b}.downsample");
                    let identity = if names.contains(&ds) {
                        ds
                    } else {
                        prev.clone()
                    };
                    pre.push((
                        format!("{b} (pre-ReLU)"),
                        vec![format!("{b}.{last_bn}"), identity],
                    ));
                    prev = b;
                    i += 1;
                }
            }
        }
        Arch::Vgg19 => {
            // torchvision's features: each convolution followed by its ReLU, and five
            // 2×2 pools whose input is the ReLU just before them.
            for k in [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34] {
                pre.push((format!("features.{k}"), vec![format!("features.{k}")]));
            }
            for k in [4, 9, 18, 27, 36] {
                pools.push((
                    format!("features.{k}"),
                    format!("features.{}", k - 1),
                    2,
                    2,
                    0,
                ));
            }
        }
        _ => panic!("resnet18, resnet50 or vgg19"),
    }
    let mut cache: HashMap<String, Pair> = HashMap::new();
    let needed = pre.iter().flat_map(|(_, parts)| parts.iter());
    for layer in needed.chain(pools.iter().map(|p| &p.1)) {
        if cache.contains_key(layer) {
            continue;
        }
        let a = layer_gradients(&m32, x.clone(), &[1], layer).unwrap();
        let b = layer_gradients(&m64, x.clone().cast(FloatDType::F64), &[1], layer).unwrap();
        let shape = a.activations.dims();
        let pair = Pair {
            a32: vals(a.activations),
            a64: vals(b.activations),
            shape,
        };
        cache.insert(layer.clone(), pair);
    }
    let get = |layer: &str| &cache[layer];
    let (mut total_flips, mut total_units, mut total_near) = (0, 0, 0);
    for (name, parts) in &pre {
        let mut s32 = vec![0f64; get(&parts[0]).a32.len()];
        let mut s64 = s32.clone();
        for p in parts {
            let pair = get(p);
            for (i, (a, b)) in pair.a32.iter().zip(&pair.a64).enumerate() {
                s32[i] += a;
                s64[i] += b;
            }
        }
        let (flips, near) = sign_flips(&s32, &s64);
        for (i, (a, b)) in s32.iter().zip(&s64).enumerate() {
            if (*a > 0.0) != (*b > 0.0) && flips <= 5 {
                let max = s64.iter().fold(0f64, |m, v| m.max(v.abs()));
                println!(
                    "  flipped unit {i}: float32 {a:.3e}, float64 {b:.3e} (layer max |.| {max:.2e})"
                );
            }
        }
        total_flips += flips;
        total_units += s32.len();
        total_near += near;
        println!(
            "{name:<28} units {:>8} ReLU sign flips {flips:>4} (|pre| <= 1e-5 max: {near})",
            s32.len()
        );
    }
    for (name, input, k, s, pad) in &pools {
        let pair = get(input);
        let a = pool_argmax(&pair.a32, pair.shape, *k, *s, *pad);
        let b = pool_argmax(&pair.a64, pair.shape, *k, *s, *pad);
        let changed = a.iter().zip(&b).filter(|(p, q)| p != q).count();
        println!("{name:<28} windows {:>6} argmax changes {changed}", a.len());
    }
    println!(
        "total: {total_flips} ReLU sign flips in {total_units} units ({total_near} within 1e-5 of the layer's max of zero)"
    );
}
