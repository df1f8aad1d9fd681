//! `manifest.json`: what an artifact holds and the contract of its entry point.

pub use crate::launch::{DimExpr, Launch};
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
    /// How the entry point is launched: the work items and, on the GPU, the blocks.
    pub launch: Launch,
    /// `generic` (runtime dims are bound per call).
    pub specialized: String,
    /// Host routines the entry point calls, by name (`causal_conv_f32`: the runtime's
    /// `ssmc_causal_conv_f32`); the caller passes their addresses in this order in `bufs`
    /// after the tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<String>,
}

impl Manifest {
    /// The target the artifact was built for, from `target` and `arch`.
    pub fn target(&self) -> Result<crate::Target, String> {
        crate::Target::of_artifact(&self.target, &self.arch)
    }

    /// The value of a launch expression at these dim sizes (manifest order).
    pub fn eval(&self, e: &DimExpr, sizes: &[u64]) -> Result<u64, String> {
        let size = |name: &str| self.dims.iter().position(|d| d.name == name).map(|i| sizes[i] as i64);
        match e.eval(&size) {
            Some(v) if v >= 0 => Ok(v as u64),
            Some(v) => Err(format!("launch expression `{e}` is negative ({v})")),
            None => Err(format!(
                "launch expression `{e}` has no value (a dim it names is not in the manifest, or it overflows)"
            )),
        }
    }

    /// Number of work items (the range of `begin`/`end`) at these dim sizes.
    pub fn work_items(&self, sizes: &[u64]) -> Result<u64, String> {
        self.eval(self.launch.work_items(), sizes)
    }

    /// Why the launch cannot be evaluated, if it names a dim the manifest lacks.
    pub fn check_launch(&self) -> Result<(), String> {
        for e in self.launch.exprs() {
            if let Some(d) = e.dims().into_iter().find(|n| !self.dims.iter().any(|d| d.name == *n)) {
                return Err(format!("launch expression `{e}` names dim `{d}`, which the manifest does not declare"));
            }
        }
        Ok(())
    }
}
