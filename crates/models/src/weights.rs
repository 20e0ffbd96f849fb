//! PyTorch `state_dict` files: reading (`.safetensors`, zip `.pth`, legacy pickle `.pth`)
//! and applying them to a model under torchvision's key names.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::store::pytorch_reader::{DType as PtDType, PytorchReader};
use burn::tensor::{bf16, f16};

use crate::layers::LayerVisitor;

/// Errors while reading or applying weights. Every variant names the source (file path,
/// or the label of an in-memory [`StateDict`]).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse weights file {path} ({format}): {message}")]
    Parse {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("tensor {key} in {path} has unsupported dtype {dtype}")]
    DType {
        path: String,
        key: String,
        dtype: String,
    },
    #[error("{}", mismatch_message(.source_name, .arch, .looks_like, .missing, .unexpected, .wrong_shape))]
    Mismatch {
        /// File path or in-memory label.
        source_name: String,
        /// Architecture the weights were applied to.
        arch: crate::Arch,
        /// Another architecture whose keys the state dict has (nearly) all of: the
        /// likely mistake.
        looks_like: Option<crate::Arch>,
        /// Keys the model needs that the state dict lacks.
        missing: Vec<String>,
        /// Keys in the state dict the model does not have (`num_batches_tracked` and
        /// GoogLeNet's `aux1.*` / `aux2.*` are never reported).
        unexpected: Vec<String>,
        /// Keys present with the wrong shape.
        wrong_shape: Vec<ShapeMismatch>,
    },
    #[error("tensor {key} in {source_name} holds {value} at index {index}: weights must be finite")]
    NonFinite {
        source_name: String,
        key: String,
        /// Flat (row-major, torch layout) index of the first non-finite value.
        index: usize,
        value: f32,
    },
}

/// A key whose tensor has the wrong shape (torch layout, e.g. Linear `[out, in]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

impl fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected {:?}, found {:?})",
            self.key, self.expected, self.found
        )
    }
}

/// Keys listed per kind in a mismatch message; the counts say how many there are.
const KEYS_SHOWN: usize = 5;

fn mismatch_message(
    source: &str,
    arch: &crate::Arch,
    looks_like: &Option<crate::Arch>,
    missing: &[String],
    unexpected: &[String],
    wrong: &[ShapeMismatch],
) -> String {
    let mut s = format!("weights {source} do not fit {arch}: ");
    if let Some(other) = looks_like {
        s += &format!("these are {other} weights (they have its keys); ");
    }
    s += &format!(
        "{} missing, {} unexpected, {} wrongly shaped key(s)",
        missing.len(),
        unexpected.len(),
        wrong.len()
    );
    let list = |items: Vec<String>| {
        let more = items.len().saturating_sub(KEYS_SHOWN);
        let mut l = items[..items.len().min(KEYS_SHOWN)].join(", ");
        if more > 0 {
            l += &format!(", … ({more} more)");
        }
        l
    };
    if !missing.is_empty() {
        s += &format!("\n  missing: {}", list(missing.to_vec()));
    }
    if !unexpected.is_empty() {
        s += &format!("\n  unexpected: {}", list(unexpected.to_vec()));
    }
    if !wrong.is_empty() {
        s += &format!(
            "\n  wrong shape: {}",
            list(wrong.iter().map(|m| m.to_string()).collect())
        );
    }
    s
}

/// The architecture whose state-dict keys `keys` matches best, when the match is close:
/// at least 90 % of the union of its keys and `keys` are shared (`ignore` leaves out keys
/// no architecture loads, e.g. `num_batches_tracked`).
pub(crate) fn architecture_of_keys(
    keys: &BTreeSet<&str>,
    ignore: impl Fn(&str) -> bool,
) -> Option<crate::Arch> {
    let keys: BTreeSet<&str> = keys.iter().copied().filter(|k| !ignore(k)).collect();
    crate::Arch::ALL
        .into_iter()
        .map(|arch| {
            // Lazy parameters: listing the keys allocates no weights.
            let model =
                crate::Classifier::new(&crate::ModelConfig::new(arch, 2), &Default::default());
            let own: BTreeSet<String> = model
                .state_dict_keys()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let shared = own.iter().filter(|k| keys.contains(k.as_str())).count();
            let union = own.len() + keys.len() - shared;
            (arch, shared as f64 / union.max(1) as f64)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, score)| score >= 0.9)
        .map(|(arch, _)| arch)
}

