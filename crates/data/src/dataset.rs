//! Finding images, their class labels and their morphology masks in the
//! layouts researchers keep on disk: the ALL-IDB2 folder of `ImNNN_Y.tif`,
//! one folder per class, or a CSV manifest for anything else.
//!
//! Opening is structural: names, folders, the manifest and the label table
//! are read, pixels are not. [`Dataset::open`] stops at the first problem
//! that makes the data set unusable; [`crate::check::check`] runs the same
//! discovery, keeps going, and then decodes every file.

use crate::error::{DataError, Result};
use crate::image_io;
use crate::morphology::{LabelTable, MorphologyMask, read_label_png};
use image::RgbImage;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The manifest file name looked for in a data folder.
pub const MANIFEST_FILE: &str = "manifest.csv";
/// Optional class names of a manifest with integer labels, one per line in
/// index order (e.g. `healthy`, `all`), so `0`/`1` labels keep their meaning.
pub const CLASSES_FILE: &str = "classes.txt";
/// The label table file name looked for beside the masks or in the data folder.
pub const LABELS_FILE: &str = "labels.json";
/// leukex's own masks folder.
pub const MASKS_DIR: &str = "masks";
/// The folder a MATLAB Image Labeler export writes its label PNGs to.
pub const MATLAB_MASKS_DIR: &str = "PixelLabelData";
/// ALL-IDB2 classes, indexed by the digit `Y` of `ImNNN_Y`.
pub const ALL_IDB2_CLASSES: [&str; 2] = ["healthy", "all"];

/// Integer labels above this are typing errors, not class indices; the cap
/// also keeps a stray huge label from creating millions of empty classes.
const MAX_INTEGER_LABEL: usize = 9_999;

/// How a data folder is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// A folder of `ImNNN_Y.tif` (in the folder or its `img/`); `Y` is the class.
    #[serde(rename = "all-idb2")]
    AllIdb2,
    /// One sub-folder of images per class.
    #[serde(rename = "folders")]
    ClassFolders,
    /// `manifest.csv` with columns `path,label[,mask][,group]`.
    Manifest,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::AllIdb2 => "all-idb2",
            Layout::ClassFolders => "folders",
            Layout::Manifest => "manifest",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "all-idb2" | "allidb2" | "all-idb" | "idb2" => Ok(Layout::AllIdb2),
            "folders" | "class-folders" | "imagefolder" => Ok(Layout::ClassFolders),
            "manifest" | "csv" => Ok(Layout::Manifest),
            _ => Err(format!(
                "unknown layout `{s}`; expected all-idb2, folders or manifest"
            )),
        }
    }
}

/// One image of the data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// File name without extension; unique in a data set, because masks,
    /// splits and outputs are matched by it.
    pub stem: String,
    pub image: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    pub mask: Option<PathBuf>,
    /// Where the image came from (e.g. the slide), for leakage-free splits.
    pub group: Option<String>,
}

/// How to read a data folder; every field has a sensible default.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// `None`: detected from the folder's contents.
    pub layout: Option<Layout>,
    /// Masks folder; `None`: `DIR/masks`, else `DIR/PixelLabelData`, else none.
    pub masks: Option<PathBuf>,
    /// Mask id → class; `None`: `labels.json` beside the masks or in `DIR`,
    /// else leukex's default ids.
    pub label_table: Option<LabelTable>,
    /// Every image must have a mask.
    pub require_masks: bool,
    /// Class order for class folders and manifest labels.
    pub classes: Option<Vec<String>>,
}

/// A data set found on disk: which images, which class each belongs to, and
/// which mask belongs to which image.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The data folder (for a manifest: the manifest's folder).
    pub root: PathBuf,
    pub layout: Layout,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// How mask ids map to classes; `None` when the data set has no masks.
    pub label_table: Option<LabelTable>,
}

impl Dataset {
    /// Finds the images, labels and masks under `root` (a folder, or a
    /// manifest CSV file). Only names and the manifest are read, no pixels;
    /// the first problem that leaves the data set unusable is the error.
    pub fn open(root: &Path, opts: &OpenOptions) -> Result<Dataset> {
        let Discovery { dataset, findings } = discover(root, opts);
        if let Some(first) = findings.into_iter().find(|f| f.fatal) {
            return Err(first.error);
        }
        dataset.ok_or_else(|| DataError::invalid(root, "no data set found"))
    }

