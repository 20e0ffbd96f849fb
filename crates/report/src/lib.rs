//! The study report: `DIR/report/index.html` and its figures (PNG and SVG under
//! `DIR/report/figures/`) from a study folder written by `leukex run`.
//!
//! ```text
//! DIR/study.json                     the manifest (see [`StudyManifest`])
//! DIR/study.toml                     the study as run (shown verbatim in an appendix)
//! DIR/runs/<model-id>/               `leukex train` runs: model.json, metrics.json, test_predictions.csv
//! DIR/maps/<model-id>/               `leukex explain` output (explain.json, <stem>/<method>.npy/.png)
//! DIR/<eval>/                        `leukex evaluate` output per data variant: summary.json, per_image.csv
//! DIR/<eval>/models/<id>/model_metrics.json   faithfulness and sanity, when asked for
//! DIR/ratings.sqlite                 expert ratings from `leukex serve`, when any
//! ```
//!
//! The page is self-contained: it links its figures by relative path and loads
//! nothing from the network, so the `report/` folder opens from disk anywhere.

pub mod error;
pub mod figures;
pub mod html;
pub mod inputs;
pub mod manifest;
mod page;
pub mod study;
pub mod synthetic;

pub use error::{ReportError, Result};
pub use manifest::{DataInfo, MethodEntry, ModelEntry, STUDY_FORMAT, StudyManifest, Variant};
pub use page::{PUBLISHED_SHARES, roc_points};

use leukex_data::fsutil::write_bytes_atomic;
use page::Page;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Choices of the report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The corrected mode shown beside paper mode in the figures (every evaluated
    /// mode is in the tables). Falls back to the first non-paper mode evaluated.
    pub corrected_mode: String,
    /// Side of one heat-map tile in Fig. 7 and 8, pixels.
    pub tile: u32,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            // The paper's rule (above the mean) on the map itself instead of on the
            // red channel of its rendering: the closest corrected counterpart.
            corrected_mode: "raw-mean".into(),
            tile: 96,
        }
    }
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// `DIR/report/index.html`.
    pub index: PathBuf,
    /// Every figure file (PNG and SVG), absolute.
    pub figures: Vec<PathBuf>,
    pub seconds: f64,
}

/// Writes `study_dir/report/index.html` and its figures with the default options.
pub fn write_report(study_dir: &Path) -> Result<ReportSummary> {
    write_report_with(study_dir, &ReportOptions::default())
}

/// Writes `study_dir/report/index.html` and its figures.
pub fn write_report_with(study_dir: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    let t0 = Instant::now();
    let study = study::Study::load(study_dir)?;
    let report_dir = study_dir.join("report");
    let mut page = Page {
        study: &study,
        opts,
        fig_dir: report_dir.join("figures"),
        figures: Vec::new(),
        html: String::new(),
        toc: Vec::new(),
    };
    page.header();
    page.classification()?;
    page.heat_maps()?;
    page.shares()?;
    page.localisation_and_tests()?;
    page.published();
    page.shortcut()?;
    page.ratings();
    page.guide();
    page.appendix();

    let mut toc = String::from("<nav><b>Contents</b><ul>");
    for (id, title) in &page.toc {
        toc.push_str(&format!(
            "<li><a href=\"#{id}\">{}</a></li>",
            html::escape(title)
        ));
    }
    toc.push_str("</ul></nav>\n");
    let doc = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{CSS}</style></head><body>\n{toc}<main>{body}</main></body></html>\n",
        title = html::escape(&format!("leukex study report: {}", study.manifest.name)),
        body = page.html,
    );
    let index = report_dir.join("index.html");
    write_bytes_atomic(&index, doc.as_bytes())?;
    let figures = page
        .figures
        .iter()
        .flat_map(|f| [report_dir.join(&f.png), report_dir.join(&f.svg)])
        .collect();
    Ok(ReportSummary {
        index,
        figures,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

const CSS: &str = r#"
body{font-family:"DejaVu Sans",Verdana,sans-serif;margin:0;color:#222;background:#fafafa;font-size:15px;line-height:1.45}
nav{position:fixed;top:0;left:0;width:230px;height:100vh;overflow:auto;padding:14px;background:#f0f0f4;border-right:1px solid #ddd;font-size:13px;box-sizing:border-box}
nav ul{padding-left:16px}
main{margin-left:250px;padding:10px 28px 60px 10px;max-width:1400px}
h1{font-size:26px}h2{border-bottom:2px solid #ccd;padding-bottom:4px;margin-top:40px}
h4{margin-bottom:4px}
.lead{font-size:16px}
.callout{background:#eef6ff;border-left:5px solid #4a90d9;padding:6px 12px;margin:6px 0}
.warn{background:#fff4d6;border-left:5px solid #e0a800;padding:8px 12px;margin:10px 0}
table{border-collapse:collapse;margin:8px 0 16px;background:white}
th,td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
th{background:#eef;text-align:left}
table.num td{text-align:right}table.num td:first-child,table.num td:nth-child(2){text-align:left}
table.small{font-size:12.5px}
table.nowrap td{white-space:nowrap}
table.l3 td:nth-child(3){text-align:left}
.flex{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:8px 0}figure img{max-width:100%;border:1px solid #ddd;background:white}
figcaption{font-size:13px;color:#444;max-width:900px}
.files{color:#777}
details{margin:6px 0}summary{cursor:pointer}
pre.toml{background:#f4f4f4;border:1px solid #ddd;padding:10px;overflow-x:auto;font-size:12.5px}
code{background:#f0f0f0;padding:0 3px}
"#;
