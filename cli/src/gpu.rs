//! `ssmc run --target cuda`: loads the layer's PTX artifact (built into the cache by
//! [`crate::native::cached_artifact`]) with ssmc-runtime and runs it on GPU 0 through the
//! CUDA driver.

use crate::native::{self, Inputs, NativeRun};
use ssmc_compiler::ir::Layer;
use ssmc_runtime::GpuLayer;

/// Runs the PTX artifact in `dir` of `layer` on the GPU; `bench` > 0 adds a warm-up run and
/// times `bench` runs (each with its copies to and from the GPU), then `bench` runs of the
/// kernel alone on tensors already in GPU memory (CUDA events).
pub fn run_cuda(
    layer: &Layer,
    dir: &std::path::Path,
    inputs: Inputs,
    outputs_shape: &[(String, Vec<usize>)],
    bench: usize,
) -> Result<NativeRun, String> {
    let gpu = GpuLayer::load(dir).map_err(|e| e.to_string())?;
    let mut kernel = None;
    let mut run = native::run_with(layer, inputs, outputs_shape, bench, |refs| {
        gpu.run(refs).map_err(|e| e.to_string())?;
        if bench > 0 && kernel.is_none() {
            kernel = Some(gpu.time_kernel(refs, bench).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    run.kernel_times = kernel;
    Ok(run)
}
