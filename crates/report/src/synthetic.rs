//! A small made-up study folder for tests and timings: hand-written training runs and
//! maps with known structure, evaluated by the real `leukex-evaluate`, so that the
//! numbers a report must show come from a writer this crate does not control.
//!
//! The maps are not explanations of anything: each model's maps concentrate on the
//! cell (or, for the shortcut variant, on the red cells) plus a deterministic ripple.

use crate::manifest::{DataInfo, MethodEntry, ModelEntry, STUDY_FORMAT, StudyManifest, Variant};
use leukex_data::MorphologyMask;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_evaluate::{EvaluateOptions, evaluate_dir};
use serde_json::json;
use std::path::Path;

/// What to put into the study.
#[derive(Debug, Clone)]
pub struct SyntheticStudy {
    /// Architectures (one model group each, `seeds` models per group).
    pub archs: Vec<String>,
    pub seeds: u64,
    pub methods: Vec<String>,
    /// Test images, half blast (`ImNNN_1`), half healthy (`ImNNN_0`).
    pub images: usize,
    /// Side of images, masks and maps, pixels.
    pub side: usize,
    /// Add a `shortcut` variant with one model per architecture (seed 0).
    pub shortcut: bool,
    /// Write `model_metrics.json` per model.
    pub model_metrics: bool,
    /// Keep `per_image.csv` (evaluate writes it; false removes it).
    pub per_image: bool,
    /// Bootstrap resamples of the evaluation.
    pub resamples: usize,
}

impl Default for SyntheticStudy {
    fn default() -> Self {
        SyntheticStudy {
            archs: vec!["resnet18".into()],
            seeds: 2,
            methods: vec!["grad-cam".into(), "lrp-epsilon".into()],
            images: 6,
            side: 16,
            shortcut: true,
            model_metrics: true,
            per_image: true,
            resamples: 200,
        }
    }
}

/// The image stems of the study: blasts first, then healthy cells.
pub fn stems(n: usize) -> Vec<String> {
    let blasts = n.div_ceil(2);
    (0..n)
        .map(|i| {
            if i < blasts {
                format!("Im{:03}_1", i + 1)
            } else {
                format!("Im{:03}_0", 131 + i - blasts)
            }
        })
        .collect()
}

/// The wrongly classified image: the first healthy one.
fn wrong(stems: &[String]) -> Option<&String> {
    stems.iter().find(|s| s.ends_with("_0"))
}

impl SyntheticStudy {
    /// (model entry) of every model, clean variant first.
    pub fn models(&self) -> Vec<ModelEntry> {
        let mut v = Vec::new();
        let entry = |id: String, group: String, arch: &str, seed: u64, variant: &str| ModelEntry {
            run: format!("runs/{id}"),
            maps: format!("maps/{id}"),
            id,
            group,
            arch: arch.into(),
            seed,
            variant: variant.into(),
            image_size: self.side as u32,
            weights: "none".into(),
            epochs: 2,
        };
        for arch in &self.archs {
            for seed in 0..self.seeds {
                let id = if seed == 0 {
                    arch.clone()
                } else {
                    format!("{arch}-s{seed}")
                };
                v.push(entry(id, arch.clone(), arch, seed, "main"));
            }
        }
        if self.shortcut {
            for arch in &self.archs {
                let id = format!("{arch}-shortcut");
                v.push(entry(id.clone(), id, arch, 0, "shortcut"));
            }
        }
        v
    }

    /// Writes the study into `dir` (which may exist). Panics on failure: it is a test
    /// and benchmark helper.
    pub fn write(&self, dir: &Path) {
        let side = self.side;
        let data = dir.join("data");
        let stems = stems(self.images);
        // Nucleus top-left block, cytoplasm around it, red cells in the bottom quarter.
        let mask: Vec<u8> = (0..side * side)
            .map(|i| {
                let (x, y) = (i % side, i / side);
                if x < side * 5 / 16 && y < side * 5 / 16 {
                    1
                } else if x < side / 2 && y < side / 2 {
                    2
                } else if y >= side * 3 / 4 {
                    4
                } else {
                    0
                }
            })
            .collect();
        for (s, stem) in stems.iter().enumerate() {
            MorphologyMask::from_raw(side as u32, side as u32, mask.clone())
                .unwrap()
                .write_png(&data.join("masks").join(format!("{stem}.png")))
                .unwrap();
            let img = image::RgbImage::from_fn(side as u32, side as u32, |x, y| {
                image::Rgb([
                    (x * 255 / side as u32) as u8,
                    (y * 255 / side as u32) as u8,
                    (s * 40 % 256) as u8,
                ])
            });
            img.save(data.join(format!("{stem}.png"))).unwrap();
        }
        let models = self.models();
        for m in &models {
            self.write_run(dir, m, &stems);
            self.write_maps(dir, m, &stems, &data);
        }
        let mut variants = vec![Variant {
            id: "main".into(),
            data: "data".into(),
            masks: "data/masks".into(),
            eval: "eval".into(),
            shortcut: None,
        }];
        if self.shortcut {
            variants.push(Variant {
                id: "shortcut".into(),
                data: "data".into(),
                masks: "data/masks".into(),
                eval: "eval-shortcut".into(),
                shortcut: Some("rbc-density".into()),
            });
        }
        for v in &variants {
            let ids: Vec<String> = models
                .iter()
                .filter(|m| m.variant == v.id)
                .map(|m| m.id.clone())
                .collect();
            let eval = dir.join(&v.eval);
            let mut opts = EvaluateOptions::new(dir.join("maps"), data.join("masks"), &eval);
            opts.models = Some(ids.clone());
            opts.bootstrap_resamples = self.resamples;
            evaluate_dir(&opts).unwrap();
            if !self.per_image {
                std::fs::remove_file(eval.join("per_image.csv")).unwrap();
            }
            if self.model_metrics {
                for id in &ids {
                    // The shape `leukex-study`'s model metrics write.
                    let mm = json!({"model": id, "faithfulness": [
                        {"method": self.methods[0], "metric": "deletion-auc", "n": 6,
                         "ci95": {"n": 6, "mean": 0.4321, "lo": 0.4, "hi": 0.45}}],
                        "sanity": [
                        {"method": self.methods[0], "similarity": "spearman",
                         "layers": [{"layer": "fc", "mean": 0.5}, {"layer": "conv1", "mean": 0.1}],
                         "last_correlation": {"n": 6, "mean": 0.1, "lo": 0.05, "hi": 0.15},
                         "average_correlation": 0.3}]});
                    write_json_atomic(
                        &eval.join("models").join(id).join("model_metrics.json"),
                        &mm,
                    )
                    .unwrap();
                }
            }
        }
        let manifest = StudyManifest {
            format: STUDY_FORMAT.into(),
            name: "tiny <study>".into(),
            quick: true,
            data: DataInfo {
                kind: "synth".into(),
                description: format!("hand-made {side} px crops"),
                reproduction: false,
                groups_known: false,
            },
            variants,
            models,
            methods: self
                .methods
                .iter()
                .map(|m| MethodEntry {
                    id: m.clone(),
                    paper: m == "grad-cam",
                })
                .collect(),
            notes: vec!["a made-up study for tests".into()],
        };
        write_json_atomic(&dir.join("study.json"), &manifest).unwrap();
        write_bytes_atomic(
            &dir.join("study.toml"),
            b"[study]\nname = \"tiny <study>\" # & more\n",
        )
        .unwrap();
    }

