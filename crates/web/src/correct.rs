//! Correcting a morphology mask by hand (the paper's "semi-manual" step): the painter's
//! saves become new files beside the original, which is never written.
//!
//! For an original mask `M/STEM.png` (`M` its folder, e.g. `data/masks`):
//! - `M/corrected/STEM.png` — the latest correction, in the original's id encoding (the
//!   same label table; a pixel whose class was not changed keeps its original id, so a
//!   platelet id mapped to background stays that id), so `leukex data check --masks
//!   M/corrected` and `leukex evaluate --masks` read it like the original;
//! - `M/corrected/labels.json` — that label table, so the folder describes itself;
//! - `M/corrected/history/STEM.v<N>.png` — every saved version N = 1, 2, … kept;
//! - `M/corrected/history.csv` — one row per save: stem, version, UTC time, editor,
//!   file, pixels changed, and per class how many changed pixels went to it and came
//!   from it.
//!
//! Every file is written atomically (temporary file + rename). The painter sends leukex
//! class indices (0 background … 4 rbc, 255 unlabelled) as runs; they become ids of the
//! original's table here, and a class the table has no id for is refused.

use std::path::{Path, PathBuf};

use leukex_data::fsutil::{write_atomic, write_bytes_atomic};
use leukex_data::morphology::read_label_png;
use leukex_data::{LabelTable, LabelTarget, MorphologyClass, MorphologyMask};
use serde::Serialize;

use crate::error::WebError;

pub const CORRECTED_DIR: &str = "corrected";
pub const HISTORY_DIR: &str = "history";
pub const HISTORY_LOG: &str = "history.csv";
/// Largest save body: a hand-painted mask is a few thousand runs; 8 MiB holds the worst
/// case (every pixel its own run) of a 1200 × 1200 mask.
pub const MAX_SAVE_BODY: usize = 8 << 20;
/// The value of an unlabelled pixel in the painter's class indices.
pub const UNLABELLED: u8 = MorphologyMask::UNLABELLED;
/// Class indices then unlabelled: the columns of the per-class counts.
const TARGET_NAMES: [&str; 6] = [
    "background",
    "nucleus",
    "cytoplasm",
    "vacuole",
    "rbc",
    "unlabelled",
];

/// Why a correction was refused; the server answers with the matching 4xx.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionRefusal {
    /// The body does not describe a mask of the right size and classes (400).
    #[error("{0}")]
    BadBody(String),
    /// Someone saved a newer version since the painter loaded the mask (409).
    #[error(
        "version {current} of this mask was saved since you loaded version {base}: reload to see it"
    )]
    Stale { current: u32, base: u32 },
    /// The label table of the mask has no id for a painted class (422).
    #[error("{path}: the mask's label table has no id for `{class}`, so it cannot be painted")]
    NoId { path: PathBuf, class: &'static str },
    /// The corrected folder already holds another label table (409).
    #[error("{path}: holds a different label table than the original mask's; move it away first")]
    OtherTable { path: PathBuf },
    /// A file of the corrected folder is a symbolic link (403).
    #[error(
        "{path}: is a symbolic link; corrected masks are written only to real folders beside the original"
    )]
    Link { path: PathBuf },
    #[error(transparent)]
    Failed(#[from] WebError),
}

impl From<leukex_data::DataError> for CorrectionRefusal {
    fn from(e: leukex_data::DataError) -> Self {
        CorrectionRefusal::Failed(e.into())
    }
}

/// The files of one original mask and its corrections.
#[derive(Debug, Clone)]
pub struct MaskFiles {
    pub stem: String,
    pub original: PathBuf,
    pub dir: PathBuf,
}

