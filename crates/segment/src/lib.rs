//! `leukex segment`: 5-class morphology masks (background, nucleus,
//! cytoplasm, vacuole, red cell) of May-Grünwald-Giemsa blood-smear crops by
//! classical image analysis — stain separation, Otsu thresholds, morphology,
//! a watershed for touching red cells — as a starting point a person
//! corrects, where the paper drew its masks by hand in MATLAB.

pub mod batch;
pub mod binary;
pub mod otsu;
pub mod quality;
pub mod segment;
pub mod stain;
pub mod watershed;

pub use batch::{BatchReport, ImageResult, SegmentError, collect_images, segment_files};
pub use segment::{ImageReport, OtherCells, SegmentOptions, Segmentation, segment};
