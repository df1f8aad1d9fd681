//! The C ABI over the runtime, declared in `include/ssmc_runtime.h`. Every entry point
//! checks its arguments, catches panics, and reports a failure as a code and a message;
//! none lets a panic cross into C.

use crate::{CpuLayer, DType, Error, TensorRef};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Success.
pub const SSMC_OK: c_int = 0;
/// A null argument, a name that is not UTF-8, a negative size or an unknown dtype code.
pub const SSMC_ERR_ARGS: c_int = 1;
/// The tensors do not fit the manifest, or an output overlaps another tensor in memory:
/// nothing ran, no output was written.
pub const SSMC_ERR_TENSORS: c_int = 2;
/// The artifact could not be read or loaded.
pub const SSMC_ERR_IO: c_int = 3;
/// The artifact's manifest is malformed or does not fit its library.
pub const SSMC_ERR_MANIFEST: c_int = 4;
/// A bug in ssmc-runtime (a caught panic).
pub const SSMC_ERR_INTERNAL: c_int = 5;

/// Most axes a tensor may have: bounds how far `shape` is read.
const MAX_RANK: i32 = 16;

/// `ssmc_tensor`: a view of one row-major, contiguous tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SsmcTensor {
    /// Its name in the manifest, NUL-terminated UTF-8.
    pub name: *const c_char,
    /// `SSMC_F32` = 0, `SSMC_F64` = 1, `SSMC_BF16` = 2, `SSMC_F16` = 3.
    pub dtype: i32,
    /// Number of axes.
    pub rank: i32,
    /// `rank` sizes, outermost first.
    pub shape: *const i64,
    /// First byte.
    pub data: *mut c_void,
    /// Length of `data` in bytes.
    pub bytes: usize,
}

/// `ssmc_layer`: an opaque handle to a loaded layer.
pub struct SsmcLayer(CpuLayer);

/// A failure as C sees it.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    code: c_int,
    message: String,
}

impl Failure {
    fn args(message: impl Into<String>) -> Self {
        Failure { code: SSMC_ERR_ARGS, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Io(_) => SSMC_ERR_IO,
            Error::Manifest(_) => SSMC_ERR_MANIFEST,
            Error::Tensors(_) => SSMC_ERR_TENSORS,
            Error::Cuda(_) | Error::NoGpu(_) | Error::NotCompiledWithCuda => gpu::SSMC_ERR_GPU,
        };
        Failure { code, message: e.to_string() }
    }
}

/// Runs `f`, turning a panic into an internal failure.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(Failure { code: SSMC_ERR_INTERNAL, message: format!("internal error in ssmc-runtime: {what}") })
    })
}

/// Writes `msg` into `err` NUL-terminated, truncated at a character boundary to fit
/// `err_len` bytes in all; does nothing when `err` is null or `err_len` is 0.
///
/// # Safety
/// `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Writes through a C buffer; sound under the contract above.
unsafe fn write_message(err: *mut c_char, err_len: usize, msg: &str) {
    if err.is_null() || err_len == 0 {
        return;
    }
    let mut n = msg.len().min(err_len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // Sound: n + 1 <= err_len bytes are written, which the caller promises are writable.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
}

/// The code of a run's `result`, its message written to `err` (`""` on success).
///
/// # Safety
/// `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Writes through a C buffer; sound under the contract above.
unsafe fn finish(result: Result<(), Failure>, err: *mut c_char, err_len: usize) -> c_int {
    let (code, message) = match result {
        Ok(()) => (SSMC_OK, String::new()),
        Err(f) => (f.code, f.message),
    };
    // Sound: `err` is as the caller promised.
    unsafe { write_message(err, err_len, &message) };
    code
}

/// A path from a C string: any bytes on Unix, UTF-8 elsewhere.
fn path_of(dir: &CStr) -> Result<std::path::PathBuf, Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(dir.to_bytes()).into())
    }
    #[cfg(not(unix))]
    {
        dir.to_str().map(Into::into).map_err(|_| Failure::args("the artifact directory is not UTF-8"))
    }
}

