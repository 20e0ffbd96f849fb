//! Faithfulness metrics against Quantus 0.6 (pixel flipping, region
//! perturbation, ROAD) and a RISE insertion reference built on Quantus's
//! perturbation helpers, on the closed-form MLP of
//! scripts/fixtures/gen_faithfulness.py (no Python needed here).
//!
//! Tolerance: every curve value and per-image score within 1e-4 absolute;
//! AUCs within 1e-4 · max(1, |reference|) (Quantus sums its trapezoids in
//! float32, and its pixel-flipping AUC grows with the number of steps);
//! ROAD's correct/incorrect flags and imputation steps exactly. The model runs
//! in f64 here and in float32 in torch; the differences measured are printed.

mod common;

use common::{f64s, fixture, read_json};
use leukex_evaluate::faithfulness::{
    Baseline, Classifier, Image, InsertionOptions, PixelFlippingOptions, RegionOrder,
    RegionPerturbationOptions, RoadOptions, insertion, noisy_linear_imputation, pixel_flipping,
    region_perturbation, road,
};
use leukex_evaluate::{BoxError, rank::descending_order};
use serde_json::Value;
use std::collections::HashMap;

const TOL: f64 = 1e-4;
const HIDDEN: usize = 8;
const CLASSES: usize = 4;

/// The generator's closed-form MLP (float32 weights, bit for bit).
struct Mlp {
    d: usize,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl Mlp {
    fn new(d: usize) -> Self {
        let s1 = 8.0 / (d as f64).sqrt();
        let w1 = (0..HIDDEN)
            .flat_map(|j| {
                (0..d).map(move |i| {
                    let q = ((i * 37 + j * 101 + 11) * 7919) % 1999;
                    ((q as f64 / 1999.0 - 0.5) * s1) as f32
                })
            })
            .collect();
        let b1 = (0..HIDDEN)
            .map(|j| (((j % 3) as f64 - 1.0) * 0.25) as f32)
            .collect();
        let w2 = (0..CLASSES)
            .flat_map(|k| {
                (0..HIDDEN).map(move |j| {
                    let q = ((k * 53 + j * 29 + 5) * 331) % 97;
                    ((q as f64 / 97.0 - 0.5) * 4.0) as f32
                })
            })
            .collect();
        let b2 = (0..CLASSES)
            .map(|k| (k as f64 * 0.1 - 0.15) as f32)
            .collect();
        Mlp { d, w1, b1, w2, b2 }
    }

    fn forward(&self, x: &[f32], n: usize, softmax: bool) -> Vec<f32> {
        assert_eq!(x.len(), n * self.d);
        let mut out = Vec::with_capacity(n * CLASSES);
        for img in x.chunks(self.d) {
            let h: Vec<f64> = (0..HIDDEN)
                .map(|j| {
                    let w = &self.w1[j * self.d..][..self.d];
                    let s: f64 = w.iter().zip(img).map(|(&a, &b)| a as f64 * b as f64).sum();
                    (s + self.b1[j] as f64).tanh()
                })
                .collect();
            let z: Vec<f64> = (0..CLASSES)
                .map(|k| {
                    let w = &self.w2[k * HIDDEN..][..HIDDEN];
                    w.iter().zip(&h).map(|(&a, b)| a as f64 * b).sum::<f64>() + self.b2[k] as f64
                })
                .collect();
            if softmax {
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                out.extend(e.iter().map(|v| (v / s) as f32));
            } else {
                out.extend(z.iter().map(|&v| v as f32));
            }
        }
        out
    }
}

struct Set {
    c: usize,
    h: usize,
    w: usize,
    x: Vec<f32>,
    maps: Vec<f32>,
    chw: Option<Vec<f32>>,
    targets: Vec<usize>,
    mlp: Mlp,
}

impl Set {
    fn image(&self, i: usize) -> Image<'_> {
        let d = self.c * self.h * self.w;
        Image::new(&self.x[i * d..][..d], self.c, self.h, self.w).unwrap()
    }

