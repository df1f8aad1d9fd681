//! An artifact's contract and its files: the manifest and C header of a layer's kernel,
//! the names of its files, writing it into a directory all at once ([`write`](fn@write): built
//! beside it, then moved in, so a failure leaves no partial artifact), and the cache
//! folder of `ssmc run`.

use crate::forms::Form;
use crate::ir::{Axis, DimSize, Io, Layer};
use crate::lower;
use crate::target::Target;
use ssmc_contract::launch::{DimExpr, Op};
use ssmc_contract::manifest::{self as mf, DimInfo, Manifest, TensorInfo};
use ssmc_loops::{Index, Kernel, Launch};
use std::collections::BTreeMap;
#[cfg(feature = "codegen")]
use std::path::Path;

/// The files of an artifact of `layer` for `target` by kind (`shared`, `static`, `ptx`,
/// `header`), as its manifest lists them.
pub fn files(layer: &Layer, target: &Target) -> BTreeMap<String, String> {
    let name = &layer.name;
    let mut files = match target {
        Target::Cpu { .. } => BTreeMap::from([
            ("shared".to_string(), format!("lib{name}.so")),
            ("static".to_string(), format!("lib{name}.a")),
        ]),
        Target::Cuda { .. } => BTreeMap::from([("ptx".to_string(), format!("{name}.ptx"))]),
    };
    files.insert("header".to_string(), format!("{name}.h"));
    files
}

/// The names of the files [`write`](fn@write) writes into its directory for `layer` and `target`.
pub fn file_names(layer: &Layer, target: &Target) -> Vec<String> {
    files(layer, target).into_values().chain(["manifest.json".to_string()]).collect()
}

/// The manifest of a layer's artifact whose kernel is `kernel`.
pub fn manifest(layer: &Layer, target: &Target, form: Form, kernel: &Kernel) -> Result<Manifest, String> {
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
        files: files(layer, target),
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

/// Why an artifact could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// A file or folder could not be created, written or moved.
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        error: std::io::Error,
    },
    /// `cc` or `ar` could not be run or failed.
    Tool {
        /// The program.
        program: String,
        /// Why (its stderr, or why it could not start).
        why: String,
    },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Io { what, error } => write!(f, "cannot {what}: {error}"),
            WriteError::Tool { program, why } => write!(f, "`{program}` failed: {why}"),
        }
    }
}

impl std::error::Error for WriteError {}

#[cfg(feature = "codegen")]
fn io(what: impl Fn() -> String) -> impl FnOnce(std::io::Error) -> WriteError {
    move |error| WriteError::Io { what: what(), error }
}

/// Writes `artifact` into `dir` (created if needed; its files replaced) all at once: the
/// files are made in a folder beside it (a CPU's object linked there into a shared and a
/// static library), then moved in, so a failure leaves no partial artifact.
#[cfg(feature = "codegen")]
pub fn write(artifact: &crate::back::Artifact, dir: &Path) -> Result<(), WriteError> {
    use ssmc_codegen::MachineCode;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(|| format!("create {}", parent.display())))?;
    sweep_stale_builds(parent);
    // Removed on every return (a guard); a killed process leaves it to the sweep above.
    let work = tempfile::Builder::new()
        .prefix(BUILD_PREFIX)
        .tempdir_in(parent)
        .map_err(io(|| format!("write in {}", parent.display())))?;
    let m = &artifact.manifest;
    let file = |kind: &str| work.path().join(m.files.get(kind).map_or("", String::as_str));
    let put = |path: std::path::PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(io(|| format!("write {}", path.display())))
    };
    match &artifact.code {
        MachineCode::Object(obj) => {
            let o = work.path().join(format!("{}.o", m.layer));
            put(o.clone(), obj)?;
            run_tool(std::process::Command::new("cc").arg("-shared").arg("-o").arg(file("shared")).arg(&o))?;
            run_tool(std::process::Command::new("ar").arg("rcs").arg(file("static")).arg(&o))?;
            std::fs::remove_file(&o).map_err(io(|| format!("remove {}", o.display())))?;
        }
        MachineCode::Ptx(ptx) => put(file("ptx"), ptx.as_bytes())?,
    }
    put(file("header"), artifact.header.as_bytes())?;
    let json = serde_json::to_string_pretty(m)
        .map_err(|e| WriteError::Io { what: "write manifest.json".into(), error: e.into() })?;
    put(work.path().join("manifest.json"), (json + "\n").as_bytes())?;
    std::fs::create_dir_all(dir).map_err(io(|| format!("create {}", dir.display())))?;
    for entry in std::fs::read_dir(work.path()).map_err(io(|| format!("read {}", work.path().display())))? {
        let entry = entry.map_err(io(|| format!("read {}", work.path().display())))?;
        std::fs::rename(entry.path(), dir.join(entry.file_name()))
            .map_err(io(|| format!("write into {}", dir.display())))?;
    }
    Ok(())
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

#[cfg(feature = "codegen")]
fn run_tool(cmd: &mut std::process::Command) -> Result<(), WriteError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| WriteError::Tool {
        program: program.clone(),
        why: format!("cannot run it: {e} (is a C toolchain installed? scripts/setup.sh installs one)"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(WriteError::Tool { program, why: String::from_utf8_lossy(&out.stderr).into_owned() })
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
