//! Blinded rating rounds: the rating scale, and which maps a rater sees in which order.
//!
//! The sample is the same for every rater (so their ratings can be compared): up to
//! `per_stratum` maps of every method × model × true class, drawn with the round's seed.
//! Each rater sees it in their own seeded order, after a few calibration maps (from outside
//! the sample, left out of every statistic), with about `repeat_fraction` of the maps shown
//! a second time, later, to measure the rater's own consistency.

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WebError};
use crate::study::MapInfo;

/// One level of the rating scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleLevel {
    pub score: i64,
    pub label: String,
    pub definition: String,
}

/// The rating scale, levels in increasing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub levels: Vec<ScaleLevel>,
}

impl Default for Scale {
    /// 0–3, from "no morphological information" to "highlights the diagnostic morphology".
    fn default() -> Self {
        let level = |score, label: &str, definition: &str| ScaleLevel {
            score,
            label: label.into(),
            definition: definition.into(),
        };
        Scale {
            levels: vec![
                level(
                    0,
                    "no morphological information",
                    "The map highlights background, red cells or noise; nothing of the white cell.",
                ),
                level(
                    1,
                    "little",
                    "Some relevance falls on the white cell, but diffuse or mostly elsewhere; no structure of the cell is recognisable.",
                ),
                level(
                    2,
                    "the cell",
                    "The map highlights the white cell (nucleus or cytoplasm) as a whole, but not the features that tell a blast from a healthy lymphocyte.",
                ),
                level(
                    3,
                    "highlights the diagnostic morphology",
                    "The map picks out diagnostic features: nucleus shape and outline, chromatin, nucleoli, nucleus:cytoplasm ratio, vacuoles.",
                ),
            ],
        }
    }
}

impl Scale {
    /// Reads a scale from JSON: `{"levels": [{"score", "label", "definition"}, ...]}` or the
    /// bare list; scores must be distinct and increasing, with at least two levels.
    pub fn read_json(path: &Path) -> Result<Scale> {
        let text = std::fs::read_to_string(path).map_err(|e| WebError::io(path, e))?;
        let scale: Scale = serde_json::from_str(&text)
            .or_else(|_| {
                serde_json::from_str::<Vec<ScaleLevel>>(&text).map(|levels| Scale { levels })
            })
            .map_err(|e| WebError::invalid(path, format!("not a rating scale: {e}")))?;
        scale.check().map_err(|r| WebError::invalid(path, r))?;
        Ok(scale)
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if self.levels.len() < 2 {
            return Err("a scale needs at least two levels".into());
        }
        if self.levels.windows(2).any(|w| w[0].score >= w[1].score) {
            return Err("scores must be distinct and in increasing order".into());
        }
        Ok(())
    }

    pub fn contains(&self, score: i64) -> bool {
        self.levels.iter().any(|l| l.score == score)
    }

    pub fn top(&self) -> i64 {
        self.levels.last().map_or(0, |l| l.score)
    }
}

/// How rounds are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundConfig {
    pub seed: u64,
    /// Maps per method × model × true class.
    pub per_stratum: usize,
    /// Calibration maps shown first (not counted).
    pub calibration: usize,
    /// Share of the sampled maps shown a second time.
    pub repeat_fraction: f64,
}

impl Default for RoundConfig {
    fn default() -> Self {
        RoundConfig {
            seed: 0,
            per_stratum: 5,
            calibration: 3,
            repeat_fraction: 0.1,
        }
    }
}

/// What an item of a round is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Calibration,
    Main,
    Repeat,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Calibration => "calibration",
            ItemKind::Main => "main",
            ItemKind::Repeat => "repeat",
        }
    }

    pub fn parse(s: &str) -> Option<ItemKind> {
        match s {
            "calibration" => Some(ItemKind::Calibration),
            "main" => Some(ItemKind::Main),
            "repeat" => Some(ItemKind::Repeat),
            _ => None,
        }
    }
}

/// One map of a rater's round. The token is what the blinded pages see instead of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundItem {
    pub position: usize,
    pub token: String,
    pub map: String,
    pub kind: ItemKind,
}

