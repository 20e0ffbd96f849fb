//! `leukex merge SHARD... --out DIR`: joins the outputs of `leukex run --shard K/N` runs of
//! one study (each model's run, maps, model metrics and cell records), refuses shards of
//! different studies naming the first difference, then runs what needs every model (the
//! evaluation and the report) — the cached cells are not redone, so the merged tables are
//! those of an unsharded run.

use std::path::{Path, PathBuf};

use crate::StudyError;
use crate::grid::{Grid, Stage};
use crate::model_metrics::file_error;
use crate::runner::{Observer, RunSummary, Selection, run};
use crate::spec::Study;

/// The first key where two TOML values differ, as a dotted path with both values.
pub fn first_difference(a: &toml::Value, b: &toml::Value, at: &str) -> Option<String> {
    use toml::Value::{Array, Table};
    match (a, b) {
        (Table(x), Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &path),
                    (u, v) => Some(format!(
                        "{path}: {} vs {}",
                        u.map_or("absent".into(), |u| u.to_string()),
                        v.map_or("absent".into(), |v| v.to_string())
                    )),
                }
            })
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

/// Merges `shards` into `out` and finishes the study there.
pub fn merge(shards: &[PathBuf], out: &Path, obs: &dyn Observer) -> Result<RunSummary, StudyError> {
    let Some(first) = shards.first() else {
        return Err(StudyError::Spec {
            path: out.to_path_buf(),
            reason: "no shard folder given".into(),
        });
    };
    let read = |dir: &Path| -> Result<(String, Study), StudyError> {
        let path = dir.join("study.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            file_error(
                &path,
                format!("not a shard of `leukex run` (no study.toml): {e}"),
            )
        })?;
        let study = Study::parse(&text, &path)?;
        Ok((text, study))
    };
    let (text0, study) = read(first)?;
    for s in &shards[1..] {
        let (text, _) = read(s)?;
        if text != text0 {
            let a: toml::Value = toml::from_str(&text0).map_err(|e| file_error(first, e))?;
            let b: toml::Value = toml::from_str(&text).map_err(|e| file_error(s, e))?;
            let diff = first_difference(&a, &b, "").unwrap_or_else(|| "formatting".into());
            return Err(StudyError::Spec {
                path: s.join("study.toml"),
                reason: format!(
                    "is another study than {}: {diff}",
                    first.join("study.toml").display()
                ),
            });
        }
    }
    let grid = Grid::new(study, out)?;
    std::fs::create_dir_all(out.join("cache/cells")).map_err(|e| file_error(out, e))?;
    // Each model's pipeline from the shard that finished it.
    for m in &grid.models {
        let cells: Vec<_> = grid
            .cells
            .iter()
            .filter(|c| c.model.as_deref() == Some(m.id.as_str()))
            .collect();
        let record = |dir: &Path, c: &crate::Cell| dir.join(Grid::record_rel(c));
        let from = shards
            .iter()
            .find(|s| cells.iter().all(|c| record(s, c).is_file()))
            .ok_or_else(|| StudyError::Spec {
                path: out.to_path_buf(),
                reason: format!(
                    "model {} was not finished by any shard given (run its shard, then merge again)",
                    m.id
                ),
            })?;
        let v = &grid.variants[grid.variant_of(m)];
        for sub in [
            PathBuf::from("runs").join(&m.id),
            PathBuf::from("maps").join(&m.id),
            PathBuf::from(&v.eval).join("models").join(&m.id),
        ] {
            let src = from.join(&sub);
            if src.exists() {
                copy_tree(&src, &out.join(&sub))?;
            }
        }
        for c in &cells {
            let dst = grid.record_path(c);
            std::fs::copy(record(from, c), &dst).map_err(|e| file_error(&dst, e))?;
        }
    }
    // Built-in data from the first shard (it is the same in every shard: same key).
    for c in grid
        .cells
        .iter()
        .filter(|c| matches!(c.stage, Stage::Data | Stage::Split))
    {
        let rec = first.join(Grid::record_rel(c));
        if !rec.is_file() || grid.is_done(c) {
            continue;
        }
        for o in &c.outputs {
            let src = first.join(o);
            if src.is_dir() {
                copy_tree(&src, &out.join(o))?;
            } else if src.is_file() {
                std::fs::copy(&src, out.join(o)).map_err(|e| file_error(&src, e))?;
            }
        }
        let dst = grid.record_path(c);
        std::fs::copy(&rec, &dst).map_err(|e| file_error(&dst, e))?;
    }
    run(&grid, &Selection::All, obs)
}

/// Copies `src` into `dst` (replacing it), through a temporary folder renamed at the end.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), StudyError> {
    let partial = dst.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| file_error(&partial, e))?;
    }
    copy_into(src, &partial)?;
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(|e| file_error(dst, e))?;
    }
    std::fs::rename(&partial, dst).map_err(|e| file_error(dst, e))
}

fn copy_into(src: &Path, dst: &Path) -> Result<(), StudyError> {
    std::fs::create_dir_all(dst).map_err(|e| file_error(dst, e))?;
    for e in std::fs::read_dir(src).map_err(|e| file_error(src, e))? {
        let e = e.map_err(|e| file_error(src, e))?;
        let (s, d) = (e.path(), dst.join(e.file_name()));
        if s.is_dir() {
            copy_into(&s, &d)?;
        } else {
            std::fs::copy(&s, &d).map_err(|e| file_error(&s, e))?;
        }
    }
    Ok(())
}
