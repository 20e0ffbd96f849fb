//! The two colormaps behind the paper's "red channel above the mean", and
//! the two renderings that index them.
//!
//! Both tables are computed from their definitions, not copied: matplotlib's
//! `seismic` (a `LinearSegmentedColormap` built from five colours, sampled
//! with 256 entries exactly as matplotlib's `_create_lookup_table` does) and
//! MATLAB's `jet(256)` from `jet.m` (which differs from matplotlib's `jet`).
//! Tests compare them entry for entry with matplotlib's table (fixture) and
//! with the check rows of `jet.m`.

/// A 256-entry RGB table with components in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Colormap {
    pub name: &'static str,
    pub rgb: Vec<[f64; 3]>,
}

impl Colormap {
    pub const N: usize = 256;

    /// matplotlib's `seismic` with 256 entries (`plt.get_cmap("seismic")`).
    pub fn seismic() -> Self {
        // matplotlib `_cm.py`: _seismic_data, colours at 0, .25, .5, .75, 1.
        const COLOURS: [[f64; 3]; 5] = [
            [0.0, 0.0, 0.3],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 1.0],
            [1.0, 0.0, 0.0],
            [0.5, 0.0, 0.0],
        ];
        let mut rgb = vec![[0.0; 3]; Self::N];
        for (ch, out) in (0..3).map(|ch| (ch, ch)) {
            let ys: Vec<f64> = COLOURS.iter().map(|c| c[ch]).collect();
            let col = mpl_lookup_table(Self::N, &ys);
            for (i, v) in col.into_iter().enumerate() {
                rgb[i][out] = v;
            }
        }
        Colormap {
            name: "seismic",
            rgb,
        }
    }

    /// MATLAB's `jet(256)` as `jet.m` computes it.
    pub fn matlab_jet() -> Self {
        Colormap {
            name: "jet (MATLAB)",
            rgb: matlab_jet(Self::N),
        }
    }

    pub fn red(&self, index: usize) -> f64 {
        self.rgb[index][0]
    }
    /// RGB bytes (row-major, 3 per pixel) of the entries `indices` point at.
    pub fn rgb_bytes(&self, indices: &[u8]) -> Vec<u8> {
        indices
            .iter()
            .flat_map(|&i| {
                self.rgb[i as usize].map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            })
            .collect()
    }
}

/// A map as leukex draws it (`explain`'s PNGs, the viewer): signed maps in matplotlib's
/// `seismic`, zero white, limits ±max|v| (iNNvestigate's rendering); CAMs in MATLAB's `jet`
/// from the map's minimum to its maximum (`imagesc`). RGB bytes, row-major.
pub fn render_rgb(values: &[f32], signed: bool) -> Vec<u8> {
    if signed {
        Colormap::seismic().rgb_bytes(&innvestigate_indices(values))
    } else {
        Colormap::matlab_jet().rgb_bytes(&matlab_indices(values, Colormap::N))
    }
}

/// A map drawn the same way whatever method made it, so that its colours do not give the
/// method away (blinded rating): only the positive evidence, scaled to its maximum, in the
/// upper half of `seismic` (zero and below white, the maximum dark red). A CAM (min–max
/// scaled, non-negative) and an LRP map then share one colour scale.
pub fn render_positive_rgb(values: &[f32]) -> Vec<u8> {
    let positive: Vec<f32> = values.iter().map(|&v| v.max(0.0)).collect();
    Colormap::seismic().rgb_bytes(&innvestigate_indices(&positive))
}

