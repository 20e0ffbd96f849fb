//! The images a run trains, validates and tests on, preprocessed into memory once:
//! the training side augmented (paper §3.1: rotation and reflection to N per class) from
//! the source images, validation and test sides as they are.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::{FloatDType, Int};
use leukex_data::augment;
use leukex_data::dataset::Dataset;
use leukex_data::preprocess::Preprocessing;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::TrainError;

/// Preprocessed images `[N, 3, H, W]` (row-major), their labels and names.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub data: Vec<f32>,
    pub labels: Vec<usize>,
    pub names: Vec<String>,
    /// `[3, H, W]`.
    pub chw: [usize; 3],
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_len(&self) -> usize {
        self.chw.iter().product()
    }

    /// The images at `idx` as a batch on `device` with `dtype`, and their labels.
    pub fn batch(
        &self,
        idx: &[usize],
        device: &Device,
        dtype: FloatDType,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let len = self.image_len();
        let mut x = Vec::with_capacity(idx.len() * len);
        for &i in idx {
            x.extend_from_slice(&self.data[i * len..(i + 1) * len]);
        }
        let [c, h, w] = self.chw;
        let x = Tensor::<4>::from_data(TensorData::new(x, [idx.len(), c, h, w]), device);
        let x = if dtype == FloatDType::F32 {
            x
        } else {
            x.cast(dtype)
        };
        let y: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [idx.len()]), device);
        (x, y)
    }

    /// Number of images of each of `k` classes.
    pub fn class_counts(&self, k: usize) -> Vec<usize> {
        let mut c = vec![0; k];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }
}

fn index_of(ds: &Dataset, stem: &str, side: &str) -> Result<usize, TrainError> {
    ds.find_stem(stem).ok_or_else(|| TrainError::Data {
        path: ds.root.clone(),
        reason: format!("the split's {side} image {stem} is not in the data set"),
    })
}

/// The images named `stems`, preprocessed, not augmented.
pub fn load_images(
    ds: &Dataset,
    stems: &[String],
    side: &str,
    prep: &Preprocessing,
) -> Result<Images, TrainError> {
    let idx: Vec<usize> = stems
        .iter()
        .map(|s| index_of(ds, s, side))
        .collect::<Result<_, _>>()?;
    let chws: Vec<_> = idx
        .par_iter()
        .map(|&i| ds.load_image(i).map(|img| prep.apply(&img)))
        .collect::<Result<_, _>>()?;
    Ok(collect(
        chws,
        idx.iter().map(|&i| ds.samples[i].label).collect(),
        stems.to_vec(),
        prep,
    ))
}

/// The training side augmented to `per_class` images per class with
/// [`augment::plan`] (the same plan `leukex data augment` writes, same seed), each
/// augmented image preprocessed. `per_class = 0`: no augmentation.
pub fn load_augmented(
    ds: &Dataset,
    train_stems: &[String],
    per_class: usize,
    seed: u64,
    prep: &Preprocessing,
) -> Result<Images, TrainError> {
    if per_class == 0 {
        return load_images(ds, train_stems, "training", prep);
    }
    let mut sources = Vec::new();
    let mut by_stem = BTreeMap::new();
    for stem in train_stems {
        let i = index_of(ds, stem, "training")?;
        sources.push((stem.clone(), ds.samples[i].label));
        by_stem.insert(stem.as_str(), i);
    }
    // Decode every source once.
    let decoded: BTreeMap<&str, _> = by_stem
        .par_iter()
        .map(|(&s, &i)| ds.load_image(i).map(|img| (s, img)))
        .collect::<Result<_, _>>()?;
    let plan = augment::plan(&sources, per_class, seed);
    let chws: Vec<_> = plan
        .par_iter()
        .map(|item| {
            let img = &decoded[item.source.as_str()];
            prep.apply(&augment::apply_image(img, &item.transform))
        })
        .collect();
    Ok(collect(
        chws,
        plan.iter().map(|p| p.label).collect(),
        plan.iter().map(|p| p.name.clone()).collect(),
        prep,
    ))
}

fn collect(
    chws: Vec<leukex_data::preprocess::ChwImage>,
    labels: Vec<usize>,
    names: Vec<String>,
    prep: &Preprocessing,
) -> Images {
    let chw = [3, prep.size[0] as usize, prep.size[1] as usize];
    let mut data = Vec::with_capacity(chws.len() * chw.iter().product::<usize>());
    for c in chws {
        data.extend_from_slice(&c.data);
    }
    Images {
        data,
        labels,
        names,
        chw,
    }
}

/// Fisher–Yates with leukex's unbiased bounded draw (no `rand` distribution whose values
/// could change between versions).
fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let bound = (i + 1) as u64;
        let zone = u64::MAX - (u64::MAX % bound);
        let j = loop {
            let r = rng.next_u64();
            if r < zone {
                break (r % bound) as usize;
            }
        };
        v.swap(i, j);
    }
}

/// Stream of the ChaCha8 generator that orders epoch `epoch`'s images: apart from the
/// split's and the augmentation's streams.
const EPOCH_STREAM: u64 = 2 << 48;

/// The order of epoch `epoch`: a seeded shuffle (same seed and epoch, same order, so a
/// resumed run sees the batches an uninterrupted one would). `balanced`: classes take
/// turns (each class's images shuffled, smaller classes cycled up to the largest one),
/// so every batch holds the classes in equal shares.
pub fn epoch_order(labels: &[usize], epoch: usize, seed: u64, balanced: bool) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(EPOCH_STREAM + epoch as u64);
    if !balanced {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        shuffle(&mut order, &mut rng);
        return order;
    }
    let k = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        per_class[l].push(i);
    }
    per_class.retain(|c| !c.is_empty());
    for c in &mut per_class {
        shuffle(c, &mut rng);
    }
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::with_capacity(longest * per_class.len());
    for j in 0..longest {
        for c in &per_class {
            order.push(c[j % c.len()]);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_seeded_and_balanced() {
        let labels = [0, 0, 0, 0, 1, 1, 0, 0];
        let a = epoch_order(&labels, 3, 7, false);
        assert_eq!(a, epoch_order(&labels, 3, 7, false));
        assert_ne!(a, epoch_order(&labels, 4, 7, false));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        let b = epoch_order(&labels, 0, 7, true);
        assert_eq!(b.len(), 12); // 6 healthy + 2 blasts cycled to 6
        for pair in b.chunks(2) {
            assert_eq!(labels[pair[0]] + labels[pair[1]], 1, "{b:?}");
        }
    }
}