    fn write_run(&self, dir: &Path, m: &ModelEntry, stems: &[String]) {
        let run = dir.join(&m.run);
        write_bytes_atomic(
            &run.join("model.json"),
            br#"{"format": "leukex-model/1", "classes": ["healthy", "all"], "positive_class": 1}"#,
        )
        .unwrap();
        let metrics = json!({
            "test": {"n": 6, "loss": 0.4, "accuracy": 5.0 / 6.0, "positive_class": 1,
                     "sensitivity": 1.0, "specificity": 2.0 / 3.0, "precision": 0.75, "f1": 6.0 / 7.0,
                     "roc_auc": 0.8888888888888888, "confusion": [[2, 1], [0, 3]]},
            "val": null, "best_epoch": 1, "epochs_run": 2, "stopped_early": false,
            "history": [
                {"epoch": 0, "lr": 0.001, "train_loss": 0.7, "train_accuracy": 0.5, "val_loss": 0.69,
                 "val_accuracy": 0.5, "seconds": 1.0, "images_per_second": 10.0},
                {"epoch": 1, "lr": 0.001, "train_loss": 0.4, "train_accuracy": 0.8, "val_loss": 0.5,
                 "val_accuracy": 0.75, "seconds": 1.0, "images_per_second": 10.0}],
            "train_seconds": 2.0
        });
        write_json_atomic(&run.join("metrics.json"), &metrics).unwrap();
        let mut csv = String::from("name,label,predicted,p_healthy,p_all\n");
        for (i, stem) in stems.iter().enumerate() {
            let label = if stem.ends_with("_1") {
                "all"
            } else {
                "healthy"
            };
            let predicted = if Some(stem) == wrong(stems) {
                "all"
            } else {
                label
            };
            let p_all = if predicted == "all" {
                0.6 + 0.3 * i as f64 / stems.len() as f64
            } else {
                0.2
            };
            csv.push_str(&format!(
                "{stem},{label},{predicted},{:.6},{p_all:.6}\n",
                1.0 - p_all
            ));
        }
        write_bytes_atomic(&run.join("test_predictions.csv"), csv.as_bytes()).unwrap();
    }

    fn write_maps(&self, dir: &Path, m: &ModelEntry, stems: &[String], data: &Path) {
        let side = self.side;
        let maps = dir.join(&m.maps);
        let cheat = m.variant == "shortcut";
        let mut images = serde_json::Map::new();
        for (s, stem) in stems.iter().enumerate() {
            let true_label = i64::from(stem.ends_with("_1"));
            let predicted = if Some(stem) == wrong(stems) {
                1
            } else {
                true_label
            };
            images.insert(
                stem.clone(),
                json!({"source": data.join(format!("{stem}.png")), "true_label": true_label,
                       "predicted": predicted, "target": true_label}),
            );
            for (k, method) in self.methods.iter().enumerate() {
                // Odd methods are signed (a negative offset), even ones CAM-like.
                let offset = if k % 2 == 1 { -0.3 } else { 0.0 };
                let v: Vec<f32> = (0..side * side)
                    .map(|i| {
                        let (x, y) = (i % side, i / side);
                        let focus = if cheat {
                            y >= side * 3 / 4
                        } else {
                            x < side * 7 / 16 && y < side * 7 / 16
                        };
                        (focus as u8 as f32) * (1.0 + k as f32 + m.seed as f32)
                            + ((i * 7 + s * 3 + k + m.seed as usize) % 5) as f32 * 0.1
                            + offset
                    })
                    .collect();
                leukex_data::npy::write_f32(
                    &maps.join(stem).join(format!("{method}.npy")),
                    &[side, side],
                    &v,
                )
                .unwrap();
            }
        }
        write_json_atomic(
            &maps.join("explain.json"),
            &json!({"target": "true", "images": images}),
        )
        .unwrap();
    }
}
