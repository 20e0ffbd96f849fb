//! `check` lists every problem at once, each naming its file.

mod dataset_support;

use dataset_support::*;
use leukex_data::check::{CheckReport, check};
use leukex_data::dataset::{Dataset, OpenOptions};
use std::path::Path;

fn run(root: &Path) -> CheckReport {
    check(root, &OpenOptions::default())
}

/// Asserts exactly one problem whose path ends in `file` and whose message
/// contains every one of `words`, and that `open` fails too.
fn assert_one(report: &CheckReport, file: &str, words: &[&str]) {
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let p = &report.problems[0];
    let text = p.to_string();
    assert!(p.path.ends_with(file), "{text}");
    assert!(text.starts_with(&p.path.display().to_string()), "{text}");
    for w in words {
        assert!(p.message.contains(w), "`{w}` missing in: {text}");
    }
}

#[test]
fn clean_data_set_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 3, 9, true);
    let r = run(dir.path());
    assert!(r.is_ok(), "{:#?}", r.problems);
    assert_eq!((r.images, r.masks), (6, 6));
    assert_eq!(
        r.classes,
        [("healthy".to_string(), 3), ("all".to_string(), 3)]
    );
}

#[test]
fn four_defects_give_four_problems_each_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 3, 6, true);
    // 1. garbage bytes under an image name
    write(&d.join("Im001_1.tif"), "II*\0 this is not a TIFF");
    // 2. mask of the wrong size
    mask(&d.join("masks"), "Im002_1.png", 5, 6, |_, _| 0);
    // 3. an id the label table does not know
    mask(&d.join("masks"), "Im005_0.png", 6, 6, |x, y| {
        if (x, y) == (1, 2) || x == 5 { 7 } else { 0 }
    });
    // 4. the same stem twice
    rgb(d, "Im004_0.png", 6, 6);
    let r = run(d);
    let lines: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
    assert_eq!(r.problems.len(), 4, "{lines:#?}");
    let find = |file: &str| {
        r.problems
            .iter()
            .find(|p| p.path.ends_with(file))
            .unwrap_or_else(|| panic!("no problem for {file}: {lines:#?}"))
            .message
            .clone()
    };
    assert!(find("Im001_1.tif").contains("not a readable image"));
    let size = find("masks/Im002_1.png");
    assert!(
        size.contains("5x6") && size.contains("Im002_1.tif") && size.contains("6x6"),
        "{size}"
    );
    let id = find("masks/Im005_0.png");
    assert!(
        id.contains("id 7") && id.contains("7 pixels") && id.contains("x=5, y=0"),
        "{id}"
    );
    assert!(find("Im004_0.tif").contains("duplicate stem `Im004_0`"));
    // Dataset::open stops at the first of them.
    assert!(Dataset::open(d, &OpenOptions::default()).is_err());
}

#[test]
fn truncated_tiff_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 64, false);
    let p = d.join("Im002_0.tif");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    // Opening is structural and does not see it; check decodes and does.
    assert!(Dataset::open(d, &OpenOptions::default()).is_ok());
    assert_one(&run(d), "Im002_0.tif", &["not a readable image"]);
}

#[test]
fn colour_mask_is_not_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 4, true);
    mask_rgb(&d.join("masks"), "Im001_1.png", 4, 4);
    assert_one(&run(d), "masks/Im001_1.png", &["one integer id per pixel"]);
}

#[test]
fn image_without_mask_when_masks_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 2, 4, true);
    std::fs::remove_file(d.join("masks/Im003_0.png")).unwrap();
    assert!(run(d).is_ok());
    let opts = OpenOptions {
        require_masks: true,
        ..Default::default()
    };
    let r = check(d, &opts);
    assert_one(&r, "Im003_0.tif", &["image without mask", "Im003_0.png"]);
    assert_eq!((r.images, r.masks), (4, 3));
    let err = Dataset::open(d, &opts).unwrap_err().to_string();
    assert!(err.contains("Im003_0.tif"), "{err}");

    // No masks at all: one problem, not one per image.
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 2, 4, false);
    let r = check(dir.path(), &opts);
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    assert!(r.problems[0].message.contains("masks are required"));
}

#[test]
fn empty_all_idb2_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "Im001_1.tif", 4, 4);
    rgb(d, "Im002_1.tif", 4, 4);
    let r = run(d);
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    let p = &r.problems[0];
    assert!(
        p.path == d && p.message.contains("empty class") && p.message.contains("healthy"),
        "{p}"
    );
}

#[test]
fn empty_class_folder_and_duplicate_stem_across_folders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(&d.join("all"), "cell7.png", 4, 4);
    rgb(&d.join("healthy"), "cell7.tif", 4, 4);
    write(&d.join("empty/readme.txt"), "nothing here");
    let r = run(d);
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    let empty = &r.problems[0];
    assert!(
        empty.path.ends_with("empty") && empty.message.contains("empty class"),
        "{empty}"
    );
    let dup = &r.problems[1];
    assert!(
        dup.path.ends_with("healthy/cell7.tif") && dup.message.contains("all/cell7.png"),
        "{dup}"
    );
}

#[test]
fn integer_label_gap_is_an_empty_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "a.png", 3, 3);
    rgb(d, "b.png", 3, 3);
    write(&d.join("manifest.csv"), "path,label\na.png,0\nb.png,2\n");
    assert_one(
        &run(d),
        "manifest.csv",
        &["empty class", "1", "without gaps"],
    );
}

