//! The report's figures, each written as PNG and SVG from one drawing routine.
//!
//! Charts are drawn with `plotters` on its bitmap and SVG backends; text in the
//! bitmaps goes through `ab_glyph` with DejaVu Sans embedded (the `dejavu` crate), so
//! a figure looks the same on every machine, with no system font lookup. Grids of heat
//! maps are bitmaps by nature: their PNG is drawn with plotters and their SVG embeds
//! each tile as a PNG beside vector text.

use crate::error::{ReportError, Result};
use image::RgbImage;
use leukex_data::fsutil::write_bytes_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The font family every figure uses.
const FONT: &str = "sans-serif";

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are DejaVu's own TTFs: parsing them cannot fail.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Turns any drawing error into text (plotters' errors are generic over the backend).
trait Msg<T> {
    fn msg(self) -> std::result::Result<T, String>;
}

impl<T, E: std::fmt::Debug> Msg<T> for std::result::Result<T, E> {
    fn msg(self) -> std::result::Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

type DrawResult = std::result::Result<(), String>;

/// Something drawable on any plotters backend.
pub trait Draw {
    /// Size in pixels (width, height).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
    /// The SVG text; by default the plotters SVG backend.
    fn svg(&self) -> std::result::Result<String, String> {
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, self.size()).into_drawing_area();
            root.fill(&WHITE).msg()?;
            self.draw(&root)?;
            root.present().msg()?;
        }
        Ok(s)
    }
}

/// The two files of one figure, relative to the report folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FigureFiles {
    pub png: String,
    pub svg: String,
}

/// Draws `fig` into `dir/NAME.png` and `dir/NAME.svg` (atomically).
pub fn save(fig: &impl Draw, dir: &Path, name: &str) -> Result<FigureFiles> {
    register_fonts();
    let png_path = dir.join(format!("{name}.png"));
    let svg_path = dir.join(format!("{name}.svg"));
    let fail = |path: &PathBuf, reason: String| ReportError::Figure {
        path: path.clone(),
        reason,
    };
    let (w, h) = fig.size();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    (|| -> DrawResult {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).msg()?;
        fig.draw(&root)?;
        root.present().msg()
    })()
    .map_err(|e| fail(&png_path, e))?;
    let img = RgbImage::from_raw(w, h, buf).expect("buffer of the figure's size");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail(&png_path, e.to_string()))?;
    write_bytes_atomic(&png_path, &png)?;
    let svg = fig.svg().map_err(|e| fail(&svg_path, e))?;
    write_bytes_atomic(&svg_path, svg.as_bytes())?;
    Ok(FigureFiles {
        png: format!("figures/{name}.png"),
        svg: format!("figures/{name}.svg"),
    })
}

/// Colour-blind-safe qualitative palette (Okabe & Ito).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Cell / red cells / background, as in the paper's Fig. 9.
pub const CATEGORY_COLOURS: [RGBColor; 3] = [
    RGBColor(120, 60, 160),
    RGBColor(214, 39, 40),
    RGBColor(190, 190, 190),
];

/// Nucleus / cytoplasm / vacuole (Fig. 11).
pub const WITHIN_CELL_COLOURS: [RGBColor; 3] = [
    RGBColor(60, 40, 140),
    RGBColor(150, 120, 210),
    RGBColor(240, 220, 120),
];

/// Enough width for a bold title of `size` px (DejaVu Sans Bold averages about 0.68
/// of the size per character), with margins.
fn title_width(title: &str, size: u32) -> u32 {
    (title.chars().count() as f64 * size as f64 * 0.68) as u32 + 30
}

fn font(size: u32) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT), size as f64, FontStyle::Normal)
}

fn bold(size: u32) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT), size as f64, FontStyle::Bold)
}

/// One row of a horizontal bar chart. `values[i]` belongs to series `i`; `None` leaves
/// that bar out (undefined). A row with no label and no value is a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct BarRow {
    pub label: String,
    pub values: Vec<Option<f64>>,
    /// Drawn in bold (e.g. a group heading or published numbers).
    pub emphasis: bool,
}

