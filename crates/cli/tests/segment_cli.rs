//! `leukex segment` end to end: masks that `leukex data check` accepts.

mod common;

use common::{leukex, s, text};

#[test]
fn segment_writes_masks_that_data_check_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("synth");
    let out = leukex(&["synth", "--out", s(&data), "--n", "4", "--seed", "9"]);
    assert!(out.status.success(), "{}", text(&out));
    // The images alone (synth's own masks stay out of the check).
    let images = tmp.path().join("img");
    std::fs::create_dir(&images).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tif") {
            std::fs::copy(&p, images.join(p.file_name().unwrap())).unwrap();
        }
    }
    let masks = tmp.path().join("masks");
    let out = leukex(&[
        "segment",
        s(&images),
        "--out",
        s(&masks),
        "--keep-border-cells",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4 masks"), "{}", text(&out));
    for f in ["Im001_1.png", "labels.json", "segment.csv", "segment.json"] {
        assert!(masks.join(f).is_file(), "missing {f}");
    }
    let record = std::fs::read_to_string(masks.join("segment.json")).unwrap();
    assert!(record.contains("\"other_cells\": \"segment\""), "{record}");

    let out = leukex(&[
        "data",
        "check",
        s(&images),
        "--masks",
        s(&masks),
        "--require-masks",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no problems"), "{}", text(&out));

    // A missing input is named, and nothing is claimed done.
    let out = leukex(&["segment", s(&tmp.path().join("nope")), "--out", s(&masks)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nope"), "{}", text(&out));
}
