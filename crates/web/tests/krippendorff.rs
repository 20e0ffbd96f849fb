//! Krippendorff's α (ordinal) against the PyPI `krippendorff` package
//! (fixture: scripts/fixtures/gen_krippendorff.py).

use leukex_web::summary::krippendorff_alpha_ordinal;
use serde_json::Value;

#[test]
fn ordinal_alpha_equals_the_krippendorff_package() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/krippendorff.json"
    ))
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for (i, case) in cases.iter().enumerate() {
        // reliability_data is raters x maps; α wants, per map, the values given.
        let rows: Vec<Vec<Option<f64>>> = case["reliability_data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(Value::as_f64).collect())
            .collect();
        let units: Vec<Vec<f64>> = (0..rows[0].len())
            .map(|u| rows.iter().filter_map(|r| r[u]).collect())
            .collect();
        let want = case["alpha"].as_f64().unwrap();
        let got = krippendorff_alpha_ordinal(&units).unwrap();
        assert!((got - want).abs() < 1e-10, "case {i}: {got} vs {want}");
    }
}
