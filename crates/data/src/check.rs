//! `leukex data check`: every problem of a data set at once, so a researcher
//! fixes them in one pass instead of one failed run per file.

use crate::dataset::{Dataset, OpenOptions, Sample, check_mask_size, discover};
use crate::error::DataError;
use crate::image_io;
use crate::morphology::{LabelTable, MorphologyMask, read_label_png};
use rayon::prelude::*;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem: the file it is about and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl From<DataError> for Problem {
    fn from(e: DataError) -> Self {
        Problem {
            path: e.path().to_path_buf(),
            message: e.message(),
        }
    }
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Images found (those whose name, label and stem were usable).
    pub images: usize,
    /// Of those, images with a mask.
    pub masks: usize,
    /// Each class and its number of images.
    pub classes: Vec<(String, usize)>,
    /// Structural problems first (in discovery order), then decoding
    /// problems in the order of the images.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Finds every problem of the data set under `root`: the structural ones of
/// [`Dataset::open`] (names, folders, manifest rows, label table, missing and
/// stray masks), then decodes every image and mask, in parallel.
pub fn check(root: &Path, opts: &OpenOptions) -> CheckReport {
    let discovery = discover(root, opts);
    let mut problems: Vec<Problem> = discovery
        .findings
        .into_iter()
        .map(|f| f.error.into())
        .collect();
    let Some(ds) = discovery.dataset else {
        return CheckReport {
            problems,
            ..CheckReport::default()
        };
    };
    problems.extend(decode_all(&ds).into_iter().flatten());
    CheckReport {
        images: ds.samples.len(),
        masks: ds.samples.iter().filter(|s| s.mask.is_some()).count(),
        classes: ds.classes.iter().cloned().zip(ds.class_counts()).collect(),
        problems,
    }
}

/// Decoding problems of each sample, in sample order (rayon's indexed
/// collect keeps it, so reports are the same from run to run).
fn decode_all(ds: &Dataset) -> Vec<Vec<Problem>> {
    ds.samples
        .par_iter()
        .map(|s| decode_sample(s, ds.label_table.as_ref()))
        .collect()
}

/// Decodes one image and its mask. A mask is checked even when its image is
/// unreadable (ids), and both the size and the ids are reported when both
/// are wrong. Without a label table (its own problem was already listed) the
/// ids are not checked.
fn decode_sample(s: &Sample, table: Option<&LabelTable>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let image_size = match image_io::read_rgb(&s.image) {
        Ok(img) => Some(img.dimensions()),
        Err(e) => {
            problems.push(e.into());
            None
        }
    };
    let Some(mask) = &s.mask else {
        return problems;
    };
    match read_label_png(mask) {
        Err(e) => problems.push(e.into()),
        Ok((width, height, ids)) => {
            let size_check =
                image_size.map(|size| check_mask_size(mask, (width, height), &s.image, size));
            if let Some(Err(e)) = size_check {
                problems.push(e.into());
            }
            let id_check =
                table.map(|table| MorphologyMask::from_ids(mask, width, height, &ids, table));
            if let Some(Err(e)) = id_check {
                problems.push(e.into());
            }
        }
    }
    problems
}
