//! Segments one image and writes it beside its mask in colour (nucleus
//! magenta, cytoplasm cyan, vacuole yellow, red cell red), for a look.
//!
//! `cargo run --release -p leukex-segment --example overlay -- IMAGE OUT.png [REFERENCE.png]`
//! With a reference mask (leukex ids), it is shown as a third panel.

use image::{Rgb, RgbImage};
use leukex_data::{LabelTable, MorphologyMask};
use leukex_segment::{SegmentOptions, segment};
use std::path::PathBuf;

const COLOURS: [[u8; 3]; 5] = [
    [40, 40, 40],
    [230, 0, 230],
    [0, 200, 255],
    [255, 230, 0],
    [230, 40, 40],
];

fn blend(img: &RgbImage, mask: &MorphologyMask) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        let c = mask.get(x, y).map_or([0, 0, 0], |c| COLOURS[c.index()]);
        Rgb([0, 1, 2].map(|k| ((p[k] as u16 * 2 + c[k] as u16 * 3) / 5) as u8))
    })
}

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let img = leukex_data::image_io::read_rgb(&args[0]).expect("image");
    let seg = segment(&img, &SegmentOptions::default());
    println!("{:?}", seg.report);
    let mut panels = vec![img.clone(), blend(&img, &seg.mask)];
    if let Some(reference) = args.get(2) {
        let truth = MorphologyMask::read_png(reference, &LabelTable::default()).expect("reference");
        panels.push(blend(&img, &truth));
    }
    let (w, h) = img.dimensions();
    let mut out = RgbImage::new(w * panels.len() as u32, h);
    for (k, p) in panels.iter().enumerate() {
        image::imageops::replace(&mut out, p, (k as u32 * w) as i64, 0);
    }
    out.save(&args[1]).expect("write");
}