    /// Decodes image `i` as 8-bit RGB. Panics if `i` is out of range.
    pub fn load_image(&self, i: usize) -> Result<RgbImage> {
        image_io::read_rgb(&self.samples[i].image)
    }

    /// Reads the mask of image `i`, if it has one: checks that it is as large
    /// as the image and maps its ids to classes through the label table.
    /// Panics if `i` is out of range.
    pub fn load_mask(&self, i: usize) -> Result<Option<MorphologyMask>> {
        let sample = &self.samples[i];
        let Some(mask_path) = &sample.mask else {
            return Ok(None);
        };
        let image_size = image_io::read_dimensions(&sample.image)?;
        let default_table;
        let table = match &self.label_table {
            Some(t) => t,
            None => {
                default_table = LabelTable::default();
                &default_table
            }
        };
        let (width, height, ids) = read_label_png(mask_path)?;
        check_mask_size(mask_path, (width, height), &sample.image, image_size)?;
        MorphologyMask::from_ids(mask_path, width, height, &ids, table).map(Some)
    }

    /// Number of images of each class, in the order of [`Dataset::classes`].
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }

    /// The index of the sample with this stem.
    pub fn find_stem(&self, stem: &str) -> Option<usize> {
        self.samples.iter().position(|s| s.stem == stem)
    }
}

/// A mask must cover its image pixel for pixel.
pub(crate) fn check_mask_size(
    mask: &Path,
    mask_size: (u32, u32),
    image: &Path,
    image_size: (u32, u32),
) -> Result<()> {
    if mask_size == image_size {
        return Ok(());
    }
    Err(DataError::MaskSize {
        path: mask.to_path_buf(),
        image: image.to_path_buf(),
        mask_width: mask_size.0,
        mask_height: mask_size.1,
        image_width: image_size.0,
        image_height: image_size.1,
    })
}

/// One problem found while discovering a data set. Fatal ones make
/// [`Dataset::open`] fail; the others (a mask nobody uses, an image outside
/// any class folder) are only listed by `check`.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) error: DataError,
    pub(crate) fatal: bool,
}

/// What discovery found: the data set as far as it could be built (samples
/// with problems are left out), and every problem on the way.
#[derive(Debug)]
pub(crate) struct Discovery {
    pub(crate) dataset: Option<Dataset>,
    pub(crate) findings: Vec<Finding>,
}

#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
    /// Images whose named mask is missing: already reported, so not again
    /// as "image without mask".
    mask_reported: HashSet<PathBuf>,
}

impl Findings {
    fn fatal(&mut self, error: DataError) {
        self.list.push(Finding { error, fatal: true });
    }
    fn warn(&mut self, error: DataError) {
        self.list.push(Finding {
            error,
            fatal: false,
        });
    }
}

/// Discovers the data set under `root`, collecting every structural problem
/// instead of stopping at the first.
pub(crate) fn discover(root: &Path, opts: &OpenOptions) -> Discovery {
    let mut findings = Findings::default();
    let dataset = discover_into(root, opts, &mut findings);
    Discovery {
        dataset,
        findings: findings.list,
    }
}

