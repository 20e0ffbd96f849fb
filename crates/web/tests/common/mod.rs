//! Shared by the web tests: a served example study and a raw HTTP/1.1 client.
#![allow(dead_code)]

mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use leukex_web::{App, RoundConfig, Scale, ServeOptions, router};

#[allow(unused_imports)] // each test file uses a part
pub use http::{Reply, get, post, rating_rows, request};

/// Serves `dir` on a free loopback port from a background thread (for the test's life).
pub fn serve(dir: &Path, round: RoundConfig) -> SocketAddr {
    let app = Arc::new(
        App::open(&ServeOptions {
            dir: dir.to_path_buf(),
            scale: Scale::default(),
            round,
        })
        .expect("open the study"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router(app)).await.unwrap();
            })
    });
    addr
}