/// The first non-finite value of the tensors of `sd` that `keys` names: key, flat index,
/// value.
pub(crate) fn first_non_finite<'a>(
    sd: &StateDict,
    keys: impl Iterator<Item = &'a String>,
) -> Option<(String, usize, f32)> {
    keys.filter_map(|k| Some((k, sd.get(k)?)))
        .find_map(|(k, t)| {
            let i = crate::elementwise::first_non_finite(&t.data)?;
            Some((k.clone(), i, t.data[i]))
        })
}

/// One tensor of a state dict, converted to `f32` (row-major, torch layout).
#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A PyTorch `state_dict`: key → tensor, plus the name of where it came from.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    source: String,
    tensors: BTreeMap<String, StateTensor>,
}

/// File container detected by [`StateDict::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    Safetensors,
    /// Anything `torch.save` writes: zip archive (PyTorch ≥ 1.6) or legacy pickle stream.
    Pytorch,
}

impl StateDict {
    /// An empty state dict labelled `source` (used in error messages).
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            tensors: BTreeMap::new(),
        }
    }

    /// Where this state dict came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn insert(&mut self, key: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        let n: usize = shape.iter().product();
        assert_eq!(n, data.len(), "shape/data length mismatch");
        self.tensors.insert(key.into(), StateTensor { shape, data });
    }

    pub fn get(&self, key: &str) -> Option<&StateTensor> {
        self.tensors.get(key)
    }

    pub fn remove(&mut self, key: &str) -> Option<StateTensor> {
        self.tensors.remove(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Detects the container from the file's first bytes: safetensors (8-byte header
    /// length then `{`), otherwise a `torch.save` file (zip or legacy pickle).
    pub fn detect(path: &Path) -> Result<WeightsFormat, WeightsError> {
        use std::io::Read;
        let mut head = [0u8; 9];
        let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let n = f.read(&mut head).map_err(|e| io_err(path, e))?;
        if n == 9 && head[8] == b'{' {
            Ok(WeightsFormat::Safetensors)
        } else {
            Ok(WeightsFormat::Pytorch)
        }
    }

    /// Reads a state dict from `.safetensors`, zip `.pth`/`.pt` or legacy (pre-1.6) pickle
    /// `.pth`. The format is detected from the content, not the extension.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        match Self::detect(path)? {
            WeightsFormat::Safetensors => Self::read_safetensors(path),
            WeightsFormat::Pytorch => Self::read_pytorch(path),
        }
    }

    /// Reads a `.safetensors` file: the header first (parsed and checked by the
    /// safetensors crate: offsets contiguous, each tensor's size its dtype × shape), then
    /// every tensor in parallel, straight from the file into its `f32` buffer. Reading
    /// the whole file into memory and converting it tensor by tensor took twice as long
    /// as loading the same ResNet18 from a `.pth` (72 ms against 34 ms, on one core), and
    /// this is the format of every `leukex train` run that `explain --model` and the
    /// study load.
    pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        use rayon::prelude::*;
        use safetensors::Dtype as S;
        /// The safetensors crate's own limit on the header's length.
        const MAX_HEADER: u64 = 100_000_000;
        let path = path.as_ref();
        let parse = |message: String| WeightsError::Parse {
            path: path.display().to_string(),
            format: "safetensors",
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let len = file.metadata().map_err(|e| io_err(path, e))?.len();
        let mut head = [0u8; 8];
        read_exact_at(&file, &mut head, 0)
            .map_err(|_| parse(format!("{len} bytes: too short for a header length")))?;
        let header_len = u64::from_le_bytes(head);
        if header_len > MAX_HEADER || 8 + header_len > len {
            return Err(parse(format!(
                "header length {header_len} does not fit the file's {len} bytes"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        read_exact_at(&file, &mut header, 8).map_err(|e| io_err(path, e))?;
        let metadata: safetensors::tensor::Metadata =
            serde_json::from_slice(&header).map_err(|e| parse(format!("invalid header: {e}")))?;
        let tensors = metadata.tensors();
        let data_start = 8 + header_len;
        let data_len = tensors
            .values()
            .map(|t| t.data_offsets.1)
            .max()
            .unwrap_or(0);
        if data_start + data_len as u64 != len {
            return Err(parse(format!(
                "the header describes {data_len} bytes of tensor data, the file holds {}",
                len - data_start
            )));
        }
        let read: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
            .into_par_iter()
            .map(|(key, info)| {
                let at = data_start + info.data_offsets.0 as u64;
                let bytes = info.data_offsets.1 - info.data_offsets.0;
                let data = if info.dtype == S::F32 {
                    let mut data = vec![0f32; bytes / 4];
                    let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut data);
                    read_exact_at(&file, raw, at).map_err(|e| io_err(path, e))?;
                    // The file is little-endian.
                    if cfg!(target_endian = "big") {
                        data.iter_mut()
                            .for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
                    }
                    data
                } else {
                    let mut raw = vec![0u8; bytes];
                    read_exact_at(&file, &mut raw, at).map_err(|e| io_err(path, e))?;
                    to_f32(&raw, pt_dtype(info.dtype, path, &key)?)
                };
                Ok((key, info.shape.clone(), data))
            })
            .collect::<Result<_, WeightsError>>()?;
        let mut sd = Self::new(path.display().to_string());
        for (key, shape, data) in read {
            sd.insert(key, shape, data);
        }
        Ok(sd)
    }

    pub fn read_pytorch(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        let reader = PytorchReader::new(path).map_err(|e| WeightsError::Parse {
            path: path.display().to_string(),
            format: "torch.save pickle",
            message: e.to_string(),
        })?;
        // The tensors are read and converted in parallel: one after the other this was
        // a tenth of a `leukex explain` run on ResNet18, on one core (perf).
        use rayon::prelude::*;
        let read: Vec<(String, Vec<usize>, Vec<f32>)> = reader
            .into_tensors()
            .into_par_iter()
            .map(|(key, t)| {
                let bytes = t.read().map_err(|e| io_err(path, e))?;
                Ok((key, t.shape().to_vec(), to_f32(&bytes, t.dtype())))
            })
            .collect::<Result<_, WeightsError>>()?;
        let mut sd = Self::new(path.display().to_string());
        for (key, shape, data) in read {
            sd.insert(key, shape, data);
        }
        Ok(sd)
    }
}

impl StateDict {
    /// Serialises the state dict as safetensors bytes under its own keys (torchvision
    /// names kept): float tensors as `F32`, BatchNorm's `*.num_batches_tracked` as `I64`
    /// (its dtype in PyTorch). `metadata` goes into the header's `__metadata__`, together
    /// with `format = pt` (what `safetensors.torch.save_file` writes).
    pub fn to_safetensors(&self, metadata: &[(&str, String)]) -> Vec<u8> {
        use safetensors::{Dtype, tensor::TensorView};
        let bytes: Vec<(&str, Dtype, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, t)| {
                if k.ends_with(".num_batches_tracked") {
                    let b = t
                        .data
                        .iter()
                        .flat_map(|v| (v.round() as i64).to_le_bytes())
                        .collect();
                    (k.as_str(), Dtype::I64, b)
                } else {
                    let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                    (k.as_str(), Dtype::F32, b)
                }
            })
            .collect();
        let views = bytes.iter().map(|(k, dtype, b)| {
            let shape = self.tensors[*k].shape.clone();
            let view = TensorView::new(*dtype, shape, b).expect("size checked at insert");
            (*k, view)
        });
        let mut md: std::collections::HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        md.entry("format".into()).or_insert_with(|| "pt".into());
        safetensors::serialize(views, Some(md)).expect("valid safetensors data")
    }
}

/// The PyTorch dtype of a safetensors dtype that leukex reads.
fn pt_dtype(dtype: safetensors::Dtype, path: &Path, key: &str) -> Result<PtDType, WeightsError> {
    use safetensors::Dtype as S;
    Ok(match dtype {
        S::F32 => PtDType::F32,
        S::F64 => PtDType::F64,
        S::F16 => PtDType::F16,
        S::BF16 => PtDType::BF16,
        S::I64 => PtDType::I64,
        S::I32 => PtDType::I32,
        S::I16 => PtDType::I16,
        S::I8 => PtDType::I8,
        S::U8 => PtDType::U8,
        S::BOOL => PtDType::Bool,
        other => {
            return Err(WeightsError::DType {
                path: path.display().to_string(),
                key: key.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// Fills `buf` from `file` at `offset` without moving a shared cursor, so that threads
/// read different tensors of one file at once.
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], at)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(std::io::Error::other(
            "positional reads are not supported on this platform",
        ))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> WeightsError {
    WeightsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Little-endian bytes of `dtype` to f32 (integers and bools too, so that
/// `num_batches_tracked` round-trips; it is never applied).
fn to_f32(b: &[u8], dtype: PtDType) -> Vec<f32> {
    fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
        c.try_into().expect("chunk size")
    }
    match dtype {
        PtDType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(arr(c)))
            .collect(),
        PtDType::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes(arr(c)).to_f32())
            .collect(),
        PtDType::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes(arr(c)).to_f32())
            .collect(),
        PtDType::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::U64 => b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::U32 => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::I16 => b
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::U16 => b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(arr(c)) as f32)
            .collect(),
        PtDType::I8 => b.iter().map(|&v| v as i8 as f32).collect(),
        PtDType::U8 | PtDType::Bool => b.iter().map(|&v| v as f32).collect(),
    }
}

/// Keys ignored when loading: BatchNorm's step counter and GoogLeNet's auxiliary heads.
pub(crate) fn ignorable(key: &str, ignore_aux: bool) -> bool {
    key.ends_with(".num_batches_tracked")
        || (ignore_aux && (key.starts_with("aux1.") || key.starts_with("aux2.")))
}

/// Lists the torchvision keys of a model with their torch-layout shapes.
#[derive(Default)]
pub(crate) struct KeyLister {
    pub(crate) keys: Vec<(String, Vec<usize>)>,
}

fn shape_of<const D: usize>(p: &Param<Tensor<D>>) -> Vec<usize> {
    p.lazy_shape().to_vec()
}

impl LayerVisitor for KeyLister {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        self.keys
            .push((format!("{name}.weight"), shape_of(&m.weight)));
        if let Some(b) = &m.bias {
            self.keys.push((format!("{name}.bias"), shape_of(b)));
        }
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        let c = shape_of(&m.gamma);
        for s in ["weight", "bias", "running_mean", "running_var"] {
            self.keys.push((format!("{name}.{s}"), c.clone()));
        }
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        let s = shape_of(&m.weight); // burn: [in, out]
        self.keys.push((format!("{name}.weight"), vec![s[1], s[0]]));
        if let Some(b) = &m.bias {
            self.keys.push((format!("{name}.bias"), shape_of(b)));
        }
    }
}

/// Replaces the (single) float value of a module with `data`, keeping ids.
struct ReplaceValue(Option<TensorData>);

impl ModuleMapper for ReplaceValue {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, old, mapper) = param.consume();
        let data = self.0.take().expect("one value");
        Param::from_mapped_value(id, Tensor::from_data(data, &old.device()), mapper)
    }
}

