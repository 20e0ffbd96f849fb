//! Opening data sets in each layout, and the loaders on generated files.

mod dataset_support;

use dataset_support::*;
use image::Rgb;
use leukex_data::dataset::{Dataset, Layout, OpenOptions};
use leukex_data::{LabelTable, MorphologyClass};
use std::path::Path;

fn open(root: &Path) -> Dataset {
    Dataset::open(root, &OpenOptions::default()).unwrap()
}

fn open_err(root: &Path, opts: &OpenOptions) -> String {
    Dataset::open(root, opts).unwrap_err().to_string()
}

#[test]
fn all_idb2_flat_folder_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 2, 8, false);
    write(&dir.path().join("README.txt"), "not an image");
    let ds = open(dir.path());
    assert_eq!(ds.layout, Layout::AllIdb2);
    assert_eq!(ds.classes, ["healthy", "all"]);
    let stems: Vec<(&str, usize)> = ds
        .samples
        .iter()
        .map(|s| (s.stem.as_str(), s.label))
        .collect();
    assert_eq!(
        stems,
        [
            ("Im001_1", 1),
            ("Im002_1", 1),
            ("Im003_0", 0),
            ("Im004_0", 0)
        ]
    );
    assert_eq!(ds.class_counts(), [2, 2]);
    assert!(ds.label_table.is_none() && ds.samples.iter().all(|s| s.mask.is_none()));
    assert_eq!(ds.load_image(0).unwrap(), pattern(8, 8));
}

#[test]
fn all_idb2_original_img_subfolder_and_upper_case_extension() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    rgb(&img, "Im001_1.TIF", 5, 5);
    rgb(&img, "Im002_0.tiff", 5, 5);
    let ds = open(dir.path());
    assert_eq!(ds.layout, Layout::AllIdb2);
    assert_eq!(ds.class_counts(), [1, 1]);
    assert!(ds.samples[0].image.starts_with(&img));
}

#[test]
fn all_idb2_bad_label_digit_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 1, 4, false);
    rgb(dir.path(), "Im003_2.tif", 4, 4);
    let err = open_err(dir.path(), &OpenOptions::default());
    assert!(
        err.contains("Im003_2.tif") && err.contains("must be 0 or 1"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    all_idb2(dir.path(), 1, 4, false);
    rgb(dir.path(), "Im003.tif", 4, 4);
    let err = open_err(dir.path(), &OpenOptions::default());
    assert!(
        err.contains("Im003.tif") && err.contains("must be 0 or 1"),
        "{err}"
    );
}

#[test]
fn class_folders_sorted_like_image_folder_or_in_the_given_order() {
    let dir = tempfile::tempdir().unwrap();
    rgb(&dir.path().join("healthy"), "h1.png", 4, 4);
    rgb(&dir.path().join("healthy"), "h2.bmp", 4, 4);
    rgb(&dir.path().join("all"), "a1.jpg", 4, 4);
    // The masks folder is not a class.
    mask(&dir.path().join("masks"), "h1.png", 4, 4, |_, _| 1);
    let ds = open(dir.path());
    assert_eq!(ds.layout, Layout::ClassFolders);
    assert_eq!(ds.classes, ["all", "healthy"]);
    assert_eq!(ds.class_counts(), [1, 2]);
    let h1 = ds.find_stem("h1").unwrap();
    assert_eq!(ds.samples[h1].label, 1);
    assert!(
        ds.samples[h1]
            .mask
            .as_ref()
            .unwrap()
            .ends_with("masks/h1.png")
    );
    assert!(ds.samples[ds.find_stem("a1").unwrap()].mask.is_none());

    let opts = OpenOptions {
        classes: Some(vec!["healthy".into(), "all".into()]),
        ..Default::default()
    };
    let ds = Dataset::open(dir.path(), &opts).unwrap();
    assert_eq!(ds.classes, ["healthy", "all"]);
    assert_eq!(ds.class_counts(), [2, 1]);
    assert_eq!(ds.samples[ds.find_stem("a1").unwrap()].label, 1);

    let opts = OpenOptions {
        layout: Some("folders".parse().unwrap()),
        classes: Some(vec!["healthy".into()]),
        ..Default::default()
    };
    let err = open_err(dir.path(), &opts);
    assert!(
        err.contains("all") && err.contains("not one of the classes"),
        "{err}"
    );
}

#[test]
fn manifest_with_names_masks_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(&d.join("slides/s1"), "c1.tif", 6, 4);
    rgb(&d.join("slides/s1"), "c2.tif", 6, 4);
    rgb(&d.join("slides/s2"), "c3.png", 6, 4);
    mask(&d.join("m"), "c1-mask.png", 6, 4, |x, _| (x % 5) as u16);
    write(
        &d.join("manifest.csv"),
        "Path, Label, Mask, Group\n\
         slides/s1/c1.tif, blast, m/c1-mask.png, s1\n\
         slides/s1/c2.tif, healthy, , s1\n\
         # a comment line\n\
         slides/s2/c3.png, blast,,\n",
    );
    let ds = open(d);
    assert_eq!(ds.layout, Layout::Manifest);
    assert_eq!(ds.classes, ["blast", "healthy"]);
    let s = &ds.samples;
    assert_eq!(s.len(), 3);
    assert_eq!(
        (s[0].stem.as_str(), s[0].label, s[0].group.as_deref()),
        ("c1", 0, Some("s1"))
    );
    assert_eq!((s[1].label, s[1].mask.is_none()), (1, true));
    assert_eq!((s[2].label, s[2].group.as_deref()), (0, None));
    // A plain (non-MATLAB) mask without labels.json uses leukex's ids.
    assert_eq!(ds.label_table, Some(LabelTable::default()));
    let m = ds.load_mask(0).unwrap().unwrap();
    assert_eq!(m.get(3, 1), Some(MorphologyClass::Vacuole));
    assert!(ds.load_mask(1).unwrap().is_none());

    // The manifest file itself can be given instead of its folder.
    let direct = Dataset::open(&d.join("manifest.csv"), &OpenOptions::default()).unwrap();
    assert_eq!(direct.samples, ds.samples);
}

