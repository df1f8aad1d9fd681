//! The `ssmc` command line: check, inspect and run `.ssm` layers.

mod gpu;
mod native;
mod summary;

use clap::{Parser, Subcommand, ValueEnum};
use ssmc_compiler::bind::{sizes_from_dims, sizes_from_shapes};
use ssmc_compiler::forms::{self, cost, egraph};
use ssmc_compiler::ir::Layer;
use ssmc_compiler::tensors::{self, OutDType};
use ssmc_compiler::{check_source, Checked, SourceFile};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// ssmc compiles state-space-model sequence layers written in the .ssm language.
#[derive(Parser)]
#[command(name = "ssmc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Color diagnostics: auto (when a terminal), always, never.
    #[arg(long, global = true, default_value = "auto")]
    color: ColorChoice,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Check .ssm files and report every error and warning; exit 1 on any error.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the layer IR of a .ssm file, as the compiler sees it.
    Ir {
        /// The file.
        file: PathBuf,
    },
    /// Run a layer on generated or given inputs and print a summary of its outputs.
    Run(RunArgs),
    /// Compile a layer to native code: a shared and a static library (cpu) or PTX (ptx),
    /// with a C header and manifest.json, written into a directory.
    Build(BuildArgs),
    /// Show every legal algorithmic form of a layer with its estimated cost, the one chosen,
    /// and why the others are illegal.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The .ssm file.
    file: PathBuf,
    /// Which layer of the file (needed when it declares several).
    #[arg(long)]
    layer: Option<String>,
    /// What to build for.
    #[arg(long, default_value = "cpu")]
    target: CostTarget,
    /// CPU to generate code for: native, x86-64-v3 (AVX2), x86-64-v4 (AVX-512).
    #[arg(long, default_value = "native")]
    cpu: String,
    /// The directory to write (created if needed; its files replaced).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// The algorithmic form to compile: recurrent (every target), chunked or chunked:Q (CPU,
    /// layers whose decay is shared by the state, as Mamba-2), conv (CPU, time-invariant
    /// layers). Without it: the cost model's choice at the sizes of `--dim`, or recurrent
    /// (right at every length) when no `--dim` is given.
    #[arg(long, value_name = "FORM", value_parser = forms::Form::parse)]
    form: Option<forms::Form>,
    /// Size of a runtime dim the cost model chooses the form at, e.g. `--dim L=65536`
    /// (repeatable). The artifact runs at any size.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    dims: Vec<(String, usize)>,
    /// Also write an intermediate form: `loops` (the loop IR) or `llvm` (optimized LLVM IR).
    #[arg(long, value_name = "WHAT")]
    emit: Vec<EmitWhat>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EmitWhat {
    /// The loop IR, as text.
    Loops,
    /// The optimized LLVM IR.
    Llvm,
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The .ssm file.
    file: PathBuf,
    /// Which layer of the file (needed when it declares several).
    #[arg(long)]
    layer: Option<String>,
    /// Size of a runtime dim the cost is estimated at, e.g. `--dim L=65536` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    dims: Vec<(String, usize)>,
    /// The target whose cost model chooses.
    #[arg(long, default_value = "cpu")]
    target: CostTarget,
}

#[derive(Clone, Copy, ValueEnum)]
enum CostTarget {
    /// x86-64 CPU.
    Cpu,
    /// NVIDIA GPU (PTX).
    Ptx,
}

