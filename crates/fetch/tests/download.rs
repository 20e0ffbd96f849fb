//! Downloads against a small HTTP/1.1 server on 127.0.0.1 run by the test
//! itself: fresh, interrupted and resumed, wrong hash, 404, cached, and the
//! server answers that force a restart.

use leukex_fetch::{FetchError, WeightsSpec, fetch, part_path};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the server saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    range_start: Option<u64>,
}

#[derive(Default)]
struct State {
    /// URL path ("/name") → file bytes.
    files: HashMap<String, Vec<u8>>,
    seen: Vec<Seen>,
    /// Send only this many body bytes in the next reply (full Content-Length
    /// announced), then close: a dropped download.
    cut_next: Option<usize>,
    /// Answer range requests with the whole file (200), like a server
    /// without range support.
    ignore_range: bool,
}

/// A one-connection-at-a-time HTTP/1.1 server for GET, with `Range:
/// bytes=N-` support; every reply closes the connection.
struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                // A client that hangs up early is not the server's problem.
                let _ = serve(stream, &shared);
            }
        });
        Self { port, state }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.files.insert(format!("/{name}"), bytes.to_vec());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn cut_next(&self, bytes: usize) {
        self.state.lock().unwrap().cut_next = Some(bytes);
    }

    fn ignore_range(&self) {
        self.state.lock().unwrap().ignore_range = true;
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            let value = value.trim();
            let start = value
                .strip_prefix("bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<u64>().ok());
            range_start = Some(start.expect("only `bytes=N-` ranges are sent"));
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    assert_eq!(method, "GET");

    let (head, body, cut) = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            path: path.to_string(),
            range_start,
        });
        let cut = s.cut_next.take();
        match s.files.get(path) {
            None => (
                "HTTP/1.1 404 Not Found\r\n".to_string(),
                b"not found".to_vec(),
                cut,
            ),
            Some(data) => {
                let len = data.len() as u64;
                match range_start.filter(|_| !s.ignore_range) {
                    Some(start) if start >= len => (
                        format!(
                            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n"
                        ),
                        Vec::new(),
                        cut,
                    ),
                    Some(start) => (
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n",
                            len - 1
                        ),
                        data[start as usize..].to_vec(),
                        cut,
                    ),
                    None => ("HTTP/1.1 200 OK\r\n".to_string(), data.clone(), cut),
                }
            }
        }
    };
    let mut out = stream;
    write!(
        out,
        "{head}Content-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    let sent = cut.map_or(body.len(), |c| c.min(body.len()));
    out.write_all(&body[..sent])?;
    out.flush()?;
    out.shutdown(Shutdown::Both)
}

/// `n` deterministic pseudo-random bytes (xorshift64).
fn weights_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const SIZE: usize = 300_000;

/// A custom spec named after the real hash prefix of `bytes`.
fn spec_for(bytes: &[u8]) -> WeightsSpec {
    let prefix = &sha256_hex(bytes)[..8];
    WeightsSpec {
        arch: "testnet".into(),
        variant: "v1".into(),
        file_name: format!("testnet-{prefix}.pth"),
        url: "http://127.0.0.1:9/unused".into(),
    }
}

fn final_path(cache: &Path, spec: &WeightsSpec) -> PathBuf {
    cache.join("torchvision").join(&spec.file_name)
}

#[test]
fn fresh_download_verifies_and_lands_under_final_name() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let spec = spec_for(&data);
    server.put(&spec.file_name, &data);
    let cache = tempfile::tempdir().unwrap();

    let mut calls = Vec::new();
    let path = fetch(&spec, cache.path(), Some(&server.base_url()), |d, t| {
        calls.push((d, t))
    })
    .unwrap();

    assert_eq!(path, final_path(cache.path(), &spec));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!part_path(&path).exists());
    assert_eq!(calls.first(), Some(&(0, Some(SIZE as u64))));
    assert_eq!(calls.last(), Some(&(SIZE as u64, Some(SIZE as u64))));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(
        server.seen(),
        vec![Seen {
            path: format!("/{}", spec.file_name),
            range_start: None
        }]
    );
}

#[test]
fn interrupted_download_keeps_part_and_resumes() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let spec = spec_for(&data);
    server.put(&spec.file_name, &data);
    let cache = tempfile::tempdir().unwrap();
    let final_file = final_path(cache.path(), &spec);
    let part = part_path(&final_file);

    server.cut_next(100_000);
    let err = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, FetchError::Interrupted { total: Some(t), .. } if *t == SIZE as u64),
        "{err}"
    );
    assert!(err.to_string().contains("run again to resume"), "{err}");
    assert!(
        !final_file.exists(),
        "no final file after a dropped download"
    );
    let part_len = std::fs::metadata(&part).unwrap().len();
    assert!(part_len > 0 && part_len <= 100_000, "{part_len}");
    assert_eq!(std::fs::read(&part).unwrap(), data[..part_len as usize]);
    // Only the .part is there.
    let names: Vec<_> = std::fs::read_dir(cache.path().join("torchvision"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![part.file_name().unwrap().to_os_string()]);

    let mut first_progress = None;
    let path = fetch(&spec, cache.path(), Some(&server.base_url()), |d, t| {
        first_progress.get_or_insert((d, t));
    })
    .unwrap();
    assert_eq!(path, final_file);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!part.exists());
    assert_eq!(first_progress, Some((part_len, Some(SIZE as u64))));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].range_start, None);
    assert_eq!(
        seen[1].range_start,
        Some(part_len),
        "resumed at the .part length"
    );
}

