//! MATLAB's `imresize(…, "bicubic")`, which `--cam-style matlab` uses to upsample
//! Grad-CAM maps, against ResizeRight (an independent reimplementation of `imresize`;
//! fixture from `scripts/fixtures/gen_bicubic.py`).

use leukex_explain::resize::{PixelGrid, resize_bicubic_matlab, resize_bilinear};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bicubic_matlab.json"
    );
    let text = std::fs::read_to_string(path).expect("run scripts/fixtures/gen_bicubic.py");
    let v: Value = serde_json::from_str(&text).expect("fixture JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn dims(v: &Value) -> [usize; 2] {
    let a = v.as_array().expect("dims");
    [
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    ]
}

#[test]
fn bicubic_equals_matlab_imresize_reference() {
    let cases = cases();
    assert_eq!(cases.len(), 5);
    for c in &cases {
        let [h, w] = dims(&c["in"]);
        let [oh, ow] = dims(&c["out"]);
        let src = floats(&c["src"]);
        let expected = floats(&c["expected"]);
        let got = resize_bicubic_matlab(&src, h, w, oh, ow);
        assert_eq!(got.len(), expected.len());
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5 * scale,
            "{h}x{w} -> {oh}x{ow}: max |diff| {worst:e} (scale {scale})"
        );
        // The reference is not bilinear: a bilinear resize must fail the same check, so
        // the comparison can tell kernels apart.
        let bilinear = resize_bilinear(&src, h, w, oh, ow, PixelGrid::HalfPixel);
        let bilinear_worst = bilinear
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(bilinear_worst > 1e-3 * scale, "{h}x{w}: bilinear too close");
    }
    // Cubic overshoot is kept (MATLAB does not clamp): some reference value is negative.
    assert!(
        cases
            .iter()
            .any(|c| floats(&c["expected"]).iter().any(|&v| v < 0.0))
    );
}
