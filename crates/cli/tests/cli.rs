//! End-to-end: the `leukex` binary on generated data, as a researcher runs it.

use std::path::Path;
mod common;

use common::{leukex, s, text};

fn synth(dir: &Path, n: usize) {
    let out = leukex(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--n",
        &n.to_string(),
        "--size",
        "96",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn synth_then_check_summary_split_augment() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("synth");
    synth(&data, 20);
    for f in [
        "Im001_1.tif",
        "Im020_0.tif",
        "masks/Im001_1.png",
        "labels.json",
        "manifest.csv",
    ] {
        assert!(data.join(f).is_file(), "missing {f}");
    }
    let d = data.to_str().unwrap();

    let out = leukex(&["data", "check", d, "--require-masks"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no problems"), "{}", text(&out));

    let out = leukex(&[
        "data",
        "summary",
        d,
        "--json",
        tmp.path().join("summary.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nucleus"), "{}", text(&out));
    assert!(tmp.path().join("summary.json").is_file());

    let split = tmp.path().join("split.json");
    let out = leukex(&[
        "data",
        "split",
        d,
        "--test-per-class",
        "3",
        "--seed",
        "1",
        "--out",
        split.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("test 6"), "{}", text(&out));
    // Same seed, same bytes.
    let again = tmp.path().join("split2.json");
    leukex(&[
        "data",
        "split",
        d,
        "--test-per-class",
        "3",
        "--seed",
        "1",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&split).unwrap(),
        std::fs::read(&again).unwrap()
    );

    let aug = tmp.path().join("aug");
    let out = leukex(&[
        "data",
        "augment",
        d,
        "--split",
        split.to_str().unwrap(),
        "--per-class",
        "20",
        "--out",
        aug.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The augmented set is itself a valid data set with aligned masks.
    let out = leukex(&["data", "check", aug.to_str().unwrap(), "--require-masks"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("40 images"), "{}", text(&out));
}

#[test]
fn check_lists_every_problem_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("bad");
    synth(&data, 6);
    // Three defects at once: a corrupt image, a missing mask, a mask of the wrong size.
    std::fs::write(data.join("Im001_1.tif"), b"not a tiff").unwrap();
    std::fs::remove_file(data.join("masks/Im002_1.png")).unwrap();
    std::fs::copy(data.join("masks/Im004_0.png"), data.join("masks/keep.png")).unwrap();
    image::GrayImage::new(10, 10)
        .save(data.join("masks/Im005_0.png"))
        .unwrap();
    std::fs::remove_file(data.join("masks/keep.png")).unwrap();

    let out = leukex(&["data", "check", data.to_str().unwrap(), "--require-masks"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("Im001_1.tif"), "{t}");
    assert!(t.contains("Im002_1"), "{t}");
    assert!(t.contains("Im005_0.png"), "{t}");
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = leukex(&[
        "data",
        "summary",
        tmp.path().join("nowhere").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nowhere"), "{}", text(&out));
    let out = leukex(&[
        "data",
        "check",
        tmp.path().to_str().unwrap(),
        "--label-map",
        "1=mitochondria",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("mitochondria"), "{}", text(&out));
}

#[test]
fn assemble_masks_puts_the_latest_corrections_in_place_of_the_originals() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("synth");
    synth(&data, 6);
    let masks = data.join("masks");
    // A "correction" of Im001_1: another image's mask (same size, other pixels), where the
    // viewer's painter writes it.
    let corrected = masks.join("corrected");
    std::fs::create_dir_all(&corrected).unwrap();
    let painted = std::fs::read(masks.join("Im002_1.png")).unwrap();
    assert_ne!(painted, std::fs::read(masks.join("Im001_1.png")).unwrap());
    std::fs::write(corrected.join("Im001_1.png"), &painted).unwrap();
    std::fs::copy(data.join("labels.json"), corrected.join("labels.json")).unwrap();
    let out = tmp.path().join("masks-final");
    let o = leukex(&["data", "assemble-masks", s(&masks), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("5 masks as they were, 1 corrected"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(out.join("Im001_1.png")).unwrap(), painted);
    assert_eq!(
        std::fs::read(out.join("Im003_1.png")).unwrap(),
        std::fs::read(masks.join("Im003_1.png")).unwrap()
    );
    // The assembled folder is an ordinary, complete mask folder.
    let o = leukex(&[
        "data",
        "check",
        s(&data),
        "--layout",
        "all-idb2",
        "--masks",
        s(&out),
        "--require-masks",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}
