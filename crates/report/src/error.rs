//! What can go wrong while writing a report: every variant names the file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is there but is not what the study layout says it is.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// A file the report cannot do without is missing.
    #[error("{path}: missing ({reason})")]
    Missing { path: PathBuf, reason: String },
    /// Drawing a figure failed.
    #[error("{path}: cannot draw the figure: {reason}")]
    Figure { path: PathBuf, reason: String },
    #[error(transparent)]
    Data(#[from] leukex_data::DataError),
}

impl ReportError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        ReportError::Invalid {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
