//! Runs the cells of a [`Grid`]: each one only when its record (`cache/cells/<id>.<key>.json`)
//! is missing, each output written atomically, the record last — so a run killed at any
//! moment continues where it stopped and ends with the files an uninterrupted run writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use leukex_data::LabelTable;
use leukex_data::dataset::Dataset;
use leukex_data::fsutil::{write_bytes_atomic, write_json_atomic};
use leukex_evaluate::{EvaluateOptions, Mode, Region, evaluate_dir};
use leukex_explain::pipeline::{
    ExplainInput, ExplainRequest, ModelInfo, input_bounds, parse_methods, run_explain,
};
use leukex_models::{Classifier, StateDict};
use leukex_train::{Init, ModelCard};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::StudyError;
use crate::grid::{
    Cell, CellWork, Conventions, Grid, Stage, explain_options, method_params, open_variant_data,
    rel,
};
use crate::model_metrics::file_error;
use crate::model_metrics::{
    FaithfulnessMetric, ModelMetricsOptions, StudyModel, run_model_metrics,
};
use crate::spec::{ModelPlan, WeightsSource};
use leukex_evaluate::faithfulness::Baseline;
use leukex_models::randomise::Granularity;

/// What is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole grid.
    All,
    /// Shard `k` of `n` (1-based): see [`Grid::shard_cells`].
    Shard { k: usize, n: usize },
    /// One cell, whose needs must be done.
    Cell(String),
}

/// Where a run reports its progress (the CLI draws bars; `run.log` is written anyway).
pub trait Observer: Sync {
    /// A stage starts with `total` cells of which `done` are already cached.
    fn stage(&self, _stage: Stage, _total: usize, _done: usize) {}
    /// A cell finished (or was found in the cache).
    fn cell(&self, _cell: &Cell, _cached: bool, _seconds: f64) {}
    /// Inside a cell: `done` of `total` units (epochs, images).
    fn within(&self, _cell: &Cell, _done: usize, _total: usize) {}
}

/// Does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub ran: Vec<(String, f64)>,
    pub cached: Vec<String>,
    /// Seconds per stage of the cells that ran.
    pub stage_seconds: Vec<(Stage, f64)>,
}

/// A finished cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    key: String,
    #[serde(default)]
    methods: Vec<MethodRecord>,
    /// Explain cells: the `explain.json` of each conventions' run.
    #[serde(default)]
    reports: Vec<(Conventions, Value)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MethodRecord {
    conventions: Conventions,
    name: String,
    file_id: String,
    key: String,
}

/// Runs `sel` of `grid`.
pub fn run(grid: &Grid, sel: &Selection, obs: &dyn Observer) -> Result<RunSummary, StudyError> {
    let out = &grid.out;
    std::fs::create_dir_all(out.join("cache/cells")).map_err(|e| file_error(out, e))?;
    write_bytes_atomic(&out.join("study.toml"), grid.study.to_toml().as_bytes())?;
    let cells: Vec<&Cell> = match sel {
        Selection::All => grid.cells.iter().collect(),
        Selection::Shard { k, n } => {
            if *n == 0 || *k == 0 || k > n {
                return Err(StudyError::Spec {
                    path: out.clone(),
                    reason: format!("--shard {k}/{n}: expected K/N with 1 <= K <= N"),
                });
            }
            let cells = grid.shard_cells(*k, *n);
            let mut models: Vec<&str> = cells.iter().filter_map(|c| c.model.as_deref()).collect();
            models.dedup();
            write_json_atomic(
                &out.join("shard.json"),
                &json!({"shard": k, "of": n, "models": models}),
            )?;
            cells
        }
        Selection::Cell(id) => {
            let c = grid.cell(id).ok_or_else(|| StudyError::Spec {
                path: out.clone(),
                reason: format!(
                    "--cell {id}: no such cell (`leukex run --plan` lists them: {} ...)",
                    grid.cells
                        .iter()
                        .take(4)
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
            if let Some(missing) = c
                .needs
                .iter()
                .find(|n| grid.cell(n).is_some_and(|nc| !grid.is_done(nc)))
            {
                return Err(StudyError::Spec {
                    path: out.clone(),
                    reason: format!("cell {id} needs cell {missing} first"),
                });
            }
            vec![c]
        }
    };
    let mut log = Log::open(&out.join("run.log"))?;
    log.line(&format!(
        "leukex {} run of study {:?}: {} cells selected",
        crate::grid::VERSION,
        grid.study.name,
        cells.len()
    ));
    let mut summary = RunSummary::default();
    for stage in Stage::ALL {
        let these: Vec<&&Cell> = cells.iter().filter(|c| c.stage == stage).collect();
        if these.is_empty() {
            continue;
        }
        let done = these.iter().filter(|c| grid.is_done(c)).count();
        obs.stage(stage, these.len(), done);
        log.line(&format!(
            "stage {}: {} cells, {done} cached",
            stage.name(),
            these.len()
        ));
        let t_stage = Instant::now();
        for c in these {
            if grid.is_done(c) {
                summary.cached.push(c.id.clone());
                obs.cell(c, true, 0.0);
                continue;
            }
            let t = Instant::now();
            log.line(&format!("{}: running", c.id));
            let record = run_cell(grid, c, obs).map_err(|e| StudyError::Cell {
                cell: c.id.clone(),
                source: Box::new(e),
            })?;
            write_record(grid, c, &record)?;
            let s = t.elapsed().as_secs_f64();
            log.line(&format!("{}: done in {s:.1} s", c.id));
            summary.ran.push((c.id.clone(), s));
            obs.cell(c, false, s);
        }
        summary
            .stage_seconds
            .push((stage, t_stage.elapsed().as_secs_f64()));
    }
    log.line("finished");
    Ok(summary)
}

struct Log(std::fs::File);

impl Log {
    fn open(path: &Path) -> Result<Log, StudyError> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Log)
            .map_err(|e| file_error(path, e))
    }

    fn line(&mut self, s: &str) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // The log is advisory: a full disk shows up in the outputs' own writes.
        let _ = writeln!(self.0, "[{t}] {s}");
    }
}

