//! Small generated images and masks for the dataset tests.
#![allow(dead_code)]

use image::{DynamicImage, GrayImage, ImageFormat, Rgb, RgbImage, RgbaImage};
use std::path::{Path, PathBuf};

/// A recognisable RGB test pattern.
pub fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 20) as u8, (y * 30) as u8, 200]))
}

/// Writes `img` in the format the extension names, creating folders.
pub fn write_image(path: &Path, img: &DynamicImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let format = ImageFormat::from_path(path).unwrap();
    img.save_with_format(path, format).unwrap();
}

/// Writes an RGB image of size `w`×`h` at `dir/name`; returns the path.
pub fn rgb(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let p = dir.join(name);
    write_image(&p, &DynamicImage::ImageRgb8(pattern(w, h)));
    p
}

pub fn rgba(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let p = dir.join(name);
    let img = RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 20) as u8, (y * 30) as u8, 200, 128])
    });
    write_image(&p, &DynamicImage::ImageRgba8(img));
    p
}

pub fn grey(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let p = dir.join(name);
    let img = GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 10 + y) as u8]));
    write_image(&p, &DynamicImage::ImageLuma8(img));
    p
}

/// Writes a label PNG with one id per pixel: 8-bit grey when every id fits,
/// else 16-bit grey.
pub fn mask(dir: &Path, name: &str, w: u32, h: u32, id: impl Fn(u32, u32) -> u16) -> PathBuf {
    let ids: Vec<u16> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| id(x, y))
        .collect();
    if ids.iter().all(|&i| i < 256) {
        let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        write_png(
            dir,
            name,
            w,
            h,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            None,
            &bytes,
        )
    } else {
        let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
        write_png(
            dir,
            name,
            w,
            h,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            None,
            &bytes,
        )
    }
}

/// A 16-bit grey label PNG even when the ids are small.
pub fn mask16(dir: &Path, name: &str, w: u32, h: u32, id: impl Fn(u32, u32) -> u16) -> PathBuf {
    let bytes: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .flat_map(|(x, y)| id(x, y).to_be_bytes())
        .collect();
    write_png(
        dir,
        name,
        w,
        h,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        None,
        &bytes,
    )
}

/// A palette label PNG (as MATLAB and many tools write them): the palette
/// index is the id.
pub fn mask_palette(
    dir: &Path,
    name: &str,
    w: u32,
    h: u32,
    id: impl Fn(u32, u32) -> u8,
) -> PathBuf {
    let bytes: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| id(x, y))
        .collect();
    let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
    write_png(
        dir,
        name,
        w,
        h,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        Some(palette),
        &bytes,
    )
}

/// A colour PNG in the masks folder: a picture of a mask, not ids.
pub fn mask_rgb(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let p = dir.join(name);
    write_image(&p, &DynamicImage::ImageRgb8(pattern(w, h)));
    p
}

#[allow(clippy::too_many_arguments)]
fn write_png(
    dir: &Path,
    name: &str,
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<Vec<u8>>,
    data: &[u8],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    let file = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some(palette) = palette {
        enc.set_palette(palette);
    }
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    p
}

/// A small valid ALL-IDB2 folder: `n_per_class` healthy and blast images of
/// `size`×`size`, and masks (leukex ids) for all of them when `masks`.
pub fn all_idb2(root: &Path, n_per_class: usize, size: u32, masks: bool) {
    for i in 0..2 * n_per_class {
        let y = usize::from(i < n_per_class);
        let stem = format!("Im{:03}_{y}", i + 1);
        rgb(root, &format!("{stem}.tif"), size, size);
        if masks {
            mask(
                &root.join("masks"),
                &format!("{stem}.png"),
                size,
                size,
                |x, _| (x % 5) as u16,
            );
        }
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
