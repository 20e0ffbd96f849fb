//! leukex's resize, mask resize and normalisation against torch/torchvision.
//!
//! The expected arrays were computed by `scripts/fixtures/gen_resize.py`
//! (torch 2.15.0, torchvision 0.29.2; see `fixtures/resize/manifest.json`).

use leukex_data::MorphologyMask;
use leukex_data::image_io::read_rgb;
use leukex_data::preprocess::{
    ChwImage, Preprocessing, resize_bilinear_antialias, resize_mask_nearest,
};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize")
}

/// A minimal `.npy` (v1/v2/v3) reader: little-endian `<f4` or `|u1`, C order.
mod npy {
    pub enum Data {
        F32(Vec<f32>),
        U8(Vec<u8>),
    }

    pub struct Array {
        pub shape: Vec<usize>,
        pub data: Data,
    }

    pub fn read(path: &std::path::Path) -> Array {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not .npy", path.display());
        let major = bytes[6];
        let (hlen, start) = if major == 1 {
            (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
        } else {
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        };
        let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
        let body = &bytes[start + hlen..];
        assert!(
            header.contains("'fortran_order': False"),
            "{}: {header}",
            path.display()
        );
        let shape_str = header
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap();
        let shape: Vec<usize> = shape_str
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let n: usize = shape.iter().product();
        let data = if header.contains("'descr': '<f4'") {
            assert_eq!(body.len(), 4 * n);
            Data::F32(
                body.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        } else if header.contains("'descr': '|u1'") {
            assert_eq!(body.len(), n);
            Data::U8(body.to_vec())
        } else {
            panic!("{}: unsupported dtype in {header}", path.display())
        };
        Array { shape, data }
    }

    pub fn f32(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
        match read(path) {
            Array {
                shape,
                data: Data::F32(v),
            } => (shape, v),
            _ => panic!("{}: expected float32", path.display()),
        }
    }

    pub fn u8(path: &std::path::Path) -> (Vec<usize>, Vec<u8>) {
        match read(path) {
            Array {
                shape,
                data: Data::U8(v),
            } => (shape, v),
            _ => panic!("{}: expected uint8", path.display()),
        }
    }
}

struct Case {
    name: &'static str,
    input: &'static str,
    /// y0, y1, x0, x1
    crop: Option<(u32, u32, u32, u32)>,
    size: (usize, usize),
}

const CASES: [Case; 5] = [
    Case {
        name: "rand_224",
        input: "rand",
        crop: None,
        size: (224, 224),
    },
    Case {
        name: "rand_128",
        input: "rand",
        crop: None,
        size: (128, 128),
    },
    Case {
        name: "rand_up100",
        input: "rand",
        crop: Some((10, 74, 20, 84)),
        size: (100, 100),
    },
    Case {
        name: "grad_150x224",
        input: "grad",
        crop: None,
        size: (150, 224),
    },
    Case {
        name: "rand_300x100",
        input: "rand",
        crop: None,
        size: (300, 100),
    },
];

fn input(case: &Case) -> image::RgbImage {
    let img = read_rgb(&dir().join(format!("{}.png", case.input))).unwrap();
    assert_eq!(img.dimensions(), (257, 257));
    match case.crop {
        None => img,
        Some((y0, y1, x0, x1)) => {
            image::imageops::crop_imm(&img, x0, y0, x1 - x0, y1 - y0).to_image()
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn float_resize_matches_torch_antialias_bilinear() {
    for case in &CASES {
        let img = input(case);
        let (h, w) = case.size;
        let ours = resize_bilinear_antialias(&ChwImage::from_rgb(&img), h, w);
        let (shape, expected) = npy::f32(&dir().join(format!("resize_{}.npy", case.name)));
        assert_eq!(shape, vec![h, w]);
        let diff = max_abs_diff(ours.plane(0), &expected);
        println!(
            "{}: max |leukex - torch float| = {diff:.3e} (0..255 scale)",
            case.name
        );
        assert!(diff <= 1e-4, "{}: {diff}", case.name);
        // The reference is a float result, not rounded to grey levels.
        assert!(expected.iter().filter(|v| v.fract() != 0.0).count() > expected.len() / 2);
    }
}

#[test]
fn rounded_float_resize_is_within_one_of_pil() {
    for case in &CASES {
        let img = input(case);
        let (h, w) = case.size;
        let ours = resize_bilinear_antialias(&ChwImage::from_rgb(&img), h, w);
        let (shape, pil) = npy::u8(&dir().join(format!("pil_{}.npy", case.name)));
        assert_eq!(shape, vec![h, w]);
        let mut worst = 0i32;
        let mut differing = 0usize;
        for (o, p) in ours.plane(0).iter().zip(&pil) {
            let d = (o.round() as i32 - i32::from(*p)).abs();
            worst = worst.max(d);
            differing += usize::from(d != 0);
        }
        println!(
            "{}: max |round(leukex) - PIL| = {worst}, {differing}/{} differ",
            case.name,
            pil.len()
        );
        assert!(worst <= 1, "{}: {worst}", case.name);
    }
}

#[test]
fn mask_nearest_matches_torch() {
    for case in &CASES {
        let img = input(case);
        let (w, h) = img.dimensions();
        let labels: Vec<u8> = img.pixels().map(|p| p[0] % 5).collect();
        let mask = MorphologyMask::from_raw(w, h, labels).unwrap();
        let (oh, ow) = case.size;
        let ours = resize_mask_nearest(&mask, oh, ow);
        let (shape, expected) = npy::u8(&dir().join(format!("nearest_{}.npy", case.name)));
        assert_eq!(shape, vec![oh, ow]);
        let wrong = ours
            .raw()
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(wrong, 0, "{}: {wrong} pixels differ", case.name);
    }
}

#[test]
fn imagenet_pipeline_matches_torchvision() {
    let img = read_rgb(&dir().join("rand.png")).unwrap();
    let p = Preprocessing::imagenet(224);
    let ours = p.apply(&img);
    let (shape, expected) = npy::f32(&dir().join("imagenet_rand_224.npy"));
    assert_eq!(shape, vec![3, 224, 224]);
    assert_eq!((ours.channels, ours.height, ours.width), (3, 224, 224));
    let diff = max_abs_diff(&ours.data, &expected);
    // On the 0..255 scale that is diff·255·std ≤ ~1e-4.
    println!("imagenet_rand_224: max |leukex - torchvision| = {diff:.3e} (normalised)");
    assert!(diff <= 2e-6, "{diff}");
    // Channel order and constants: each channel's mean agrees.
    for c in 0..3 {
        let n = 224.0 * 224.0;
        let a: f64 = ours.plane(c).iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let e: f64 = expected[c * 224 * 224..(c + 1) * 224 * 224]
            .iter()
            .map(|&v| f64::from(v))
            .sum::<f64>()
            / n;
        assert!((a - e).abs() < 1e-6, "channel {c}: {a} vs {e}");
    }
    // Inverting recovers the 0..255 resize.
    let back = p.invert(&ours);
    let resized = p.resize(&img);
    assert!(max_abs_diff(&back.data, &resized.data) < 1e-3);
}

#[test]
fn efficientnet_lite_normalisation_matches_python() {
    let img = read_rgb(&dir().join("grad.png")).unwrap();
    let p = Preprocessing::efficientnet_lite(128);
    let ours = p.apply(&img);
    let (shape, expected) = npy::f32(&dir().join("lite_grad_128.npy"));
    assert_eq!(shape, vec![3, 128, 128]);
    let diff = max_abs_diff(&ours.data, &expected);
    println!("lite_grad_128: max |leukex - python| = {diff:.3e} (normalised)");
    assert!(diff <= 1e-6, "{diff}");
}
