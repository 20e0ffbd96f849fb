//! Errors of the data layer. Every variant names the file it is about, so a
//! researcher with 260 images knows which one to open.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable image: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: mask is {mask_width}x{mask_height} but its image {image} is {image_width}x{image_height}"
    )]
    MaskSize {
        path: PathBuf,
        image: PathBuf,
        mask_width: u32,
        mask_height: u32,
        image_width: u32,
        image_height: u32,
    },
    #[error(
        "{path}: pixel id {id} ({count} pixels, first at x={x}, y={y}) is not in the label table (known ids: {known})"
    )]
    UnknownLabelId {
        path: PathBuf,
        id: u16,
        count: u64,
        x: u32,
        y: u32,
        known: String,
    },
}

impl DataError {
    /// The file or folder the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            DataError::Io { path, .. }
            | DataError::Image { path, .. }
            | DataError::Invalid { path, .. }
            | DataError::MaskSize { path, .. }
            | DataError::UnknownLabelId { path, .. } => path,
        }
    }

    /// The problem without the leading `path: `, for reports that show the
    /// path in a column of its own.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        match full.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => full,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn image(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        DataError::Image {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
