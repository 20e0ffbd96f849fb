//! The fused evaluation (`evaluate_map`) equals the mode-by-mode reference
//! (`evaluate_map_reference`: `select` + `ClassShares::count`, `localise`)
//! on random maps full of ties, signed zeros, unlabelled pixels and odd
//! options.

use leukex_data::MorphologyMask;
use leukex_evaluate::run::evaluate_map_reference;
use leukex_evaluate::{
    ClassShares, HeatMap, Localisation, LocalisationOptions, Mode, Region, Rendering, evaluate_map,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_map(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let style = rng.random_range(0..6);
    let cut = rng.random_range(0.0f32..1.0);
    (0..n)
        .map(|_| match style {
            // few distinct values: ties everywhere, also at every cut-off
            0 => rng.random_range(-3..4) as f32,
            1 => [0.0, -0.0, 1.0, 0.5][rng.random_range(0..4)],
            // CAM-like: a plateau of zeros and a ReLU'd tail
            2 => (rng.random_range(-1.0f32..1.0) - cut).max(0.0),
            3 => {
                if rng.random_bool(0.3) {
                    rng.random_range(-2..3) as f32
                } else {
                    rng.random_range(-1e3f32..1e3)
                }
            }
            4 => rng.random_range(-1e-30f32..1e-30),
            _ => rng.random_range(-1.0f32..1.0),
        })
        .collect()
}

fn random_mask(rng: &mut ChaCha8Rng, w: u32, h: u32) -> MorphologyMask {
    let unlabelled = rng.random_bool(0.4);
    let classes = rng.random_range(1..=5u8);
    let raw = (0..w * h)
        .map(|_| {
            if unlabelled && rng.random_bool(0.15) {
                255
            } else {
                rng.random_range(0..classes)
            }
        })
        .collect();
    MorphologyMask::from_raw(w, h, raw).unwrap()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    }
}

fn assert_shares_equal(got: &ClassShares, want: &ClassShares, mass: bool, ctx: &str) {
    if !mass {
        assert_eq!(got, want, "{ctx}");
        return;
    }
    // mass: the same sums, added in another order
    let c = |a: f64, b: f64| close(Some(a), Some(b));
    assert!(
        got.amount.iter().zip(&want.amount).all(|(a, b)| c(*a, *b)),
        "{ctx}: {:?} vs {:?}",
        got.amount,
        want.amount
    );
    assert!(
        c(got.unlabelled, want.unlabelled) && c(got.total, want.total),
        "{ctx}"
    );
    assert!(c(got.cell_amount, want.cell_amount), "{ctx}");
    for (a, b) in got.share.iter().zip(&want.share) {
        assert!(close(*a, *b), "{ctx}");
    }
    for (a, b) in got.lift.iter().zip(&want.lift) {
        assert!(close(*a, *b), "{ctx}");
    }
    for (a, b) in got.within_cell.iter().zip(&want.within_cell) {
        assert!(close(*a, *b), "{ctx}");
    }
    assert_eq!(
        (
            got.area,
            got.area_share,
            got.cell_area_share,
            &got.undefined
        ),
        (
            want.area,
            want.area_share,
            want.cell_area_share,
            &want.undefined
        ),
        "{ctx}"
    );
}

fn assert_localisation_equal(got: &Localisation, want: &Localisation, ctx: &str) {
    // integer-valued or ratio-of-integer metrics: exact
    assert_eq!(got.pointing_game, want.pointing_game, "{ctx}");
    assert_eq!(got.top_k_intersection, want.top_k_intersection, "{ctx}");
    assert_eq!(
        got.relevance_rank_accuracy, want.relevance_rank_accuracy,
        "{ctx}"
    );
    assert_eq!(got.auc, want.auc, "{ctx}");
    // sums: the fused path divides once by the normaliser
    assert!(
        close(got.attribution_localisation, want.attribution_localisation),
        "{ctx}: {got:?} vs {want:?}"
    );
    assert!(
        close(got.relevance_mass_accuracy, want.relevance_mass_accuracy),
        "{ctx}: {got:?} vs {want:?}"
    );
}

#[test]
fn fused_equals_the_reference_on_random_maps_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let modes = vec![
        Mode::Paper(None),
        Mode::Paper(Some(Rendering::Innvestigate)),
        Mode::Paper(Some(Rendering::Matlab)),
        Mode::RawMean,
        Mode::Positive,
        Mode::TopK(5.0),
        Mode::TopK(10.0),
        Mode::TopK(20.0),
        Mode::TopK(12.5),
        Mode::TopK(100.0),
        Mode::Otsu,
        Mode::Mass,
    ];
    let regions = [
        Region::cell(),
        Region::parse("nucleus").unwrap(),
        Region::parse("background+rbc").unwrap(),
    ];
    let mut compared = 0;
    for case in 0..400 {
        let (w, h) = (rng.random_range(1..40u32), rng.random_range(1..40u32));
        let mask = random_mask(&mut rng, w, h);
        let values = random_map(&mut rng, (w * h) as usize);
        let map = HeatMap::new(w as usize, h as usize, values);
        if map.is_constant() {
            continue;
        }
        let region = regions[case % regions.len()];
        let opts = if case % 3 == 0 {
            LocalisationOptions::default()
        } else {
            LocalisationOptions {
                normalise: rng.random_bool(0.5),
                abs: [None, Some(false), Some(true)][rng.random_range(0..3)],
                top_k: rng.random_range(0..(w * h) as usize + 3),
                concept_influence: rng.random_bool(0.5),
                pointing_weighted: rng.random_bool(0.5),
                positive_attributions: rng.random_bool(0.5),
            }
        };
        let method = ["grad-cam", "lrp-epsilon"][case % 2];
        let got = evaluate_map(&map, &mask, method, &modes, region, &opts);
        let (want_shares, want_loc) =
            evaluate_map_reference(&map, &mask, method, &modes, region, &opts);
        assert_eq!(got.shares.len(), want_shares.len());
        for ((gm, g), (wm, w)) in got.shares.iter().zip(&want_shares) {
            assert_eq!(gm, wm);
            let ctx = format!(
                "case {case} mode {gm} map {:?}",
                &map.values[..4.min(map.values.len())]
            );
            assert_shares_equal(g, w, gm == "mass", &ctx);
        }
        assert_localisation_equal(
            &got.localisation,
            &want_loc,
            &format!("case {case} {opts:?}"),
        );
        compared += 1;
    }
    assert!(compared > 300, "{compared}");
}

#[test]
fn fused_equals_the_reference_on_224_maps() {
    // Full-size maps: CAM-like with a zero plateau and signed noise.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let side = 224;
    for case in 0..12 {
        let mask = random_mask(&mut rng, side, side);
        let values = random_map(&mut rng, (side * side) as usize);
        let map = HeatMap::new(side as usize, side as usize, values);
        if map.is_constant() {
            continue;
        }
        let opts = LocalisationOptions::default();
        let modes = Mode::defaults();
        let method = ["grad-cam", "lrp-epsilon"][case % 2];
        let got = evaluate_map(&map, &mask, method, &modes, Region::cell(), &opts);
        let (want_shares, want_loc) =
            evaluate_map_reference(&map, &mask, method, &modes, Region::cell(), &opts);
        for ((gm, g), (_, w)) in got.shares.iter().zip(&want_shares) {
            assert_shares_equal(g, w, gm == "mass", &format!("case {case} mode {gm}"));
        }
        assert_localisation_equal(&got.localisation, &want_loc, &format!("case {case}"));
    }
}
