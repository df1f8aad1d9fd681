//! `ssmc run`: binds the sizes, checks the output paths and the memory the run needs, then
//! runs the layer (interpreter, a form's f64 specification, or native code) and writes
//! its files and summary.

use crate::args::{DTypeArg, RunArgs, Target};
use crate::{fail, gpu, load_with_source, median, memory, native, out, pick_layer, summary, Failed};
use ssmc_compiler::bind::{sizes_from_dims, sizes_from_shapes, Sizes};
use ssmc_compiler::forms::{self, cost, egraph};
use ssmc_compiler::ir::{Io, Layer};
use ssmc_compiler::outpath::{self, Role};
use ssmc_compiler::tensors::{self, OutDType};
use std::collections::BTreeMap;

/// Runs `ssmc run`.
pub fn run(args: &RunArgs, color: bool) -> Result<(), Failed> {
    let (layers, file) = load_with_source(&args.file, color)?;
    let layer = pick_layer(&layers, args.layer.as_deref())?;
    check_paths(args)?;
    if args.target == Target::Cpu {
        ssmc_compiler::artifact::BuildTarget::Cpu { cpu: args.cpu.clone() }.check().map_err(fail)?;
    }
    // Native runs hand a file's tensors to the kernels as they are; the f64 paths read them as f64.
    let native = args.target != Target::Interp && args.emit_matrix.is_none();
    let (sizes, mut inputs, source) = match &args.inputs {
        Some(path) => {
            let raw = tensors::RawTensors::read(path).map_err(fail)?;
            let sizes = sizes_from_shapes(layer, &raw.shapes()).map_err(|e| {
                fail(format!("the inputs in `{}` do not fit layer `{}`:\n{e}", path.display(), layer.name))
            })?;
            need(args, layer, &sizes, native, Some(raw.file_bytes() as u64)).check(layer, &sizes).map_err(fail)?;
            let inputs = if native { native::Inputs::Raw(raw) } else { native::Inputs::Map(raw.to_map()) };
            (sizes, inputs, summary::InputSource::File(path.display().to_string()))
        }
        None => {
            let dims: BTreeMap<String, usize> = args.dims.iter().cloned().collect();
            let sizes = sizes_from_dims(layer, &dims).map_err(fail)?;
            need(args, layer, &sizes, native, None).check(layer, &sizes).map_err(fail)?;
            let inputs = tensors::generate_inputs(layer, &sizes, args.seed);
            if let Some(path) = &args.save_inputs {
                tensors::write_inputs(path, layer, &inputs).map_err(fail)?;
            }
            (sizes, native::Inputs::Map(inputs), summary::InputSource::Generated { seed: args.seed })
        }
    };
    let choice = egraph::choose(layer, &sizes, cost::Target::Cpu, &|sp| file.line_col(sp.start).0);
    // A forced form runs its f64 specification; otherwise the interpreter (the reference,
    // the recurrent form) runs, and native targets run what they have a schedule for.
    let plan = match args.form {
        Some(form) => choice.force(form).map_err(fail)?,
        None => forms::Plan { forms: vec![forms::Form::Recurrent; choice.plan.forms.len()] },
    };
    let empty = tensors::TensorMap::new();
    let f64_inputs = match &inputs {
        native::Inputs::Map(m) => m,
        native::Inputs::Raw(_) => &empty,
    };
    let run_f64 = |plan: &forms::Plan| match args.form {
        Some(_) => forms::run(layer, &sizes, f64_inputs, plan),
        None => ssmc_compiler::interp::run(layer, &sizes, f64_inputs),
    };
    let matrix = match &args.emit_matrix {
        Some(_) => Some(forms::mixer_matrix(layer, &sizes, f64_inputs).map_err(fail)?),
        None => None,
    };
    let bench = args.bench.unwrap_or(0);
    let (outputs, times, target, plan) = match args.target {
        Target::Interp => {
            let start = std::time::Instant::now();
            let mut outputs = run_f64(&plan);
            let mut times = vec![start.elapsed()];
            if bench > 0 {
                times.clear();
            }
            for _ in 0..bench {
                let start = std::time::Instant::now();
                outputs = run_f64(&plan);
                times.push(start.elapsed());
            }
            (outputs, times, "interp", plan)
        }
        Target::Cpu | Target::Cuda => {
            use ssmc_compiler::artifact::{self, BuildTarget};
            let (name, build_target) = match args.target {
                Target::Cpu => ("cpu", BuildTarget::Cpu { cpu: args.cpu.clone() }),
                _ => ("cuda", BuildTarget::Ptx),
            };
            // Only a forced form can be refused; its f64 specification still runs.
            let form =
                artifact::native_form(layer, &build_target, &choice, args.form).map_err(|e| match args.form {
                    Some(f) => fail(format!("{e}; `--target interp --form {f}` runs its f64 specification")),
                    None => fail(e),
                })?;
            let shapes: Vec<(String, Vec<usize>)> =
                layer.outputs().map(|(_, t)| (t.name.clone(), sizes.shape(&t.shape))).collect();
            let inputs = std::mem::replace(&mut inputs, native::Inputs::Map(tensors::TensorMap::new()));
            let dir = native::cached_artifact(layer, &file.text, &build_target, form).map_err(fail)?;
            let run = match args.target {
                Target::Cpu => native::run_cpu(layer, &dir, inputs, &shapes, bench, args.threads),
                _ => gpu::run_cuda(layer, &dir, inputs, &shapes, bench),
            }
            .map_err(fail)?;
            (run.outputs, run.times, name, forms::Plan { forms: vec![form; plan.forms.len()] })
        }
    };
    let elapsed = median(&times);
    if let (Some(path), Some(m)) = (&args.emit_matrix, matrix) {
        let mut t = tensors::TensorMap::new();
        t.insert("M".to_string(), m);
        tensors::write_safetensors(path, &t, OutDType::F32).map_err(fail)?;
    }
    if let Some(path) = &args.output {
        let dtype = match args.dtype {
            DTypeArg::F32 => OutDType::F32,
            DTypeArg::F64 => OutDType::F64,
        };
        tensors::write_safetensors(path, &outputs, dtype).map_err(fail)?;
    }
    let mut s = summary::Summary::new(layer, &args.file, target, &plan.to_string(), &sizes, source, &outputs, elapsed);
    if bench > 0 {
        s.set_bench(bench, &times);
    }
    if args.json {
        out::line(&s.to_json())?;
    } else {
        out::stdout(&s.to_string())?;
    }
    for w in s.warnings() {
        out::stderr(&format!("warning: {w}\n"));
    }
    Ok(())
}

