//! The JSON API on a served example study: browsing, rendering, the blinded round,
//! ratings (bad bodies refused with their reason, duplicates refused, concurrent raters),
//! the CSV export, and paths that try to leave the study folder.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{get, post, serve};
use leukex_web::RoundConfig;
use leukex_web::example::write_example_study;
use serde_json::{Value, json};

fn study() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_example_study(dir.path(), 6, 64, 3).unwrap();
    dir
}

fn small_round() -> RoundConfig {
    RoundConfig {
        seed: 7,
        per_stratum: 2,
        calibration: 2,
        repeat_fraction: 0.1,
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
    (img.width(), img.height())
}

fn q(s: &str) -> String {
    s.replace('/', "%2F")
}

#[test]
fn maps_lists_every_model_method_and_image_with_metadata() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    let r = get(addr, "/api/maps");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    assert_eq!(v["methods"].as_array().unwrap().len(), 3);
    assert_eq!(v["images"].as_array().unwrap().len(), 6);
    let maps = v["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 2 * 3 * 6);
    // The example's second model is wrong on every third image (2 of 6), for 3 methods.
    let wrong = maps.iter().filter(|m| m["correct"] == json!(false)).count();
    assert_eq!(wrong, 2 * 3);
    for m in maps {
        let class = m["true_class"].as_str().unwrap();
        let stem = m["stem"].as_str().unwrap();
        assert_eq!(class == "blast", stem.ends_with("_1"), "{m}");
    }
    assert!(
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["has_image"] == json!(true) && i["has_mask"] == json!(true))
    );
}

#[test]
fn maps_images_masks_and_selections_render_as_png() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    let v = get(addr, "/api/maps").json();
    let stem = v["images"][0]["stem"].as_str().unwrap().to_string();
    let lrp = format!("resnet18/{stem}/lrp-epsilon");
    let native = get(addr, &format!("/api/map.png?id={}", q(&lrp)));
    assert_eq!(native.status, 200, "{}", native.text());
    assert!(native.headers.contains("content-type: image/png"));
    assert_eq!(png_size(&native.body), (64, 64));
    let blinded = get(addr, &format!("/api/map.png?id={}&style=blinded", q(&lrp)));
    assert_eq!(blinded.status, 200);
    assert_ne!(
        native.body, blinded.body,
        "a signed map is drawn differently blinded"
    );
    for path in [
        format!("/api/image.png?stem={stem}"),
        format!("/api/mask.png?stem={stem}"),
        format!("/api/selection.png?id={}&mode=top-10", q(&lrp)),
        format!("/api/selection.png?id={}&mode=mass", q(&lrp)),
    ] {
        let r = get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(png_size(&r.body), (64, 64), "{path}");
    }
    for (path, status) in [
        (format!("/api/map.png?id={}&style=rainbow", q(&lrp)), 400),
        (
            "/api/map.png?id=resnet18%2FIm999_1%2Flrp-epsilon".to_string(),
            404,
        ),
        ("/api/map.png".to_string(), 400),
        (format!("/api/selection.png?id={}&mode=top-0", q(&lrp)), 400),
        (format!("/api/shares?id={}", q(&lrp)), 400),
        (
            "/api/image.png?stem=..%2F..%2Fetc%2Fpasswd".to_string(),
            404,
        ),
        ("/api/nothing".to_string(), 404),
    ] {
        let r = get(addr, &path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}"
        );
    }
}

