//! A small study folder for trying the viewer and for its tests: synthetic images with
//! exact masks (`leukex-synth`) and made-up heat maps of two "models" and three "methods"
//! in the layout `leukex demo` writes (`data/`, `maps/<model>/<stem>/<method>.npy`,
//! `maps/<model>/explain.json`). No network is trained: the maps are drawn from the masks
//! (one method on the nucleus, one a smooth blob on the cell, one noise), so that a reader
//! sees at once what a good and a useless map look like.

use std::path::Path;

use leukex_data::fsutil::write_json_atomic;
use leukex_data::{LabelTable, MorphologyClass, MorphologyMask};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::error::{Result, WebError};

/// (id, signed) of the example's methods.
pub const EXAMPLE_METHODS: [(&str, bool); 3] = [
    ("lrp-epsilon", true),
    ("grad-cam", false),
    ("gradient", true),
];
pub const EXAMPLE_MODELS: [&str; 2] = ["resnet18", "vgg19"];

fn map_values(mask: &MorphologyMask, method: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let (w, h) = mask.dimensions();
    let cells: Vec<(f32, f32)> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| mask.get(x, y).is_some_and(MorphologyClass::is_cell))
        .map(|(x, y)| (x as f32, y as f32))
        .collect();
    let n = cells.len().max(1) as f32;
    let cx = cells.iter().map(|c| c.0).sum::<f32>() / n;
    let cy = cells.iter().map(|c| c.1).sum::<f32>() / n;
    let sigma = (n / std::f32::consts::PI).sqrt().max(4.0);
    let mut v = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let noise: f32 = rng.random_range(-1.0..1.0);
            let value = match method {
                // Relevance on the nucleus, a little negative evidence on red cells.
                0 => match mask.get(x, y) {
                    Some(MorphologyClass::Nucleus) => 1.0 + 0.3 * noise,
                    Some(MorphologyClass::Rbc) => -0.3 + 0.1 * noise,
                    _ => 0.05 * noise,
                },
                // A smooth non-negative blob on the cell, min-max scaled below.
                1 => {
                    let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                    (-d2 / (2.0 * sigma * sigma)).exp()
                }
                // Noise.
                _ => noise,
            };
            v.push(value);
        }
    }
    if method == 1 {
        let max = v.iter().cloned().fold(f32::MIN, f32::max);
        let min = v.iter().cloned().fold(f32::MAX, f32::min);
        for x in &mut v {
            *x = (*x - min) / (max - min).max(1e-7);
        }
    }
    v
}

/// Writes the example study into `dir`: `n` synthetic images of `size` pixels.
pub fn write_example_study(dir: &Path, n: usize, size: u32, seed: u64) -> Result<()> {
    let data = dir.join("data");
    let cfg = leukex_synth::SynthConfig {
        n,
        seed,
        size,
        ..Default::default()
    };
    leukex_synth::write_dataset(&cfg, &data, &|_| {})
        .map_err(|e| WebError::Other(format!("{}: {e}", data.display())))?;
    let mut stems: Vec<String> = std::fs::read_dir(&data)
        .map_err(|e| WebError::io(&data, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".tif").map(str::to_string)
        })
        .collect();
    stems.sort();
    let table = LabelTable::leukex_written();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (mi, model) in EXAMPLE_MODELS.iter().enumerate() {
        let mdir = dir.join("maps").join(model);
        let mut images = serde_json::Map::new();
        for (si, stem) in stems.iter().enumerate() {
            let mask =
                MorphologyMask::read_png(&data.join("masks").join(format!("{stem}.png")), &table)?;
            let (w, h) = mask.dimensions();
            for (k, (method, _)) in EXAMPLE_METHODS.iter().enumerate() {
                let v = map_values(&mask, k, &mut rng);
                let p = mdir.join(stem).join(format!("{method}.npy"));
                leukex_data::npy::write_f32(&p, &[h as usize, w as usize], &v)?;
            }
            let true_label = usize::from(stem.ends_with("_1"));
            // The second model gets every third image wrong, so the filters have work.
            let predicted = if mi == 1 && si % 3 == 0 {
                1 - true_label
            } else {
                true_label
            };
            let source = std::fs::canonicalize(data.join(format!("{stem}.tif")))
                .map_err(|e| WebError::io(data.join(stem), e))?;
            images.insert(
                stem.clone(),
                json!({"stem": stem, "source": source, "size": [h, w],
                       "true_label": true_label, "predicted": predicted}),
            );
        }
        let methods: Vec<_> = EXAMPLE_METHODS
            .iter()
            .map(|(id, signed)| json!({"id": id, "name": id, "signed": signed}))
            .collect();
        write_json_atomic(
            &mdir.join("explain.json"),
            &json!({
                "note": "example study of leukex-web: made-up heat maps, no trained model",
                "model": {"id": model, "arch": model, "classes": ["healthy", "blast"]},
                "methods": methods,
                "images": images,
            }),
        )?;
    }
    Ok(())
}
