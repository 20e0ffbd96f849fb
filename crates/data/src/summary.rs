//! `leukex data summary`: images per class and how much of the masks each
//! morphology class covers. These area shares are the chance levels of the
//! heat-map metrics later: a heat map spread at random puts that share of
//! its mass on the nucleus.

use crate::dataset::Dataset;
use crate::error::Result;
use crate::image_io;
use crate::morphology::{ClassCounts, MorphologyClass};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The summary of a data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSummary {
    pub root: PathBuf,
    pub layout: String,
    pub images: usize,
    pub classes: Vec<ClassSummary>,
    /// Mask statistics over all images; `None` when no image has a mask.
    pub overall: Option<MaskSummary>,
}

/// One image class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassSummary {
    pub name: String,
    pub count: usize,
    /// Each image size seen and how many images have it, largest count first.
    pub image_sizes: Vec<ImageSize>,
    /// `None` when no image of the class has a mask.
    pub masks: Option<MaskSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
    pub count: usize,
}

/// Mask area statistics of a set of images. Unlabelled pixels are counted
/// apart and left out of every fraction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskSummary {
    pub images_with_masks: usize,
    pub pixels: u64,
    pub labelled_pixels: u64,
    /// Unlabelled pixels / all mask pixels.
    pub unlabelled_fraction: f64,
    /// One entry per morphology class, in [`MorphologyClass::ALL`] order.
    pub fractions: Vec<ClassFraction>,
}

/// How much of the labelled area one morphology class covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassFraction {
    pub class: MorphologyClass,
    pub pixels: u64,
    /// Summed pixels of the class / summed labelled pixels (large images
    /// weigh more). `None` if nothing is labelled.
    pub pooled: Option<f64>,
    /// Mean over images of the class's share of that image's labelled
    /// pixels (every image weighs the same); images with no labelled pixel
    /// are left out. `None` if no image has a labelled pixel.
    pub mean_per_image: Option<f64>,
}

/// Accumulates the masks of a set of images.
#[derive(Default)]
struct MaskTally {
    images: usize,
    totals: ClassCounts,
    fraction_sums: [f64; MorphologyClass::COUNT],
    images_with_labels: usize,
}

impl MaskTally {
    fn add(&mut self, counts: &ClassCounts) {
        self.images += 1;
        for (total, n) in self.totals.per_class.iter_mut().zip(counts.per_class) {
            *total += n;
        }
        self.totals.unlabelled += counts.unlabelled;
        let labelled = counts.labelled();
        if labelled > 0 {
            self.images_with_labels += 1;
            for (sum, n) in self.fraction_sums.iter_mut().zip(counts.per_class) {
                *sum += n as f64 / labelled as f64;
            }
        }
    }

    fn summary(&self) -> Option<MaskSummary> {
        if self.images == 0 {
            return None;
        }
        let labelled = self.totals.labelled();
        let pixels = labelled + self.totals.unlabelled;
        let fractions = MorphologyClass::ALL
            .iter()
            .map(|&class| ClassFraction {
                class,
                pixels: self.totals.get(class),
                pooled: (labelled > 0).then(|| self.totals.get(class) as f64 / labelled as f64),
                mean_per_image: (self.images_with_labels > 0)
                    .then(|| self.fraction_sums[class.index()] / self.images_with_labels as f64),
            })
            .collect();
        Some(MaskSummary {
            images_with_masks: self.images,
            pixels,
            labelled_pixels: labelled,
            unlabelled_fraction: if pixels > 0 {
                self.totals.unlabelled as f64 / pixels as f64
            } else {
                0.0
            },
            fractions,
        })
    }
}

/// An image's size and, if it has a mask, the mask's pixel counts.
type SampleStats = ((u32, u32), Option<ClassCounts>);