    fn map(&self, i: usize, kind: &str) -> &[f32] {
        let (d, hw) = (self.c * self.h * self.w, self.h * self.w);
        match kind {
            "chw" => &self.chw.as_ref().unwrap()[i * d..][..d],
            _ => {
                let k = ["good", "reversed", "random"]
                    .iter()
                    .position(|&m| m == kind)
                    .unwrap();
                &self.maps[(i * 3 + k) * hw..][..hw]
            }
        }
    }
}

fn sets(j: &Value) -> HashMap<String, Set> {
    let mut out = HashMap::new();
    for (name, s) in j["sets"].as_object().unwrap() {
        let shape: Vec<usize> = s["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let read = |f: &str| leukex_data::npy::read_f32(&fixture(f)).unwrap();
        let x = read(&format!("faith_{name}_x.npy"));
        assert_eq!(x.shape, shape);
        let maps = read(&format!("faith_{name}_maps.npy"));
        let chw = (name == "rgb24").then(|| read("faith_rgb24_maps_chw.npy").data);
        let (c, h, w) = (shape[1], shape[2], shape[3]);
        out.insert(
            name.clone(),
            Set {
                c,
                h,
                w,
                x: x.data,
                maps: maps.data,
                chw,
                targets: s["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect(),
                mlp: Mlp::new(c * h * w),
            },
        );
    }
    out
}

fn baseline(v: &Value) -> Baseline {
    match v {
        Value::String(s) => Baseline::parse(s).unwrap(),
        Value::Number(n) => Baseline::Value {
            value: n.as_f64().unwrap() as f32,
        },
        _ => panic!("baseline {v}"),
    }
}

/// Worst difference seen per quantity.
#[derive(Default, Debug)]
struct Worst(HashMap<&'static str, f64>);

impl Worst {
    fn abs(&mut self, what: &'static str, got: f64, want: f64, case: &Value) {
        let d = (got - want).abs();
        assert!(
            d <= TOL,
            "{what}: got {got}, want {want} (|d| = {d:e}) in {case}"
        );
        let e = self.0.entry(what).or_default();
        *e = e.max(d);
    }

    fn rel(&mut self, what: &'static str, got: f64, want: f64, case: &Value) {
        let d = (got - want).abs();
        assert!(
            d <= TOL * want.abs().max(1.0),
            "{what}: got {got}, want {want} (|d| = {d:e}) in {case}"
        );
        let e = self.0.entry(what).or_default();
        *e = e.max(d / want.abs().max(1.0));
    }

    fn curve(&mut self, what: &'static str, got: &[f64], want: &[f64], case: &Value) {
        assert_eq!(got.len(), want.len(), "{what} length in {case}");
        for (g, w) in got.iter().zip(want) {
            self.abs(what, *g, *w, case);
        }
    }
}

fn classifier<'a>(set: &'a Set, target: usize, softmax: bool) -> Classifier<'a> {
    Classifier::new(target, move |x: &[f32], n: usize| {
        Ok::<_, BoxError>(set.mlp.forward(x, n, softmax))
    })
    .with_batch(32)
}

struct Case<'a> {
    set: &'a Set,
    image: usize,
    target: usize,
    softmax: bool,
}

fn case<'a>(sets: &'a HashMap<String, Set>, c: &Value) -> Case<'a> {
    let set = &sets[c["set"].as_str().unwrap()];
    let image = c["image"].as_u64().unwrap() as usize;
    let target = c["target"].as_u64().unwrap() as usize;
    assert_eq!(set.targets[image], target);
    Case {
        set,
        image,
        target,
        softmax: c.get("softmax").and_then(Value::as_bool).unwrap_or(true),
    }
}

