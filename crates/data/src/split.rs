//! Stratified, seeded train / validation / test splits (paper §3.1).
//!
//! The paper kept 30 never-seen test images per class of ALL-IDB2 (130 blast,
//! 130 healthy → 200 train / 60 test). A validation share, when asked for, is
//! carved from each class's remaining *source* images before augmentation, so
//! augmented copies of one image never sit on both sides. With
//! [`SplitConfig::group_split`] every group (e.g. a slide or patient) lies on
//! one side only.
//!
//! The split is independent of how images are found on disk: it takes plain
//! [`SplitItem`]s and is written to `split.json` so later stages, and other
//! machines, reuse it exactly.
//!
//! # Determinism
//!
//! Every shuffle is a Fisher–Yates shuffle driven by a ChaCha8 stream seeded
//! from [`SplitConfig::seed`], with leukex's own bounded sampling (no
//! `rand` distribution whose values may change between versions), and each
//! class's items are sorted by stem before shuffling. The same items and
//! config therefore give the same split on every platform, whatever order the
//! items come in, and the written JSON is byte-identical.

use crate::error::{DataError, Result};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// The `format` tag of a `split.json`.
pub const SPLIT_FORMAT: &str = "leukex-split/1";

/// One image to split: its stem (unique), its class index and, optionally,
/// the group it must stay with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitItem {
    pub stem: String,
    pub label: usize,
    pub group: Option<String>,
}

impl SplitItem {
    /// The items of a data set: each image's stem, class and group.
    pub fn of(ds: &crate::dataset::Dataset) -> Vec<SplitItem> {
        ds.samples
            .iter()
            .map(|s| SplitItem {
                stem: s.stem.clone(),
                label: s.label,
                group: s.group.clone(),
            })
            .collect()
    }
}

/// How many images of each class go to the test side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSize {
    /// This many images of every class.
    PerClass(usize),
    /// This share of every class (0 < f < 1), rounded to the nearest count
    /// and at least 1.
    Fraction(f64),
}

/// Settings of a split. The default is the paper's: seed 0, 30 test images
/// per class, no validation side, no groups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    pub seed: u64,
    pub test: TestSize,
    /// Share of each class's training source images (after the test images
    /// are taken, before augmentation) put on the validation side; 0 ≤ f < 1.
    pub val_fraction: f64,
    /// Keep every group on one side only.
    pub group_split: bool,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            seed: 0,
            test: TestSize::PerClass(30),
            val_fraction: 0.0,
            group_split: false,
        }
    }
}

/// The three sides of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Train,
    Val,
    Test,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Train, Side::Val, Side::Test];

    pub fn name(self) -> &'static str {
        match self {
            Side::Train => "train",
            Side::Val => "val",
            Side::Test => "test",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-class counts of a split, for humans reading `split.json`. The quotas
/// are what was asked for; with groups the achieved counts may differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSplitCounts {
    pub class: String,
    pub total: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    pub test_quota: usize,
    pub val_quota: usize,
}

/// A train / validation / test split, as written to `split.json`.
/// The stems of each side are sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Always [`SPLIT_FORMAT`].
    pub format: String,
    pub seed: u64,
    pub config: SplitConfig,
    pub classes: Vec<String>,
    /// Counts per class and side (same order as `classes`).
    pub counts: Vec<ClassSplitCounts>,
    /// With `group_split`: how many groups (items without a group count as
    /// their own group) went to each side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupCounts>,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

/// How many groups lie on each side of a group split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCounts {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("invalid split settings: {0}")]
    Config(String),
    #[error("image `{0}` is listed twice")]
    DuplicateStem(String),
    #[error("image `{stem}` has class index {label}, but there are only {classes} classes")]
    LabelOutOfRange {
        stem: String,
        label: usize,
        classes: usize,
    },
    #[error(
        "class `{class}` has {available} image(s); {test} test image(s) plus at least one training image are needed"
    )]
    TooFewImages {
        class: String,
        available: usize,
        test: usize,
    },
}

