//! ssmc-runtime: loads a layer compiled by `ssmc build`, checks tensors against its
//! manifest before any kernel runs, and runs it on all cores ([`CpuLayer`]) or, with the
//! `cuda` feature, on an NVIDIA GPU ([`GpuLayer`]).
//!
//! ```no_run
//! use ssmc_runtime::{CpuLayer, TensorRef, DType};
//! let layer = CpuLayer::load("build/mamba1".as_ref()).expect("artifact");
//! # let (u, out): (Vec<f32>, Vec<f32>) = (vec![], vec![]);
//! // layer.run(&[TensorRef::input("u", &u, &[2, 64, 128]), ...], 0)
//! ```

pub mod bind;
mod capi;
pub mod conv;
pub mod cuda;
pub use ssmc_contract::manifest;

pub use cuda::{cuda_device, GpuLayer};
pub use manifest::{DType, Io, Manifest};
pub use ssmc_contract::Target;
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong loading or running a layer.
#[derive(Debug)]
pub enum Error {
    /// The artifact directory or its files could not be read.
    Io(String),
    /// The manifest is malformed or does not fit the library.
    Manifest(String),
    /// The tensors do not fit the manifest: one line per problem.
    Tensors(Vec<String>),
    /// The CUDA driver failed (rejected the PTX, a launch or a copy failed).
    Cuda(String),
    /// No CUDA driver, or no GPU it can use; its message says which (shown after
    /// `no CUDA driver/GPU: `).
    NoGpu(String),
    /// A GPU layer was run by an ssmc-runtime built without its `cuda` feature.
    NotCompiledWithCuda,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(s) => write!(f, "{s}"),
            Error::Manifest(s) => write!(f, "bad artifact: {s}"),
            Error::Tensors(p) => write!(f, "{}", p.join("\n")),
            Error::Cuda(s) => write!(f, "CUDA: {s}"),
            Error::NoGpu(why) => write!(f, "no CUDA driver/GPU: {why}"),
            Error::NotCompiledWithCuda => {
                write!(f, "ssmc-runtime was built without its `cuda` feature, so it cannot run PTX; rebuild it with `--features cuda`")
            }
        }
    }
}

impl std::error::Error for Error {}

/// A view of one tensor handed to a layer: row-major, contiguous.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// Its name in the manifest.
    pub name: &'a str,
    /// Element type of `data`.
    pub dtype: DType,
    /// Sizes, outermost first.
    pub shape: &'a [usize],
    /// First byte.
    pub data: *const u8,
    /// Length in bytes.
    pub bytes: usize,
    /// Whether the kernel may write it.
    pub writable: bool,
}

impl<'a> TensorRef<'a> {
    /// A tensor in GPU memory for [`GpuLayer::run_device`]: `address` is a device address
    /// (a `CUdeviceptr`, PyTorch's `data_ptr()`), of `shape` elements of `dtype`. Never
    /// dereferenced on the host.
    pub fn on_device(name: &'a str, dtype: DType, shape: &'a [usize], address: u64, writable: bool) -> Self {
        let bytes = shape.iter().try_fold(dtype.size(), |acc, &n| acc.checked_mul(n)).unwrap_or(usize::MAX);
        TensorRef { name, dtype, shape, data: address as usize as *const u8, bytes, writable }
    }

    /// An f32 input.
    pub fn input(name: &'a str, data: &'a [f32], shape: &'a [usize]) -> Self {
        TensorRef {
            name,
            dtype: DType::F32,
            shape,
            data: data.as_ptr().cast(),
            bytes: std::mem::size_of_val(data),
            writable: false,
        }
    }

    /// A bf16 input, as raw 16-bit patterns.
    pub fn input_bf16(name: &'a str, data: &'a [u16], shape: &'a [usize]) -> Self {
        TensorRef {
            name,
            dtype: DType::Bf16,
            shape,
            data: data.as_ptr().cast(),
            bytes: std::mem::size_of_val(data),
            writable: false,
        }
    }

    /// An f32 output.
    pub fn output(name: &'a str, data: &'a mut [f32], shape: &'a [usize]) -> Self {
        TensorRef {
            name,
            dtype: DType::F32,
            shape,
            data: data.as_mut_ptr().cast_const().cast(),
            bytes: std::mem::size_of_val(data),
            writable: true,
        }
    }
}

/// Most threads one run starts: a larger request is clamped to it (the C ABI refuses it),
/// so that a garbage count cannot exhaust the process' threads.
pub const MAX_THREADS: usize = 1024;

/// The C signature of every entry point.
pub type EntryFn = unsafe extern "C" fn(bufs: *const *const u8, dims: *const i64, begin: i64, end: i64);

