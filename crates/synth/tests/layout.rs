//! The dataset on disk looks like ALL-IDB2 plus exact masks.

use leukex_data::{LabelTable, MorphologyClass, MorphologyMask, image_io};
use leukex_synth::{CellKind, SynthConfig, SynthError, generate_one, write_dataset};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            for f in files_under(&e.path()) {
                out.insert(format!("{name}/{f}"));
            }
        } else {
            out.insert(name);
        }
    }
    out
}

#[test]
fn write_dataset_writes_exactly_the_all_idb2_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        n: 7,
        seed: 3,
        size: 128,
        ..Default::default()
    };
    let calls = AtomicUsize::new(0);
    let report = write_dataset(&cfg, dir.path(), &|k| {
        assert!((1..=7).contains(&k));
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(calls.into_inner(), 7);
    assert_eq!((report.images, report.blasts, report.healthy), (7, 4, 3));
    assert_eq!(report.kinds.healthy, 3);
    assert_eq!(report.kinds.l1 + report.kinds.l2 + report.kinds.l3, 4);

    // Odd n: the blasts get the extra image.
    let stems = [
        "Im001_1", "Im002_1", "Im003_1", "Im004_1", "Im005_0", "Im006_0", "Im007_0",
    ];
    let mut expected: BTreeSet<String> =
        ["classes.txt", "labels.json", "manifest.csv", "synth.json"]
            .map(String::from)
            .into();
    for s in stems {
        expected.insert(format!("{s}.tif"));
        expected.insert(format!("masks/{s}.png"));
    }
    assert_eq!(files_under(dir.path()), expected);

    let manifest = std::fs::read_to_string(dir.path().join("manifest.csv")).unwrap();
    let mut lines = manifest.lines();
    assert_eq!(lines.next(), Some("path,label,mask,group"));
    let table = LabelTable::default();
    let mut class_pixels = [0u64; 5];
    for (i, (line, stem)) in lines.zip(stems).enumerate() {
        let sample = generate_one(&cfg, i);
        let label = &stem[stem.len() - 1..];
        assert_eq!(
            line,
            format!("{stem}.tif,{label},masks/{stem}.png,{}", sample.group)
        );
        assert!(sample.group.starts_with("slide"));
        let img = image_io::read_rgb(&dir.path().join(format!("{stem}.tif"))).unwrap();
        let mask = MorphologyMask::read_png(&dir.path().join(format!("masks/{stem}.png")), &table)
            .unwrap();
        assert_eq!(img.dimensions(), (128, 128));
        assert_eq!(mask.dimensions(), (128, 128));
        for (t, c) in class_pixels.iter_mut().zip(mask.counts().per_class) {
            *t += c;
        }
    }
    assert_eq!(manifest.lines().count(), 8);
    assert_eq!(report.class_pixels, class_pixels);
    assert_eq!(
        LabelTable::read_json(&dir.path().join("labels.json")).unwrap(),
        table
    );
    // Label 0 is healthy, 1 is ALL, in the order of the label digits.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("classes.txt")).unwrap(),
        "healthy\nall\n"
    );
    let synth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("synth.json")).unwrap()).unwrap();
    assert_eq!(synth["seed"], 3);
    assert_eq!(synth["n"], 7);
    assert_eq!(synth["size"], 128);
    assert_eq!(synth["shortcut"], serde_json::Value::Null);
    assert_eq!(synth["without_cell"], false);
    assert_eq!(synth["complete"], true);
    assert_eq!(synth["generator_version"], leukex_synth::GENERATOR_VERSION);
}

#[test]
fn rewriting_a_synthetic_folder_drops_stale_images_and_foreign_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = SynthConfig {
        n: 6,
        size: 64,
        ..Default::default()
    };
    write_dataset(&big, dir.path(), &|_| {}).unwrap();
    let small = SynthConfig {
        n: 4,
        ..big.clone()
    };
    let report = write_dataset(&small, dir.path(), &|_| {}).unwrap();
    // n = 6 wrote Im001_1..Im003_1 and Im004_0..Im006_0; n = 4 wants
    // Im001_1, Im002_1, Im003_0, Im004_0, so Im003_1, Im005_0 and Im006_0
    // (image and mask each) are stale.
    assert_eq!(report.stale_removed, 2 * 3);
    let files = files_under(dir.path());
    assert!(files.contains("Im003_0.tif") && !files.contains("Im003_1.tif"));
    assert!(!files.contains("Im006_0.tif") && !files.contains("masks/Im005_0.png"));
    assert_eq!(files.len(), 4 + 2 * 4);

    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("thesis.docx"), b"precious").unwrap();
    let err = write_dataset(&small, foreign.path(), &|_| {}).unwrap_err();
    assert!(matches!(err, SynthError::ForeignFolder(_)), "{err}");
    assert!(err.to_string().contains("synth.json"), "{err}");
    assert_eq!(files_under(foreign.path()).len(), 1, "nothing written");

    let bad = SynthConfig {
        size: 8,
        ..small.clone()
    };
    let err = write_dataset(&bad, &dir.path().join("new"), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("--size 8"), "{err}");
}

