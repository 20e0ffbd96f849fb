//! The white cell in the centre of the crop: a healthy lymphocyte or a
//! lymphoblast, drawn by the FAB criteria. Everything that tells the two
//! classes apart is in this file.

use crate::canvas::{self, Canvas, Od};
use crate::noise::{ValueNoise, smoothstep};
use crate::rng::stream;
use crate::scene::{BACKGROUND_RGB, REF_SIZE, Scene};
use crate::shape::{Shape, coverage};
use leukex_data::MorphologyClass;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::f32::consts::{PI, TAU};

/// The kind of white cell in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Mature lymphocyte: small, round dense nucleus, thin cytoplasm rim.
    Healthy,
    /// FAB L1 blast: small-to-medium, scanty cytoplasm, regular nucleus,
    /// inconspicuous nucleoli.
    L1,
    /// FAB L2 blast: large, irregular often cleft nucleus, prominent
    /// nucleoli, more cytoplasm.
    L2,
    /// FAB L3 (Burkitt-like) blast: round nucleus, prominent nucleoli, deep
    /// blue cytoplasm with vacuoles.
    L3,
}

impl CellKind {
    pub fn is_blast(self) -> bool {
        self != CellKind::Healthy
    }

    pub fn name(self) -> &'static str {
        match self {
            CellKind::Healthy => "healthy",
            CellKind::L1 => "l1",
            CellKind::L2 => "l2",
            CellKind::L3 => "l3",
        }
    }
}

const NUCLEUS_HEALTHY_RGB: [f32; 3] = [90.0, 45.0, 130.0];
const NUCLEUS_BLAST_RGB: [f32; 3] = [112.0, 70.0, 150.0];
const NUCLEOLUS_RGB: [f32; 3] = [150.0, 135.0, 200.0];
const CYTO_HEALTHY_RGB: [f32; 3] = [170.0, 165.0, 215.0];
const CYTO_L1_RGB: [f32; 3] = [150.0, 152.0, 212.0];
const CYTO_L2_RGB: [f32; 3] = [168.0, 165.0, 218.0];
const CYTO_L3_RGB: [f32; 3] = [112.0, 124.0, 205.0];

/// Stain density of a colour, relative to the bare slide.
fn rel(rgb: [f32; 3]) -> Od {
    canvas::sub(canvas::od_of(rgb), canvas::od_of(BACKGROUND_RGB))
}

fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

struct Nucleolus {
    shape: Shape,
    strength: f32,
}

pub(crate) struct Cell {
    pub kind: CellKind,
    body: Shape,
    nucleus: Shape,
    notch: Option<Shape>,
    /// The nucleus keeps at least this much cytoplasm around it.
    rim_min: f32,
    nucleoli: Vec<Nucleolus>,
    vacuoles: Vec<Shape>,
    nucleus_od: Od,
    nucleolus_od: Od,
    cyto_od: Od,
    vacuole_od: Od,
    /// Chromatin textures: clumped (mature) or fine (blast).
    coarse: ValueNoise,
    fine: ValueNoise,
    cyto_tex: ValueNoise,
    mature: bool,
    membrane: f32,
    hof: f32,
}

/// Only the kind, for callers who need the class detail without a render.
pub(crate) fn kind_of(seed: u64, index: usize, label: u8) -> CellKind {
    draw_kind(&mut stream(seed, index as u64, "cell"), label)
}

fn draw_kind(rng: &mut impl Rng, label: u8) -> CellKind {
    let roll = rng.random::<f32>();
    match (label, roll) {
        (0, _) => CellKind::Healthy,
        (_, r) if r < 0.34 => CellKind::L1,
        (_, r) if r < 0.67 => CellKind::L2,
        _ => CellKind::L3,
    }
}

