//! The sections of `index.html`, in the issue's order of priority.

use crate::ReportOptions;
use crate::error::Result;
use crate::figures::{
    self, BarRow, CATEGORY_COLOURS, Draw, FigureFiles, HBars, ImageGrid, Line, Lines, PALETTE, Row,
    WITHIN_CELL_COLOURS,
};
use crate::html::{escape, figure, num, pct, table};
use crate::inputs::{EvalSummary, SummaryRow};
use crate::study::{LoadedModel, LoadedVariant, Study};
use image::RgbImage;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// (model, method, mode, prediction correct).
type SplitKey = (String, String, String, bool);

/// Writes figures into `fig_dir` while the page is assembled.
pub struct Page<'a> {
    pub study: &'a Study,
    pub opts: &'a ReportOptions,
    pub fig_dir: PathBuf,
    pub figures: Vec<FigureFiles>,
    pub html: String,
    /// Section titles with anchors, for the contents.
    pub toc: Vec<(String, String)>,
}

/// The paper's published shares (%) on cell / red cells / background.
pub const PUBLISHED_SHARES: [(&str, &str, &str, [f64; 3]); 3] = [
    (
        "GoogLeNet + Grad-CAM",
        "googlenet",
        "grad-cam",
        [43.61, 26.75, 29.63],
    ),
    (
        "ResNet18 + Grad-CAM",
        "resnet18",
        "grad-cam",
        [31.78, 29.66, 38.56],
    ),
    (
        "VGG19 + Deep Taylor",
        "vgg19",
        "deep-taylor",
        [20.81, 35.92, 43.28],
    ),
];
/// VGG19 + Deep Taylor: share of the cell's relevant pixels on the nucleus (%).
pub const PUBLISHED_NUCLEUS: f64 = 73.97;
/// Nucleus / cytoplasm within the cell per true class (%): healthy, ALL.
pub const PUBLISHED_WITHIN_CELL: [(&str, [f64; 2]); 2] =
    [("healthy", [54.26, 45.74]), ("all", [91.90, 8.10])];
/// Mean relevant-pixel counts per image, cell / red cells / background.
pub const PUBLISHED_COUNTS: [f64; 3] = [8071.0, 4951.0, 5484.0];

const CATEGORIES: [&str; 3] = ["cell", "red cells", "background"];

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A table cell carrying the key of the number it shows (tests find numbers by it).
fn keyed(key: &str, value: String) -> String {
    format!("<span title=\"{}\">{value}</span>", escape(key))
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

/// "mean ± sd (min–max), n seeds" of values in [0, 1] shown as percentages (`scale`
/// 100) or as plain numbers (`scale` 1).
fn spread(v: &[f64], scale: f64, digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let (m, sd) = mean_sd(v);
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.digits$} ± {:.digits$} ({:.digits$}–{:.digits$}, {} seeds)",
        m * scale,
        sd * scale,
        lo * scale,
        hi * scale,
        v.len()
    )
}

impl<'a> Page<'a> {
    fn section(&mut self, title: &str, id: &str) {
        let title = if id == "appendix" {
            title.to_string()
        } else {
            format!("{}. {title}", self.toc.len() + 1)
        };
        let title = title.as_str();
        self.toc.push((id.to_string(), title.to_string()));
        let _ = writeln!(self.html, "<h2 id=\"{id}\">{}</h2>", escape(title));
    }

    fn save(&mut self, fig: &impl Draw, name: &str) -> Result<FigureFiles> {
        let f = figures::save(fig, &self.fig_dir, name)?;
        self.figures.push(f.clone());
        Ok(f)
    }

    fn variant_title(v: &LoadedVariant) -> String {
        match &v.variant.shortcut {
            Some(s) => format!("variant {} (shortcut {s})", v.variant.id),
            None => format!("variant {}", v.variant.id),
        }
    }

    /// The corrected mode shown beside paper mode: the option when evaluated, else the
    /// first mode that is not a paper mode.
    pub fn corrected_mode(&self, s: &EvalSummary) -> Option<String> {
        if s.modes.contains(&self.opts.corrected_mode) {
            return Some(self.opts.corrected_mode.clone());
        }
        s.modes.iter().find(|m| !m.starts_with("paper")).cloned()
    }

    fn main_modes(&self, s: &EvalSummary) -> Vec<String> {
        let mut v: Vec<String> = s.modes.iter().filter(|m| *m == "paper").cloned().collect();
        v.extend(self.corrected_mode(s));
        if v.is_empty() {
            v.extend(s.modes.first().cloned());
        }
        v
    }

    // ------------------------------------------------------------------ header

    pub fn header(&mut self) {
        let m = &self.study.manifest;
        let _ = write!(
            self.html,
            "<h1>Study report: {}</h1>\n<p class=\"lead\">Data: {} ({}). {} model(s), {} method(s){}.</p>\n",
            escape(&m.name),
            escape(&m.data.description),
            escape(&m.data.kind),
            m.models.len(),
            m.methods.len(),
            if m.quick { ", quick schedule" } else { "" }
        );
        if !m.data.reproduction {
            self.html.push_str(
                "<div class=\"warn\"><b>Not a reproduction.</b> The paper's images and masks are not \
                 public, so these numbers come from other data: compare the paper's published numbers \
                 below with that in mind (see <a href=\"#published\">The paper's numbers next to ours</a>).</div>\n",
            );
        }
        if !m.data.groups_known {
            self.html.push_str(
                "<div class=\"warn\"><b>Leakage cannot be ruled out.</b> ALL-IDB2's crops are cut from \
                 shared ALL-IDB1 slides and carry no slide id, so a random split may put crops of one \
                 slide (even overlapping neighbours) on both sides; test accuracy may then be optimistic. \
                 A <code>group</code> column in the data manifest (one id per slide) keeps each slide on \
                 one side of the split.</div>\n",
            );
        }
        if !m.notes.is_empty() {
            self.html.push_str("<ul class=\"notes\">");
            for n in &m.notes {
                let _ = write!(self.html, "<li>{}</li>", escape(n));
            }
            self.html.push_str("</ul>\n");
        }
    }

    // ---------------------------------------------------------- classification

