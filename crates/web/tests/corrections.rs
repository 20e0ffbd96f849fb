//! Correcting masks through the API: a save writes a new file beside the original (never
//! the original) and a history; bad bodies, stale versions, classes the label table cannot
//! store and paths out of the study folder are refused with their reason; `leukex data
//! check` and `leukex evaluate` read what was saved.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{get, post, request, serve};
use leukex_data::check::check;
use leukex_data::dataset::{Layout, OpenOptions};
use leukex_data::morphology::read_label_png;
use leukex_data::{LabelTable, MorphologyClass, MorphologyMask};
use leukex_web::correct::{decode_runs, encode_runs};
use leukex_web::example::write_example_study;
use leukex_web::{App, RoundConfig, ServeOptions, router};
use serde_json::{Value, json};

const SIZE: u32 = 48;

fn study() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_example_study(dir.path(), 4, SIZE, 11).unwrap();
    dir
}

fn first_stem(addr: SocketAddr) -> String {
    get(addr, "/api/maps").json()["images"][0]["stem"]
        .as_str()
        .unwrap()
        .to_string()
}

fn masks_dir(dir: &Path) -> PathBuf {
    dir.join("data").join("masks")
}

/// The mask to paint, as the painter gets it.
fn load(addr: SocketAddr, stem: &str) -> (Value, Vec<u8>) {
    let r = get(addr, &format!("/api/masks/{stem}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let runs: Vec<u64> = serde_json::from_value(v["runs"].clone()).unwrap();
    let classes = decode_runs(&runs, (SIZE * SIZE) as usize).unwrap();
    (v, classes)
}

/// A served example study, its first image's stem and that image's mask classes.
fn served_first_mask() -> (tempfile::TempDir, SocketAddr, String, Vec<u8>) {
    let dir = study();
    let addr = serve(dir.path(), RoundConfig::default());
    let stem = first_stem(addr);
    let (_, classes) = load(addr, &stem);
    (dir, addr, stem, classes)
}

/// Paints the rectangle [x0, x1) × [y0, y1) with `class`.
fn paint(classes: &mut [u8], (x0, x1): (u32, u32), (y0, y1): (u32, u32), class: MorphologyClass) {
    for y in y0..y1 {
        for x in x0..x1 {
            classes[(y * SIZE + x) as usize] = class as u8;
        }
    }
}

fn body(editor: &str, base: Option<u32>, classes: &[u8]) -> String {
    json!({"editor": editor, "base_version": base, "width": SIZE, "height": SIZE,
           "runs": encode_runs(classes)})
    .to_string()
}

fn save(addr: SocketAddr, stem: &str, body: &str) -> common::Reply {
    post(addr, &format!("/api/masks/{stem}"), body)
}

fn ids(path: &Path) -> Vec<u16> {
    read_label_png(path).unwrap().2
}

#[test]
fn a_save_writes_a_new_file_beside_the_original_and_keeps_every_version() {
    let dir = study();
    let addr = serve(dir.path(), RoundConfig::default());
    let stem = first_stem(addr);
    let original = masks_dir(dir.path()).join(format!("{stem}.png"));
    let original_bytes = std::fs::read(&original).unwrap();
    let (v, mut classes) = load(addr, &stem);
    assert_eq!(v["version"], 0);
    assert_eq!(v["from_corrected"], false);
    assert_eq!(v["original"], format!("data/masks/{stem}.png"));
    assert_eq!(v["classes"].as_array().unwrap().len(), 5);
    let before = classes.clone();

    // Version 1: a red-cell block in the corner.
    paint(&mut classes, (0, 6), (0, 4), MorphologyClass::Rbc);
    let changed1: Vec<usize> = (0..classes.len())
        .filter(|&i| classes[i] != before[i])
        .collect();
    assert!(!changed1.is_empty());
    let r = save(addr, &stem, &body("Dr Paint", Some(0), &classes));
    assert_eq!(r.status, 201, "{}", r.text());
    let saved = r.json();
    assert_eq!(saved["correction"]["version"], 1);
    assert_eq!(saved["correction"]["editor"], "Dr Paint");
    assert_eq!(saved["correction"]["pixels_changed"], changed1.len());
    assert_eq!(saved["correction"]["changed_to"][4], changed1.len());
    assert_eq!(
        saved["corrected"],
        format!("data/masks/corrected/{stem}.png")
    );
    assert_eq!(
        saved["history_file"],
        format!("data/masks/corrected/history/{stem}.v1.png")
    );

    let corrected = masks_dir(dir.path()).join(format!("corrected/{stem}.png"));
    let v1 = masks_dir(dir.path()).join(format!("corrected/history/{stem}.v1.png"));
    let written = ids(&corrected);
    assert_eq!(ids(&v1), written);
    for (i, (&w, &c)) in written.iter().zip(&classes).enumerate() {
        // The example's masks use leukex's ids: id = class index.
        assert_eq!(w, u16::from(c), "pixel {i}");
    }
    assert_eq!(
        std::fs::read(&original).unwrap(),
        original_bytes,
        "the original is never written"
    );

    // The painter now starts from version 1.
    let (v, reloaded) = load(addr, &stem);
    assert_eq!(v["version"], 1);
    assert_eq!(v["from_corrected"], true);
    assert_eq!(reloaded, classes);

    // Version 2 counts its changes against version 1, not the original.
    paint(&mut classes, (10, 12), (10, 12), MorphologyClass::Vacuole);
    let changed2 = (0..classes.len())
        .filter(|&i| classes[i] != reloaded[i])
        .count();
    let r = save(addr, &stem, &body("Second, \"Dr\" B", Some(1), &classes));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["correction"]["pixels_changed"], changed2);
    assert_eq!(ids(&v1), written, "version 1 is kept as saved");
    let v2 = masks_dir(dir.path()).join(format!("corrected/history/{stem}.v2.png"));
    assert_eq!(ids(&v2), ids(&corrected));

    let h = get(addr, &format!("/api/masks/{stem}/history"));
    assert_eq!(h.status, 200, "{}", h.text());
    let entries = h.json()["corrections"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["version"], 1);
    assert_eq!(entries[1]["version"], 2);
    assert_eq!(entries[1]["editor"], "Second, \"Dr\" B");
    assert_eq!(entries[1]["file"], format!("history/{stem}.v2.png"));
    let time = entries[0]["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    let log = std::fs::read_to_string(masks_dir(dir.path()).join("corrected/history.csv")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].starts_with("stem,version,time,editor,file,pixels_changed,to_background,"),
        "{log}"
    );
    assert!(lines[2].starts_with(&format!("{stem},2,")), "{log}");
    // The corrected folder names its label table: the original's.
    assert_eq!(
        LabelTable::read_json(&masks_dir(dir.path()).join("corrected/labels.json")).unwrap(),
        LabelTable::read_json(&dir.path().join("data/labels.json")).unwrap()
    );
    // A log that lost its rows (a crash between the files and the log): the next save
    // still gets a new number and version 2's file is kept.
    std::fs::remove_file(masks_dir(dir.path()).join("corrected/history.csv")).unwrap();
    let v2_ids = ids(&v2);
    let r = save(addr, &stem, &body("after", Some(2), &classes));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["correction"]["version"], 3);
    assert_eq!(ids(&v2), v2_ids);
    // Another image's history is empty.
    let other = get(addr, "/api/maps").json()["images"][1]["stem"]
        .as_str()
        .unwrap()
        .to_string();
    let h = get(addr, &format!("/api/masks/{other}/history")).json();
    assert_eq!(h["corrections"], json!([]));
}

