//! `leukex serve` as a process: it prints its URL, stores acknowledged ratings so that
//! they survive `kill -9`, and `leukex ratings summary` reads them back; and (ignored,
//! run by `.ci/run`) the viewer in headless Chromium on the `leukex demo --quick` output.

mod common;
#[path = "../../web/tests/common/http.rs"]
mod raw_http;
#[path = "../../web/tests/webdriver/mod.rs"]
mod webdriver;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// Starts `leukex serve DIR --port 0 ROUND_ARGS` and returns it with the address it printed.
fn serve(dir: &std::path::Path, round_args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .arg("serve")
        .arg(dir)
        .args(["--port", "0"])
        .args(round_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("leukex serve printed its URL").unwrap();
        if let Some(rest) = line.strip_prefix("serving http://") {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    assert!(
        addr.starts_with("127.0.0.1:"),
        "loopback by default: {addr}"
    );
    (child, addr.parse().unwrap())
}

/// One request with a JSON body (or none); (status, JSON body or null).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string);
    let r = raw_http::request(addr, method, path, body.as_deref());
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

const SMALL_ROUND: [&str; 4] = ["--per-stratum", "1", "--calibration", "0"];

#[test]
fn acknowledged_ratings_survive_kill_9_and_are_summarised() {
    let tmp = tempfile::tempdir().unwrap();
    leukex_web::example::write_example_study(tmp.path(), 4, 48, 2).unwrap();
    let (mut child, addr) = serve(tmp.path(), &SMALL_ROUND);
    let (status, rater) = http(
        addr,
        "POST",
        "/api/raters",
        Some(&json!({"name": "ada", "expertise": "hematologist"})),
    );
    assert_eq!(status, 201, "{rater}");
    let total = rater["total"].as_u64().unwrap();
    let mut acknowledged = 0;
    for score in [3, 1, 2] {
        let (_, next) = http(addr, "GET", "/api/round/ada/next", None);
        let token = next["item"]["map"].as_str().unwrap();
        let body = json!({"rater": "ada", "map": token, "score": score, "morphology": score > 1});
        let (status, row) = http(addr, "POST", "/api/ratings", Some(&body));
        assert_eq!(status, 201, "{row}");
        acknowledged += 1;
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();

    let (mut child, addr) = serve(tmp.path(), &SMALL_ROUND);
    let (_, next) = http(addr, "GET", "/api/round/ada/next", None);
    assert_eq!(next["done"], acknowledged);
    assert_eq!(next["total"].as_u64().unwrap(), total);
    assert_eq!(next["item"]["position"], acknowledged);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["ratings", "summary"])
        .arg(tmp.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["ratings"], 3);
    assert_eq!(s["raters"], 1);
    let md = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["ratings", "summary"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("| all |") && md.contains("Krippendorff"),
        "{md}"
    );
}

#[test]
fn ratings_summary_without_a_database_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["ratings", "summary"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ratings.sqlite"), "{err}");
}

/// The browser test on a real study folder: the `leukex demo --quick` output
/// served by the `leukex` binary, in headless Chromium. Switch a heat map's method on the
/// browse page and see another image drawn; rate blinded as a new rater; reload and find
/// the rating kept (page, API, CSV) and the next map shown; finish the round and see it
/// revealed. About 40 s for the demo (debug build) and a few seconds in the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the quick demo and needs chromium and chromedriver (run by .ci/run)"]
async fn the_quick_demo_in_chromium_switch_a_map_rate_blinded_reload_and_resume() {
    use fantoccini::Locator;
    use webdriver::*;

    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("demo");
    let o = common::quick_demo(&study);
    assert!(o.status.success(), "demo failed:\n{}", common::text(&o));
    let (server, addr) = serve(
        &study,
        &["--per-stratum", "1", "--calibration", "1", "--seed", "5"],
    );
    let _server = KillOnDrop(server);
    let base = format!("http://{addr}");
    let maps = http(addr, "GET", "/api/maps", None).1;
    let methods: Vec<String> = maps["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods.len(), 6, "{methods:?}");
    let (_driver, driver_port) = start_chromedriver();
    let c = browser(driver_port).await;

    // Browse: the quick study's one model, six methods, 20 test images (6 a page).
    c.goto(&format!("{base}/")).await.unwrap();
    wait_ready(&c).await;
    let tiles = c.find_all(Locator::Css(".tile[data-map]")).await.unwrap();
    assert_eq!(tiles.len(), 6 * 6);
    // The first heat map as the browser drew it: its source and a hash of its pixels.
    let drawn = || async {
        c.execute(
            "const i = document.querySelector('.tile img.heat');
             if (!i || !i.complete || !i.naturalWidth) return null;
             const c = document.createElement('canvas');
             c.width = i.naturalWidth; c.height = i.naturalHeight;
             const x = c.getContext('2d'); x.drawImage(i, 0, 0);
             const d = x.getImageData(0, 0, c.width, c.height).data;
             let h = 0; for (let k = 0; k < d.length; k++) h = (h * 31 + d[k]) >>> 0;
             return [i.closest('.tile').dataset.map, c.width, h];",
            vec![],
        )
        .await
        .unwrap()
    };
    let mut seen = Vec::new();
    for method in ["gradient", "grad-cam"] {
        c.find(Locator::Css("#f-method"))
            .await
            .unwrap()
            .select_by_value(method)
            .await
            .unwrap();
        assert_eq!(
            c.find_all(Locator::Css(".tile[data-map]"))
                .await
                .unwrap()
                .len(),
            6
        );
        until("the switched heat map", || async {
            drawn().await[0]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!("/{method}")))
        })
        .await;
        let d = drawn().await;
        assert_eq!(d[1], 128, "the quick study's maps are 128 pixels wide: {d}");
        seen.push(d);
    }
    assert_eq!(
        seen[0][0].as_str().unwrap().rsplit_once('/').unwrap().0,
        seen[1][0].as_str().unwrap().rsplit_once('/').unwrap().0,
        "the same image's two maps"
    );
    assert_ne!(
        seen[0][2], seen[1][2],
        "another heat map is drawn: {seen:?}"
    );

    // Blinded rating as a new rater; reload: the round resumes at the next map.
    let hidden: Vec<&str> = methods
        .iter()
        .map(String::as_str)
        .chain(["resnet18", "Im0"])
        .collect();
    let (first, second) = rate_the_first_map_blinded_and_reload(
        &c,
        &base,
        ("Dr Demo", "hematopathologist"),
        &hidden,
        None,
    )
    .await;
    let (status, next) = http(addr, "GET", "/api/round/Dr%20Demo/next", None);
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["done"], 1);
    assert_eq!(next["item"]["map"], second.as_str());
    let rows = raw_http::rating_rows(addr);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains(&format!(
            ",Dr Demo,hematopathologist,0,calibration,{first},resnet18/"
        )) && rows[0].contains(",2,true,"),
        "{rows:?}"
    );
    let first_map = rows[0].split(',').nth(6).unwrap().to_string();
    let (status, _) = http(addr, "GET", "/api/round/Dr%20Demo/reveal", None);
    assert_eq!(status, 403, "hidden until the round is finished");

    // The rest of the round through the API; the reloaded page then reveals it.
    let total = next["total"].as_u64().unwrap();
    loop {
        let (_, n) = http(addr, "GET", "/api/round/Dr%20Demo/next", None);
        if n["finished"] == true {
            break;
        }
        let body =
            json!({"rater": "Dr Demo", "map": n["item"]["map"], "score": 1, "morphology": false});
        let (status, row) = http(addr, "POST", "/api/ratings", Some(&body));
        assert_eq!(status, 201, "{row}");
    }
    c.refresh().await.unwrap();
    wait_ready(&c).await;
    assert!(displayed(&c, "#finished").await);
    let rows = c
        .find_all(Locator::Css("#reveal tr[data-map]"))
        .await
        .unwrap();
    assert_eq!(rows.len() as u64, total);
    assert_eq!(
        rows[0].attr("data-map").await.unwrap().as_deref(),
        Some(first_map.as_str())
    );
    let score = rows[0]
        .find(Locator::Css("td.score"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(score, "2");
    c.close().await.unwrap();
}
