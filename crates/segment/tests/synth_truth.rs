//! The segmentation against the built-in synthetic data, whose masks are
//! exact (drawn by leukex-synth, not by this crate): the quality
//! goals on a few images, and the written output read back by `data check`.

use image::RgbImage;
use leukex_data::MorphologyClass;
use leukex_data::check::check;
use leukex_data::dataset::OpenOptions;
use leukex_segment::quality::Quality;
use leukex_segment::{OtherCells, SegmentOptions, collect_images, segment, segment_files};
use leukex_synth::{CellKind, SynthConfig, generate_one};
use std::path::PathBuf;

fn config(n: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        n,
        seed,
        ..SynthConfig::default()
    }
}

#[test]
fn masks_of_synthetic_crops_meet_the_quality_goals() {
    // Seed 5's first 16 images: 8 blasts (4 of them L3 with vacuoles) and
    // 8 healthy lymphocytes.
    let cfg = config(16, 5);
    let mut q = Quality::default();
    let mut l3 = 0;
    for i in 0..cfg.n {
        let s = generate_one(&cfg, i);
        l3 += usize::from(s.kind == CellKind::L3);
        q.add(&s.mask, &segment(&s.image, &SegmentOptions::default()).mask);
    }
    let iou = |c| q.score(c).iou;
    println!("{}", q.markdown());
    assert!(l3 >= 3, "the sample needs cells with vacuoles ({l3})");
    assert_eq!(q.cells_with_vacuoles, l3);
    assert!(iou(MorphologyClass::Nucleus) >= 0.90, "{}", q.markdown());
    assert!(iou(MorphologyClass::Rbc) >= 0.90, "{}", q.markdown());
    assert!(iou(MorphologyClass::Cytoplasm) >= 0.80, "{}", q.markdown());
    assert!(q.vacuole_cell_recall() >= 0.8, "{}", q.markdown());
    assert!(
        q.predicted_vacuoles_true * 10 >= q.predicted_vacuoles * 8,
        "most predicted vacuoles must be real: {}",
        q.markdown()
    );
}

/// A copy of `img` with the 90×90 block around its centre (the white cell)
/// pasted into the lower-right corner, half outside: a second white cell cut
/// by the border.
fn with_cell_in_corner(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    let (bx, by) = (w / 2 - 45, h / 2 - 45);
    for dy in 0..45 {
        for dx in 0..45 {
            let p = *img.get_pixel(bx + dx, by + dy);
            out.put_pixel(w - 45 + dx, h - 45 + dy, p);
        }
    }
    out
}

#[test]
fn cells_cut_by_the_border_are_background_unless_asked_for() {
    let s = generate_one(&config(4, 3), 0);
    let img = with_cell_in_corner(&s.image);
    let corner_cell_px = |opts: SegmentOptions| {
        let seg = segment(&img, &opts);
        let (w, h) = img.dimensions();
        let mut n = 0;
        for y in h - 45..h {
            for x in w - 45..w {
                n += usize::from(seg.mask.get(x, y).is_some_and(|c| c.is_cell()));
            }
        }
        (n, seg.report.other_cells)
    };
    let (by_default, others) = corner_cell_px(SegmentOptions::default());
    assert_eq!((by_default, others), (0, 1));
    let (segmented, _) = corner_cell_px(SegmentOptions {
        other_cells: OtherCells::Segment,
    });
    assert!(segmented > 500, "{segmented}");
}

#[test]
fn written_masks_pass_data_check_and_come_with_their_tables() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("img");
    let cfg = config(4, 11);
    for i in 0..cfg.n {
        let s = generate_one(&cfg, i);
        leukex_data::image_io::write_rgb(&images.join(format!("{}.tif", s.stem)), &s.image)
            .unwrap();
    }
    let out = dir.path().join("masks");
    let files = collect_images(std::slice::from_ref(&images)).unwrap();
    assert_eq!(files.len(), 4);
    let report = segment_files(&files, &out, &SegmentOptions::default(), &|_| {}).unwrap();
    assert!(report.failures.is_empty());
    assert_eq!(report.results.len(), 4);

    let checked = check(
        &images,
        &OpenOptions {
            masks: Some(out.clone()),
            require_masks: true,
            ..OpenOptions::default()
        },
    );
    assert!(checked.is_ok(), "{:?}", checked.problems);
    assert_eq!((checked.images, checked.masks), (4, 4));

    let csv = std::fs::read_to_string(out.join("segment.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("image,mask,confidence,"), "{csv}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segment.json")).unwrap()).unwrap();
    assert_eq!(record["options"]["other_cells"], "background");
    assert!(
        record["assumptions"][0]
            .as_str()
            .unwrap()
            .contains("background")
    );
    assert_eq!(record["check_first"].as_array().unwrap().len(), 4);
}

#[test]
fn bad_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A corrupt image: the others are still segmented, the failure names it.
    let good = d.join("a.png");
    generate_one(&config(1, 0), 0).image.save(&good).unwrap();
    let bad = d.join("b.tif");
    std::fs::write(&bad, b"II*\0not a tiff").unwrap();
    let out = d.join("out");
    let report = segment_files(
        &[good.clone(), bad.clone()],
        &out,
        &SegmentOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(report.results.len(), 1);
    let err = report.failures[0].to_string();
    assert!(err.contains("b.tif"), "{err}");

    // A mask that would overwrite its own image.
    let err = segment_files(
        std::slice::from_ref(&good),
        d,
        &SegmentOptions::default(),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("a.png") && err.contains("overwrite"), "{err}");

    // A file named twice is one image.
    assert_eq!(
        collect_images(&[good.clone(), d.to_path_buf()])
            .unwrap()
            .len(),
        2
    );
    // Two images with one stem; a missing path; a non-image file.
    std::fs::write(d.join("a.tif"), b"").unwrap();
    let err = collect_images(&[good.clone(), d.join("a.tif")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("same file stem"), "{err}");
    let err = collect_images(&[PathBuf::from("/no/such/dir")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/dir"), "{err}");
    std::fs::write(d.join("notes.txt"), b"").unwrap();
    let err = collect_images(&[d.join("notes.txt")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("notes.txt"), "{err}");
}
