//! `leukex segment IMAGES... --out DIR`: many images, one mask each, plus
//! the label table, a per-image confidence table and a record of how the
//! masks were made. Every file is written atomically.

use crate::segment::{ImageReport, OtherCells, SegmentOptions, segment};
use leukex_data::dataset::LABELS_FILE;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_data::image_io::{is_image_path, read_rgb};
use leukex_data::{DataError, LabelTable};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The per-image table, one row per mask.
pub const CSV_FILE: &str = "segment.csv";
/// How the masks were made: method, options, assumptions.
pub const JSON_FILE: &str = "segment.json";

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
}

impl SegmentError {
    fn input(path: &Path, reason: impl Into<String>) -> Self {
        SegmentError::Input {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, SegmentError>;

/// The images named by `inputs`: files as they are, folders by their image
/// files (not recursive), in name order. Two images with one stem would
/// write one mask: an error naming both.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| DataError::io(input, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_path(p))
                .collect();
            if found.is_empty() {
                return Err(SegmentError::input(
                    input,
                    "no images in this folder (looked for .tif, .png, .jpg, .bmp)",
                ));
            }
            found.sort();
            images.extend(found);
        } else if input.is_file() {
            if !is_image_path(input) {
                return Err(SegmentError::input(
                    input,
                    "not an image file by its extension (.tif, .png, .jpg, .bmp)",
                ));
            }
            images.push(input.clone());
        } else {
            return Err(SegmentError::input(input, "no such file or folder"));
        }
    }
    // A file named twice (alone and in its folder) is segmented once.
    let mut seen = std::collections::HashSet::new();
    images.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    let mut stems: BTreeMap<String, &PathBuf> = BTreeMap::new();
    for p in &images {
        if let Some(other) = stems.insert(stem(p), p) {
            return Err(SegmentError::input(
                p,
                format!(
                    "same file stem as {}: both would write one mask",
                    other.display()
                ),
            ));
        }
    }
    Ok(images)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One image's outcome.
#[derive(Debug, Clone)]
pub struct ImageResult {
    pub image: PathBuf,
    pub mask: PathBuf,
    pub report: ImageReport,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// In input order.
    pub results: Vec<ImageResult>,
    /// Images that could not be read or written; the others are done.
    pub failures: Vec<SegmentError>,
}

#[derive(Serialize)]
struct CsvRow<'a> {
    image: &'a str,
    mask: &'a str,
    confidence: f32,
    cell_separability: f32,
    nucleus_separability: f32,
    rbc_separability: f32,
    cell_found: bool,
    cell_touches_border: bool,
    nucleus_px: usize,
    cytoplasm_px: usize,
    vacuole_px: usize,
    rbc_px: usize,
    vacuoles: usize,
    red_cells: usize,
    other_cells: usize,
}