#[test]
fn a_save_over_a_newer_version_is_refused() {
    let (_dir, addr, stem, mut classes) = served_first_mask();
    paint(&mut classes, (0, 2), (0, 2), MorphologyClass::Nucleus);
    assert_eq!(save(addr, &stem, &body("A", Some(0), &classes)).status, 201);
    // B loaded version 0 too and saves after A.
    let r = save(addr, &stem, &body("B", Some(0), &classes));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("version 1"));
    // Without a base version a save goes through (a script that knows what it does).
    let r = save(addr, &stem, &body("script", None, &classes));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["correction"]["version"], 2);
    assert_eq!(r.json()["correction"]["pixels_changed"], 0);
}

#[test]
fn bad_correction_requests_get_a_4xx_with_the_reason() {
    let (dir, addr, stem, classes) = served_first_mask();
    let n = (SIZE * SIZE) as u64;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            json!({"editor": "x", "width": SIZE + 1, "height": SIZE, "runs": [0, n]}).to_string(),
            400,
            "is 49x48 but the mask is 48x48",
        ),
        (
            json!({"editor": "x", "width": SIZE, "height": SIZE, "runs": [0, n - 1]}).to_string(),
            400,
            "cover 2303 of the mask's 2304 pixels",
        ),
        (
            json!({"editor": "x", "width": SIZE, "height": SIZE, "runs": [9, n]}).to_string(),
            400,
            "class 9",
        ),
        (
            json!({"editor": "x", "width": SIZE, "height": SIZE, "runs": [0, n, 1]}).to_string(),
            400,
            "pairs",
        ),
        (body("  ", None, &classes), 400, "`editor` is empty"),
        (body("a\u{7}b", None, &classes), 400, "control characters"),
        (
            json!({"width": SIZE, "height": SIZE, "runs": [0, n]}).to_string(),
            422,
            "editor",
        ),
        (
            json!({"editor": "x", "width": SIZE, "height": SIZE, "runs": [-1, n]}).to_string(),
            422,
            "runs",
        ),
        (
            json!({"editor": "x", "width": SIZE, "height": SIZE, "runs": [0, n], "extra": 1})
                .to_string(),
            422,
            "extra",
        ),
        ("{not json".into(), 400, "bad correction body"),
    ];
    for (b, status, reason) in cases {
        let r = save(addr, &stem, &b);
        assert_eq!(r.status, status, "{b}: {}", r.text());
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(err.contains(reason), "{b}: `{err}` lacks `{reason}`");
    }
    // Not JSON at all.
    let r = request(addr, "POST", &format!("/api/masks/{stem}"), None);
    assert_eq!(r.status, 415, "{}", r.text());
    // Nothing was written.
    assert!(!masks_dir(dir.path()).join("corrected").exists());
}