impl Split {
    /// Splits `items` per class: a seeded shuffle of each class, the first
    /// test quota to the test side, then the validation share of the rest,
    /// then training. With `cfg.group_split`, see [`SplitConfig::group_split`]
    /// and the module docs: whole groups are assigned greedily.
    pub fn stratified(
        items: &[SplitItem],
        classes: &[String],
        cfg: &SplitConfig,
    ) -> std::result::Result<Split, SplitError> {
        validate_config(cfg)?;
        if classes.is_empty() {
            return Err(SplitError::Config("no classes given".into()));
        }
        let mut seen = BTreeSet::new();
        for it in items {
            if !seen.insert(it.stem.as_str()) {
                return Err(SplitError::DuplicateStem(it.stem.clone()));
            }
            if it.label >= classes.len() {
                return Err(SplitError::LabelOutOfRange {
                    stem: it.stem.clone(),
                    label: it.label,
                    classes: classes.len(),
                });
            }
        }
        // Items of each class, sorted by stem (independent of input order).
        let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
        for (i, it) in items.iter().enumerate() {
            per_class[it.label].push(i);
        }
        for list in &mut per_class {
            list.sort_by(|&a, &b| items[a].stem.cmp(&items[b].stem));
        }
        let mut test_quota = Vec::with_capacity(classes.len());
        for (c, list) in per_class.iter().enumerate() {
            let n = list.len();
            let q = test_count(cfg.test, n);
            if n < q + 1 {
                return Err(SplitError::TooFewImages {
                    class: classes[c].clone(),
                    available: n,
                    test: q,
                });
            }
            test_quota.push(q);
        }

        let mut side = vec![Side::Train; items.len()];
        let mut val_quota = vec![0; classes.len()];
        let mut groups = None;
        if cfg.group_split {
            groups = Some(group_assign(
                items,
                &per_class,
                &test_quota,
                &mut val_quota,
                cfg,
                &mut side,
            ));
        } else {
            for (c, list) in per_class.iter().enumerate() {
                let mut order = list.clone();
                let mut rng = class_rng(cfg.seed, c);
                shuffle(&mut order, &mut rng);
                let remaining = order.len() - test_quota[c];
                val_quota[c] = val_count(cfg.val_fraction, remaining);
                for (k, &i) in order.iter().enumerate() {
                    side[i] = if k < test_quota[c] {
                        Side::Test
                    } else if k < test_quota[c] + val_quota[c] {
                        Side::Val
                    } else {
                        Side::Train
                    };
                }
            }
        }

        let mut split = Split {
            format: SPLIT_FORMAT.to_string(),
            seed: cfg.seed,
            config: *cfg,
            classes: classes.to_vec(),
            counts: Vec::new(),
            groups,
            train: Vec::new(),
            val: Vec::new(),
            test: Vec::new(),
        };
        for (c, name) in classes.iter().enumerate() {
            let count = |s: Side| per_class[c].iter().filter(|&&i| side[i] == s).count();
            split.counts.push(ClassSplitCounts {
                class: name.clone(),
                total: per_class[c].len(),
                train: count(Side::Train),
                val: count(Side::Val),
                test: count(Side::Test),
                test_quota: test_quota[c],
                val_quota: val_quota[c],
            });
        }
        for (i, it) in items.iter().enumerate() {
            split.side_list_mut(side[i]).push(it.stem.clone());
        }
        split.train.sort();
        split.val.sort();
        split.test.sort();
        Ok(split)
    }

    fn side_list_mut(&mut self, side: Side) -> &mut Vec<String> {
        match side {
            Side::Train => &mut self.train,
            Side::Val => &mut self.val,
            Side::Test => &mut self.test,
        }
    }

    /// The stems of one side.
    pub fn side(&self, side: Side) -> &[String] {
        match side {
            Side::Train => &self.train,
            Side::Val => &self.val,
            Side::Test => &self.test,
        }
    }

    /// Which side `stem` is on, if it is in the split.
    pub fn side_of(&self, stem: &str) -> Option<Side> {
        Side::ALL
            .into_iter()
            .find(|&s| self.side(s).iter().any(|x| x == stem))
    }

