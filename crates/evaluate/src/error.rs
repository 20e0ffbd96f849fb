//! Errors of the evaluation. Each names the file (or the pair of files)
//! involved so a researcher with thousands of maps knows which to open.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] leukex_data::DataError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "heat map {map} is {map_width}x{map_height} but its mask {mask} is {mask_width}x{mask_height} \
         (evaluation runs on the mask's grid; pass --resize-maps to resize maps bilinearly)"
    )]
    SizeMismatch {
        map: PathBuf,
        mask: PathBuf,
        map_width: usize,
        map_height: usize,
        mask_width: usize,
        mask_height: usize,
    },
    #[error("{path}: heat map has shape {shape:?}; expected [H,W], [C,H,W], [1,C,H,W] or [H,W,C]")]
    Shape { path: PathBuf, shape: Vec<usize> },
    #[error("{path}: heat map has {count} non-finite values (first at x={x}, y={y}: {value})")]
    NonFinite {
        path: PathBuf,
        count: usize,
        x: usize,
        y: usize,
        value: f32,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{0}")]
    Options(String),
    /// The model callback of a faithfulness metric failed or returned
    /// something unusable.
    #[error("model callback failed: {0}")]
    Model(#[source] BoxError),
}

/// Any error a model callback returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        EvalError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EvalError>;