#[test]
fn mask_paths_from_requests_never_leave_the_study() {
    let dir = study();
    let outside = tempfile::tempdir().unwrap();
    let addr = serve(dir.path(), RoundConfig::default());
    let stem = first_stem(addr);
    let (_, classes) = load(addr, &stem);
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "..",
        "nosuch",
        "data%2Fmasks%2Fx",
        "%2Fetc%2Fpasswd",
    ] {
        for r in [
            get(addr, &format!("/api/masks/{bad}")),
            get(addr, &format!("/api/masks/{bad}/history")),
            save(addr, bad, &body("x", None, &classes)),
        ] {
            assert!(
                (400..500).contains(&r.status),
                "{bad}: {} {}",
                r.status,
                r.text()
            );
            assert!(r.json()["error"].is_string(), "{bad}");
        }
    }
    // A corrected folder that is a link out of the study: refused, nothing written there.
    std::os::unix::fs::symlink(outside.path(), masks_dir(dir.path()).join("corrected")).unwrap();
    let r = save(addr, &stem, &body("x", None, &classes));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(get(addr, &format!("/api/masks/{stem}")).status, 403);
}

/// A MATLAB Image Labeler export: id 0 is a pixel nobody labelled, the classes have
/// their own ids, and this table has no vacuole.
#[test]
fn matlab_ids_are_kept_unlabelled_stays_unlabelled_and_unknown_classes_are_refused() {
    let dir = study();
    let masks = masks_dir(dir.path());
    // Re-encode the example's masks as a MATLAB export would: 0 unlabelled (here the
    // first rows), 1 nucleus, 2 cytoplasm, 3 rbc, 5 background; vacuoles become cytoplasm.
    let matlab_id = |c: Option<MorphologyClass>| match c {
        None => 0u16,
        Some(MorphologyClass::Nucleus) => 1,
        Some(MorphologyClass::Cytoplasm | MorphologyClass::Vacuole) => 2,
        Some(MorphologyClass::Rbc) => 3,
        Some(MorphologyClass::Background) => 5,
    };
    for entry in std::fs::read_dir(&masks).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "png") {
            let m = MorphologyMask::read_png(&p, &LabelTable::default()).unwrap();
            let ids: Vec<u16> = (0..SIZE * SIZE)
                .map(|i| {
                    let (x, y) = (i % SIZE, i / SIZE);
                    if y < 2 { 0 } else { matlab_id(m.get(x, y)) }
                })
                .collect();
            leukex_web::correct::write_id_png(&p, SIZE, SIZE, &ids).unwrap();
        }
    }
    let table =
        LabelTable::parse_spec("0=unlabelled,1=nucleus,2=cytoplasm,3=rbc,5=background").unwrap();
    table.write_json(&masks.join("labels.json")).unwrap();

    let addr = serve(dir.path(), RoundConfig::default());
    let stem = first_stem(addr);
    let original = masks.join(format!("{stem}.png"));
    let original_ids = ids(&original);
    let (v, mut classes) = load(addr, &stem);
    assert_eq!(v["classes"][3]["name"], "vacuole");
    assert_eq!(v["classes"][3]["paintable"], false);
    assert_eq!(v["classes"][4]["paintable"], true);
    assert!(
        classes[..(2 * SIZE) as usize]
            .iter()
            .all(|&c| c == leukex_web::correct::UNLABELLED)
    );

    let mut with_vacuole = classes.clone();
    paint(
        &mut with_vacuole,
        (20, 22),
        (20, 22),
        MorphologyClass::Vacuole,
    );
    let r = save(addr, &stem, &body("x", Some(0), &with_vacuole));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("vacuole"));

    // Paint half of the unlabelled top rows as background and a nucleus block.
    paint(
        &mut classes,
        (0, SIZE / 2),
        (0, 2),
        MorphologyClass::Background,
    );
    paint(&mut classes, (30, 34), (30, 34), MorphologyClass::Nucleus);
    let r = save(addr, &stem, &body("x", Some(0), &classes));
    assert_eq!(r.status, 201, "{}", r.text());
    let corrected = masks.join(format!("corrected/{stem}.png"));
    let written = ids(&corrected);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let i = (y * SIZE + x) as usize;
            let expected = if y < 2 && x < SIZE / 2 {
                5
            } else if (30..34).contains(&x) && (30..34).contains(&y) {
                1
            } else {
                original_ids[i]
            };
            assert_eq!(written[i], expected, "({x}, {y})");
        }
    }
    assert_eq!(ids(&original), original_ids);
    assert_eq!(
        LabelTable::read_json(&masks.join("corrected/labels.json")).unwrap(),
        table
    );
    // The corrected folder passes the data check with its own table.
    let report = check(
        &dir.path().join("data"),
        &OpenOptions {
            layout: Some(Layout::AllIdb2),
            masks: Some(masks.join("corrected")),
            ..Default::default()
        },
    );
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.masks, 1);
}

