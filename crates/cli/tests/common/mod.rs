//! Running the `leukex` binary from the integration tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `leukex` with `args` and returns what it did.
pub fn leukex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(args)
        .output()
        .expect("leukex runs")
}

/// Standard output and standard error together, for assertions and messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A path as a command-line argument (test paths are UTF-8).
#[allow(dead_code)] // not every test file passes paths
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}
