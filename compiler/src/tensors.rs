//! Tensor values and files: dense row-major f64 tensors, safetensors I/O (F32, F64, BF16
//! and F16 in; F32 or F64 out), and seeded generation of inputs.

use crate::bind::Sizes;
use crate::ir::{DType, Init, Layer};
use rand::SeedableRng;
use rand_distr::Distribution;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A dense row-major tensor of f64.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    /// Sizes, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f64>,
}

impl TensorData {
    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: Vec<usize>, value: f64) -> Self {
        let n = shape.iter().product();
        TensorData { shape, data: vec![value; n] }
    }
}

/// Tensors by name, in name order.
pub type TensorMap = BTreeMap<String, TensorData>;

/// Element type of written files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDType {
    /// binary32
    F32,
    /// binary64
    F64,
}

/// A tensor file that could not be read or written.
#[derive(Debug)]
pub struct TensorFileError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for TensorFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for TensorFileError {}

fn file_error(path: &Path, reason: impl Into<String>) -> TensorFileError {
    TensorFileError { path: path.display().to_string(), reason: reason.into() }
}

/// A safetensors file held as read: its bytes and where each tensor lies in them. Native
/// runs hand these bytes to the kernels as they are, with no f64 copy.
pub struct RawTensors {
    bytes: Vec<u8>,
    /// Each tensor's element type, shape and byte range, by name.
    pub entries: BTreeMap<String, RawEntry>,
}

/// Where one tensor of a [`RawTensors`] lies.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// Element type in the file.
    pub dtype: DType,
    /// Sizes, outermost first.
    pub shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

impl RawTensors {
    /// Reads a safetensors file of F32, F64, BF16 and F16 tensors, its layout checked by
    /// [`crate::safetensors_check::parse`] first. A file larger than the memory that can be
    /// allocated is an error, not an abort.
    pub fn read(path: &Path) -> Result<Self, TensorFileError> {
        use std::io::Read;
        let cannot = |e: std::io::Error| file_error(path, format!("cannot read the file: {e}"));
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        if meta.is_dir() {
            return Err(file_error(path, "cannot read the file: it is a directory"));
        }
        let mut bytes = Vec::new();
        let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        bytes.try_reserve_exact(len).map_err(|_| {
            file_error(
                path,
                format!(
                    "cannot read the file: it is {} and that much memory cannot be allocated",
                    bytes_text(meta.len())
                ),
            )
        })?;
        file.read_to_end(&mut bytes).map_err(cannot)?;
        let parsed = crate::safetensors_check::parse(&bytes)
            .map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
        let entries =
            parsed.into_iter().map(|e| (e.name, RawEntry { dtype: e.dtype, shape: e.shape, range: e.range })).collect();
        Ok(RawTensors { bytes, entries })
    }

    /// The size of the file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes of one tensor.
    pub fn bytes(&self, entry: &RawEntry) -> &[u8] {
        &self.bytes[entry.range.clone()]
    }

    /// Every tensor's shape, by name.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.entries.iter().map(|(k, e)| (k.clone(), e.shape.clone())).collect()
    }

    /// One tensor as f64.
    pub fn to_f64(&self, entry: &RawEntry) -> Vec<f64> {
        let raw = self.bytes(entry);
        match entry.dtype {
            DType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
            DType::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            DType::Bf16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            DType::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        }
    }

    /// Every tensor as f64.
    pub fn to_map(&self) -> TensorMap {
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), TensorData { shape: e.shape.clone(), data: self.to_f64(e) }))
            .collect()
    }
}

/// Reads every tensor of a safetensors file as f64.
pub fn read_safetensors(path: &Path) -> Result<TensorMap, TensorFileError> {
    Ok(RawTensors::read(path)?.to_map())
}

/// Every tensor's shape, by name.
pub fn shapes(tensors: &TensorMap) -> BTreeMap<String, Vec<usize>> {
    tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect()
}

/// Writes tensors to a safetensors file, all at once: the file appears whole or not at all.
pub fn write_safetensors(path: &Path, tensors: &TensorMap, dtype: OutDType) -> Result<(), TensorFileError> {
    let dtype = match dtype {
        OutDType::F32 => DType::F32,
        OutDType::F64 => DType::F64,
    };
    write_with(path, tensors, |_| dtype)
}