#[test]
fn manifest_integer_labels_are_class_indices() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "a.png", 3, 3);
    rgb(d, "b.png", 3, 3);
    rgb(d, "c.png", 3, 3);
    write(
        &d.join("manifest.csv"),
        "path,label\na.png,1\nb.png,0\nc.png,1\n",
    );
    let ds = open(d);
    assert_eq!(ds.classes, ["0", "1"]);
    assert_eq!(ds.class_counts(), [1, 2]);
    // Names for integer labels (as an augmented ALL-IDB2 manifest needs).
    let opts = OpenOptions {
        classes: Some(vec!["healthy".into(), "all".into()]),
        ..Default::default()
    };
    let ds = Dataset::open(d, &opts).unwrap();
    assert_eq!(ds.classes, ["healthy", "all"]);
    assert_eq!(ds.samples[0].label, 1);
    // Or from classes.txt beside the manifest (what `leukex synth` writes).
    write(&d.join("classes.txt"), "healthy\nall\n");
    let ds = open(d);
    assert_eq!(ds.classes, ["healthy", "all"]);
    assert_eq!(ds.class_counts(), [1, 2]);
}

#[test]
fn every_image_type_becomes_rgb8() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cells");
    rgb(&d, "rgb_tif.tif", 5, 4);
    rgba(&d, "rgba_tif.tif", 5, 4);
    grey(&d, "grey_tif.tif", 5, 4);
    rgb(&d, "rgb_png.png", 5, 4);
    rgba(&d, "rgba_png.png", 5, 4);
    grey(&d, "grey_png.png", 5, 4);
    rgb(&d, "rgb_jpg.jpg", 5, 4);
    grey(&d, "grey_jpeg.jpeg", 5, 4);
    rgb(&d, "rgb_bmp.bmp", 5, 4);
    rgba(&d, "rgba_bmp.bmp", 5, 4);
    let ds = open(dir.path());
    assert_eq!(ds.samples.len(), 10);
    for (i, s) in ds.samples.iter().enumerate() {
        let img = ds.load_image(i).unwrap();
        assert_eq!(img.dimensions(), (5, 4), "{}", s.stem);
        let lossless = !s.stem.contains("jp");
        if lossless && s.stem.starts_with("grey") {
            // Grey is replicated into all three channels.
            assert_eq!(*img.get_pixel(2, 3), Rgb([23, 23, 23]), "{}", s.stem);
        } else if lossless {
            // Alpha is dropped, colour kept.
            assert_eq!(*img.get_pixel(2, 3), Rgb([40, 90, 200]), "{}", s.stem);
        }
    }
}