/// matplotlib's `LinearSegmentedColormap.from_list` followed by
/// `colors._create_lookup_table(N, data, gamma=1)` for one channel whose
/// control values `ys` sit at evenly spaced positions (y0 == y1, no jumps).
/// Reproduces matplotlib's floating-point steps (linspace, searchsorted) so
/// the entries agree bit for bit, not only approximately.
fn mpl_lookup_table(n: usize, ys: &[f64]) -> Vec<f64> {
    let m = ys.len();
    // from_list: positions np.linspace(0, 1, m); _create_lookup_table: x * (N - 1)
    let pos: Vec<f64> = linspace01(m)
        .into_iter()
        .map(|p| p * (n - 1) as f64)
        .collect();
    let xind: Vec<f64> = linspace01(n)
        .into_iter()
        .map(|p| (n - 1) as f64 * p)
        .collect();
    let mut lut = Vec::with_capacity(n);
    lut.push(ys[0]);
    for &xi in &xind[1..n - 1] {
        // np.searchsorted(x, xind) with side='left': first pos >= xi
        let ind = pos.partition_point(|&p| p < xi);
        let distance = (xi - pos[ind - 1]) / (pos[ind] - pos[ind - 1]);
        lut.push(distance * (ys[ind] - ys[ind - 1]) + ys[ind - 1]);
    }
    lut.push(ys[m - 1]);
    lut.into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
}

/// `np.linspace(0, 1, num)`: i * step, with the last value set to 1 exactly.
fn linspace01(num: usize) -> Vec<f64> {
    let step = 1.0 / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step).collect();
    v[num - 1] = 1.0;
    v
}

/// MATLAB `jet.m`:
/// ```text
/// n = ceil(m/4); u = [(1:1:n)/n ones(1,n-1) (n:-1:1)/n]';
/// g = ceil(n/2) - (mod(m,4)==1) + (1:length(u))'; r = g + n; b = g - n;
/// g(g>m) = []; r(r>m) = []; b(b<1) = [];
/// J = zeros(m,3); J(r,1) = u(1:length(r)); J(g,2) = u(1:length(g));
/// J(b,3) = u(end-length(b)+1:end);
/// ```
fn matlab_jet(m: usize) -> Vec<[f64; 3]> {
    let n = m.div_ceil(4);
    let mut u: Vec<f64> = (1..=n).map(|i| i as f64 / n as f64).collect();
    u.extend(std::iter::repeat_n(1.0, n - 1));
    u.extend((1..=n).rev().map(|i| i as f64 / n as f64));
    let shift = n.div_ceil(2) as i64 - i64::from(m % 4 == 1);
    // 1-based rows as in MATLAB
    let g: Vec<i64> = (1..=u.len() as i64).map(|k| shift + k).collect();
    let r: Vec<i64> = g
        .iter()
        .map(|&x| x + n as i64)
        .filter(|&x| x <= m as i64)
        .collect();
    let b: Vec<i64> = g
        .iter()
        .map(|&x| x - n as i64)
        .filter(|&x| x >= 1)
        .collect();
    let g: Vec<i64> = g.into_iter().filter(|&x| x <= m as i64).collect();
    let mut j = vec![[0.0f64; 3]; m];
    for (k, &row) in r.iter().enumerate() {
        j[row as usize - 1][0] = u[k];
    }
    for (k, &row) in g.iter().enumerate() {
        j[row as usize - 1][1] = u[k];
    }
    let off = u.len() - b.len();
    for (k, &row) in b.iter().enumerate() {
        j[row as usize - 1][2] = u[off + k];
    }
    j
}

/// iNNvestigate's `visualizations.heatmap` index for each value of a map
/// that is already summed over channels: divide by the absolute maximum,
/// map to (x + 1) / 2, clip to [0, 1], scale to 0..255 and truncate
/// (`project(..., output_range=(0, 255)).astype(np.int64)`). Computed in
/// f32 like NumPy on a float32 attribution. An all-zero map is left as is
/// (iNNvestigate only divides where absmax != 0), so every index is 127.
pub fn innvestigate_indices(values: &[f32]) -> Vec<u8> {
    let absmax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    values
        .iter()
        .map(|&x| innvestigate_index(x, absmax))
        .collect()
}

/// One pixel of [`innvestigate_indices`]; non-decreasing in `x`.
#[inline]
pub fn innvestigate_index(x: f32, absmax: f32) -> u8 {
    let x = if absmax != 0.0 { x / absmax } else { x };
    let v = ((x + 1.0) / 2.0).clamp(0.0, 1.0);
    (v * 255.0) as u8
}