/// A layer compiled for the CPU, loaded from its artifact directory.
pub struct CpuLayer {
    manifest: Manifest,
    entry: EntryFn,
    /// Addresses of the manifest's host routines, passed after the tensors.
    host: Vec<usize>,
    // Keeps the library mapped while `entry` is used.
    _lib: libloading::Library,
}

/// Reads `manifest.json` from an artifact directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest, Error> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Manifest(format!("{}: {e}", path.display())))
}

/// The manifest in `dir`, which must be of a target on a GPU (`gpu`) or a CPU, and the
/// path of its file of `kind` (`shared` for the CPU, `ptx` for the GPU).
pub(crate) fn open_artifact(dir: &Path, gpu: bool, kind: &str) -> Result<(Manifest, PathBuf), Error> {
    let manifest = read_manifest(dir)?;
    let target = manifest.target().map_err(|e| Error::Manifest(format!("{}: {e}", dir.display())))?;
    let wanted = if gpu { Target::cuda() } else { Target::cpu("native") };
    if target.is_gpu() != gpu {
        return Err(Error::Manifest(format!(
            "{} holds a {} artifact ({}), not a {} one (build it with `ssmc build --target {}`)",
            dir.display(),
            target.name(),
            target.arch_name(),
            wanted.name(),
            wanted.name()
        )));
    }
    manifest.check_launch().map_err(Error::Manifest)?;
    let launch_fits = match manifest.launch {
        manifest::Launch::Range { .. } => !gpu,
        manifest::Launch::Grid { threads, items_per_block, .. } => {
            gpu && (1..=1024).contains(&threads) && items_per_block >= 1
        }
    };
    if !launch_fits {
        return Err(Error::Manifest(format!(
            "{}: its launch does not fit a {} artifact",
            dir.display(),
            target.name()
        )));
    }
    let file = manifest.files.get(kind).ok_or_else(|| Error::Manifest(format!("no {kind} file listed")))?;
    let path = dir.join(file);
    Ok((manifest, path))
}

impl CpuLayer {
    /// Loads the shared library named by the manifest in `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let (manifest, lib_path) = open_artifact(dir, false, "shared")?;
        let host = manifest
            .host
            .iter()
            .map(|name| {
                conv::host_routine(name).map(|p| p as usize).ok_or_else(|| {
                    Error::Manifest(format!("the artifact needs host routine `{name}`, which this ssmc-runtime lacks"))
                })
            })
            .collect::<Result<Vec<usize>, Error>>()?;
        #[allow(unsafe_code)] // Loading runs no initializers: ssmc libraries have none.
        let lib = unsafe { libloading::Library::new(&lib_path) }
            .map_err(|e| Error::Io(format!("cannot load {}: {e}", lib_path.display())))?;
        #[allow(unsafe_code)] // The symbol has the EntryFn signature by the manifest's contract.
        let entry: EntryFn = unsafe {
            *lib.get::<EntryFn>(manifest.entry.as_bytes())
                .map_err(|e| Error::Manifest(format!("no entry `{}` in {}: {e}", manifest.entry, lib_path.display())))?
        };
        Ok(CpuLayer { manifest, entry, host, _lib: lib })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks the tensors, then runs every sequence on `threads` threads (0: all cores; at
    /// most [`MAX_THREADS`], and no more than there are sequences). On an error nothing has
    /// run and no output was touched.
    pub fn run(&self, tensors: &[TensorRef], threads: usize) -> Result<(), Error> {
        let sizes = bind::bind(&self.manifest, tensors)?;
        let m = &self.manifest;
        let dims: Vec<i64> =
            m.dims.iter().zip(&sizes).filter(|(d, _)| d.size.is_none()).map(|(_, s)| *s as i64).collect();
        let sequences = m.work_items(&sizes).map_err(Error::Manifest)?;
        let by_name: std::collections::BTreeMap<&str, usize> =
            tensors.iter().map(|t| (t.name, t.data as usize)).collect();
        let bufs: Vec<usize> = m
            .tensors
            .iter()
            .map(|info| by_name.get(info.name.as_str()).copied().unwrap_or(0))
            .chain(self.host.iter().copied())
            .collect();
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let threads = threads.min(MAX_THREADS).min(sequences.max(1) as usize);
        let per = sequences.div_ceil(threads as u64);
        let entry = self.entry;
        std::thread::scope(|s| {
            for k in 0..threads as u64 {
                let (begin, end) = ((k * per).min(sequences), ((k + 1) * per).min(sequences));
                let (bufs, dims) = (&bufs, &dims);
                s.spawn(move || {
                    let ptrs: Vec<*const u8> = bufs.iter().map(|p| *p as *const u8).collect();
                    // Checked above: every buffer holds its shape; threads write disjoint sequences.
                    #[allow(unsafe_code)]
                    unsafe {
                        entry(ptrs.as_ptr(), dims.as_ptr(), begin as i64, end as i64)
                    };
                });
            }
        });
        Ok(())
    }
}
