//! `ssmc run --target cpu`: builds the layer's artifact (once, into the cache), loads it
//! with ssmc-runtime and runs it on the inputs converted to the declared dtypes.

use ssmc_compiler::forms::{Form, Plan};
use ssmc_compiler::ir::{DType, Io, Layer};
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors::{RawTensors, TensorData, TensorMap};
use ssmc_compiler::{artifact, back};
use ssmc_runtime::{CpuLayer, TensorRef};
use std::time::{Duration, Instant};

/// Outputs of a native run and the time of each timed repetition.
pub struct NativeRun {
    /// Outputs by name, widened to f64.
    pub outputs: TensorMap,
    /// Wall time of each run after the warm-up (one entry without `--bench`).
    pub times: Vec<Duration>,
    /// On the GPU with `--bench`: the kernel's own time of each run (CUDA events, the
    /// tensors already in GPU memory), where `times` includes the copies.
    pub kernel_times: Option<Vec<Duration>>,
}

/// The inputs of a native run: generated (f64), or a file's bytes handed to the kernel as
/// they are where their dtype is the declared one (no copy at all).
pub enum Inputs {
    /// f64 tensors by name, converted (and dropped) one at a time.
    Map(TensorMap),
    /// A safetensors file as read.
    Raw(RawTensors),
}

enum Buf {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    /// Bytes of the file, already in the declared dtype.
    File(DType, String),
}

fn convert(t: &ssmc_compiler::ir::Tensor, data: &[f64]) -> Buf {
    match t.dtype {
        DType::Bf16 => Buf::Bf16(data.iter().map(|v| half::bf16::from_f64(*v).to_bits()).collect()),
        _ => Buf::F32(data.iter().map(|v| *v as f32).collect()),
    }
}

/// `n` NaNs for output `name`; a failed allocation is an error, not an abort.
fn nan_filled(name: &str, n: usize) -> Result<Vec<f32>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| format!("cannot allocate output `{name}` ({n} elements of f32): not enough memory"))?;
    v.resize(n, f32::NAN);
    Ok(v)
}

/// The directory of `layer`'s artifact for `target` in `form`, built into the cache first
/// if it is not there yet.
pub fn cached_artifact(layer: &Layer, source: &str, target: &Target, form: Form) -> Result<std::path::PathBuf, String> {
    let dir = artifact::cache_dir(source, &layer.name, target, form);
    if !dir.join("manifest.json").exists() {
        let built =
            back::build(layer, &Plan::all(layer, form), target, back::Keep::default()).map_err(|e| e.to_string())?;
        artifact::write(&built, &dir).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

/// Runs the CPU artifact in `dir` of `layer` on `threads` threads (0: all cores); `bench` >
/// 0 adds a warm-up run and times `bench` runs.
pub fn run_cpu(
    layer: &Layer,
    dir: &std::path::Path,
    inputs: Inputs,
    outputs_shape: &[(String, Vec<usize>)],
    bench: usize,
    threads: usize,
) -> Result<NativeRun, String> {
    let lib = CpuLayer::load(dir).map_err(|e| e.to_string())?;
    run_with(layer, inputs, outputs_shape, bench, |refs| lib.run(refs, threads).map_err(|e| e.to_string()))
}

/// Converts the inputs to their declared dtypes, fills the outputs with NaN (so an element
/// the kernel fails to write shows), and calls `run` on them: once, or with `bench` > 0 once
/// to warm up and `bench` timed times.
pub fn run_with(
    layer: &Layer,
    mut inputs: Inputs,
    outputs_shape: &[(String, Vec<usize>)],
    bench: usize,
    mut run: impl FnMut(&[TensorRef]) -> Result<(), String>,
) -> Result<NativeRun, String> {
    let mut bufs: Vec<(String, Vec<usize>, Buf)> = Vec::new();
    for (_, t) in layer.tensors.iter().filter(|(_, t)| t.io == Io::Input) {
        let missing = || format!("missing input `{}`", t.name);
        let (shape, buf) = match &mut inputs {
            // Each f64 tensor is dropped once converted, so the two copies never coexist whole.
            Inputs::Map(map) => {
                let data = map.remove(&t.name).ok_or_else(missing)?;
                (data.shape.clone(), convert(t, &data.data))
            }
            Inputs::Raw(raw) => {
                let e = raw.entries.get(&t.name).ok_or_else(missing)?;
                // The kernels read f32 and bf16; a file already in the declared one is used as is.
                let native = matches!(t.dtype, DType::F32 | DType::Bf16);
                let aligned = raw.bytes(e).as_ptr() as usize % t.dtype.size() == 0;
                if native && e.dtype == t.dtype && aligned {
                    (e.shape.clone(), Buf::File(t.dtype, t.name.clone()))
                } else {
                    (e.shape.clone(), convert(t, &raw.to_f64(e)))
                }
            }
        };
        bufs.push((t.name.clone(), shape, buf));
    }
    // Outputs start as NaN, so an element the kernel fails to write shows.
    let mut outs: Vec<(String, Vec<usize>, Vec<f32>)> = outputs_shape
        .iter()
        .map(|(n, s)| Ok((n.clone(), s.clone(), nan_filled(n, s.iter().product())?)))
        .collect::<Result<_, String>>()?;
    let mut times = Vec::new();
    let runs = if bench == 0 { 1 } else { bench + 1 };
    for r in 0..runs {
        let mut refs: Vec<TensorRef> = bufs
            .iter()
            .map(|(n, s, b)| match b {
                Buf::F32(v) => TensorRef::input(n, v, s),
                Buf::Bf16(v) => TensorRef::input_bf16(n, v, s),
                Buf::File(dtype, name) => {
                    let Inputs::Raw(raw) = &inputs else { unreachable!("file buffers come from a file") };
                    let bytes = raw.bytes(&raw.entries[name]);
                    TensorRef {
                        name: n,
                        dtype: *dtype,
                        shape: s,
                        data: bytes.as_ptr(),
                        bytes: bytes.len(),
                        writable: false,
                    }
                }
            })
            .collect();
        refs.extend(outs.iter_mut().map(|(n, s, v)| TensorRef::output(n, v, s)));
        let start = Instant::now();
        run(&refs)?;
        if bench == 0 || r > 0 {
            times.push(start.elapsed());
        }
    }
    // The inputs go before the outputs are widened to f64: the peak holds one of the two.
    drop(bufs);
    drop(inputs);
    let outputs = outs
        .into_iter()
        .map(|(n, shape, v)| (n, TensorData { shape, data: v.into_iter().map(f64::from).collect() }))
        .collect();
    Ok(NativeRun { outputs, times, kernel_times: None })
}