#[test]
fn evaluation_mode_gives_per_class_numbers_of_the_selected_pixels() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    let v = get(addr, "/api/maps").json();
    let stem = v["images"][0]["stem"].as_str().unwrap().to_string();
    // The example's LRP map is relevance on the nucleus: its top pixels lie there.
    let r = get(
        addr,
        &format!(
            "/api/shares?id={}&mode=top-5",
            q(&format!("vgg19/{stem}/lrp-epsilon"))
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    let nucleus = &s["classes"][1];
    assert_eq!(nucleus["name"], "nucleus");
    assert!(nucleus["lift"].as_f64().unwrap() > 2.0, "{s}");
    let shares: f64 = s["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["share"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(
        (shares - 1.0).abs() < 1e-9,
        "shares of the labelled pixels sum to 1: {s}"
    );
}

fn start(addr: SocketAddr, name: &str) -> Value {
    let r = post(
        addr,
        "/api/raters",
        &json!({"name": name, "expertise": "hematologist"}).to_string(),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    r.json()
}

fn next(addr: SocketAddr, name: &str) -> Value {
    let r = get(addr, &format!("/api/round/{name}/next"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Nothing in `text` names a model, method, class or image of the example study.
fn assert_hides_the_maps(text: &str) {
    for hidden in [
        "resnet18", "vgg19", "lrp", "cam", "gradient", "blast", "healthy", "Im",
    ] {
        assert!(
            !text.contains(hidden),
            "the round reveals `{hidden}`: {text}"
        );
    }
}

#[test]
fn a_blinded_round_hides_the_map_stores_ratings_and_resumes() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    let first = start(addr, "ada");
    // 2 models x 3 methods x 2 classes x 2 maps = 24, 2 calibration, 2 repeats.
    assert_eq!(first["total"], 28);
    assert_eq!(first["done"], 0);
    assert_eq!(start(addr, "ada")["total"], 28, "a second start resumes");
    let n = next(addr, "ada");
    let token = n["item"]["map"].as_str().unwrap().to_string();
    assert_eq!(n["item"]["calibration"], true);
    assert_hides_the_maps(&n.to_string());
    for part in ["map.png", "image.png"] {
        let r = get(addr, &format!("/api/blind/{token}/{part}"));
        assert_eq!(r.status, 200, "{part}");
        assert_eq!(png_size(&r.body), (64, 64));
    }

    let body = json!({"rater": "ada", "map": token, "score": 2, "morphology": true});
    let r = post(addr, "/api/ratings", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let row = r.json();
    assert_eq!(row["rater"], "ada");
    assert_eq!(row["map"], token.as_str());
    assert_eq!(row["score"], 2);
    assert_eq!(row["morphology"], true);
    assert_eq!(row["position"], 0);
    assert!(row["id"].as_i64().is_some() && row["created"].as_str().is_some());
    let again = post(addr, "/api/ratings", &body.to_string());
    assert_eq!(again.status, 409, "{}", again.text());

    let other = start(addr, "grace");
    assert_eq!(other["total"], 28);
    let grace_token = next(addr, "grace")["item"]["map"]
        .as_str()
        .unwrap()
        .to_string();
    let bad: Vec<(String, &str)> = vec![
        ("{".into(), "bad request body"),
        ("[]".into(), "bad request body"),
        (
            json!({"rater": "ada", "map": token}).to_string(),
            "missing field `score`",
        ),
        (
            json!({"rater": "ada", "map": token, "score": "2", "morphology": true}).to_string(),
            "invalid type",
        ),
        (
            json!({"rater": "ada", "map": token, "score": 2.5, "morphology": true}).to_string(),
            "invalid type",
        ),
        (
            json!({"rater": "ada", "map": token, "score": 2, "morphology": "yes"}).to_string(),
            "invalid type",
        ),
        (
            json!({"rater": "ada", "map": token, "score": 2, "morphology": true, "method": "x"})
                .to_string(),
            "unknown field",
        ),
        (
            json!({"rater": "ada", "map": token, "score": 4, "morphology": true}).to_string(),
            "not on the scale",
        ),
        (
            json!({"rater": "ada", "map": token, "score": -1, "morphology": true}).to_string(),
            "not on the scale",
        ),
        (
            json!({"rater": "nobody", "map": token, "score": 1, "morphology": true}).to_string(),
            "unknown rater",
        ),
        (
            json!({"rater": "ada", "map": grace_token, "score": 1, "morphology": true}).to_string(),
            "not in the round",
        ),
        (
            json!({"rater": "ada", "map": "../../x", "score": 1, "morphology": true}).to_string(),
            "not in the round",
        ),
    ];
    for (body, reason) in bad {
        let r = post(addr, "/api/ratings", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(reason), "{body}: `{e}` should say `{reason}`");
    }
    for body in [
        json!({"name": "", "expertise": "x"}),
        json!({"name": "a\u{7}", "expertise": "x"}),
        json!({"name": "x".repeat(81), "expertise": "x"}),
        json!({"name": "bob"}),
    ] {
        let r = post(addr, "/api/raters", &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
    }

    // The next map of ada's round is the second; a restarted server (a new process on
    // the same folder) continues there.
    let n2 = next(addr, "ada");
    assert_eq!(n2["done"], 1);
    assert_eq!(n2["item"]["position"], 1);
    let restarted = serve(dir.path(), small_round());
    assert_eq!(next(restarted, "ada")["item"], n2["item"]);

    let csv = get(addr, "/api/ratings.csv");
    assert_eq!(csv.status, 200);
    assert!(csv.headers.contains("content-type: text/csv"));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with(
        "id,rater,expertise,position,kind,item,map,model,stem,method,score,morphology,created"
    ));
    assert!(
        lines[1].contains(&format!(",ada,hematologist,0,calibration,{token},")),
        "{text}"
    );
}

/// Until the last map of a round is rated, the reveal is refused and every blinded answer
/// names no map; then the reveal gives each rated item's map, model, method, classes and
/// the score given, and the map behind each opaque id is the one that was shown.
#[test]
fn the_round_is_revealed_to_its_rater_only_when_finished() {
    let dir = study();
    let round = RoundConfig {
        seed: 3,
        per_stratum: 1,
        calibration: 1,
        repeat_fraction: 0.1,
    };
    let addr = serve(dir.path(), round);
    assert_eq!(get(addr, "/api/round/nobody/reveal").status, 404);
    let total = start(addr, "ada")["total"].as_u64().unwrap() as usize;
    // 2 models x 3 methods x 2 classes, 1 calibration map, 1 repeat.
    assert_eq!(total, 14);
    start(addr, "grace");
    let mut given = Vec::new();
    for k in 0..total {
        let refused = get(addr, "/api/round/ada/reveal");
        assert_eq!(refused.status, 403, "{}", refused.text());
        let reason = refused.json()["error"].as_str().unwrap().to_string();
        assert!(
            reason.contains(&format!("{k} of {total} maps rated")),
            "{reason}"
        );
        assert_hides_the_maps(&reason);
        let n = next(addr, "ada");
        assert_hides_the_maps(&n.to_string());
        let token = n["item"]["map"].as_str().unwrap().to_string();
        let score = (k % 4) as i64;
        let body = json!({"rater": "ada", "map": token, "score": score, "morphology": k % 2 == 0});
        let r = post(addr, "/api/ratings", &body.to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        assert_hides_the_maps(&r.text());
        given.push((token, score, k % 2 == 0));
    }
    assert_eq!(next(addr, "ada")["finished"], true);
    // Another rater's unfinished round stays hidden.
    assert_eq!(get(addr, "/api/round/grace/reveal").status, 403);

    let r = get(addr, "/api/round/ada/reveal");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["rater"], "ada");
    assert_eq!(v["done"], total);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), total);
    let maps = get(addr, "/api/maps").json();
    for (k, (item, (token, score, morphology))) in items.iter().zip(&given).enumerate() {
        assert_eq!(item["position"], k, "{item}");
        assert_eq!(item["item"], token.as_str());
        assert_eq!(item["score"], *score);
        assert_eq!(item["morphology"], *morphology);
        if k == 0 {
            assert_eq!(item["kind"], "calibration");
        }
        // The map named is the one that was shown behind the opaque id.
        let id = item["map"].as_str().unwrap();
        let shown = get(addr, &format!("/api/blind/{token}/map.png")).body;
        let named = get(addr, &format!("/api/map.png?id={}&style=blinded", q(id))).body;
        assert_eq!(shown, named, "{id}");
        let m = maps["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap();
        for key in [
            "model",
            "stem",
            "method",
            "true_class",
            "predicted",
            "correct",
        ] {
            assert_eq!(item[key], m[key], "{key} of {id}");
        }
    }
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "repeat").count(), 1);
    // Every method x model x class of the sample, once in the counted items.
    let mut strata = BTreeSet::new();
    for i in items.iter().filter(|i| i["kind"] == "main") {
        assert!(strata.insert((
            i["model"].to_string(),
            i["method"].to_string(),
            i["true_class"].to_string()
        )));
    }
    assert_eq!(strata.len(), 12);
}

#[test]
fn a_changed_round_setting_is_refused_on_an_existing_database() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    start(addr, "ada");
    let changed = leukex_web::App::open(&leukex_web::ServeOptions {
        dir: dir.path().to_path_buf(),
        scale: leukex_web::Scale::default(),
        round: RoundConfig {
            per_stratum: 3,
            ..small_round()
        },
    });
    let e = changed.err().expect("refused").to_string();
    assert!(
        e.contains("ratings.sqlite") && e.contains("per_stratum"),
        "{e}"
    );
}

#[test]
fn parallel_raters_all_rows_present_none_duplicated() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    let raters: Vec<String> = (0..6).map(|i| format!("rater{i}")).collect();
    for r in &raters {
        start(addr, r);
    }
    // Every rater's whole round, each rating sent twice at once from two threads.
    let threads: Vec<_> = raters
        .iter()
        .flat_map(|name| {
            (0..2).map(move |copy| {
                let name = name.clone();
                std::thread::spawn(move || {
                    let mut created = 0;
                    let mut conflicts = 0;
                    loop {
                        let n = next(addr, &name);
                        if n["finished"] == true {
                            break;
                        }
                        let token = n["item"]["map"].as_str().unwrap();
                        let score = (n["item"]["position"].as_i64().unwrap() + copy) % 4;
                        let body = json!({"rater": name, "map": token, "score": score, "morphology": score >= 2});
                        let r = post(addr, "/api/ratings", &body.to_string());
                        match r.status {
                            201 => created += 1,
                            409 => conflicts += 1,
                            s => panic!("{s}: {}", r.text()),
                        }
                    }
                    (created, conflicts)
                })
            })
        })
        .collect();
    let created: usize = threads.into_iter().map(|t| t.join().unwrap().0).sum();
    assert_eq!(created, 6 * 28);
    let text = get(addr, "/api/ratings.csv").text();
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 6 * 28);
    let items: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r[1].clone(), r[5].clone())).collect();
    assert_eq!(items.len(), rows.len(), "no (rater, item) twice");
    let ids: BTreeSet<&String> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids.len(), rows.len());

    let s = get(addr, "/api/summary").json();
    assert_eq!(s["raters"], 6);
    assert_eq!(s["maps"], 24);
    assert_eq!(s["by_method"].as_array().unwrap().len(), 3);
    assert_eq!(s["by_model_method"].as_array().unwrap().len(), 6);
    for c in s["consistency"].as_array().unwrap() {
        assert_eq!(c["repeats"], 2, "{c}");
    }
}

