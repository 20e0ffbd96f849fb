//! A 2-D heat map on the mask's grid, read from `.npy` files that explanation
//! tools write in several layouts.

use crate::error::{EvalError, Result};
use leukex_render::resample::{PixelGrid::HalfPixel, resize_bilinear};
use serde::Serialize;
use std::path::Path;

/// How a stored attribution became a 2-D map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Reduction {
    /// Stored as `[H,W]` (or with singleton axes only).
    None,
    /// Channels summed, as iNNvestigate (`reduce_op="sum"`) and Zennit do.
    SumChannels {
        channels: usize,
        channels_last: bool,
    },
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reduction::None => f.write_str("none"),
            Reduction::SumChannels {
                channels,
                channels_last,
            } => write!(
                f,
                "sum over {channels} channels ({})",
                if *channels_last { "HWC" } else { "CHW" }
            ),
        }
    }
}

/// A relevance map, row-major, `values.len() == width * height`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
    pub reduction: Reduction,
}

impl HeatMap {
    pub fn new(width: usize, height: usize, values: Vec<f32>) -> Self {
        assert_eq!(values.len(), width * height, "heat map size");
        HeatMap {
            width,
            height,
            values,
            reduction: Reduction::None,
        }
    }

    /// Builds a 2-D map from an array of shape `[H,W]`, `[C,H,W]`,
    /// `[1,C,H,W]` or `[H,W,C]` (channels last when the last axis is 1, 3
    /// or 4 and the first is not). Channels are summed.
    pub fn from_array(path: &Path, shape: &[usize], data: &[f32]) -> Result<Self> {
        let bad = || EvalError::Shape {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
        };
        // Drop leading singleton axes beyond the three that matter.
        let mut s: Vec<usize> = shape.to_vec();
        while s.len() > 3 && s[0] == 1 {
            s.remove(0);
        }
        let (c, h, w, last) = match s.as_slice() {
            [h, w] => (1, *h, *w, false),
            [a, h, w] if !matches!(a, 1 | 3 | 4) && matches!(w, 1 | 3 | 4) => (*w, *a, *h, true),
            [c, h, w] => (*c, *h, *w, false),
            _ => return Err(bad()),
        };
        if h == 0 || w == 0 || c == 0 {
            return Err(bad());
        }
        let n = h * w;
        let values: Vec<f32> = if c == 1 {
            data.to_vec()
        } else if last {
            data.chunks_exact(c).map(|px| px.iter().sum()).collect()
        } else {
            let mut v = data[..n].to_vec();
            for ch in 1..c {
                for (o, x) in v.iter_mut().zip(&data[ch * n..(ch + 1) * n]) {
                    *o += x;
                }
            }
            v
        };
        Ok(HeatMap {
            width: w,
            height: h,
            values,
            reduction: if c == 1 {
                Reduction::None
            } else {
                Reduction::SumChannels {
                    channels: c,
                    channels_last: last,
                }
            },
        })
    }

    /// Reads a `.npy` heat map (f4 or f8) and reduces it to 2-D.
    pub fn read_npy(path: &Path) -> Result<Self> {
        let a = leukex_data::npy::read_f32(path)?;
        Self::from_array(path, &a.shape, &a.data)
    }

    /// Refuses NaN and infinite values, naming the first one.
    pub fn check_finite(&self, path: &Path) -> Result<()> {
        let mut first = None;
        let mut count = 0;
        for (i, v) in self.values.iter().enumerate() {
            if !v.is_finite() {
                count += 1;
                first.get_or_insert((i, *v));
            }
        }
        match first {
            None => Ok(()),
            Some((i, value)) => Err(EvalError::NonFinite {
                path: path.to_path_buf(),
                count,
                x: i % self.width,
                y: i / self.width,
                value,
            }),
        }
    }

    /// True when every value is the same: no pixel is more relevant than
    /// another, so shares are undefined.
    pub fn is_constant(&self) -> bool {
        self.values.iter().all(|&v| v == self.values[0])
    }

    /// Bilinear resize to `width`×`height` with pixel centres aligned
    /// (`align_corners=False`, as `torch.nn.functional.interpolate` and
    /// OpenCV's `INTER_LINEAR` without antialiasing).
    pub fn resized(&self, width: usize, height: usize) -> HeatMap {
        if width == self.width && height == self.height {
            return self.clone();
        }
        // Interpolated in f64, rounded once to f32.
        let src: Vec<f64> = self.values.iter().map(|&v| f64::from(v)).collect();
        let values = resize_bilinear(&src, self.height, self.width, height, width, HalfPixel)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        HeatMap {
            width,
            height,
            values,
            reduction: self.reduction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_summed_and_the_reduction_recorded() {
        let p = Path::new("m.npy");
        // [1,3,1,2]: channel c holds c+1 at both pixels
        let data = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
        let m = HeatMap::from_array(p, &[1, 3, 1, 2], &data).unwrap();
        assert_eq!((m.width, m.height), (2, 1));
        assert_eq!(m.values, vec![6.0, 6.0]);
        assert_eq!(
            m.reduction,
            Reduction::SumChannels {
                channels: 3,
                channels_last: false
            }
        );
        // [H,W,C] = [2,2,3]
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let m = HeatMap::from_array(p, &[2, 2, 3], &data).unwrap();
        assert_eq!(m.values, vec![3.0, 12.0, 21.0, 30.0]);
        assert!(matches!(
            m.reduction,
            Reduction::SumChannels {
                channels_last: true,
                ..
            }
        ));
        let m = HeatMap::from_array(p, &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m.reduction, Reduction::None);
        let e = HeatMap::from_array(p, &[5], &[0.0; 5])
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.npy") && e.contains("[5]"), "{e}");
    }

    #[test]
    fn non_finite_values_are_refused_by_position() {
        let m = HeatMap::new(2, 2, vec![0.0, 1.0, f32::NAN, f32::INFINITY]);
        let e = m
            .check_finite(Path::new("a/b.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a/b.npy") && e.contains("2 non-finite") && e.contains("x=0, y=1"),
            "{e}"
        );
    }

    #[test]
    fn bilinear_resize_keeps_constants_and_interpolates() {
        let m = HeatMap::new(2, 1, vec![0.0, 1.0]);
        let r = m.resized(4, 1);
        assert_eq!(r.values, vec![0.0, 0.25, 0.75, 1.0]);
        let c = HeatMap::new(3, 3, vec![2.0; 9]).resized(7, 5);
        assert!(c.values.iter().all(|&v| v == 2.0));
    }
}