#[test]
fn masks_8_bit_16_bit_and_palette_with_a_label_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 6, false);
    rgb(d, "Im003_0.tif", 6, 6);
    let masks = d.join("masks");
    mask(
        &masks,
        "Im001_1.png",
        6,
        6,
        |x, _| if x < 3 { 10 } else { 20 },
    );
    mask16(
        &masks,
        "Im002_0.png",
        6,
        6,
        |_, y| if y == 0 { 20 } else { 10 },
    );
    mask_palette(
        &masks,
        "Im003_0.png",
        6,
        6,
        |x, y| if x == y { 30 } else { 10 },
    );
    write(
        &masks.join("labels.json"),
        r#"{"10": "background", "20": "nucleus", "30": "platelet"}"#,
    );
    let ds = open(d);
    let t = ds.label_table.clone().unwrap();
    assert_eq!(
        t,
        LabelTable::parse_spec("10=background,20=nucleus,30=platelet").unwrap()
    );
    let m0 = ds.load_mask(0).unwrap().unwrap();
    assert_eq!(
        (m0.get(0, 0), m0.get(5, 5)),
        (
            Some(MorphologyClass::Background),
            Some(MorphologyClass::Nucleus)
        )
    );
    let m1 = ds.load_mask(1).unwrap().unwrap();
    assert_eq!(m1.counts().get(MorphologyClass::Nucleus), 6);
    // Platelets count as background, as in the paper.
    let m2 = ds.load_mask(2).unwrap().unwrap();
    assert_eq!(m2.counts().get(MorphologyClass::Background), 36);

    // The option overrides labels.json.
    let opts = OpenOptions {
        label_table: Some(LabelTable::parse_spec("10=rbc,20=nucleus,30=vacuole").unwrap()),
        ..Default::default()
    };
    let ds = Dataset::open(d, &opts).unwrap();
    assert_eq!(
        ds.load_mask(2)
            .unwrap()
            .unwrap()
            .counts()
            .get(MorphologyClass::Vacuole),
        6
    );
}

#[test]
fn load_mask_checks_size_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 6, false);
    mask(&d.join("masks"), "Im001_1.png", 5, 6, |_, _| 0);
    mask(&d.join("masks"), "Im002_0.png", 6, 6, |x, y| {
        if (x, y) == (4, 2) { 9 } else { 0 }
    });
    let ds = open(d);
    let err = ds.load_mask(0).unwrap_err().to_string();
    assert!(
        err.contains("Im001_1.png") && err.contains("5x6") && err.contains("6x6"),
        "{err}"
    );
    let err = ds.load_mask(1).unwrap_err().to_string();
    assert!(
        err.contains("Im002_0.png") && err.contains("id 9") && err.contains("x=4, y=2"),
        "{err}"
    );
}

#[test]
fn matlab_export_named_by_stem_needs_a_table_and_zero_is_unlabelled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 4, false);
    let px = d.join("PixelLabelData");
    mask(&px, "Label_1_Im001_1.png", 4, 4, |x, _| x as u16); // ids 0..=3
    mask(&px, "Label_2_Im002_0.png", 4, 4, |_, _| 2);
    let err = open_err(d, &OpenOptions::default());
    assert!(
        err.contains("PixelLabelData")
            && err.contains("--label-map")
            && err.contains("labelling session"),
        "{err}"
    );

    let opts = OpenOptions {
        label_table: Some(LabelTable::parse_spec("1=nucleus,2=cytoplasm,3=rbc").unwrap()),
        require_masks: true,
        ..Default::default()
    };
    let ds = Dataset::open(d, &opts).unwrap();
    assert!(
        ds.samples[0]
            .mask
            .as_ref()
            .unwrap()
            .ends_with("Label_1_Im001_1.png")
    );
    let c = ds.load_mask(0).unwrap().unwrap().counts();
    assert_eq!(
        (c.unlabelled, c.labelled(), c.get(MorphologyClass::Rbc)),
        (4, 12, 4)
    );
    assert_eq!(
        ds.load_mask(1)
            .unwrap()
            .unwrap()
            .counts()
            .get(MorphologyClass::Cytoplasm),
        16
    );
}

