//! Morphology masks: which part of the smear each pixel shows.
//!
//! A mask file stores integer ids; a [`LabelTable`] says which
//! [`MorphologyClass`] each id means. The paper counts five classes;
//! platelets count as background, as the paper did. Pixels a human did not
//! label (id 0 in a MATLAB Image Labeler export) are kept apart as
//! *unlabelled* and left out of every share later.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The five morphology classes of the paper, in the order of leukex's own
/// mask ids (0..=4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MorphologyClass {
    Background = 0,
    Nucleus = 1,
    Cytoplasm = 2,
    Vacuole = 3,
    /// Red blood cell (erythrocyte).
    Rbc = 4,
}

impl MorphologyClass {
    pub const ALL: [MorphologyClass; 5] = [
        MorphologyClass::Background,
        MorphologyClass::Nucleus,
        MorphologyClass::Cytoplasm,
        MorphologyClass::Vacuole,
        MorphologyClass::Rbc,
    ];
    pub const COUNT: usize = 5;

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    /// The canonical lower-case name used in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            MorphologyClass::Background => "background",
            MorphologyClass::Nucleus => "nucleus",
            MorphologyClass::Cytoplasm => "cytoplasm",
            MorphologyClass::Vacuole => "vacuole",
            MorphologyClass::Rbc => "rbc",
        }
    }

    /// Part of the white cell (nucleus, cytoplasm or vacuole)?
    pub fn is_cell(self) -> bool {
        matches!(
            self,
            MorphologyClass::Nucleus | MorphologyClass::Cytoplasm | MorphologyClass::Vacuole
        )
    }
}

impl fmt::Display for MorphologyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one mask id means: a class, or "nobody labelled this pixel".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelTarget {
    Class(MorphologyClass),
    Unlabelled,
}

impl LabelTarget {
    /// Parses a class name as people write it in label tables.
    /// Platelets are background, as in the paper.
    pub fn parse(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        use MorphologyClass::*;
        Some(match n.as_str() {
            "background" | "bg" | "platelet" | "platelets" | "plasma" => {
                LabelTarget::Class(Background)
            }
            "nucleus" | "nuclei" => LabelTarget::Class(Nucleus),
            "cytoplasm" | "cyto" => LabelTarget::Class(Cytoplasm),
            "vacuole" | "vacuoles" => LabelTarget::Class(Vacuole),
            "rbc" | "red_blood_cell" | "red_blood_cells" | "redbloodcell" | "erythrocyte"
            | "erythrocytes" => LabelTarget::Class(Rbc),
            "unlabelled" | "unlabeled" | "undefined" | "ignore" | "void" => LabelTarget::Unlabelled,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LabelTarget::Class(c) => c.name(),
            LabelTarget::Unlabelled => "unlabelled",
        }
    }
}

const ACCEPTED_NAMES: &str = "background (or platelet), nucleus, cytoplasm, vacuole, rbc (or red blood cell, erythrocyte), unlabelled";

/// Maps the integer ids stored in mask files to morphology classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTable {
    ids: BTreeMap<u16, LabelTarget>,
}

impl Default for LabelTable {
    /// leukex's own ids: 0 background, 1 nucleus, 2 cytoplasm, 3 vacuole, 4 rbc.
    fn default() -> Self {
        LabelTable {
            ids: MorphologyClass::ALL
                .iter()
                .map(|&c| (c as u16, LabelTarget::Class(c)))
                .collect(),
        }
    }
}

impl LabelTable {
    /// The table of masks leukex writes itself ([`MorphologyMask::write_png`]):
    /// the default ids plus 255 for unlabelled pixels.
    pub fn leukex_written() -> Self {
        let mut t = Self::default();
        t.ids
            .insert(MorphologyMask::UNLABELLED as u16, LabelTarget::Unlabelled);
        t
    }

    pub fn new(ids: BTreeMap<u16, LabelTarget>) -> Self {
        LabelTable { ids }
    }

    pub fn get(&self, id: u16) -> Option<LabelTarget> {
        self.ids.get(&id).copied()
    }