/// The references differ between maps: a good map deletes faster, inserts
/// faster and scores higher in region perturbation than its reverse — so a
/// metric that ignored the map could not pass.
#[test]
fn references_tell_the_maps_apart() {
    let j = read_json("faithfulness.json");
    let find = |metric: &str, image: u64, map: &str, extra: &dyn Fn(&Value) -> bool| -> f64 {
        j[metric]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["set"] == "rgb24" && c["image"] == image && c["map"] == map && extra(c))
            .unwrap()["auc"]
            .as_f64()
            .unwrap()
    };
    let pf = |c: &Value| c["features_in_step"] == 48 && c["baseline"] == "black";
    let rp = |c: &Value| {
        c["patch_size"] == 8
            && c["order"] == "morf"
            && c["baseline"] == "black"
            && c["regions_evaluation"] == 100
            && c["abs"] == false
    };
    for i in 0..3 {
        assert!(
            find("pixel_flipping", i, "reversed", &pf) - find("pixel_flipping", i, "good", &pf)
                > 1.0
        );
        assert!(find("insertion", i, "good", &pf) - find("insertion", i, "reversed", &pf) > 0.1);
        assert!(
            find("region_perturbation", i, "good", &rp)
                - find("region_perturbation", i, "reversed", &rp)
                > 0.5
        );
    }
    for metric in ["pixel_flipping", "region_perturbation", "insertion"] {
        for c in j[metric].as_array().unwrap() {
            let v = f64s(&c["curve"]);
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            assert!(hi - lo > 1e-3, "{metric}: constant curve in {c}");
        }
    }
    let flags = |map: &str| -> usize {
        j["road"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["map"] == map && c["percentages"].is_null())
            .map(|c| {
                c["correct"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|b| b.as_bool() == Some(true))
                    .count()
            })
            .sum()
    };
    assert!(flags("reversed") >= flags("good") + 40);
}

#[test]
fn pixel_flipping_equals_quantus() {
    let j = read_json("faithfulness.json");
    let sets = sets(&j);
    let mut worst = Worst::default();
    let mut n = 0;
    for c in j["pixel_flipping"].as_array().unwrap() {
        let k = case(&sets, c);
        let opts = PixelFlippingOptions {
            features_in_step: c["features_in_step"].as_u64().unwrap() as usize,
            baseline: baseline(&c["baseline"]),
            abs: c["abs"].as_bool().unwrap(),
        };
        let mut model = classifier(k.set, k.target, k.softmax);
        let map = k.set.map(k.image, c["map"].as_str().unwrap());
        let r = pixel_flipping(k.set.image(k.image), map, &opts, &mut model).unwrap();
        assert_eq!(model.images(), r.curve.len() + 1);
        worst.curve("curve", &r.curve, &f64s(&c["curve"]), c);
        worst.rel("auc", r.auc, c["auc"].as_f64().unwrap(), c);
        worst.abs("original", r.original, c["original"].as_f64().unwrap(), c);
        worst.abs(
            "deletion_auc",
            r.deletion_auc,
            c["deletion_auc"].as_f64().unwrap(),
            c,
        );
        n += 1;
    }
    assert!(n >= 20);
    eprintln!("pixel flipping, {n} cases, max |diff|: {:?}", worst.0);
}

#[test]
fn pixel_flipping_fails_on_the_wrong_map() {
    let j = read_json("faithfulness.json");
    let sets = sets(&j);
    let c = j["pixel_flipping"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["map"] == "good" && c["features_in_step"] == 48 && c["baseline"] == "black")
        .unwrap();
    let k = case(&sets, c);
    let mut model = classifier(k.set, k.target, true);
    let opts = PixelFlippingOptions {
        features_in_step: 48,
        ..Default::default()
    };
    let r = pixel_flipping(
        k.set.image(k.image),
        k.set.map(k.image, "reversed"),
        &opts,
        &mut model,
    )
    .unwrap();
    assert!((r.auc - c["auc"].as_f64().unwrap()).abs() > 1.0);
}

#[test]
fn region_perturbation_equals_quantus() {
    let j = read_json("faithfulness.json");
    let sets = sets(&j);
    let mut worst = Worst::default();
    let mut n = 0;
    for c in j["region_perturbation"].as_array().unwrap() {
        let k = case(&sets, c);
        let opts = RegionPerturbationOptions {
            patch_size: c["patch_size"].as_u64().unwrap() as usize,
            order: RegionOrder::parse(c["order"].as_str().unwrap()).unwrap(),
            regions_evaluation: c["regions_evaluation"].as_u64().unwrap() as usize,
            baseline: baseline(&c["baseline"]),
            abs: c["abs"].as_bool().unwrap(),
        };
        let mut model = classifier(k.set, k.target, k.softmax);
        let map = k.set.map(k.image, c["map"].as_str().unwrap());
        let r = region_perturbation(k.set.image(k.image), map, &opts, &mut model).unwrap();
        assert_eq!(model.images(), r.curve.len() + 1);
        worst.curve("curve", &r.curve, &f64s(&c["curve"]), c);
        worst.rel("auc", r.auc, c["auc"].as_f64().unwrap(), c);
        n += 1;
    }
    assert!(n >= 20);
    eprintln!("region perturbation, {n} cases, max |diff|: {:?}", worst.0);
}