/// Applies a state dict; records missing keys, wrong shapes and used keys.
pub(crate) struct Loader<'a> {
    /// Borrowed: every applied value is copied. Owned: each is moved out of it, so a
    /// loaded model holds the file's values without a second copy of the weights
    /// (about 20 ms and 45 MB of fresh pages for ResNet18 on the command's critical
    /// path, `perf`).
    pub(crate) sd: Cow<'a, StateDict>,
    pub(crate) used: BTreeSet<String>,
    pub(crate) missing: Vec<String>,
    pub(crate) wrong_shape: Vec<ShapeMismatch>,
    /// When false, only checks (no tensor is created).
    pub(crate) apply: bool,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(sd: &'a StateDict, apply: bool) -> Self {
        Self::with(Cow::Borrowed(sd), apply)
    }

    /// Applies `sd`, moving its values into the model.
    pub(crate) fn owning(sd: StateDict) -> Loader<'static> {
        Loader::with(Cow::Owned(sd), true)
    }

    fn with(sd: Cow<'a, StateDict>, apply: bool) -> Self {
        Self {
            sd,
            used: BTreeSet::new(),
            missing: Vec::new(),
            wrong_shape: Vec::new(),
            apply,
        }
    }

    /// Looks up `key` with torch shape `expected`; records problems. The values when
    /// applying and nothing is wrong.
    fn take(&mut self, key: String, expected: &[usize]) -> Option<Vec<f32>> {
        let Some(t) = self.sd.get(&key) else {
            self.missing.push(key);
            return None;
        };
        let wrong_shape = (t.shape != expected).then(|| t.shape.clone());
        self.used.insert(key.clone());
        if let Some(found) = wrong_shape {
            self.wrong_shape.push(ShapeMismatch {
                key,
                expected: expected.to_vec(),
                found,
            });
            return None;
        }
        if !self.apply {
            return None;
        }
        match &mut self.sd {
            Cow::Borrowed(sd) => sd.get(&key).map(|t| t.data.clone()),
            Cow::Owned(sd) => sd.remove(&key).map(|t| t.data),
        }
    }

    fn param<const D: usize>(&mut self, key: String, p: &mut Param<Tensor<D>>) {
        let shape = shape_of(p);
        if let Some(data) = self.take(key, &shape) {
            let dev = p.lazy_device();
            let tensor = Tensor::<D>::from_data(TensorData::new(data, shape), &dev);
            *p = p.clone().transform_for_load(tensor, p.id);
        }
    }
}

