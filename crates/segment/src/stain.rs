//! Stain separation of a May-Grünwald-Giemsa smear, in optical density.
//!
//! Light through a stained film follows Beer–Lambert: each dye removes a
//! share of each colour, so in optical density (OD = −ln(I / I₀)) dyes add
//! up. The two dye families of the stain absorb differently:
//!
//! - the basic dyes (azure B, methylene blue) stain nuclei and cytoplasm
//!   blue to purple: they absorb red light far more than blue light;
//! - the acidic dye (eosin) stains red cells pink: it absorbs green and
//!   blue, hardly red.
//!
//! So `OD_red − OD_blue` is positive on the white cell and zero or negative
//! on red cells and bare film (the *basic stain*), and `OD_green` is high
//! wherever there is dye at all (the *density*). Platelets are basic-stained
//! too; they are told apart by size and place, not colour.
//!
//! Some white cells' cytoplasm takes up little basic dye (a neutrophil's is
//! pale lilac): it is as dense as a red cell but lacks eosin's colour,
//! `(OD_blue − OD_red) / OD_green`, which is the same on every red cell
//! whatever its thickness.
//!
//! `I₀` is the bare film's colour, estimated per image (the brightest
//! pixels), so white balance and illumination drop out.

use image::RgbImage;

/// Per-pixel stain measures of one image, row-major.
pub struct Stains {
    pub width: u32,
    pub height: u32,
    /// Basic (azure / methylene blue) dye: `OD_red − OD_blue`, floored at 0.
    pub basic: Vec<f32>,
    /// Total density in green light, where every dye absorbs.
    pub density: Vec<f32>,
    /// Sum of the three channels' densities.
    pub total: Vec<f32>,
    /// `OD_blue − OD_red`: eosin's colour. Over `density` it is a property
    /// of the dye, not of how thick the film is (~0.6 on red cells).
    pub eosin: Vec<f32>,
    /// The estimated colour of the bare film (RGB, 0..255).
    pub film: [f32; 3],
}

/// Share of the brightest pixels whose median colour is taken as the film.
const FILM_SHARE: f32 = 0.15;

impl Stains {
    pub fn of(img: &RgbImage) -> Self {
        let (width, height) = img.dimensions();
        let film = film_colour(img);
        // A lookup table per channel: OD of each 8-bit value.
        let table = |c: usize| -> Vec<f32> {
            (0..256)
                .map(|v| (film[c] / (v as f32).max(1.0)).ln())
                .collect()
        };
        let (r, g, b) = (table(0), table(1), table(2));
        let n = (width * height) as usize;
        let (mut basic, mut density, mut total, mut eosin) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for p in img.pixels() {
            let [odr, odg, odb] = [r[p[0] as usize], g[p[1] as usize], b[p[2] as usize]];
            basic.push((odr - odb).max(0.0));
            density.push(odg);
            total.push(odr + odg + odb);
            eosin.push(odb - odr);
        }
        Stains {
            width,
            height,
            basic,
            density,
            total,
            eosin,
            film,
        }
    }
}

/// The median colour of the brightest pixels: in a smear crop the bare film
/// between cells is the brightest thing there is.
fn film_colour(img: &RgbImage) -> [f32; 3] {
    let mut by_brightness: Vec<(u16, [u8; 3])> = img
        .pixels()
        .map(|p| (p[0] as u16 + p[1] as u16 + p[2] as u16, p.0))
        .collect();
    let n = by_brightness.len();
    let keep = ((n as f32 * FILM_SHARE) as usize).clamp(1, n);
    by_brightness.select_nth_unstable_by(n - keep, |a, b| a.0.cmp(&b.0));
    let bright = &by_brightness[n - keep..];
    [0, 1, 2].map(|c| {
        let mut v: Vec<u8> = bright.iter().map(|(_, p)| p[c]).collect();
        let mid = v.len() / 2;
        *v.select_nth_unstable(mid).1 as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn film_is_zero_blue_cells_are_basic_red_cells_are_not() {
        // Mostly film, a patch of cytoplasm blue and a patch of red cell.
        let img = RgbImage::from_fn(20, 20, |x, _| match x {
            0..=13 => Rgb([225, 215, 205]),
            14..=16 => Rgb([170, 165, 215]),
            _ => Rgb([205, 150, 150]),
        });
        let s = Stains::of(&img);
        assert_eq!(s.film, [225.0, 215.0, 205.0]);
        let at = |x: usize| (s.basic[x], s.density[x]);
        assert_eq!(at(0), (0.0, 0.0));
        let (cyto_basic, cyto_density) = at(15);
        assert!(cyto_basic > 0.3 && cyto_density > 0.2, "{:?}", at(15));
        let (rbc_basic, rbc_density) = at(18);
        assert!(rbc_basic == 0.0 && rbc_density > 0.3, "{:?}", at(18));
    }
}