/// Writes a layer's inputs, each in its declared dtype (generated inputs are values of that
/// dtype, so nothing is lost).
pub fn write_inputs(path: &Path, layer: &Layer, tensors: &TensorMap) -> Result<(), TensorFileError> {
    // A map, not a search per tensor: a layer may declare very many inputs.
    let declared: BTreeMap<&str, DType> = layer.inputs().map(|(_, t)| (t.name.as_str(), t.dtype)).collect();
    write_with(path, tensors, |name| declared.get(name).copied().unwrap_or(DType::F64))
}

fn write_with(path: &Path, tensors: &TensorMap, dtype_of: impl Fn(&str) -> DType) -> Result<(), TensorFileError> {
    let encoded: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (st, bytes): (Dtype, Vec<u8>) = match dtype_of(n) {
                DType::F32 => (Dtype::F32, t.data.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect()),
                DType::F64 => (Dtype::F64, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
                DType::Bf16 => {
                    (Dtype::BF16, t.data.iter().flat_map(|v| half::bf16::from_f64(*v).to_le_bytes()).collect())
                }
                DType::F16 => (Dtype::F16, t.data.iter().flat_map(|v| half::f16::from_f64(*v).to_le_bytes()).collect()),
            };
            (n.clone(), st, bytes, t.shape.clone())
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(n, d, b, s)| safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e.to_string()))?;
    let encoded = safetensors::serialize(views, &None).map_err(|e| file_error(path, e.to_string()))?;
    write_atomically(path, &encoded)
}

/// Writes `bytes` to `path` atomically, following symbolic links (see [`crate::outpath`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TensorFileError> {
    crate::outpath::write_atomically(path, bytes).map_err(|e| file_error(path, e))
}

/// `1.5 GiB`, `12.0 MiB`, `300 bytes`.
pub fn bytes_text(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} bytes")
}

/// Seeded random inputs of a layer at the given sizes, drawn from each input's declared
/// distribution. Each tensor has its own stream, so adding an input leaves the others as they were.
pub fn generate_inputs(layer: &Layer, sizes: &Sizes, seed: u64) -> TensorMap {
    let mut out = TensorMap::new();
    for (_, t) in layer.inputs() {
        let shape = sizes.shape(&t.shape);
        let n: usize = shape.iter().product();
        let stream = t.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ stream);
        let data: Vec<f64> = match t.init {
            Init::Normal { mean, std } => {
                let d = rand_distr::Normal::new(mean, std).expect("sema checked std > 0");
                (0..n).map(|_| d.sample(&mut rng)).collect()
            }
            Init::Uniform { lo, hi } => {
                let d = rand_distr::Uniform::new(lo, hi);
                (0..n).map(|_| d.sample(&mut rng)).collect()
            }
        };
        // Values of the declared dtype, so that saving them in it loses nothing.
        let data = data.into_iter().map(|v| round_to(t.dtype, v)).collect();
        out.insert(t.name.clone(), TensorData { shape, data });
    }
    out
}

/// `v` rounded to the nearest value of `dtype`.
pub fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::F64 => v,
        DType::Bf16 => half::bf16::from_f64(v).to_f64(),
        DType::F16 => half::f16::from_f64(v).to_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_values_and_shapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.safetensors");
        let mut m = TensorMap::new();
        m.insert("a".into(), TensorData { shape: vec![2, 3], data: vec![1.0, -2.5, 3.0, 0.125, 5.0, 6.0] });
        write_safetensors(&path, &m, OutDType::F64).expect("write");
        assert_eq!(read_safetensors(&path).expect("read"), m);
        write_safetensors(&path, &m, OutDType::F32).expect("write");
        assert_eq!(read_safetensors(&path).expect("read"), m);
    }

    #[test]
    fn reads_half_precision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.safetensors");
        let vals = [1.5f32, -0.25];
        let bf: Vec<u8> = vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let f16: Vec<u8> = vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let views = vec![
            ("b", safetensors::tensor::TensorView::new(Dtype::BF16, vec![2], &bf).expect("view")),
            ("h", safetensors::tensor::TensorView::new(Dtype::F16, vec![2], &f16).expect("view")),
        ];
        std::fs::write(&path, safetensors::serialize(views, &None).expect("ser")).expect("write");
        let m = read_safetensors(&path).expect("read");
        assert_eq!(m["b"].data, vec![1.5, -0.25]);
        assert_eq!(m["h"].data, vec![1.5, -0.25]);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a tensor file").expect("write");
        let e = read_safetensors(&path).expect_err("fails");
        assert!(e.to_string().contains("not a safetensors file"), "{e}");
        let e = read_safetensors(&dir.path().join("missing.safetensors")).expect_err("fails");
        assert!(e.to_string().contains("missing.safetensors"), "{e}");
    }
}
