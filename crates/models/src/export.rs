//! The model's current parameters and BatchNorm statistics as a torchvision `state_dict`,
//! and the seeded from-scratch initialisation torchvision uses.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;

use crate::layers::LayerVisitor;
use crate::weights::StateDict;
use leukex_hash::{SplitMix64, fnv1a64};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor")
}

/// Collects every parameter and buffer under its torchvision key, torch layout.
pub(crate) struct Exporter {
    pub(crate) sd: StateDict,
    /// Value written to every `*.num_batches_tracked`.
    pub(crate) batches: u64,
}

impl Exporter {
    fn put<const D: usize>(&mut self, key: String, p: &Param<Tensor<D>>) {
        let t = p.val();
        let shape = t.dims().to_vec();
        self.sd.insert(key, shape, values(t));
    }
}

impl LayerVisitor for Exporter {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        self.put(format!("{name}.weight"), &m.weight);
        if let Some(b) = &m.bias {
            self.put(format!("{name}.bias"), b);
        }
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        self.put(format!("{name}.weight"), &m.gamma);
        self.put(format!("{name}.bias"), &m.beta);
        let c = m.gamma.lazy_shape().as_slice()[0];
        let mean = values(m.running_mean.value_sync());
        let var = values(m.running_var.value_sync());
        self.sd
            .insert(format!("{name}.running_mean"), vec![c], mean);
        self.sd.insert(format!("{name}.running_var"), vec![c], var);
        self.sd.insert(
            format!("{name}.num_batches_tracked"),
            vec![],
            vec![self.batches as f32],
        );
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        // burn [in, out] -> torch [out, in]
        let w = m.weight.val();
        let [din, dout] = w.dims();
        let v = values(w);
        let mut t = vec![0f32; din * dout];
        for i in 0..din {
            for o in 0..dout {
                t[o * din + i] = v[i * dout + o];
            }
        }
        self.sd.insert(format!("{name}.weight"), vec![dout, din], t);
        if let Some(b) = &m.bias {
            self.put(format!("{name}.bias"), b);
        }
    }
}

/// A state dict of torchvision's from-scratch initialisation, drawn per key from its own
/// seeded stream (so the result does not depend on visiting order):
/// convolutions Kaiming-normal with fan-out and ReLU gain (`std = √(2 / (c_out·k·k))`,
/// torchvision's ResNet and VGG init, also used here for GoogLeNet and EfficientNet),
/// zero conv biases, BatchNorm weight 1, bias 0, running mean 0 and variance 1, linear
/// layers PyTorch's default `U(−1/√in, 1/√in)` for weight and bias.
pub(crate) struct ScratchInit {
    pub(crate) sd: StateDict,
    pub(crate) seed: u64,
}

impl ScratchInit {
    fn rng(&self, key: &str) -> SplitMix64 {
        SplitMix64(self.seed ^ fnv1a64(key))
    }

    fn normal(&self, key: &str, n: usize, std: f64) -> Vec<f32> {
        let mut rng = self.rng(key);
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            // Box–Muller: two normals per pair of uniforms.
            let u1 = 1.0 - rng.next_f64();
            let u2 = rng.next_f64();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = std::f64::consts::TAU * u2;
            out.push((r * a.cos()) as f32);
            out.push((r * a.sin()) as f32);
        }
        out.truncate(n);
        out
    }

    fn uniform(&self, key: &str, n: usize, bound: f64) -> Vec<f32> {
        seeded_uniform(self.seed, key, n, bound)
    }
}

/// `n` draws from `U(−bound, bound)` (rounded once to f32) out of a SplitMix64 stream seeded
/// with `seed ^ fnv1a64(key)`: one stream per key, so the values of a key depend on nothing
/// but the seed and the key.
pub(crate) fn seeded_uniform(seed: u64, key: &str, n: usize, bound: f64) -> Vec<f32> {
    let mut rng = SplitMix64(seed ^ fnv1a64(key));
    (0..n)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
        .collect()
}

impl LayerVisitor for ScratchInit {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        let shape = m.weight.lazy_shape().to_vec(); // [out, in/groups, k, k]
        let fan_out = shape[0] * shape[2] * shape[3];
        let key = format!("{name}.weight");
        let w = self.normal(&key, shape.iter().product(), (2.0 / fan_out as f64).sqrt());
        self.sd.insert(key, shape.clone(), w);
        if m.bias.is_some() {
            self.sd
                .insert(format!("{name}.bias"), vec![shape[0]], vec![0.0; shape[0]]);
        }
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        let c = m.gamma.lazy_shape().as_slice()[0];
        for (s, v) in [
            ("weight", 1.0),
            ("bias", 0.0),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ] {
            self.sd.insert(format!("{name}.{s}"), vec![c], vec![v; c]);
        }
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        let s = m.weight.lazy_shape().to_vec(); // burn [in, out]
        let (din, dout) = (s[0], s[1]);
        let bound = 1.0 / (din as f64).sqrt();
        let key = format!("{name}.weight");
        let w = self.uniform(&key, din * dout, bound);
        self.sd.insert(key, vec![dout, din], w);
        if m.bias.is_some() {
            let key = format!("{name}.bias");
            let b = self.uniform(&key, dout, bound);
            self.sd.insert(key, vec![dout], b);
        }
    }
}
