//! `leukex serve`: a local web viewer over a study folder (or a folder of `leukex explain`
//! and `leukex evaluate` outputs) — images with their masks, every model × method heat map
//! side by side, evaluation modes with per-class numbers — and blinded expert rating of
//! the heat maps stored in SQLite, summarised as the paper's Table 2.
//!
//! Every page, script and style is compiled into the binary; nothing is fetched from
//! elsewhere. The server binds loopback unless told otherwise.

pub mod correct;
pub mod error;
pub mod example;
pub mod paths;
pub mod render;
pub mod round;
pub mod server;
pub mod store;
pub mod study;
pub mod summary;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use error::{Result, WebError};
pub use round::{RoundConfig, Scale};
pub use server::{App, ServeOptions, router};

/// Opens the study, binds `addr`, calls `ready` with the bound address (port 0 picks a
/// free one) and serves until Ctrl-C.
pub fn serve_blocking(
    opts: &ServeOptions,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr, &App),
) -> Result<()> {
    let app = Arc::new(App::open(opts)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| WebError::Other(format!("cannot start the server runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| WebError::Other(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| WebError::Other(format!("{addr}: {e}")))?;
        ready(bound, &app);
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| WebError::Other(format!("server on {bound}: {e}")))
    })
}

/// The Table 2 summary of the ratings stored in `dir/ratings.sqlite`.
pub fn summarise_dir(dir: &Path) -> Result<summary::Summary> {
    let path = server::ratings_path(dir);
    if !path.is_file() {
        return Err(WebError::invalid(
            &path,
            "no ratings database here (it is made by `leukex serve` when the first rater starts)",
        ));
    }
    let store = store::Store::open(&path)?;
    let scale = store.stored_scale()?.unwrap_or_default();
    Ok(summary::summarise(&store.all_ratings()?, &scale))
}
