//! A synthetic ALL-IDB2: blood-smear crops of lymphoblasts and healthy
//! lymphocytes, each with an exact five-class morphology mask.
//!
//! # Why
//!
//! The real ALL-IDB2 needs a registration, so it cannot ship with leukex.
//! This crate makes a stand-in in the same layout (`ImNNN_Y.tif`, label `Y`
//! 1 = blast, 0 = healthy; 257×257 crops with one white cell in the centre)
//! so that the whole pipeline runs on a fresh machine. It has one property
//! the real data lacks: **we know where the evidence is**, because we put it
//! there. A heat-map method can then be judged against the truth.
//!
//! # What is modelled
//!
//! The white cell follows the FAB criteria:
//!
//! * a **healthy lymphocyte** is small (35–45 % of the crop across) and
//!   round, with a dense, dark, round nucleus (70–85 % of the cell across)
//!   whose chromatin is clumped, and a thin pale-blue rim of cytoplasm;
//! * a **lymphoblast** is larger (50–65 % of the crop), has a high
//!   nucleus:cytoplasm ratio, a nucleus that is irregular or cleft, finer
//!   chromatin and visible nucleoli. Blasts are a mix of L1 (scanty
//!   cytoplasm, small nucleoli), L2 (irregular, often cleft nucleus,
//!   prominent nucleoli) and L3 (deep blue cytoplasm with vacuoles; about a
//!   third of blasts).
//!
//! Around it lies a Wright–Giemsa smear as a microscope camera sees it: a
//! pale pinkish-grey film, crowded red cells with pale centres that overlap
//! and are cut by the border, a few granular platelets, stain colour that
//! varies from slide to slide, uneven illumination, slight blur and sensor
//! noise. Stain is modelled as optical density (Beer–Lambert), so overlaps
//! darken as they do on glass. Images come from 20 simulated slides (the
//! `group` column of the manifest); images of one slide share its stain,
//! smear thickness and white balance, as images of one patient's slide do,
//! so that group-wise splits have something to guard against.
//!
//! # Masks
//!
//! Image and mask are drawn from the same outlines: a pixel's class is the
//! outline it lies inside at the 0.5 coverage level, where the picture's
//! anti-aliased edge is half-way. The picture is then blurred, as optics
//! blur it; the mask is not. Classes: background 0 (platelets included, as
//! in the paper), nucleus 1 (nucleoli included), cytoplasm 2, vacuole 3,
//! red cell 4. A white cell hides the red cells beneath it.
//!
//! # Where the evidence lies
//!
//! Every part of an image draws from its own random stream (see `rng`). The
//! surroundings come from streams keyed only by the seed and the image
//! index; the class enters only the white cell's stream. So, by
//! construction, nothing outside the cell differs in distribution between
//! the classes, and [`generate_with_label`] shows it directly: the same
//! index rendered as a blast and as a healthy cell gives the very same
//! pixels everywhere except on and right next to the cell. (A blast, being
//! bigger, hides more of the red cells; that is cell size, i.e. evidence in
//! the cell. The share of red cells in what remains visible is the same for
//! both classes.)
//! [`SynthConfig::without_cell`] renders the surroundings alone (the cell
//! "replaced by background"): on those images no classifier can beat chance,
//! which the tests check.
//!
//! # The shortcut
//!
//! [`Shortcut::RbcDensity`] breaks that rule on purpose: blast images get
//! 1.45 times the slide's usual number of red cells, healthy ones 0.65
//! times (a ratio of about 2.2, several standard deviations of the natural
//! spread). A model trained on such data can
//! "cheat" by counting red cells, and a good heat map should then light up
//! the red cells rather than the white one. Only the number of red cells
//! changes; the rest of the scene stays the same.
//!
//! # Determinism
//!
//! An image is a pure function of ([`SynthConfig`], index): same bytes on
//! every run and thread count, on the same platform. (`exp`, `ln`, `sin`
//! and `cos` come from the platform's maths library, so another platform
//! may round a few pixels differently.)

mod canvas;
mod cell;
mod noise;
mod rng;
mod scene;
mod shape;
mod write;

pub use cell::CellKind;
pub use write::{KindCounts, SynthError, SynthReport, write_dataset};

use image::RgbImage;
use leukex_data::MorphologyMask;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Bumped whenever the same configuration would give different pixels, so a
/// dataset's `synth.json` says which generator made it.
pub const GENERATOR_VERSION: u32 = 1;

/// Smallest and largest `--size` accepted: below 48 pixels vacuoles and
/// nucleoli would be under a pixel; above 2048 a crop is no longer ALL-IDB2
/// like and memory grows needlessly.
pub const MIN_SIZE: u32 = 48;
pub const MAX_SIZE: u32 = 2048;

/// A known confounder outside the white cell, injected on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shortcut {
    /// Blast images get about twice the red-cell density of healthy ones.
    #[serde(rename = "rbc-density")]
    RbcDensity,
}

impl Shortcut {
    pub const ALL: [Shortcut; 1] = [Shortcut::RbcDensity];

    pub fn name(self) -> &'static str {
        match self {
            Shortcut::RbcDensity => "rbc-density",
        }
    }
}

impl fmt::Display for Shortcut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shortcut {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        match norm.as_str() {
            "rbc-density" | "rbc" | "red-cell-density" => Ok(Shortcut::RbcDensity),
            _ => Err(format!(
                "unknown shortcut `{}`; accepted: {}",
                s.trim(),
                Shortcut::ALL.map(Shortcut::name).join(", ")
            )),
        }
    }
}

