//! How leukex draws heat maps: the colour tables ([`colormap`]), a map rendered as an
//! RGB image ([`colourise`]), a rendering laid over the image it explains ([`overlay`]),
//! and the bilinear map resampler both the explanation and the evaluation side use
//! ([`resample`]). A crate of its own so that `leukex-explain` and `leukex-evaluate`
//! share it without depending on each other.

pub mod colormap;
pub mod resample;

use std::sync::OnceLock;

pub use colormap::Colormap;
use colormap::{innvestigate_indices, matlab_indices};
use image::{Rgb, RgbImage};
pub use resample::{PixelGrid, resize_bilinear};

/// matplotlib's `seismic`, built once.
pub fn seismic() -> &'static Colormap {
    static SEISMIC: OnceLock<Colormap> = OnceLock::new();
    SEISMIC.get_or_init(Colormap::seismic)
}

/// MATLAB's `jet(256)`, built once.
pub fn matlab_jet() -> &'static Colormap {
    static JET: OnceLock<Colormap> = OnceLock::new();
    JET.get_or_init(Colormap::matlab_jet)
}

/// The `h`×`w` map `values` in colour: signed maps in matplotlib's `seismic`, zero white,
/// limits ±max|v| (iNNvestigate's rendering); unsigned ones (CAMs) in MATLAB's `jet` from
/// the map's minimum to its maximum (`imagesc`).
pub fn colourise(values: &[f32], h: usize, w: usize, signed: bool) -> RgbImage {
    assert_eq!(values.len(), h * w, "map size");
    let (map, idx) = if signed {
        (seismic(), innvestigate_indices(values))
    } else {
        (matlab_jet(), matlab_indices(values, Colormap::N))
    };
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let c = map.rgb[idx[y as usize * w + x as usize] as usize];
        Rgb(c.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8))
    })
}

/// `colour` at 50 % over `background`, rounding halves up; the colour image is resampled
/// bilinearly to the background's size when they differ (e.g. raw layer-resolution CAMs).
pub fn overlay(background: &RgbImage, colour: &RgbImage) -> RgbImage {
    let (bw, bh) = background.dimensions();
    let resampled;
    let colour = if colour.dimensions() == (bw, bh) {
        colour
    } else {
        let (cw, ch) = colour.dimensions();
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|c| {
                let p: Vec<f32> = colour.pixels().map(|px| f32::from(px[c])).collect();
                let (ch, cw, bh, bw) = (ch as usize, cw as usize, bh as usize, bw as usize);
                resize_bilinear(&p, ch, cw, bh, bw, PixelGrid::HalfPixel)
            })
            .collect();
        resampled = RgbImage::from_fn(bw, bh, |x, y| {
            let i = (y * bw + x) as usize;
            Rgb(std::array::from_fn(|c| {
                planes[c][i].round().clamp(0.0, 255.0) as u8
            }))
        });
        &resampled
    };
    RgbImage::from_fn(bw, bh, |x, y| {
        let (a, b) = (background.get_pixel(x, y), colour.get_pixel(x, y));
        Rgb(std::array::from_fn(|c| {
            (u16::from(a[c]) + u16::from(b[c])).div_ceil(2) as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_zero_is_white_and_cams_span_jet() {
        // seismic's middle entries (127, 128) are white-ish; a zero map is all index 127.
        let c = colourise(&[0.0; 4], 2, 2, true);
        let mid = seismic().rgb[127].map(|v| (v * 255.0).round() as u8);
        assert!(c.pixels().all(|p| p.0 == mid));
        // A CAM's minimum is jet's first entry, its maximum the last.
        let c = colourise(&[0.0, 1.0], 1, 2, false);
        let first = matlab_jet().rgb[0].map(|v| (v * 255.0).round() as u8);
        let last = matlab_jet().rgb[255].map(|v| (v * 255.0).round() as u8);
        assert_eq!((c.get_pixel(0, 0).0, c.get_pixel(1, 0).0), (first, last));
    }

    #[test]
    fn overlay_is_the_mean_rounded_up_and_resamples_the_colour() {
        let bg = RgbImage::from_pixel(4, 4, Rgb([10, 11, 0]));
        let fg = RgbImage::from_pixel(2, 2, Rgb([20, 20, 255]));
        let o = overlay(&bg, &fg);
        assert_eq!(o.dimensions(), (4, 4));
        assert!(o.pixels().all(|p| p.0 == [15, 16, 128]));
    }
}
