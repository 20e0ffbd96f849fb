//! The surroundings of the white cell: the slide, the red cells, the
//! platelets, and the microscope that photographs them.
//!
//! Nothing here may depend on the image's class, except the one switch that
//! exists to break that rule on purpose ([`crate::Shortcut::RbcDensity`]).

use crate::canvas::{self, Canvas, Od, gaussian_blur};
use crate::noise::{ValueNoise, smoothstep};
use crate::rng::stream;
use crate::shape::{Shape, coverage};
use crate::{Shortcut, SynthConfig};
use image::RgbImage;
use leukex_data::MorphologyClass;
use rand::{Rng, RngCore};

/// Number of simulated slides. Images are spread over them at random, so
/// every slide holds both classes (the class comes from the image index, the
/// slide from the scene stream).
pub(crate) const SLIDES: u64 = 20;

/// The crop size of ALL-IDB2; proportions are tuned at this size and scale
/// with `--size`.
pub(crate) const REF_SIZE: f32 = 257.0;

/// Colours near real Wright–Giemsa smears (8-bit RGB, as photographed).
pub(crate) const BACKGROUND_RGB: [f32; 3] = [225.0, 215.0, 205.0];
const RBC_RGB: [f32; 3] = [205.0, 150.0, 150.0];
const PLATELET_RGB: [f32; 3] = [140.0, 90.0, 170.0];

fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

fn jitter3(rng: &mut impl Rng, spread: f32) -> [f32; 3] {
    [(); 3].map(|_| uniform(rng, 1.0 - spread, 1.0 + spread))
}

/// What one slide shares across its images: how it was stained, how thick
/// the smear is, and the microscope's white balance. This is the group
/// structure of the dataset (images of one slide resemble each other).
pub(crate) struct Slide {
    pub id: u64,
    white: [f32; 3],
    bg_od: Od,
    eosin: Od,
    azure: [f32; 3],
    rbc_density: f32,
    rbc_radius: f32,
    rbc_min_gap: f32,
}

impl Slide {
    fn new(seed: u64, id: u64) -> Self {
        let rng = &mut stream(seed, id, "slide");
        let bg_nominal = canvas::od_of(BACKGROUND_RGB);
        let eosin_nominal = canvas::sub(canvas::od_of(RBC_RGB), bg_nominal);
        let tint = uniform(rng, -0.04, 0.04);
        Slide {
            id,
            // White balance: some photos lean warm, some cool.
            white: [1.0 + tint, 1.0, 1.0 - tint].map(|w| w * uniform(rng, 0.985, 1.015)),
            bg_od: canvas::mul(bg_nominal, jitter3(rng, 0.25)),
            eosin: canvas::scale(
                canvas::mul(eosin_nominal, jitter3(rng, 0.08)),
                uniform(rng, 0.8, 1.2),
            ),
            azure: jitter3(rng, 0.06).map(|a| a * uniform(rng, 0.88, 1.12)),
            rbc_density: uniform(rng, 0.55, 0.9),
            rbc_radius: uniform(rng, 0.118, 0.138),
            rbc_min_gap: uniform(rng, 0.78, 0.95),
        }
    }
}

struct RedCell {
    shape: Shape,
    od: Od,
    /// Thickness by normalised radius, sampled on [0, PROFILE_END].
    profile: Vec<f32>,
}

const PROFILE_STEPS: usize = 256;
const PROFILE_END: f32 = 1.25;

impl RedCell {
    /// Thickness of a biconcave disc: thin in the middle (central pallor),
    /// thickest just inside the rim.
    fn profile(pallor_radius: f32, pallor_depth: f32) -> Vec<f32> {
        (0..=PROFILE_STEPS)
            .map(|i| {
                let u = i as f32 * PROFILE_END / PROFILE_STEPS as f32;
                let pallor = (-(u / pallor_radius).powi(2) * 1.6).exp();
                let torus = 0.22 * (-((u - 0.84) / 0.13).powi(2)).exp();
                0.92 - pallor_depth * pallor + torus
            })
            .collect()
    }

