//! `ssmc build`: a layer's native code with its C header and `manifest.json`, written into
//! a directory all at once (built beside it, then moved in), so a failure leaves no
//! partial artifact.

use crate::bind::Sizes;
use crate::forms::egraph::{self, Choice};
use crate::forms::Form;
use crate::ir::{Axis, DimSize, Io, Layer};
use crate::lower;
use crate::target::Target;
use ssmc_contract::launch::{DimExpr, Op};
use ssmc_contract::manifest::{self as mf, DimInfo, Manifest, TensorInfo};
use ssmc_loops::{Index, Kernel, Launch};
use std::collections::BTreeMap;
use std::path::Path;

/// Threads per block of the GPU's `recurrent` (one sequence per thread).
pub const GPU_RECURRENT_THREADS: u32 = 128;

/// The loop-IR kernel of a layer for a target in form `form` (the lowering, which says how
/// work items map onto the layer, then the form's schedule template), or why that form
/// has no native schedule for this layer and target.
pub fn kernel(layer: &Layer, target: &Target, form: Form) -> Result<Kernel, String> {
    let cpu = !target.is_gpu();
    let max_lanes = target.max_lanes();
    let spec = |choice| lower::scan_spec(layer, max_lanes, choice).map_err(|e| e.to_string());
    let native = "native forms: recurrent and scan on the GPU, recurrent on the CPU; chunked (a decay shared by the state) and conv on the CPU";
    match (form, cpu) {
        (Form::Recurrent, true) => Ok(ssmc_kernels::recurrent(&spec(lower::MappingChoice::Cpu)?)),
        (Form::Recurrent, false) => {
            let k = ssmc_kernels::recurrent(&spec(lower::MappingChoice::Gpu)?);
            Ok(ssmc_kernels::thread_per_item(k, GPU_RECURRENT_THREADS))
        }
        (Form::Scan, false) => ssmc_kernels::block_scan(&spec(lower::MappingChoice::Gpu)?),
        (Form::Chunked { q }, true) => ssmc_kernels::chunked(&spec(lower::MappingChoice::HeadTiles)?, q as u32),
        (Form::Conv, true) => ssmc_kernels::conv(&spec(lower::MappingChoice::Sequences)?),
        (f, true) => Err(format!("form {f} has no native schedule ({native})")),
        (f, false) => Err(format!("form {f} has no GPU schedule yet ({native})")),
    }
}

/// Why a forced form cannot be built natively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The form is illegal for the layer; the legality analysis says why.
    Illegal(String),
    /// The form is legal but has no native schedule for this layer and target.
    NoSchedule(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Illegal(why) | PlanError::NoSchedule(why) => f.write_str(why),
        }
    }
}

/// The form a native artifact of `layer` is built in: `forced` if given (it must be legal
/// and have a native schedule), else the cheapest legal form by the cost model that has a
/// native schedule for this layer and target.
pub fn native_form(layer: &Layer, target: &Target, choice: &Choice, forced: Option<Form>) -> Result<Form, PlanError> {
    if let Some(f) = forced {
        let plan = choice.force(f).map_err(PlanError::Illegal)?;
        let f = plan.forms.first().copied().unwrap_or(Form::Recurrent);
        kernel(layer, target, f).map_err(PlanError::NoSchedule)?;
        return Ok(f);
    }
    let mut legal: Vec<(f64, Form)> =
        choice.candidates.iter().filter_map(|c| c.legality.as_ref().ok().map(|e| (e.seconds, c.form))).collect();
    legal.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut chosen = choice.plan.forms.first().copied().into_iter().chain(legal.into_iter().map(|(_, f)| f));
    Ok(chosen.find(|f| kernel(layer, target, *f).is_ok()).unwrap_or(Form::Recurrent))
}

/// What the cost model of a target plans for a layer at some sizes, and the form its
/// native artifact is built in.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Every form with its estimate on the target, and the cheapest plan.
    pub choice: Choice,
    /// The form native code is built in ([`native_form`] of the choice).
    pub form: Form,
}