    pub fn classification(&mut self) -> Result<()> {
        self.section("Classification", "classification");
        let mut rows = Vec::new();
        for m in &self.study.models {
            let e = &m.entry;
            let t = &m.metrics.test;
            let k = |name: &str| format!("{}/{name}", e.id);
            rows.push(vec![
                escape(&e.id),
                escape(&e.arch),
                e.seed.to_string(),
                escape(&e.variant),
                format!(
                    "{} (best {})",
                    m.metrics.epochs_run,
                    m.metrics.best_epoch + 1
                ),
                e.image_size.to_string(),
                escape(&e.weights),
                t.n.to_string(),
                keyed(&k("accuracy"), pct(Some(t.accuracy))),
                keyed(&k("sensitivity"), pct(Some(t.sensitivity))),
                keyed(&k("specificity"), pct(Some(t.specificity))),
                keyed(&k("f1"), num(Some(t.f1), 3)),
                keyed(&k("roc_auc"), num(t.roc_auc, 3)),
            ]);
        }
        let _ = write!(
            self.html,
            "<p>Test metrics of each model's best epoch (by validation). Sensitivity is the recall of \
             the positive class (the blast), specificity that of the other class; percentages.</p>\n{}",
            table(
                "num",
                &[
                    "model",
                    "arch",
                    "seed",
                    "variant",
                    "epochs",
                    "input px",
                    "weights",
                    "test n",
                    "accuracy",
                    "sensitivity",
                    "specificity",
                    "F1",
                    "ROC-AUC",
                ],
                &rows
            )
        );
        // Spread across seeds.
        let groups = self.study.groups();
        if groups.values().any(|g| g.len() > 1) {
            let mut rows = Vec::new();
            for g in groups.values().filter(|g| g.len() > 1) {
                let get = |f: &dyn Fn(&LoadedModel) -> Option<f64>| -> Vec<f64> {
                    g.iter().filter_map(|m| f(m)).collect()
                };
                rows.push(vec![
                    escape(&g[0].entry.group),
                    escape(&g[0].entry.variant),
                    spread(&get(&|m| Some(m.metrics.test.accuracy)), 100.0, 2),
                    spread(&get(&|m| Some(m.metrics.test.sensitivity)), 100.0, 2),
                    spread(&get(&|m| Some(m.metrics.test.specificity)), 100.0, 2),
                    spread(&get(&|m| Some(m.metrics.test.f1)), 1.0, 3),
                    spread(&get(&|m| m.metrics.test.roc_auc), 1.0, 3),
                ]);
            }
            let _ = write!(
                self.html,
                "<h3>Spread across training seeds</h3><p>mean ± sd (min–max) over the seeds of one recipe.</p>{}",
                table(
                    "num",
                    &[
                        "group",
                        "variant",
                        "accuracy",
                        "sensitivity",
                        "specificity",
                        "F1",
                        "ROC-AUC"
                    ],
                    &rows
                )
            );
        }
        // Confusion matrices.
        self.html
            .push_str("<h3>Confusion matrices</h3><div class=\"flex\">");
        for m in &self.study.models {
            let c = &m.card.classes;
            let mut rows = Vec::new();
            for (i, r) in m.metrics.test.confusion.iter().enumerate() {
                let mut row = vec![format!(
                    "<b>true {}</b>",
                    escape(c.get(i).map_or("?", |s| s))
                )];
                row.extend(r.iter().map(|v| v.to_string()));
                rows.push(row);
            }
            let header: Vec<String> = std::iter::once(escape(&m.entry.id))
                .chain(c.iter().map(|n| format!("predicted {n}")))
                .collect();
            let header: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
            self.html.push_str(&table("num small", &header, &rows));
        }
        self.html.push_str("</div>\n");

        // Training curves, one figure per model: loss and accuracy.
        self.html
            .push_str("<h3>Training curves</h3><div class=\"flex\">");
        for m in &self.study.models {
            let h = &m.metrics.history;
            if h.is_empty() {
                continue;
            }
            let epochs = h.len() as f64;
            let pts = |f: &dyn Fn(&crate::inputs::EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
                h.iter()
                    .filter_map(|r| f(r).map(|v| ((r.epoch + 1) as f64, v)))
                    .collect()
            };
            let loss_max = h
                .iter()
                .flat_map(|r| [Some(r.train_loss), r.val_loss])
                .flatten()
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max)
                .max(1e-3)
                * 1.1;
            let x_range = (0.5, epochs + 0.5);
            let line = |name: &str, colour, points, dashed| Line {
                name: name.into(),
                colour,
                points,
                dashed,
            };
            let fig = Row(vec![
                Lines {
                    title: format!("{}: loss", m.entry.id),
                    x_label: "epoch".into(),
                    y_label: "cross-entropy".into(),
                    x_range,
                    y_range: (0.0, loss_max),
                    lines: vec![
                        line("train", PALETTE[0], pts(&|r| Some(r.train_loss)), false),
                        line("validation", PALETTE[1], pts(&|r| r.val_loss), false),
                    ],
                    size: (420, 300),
                    integer_x: true,
                },
                Lines {
                    title: format!("{}: accuracy", m.entry.id),
                    x_label: "epoch".into(),
                    y_label: "accuracy (%)".into(),
                    x_range,
                    y_range: (0.0, 105.0),
                    lines: vec![
                        line(
                            "train",
                            PALETTE[0],
                            pts(&|r| Some(r.train_accuracy * 100.0)),
                            false,
                        ),
                        line(
                            "validation",
                            PALETTE[1],
                            pts(&|r| r.val_accuracy.map(|v| v * 100.0)),
                            false,
                        ),
                    ],
                    size: (420, 300),
                    integer_x: true,
                },
            ]);
            let f = self.save(&fig, &format!("training_{}", slug(&m.entry.id)))?;
            self.html.push_str(&figure(
                &f,
                &format!("Training curves of {} (one point per epoch).", m.entry.id),
            ));
        }
        self.html.push_str("</div>\n");