#[test]
fn data_check_and_evaluate_read_the_corrected_masks() {
    let dir = study();
    let addr = serve(dir.path(), RoundConfig::default());
    let data = dir.path().join("data");
    let masks = masks_dir(dir.path());
    let images = get(addr, "/api/maps").json()["images"].clone();
    let stems: Vec<String> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["stem"].as_str().unwrap().to_string())
        .collect();
    for stem in &stems[..2] {
        let (_, mut classes) = load(addr, stem);
        paint(&mut classes, (0, SIZE), (0, 3), MorphologyClass::Rbc);
        assert_eq!(save(addr, stem, &body("x", Some(0), &classes)).status, 201);
    }
    let corrected = masks.join("corrected");
    // `leukex data check DIR --layout all-idb2 --masks DIR/masks/corrected`: only the
    // corrected masks are checked (the example's manifest names the originals).
    let only_corrected = OpenOptions {
        layout: Some(Layout::AllIdb2),
        masks: Some(corrected.clone()),
        ..Default::default()
    };
    let report = check(&data, &only_corrected);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.masks, 2);
    // The original folder with its `corrected/` inside still checks clean.
    let report = check(&data, &OpenOptions::default());
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.masks, stems.len());
    // A damaged corrected mask is found by the check: it reads those files.
    std::fs::write(corrected.join(format!("{}.png", stems[0])), b"not a png").unwrap();
    let report = check(&data, &only_corrected);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0]
            .path
            .ends_with(format!("corrected/{}.png", stems[0]))
    );
    std::fs::copy(
        corrected.join(format!("history/{}.v1.png", stems[0])),
        corrected.join(format!("{}.png", stems[0])),
    )
    .unwrap();

    // The evaluation folder: the originals, the corrected files over them.
    let assembled = dir.path().join("masks-final");
    let done = leukex_web::correct::assemble(&masks, &assembled).unwrap();
    assert_eq!((done.originals, done.corrected), (stems.len() - 2, 2));
    assert_eq!(
        std::fs::read(assembled.join(format!("{}.png", stems[1]))).unwrap(),
        std::fs::read(corrected.join(format!("{}.png", stems[1]))).unwrap()
    );
    assert_eq!(
        std::fs::read(assembled.join(format!("{}.png", stems[2]))).unwrap(),
        std::fs::read(masks.join(format!("{}.png", stems[2]))).unwrap()
    );
    let report = check(
        &data,
        &OpenOptions {
            layout: Some(Layout::AllIdb2),
            masks: Some(assembled.clone()),
            require_masks: true,
            ..Default::default()
        },
    );
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.masks, stems.len());
    // Never into the masks folder itself (it would overwrite the originals).
    for inside in [masks.clone(), corrected.join("x")] {
        assert!(leukex_web::correct::assemble(&masks, &inside).is_err());
    }
    assert!(!corrected.join("x").exists());
    let mut opts = leukex_evaluate::EvaluateOptions::new(
        dir.path().join("maps"),
        &assembled,
        dir.path().join("eval"),
    );
    opts.modes = vec!["paper".parse().unwrap()];
    opts.bootstrap_resamples = 10;
    opts.baselines = false;
    leukex_evaluate::evaluate_dir(&opts).unwrap();
    let per_image = std::fs::read_to_string(dir.path().join("eval/per_image.csv")).unwrap();
    assert!(per_image.contains(&stems[0]), "{per_image}");
    // The evaluation saw the painted rows: the corrected mask's red-cell area.
    let m = MorphologyMask::read_png(
        &assembled.join(format!("{}.png", stems[0])),
        &LabelTable::leukex_written(),
    )
    .unwrap();
    assert!((0..SIZE).all(|x| m.get(x, 0) == Some(MorphologyClass::Rbc)));
}

