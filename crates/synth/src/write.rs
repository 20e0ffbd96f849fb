//! Writing a synthetic dataset to disk in the ALL-IDB2 layout.

use crate::{CellKind, GENERATOR_VERSION, SynthConfig, generate_one, label_of, stem_of};
use leukex_data::dataset::label_from_stem;
use leukex_data::{DataError, LabelTable, MorphologyClass, fsutil, image_io};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writer threads per core (see [`write_dataset`]).
const IO_OVERSUBSCRIPTION: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth configuration: {0}")]
    Config(String),
    #[error(
        "{}: the folder is not empty and has no synth.json, so it was not made by `leukex synth`; \
         choose a new or empty folder (nothing was written)",
        .0.display()
    )]
    ForeignFolder(PathBuf),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// How many white cells of each kind a dataset holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub healthy: usize,
    pub l1: usize,
    pub l2: usize,
    pub l3: usize,
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SynthReport {
    pub images: usize,
    pub blasts: usize,
    pub healthy: usize,
    /// Cell kinds (the L3 blasts are the ones with vacuoles).
    pub kinds: KindCounts,
    /// Pixels of each morphology class over all masks, in class order
    /// (background, nucleus, cytoplasm, vacuole, rbc).
    pub class_pixels: [u64; MorphologyClass::COUNT],
    /// Images and masks of an earlier, larger run in the same folder that
    /// were deleted because this run does not include them.
    pub stale_removed: usize,
}

#[derive(Serialize)]
struct Provenance<'a> {
    generator: &'static str,
    crate_version: &'static str,
    generator_version: u32,
    #[serde(flatten)]
    config: &'a SynthConfig,
    slides: u64,
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a SynthReport>,
}

/// Renders all `cfg.n` images in parallel and writes, under `out`:
/// `ImNNN_Y.tif`, `masks/ImNNN_Y.png`, `labels.json` (the default label
/// table), `classes.txt` (the names of labels 0 and 1: `healthy`, `all`),
/// `manifest.csv` (`path,label,mask,group`, paths relative to `out`) and
/// `synth.json` (how the dataset was made).
///
/// Every file is written atomically. `synth.json` comes first, marking the
/// folder as a synthetic dataset, and `manifest.csv` last, so a dataset with
/// a manifest is complete. Writing into a folder that holds other files but
/// no `synth.json` is refused; rewriting an earlier synthetic dataset is
/// allowed and removes its images that the new one does not have.
///
/// Images are rendered and written by a pool of four threads per thread of
/// the calling rayon pool (so `RAYON_NUM_THREADS` still scales it), because
/// each file is synced to disk and a thread waiting for the disk leaves its
/// core idle.
///
/// `progress` is called once per finished image with the number finished so
/// far; it is called from worker threads, so two calls may arrive out of
/// order.
pub fn write_dataset(
    cfg: &SynthConfig,
    out: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<SynthReport, SynthError> {
    cfg.validate().map_err(SynthError::Config)?;
    let stems: Vec<String> = (0..cfg.n)
        .map(|i| stem_of(cfg.n, i, label_of(cfg.n, i)))
        .collect();
    let stale_removed = prepare_folder(out, &stems)?;
    let provenance = |complete, report| Provenance {
        generator: "leukex-synth",
        crate_version: env!("CARGO_PKG_VERSION"),
        generator_version: GENERATOR_VERSION,
        config: cfg,
        slides: crate::scene::SLIDES,
        complete,
        report,
    };
    fsutil::write_json_atomic(&out.join("synth.json"), &provenance(false, None))?;

    let done = AtomicUsize::new(0);
    let job = || {
        (0..cfg.n)
            .into_par_iter()
            .map(|i| {
                let s = generate_one(cfg, i);
                image_io::write_rgb(&out.join(format!("{}.tif", s.stem)), &s.image)?;
                s.mask
                    .write_png(&out.join("masks").join(format!("{}.png", s.stem)))?;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                Ok((s.stem, s.label, s.group, s.kind, s.mask.counts()))
            })
            .collect::<Result<Vec<_>, DataError>>()
    };
    // Every file is synced to disk before it is renamed into place, and a
    // thread waiting for the disk does no work. More threads than cores
    // keep the cores busy while others wait; the output does not depend on
    // the thread count.
    let threads = rayon::current_num_threads().max(1) * IO_OVERSUBSCRIPTION;
    let rows = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(job),
        Err(_) => job(),
    }?;

    let mut report = SynthReport {
        images: cfg.n,
        blasts: cfg.blasts(),
        healthy: cfg.n - cfg.blasts(),
        kinds: KindCounts::default(),
        class_pixels: [0; MorphologyClass::COUNT],
        stale_removed,
    };
    let mut manifest = String::from("path,label,mask,group\n");
    for (stem, label, group, kind, counts) in &rows {
        manifest.push_str(&format!("{stem}.tif,{label},masks/{stem}.png,{group}\n"));
        match kind {
            CellKind::Healthy => report.kinds.healthy += 1,
            CellKind::L1 => report.kinds.l1 += 1,
            CellKind::L2 => report.kinds.l2 += 1,
            CellKind::L3 => report.kinds.l3 += 1,
        }
        for (total, c) in report.class_pixels.iter_mut().zip(counts.per_class) {
            *total += c;
        }
    }
    LabelTable::default().write_json(&out.join("labels.json"))?;
    // The manifest's labels are ALL-IDB2's digits; this names them.
    fsutil::write_bytes_atomic(
        &out.join(leukex_data::dataset::CLASSES_FILE),
        b"healthy\nall\n",
    )?;
    fsutil::write_json_atomic(&out.join("synth.json"), &provenance(true, Some(&report)))?;
    fsutil::write_bytes_atomic(&out.join("manifest.csv"), manifest.as_bytes())?;
    Ok(report)
}