impl LayerVisitor for Loader<'_> {
    fn conv(&mut self, name: &str, m: &mut Conv2d) {
        self.param(format!("{name}.weight"), &mut m.weight);
        if let Some(b) = &mut m.bias {
            self.param(format!("{name}.bias"), b);
        }
    }

    fn bn(&mut self, name: &str, m: &mut BatchNorm) {
        self.param(format!("{name}.weight"), &mut m.gamma);
        self.param(format!("{name}.bias"), &mut m.beta);
        for (suffix, state) in [
            ("running_mean", &mut m.running_mean),
            ("running_var", &mut m.running_var),
        ] {
            let shape = shape_of(&m.gamma);
            if let Some(values) = self.take(format!("{name}.{suffix}"), &shape) {
                let data = TensorData::new(values, shape);
                // `RunningState::map` keeps the state's id.
                *state = state.clone().map(&mut ReplaceValue(Some(data)));
            }
        }
    }

    fn linear(&mut self, name: &str, m: &mut Linear) {
        let s = shape_of(&m.weight); // burn [in, out]
        let (din, dout) = (s[0], s[1]);
        if let Some(values) = self.take(format!("{name}.weight"), &[dout, din]) {
            // torch [out, in] -> burn [in, out]
            let mut w = vec![0f32; din * dout];
            for o in 0..dout {
                for i in 0..din {
                    w[i * dout + o] = values[o * din + i];
                }
            }
            let dev = m.weight.lazy_device();
            let tensor = Tensor::<2>::from_data(TensorData::new(w, [din, dout]), &dev);
            m.weight = m.weight.clone().transform_for_load(tensor, m.weight.id);
        }
        if let Some(b) = &mut m.bias {
            self.param(format!("{name}.bias"), b);
        }
    }
}
