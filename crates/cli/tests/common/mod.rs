//! Running the `leukex` binary from the integration tests.

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