/// Makes `out` ready: refuses a foreign folder, and in an earlier synthetic
/// dataset drops the manifest (the set is incomplete until the new one is
/// written) and images the new set does not contain. Returns how many
/// image and mask files were removed.
fn prepare_folder(out: &Path, stems: &[String]) -> Result<usize, SynthError> {
    let mut removed = 0;
    if out.exists() {
        if !out.is_dir() {
            return Err(DataError::invalid(out, "exists and is not a folder").into());
        }
        let mut entries = std::fs::read_dir(out).map_err(|e| DataError::io(out, e))?;
        let non_empty = entries.next().is_some();
        if non_empty && !out.join("synth.json").is_file() {
            return Err(SynthError::ForeignFolder(out.to_path_buf()));
        }
        remove_if_present(&out.join("manifest.csv"))?;
        let keep: HashSet<&str> = stems.iter().map(String::as_str).collect();
        removed += remove_stale(out, "tif", &keep)?;
        removed += remove_stale(&out.join("masks"), "png", &keep)?;
    }
    let masks = out.join("masks");
    std::fs::create_dir_all(&masks).map_err(|e| DataError::io(&masks, e))?;
    Ok(removed)
}

fn remove_if_present(path: &Path) -> Result<(), DataError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::io(path, e)),
        _ => Ok(()),
    }
}

/// Removes `ImDIGITS_L.ext` files in `dir` whose stem is not kept.
fn remove_stale(dir: &Path, ext: &str, keep: &HashSet<&str>) -> Result<usize, DataError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(ext)?.strip_suffix('.'))
        else {
            continue;
        };
        if is_synth_stem(stem) && !keep.contains(stem) {
            remove_if_present(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A name the generator writes (`Im001_1`, see [`crate::stem_of`]).
fn is_synth_stem(stem: &str) -> bool {
    label_from_stem(stem).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_stems_are_recognised() {
        assert!(is_synth_stem("Im001_1") && is_synth_stem("Im1000_0"));
        assert!(!is_synth_stem("Im001_2") && !is_synth_stem("Im_1") && !is_synth_stem("photo"));
    }
}
