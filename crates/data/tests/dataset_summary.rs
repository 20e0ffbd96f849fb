//! `summary`: images per class and mask area fractions (the chance levels).

mod dataset_support;

use dataset_support::*;
use leukex_data::MorphologyClass;
use leukex_data::dataset::{Dataset, OpenOptions};
use leukex_data::summary::{DatasetSummary, MaskSummary, summarize};

fn fractions(m: &MaskSummary, class: MorphologyClass) -> (Option<f64>, Option<f64>) {
    let f = &m.fractions[class.index()];
    assert_eq!(f.class, class);
    (f.pooled, f.mean_per_image)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

/// Three images: blast Im001_1 (4×4, all nucleus), blast Im002_1 (8×4, a
/// quarter nucleus, rest background), healthy Im003_0 (4×4 MATLAB-style
/// half unlabelled, half rbc) — through a table where 0 is unlabelled.
fn data_set() -> (tempfile::TempDir, DatasetSummary) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "Im001_1.tif", 4, 4);
    rgb(d, "Im002_1.tif", 8, 4);
    rgb(d, "Im003_0.tif", 4, 4);
    rgb(d, "Im004_0.tif", 4, 4); // no mask
    let m = d.join("masks");
    mask(&m, "Im001_1.png", 4, 4, |_, _| 2);
    mask(&m, "Im002_1.png", 8, 4, |x, _| if x < 2 { 2 } else { 1 });
    mask(&m, "Im003_0.png", 4, 4, |_, y| if y < 2 { 0 } else { 5 });
    write(
        &m.join("labels.json"),
        r#"{"0": "unlabelled", "1": "background", "2": "nucleus", "5": "rbc"}"#,
    );
    let ds = Dataset::open(d, &OpenOptions::default()).unwrap();
    let s = summarize(&ds).unwrap();
    (dir, s)
}

#[test]
fn counts_sizes_and_fractions_per_class_and_overall() {
    let (_dir, s) = data_set();
    assert_eq!((s.images, s.layout.as_str()), (4, "all-idb2"));
    let healthy = &s.classes[0];
    let all = &s.classes[1];
    assert_eq!((healthy.name.as_str(), healthy.count), ("healthy", 2));
    assert_eq!((all.name.as_str(), all.count), ("all", 2));
    let sizes: Vec<_> = all
        .image_sizes
        .iter()
        .map(|z| (z.width, z.height, z.count))
        .collect();
    assert_eq!(sizes, [(4, 4, 1), (8, 4, 1)]);
    assert_eq!(healthy.image_sizes.len(), 1);
    assert_eq!(healthy.image_sizes[0].count, 2);

    // Blasts: 16 + 8 nucleus pixels of 48 labelled (pooled 0.5); per image
    // 1.0 and 0.25 (mean 0.625).
    let m = all.masks.as_ref().unwrap();
    assert_eq!(
        (m.images_with_masks, m.pixels, m.labelled_pixels),
        (2, 48, 48)
    );
    let (pooled, mean) = fractions(m, MorphologyClass::Nucleus);
    assert!(
        close(pooled, 0.5) && close(mean, 0.625),
        "{pooled:?} {mean:?}"
    );
    let (pooled, mean) = fractions(m, MorphologyClass::Background);
    assert!(close(pooled, 0.5) && close(mean, 0.375));
    assert_eq!(m.unlabelled_fraction, 0.0);

    // Healthy: half the pixels unlabelled and left out of every share.
    let m = healthy.masks.as_ref().unwrap();
    assert_eq!(
        (m.images_with_masks, m.pixels, m.labelled_pixels),
        (1, 16, 8)
    );
    assert!(close(Some(m.unlabelled_fraction), 0.5));
    assert!(close(fractions(m, MorphologyClass::Rbc).0, 1.0));

    // Overall: 24 nucleus, 24 background, 8 rbc of 56 labelled.
    let o = s.overall.as_ref().unwrap();
    assert_eq!((o.images_with_masks, o.labelled_pixels), (3, 56));
    assert!(close(fractions(o, MorphologyClass::Rbc).0, 8.0 / 56.0));
    assert!(close(
        fractions(o, MorphologyClass::Nucleus).1,
        (1.0 + 0.25) / 3.0
    ));
    assert!(close(fractions(o, MorphologyClass::Vacuole).0, 0.0));
    let total: f64 = o.fractions.iter().map(|f| f.pooled.unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-12);
}

#[test]
fn markdown_and_json() {
    let (_dir, s) = data_set();
    let md = s.to_markdown();
    eprintln!("{md}");
    assert!(md.contains("| healthy | 2 | 4×4 (2) | 1 |"), "{md}");
    assert!(md.contains("| all | 2 | 4×4 (1), 8×4 (1) | 2 |"), "{md}");
    assert!(
        md.contains("| nucleus |") && md.contains("| unlabelled |"),
        "{md}"
    );
    assert!(md.contains("| overall | 3 |"), "{md}");
    assert!(
        md.contains("| all | 2 | 0.500 (0.375) | 0.500 (0.625) |"),
        "{md}"
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["classes"][1]["masks"]["fractions"][1]["class"],
        "nucleus"
    );
    assert_eq!(json["overall"]["images_with_masks"], 3);
}

#[test]
fn no_masks_no_fractions() {
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 2, 5, false);
    let ds = Dataset::open(dir.path(), &OpenOptions::default()).unwrap();
    let s = summarize(&ds).unwrap();
    assert!(s.overall.is_none() && s.classes.iter().all(|c| c.masks.is_none()));
    assert!(s.to_markdown().contains("No masks"));
}

#[test]
fn unreadable_mask_is_the_error() {
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 2, 5, true);
    mask(&dir.path().join("masks"), "Im003_0.png", 5, 4, |_, _| 0);
    let ds = Dataset::open(dir.path(), &OpenOptions::default()).unwrap();
    let err = summarize(&ds).unwrap_err().to_string();
    assert!(err.contains("Im003_0.png") && err.contains("5x4"), "{err}");
}