fn discover_into(given: &Path, opts: &OpenOptions, f: &mut Findings) -> Option<Dataset> {
    if let Err(e) = std::fs::metadata(given) {
        f.fatal(DataError::io(given, e));
        return None;
    }
    // A CSV file given instead of a folder is a manifest; its paths are
    // relative to its own folder.
    let is_csv = given
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if given.is_file() && !is_csv {
        f.fatal(DataError::invalid(
            given,
            "not a data folder or a manifest (a .csv file with columns path,label[,mask][,group])",
        ));
        return None;
    }
    let (root, manifest_file) = if given.is_file() {
        let parent = given
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_path_buf(), Some(given.to_path_buf()))
    } else {
        (given.to_path_buf(), None)
    };

    let masks_dir = match &opts.masks {
        Some(dir) if dir.is_dir() => Some(dir.clone()),
        Some(dir) => {
            f.fatal(DataError::invalid(dir, "masks folder does not exist"));
            return None;
        }
        None => [MASKS_DIR, MATLAB_MASKS_DIR]
            .iter()
            .map(|name| root.join(name))
            .find(|p| p.is_dir()),
    };

    let layout = match (opts.layout, &manifest_file) {
        (Some(layout), _) => layout,
        (None, Some(_)) => Layout::Manifest,
        (None, None) => match detect_layout(&root, masks_dir.as_deref()) {
            Ok(layout) => layout,
            Err(e) => {
                f.fatal(e);
                return None;
            }
        },
    };

    let (classes, samples) = match layout {
        Layout::AllIdb2 => read_all_idb2(&root, opts, f)?,
        Layout::ClassFolders => read_class_folders(&root, masks_dir.as_deref(), opts, f)?,
        Layout::Manifest => {
            let path = manifest_file.unwrap_or_else(|| root.join(MANIFEST_FILE));
            read_manifest(&path, &root, opts, f)?
        }
    };
    let mut samples = drop_duplicate_stems(samples, f);
    let matlab = attach_masks(&mut samples, masks_dir.as_deref(), f);
    let has_masks = masks_dir.is_some() || samples.iter().any(|s| s.mask.is_some());
    let label_table = resolve_label_table(&root, masks_dir.as_deref(), &matlab, has_masks, opts, f);

    if opts.require_masks {
        require_masks(&root, &samples, masks_dir.as_deref(), f);
    }

    Some(Dataset {
        root,
        layout,
        classes,
        samples,
        label_table,
    })
}

/// Files and folders in `dir`, sorted by name so that every run sees the
/// same order.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        entries.push(entry.path());
    }
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_hidden(path: &Path) -> bool {
    file_name(path).starts_with('.')
}

/// Image files directly in `dir` (hidden files skipped), sorted.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(list_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && !is_hidden(p) && image_io::is_image_path(p))
        .collect())
}

/// A file stem read the way ALL-IDB2 names its images, `Im<number>_<Y>` (`Y`: 1 blast,
/// 0 healthy): the one reading of such names in leukex, behind [`label_from_stem`] (exact
/// names) and the layout's labels of every image in an ALL-IDB2 folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AllIdb2Name<'a> {
    /// Everything before the last `_`.
    head: &'a str,
    label: usize,
}

impl<'a> AllIdb2Name<'a> {
    /// A stem ending in `_0` or `_1` after a non-empty head; `None` for other stems.
    fn parse(stem: &'a str) -> Option<Self> {
        let (head, y) = stem.rsplit_once('_')?;
        let label = match y {
            "0" => 0,
            "1" => 1,
            _ => return None,
        };
        (!head.is_empty()).then_some(Self { head, label })
    }

    /// The class: 1 blast, 0 healthy.
    fn label(&self) -> usize {
        self.label
    }

    /// Whether the head is exactly `Im<digits>` (`Im` in any case), as in the original
    /// distribution: only such names make a folder an ALL-IDB2 folder.
    fn is_exact(&self) -> bool {
        let Some(digits) = self
            .head
            .get(..2)
            .filter(|p| p.eq_ignore_ascii_case("im"))
            .map(|_| &self.head[2..])
        else {
            return false;
        };
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }
}

/// The true label `Y` of an exact ALL-IDB2 name `Im<digits>_Y` (0 healthy, 1 blast);
/// `None` for other names. It recognises the layout (so other names cannot trigger it), and
/// labels explanation and evaluation outputs named by stem and the synthetic data's files.
pub fn label_from_stem(stem: &str) -> Option<usize> {
    AllIdb2Name::parse(stem)
        .filter(AllIdb2Name::is_exact)
        .map(|n| n.label())
}

/// The class after the last `_` of any stem with a non-empty head: how a folder already
/// recognised as ALL-IDB2 labels each of its images.
fn all_idb2_label(stem: &str) -> Option<usize> {
    AllIdb2Name::parse(stem).map(|n| n.label())
}

/// The folder holding ALL-IDB2 images: `root` itself, or `root/img` as in
/// the original distribution.
fn all_idb2_image_dir(root: &Path) -> Option<PathBuf> {
    [root.to_path_buf(), root.join("img")]
        .into_iter()
        .filter(|d| d.is_dir())
        .find(|d| {
            image_files(d).is_ok_and(|files| {
                files
                    .iter()
                    .any(|p| label_from_stem(&file_stem(p)).is_some())
            })
        })
}