#[test]
fn matlab_numbered_masks_tied_by_the_manifest_mask_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "cellA.png", 4, 3);
    rgb(d, "cellB.png", 4, 3);
    let px = d.join("export/PixelLabelData");
    mask(&px, "Label_3.png", 4, 3, |x, _| if x == 0 { 0 } else { 1 });
    mask(&px, "Label_4.png", 4, 3, |_, _| 2);
    write(
        &d.join("manifest.csv"),
        "path,label,mask\ncellA.png,all,export/PixelLabelData/Label_3.png\ncellB.png,healthy,export/PixelLabelData/Label_4.png\n",
    );
    // Label_ names mark a MATLAB export even outside a PixelLabelData root folder.
    let err = open_err(d, &OpenOptions::default());
    assert!(
        err.contains("Label_3.png") && err.contains("--label-map"),
        "{err}"
    );
    write(&d.join("labels.json"), r#"{"1": "nucleus", "2": "rbc"}"#);
    let ds = open(d);
    let c = ds.load_mask(0).unwrap().unwrap().counts();
    assert_eq!((c.unlabelled, c.get(MorphologyClass::Nucleus)), (3, 9));
    assert_eq!(
        ds.load_mask(1)
            .unwrap()
            .unwrap()
            .counts()
            .get(MorphologyClass::Rbc),
        12
    );
}

#[test]
fn masks_option_overrides_the_default_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    all_idb2(d, 1, 4, true);
    let other = d.join("other-masks");
    mask(&other, "Im001_1.png", 4, 4, |_, _| 4);
    let opts = OpenOptions {
        masks: Some(other.clone()),
        ..Default::default()
    };
    let ds = Dataset::open(d, &opts).unwrap();
    assert!(ds.samples[0].mask.as_ref().unwrap().starts_with(&other));
    assert!(ds.samples[1].mask.is_none());
    let opts = OpenOptions {
        masks: Some(d.join("nope")),
        ..Default::default()
    };
    assert!(open_err(d, &opts).contains("nope"));
}

#[test]
fn nothing_recognisable_says_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("notes.txt"), "x");
    let err = open_err(dir.path(), &OpenOptions::default());
    assert!(
        err.contains("manifest.csv") && err.contains("ImNNN_Y") && err.contains("class folders"),
        "{err}"
    );
    let err = open_err(&dir.path().join("missing"), &OpenOptions::default());
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn sixteen_bit_helper_writes_sixteen_bit_ids() {
    // Guards the test helpers themselves: a 16-bit mask really is 16-bit.
    let dir = tempfile::tempdir().unwrap();
    let p = mask16(dir.path(), "m.png", 3, 2, |x, _| x as u16 * 1000);
    let (w, h, ids) = leukex_data::morphology::read_label_png(&p).unwrap();
    assert_eq!((w, h, ids), (3, 2, vec![0, 1000, 2000, 0, 1000, 2000]));
}

#[test]
fn manifest_from_a_spreadsheet_with_bom_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rgb(d, "a.png", 3, 3);
    rgb(d, "b.png", 3, 3);
    write(
        &d.join("manifest.csv"),
        "\u{feff}path,label\r\na.png,all\r\nb.png,healthy\r\n",
    );
    let ds = open(d);
    assert_eq!(ds.classes, ["all", "healthy"]);
    assert_eq!(ds.samples.len(), 2);
}

#[test]
fn a_file_that_is_not_a_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = rgb(dir.path(), "Im001_1.tif", 3, 3);
    let err = open_err(&p, &OpenOptions::default());
    assert!(
        err.contains("Im001_1.tif") && err.contains("not a data folder"),
        "{err}"
    );
}
