//! The model parameter randomisation test end to end on ResNet18 with closed-form
//! weights: gradient maps of the original model, of copies with layers re-initialised
//! (leukex-models) and their Spearman similarity as Quantus computes it (leukex-evaluate).

use burn::prelude::*;
use leukex_evaluate::{MprtResult, SimilarityOptions};
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, Granularity, LayerOrder, ModelConfig};

const K: usize = 3;

fn model() -> Classifier {
    let mut m = Classifier::new(&ModelConfig::new(Arch::ResNet18, K), &Device::default());
    let sd = closed_form_state_dict(&m, None);
    m.load_state_dict(&sd).unwrap();
    m.valid()
}

fn input() -> Tensor<4> {
    let shape = [2, 3, 32, 32];
    Tensor::<4>::from_data(
        TensorData::new(input_value(&shape), shape),
        &Device::default(),
    )
}

/// d logit[target] / d input per image (the Gradient method), flattened over C, H, W.
fn gradient_maps(m: &Classifier, x: &Tensor<4>, targets: &[usize]) -> Vec<Vec<f32>> {
    let x = x.clone().autodiff().require_grad();
    let logits = m.forward(x.clone());
    let mut seed = vec![0f32; targets.len() * K];
    for (i, &t) in targets.iter().enumerate() {
        seed[i * K + t] = 1.0;
    }
    let seed = Tensor::<2>::from_data(TensorData::new(seed, [targets.len(), K]), &logits.device());
    let grads = (logits * seed).sum().backward();
    let g = x.grad(&grads).expect("input gradient");
    let v = g
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    v.chunks(v.len() / targets.len())
        .map(|c| c.to_vec())
        .collect()
}

#[test]
fn randomising_the_top_group_decorrelates_the_gradient_and_nothing_keeps_it() {
    let m = model();
    let x = input();
    let targets = [1, 2];
    let original = gradient_maps(&m, &x, &targets);
    assert!(original.iter().all(|g| g.iter().any(|v| v.abs() > 1e-6)));
    let sim = SimilarityOptions::default(); // Quantus: Spearman of |normalised maps|

    // Randomising nothing: the very same maps, similarity exactly 1.
    let mut same = m.clone();
    same.randomise::<&str>(&[], 42).unwrap();
    let again = gradient_maps(&same, &x, &targets);
    assert_eq!(again, original);
    let s0 = sim.compare_all(&original, &again).unwrap();
    assert_eq!(s0, vec![Some(1.0), Some(1.0)]);
    let mut result = MprtResult::new(s0);

    // Cascade over the coarse groups, top down, on copies of the original model.
    let steps = m.randomisation_steps(LayerOrder::TopDown, Granularity::Group);
    assert_eq!(steps[0].name, "fc");
    let mut first = Vec::new();
    for step in steps.iter().take(3) {
        let mut r = m.clone();
        r.randomise(&step.modules, 42).unwrap();
        let maps = gradient_maps(&r, &x, &targets);
        let s = sim.compare_all(&original, &maps).unwrap();
        eprintln!("{}: spearman {s:?}", step.name);
        for v in &s {
            let v = v.expect("defined");
            assert!(v < 1.0 - 1e-6, "{}: spearman {v}", step.name);
        }
        if first.is_empty() {
            first = maps;
        }
        result.push(step.name.clone(), s).unwrap();
    }
    // A random head alone already changes which input pixels matter most: with 3
    // classes the target logit's gradient is a new mix of the feature gradients.
    let means = result.layer_means();
    assert!(means.iter().all(|(_, m)| m.unwrap() < 0.9), "{means:?}");
    assert_eq!(result.last_correlation(), result.layers[2].scores);
    let avg = result.average_correlation();
    let want = (1.0
        + result
            .layers
            .iter()
            .map(|l| l.scores[0].unwrap())
            .sum::<f64>())
        / 4.0;
    assert!((avg[0].unwrap() - want).abs() < 1e-15);

    // Determinism: the same seed gives the same randomised model and maps, bit for bit;
    // another seed gives other maps. The original model is untouched throughout.
    let mut r = m.clone();
    r.randomise(&steps[0].modules, 42).unwrap();
    assert_eq!(gradient_maps(&r, &x, &targets), first);
    let mut r = m.clone();
    r.randomise(&steps[0].modules, 43).unwrap();
    assert_ne!(gradient_maps(&r, &x, &targets), first);
    assert_eq!(gradient_maps(&m, &x, &targets), original);
}
