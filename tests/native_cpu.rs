//! Native CPU code of the stdlib layers against the f64 reference interpreter.

use ssmc_compiler::artifact::{self, BuildTarget};
use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::{interp, tensors};
use ssmc_runtime::{CpuLayer, TensorRef};
use std::collections::BTreeMap;

fn layer(name: &str) -> Layer {
    let src = std::fs::read_to_string(format!("{}/../stdlib/{name}.ssm", env!("CARGO_MANIFEST_DIR"))).expect("read");
    ssmc_compiler::compile(&src).expect("compiles").0.layers.remove(0)
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    num / b.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-300)
}

/// Runs the native layer on `inputs` (as f32) and returns its outputs as f64.
fn run_native(lib: &CpuLayer, inputs: &tensors::TensorMap, outputs: &tensors::TensorMap, threads: usize) -> tensors::TensorMap {
    let f32s: BTreeMap<&str, Vec<f32>> = inputs.iter().map(|(k, v)| (k.as_str(), v.data.iter().map(|x| *x as f32).collect())).collect();
    // Poisoned: an element the kernel does not write stays NaN and fails the comparison.
    let mut outs: BTreeMap<&str, Vec<f32>> = outputs.iter().map(|(k, v)| (k.as_str(), vec![f32::NAN; v.data.len()])).collect();
    {
        let mut refs: Vec<TensorRef> = inputs.iter().map(|(k, v)| TensorRef::input(k, &f32s[k.as_str()], &v.shape)).collect();
        for (k, buf) in outs.iter_mut() {
            refs.push(TensorRef::output(k, buf, &outputs[*k].shape));
        }
        lib.run(&refs, threads).expect("runs");
    }
    outs.into_iter()
        .map(|(k, v)| (k.to_string(), tensors::TensorData { shape: outputs[k].shape.clone(), data: v.into_iter().map(f64::from).collect() }))
        .collect()
}

#[test]
fn stdlib_layers_match_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["mamba1", "mamba2", "s4d", "vim"] {
        let layer = layer(name);
        let out = dir.path().join(name);
        artifact::build(&layer, &BuildTarget::Cpu { cpu: "native".into() }, &out).unwrap_or_else(|e| panic!("{name}: {e}"));
        let lib = CpuLayer::load(&out).expect("loads");
        for l in [1usize, 7, 63, 500] {
            let dims: BTreeMap<String, usize> = [("L".to_string(), l), ("D".to_string(), 37), ("H".to_string(), if name == "mamba2" { 5 } else { 37 })]
                .into_iter()
                .filter(|(k, _)| layer.dims.iter().any(|(_, d)| &d.name == k))
                .collect();
            let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
            let inputs = tensors::generate_inputs(&layer, &sizes, 11);
            // Round inputs to f32 first so both sides see the same values.
            let inputs: tensors::TensorMap = inputs.into_iter().map(|(k, mut v)| {
                v.data.iter_mut().for_each(|x| *x = *x as f32 as f64);
                (k, v)
            }).collect();
            let want = interp::run(&layer, &sizes, &inputs);
            let got = run_native(&lib, &inputs, &want, 0);
            for (k, w) in &want {
                let e = rel_err(&got[k].data, &w.data);
                println!("{name} L={l} {k}: rel err {e:.2e}");
                assert!(e < 1e-5, "{name} L={l} output {k}: relative error {e:e}");
            }
        }
    }
}
