//! `ssmc run`: binds the sizes, checks the output paths and the memory the run needs, then
//! runs the layer (interpreter, a form's f64 specification, or native code) and writes
//! its files and summary.

use crate::args::{DTypeArg, RunArgs};
use crate::{fail, gpu, load_with_source, median, memory, native, out, pick_layer, summary, Failed};
use ssmc_compiler::back::{self, PlanError};
use ssmc_compiler::bind::{sizes_from_dims, sizes_from_shapes, Sizes};
use ssmc_compiler::forms::egraph::{self, Choice};
use ssmc_compiler::forms::{self, Form};
use ssmc_compiler::ir::{Io, Layer};
use ssmc_compiler::outpath::{self, Role};
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors::{self, OutDType};
use ssmc_syntax::Span;
use std::collections::BTreeMap;

/// Runs `ssmc run`.
pub fn run(args: &RunArgs, color: bool) -> Result<(), Failed> {
    let (layers, file) = load_with_source(&args.file, color)?;
    let layer = pick_layer(&layers, args.layer.as_deref())?;
    check_paths(args)?;
    // `None`: the interpreter.
    let target = args.target().map_err(fail)?;
    if let Some(t) = &target {
        t.check().map_err(fail)?;
    }
    // Native runs hand a file's tensors to the kernels as they are; the f64 paths read them as f64.
    let native = target.is_some() && args.emit_matrix.is_none();
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
    let (choice, native_form) =
        plan(args, target.as_ref(), layer, &sizes, &|sp| file.line_col(sp.start).0).map_err(fail)?;
    let native_form = target.as_ref().zip(native_form);
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
    let mut kernel_times = None;
    let (outputs, times, target, plan) = match native_form {
        None => {
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
        Some((target, form)) => {
            let shapes: Vec<(String, Vec<usize>)> =
                layer.outputs().map(|(_, t)| (t.name.clone(), sizes.shape(&t.shape))).collect();
            let inputs = std::mem::replace(&mut inputs, native::Inputs::Map(tensors::TensorMap::new()));
            let dir = native::cached_artifact(layer, &file.text, target, form).map_err(fail)?;
            let run = match target {
                Target::Cpu { .. } => native::run_cpu(layer, &dir, inputs, &shapes, bench, args.threads),
                Target::Cuda { .. } => gpu::run_cuda(layer, &dir, inputs, &shapes, bench),
            }
            .map_err(fail)?;
            kernel_times = run.kernel_times;
            (run.outputs, run.times, target.name(), forms::Plan { forms: vec![form; plan.forms.len()] })
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
    if let Some(k) = &kernel_times {
        s.set_kernel_times(k);
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

/// What `ssmc run` plans at `sizes`: the cost model's choice and, on a native `target`, the
/// form its artifact is built in (see [`back::plan`]). A native target plans with its
/// own cost model; the interpreter (`None`) with the CPU's, as only the legality of a forced
/// form and the number of scans matter to it.
fn plan(
    args: &RunArgs,
    target: Option<&Target>,
    layer: &Layer,
    sizes: &Sizes,
    line_of: &dyn Fn(Span) -> usize,
) -> Result<(Choice, Option<Form>), String> {
    let Some(target) = target else {
        return Ok((egraph::choose(layer, sizes, &Target::cpu(args.cpu.clone()), line_of), None));
    };
    // Only a forced form can be refused; its f64 specification still runs.
    let p = back::plan(layer, sizes, target, args.form, line_of).map_err(|e| match (&e, args.form) {
        (PlanError::NoSchedule(_), Some(f)) => format!("{e}; `--target interp --form {f}` runs its f64 specification"),
        _ => e.to_string(),
    })?;
    let form = p.form();
    Ok((p.choice, Some(form)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    /// What `ssmc run stdlib/s4d.ssm --dim L=65536 ARGS...` plans: the forms the cost model
    /// chooses and the form of native code.
    fn s4d_plan(extra: &[&str]) -> Result<(Vec<Form>, Option<Form>), String> {
        let argv = ["ssmc", "run", "stdlib/s4d.ssm", "--dim", "L=65536"].iter().chain(extra);
        let Command::Run(args) = Cli::try_parse_from(argv).expect("parses").command else { panic!("not run") };
        let layer = ssmc_compiler::compile(include_str!("../../stdlib/s4d.ssm")).expect("checks").0.layers.remove(0);
        let dims: BTreeMap<String, usize> = args.dims.iter().cloned().collect();
        let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
        let target = args.target().expect("a target");
        plan(&args, target.as_ref(), &layer, &sizes, &|_| 0).map(|(choice, form)| (choice.plan.forms, form))
    }

    /// S4D at L = 65536: the GPU's cost model chooses the block scan (its cheapest form with
    /// a GPU schedule: conv, cheaper still, has none yet; 128 sequences cannot fill the GPU
    /// with a thread each), the CPU's the recurrence (`ssmc explain` shows both). `run
    /// --target cuda` once planned with the CPU's.
    #[test]
    fn run_plans_with_the_cost_model_of_its_target() {
        for cuda in ["cuda", "ptx"] {
            assert_eq!(s4d_plan(&["--target", cuda]), Ok((vec![Form::Scan], Some(Form::Scan))), "--target {cuda}");
        }
        assert_eq!(s4d_plan(&["--target", "cpu"]), Ok((vec![Form::Recurrent], Some(Form::Recurrent))));
        assert_eq!(s4d_plan(&["--target", "interp"]), Ok((vec![Form::Recurrent], None)));
        assert_eq!(s4d_plan(&[]), Ok((vec![Form::Recurrent], None)));
    }

    #[test]
    fn a_forced_form_without_a_gpu_schedule_is_refused_by_name() {
        let msg = s4d_plan(&["--target", "cuda", "--form", "conv"]).expect_err("refused");
        assert!(msg.contains("form conv has no GPU schedule yet"), "{msg}");
        assert!(msg.contains("`--target interp --form conv` runs its f64 specification"), "{msg}");
        assert_eq!(s4d_plan(&["--target", "cpu", "--form", "conv"]), Ok((vec![Form::Recurrent], Some(Form::Conv))));
    }
}