impl MaskFiles {
    /// The files that belong to the original mask `original` (`M/STEM.png`).
    pub fn of(original: &Path) -> MaskFiles {
        let stem = original
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = original
            .parent()
            .unwrap_or(Path::new("."))
            .join(CORRECTED_DIR);
        MaskFiles {
            stem,
            original: original.to_path_buf(),
            dir,
        }
    }
    /// `M/corrected/STEM.png`.
    pub fn corrected(&self) -> PathBuf {
        self.dir.join(format!("{}.png", self.stem))
    }
    /// `M/corrected/history/STEM.v<N>.png`.
    pub fn version(&self, n: u32) -> PathBuf {
        self.dir
            .join(HISTORY_DIR)
            .join(format!("{}.v{n}.png", self.stem))
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(HISTORY_LOG)
    }
    pub fn labels(&self) -> PathBuf {
        self.dir.join(leukex_data::dataset::LABELS_FILE)
    }
}

/// One save, as the history log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Correction {
    pub stem: String,
    pub version: u32,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
    pub editor: String,
    /// The version's file, relative to the corrected folder.
    pub file: String,
    /// Pixels whose class differs from the version before.
    pub pixels_changed: u64,
    /// Per class (background … rbc, unlabelled): changed pixels that now have it.
    pub changed_to: [u64; 6],
    /// Per class: changed pixels that had it before.
    pub changed_from: [u64; 6],
}

/// The mask the painter starts from: the latest correction, else the original.
pub struct Current {
    pub version: u32,
    pub mask: MorphologyMask,
    pub from_corrected: bool,
}

