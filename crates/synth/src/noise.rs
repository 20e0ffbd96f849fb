//! Smoothed value noise: the texture behind chromatin, stain unevenness and
//! platelet granules. A lattice of random values, interpolated with a
//! smoothstep so that no pixel grid shows.

use rand::Rng;

pub(crate) struct ValueNoise {
    cx: f32,
    cy: f32,
    half: f32,
    cos: f32,
    sin: f32,
    inv_cell: f32,
    gw: usize,
    gh: usize,
    values: Vec<f32>,
}

impl ValueNoise {
    /// Noise over the rectangle (`x0`, `y0`, `w`, `h`) with features about
    /// `cell` pixels across; values in [-1, 1]. The lattice is turned by a
    /// random angle so that its axes do not line up with the image's.
    pub(crate) fn new(rng: &mut impl Rng, x0: f32, y0: f32, w: f32, h: f32, cell: f32) -> Self {
        let cell = cell.max(0.5);
        let half = 0.5 * (w * w + h * h).sqrt() + cell;
        let gw = (2.0 * half / cell).ceil().max(0.0) as usize + 3;
        let gh = gw;
        let angle = rng.random::<f32>() * std::f32::consts::TAU;
        let values = (0..gw * gh)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect();
        ValueNoise {
            cx: x0 + 0.5 * w,
            cy: y0 + 0.5 * h,
            half,
            cos: angle.cos(),
            sin: angle.sin(),
            inv_cell: 1.0 / cell,
            gw,
            gh,
            values,
        }
    }

    pub(crate) fn sample(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let u = self.cos * dx + self.sin * dy + self.half;
        let v = self.cos * dy - self.sin * dx + self.half;
        let fx = (u * self.inv_cell).clamp(0.0, (self.gw - 2) as f32 + 0.999);
        let fy = (v * self.inv_cell).clamp(0.0, (self.gh - 2) as f32 + 0.999);
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
        let row = iy * self.gw + ix;
        let v = &self.values;
        let top = v[row] + (v[row + 1] - v[row]) * tx;
        let bottom = v[row + self.gw] + (v[row + self.gw + 1] - v[row + self.gw]) * tx;
        top + (bottom - top) * ty
    }
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth 0→1 step between `e0` and `e1`.
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    smooth(((x - e0) / (e1 - e0)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_bounded_and_continuous() {
        let mut rng = crate::rng::stream(0, 0, "t");
        let n = ValueNoise::new(&mut rng, 0.0, 0.0, 50.0, 50.0, 5.0);
        let mut prev = n.sample(0.0, 10.0);
        for i in 1..500 {
            let v = n.sample(i as f32 * 0.1, 10.0);
            assert!((-1.0..=1.0).contains(&v));
            assert!((v - prev).abs() < 0.1, "jump at {i}");
            prev = v;
        }
    }
}
