//! `leukex serve` as a process: it prints its URL, stores acknowledged ratings so that
//! they survive `kill -9`, and `leukex ratings summary` reads them back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// Starts `leukex serve DIR --port 0` and returns it with the address it printed.
fn serve(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .arg("serve")
        .arg(dir)
        .args(["--port", "0", "--per-stratum", "1", "--calibration", "0"])
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
    (child, addr)
}

/// One HTTP/1.1 request (Connection: close); (status, body).
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn acknowledged_ratings_survive_kill_9_and_are_summarised() {
    let tmp = tempfile::tempdir().unwrap();
    leukex_web::example::write_example_study(tmp.path(), 4, 48, 2).unwrap();
    let (mut child, addr) = serve(tmp.path());
    let (status, rater) = http(
        &addr,
        "POST",
        "/api/raters",
        Some(&json!({"name": "ada", "expertise": "hematologist"})),
    );
    assert_eq!(status, 201, "{rater}");
    let total = rater["total"].as_u64().unwrap();
    let mut acknowledged = 0;
    for score in [3, 1, 2] {
        let (_, next) = http(&addr, "GET", "/api/round/ada/next", None);
        let token = next["item"]["map"].as_str().unwrap();
        let body = json!({"rater": "ada", "map": token, "score": score, "morphology": score > 1});
        let (status, row) = http(&addr, "POST", "/api/ratings", Some(&body));
        assert_eq!(status, 201, "{row}");
        acknowledged += 1;
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();

    let (mut child, addr) = serve(tmp.path());
    let (_, next) = http(&addr, "GET", "/api/round/ada/next", None);
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