    fn thickness(&self, u: f32) -> f32 {
        let f = (u * (PROFILE_STEPS as f32 / PROFILE_END)).clamp(0.0, PROFILE_STEPS as f32 - 0.001);
        let i = f as usize;
        let t = f - i as f32;
        self.profile[i] + (self.profile[i + 1] - self.profile[i]) * t
    }
}

struct Platelet {
    shape: Shape,
    granules: ValueNoise,
    od: Od,
}

/// One image's surroundings and camera. Built from the scene streams of
/// (seed, index) and the image's slide; the class enters only through the
/// shortcut.
pub(crate) struct Scene {
    pub slide: Slide,
    pub bg_od: Od,
    /// Strength of the basic (azure / methylene blue) dye per channel: what
    /// colours nuclei and cytoplasm. Read by the cell painter.
    pub azure: [f32; 3],
    pub size: usize,
    white: [f32; 3],
    brightness: f32,
    vignette: (f32, f32, f32),
    gradient: (f32, f32),
    pub blur_sigma: f32,
    read_noise: f32,
    shot_noise: f32,
    texture: (ValueNoise, ValueNoise),
    red_cells: Vec<RedCell>,
    platelets: Vec<Platelet>,
}

impl Scene {
    pub(crate) fn new(cfg: &SynthConfig, index: usize, label: u8) -> Self {
        let size = cfg.size as usize;
        let s = size as f32;
        let scale = s / REF_SIZE;
        let key = index as u64;
        let rng = &mut stream(cfg.seed, key, "scene");
        let slide = Slide::new(cfg.seed, rng.random_range(0..SLIDES));
        let bg_od = canvas::mul(slide.bg_od, jitter3(rng, 0.06));
        let azure = canvas::mul(slide.azure, jitter3(rng, 0.03));
        let white = canvas::mul(slide.white, jitter3(rng, 0.008));
        let brightness = uniform(rng, 0.97, 1.04);
        let vignette = (
            uniform(rng, 0.3, 0.7) * s,
            uniform(rng, 0.3, 0.7) * s,
            uniform(rng, 0.03, 0.12),
        );
        let gradient = (uniform(rng, -0.05, 0.05), uniform(rng, -0.05, 0.05));
        let blur_sigma = uniform(rng, 0.8, 1.2) * scale.clamp(0.5, 2.0);
        let read_noise = uniform(rng, 1.0, 2.0);
        let shot_noise = uniform(rng, 0.01, 0.03);

        let trng = &mut stream(cfg.seed, key, "texture");
        let texture = (
            ValueNoise::new(trng, 0.0, 0.0, s, s, s / 3.0),
            ValueNoise::new(trng, 0.0, 0.0, s, s, 5.0 * scale.max(0.5)),
        );

        // Red cells have their own stream so that the shortcut, which
        // changes how many there are, changes nothing else.
        let rrng = &mut stream(cfg.seed, key, "rbc");
        let mut density = slide.rbc_density * uniform(rrng, 0.85, 1.15);
        if cfg.shortcut == Some(Shortcut::RbcDensity) {
            density *= if label == 1 { 1.45 } else { 0.65 };
        }
        let red_cells = place_red_cells(rrng, &slide, size, density);

        let prng = &mut stream(cfg.seed, key, "platelet");
        let platelets = place_platelets(prng, size, &red_cells);

        Scene {
            slide,
            bg_od,
            azure,
            size,
            white,
            brightness,
            vignette,
            gradient,
            blur_sigma,
            read_noise,
            shot_noise,
            texture,
            red_cells,
            platelets,
        }
    }

    /// Draws the slide, red cells and platelets.
    pub(crate) fn paint(&self, c: &mut Canvas) {
        let size = self.size;
        for y in 0..size {
            for x in 0..size {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                // Plasma film: thicker and thinner patches, a fine grain.
                let i = y * size + x;
                c.grain[i] = self.texture.1.sample(px, py);
                let t = 1.0 + 0.10 * self.texture.0.sample(px, py) + 0.04 * c.grain[i];
                c.bg[i] = canvas::scale(self.bg_od, t);
                c.od[i] = c.bg[i];
            }
        }
        for rc in &self.red_cells {
            paint_red_cell(c, rc);
        }
        for p in &self.platelets {
            paint_platelet(c, p);
        }
    }

