//! The command line of `ssmc`, as clap parses it.

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Parser, Subcommand, ValueEnum};
use ssmc_compiler::forms;
use ssmc_compiler::target::{self, Target};
use std::path::PathBuf;

/// ssmc compiles state-space-model sequence layers written in the .ssm language.
#[derive(Parser)]
#[command(name = "ssmc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Color diagnostics: auto (when a terminal), always, never.
    #[arg(long, global = true, default_value = "auto")]
    pub color: ColorChoice,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Compile a layer to native code: a shared and a static library (cpu) or PTX (cuda),
    /// with a C header and manifest.json, written into a directory.
    Build(BuildArgs),
    /// Show every legal algorithmic form of a layer with its estimated cost, the one chosen,
    /// and why the others are illegal.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The .ssm file.
    pub file: PathBuf,
    /// Which layer of the file (needed when it declares several).
    #[arg(long)]
    pub layer: Option<String>,
    /// What to build for: cpu (a shared and a static library) or cuda (PTX for sm_90).
    #[arg(long, default_value = "cpu", value_parser = target_names(false))]
    pub target: String,
    /// CPU to generate code for: native, x86-64-v3 (AVX2), x86-64-v4 (AVX-512), or the LLVM name
    /// of a CPU with AVX2 (haswell, skylake, znver3, ...; an unknown one is refused with the list).
    #[arg(long, default_value = "native")]
    pub cpu: String,
    /// The directory to write (created if needed; its files replaced).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The algorithmic form to compile: recurrent (every target), scan (cuda), chunked or
    /// chunked:Q (cpu, layers whose decay is shared by the state, as Mamba-2), conv (cpu,
    /// time-invariant layers). Without it: the cost model's choice at the sizes of `--dim`, or recurrent
    /// (right at every length) when no `--dim` is given.
    #[arg(long, value_name = "FORM", value_parser = forms::Form::parse)]
    pub form: Option<forms::Form>,
    /// Size of a runtime dim the cost model chooses the form at, e.g. `--dim L=65536`
    /// (repeatable). The artifact runs at any size.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Also write an intermediate of the same build into the directory: `loops` (the loop
    /// IR, NAME.loops), `llvm` (optimized LLVM IR, NAME.ll) or `ptx` (cuda only: the
    /// artifact's NAME.ptx). Repeatable.
    #[arg(long, value_name = "WHAT")]
    pub emit: Vec<EmitWhat>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmitWhat {
    /// The loop IR, as text.
    Loops,
    /// The optimized LLVM IR.
    Llvm,
    /// The PTX (`--target cuda`; it is the artifact's own `.ptx` file).
    Ptx,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The .ssm file.
    pub file: PathBuf,
    /// Which layer of the file (needed when it declares several).
    #[arg(long)]
    pub layer: Option<String>,
    /// Size of a runtime dim the cost is estimated at, e.g. `--dim L=65536` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// The target whose cost model chooses: cpu or cuda.
    #[arg(long, default_value = "cpu", value_parser = target_names(false))]
    pub target: String,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The .ssm file.
    pub file: PathBuf,
    /// Which layer of the file (needed when it declares several).
    #[arg(long)]
    pub layer: Option<String>,
    /// Size of a runtime dim for generated inputs, e.g. `--dim L=4096` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim, conflicts_with = "inputs")]
    pub dims: Vec<(String, usize)>,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 0, conflicts_with = "inputs")]
    pub seed: u64,
    /// Read the inputs from a safetensors file (F32, F64, BF16 or F16) instead of generating them.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Write the generated inputs to a safetensors file (each in its declared dtype), to rerun or compare elsewhere.
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    pub save_inputs: Option<PathBuf>,
    /// Write the outputs to a safetensors file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Element type of the written outputs.
    #[arg(long, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Where to run: `interp` runs the f64 reference interpreter (or, with `--form`, that
    /// form's f64 specification); `cpu` compiles the
    /// layer to native code (cached) and runs it on all cores; `cuda` compiles it to PTX
    /// (cached) and runs it on GPU 0 through the CUDA driver.
    #[arg(long, default_value = INTERP, value_parser = target_names(true))]
    pub target: String,
    /// CPU to generate code for with `--target cpu`: native, x86-64-v3 (AVX2), x86-64-v4
    /// (AVX-512), or the LLVM name of a CPU with AVX2.
    #[arg(long, default_value = "native")]
    pub cpu: String,
    /// Threads for `--target cpu` (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Time N runs after a warm-up run and report the median; on `--target cuda` also the
    /// kernel alone (CUDA events, tensors already in GPU memory) besides the time with copies.
    #[arg(long, value_name = "N")]
    pub bench: Option<usize>,
    /// The algorithmic form to run: recurrent, scan, chunked, chunked:Q, conv, quadratic;
    /// refused with the reason when illegal. With `--target interp` its f64 specification
    /// runs (default: the reference interpreter); with `--target cpu|cuda` its native code
    /// (default: the cheapest legal form with a native schedule; `ssmc explain` shows the
    /// estimates and the choice).
    #[arg(long, value_name = "FORM", value_parser = forms::Form::parse)]
    pub form: Option<forms::Form>,
    /// Write the materialized mixer matrix M (batch, channel, L, L) of the layer on these
    /// inputs to a safetensors file: y = M x before the gate, skip D on the diagonal.
    #[arg(long, value_name = "FILE")]
    pub emit_matrix: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DTypeArg {
    F32,
    F64,
}

/// The `--target` of `ssmc run` that is no machine: the f64 reference interpreter.
pub const INTERP: &str = "interp";

/// The names `--target` accepts: every [`target::NAMES`] (and, hidden, the
/// [`target::ALIASES`]), with `interp` first for `ssmc run`.
fn target_names(interp: bool) -> PossibleValuesParser {
    let interp = interp.then(|| {
        PossibleValue::new(INTERP).help("the f64 reference interpreter, or the f64 specification of `--form`")
    });
    let names = target::NAMES.iter().map(|(name, help)| PossibleValue::new(*name).help(*help));
    let aliases = target::ALIASES.iter().map(|(alias, _)| PossibleValue::new(*alias).hide(true));
    PossibleValuesParser::new(interp.into_iter().chain(names).chain(aliases))
}

impl BuildArgs {
    /// The target of `--target` with the CPU of `--cpu`.
    pub fn target(&self) -> Result<Target, String> {
        Target::parse(&self.target, &self.cpu)
    }
}

impl ExplainArgs {
    /// The target of `--target` (its cost model is the same for every CPU name).
    pub fn target(&self) -> Result<Target, String> {
        Target::parse(&self.target, "native")
    }
}

impl RunArgs {
    /// The machine of `--target` with the CPU of `--cpu`, or `None` for `interp`.
    pub fn target(&self) -> Result<Option<Target>, String> {
        if self.target == INTERP {
            return Ok(None);
        }
        Target::parse(&self.target, &self.cpu).map(Some)
    }
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, size) = s.split_once('=').ok_or_else(|| format!("expected NAME=SIZE, got `{s}`"))?;
    let size = size.trim().parse::<usize>().map_err(|_| format!("`{size}` is not a whole number"))?;
    Ok((name.trim().to_string(), size))
}