    pub fn ids(&self) -> impl Iterator<Item = (u16, LabelTarget)> + '_ {
        self.ids.iter().map(|(&k, &v)| (k, v))
    }

    /// For MATLAB Image Labeler exports: id 0 means "not labelled" unless
    /// the table says otherwise.
    pub fn with_zero_unlabelled(mut self) -> Self {
        self.ids.entry(0).or_insert(LabelTarget::Unlabelled);
        self
    }

    /// Parses `0=background,1=nucleus,...` (the `--label-map` option).
    pub fn parse_spec(spec: &str) -> std::result::Result<Self, String> {
        let mut ids = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, name) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not of the form ID=CLASS"))?;
            let id = parse_id(id)?;
            let target = LabelTarget::parse(name).ok_or_else(|| {
                format!(
                    "unknown class `{}` for id {id}; accepted: {ACCEPTED_NAMES}",
                    name.trim()
                )
            })?;
            if ids.insert(id, target).is_some() {
                return Err(format!("id {id} is given twice"));
            }
        }
        if ids.is_empty() {
            return Err("the label map is empty".into());
        }
        Ok(LabelTable { ids })
    }

    /// Reads a `labels.json`: an object from id to class name,
    /// e.g. `{"0": "background", "1": "nucleus"}`.
    pub fn read_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let raw: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
            DataError::invalid(
                path,
                format!("not a label table (expected {{\"0\": \"background\", \"1\": \"nucleus\", ...}}): {e}"),
            )
        })?;
        let spec: Vec<String> = raw.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Self::parse_spec(&spec.join(",")).map_err(|e| DataError::invalid(path, e))
    }

    pub fn to_json_value(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .ids
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(v.name().to_string()),
                )
            })
            .collect();
        serde_json::Value::Object(map)
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_json_atomic(path, &self.to_json_value())
    }

    fn known_ids(&self) -> String {
        self.ids
            .iter()
            .map(|(k, v)| format!("{k}={}", v.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn parse_id(s: &str) -> std::result::Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .map_err(|_| format!("`{}` is not a mask id (0..=65535)", s.trim()))
}

/// Per-pixel morphology classes of one image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MorphologyMask {
    width: u32,
    height: u32,
    /// `MorphologyClass as u8`, or [`MorphologyMask::UNLABELLED`].
    pixels: Vec<u8>,
}

/// Pixel counts per class, plus the unlabelled pixels kept apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub per_class: [u64; MorphologyClass::COUNT],
    pub unlabelled: u64,
}

impl ClassCounts {
    pub fn labelled(&self) -> u64 {
        self.per_class.iter().sum()
    }
    pub fn get(&self, c: MorphologyClass) -> u64 {
        self.per_class[c.index()]
    }
}

impl MorphologyMask {
    pub const UNLABELLED: u8 = 255;

    /// A mask filled with one value (a class or [`Self::UNLABELLED`]).
    pub fn filled(width: u32, height: u32, value: u8) -> Self {
        MorphologyMask {
            width,
            height,
            pixels: vec![value; width as usize * height as usize],
        }
    }

    /// Builds a mask from raw values; every value must be a class index or
    /// [`Self::UNLABELLED`].
    pub fn from_raw(width: u32, height: u32, pixels: Vec<u8>) -> Option<Self> {
        let ok = pixels.len() == width as usize * height as usize
            && pixels
                .iter()
                .all(|&p| (p as usize) < MorphologyClass::COUNT || p == Self::UNLABELLED);
        ok.then_some(MorphologyMask {
            width,
            height,
            pixels,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    pub fn raw(&self) -> &[u8] {
        &self.pixels
    }

    pub fn get(&self, x: u32, y: u32) -> Option<MorphologyClass> {
        MorphologyClass::from_index(self.pixels[(y * self.width + x) as usize] as usize)
    }

    pub fn set(&mut self, x: u32, y: u32, class: Option<MorphologyClass>) {
        self.pixels[(y * self.width + x) as usize] = class.map_or(Self::UNLABELLED, |c| c as u8);
    }

    pub fn counts(&self) -> ClassCounts {
        let mut c = ClassCounts::default();
        for &p in &self.pixels {
            match MorphologyClass::from_index(p as usize) {
                Some(class) => c.per_class[class.index()] += 1,
                None => c.unlabelled += 1,
            }
        }
        c
    }

    /// Reads a label PNG (8- or 16-bit grey, or palette-indexed, where the
    /// palette index is the id) and maps its ids through `table`.
    pub fn read_png(path: &Path, table: &LabelTable) -> Result<Self> {
        let (width, height, ids) = read_label_png(path)?;
        Self::from_ids(path, width, height, &ids, table)
    }

    /// Maps raw ids through `table`; an unknown id is an error naming the
    /// file, the id, how many pixels carry it and where the first one is.
    pub fn from_ids(
        path: &Path,
        width: u32,
        height: u32,
        ids: &[u16],
        table: &LabelTable,
    ) -> Result<Self> {
        let mut lut: BTreeMap<u16, u8> = BTreeMap::new();
        for (id, t) in table.ids() {
            lut.insert(
                id,
                match t {
                    LabelTarget::Class(c) => c as u8,
                    LabelTarget::Unlabelled => Self::UNLABELLED,
                },
            );
        }
        // Fast path for 8-bit ids.
        let mut small = [None::<u8>; 256];
        for (&id, &v) in &lut {
            if id < 256 {
                small[id as usize] = Some(v);
            }
        }
        let mut pixels = Vec::with_capacity(ids.len());
        let mut unknown: BTreeMap<u16, (u64, usize)> = BTreeMap::new();
        for (i, &id) in ids.iter().enumerate() {
            let v = if id < 256 {
                small[id as usize]
            } else {
                lut.get(&id).copied()
            };
            match v {
                Some(v) => pixels.push(v),
                None => {
                    unknown.entry(id).or_insert((0, i)).0 += 1;
                    pixels.push(Self::UNLABELLED);
                }
            }
        }
        if let Some((&id, &(count, first))) = unknown.iter().next() {
            return Err(DataError::UnknownLabelId {
                path: path.to_path_buf(),
                id,
                count,
                x: (first % width as usize) as u32,
                y: (first / width as usize) as u32,
                known: table.known_ids(),
            });
        }
        Ok(MorphologyMask {
            width,
            height,
            pixels,
        })
    }

    /// Writes the mask as an 8-bit grey PNG with leukex's default ids
    /// (class index; unlabelled as 255), atomically.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, |w| {
            let mut enc = png::Encoder::new(w, self.width, self.height);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(std::io::Error::other)?;
            writer
                .write_image_data(&self.pixels)
                .map_err(std::io::Error::other)?;
            writer.finish().map_err(std::io::Error::other)
        })
    }
}

