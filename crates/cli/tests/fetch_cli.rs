//! `leukex weights fetch` without a network: the errors a user meets. The
//! downloads themselves are tested in crates/fetch against a local server.

mod common;

use common::{leukex, s, text};
use std::process::Command;

#[test]
fn efficientnet_points_to_the_fetch_script() {
    let o = leukex(&["weights", "fetch", "efficientnet-lite0"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("scripts/real_weights/fetch.sh"),
        "{}",
        text(&o)
    );
}

#[test]
fn unknown_variant_lists_the_available_ones() {
    let o = leukex(&["weights", "fetch", "vgg19", "--variant", "v2"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("available: v1"), "{}", text(&o));
}

#[test]
fn unreachable_mirror_names_the_url_and_leaves_no_file() {
    // Port 1 on the loopback interface: nothing listens there.
    let cache = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_leukex"))
        .args(["weights", "fetch", "resnet50", "--variant", "v2"])
        .args(["--cache", s(cache.path())])
        .env("LEUKEX_WEIGHTS_BASE_URL", "http://127.0.0.1:1/")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("http://127.0.0.1:1/resnet50-11ad3fa6.pth"),
        "{}",
        text(&o)
    );
    let dir = cache.path().join("torchvision");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