#[test]
fn insertion_equals_the_rise_reference() {
    let j = read_json("faithfulness.json");
    let sets = sets(&j);
    let mut worst = Worst::default();
    let mut n = 0;
    for c in j["insertion"].as_array().unwrap() {
        let k = case(&sets, c);
        let opts = InsertionOptions {
            features_in_step: c["features_in_step"].as_u64().unwrap() as usize,
            baseline: baseline(&c["baseline"]),
            abs: c["abs"].as_bool().unwrap(),
        };
        let mut model = classifier(k.set, k.target, k.softmax);
        let map = k.set.map(k.image, c["map"].as_str().unwrap());
        let r = insertion(k.set.image(k.image), map, &opts, &mut model).unwrap();
        worst.curve("curve", &r.curve, &f64s(&c["curve"]), c);
        worst.abs("auc", r.auc, c["auc"].as_f64().unwrap(), c);
        n += 1;
    }
    assert!(n >= 15);
    eprintln!("insertion, {n} cases, max |diff|: {:?}", worst.0);
}

/// With noise 0 (Quantus's noise comes from NumPy's global generator).
#[test]
fn road_equals_quantus_without_noise() {
    let j = read_json("faithfulness.json");
    let sets = sets(&j);
    let mut worst = Worst::default();
    let (mut n, mut quantus_cases) = (0, 0);
    for c in j["road"].as_array().unwrap() {
        let k = case(&sets, c);
        let mut opts = RoadOptions {
            noise: 0.0,
            abs: c["abs"].as_bool().unwrap(),
            ..Default::default()
        };
        if !c["percentages"].is_null() {
            opts.percentages = f64s(&c["percentages"]);
        } else {
            assert_eq!(opts.percentages, f64s(&j["road_percentages"]));
        }
        let mut model = classifier(k.set, k.target, true);
        let map = k.set.map(k.image, c["map"].as_str().unwrap());
        let r = road(k.set.image(k.image), map, &opts, &mut model).unwrap();
        let want: Vec<bool> = c["correct"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        assert_eq!(r.correct, want, "{c}");
        worst.curve("scores", &r.scores, &f64s(&c["scores"]), c);
        n += 1;
        quantus_cases += (c["reference"] == "quantus.ROAD") as usize;
    }
    assert!(n >= 20 && quantus_cases >= 10);
    eprintln!(
        "ROAD, {n} cases ({quantus_cases} by quantus.ROAD), flags equal, max |diff|: {:?}",
        worst.0
    );
}

#[test]
fn imputation_equals_quantus() {
    let j = read_json("faithfulness.json");
    let sets = sets(&j);
    let imp = leukex_data::npy::read_f32(&fixture("faith_imputed.npy")).unwrap();
    let mut worst = 0.0f64;
    for (slot, m) in j["imputed"].as_array().unwrap().iter().enumerate() {
        let set = &sets[m["set"].as_str().unwrap()];
        let i = m["image"].as_u64().unwrap() as usize;
        let order: Vec<usize> = descending_order(set.map(i, m["map"].as_str().unwrap()))
            .into_iter()
            .map(|p| p as usize)
            .collect();
        let k = m["pixels"].as_u64().unwrap() as usize;
        let p = m["percentage"].as_f64().unwrap();
        assert_eq!(
            k,
            (set.h as f64 * set.w as f64 * p / 100.0).floor() as usize
        );
        let got = noisy_linear_imputation(set.image(i), &order[..k], 0.0, 0).unwrap();
        let n = got.len();
        let want = &imp.data[slot * 3 * set.h * set.w..][..n];
        let d = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        assert!(d <= 1e-5, "{m}: max |diff| {d:e}");
        worst = worst.max(d);
        // the imputed pixels did change
        let x = set.image(i).data;
        assert!(order[..k].iter().any(|&q| (got[q] - x[q]).abs() > 1e-3));
    }
    eprintln!("imputation max |diff| {worst:e}");
}