/// Reads the raw integer ids of a label PNG without any colour conversion.
pub fn read_label_png(path: &Path) -> Result<(u32, u32, Vec<u16>)> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    // Keep palette indices and 16-bit values as they are.
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| DataError::image(path, format!("not a PNG label image: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| DataError::image(path, "PNG too large"))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| DataError::image(path, format!("corrupt PNG: {e}")))?;
    let (w, h) = (info.width, info.height);
    let n = w as usize * h as usize;
    let ids: Vec<u16> = match (info.color_type, info.bit_depth) {
        (png::ColorType::Grayscale | png::ColorType::Indexed, png::BitDepth::Eight) => {
            buf[..n].iter().map(|&v| v as u16).collect()
        }
        (png::ColorType::Grayscale, png::BitDepth::Sixteen) => buf[..2 * n]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
        (png::ColorType::Grayscale | png::ColorType::Indexed, depth) => {
            let bits = depth as usize;
            let stride = info.line_size;
            let mut out = Vec::with_capacity(n);
            for y in 0..h as usize {
                let row = &buf[y * stride..(y + 1) * stride];
                for x in 0..w as usize {
                    let bit = x * bits;
                    let byte = row[bit / 8];
                    let shift = 8 - bits - (bit % 8);
                    out.push(((byte >> shift) & ((1u8 << bits) - 1)) as u16);
                }
            }
            out
        }
        (ct, _) => {
            return Err(DataError::invalid(
                path,
                format!(
                    "label image is {ct:?}; a mask needs one integer id per pixel (grey or palette PNG), not colours"
                ),
            ));
        }
    };
    Ok((w, h, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_spec_parses_names_and_aliases() {
        let t = LabelTable::parse_spec(
            "0=unlabelled, 1=Nucleus,2=cytoplasm,3=vacuole,4=red blood cell,5=platelet",
        )
        .unwrap();
        assert_eq!(t.get(0), Some(LabelTarget::Unlabelled));
        assert_eq!(t.get(4), Some(LabelTarget::Class(MorphologyClass::Rbc)));
        assert_eq!(
            t.get(5),
            Some(LabelTarget::Class(MorphologyClass::Background))
        );
        assert!(
            LabelTable::parse_spec("1=mitochondria")
                .unwrap_err()
                .contains("mitochondria")
        );
        assert!(
            LabelTable::parse_spec("1=nucleus,1=rbc")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn mask_png_round_trips_and_unknown_ids_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MorphologyMask::filled(4, 3, 0);
        m.set(1, 2, Some(MorphologyClass::Vacuole));
        m.set(3, 0, None);
        let p = dir.path().join("m.png");
        m.write_png(&p).unwrap();
        let table = LabelTable::default();
        let err = MorphologyMask::read_png(&p, &table)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.png") && err.contains("id 255") && err.contains("x=3, y=0"),
            "{err}"
        );
        let table = LabelTable::parse_spec(
            "0=background,1=nucleus,2=cytoplasm,3=vacuole,4=rbc,255=unlabelled",
        )
        .unwrap();
        let back = MorphologyMask::read_png(&p, &table).unwrap();
        assert_eq!(back, m);
        let c = back.counts();
        assert_eq!(
            (c.get(MorphologyClass::Vacuole), c.unlabelled, c.labelled()),
            (1, 1, 11)
        );
    }
}
