//! One test body per property, instantiated per backend: [`Backend`] builds and runs a
//! layer on the CPU or the GPU the same way, and [`backends!`](crate::backends) writes a
//! `cpu` and a `cuda` test for each body. Without a usable GPU the `cuda` instance prints
//! `skipped: no CUDA GPU (...)` and passes, unless `SSMC_REQUIRE_GPU` is set
//! (`scripts/gpu-test` sets it): then it fails.

use ssmc_compiler::forms::Form;
use ssmc_compiler::ir::{DType, Layer};
use ssmc_compiler::schedule;
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors::{TensorData, TensorMap};
use ssmc_runtime::{CpuLayer, GpuLayer, TensorRef};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// The GPU's name, or `None` after printing why the GPU checks are skipped; fails instead
/// when `SSMC_REQUIRE_GPU` is set.
pub fn cuda_gpu() -> Option<String> {
    static GPU: OnceLock<Result<String, String>> = OnceLock::new();
    match GPU.get_or_init(|| ssmc_runtime::cuda_device().map_err(|e| e.to_string())) {
        Ok(name) => Some(name.clone()),
        Err(e) => {
            assert!(
                std::env::var_os("SSMC_REQUIRE_GPU").is_none(),
                "SSMC_REQUIRE_GPU is set, but the GPU cannot be used: {e}"
            );
            println!("skipped: no CUDA GPU ({e})");
            None
        }
    }
}

/// Where native code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// All cores of this machine (`--cpu native`), through `CpuLayer`.
    Cpu,
    /// GPU 0, through `GpuLayer`.
    Cuda,
}

impl Backend {
    /// The GPU backend, or `None` after printing why its tests are skipped.
    pub fn cuda() -> Option<Backend> {
        cuda_gpu().map(|_| Backend::Cuda)
    }

    /// The target code is built for.
    pub fn target(self) -> Target {
        match self {
            Backend::Cpu => Target::cpu("native"),
            Backend::Cuda => Target::cuda(),
        }
    }

    /// Whether this backend has a native schedule of `layer` in `form`.
    pub fn schedules(self, layer: &Layer, form: Form) -> bool {
        schedule::kernel(layer, &self.target(), form).is_ok()
    }

    /// Builds `layer` in `form` into `dir` and runs it on `inputs` (f32, or bf16 where the
    /// layer declares it), every output poisoned with NaN first so that an element the
    /// kernel does not write fails the comparison; returns the outputs (shaped as
    /// `outputs`) as f64.
    pub fn run(
        self,
        layer: &Layer,
        form: Form,
        dir: &Path,
        inputs: &TensorMap,
        outputs: &TensorMap,
    ) -> Result<TensorMap, String> {
        crate::build_artifact(layer, &self.target(), form, dir)?;
        self.run_artifact(layer, dir, inputs, outputs)
    }

    /// Runs the artifact of `layer` in `dir` as [`Backend::run`] does.
    pub fn run_artifact(
        self,
        layer: &Layer,
        dir: &Path,
        inputs: &TensorMap,
        outputs: &TensorMap,
    ) -> Result<TensorMap, String> {
        let bf16 = |name: &str| layer.inputs().any(|(_, t)| t.name == name && t.dtype == DType::Bf16);
        let f32s: BTreeMap<&str, Vec<f32>> =
            inputs.iter().map(|(k, v)| (k.as_str(), v.data.iter().map(|x| *x as f32).collect())).collect();
        let bits: BTreeMap<&str, Vec<u16>> = inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.data.iter().map(|x| half::bf16::from_f64(*x).to_bits()).collect()))
            .collect();
        let mut outs: BTreeMap<&str, Vec<f32>> =
            outputs.iter().map(|(k, v)| (k.as_str(), vec![f32::NAN; v.data.len()])).collect();
        {
            let mut refs: Vec<TensorRef> = inputs
                .iter()
                .map(|(k, v)| {
                    if bf16(k) {
                        TensorRef::input_bf16(k, &bits[k.as_str()], &v.shape)
                    } else {
                        TensorRef::input(k, &f32s[k.as_str()], &v.shape)
                    }
                })
                .collect();
            for (k, buf) in outs.iter_mut() {
                refs.push(TensorRef::output(k, buf, &outputs[*k].shape));
            }
            match self {
                Backend::Cpu => CpuLayer::load(dir).and_then(|l| l.run(&refs, 3)),
                Backend::Cuda => GpuLayer::load(dir).and_then(|l| l.run(&refs)),
            }
            .map_err(|e| e.to_string())?;
        }
        Ok(outs
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    TensorData { shape: outputs[k].shape.clone(), data: v.into_iter().map(f64::from).collect() },
                )
            })
            .collect())
    }
}

/// Writes, for each `fn name(backend) { body }`, a module `name` with the tests `cpu` and
/// `cuda` running `body` with `backend` bound to that [`Backend`]; the `cuda` test skips
/// cleanly without a GPU (see [`Backend::cuda`]).
#[macro_export]
macro_rules! backends {
    ($(#[doc = $doc:expr])* fn $name:ident($backend:ident) $body:block $($rest:tt)*) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($backend: $crate::backend::Backend) $body
            #[test]
            fn cpu() {
                body($crate::backend::Backend::Cpu);
            }
            #[test]
            fn cuda() {
                if let Some(b) = $crate::backend::Backend::cuda() {
                    body(b);
                }
            }
        }
        $crate::backends! { $($rest)* }
    };
    () => {};
}

/// A `.ssm` source with the dtypes native code takes: f64 and f16 declarations become
/// f32, and bf16 outputs f32 (bf16 inputs stay).
pub fn native_dtypes(src: String) -> String {
    src.lines()
        .map(|l| {
            let l = l.replace(": f64[", ": f32[").replace(": f16[", ": f32[");
            if l.trim_start().starts_with("output") {
                l.replace(": bf16[", ": f32[")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `inputs` as a kernel of `layer` sees them: rounded to bf16 where the layer declares a
/// bf16 input, else to f32.
pub fn kernel_inputs(layer: &Layer, inputs: &TensorMap) -> TensorMap {
    inputs
        .iter()
        .map(|(name, v)| {
            let bf16 = layer.inputs().any(|(_, t)| &t.name == name && t.dtype == DType::Bf16);
            let data = v
                .data
                .iter()
                .map(|x| if bf16 { half::bf16::from_f64(*x).to_f64() } else { *x as f32 as f64 })
                .collect();
            (name.clone(), TensorData { shape: v.shape.clone(), data })
        })
        .collect()
}
