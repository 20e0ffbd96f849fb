//! `leukex data ...`: check, summarise, split and augment a data set.

use crate::progress;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leukex_data::augment::{self, AugmentItem};
use leukex_data::dataset::{Dataset, Layout, OpenOptions};
use leukex_data::split::{Split, SplitConfig, SplitItem, TestSize};
use leukex_data::{LabelTable, fsutil, image_io};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DataCommand {
    /// List every problem in a data set at once; exit non-zero if there is any.
    Check(DatasetArgs),
    /// Images per class and the area share of each morphology class (the chance levels).
    Summary {
        #[command(flatten)]
        data: DatasetArgs,
        /// Also write the summary as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Stratified, seeded train/validation/test split, written to split.json.
    Split {
        #[command(flatten)]
        data: DatasetArgs,
        #[command(flatten)]
        split: SplitArgs,
        /// Where to write the split.
        #[arg(long, default_value = "split.json")]
        out: PathBuf,
    },
    /// Write the augmented training set (rotations and reflections) of a split.
    Augment {
        #[command(flatten)]
        data: DatasetArgs,
        /// The split whose training images are augmented.
        #[arg(long)]
        split: PathBuf,
        /// Images per class after augmentation.
        #[arg(long, default_value_t = 1000)]
        per_class: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder (images, masks/, manifest.csv); files already there are kept.
        #[arg(long)]
        out: PathBuf,
    },
    /// A complete masks folder for `leukex evaluate --masks`: every mask of MASKS, the latest correction painted in `leukex serve` (MASKS/corrected/) in its place, and the label table.
    AssembleMasks {
        /// The original masks folder (holding corrected/).
        masks: PathBuf,
        /// Where the assembled folder goes (not inside MASKS).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct DatasetArgs {
    /// Data folder: ALL-IDB2 (ImNNN_Y.tif), one folder per class, or a manifest.csv.
    pub dir: PathBuf,
    /// Layout (default: detected): all-idb2, folders, manifest.
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Folder of mask PNGs (default: DIR/masks or DIR/PixelLabelData).
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Label table JSON mapping mask ids to classes (default: labels.json beside the masks).
    #[arg(long, conflicts_with = "label_map")]
    pub labels: Option<PathBuf>,
    /// Label table inline, e.g. 0=background,1=nucleus,2=cytoplasm,3=vacuole,4=rbc.
    #[arg(long)]
    pub label_map: Option<String>,
    /// Every image must have a mask.
    #[arg(long)]
    pub require_masks: bool,
    /// Class order for folder or manifest names, e.g. healthy,all.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
}

impl DatasetArgs {
    fn options(&self) -> Result<OpenOptions> {
        let label_table = match (&self.labels, &self.label_map) {
            (Some(path), _) => Some(LabelTable::read_json(path)?),
            (None, Some(spec)) => Some(
                LabelTable::parse_spec(spec).map_err(|e| anyhow::anyhow!("--label-map: {e}"))?,
            ),
            (None, None) => None,
        };
        Ok(OpenOptions {
            layout: self.layout,
            masks: self.masks.clone(),
            label_table,
            require_masks: self.require_masks,
            classes: self.classes.clone(),
        })
    }

    pub(crate) fn open(&self) -> Result<Dataset> {
        Dataset::open(&self.dir, &self.options()?)
            .with_context(|| format!("cannot open data set {}", self.dir.display()))
    }
}

#[derive(Args)]
pub struct SplitArgs {
    /// Seed of the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Never-seen test images per class (ALL-IDB2: 30 → 200/60).
    #[arg(long, default_value_t = 30, conflicts_with = "test_fraction")]
    test_per_class: usize,
    /// Test share of each class instead of a count.
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Validation share of each class's training source images (before augmentation).
    #[arg(long, default_value_t = 0.0)]
    val_fraction: f64,
    /// Keep every group (the manifest's group column, e.g. slide) on one side only.
    #[arg(long)]
    group_split: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Check(args) => check(&args),
        DataCommand::Summary { data, json } => summary(&data, json.as_deref()),
        DataCommand::Split { data, split, out } => split_cmd(&data, &split, &out),
        DataCommand::Augment {
            data,
            split,
            per_class,
            seed,
            out,
        } => augment_cmd(&data, &split, per_class, seed, &out),
        DataCommand::AssembleMasks { masks, out } => {
            let a = leukex_web::correct::assemble(&masks, &out)?;
            println!(
                "{} masks as they were, {} corrected; wrote {}",
                a.originals,
                a.corrected,
                out.display()
            );
            Ok(())
        }
    }
}

fn check(args: &DatasetArgs) -> Result<()> {
    let report = leukex_data::check::check(&args.dir, &args.options()?);
    let classes: Vec<String> = report
        .classes
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    println!(
        "{}: {} images, {} masks; classes {}",
        args.dir.display(),
        report.images,
        report.masks,
        if classes.is_empty() {
            "none".to_string()
        } else {
            classes.join(", ")
        }
    );
    for p in &report.problems {
        println!("problem: {p}");
    }
    if report.problems.is_empty() {
        println!("no problems found");
        Ok(())
    } else {
        bail!(
            "{} problem(s) in {}",
            report.problems.len(),
            args.dir.display()
        )
    }
}

fn summary(args: &DatasetArgs, json: Option<&Path>) -> Result<()> {
    let ds = args.open()?;
    let summary = leukex_data::summary::summarize(&ds)?;
    print!("{}", summary.to_markdown());
    if let Some(path) = json {
        fsutil::write_json_atomic(path, &summary)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The stratified split of `ds` (found at `dir`) with `cfg`.
pub(crate) fn make_split(ds: &Dataset, dir: &Path, cfg: &SplitConfig) -> Result<Split> {
    let items = SplitItem::of(ds);
    if cfg.group_split && items.iter().all(|i| i.group.is_none()) {
        bail!(
            "--group-split: {} has no groups (give a manifest.csv with a group column)",
            dir.display()
        );
    }
    Ok(Split::stratified(&items, &ds.classes, cfg)?)
}

fn split_cmd(data: &DatasetArgs, args: &SplitArgs, out: &Path) -> Result<()> {
    let ds = data.open()?;
    let cfg = SplitConfig {
        seed: args.seed,
        test: match args.test_fraction {
            Some(f) => TestSize::Fraction(f),
            None => TestSize::PerClass(args.test_per_class),
        },
        val_fraction: args.val_fraction,
        group_split: args.group_split,
    };
    let split = make_split(&ds, &data.dir, &cfg)?;
    split.write_json(out)?;
    println!(
        "train {} / val {} / test {} images; wrote {}",
        split.train.len(),
        split.val.len(),
        split.test.len(),
        out.display()
    );
    Ok(())
}

/// Writes the augmented training set. Each output file is written atomically
/// and files already present are kept, so an interrupted run resumes.
fn augment_cmd(
    data: &DatasetArgs,
    split_path: &Path,
    per_class: usize,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let ds = data.open()?;
    let split = Split::read_json(split_path)?;
    let by_stem: HashMap<&str, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (s.stem.as_str(), i))
        .collect();
    let mut sources = Vec::new();
    for stem in &split.train {
        let &i = by_stem.get(stem.as_str()).with_context(|| {
            format!(
                "{}: training image {stem} is not in {}",
                split_path.display(),
                data.dir.display()
            )
        })?;
        sources.push((stem.clone(), ds.samples[i].label));
    }
    let plan = augment::plan(&sources, per_class, seed);
    let bar = progress::bar(plan.len() as u64, "augmenting");
    let write_one = |item: &AugmentItem| -> Result<()> {
        let i = by_stem[item.source.as_str()];
        let image_path = out.join(format!("{}.png", item.name));
        let mask_path = out.join("masks").join(format!("{}.png", item.name));
        let has_mask = ds.samples[i].mask.is_some();
        if !(image_path.exists() && (!has_mask || mask_path.exists())) {
            let img = ds.load_image(i)?;
            if let Some(mask) = ds.load_mask(i)? {
                augment::apply_mask(&mask, &item.transform).write_png(&mask_path)?;
            }
            image_io::write_rgb(&image_path, &augment::apply_image(&img, &item.transform))?;
        }
        bar.inc(1);
        Ok(())
    };
    plan.par_iter().try_for_each(write_one)?;
    bar.finish_and_clear();
    let mut manifest = String::from("path,label,mask,group\n");
    for item in &plan {
        let has_mask = ds.samples[by_stem[item.source.as_str()]].mask.is_some();
        let mask = if has_mask {
            format!("masks/{}.png", item.name)
        } else {
            String::new()
        };
        // The source stem is the group: copies of one image belong together.
        manifest.push_str(&format!(
            "{}.png,{},{},{}\n",
            item.name, item.label, mask, item.source
        ));
    }
    fsutil::write_bytes_atomic(&out.join("manifest.csv"), manifest.as_bytes())?;
    // Integer labels keep their class names through classes.txt.
    let names: String = ds.classes.iter().map(|c| format!("{c}\n")).collect();
    fsutil::write_bytes_atomic(
        &out.join(leukex_data::dataset::CLASSES_FILE),
        names.as_bytes(),
    )?;
    if ds.samples.iter().any(|s| s.mask.is_some()) {
        LabelTable::leukex_written().write_json(&out.join("masks").join("labels.json"))?;
    }
    println!(
        "{} augmented training images in {}",
        plan.len(),
        out.display()
    );
    Ok(())
}
