//! Layers compiled to PTX (`ssmc build --target ptx`), run on an NVIDIA GPU through the
//! CUDA driver API (cudarc, with the driver library loaded at run time: a build never
//! needs CUDA, and a machine without a GPU gets an error, never a crash).
//!
//! Without the `cuda` feature the same [`GpuLayer`] loads and checks artifacts, and
//! [`GpuLayer::run`] answers [`Error::NotCompiledWithCuda`].

use crate::manifest::Manifest;
use crate::{bind, Error, TensorRef};
use std::path::Path;

/// A layer compiled to PTX, loaded from its artifact directory. The GPU is first touched by
/// [`GpuLayer::run`]: loading needs no driver.
pub struct GpuLayer {
    manifest: Manifest,
    ptx: String,
    /// The context, stream and kernel of GPU 0, made by the first run that reaches the GPU.
    #[cfg(feature = "cuda")]
    device: std::sync::Mutex<Option<imp::Device>>,
}

impl GpuLayer {
    /// Reads the manifest and the PTX named by it in `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let (manifest, path) = crate::open_artifact(dir, true, "ptx")?;
        let ptx =
            std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        if !ptx.contains(&format!(".entry {}(", manifest.entry)) {
            return Err(Error::Manifest(format!("no entry `{}` in {}", manifest.entry, path.display())));
        }
        Ok(GpuLayer {
            manifest,
            ptx,
            #[cfg(feature = "cuda")]
            device: std::sync::Mutex::new(None),
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The PTX text.
    pub fn ptx(&self) -> &str {
        &self.ptx
    }

    /// Checks the tensors against the manifest (before anything touches the GPU), copies
    /// the tensors to GPU 0, runs every sequence there and copies the outputs back into the
    /// caller's buffers. On an error no output was touched.
    pub fn run(&self, tensors: &[TensorRef]) -> Result<(), Error> {
        let (dims, grid) = self.prepare(tensors)?;
        self.launch(tensors, &dims, grid)
    }

    /// Runs on tensors already in GPU memory (`TensorRef::on_device`: device addresses of
    /// GPU 0, in the primary context that PyTorch and the runtime API use), enqueued on the
    /// caller's `stream` (a `CUstream`; null is the legacy default stream): no copies of the
    /// tensors, no synchronization; the launch follows the work already on `stream`, and the
    /// outputs are ready when `stream` reaches this point. Shapes, dtypes, alignment and
    /// overlaps are checked against the manifest first, then that every tensor lies inside
    /// one allocation of GPU memory on this device (a host pointer is refused with the
    /// tensor's name, never dereferenced). On an error nothing was enqueued.
    pub fn run_device(&self, tensors: &[TensorRef], stream: *mut std::ffi::c_void) -> Result<(), Error> {
        let (dims, grid) = self.prepare(tensors)?;
        self.launch_device(tensors, &dims, grid, stream)
    }

    /// Times the kernel alone: copies the (host) `tensors` to GPU 0 once, runs the kernel
    /// once to warm up and `runs` times timed by CUDA events around each launch, then copies
    /// the outputs back into the caller's buffers. The time of each timed run.
    pub fn time_kernel(&self, tensors: &[TensorRef], runs: usize) -> Result<Vec<std::time::Duration>, Error> {
        let (dims, grid) = self.prepare(tensors)?;
        self.time_device(tensors, &dims, grid, runs)
    }

    #[cfg(not(feature = "cuda"))]
    fn time_device(&self, _: &[TensorRef], _: &[i64], _: Grid, _: usize) -> Result<Vec<std::time::Duration>, Error> {
        Err(Error::NotCompiledWithCuda)
    }

    #[cfg(feature = "cuda")]
    fn time_device(
        &self,
        tensors: &[TensorRef],
        dims: &[i64],
        grid: Grid,
        runs: usize,
    ) -> Result<Vec<std::time::Duration>, Error> {
        let mut times = Vec::new();
        self.with_device(|d| {
            times = d.time(&self.manifest, tensors, dims, grid, runs)?;
            Ok(())
        })?;
        Ok(times)
    }

    /// The tensors checked against the manifest: the runtime dims and the launch.
    fn prepare(&self, tensors: &[TensorRef]) -> Result<(Vec<i64>, Grid), Error> {
        let sizes = bind::bind(&self.manifest, tensors)?;
        let m = &self.manifest;
        let dims: Vec<i64> =
            m.dims.iter().zip(&sizes).filter(|(d, _)| d.size.is_none()).map(|(_, s)| *s as i64).collect();
        // The grid of the manifest's launch (checked to be one when the artifact was loaded).
        let grid = match &m.launch {
            crate::manifest::Launch::Grid { work_items, threads, items_per_block, shared_bytes } => Grid {
                items: m.eval(work_items, &sizes).map_err(Error::Manifest)?,
                threads: *threads,
                items_per_block: u64::from(*items_per_block),
                shared_bytes: m.eval(shared_bytes, &sizes).map_err(Error::Manifest)?,
            },
            crate::manifest::Launch::Range { .. } => {
                return Err(Error::Manifest("a GPU artifact whose launch is a range".into()))
            }
        };
        if grid.shared_bytes > MAX_SHARED_BYTES {
            return Err(Error::Manifest(format!(
                "kernel `{}` needs {} bytes of shared memory per block at these sizes; a block has at most {MAX_SHARED_BYTES}",
                m.entry, grid.shared_bytes
            )));
        }
        Ok((dims, grid))
    }

    #[cfg(not(feature = "cuda"))]
    fn launch(&self, _: &[TensorRef], _: &[i64], _: Grid) -> Result<(), Error> {
        Err(Error::NotCompiledWithCuda)
    }

    #[cfg(not(feature = "cuda"))]
    fn launch_device(&self, _: &[TensorRef], _: &[i64], _: Grid, _: *mut std::ffi::c_void) -> Result<(), Error> {
        Err(Error::NotCompiledWithCuda)
    }

    #[cfg(feature = "cuda")]
    fn launch(&self, tensors: &[TensorRef], dims: &[i64], grid: Grid) -> Result<(), Error> {
        self.with_device(|d| d.run(&self.manifest, tensors, dims, grid))
    }

    #[cfg(feature = "cuda")]
    fn launch_device(
        &self,
        tensors: &[TensorRef],
        dims: &[i64],
        grid: Grid,
        stream: *mut std::ffi::c_void,
    ) -> Result<(), Error> {
        self.with_device(|d| d.run_device(&self.manifest, tensors, dims, grid, stream.cast()))
    }

    /// `f` on GPU 0 with the kernel loaded: once per layer, by the first run.
    #[cfg(feature = "cuda")]
    fn with_device(&self, f: impl FnOnce(&imp::Device) -> Result<(), Error>) -> Result<(), Error> {
        let mut slot = self.device.lock().unwrap_or_else(|p| p.into_inner());
        let device = match slot.take() {
            Some(d) => d,
            None => imp::Device::open(&self.ptx, &self.manifest)?,
        };
        let result = f(&device);
        *slot = Some(device);
        result
    }
}

/// A launch at the call's sizes.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Grid {
    /// Work items.
    items: u64,
    /// Threads per block.
    threads: u32,
    /// Work items per block.
    items_per_block: u64,
    /// Dynamic shared memory per block.
    shared_bytes: u64,
}

/// Shared memory a block may have on sm_80 and later (opted in past 48 KiB).
const MAX_SHARED_BYTES: u64 = 227 * 1024;

/// The name of GPU 0 when the CUDA driver is installed and sees a GPU; otherwise the reason
/// it cannot be used ([`Error::NoGpu`] or [`Error::NotCompiledWithCuda`]).
pub fn cuda_device() -> Result<String, Error> {
    #[cfg(feature = "cuda")]
    {
        imp::device_name()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(Error::NotCompiledWithCuda)
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use super::Grid;
    use crate::manifest::Manifest;
    use crate::{Error, TensorRef};
    use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;

    /// The most blocks one launch has (grid x is at most 2^31 - 1).
    const MAX_BLOCKS: u64 = 1 << 30;

    impl Grid {
        /// The launches that cover every work item: (begin, end, blocks) each.
        fn launches(self) -> Vec<(i64, i64, u32)> {
            let per_launch = MAX_BLOCKS * self.items_per_block;
            let mut out = Vec::new();
            let mut begin = 0u64;
            while begin < self.items {
                let n = (self.items - begin).min(per_launch);
                out.push((begin as i64, (begin + n) as i64, n.div_ceil(self.items_per_block) as u32));
                begin += n;
            }
            out
        }
    }

    /// Shared memory a block gets without opting in.
    const DEFAULT_SHARED_BYTES: u64 = 48 * 1024;

    fn no_gpu(why: impl std::fmt::Display) -> Error {
        Error::NoGpu(why.to_string())
    }

    fn cuda(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
        move |e| Error::Cuda(format!("{what}: {e}"))
    }

    /// Runs `f`, turning a panic inside cudarc (a driver library without a symbol it
    /// expects, say) into an error.
    fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Cuda(format!("{what}: the CUDA driver library failed: {msg}")))
        })
    }

    /// A context on GPU 0, checking first that the driver library can be loaded at all
    /// (cudarc panics when it cannot).
    fn context() -> Result<Arc<CudaContext>, Error> {
        // Only probes dlopen of the driver's library names; nothing is called.
        #[allow(unsafe_code)]
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        if !present {
            return Err(no_gpu("the NVIDIA driver library (libcuda.so.1) cannot be loaded"));
        }
        guarded("opening GPU 0", || CudaContext::new(0).map_err(no_gpu))
    }

    pub(super) fn device_name() -> Result<String, Error> {
        let ctx = context()?;
        guarded("reading the name of GPU 0", || {
            let name = ctx.name().map_err(cuda("reading the name of GPU 0"))?;
            let (major, minor) = ctx.compute_capability().map_err(cuda("reading the compute capability of GPU 0"))?;
            Ok(format!("{name} (sm_{major}{minor})"))
        })
    }

    /// GPU 0 with the layer's kernel loaded.
    pub(super) struct Device {
        stream: Arc<CudaStream>,
        /// Which GPU.
        ordinal: i32,
        func: CudaFunction,
        // Keeps the module loaded while `func` is used.
        _module: Arc<CudaModule>,
    }

    impl Device {
        pub(super) fn open(ptx: &str, m: &Manifest) -> Result<Self, Error> {
            let ctx = context()?;
            guarded("loading the PTX", || {
                let module = ctx
                    .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                    .map_err(cuda(&format!("the CUDA driver rejected the PTX of layer `{}`", m.layer)))?;
                let func =
                    module.load_function(&m.entry).map_err(cuda(&format!("no kernel `{}` in the PTX", m.entry)))?;
                Ok(Device { stream: ctx.default_stream(), ordinal: ctx.ordinal() as i32, func, _module: module })
            })
        }

        /// Lets the kernel have the launch's shared memory past the default 48 KiB.
        fn set_shared(&self, grid: Grid) -> Result<(), Error> {
            if grid.shared_bytes > DEFAULT_SHARED_BYTES {
                self.func
                    .set_attribute(
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        grid.shared_bytes as i32,
                    )
                    .map_err(cuda(&format!("asking for {} bytes of shared memory", grid.shared_bytes)))?;
            }
            Ok(())
        }

        /// Copies, launches, copies back. `tensors` were checked against `m` by the caller.
        pub(super) fn run(&self, m: &Manifest, tensors: &[TensorRef], dims: &[i64], grid: Grid) -> Result<(), Error> {
            guarded("running the layer", || self.run_checked(m, tensors, dims, grid))
        }

        fn run_checked(&self, m: &Manifest, tensors: &[TensorRef], dims: &[i64], grid: Grid) -> Result<(), Error> {
            let (bufs, on_device) = self.upload(m, tensors)?;
            self.run_device(m, &on_device, dims, grid, self.stream.cu_stream())?;
            self.stream.synchronize().map_err(cuda(&format!("running kernel `{}`", m.entry)))?;
            self.download(tensors, &on_device, &bufs)
        }

        /// Copies every tensor of `m` to the GPU (outputs too: what the kernel leaves
        /// unwritten comes back unchanged); the buffers, and the tensors at their device
        /// addresses.
        fn upload<'t>(
            &self,
            m: &Manifest,
            tensors: &[TensorRef<'t>],
        ) -> Result<(Vec<CudaSlice<u8>>, Vec<TensorRef<'t>>), Error> {
            let s = &self.stream;
            let by_name: std::collections::BTreeMap<&str, &TensorRef> = tensors.iter().map(|t| (t.name, t)).collect();
            let (mut bufs, mut on_device) = (Vec::new(), Vec::new());
            for info in &m.tensors {
                let t = by_name
                    .get(info.name.as_str())
                    .copied()
                    .ok_or_else(|| Error::Tensors(vec![format!("missing tensor `{}`", info.name)]))?;
                let host = host_bytes(t);
                let buf = if host.is_empty() { s.alloc_zeros::<u8>(1) } else { s.clone_htod(host) };
                let buf = buf.map_err(cuda(&format!("copying tensor `{}` to the GPU", t.name)))?;
                on_device.push(TensorRef { data: buf.device_ptr(s).0 as usize as *const u8, ..*t });
                bufs.push(buf);
            }
            Ok((bufs, on_device))
        }

        /// Copies the outputs among `on_device` (held in `bufs`) back into the caller's
        /// `tensors`, all of them read before any is written.
        fn download(
            &self,
            tensors: &[TensorRef],
            on_device: &[TensorRef],
            bufs: &[CudaSlice<u8>],
        ) -> Result<(), Error> {
            let s = &self.stream;
            let mut outs = Vec::new();
            for (d, buf) in on_device.iter().zip(bufs) {
                if d.writable && d.bytes > 0 {
                    outs.push((d.name, s.clone_dtoh(buf).map_err(cuda(&format!("copying output `{}` back", d.name)))?));
                }
            }
            s.synchronize().map_err(cuda("copying the outputs back"))?;
            for (name, data) in outs {
                let Some(t) = tensors.iter().find(|t| t.name == name) else { continue };
                // The caller gave `t` writable with `t.bytes` bytes (checked by bind).
                #[allow(unsafe_code)]
                let dst = unsafe { std::slice::from_raw_parts_mut(t.data.cast_mut(), t.bytes) };
                dst.copy_from_slice(&data[..t.bytes]);
            }
            Ok(())
        }
    }

    impl Device {
        /// Enqueues the launch on `stream` over the caller's device buffers. `tensors` were
        /// checked against `m` by the caller; their addresses are checked here.
        pub(super) fn run_device(
            &self,
            m: &Manifest,
            tensors: &[TensorRef],
            dims: &[i64],
            grid: Grid,
            stream: sys::CUstream,
        ) -> Result<(), Error> {
            guarded("running the layer on device memory", || {
                self.stream.context().bind_to_thread().map_err(cuda("making GPU 0's context current"))?;
                let by_name: std::collections::BTreeMap<&str, &TensorRef> =
                    tensors.iter().map(|t| (t.name, t)).collect();
                let mut table = Vec::with_capacity(m.tensors.len());
                let mut problems = Vec::new();
                for info in &m.tensors {
                    let t = by_name
                        .get(info.name.as_str())
                        .copied()
                        .ok_or_else(|| Error::Tensors(vec![format!("missing tensor `{}`", info.name)]))?;
                    if let Err(why) = in_device_memory(t, self.ordinal) {
                        problems.push(format!("tensor `{}`: {why}", t.name));
                    }
                    table.push(t.data as u64);
                }
                if !problems.is_empty() {
                    return Err(Error::Tensors(problems));
                }
                self.set_shared(grid)?;
                let dims: Vec<i64> = dims.iter().copied().chain([0]).collect();
                // The table and the dims in stream-ordered allocations: copied from this
                // (pageable) memory before the copy call returns, freed after the kernel.
                let bytes = |n: usize| n * 8;
                #[allow(unsafe_code)]
                // Sound: allocations of the sizes copied into them, on the caller's stream;
                // the kernel's signature (ptr, ptr, i64, i64) is the manifest's contract, and
                // every tensor was checked to hold its shape in device memory.
                unsafe {
                    let table_d = result::malloc_async(stream, bytes(table.len()))
                        .map_err(cuda("allocating the buffer table"))?;
                    let dims_d = match result::malloc_async(stream, bytes(dims.len())) {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = result::free_async(table_d, stream);
                            return Err(cuda("allocating the dims")(e));
                        }
                    };
                    let enqueued = (|| {
                        result::memcpy_htod_async(table_d, &table, stream).map_err(cuda("copying the buffer table"))?;
                        result::memcpy_htod_async(dims_d, &dims, stream).map_err(cuda("copying the dims"))?;
                        for (b, e, blocks) in grid.launches() {
                            let (mut t, mut d, mut b, mut e) = (table_d, dims_d, b, e);
                            let mut params: [*mut std::ffi::c_void; 4] = [
                                (&mut t as *mut u64).cast(),
                                (&mut d as *mut u64).cast(),
                                (&mut b as *mut i64).cast(),
                                (&mut e as *mut i64).cast(),
                            ];
                            result::launch_kernel(
                                self.func.cu_function(),
                                (blocks, 1, 1),
                                (grid.threads, 1, 1),
                                grid.shared_bytes as u32,
                                stream,
                                &mut params,
                            )
                            .map_err(cuda(&format!("launching kernel `{}`", m.entry)))?;
                        }
                        Ok(())
                    })();
                    let freed = result::free_async(table_d, stream).and(result::free_async(dims_d, stream));
                    enqueued?;
                    freed.map_err(cuda("freeing the buffer table"))?;
                }
                Ok(())
            })
        }
    }

    impl Device {
        /// Uploads, runs once and `runs` times between events, downloads the outputs.
        pub(super) fn time(
            &self,
            m: &Manifest,
            tensors: &[TensorRef],
            dims: &[i64],
            grid: Grid,
            runs: usize,
        ) -> Result<Vec<std::time::Duration>, Error> {
            guarded("timing the layer", || {
                let s = &self.stream;
                let (bufs, on_device) = self.upload(m, tensors)?;
                let ctx = s.context();
                let event =
                    || ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda("making an event"));
                let raw = s.cu_stream();
                let mut times = Vec::with_capacity(runs);
                for r in 0..=runs {
                    let (a, b) = (event()?, event()?);
                    a.record(s).map_err(cuda("recording an event"))?;
                    self.run_device(m, &on_device, dims, grid, raw)?;
                    b.record(s).map_err(cuda("recording an event"))?;
                    b.synchronize().map_err(cuda(&format!("running kernel `{}`", m.entry)))?;
                    let ms = a.elapsed_ms(&b).map_err(cuda("reading an event"))?;
                    if r > 0 {
                        times.push(std::time::Duration::from_secs_f64(f64::from(ms) / 1e3));
                    }
                }
                self.download(tensors, &on_device, &bufs)?;
                Ok(times)
            })
        }
    }

    /// Whether `t` lies inside one allocation of GPU memory of device `ordinal`, or why not
    /// (the driver's pointer attributes; a host pointer is unknown to them).
    fn in_device_memory(t: &TensorRef, ordinal: i32) -> Result<(), String> {
        let ptr = t.data as u64;
        let attr = |a: sys::CUpointer_attribute, out: *mut std::ffi::c_void| {
            // Sound: `out` points at a value of the size the attribute writes.
            #[allow(unsafe_code)]
            unsafe {
                sys::cuPointerGetAttribute(out, a, ptr)
            }
        };
        let mut kind: u32 = 0;
        let not_gpu = || format!("{:p} is not GPU memory (a host pointer?); pass a device address", t.data);
        if attr(sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (&mut kind as *mut u32).cast())
            != sys::CUresult::CUDA_SUCCESS
        {
            return Err(not_gpu());
        }
        if kind != sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32 {
            return Err(format!("{:p} is host memory the GPU can map, not device memory", t.data));
        }
        let mut device: i32 = -1;
        attr(sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, (&mut device as *mut i32).cast());
        if device != ordinal {
            return Err(format!("{:p} is memory of GPU {device}; this layer runs on GPU {ordinal}", t.data));
        }
        let (mut start, mut size): (u64, usize) = (0, 0);
        let ok = attr(sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, (&mut start as *mut u64).cast())
            == sys::CUresult::CUDA_SUCCESS
            && attr(sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_RANGE_SIZE, (&mut size as *mut usize).cast())
                == sys::CUresult::CUDA_SUCCESS;
        let end = start.saturating_add(size as u64);
        if !ok || ptr.saturating_add(t.bytes as u64) > end {
            return Err(format!(
                "{} bytes from {:p} pass the end of its allocation ({} bytes from {:#x})",
                t.bytes, t.data, size, start
            ));
        }
        Ok(())
    }

    fn host_bytes<'a>(t: &TensorRef<'a>) -> &'a [u8] {
        if t.bytes == 0 {
            return &[];
        }
        // A TensorRef points at `bytes` readable bytes for its lifetime (checked by bind).
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(t.data, t.bytes)
        }
    }
}
