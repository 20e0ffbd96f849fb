//! `leukex weights fetch`: torchvision's ImageNet weights into the cache, via
//! leukex-fetch, with a byte progress bar.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
pub struct FetchArgs {
    /// Architecture: resnet18, resnet50, vgg19, googlenet (efficientnet-lite0 is not a torchvision model: see scripts/real_weights/fetch.sh).
    arch: String,
    /// Weights variant: v1 (torchvision's IMAGENET1K_V1, the default) or v2 (resnet50 only: IMAGENET1K_V2).
    #[arg(long)]
    variant: Option<String>,
    /// Cache folder (default: $LEUKEX_CACHE, else the platform cache folder + leukex); the file goes to DIR/torchvision/.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
}

pub fn run(a: FetchArgs) -> Result<()> {
    let mut bar: Option<ProgressBar> = None;
    let result = leukex_fetch::imagenet_weights(
        &a.arch,
        a.variant.as_deref(),
        a.cache.as_deref(),
        |done, total| {
            let bar = bar.get_or_insert_with(|| bytes_bar(total));
            bar.set_position(done);
        },
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let path = result?;
    if a.arch.eq_ignore_ascii_case("googlenet") {
        eprintln!(
            "note: torchvision's GoogLeNet ImageNet weights expect transform_input (pass --transform-input)"
        );
    }
    println!("{}", path.display());
    Ok(())
}

/// A download bar in bytes (a counter when the size is unknown), on standard
/// error and silent when that is not a terminal.
fn bytes_bar(total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(len) => (
            ProgressBar::new(len),
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        ),
        None => (
            ProgressBar::no_length(),
            "{msg:>10} {bytes} ({bytes_per_sec})",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("fetching");
    bar
}
