//! The working surface of one image: optical densities and the mask.
//!
//! Pixels are kept as optical density (absorbance, −ln transmission) per
//! colour channel until the very end, because stained material on a slide
//! adds up that way (Beer–Lambert): where two red cells overlap the smear is
//! darker, exactly as on a real slide. Light, blur and sensor noise are
//! applied only when the picture is "taken" in [`crate::scene::Scene::photograph`].

use leukex_data::MorphologyClass;
use std::cell::RefCell;

pub(crate) type Od = [f32; 3];

pub(crate) struct Canvas {
    pub size: usize,
    /// Optical density of the bare slide (plasma film) at each pixel; what a
    /// cell is composited onto when it hides the red cells beneath it.
    pub bg: Vec<Od>,
    /// Optical density of everything drawn so far.
    pub od: Vec<Od>,
    /// Fine grain of the film (value noise in [-1, 1]), kept so the red
    /// cells lying on it can share it without sampling it again.
    pub grain: Vec<f32>,
    /// Class per pixel (`MorphologyClass as u8`).
    pub mask: Vec<u8>,
}

impl Canvas {
    pub(crate) fn new(size: usize) -> Self {
        let n = size * size;
        Canvas {
            size,
            bg: take_buffer(n),
            od: take_buffer(n),
            grain: GRAIN_POOL
                .with(|p| p.borrow_mut().take())
                .map(|mut g| {
                    g.clear();
                    g.resize(n, 0.0);
                    g
                })
                .unwrap_or_else(|| vec![0.0; n]),
            mask: vec![MorphologyClass::Background as u8; n],
        }
    }

    /// Hands the buffers back for the next image; returns the mask.
    pub(crate) fn finish(self) -> Vec<u8> {
        give_back(self.bg);
        give_back(self.od);
        GRAIN_POOL.with(|p| *p.borrow_mut() = Some(self.grain));
        self.mask
    }
}

thread_local! {
    /// Image-sized buffers kept per thread: allocating ~1 MB afresh for
    /// every image costs more in page faults than drawing it.
    static POOL: RefCell<Vec<Vec<Od>>> = const { RefCell::new(Vec::new()) };
    static GRAIN_POOL: RefCell<Option<Vec<f32>>> = const { RefCell::new(None) };
}

/// A zeroed buffer of `len` pixels, reused when possible.
pub(crate) fn take_buffer(len: usize) -> Vec<Od> {
    let mut v = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.resize(len, [0.0; 3]);
    v
}

pub(crate) fn give_back(v: Vec<Od>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < 4 {
            pool.push(v);
        }
    });
}

/// Optical density of an 8-bit colour seen under white light of 255.
pub(crate) fn od_of(rgb: [f32; 3]) -> Od {
    rgb.map(|c| -(c / 255.0).ln())
}

pub(crate) fn add(a: Od, b: Od) -> Od {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub(crate) fn sub(a: Od, b: Od) -> Od {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn scale(a: Od, k: f32) -> Od {
    [a[0] * k, a[1] * k, a[2] * k]
}

pub(crate) fn mul(a: Od, b: Od) -> Od {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}

pub(crate) fn lerp(a: Od, b: Od, t: f32) -> Od {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Separable Gaussian blur with clamped edges, in place.
pub(crate) fn gaussian_blur(px: &mut [Od], size: usize, sigma: f32) {
    if sigma < 0.05 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as usize;
    let mut kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let d = i as f32 - radius as f32;
            (-(d * d) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);

    // Rows: copy each into a buffer padded with its edge pixels, then sum
    // shifted copies of it. Seen as flat runs of floats, tap j of every
    // pixel and channel sits 3j floats further on, so the inner loops run
    // over contiguous memory and vectorise.
    let mut tmp = take_buffer(px.len());
    let mut padded = vec![[0.0f32; 3]; size + 2 * radius];
    for y in 0..size {
        let row = &px[y * size..(y + 1) * size];
        padded[..radius].fill(row[0]);
        padded[radius..radius + size].copy_from_slice(row);
        padded[radius + size..].fill(row[size - 1]);
        let src = padded.as_flattened();
        let out = tmp[y * size..(y + 1) * size].as_flattened_mut();
        out.fill(0.0);
        for (j, k) in kernel.iter().enumerate() {
            for (o, p) in out.iter_mut().zip(&src[3 * j..3 * j + 3 * size]) {
                *o += p * k;
            }
        }
    }
    // Columns: accumulate whole rows.
    let last = size - 1;
    for y in 0..size {
        let out = px[y * size..(y + 1) * size].as_flattened_mut();
        out.fill(0.0);
        for (j, k) in kernel.iter().enumerate() {
            let sy = (y + j).saturating_sub(radius).min(last);
            for (o, p) in out
                .iter_mut()
                .zip(tmp[sy * size..(sy + 1) * size].as_flattened())
            {
                *o += p * k;
            }
        }
    }
    give_back(tmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_flat_images_flat_and_spreads_a_point_symmetrically() {
        let size = 9;
        let mut flat = vec![[0.5f32, 1.0, 2.0]; size * size];
        gaussian_blur(&mut flat, size, 1.0);
        assert!(
            flat.iter()
                .all(|p| (p[0] - 0.5).abs() < 1e-5 && (p[2] - 2.0).abs() < 1e-5)
        );
        let mut point = vec![[0.0f32; 3]; size * size];
        point[4 * size + 4] = [1.0; 3];
        gaussian_blur(&mut point, size, 1.0);
        let total: f32 = point.iter().map(|p| p[0]).sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!((point[4 * size + 3][1] - point[3 * size + 4][1]).abs() < 1e-6);
        assert!(point[4 * size + 4][0] > point[4 * size + 5][0]);
    }
}