#[test]
fn file_paths_never_leave_the_study_folder() {
    let dir = study();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "SECRET").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "notes").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("data/link.txt"),
    )
    .unwrap();
    let addr = serve(dir.path(), small_round());
    let ok = get(addr, "/files/notes.txt");
    assert_eq!((ok.status, ok.text().as_str()), (200, "notes"));
    assert_eq!(get(addr, "/files/data/labels.json").status, 200);
    let secret = outside.path().join("secret.txt");
    let abs = secret.to_str().unwrap();
    for path in [
        "/files/../secret.txt".to_string(),
        "/files/data/../../secret.txt".to_string(),
        "/files/%2e%2e/secret.txt".to_string(),
        "/files/%2E%2E%2Fsecret.txt".to_string(),
        "/files/data%2F..%2F..%2Fsecret.txt".to_string(),
        "/files/%252e%252e/secret.txt".to_string(),
        "/files/..%5csecret.txt".to_string(),
        format!("/files/{abs}"),
        format!("/files//{abs}"),
        format!("/files/%2F{}", abs.trim_start_matches('/')),
        "/files/out/secret.txt".to_string(),
        "/files/data/link.txt".to_string(),
        "/files/ratings.sqlite".to_string(),
        "/files/nothing.txt".to_string(),
        "/files/data".to_string(),
        "/files/a%00b".to_string(),
    ] {
        let r = get(addr, &path);
        assert!(
            (400..500).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("SECRET"), "{path}");
    }
    assert_eq!(get(addr, "/files/out/secret.txt").status, 403);
}

#[test]
fn pages_and_assets_are_served_from_the_binary() {
    let dir = study();
    let addr = serve(dir.path(), small_round());
    for (path, kind) in [
        ("/", "text/html"),
        ("/rate", "text/html"),
        ("/summary", "text/html"),
        ("/correct", "text/html"),
        ("/assets/style.css", "text/css"),
        ("/assets/common.js", "text/javascript"),
        ("/assets/correct.js", "text/javascript"),
        ("/assets/browse.js", "text/javascript"),
        ("/assets/rate.js", "text/javascript"),
        ("/assets/summary.js", "text/javascript"),
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers.contains(&format!("content-type: {kind}")),
            "{path}"
        );
        // No CDN: nothing is loaded from another host.
        let t = r.text();
        assert!(!t.contains("http://") && !t.contains("https://"), "{path}");
    }
    assert_eq!(get(addr, "/assets/../Cargo.toml").status, 404);
}
