//! Request paths to files, refusing every way out of the served roots: `..`, absolute
//! paths, backslashes, NUL, percent-encoded variants (the router decodes once; what is
//! left is taken literally) and symbolic links that point outside.

use std::path::{Component, Path, PathBuf};

/// Why a request path was refused (a 4xx, with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("path `{0}` is not a plain relative path inside the study folder")]
    NotRelative(String),
    #[error("path `{0}` leaves the study folder")]
    Outside(String),
    #[error("no file `{0}` in the study folder")]
    NotFound(String),
}

/// The file `request` (already percent-decoded, relative to `root`) names, canonical, if it
/// lies inside one of `roots` (canonical folders) after following every link.
pub fn resolve(root: &Path, roots: &[PathBuf], request: &str) -> Result<PathBuf, PathRefusal> {
    let refuse = || PathRefusal::NotRelative(request.to_string());
    if request.is_empty()
        || request.contains(['\0', '\\'])
        || request.starts_with('/')
        || request.contains("%2e")
        || request.contains("%2E")
        || request.contains("%2f")
        || request.contains("%2F")
    {
        return Err(refuse());
    }
    let rel = Path::new(request);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse());
    }
    let joined = root.join(rel);
    let real =
        std::fs::canonicalize(&joined).map_err(|_| PathRefusal::NotFound(request.to_string()))?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        return Err(PathRefusal::Outside(request.to_string()));
    }
    if !real.is_file() {
        return Err(PathRefusal::NotFound(request.to_string()));
    }
    Ok(real)
}

/// The `Content-Type` of a served file, by extension.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        Some("tif" | "tiff") => "image/tiff",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_way_out() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(root.join("eval")).unwrap();
        std::fs::write(root.join("eval/tables.md"), "x").unwrap();
        std::fs::write(outside.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let roots = vec![root.clone()];
        assert_eq!(
            resolve(&root, &roots, "eval/tables.md").unwrap(),
            root.join("eval/tables.md")
        );
        for bad in [
            "../secret.txt",
            "eval/../../secret.txt",
            "/etc/passwd",
            "eval\\..\\x",
            "./eval/tables.md",
            "%2e%2e/secret.txt",
            "eval%2ftables.md",
            "",
        ] {
            assert!(
                matches!(
                    resolve(&root, &roots, bad),
                    Err(PathRefusal::NotRelative(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            resolve(&root, &roots, "link/secret.txt"),
            Err(PathRefusal::Outside(_))
        ));
        assert!(matches!(
            resolve(&root, &roots, "eval/none.md"),
            Err(PathRefusal::NotFound(_))
        ));
        // A folder is not a file.
        assert!(matches!(
            resolve(&root, &roots, "eval"),
            Err(PathRefusal::NotFound(_))
        ));
    }
}
