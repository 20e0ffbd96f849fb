//! What a study folder holds, found once at start-up: the models (one `explain.json` each),
//! their methods, the images and masks, and every heat map on disk.
//!
//! Two layouts are read: the study/demo layout (`DIR/maps/<model>/explain.json`, images and
//! masks in `DIR/data`) and a plain `leukex explain` output folder (`DIR/<model>/explain.json`,
//! or `DIR` itself a model folder). The images are where `explain.json` says they are; their
//! folders, their mask folders and `DIR` are the only roots the server reads from. A mask is
//! `masks/STEM.png` beside the image or in `DIR/data/masks`, else what `leukex-data` finds
//! in the image's folder (a MATLAB Image Labeler export in `PixelLabelData/`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use leukex_data::LabelTable;
use leukex_data::dataset::{Dataset, LABELS_FILE, OpenOptions, label_from_stem};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Result, WebError};

/// One model: a folder with an `explain.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub arch: Option<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// One heat-map method, as `explain.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MethodInfo {
    pub id: String,
    pub name: String,
    /// Signed maps (LRP, gradients) are drawn in seismic, the others (CAMs) in jet.
    pub signed: bool,
}

/// One explained image (by stem; the same stem across models is one image).
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub stem: String,
    pub true_label: Option<usize>,
    pub true_class: Option<String>,
    pub has_image: bool,
    pub has_mask: bool,
    #[serde(skip)]
    pub source: Option<PathBuf>,
    #[serde(skip)]
    pub mask: Option<PathBuf>,
}

/// One heat map on disk: `<model dir>/<stem>/<method>.npy`.
#[derive(Debug, Clone, Serialize)]
pub struct MapInfo {
    /// `model/stem/method`: the id the browsing API and the ratings use.
    pub id: String,
    pub model: String,
    pub stem: String,
    pub method: String,
    pub true_class: Option<String>,
    pub predicted: Option<String>,
    pub correct: Option<bool>,
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub signed: bool,
}

#[derive(Debug, Clone)]
pub struct Study {
    /// `DIR`, canonical.
    pub root: PathBuf,
    /// Every folder a file may be read from (canonical): `DIR`, the image folders, the mask folders.
    pub roots: Vec<PathBuf>,
    pub models: Vec<ModelInfo>,
    pub methods: Vec<MethodInfo>,
    pub classes: Vec<String>,
    pub images: Vec<ImageInfo>,
    pub maps: Vec<MapInfo>,
    /// What the server could not use and why (e.g. MATLAB masks without their label
    /// table): printed at start-up and shown on the browse page.
    pub notes: Vec<String>,
    map_index: HashMap<String, usize>,
    image_index: HashMap<String, usize>,
    label_tables: HashMap<PathBuf, LabelTable>,
}

/// The masks `leukex data check` finds in an image folder, by image stem, with their
/// label table: a `PixelLabelData/` MATLAB Image Labeler export (`Label_<k>_STEM.png`,
/// or `Label_<k>.png` tied to images by a manifest's `mask` column), read the way the
/// data crate reads it (id 0 unlabelled unless the table says otherwise).
struct FolderMasks {
    by_stem: HashMap<String, PathBuf>,
    table: Option<LabelTable>,
}

impl FolderMasks {
    fn open(folder: &Path, notes: &mut Vec<String>) -> FolderMasks {
        match Dataset::open(folder, &OpenOptions::default()) {
            Ok(ds) => FolderMasks {
                by_stem: ds
                    .samples
                    .into_iter()
                    .filter_map(|s| Some((s.stem, s.mask?)))
                    .collect(),
                table: ds.label_table,
            },
            Err(e) => {
                // Only worth a note where there are masks to miss.
                if folder.join(leukex_data::dataset::MATLAB_MASKS_DIR).is_dir()
                    || folder.join(leukex_data::dataset::MASKS_DIR).is_dir()
                {
                    notes.push(format!("masks not shown: {e}"));
                }
                FolderMasks {
                    by_stem: HashMap::new(),
                    table: None,
                }
            }
        }
    }
}

/// The `explain.json` of one model folder, read loosely (older files may lack fields).
struct ExplainFile {
    model_id: String,
    arch: Option<String>,
    classes: Option<Vec<String>>,
    methods: Vec<MethodInfo>,
    images: BTreeMap<String, ExplainImage>,
}

/// One entry of `explain.json`'s `images`.
struct ExplainImage {
    source: Option<PathBuf>,
    true_label: Option<usize>,
    predicted: Option<usize>,
}