    /// Takes the picture: light through the slide, the microscope's
    /// uneven illumination, optical blur, then sensor noise and 8 bits.
    pub(crate) fn photograph(&self, c: &Canvas, seed: u64, index: usize) -> RgbImage {
        let size = self.size;
        let s = size as f32;
        let (vx, vy, vs) = self.vignette;
        let mut light = canvas::take_buffer(size * size);
        for y in 0..size {
            for x in 0..size {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let r2 = ((px - vx).powi(2) + (py - vy).powi(2)) / (0.5 * s * s);
                let l = self.brightness
                    * (1.0 - vs * r2)
                    * (1.0 + self.gradient.0 * (px / s - 0.5) + self.gradient.1 * (py / s - 0.5));
                let i = y * size + x;
                let od = c.od[i];
                light[i] = [0, 1, 2].map(|k| 255.0 * l * self.white[k] * (-od[k]).exp());
            }
        }
        gaussian_blur(&mut light, size, self.blur_sigma);
        // Noise has a stream of its own and is drawn for every pixel in
        // the same order, so two renders that differ only inside the cell
        // get the same noise outside it.
        let rng = &mut stream(seed, index as u64, "noise");
        let mut img = RgbImage::new(size as u32, size as u32);
        for (p, l) in img.pixels_mut().zip(&light) {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            let shared = unit_noise(a as u32);
            for (k, (out, &signal)) in p.0.iter_mut().zip(l).enumerate() {
                let own = unit_noise(if k == 0 {
                    (a >> 32) as u32
                } else {
                    (b >> (32 * (k - 1))) as u32
                });
                let sd = (self.read_noise * self.read_noise + self.shot_noise * signal).sqrt();
                // Demosaicing correlates the channels' noise.
                let v = signal + sd * (0.55 * shared + 0.835 * own);
                *out = (v + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
        canvas::give_back(light);
        img
    }
}

/// Zero-mean, unit-variance noise from 32 random bits: the sum of four
/// uniform bytes (Irwin–Hall), close enough to Gaussian for sensor noise
/// and several times cheaper than an exact normal draw.
fn unit_noise(bits: u32) -> f32 {
    let sum: u32 = bits.to_le_bytes().iter().map(|&b| b as u32).sum();
    // Four bytes: mean 510, variance 4 * (256² - 1) / 12.
    (sum as f32 - 510.0) * (1.0 / 147.8)
}

fn place_red_cells(rng: &mut impl Rng, slide: &Slide, size: usize, density: f32) -> Vec<RedCell> {
    let s = size as f32;
    let r_mean = slide.rbc_radius * s;
    // Red cells reach past the border, so some are cut by it.
    let margin = 0.6 * r_mean;
    let span = s + 2.0 * margin;
    let count = (density * span * span / (std::f32::consts::PI * r_mean * r_mean)).round() as usize;
    let mut placed: Vec<(f32, f32, f32)> = Vec::with_capacity(count);
    let mut cells = Vec::with_capacity(count);
    for _ in 0..count {
        let r = r_mean * uniform(rng, 0.88, 1.12);
        // Best of a few candidates: red cells crowd but mostly do not pile
        // up, as in the monolayer where smears are read.
        let mut best = (f32::MIN, 0.0, 0.0);
        for _ in 0..12 {
            let x = uniform(rng, -margin, s + margin);
            let y = uniform(rng, -margin, s + margin);
            let gap = placed
                .iter()
                .map(|&(px, py, pr)| ((x - px).powi(2) + (y - py).powi(2)).sqrt() / (r + pr))
                .fold(f32::MAX, f32::min);
            if gap > best.0 {
                best = (gap, x, y);
            }
            if gap >= slide.rbc_min_gap {
                break;
            }
        }
        let (_, x, y) = best;
        placed.push((x, y, r));
        let spherocyte = rng.random::<f32>() < 0.06;
        cells.push(RedCell {
            shape: Shape::ellipse(
                x,
                y,
                r,
                uniform(rng, 0.86, 1.0),
                uniform(rng, 0.0, std::f32::consts::PI),
            )
            .perturbed(rng, 2, 5, 0.012)
            .tabulated(),
            od: canvas::scale(slide.eosin, uniform(rng, 0.85, 1.12)),
            profile: RedCell::profile(
                uniform(rng, 0.38, 0.58),
                if spherocyte {
                    uniform(rng, 0.05, 0.15)
                } else {
                    uniform(rng, 0.35, 0.6)
                },
            ),
        });
    }
    cells
}

fn paint_red_cell(c: &mut Canvas, rc: &RedCell) {
    let size = c.size;
    let (x0, y0, x1, y1) = rc.shape.bbox(2.0, size, size);
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            if !rc.shape.near(px, py, 1.0) {
                continue;
            }
            let (d, u) = rc.shape.eval(px, py);
            if d > 1.0 {
                continue;
            }
            let a = coverage(d, 1.4);
            let i = y * size + x;
            let t = rc.thickness(u) * (1.0 + 0.04 * c.grain[i]);
            c.od[i] = canvas::add(c.od[i], canvas::scale(rc.od, t * a));
            if d < 0.0 {
                c.mask[i] = MorphologyClass::Rbc as u8;
            }
        }
    }
}

fn place_platelets(rng: &mut impl Rng, size: usize, red_cells: &[RedCell]) -> Vec<Platelet> {
    let s = size as f32;
    let scale = s / REF_SIZE;
    let roll = rng.random::<f32>();
    let count = match roll {
        r if r < 0.30 => 0,
        r if r < 0.65 => 1,
        r if r < 0.85 => 2,
        r if r < 0.95 => 3,
        _ => 4,
    };
    let nominal = canvas::sub(canvas::od_of(PLATELET_RGB), canvas::od_of(BACKGROUND_RGB));
    (0..count)
        .map(|_| {
            let r = uniform(rng, 0.016, 0.028) * s;
            // Platelets settle in the gaps between red cells.
            let mut spot = (0.0, 0.0);
            for _ in 0..10 {
                spot = (uniform(rng, 0.0, s), uniform(rng, 0.0, s));
                if red_cells
                    .iter()
                    .all(|rc| rc.shape.eval(spot.0, spot.1).0 > r)
                {
                    break;
                }
            }
            let shape = Shape::ellipse(
                spot.0,
                spot.1,
                r,
                uniform(rng, 0.65, 1.0),
                uniform(rng, 0.0, std::f32::consts::PI),
            )
            .perturbed(rng, 2, 6, 0.09);
            let granules = ValueNoise::new(
                rng,
                spot.0 - 2.0 * r,
                spot.1 - 2.0 * r,
                4.0 * r,
                4.0 * r,
                1.6 * scale.max(0.6),
            );
            Platelet {
                shape,
                granules,
                od: canvas::scale(nominal, uniform(rng, 0.8, 1.2)),
            }
        })
        .collect()
}

fn paint_platelet(c: &mut Canvas, p: &Platelet) {
    let size = c.size;
    let (x0, y0, x1, y1) = p.shape.bbox(2.0, size, size);
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let (d, u) = p.shape.eval(px, py);
            if d > 1.0 {
                continue;
            }
            let a = coverage(d, 1.2);
            // Pale hyalomere around a granular purple centre.
            let g = smoothstep(0.0, 0.6, p.granules.sample(px, py)) * smoothstep(0.95, 0.4, u);
            let t = a * (0.3 + 0.9 * g);
            let i = y * size + x;
            c.od[i] = canvas::add(c.od[i], canvas::scale(p.od, t));
            if d < 0.0 {
                // Platelets count as background, as in the paper.
                c.mask[i] = MorphologyClass::Background as u8;
            }
        }
    }
}