fn refuse_link(path: &Path) -> Result<(), CorrectionRefusal> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(CorrectionRefusal::Link {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Refuses links anywhere the corrections are read from or written to.
fn check_no_links(files: &MaskFiles) -> Result<(), CorrectionRefusal> {
    for p in [
        files.dir.clone(),
        files.dir.join(HISTORY_DIR),
        files.corrected(),
        files.log(),
        files.labels(),
    ] {
        refuse_link(&p)?;
    }
    Ok(())
}

/// The saves of `files.stem` recorded in the history log, oldest first.
pub fn history(files: &MaskFiles) -> Result<Vec<Correction>, CorrectionRefusal> {
    check_no_links(files)?;
    Ok(read_log(&files.log())?
        .into_iter()
        .filter(|c| c.stem == files.stem)
        .collect())
}

/// The latest corrected version (0: none), the mask to paint on.
pub fn current(files: &MaskFiles, table: &LabelTable) -> Result<Current, CorrectionRefusal> {
    // The log's last version, or a kept file's if the log lost rows (a crash between
    // the files and the log): a new version never overwrites a kept one.
    let logged = history(files)?.last().map_or(0, |c| c.version);
    let version = logged.max(latest_kept_version(files));
    let corrected = files.corrected();
    let from_corrected = corrected.is_file();
    let path = if from_corrected {
        &corrected
    } else {
        &files.original
    };
    Ok(Current {
        version,
        mask: MorphologyMask::read_png(path, table)?,
        from_corrected,
    })
}

/// The highest N of the kept `history/STEM.v<N>.png` files (0: none).
fn latest_kept_version(files: &MaskFiles) -> u32 {
    let prefix = format!("{}.v", files.stem);
    std::fs::read_dir(files.dir.join(HISTORY_DIR))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix(&prefix)?
                .strip_suffix(".png")?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Run-length encodes class indices as `[value, count, value, count, …]`.
pub fn encode_runs(values: &[u8]) -> Vec<u64> {
    let mut runs = Vec::new();
    let mut iter = values.iter().peekable();
    while let Some(&v) = iter.next() {
        let mut n = 1u64;
        while iter.next_if_eq(&&v).is_some() {
            n += 1;
        }
        runs.extend([u64::from(v), n]);
    }
    runs
}

/// Decodes `[value, count, …]` into `len` class indices (0..=4 or 255), or says why not.
pub fn decode_runs(runs: &[u64], len: usize) -> Result<Vec<u8>, String> {
    if !runs.len().is_multiple_of(2) {
        return Err("`runs` must be pairs [class, count, class, count, …]".into());
    }
    let mut out = Vec::with_capacity(len);
    for (i, pair) in runs.chunks_exact(2).enumerate() {
        let (v, n) = (pair[0], pair[1]);
        let class = u8::try_from(v)
            .ok()
            .filter(|&c| usize::from(c) < MorphologyClass::COUNT || c == UNLABELLED)
            .ok_or_else(|| {
                format!("run {i}: class {v} is not 0..=4 (background … rbc) or 255 (unlabelled)")
            })?;
        if n == 0 {
            return Err(format!("run {i}: a count of 0"));
        }
        if n > (len - out.len()) as u64 {
            return Err(format!("the runs cover more than the mask's {len} pixels"));
        }
        out.resize(out.len() + n as usize, class);
    }
    if out.len() != len {
        return Err(format!(
            "the runs cover {} of the mask's {len} pixels",
            out.len()
        ));
    }
    Ok(out)
}

/// The id each target is written with where a pixel changed class: the smallest id the
/// table gives it.
fn canonical_ids(table: &LabelTable) -> [Option<u16>; 6] {
    let mut ids = [None; 6];
    for (id, target) in table.ids() {
        let slot = target_slot(match target {
            LabelTarget::Class(c) => c as u8,
            LabelTarget::Unlabelled => UNLABELLED,
        });
        ids[slot].get_or_insert(id);
    }
    ids
}

/// Column of a class index (0..=4) or unlabelled (255) in the per-class counts.
fn target_slot(value: u8) -> usize {
    if value == UNLABELLED {
        5
    } else {
        usize::from(value)
    }
}

/// What the painter sends.
pub struct Painted<'a> {
    pub editor: &'a str,
    /// The version the painter loaded; a newer one on disk refuses the save.
    pub base_version: Option<u32>,
    pub width: u32,
    pub height: u32,
    pub runs: &'a [u64],
}

/// Saves a correction of the mask `files.original` (read with `table`): the history
/// version, the latest corrected file, the label table (first time), then the log row.
/// The original is only read. The caller serialises saves of one study.
pub fn save(
    files: &MaskFiles,
    table: &LabelTable,
    painted: &Painted,
) -> Result<Correction, CorrectionRefusal> {
    let bad = CorrectionRefusal::BadBody;
    let (width, height, original_ids) = read_label_png(&files.original)?;
    if (painted.width, painted.height) != (width, height) {
        return Err(bad(format!(
            "the painted mask is {}x{} but the mask is {width}x{height}",
            painted.width, painted.height
        )));
    }
    let classes = decode_runs(painted.runs, width as usize * height as usize).map_err(bad)?;
    let original = MorphologyMask::from_ids(&files.original, width, height, &original_ids, table)?;
    let before = current(files, table)?;
    if let Some(base) = painted.base_version
        && base != before.version
    {
        return Err(CorrectionRefusal::Stale {
            current: before.version,
            base,
        });
    }
    let canonical = canonical_ids(table);
    let mut ids = Vec::with_capacity(classes.len());
    let mut changed_to = [0u64; 6];
    let mut changed_from = [0u64; 6];
    for ((&new, (&orig_class, &orig_id)), &prev) in classes
        .iter()
        .zip(original.raw().iter().zip(&original_ids))
        .zip(before.mask.raw())
    {
        if new != prev {
            changed_to[target_slot(new)] += 1;
            changed_from[target_slot(prev)] += 1;
        }
        ids.push(if new == orig_class {
            orig_id
        } else {
            canonical[target_slot(new)].ok_or_else(|| CorrectionRefusal::NoId {
                path: files.original.clone(),
                class: TARGET_NAMES[target_slot(new)],
            })?
        });
    }
    check_labels_file(files, table)?;
    let version = before.version + 1;
    let version_path = files.version(version);
    write_id_png(&version_path, width, height, &ids)?;
    write_id_png(&files.corrected(), width, height, &ids)?;
    let entry = Correction {
        stem: files.stem.clone(),
        version,
        time: utc_now(),
        editor: painted.editor.to_string(),
        file: format!("{HISTORY_DIR}/{}.v{version}.png", files.stem),
        pixels_changed: changed_to.iter().sum(),
        changed_to,
        changed_from,
    };
    let mut log = read_log(&files.log())?;
    log.push(entry.clone());
    write_log(&files.log(), &log)?;
    Ok(entry)
}

/// Writes the original's label table into the corrected folder, or checks the one there.
fn check_labels_file(files: &MaskFiles, table: &LabelTable) -> Result<(), CorrectionRefusal> {
    let path = files.labels();
    if path.is_file() {
        if LabelTable::read_json(&path)? != *table {
            return Err(CorrectionRefusal::OtherTable { path });
        }
        return Ok(());
    }
    table.write_json(&path)?;
    Ok(())
}

/// What [`assemble`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Assembled {
    /// Masks copied as they were.
    pub originals: usize,
    /// Masks taken from `corrected/` instead.
    pub corrected: usize,
}

/// Writes a complete masks folder for `leukex evaluate --masks OUT` (which needs every
/// image's mask): every `STEM.png` of `masks_dir`, the latest correction where there is
/// one, and the label table (the corrected folder's, else the one beside the masks). The
/// files keep their ids, so one table reads them all.
pub fn assemble(masks_dir: &Path, out: &Path) -> Result<Assembled, WebError> {
    let corrected_dir = masks_dir.join(CORRECTED_DIR);
    let canonical = |p: &Path| std::fs::canonicalize(p).map_err(|e| WebError::io(p, e));
    if resolved(out).starts_with(canonical(masks_dir)?) {
        return Err(WebError::invalid(
            out,
            "the assembled folder must not be the masks folder or inside it",
        ));
    }
    let pngs = |dir: &Path| -> Result<Vec<PathBuf>, WebError> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| WebError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "png"))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut done = Assembled {
        originals: 0,
        corrected: 0,
    };
    for original in pngs(masks_dir)? {
        let name = original.file_name().unwrap_or_default();
        let correction = corrected_dir.join(name);
        let source = if correction.is_file() {
            done.corrected += 1;
            correction
        } else {
            done.originals += 1;
            original.clone()
        };
        let bytes = std::fs::read(&source).map_err(|e| WebError::io(&source, e))?;
        write_bytes_atomic(&out.join(name), &bytes)?;
    }
    let labels = [corrected_dir.as_path(), masks_dir]
        .map(|d| d.join(leukex_data::dataset::LABELS_FILE))
        .into_iter()
        .find(|p| p.is_file());
    if let Some(labels) = labels {
        LabelTable::read_json(&labels)?.write_json(&out.join(leukex_data::dataset::LABELS_FILE))?;
    }
    Ok(done)
}

