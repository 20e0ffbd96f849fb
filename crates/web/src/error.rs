//! Errors of the viewer. Each names the file involved and the reason; the server turns
//! them into 4xx/5xx answers with the same text.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Data(#[from] leukex_data::DataError),
    #[error(transparent)]
    Eval(#[from] leukex_evaluate::EvalError),
    #[error("{path}: ratings database: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl WebError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WebError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        WebError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = WebError> = std::result::Result<T, E>;