/// Segments `images` into `out` (created if needed): `STEM.png` per image,
/// `labels.json`, `segment.csv` and `segment.json`. `done` is called after
/// each image (from worker threads).
pub fn segment_files(
    images: &[PathBuf],
    out: &Path,
    opts: &SegmentOptions,
    done: &(dyn Fn(&Path) + Sync),
) -> Result<BatchReport> {
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let masks: Vec<PathBuf> = images
        .iter()
        .map(|p| out.join(format!("{}.png", stem(p))))
        .collect();
    for (image, mask) in images.iter().zip(&masks) {
        if same_file(image, mask) {
            return Err(SegmentError::input(
                image,
                format!(
                    "its mask would overwrite it ({}): choose another --out folder",
                    mask.display()
                ),
            ));
        }
    }
    let job = || -> Vec<Result<ImageResult>> {
        images
            .par_iter()
            .zip(&masks)
            .map(|(image, mask)| {
                let rgb = read_rgb(image)?;
                let seg = segment(&rgb, opts);
                seg.mask.write_png(mask)?;
                done(image);
                Ok(ImageResult {
                    image: image.clone(),
                    mask: mask.clone(),
                    report: seg.report,
                })
            })
            .collect()
    };
    // Every mask is synced to disk before it is renamed into place; a
    // thread waiting for the disk leaves its core idle, so there are more
    // threads than cores (as in leukex-synth's writer).
    let threads = rayon::current_num_threads().max(1) * IO_OVERSUBSCRIPTION;
    let outcomes = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(job),
        Err(_) => job(),
    };
    let mut report = BatchReport::default();
    for o in outcomes {
        match o {
            Ok(r) => report.results.push(r),
            Err(e) => report.failures.push(e),
        }
    }
    LabelTable::default().write_json(&out.join(LABELS_FILE))?;
    write_csv(&out.join(CSV_FILE), &report.results)?;
    write_json_atomic(&out.join(JSON_FILE), &record(opts, &report))?;
    Ok(report)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn write_csv(path: &Path, results: &[ImageResult]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in results {
        let (image, mask) = (r.image.display().to_string(), file_name(&r.mask));
        let s = &r.report;
        w.serialize(CsvRow {
            image: &image,
            mask: &mask,
            confidence: s.confidence,
            cell_separability: s.cell_separability,
            nucleus_separability: s.nucleus_separability,
            rbc_separability: s.rbc_separability,
            cell_found: s.cell_found,
            cell_touches_border: s.cell_touches_border,
            nucleus_px: s.nucleus_px,
            cytoplasm_px: s.cytoplasm_px,
            vacuole_px: s.vacuole_px,
            rbc_px: s.rbc_px,
            vacuoles: s.vacuoles,
            red_cells: s.red_cells,
            other_cells: s.other_cells,
        })
        .map_err(|e| SegmentError::input(path, format!("cannot write CSV: {e}")))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| SegmentError::input(path, format!("cannot write CSV: {e}")))?;
    Ok(write_bytes_atomic(path, &bytes)?)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Worker threads per core while masks are written.
const IO_OVERSUBSCRIPTION: usize = 2;

/// The lowest-confidence masks named in segment.json.
const CHECK_FIRST: usize = 10;

fn record(opts: &SegmentOptions, report: &BatchReport) -> serde_json::Value {
    let mut by_confidence: Vec<&ImageResult> = report.results.iter().collect();
    by_confidence.sort_by(|a, b| a.report.confidence.total_cmp(&b.report.confidence));
    let other_cells = match opts.other_cells {
        OtherCells::Background => {
            "white cells other than the one nearest the crop's centre (usually cut by the border) are labelled background"
        }
        OtherCells::Segment => {
            "white cells other than the one nearest the crop's centre are segmented like it (nucleus, cytoplasm, vacuoles)"
        }
    };
    serde_json::json!({
        "tool": "leukex segment",
        "version": env!("CARGO_PKG_VERSION"),
        "method": "optical density relative to the film; basic stain (OD red - OD blue) with Otsu's threshold \
                   gives the white cells; inside the centred one, density in green with Otsu's threshold gives the \
                   nucleus (holes filled), pixels paler than half the cytoplasm's median density enclosed by the cell \
                   give vacuoles; outside white cells, density in green with Otsu's threshold gives red cells, split \
                   by a watershed on the distance transform and each filled to its convex outline",
        "options": { "other_cells": opts.other_cells.name() },
        "assumptions": [
            other_cells,
            "platelets and other small basic-stained blobs are background, as in the paper",
            "the crop is centred on the cell its class label is about (as in ALL-IDB2)",
        ],
        "labels": LabelTable::default().to_json_value(),
        "images": report.results.len(),
        "failed": report.failures.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "check_first": by_confidence.iter().take(CHECK_FIRST).map(|r| serde_json::json!({
            "mask": file_name(&r.mask),
            "confidence": r.report.confidence,
            "cell_found": r.report.cell_found,
        })).collect::<Vec<_>>(),
    })
}