impl CostTarget {
    fn target(self) -> cost::Target {
        match self {
            CostTarget::Cpu => cost::Target::Cpu,
            CostTarget::Ptx => cost::Target::Ptx,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// The .ssm file.
    file: PathBuf,
    /// Which layer of the file (needed when it declares several).
    #[arg(long)]
    layer: Option<String>,
    /// Size of a runtime dim for generated inputs, e.g. `--dim L=4096` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim, conflicts_with = "inputs")]
    dims: Vec<(String, usize)>,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 0, conflicts_with = "inputs")]
    seed: u64,
    /// Read the inputs from a safetensors file (F32, F64, BF16 or F16) instead of generating them.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Write the generated inputs to a safetensors file (each in its declared dtype), to rerun or compare elsewhere.
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    save_inputs: Option<PathBuf>,
    /// Write the outputs to a safetensors file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Element type of the written outputs.
    #[arg(long, default_value = "f32")]
    dtype: DTypeArg,
    /// Where to run: `interp` runs the f64 reference interpreter (or, with `--form`, that
    /// form's f64 specification); `cpu` compiles the
    /// layer to native code (cached) and runs it on all cores; `cuda` compiles it to PTX
    /// (cached) and runs it on GPU 0 through the CUDA driver.
    #[arg(long, default_value = "interp")]
    target: Target,
    /// CPU to generate code for with `--target cpu`: native, x86-64-v3 (AVX2), x86-64-v4 (AVX-512).
    #[arg(long, default_value = "native")]
    cpu: String,
    /// Threads for `--target cpu` (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Time N runs after a warm-up run and report the median.
    #[arg(long, value_name = "N")]
    bench: Option<usize>,
    /// The algorithmic form to run: recurrent, scan, chunked, chunked:Q, conv, quadratic;
    /// refused with the reason when illegal. With `--target interp` its f64 specification
    /// runs (default: the reference interpreter); with `--target cpu|cuda` its native code
    /// (default: the cheapest legal form with a native schedule; `ssmc explain` shows the
    /// estimates and the choice).
    #[arg(long, value_name = "FORM", value_parser = forms::Form::parse)]
    form: Option<forms::Form>,
    /// Write the materialized mixer matrix M (batch, channel, L, L) of the layer on these
    /// inputs to a safetensors file: y = M x before the gate, skip D on the diagonal.
    #[arg(long, value_name = "FILE")]
    emit_matrix: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DTypeArg {
    F32,
    F64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// The f64 reference interpreter, or the f64 specification of `--form`.
    Interp,
    /// Native x86-64 code through LLVM.
    Cpu,
    /// PTX for sm_90 through LLVM, run on GPU 0 by the CUDA driver.
    Cuda,
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, size) = s.split_once('=').ok_or_else(|| format!("expected NAME=SIZE, got `{s}`"))?;
    let size = size.trim().parse::<usize>().map_err(|_| format!("`{size}` is not a whole number"))?;
    Ok((name.trim().to_string(), size))
}

/// A failure already explained to the user.
struct Failed;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal(),
    };
    let result = match cli.command {
        Command::Check { files } => check(&files, color),
        Command::Ir { file } => load(&file, color).map(|m| m.iter().for_each(|l| print!("{l}"))),
        Command::Run(args) => run(&args, color),
        Command::Explain(args) => explain(&args, color),
        Command::Build(args) => build(&args, color),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed) => ExitCode::FAILURE,
    }
}

fn fail(msg: impl std::fmt::Display) -> Failed {
    eprintln!("error: {msg}");
    Failed
}

/// Reads and checks a file; prints its diagnostics (and warnings) to stderr.
fn checked(path: &Path, color: bool) -> Result<Checked, Failed> {
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?;
    let c = check_source(&path.display().to_string(), &bytes);
    let diags = match &c.result {
        Ok((_, warnings)) => warnings,
        Err(diags) => diags,
    };
    eprint!("{}", diags.render(&c.file, color));
    Ok(c)
}

fn load(path: &Path, color: bool) -> Result<Vec<Layer>, Failed> {
    load_with_source(path, color).map(|(layers, _)| layers)
}

fn load_with_source(path: &Path, color: bool) -> Result<(Vec<Layer>, SourceFile), Failed> {
    let c = checked(path, color)?;
    match c.result {
        Ok((m, _)) => Ok((m.layers, c.file)),
        Err(d) => Err(fail(format!(
            "`{}`: {} error{}",
            path.display(),
            d.error_count(),
            if d.error_count() == 1 { "" } else { "s" }
        ))),
    }
}

fn check(files: &[PathBuf], color: bool) -> Result<(), Failed> {
    let mut failed = false;
    for f in files {
        match load(f, color) {
            Ok(layers) => {
                let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                println!("{}: ok ({})", f.display(), names.join(", "));
            }
            Err(Failed) => failed = true,
        }
    }
    if failed {
        Err(Failed)
    } else {
        Ok(())
    }
}

