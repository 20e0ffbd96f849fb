//! Organic outlines: an ellipse whose radius is perturbed by a few low
//! Fourier harmonics. Cells, nuclei and red cells are all of this kind; the
//! amplitude of the harmonics is what makes a nucleus round (lymphocyte) or
//! irregular (blast).

use rand::Rng;
use rand_distr::{Distribution, Normal};

const K: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub cx: f32,
    pub cy: f32,
    r0: f32,
    aspect: f32,
    rot_cos: f32,
    rot_sin: f32,
    c: [f32; K + 1],
    s: [f32; K + 1],
    kmax: usize,
    /// Bounding radius, for cheap rejection of far pixels.
    rmax: f32,
    /// Radius and its derivative sampled by pseudo-angle, for shapes
    /// evaluated at many pixels (see [`Shape::tabulated`]).
    table: Option<Vec<[f32; 2]>>,
}

/// Table bins per unit of pseudo-angle (four units make a full turn).
const BINS_PER_QUADRANT: usize = 128;
const TABLE_BINS: usize = 4 * BINS_PER_QUADRANT;

/// A monotone stand-in for the angle of (`dx`, `dy`), in [0, 4): cheaper
/// than `atan2` and just as good for indexing a table.
fn pseudo_angle(dx: f32, dy: f32) -> f32 {
    if dy >= 0.0 {
        if dx >= 0.0 {
            dy / (dx + dy)
        } else {
            1.0 - dx / (dy - dx)
        }
    } else if dx < 0.0 {
        2.0 - dy / (-dx - dy)
    } else {
        3.0 + dx / (dx - dy)
    }
}

/// The unit direction at pseudo-angle `p`.
fn direction(p: f32) -> (f32, f32) {
    let (dx, dy) = match p {
        p if p < 1.0 => (1.0 - p, p),
        p if p < 2.0 => (1.0 - p, 2.0 - p),
        p if p < 3.0 => (p - 3.0, 2.0 - p),
        p => (p - 3.0, p - 4.0),
    };
    let n = (dx * dx + dy * dy).sqrt();
    (dx / n, dy / n)
}

impl Shape {
    /// An ellipse with semi-axes `r0` and `r0 * aspect` (aspect ≤ 1), the
    /// long axis at angle `rot`.
    pub(crate) fn ellipse(cx: f32, cy: f32, r0: f32, aspect: f32, rot: f32) -> Self {
        Shape {
            cx,
            cy,
            r0,
            aspect: aspect.clamp(0.05, 1.0),
            rot_cos: rot.cos(),
            rot_sin: rot.sin(),
            c: [0.0; K + 1],
            s: [0.0; K + 1],
            kmax: 0,
            rmax: r0,
            table: None,
        }
    }

    /// Precomputes the outline by direction, so that evaluating the shape
    /// at a pixel costs a table look-up instead of the harmonic sum. Worth it
    /// for shapes covering thousands of pixels (cells, nuclei, red cells).
    pub(crate) fn tabulated(mut self) -> Self {
        self.table = None;
        let table = (0..=TABLE_BINS)
            .map(|i| {
                let (ct, st) = direction((i % TABLE_BINS) as f32 / BINS_PER_QUADRANT as f32);
                let (r, dr) = self.radius(ct, st);
                [r, dr]
            })
            .collect();
        self.table = Some(table);
        self
    }

    /// Adds harmonics `kmin..=kmax` with amplitudes drawn around `sd / k^0.5`
    /// (relative to the radius): higher harmonics wiggle less, as in real
    /// membranes.
    pub(crate) fn perturbed(
        mut self,
        rng: &mut impl Rng,
        kmin: usize,
        kmax: usize,
        sd: f32,
    ) -> Self {
        let kmax = kmax.min(K);
        for k in kmin..=kmax {
            let d = Normal::new(0.0, sd / (k as f32).sqrt()).expect("finite sd");
            self.c[k] = d.sample(rng);
            self.s[k] = d.sample(rng);
        }
        self.kmax = self.kmax.max(kmax);
        let amp: f32 = (1..=self.kmax)
            .map(|k| self.c[k].abs() + self.s[k].abs())
            .sum();
        self.rmax = self.r0 * (1.0 + amp);
        self
    }

    /// Radius bound over all directions.
    pub(crate) fn max_radius(&self) -> f32 {
        self.rmax
    }

    /// Whether (`x`, `y`) may lie within `margin` of the shape; `false`
    /// means certainly not.
    pub(crate) fn near(&self, x: f32, y: f32, margin: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let r = self.rmax + margin;
        dx * dx + dy * dy <= r * r
    }

    pub(crate) fn mean_radius(&self) -> f32 {
        self.r0 * self.aspect.sqrt()
    }

    /// Radius and its derivative by angle, in the direction (`ct`, `st`).
    fn radius(&self, ct: f32, st: f32) -> (f32, f32) {
        let cp = ct * self.rot_cos + st * self.rot_sin;
        let sp = st * self.rot_cos - ct * self.rot_sin;
        let a2 = self.aspect * self.aspect;
        let q = a2 * cp * cp + sp * sp;
        let re = self.r0 * self.aspect / q.sqrt();
        let dre = -re * (1.0 - a2) * sp * cp / q;
        let (mut ck, mut sk) = (1.0f32, 0.0f32);
        let (mut p, mut dp) = (0.0f32, 0.0f32);
        for k in 1..=self.kmax {
            (ck, sk) = (ck * ct - sk * st, sk * ct + ck * st);
            p += self.c[k] * ck + self.s[k] * sk;
            dp += k as f32 * (self.s[k] * ck - self.c[k] * sk);
        }
        let f = (1.0 + p).max(0.3);
        (re * f, dre * f + re * dp)
    }