/// FNV-1a: a stable hash of the rater's name for their seed (std's hasher may change).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The round's common sample: (sampled map ids, calibration map ids).
pub fn sample(maps: &[MapInfo], cfg: &RoundConfig) -> (Vec<String>, Vec<String>) {
    let mut strata: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for m in maps {
        let class = m.true_class.as_deref().unwrap_or("");
        strata
            .entry((&m.method, &m.model, class))
            .or_default()
            .push(&m.id);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut sampled = Vec::new();
    let mut rest = Vec::new();
    for ids in strata.values_mut() {
        ids.sort_unstable();
        ids.shuffle(&mut rng);
        let k = cfg.per_stratum.min(ids.len());
        sampled.extend(ids[..k].iter().map(|s| s.to_string()));
        rest.extend(ids[k..].iter().map(|s| s.to_string()));
    }
    // Calibration maps come from outside the sample where there are enough.
    let pool = if rest.len() >= cfg.calibration {
        &mut rest
    } else {
        &mut sampled.clone()
    };
    pool.shuffle(&mut rng);
    let calibration = pool.iter().take(cfg.calibration).cloned().collect();
    (sampled, calibration)
}

/// The round of one rater: calibration maps, then the sample in the rater's own order with
/// repeats placed after their first showing.
pub fn build_round(maps: &[MapInfo], cfg: &RoundConfig, rater: &str) -> Vec<RoundItem> {
    let (sampled, calibration) = sample(maps, cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ fnv1a(rater));
    let mut order: Vec<(String, ItemKind)> =
        sampled.into_iter().map(|m| (m, ItemKind::Main)).collect();
    order.shuffle(&mut rng);
    let repeats = ((order.len() as f64) * cfg.repeat_fraction).round() as usize;
    let mut picks: Vec<String> = order.iter().map(|(m, _)| m.clone()).collect();
    picks.shuffle(&mut rng);
    for map in picks.into_iter().take(repeats.min(order.len())) {
        let first = order
            .iter()
            .position(|(m, _)| *m == map)
            .expect("picked from order");
        let at = rng.random_range(first + 1..=order.len());
        order.insert(at, (map, ItemKind::Repeat));
    }
    calibration
        .into_iter()
        .map(|m| (m, ItemKind::Calibration))
        .chain(order)
        .enumerate()
        .map(|(position, (map, kind))| RoundItem {
            position,
            token: format!("{:016x}", rng.random::<u64>()),
            map,
            kind,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn maps() -> Vec<MapInfo> {
        let mut v = Vec::new();
        for model in ["a", "b"] {
            for method in ["lrp", "cam", "grad"] {
                for i in 0..8 {
                    let class = if i % 2 == 0 { "blast" } else { "healthy" };
                    v.push(MapInfo {
                        id: format!("{model}/Im{i:03}/{method}"),
                        model: model.into(),
                        stem: format!("Im{i:03}"),
                        method: method.into(),
                        true_class: Some(class.into()),
                        predicted: None,
                        correct: None,
                        path: PathBuf::new(),
                        signed: true,
                    });
                }
            }
        }
        v
    }

    #[test]
    fn the_sample_is_stratified_and_shared_the_order_is_the_raters() {
        let cfg = RoundConfig {
            per_stratum: 2,
            ..Default::default()
        };
        let maps = maps();
        let a = build_round(&maps, &cfg, "alice");
        let b = build_round(&maps, &cfg, "bob");
        assert_eq!(a, build_round(&maps, &cfg, "alice"), "seeded");
        let main = |r: &[RoundItem]| {
            let mut m: Vec<String> = r
                .iter()
                .filter(|i| i.kind == ItemKind::Main)
                .map(|i| i.map.clone())
                .collect();
            m.sort();
            m
        };
        // 2 models × 3 methods × 2 classes × 2 maps.
        assert_eq!(main(&a).len(), 24);
        assert_eq!(main(&a), main(&b), "every rater rates the same sample");
        let order = |r: &[RoundItem]| r.iter().map(|i| i.map.clone()).collect::<Vec<_>>();
        assert_ne!(order(&a), order(&b), "each rater their own order");
        // Calibration first, outside the sample; repeats 10 % of 24 ≈ 2, after the first showing.
        assert!(a[..3].iter().all(|i| i.kind == ItemKind::Calibration));
        assert!(a[..3].iter().all(|i| !main(&a).contains(&i.map)));
        let repeats: Vec<&RoundItem> = a.iter().filter(|i| i.kind == ItemKind::Repeat).collect();
        assert_eq!(repeats.len(), 2);
        for r in repeats {
            let first = a
                .iter()
                .find(|i| i.map == r.map && i.kind == ItemKind::Main)
                .unwrap();
            assert!(first.position < r.position);
        }
        let mut strata: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for id in main(&a) {
            let m = maps.iter().find(|m| m.id == id).unwrap();
            *strata
                .entry((
                    m.model.clone(),
                    m.method.clone(),
                    m.true_class.clone().unwrap(),
                ))
                .or_default() += 1;
        }
        assert_eq!(strata.len(), 12);
        assert!(strata.values().all(|&n| n == 2));
        let mut tokens: Vec<&str> = a.iter().map(|i| i.token.as_str()).collect();
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), a.len(), "tokens are unique");
    }

    #[test]
    fn scales_must_increase() {
        assert!(Scale::default().check().is_ok());
        let mut s = Scale::default();
        s.levels.swap(0, 1);
        assert!(s.check().is_err());
    }
}
