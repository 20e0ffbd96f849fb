//! Reading and writing smear images. Everything becomes 8-bit RGB.

use crate::error::{DataError, Result};
use image::{DynamicImage, ImageFormat, RgbImage};
use std::path::Path;

/// File extensions leukex reads as images (lower case).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["tif", "tiff", "png", "jpg", "jpeg", "bmp", "jpe"];

/// Is `path` an image file by its extension?
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads TIFF (8-bit RGB/RGBA/grey), PNG, JPEG or BMP as RGB8. Alpha is
/// dropped; grey is replicated. 16-bit images are scaled to 8 bits.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let format = ImageFormat::from_path(path)
        .ok()
        .or_else(|| image::guess_format(&bytes).ok())
        .ok_or_else(|| DataError::image(path, "unknown image format"))?;
    let img = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| DataError::image(path, e))?;
    Ok(to_rgb8(img))
}

fn to_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(i) => i,
        other => other.to_rgb8(),
    }
}

/// Reads only the size of an image, without decoding its pixels.
pub fn read_dimensions(path: &Path) -> Result<(u32, u32)> {
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .into_dimensions()
        .map_err(|e| DataError::image(path, e))
}

/// Writes an RGB8 image, atomically, in the format the extension names.
pub fn write_rgb(path: &Path, img: &RgbImage) -> Result<()> {
    let format = ImageFormat::from_path(path)
        .map_err(|e| DataError::invalid(path, format!("cannot choose an image format: {e}")))?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format)
        .map_err(|e| DataError::invalid(path, format!("cannot encode image: {e}")))?;
    crate::fsutil::write_bytes_atomic(path, bytes.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiff_png_bmp_jpeg_round_trip_as_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 200]));
        for ext in ["tif", "png", "bmp"] {
            let p = dir.path().join(format!("a.{ext}"));
            write_rgb(&p, &img).unwrap();
            assert_eq!(read_rgb(&p).unwrap(), img, "{ext}");
            assert_eq!(read_dimensions(&p).unwrap(), (9, 7));
        }
        let p = dir.path().join("a.jpg");
        write_rgb(&p, &img).unwrap();
        assert_eq!(read_rgb(&p).unwrap().dimensions(), (9, 7));
    }

    #[test]
    fn corrupt_image_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Im001_1.tif");
        std::fs::write(&p, b"II*\0garbage").unwrap();
        let err = read_rgb(&p).unwrap_err().to_string();
        assert!(
            err.contains("Im001_1.tif") && err.contains("not a readable image"),
            "{err}"
        );
    }
}