/// One tensor of a call, its name and shape converted from C.
struct Converted<'a> {
    name: &'a str,
    dtype: DType,
    shape: Vec<usize>,
    data: *const u8,
    bytes: usize,
}

/// Converts the C tensors, collecting every problem of the arguments themselves.
///
/// # Safety
/// `tensors` is null or points to `count` tensors whose non-null `name`s are NUL-terminated
/// and whose `shape`s, when non-null, hold `rank` sizes (for `rank` in 0..=16).
#[allow(unsafe_code)] // Reads C arrays and strings; sound under the contract above.
unsafe fn convert<'a>(tensors: *const SsmcTensor, count: usize) -> Result<Vec<Converted<'a>>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if tensors.is_null() {
        return Err(Failure::args(format!("null `tensors` with count {count}")));
    }
    // Sound: the caller promises `count` tensors at `tensors`.
    let given = unsafe { std::slice::from_raw_parts(tensors, count) };
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, t) in given.iter().enumerate() {
        if t.name.is_null() {
            problems.push(format!("tensor #{i}: null name"));
            continue;
        }
        // Sound: a non-null name is NUL-terminated by the caller's promise.
        let Ok(name) = unsafe { CStr::from_ptr(t.name) }.to_str() else {
            problems.push(format!("tensor #{i}: name is not UTF-8"));
            continue;
        };
        let dtype = match t.dtype {
            0 => DType::F32,
            1 => DType::F64,
            2 => DType::Bf16,
            3 => DType::F16,
            d => {
                problems.push(format!(
                    "tensor `{name}`: unknown dtype code {d} (SSMC_F32=0, SSMC_F64=1, SSMC_BF16=2, SSMC_F16=3)"
                ));
                continue;
            }
        };
        if !(0..=MAX_RANK).contains(&t.rank) {
            problems.push(format!("tensor `{name}`: rank {} is out of range (0 to {MAX_RANK})", t.rank));
            continue;
        }
        let sizes: &[i64] = match (t.rank, t.shape.is_null()) {
            (0, _) => &[],
            (r, true) => {
                problems.push(format!("tensor `{name}`: null shape with rank {r}"));
                continue;
            }
            // Sound: a non-null shape holds `rank` sizes by the caller's promise.
            (r, false) => unsafe { std::slice::from_raw_parts(t.shape, r as usize) },
        };
        let Ok(shape) = sizes.iter().map(|&n| usize::try_from(n)).collect::<Result<Vec<usize>, _>>() else {
            problems.push(format!("tensor `{name}`: negative size in shape {sizes:?}"));
            continue;
        };
        out.push(Converted { name, dtype, shape, data: t.data.cast_const().cast(), bytes: t.bytes });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Failure::args(problems.join("\n")))
    }
}

/// The runtime's views of converted C tensors. Every C tensor is writable: the manifest
/// says which ones the kernel writes.
fn tensor_refs<'a>(converted: &'a [Converted<'a>]) -> Vec<TensorRef<'a>> {
    converted
        .iter()
        .map(|c| TensorRef {
            name: c.name,
            dtype: c.dtype,
            shape: &c.shape,
            data: c.data,
            bytes: c.bytes,
            writable: true,
        })
        .collect()
}

/// Loads the artifact in directory `dir`; on failure returns null and writes the reason.
///
/// # Safety
/// `dir` is null or NUL-terminated; `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Exported to C: the caller upholds the pointer contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_layer_open(dir: *const c_char, err: *mut c_char, err_len: usize) -> *mut SsmcLayer {
    // Sound: `dir` and `err` are as the caller promised.
    unsafe { open(dir, err, err_len, |path| Ok(SsmcLayer(CpuLayer::load(path)?))) }
}