impl Cell {
    pub(crate) fn new(seed: u64, index: usize, label: u8, scene: &Scene) -> Self {
        let rng = &mut stream(seed, index as u64, "cell");
        let kind = draw_kind(rng, label);
        let s = scene.size as f32;
        let px_scale = s / REF_SIZE;
        let centre = (
            s / 2.0 + uniform(rng, -0.02, 0.02) * s,
            s / 2.0 + uniform(rng, -0.02, 0.02) * s,
        );
        // Cell diameter as a share of the crop; nucleus diameter as a
        // share of the cell; outline irregularity; nucleus offset.
        let (cell_d, nc, irregular, offset, cleft_p) = match kind {
            CellKind::Healthy => ((0.35, 0.45), (0.70, 0.85), 0.012, (0.2, 0.9), 0.3),
            CellKind::L1 => ((0.50, 0.58), (0.84, 0.93), 0.03, (0.0, 0.6), 0.25),
            CellKind::L2 => ((0.55, 0.65), (0.76, 0.88), 0.06, (0.2, 0.9), 0.5),
            CellKind::L3 => ((0.52, 0.62), (0.72, 0.82), 0.02, (0.0, 0.4), 0.05),
        };
        let r = 0.5 * s * uniform(rng, cell_d.0, cell_d.1);
        let body = Shape::ellipse(
            centre.0,
            centre.1,
            r,
            uniform(rng, 0.88, 1.0),
            uniform(rng, 0.0, PI),
        )
        .perturbed(rng, 2, 6, if kind.is_blast() { 0.022 } else { 0.012 })
        .tabulated();
        let rn = r * uniform(rng, nc.0, nc.1);
        let dir = uniform(rng, 0.0, TAU);
        let off = uniform(rng, offset.0, offset.1) * (r - rn);
        let nucleus = Shape::ellipse(
            centre.0 + off * dir.cos(),
            centre.1 + off * dir.sin(),
            rn,
            uniform(rng, 0.86, 1.0),
            uniform(rng, 0.0, PI),
        )
        .perturbed(rng, 2, if kind == CellKind::L2 { 7 } else { 5 }, irregular)
        .tabulated();

        let notch = (rng.random::<f32>() < cleft_p).then(|| {
            let phi = uniform(rng, 0.0, TAU);
            let edge = nucleus.radius_at(phi);
            if kind.is_blast() {
                // A cleft: a narrow groove cut deep into the nucleus.
                let a = uniform(rng, 0.22, 0.42) * rn;
                let b = uniform(rng, 0.05, 0.1) * rn;
                Shape::ellipse(
                    nucleus.cx + edge * phi.cos(),
                    nucleus.cy + edge * phi.sin(),
                    a,
                    b / a,
                    phi,
                )
            } else {
                // A shallow indentation, common in mature lymphocytes.
                let depth = uniform(rng, 0.08, 0.14) * rn;
                let half_width = uniform(rng, 0.25, 0.4) * rn;
                let at = edge + half_width * 0.9 - depth;
                Shape::ellipse(
                    nucleus.cx + at * phi.cos(),
                    nucleus.cy + at * phi.sin(),
                    half_width,
                    0.9,
                    phi,
                )
            }
        });

        let nucleoli = match kind {
            CellKind::Healthy => Vec::new(),
            _ => {
                let (count, size, strength) = match kind {
                    CellKind::L1 => (rng.random_range(0..=1), (0.06, 0.09), 0.45),
                    _ => (rng.random_range(1..=3), (0.1, 0.16), 0.8),
                };
                (0..count)
                    .map(|_| {
                        let a = uniform(rng, 0.0, TAU);
                        let d = rn * uniform(rng, 0.0, 0.5);
                        let nr = rn * uniform(rng, size.0, size.1);
                        Nucleolus {
                            shape: Shape::ellipse(
                                nucleus.cx + d * a.cos(),
                                nucleus.cy + d * a.sin(),
                                nr,
                                uniform(rng, 0.7, 1.0),
                                uniform(rng, 0.0, PI),
                            )
                            .perturbed(rng, 2, 4, 0.06),
                            strength,
                        }
                    })
                    .collect()
            }
        };

        let rim_min = (0.02 * r).max(1.0);
        let vacuoles = if kind == CellKind::L3 {
            place_vacuoles(rng, &body, &nucleus, r, px_scale)
        } else {
            Vec::new()
        };

        // The slide's azure dye strength colours nucleus and cytoplasm alike.
        let dye = |rgb: [f32; 3], k: f32| canvas::scale(canvas::mul(rel(rgb), scene.azure), k);
        let tone = uniform(rng, 0.92, 1.08);
        let cyto_od = dye(
            match kind {
                CellKind::Healthy => CYTO_HEALTHY_RGB,
                CellKind::L1 => CYTO_L1_RGB,
                CellKind::L2 => CYTO_L2_RGB,
                CellKind::L3 => CYTO_L3_RGB,
            },
            uniform(rng, 0.9, 1.1),
        );
        let nucleus_rgb = if kind.is_blast() {
            NUCLEUS_BLAST_RGB
        } else {
            NUCLEUS_HEALTHY_RGB
        };
        let box_x = centre.0 - 1.3 * r;
        let box_y = centre.1 - 1.3 * r;
        let span = 2.6 * r;
        // Mature chromatin: dark blocks parted by pale seams, from a texture
        // a fifth of the nucleus across. Blast chromatin is fine and even
        // (the "finer chromatin" of FAB): a texture a sixteenth across, with
        // only faint shading at a larger scale.
        let (coarse_cell, fine_cell) = if kind.is_blast() {
            (rn / 2.5, (rn / 16.0).max(1.2))
        } else {
            (rn / 5.0, (rn / 10.0).max(1.2))
        };
        Cell {
            kind,
            rim_min,
            nucleoli,
            vacuoles,
            nucleus_od: dye(nucleus_rgb, tone),
            nucleolus_od: dye(NUCLEOLUS_RGB, tone),
            cyto_od,
            // A vacuole is nearly clear: a trace of the cytoplasm's blue.
            vacuole_od: canvas::scale(cyto_od, 0.12),
            coarse: ValueNoise::new(rng, box_x, box_y, span, span, coarse_cell),
            fine: ValueNoise::new(rng, box_x, box_y, span, span, fine_cell),
            cyto_tex: ValueNoise::new(rng, box_x, box_y, span, span, (0.035 * r).max(1.5)),
            mature: !kind.is_blast(),
            membrane: if kind.is_blast() { 0.18 } else { 0.08 },
            hof: if kind.is_blast() { 0.0 } else { 0.22 },
            body,
            nucleus,
            notch,
        }
    }