/// Sub-folders that can be class folders: not hidden, not a masks folder.
fn candidate_class_dirs(root: &Path, masks_dir: Option<&Path>) -> Result<Vec<PathBuf>> {
    let masks_canonical = masks_dir.and_then(|d| d.canonicalize().ok());
    Ok(list_dir(root)?
        .into_iter()
        .filter(|p| p.is_dir() && !is_hidden(p))
        .filter(|p| {
            let name = file_name(p);
            name != MASKS_DIR && name != MATLAB_MASKS_DIR
        })
        .filter(|p| masks_canonical.is_none() || p.canonicalize().ok() != masks_canonical)
        .collect())
}

fn detect_layout(root: &Path, masks_dir: Option<&Path>) -> Result<Layout> {
    if root.join(MANIFEST_FILE).is_file() {
        return Ok(Layout::Manifest);
    }
    if all_idb2_image_dir(root).is_some() {
        return Ok(Layout::AllIdb2);
    }
    let class_dirs = candidate_class_dirs(root, masks_dir)?;
    if class_dirs
        .iter()
        .any(|d| image_files(d).is_ok_and(|f| !f.is_empty()))
    {
        return Ok(Layout::ClassFolders);
    }
    Err(DataError::invalid(
        root,
        format!(
            "no data set found: looked for {MANIFEST_FILE} (columns path,label[,mask][,group]), \
             ALL-IDB2 images named ImNNN_Y.tif (Y=1 blast, Y=0 healthy) in this folder or its img/, \
             and class folders holding images (e.g. healthy/, all/); image types read: {}",
            image_io::IMAGE_EXTENSIONS.join(", ")
        ),
    ))
}

type ClassesAndSamples = (Vec<String>, Vec<Sample>);

fn read_all_idb2(root: &Path, opts: &OpenOptions, f: &mut Findings) -> Option<ClassesAndSamples> {
    let classes: Vec<String> = ALL_IDB2_CLASSES.iter().map(|c| c.to_string()).collect();
    if let Some(given) = opts.classes.as_ref().filter(|given| **given != classes) {
        f.fatal(DataError::invalid(
            root,
            format!(
                "ALL-IDB2 classes are fixed by the file names (healthy = ImNNN_0, all = ImNNN_1); \
                 cannot use the class order {}",
                given.join(",")
            ),
        ));
    }
    let dir = all_idb2_image_dir(root).unwrap_or_else(|| {
        let img = root.join("img");
        let root_has_images = image_files(root).is_ok_and(|f| !f.is_empty());
        if !root_has_images && img.is_dir() {
            img
        } else {
            root.to_path_buf()
        }
    });
    let files = match image_files(&dir) {
        Ok(files) => files,
        Err(e) => {
            f.fatal(e);
            return None;
        }
    };
    let mut samples = Vec::new();
    for path in files {
        let stem = file_stem(&path);
        match all_idb2_label(&stem) {
            Some(label) => samples.push(Sample {
                stem,
                image: path,
                label,
                mask: None,
                group: None,
            }),
            None => f.fatal(DataError::invalid(
                &path,
                "label digit after the last `_` must be 0 or 1 \
                 (ALL-IDB2 names are ImNNN_Y: Y=1 blast, Y=0 healthy)",
            )),
        }
    }
    for (label, class) in classes.iter().enumerate() {
        if !samples.iter().any(|s| s.label == label) {
            f.fatal(DataError::invalid(
                &dir,
                format!("empty class: no `{class}` images (names ending in _{label})"),
            ));
        }
    }
    Some((classes, samples))
}

