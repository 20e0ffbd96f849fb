//! Rough per-stage timing of the evaluation of one 224×224 map (single
//! thread), to see where the time of the counting benchmark goes.
use leukex_data::MorphologyMask;
use leukex_evaluate::mode::select;
use leukex_evaluate::rank::descending_order;
use leukex_evaluate::run::evaluate_map_reference;
use leukex_evaluate::{ClassShares, HeatMap, LocalisationOptions, Mode, Region, evaluate_map};
use std::time::Instant;

fn main() {
    let n = 224 * 224;
    let raw: Vec<u8> = (0..n).map(|i| ((i / 97) % 5) as u8).collect();
    let mask = MorphologyMask::from_raw(224, 224, raw).unwrap();
    let maps: Vec<Vec<f32>> = (0..100)
        .map(|s| {
            (0..n)
                .map(|i| (((i * 2654435761usize + s * 97) % 10007) as f32 / 5000.0 - 1.0).max(0.0))
                .collect()
        })
        .collect();
    let reps = maps.len() as f64;
    let t = Instant::now();
    let orders: Vec<Vec<u32>> = maps.iter().map(|m| descending_order(m)).collect();
    println!(
        "order       {:.3} ms/map",
        t.elapsed().as_secs_f64() * 1e3 / reps
    );
    for mode in Mode::defaults() {
        let t = Instant::now();
        let mut sink = 0.0;
        for (m, o) in maps.iter().zip(&orders) {
            let sel = select(mode, m, "lrp", Some(o));
            sink += ClassShares::count(&sel, &mask).total;
        }
        println!(
            "{:<11} {:.3} ms/map ({sink})",
            mode.to_string(),
            t.elapsed().as_secs_f64() * 1e3 / reps
        );
    }
    let t = Instant::now();
    let mut sink = 0.0;
    for (m, o) in maps.iter().zip(&orders) {
        let l = leukex_evaluate::localisation::localise(
            m,
            &mask,
            Region::cell(),
            &LocalisationOptions::default(),
            Some(o),
        );
        sink += l.auc.unwrap_or(0.0);
    }
    println!(
        "localise    {:.3} ms/map ({sink})",
        t.elapsed().as_secs_f64() * 1e3 / reps
    );
    // Everything at once: the fused path behind `evaluate_map`, against the
    // mode-by-mode reference.
    let heat: Vec<HeatMap> = maps
        .into_iter()
        .map(|m| HeatMap::new(224, 224, m))
        .collect();
    let modes = Mode::defaults();
    let opts = LocalisationOptions::default();
    for (name, fused) in [
        ("reference", false),
        ("fused", true),
        ("reference", false),
        ("fused", true),
    ] {
        let t = Instant::now();
        let mut sink = 0.0;
        for m in &heat {
            let loc = if fused {
                evaluate_map(m, &mask, "lrp", &modes, Region::cell(), &opts).localisation
            } else {
                evaluate_map_reference(m, &mask, "lrp", &modes, Region::cell(), &opts).1
            };
            sink += loc.auc.unwrap_or(0.0);
        }
        println!(
            "{name:<11} {:.3} ms/map, 8 modes + localisation ({sink})",
            t.elapsed().as_secs_f64() * 1e3 / reps
        );
    }
}