/// Plans a native artifact of `layer` for `target` at `sizes`: `target`'s cost model
/// chooses ([`egraph::choose`]), then [`native_form`] picks the form built, `forced` if
/// given. `ssmc run`, `ssmc build` and `ssmc explain` all plan through here, so the same
/// target reaches the cost model and the schedules. `line_of` maps a span to its line.
pub fn plan(
    layer: &Layer,
    sizes: &Sizes,
    target: &Target,
    forced: Option<Form>,
    line_of: &dyn Fn(ssmc_syntax::Span) -> usize,
) -> Result<Planned, PlanError> {
    let choice = egraph::choose(layer, sizes, target, line_of);
    let form = native_form(layer, target, &choice, forced)?;
    Ok(Planned { choice, form })
}

/// The manifest of a layer's artifact whose kernel is `kernel`.
pub fn manifest(
    layer: &Layer,
    target: &Target,
    form: Form,
    kernel: &Kernel,
    files: BTreeMap<String, String>,
) -> Result<Manifest, String> {
    let axis = |a: &Axis| match a {
        Axis::Dim { dim, divisor: 1 } => layer.dims[*dim].name.clone(),
        Axis::Dim { dim, divisor } => format!("{}/{divisor}", layer.dims[*dim].name),
        Axis::Complex => "2".to_string(),
    };
    let mut tensors = Vec::new();
    for io in [Io::Input, Io::Output] {
        for (_, t) in layer.tensors.iter().filter(|(_, t)| t.io == io) {
            tensors.push(TensorInfo {
                name: t.name.clone(),
                io: if io == Io::Input { mf::Io::Input } else { mf::Io::Output },
                dtype: t.dtype,
                shape: t.shape.iter().map(axis).collect(),
            });
        }
    }
    Ok(Manifest {
        ssmc_version: env!("CARGO_PKG_VERSION").to_string(),
        layer: layer.name.clone(),
        target: target.artifact_kind().to_string(),
        arch: target.arch_name(),
        form: form.to_string(),
        entry: lower::kernel_name(layer),
        files,
        dims: layer
            .dims
            .iter()
            .map(|(_, d)| DimInfo {
                name: d.name.clone(),
                role: d.role.keyword().to_string(),
                size: match d.size {
                    DimSize::Const(n) => Some(n),
                    DimSize::Runtime => None,
                },
            })
            .collect(),
        tensors,
        launch: launch(kernel)?,
        specialized: "generic".to_string(),
        host: if kernel.host_conv { vec![ssmc_contract::host::CAUSAL_CONV_F32.to_string()] } else { Vec::new() },
    })
}

/// The manifest's statement of a kernel's launch: its work items and grid as expressions
/// of the dims by name (the kernel states them once; the header and runtimes read this).
fn launch(kernel: &Kernel) -> Result<mf::Launch, String> {
    let work_items = dim_expr(&kernel.work_items, &kernel.dims)?;
    Ok(match kernel.launch {
        Launch::Range => mf::Launch::Range { work_items },
        Launch::Grid { threads, items_per_block } => mf::Launch::Grid {
            work_items,
            threads,
            items_per_block,
            shared_bytes: dim_expr(&kernel.shared_bytes(), &kernel.dims)?,
        },
    })
}

/// `i`, an expression of constants and runtime dims, over the dims' names.
fn dim_expr(i: &Index, dims: &[String]) -> Result<DimExpr, String> {
    let two =
        |op, a: &Index, b: &Index| Ok(DimExpr::Op(op, Box::new(dim_expr(a, dims)?), Box::new(dim_expr(b, dims)?)));
    match i {
        Index::Const(c) => Ok(DimExpr::Const(*c)),
        Index::Dim(d) => dims.get(*d).map(|n| DimExpr::Dim(n.clone())).ok_or_else(|| format!("no runtime dim d{d}")),
        Index::Add(a, b) => two(Op::Add, a, b),
        Index::Sub(a, b) => two(Op::Sub, a, b),
        Index::Mul(a, b) => two(Op::Mul, a, b),
        Index::Div(a, b) => two(Op::Div, a, b),
        Index::Rem(a, b) => two(Op::Rem, a, b),
        Index::Min(a, b) => two(Op::Min, a, b),
        Index::Var(_) | Index::Lane | Index::Builtin(_) => {
            Err(format!("a launch size reads `{i}`, which is not known before the launch"))
        }
    }
}

