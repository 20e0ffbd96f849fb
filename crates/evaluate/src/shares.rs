//! Where the relevant pixels fall: counts and shares per morphology class,
//! next to each class's share of the image area (chance level) and the lift.

use crate::mode::Selection;
use leukex_data::{MorphologyClass, MorphologyMask};
use serde::Serialize;

/// The classes the paper reports together as "the cell".
pub const CELL: [MorphologyClass; 3] = [
    MorphologyClass::Nucleus,
    MorphologyClass::Cytoplasm,
    MorphologyClass::Vacuole,
];

/// One (image, map, mode) result.
///
/// `amount` is a pixel count for the counting modes and the summed positive
/// relevance for `mass`. Shares are over *labelled* relevant pixels;
/// unlabelled ones are counted apart. `None` means undefined (no relevant
/// labelled pixel, or an empty class for a lift) — never a silent 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassShares {
    pub amount: [f64; MorphologyClass::COUNT],
    pub unlabelled: f64,
    /// Sum of `amount` over the five classes (unlabelled excluded).
    pub total: f64,
    pub share: [Option<f64>; MorphologyClass::COUNT],
    /// Labelled pixels of each class in the mask.
    pub area: [u64; MorphologyClass::COUNT],
    /// Class area ÷ labelled area: the share a map without information
    /// would get on average.
    pub area_share: [Option<f64>; MorphologyClass::COUNT],
    /// share ÷ area_share.
    pub lift: [Option<f64>; MorphologyClass::COUNT],
    pub cell_amount: f64,
    pub cell_share: Option<f64>,
    pub cell_area_share: Option<f64>,
    pub cell_lift: Option<f64>,
    /// Within the cell: nucleus, cytoplasm, vacuole shares of the cell's
    /// amount (the paper's Fig. 11).
    pub within_cell: [Option<f64>; 3],
    /// Why the shares are undefined, when they are.
    pub undefined: Option<String>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl ClassShares {
    /// Counts the selection per class of `mask` (same grid, checked by the
    /// caller).
    pub fn count(selection: &Selection, mask: &MorphologyMask) -> ClassShares {
        let raw = mask.raw();
        // index 5 collects unlabelled (255) pixels
        let mut acc = [0f64; 6];
        let mut area = [0u64; 6];
        let slot = |p: u8| (p as usize).min(5);
        match selection {
            Selection::Pixels(keep) => {
                assert_eq!(keep.len(), raw.len());
                let mut cnt = [0u64; 6];
                for (&p, &k) in raw.iter().zip(keep) {
                    let s = slot(p);
                    area[s] += 1;
                    cnt[s] += k as u64;
                }
                for i in 0..6 {
                    acc[i] = cnt[i] as f64;
                }
            }
            Selection::Weights(w) => {
                assert_eq!(w.len(), raw.len());
                for (&p, &x) in raw.iter().zip(w) {
                    let s = slot(p);
                    area[s] += 1;
                    acc[s] += x;
                }
            }
        }
        let mut amount = [0f64; 5];
        amount.copy_from_slice(&acc[..5]);
        let mut area5 = [0u64; 5];
        area5.copy_from_slice(&area[..5]);
        Self::from_amounts(amount, acc[5], area5)
    }

    /// Builds shares, chance levels and lifts from per-class amounts.
    pub fn from_amounts(
        amount: [f64; MorphologyClass::COUNT],
        unlabelled: f64,
        area: [u64; MorphologyClass::COUNT],
    ) -> ClassShares {
        let total: f64 = amount.iter().sum();
        let labelled: u64 = area.iter().sum();
        let share = amount.map(|a| ratio(a, total));
        let area_share = area.map(|a| ratio(a as f64, labelled as f64));
        let lift = std::array::from_fn(|i| match (share[i], area_share[i]) {
            (Some(s), Some(a)) if a > 0.0 => Some(s / a),
            _ => None,
        });
        let cell_amount: f64 = CELL.iter().map(|c| amount[c.index()]).sum();
        let cell_area: u64 = CELL.iter().map(|c| area[c.index()]).sum();
        let cell_share = ratio(cell_amount, total);
        let cell_area_share = ratio(cell_area as f64, labelled as f64);
        let cell_lift = match (cell_share, cell_area_share) {
            (Some(s), Some(a)) if a > 0.0 => Some(s / a),
            _ => None,
        };
        let within_cell = CELL.map(|c| ratio(amount[c.index()], cell_amount));
        let undefined = if labelled == 0 {
            Some("the mask has no labelled pixel".to_string())
        } else if total <= 0.0 {
            Some("no relevant pixel on a labelled class".to_string())
        } else {
            None
        };
        ClassShares {
            amount,
            unlabelled,
            total,
            share,
            area,
            area_share,
            lift,
            cell_amount,
            cell_share,
            cell_area_share,
            cell_lift,
            within_cell,
            undefined,
        }
    }

    /// Shares of summed amounts over many images: the paper's way
    /// (43.61 % = 8071 / (8071 + 4951 + 5484)).
    pub fn pooled<'a>(items: impl IntoIterator<Item = &'a ClassShares>) -> ClassShares {
        let mut amount = [0f64; 5];
        let mut unlabelled = 0.0;
        let mut area = [0u64; 5];
        for s in items {
            for i in 0..5 {
                amount[i] += s.amount[i];
                area[i] += s.area[i];
            }
            unlabelled += s.unlabelled;
        }
        Self::from_amounts(amount, unlabelled, area)
    }

    /// The "rbc" and "background" shares and "cell" as the paper's three
    /// categories: (cell, rbc, background).
    pub fn paper_categories(&self) -> [Option<f64>; 3] {
        [
            self.cell_share,
            self.share[MorphologyClass::Rbc.index()],
            self.share[MorphologyClass::Background.index()],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MorphologyClass::*;

    fn shares_of(amount: [f64; 5]) -> ClassShares {
        ClassShares::from_amounts(amount, 0.0, [100; 5])
    }

    #[test]
    fn pooled_shares_are_ratios_of_summed_counts_as_in_the_paper() {
        // GoogLeNet + Grad-CAM: mean relevant pixels 8071 (cell), 4951 (rbc),
        // 5484 (background) give 43.61 / 26.75 / 29.63 %.
        let s = shares_of([5484.0, 8071.0, 0.0, 0.0, 4951.0]);
        let [cell, rbc, bg] = s
            .paper_categories()
            .map(|v| (v.unwrap() * 10000.0).round() / 100.0);
        assert_eq!((cell, rbc, bg), (43.61, 26.75, 29.63));
        // Pooling two images sums counts before dividing.
        let a = shares_of([10.0, 90.0, 0.0, 0.0, 0.0]);
        let b = shares_of([90.0, 10.0, 0.0, 0.0, 800.0]);
        let p = ClassShares::pooled([&a, &b]);
        assert_eq!(p.share[Nucleus.index()], Some(100.0 / 1000.0));
        // ...which is not the mean of the per-image shares (0.9 and 0.0111).
        let mean = (a.share[Nucleus.index()].unwrap() + b.share[Nucleus.index()].unwrap()) / 2.0;
        assert!((mean - 0.1).abs() > 0.3);
    }

    #[test]
    fn unlabelled_pixels_are_counted_apart_and_left_out_of_shares() {
        let mask = MorphologyMask::from_raw(4, 1, vec![1, 1, 255, 0]).unwrap();
        let s = ClassShares::count(&Selection::Pixels(vec![true, false, true, true]), &mask);
        assert_eq!(s.unlabelled, 1.0);
        assert_eq!(s.total, 2.0);
        assert_eq!(s.share[Nucleus.index()], Some(0.5));
        assert_eq!(s.area_share[Nucleus.index()], Some(2.0 / 3.0));
        assert_eq!(s.lift[Nucleus.index()], Some(0.75));
        assert_eq!(s.share[Rbc.index()], Some(0.0));
        assert_eq!(
            s.lift[Rbc.index()],
            None,
            "no rbc in the mask: lift undefined"
        );
        assert_eq!(s.within_cell, [Some(1.0), Some(0.0), Some(0.0)]);
    }

    #[test]
    fn no_relevant_pixel_is_undefined_not_zero() {
        let mask = MorphologyMask::from_raw(2, 1, vec![1, 0]).unwrap();
        let s = ClassShares::count(&Selection::Pixels(vec![false, false]), &mask);
        assert!(s.share.iter().all(Option::is_none));
        assert_eq!(s.cell_share, None);
        assert!(
            s.undefined
                .as_deref()
                .unwrap()
                .contains("no relevant pixel")
        );
    }
}
