//! The GPU half of the C ABI, declared in `include/ssmc_runtime.h`: a PTX artifact run on
//! tensors already in GPU memory (`CUdeviceptr`s in `ssmc_tensor.data`), enqueued on the
//! caller's `CUstream`, with no copies and no synchronization ([`GpuLayer::run_device`]).
//! The same checks, codes and messages as the CPU entry points, plus `SSMC_ERR_GPU`.

use super::{close, convert, finish, guarded, open, tensor_refs, Failure, SsmcTensor};
use crate::GpuLayer;
use std::ffi::{c_char, c_int, c_void};

/// No CUDA driver or GPU, the driver refused the PTX or the launch, or the runtime was
/// built without its `cuda` feature: nothing was enqueued.
pub const SSMC_ERR_GPU: c_int = 6;

/// `ssmc_gpu_layer`: an opaque handle to a loaded PTX artifact.
pub struct SsmcGpuLayer(GpuLayer);

/// Loads the PTX artifact in directory `dir` (no GPU needed yet: the module is loaded on
/// GPU 0 by the first run); on failure returns null and writes the reason.
///
/// # Safety
/// `dir` is null or NUL-terminated; `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Exported to C: the caller upholds the pointer contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_gpu_layer_open(
    dir: *const c_char,
    err: *mut c_char,
    err_len: usize,
) -> *mut SsmcGpuLayer {
    // Sound: `dir` and `err` are as the caller promised.
    unsafe { open(dir, err, err_len, |path| Ok(SsmcGpuLayer(GpuLayer::load(path)?))) }
}

/// Checks the tensors against the manifest, then that each lies inside one allocation of
/// GPU memory, then enqueues the kernel on `stream` (a `CUstream` of GPU 0's primary
/// context; null is the legacy default stream) and returns without waiting: the outputs
/// are ready when the stream reaches this point. Returns `SSMC_OK`, or a code with the
/// reason written to `err`; on an error nothing was enqueued. A host pointer is
/// `SSMC_ERR_TENSORS`, naming the tensor.
///
/// # Safety
/// `layer` is null or from `ssmc_gpu_layer_open` and not closed; `tensors` is null or
/// points to `count` tensors with NUL-terminated names and `rank` sizes at `shape` (their
/// `data` are device addresses, never dereferenced on the host); `stream` is null or a live
/// stream of GPU 0's primary context; `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Exported to C: the caller upholds the pointer contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_gpu_layer_run(
    layer: *const SsmcGpuLayer,
    tensors: *const SsmcTensor,
    count: usize,
    stream: *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    let result = guarded(|| {
        // Sound: null or a live layer from `ssmc_gpu_layer_open`, as the caller promised.
        let Some(layer) = (unsafe { layer.as_ref() }) else {
            return Err(Failure::args("null layer"));
        };
        // Sound: `tensors` and `count` are as the caller promised.
        let converted = unsafe { convert(tensors, count) }?;
        Ok(layer.0.run_device(&tensor_refs(&converted), stream)?)
    });
    // Sound: `err` is as the caller promised.
    unsafe { finish(result, err, err_len) }
}

/// Unloads a layer; null is ignored. Work it enqueued must have finished.
///
/// # Safety
/// `layer` is null or from `ssmc_gpu_layer_open`, closed once, with no run in progress.
#[allow(unsafe_code)] // Exported to C: the caller upholds the ownership contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_gpu_layer_close(layer: *mut SsmcGpuLayer) {
    // Sound: as the caller promised.
    unsafe { close(layer) }
}

#[cfg(all(test, unix))]
mod tests;