fn read_class_folders(
    root: &Path,
    masks_dir: Option<&Path>,
    opts: &OpenOptions,
    f: &mut Findings,
) -> Option<ClassesAndSamples> {
    let dirs = match candidate_class_dirs(root, masks_dir) {
        Ok(dirs) => dirs,
        Err(e) => {
            f.fatal(e);
            return None;
        }
    };
    let found: Vec<String> = dirs.iter().map(|d| file_name(d)).collect();
    // Like torchvision's ImageFolder: class index = position of the folder
    // name in sorted order, unless the caller fixes the order.
    let classes = match &opts.classes {
        Some(given) => {
            for (dir, name) in dirs.iter().zip(&found) {
                if !given.contains(name) {
                    f.fatal(DataError::invalid(
                        dir,
                        format!(
                            "folder `{name}` is not one of the classes given ({})",
                            given.join(", ")
                        ),
                    ));
                }
            }
            given.clone()
        }
        None => found.clone(),
    };
    match image_files(root) {
        Ok(loose) => {
            for path in loose {
                f.warn(DataError::invalid(
                    &path,
                    "image outside any class folder is ignored",
                ));
            }
        }
        Err(e) => f.fatal(e),
    }
    let mut samples = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        let files = if dir.is_dir() {
            match image_files(&dir) {
                Ok(files) => files,
                Err(e) => {
                    f.fatal(e);
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        if files.is_empty() {
            f.fatal(DataError::invalid(
                &dir,
                format!("empty class: class folder `{class}` has no images"),
            ));
        }
        samples.extend(files.into_iter().map(|path| Sample {
            stem: file_stem(&path),
            image: path,
            label,
            mask: None,
            group: None,
        }));
    }
    Some((classes, samples))
}

/// A manifest row that named an existing image.
struct ManifestRow {
    line: u64,
    image: PathBuf,
    label: String,
    mask: Option<PathBuf>,
    group: Option<String>,
}

fn read_manifest(
    path: &Path,
    base: &Path,
    opts: &OpenOptions,
    f: &mut Findings,
) -> Option<ClassesAndSamples> {
    let with_names;
    let opts = match (
        &opts.classes,
        read_classes_file(&base.join(CLASSES_FILE), f),
    ) {
        (None, Some(names)) => {
            with_names = OpenOptions {
                classes: Some(names),
                ..opts.clone()
            };
            &with_names
        }
        _ => opts,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            f.fatal(DataError::io(path, e));
            return None;
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(std::io::BufReader::new(file));
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
        Err(e) => {
            f.fatal(DataError::invalid(
                path,
                format!("cannot read the header: {e}"),
            ));
            return None;
        }
    };
    let column = |name: &str| header.iter().position(|c| c == name);
    let (path_col, label_col) = match (column("path"), column("label")) {
        (Some(p), Some(l)) => (p, l),
        (p, _) => {
            let missing = if p.is_none() { "path" } else { "label" };
            f.fatal(DataError::invalid(
                path,
                format!(
                    "missing column `{missing}`: the first line must name the columns \
                     path,label[,mask][,group] (found `{}`)",
                    header.join(",")
                ),
            ));
            return None;
        }
    };
    let (mask_col, group_col) = (column("mask"), column("group"));

    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                f.fatal(DataError::invalid(path, format!("line {line}: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or("");
        let bad = |f: &mut Findings, msg: String| {
            f.fatal(DataError::invalid(path, format!("line {line}: {msg}")))
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        let (image, label) = (field(Some(path_col)), field(Some(label_col)));
        let mut ok = true;
        if image.is_empty() {
            bad(f, "empty path".into());
            ok = false;
        } else if !base.join(image).is_file() {
            bad(
                f,
                format!(
                    "image `{image}` does not exist (paths are relative to {})",
                    base.display()
                ),
            );
            ok = false;
        }
        if label.is_empty() {
            bad(f, "empty label".into());
            ok = false;
        } else if label.parse::<usize>().is_ok_and(|n| n > MAX_INTEGER_LABEL) {
            bad(
                f,
                format!(
                    "label {label} is too large for a class index (at most {MAX_INTEGER_LABEL})"
                ),
            );
            ok = false;
        }
        let mask = field(mask_col);
        let mask = if mask.is_empty() {
            None
        } else if base.join(mask).is_file() {
            Some(base.join(mask))
        } else {
            // The image is kept (check still decodes it) without a mask.
            bad(f, format!("mask `{mask}` does not exist"));
            f.mask_reported.insert(base.join(image));
            None
        };
        if ok {
            let group = field(group_col);
            rows.push(ManifestRow {
                line,
                image: base.join(image),
                label: label.to_string(),
                mask,
                group: (!group.is_empty()).then(|| group.to_string()),
            });
        }
    }

    let classes = manifest_classes(path, &rows, opts, f);
    let class_index: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let integer_labels = uses_integer_indices(&rows, opts);
    let mut samples = Vec::new();
    for row in rows {
        let label = if integer_labels {
            row.label
                .parse::<usize>()
                .ok()
                .filter(|&i| i < classes.len())
        } else {
            class_index.get(row.label.as_str()).copied()
        };
        match label {
            Some(label) => samples.push(Sample {
                stem: file_stem(&row.image),
                image: row.image,
                label,
                mask: row.mask,
                group: row.group,
            }),
            None if integer_labels => f.fatal(DataError::invalid(
                path,
                format!(
                    "line {}: label {} is not a class index: integer labels index the {} classes given ({})",
                    row.line,
                    row.label,
                    classes.len(),
                    classes.join(", ")
                ),
            )),
            None => f.fatal(DataError::invalid(
                path,
                format!(
                    "line {}: label `{}` is not one of the classes given ({})",
                    row.line,
                    row.label,
                    classes.join(", ")
                ),
            )),
        }
    }
    report_empty_manifest_classes(path, &classes, &samples, integer_labels, f);
    Some((classes, samples))
}

/// Reads `classes.txt` (one class name a line) if it exists.
fn read_classes_file(path: &Path, f: &mut Findings) -> Option<Vec<String>> {
    if !path.is_file() {
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            if names.is_empty() {
                f.fatal(DataError::invalid(path, "lists no class names"));
                return None;
            }
            Some(names)
        }
        Err(e) => {
            f.fatal(DataError::io(path, e));
            None
        }
    }
}

/// Whether labels are class indices: all integers, and no class names were
/// given that are themselves integers (then labels are matched by name).
fn uses_integer_indices(rows: &[ManifestRow], opts: &OpenOptions) -> bool {
    let all_integers = !rows.is_empty() && rows.iter().all(|r| r.label.parse::<usize>().is_ok());
    let names_are_integers = opts
        .classes
        .as_ref()
        .is_some_and(|c| c.iter().all(|n| n.parse::<usize>().is_ok()));
    all_integers && !names_are_integers
}

fn manifest_classes(
    path: &Path,
    rows: &[ManifestRow],
    opts: &OpenOptions,
    f: &mut Findings,
) -> Vec<String> {
    if let Some(given) = &opts.classes {
        return given.clone();
    }
    if uses_integer_indices(rows, opts) {
        let max = rows
            .iter()
            .filter_map(|r| r.label.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        return (0..=max).map(|i| i.to_string()).collect();
    }
    let names: BTreeSet<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    if names.is_empty() {
        f.fatal(DataError::invalid(path, "the manifest lists no images"));
    }
    names.into_iter().map(str::to_string).collect()
}

fn report_empty_manifest_classes(
    path: &Path,
    classes: &[String],
    samples: &[Sample],
    integer_labels: bool,
    f: &mut Findings,
) {
    let used: HashSet<usize> = samples.iter().map(|s| s.label).collect();
    let empty: Vec<&str> = (0..classes.len())
        .filter(|i| !used.contains(i))
        .map(|i| classes[i].as_str())
        .collect();
    if empty.is_empty() || samples.is_empty() {
        return;
    }
    // One problem for all gaps: a label like 40 by mistake would otherwise
    // print 39 lines.
    const SHOWN: usize = 10;
    let mut list = empty[..empty.len().min(SHOWN)].join(", ");
    if empty.len() > SHOWN {
        list.push_str(&format!(" and {} more", empty.len() - SHOWN));
    }
    let why = if integer_labels {
        " (integer labels are class indices and must run 0..N without gaps)"
    } else {
        ""
    };
    f.fatal(DataError::invalid(
        path,
        format!("empty class: no images labelled {list}{why}"),
    ));
}

/// Two images with one stem cannot both be matched to masks, splits and
/// outputs; the first (in listing order) is kept.
fn drop_duplicate_stems(samples: Vec<Sample>, f: &mut Findings) -> Vec<Sample> {
    let mut first: HashMap<String, PathBuf> = HashMap::new();
    let mut kept = Vec::with_capacity(samples.len());
    for s in samples {
        if let Some(other) = first.get(&s.stem) {
            let reason = if *other == s.image {
                format!("listed twice (stem `{}`)", s.stem)
            } else {
                format!(
                    "duplicate stem `{}` (also {}): masks, splits and outputs are matched \
                     by the file name without extension, so it must be unique",
                    s.stem,
                    other.display()
                )
            };
            f.fatal(DataError::invalid(&s.image, reason));
            continue;
        }
        first.insert(s.stem.clone(), s.image.clone());
        kept.push(s);
    }
    kept
}

/// What a mask file name says about its image.
#[derive(Debug, PartialEq, Eq)]
enum MaskName {
    /// `S.png`, or MATLAB's `Label_<k>_S.png`: the mask of image `S`.
    Stem { stem: String, matlab: bool },
    /// MATLAB's `Label_<k>.png`: numbered in labelling order, so only a
    /// manifest's `mask` column can tie it to its image.
    MatlabNumbered,
}

fn parse_mask_name(stem: &str) -> MaskName {
    if let Some(rest) = stem.strip_prefix("Label_") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            match &rest[digits..] {
                "" => return MaskName::MatlabNumbered,
                tail if tail.len() > 1 && tail.starts_with('_') => {
                    return MaskName::Stem {
                        stem: tail[1..].to_string(),
                        matlab: true,
                    };
                }
                _ => {}
            }
        }
    }
    MaskName::Stem {
        stem: stem.to_string(),
        matlab: false,
    }
}

fn is_png(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Where the masks came from, as far as the label table cares: MATLAB
/// exports number their ids in labelling order, so they need a table.
#[derive(Debug, Default)]
struct MatlabMasks {
    /// A file or folder that shows the masks are a MATLAB export.
    evidence: Option<PathBuf>,
}

/// Ties masks to samples: the manifest's `mask` column first, then `S.png` or
/// `Label_<k>_S.png` in the masks folder. Masks without an image are listed.
fn attach_masks(samples: &mut [Sample], masks_dir: Option<&Path>, f: &mut Findings) -> MatlabMasks {
    let mut matlab = MatlabMasks::default();
    if let Some(dir) = masks_dir.filter(|d| file_name(d) == MATLAB_MASKS_DIR) {
        matlab.evidence = Some(dir.to_path_buf());
    }
    if matlab.evidence.is_none() {
        matlab.evidence = samples
            .iter()
            .filter_map(|s| s.mask.as_ref())
            .find(|mask| {
                !matches!(
                    parse_mask_name(&file_stem(mask)),
                    MaskName::Stem { matlab: false, .. }
                )
            })
            .cloned();
    }
    let Some(dir) = masks_dir else {
        return matlab;
    };
    let files = match list_dir(dir) {
        Ok(files) => files,
        Err(e) => {
            f.fatal(e);
            return matlab;
        }
    };

    let mut by_stem: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut numbered = Vec::new();
    for path in files.into_iter().filter(|p| p.is_file() && !is_hidden(p)) {
        if !is_png(&path) {
            if image_io::is_image_path(&path) {
                f.warn(DataError::invalid(
                    &path,
                    "masks must be PNG label images (one integer id per pixel); this file is ignored",
                ));
            }
            continue;
        }
        match parse_mask_name(&file_stem(&path)) {
            MaskName::MatlabNumbered => {
                matlab.evidence.get_or_insert_with(|| path.clone());
                numbered.push(path);
            }
            MaskName::Stem { stem, matlab: m } => {
                if m {
                    matlab.evidence.get_or_insert_with(|| path.clone());
                }
                if let Some(other) = by_stem.get(&stem) {
                    f.fatal(DataError::invalid(
                        &path,
                        format!(
                            "second mask for image `{stem}` (the first is {})",
                            other.display()
                        ),
                    ));
                } else {
                    by_stem.insert(stem, path);
                }
            }
        }
    }

    let mut used_stems = HashSet::new();
    let mut used_paths: HashSet<PathBuf> = HashSet::new();
    for s in samples.iter_mut() {
        used_stems.insert(s.stem.clone());
        match &s.mask {
            Some(mask) => {
                used_paths.insert(mask.canonicalize().unwrap_or_else(|_| mask.clone()));
            }
            None => s.mask = by_stem.get(&s.stem).cloned(),
        }
    }
    for (stem, path) in &by_stem {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !used_stems.contains(stem) && !used_paths.contains(&canonical) {
            f.warn(DataError::invalid(
                path,
                format!("mask without image: no image has the stem `{stem}`"),
            ));
        }
    }
    for path in numbered {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !used_paths.contains(&canonical) {
            f.warn(DataError::invalid(
                &path,
                "mask without image: MATLAB numbers these masks in labelling order, \
                 so tie it to its image with a manifest.csv `mask` column (path,label,mask)",
            ));
        }
    }
    matlab
}

fn resolve_label_table(
    root: &Path,
    masks_dir: Option<&Path>,
    matlab: &MatlabMasks,
    has_masks: bool,
    opts: &OpenOptions,
    f: &mut Findings,
) -> Option<LabelTable> {
    let table = if let Some(table) = &opts.label_table {
        table.clone()
    } else if let Some(path) = masks_dir
        .map(|d| d.join(LABELS_FILE))
        .into_iter()
        .chain([root.join(LABELS_FILE)])
        .find(|p| p.is_file())
    {
        match LabelTable::read_json(&path) {
            Ok(table) => table,
            Err(e) => {
                f.fatal(e);
                return None;
            }
        }
    } else if !has_masks {
        return None;
    } else if let Some(evidence) = &matlab.evidence {
        f.fatal(DataError::invalid(
            evidence,
            format!(
                "MATLAB Image Labeler masks need their id→class table: the ids follow the order \
                 in which the labels were defined in the labelling session, so leukex cannot guess \
                 them. Give it with --label-map, e.g. --label-map 1=nucleus,2=cytoplasm,3=vacuole,4=rbc,5=background \
                 (id 0 is unlabelled), or as {LABELS_FILE} beside the masks: {{\"1\": \"nucleus\", ...}}"
            ),
        ));
        return None;
    } else {
        LabelTable::default()
    };
    // In a MATLAB export id 0 is a pixel nobody labelled, not background.
    Some(if matlab.evidence.is_some() {
        table.with_zero_unlabelled()
    } else {
        table
    })
}

fn require_masks(root: &Path, samples: &[Sample], masks_dir: Option<&Path>, f: &mut Findings) {
    let missing: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.mask.is_none() && !f.mask_reported.contains(&s.image))
        .collect();
    if missing.is_empty() {
        return;
    }
    // No masks anywhere: one problem, not one per image.
    if masks_dir.is_none() && samples.iter().all(|s| s.mask.is_none()) && f.mask_reported.is_empty()
    {
        f.fatal(DataError::invalid(
            root,
            format!(
                "masks are required but there are none: looked for {MASKS_DIR}/, \
                 {MATLAB_MASKS_DIR}/ and a manifest `mask` column"
            ),
        ));
        return;
    }
    for s in missing {
        let looked = match masks_dir {
            Some(dir) => format!(
                "no {}.png or Label_<k>_{}.png in {}",
                s.stem,
                s.stem,
                dir.display()
            ),
            None => "its manifest row has no `mask`".to_string(),
        };
        f.fatal(DataError::invalid(
            &s.image,
            format!("image without mask (masks are required): {looked}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_round_trip() {
        for l in [Layout::AllIdb2, Layout::ClassFolders, Layout::Manifest] {
            assert_eq!(l.to_string().parse::<Layout>().unwrap(), l);
        }
        assert!("tree".parse::<Layout>().unwrap_err().contains("all-idb2"));
    }

    #[test]
    fn all_idb2_names() {
        assert_eq!(label_from_stem("Im001_1"), Some(1));
        assert_eq!(label_from_stem("im260_0"), Some(0));
        assert_eq!(label_from_stem("Im001_2"), None);
        assert_eq!(label_from_stem("Im001"), None);
        assert_eq!(label_from_stem("Imx_1"), None);
        assert_eq!(all_idb2_label("slide3_cell_1"), Some(1));
        assert_eq!(label_from_stem("Im001_1"), Some(1));
        assert_eq!(label_from_stem("Im260_0"), Some(0));
        assert_eq!(label_from_stem("cell_7"), None);
        assert_eq!(all_idb2_label("_1"), None);
        assert_eq!(all_idb2_label("Im001_2"), None);
        // Outputs named by stem are labelled only when the name is ALL-IDB2's own.
        assert_eq!(label_from_stem("Image_of_cell_1"), None);
        assert_eq!(label_from_stem("Im001_rot90_1"), None);
        assert_eq!(label_from_stem("im007_1"), Some(1));
    }

    #[test]
    fn mask_names() {
        assert_eq!(parse_mask_name("Label_3"), MaskName::MatlabNumbered);
        assert_eq!(
            parse_mask_name("Label_12_Im001_1"),
            MaskName::Stem {
                stem: "Im001_1".into(),
                matlab: true
            }
        );
        assert_eq!(
            parse_mask_name("Im001_1"),
            MaskName::Stem {
                stem: "Im001_1".into(),
                matlab: false
            }
        );
        assert_eq!(
            parse_mask_name("Label_x"),
            MaskName::Stem {
                stem: "Label_x".into(),
                matlab: false
            }
        );
    }
}