/// Reads the size of every image (header only) and every mask, in parallel,
/// and tallies them per class. The first unreadable file (in sample order)
/// is the error; `check` lists them all.
pub fn summarize(ds: &Dataset) -> Result<DatasetSummary> {
    let per_sample: Vec<Result<SampleStats>> = (0..ds.samples.len())
        .into_par_iter()
        .map(|i| {
            let size = image_io::read_dimensions(&ds.samples[i].image)?;
            let counts = ds.load_mask(i)?.map(|m| m.counts());
            Ok((size, counts))
        })
        .collect();

    let n_classes = ds.classes.len();
    let mut sizes: Vec<BTreeMap<(u32, u32), usize>> = vec![BTreeMap::new(); n_classes];
    let mut tallies: Vec<MaskTally> = (0..n_classes).map(|_| MaskTally::default()).collect();
    let mut overall = MaskTally::default();
    for (sample, result) in ds.samples.iter().zip(per_sample) {
        let (size, counts) = result?;
        *sizes[sample.label].entry(size).or_default() += 1;
        if let Some(counts) = counts {
            tallies[sample.label].add(&counts);
            overall.add(&counts);
        }
    }

    let counts = ds.class_counts();
    let classes = ds
        .classes
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut image_sizes: Vec<ImageSize> = sizes[i]
                .iter()
                .map(|(&(width, height), &count)| ImageSize {
                    width,
                    height,
                    count,
                })
                .collect();
            image_sizes.sort_by_key(|s| std::cmp::Reverse(s.count));
            ClassSummary {
                name: name.clone(),
                count: counts[i],
                image_sizes,
                masks: tallies[i].summary(),
            }
        })
        .collect();
    Ok(DatasetSummary {
        root: ds.root.clone(),
        layout: ds.layout.to_string(),
        images: ds.samples.len(),
        classes,
        overall: overall.summary(),
    })
}

fn fraction(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

impl DatasetSummary {
    /// Markdown tables for the terminal: images per class, then the area
    /// share of each morphology class per image class and overall.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# {} ({} layout): {} images, {} classes\n",
            self.root.display(),
            self.layout,
            self.images,
            self.classes.len()
        );
        out.push_str("| class | images | image sizes | with mask |\n|---|---:|---|---:|\n");
        for c in &self.classes {
            let sizes: Vec<String> = c
                .image_sizes
                .iter()
                .map(|s| format!("{}×{} ({})", s.width, s.height, s.count))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.name,
                c.count,
                if sizes.is_empty() {
                    "–".to_string()
                } else {
                    sizes.join(", ")
                },
                c.masks.as_ref().map_or(0, |m| m.images_with_masks)
            );
        }

        let Some(overall) = &self.overall else {
            out.push_str("\nNo masks: no morphology area fractions.\n");
            return out;
        };
        out.push_str(
            "\nMask area fractions of the labelled pixels: pooled (summed pixels), \
             and in brackets the mean of per-image fractions. Unlabelled pixels are left out \
             of both; the last column is their share of all mask pixels.\n\n",
        );
        out.push_str("| class | masks |");
        for class in MorphologyClass::ALL {
            let _ = write!(out, " {class} |");
        }
        out.push_str(" unlabelled |\n|---|---:|");
        out.push_str(&"---:|".repeat(MorphologyClass::COUNT + 1));
        out.push('\n');
        let rows = self
            .classes
            .iter()
            .filter_map(|c| c.masks.as_ref().map(|m| (c.name.as_str(), m)))
            // "overall", not "all": ALL-IDB2 has a class named "all".
            .chain([("overall", overall)]);
        for (name, m) in rows {
            let _ = write!(out, "| {name} | {} |", m.images_with_masks);
            for f in &m.fractions {
                let _ = write!(
                    out,
                    " {} ({}) |",
                    fraction(f.pooled),
                    fraction(f.mean_per_image)
                );
            }
            let _ = writeln!(out, " {:.3} |", m.unlabelled_fraction);
        }
        out
    }
}