fn read_explain(path: &Path) -> Result<ExplainFile> {
    let text = std::fs::read_to_string(path).map_err(|e| WebError::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| WebError::invalid(path, format!("not valid JSON: {e}")))?;
    let dir_name = path
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model_id = v["model"]["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or(dir_name.clone());
    if model_id != dir_name {
        // The maps sit under the folder's name; that is what ids must point at.
        return Err(WebError::invalid(
            path,
            format!("model.id `{model_id}` is not its folder's name `{dir_name}`"),
        ));
    }
    let classes = v["model"]["classes"].as_array().map(|a| {
        a.iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect()
    });
    let methods = v["methods"]
        .as_array()
        .ok_or_else(|| WebError::invalid(path, "no `methods` list"))?
        .iter()
        .map(|m| {
            let id = m["id"]
                .as_str()
                .ok_or_else(|| WebError::invalid(path, "a method without an `id`"))?;
            Ok(MethodInfo {
                id: id.to_string(),
                name: m["name"].as_str().unwrap_or(id).to_string(),
                signed: m["signed"].as_bool().unwrap_or(true),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut images = BTreeMap::new();
    if let Some(obj) = v["images"].as_object() {
        for (stem, e) in obj {
            let label = |k: &str| e[k].as_u64().map(|x| x as usize);
            let source = e["source"].as_str().map(PathBuf::from);
            images.insert(
                stem.clone(),
                ExplainImage {
                    source,
                    true_label: label("true_label"),
                    predicted: label("predicted"),
                },
            );
        }
    }
    Ok(ExplainFile {
        model_id,
        arch: v["model"]["arch"].as_str().map(str::to_string),
        classes,
        methods,
        images,
    })
}

/// Model folders: `DIR/maps/*`, `DIR/*` and `DIR` itself, each with an `explain.json`.
fn model_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if root.join("explain.json").is_file() {
        found.push(root.to_path_buf());
    }
    for parent in [root.join("maps"), root.to_path_buf()] {
        if !parent.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&parent)
            .map_err(|e| WebError::io(&parent, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("explain.json").is_file())
            .collect();
        dirs.sort();
        found.extend(dirs);
    }
    Ok(found)
}

fn canonical(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

impl Study {
    /// Finds every model, image, mask and map under `dir`.
    pub fn open(dir: &Path) -> Result<Study> {
        let root = std::fs::canonicalize(dir).map_err(|e| WebError::io(dir, e))?;
        if !root.is_dir() {
            return Err(WebError::invalid(&root, "not a folder"));
        }
        let mut models = Vec::new();
        let mut methods: Vec<MethodInfo> = Vec::new();
        let mut classes: Option<Vec<String>> = None;
        let mut sources: BTreeMap<String, (Option<PathBuf>, Option<usize>)> = BTreeMap::new();
        // (model, stem) → predicted label; (model, stem, method) maps found.
        let mut found: Vec<(String, String, MethodInfo, Option<usize>, PathBuf)> = Vec::new();
        for mdir in model_dirs(&root)? {
            let ex = read_explain(&mdir.join("explain.json"))?;
            if models.iter().any(|m: &ModelInfo| m.id == ex.model_id) {
                continue;
            }
            if classes.is_none() {
                classes = ex.classes.clone();
            }
            for m in &ex.methods {
                if !methods.iter().any(|k| k.id == m.id) {
                    methods.push(m.clone());
                }
            }
            for (stem, im) in &ex.images {
                let e = sources.entry(stem.clone()).or_insert((None, None));
                if e.0.is_none() {
                    e.0 = im.source.as_ref().map(|s| resolve_source(&mdir, s));
                }
                if e.1.is_none() {
                    e.1 = im.true_label.or_else(|| label_from_stem(stem));
                }
                for m in &ex.methods {
                    let p = mdir.join(stem).join(format!("{}.npy", m.id));
                    if p.is_file() {
                        found.push((
                            ex.model_id.clone(),
                            stem.clone(),
                            m.clone(),
                            im.predicted,
                            p,
                        ));
                    }
                }
            }
            models.push(ModelInfo {
                id: ex.model_id,
                arch: ex.arch,
                dir: mdir,
            });
        }
        // Without class names (a model given by --arch/--weights), ALL-IDB2's two labels.
        let classes = classes.unwrap_or_else(|| vec!["healthy".into(), "blast".into()]);
        let class_name =
            |l: Option<usize>| l.map(|l| classes.get(l).cloned().unwrap_or_else(|| l.to_string()));

        let mut roots: BTreeSet<PathBuf> = BTreeSet::from([root.clone()]);
        let mut label_tables = HashMap::new();
        let data_masks = root.join("data").join("masks");
        let mut notes = Vec::new();
        let mut folder_masks: HashMap<PathBuf, FolderMasks> = HashMap::new();
        let mut images = Vec::new();
        for (stem, (source, true_label)) in sources {
            // `.npy` inputs have no image: their maps are shown alone.
            let source = source
                .filter(|s| s.extension().is_none_or(|e| e != "npy"))
                .and_then(|s| canonical(&s));
            let mut mask_dirs = vec![data_masks.clone()];
            if let Some(parent) = source.as_ref().and_then(|s| s.parent()) {
                roots.insert(parent.to_path_buf());
                mask_dirs.insert(0, parent.join("masks"));
            }
            let mut mask = mask_dirs
                .iter()
                .map(|d| d.join(format!("{stem}.png")))
                .find(|p| p.is_file())
                .and_then(|p| canonical(&p));
            if mask.is_none()
                && let Some(folder) = source.as_ref().and_then(|s| s.parent())
            {
                let found = folder_masks
                    .entry(folder.to_path_buf())
                    .or_insert_with(|| FolderMasks::open(folder, &mut notes));
                mask = found.by_stem.get(&stem).and_then(|p| canonical(p));
                if let (Some(table), Some(mdir)) =
                    (&found.table, mask.as_ref().and_then(|m| m.parent()))
                {
                    label_tables
                        .entry(mdir.to_path_buf())
                        .or_insert_with(|| table.clone());
                }
            }
            if let Some(mdir) = mask.as_ref().and_then(|m| m.parent()) {
                roots.insert(mdir.to_path_buf());
                if !label_tables.contains_key(mdir) {
                    // Where `leukex data check` looks: beside the masks, then in their parent.
                    let labels = [
                        Some(mdir.join(LABELS_FILE)),
                        mdir.parent().map(|p| p.join(LABELS_FILE)),
                    ]
                    .into_iter()
                    .flatten()
                    .find(|p| p.is_file());
                    let table = match labels {
                        Some(p) => LabelTable::read_json(&p)?,
                        None => LabelTable::leukex_written(),
                    };
                    label_tables.insert(mdir.to_path_buf(), table);
                }
            }
            images.push(ImageInfo {
                true_class: class_name(true_label),
                stem,
                true_label,
                has_image: source.is_some(),
                has_mask: mask.is_some(),
                source,
                mask,
            });
        }
        let image_index: HashMap<String, usize> = images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.stem.clone(), i))
            .collect();
        let maps: Vec<MapInfo> = found
            .into_iter()
            .map(|(model, stem, method, predicted, path)| {
                let true_label = images[image_index[&stem]].true_label;
                MapInfo {
                    id: format!("{model}/{stem}/{}", method.id),
                    true_class: class_name(true_label),
                    predicted: class_name(predicted),
                    correct: true_label.zip(predicted).map(|(t, p)| t == p),
                    model,
                    stem,
                    method: method.id,
                    signed: method.signed,
                    path,
                }
            })
            .collect();
        let map_index = maps
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Ok(Study {
            root,
            roots: roots.into_iter().collect(),
            models,
            methods,
            classes,
            images,
            maps,
            notes,
            map_index,
            image_index,
            label_tables,
        })
    }

    pub fn map(&self, id: &str) -> Option<&MapInfo> {
        self.map_index.get(id).map(|&i| &self.maps[i])
    }

    pub fn image(&self, stem: &str) -> Option<&ImageInfo> {
        self.image_index.get(stem).map(|&i| &self.images[i])
    }

    /// The label table of the mask file `path` (one of the study's masks): `labels.json`
    /// beside it or in its folder's parent, else leukex's own ids.
    pub fn mask_table(&self, path: &Path) -> LabelTable {
        path.parent()
            .and_then(|d| self.label_tables.get(d))
            .cloned()
            .unwrap_or_else(LabelTable::leukex_written)
    }
}

/// `explain.json` records sources as given on its command line: relative ones are taken
/// from the current folder first, then from the model folder's study (`DIR/maps/<model>`
/// → `DIR`), so a study folder still works when served from elsewhere.
fn resolve_source(model_dir: &Path, source: &Path) -> PathBuf {
    if source.is_absolute() || source.exists() {
        return source.to_path_buf();
    }
    model_dir
        .ancestors()
        .skip(1)
        .take(3)
        .map(|a| a.join(source))
        .find(|p| p.exists())
        .unwrap_or_else(|| source.to_path_buf())
}
