//! Times burn's generic convolution gradients against `leukex_models::conv`'s on
//! ResNet18's convolution shapes (and two depthwise ones) at batch `N` (default 16):
//!
//!     cargo run --release -p leukex-models --example conv_grads [N]
//!
//! Per layer: seconds for the weight gradient and the input gradient (burn / fast, median
//! of 3) and the largest difference relative to the largest burn value.

use std::time::Instant;

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape};
use leukex_models::conv::flex;

fn random(shape: [usize; 4], seed: u64) -> FlexTensor {
    let n = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    FlexTensor::new(
        Bytes::from_elems(v),
        Layout::contiguous(Shape::new(shape)),
        DType::F32,
    )
}

fn vals(t: FlexTensor) -> Vec<f32> {
    t.to_contiguous().as_slice::<f32>().unwrap().to_vec()
}

fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let m = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |d, (x, y)| d.max((x - y).abs())) / m
}

fn time<F: FnMut() -> FlexTensor>(mut f: F) -> (f64, FlexTensor) {
    let mut ts = Vec::new();
    let mut out = None;
    for _ in 0..3 {
        let t = Instant::now();
        let o = f();
        ts.push(t.elapsed().as_secs_f64());
        out = Some(o);
    }
    ts.sort_by(f64::total_cmp);
    (ts[1], out.unwrap())
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(16, |s| s.parse().unwrap());
    // (name, cin, cout, k, stride, pad (begin, end), input size, groups)
    let layers = [
        ("conv1", 3, 64, 7, 2, (3, 3), 224, 1),
        ("l1 3x3", 64, 64, 3, 1, (1, 1), 56, 1),
        ("l2 3x3 s2", 64, 128, 3, 2, (1, 1), 56, 1),
        ("l2 3x3", 128, 128, 3, 1, (1, 1), 28, 1),
        ("l2 ds", 64, 128, 1, 2, (0, 0), 56, 1),
        ("l3 3x3", 256, 256, 3, 1, (1, 1), 14, 1),
        ("l4 3x3", 512, 512, 3, 1, (1, 1), 7, 1),
        ("l4 ds", 256, 512, 1, 2, (0, 0), 14, 1),
        ("dw 3x3 s2 same", 96, 96, 3, 2, (0, 1), 112, 96),
        ("dw 5x5", 480, 480, 5, 1, (2, 2), 14, 480),
        ("pw 1x1", 240, 40, 1, 1, (0, 0), 28, 1),
    ];
    let env = |k: &str| std::env::var(k).is_ok();
    println!(
        "{:<16} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9}",
        "layer", "dW burn", "dW fast", "rel", "dx burn", "dx fast", "rel"
    );
    let mut tot = [0f64; 4];
    for (i, (name, cin, cout, k, s, p, hw, groups)) in layers.into_iter().enumerate() {
        let o = ConvOptions::new_with_padding([s, s], [p, p], [1, 1], groups);
        let oh = (hw + p.0 + p.1 - k) / s + 1;
        let x = random([n, cin, hw, hw], 3 * i as u64);
        let w = random([cout, cin / groups, k, k], 3 * i as u64 + 1);
        let dy = random([n, cout, oh, oh], 3 * i as u64 + 2);
        let (tb, wb) = time(|| flex::weight_grad_burn(x.clone(), w.clone(), dy.clone(), o.clone()));
        let (tf, wf) = time(|| flex::weight_grad_fast(x.clone(), w.clone(), dy.clone(), o.clone()));
        let (ib, xb) = if env("NO_DX") {
            (0.0, x.clone())
        } else {
            time(|| flex::input_grad_burn(x.clone(), w.clone(), dy.clone(), o.clone()))
        };
        let (if_, xf) = if env("NO_DX") {
            (0.0, x.clone())
        } else {
            time(|| flex::input_grad_fast(x.clone(), w.clone(), dy.clone(), o.clone()))
        };
        let rw = rel_diff(&vals(wb), &vals(wf));
        let rx = rel_diff(&vals(xb), &vals(xf));
        println!("{name:<16} {tb:>9.4} {tf:>9.4} {rw:>9.1e} | {ib:>9.4} {if_:>9.4} {rx:>9.1e}");
        for (t, v) in tot.iter_mut().zip([tb, tf, ib, if_]) {
            *t += v;
        }
    }
    println!(
        "{:<16} {:>9.4} {:>9.4} {:>9} | {:>9.4} {:>9.4}",
        "total", tot[0], tot[1], "", tot[2], tot[3]
    );
}