impl BarRow {
    /// A bold row without bars that names the rows below it.
    pub fn heading(label: impl Into<String>) -> BarRow {
        BarRow {
            label: label.into(),
            values: Vec::new(),
            emphasis: true,
        }
    }
}

/// Named series with their colours.
pub fn series<const N: usize>(
    names: &[&str; N],
    colours: [RGBColor; N],
) -> Vec<(String, RGBColor)> {
    names
        .iter()
        .zip(colours)
        .map(|(n, c)| (n.to_string(), c))
        .collect()
}

/// Horizontal bars, stacked (shares that add up) or grouped (side by side).
#[derive(Debug, Clone)]
pub struct HBars {
    pub title: String,
    pub x_label: String,
    pub x_max: f64,
    pub series: Vec<(String, RGBColor)>,
    pub rows: Vec<BarRow>,
    pub stacked: bool,
    /// Width of the label column in pixels.
    pub label_width: u32,
}

const ROW_PX: u32 = 20;

impl Draw for HBars {
    fn size(&self) -> (u32, u32) {
        (
            (self.label_width + 620).max(title_width(&self.title, 16)),
            110 + ROW_PX * self.rows.len().max(1) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let n = self.rows.len().max(1) as f64;
        let (w, _) = self.size();
        let (top, rest) = root.split_vertically(36);
        top.draw(&Text::new(
            self.title.clone(),
            (10, 8),
            bold(16).color(&BLACK),
        ))
        .msg()?;
        let (chart_area, legend) = rest.split_vertically(rest.dim_in_pixel().1 - 30);
        let mut chart = ChartBuilder::on(&chart_area)
            .margin_right(20)
            .x_label_area_size(36)
            .y_label_area_size(self.label_width)
            .build_cartesian_2d(0.0..self.x_max, 0.0..n)
            .msg()?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_label_formatter(&|x| axis_number(*x, self.x_max))
            .x_desc(self.x_label.clone())
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()
            .msg()?;
        for (i, row) in self.rows.iter().enumerate() {
            // Row 0 at the top.
            let y1 = n - i as f64 - 0.15;
            let y0 = n - i as f64 - 0.85;
            let mut x = 0.0;
            let k = self.series.len().max(1) as f64;
            for (j, v) in row.values.iter().enumerate() {
                let Some(v) = *v else { continue };
                let colour = self.series[j].1;
                let rect = if self.stacked {
                    let r = [(x, y0), (x + v, y1)];
                    x += v;
                    r
                } else {
                    let h = (y1 - y0) / k;
                    let top = y1 - h * j as f64;
                    [(0.0, top - h), (v, top)]
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(rect, colour.filled())))
                    .msg()?;
            }
            let (_, py) = chart.backend_coord(&(0.0, n - i as f64 - 0.5));
            let style = if row.emphasis { bold(12) } else { font(12) };
            let label_w = self.label_width as i32;
            root.draw(&Text::new(
                row.label.clone(),
                (6, py - 7),
                style.color(&BLACK),
            ))
            .msg()?;
            let _ = label_w;
        }
        // Legend: colour swatches along the bottom.
        let mut x = self.label_width as i32;
        for (name, colour) in &self.series {
            legend
                .draw(&Rectangle::new([(x, 8), (x + 14, 22)], colour.filled()))
                .msg()?;
            legend
                .draw(&Text::new(
                    name.clone(),
                    (x + 18, 8),
                    font(12).color(&BLACK),
                ))
                .msg()?;
            x += 30 + 7 * name.chars().count() as i32;
            if x > w as i32 - 60 {
                break;
            }
        }
        Ok(())
    }
}