/// A handle from `load` of the artifact directory `dir`, or null with the reason in `err`:
/// the body of the `open` entry points.
///
/// # Safety
/// `dir` is null or NUL-terminated; `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Reads a C string and writes a C buffer; sound under the contract above.
unsafe fn open<T>(
    dir: *const c_char,
    err: *mut c_char,
    err_len: usize,
    load: impl FnOnce(&std::path::Path) -> Result<T, Failure>,
) -> *mut T {
    let result = guarded(|| {
        if dir.is_null() {
            return Err(Failure::args("null artifact directory"));
        }
        // Sound: non-null and NUL-terminated by the caller's promise.
        let path = path_of(unsafe { CStr::from_ptr(dir) })?;
        Ok(Box::into_raw(Box::new(load(&path)?)))
    });
    let (handle, message) = match result {
        Ok(handle) => (handle, String::new()),
        Err(f) => (std::ptr::null_mut(), f.message),
    };
    // Sound: `err` is as the caller promised.
    unsafe { write_message(err, err_len, &message) };
    handle
}

/// Checks the tensors against the manifest, then runs the layer on `threads` threads (0:
/// all cores; more than [`crate::MAX_THREADS`] is an argument error). Returns `SSMC_OK`,
/// or a code with the reason written to `err`; on an error nothing has run and no output
/// was written. An output that overlaps another tensor is `SSMC_ERR_TENSORS`.
///
/// # Safety
/// `layer` is null or from `ssmc_layer_open` and not closed; `tensors` is null or points to
/// `count` tensors with NUL-terminated names, `rank` sizes at `shape`, and `bytes` bytes at
/// `data`; `err` is null or points to `err_len` writable bytes.
#[allow(unsafe_code)] // Exported to C: the caller upholds the pointer contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_layer_run(
    layer: *const SsmcLayer,
    tensors: *const SsmcTensor,
    count: usize,
    threads: c_int,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    let result = guarded(|| {
        // Sound: null or a live layer from `ssmc_layer_open`, as the caller promised.
        let Some(layer) = (unsafe { layer.as_ref() }) else {
            return Err(Failure::args("null layer"));
        };
        let threads =
            usize::try_from(threads).map_err(|_| Failure::args(format!("negative thread count {threads}")))?;
        if threads > crate::MAX_THREADS {
            return Err(Failure::args(format!(
                "thread count {threads} is more than SSMC_MAX_THREADS ({}); pass 0 for all cores",
                crate::MAX_THREADS
            )));
        }
        // Sound: `tensors` and `count` are as the caller promised.
        let converted = unsafe { convert(tensors, count) }?;
        Ok(layer.0.run(&tensor_refs(&converted), threads)?)
    });
    // Sound: `err` is as the caller promised.
    unsafe { finish(result, err, err_len) }
}

/// Unloads a layer; null is ignored.
///
/// # Safety
/// `layer` is null or from `ssmc_layer_open`, closed once, and no run on it is in progress.
#[allow(unsafe_code)] // Exported to C: the caller upholds the ownership contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_layer_close(layer: *mut SsmcLayer) {
    // Sound: as the caller promised.
    unsafe { close(layer) }
}

/// Drops a handle from [`open`]; null is ignored: the body of the `close` entry points.
///
/// # Safety
/// `handle` is null or from `open`, and dropped once.
#[allow(unsafe_code)] // Takes back a pointer given to C; sound under the contract above.
unsafe fn close<T>(handle: *mut T) {
    if handle.is_null() {
        return;
    }
    // Sound: the pointer came from Box::into_raw in `open` and is dropped once.
    let handle = unsafe { Box::from_raw(handle) };
    // Unloading cannot fail in a way C could act on; a panic must not reach it.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(handle)));
}

/// The version of ssmc-runtime, a static NUL-terminated string.
#[allow(unsafe_code)] // Exported to C; takes no arguments and returns a static string.
#[no_mangle]
pub extern "C" fn ssmc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

pub mod gpu;

#[cfg(all(test, unix))]
mod tests;