/// The C header of an artifact.
pub fn header(m: &Manifest) -> String {
    let guard = format!("SSMC_{}_H", m.layer.to_uppercase());
    let upper = m.layer.to_uppercase();
    let mut h = format!(
        "/* Generated by ssmc {} for layer `{}` ({} target, {}): do not edit. */\n#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n",
        m.ssmc_version, m.layer, m.target, m.arch
    );
    h += "/* bufs[i]: the tensors in this order, row-major and contiguous:\n";
    for (i, t) in m.tensors.iter().enumerate() {
        let io = if t.io == mf::Io::Input { "in " } else { "out" };
        h += &format!(" *   [{i}] {io} {:<14} {} [{}]\n", t.name, t.dtype.name(), t.shape.join(", "));
    }
    for (i, name) in m.host.iter().enumerate() {
        let at = m.tensors.len() + i;
        h += &format!(" *   [{at}] the address of ssmc_{name} (libssmc_runtime; declared below), a host routine\n");
        h += " *       the kernel calls: void (*)(const float* k, const float* x, float* y, int64_t len)\n";
        h += " *       sets y[t] = sum over s <= t of k[t - s] x[s] for t < len (its causal convolution)\n";
    }
    h += " * dims[i]: the runtime dims in this order:\n";
    let runtime: Vec<&DimInfo> = m.dims.iter().filter(|d| d.size.is_none()).collect();
    for (i, d) in runtime.iter().enumerate() {
        h += &format!(" *   [{i}] {} ({})\n", d.name, d.role);
    }
    for d in m.dims.iter().filter(|d| d.size.is_some()) {
        h += &format!(" * compile-time: {} = {}\n", d.name, d.size.unwrap_or(0));
    }
    let work = m.launch.work_items();
    h += &format!(
        " * Runs work items [begin, end) of {work}. Work items are independent, so ranges\n * may run on different threads. Sizes are not checked here: ssmc-runtime checks them\n * against manifest.json. */\n"
    );
    h += &format!("void {}(const void* const* bufs, const int64_t* dims, int64_t begin, int64_t end);\n\n", m.entry);
    for name in &m.host {
        h += &format!("/* From libssmc_runtime: pass its address in bufs after the tensors. */\nvoid ssmc_{name}(const float* k, const float* x, float* y, int64_t len);\n\n");
    }
    h += &format!("#define {upper}_NUM_TENSORS {}\n#define {upper}_NUM_DIMS {}\n", m.tensors.len(), runtime.len());
    for (i, t) in m.tensors.iter().enumerate() {
        h += &format!("#define {upper}_TENSOR_{} {i}\n", t.name.to_uppercase());
    }
    for (i, d) in runtime.iter().enumerate() {
        h += &format!("#define {upper}_DIM_{} {i}\n", d.name.to_uppercase());
    }
    let dim = |s: &str| match runtime.iter().position(|d| d.name == s) {
        Some(i) => format!("dims[{i}]"),
        None => format!("(int64_t){}", m.dims.iter().find(|d| d.name == s).and_then(|d| d.size).unwrap_or(1)),
    };
    h += &format!(
        "\n/* Number of work items for these dims: run [0, this). */\nstatic inline int64_t {}_work_items(const int64_t* dims) {{ (void)dims; return {}; }}\n",
        m.entry,
        work.to_c(&dim)
    );
    if let mf::Launch::Grid { threads, items_per_block, shared_bytes, .. } = &m.launch {
        h += &format!(
            "\n/* The launch of [begin, end): ceil((end - begin) / {upper}_ITEMS_PER_BLOCK) blocks of\n * {upper}_THREADS_PER_BLOCK threads, each with {}_shared_bytes(dims) bytes of dynamic\n * shared memory. */\n#define {upper}_THREADS_PER_BLOCK {threads}\n#define {upper}_ITEMS_PER_BLOCK {items_per_block}\nstatic inline int64_t {}_shared_bytes(const int64_t* dims) {{ (void)dims; return {}; }}\n",
            m.entry,
            m.entry,
            shared_bytes.to_c(&dim)
        );
    }
    h += &format!("\n#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */\n");
    h
}