    /// Composites the cell over the scene. The cell hides what lies beneath
    /// it (red cells get pushed aside when a smear is spread), so inside it
    /// the slide shows only the bare film plus the cell's own stain.
    pub(crate) fn paint(&self, c: &mut Canvas) {
        let size = c.size;
        let r = self.body.mean_radius();
        let rn = self.nucleus.mean_radius();
        let (x0, y0, x1, y1) = self.body.bbox(2.0, size, size);
        for y in y0..y1 {
            for x in x0..x1 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let (dc, _) = self.body.eval(px, py);
                if dc > 1.0 {
                    continue;
                }
                let ac = coverage(dc, 1.2);
                let mut dn = self.nucleus.eval(px, py).0.max(dc + self.rim_min);
                if let Some(notch) = self.notch.as_ref().filter(|n| n.near(px, py, 1.0)) {
                    dn = dn.max(-notch.eval(px, py).0);
                }
                let an = coverage(dn, 1.0);

                // Cytoplasm: deeper blue towards the membrane, paler next to
                // the nucleus in mature cells (the perinuclear hof).
                let edge = 0.2 * (dc.min(0.0) / (0.06 * r)).exp();
                let hof = self.hof * (-dn.max(0.0) / (0.07 * r)).exp();
                let cyto_k = (1.0 + edge - hof) * (1.0 + 0.1 * self.cyto_tex.sample(px, py));
                let cyto = canvas::scale(self.cyto_od, cyto_k);

                let mut od = cyto;
                if an > 0.0 {
                    let coarse = self.coarse.sample(px, py);
                    let fine = self.fine.sample(px, py);
                    let chromatin = if self.mature {
                        // Dark blocks of condensed chromatin parted by pale
                        // seams where the texture crosses zero.
                        let seam = (-(coarse / 0.14).powi(2)).exp();
                        let block = smoothstep(-0.5, 0.5, coarse);
                        1.02 - 0.3 * seam + 0.1 * block + 0.07 * fine
                    } else {
                        0.94 + 0.05 * coarse + 0.13 * fine
                    };
                    let membrane = self.membrane * (dn.min(0.0) / (0.05 * rn)).exp();
                    let mut nuc = canvas::scale(self.nucleus_od, chromatin + membrane);
                    for n in self
                        .nucleoli
                        .iter()
                        .filter(|n| n.shape.near(px, py, 0.4 * n.shape.max_radius()))
                    {
                        let (_, u) = n.shape.eval(px, py);
                        if u < 1.4 {
                            let w = n.strength * smoothstep(1.0, 0.55, u);
                            // Condensed chromatin rims the nucleolus.
                            let ring = 0.15 * n.strength * (-((u - 1.05) / 0.18).powi(2)).exp();
                            nuc = canvas::lerp(nuc, self.nucleolus_od, w);
                            nuc = canvas::add(nuc, canvas::scale(self.nucleus_od, ring));
                        }
                    }
                    od = canvas::lerp(cyto, nuc, an);
                }

                let mut in_vacuole = false;
                for v in self.vacuoles.iter().filter(|v| v.near(px, py, 1.5)) {
                    let (dv, _) = v.eval(px, py);
                    if dv < 1.5 {
                        // A punched-out clear hole with a thin darker rim.
                        let av = coverage(dv, 0.9);
                        let rim = 0.25 * (-(dv / 0.9).powi(2)).exp();
                        od = canvas::lerp(od, self.vacuole_od, av);
                        od = canvas::add(od, canvas::scale(self.cyto_od, rim));
                        in_vacuole |= dv < 0.0;
                    }
                }

                let i = y * size + x;
                c.od[i] = canvas::lerp(c.od[i], canvas::add(c.bg[i], od), ac);
                if dc < 0.0 {
                    c.mask[i] = if in_vacuole {
                        MorphologyClass::Vacuole
                    } else if dn < 0.0 {
                        MorphologyClass::Nucleus
                    } else {
                        MorphologyClass::Cytoplasm
                    } as u8;
                }
            }
        }
    }
}