/// A tick label with as many decimals as the axis range needs.
fn axis_number(v: f64, max: f64) -> String {
    if max >= 20.0 {
        format!("{v:.0}")
    } else if max >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of a [`Lines`] chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A line chart (training curves, ROC).
#[derive(Debug, Clone)]
pub struct Lines {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub lines: Vec<Line>,
    pub size: (u32, u32),
    /// Ticks only at whole numbers (epochs).
    pub integer_x: bool,
}

impl Draw for Lines {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let mut chart = ChartBuilder::on(root)
            .caption(self.title.clone(), bold(15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                self.x_range.0..self.x_range.1,
                self.y_range.0..self.y_range.1,
            )
            .msg()?;
        let span = self.x_range.1 - self.x_range.0;
        let x_ticks = if self.integer_x {
            (span.floor() as usize).clamp(1, 12)
        } else {
            10
        };
        let integer_x = self.integer_x;
        let y_max = self.y_range.1;
        chart
            .configure_mesh()
            .x_labels(x_ticks)
            .x_label_formatter(&|x| {
                if integer_x {
                    format!("{:.0}", x)
                } else {
                    format!("{x:.1}")
                }
            })
            .y_label_formatter(&|y| axis_number(*y, y_max))
            .x_desc(self.x_label.clone())
            .y_desc(self.y_label.clone())
            .label_style(font(12))
            .axis_desc_style(font(13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .msg()?;
        for line in &self.lines {
            let style = line.colour.stroke_width(2);
            let series = if line.dashed {
                chart
                    .draw_series(DashedLineSeries::new(line.points.clone(), 6, 4, style))
                    .msg()?
            } else {
                chart
                    .draw_series(LineSeries::new(line.points.clone(), style))
                    .msg()?;
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|&p| Circle::new(p, 3, line.colour.filled())),
                    )
                    .msg()?
            };
            let c = line.colour;
            series.label(line.name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
            });
        }
        chart
            .configure_series_labels()
            .label_font(font(12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .msg()
    }
}

/// Several charts side by side in one figure.
pub struct Row<T>(pub Vec<T>);

impl<T: Draw> Draw for Row<T> {
    fn size(&self) -> (u32, u32) {
        let w: u32 = self.0.iter().map(|c| c.size().0).sum();
        let h = self.0.iter().map(|c| c.size().1).max().unwrap_or(1);
        (w.max(1), h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let mut x = 0;
        for c in &self.0 {
            let (w, h) = c.size();
            let area = root.clone().shrink((x, 0), (w, h));
            c.draw(&area)?;
            x += w as i32;
        }
        Ok(())
    }
}

/// A grid of images (heat maps, overlays) with row and column labels and the colour
/// scales of the two renderings underneath.
#[derive(Debug, Clone)]
pub struct ImageGrid {
    pub title: String,
    pub col_labels: Vec<String>,
    pub row_labels: Vec<String>,
    /// `tiles[row][col]`, each `tile`×`tile` pixels; `None` = no map.
    pub tiles: Vec<Vec<Option<RgbImage>>>,
    pub tile: u32,
    /// Draw the colour scales of the signed (seismic) and CAM (jet) renderings.
    pub legend: bool,
}

/// A colour scale of the legend: name, colours left to right, tick labels.
type ColourScale = (&'static str, Vec<[u8; 3]>, [&'static str; 3]);

const GRID_LEFT: u32 = 130;
const GRID_TOP: u32 = 70;
const GRID_GAP: u32 = 4;
const LEGEND_H: u32 = 70;

impl ImageGrid {
    fn cell(&self) -> u32 {
        self.tile + GRID_GAP
    }
    fn origin(&self, r: usize, c: usize) -> (i32, i32) {
        (
            (GRID_LEFT + self.cell() * c as u32) as i32,
            (GRID_TOP + self.cell() * r as u32) as i32,
        )
    }
    fn legend_top(&self) -> i32 {
        (GRID_TOP + self.cell() * self.row_labels.len() as u32 + 16) as i32
    }
    /// The two colour scales: (name, colours left to right, tick labels).
    fn scales() -> [ColourScale; 2] {
        let bytes = |m: &leukex_render::Colormap| -> Vec<[u8; 3]> {
            m.rgb
                .iter()
                .map(|c| c.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8))
                .collect()
        };
        [
            (
                "signed maps (seismic)",
                bytes(leukex_render::seismic()),
                ["−max|R|", "0", "+max|R|"],
            ),
            (
                "CAMs (jet)",
                bytes(leukex_render::matlab_jet()),
                ["min", "", "max"],
            ),
        ]
    }
    const SCALE_W: i32 = 256;
}

/// Short labels wrap: column headings are method ids, often long.
fn wrap(label: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for part in label.split_inclusive(['-', ' ']) {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.chars().count() + part.chars().count() > width {
            lines.push(part.to_string());
        } else {
            last.push_str(part);
        }
    }
    lines
}

impl Draw for ImageGrid {
    fn size(&self) -> (u32, u32) {
        let cols = self.col_labels.len().max(1) as u32;
        let rows = self.row_labels.len() as u32;
        let w = (GRID_LEFT + self.cell() * cols + 10)
            .max(if self.legend { 700 } else { 300 })
            .max(title_width(&self.title, 15));
        let h = GRID_TOP + self.cell() * rows + if self.legend { LEGEND_H + 20 } else { 10 };
        (w, h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let width = (self.tile as usize / 7).max(8);
        root.draw(&Text::new(
            self.title.clone(),
            (10, 8),
            bold(15).color(&BLACK),
        ))
        .msg()?;
        for (c, label) in self.col_labels.iter().enumerate() {
            let (x, _) = self.origin(0, c);
            for (k, line) in wrap(label, width).iter().take(2).enumerate() {
                root.draw(&Text::new(
                    line.clone(),
                    (x, GRID_TOP as i32 - 34 + 14 * k as i32),
                    font(12).color(&BLACK),
                ))
                .msg()?;
            }
        }
        for (r, label) in self.row_labels.iter().enumerate() {
            let (_, y) = self.origin(r, 0);
            for (k, line) in wrap(label, 16).iter().take(3).enumerate() {
                root.draw(&Text::new(
                    line.clone(),
                    (8, y + self.tile as i32 / 2 - 8 + 14 * k as i32),
                    font(12).color(&BLACK),
                ))
                .msg()?;
            }
            for c in 0..self.col_labels.len() {
                let (x, y) = self.origin(r, c);
                match self.tiles[r].get(c).and_then(|t| t.as_ref()) {
                    Some(img) => {
                        let el = BitMapElement::with_ref((x, y), img.dimensions(), img.as_raw())
                            .ok_or("tile buffer of the wrong size")?;
                        root.draw(&el).msg()?;
                    }
                    None => {
                        root.draw(&Rectangle::new(
                            [(x, y), (x + self.tile as i32, y + self.tile as i32)],
                            RGBColor(240, 240, 240).filled(),
                        ))
                        .msg()?;
                        root.draw(&Text::new("no map", (x + 6, y + 6), font(11).color(&BLACK)))
                            .msg()?;
                    }
                }
            }
        }
        if self.legend {
            let top = self.legend_top();
            for (k, (name, colours, ticks)) in Self::scales().iter().enumerate() {
                let x0 = 24 + k as i32 * (Self::SCALE_W + 80);
                root.draw(&Text::new(
                    name.to_string(),
                    (x0, top),
                    font(12).color(&BLACK),
                ))
                .msg()?;
                for (i, c) in colours.iter().enumerate() {
                    let x = x0 + i as i32 * Self::SCALE_W / colours.len() as i32;
                    root.draw(&Rectangle::new(
                        [(x, top + 18), (x + 2, top + 36)],
                        RGBColor(c[0], c[1], c[2]).filled(),
                    ))
                    .msg()?;
                }
                for (j, t) in ticks.iter().enumerate() {
                    let x = x0 + j as i32 * Self::SCALE_W / 2 - 10;
                    root.draw(&Text::new(
                        t.to_string(),
                        (x, top + 40),
                        font(11).color(&BLACK),
                    ))
                    .msg()?;
                }
            }
        }
        Ok(())
    }

    /// Vector text; each tile an embedded PNG (a pixel-per-rectangle SVG would be huge).
    fn svg(&self) -> std::result::Result<String, String> {
        use std::fmt::Write;
        let (w, h) = self.size();
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, sans-serif"><rect width="{w}" height="{h}" fill="white"/>"#
        );
        let text = |s: &mut String, x: i32, y: i32, size: u32, weight: &str, t: &str| {
            let _ = write!(
                s,
                r#"<text x="{x}" y="{}" font-size="{size}" font-weight="{weight}">{}</text>"#,
                y + size as i32,
                crate::html::escape(t)
            );
        };
        text(&mut s, 10, 8, 15, "bold", &self.title);
        // Every tile as base64 PNG, encoded in parallel.
        let encoded: Vec<Vec<Option<String>>> = self
            .tiles
            .par_iter()
            .map(|row| {
                row.iter()
                    .map(|t| {
                        t.as_ref()
                            .map(|img| {
                                let mut png = Vec::new();
                                img.write_to(
                                    &mut std::io::Cursor::new(&mut png),
                                    image::ImageFormat::Png,
                                )
                                .map(|_| crate::html::base64(&png))
                                .map_err(|e| e.to_string())
                            })
                            .transpose()
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()
            })
            .collect::<std::result::Result<_, String>>()?;
        let width = (self.tile as usize / 7).max(8);
        for (c, label) in self.col_labels.iter().enumerate() {
            let (x, _) = self.origin(0, c);
            for (k, line) in wrap(label, width).iter().take(2).enumerate() {
                text(
                    &mut s,
                    x,
                    GRID_TOP as i32 - 34 + 14 * k as i32,
                    12,
                    "normal",
                    line,
                );
            }
        }
        for (r, label) in self.row_labels.iter().enumerate() {
            let (_, y) = self.origin(r, 0);
            for (k, line) in wrap(label, 16).iter().take(3).enumerate() {
                text(
                    &mut s,
                    8,
                    y + self.tile as i32 / 2 - 8 + 14 * k as i32,
                    12,
                    "normal",
                    line,
                );
            }
            for c in 0..self.col_labels.len() {
                let (x, y) = self.origin(r, c);
                let t = self.tile;
                match encoded[r].get(c).and_then(|t| t.as_ref()) {
                    Some(b64) => {
                        let _ = write!(
                            s,
                            r#"<image x="{x}" y="{y}" width="{t}" height="{t}" href="data:image/png;base64,{b64}"/>"#,
                        );
                    }
                    None => {
                        let _ = write!(
                            s,
                            r##"<rect x="{x}" y="{y}" width="{t}" height="{t}" fill="#f0f0f0"/>"##
                        );
                        text(&mut s, x + 6, y + 6, 11, "normal", "no map");
                    }
                }
            }
        }
        if self.legend {
            let top = self.legend_top();
            for (k, (name, colours, ticks)) in Self::scales().iter().enumerate() {
                let x0 = 24 + k as i32 * (Self::SCALE_W + 80);
                text(&mut s, x0, top, 12, "normal", name);
                let _ = write!(s, r#"<defs><linearGradient id="scale{k}">"#);
                for (i, c) in colours.iter().enumerate().step_by(8) {
                    let _ = write!(
                        s,
                        r#"<stop offset="{:.4}" stop-color="rgb({},{},{})"/>"#,
                        i as f64 / (colours.len() - 1) as f64,
                        c[0],
                        c[1],
                        c[2]
                    );
                }
                let c = colours.last().unwrap();
                let _ = write!(
                    s,
                    r#"<stop offset="1" stop-color="rgb({},{},{})"/></linearGradient></defs><rect x="{x0}" y="{}" width="{}" height="18" fill="url(#scale{k})"/>"#,
                    c[0],
                    c[1],
                    c[2],
                    top + 18,
                    Self::SCALE_W
                );
                for (j, t) in ticks.iter().enumerate() {
                    let x = x0 + j as i32 * Self::SCALE_W / 2 - 10;
                    text(&mut s, x, top + 40, 11, "normal", t);
                }
            }
        }
        s.push_str("</svg>\n");
        Ok(s)
    }
}
