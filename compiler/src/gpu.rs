//! `ssmc run --target cuda`: builds the layer's PTX artifact (once, into the cache), loads it
//! with ssmc-runtime and runs it on GPU 0 through the CUDA driver.

use crate::native::{self, Inputs, NativeRun};
use ssmc_compiler::artifact::{self, BuildTarget};
use ssmc_compiler::forms::Form;
use ssmc_compiler::ir::Layer;
use ssmc_runtime::GpuLayer;

/// Runs `layer` on the GPU; `bench` > 0 adds a warm-up run and times `bench` runs (each
/// with its copies to and from the GPU).
pub fn run_cuda(
    layer: &Layer,
    source: &str,
    form: Form,
    inputs: Inputs,
    outputs_shape: &[(String, Vec<usize>)],
    bench: usize,
) -> Result<NativeRun, String> {
    let target = BuildTarget::Ptx;
    let dir = artifact::cache_dir(source, &layer.name, &target, form);
    if !dir.join("manifest.json").exists() {
        artifact::build(layer, &target, form, &dir)?;
    }
    let gpu = GpuLayer::load(&dir).map_err(|e| e.to_string())?;
    native::run_with(layer, inputs, outputs_shape, bench, |refs| gpu.run(refs).map_err(|e| e.to_string()))
}