/// How to make a synthetic dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Number of images; the first half (rounded up) are blasts.
    pub n: usize,
    pub seed: u64,
    /// Side of the square crops in pixels (ALL-IDB2: 257).
    pub size: u32,
    pub shortcut: Option<Shortcut>,
    /// Leave the white cell out (the negative control: the same scenes with
    /// the cell replaced by background). Masks then hold no cell classes.
    pub without_cell: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            n: 260,
            seed: 0,
            size: 257,
            shortcut: None,
            without_cell: false,
        }
    }
}

impl SynthConfig {
    /// Checks the configuration; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.n == 0 {
            return Err("--n must be at least 1".into());
        }
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(format!(
                "--size {} is out of range; use {MIN_SIZE}..={MAX_SIZE} (ALL-IDB2 crops are 257)",
                self.size
            ));
        }
        Ok(())
    }

    /// Number of blast images (the first ones).
    pub fn blasts(&self) -> usize {
        self.n.div_ceil(2)
    }
}

/// One rendered image with its mask.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSample {
    /// File stem in ALL-IDB2 style, e.g. `Im007_1`.
    pub stem: String,
    /// 1 = lymphoblast (ALL), 0 = healthy.
    pub label: u8,
    /// The simulated slide the image comes from, e.g. `slide07`.
    pub group: String,
    /// The white cell drawn (or, with `without_cell`, the one left out).
    pub kind: CellKind,
    pub image: RgbImage,
    pub mask: MorphologyMask,
}

/// The class of image `index` among `n`, as in ALL-IDB2: blasts first.
pub fn label_of(n: usize, index: usize) -> u8 {
    u8::from(index < n.div_ceil(2))
}

/// `Im001_1`: one-based index, at least three digits (more when `n > 999`),
/// then the label.
pub fn stem_of(n: usize, index: usize, label: u8) -> String {
    let digits = n.to_string().len().max(3);
    format!("Im{:0digits$}_{label}", index + 1)
}

/// Renders image `index` of the dataset `cfg` describes.
///
/// # Panics
/// If `cfg` is invalid (see [`SynthConfig::validate`]) or `index >= cfg.n`.
pub fn generate_one(cfg: &SynthConfig, index: usize) -> SynthSample {
    assert!(
        index < cfg.n,
        "image index {index} out of range for n = {}",
        cfg.n
    );
    generate_with_label(cfg, index, label_of(cfg.n, index))
}

/// Renders image `index`'s scene with a white cell of class `label`,
/// whatever class the index has in the dataset: the counterfactual twin of
/// [`generate_one`] (equal to it when `label` is the index's own class).
/// Without a shortcut, the twins differ only on the cell and within a few
/// pixels of it (the reach of the optical blur: at most 5 pixels at size
/// 257, scaling with the size).
///
/// # Panics
/// If `cfg` is invalid or `label > 1`.
pub fn generate_with_label(cfg: &SynthConfig, index: usize, label: u8) -> SynthSample {
    if let Err(e) = cfg.validate() {
        panic!("invalid synth configuration: {e}");
    }
    assert!(label <= 1, "label must be 0 or 1, not {label}");
    let scene = scene::Scene::new(cfg, index, label);
    let mut c = canvas::Canvas::new(cfg.size as usize);
    scene.paint(&mut c);
    let kind = if cfg.without_cell {
        cell::kind_of(cfg.seed, index, label)
    } else {
        let cell = cell::Cell::new(cfg.seed, index, label, &scene);
        cell.paint(&mut c);
        cell.kind
    };
    let image = scene.photograph(&c, cfg.seed, index);
    let mask = MorphologyMask::from_raw(cfg.size, cfg.size, c.finish())
        .expect("the painters write class ids only");
    SynthSample {
        stem: stem_of(cfg.n, index, label),
        label,
        group: format!("slide{:02}", scene.slide.id + 1),
        kind,
        image,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_follow_all_idb2() {
        assert_eq!(stem_of(260, 0, 1), "Im001_1");
        assert_eq!(stem_of(260, 259, 0), "Im260_0");
        assert_eq!(stem_of(1000, 4, 1), "Im0005_1");
        assert_eq!(label_of(260, 129), 1);
        assert_eq!(label_of(260, 130), 0);
        // Odd n: blasts get the extra one.
        assert_eq!((0..7).filter(|&i| label_of(7, i) == 1).count(), 4);
        assert_eq!(
            SynthConfig {
                n: 7,
                ..Default::default()
            }
            .blasts(),
            4
        );
    }

    #[test]
    fn shortcut_parses_and_prints() {
        assert_eq!("rbc-density".parse(), Ok(Shortcut::RbcDensity));
        assert_eq!("RBC_Density".parse(), Ok(Shortcut::RbcDensity));
        assert_eq!(Shortcut::RbcDensity.to_string(), "rbc-density");
        let err = "stain".parse::<Shortcut>().unwrap_err();
        assert!(
            err.contains("stain") && err.contains("rbc-density"),
            "{err}"
        );
    }

    #[test]
    fn invalid_configs_are_explained() {
        let bad = SynthConfig {
            size: 20,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("--size 20"));
        let bad = SynthConfig {
            n: 0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("--n"));
    }
}