fn write_record(grid: &Grid, c: &Cell, r: &Record) -> Result<(), StudyError> {
    let path = grid.record_path(c);
    write_json_atomic(&path, r)?;
    // Older records of this cell describe outputs that were just replaced.
    for old in previous_records(grid, c) {
        if old != path {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(())
}

fn previous_records(grid: &Grid, c: &Cell) -> Vec<PathBuf> {
    let dir = grid.out.join("cache/cells");
    let prefix = format!("{}.", c.id);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|rest| {
                    rest.ends_with(".json") && !rest.trim_end_matches(".json").contains('.')
                })
        })
        .collect();
    v.sort();
    v
}

fn read_record(path: &Path) -> Option<Record> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn empty_record(c: &Cell) -> Record {
    Record {
        id: c.id.clone(),
        key: c.key.clone(),
        methods: Vec::new(),
        reports: Vec::new(),
    }
}

fn run_cell(grid: &Grid, c: &Cell, obs: &dyn Observer) -> Result<Record, StudyError> {
    match &c.what {
        CellWork::Nothing => {}
        CellWork::Data { variant } => make_data(grid, *variant, c, obs)?,
        CellWork::Split => grid.split.write_json(&grid.out.join("split.json"))?,
        CellWork::Train { model } => train_model(grid, &grid.models[*model], c, obs)?,
        CellWork::Explain {
            model,
            stems,
            methods,
        } => return explain_cell(grid, &grid.models[*model], stems, methods, c, obs),
        CellWork::Metrics { model } => model_metrics(grid, &grid.models[*model])?,
        CellWork::Evaluate { variant } => evaluate_variant(grid, *variant)?,
        CellWork::Report => write_manifest(grid)?,
    }
    Ok(empty_record(c))
}