/// Vacuoles of L3 blasts: small round holes, mostly in the cytoplasm, some
/// over the edge of the nucleus, as in Burkitt-type cells.
fn place_vacuoles(
    rng: &mut impl Rng,
    body: &Shape,
    nucleus: &Shape,
    r: f32,
    px_scale: f32,
) -> Vec<Shape> {
    let wanted = rng.random_range(5..=14);
    let mut out: Vec<Shape> = Vec::with_capacity(wanted);
    let reach = body.max_radius();
    for attempt in 0..wanted * 40 {
        if out.len() == wanted {
            break;
        }
        let vr = (uniform(rng, 0.035, 0.065) * r)
            .max(1.3 * px_scale.min(1.0))
            .max(1.2);
        let a = uniform(rng, 0.0, TAU);
        let d = reach * rng.random::<f32>().sqrt();
        let (x, y) = (body.cx + d * a.cos(), body.cy + d * a.sin());
        let inside_cell = body.eval(x, y).0 < -(vr + 1.0);
        // Late attempts accept places over the nucleus, so that every L3
        // blast, however thin its cytoplasm, shows some vacuoles.
        let in_cytoplasm = nucleus.eval(x, y).0 > -0.5 * vr || attempt > wanted * 30;
        let apart = out.iter().all(|v| {
            ((v.cx - x).powi(2) + (v.cy - y).powi(2)).sqrt() > 0.8 * (v.mean_radius() + vr)
        });
        if inside_cell && in_cytoplasm && apart {
            out.push(
                Shape::ellipse(x, y, vr, uniform(rng, 0.85, 1.0), uniform(rng, 0.0, PI))
                    .perturbed(rng, 2, 3, 0.03),
            );
        }
    }
    out
}
