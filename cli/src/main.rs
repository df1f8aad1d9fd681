//! The `ssmc` command line: check, inspect, run and build `.ssm` layers.
//!
//! Nothing here prints with `print!` or `eprint!` (they panic when a write fails): stdout
//! and stderr go through [`out`].
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod gpu;
mod memory;
mod native;
mod out;
mod run;
mod summary;

use args::{BuildArgs, Cli, ColorChoice, Command, EmitWhat, ExplainArgs};
use clap::Parser;
use ssmc_compiler::bind::sizes_for_estimate;
use ssmc_compiler::forms;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::outpath::{self, Role};
use ssmc_compiler::{artifact, back};
use ssmc_compiler::{check_source, Checked, SourceFile};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
        Command::Ir { file } => ir(&file, color),
        Command::Run(args) => run::run(&args, color),
        Command::Explain(args) => explain(&args, color),
        Command::Build(args) => build(&args, color),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed) => ExitCode::FAILURE,
    }
}

/// Reports `msg` as an error on stderr.
fn fail(msg: impl std::fmt::Display) -> Failed {
    out::stderr(&format!("error: {msg}\n"));
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
    out::stderr(&diags.render(&c.file, color).to_string());
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

fn ir(file: &Path, color: bool) -> Result<(), Failed> {
    let layers = load(file, color)?;
    out::stdout(&layers.iter().map(|l| l.to_string()).collect::<String>())
}

fn check(files: &[PathBuf], color: bool) -> Result<(), Failed> {
    let mut failed = false;
    for f in files {
        match load(f, color) {
            Ok(layers) => {
                let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                out::line(&format!("{}: ok ({})", f.display(), names.join(", ")))?;
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
    let sizes = sizes_for_estimate(layer, &dims).map_err(fail)?;
    let target = args.target().map_err(fail)?;
    let planned = back::plan(layer, &sizes, &target, None, &|sp| file.line_col(sp.start).0).map_err(fail)?;
    out::stdout(&summary::explain_text(layer, &args.file, &target, &sizes, &planned))
}

/// The median of some durations (zero for none).
fn median(times: &[std::time::Duration]) -> std::time::Duration {
    let mut t = times.to_vec();
    t.sort();
    t.get(t.len() / 2).copied().unwrap_or_default()
}

fn build(args: &BuildArgs, color: bool) -> Result<(), Failed> {
    let start = std::time::Instant::now();
    let (layers, file) = load_with_source(&args.file, color)?;
    let layer = pick_layer(&layers, args.layer.as_deref())?;
    let target = args.target().map_err(fail)?;
    target.check().map_err(fail)?;
    if args.emit.contains(&EmitWhat::Ptx) && !target.is_gpu() {
        return Err(fail("--emit ptx needs --target cuda (a cpu build has no PTX; --emit llvm shows its LLVM IR)"));
    }
    let mut names = artifact::file_names(layer, &target);
    names.extend(args.emit.iter().filter_map(|w| emit_name(layer, *w)));
    outpath::check_into_dir(&args.output, &names, &[Role { what: "the source", path: &args.file }]).map_err(fail)?;
    let cannot = |e: &dyn std::fmt::Display| fail(format!("cannot build layer `{}`: {e}", layer.name));
    let plan = if args.form.is_none() && args.dims.is_empty() {
        forms::Plan::all(layer, forms::Form::Recurrent)
    } else {
        let dims: BTreeMap<String, usize> = args.dims.iter().cloned().collect();
        let sizes = sizes_for_estimate(layer, &dims).map_err(fail)?;
        back::plan(layer, &sizes, &target, args.form, &|sp| file.line_col(sp.start).0).map_err(|e| cannot(&e))?.plan
    };
    let keep = back::Keep { llvm_ir: args.emit.contains(&EmitWhat::Llvm) };
    let built = back::build(layer, &plan, &target, keep).map_err(|e| cannot(&e))?;
    artifact::write(&built, &args.output).map_err(|e| cannot(&e))?;
    for what in &args.emit {
        let text = match what {
            EmitWhat::Loops => built.kernel.to_string(),
            EmitWhat::Llvm => built.llvm_ir.clone().unwrap_or_default(),
            EmitWhat::Ptx => continue,
        };
        let name = emit_name(layer, *what).unwrap_or_default();
        outpath::write_into_dir(&args.output, &name, text.as_bytes()).map_err(fail)?;
    }
    let m = &built.manifest;
    let emitted = args.emit.iter().filter_map(|w| emit_name(layer, *w));
    let mut files: Vec<String> = m.files.values().cloned().chain(["manifest.json".to_string()]).collect();
    files.extend(emitted.filter(|n| !m.files.values().any(|f| f == n)));
    out::line(&format!(
        "built {} ({} {}, form {}) into {} in {:.0} ms: {}",
        m.layer,
        m.target,
        m.arch,
        m.form,
        args.output.display(),
        start.elapsed().as_secs_f64() * 1e3,
        files.join(", ")
    ))
}

/// The file `--emit WHAT` writes into the build directory (`ptx`: the artifact's own).
fn emit_name(layer: &Layer, what: EmitWhat) -> Option<String> {
    match what {
        EmitWhat::Loops => Some(format!("{}.loops", layer.name)),
        EmitWhat::Llvm => Some(format!("{}.ll", layer.name)),
        EmitWhat::Ptx => None,
    }
}
