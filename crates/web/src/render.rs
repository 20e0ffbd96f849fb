//! PNGs the pages show, drawn on the server: images (TIFF is not a browser format), masks,
//! heat maps in leukex's colours or in the one blinded colour scale, and the pixels an
//! evaluation mode selects.

use std::path::Path;

use image::{ExtendedColorType, ImageEncoder, codecs::png::PngEncoder};
use leukex_data::{MorphologyClass, MorphologyMask};
use leukex_evaluate::colormap::{render_positive_rgb, render_rgb};
use leukex_evaluate::{HeatMap, Selection};

use crate::error::{Result, WebError};

/// How a heat map is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapStyle {
    /// As `leukex explain` draws it: seismic for signed maps, MATLAB jet for CAMs.
    Native,
    /// One colour map and one scaling for every method (positive evidence, 0..max).
    Blinded,
}

fn encode(width: usize, height: usize, bytes: &[u8], colour: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(bytes, width as u32, height as u32, colour)
        .expect("PNG encoding into memory cannot fail for a buffer of the right size");
    out
}

/// The image file at `path` as PNG.
pub fn image_png(path: &Path) -> Result<Vec<u8>> {
    let img = leukex_data::image_io::read_rgb(path)?;
    let (w, h) = img.dimensions();
    Ok(encode(
        w as usize,
        h as usize,
        img.as_raw(),
        ExtendedColorType::Rgb8,
    ))
}

/// Reads a `.npy` heat map (channels summed) and refuses non-finite values.
pub fn read_map(path: &Path) -> Result<HeatMap> {
    let map = HeatMap::read_npy(path)?;
    map.check_finite(path)?;
    if map.values.is_empty() {
        return Err(WebError::invalid(path, "empty heat map"));
    }
    Ok(map)
}

pub fn map_png(map: &HeatMap, signed: bool, style: MapStyle) -> Vec<u8> {
    let rgb = match style {
        MapStyle::Native => render_rgb(&map.values, signed),
        MapStyle::Blinded => render_positive_rgb(&map.values),
    };
    encode(map.width, map.height, &rgb, ExtendedColorType::Rgb8)
}

/// Colour of each morphology class in the mask overlay (background transparent).
pub fn class_colour(c: MorphologyClass) -> [u8; 4] {
    match c {
        MorphologyClass::Background => [0, 0, 0, 0],
        MorphologyClass::Nucleus => [120, 40, 200, 255],
        MorphologyClass::Cytoplasm => [40, 180, 220, 255],
        MorphologyClass::Vacuole => [250, 230, 60, 255],
        MorphologyClass::Rbc => [230, 60, 60, 255],
    }
}

/// The mask as RGBA: each class its colour, background and unlabelled pixels transparent.
pub fn mask_png(mask: &MorphologyMask) -> Vec<u8> {
    let (w, h) = mask.dimensions();
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            rgba.extend(mask.get(x, y).map_or([0; 4], class_colour));
        }
    }
    encode(w as usize, h as usize, &rgba, ExtendedColorType::Rgba8)
}

/// The pixels a mode keeps as RGBA: kept pixels opaque yellow, weights (`mass`) as
/// opacity relative to the largest, the rest transparent.
pub fn selection_png(selection: &Selection, width: usize, height: usize) -> Vec<u8> {
    let alpha: Vec<u8> = match selection {
        Selection::Pixels(keep) => keep.iter().map(|&k| if k { 255 } else { 0 }).collect(),
        Selection::Weights(w) => {
            let max = w.iter().cloned().fold(0.0f64, f64::max);
            w.iter()
                .map(|&v| {
                    if max > 0.0 {
                        (v / max * 255.0).round() as u8
                    } else {
                        0
                    }
                })
                .collect()
        }
    };
    let rgba: Vec<u8> = alpha.iter().flat_map(|&a| [255, 220, 0, a]).collect();
    encode(width, height, &rgba, ExtendedColorType::Rgba8)
}