    /// Radius towards the direction `angle`.
    pub(crate) fn radius_at(&self, angle: f32) -> f32 {
        self.radius(angle.cos(), angle.sin()).0
    }

    /// Signed distance of (`x`, `y`) to the outline (negative inside, to first
    /// order) and the normalised radius ρ/r(θ) (0 at the centre, 1 on the
    /// outline).
    pub(crate) fn eval(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let rho = (dx * dx + dy * dy).sqrt();
        if rho < 1e-3 {
            return (-self.radius(1.0, 0.0).0, 0.0);
        }
        let (r, dr) = match &self.table {
            Some(table) => {
                let f = pseudo_angle(dx, dy) * BINS_PER_QUADRANT as f32;
                let i = (f as usize).min(TABLE_BINS - 1);
                let t = f - i as f32;
                let ([r0, d0], [r1, d1]) = (table[i], table[i + 1]);
                (r0 + (r1 - r0) * t, d0 + (d1 - d0) * t)
            }
            None => self.radius(dx / rho, dy / rho),
        };
        let g = (1.0 + (dr / rho) * (dr / rho)).sqrt();
        ((rho - r) / g, rho / r)
    }

    /// Pixel bounds (x0, y0, x1, y1), half-open, clipped to a `w`×`h` image,
    /// of everything within `margin` of the shape.
    pub(crate) fn bbox(&self, margin: f32, w: usize, h: usize) -> (usize, usize, usize, usize) {
        let r = self.max_radius() + margin;
        let clip = |v: f32, hi: usize| v.clamp(0.0, hi as f32) as usize;
        (
            clip((self.cx - r).floor(), w),
            clip((self.cy - r).floor(), h),
            clip((self.cx + r).ceil() + 1.0, w),
            clip((self.cy + r).ceil() + 1.0, h),
        )
    }
}

/// Coverage of a pixel by a shape edge at signed distance `d`, ramped over
/// `width` pixels: 1 inside, 0 outside, exactly 0.5 on the outline. The
/// mask uses the same outline (`d < 0`), so it is exact for the geometry.
pub(crate) fn coverage(d: f32, width: f32) -> f32 {
    (0.5 - d / width).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_distance_is_euclidean() {
        let s = Shape::ellipse(10.0, 10.0, 5.0, 1.0, 0.0);
        let (d, u) = s.eval(18.0, 10.0);
        assert!((d - 3.0).abs() < 1e-5 && (u - 1.6).abs() < 1e-5);
        assert!((s.eval(10.0, 7.0).0 + 2.0).abs() < 1e-5);
    }

    #[test]
    fn ellipse_axes_and_rotation() {
        let s = Shape::ellipse(0.0, 0.0, 10.0, 0.5, std::f32::consts::FRAC_PI_2);
        assert!(s.eval(0.0, 10.0).0.abs() < 1e-4, "long axis is vertical");
        assert!(s.eval(5.0, 0.0).0.abs() < 1e-4, "short axis is horizontal");
    }

    #[test]
    fn pseudo_angle_is_monotone_and_inverts_direction() {
        let mut prev = -1.0;
        for i in 0..720 {
            let a = i as f32 * std::f32::consts::TAU / 720.0;
            let p = pseudo_angle(a.cos(), a.sin());
            assert!(p > prev && (0.0..4.0).contains(&p), "{i}: {p}");
            prev = p;
            let (ct, st) = direction(p);
            assert!((ct - a.cos()).abs() < 1e-4 && (st - a.sin()).abs() < 1e-4);
        }
    }

    #[test]
    fn tabulated_shape_matches_the_exact_one() {
        let mut rng = crate::rng::stream(4, 0, "t");
        let exact = Shape::ellipse(50.0, 50.0, 40.0, 0.85, 1.0).perturbed(&mut rng, 2, 7, 0.06);
        let fast = exact.clone().tabulated();
        for y in 0..100 {
            for x in 0..100 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let (d0, u0) = exact.eval(px, py);
                let (d1, u1) = fast.eval(px, py);
                if d0.abs() < 3.0 {
                    assert!((d0 - d1).abs() < 0.02, "({x}, {y}): {d0} vs {d1}");
                }
                assert!((u0 - u1).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn perturbed_shape_distance_is_first_order_accurate() {
        let mut rng = crate::rng::stream(3, 0, "t");
        let s = Shape::ellipse(0.0, 0.0, 40.0, 0.9, 0.3).perturbed(&mut rng, 2, 6, 0.05);
        for i in 0..64 {
            let a = i as f32 * std::f32::consts::TAU / 64.0;
            let r = s.radius_at(a);
            let (d, u) = s.eval(r * a.cos(), r * a.sin());
            assert!(d.abs() < 1e-3 && (u - 1.0).abs() < 1e-4);
            // One pixel out along the ray is at most one pixel away.
            let (d1, _) = s.eval((r + 1.0) * a.cos(), (r + 1.0) * a.sin());
            assert!(d1 > 0.3 && d1 <= 1.0 + 1e-4, "{d1}");
        }
    }
}