fn run(args: &RunArgs, color: bool) -> Result<(), Failed> {
    let (layers, file) = load_with_source(&args.file, color)?;
    let layer = pick_layer(&layers, args.layer.as_deref())?;
    // Fail on an unwritable output before the work, and before --save-inputs writes anything.
    for path in [&args.save_inputs, &args.output, &args.emit_matrix].into_iter().flatten() {
        tensors::check_writable(path).map_err(fail)?;
    }
    // Native runs hand a file's tensors to the kernels as they are; the f64 paths read them as f64.
    let native = args.target != Target::Interp && args.emit_matrix.is_none();
    let (sizes, mut inputs, source) = match &args.inputs {
        Some(path) => {
            let raw = tensors::RawTensors::read(path).map_err(fail)?;
            let sizes = sizes_from_shapes(layer, &raw.shapes()).map_err(|e| {
                fail(format!("the inputs in `{}` do not fit layer `{}`:\n{e}", path.display(), layer.name))
            })?;
            let inputs = if native { native::Inputs::Raw(raw) } else { native::Inputs::Map(raw.to_map()) };
            (sizes, inputs, summary::InputSource::File(path.display().to_string()))
        }
        None => {
            let dims: BTreeMap<String, usize> = args.dims.iter().cloned().collect();
            let sizes = sizes_from_dims(layer, &dims).map_err(fail)?;
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
        println!("{}", s.to_json());
    } else {
        print!("{s}");
    }
    for w in s.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(())
}

fn pick_layer<'a>(layers: &'a [Layer], name: Option<&str>) -> Result<&'a Layer, Failed> {
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    match (name, layers) {
        (None, [one]) => Ok(one),
        (None, _) => Err(fail(format!(
            "the file declares {} layers ({}); choose one with --layer",
            layers.len(),
            names.join(", ")
        ))),
        (Some(n), _) => layers
            .iter()
            .find(|l| l.name == n)
            .ok_or_else(|| fail(format!("no layer `{n}` in the file (it declares: {})", names.join(", ")))),
    }
}

fn explain(args: &ExplainArgs, color: bool) -> Result<(), Failed> {
    let (layers, file) = load_with_source(&args.file, color)?;
    let layer = pick_layer(&layers, args.layer.as_deref())?;
    let dims: BTreeMap<String, usize> = args.dims.iter().cloned().collect();
    let sizes = sizes_from_dims(layer, &dims).map_err(fail)?;
    let target = args.target.target();
    let choice = egraph::choose(layer, &sizes, target, &|sp| file.line_col(sp.start).0);
    print!("{}", summary::explain_text(layer, &args.file, target, &sizes, &choice));
    Ok(())
}

/// The median of some durations (zero for none).
fn median(times: &[std::time::Duration]) -> std::time::Duration {
    let mut t = times.to_vec();
    t.sort();
    t.get(t.len() / 2).copied().unwrap_or_default()
}

fn build(args: &BuildArgs, color: bool) -> Result<(), Failed> {
    use ssmc_compiler::artifact::{self, BuildTarget};
    let start = std::time::Instant::now();
    let (layers, file) = load_with_source(&args.file, color)?;
    let layer = pick_layer(&layers, args.layer.as_deref())?;
    let target = match args.target {
        CostTarget::Cpu => BuildTarget::Cpu { cpu: args.cpu.clone() },
        CostTarget::Ptx => BuildTarget::Ptx,
    };
    let form = if args.form.is_none() && args.dims.is_empty() {
        forms::Form::Recurrent
    } else {
        let dims: BTreeMap<String, usize> = args.dims.iter().cloned().collect();
        let sizes = sizes_from_dims(layer, &dims).map_err(fail)?;
        let choice = egraph::choose(layer, &sizes, args.target.target(), &|sp| file.line_col(sp.start).0);
        artifact::native_form(layer, &target, &choice, args.form)
            .map_err(|e| fail(format!("cannot build layer `{}`: {e}", layer.name)))?
    };
    let m = artifact::build(layer, &target, form, &args.output)
        .map_err(|e| fail(format!("cannot build layer `{}`: {e}", layer.name)))?;
    for what in &args.emit {
        let kernel = artifact::kernel(layer, &target, form).map_err(fail)?;
        let (name, text) = match what {
            EmitWhat::Loops => (format!("{}.loops", layer.name), kernel.to_string()),
            EmitWhat::Llvm => {
                let arch = match &target {
                    BuildTarget::Cpu { cpu } => ssmc_compiler::codegen::Arch::X86 { cpu: cpu.clone() },
                    BuildTarget::Ptx => ssmc_compiler::codegen::Arch::Nvptx,
                };
                (format!("{}.ll", layer.name), ssmc_compiler::codegen::llvm_ir(&[kernel], &arch).map_err(fail)?)
            }
        };
        tensors::write_atomically(&args.output.join(&name), text.as_bytes()).map_err(fail)?;
    }
    let files: Vec<&str> = m.files.values().map(String::as_str).chain(["manifest.json"]).collect();
    println!(
        "built {} ({} {}, form {}) into {} in {:.0} ms: {}",
        m.layer,
        m.target,
        m.arch,
        m.form,
        args.output.display(),
        start.elapsed().as_secs_f64() * 1e3,
        files.join(", ")
    );
    Ok(())
}