fn classes(mask: &MorphologyMask) -> [u64; 5] {
    mask.counts().per_class
}

#[test]
fn masks_hold_every_class_and_vacuoles_only_in_l3_blasts() {
    for size in [128u32, 257, 320] {
        let cfg = SynthConfig {
            n: 60,
            seed: 11,
            size,
            ..Default::default()
        };
        let mut l3 = 0;
        for i in 0..cfg.n {
            let s = generate_one(&cfg, i);
            assert_eq!(s.image.dimensions(), (size, size));
            assert_eq!(s.mask.dimensions(), (size, size));
            let c = classes(&s.mask);
            for class in [
                MorphologyClass::Background,
                MorphologyClass::Nucleus,
                MorphologyClass::Cytoplasm,
                MorphologyClass::Rbc,
            ] {
                assert!(c[class.index()] > 0, "{} at {size} lacks {class}", s.stem);
            }
            let vacuoles = c[MorphologyClass::Vacuole.index()];
            assert_eq!(s.kind.is_blast(), s.label == 1);
            if s.kind == CellKind::L3 {
                l3 += 1;
                assert!(vacuoles > 0, "{} is L3 but has no vacuole", s.stem);
            } else {
                assert_eq!(vacuoles, 0, "{} ({:?}) has vacuoles", s.stem, s.kind);
            }
            // Blasts are the bigger cells with the bigger nuclei.
            let cell = c[1] + c[2] + c[3];
            let share = cell as f64 / (size * size) as f64;
            let diameter = 2.0 * (share / std::f64::consts::PI).sqrt();
            let range = if s.label == 1 { 0.42..0.72 } else { 0.28..0.5 };
            assert!(
                range.contains(&diameter),
                "{}: cell {diameter:.2} of the crop",
                s.stem
            );
        }
        assert!((4..=16).contains(&l3), "{l3} L3 blasts of 30 at {size}");
    }
}

#[test]
fn without_cell_masks_hold_no_cell_classes() {
    let cfg = SynthConfig {
        n: 20,
        without_cell: true,
        ..Default::default()
    };
    for i in 0..cfg.n {
        let m = generate_one(&cfg, i).mask;
        assert!(
            (0..m.height()).all(|y| (0..m.width()).all(|x| !m.get(x, y).unwrap().is_cell())),
            "image {i}"
        );
    }
}

#[test]
fn masks_agree_with_what_the_image_shows() {
    let cfg = SynthConfig {
        n: 40,
        seed: 5,
        ..Default::default()
    };
    for i in 0..cfg.n {
        let s = generate_one(&cfg, i);
        // Mean colour per class, over pixels whose 3×3 neighbourhood has
        // that class only (the edges are blurred on purpose).
        let mut sum = [[0.0f64; 3]; 5];
        let mut n = [0.0f64; 5];
        for y in 1..s.mask.height() - 1 {
            for x in 1..s.mask.width() - 1 {
                let c = s.mask.get(x, y).unwrap();
                let uniform =
                    (0..3).all(|dy| (0..3).all(|dx| s.mask.get(x + dx - 1, y + dy - 1) == Some(c)));
                if uniform {
                    let p = s.image.get_pixel(x, y).0;
                    for k in 0..3 {
                        sum[c.index()][k] += p[k] as f64;
                    }
                    n[c.index()] += 1.0;
                }
            }
        }
        let mean = |c: MorphologyClass| sum[c.index()].map(|v| v / n[c.index()]);
        let lum = |m: [f64; 3]| 0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2];
        let (nuc, cyto, bg, rbc) = (
            mean(MorphologyClass::Nucleus),
            mean(MorphologyClass::Cytoplasm),
            mean(MorphologyClass::Background),
            mean(MorphologyClass::Rbc),
        );
        let who = &s.stem;
        assert!(
            lum(nuc) + 20.0 < lum(cyto),
            "{who}: nucleus not darker than cytoplasm"
        );
        assert!(
            lum(cyto) < lum(bg),
            "{who}: cytoplasm not darker than background"
        );
        assert!(nuc[2] > nuc[1] + 30.0, "{who}: nucleus not purple {nuc:?}");
        assert!(cyto[2] > cyto[0], "{who}: cytoplasm not blue {cyto:?}");
        assert!(
            rbc[0] - rbc[2] > bg[0] - bg[2] + 15.0,
            "{who}: red cells not redder than film"
        );
        if n[MorphologyClass::Vacuole.index()] > 0.0 {
            let vac = mean(MorphologyClass::Vacuole);
            assert!(lum(vac) > lum(cyto) + 20.0, "{who}: vacuoles not clear");
        }
    }
}