/// MATLAB `imagesc` (CDataMapping "scaled", CLim = [min max] of the map)
/// into an m-entry colormap: index = fix((C - min) / (max - min) * m),
/// clamped to m - 1 (0-based). A constant map has no range; MATLAB then
/// uses the bottom entry for every pixel, and so do we.
pub fn matlab_indices(values: &[f32], m: usize) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v as f64), hi.max(v as f64))
        });
    let range = hi - lo;
    values
        .iter()
        .map(|&c| matlab_index(c, lo, range, m))
        .collect()
}

/// One pixel of [`matlab_indices`]; non-decreasing in `c`.
#[inline]
pub fn matlab_index(c: f32, lo: f64, range: f64, m: usize) -> u8 {
    if range > 0.0 {
        let idx = ((c as f64 - lo) / range * m as f64).floor() as usize;
        idx.min(m - 1) as u8
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close3(a: [f64; 3], b: [f64; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3)
    }

    #[test]
    fn seismic_matches_the_check_values_of_colormaps_md() {
        let s = Colormap::seismic();
        assert_eq!(s.rgb[0], [0.0, 0.0, 0.3]);
        assert!(close3(s.rgb[127], [0.992, 0.992, 1.0]), "{:?}", s.rgb[127]);
        assert!(close3(s.rgb[128], [1.0, 0.992, 0.992]), "{:?}", s.rgb[128]);
        assert_eq!(s.rgb[255], [0.5, 0.0, 0.0]);
    }

    #[test]
    fn matlab_jet_matches_the_check_rows_of_jet_m() {
        let j = Colormap::matlab_jet();
        assert_eq!(j.rgb[0], [0.0, 0.0, 0.515625]);
        assert_eq!(j.rgb[95], [0.0, 1.0, 1.0]);
        assert_eq!(j.rgb[96], [0.015625, 1.0, 0.984375]);
        assert_eq!(j.rgb[160], [1.0, 0.984375, 0.0]);
        assert_eq!(j.rgb[255], [0.5, 0.0, 0.0]);
        // Red: 0 up to row 95, positive from 96, 1 from 159 to 223, then down to 0.5.
        assert!((0..=95).all(|i| j.red(i) == 0.0));
        assert!((96..=158).all(|i| j.red(i) > 0.0 && j.red(i) < 1.0));
        assert!((159..=223).all(|i| j.red(i) == 1.0));
        assert!((224..=255).all(|i| j.red(i) < 1.0));
    }

    #[test]
    fn both_colormaps_are_non_monotonic_in_red() {
        // The root of the paper-mode artefact: the hottest entries are less
        // red than mid-high ones.
        for cm in [Colormap::seismic(), Colormap::matlab_jet()] {
            let max_red = (0..256).map(|i| cm.red(i)).fold(0.0, f64::max);
            assert_eq!(max_red, 1.0);
            assert_eq!(cm.red(255), 0.5, "{}", cm.name);
        }
    }

    #[test]
    fn innvestigate_projection_puts_zero_relevance_on_white() {
        let idx = innvestigate_indices(&[-2.0, 0.0, 1.0, 2.0]);
        assert_eq!(idx, vec![0, 127, 191, 255]);
        let s = Colormap::seismic();
        assert_eq!(s.red(idx[1] as usize), s.red(127));
        assert!(s.red(127) > 0.99, "zero relevance renders nearly full red");
        assert_eq!(innvestigate_indices(&[0.0, 0.0]), vec![127, 127]);
    }

    #[test]
    fn matlab_autoscale_uses_min_to_max() {
        assert_eq!(matlab_indices(&[1.0, 2.0, 3.0], 256), vec![0, 128, 255]);
        assert_eq!(matlab_indices(&[5.0, 5.0], 256), vec![0, 0]);
    }
}