    /// Writes the split as pretty JSON, atomically. The bytes depend only on
    /// the split.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_json_atomic(path, self)
    }

    /// Reads a `split.json`; every error names the file.
    pub fn read_json(path: &Path) -> Result<Split> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let split: Split = serde_json::from_str(&text)
            .map_err(|e| DataError::invalid(path, format!("not a leukex split file: {e}")))?;
        if split.format != SPLIT_FORMAT {
            return Err(DataError::invalid(
                path,
                format!(
                    "split format is `{}`, this leukex reads `{SPLIT_FORMAT}`",
                    split.format
                ),
            ));
        }
        if split.seed != split.config.seed {
            return Err(DataError::invalid(
                path,
                format!(
                    "seed {} disagrees with config.seed {}",
                    split.seed, split.config.seed
                ),
            ));
        }
        let mut seen: BTreeMap<&str, Side> = BTreeMap::new();
        for s in Side::ALL {
            for stem in split.side(s) {
                if let Some(prev) = seen.insert(stem.as_str(), s) {
                    return Err(DataError::invalid(
                        path,
                        format!("image `{stem}` is listed on both the {prev} and the {s} side"),
                    ));
                }
            }
        }
        Ok(split)
    }
}

fn validate_config(cfg: &SplitConfig) -> std::result::Result<(), SplitError> {
    match cfg.test {
        TestSize::Fraction(f) if !(f > 0.0 && f < 1.0) => {
            return Err(SplitError::Config(format!(
                "test fraction {f} is not between 0 and 1"
            )));
        }
        _ => {}
    }
    if !(cfg.val_fraction >= 0.0 && cfg.val_fraction < 1.0) {
        return Err(SplitError::Config(format!(
            "validation fraction {} is not in [0, 1)",
            cfg.val_fraction
        )));
    }
    Ok(())
}

/// Test images asked of a class with `n` images.
fn test_count(test: TestSize, n: usize) -> usize {
    match test {
        TestSize::PerClass(k) => k,
        TestSize::Fraction(f) => {
            if n == 0 {
                0
            } else {
                ((f * n as f64).round() as usize).max(1)
            }
        }
    }
}

/// Validation images taken from `remaining` training sources: the rounded
/// share, at least 1 when the share is positive, always leaving one for
/// training.
fn val_count(f: f64, remaining: usize) -> usize {
    if f <= 0.0 || remaining < 2 {
        return 0;
    }
    ((f * remaining as f64).round() as usize).clamp(1, remaining - 1)
}

/// The stream of class `c`: classes are shuffled independently.
fn class_rng(seed: u64, c: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(c as u64);
    rng
}

/// The stream used to order groups.
const GROUP_STREAM: u64 = 1 << 40;