#[test]
fn wrong_hash_prefix_is_rejected_and_cleaned_up() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let actual = sha256_hex(&data);
    // A prefix that cannot match: the real one with every digit changed.
    let wrong: String = actual[..8]
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let spec = WeightsSpec {
        file_name: format!("testnet-{wrong}.pth"),
        ..spec_for(&data)
    };
    server.put(&spec.file_name, &data);
    let cache = tempfile::tempdir().unwrap();

    let err = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap_err();
    match &err {
        FetchError::HashMismatch {
            file,
            expected,
            actual: got,
            ..
        } => {
            assert_eq!(file, &spec.file_name);
            assert_eq!(expected, &wrong);
            assert_eq!(got, &actual);
        }
        other => panic!("expected a hash mismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&spec.file_name) && msg.contains(&wrong) && msg.contains(&actual),
        "{msg}"
    );
    let final_file = final_path(cache.path(), &spec);
    assert!(!final_file.exists());
    assert!(!part_path(&final_file).exists());
}

#[test]
fn http_404_names_the_url() {
    let server = Server::start();
    let spec = spec_for(b"never served");
    let cache = tempfile::tempdir().unwrap();

    let err = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap_err();
    let url = format!("{}{}", server.base_url(), spec.file_name);
    assert!(
        matches!(&err, FetchError::Http { url: u, status: 404 } if *u == url),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    let final_file = final_path(cache.path(), &spec);
    assert!(!final_file.exists());
    assert!(!part_path(&final_file).exists());
}

#[test]
fn cached_file_is_returned_without_a_request() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let spec = spec_for(&data);
    server.put(&spec.file_name, &data);
    let cache = tempfile::tempdir().unwrap();
    let final_file = final_path(cache.path(), &spec);
    std::fs::create_dir_all(final_file.parent().unwrap()).unwrap();
    std::fs::write(&final_file, &data).unwrap();

    let mut progress_calls = 0;
    let path = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {
        progress_calls += 1
    })
    .unwrap();
    assert_eq!(path, final_file);
    assert_eq!(progress_calls, 0);
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[test]
fn corrupted_cached_file_is_an_error_and_left_alone() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let spec = spec_for(&data);
    server.put(&spec.file_name, &data);
    let cache = tempfile::tempdir().unwrap();
    let final_file = final_path(cache.path(), &spec);
    std::fs::create_dir_all(final_file.parent().unwrap()).unwrap();
    std::fs::write(&final_file, &data[..1000]).unwrap();

    let err = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap_err();
    assert!(matches!(err, FetchError::CorruptCache { .. }), "{err}");
    assert!(err.to_string().contains("delete it"), "{err}");
    assert_eq!(std::fs::read(&final_file).unwrap(), data[..1000]);
    assert!(server.seen().is_empty());
}

#[test]
fn server_without_range_support_restarts_from_zero() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let spec = spec_for(&data);
    server.put(&spec.file_name, &data);
    server.ignore_range();
    let cache = tempfile::tempdir().unwrap();
    let final_file = final_path(cache.path(), &spec);
    std::fs::create_dir_all(final_file.parent().unwrap()).unwrap();
    // A stale .part that is not even a prefix of the file.
    std::fs::write(part_path(&final_file), vec![0xAB; 50_000]).unwrap();

    let path = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!part_path(&final_file).exists());
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range_start, Some(50_000));
}

#[test]
fn whole_part_left_before_rename_is_finished_or_replaced() {
    let server = Server::start();
    let data = weights_bytes(SIZE);
    let spec = spec_for(&data);
    server.put(&spec.file_name, &data);
    let cache = tempfile::tempdir().unwrap();
    let final_file = final_path(cache.path(), &spec);
    let part = part_path(&final_file);
    std::fs::create_dir_all(final_file.parent().unwrap()).unwrap();

    // Complete and correct: the 416 reply leads to verification and rename.
    std::fs::write(&part, &data).unwrap();
    let path = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!part.exists());
    assert_eq!(server.seen()[0].range_start, Some(SIZE as u64));

    // Full length but wrong: deleted and downloaded anew.
    std::fs::remove_file(&final_file).unwrap();
    let mut junk = data.clone();
    junk[SIZE / 2] ^= 1;
    std::fs::write(&part, &junk).unwrap();
    let path = fetch(&spec, cache.path(), Some(&server.base_url()), |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!part.exists());
    let seen = server.seen();
    assert_eq!(
        seen[1..].iter().map(|s| s.range_start).collect::<Vec<_>>(),
        vec![Some(SIZE as u64), None]
    );
}
