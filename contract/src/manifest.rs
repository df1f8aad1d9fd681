//! `manifest.json`: what an artifact holds and the contract of its entry point.

use serde::{Deserialize, Serialize};

/// Element types of tensors at the artifact boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// binary32
    F32,
    /// binary64
    F64,
    /// bfloat16
    Bf16,
    /// binary16
    F16,
}

impl DType {
    /// All dtypes.
    pub const ALL: [DType; 4] = [DType::F32, DType::F64, DType::Bf16, DType::F16];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::Bf16 | DType::F16 => 2,
        }
    }

    /// The name used in `.ssm` files and manifests.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        }
    }
}

/// Input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    /// Read by the kernel.
    Input,
    /// Written by the kernel.
    Output,
}

/// A dim of the layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimInfo {
    /// Its name.
    pub name: String,
    /// Its axis role.
    pub role: String,
    /// Compile-time size, or `null` for a runtime dim (passed in `dims`, in order).
    pub size: Option<u64>,
}

/// A tensor of the layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Input or output.
    pub io: Io,
    /// Element type.
    pub dtype: DType,
    /// One entry per axis: a dim name, `NAME/k`, or a literal size such as `2`.
    pub shape: Vec<String>,
}

/// The manifest of one compiled layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// ssmc version that wrote it.
    pub ssmc_version: String,
    /// Layer name.
    pub layer: String,
    /// `cpu` or `ptx`.
    pub target: String,
    /// LLVM CPU (cpu target) or GPU architecture (ptx target).
    pub arch: String,
    /// The algorithmic form compiled.
    pub form: String,
    /// Symbol of the entry point: `void entry(const void* const* bufs, const int64_t* dims,
    /// int64_t begin, int64_t end)`, running sequences `[begin, end)`.
    pub entry: String,
    /// Files of the artifact, by kind (`shared`, `static`, `header`, `ptx`).
    pub files: std::collections::BTreeMap<String, String>,
    /// Every dim, in declaration order.
    pub dims: Vec<DimInfo>,
    /// Tensors in `bufs` order: inputs, then outputs.
    pub tensors: Vec<TensorInfo>,
    /// Dims whose product is the number of work items (times `head_lanes`' factor).
    pub sequences: Vec<String>,
    /// When each work item holds `lanes` heads side by side: the work items are the
    /// product of `sequences` times ceil((heads / groups) / lanes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_lanes: Option<HeadLanes>,
    /// `generic` (runtime dims are bound per call).
    pub specialized: String,
    /// Host routines the entry point calls, by name (`causal_conv_f32`: the runtime's
    /// `ssmc_causal_conv_f32`); the caller passes their addresses in this order in `bufs`
    /// after the tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<String>,
}

/// Work items of `lanes` heads of one group each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadLanes {
    /// The head (or channel) dim.
    pub heads: String,
    /// The group dim, if any.
    pub groups: Option<String>,
    /// Heads per work item.
    pub lanes: u64,
}

impl Manifest {
    /// The size of dim `name` among `sizes` (manifest order); 1 if absent.
    fn size_of(&self, name: &str, sizes: &[u64]) -> u64 {
        self.dims.iter().position(|d| d.name == name).map_or(1, |i| sizes[i])
    }

    /// Number of work items (the range of `begin`/`end`) at these dim sizes.
    pub fn work_items(&self, sizes: &[u64]) -> u64 {
        let base: u64 = self.sequences.iter().map(|n| self.size_of(n, sizes)).product();
        match &self.head_lanes {
            None => base,
            Some(h) => {
                let groups = h.groups.as_deref().map_or(1, |g| self.size_of(g, sizes)).max(1);
                let per_group = self.size_of(&h.heads, sizes) / groups;
                base * per_group.div_ceil(h.lanes.max(1))
            }
        }
    }
}
