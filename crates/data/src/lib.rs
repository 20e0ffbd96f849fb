//! The data layer of leukex: what hematology researchers have on disk, read
//! into memory with every problem named, split and augmented reproducibly,
//! and preprocessed exactly as the CNNs expect.
//!
//! The modules follow the data: [`image_io`] reads pixels, [`morphology`]
//! gives them meaning, [`dataset`] finds images, labels and masks in the
//! layouts researchers use, [`check`] reports every problem at once,
//! [`split`] and [`augment`] prepare training data, and [`preprocess`] turns
//! an image into the network's input.

pub mod augment;
pub mod check;
pub mod dataset;
pub mod error;
pub mod fsutil;
pub mod image_io;
pub mod morphology;
pub mod npy;
pub mod preprocess;
pub mod split;
pub mod summary;

pub use error::DataError;
pub use morphology::{LabelTable, LabelTarget, MorphologyClass, MorphologyMask};
