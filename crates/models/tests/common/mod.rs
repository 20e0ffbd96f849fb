//! Test support shared by the integration tests: fixture reading (the closed-form
//! parameter formula lives in `leukex_models::closed_form`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use leukex_models::StateDict;
#[allow(unused_imports)]
pub use leukex_models::closed_form::{closed_form_state_dict, input_value, param_value};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A reference fixture: tensors (`logits`, `input_grad`, `bn.<key>`) and metadata.
pub struct Fixture {
    pub tensors: StateDict,
    pub meta: HashMap<String, String>,
}

impl Fixture {
    pub fn load(case: &str) -> Self {
        let path = fixture_path(&format!("{case}.safetensors"));
        let tensors = StateDict::read_safetensors(&path).expect("fixture");
        let bytes = std::fs::read(&path).unwrap();
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = md.metadata().clone().unwrap_or_default();
        Self { tensors, meta }
    }
}