/// `path` with every link of its existing part followed (the rest need not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Writes ids as a grey PNG: 8-bit when every id fits, else 16-bit (as label PNGs are
/// read back by `leukex-data`, one integer id per pixel).
pub fn write_id_png(path: &Path, width: u32, height: u32, ids: &[u16]) -> Result<(), WebError> {
    let wide = ids.iter().any(|&id| id > 255);
    let data: Vec<u8> = if wide {
        ids.iter().flat_map(|id| id.to_be_bytes()).collect()
    } else {
        ids.iter().map(|&id| id as u8).collect()
    };
    write_atomic(path, |w| {
        let mut enc = png::Encoder::new(w, width, height);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(if wide {
            png::BitDepth::Sixteen
        } else {
            png::BitDepth::Eight
        });
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&data)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
    .map_err(WebError::from)
}

fn log_header() -> Vec<String> {
    let mut h: Vec<String> = [
        "stem",
        "version",
        "time",
        "editor",
        "file",
        "pixels_changed",
    ]
    .map(String::from)
    .to_vec();
    h.extend(TARGET_NAMES.iter().map(|n| format!("to_{n}")));
    h.extend(TARGET_NAMES.iter().map(|n| format!("from_{n}")));
    h
}

fn read_log(path: &Path) -> Result<Vec<Correction>, WebError> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let bad = |reason: String| WebError::invalid(path, reason);
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    if header != log_header() {
        return Err(bad(format!(
            "not a corrections log (expected the columns {})",
            log_header().join(",")
        )));
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| bad(e.to_string()))?;
        let num = |k: usize| -> Result<u64, WebError> {
            row[k]
                .parse()
                .map_err(|_| bad(format!("row {}: `{}` is not a count", i + 1, &row[k])))
        };
        let counts = |from: usize| -> Result<[u64; 6], WebError> {
            let mut c = [0; 6];
            for (j, slot) in c.iter_mut().enumerate() {
                *slot = num(from + j)?;
            }
            Ok(c)
        };
        out.push(Correction {
            stem: row[0].to_string(),
            version: u32::try_from(num(1)?)
                .map_err(|_| bad(format!("row {}: version out of range", i + 1)))?,
            time: row[2].to_string(),
            editor: row[3].to_string(),
            file: row[4].to_string(),
            pixels_changed: num(5)?,
            changed_to: counts(6)?,
            changed_from: counts(12)?,
        });
    }
    Ok(out)
}