        // ROC curves, one figure per variant.
        for v in &self.study.variants {
            let mut lines = Vec::new();
            for (i, m) in self.study.models_of(&v.variant.id).enumerate() {
                let positive = &m.card.classes[m.card.positive_class.min(m.card.classes.len() - 1)];
                let scored: Vec<(f64, bool)> = m
                    .predictions
                    .iter()
                    .map(|p| (p.p_positive, &p.label == positive))
                    .collect();
                if let Some(points) = roc_points(&scored) {
                    lines.push(Line {
                        name: format!("{} (AUC {})", m.entry.id, num(m.metrics.test.roc_auc, 3)),
                        colour: PALETTE[i % PALETTE.len()],
                        points,
                        dashed: false,
                    });
                }
            }
            if lines.is_empty() {
                continue;
            }
            lines.push(Line {
                name: "chance".into(),
                colour: figures::PALETTE[7],
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                dashed: true,
            });
            let fig = Lines {
                title: format!("ROC on the test images, {}", Self::variant_title(v)),
                x_label: "false positive rate (1 − specificity)".into(),
                y_label: "true positive rate (sensitivity)".into(),
                x_range: (0.0, 1.0),
                y_range: (0.0, 1.02),
                lines,
                size: (560, 460),
                integer_x: false,
            };
            let f = self.save(&fig, &format!("roc_{}", slug(&v.variant.id)))?;
            self.html.push_str(&figure(
                &f,
                "ROC curves from test_predictions.csv (probability of the positive class).",
            ));
        }
        Ok(())
    }

    // ------------------------------------------------------------- heat maps

    /// Fig. 7 and 8: maps and overlays of every model × method for one blast and one
    /// healthy test image per variant.
    pub fn heat_maps(&mut self) -> Result<()> {
        self.section("Heat maps (paper Fig. 7 and 8)", "heatmaps");
        self.html.push_str(
            "<p>The first test image of each class (in name order) that every model of the variant \
             has maps for; chosen before looking at any map. Signed maps are drawn in seismic \
             (white = 0, limits ±max|R|), CAMs in jet from their minimum to their maximum, as \
             <code>leukex explain</code> renders them.</p>\n",
        );
        for v in &self.study.variants {
            let models: Vec<&LoadedModel> = self.study.models_of(&v.variant.id).collect();
            let methods: Vec<String> = self
                .study
                .methods_in(&v.summary)
                .into_iter()
                .filter(|m| !m.starts_with('@'))
                .collect();
            self.html.push_str("<div class=\"flex\">");
            for (class_index, stem) in chosen_stems(&models) {
                let class = models[0].class_name(&class_index.to_string());
                let source = models
                    .iter()
                    .find_map(|m| source_image(m, &stem, &self.study.dir, &v.variant.data));
                for (overlay, fig_no) in [(false, 7), (true, 8)] {
                    let tile = self.opts.tile;
                    // Reading and scaling the tiles is most of a grid's time.
                    let tiles: Vec<Vec<Option<RgbImage>>> = models
                        .par_iter()
                        .map(|m| {
                            std::iter::once(source.as_ref().map(|img| fit(img, tile)))
                                .chain(methods.iter().map(|method| {
                                    map_tile(m, &stem, method, overlay, source.as_ref(), tile)
                                }))
                                .collect()
                        })
                        .collect();
                    let grid = ImageGrid {
                        title: format!(
                            "Fig. {fig_no}: {} of {stem} (true class {class}), {}",
                            if overlay {
                                "overlays on the image"
                            } else {
                                "heat maps"
                            },
                            Self::variant_title(v)
                        ),
                        col_labels: std::iter::once("image".to_string())
                            .chain(methods.iter().cloned())
                            .collect(),
                        row_labels: models.iter().map(|m| m.entry.id.clone()).collect(),
                        tiles,
                        tile,
                        legend: true,
                    };
                    let name = format!(
                        "fig{fig_no}_{}_{}_{}",
                        if overlay { "overlays" } else { "maps" },
                        slug(&v.variant.id),
                        slug(&class)
                    );
                    let f = self.save(&grid, &name)?;
                    self.html.push_str(&figure(
                        &f,
                        &format!(
                            "Fig. {fig_no} from our maps: {} for the {class} image {stem}; rows = models, columns = methods.",
                            if overlay { "each map at 50 % over the image" } else { "every model × method" }
                        ),
                    ));
                }
            }
            self.html.push_str("</div>\n");
        }
        Ok(())
    }

    // ---------------------------------------------------------------- shares

    /// Fig. 9 (stacked bars), the paper-versus-corrected table with chance levels,
    /// Fig. 10 and Fig. 11.
    pub fn shares(&mut self) -> Result<()> {
        self.section(
            "Where the relevant pixels fall (paper Fig. 9, 10, 11)",
            "shares",
        );
        self.html.push_str(
            "<p>Shares are pooled as the paper computed them: the relevant pixels of all test images \
             of a class summed, divided by all relevant pixels. <b>paper</b> mode selects the pixels \
             whose red channel in the paper's rendering (seismic; jet for CAMs) is above its mean; the corrected modes threshold \
             the map itself (<code>raw-mean</code>: above the map's mean; <code>positive</code>; \
             <code>top-k</code>: the k % most relevant; <code>otsu</code>; <code>mass</code>: \
             summed positive relevance). <b>@oracle</b> is the cell mask itself used as a map, \
             <b>@random</b> a random map; <b>chance</b> is each category's share of the image area, \
             what a map without information gets on average.</p>\n",
        );
        for v in &self.study.variants {
            let s = &v.summary;
            let methods = self.study.methods_in(s);
            let models: Vec<&LoadedModel> = self.study.models_of(&v.variant.id).collect();
            let _ = writeln!(self.html, "<h3>{}</h3>", escape(&Self::variant_title(v)));

            // Paper beside corrected modes: cell / rbc share per mode, with chance.
            let mut rows = Vec::new();
            for m in &models {
                let mut chance = None;
                for method in &methods {
                    let mut row = vec![escape(&m.entry.id), escape(method)];
                    for mode in &s.modes {
                        let cell = s.row(&m.entry.id, method, mode).map(|r| {
                            chance = chance.or(Some(r.pooled.chance()));
                            let [c, rbc, _] = r.pooled.categories();
                            format!(
                                "{} / {}",
                                keyed(&format!("{}/{method}/{mode}/cell", m.entry.id), pct(c)),
                                keyed(&format!("{}/{method}/{mode}/rbc", m.entry.id), pct(rbc))
                            )
                        });
                        row.push(cell.unwrap_or_else(|| "–".into()));
                    }
                    rows.push(row);
                }
                if let Some([c, rbc, _]) = chance {
                    let mut row = vec![escape(&m.entry.id), "<i>chance (area)</i>".into()];
                    row.extend(s.modes.iter().map(|_| format!("{} / {}", pct(c), pct(rbc))));
                    rows.push(row);
                }
            }
            let header: Vec<String> = ["model".to_string(), "method".into()]
                .into_iter()
                .chain(s.modes.iter().map(|m| format!("{m}: cell / rbc %")))
                .collect();
            let header: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
            let _ = write!(
                self.html,
                "<h4>Paper mode beside the corrected modes</h4><p>Pooled share of relevant pixels on \
                 the cell / on red cells (%). Where the oracle scores little on the cell in paper mode, \
                 the paper's threshold, not the map, decides the picture.</p><div class=\"scroll\">{}</div>",
                table("num nowrap", &header, &rows)
            );
            // The oracle in paper mode against the corrected mode, said in words.
            if let Some(corrected) = self.corrected_mode(s) {
                for m in &models {
                    let cell = |mode: &str| {
                        s.row(&m.entry.id, "@oracle", mode)
                            .and_then(|r| r.pooled.cell_share)
                    };
                    if let (Some(p), Some(c)) = (cell("paper"), cell(&corrected)) {
                        let _ = write!(
                            self.html,
                            "<p class=\"callout\">{}: the oracle map (the cell mask itself) puts \
                             <b>{} %</b> of its relevant pixels on the cell in paper mode and {} % in \
                             {} mode.</p>",
                            escape(&m.entry.id),
                            pct(Some(p)),
                            pct(Some(c)),
                            escape(&corrected)
                        );
                    }
                }
            }

            for mode in self.main_modes(s) {
                self.fig9(v, &models, &methods, &mode)?;
            }
            for mode in self.main_modes(s) {
                self.fig10(v, &models, &methods, &mode)?;
            }
            for mode in self.main_modes(s) {
                self.fig11(v, &models, &methods, &mode)?;
            }
            self.seed_spread(v, &methods)?;
            self.correct_wrong(v, &methods)?;
        }
        Ok(())
    }

    fn fig9(
        &mut self,
        v: &LoadedVariant,
        models: &[&LoadedModel],
        methods: &[String],
        mode: &str,
    ) -> Result<()> {
        let s = &v.summary;
        let mut rows = Vec::new();
        let mut table_rows = Vec::new();
        for m in models {
            rows.push(BarRow::heading(m.entry.id.clone()));
            let mut chance = None;
            for method in methods {
                let Some(r) = s.row(&m.entry.id, method, mode) else {
                    continue;
                };
                chance = chance.or(Some(r.pooled.chance()));
                let cats = r.pooled.categories();
                rows.push(BarRow {
                    label: format!("  {method}"),
                    values: cats.iter().map(|c| c.map(|c| c * 100.0)).collect(),
                    emphasis: false,
                });
                let ci = r.mean_share.get("cell").copied().flatten();
                table_rows.push(vec![
                    escape(&m.entry.id),
                    escape(method),
                    format!("{}", r.images - r.undefined),
                    keyed(
                        &format!("{}/{method}/{mode}/cell", m.entry.id),
                        pct(cats[0]),
                    ),
                    pct(cats[1]),
                    pct(cats[2]),
                    ci.map_or("–".into(), |c| {
                        format!(
                            "{:.2} [{:.2}, {:.2}]",
                            c.mean * 100.0,
                            c.lo * 100.0,
                            c.hi * 100.0
                        )
                    }),
                ]);
            }
            if let Some(ch) = chance {
                rows.push(BarRow {
                    label: "  chance (area)".into(),
                    values: ch.iter().map(|c| c.map(|c| c * 100.0)).collect(),
                    emphasis: false,
                });
            }
        }
        if mode == "paper" && v.variant.shortcut.is_none() {
            rows.push(BarRow::heading("paper (published)"));
            for (name, _, _, v) in PUBLISHED_SHARES {
                rows.push(BarRow {
                    label: format!("  {name}"),
                    values: v.iter().map(|x| Some(*x)).collect(),
                    emphasis: false,
                });
            }
        }
        let fig = HBars {
            title: format!(
                "Fig. 9: relevant pixels on cell / red cells / background, mode {mode}, {}",
                Self::variant_title(v)
            ),
            x_label: "share of relevant pixels (%)".into(),
            x_max: 100.0,
            series: figures::series(&CATEGORIES, CATEGORY_COLOURS),
            rows,
            stacked: true,
            label_width: 230,
        };
        let f = self.save(
            &fig,
            &format!("fig9_{}_{}", slug(&v.variant.id), slug(mode)),
        )?;
        let _ = write!(
            self.html,
            "<h4>Fig. 9, mode {}</h4><div class=\"flex\">{}{}</div>",
            escape(mode),
            figure(
                &f,
                &format!("Pooled shares of relevant pixels, mode {mode}.")
            ),
            table(
                "num small",
                &[
                    "model",
                    "method",
                    "n",
                    "cell %",
                    "red cells %",
                    "background %",
                    "mean cell % [CI]"
                ],
                &table_rows
            )
        );
        Ok(())
    }

    fn fig10(
        &mut self,
        v: &LoadedVariant,
        models: &[&LoadedModel],
        methods: &[String],
        mode: &str,
    ) -> Result<()> {
        let s = &v.summary;
        let keys = ["cell", "rbc", "background"];
        let mut rows = Vec::new();
        let mut x_max: f64 = 1.0;
        for m in models {
            rows.push(BarRow::heading(m.entry.id.clone()));
            for method in methods.iter().filter(|m| !m.starts_with('@')) {
                let Some(r) = s.row(&m.entry.id, method, mode) else {
                    continue;
                };
                let vals: Vec<Option<f64>> = keys
                    .iter()
                    .map(|k| r.mean_amount.get(*k).copied())
                    .collect();
                x_max = vals.iter().flatten().fold(x_max, |a, b| a.max(*b));
                rows.push(BarRow {
                    label: format!("  {method}"),
                    values: vals,
                    emphasis: false,
                });
            }
        }
        let unit = if mode == "mass" {
            "mean summed relevance per image"
        } else {
            "mean relevant pixels per image"
        };
        let fig = HBars {
            title: format!("Fig. 10: {unit}, mode {mode}, {}", Self::variant_title(v)),
            x_label: unit.into(),
            x_max: x_max * 1.05,
            series: figures::series(&CATEGORIES, CATEGORY_COLOURS),
            rows,
            stacked: false,
            label_width: 230,
        };
        let f = self.save(
            &fig,
            &format!("fig10_{}_{}", slug(&v.variant.id), slug(mode)),
        )?;
        let _ = write!(
            self.html,
            "<h4>Fig. 10, mode {}</h4>{}",
            escape(mode),
            figure(
                &f,
                &format!(
                    "{unit} on cell / red cells / background (the paper: {} / {} / {} pixels on its \
                     images; counts scale with the image size).",
                    PUBLISHED_COUNTS[0], PUBLISHED_COUNTS[1], PUBLISHED_COUNTS[2]
                )
            )
        );
        Ok(())
    }

    fn fig11(
        &mut self,
        v: &LoadedVariant,
        models: &[&LoadedModel],
        methods: &[String],
        mode: &str,
    ) -> Result<()> {
        let s = &v.summary;
        let mut rows = Vec::new();
        let mut table_rows = Vec::new();
        for m in models {
            rows.push(BarRow::heading(m.entry.id.clone()));
            for method in methods.iter().filter(|m| !m.starts_with('@')) {
                let Some(r) = s.row(&m.entry.id, method, mode) else {
                    continue;
                };
                for (label, w) in &r.within_cell_by_label {
                    let class = m.class_name(label);
                    rows.push(BarRow {
                        label: format!("  {method}: {class}"),
                        values: w.iter().map(|x| x.map(|x| x * 100.0)).collect(),
                        emphasis: false,
                    });
                    table_rows.push(vec![
                        escape(&m.entry.id),
                        escape(method),
                        escape(&class),
                        keyed(
                            &format!("{}/{method}/{mode}/{class}/nucleus", m.entry.id),
                            pct(w[0]),
                        ),
                        pct(w[1]),
                        pct(w[2]),
                    ]);
                }
            }
        }
        if mode == "paper" && v.variant.shortcut.is_none() {
            rows.push(BarRow::heading("paper (published)"));
            for (class, [n, c]) in PUBLISHED_WITHIN_CELL {
                rows.push(BarRow {
                    label: format!("  {class}"),
                    values: vec![Some(n), Some(c), None],
                    emphasis: false,
                });
            }
        }
        let fig = HBars {
            title: format!(
                "Fig. 11: within the cell, per true class, mode {mode}, {}",
                Self::variant_title(v)
            ),
            x_label: "share of the cell's relevant pixels (%)".into(),
            x_max: 100.0,
            series: figures::series(&["nucleus", "cytoplasm", "vacuole"], WITHIN_CELL_COLOURS),
            rows,
            stacked: true,
            label_width: 300,
        };
        let f = self.save(
            &fig,
            &format!("fig11_{}_{}", slug(&v.variant.id), slug(mode)),
        )?;
        let _ = write!(
            self.html,
            "<h4>Fig. 11, mode {}</h4><div class=\"flex\">{}<details><summary>numbers</summary>{}</details></div>",
            escape(mode),
            figure(
                &f,
                &format!(
                    "Nucleus / cytoplasm / vacuole split of the cell's relevant pixels per true class, mode {mode}."
                )
            ),
            table(
                "num small",
                &[
                    "model",
                    "method",
                    "true class",
                    "nucleus %",
                    "cytoplasm %",
                    "vacuole %"
                ],
                &table_rows
            )
        );
        Ok(())
    }

    /// Per group of several seeds: spread of the pooled shares across seeds.
    fn seed_spread(&mut self, v: &LoadedVariant, methods: &[String]) -> Result<()> {
        let groups = self.study.groups();
        let multi: Vec<&Vec<&LoadedModel>> = groups
            .values()
            .filter(|g| g.len() > 1 && g[0].entry.variant == v.variant.id)
            .collect();
        if multi.is_empty() {
            return Ok(());
        }
        let s = &v.summary;
        let mut rows = Vec::new();
        for g in multi {
            for mode in self.main_modes(s) {
                for method in methods {
                    let rs: Vec<&SummaryRow> = g
                        .iter()
                        .filter_map(|m| s.row(&m.entry.id, method, &mode))
                        .collect();
                    let cat = |k: usize| -> Vec<f64> {
                        rs.iter().filter_map(|r| r.pooled.categories()[k]).collect()
                    };
                    rows.push(vec![
                        escape(&g[0].entry.group),
                        escape(&mode),
                        escape(method),
                        spread(&cat(0), 100.0, 2),
                        spread(&cat(1), 100.0, 2),
                        spread(&cat(2), 100.0, 2),
                        spread(
                            &rs.iter()
                                .filter_map(|r| r.localisation.get("auc").copied().flatten())
                                .map(|c| c.mean)
                                .collect::<Vec<_>>(),
                            1.0,
                            3,
                        ),
                    ]);
                }
            }
        }
        let _ = write!(
            self.html,
            "<h4>Spread across training seeds</h4><p>Pooled shares (%) per seed, summarised over the \
             seeds of one recipe: mean ± sd (min–max). The per-image confidence intervals above are \
             per model; this is the variation from retraining.</p>{}",
            table(
                "num small l3",
                &[
                    "group",
                    "mode",
                    "method",
                    "cell",
                    "red cells",
                    "background",
                    "localisation AUC"
                ],
                &rows
            )
        );
        Ok(())
    }

    /// Shares split by correct and wrong predictions (from per_image.csv, joined with
    /// the run's predictions where evaluate had none).
    fn correct_wrong(&mut self, v: &LoadedVariant, methods: &[String]) -> Result<()> {
        let Some(per_image) = &v.per_image else {
            self.html
                .push_str("<p>No per_image.csv: no split by correct and wrong predictions.</p>");
            return Ok(());
        };
        let modes = self.main_modes(&v.summary);
        // (model, method, mode, correct) → summed amounts, images
        let mut acc: BTreeMap<SplitKey, ([f64; 3], usize)> = BTreeMap::new();
        for r in per_image.iter().filter(|r| modes.contains(&r.mode)) {
            let Some(m) = self.study.model(&r.model) else {
                continue;
            };
            let correct = match (r.true_label, r.predicted) {
                (Some(t), Some(p)) => Some(t == p),
                _ => m
                    .predictions
                    .iter()
                    .find(|p| p.stem == r.stem)
                    .map(|p| p.label == p.predicted),
            };
            let Some(correct) = correct else { continue };
            let e = acc
                .entry((r.model.clone(), r.method.clone(), r.mode.clone(), correct))
                .or_default();
            for k in 0..3 {
                e.0[k] += r.amounts[k];
            }
            e.1 += 1;
        }
        if acc.is_empty() {
            self.html.push_str("<p>No prediction is known for the evaluated images: no split by correct and wrong predictions.</p>");
            return Ok(());
        }
        let mut rows = Vec::new();
        for m in self.study.models_of(&v.variant.id) {
            let target = m
                .explain
                .as_ref()
                .and_then(|e| e.target.as_ref())
                .map_or("unknown".to_string(), |t| {
                    t.as_str().map_or(t.to_string(), String::from)
                });
            for mode in &modes {
                for method in methods {
                    let cell = |correct: bool| -> String {
                        match acc.get(&(m.entry.id.clone(), method.clone(), mode.clone(), correct))
                        {
                            Some((a, n)) => {
                                let t: f64 = a.iter().sum();
                                let share = |k: usize| (t > 0.0).then(|| a[k] / t);
                                format!(
                                    "{} / {} / {} (n={n})",
                                    pct(share(0)),
                                    pct(share(1)),
                                    pct(share(2))
                                )
                            }
                            None => "no image".into(),
                        }
                    };
                    rows.push(vec![
                        escape(&m.entry.id),
                        escape(&target),
                        escape(mode),
                        escape(method),
                        cell(true),
                        cell(false),
                    ]);
                }
            }
        }
        let _ = write!(
            self.html,
            "<h4>Correct and wrong predictions</h4><p>Pooled cell / red cells / background shares (%) of \
             the maps of correctly and wrongly classified test images. The explained target is the class \
             each map explains (<code>true</code>: the true class, so the map of a wrong prediction \
             explains a class the model did not choose; <code>predicted</code>: the model's choice).</p>\
             <details><summary>table ({} rows)</summary>{}</details>",
            rows.len(),
            table(
                "num small",
                &[
                    "model",
                    "explained target",
                    "mode",
                    "method",
                    "correct",
                    "wrong"
                ],
                &rows
            )
        );
        Ok(())
    }

    // ----------------------------------------------- localisation, tests, model metrics

    pub fn localisation_and_tests(&mut self) -> Result<()> {
        self.section("Localisation, faithfulness, sanity and tests", "tests");
        for v in &self.study.variants {
            let s = &v.summary;
            let _ = writeln!(self.html, "<h3>{}</h3>", escape(&Self::variant_title(v)));
            let Some(first) = s.modes.first() else {
                continue;
            };
            let methods = self.study.methods_in(s);
            let names: Vec<String> = s
                .summary
                .first()
                .map(|r| r.localisation.keys().cloned().collect())
                .unwrap_or_default();
            let mut rows = Vec::new();
            for m in self.study.models_of(&v.variant.id) {
                for method in &methods {
                    let Some(r) = s.row(&m.entry.id, method, first) else {
                        continue;
                    };
                    let mut row = vec![escape(&m.entry.id), escape(method)];
                    for n in &names {
                        row.push(r.localisation.get(n).copied().flatten().map_or(
                            "–".into(),
                            |c| {
                                keyed(
                                    &format!("{}/{method}/{n}", m.entry.id),
                                    format!("{:.3} [{:.3}, {:.3}]", c.mean, c.lo, c.hi),
                                )
                            },
                        ));
                    }
                    rows.push(row);
                }
            }
            let header: Vec<String> = ["model", "method"]
                .iter()
                .map(|s| s.to_string())
                .chain(names.iter().map(|n| n.replace('_', " ")))
                .collect();
            let header: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
            let _ = write!(
                self.html,
                "<h4>Localisation against the {} (mean [{:.0} % CI] over images)</h4><div class=\"scroll\">{}</div>",
                escape(s.region.as_deref().unwrap_or("cell")),
                s.confidence * 100.0,
                table("num small nowrap", &header, &rows)
            );
            self.tests(s);
            for m in self.study.models_of(&v.variant.id) {
                if let Some(mm) = &m.model_metrics {
                    for (key, title) in [
                        ("faithfulness", "Faithfulness"),
                        ("sanity", "Sanity (MPRT)"),
                    ] {
                        if let Some(t) = json_table(&mm[key]) {
                            let _ = write!(
                                self.html,
                                "<h4>{title}: {}</h4><div class=\"scroll\">{t}</div>",
                                escape(&m.entry.id)
                            );
                        }
                    }
                }
            }
            if self
                .study
                .models_of(&v.variant.id)
                .all(|m| m.model_metrics.is_none())
            {
                self.html.push_str("<p>No faithfulness or sanity metrics in this study (the study did not ask for them).</p>");
            }
        }
        Ok(())
    }

    fn tests(&mut self, s: &EvalSummary) {
        let _ = write!(
            self.html,
            "<h4>Differences between methods</h4><p>Friedman across methods, then Wilcoxon signed-rank per \
             pair on the same images, Holm-corrected; a pair gets a direction only when its adjusted p is \
             below {}. A ranking is stated only from those pairs.</p>",
            s.alpha
        );
        for t in &s.tests {
            let fr = t.friedman.map_or("Friedman undefined".into(), |f| {
                format!("Friedman χ² = {:.2}, p = {:.4}", f.statistic, f.pvalue)
            });
            let ranking = match ranking(t) {
                Ranking::Total(order) => format!(
                    "ranking: {}",
                    order
                        .iter()
                        .map(|m| escape(m))
                        .collect::<Vec<_>>()
                        .join(" &gt; ")
                ),
                Ranking::Pairs(pairs) if pairs.is_empty() => {
                    "no ranking: the corrected tests separate no pair of methods".to_string()
                }
                Ranking::Pairs(pairs) => format!(
                    "no full ranking; separated pairs: {}",
                    pairs
                        .iter()
                        .map(|(a, b)| format!("{} &gt; {}", escape(a), escape(b)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let rows: Vec<Vec<String>> = t
                .pairs
                .iter()
                .map(|p| {
                    vec![
                        escape(&p.a),
                        escape(&p.b),
                        p.n.to_string(),
                        num(Some(p.median_difference).filter(|v| v.is_finite()), 4),
                        num(p.pvalue, 4),
                        num(p.pvalue_holm, 4),
                        escape(&p.verdict),
                    ]
                })
                .collect();
            let _ = write!(
                self.html,
                "<details><summary><b>{} / {} / {}</b>: {fr}, {} complete images; {ranking}</summary>{}</details>",
                escape(&t.model),
                if t.mode == "-" {
                    "any mode".to_string()
                } else {
                    format!("mode {}", escape(&t.mode))
                },
                escape(&t.metric.replace('_', " ")),
                t.complete_images,
                table(
                    "num small",
                    &["a", "b", "n", "median a−b", "p", "p (Holm)", "verdict"],
                    &rows
                )
            );
        }
    }

    // ------------------------------------------------------------ published

    pub fn published(&mut self) {
        self.section("The paper's numbers next to ours", "published");
        let m = &self.study.manifest;
        if m.data.reproduction {
            self.html.push_str("<p>These data are the paper's own images and masks: the comparison below is a reproduction.</p>");
        } else {
            self.html.push_str(
                "<p><b>Not a reproduction:</b> the paper's images and masks are not public. Differences \
                 come from the <b>data</b> (other images and masks: here ",
            );
            let _ = write!(
                self.html,
                "{}), the <b>models</b> (training from the weights and schedule listed above, input size, \
                 seed; the paper fine-tuned ImageNet weights) and the <b>procedure</b> (paper mode \
                 reproduces the paper's red-channel threshold; the corrected modes do not share its \
                 artefacts).</p>",
                escape(&m.data.description)
            );
        }
        let mut rows = Vec::new();
        for (name, arch, method, vals) in PUBLISHED_SHARES {
            let mut row = vec![
                escape(name),
                format!("{:.2} / {:.2} / {:.2}", vals[0], vals[1], vals[2]),
            ];
            for mode in ["paper", self.opts.corrected_mode.as_str()] {
                let ours: Vec<String> = self
                    .study
                    .variants
                    .iter()
                    .filter(|v| v.variant.shortcut.is_none())
                    .flat_map(|v| {
                        self.study
                            .models_of(&v.variant.id)
                            .filter(|m| m.entry.arch == arch)
                            .filter_map(|m| {
                                let meth = self
                                    .study
                                    .methods_in(&v.summary)
                                    .into_iter()
                                    .find(|x| x == method || x.starts_with(method))?;
                                let r = v.summary.row(&m.entry.id, &meth, mode)?;
                                let [c, rbc, bg] = r.pooled.categories();
                                Some(format!(
                                    "{} / {} / {} ({}, {})",
                                    pct(c),
                                    pct(rbc),
                                    pct(bg),
                                    escape(&m.entry.id),
                                    escape(&meth)
                                ))
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect();
                row.push(if ours.is_empty() {
                    "not in this study".into()
                } else {
                    ours.join("<br>")
                });
            }
            rows.push(row);
        }
        let corrected = format!("ours, {} mode", self.opts.corrected_mode);
        self.html.push_str(&table(
            "num",
            &[
                "model + method",
                "paper: cell / red cells / background %",
                "ours, paper mode",
                &corrected,
            ],
            &rows,
        ));
        let _ = writeln!(
            self.html,
            "<p>Also published: VGG19 + Deep Taylor puts {PUBLISHED_NUCLEUS:.2} % of the cell's relevant \
             pixels on the nucleus; within the cell, nucleus / cytoplasm = {:.2} / {:.2} % for healthy \
             cells and {:.2} / {:.2} % for ALL blasts (shown in Fig. 11 above); mean relevant-pixel counts \
             {} / {} / {} (Fig. 10).</p>",
            PUBLISHED_WITHIN_CELL[0].1[0],
            PUBLISHED_WITHIN_CELL[0].1[1],
            PUBLISHED_WITHIN_CELL[1].1[0],
            PUBLISHED_WITHIN_CELL[1].1[1],
            PUBLISHED_COUNTS[0],
            PUBLISHED_COUNTS[1],
            PUBLISHED_COUNTS[2]
        );
    }

    // ------------------------------------------------------------- shortcut

    pub fn shortcut(&mut self) -> Result<()> {
        let clean = self
            .study
            .variants
            .iter()
            .find(|v| v.variant.shortcut.is_none());
        let cheat = self
            .study
            .variants
            .iter()
            .find(|v| v.variant.shortcut.is_some());
        let (Some(clean), Some(cheat)) = (clean, cheat) else {
            return Ok(());
        };
        self.section("The shortcut experiment", "shortcut");
        let shortcut = cheat.variant.shortcut.clone().unwrap_or_default();
        let _ = write!(
            self.html,
            "<p>The same recipes trained on data with the shortcut <code>{}</code> planted (the class can \
             be read off the red cells). A method that shows the cheating moves relevance onto the red \
             cells for the shortcut model. Bars: pooled red-cell share, clean versus shortcut model.</p>",
            escape(&shortcut)
        );
        for mode in self.main_modes(&cheat.summary) {
            let mut rows = Vec::new();
            let mut table_rows = Vec::new();
            let mut changes: Vec<(String, f64)> = Vec::new();
            let methods: Vec<String> = self
                .study
                .methods_in(&cheat.summary)
                .into_iter()
                .filter(|m| !m.starts_with('@'))
                .collect();
            for a in self.study.models_of(&clean.variant.id) {
                let Some(b) = self
                    .study
                    .models_of(&cheat.variant.id)
                    .find(|b| b.entry.arch == a.entry.arch && b.entry.seed == a.entry.seed)
                else {
                    continue;
                };
                rows.push(BarRow::heading(format!("{} vs {}", a.entry.id, b.entry.id)));
                for method in &methods {
                    let ra = clean.summary.row(&a.entry.id, method, &mode);
                    let rb = cheat.summary.row(&b.entry.id, method, &mode);
                    let (sa, sb) = (
                        ra.and_then(|r| r.pooled.share[crate::inputs::RBC]),
                        rb.and_then(|r| r.pooled.share[crate::inputs::RBC]),
                    );
                    rows.push(BarRow {
                        label: format!("  {method}"),
                        values: vec![sa.map(|x| x * 100.0), sb.map(|x| x * 100.0)],
                        emphasis: false,
                    });
                    if let (Some(x), Some(y)) = (sa, sb) {
                        changes.push((format!("{} {method}", a.entry.arch), (y - x) * 100.0));
                    }
                    table_rows.push(vec![
                        escape(&a.entry.arch),
                        escape(method),
                        pct(sa),
                        pct(sb),
                        match (sa, sb) {
                            (Some(x), Some(y)) => format!("{:+.2}", (y - x) * 100.0),
                            _ => "–".into(),
                        },
                        format!(
                            "{} / {}",
                            pct(Some(a.metrics.test.accuracy)),
                            pct(Some(b.metrics.test.accuracy))
                        ),
                    ]);
                }
            }
            if table_rows.is_empty() {
                self.html
                    .push_str("<p>No architecture was trained on both variants.</p>");
                return Ok(());
            }
            let fig = HBars {
                title: format!("Shortcut: red-cell share, clean vs {shortcut} model, mode {mode}"),
                x_label: "share of relevant pixels on red cells (%)".into(),
                x_max: 100.0,
                series: vec![
                    ("clean model".into(), PALETTE[0]),
                    (format!("{shortcut} model"), PALETTE[5]),
                ],
                rows,
                stacked: false,
                label_width: 260,
            };
            let f = self.save(&fig, &format!("shortcut_{}", slug(&mode)))?;
            changes.sort_by(|x, y| y.1.total_cmp(&x.1));
            let _ = write!(
                self.html,
                "<h4>Mode {}</h4><p>Red-cell share from the clean to the shortcut model, largest \
                 rise first: {}. A method whose share does not rise does not show the shortcut.</p>\
                 <div class=\"flex\">{}{}</div>",
                escape(&mode),
                changes
                    .iter()
                    .map(|(m, d)| format!("{} ({d:+.1} points)", escape(m)))
                    .collect::<Vec<_>>()
                    .join(", "),
                figure(
                    &f,
                    &format!("Red-cell share of clean and shortcut models, mode {mode}.")
                ),
                table(
                    "num small",
                    &[
                        "arch",
                        "method",
                        "clean %",
                        "shortcut %",
                        "change (points)",
                        "test accuracy clean / shortcut"
                    ],
                    &table_rows
                )
            );
        }
        Ok(())
    }

    // -------------------------------------------------------------- ratings

    pub fn ratings(&mut self) {
        self.section("Expert ratings (paper Table 2)", "ratings");
        match &self.study.ratings {
            None => self.html.push_str(
                "<p>No ratings yet. Experts rate the maps blind in the viewer: <code>leukex serve DIR</code> \
                 (this study folder); the next report shows Table 2 here.</p>",
            ),
            Some(Err(e)) => {
                let _ = write!(self.html, "<p class=\"warn\">ratings.sqlite could not be summarised: {}</p>", escape(e));
            }
            Some(Ok(s)) => {
                let _ = write!(
                    self.html,
                    "<p>{} rater(s), {} map(s), {} rating(s); Krippendorff's α (ordinal) {}.</p>",
                    s.raters,
                    s.maps,
                    s.ratings,
                    num(s.alpha, 3)
                );
                for (title, rows) in [("per method", &s.by_method), ("per model and method", &s.by_model_method)] {
                    let rows: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                escape(r.model.as_deref().unwrap_or("all")),
                                escape(&r.method),
                                r.ratings.to_string(),
                                r.raters.to_string(),
                                r.maps.to_string(),
                                format!("{:.2} [{:.2}, {:.2}]", r.mean_score, r.ci_low, r.ci_high),
                                format!("{:.1}", r.morphology_percent),
                                r.top_level_maps.to_string(),
                                num(r.alpha, 3),
                            ]
                        })
                        .collect();
                    let _ = write!(
                        self.html,
                        "<h4>Table 2, {title}</h4>{}",
                        table(
                            "num small",
                            &["model", "method", "ratings", "raters", "maps", "mean score [95 % CI]", "shows morphology %", "top-level maps", "α"],
                            &rows
                        )
                    );
                }
            }
        }
    }

    // ---------------------------------------------------------------- guide

    pub fn guide(&mut self) {
        self.section("A short guide to the methods and measures", "guide");
        self.html.push_str(GUIDE);
    }

    pub fn appendix(&mut self) {
        self.section("Appendix: the study as run", "appendix");
        match &self.study.toml {
            Some(t) => {
                let _ = write!(self.html, "<pre class=\"toml\">{}</pre>", escape(t));
            }
            None => self
                .html
                .push_str("<p>No study.toml in the study folder.</p>"),
        }
    }
}

const GUIDE: &str = r#"
<h4>Methods</h4>
<ul>
<li><b>LRP</b> (layer-wise relevance propagation) passes the class score back layer by layer, keeping its sum. Its rules differ in how a layer shares relevance among its inputs: <b>LRP-0</b> in proportion to each input's contribution z<sub>ij</sub> = a<sub>i</sub>w<sub>ij</sub>; <b>LRP-ε</b> adds ε to the denominator so that weak, noisy contributions are absorbed; <b>LRP-γ</b> favours positive contributions; <b>α1β0</b> (= z<sup>+</sup>) keeps only positive contributions; <b>flat</b> and <b>w²</b> spread relevance by the weights alone (used at the input layer); <b>z<sup>B</sup></b> respects the input's pixel bounds.</li>
<li><b>Presets</b> (<code>lrp-preset-a</code>, <code>-b</code>, <code>epsilon-plus-flat</code>, ...) are the common composites: one rule for the dense layers, another for the convolutions, a third at the input.</li>
<li><b>LRP-0 = Input×Gradient</b> on networks of ReLUs, max-pooling and linear layers: both give a<sub>i</sub>·∂f/∂a<sub>i</sub> at the input, so the two maps agree up to float rounding (batch norm folded into the convolutions).</li>
<li><b>Deep Taylor</b> decomposition is LRP with z<sup>+</sup> in the hidden layers and z<sup>B</sup> at the input (the paper's VGG19 maps).</li>
<li><b>Grad-CAM</b> weighs the last convolutional feature maps by their mean gradient and keeps the positive part, at the layer's coarse resolution, upsampled to the image.</li>
<li><b>Integrated Gradients</b> averages gradients along a path from a baseline (black image) to the input, times the input minus the baseline.</li>
<li><b>Why a map can be all zero:</b> a ReLU network saturated on its class (softmax ≈ 1, the log-probability's gradient vanishes), dead ReLUs in an untrained or briefly trained network, a CAM whose weighted maps are all negative before the ReLU, or float underflow. A constant map has no ranking: the evaluation marks it undefined instead of counting it as 0.</li>
</ul>
<h4>Measures</h4>
<ul>
<li><b>paper mode</b> reproduces the paper: render the map as the paper's tools did (iNNvestigate's seismic for LRP, Deep Taylor and the gradient methods; MATLAB's jet for CAMs), take the red channel and keep the pixels above its mean. In seismic, white (zero relevance) has full red while the strongest positive relevance is dark red (red ≈ 0.5): the rule keeps zero-relevance pixels and can drop the most relevant ones. The oracle map (the cell itself as a map) then scores about 0 % on the cell: what paper mode measures is largely the rendering, not the map.</li>
<li><b>corrected modes</b> work on the raw map: <code>raw-mean</code> (above the map's mean), <code>positive</code> (positive relevance), <code>top-k</code> (the k % most relevant pixels), <code>otsu</code> (Otsu's threshold), <code>mass</code> (summed positive relevance, no threshold).</li>
<li><b>share</b>: relevant pixels on a class ÷ all relevant labelled pixels; <b>chance</b>: the class's share of the area; <b>lift</b> = share ÷ chance (1 = no better than a blind map).</li>
<li><b>Localisation</b> (Quantus definitions): pointing game (is the maximum on the cell), attribution localisation (positive relevance inside ÷ total), top-k intersection, relevance rank and mass accuracy, AUC of the map as a detector of the cell.</li>
<li><b>Faithfulness</b> (deletion / insertion curves, ROAD): does removing the most relevant pixels first lower the class score fastest. <b>Sanity</b> (MPRT): randomising the model's weights from the top should change the map; a map that stays the same does not explain the model.</li>
</ul>
"#;

// ------------------------------------------------------------------ helpers

/// What the pairwise tests of one (model, mode, metric) support.
#[derive(Debug, Clone, PartialEq)]
pub enum Ranking {
    /// Every pair separated, consistently: the methods best first.
    Total(Vec<String>),
    /// Only these pairs (better, worse) are separated.
    Pairs(Vec<(String, String)>),
}

/// A full order only when the Holm-corrected Wilcoxon verdicts separate every pair
/// and agree with one order; otherwise the separated pairs alone.
pub fn ranking(t: &crate::inputs::MethodTests) -> Ranking {
    let pairs: Vec<(String, String)> = t
        .pairs
        .iter()
        .filter_map(|p| match p.verdict.as_str() {
            "a>b" => Some((p.a.clone(), p.b.clone())),
            "a<b" => Some((p.b.clone(), p.a.clone())),
            _ => None,
        })
        .collect();
    let k = t.methods.len();
    if k >= 2 && pairs.len() == k * (k - 1) / 2 {
        let wins = |m: &String| pairs.iter().filter(|(a, _)| a == m).count();
        let mut order = t.methods.clone();
        order.sort_by_key(|m| std::cmp::Reverse(wins(m)));
        let consistent = order.iter().enumerate().all(|(i, m)| wins(m) == k - 1 - i);
        if consistent {
            return Ranking::Total(order);
        }
    }
    Ranking::Pairs(pairs)
}

/// ROC points (false positive rate, true positive rate) from (score, positive) pairs;
/// ties advance together. `None` when one class is absent.
pub fn roc_points(scored: &[(f64, bool)]) -> Option<Vec<(f64, f64)>> {
    let pos = scored.iter().filter(|s| s.1).count() as f64;
    let neg = scored.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let mut v = scored.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            if v[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        points.push((fp / neg, tp / pos));
        i = j;
    }
    Some(points)
}

/// The first test stem (in name order) of each true class that every model has maps
/// for: (class index, stem), by class index.
fn chosen_stems(models: &[&LoadedModel]) -> Vec<(usize, String)> {
    let Some(first) = models.first() else {
        return Vec::new();
    };
    let has_maps = |m: &LoadedModel, stem: &str| m.maps_dir.join(stem).is_dir();
    // (stem, true class index): from the test predictions, else from explain.json.
    let mut labelled: Vec<(String, usize)> = first
        .predictions
        .iter()
        .filter_map(|p| {
            let class = first.card.classes.iter().position(|c| c == &p.label)?;
            Some((p.stem.clone(), class))
        })
        .collect();
    if labelled.is_empty()
        && let Some(images) = first.explain.as_ref().and_then(|e| e.images.as_object())
    {
        labelled = images
            .iter()
            .filter_map(|(stem, info)| Some((stem.clone(), info["true_label"].as_u64()? as usize)))
            .collect();
    }
    labelled.sort();
    let mut by_class: BTreeMap<usize, String> = BTreeMap::new();
    for (stem, class) in labelled {
        if !by_class.contains_key(&class) && models.iter().all(|m| has_maps(m, &stem)) {
            by_class.insert(class, stem);
        }
    }
    // Positive class (the blast) first, as the paper shows it.
    let positive = first.card.positive_class;
    let mut v: Vec<(usize, String)> = by_class.into_iter().collect();
    v.sort_by_key(|(c, _)| *c != positive);
    v
}

/// The input image of `stem`: explain.json's source, else a file of that stem in the
/// variant's data folder.
fn source_image(m: &LoadedModel, stem: &str, dir: &Path, data: &str) -> Option<RgbImage> {
    let from_explain = m
        .explain
        .as_ref()
        .and_then(|e| e.images.get(stem))
        .and_then(|i| i.get("source"))
        .and_then(|s| s.as_str())
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let path = from_explain.or_else(|| {
        ["tif", "tiff", "png", "jpg", "bmp"]
            .iter()
            .map(|ext| dir.join(data).join(format!("{stem}.{ext}")))
            .find(|p| p.is_file())
    })?;
    leukex_data::image_io::read_rgb(&path).ok()
}

fn fit(img: &RgbImage, tile: u32) -> RgbImage {
    image::imageops::resize(img, tile, tile, image::imageops::FilterType::Triangle)
}

/// The tile of one map: the rendering `leukex explain` wrote, else the `.npy` drawn
/// the same way (seismic when it has negative values, jet otherwise).
fn map_tile(
    m: &LoadedModel,
    stem: &str,
    method: &str,
    overlay: bool,
    source: Option<&RgbImage>,
    tile: u32,
) -> Option<RgbImage> {
    let dir = m.maps_dir.join(stem);
    let name = if overlay {
        format!("{method}_overlay.png")
    } else {
        format!("{method}.png")
    };
    if let Ok(img) = leukex_data::image_io::read_rgb(&dir.join(name)) {
        return Some(fit(&img, tile));
    }
    let npy = leukex_data::npy::read_f32(&dir.join(format!("{method}.npy"))).ok()?;
    let (h, w) = match npy.shape.as_slice() {
        [h, w] => (*h, *w),
        [_, h, w] => (*h, *w),
        _ => return None,
    };
    let values = &npy.data[npy.data.len() - h * w..];
    let signed = values.iter().any(|v| *v < 0.0);
    let colour = leukex_render::colourise(values, h, w, signed);
    let img = match (overlay, source) {
        (true, Some(src)) => leukex_render::overlay(src, &colour),
        (true, None) => return None,
        (false, _) => colour,
    };
    Some(fit(&img, tile))
}

/// An array of flat JSON objects as a table (model_metrics.json's means); `None` when
/// it is not one or empty.
fn json_table(v: &serde_json::Value) -> Option<String> {
    let arr = v.as_array().filter(|a| !a.is_empty())?;
    // Naming columns first, the rest in the file's order.
    let mut keys: Vec<String> = ["model", "method", "metric"]
        .iter()
        .filter(|k| arr.iter().any(|o| o.get(**k).is_some()))
        .map(|k| k.to_string())
        .collect();
    for o in arr {
        for k in o.as_object()?.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let cell = |v: &serde_json::Value| -> String {
        match v {
            serde_json::Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| {
                if f.fract() == 0.0 && f.abs() < 1e9 {
                    format!("{f}")
                } else {
                    format!("{f:.4}")
                }
            }),
            serde_json::Value::String(s) => escape(s),
            serde_json::Value::Null => "–".into(),
            // A mean with its interval (leukex's MeanCi).
            serde_json::Value::Object(o) if o.contains_key("mean") => format!(
                "{} [{}, {}]",
                num(o["mean"].as_f64(), 4),
                num(o.get("lo").and_then(|v| v.as_f64()), 4),
                num(o.get("hi").and_then(|v| v.as_f64()), 4)
            ),
            // Per-layer values and the like: their count here, the values on hover.
            serde_json::Value::Array(a) => format!(
                "<span title=\"{}\">{} values</span>",
                escape(&v.to_string()),
                a.len()
            ),
            other => escape(&other.to_string()),
        }
    };
    let rows: Vec<Vec<String>> = arr
        .iter()
        .map(|o| keys.iter().map(|k| cell(&o[k])).collect())
        .collect();
    let header: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
    Some(table("num small", &header, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: scores 0.9 (+), 0.8 (−), 0.8 (+), 0.1 (−).
    #[test]
    fn roc_points_group_ties() {
        let p = roc_points(&[(0.9, true), (0.8, false), (0.8, true), (0.1, false)]).unwrap();
        assert_eq!(p, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        assert!(roc_points(&[(0.5, true)]).is_none());
    }

    fn tests_with(methods: &[&str], verdicts: &[(&str, &str, &str)]) -> crate::inputs::MethodTests {
        crate::inputs::MethodTests {
            model: "m".into(),
            mode: "paper".into(),
            metric: "cell_share".into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            complete_images: 10,
            friedman: None,
            pairs: verdicts
                .iter()
                .map(|(a, b, v)| crate::inputs::PairTest {
                    a: a.to_string(),
                    b: b.to_string(),
                    n: 10,
                    median_difference: 0.0,
                    pvalue: Some(0.01),
                    pvalue_holm: Some(0.01),
                    verdict: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn ranking_only_from_a_complete_consistent_set_of_verdicts() {
        // x > y, x > z, y > z in the a/b orientation evaluate writes (sorted pairs).
        let t = tests_with(
            &["x", "y", "z"],
            &[("x", "y", "a>b"), ("x", "z", "a>b"), ("y", "z", "a>b")],
        );
        assert_eq!(
            ranking(&t),
            Ranking::Total(vec!["x".into(), "y".into(), "z".into()])
        );
        let t = tests_with(
            &["x", "y", "z"],
            &[("x", "y", "a<b"), ("x", "z", "a<b"), ("y", "z", "a>b")],
        );
        assert_eq!(
            ranking(&t),
            Ranking::Total(vec!["y".into(), "z".into(), "x".into()])
        );
        // One pair undecided: only the separated pairs.
        let t = tests_with(
            &["x", "y", "z"],
            &[("x", "y", "a>b"), ("x", "z", "none"), ("y", "z", "a>b")],
        );
        assert_eq!(
            ranking(&t),
            Ranking::Pairs(vec![("x".into(), "y".into()), ("y".into(), "z".into())])
        );
        // A cycle is no ranking either.
        let t = tests_with(
            &["x", "y", "z"],
            &[("x", "y", "a>b"), ("x", "z", "a<b"), ("y", "z", "a>b")],
        );
        assert!(matches!(ranking(&t), Ranking::Pairs(p) if p.len() == 3));
    }

    #[test]
    fn spread_reports_sample_sd() {
        // values 0.1, 0.2, 0.3: mean 20 %, sd 10 %.
        assert_eq!(
            spread(&[0.1, 0.2, 0.3], 100.0, 1),
            "20.0 ± 10.0 (10.0–30.0, 3 seeds)"
        );
    }
}
