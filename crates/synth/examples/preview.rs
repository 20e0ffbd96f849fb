//! Writes a few synthetic images, their masks (in colour) and a contact
//! sheet (blasts on top, healthy cells below) as PNG, to look at them.
//!
//! cargo run --release -p leukex-synth --example preview -- \
//!     [--out /tmp/synth-preview] [--seed 0] [--size 257] [--first 0] \
//!     [--shortcut rbc-density] [--without-cell] [--masks] [--sheet-width W]
//!
//! `--sheet-width` shrinks the contact sheet (for the README, where a PNG of
//! full-size noisy crops would be large).

use image::{Rgb, RgbImage};
use leukex_synth::{SynthConfig, generate_one};
use std::path::PathBuf;

const MASK_COLOURS: [[u8; 3]; 5] = [
    [235, 235, 235],
    [90, 40, 140],
    [120, 170, 240],
    [255, 255, 60],
    [220, 80, 80],
];

fn main() {
    let mut cfg = SynthConfig::default();
    let mut out = PathBuf::from("/tmp/synth-preview");
    let mut first = 0usize;
    let mut masks = false;
    let mut sheet_width: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("option needs a value");
        match a.as_str() {
            "--out" => out = value().into(),
            "--seed" => cfg.seed = value().parse().expect("seed"),
            "--size" => cfg.size = value().parse().expect("size"),
            "--first" => first = value().parse().expect("first"),
            "--shortcut" => cfg.shortcut = Some(value().parse().expect("shortcut")),
            "--without-cell" => cfg.without_cell = true,
            "--masks" => masks = true,
            "--sheet-width" => sheet_width = Some(value().parse().expect("sheet width")),
            other => panic!("unknown option {other}"),
        }
    }
    std::fs::create_dir_all(&out).expect("create output folder");
    let half = cfg.n / 2;
    let indices: Vec<usize> = (first..first + 4)
        .chain(half + first..half + first + 4)
        .collect();
    let s = cfg.size;
    let gap = 4;
    let rows = if masks { 4 } else { 2 };
    let mut sheet =
        RgbImage::from_pixel(4 * s + 3 * gap, rows * s + (rows - 1) * gap, Rgb([255; 3]));
    for (k, &i) in indices.iter().enumerate() {
        let sample = generate_one(&cfg, i);
        sample
            .image
            .save(out.join(format!("{}.png", sample.stem)))
            .expect("write preview");
        let mask = RgbImage::from_fn(s, s, |x, y| {
            Rgb(MASK_COLOURS[sample.mask.get(x, y).map_or(0, |c| c.index())])
        });
        mask.save(out.join(format!("{}_mask.png", sample.stem)))
            .expect("write mask preview");
        let (col, row) = ((k % 4) as u32, (k / 4) as u32);
        let row = if masks { row * 2 } else { row };
        image::imageops::replace(
            &mut sheet,
            &sample.image,
            (col * (s + gap)) as i64,
            (row * (s + gap)) as i64,
        );
        if masks {
            image::imageops::replace(
                &mut sheet,
                &mask,
                (col * (s + gap)) as i64,
                ((row + 1) * (s + gap)) as i64,
            );
        }
        println!("{} {:?} {}", sample.stem, sample.kind, sample.group);
    }
    if let Some(w) = sheet_width.filter(|&w| w < sheet.width()) {
        let h = (sheet.height() as u64 * w as u64 / sheet.width() as u64) as u32;
        sheet = image::imageops::resize(&sheet, w, h, image::imageops::FilterType::CatmullRom);
    }
    let path = out.join("contact-sheet.png");
    sheet.save(&path).expect("write contact sheet");
    println!("{}", path.display());
}