fn write_log(path: &Path, rows: &[Correction]) -> Result<(), WebError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| WebError::invalid(path, e.to_string());
    w.write_record(log_header()).map_err(io)?;
    for c in rows {
        let mut rec = vec![
            c.stem.clone(),
            c.version.to_string(),
            c.time.clone(),
            c.editor.clone(),
            c.file.clone(),
            c.pixels_changed.to_string(),
        ];
        rec.extend(c.changed_to.iter().map(u64::to_string));
        rec.extend(c.changed_from.iter().map(u64::to_string));
        w.write_record(rec).map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| WebError::invalid(path, e.to_string()))?;
    write_bytes_atomic(path, &bytes).map_err(WebError::from)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// Unix seconds as a UTC date and time (proleptic Gregorian; days counted in 400-year eras
/// of 146097 days, years starting in March so that the leap day comes last).
fn utc_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        // Instants whose calendar dates are fixed by definition or by published tables.
        assert_eq!(utc_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_from_unix(1_234_567_890), "2009-02-13T23:31:30Z");
        assert_eq!(utc_from_unix(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(utc_from_unix(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn runs_round_trip_and_refuse_bad_bodies() {
        let v = [0u8, 0, 1, 1, 1, 255, 4, 4];
        let runs = encode_runs(&v);
        assert_eq!(runs, vec![0, 2, 1, 3, 255, 1, 4, 2]);
        assert_eq!(decode_runs(&runs, 8).unwrap(), v);
        assert!(decode_runs(&[0, 2, 1], 3).unwrap_err().contains("pairs"));
        assert!(decode_runs(&[7, 3], 3).unwrap_err().contains("class 7"));
        assert!(
            decode_runs(&[0, 0, 1, 3], 3)
                .unwrap_err()
                .contains("count of 0")
        );
        assert!(decode_runs(&[0, 4], 3).unwrap_err().contains("more than"));
        assert!(decode_runs(&[0, 2], 3).unwrap_err().contains("cover 2 of"));
        assert!(
            decode_runs(&[0, u64::MAX], 3)
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn sixteen_bit_ids_are_written_as_read() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.png");
        let ids = [0u16, 1, 300, 65535, 2, 7];
        write_id_png(&p, 3, 2, &ids).unwrap();
        assert_eq!(read_label_png(&p).unwrap(), (3, 2, ids.to_vec()));
        let small = [0u16, 1, 255, 4];
        write_id_png(&p, 2, 2, &small).unwrap();
        assert_eq!(read_label_png(&p).unwrap(), (2, 2, small.to_vec()));
    }
}
