//! How close masks come to a known truth: per-class IoU and Dice pooled
//! over images, and how many vacuoles are found. Used on the built-in
//! synthetic data, whose masks are exact, and on hand-drawn references.

use crate::binary::{self, Components};
use leukex_data::{MorphologyClass, MorphologyMask};
use serde::Serialize;

const K: usize = MorphologyClass::COUNT;

/// Pixel counts of (truth, predicted) class pairs, pooled over images, plus
/// the vacuole tallies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    /// `confusion[truth][predicted]`; unlabelled truth pixels are left out.
    pub confusion: [[u64; K]; K],
    pub images: usize,
    /// White cells with at least one vacuole in the truth.
    pub cells_with_vacuoles: usize,
    /// Of those, cells where at least one true vacuole was found.
    pub cells_with_vacuoles_found: usize,
    /// True vacuoles (connected pieces) and how many a predicted vacuole
    /// touches.
    pub vacuoles: usize,
    pub vacuoles_found: usize,
    /// Predicted vacuoles and how many touch a true one.
    pub predicted_vacuoles: usize,
    pub predicted_vacuoles_true: usize,
}

/// IoU and Dice of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScore {
    pub class: MorphologyClass,
    pub iou: f64,
    pub dice: f64,
    /// Truth pixels of the class.
    pub support: u64,
}

impl Quality {
    /// Adds one image. Panics if the masks differ in size.
    pub fn add(&mut self, truth: &MorphologyMask, predicted: &MorphologyMask) {
        assert_eq!(truth.dimensions(), predicted.dimensions(), "mask sizes");
        self.images += 1;
        for (&t, &p) in truth.raw().iter().zip(predicted.raw()) {
            if (t as usize) < K && (p as usize) < K {
                self.confusion[t as usize][p as usize] += 1;
            }
        }
        let (w, h) = truth.dimensions();
        let vacuole = MorphologyClass::Vacuole as u8;
        let of = |m: &MorphologyMask| binary::from_fn(w, h, |i| m.raw()[i] == vacuole);
        let (t, p) = (of(truth), of(predicted));
        let (tc, pc) = (Components::of(&t), Components::of(&p));
        let touches = |px: &[u32], other: &image::GrayImage| {
            px.iter().any(|&i| other.as_raw()[i as usize] != 0)
        };
        let found = tc.members.iter().filter(|m| touches(m, &p)).count();
        self.vacuoles += tc.len();
        self.vacuoles_found += found;
        self.predicted_vacuoles += pc.len();
        self.predicted_vacuoles_true += pc.members.iter().filter(|m| touches(m, &t)).count();
        if !tc.is_empty() {
            self.cells_with_vacuoles += 1;
            self.cells_with_vacuoles_found += usize::from(found > 0);
        }
    }

    pub fn merge(&mut self, other: &Quality) {
        for (a, b) in self.confusion.iter_mut().zip(&other.confusion) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.images += other.images;
        self.cells_with_vacuoles += other.cells_with_vacuoles;
        self.cells_with_vacuoles_found += other.cells_with_vacuoles_found;
        self.vacuoles += other.vacuoles;
        self.vacuoles_found += other.vacuoles_found;
        self.predicted_vacuoles += other.predicted_vacuoles;
        self.predicted_vacuoles_true += other.predicted_vacuoles_true;
    }

    pub fn score(&self, class: MorphologyClass) -> ClassScore {
        let c = class.index();
        let tp = self.confusion[c][c];
        let fn_: u64 = self.confusion[c].iter().sum::<u64>() - tp;
        let fp: u64 = self.confusion.iter().map(|row| row[c]).sum::<u64>() - tp;
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        ClassScore {
            class,
            iou: ratio(tp, tp + fp + fn_),
            dice: ratio(2 * tp, 2 * tp + fp + fn_),
            support: tp + fn_,
        }
    }

    pub fn scores(&self) -> Vec<ClassScore> {
        MorphologyClass::ALL
            .iter()
            .map(|&c| self.score(c))
            .collect()
    }

    /// Share of the cells with vacuoles in which at least one was found.
    pub fn vacuole_cell_recall(&self) -> f64 {
        self.cells_with_vacuoles_found as f64 / self.cells_with_vacuoles.max(1) as f64
    }

    /// A Markdown table of the scores and the vacuole counts.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| class | IoU | Dice | truth pixels |\n|---|---|---|---|\n");
        for sc in self.scores() {
            s += &format!(
                "| {} | {:.3} | {:.3} | {} |\n",
                sc.class, sc.iou, sc.dice, sc.support
            );
        }
        s += &format!(
            "\nVacuoles: found in {}/{} cells that have them ({:.1} %); {}/{} true vacuoles touched by a \
             predicted one; {}/{} predicted vacuoles touch a true one.\n",
            self.cells_with_vacuoles_found,
            self.cells_with_vacuoles,
            100.0 * self.vacuole_cell_recall(),
            self.vacuoles_found,
            self.vacuoles,
            self.predicted_vacuoles_true,
            self.predicted_vacuoles,
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_dice_count_both_kinds_of_error() {
        // Truth: 4 nucleus pixels; prediction: 3 of them plus 1 extra.
        let t = MorphologyMask::from_raw(4, 2, vec![1, 1, 1, 1, 0, 0, 0, 0]).unwrap();
        let p = MorphologyMask::from_raw(4, 2, vec![1, 1, 1, 0, 1, 0, 0, 0]).unwrap();
        let mut q = Quality::default();
        q.add(&t, &p);
        let s = q.score(MorphologyClass::Nucleus);
        assert_eq!((s.iou, s.dice, s.support), (3.0 / 5.0, 6.0 / 8.0, 4));
        assert!(q.score(MorphologyClass::Rbc).iou.is_nan());
    }
}