fn make_data(grid: &Grid, vi: usize, c: &Cell, obs: &dyn Observer) -> Result<(), StudyError> {
    let v = &grid.variants[vi];
    if !v.built_in {
        // The user's data stays where it is; its hash is in the cell's key.
        write_json_atomic(
            &grid.out.join("data.json"),
            &json!({"data": v.data, "masks": v.masks, "labels": v.labels, "key": v.key}),
        )?;
        return Ok(());
    }
    let s = grid
        .study
        .data
        .synth
        .expect("built-in data has a synth spec");
    let cfg = leukex_synth::SynthConfig {
        n: s.n,
        seed: s.seed,
        size: s.size,
        shortcut: v.shortcut,
        without_cell: false,
    };
    // Written beside its place and renamed, so a killed run never leaves half a data set.
    let partial = v.data.with_extension("partial");
    for p in [&partial, &v.data] {
        if p.exists() {
            std::fs::remove_dir_all(p).map_err(|e| file_error(p, e))?;
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    leukex_synth::write_dataset(&cfg, &partial, &|_| {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        obs.within(c, d, s.n);
    })?;
    std::fs::rename(&partial, &v.data).map_err(|e| file_error(&v.data, e))?;
    Ok(())
}

const CELL_KEY_FILE: &str = ".leukex-cell-key";

fn train_model(grid: &Grid, m: &ModelPlan, c: &Cell, obs: &dyn Observer) -> Result<(), StudyError> {
    let run_dir = grid.out.join("runs").join(&m.id);
    let key_file = run_dir.join(CELL_KEY_FILE);
    let same_cell = std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == c.key);
    if same_cell && run_dir.join("metrics.json").is_file() {
        // Finished before the record was written.
        return drop_checkpoint(&run_dir);
    }
    let resume = same_cell && run_dir.join("checkpoint/state.json").is_file();
    if !resume && run_dir.exists() {
        std::fs::remove_dir_all(&run_dir).map_err(|e| file_error(&run_dir, e))?;
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| file_error(&run_dir, e))?;
    write_bytes_atomic(&key_file, c.key.as_bytes())?;
    let v = &grid.variants[grid.variant_of(m)];
    let ds = open_variant_data(&grid.study, v)?;
    let init = match &m.weights {
        WeightsSource::Scratch => Init::Scratch,
        WeightsSource::ImageNet => {
            let path = leukex_fetch::imagenet_weights(m.config.arch.as_str(), None, None, |_, _| {})
                .map_err(|e| StudyError::Model {
                    model: m.id.clone(),
                    reason: format!(
                        "weights = \"imagenet\": cannot get torchvision's ImageNet weights ({e}). \
                         Where no download is possible, import a local torchvision file \
                         (`leukex weights import resnet18.pth --arch {} --out w.safetensors`) and set \
                         weights = \"w.safetensors\", or train from random init with weights = \"none\"",
                        m.config.arch
                    ),
                })?;
            weights_init(&path)?
        }
        WeightsSource::File(p) => weights_init(p)?,
    };
    let positive =
        leukex_train::positive_class(grid.study.data.positive_class.as_deref(), &ds.classes)
            .map_err(|reason| StudyError::Spec {
                path: grid.out.join("study.toml"),
                reason: format!("data.{reason}"),
            })?;
    let epochs = m.config.epochs;
    leukex_train::train(
        &run_dir,
        &m.config,
        &ds,
        &grid.split,
        init,
        positive,
        resume,
        &mut |e| {
            if let leukex_train::Event::EpochEnd(r) = e {
                obs.within(c, r.epoch + 1, epochs);
            }
        },
    )?;
    drop_checkpoint(&run_dir)
}

/// A finished run keeps its model, not its optimiser state (a VGG19 checkpoint with Adam
/// state is over a gigabyte).
fn drop_checkpoint(run_dir: &Path) -> Result<(), StudyError> {
    let ckpt = run_dir.join("checkpoint");
    if ckpt.exists() {
        std::fs::remove_dir_all(&ckpt).map_err(|e| file_error(&ckpt, e))?;
    }
    Ok(())
}

fn weights_init(path: &Path) -> Result<Init, StudyError> {
    let sd = StateDict::read(path).map_err(|e| file_error(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Init::Weights { sd, name })
}

/// A trained model of the study, in inference mode, with its card.
fn load_trained(
    grid: &Grid,
    m: &ModelPlan,
) -> Result<(Classifier, ModelCard, PathBuf), StudyError> {
    let run_dir = grid.out.join("runs").join(&m.id);
    let (card, weights) = ModelCard::read(&run_dir)?;
    let sd = StateDict::read(&weights).map_err(|e| file_error(&weights, e))?;
    let model = Classifier::from_owned_state_dict(&card.model, sd, &Default::default())
        .map_err(|e| file_error(&weights, e))?
        .valid();
    Ok((model, card, weights))
}

fn explain_cell(
    grid: &Grid,
    m: &ModelPlan,
    stems: &[String],
    methods: &[(Conventions, String, String, String)],
    c: &Cell,
    obs: &dyn Observer,
) -> Result<Record, StudyError> {
    // Methods whose maps an earlier record of this cell vouches for are kept.
    let mut kept: Vec<MethodRecord> = Vec::new();
    let mut old_reports: Vec<(Conventions, Value)> = Vec::new();
    for p in previous_records(grid, c) {
        if let Some(r) = read_record(&p) {
            for mr in r.methods {
                if methods.iter().any(|(_, _, _, k)| *k == mr.key)
                    && !kept.iter().any(|k| k.key == mr.key)
                {
                    kept.push(mr);
                }
            }
            old_reports.extend(r.reports);
        }
    }
    let (model, card, weights) = load_trained(grid, m)?;
    let v = &grid.variants[grid.variant_of(m)];
    let ds = open_variant_data(&grid.study, v)?;
    let paths = stems
        .iter()
        .map(|s| {
            ds.find_stem(s)
                .map(|i| ds.samples[i].image.clone())
                .ok_or_else(|| file_error(&v.data, format!("test image {s} is missing")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let info = ModelInfo {
        id: m.id.clone(),
        weights,
        transform_input: card.model.transform_input,
        card: Some(grid.out.join("runs").join(&m.id).join("model.json")),
        classes: Some(card.classes.clone()),
    };
    let bounds = input_bounds(&card.preprocessing.normalization);
    let target = leukex_explain::Target::parse(&grid.study.explain.target).map_err(|r| {
        StudyError::Spec {
            path: grid.out.join("study.toml"),
            reason: format!("explain.target: {r}"),
        }
    })?;
    let mut record = empty_record(c);
    record.methods = kept.clone();
    for conv in [Conventions::Paper, Conventions::Leukex] {
        let todo: Vec<&(Conventions, String, String, String)> = methods
            .iter()
            .filter(|(cv, _, _, k)| *cv == conv && !kept.iter().any(|mr| mr.key == *k))
            .collect();
        if todo.is_empty() {
            if let Some(r) = old_reports.iter().find(|(cv, _)| *cv == conv) {
                record.reports.push(r.clone());
            }
            continue;
        }
        let params = method_params(&grid.study.explain, conv, bounds.clone());
        let names: Vec<String> = todo.iter().map(|t| t.2.clone()).collect();
        let parsed = parse_methods(&names, &[], &params, &bounds)?;
        let options = explain_options(conv);
        let req = ExplainRequest {
            input: ExplainInput::Images(paths.clone()),
            preprocessing: card.preprocessing.clone(),
            methods: parsed.clone(),
            params: params.clone(),
            options,
            target,
            batch: grid.study.explain.batch,
            keep_channels: false,
            png: true,
            conservation: false,
            write_report: false,
            paper: conv == Conventions::Paper,
            out: grid.out.join("maps"),
        };
        let n = paths.len();
        let summary = run_explain(&model, &info, &req, &|done, _| obs.within(c, done, n))?;
        if !summary.failed.is_empty() {
            let list: Vec<String> = summary.failed.iter().map(|f| f.to_string()).collect();
            return Err(StudyError::Model {
                model: m.id.clone(),
                reason: format!("images not explained: {}", list.join("; ")),
            });
        }
        for (_, file_id, name, key) in todo {
            record.methods.push(MethodRecord {
                conventions: conv,
                name: name.clone(),
                file_id: file_id.clone(),
                key: key.clone(),
            });
        }
        record.reports.push((conv, summary.report));
    }
    Ok(record)
}

/// The file ids of the study's methods for `m`, from its explain records.
fn records_of_model(grid: &Grid, m: &ModelPlan) -> Result<Vec<Record>, StudyError> {
    grid.cells
        .iter()
        .filter(|c| c.stage == Stage::Explain && c.model.as_deref() == Some(m.id.as_str()))
        .map(|c| {
            let p = grid.record_path(c);
            read_record(&p).ok_or_else(|| file_error(&p, "missing or unreadable cell record"))
        })
        .collect()
}

/// `maps/<id>/explain.json` from the model's explain cells: the images of every batch,
/// the methods of both conventions.
fn assemble_explain_json(grid: &Grid, m: &ModelPlan) -> Result<Vec<String>, StudyError> {
    let records = records_of_model(grid, m)?;
    let mut base: Option<Value> = None;
    let mut images = serde_json::Map::new();
    let mut failed = serde_json::Map::new();
    let mut methods: Vec<Value> = Vec::new();
    let mut runs: Vec<Value> = Vec::new();
    let mut file_ids: Vec<String> = Vec::new();
    for r in &records {
        for mr in &r.methods {
            if !file_ids.contains(&mr.file_id) {
                file_ids.push(mr.file_id.clone());
            }
        }
        for (conv, rep) in &r.reports {
            if let Some(o) = rep["images"].as_object() {
                images.extend(o.clone());
            }
            if let Some(o) = rep["failed"].as_object() {
                failed.extend(o.clone());
            }
            for me in rep["methods"].as_array().into_iter().flatten() {
                if !methods.iter().any(|x| x["id"] == me["id"]) {
                    let mut me = me.clone();
                    me["conventions"] = json!(conv);
                    methods.push(me);
                }
            }
            if !runs.iter().any(|x| x["conventions"] == json!(conv)) {
                runs.push(json!({
                    "conventions": conv,
                    "score": rep["score"],
                    "init_relevance": rep["init_relevance"],
                    "cam_style": rep["cam_style"],
                    "preset": rep["preset"],
                }));
            }
            if base.is_none() || *conv == Conventions::Leukex {
                base = Some(rep.clone());
            }
        }
    }
    let mut doc = base.unwrap_or_else(|| json!({}));
    doc["images"] = Value::Object(images);
    doc["failed"] = Value::Object(failed);
    doc["methods"] = Value::Array(methods);
    doc["runs"] = Value::Array(runs);
    doc["note"] = json!(
        "assembled by `leukex run` from its explain cells (one per image batch and conventions); \
         score, init_relevance, cam_style and preset per conventions are under runs"
    );
    // Per-run timings describe one cell's run, not the assembled file.
    if let Some(o) = doc.as_object_mut() {
        o.remove("seconds");
        o.remove("batches");
    }
    let path = grid.out.join("maps").join(&m.id).join("explain.json");
    write_json_atomic(&path, &doc)?;
    Ok(file_ids)
}

fn label_table_of(masks: &Path, labels: Option<&Path>) -> Result<LabelTable, StudyError> {
    let beside = masks.join("labels.json");
    Ok(match labels {
        Some(p) => LabelTable::read_json(p)?,
        None if beside.is_file() => LabelTable::read_json(&beside)?,
        None => LabelTable::leukex_written(),
    })
}

fn evaluate_variant(grid: &Grid, vi: usize) -> Result<(), StudyError> {
    let v = &grid.variants[vi];
    let models: Vec<&ModelPlan> = grid
        .models
        .iter()
        .filter(|m| grid.variant_of(m) == vi)
        .collect();
    let mut methods: Vec<String> = Vec::new();
    for m in &models {
        for id in assemble_explain_json(grid, m)? {
            if !methods.contains(&id) {
                methods.push(id);
            }
        }
    }
    let ev = &grid.study.evaluate;
    let out = grid.out.join(&v.eval);
    let mut opts = EvaluateOptions::new(grid.out.join("maps"), &v.masks, &out);
    opts.label_table = label_table_of(&v.masks, v.labels.as_deref())?;
    opts.modes = ev
        .modes
        .iter()
        .map(|s| s.parse::<Mode>())
        .collect::<Result<_, _>>()
        .map_err(|r| StudyError::Spec {
            path: grid.out.join("study.toml"),
            reason: format!("evaluate.modes: {r}"),
        })?;
    opts.region = Region::parse(&ev.region).map_err(|r| StudyError::Spec {
        path: grid.out.join("study.toml"),
        reason: format!("evaluate.region: {r}"),
    })?;
    opts.models = Some(models.iter().map(|m| m.id.clone()).collect());
    opts.methods = Some(methods);
    opts.resize_maps = false;
    opts.bootstrap_resamples = ev.bootstrap;
    opts.seed = ev.seed;
    evaluate_dir(&opts)?;
    Ok(())
}

fn model_metrics(grid: &Grid, m: &ModelPlan) -> Result<(), StudyError> {
    let v = &grid.variants[grid.variant_of(m)];
    let ids = assemble_explain_json(grid, m)?;
    let (model, card, _) = load_trained(grid, m)?;
    let ev = &grid.study.evaluate;
    let faithfulness = ev
        .faithfulness
        .iter()
        .filter_map(|f| FaithfulnessMetric::parse(f))
        .collect();
    let options = ModelMetricsOptions {
        faithfulness,
        sanity: ev.sanity.clone(),
        granularity: Granularity::Group,
        subset: 0,
        steps: 20,
        patch: 9,
        regions: 20,
        baseline: Baseline::parse("mean").map_err(|r| file_error(&grid.out, r))?,
        road_percentages: vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0],
        model_batch: 32,
        methods_filter: Some(ids),
        baselines: true,
        region: Region::parse(&ev.region).map_err(|r| file_error(&grid.out, r))?,
        seed: ev.seed,
        resamples: ev.bootstrap,
    };
    let sm = StudyModel {
        model: &model,
        id: m.id.clone(),
        preprocessing: card.preprocessing.clone(),
    };
    let out = grid.out.join(&v.eval).join("models").join(&m.id);
    run_model_metrics(&sm, &v.data, &grid.out.join("maps"), &options, &out)?;
    Ok(())
}

/// `study.json` (what the report and the viewer need to know about the study), then the
/// report.
fn write_manifest(grid: &Grid) -> Result<(), StudyError> {
    use leukex_report::{DataInfo, MethodEntry, ModelEntry, STUDY_FORMAT, StudyManifest, Variant};
    let models: Vec<ModelEntry> = grid
        .models
        .iter()
        .map(|m| ModelEntry {
            id: m.id.clone(),
            group: m.group.clone(),
            arch: m.config.arch.as_str().to_string(),
            seed: m.config.seed,
            variant: grid.variants[grid.variant_of(m)].id.clone(),
            image_size: m.config.image_size,
            weights: m.weights.name(),
            epochs: m.config.epochs,
            run: format!("runs/{}", m.id),
            maps: format!("maps/{}", m.id),
        })
        .collect();
    let variants: Vec<Variant> = grid
        .variants
        .iter()
        .map(|v| Variant {
            id: v.id.clone(),
            data: rel(&grid.out, &v.data),
            masks: rel(&grid.out, &v.masks),
            eval: v.eval.clone(),
            shortcut: v.shortcut.map(|s| s.name().to_string()),
        })
        .collect();
    // The methods by their file ids, in the study's order (from the first model's cells).
    let mut methods: Vec<MethodEntry> = Vec::new();
    if let Some(m) = grid.models.first() {
        for r in records_of_model(grid, m)? {
            for mr in &r.methods {
                if !methods.iter().any(|e| e.id == mr.file_id) {
                    methods.push(MethodEntry {
                        id: mr.file_id.clone(),
                        paper: mr.conventions == Conventions::Paper,
                    });
                }
            }
        }
    }
    let order = grid.method_names();
    methods.sort_by_key(|e| {
        order
            .iter()
            .position(|(conv, name)| {
                (*conv == Conventions::Paper) == e.paper && e.id.starts_with(name.as_str())
            })
            .unwrap_or(usize::MAX)
    });
    let v0 = &grid.variants[0];
    let groups_known = if v0.built_in {
        // Built-in crops are drawn one by one: no two share a slide.
        true
    } else {
        let ds: Dataset = open_variant_data(&grid.study, v0)?;
        ds.samples.iter().any(|s| s.group.is_some())
    };
    let data = match &grid.study.data.synth {
        Some(s) => DataInfo {
            kind: "synth".into(),
            description: format!(
                "built-in synthetic ALL-IDB2 ({} crops of {} px, seed {}) with exact masks",
                s.n, s.size, s.seed
            ),
            reproduction: false,
            groups_known,
        },
        None => DataInfo {
            kind: "user".into(),
            description: v0.data.display().to_string(),
            reproduction: false,
            groups_known,
        },
    };
    let notes = grid
        .models
        .iter()
        .filter(|m| {
            m.config.image_size != 224
                || m.weights != WeightsSource::ImageNet
                || m.config.augment_per_class != 1000
        })
        .map(|m| {
            format!(
                "{}: {} for {} epochs at {} px on {} augmented images per class (the paper: ImageNet weights, 224 px, 1000 per class)",
                m.id,
                match &m.weights {
                    WeightsSource::Scratch => "trained from random init".to_string(),
                    WeightsSource::ImageNet => "fine-tuned from ImageNet weights".to_string(),
                    WeightsSource::File(p) => format!("fine-tuned from {}", p.display()),
                },
                m.config.epochs,
                m.config.image_size,
                m.config.augment_per_class
            )
        })
        .collect();
    let manifest = StudyManifest {
        format: STUDY_FORMAT.into(),
        name: grid.study.name.clone(),
        quick: grid.study.name == "quick",
        data,
        variants,
        models,
        methods,
        notes,
    };
    write_json_atomic(&grid.out.join("study.json"), &manifest)?;
    leukex_report::write_report(&grid.out)?;
    Ok(())
}