/// A uniform integer in `0..n` (n > 0) by Lemire's widening multiply with
/// rejection; depends only on the ChaCha8 stream.
pub(crate) fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    assert!(n > 0);
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher–Yates shuffle.
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Assigns whole groups: test quotas first, then validation quotas, each
/// greedily over the seeded group order; a group is taken when it lowers the
/// summed |quota − count| over classes and leaves every class at least one
/// training image. Returns how many groups went to each side.
fn group_assign(
    items: &[SplitItem],
    per_class: &[Vec<usize>],
    test_quota: &[usize],
    val_quota: &mut [usize],
    cfg: &SplitConfig,
    side: &mut [Side],
) -> GroupCounts {
    let n_classes = per_class.len();
    // Group key: named groups and single items never collide.
    let mut groups: BTreeMap<(bool, &str), Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        let key = match &it.group {
            Some(g) => (false, g.as_str()),
            None => (true, it.stem.as_str()),
        };
        groups.entry(key).or_default().push(i);
    }
    let mut order: Vec<Vec<usize>> = groups.into_values().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(GROUP_STREAM);
    shuffle(&mut order, &mut rng);
    let class_counts = |g: &[usize]| {
        let mut c = vec![0usize; n_classes];
        for &i in g {
            c[items[i].label] += 1;
        }
        c
    };
    let group_counts: Vec<Vec<usize>> = order.iter().map(|g| class_counts(g)).collect();
    let mut train_left: Vec<usize> = per_class.iter().map(Vec::len).collect();
    let mut assigned: Vec<Option<Side>> = vec![None; order.len()];

    let mut fill = |target: Side, quota: &[usize], assigned: &mut Vec<Option<Side>>| {
        let mut count = vec![0usize; n_classes];
        for (g, gc) in group_counts.iter().enumerate() {
            if assigned[g].is_some() {
                continue;
            }
            let mut delta: i64 = 0;
            let mut leaves_train = true;
            for c in 0..n_classes {
                if gc[c] == 0 {
                    continue;
                }
                let before = (quota[c] as i64 - count[c] as i64).abs();
                let after = (quota[c] as i64 - (count[c] + gc[c]) as i64).abs();
                delta += after - before;
                if gc[c] >= train_left[c] {
                    leaves_train = false;
                }
            }
            if delta < 0 && leaves_train {
                assigned[g] = Some(target);
                for c in 0..n_classes {
                    count[c] += gc[c];
                    train_left[c] -= gc[c];
                }
            }
        }
    };
    fill(Side::Test, test_quota, &mut assigned);
    // Validation quotas from what the test side left.
    let mut remaining = vec![0usize; n_classes];
    for (g, gc) in group_counts.iter().enumerate() {
        if assigned[g].is_none() {
            for c in 0..n_classes {
                remaining[c] += gc[c];
            }
        }
    }
    for c in 0..n_classes {
        val_quota[c] = val_count(cfg.val_fraction, remaining[c]);
    }
    if val_quota.iter().any(|&q| q > 0) {
        fill(Side::Val, val_quota, &mut assigned);
    }
    let mut counts = GroupCounts {
        train: 0,
        val: 0,
        test: 0,
    };
    for (g, members) in order.iter().enumerate() {
        let s = assigned[g].unwrap_or(Side::Train);
        match s {
            Side::Train => counts.train += 1,
            Side::Val => counts.val += 1,
            Side::Test => counts.test += 1,
        }
        for &i in members {
            side[i] = s;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_idb2() -> (Vec<SplitItem>, Vec<String>) {
        let mut items = Vec::new();
        for i in 1..=260 {
            items.push(SplitItem {
                stem: format!("Im{i:03}_{}", usize::from(i <= 130)),
                label: usize::from(i <= 130),
                group: None,
            });
        }
        (items, vec!["healthy".into(), "blast".into()])
    }

    fn json(split: &Split) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("split.json");
        split.write_json(&p).unwrap();
        std::fs::read(&p).unwrap()
    }

    #[test]
    fn default_split_is_exactly_30_per_class() {
        let (items, classes) = all_idb2();
        let s = Split::stratified(&items, &classes, &SplitConfig::default()).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (200, 0, 60));
        for c in &s.counts {
            assert_eq!((c.total, c.train, c.val, c.test), (130, 100, 0, 30));
        }
        let test_blast = s.test.iter().filter(|t| t.ends_with("_1")).count();
        assert_eq!(test_blast, 30);
    }

    #[test]
    fn sides_are_disjoint_and_complete() {
        let (items, classes) = all_idb2();
        let cfg = SplitConfig {
            val_fraction: 0.2,
            ..SplitConfig::default()
        };
        let s = Split::stratified(&items, &classes, &cfg).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (160, 40, 60));
        let mut all: Vec<&String> = s.train.iter().chain(&s.val).chain(&s.test).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 260);
        for it in &items {
            assert!(s.side_of(&it.stem).is_some());
        }
        assert_eq!(s.side_of("nope"), None);
        for c in &s.counts {
            assert_eq!((c.train, c.val, c.test), (80, 20, 30));
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_split_any_input_order() {
        let (items, classes) = all_idb2();
        let cfg = SplitConfig {
            val_fraction: 0.1,
            ..SplitConfig::default()
        };
        let a = Split::stratified(&items, &classes, &cfg).unwrap();
        let mut reversed = items.clone();
        reversed.reverse();
        let b = Split::stratified(&reversed, &classes, &cfg).unwrap();
        assert_eq!(json(&a), json(&b));
        let c = Split::stratified(&items, &classes, &SplitConfig { seed: 1, ..cfg }).unwrap();
        assert_ne!(a.test, c.test);
        assert_ne!(json(&a), json(&c));
    }

    #[test]
    fn fraction_and_too_few_images() {
        let (items, classes) = all_idb2();
        let cfg = SplitConfig {
            test: TestSize::Fraction(0.25),
            ..SplitConfig::default()
        };
        let s = Split::stratified(&items, &classes, &cfg).unwrap();
        assert_eq!(s.test.len(), 66); // round(32.5) = 33 per class
        let few: Vec<SplitItem> = items
            .iter()
            .filter(|i| i.label == 1)
            .take(30)
            .cloned()
            .collect();
        let mut few = few;
        few.extend(items.iter().filter(|i| i.label == 0).cloned());
        let err = Split::stratified(&few, &classes, &SplitConfig::default()).unwrap_err();
        assert!(
            matches!(&err, SplitError::TooFewImages { class, available: 30, test: 30 } if class == "blast"),
            "{err}"
        );
        let bad = SplitConfig {
            val_fraction: 1.0,
            ..SplitConfig::default()
        };
        assert!(Split::stratified(&items, &classes, &bad).is_err());
        let mut dup = items.clone();
        dup.push(items[3].clone());
        assert_eq!(
            Split::stratified(&dup, &classes, &SplitConfig::default()).unwrap_err(),
            SplitError::DuplicateStem(items[3].stem.clone())
        );
    }

    #[test]
    fn group_split_keeps_groups_on_one_side_and_meets_quotas() {
        // 130 + 130 images in groups of 1..=5 (like crops of one slide),
        // plus some ungrouped ones.
        let (mut items, classes) = all_idb2();
        for (k, it) in items.iter_mut().enumerate() {
            if k % 13 != 0 {
                it.group = Some(format!("slide{}_{}", it.label, (k * 7) % 40));
            }
        }
        let cfg = SplitConfig {
            val_fraction: 0.2,
            group_split: true,
            ..SplitConfig::default()
        };
        let s = Split::stratified(&items, &classes, &cfg).unwrap();
        let mut group_side: BTreeMap<&str, Side> = BTreeMap::new();
        for it in &items {
            let side = s.side_of(&it.stem).unwrap();
            if let Some(g) = &it.group {
                let prev = *group_side.entry(g).or_insert(side);
                assert_eq!(prev, side, "group {g} on two sides");
            }
        }
        for c in &s.counts {
            assert_eq!(c.total, c.train + c.val + c.test);
            assert!(c.test.abs_diff(30) <= 3, "{c:?}");
            assert!(c.val.abs_diff(c.val_quota) <= 3, "{c:?}");
            assert!(c.train > 0);
        }
        let g = s.groups.unwrap();
        assert!(g.test > 0 && g.val > 0 && g.train > 0);
        // Deterministic too.
        assert_eq!(
            json(&s),
            json(&Split::stratified(&items, &classes, &cfg).unwrap())
        );
    }

    #[test]
    fn group_split_never_takes_a_class_s_last_training_group() {
        // Class 1 is one big group: it cannot go to test.
        let items: Vec<SplitItem> = (0..20)
            .map(|i| SplitItem {
                stem: format!("s{i}"),
                label: usize::from(i >= 10),
                group: (i >= 10).then(|| "one".to_string()),
            })
            .collect();
        let cfg = SplitConfig {
            test: TestSize::PerClass(2),
            group_split: true,
            ..SplitConfig::default()
        };
        let s = Split::stratified(&items, &["a".into(), "b".into()], &cfg).unwrap();
        assert_eq!((s.counts[0].test, s.counts[1].test), (2, 0));
        assert_eq!(s.counts[1].train, 10);
    }

    #[test]
    fn json_round_trip_and_corrupt_file_named() {
        let (items, classes) = all_idb2();
        let s = Split::stratified(&items, &classes, &SplitConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("split.json");
        s.write_json(&p).unwrap();
        assert_eq!(Split::read_json(&p).unwrap(), s);

        std::fs::write(&p, b"{\"format\": \"leukex-split/1\", \"seed\": ").unwrap();
        let err = Split::read_json(&p).unwrap_err().to_string();
        assert!(
            err.contains("split.json") && err.contains("not a leukex split"),
            "{err}"
        );

        let mut bad = s.clone();
        bad.train.push(bad.test[0].clone());
        bad.write_json(&p).unwrap();
        let err = Split::read_json(&p).unwrap_err().to_string();
        assert!(err.contains("split.json") && err.contains("both"), "{err}");

        let err = Split::read_json(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }

    #[test]
    fn below_is_uniform_enough_and_shuffle_is_a_permutation() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut hist = [0usize; 3];
        for _ in 0..30_000 {
            hist[below(&mut rng, 3) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&h| (9_500..10_500).contains(&h)),
            "{hist:?}"
        );
        let mut v: Vec<usize> = (0..100).collect();
        shuffle(&mut v, &mut rng);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