#[test]
fn bad_manifest_rows_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "a.png", 3, 3);
    rgb(d, "b.png", 3, 3);
    rgb(d, "c.png", 3, 3);
    write(
        &d.join("manifest.csv"),
        "path,label,mask\n\
         a.png,healthy\n\
         gone.png,healthy\n\
         b.png,\n\
         c.png,all,masks/none.png\n\
         a.png,blast\n\
         ,all\n",
    );
    let opts = OpenOptions {
        classes: Some(vec!["healthy".into(), "all".into()]),
        ..Default::default()
    };
    let r = check(d, &opts);
    let lines: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
    let expect = [
        "line 3: image `gone.png` does not exist",
        "line 4: empty label",
        "line 5: mask `masks/none.png` does not exist",
        "line 7: empty path",
        "line 6: label `blast` is not one of the classes given (healthy, all)",
    ];
    assert_eq!(r.problems.len(), expect.len(), "{lines:#?}");
    for (p, e) in r.problems.iter().zip(expect) {
        assert!(
            p.path.ends_with("manifest.csv") && p.message.starts_with(e),
            "{p} / {e}"
        );
    }
    // c.png is kept without its missing mask, so its pixels are still checked;
    // with masks required, its missing mask is not reported twice.
    assert_eq!((r.images, r.masks), (2, 0));
    let opts = OpenOptions {
        require_masks: true,
        ..opts
    };
    let r = check(d, &opts);
    let lines: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
    assert_eq!(r.problems.len(), expect.len() + 1, "{lines:#?}");
    assert!(
        r.problems.last().unwrap().path.ends_with("a.png"),
        "{lines:#?}"
    );
}

#[test]
fn manifest_without_label_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "a.png", 3, 3);
    write(&d.join("manifest.csv"), "path,class\na.png,all\n");
    assert_one(
        &run(d),
        "manifest.csv",
        &["missing column `label`", "path,class"],
    );
}

#[test]
fn stray_masks_are_listed_but_do_not_stop_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 4, true);
    mask(&d.join("masks"), "Im099_1.png", 4, 4, |_, _| 0);
    let r = run(d);
    assert_one(&r, "masks/Im099_1.png", &["mask without image", "Im099_1"]);
    assert!(Dataset::open(d, &OpenOptions::default()).is_ok());
}

#[test]
fn matlab_problems() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 4, false);
    let px = d.join("PixelLabelData");
    mask(&px, "Label_1_Im001_1.png", 4, 4, |_, _| 1);
    mask(&px, "Label_2_Im002_0.png", 4, 4, |_, _| 1);
    // No table: the problem says why one is needed and how to give it.
    assert_one(
        &run(d),
        "PixelLabelData",
        &["--label-map", "labelling session"],
    );
    // A numbered mask nobody ties to an image, and a second mask for a stem.
    mask(&px, "Label_3.png", 4, 4, |_, _| 1);
    mask(&px, "Label_4_Im001_1.png", 4, 4, |_, _| 1);
    let opts = OpenOptions {
        label_table: Some(leukex_data::LabelTable::parse_spec("1=nucleus").unwrap()),
        ..Default::default()
    };
    let r = check(d, &opts);
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
    let about = |file: &str| {
        r.problems
            .iter()
            .find(|p| p.path.ends_with(file))
            .unwrap()
            .message
            .clone()
    };
    assert!(
        about("Label_3.png").contains("`mask` column"),
        "{:#?}",
        r.problems
    );
    assert!(about("Label_4_Im001_1.png").contains("second mask for image `Im001_1`"));
}

#[test]
fn corrupt_label_table_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 4, true);
    write(&d.join("masks/labels.json"), r#"{"1": "mitochondria"}"#);
    let r = run(d);
    assert_one(&r, "masks/labels.json", &["mitochondria"]);
}

#[test]
fn nothing_found_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path());
    assert_eq!((r.images, r.problems.len()), (0, 1));
    assert!(r.problems[0].message.contains("no data set found"));
}

/// The size of ALL-IDB2: 260 images of 257×257 with masks. Decoding runs in
/// parallel; the bound is loose because CI machines are shared.
#[test]
fn check_of_all_idb2_sized_set_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 130, 257, true);
    let start = std::time::Instant::now();
    let r = run(dir.path());
    let took = start.elapsed();
    assert!(r.is_ok(), "{:#?}", r.problems);
    assert_eq!((r.images, r.masks), (260, 260));
    eprintln!("check of 260 images of 257x257 with masks: {took:?}");
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
}

#[test]
fn manifest_row_twice_and_integer_label_beyond_the_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "a.png", 3, 3);
    rgb(d, "b.png", 3, 3);
    write(
        &d.join("manifest.csv"),
        "path,label\na.png,0\nb.png,1\na.png,0\nb.png,2\n",
    );
    let opts = OpenOptions {
        classes: Some(vec!["healthy".into(), "all".into()]),
        ..Default::default()
    };
    let r = check(d, &opts);
    let lines: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
    assert_eq!(r.problems.len(), 2, "{lines:#?}");
    assert!(
        r.problems[0]
            .message
            .starts_with("line 5: label 2 is not a class index"),
        "{lines:#?}"
    );
    assert!(
        r.problems[1].path.ends_with("a.png") && r.problems[1].message.contains("listed twice"),
        "{lines:#?}"
    );
}