/// Refuses, before any work, an output that cannot be written, that is a file the run
/// reads, or that is another output (see [`ssmc_compiler::outpath`]).
fn check_paths(args: &RunArgs) -> Result<(), Failed> {
    let mut reads = vec![Role { what: "the source", path: &args.file }];
    if let Some(p) = &args.inputs {
        reads.push(Role { what: "the --inputs file", path: p });
    }
    let writes: Vec<Role> =
        [("--save-inputs", &args.save_inputs), ("--output", &args.output), ("--emit-matrix", &args.emit_matrix)]
            .into_iter()
            .filter_map(|(what, p)| p.as_deref().map(|path| Role { what, path }))
            .collect();
    outpath::check_outputs(&reads, &writes).map_err(fail)
}

/// What the run keeps in memory at `sizes`, part by part (an upper bound: each part as if
/// all were alive at once). `file` is the size of the `--inputs` file.
fn need(args: &RunArgs, layer: &Layer, sizes: &Sizes, native: bool, file: Option<u64>) -> memory::Need {
    let (ins, outs) = (memory::io_elements(layer, sizes, Io::Input), memory::io_elements(layer, sizes, Io::Output));
    let mut n = memory::Need::default();
    if let Some(bytes) = file {
        n.add("the --inputs file", bytes);
    }
    if native {
        if file.is_none() {
            n.add("inputs as f64", ins.saturating_mul(8));
        }
        n.add("inputs in their dtypes", ins.saturating_mul(4));
        n.add("outputs as f32 and f64", outs.saturating_mul(12));
    } else {
        n.add("inputs as f64", ins.saturating_mul(8));
        n.add("interpreter state", memory::interpreter_state(layer, sizes, args.form.is_some()));
        n.add("outputs as f64", outs.saturating_mul(8));
    }
    if args.emit_matrix.is_some() {
        let d = ssmc_compiler::roles::Dims::new(layer, sizes);
        let m = [d.batch, d.heads, d.time, d.time].iter().fold(1u64, |a, &k| a.saturating_mul(k as u64));
        n.add("the mixer matrix", m.saturating_mul(8 + 8));
    }
    // A file is encoded whole, then serialized into a second buffer.
    let width = if matches!(args.dtype, DTypeArg::F64) { 8 } else { 4 };
    if args.output.is_some() {
        n.add("the --output file", outs.saturating_mul(width * 2));
    }
    if args.save_inputs.is_some() {
        n.add("the --save-inputs file", ins.saturating_mul(8 * 2));
    }
    n
}