/// A body over the limit is refused with 413 before it is parsed (in-process: over a
/// socket the server stops reading at the limit and the client's write would race it).
#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;
    let dir = study();
    let app = std::sync::Arc::new(
        App::open(&ServeOptions {
            dir: dir.path().to_path_buf(),
            scale: Default::default(),
            round: RoundConfig::default(),
        })
        .unwrap(),
    );
    let stem = app.study.images[0].stem.clone();
    let huge = format!(
        "{{\"editor\":\"x\",\"width\":1,\"height\":1,\"runs\":[{}0]}}",
        "0,".repeat(leukex_web::correct::MAX_SAVE_BODY / 2 + 1)
    );
    let req = Request::post(format!("/api/masks/{stem}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(huge))
        .unwrap();
    let resp = router(app).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("bad correction body"),
        "{v}"
    );
    assert!(!masks_dir(dir.path()).join("corrected").exists());
}

#[test]
fn parallel_saves_get_one_version_each() {
    let (dir, addr, stem, classes) = served_first_mask();
    let threads: Vec<_> = (0..4u32)
        .map(|k| {
            let (stem, mut classes) = (stem.clone(), classes.clone());
            std::thread::spawn(move || {
                paint(&mut classes, (k, k + 1), (0, 1), MorphologyClass::Rbc);
                let r = save(addr, &stem, &body(&format!("editor {k}"), None, &classes));
                assert_eq!(r.status, 201, "{}", r.text());
                r.json()["correction"]["version"].as_u64().unwrap()
            })
        })
        .collect();
    let mut versions: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4]);
    let h = get(addr, &format!("/api/masks/{stem}/history")).json();
    assert_eq!(h["corrections"].as_array().unwrap().len(), 4);
    for v in 1..=4 {
        assert!(
            masks_dir(dir.path())
                .join(format!("corrected/history/{stem}.v{v}.png"))
                .is_file()
        );
    }
}