/// Builds the artifact of `layer` in `form` into `dir` (created if needed; its files
/// replaced).
#[cfg(feature = "codegen")]
pub fn build(layer: &Layer, target: &Target, form: Form, dir: &Path) -> Result<Manifest, String> {
    target.check()?;
    let kernel = kernel(layer, target, form)?;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    sweep_stale_builds(parent);
    // Removed on every return (a guard); a killed process leaves it to the sweep above.
    let work = tempfile::Builder::new()
        .prefix(BUILD_PREFIX)
        .tempdir_in(parent)
        .map_err(|e| format!("cannot write in {}: {e}", parent.display()))?;
    let name = &layer.name;
    let mut files = BTreeMap::new();
    use std::process::Command;
    match target {
        Target::Cpu { .. } => {
            let obj = ssmc_codegen::object(std::slice::from_ref(&kernel), target).map_err(|e| e.to_string())?;
            let o = work.path().join(format!("{name}.o"));
            std::fs::write(&o, obj).map_err(|e| e.to_string())?;
            let (so, a) = (format!("lib{name}.so"), format!("lib{name}.a"));
            run_tool(Command::new("cc").arg("-shared").arg("-o").arg(work.path().join(&so)).arg(&o))?;
            run_tool(Command::new("ar").arg("rcs").arg(work.path().join(&a)).arg(&o))?;
            std::fs::remove_file(&o).map_err(|e| e.to_string())?;
            files.insert("shared".to_string(), so);
            files.insert("static".to_string(), a);
        }
        Target::Cuda { .. } => {
            let ptx = ssmc_codegen::ptx(std::slice::from_ref(&kernel), target).map_err(|e| e.to_string())?;
            let p = format!("{name}.ptx");
            std::fs::write(work.path().join(&p), ptx).map_err(|e| e.to_string())?;
            files.insert("ptx".to_string(), p);
        }
    }
    files.insert("header".to_string(), format!("{name}.h"));
    let m = manifest(layer, target, form, &kernel, files)?;
    std::fs::write(work.path().join(format!("{name}.h")), header(&m)).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&m).map_err(|e| e.to_string())?;
    std::fs::write(work.path().join("manifest.json"), json + "\n").map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for entry in std::fs::read_dir(work.path()).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::rename(entry.path(), dir.join(entry.file_name()))
            .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    }
    Ok(m)
}

/// Prefix of the temporary folder an artifact is built in, beside its directory.
#[cfg(feature = "codegen")]
const BUILD_PREFIX: &str = ".ssmc-build";

/// Age after which a build folder is taken to be left by a killed process: no build of
/// ssmc writes nothing into its folder for that long.
#[cfg(feature = "codegen")]
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Removes the build folders in `parent` that a killed ssmc left (older than
/// [`STALE_AFTER`]); failures are ignored: the sweep only tidies.
#[cfg(feature = "codegen")]
fn sweep_stale_builds(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(BUILD_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The names of the files [`build`] writes into its directory for `layer` and `target`.
pub fn file_names(layer: &Layer, target: &Target) -> Vec<String> {
    let name = &layer.name;
    let mut names = match target {
        Target::Cpu { .. } => vec![format!("lib{name}.so"), format!("lib{name}.a")],
        Target::Cuda { .. } => vec![format!("{name}.ptx")],
    };
    names.extend([format!("{name}.h"), "manifest.json".to_string()]);
    names
}

#[cfg(feature = "codegen")]
fn run_tool(cmd: &mut std::process::Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!("cannot run `{:?}`: {e} (is a C toolchain installed? scripts/setup.sh installs one)", cmd.get_program())
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{:?}` failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The directory where `ssmc run --target cpu` keeps the artifact of a layer, keyed by
/// everything that changes the code: the source text, the layer, the target, and the
/// ssmc build itself (version, and the size and time of the running executable). `$SSMC_CACHE`, else `$XDG_CACHE_HOME/ssmc`, else `~/.cache/ssmc`.
pub fn cache_dir(source: &str, layer: &str, target: &Target, form: Form) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (source, layer, format!("{target:?}"), form.to_string(), env!("CARGO_PKG_VERSION")).hash(&mut h);
    if let Some(meta) = std::env::current_exe().ok().and_then(|p| std::fs::metadata(p).ok()) {
        (meta.len(), meta.modified().ok()).hash(&mut h);
    }
    let root = std::env::var_os("SSMC_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("ssmc")))
        .or_else(|| std::env::var_os("HOME").map(|d| std::path::PathBuf::from(d).join(".cache/ssmc")))
        .unwrap_or_else(|| std::env::temp_dir().join("ssmc-cache"));
    root.join(format!("{layer}-{:016x}", h.finish()))
}
