//! Runs a layer built by `ssmc build` through `ssmc-runtime` and checks its outputs
//! against a reference: `ssmc-example ARTIFACT_DIR IN.safetensors REF.safetensors`.
//! Inputs may be F32 or F64 (converted to f32); the runtime checks every shape.

use safetensors::{Dtype, SafeTensors};
use ssmc_runtime::{CpuLayer, TensorRef};
use std::process::ExitCode;

const TOLERANCE: f64 = 1e-5;

/// A tensor read from a file: name, shape, values.
type Tensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of a safetensors file, as f32.
fn read(path: &str) -> Result<Vec<Tensor>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => {
                raw.chunks_exact(8).map(|c| f64::from_le_bytes(std::array::from_fn(|i| c[i])) as f32).collect()
            }
            other => return Err(format!("{path}: tensor `{name}` is {other:?}, not F32 or F64")),
        };
        out.push((name, view.shape().to_vec(), data));
    }
    Ok(out)
}

/// The largest absolute difference over the largest |want|; infinite on a NaN.
fn max_rel_error(got: &[f32], want: &[f32]) -> f64 {
    let (mut diff, mut scale) = (0f64, f64::MIN_POSITIVE);
    for (&g, &w) in got.iter().zip(want) {
        let d = (g as f64 - w as f64).abs();
        diff = if d.is_nan() { f64::INFINITY } else { diff.max(d) };
        scale = scale.max((w as f64).abs());
    }
    diff / scale
}

/// Loads, runs, compares; whether every output is within the tolerance.
fn run(dir: &str, inputs: &str, reference: &str) -> Result<bool, String> {
    let layer = CpuLayer::load(dir.as_ref()).map_err(|e| e.to_string())?;
    let (inputs, want) = (read(inputs)?, read(reference)?);
    let mut outs: Vec<Vec<f32>> = want.iter().map(|(_, _, w)| vec![f32::NAN; w.len()]).collect();
    let mut tensors: Vec<TensorRef> =
        inputs.iter().map(|(name, shape, data)| TensorRef::input(name, data, shape)).collect();
    for ((name, shape, _), out) in want.iter().zip(&mut outs) {
        tensors.push(TensorRef::output(name, out, shape));
    }
    // Checks every tensor against manifest.json first: on an error nothing has run.
    layer.run(&tensors, 0).map_err(|e| e.to_string())?;
    let mut ok = true;
    for ((name, shape, w), got) in want.iter().zip(&outs) {
        let e = max_rel_error(got, w);
        ok &= e < TOLERANCE;
        let verdict = if e < TOLERANCE { "ok" } else { "FAILED" };
        println!(
            "{} rust: {name} {shape:?} max relative error {e:.2e} (tolerance {TOLERANCE:.0e}): {verdict}",
            layer.manifest().layer
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, inputs, reference] = args.as_slice() else {
        eprintln!("usage: ssmc-example ARTIFACT_DIR IN.safetensors REF.safetensors");
        return ExitCode::from(2);
    };
    match run(dir, inputs, reference) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