fn shares(addr: SocketAddr, id: &str, extra: &str) -> Value {
    let r = get(
        addr,
        &format!(
            "/api/shares?id={}&mode=positive{extra}",
            id.replace('/', "%2F")
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The per-class numbers of `map` in mode `positive` counted against `mask` by
/// `leukex-evaluate`, as the shares endpoint sends them.
fn expected_shares(map: &Path, method: &str, mask: &MorphologyMask) -> Value {
    use leukex_evaluate::{ClassShares, Mode, mode::select};
    use std::str::FromStr;
    let values = leukex_web::render::read_map(map).unwrap().values;
    let mode = Mode::from_str("positive").unwrap();
    let s = ClassShares::count(&select(mode, &values, method, None), mask);
    MorphologyClass::ALL
        .iter()
        .map(|c| json!([c.name(), s.share[c.index()], s.area_share[c.index()]]))
        .collect()
}

fn got_shares(v: &Value) -> Value {
    v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!([c["name"], c["share"], c["area_share"]]))
        .collect()
}

fn mask_pixel(addr: SocketAddr, stem: &str, extra: &str, (x, y): (u32, u32)) -> [u8; 4] {
    let r = get(addr, &format!("/api/mask.png?stem={stem}{extra}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers.contains("cache-control: no-cache"),
        "{}",
        r.headers
    );
    let img = image::load_from_memory(&r.body).unwrap().to_rgba8();
    img.get_pixel(x, y).0
}

/// Once a correction is saved, the browse page's mask and per-class numbers use it and
/// say so (`mask_corrected`, `mask.corrected`); the original stays reachable with
/// `mask=original`.
#[test]
fn the_browse_page_shows_and_counts_the_latest_correction() {
    let (dir, addr, stem, mut classes) = served_first_mask();
    let corrected_flags = |addr| -> Vec<(String, bool)> {
        get(addr, "/api/maps").json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["stem"].as_str().unwrap().to_string(),
                    i["mask_corrected"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert!(corrected_flags(addr).iter().all(|(_, c)| !c));
    let id = format!("resnet18/{stem}/lrp-epsilon");
    let map = dir.path().join(format!("maps/{id}.npy"));
    let before = shares(addr, &id, "");
    assert_eq!(before["mask"]["corrected"], false);
    assert_eq!(before["mask"]["version"], 0);
    // The shares sent are those of the map against the mask file `rel` in `data/masks`.
    let counted_with = |v: &Value, rel: &str| {
        let mask = MorphologyMask::read_png(
            &masks_dir(dir.path()).join(rel),
            &LabelTable::leukex_written(),
        )
        .unwrap();
        assert_eq!(
            got_shares(v),
            expected_shares(&map, "lrp-epsilon", &mask),
            "{rel}"
        );
        mask
    };
    let original_mask = counted_with(&before, &format!("{stem}.png"));

    // The top half becomes nucleus.
    paint(
        &mut classes,
        (0, SIZE),
        (0, SIZE / 2),
        MorphologyClass::Nucleus,
    );
    assert_eq!(save(addr, &stem, &body("x", Some(0), &classes)).status, 201);

    for (s, corrected) in corrected_flags(addr) {
        assert_eq!(corrected, s == stem, "{s}");
    }
    let after = shares(addr, &id, "");
    assert_eq!(after["mask"]["corrected"], true);
    assert_eq!(after["mask"]["version"], 1);
    assert_eq!(
        after["mask"]["file"],
        format!("data/masks/corrected/{stem}.png")
    );
    counted_with(&after, &format!("corrected/{stem}.png"));
    assert_ne!(got_shares(&after), got_shares(&before));
    let original = shares(addr, &id, "&mask=original");
    assert_eq!(original["mask"]["corrected"], false);
    assert_eq!(got_shares(&original), got_shares(&before));

    // The drawn mask: nucleus colour in the top rows now, the original's there before.
    let nucleus = leukex_web::render::class_colour(MorphologyClass::Nucleus);
    assert_eq!(mask_pixel(addr, &stem, "", (1, 1)), nucleus);
    let was = mask_pixel(addr, &stem, "&mask=original", (1, 1));
    assert_ne!(was, nucleus);
    assert_eq!(
        was,
        original_mask
            .get(1, 1)
            .map_or([0; 4], leukex_web::render::class_colour)
    );
    let r = get(addr, &format!("/api/mask.png?stem={stem}&mask=newest"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("mask"));
}

/// A MATLAB Image Labeler export beside the images (`PixelLabelData/Label_<k>_STEM.png`,
/// its own ids with 0 for pixels nobody labelled, the id table in `labels.json` beside the
/// masks, no manifest): the viewer finds, draws and counts the masks exactly as
/// `leukex-data` reads them, the painter corrects them, and the corrected folder passes
/// `data check`. Without the id table the masks are not guessed: the server says why.
#[test]
fn matlab_image_labeler_exports_are_shown_counted_and_corrected() {
    let dir = study();
    let data = dir.path().join("data");
    let masks = masks_dir(dir.path());
    let export = data.join("PixelLabelData");
    std::fs::create_dir_all(&export).unwrap();
    let matlab_id = |c: Option<MorphologyClass>| match c {
        None => 0u16,
        Some(MorphologyClass::Nucleus) => 1,
        Some(MorphologyClass::Cytoplasm) => 2,
        Some(MorphologyClass::Vacuole) => 3,
        Some(MorphologyClass::Rbc) => 4,
        Some(MorphologyClass::Background) => 5,
    };
    let mut stems: Vec<String> = std::fs::read_dir(&masks)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "png").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    stems.sort();
    assert_eq!(stems.len(), 4);
    for (k, stem) in stems.iter().enumerate() {
        let m = MorphologyMask::read_png(
            &masks.join(format!("{stem}.png")),
            &LabelTable::leukex_written(),
        )
        .unwrap();
        // The first two rows nobody labelled.
        let ids: Vec<u16> = (0..SIZE * SIZE)
            .map(|i| {
                let (x, y) = (i % SIZE, i / SIZE);
                if y < 2 { 0 } else { matlab_id(m.get(x, y)) }
            })
            .collect();
        let name = format!("Label_{}_{stem}.png", k + 1);
        leukex_web::correct::write_id_png(&export.join(name), SIZE, SIZE, &ids).unwrap();
    }
    std::fs::remove_dir_all(&masks).unwrap();
    std::fs::remove_file(data.join("manifest.csv")).unwrap();
    std::fs::remove_file(data.join("labels.json")).unwrap();

    // Without the id table: no masks, and the reason.
    let addr = serve(dir.path(), RoundConfig::default());
    let v = get(addr, "/api/maps").json();
    assert!(
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["has_mask"] == false)
    );
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("PixelLabelData") && notes.contains("label-map"),
        "{notes}"
    );

    LabelTable::parse_spec("1=nucleus,2=cytoplasm,3=vacuole,4=rbc,5=background")
        .unwrap()
        .write_json(&export.join("labels.json"))
        .unwrap();
    let ds = leukex_data::dataset::Dataset::open(&data, &OpenOptions::default()).unwrap();
    let addr = serve(dir.path(), RoundConfig::default());
    let v = get(addr, "/api/maps").json();
    assert_eq!(v["notes"], json!([]));
    for im in v["images"].as_array().unwrap() {
        assert_eq!(im["has_mask"], true, "{im}");
        let stem = im["stem"].as_str().unwrap();
        let reference = ds.load_mask(ds.find_stem(stem).unwrap()).unwrap().unwrap();
        assert_eq!(reference.get(3, 0), None, "id 0 is unlabelled");
        assert_eq!(
            mask_pixel(addr, stem, "", (3, 0)),
            [0; 4],
            "unlabelled is not drawn"
        );
        let (x, y) = (0..SIZE * SIZE)
            .map(|i| (i % SIZE, i / SIZE))
            .find(|&(x, y)| reference.get(x, y) == Some(MorphologyClass::Nucleus))
            .unwrap();
        assert_eq!(
            mask_pixel(addr, stem, "", (x, y)),
            leukex_web::render::class_colour(MorphologyClass::Nucleus)
        );
        for method in ["lrp-epsilon", "grad-cam"] {
            let id = format!("vgg19/{stem}/{method}");
            let map = dir.path().join(format!("maps/{id}.npy"));
            assert_eq!(
                got_shares(&shares(addr, &id, "")),
                expected_shares(&map, method, &reference),
                "{id}"
            );
        }
    }

    // The painter opens the export's mask and saves beside it.
    let stem = &stems[0];
    let (v, mut classes) = load(addr, stem);
    assert_eq!(
        v["original"],
        format!("data/PixelLabelData/Label_1_{stem}.png")
    );
    assert!(
        classes[..SIZE as usize]
            .iter()
            .all(|&c| c == leukex_web::correct::UNLABELLED)
    );
    paint(&mut classes, (0, SIZE), (0, 2), MorphologyClass::Background);
    let r = save(addr, stem, &body("x", Some(0), &classes));
    assert_eq!(r.status, 201, "{}", r.text());
    let corrected = export.join(format!("corrected/Label_1_{stem}.png"));
    assert_eq!(ids(&corrected)[..SIZE as usize], [5; SIZE as usize]);
    let s = shares(addr, &format!("vgg19/{stem}/grad-cam"), "");
    assert_eq!(s["mask"]["corrected"], true);
    assert_eq!(s["undefined"], Value::Null);
    let report = check(
        &data,
        &OpenOptions {
            masks: Some(export.join("corrected")),
            ..Default::default()
        },
    );
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.masks, 1);
}
