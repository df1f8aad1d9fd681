//! Shared helpers of the integration tests: where the repository, the stdlib layers and the
//! `ssmc` binary are, how to run a program and check what it did, and relative errors.
//!
//! `scripts/gpu-test` runs the `gpu` test binary, built elsewhere, on a machine without Rust:
//! there `CARGO_MANIFEST_DIR` does not exist, `SSMC_REPO` names the repository and
//! `SSMC_BIN` the `ssmc` binary, so every path below goes through [`repo`] and [`ssmc_bin`].

pub mod backend;
pub mod campaign;

use ssmc_compiler::ir::Layer;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The stdlib layers, by file stem (`stdlib/NAME.ssm`).
pub const STDLIB: [&str; 4] = ["mamba1", "mamba2", "s4d", "vim"];

/// The repository: `$SSMC_REPO`, else the one these tests were built in.
pub fn repo() -> PathBuf {
    std::env::var_os("SSMC_REPO").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// The repository ([`repo`]) as a canonical path.
pub fn root() -> PathBuf {
    repo().canonicalize().expect("repository root")
}

/// The canonical path of the stdlib file `stdlib/NAME.ssm`.
pub fn stdlib(name: &str) -> PathBuf {
    repo().join("stdlib").join(format!("{name}.ssm")).canonicalize().expect("stdlib file")
}

/// The text of the stdlib file `stdlib/NAME.ssm`.
pub fn stdlib_source(name: &str) -> String {
    let path = repo().join(format!("stdlib/{name}.ssm"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} (set SSMC_REPO to the repository): {e}", path.display()))
}

/// The first layer of the stdlib file `stdlib/NAME.ssm`, compiled.
pub fn stdlib_layer(name: &str) -> Layer {
    ssmc_compiler::compile(&stdlib_source(name)).expect("compiles").0.layers.remove(0)
}

/// Runs `cargo build --quiet ARGS` on the repository, into the target directory and profile
/// of the running test, and returns `target/<profile>`; panics with `failed` if it fails.
pub fn cargo_build(args: &[&str], failed: &str) -> PathBuf {
    // target/<profile>/deps/NAME-<hash>  ->  target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = profile_dir.file_name().and_then(OsStr::to_str).unwrap_or("debug");
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build
        .args(["build", "--quiet"])
        .args(args)
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "{failed}");
    profile_dir
}

/// The `ssmc` binary: `$SSMC_BIN`, else the one of the running test's profile, built once
/// per process (a no-op when fresh: the tests do not depend on the binary, so an existing
/// one may predate the sources).
pub fn ssmc_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SSMC_BIN") {
            return PathBuf::from(bin);
        }
        let bin = cargo_build(&["--bin", "ssmc", "-p", "ssmc-cli"], "cargo build --bin ssmc failed")
            .join(format!("ssmc{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "no binary at {}", bin.display());
        bin
    })
}

/// What one run of a program did.
pub struct Out {
    /// The exit status, `None` if a signal ended it.
    pub code: Option<i32>,
    /// What it wrote on stdout.
    pub stdout: String,
    /// What it wrote on stderr.
    pub stderr: String,
    /// How long it ran.
    pub wall: Duration,
}

impl Out {
    /// Runs `cmd` to the end; what it writes on stdout and stderr must be UTF-8.
    pub fn run(cmd: &mut Command) -> Self {
        let (out, wall) = output(cmd);
        Out {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
            wall,
        }
    }

    /// Runs `cmd` to the end; what is not UTF-8 on stdout and stderr is replaced.
    pub fn run_lossy(cmd: &mut Command) -> Self {
        let (out, wall) = output(cmd);
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            wall,
        }
    }

    /// Asserts that nothing on stderr says `panicked`; `what` names the program.
    pub fn not_panicked(&self, what: &str) -> &Self {
        assert!(!self.stderr.contains("panicked"), "{what} panicked:\n{}", self.stderr);
        self
    }

    /// Asserts exit status 0.
    pub fn ok(&self) -> &Self {
        self.exits(0, "expected success")
    }

    /// Asserts exit status 0; `what` starts the message if not.
    pub fn ok_for(&self, what: &str) -> &Self {
        self.exits(0, &format!("{what}: expected success"))
    }

    /// Asserts exit status 1.
    pub fn fails(&self) -> &Self {
        self.exits(1, "expected exit 1")
    }

    /// Asserts exit status 1 and something on stderr that says `error`.
    pub fn errs(&self) -> &Self {
        self.fails();
        assert!(self.stderr.contains("error"), "no error on stderr:\n{}", self.stderr);
        self
    }

    /// Asserts that stderr holds every one of `needles`.
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}:\n{}", self.stderr);
        }
        self
    }

    /// Asserts that nothing was written on stdout.
    pub fn no_stdout(&self) -> &Self {
        assert!(self.stdout.is_empty(), "unexpected stdout:\n{}", self.stdout);
        self
    }

    /// Asserts exit status `code`, with `message`, stdout and stderr if not.
    fn exits(&self, code: i32, message: &str) -> &Self {
        assert_eq!(self.code, Some(code), "{message}\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs `cmd` to the end; returns its output and how long it ran.
fn output(cmd: &mut Command) -> (Output, Duration) {
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(cmd.get_program()).display()));
    (out, start.elapsed())
}

/// Inputs rounded to f32, so that the interpreter sees what an f32 kernel sees.
pub fn f32_inputs(inputs: ssmc_compiler::tensors::TensorMap) -> ssmc_compiler::tensors::TensorMap {
    inputs
        .into_iter()
        .map(|(k, mut v)| {
            v.data.iter_mut().for_each(|x| *x = *x as f32 as f64);
            (k, v)
        })
        .collect()
}

/// ||a - b|| / max(||b||, 1e-300) of two flat vectors, which must have the same length.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    rel_err_floored(a, b, 0.0)
}

/// [`rel_err`] with the reference's norm taken as at least `floor` per element: an output
/// whose values are all far below the inputs' scale (a final state of one element that the
/// steps' terms nearly cancel) is then held to an absolute error of `floor` times the
/// relative tolerance instead of a relative one that f32 rounding of the terms already
/// exceeds (the native code's f32 state of a one-element `final_state` missed 1e-5 by 4x on
/// 8 seeds of 208 at |h| ~ 4e-4, with an error the size of an f32 simulation's).
pub fn rel_err_floored(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(floor * (b.len() as f64).sqrt()).max(1e-300)
}

/// Per-element floor of [`rel_err_floored`] in the random-layer tests: their inputs are of
/// order 1.
pub const RANDOM_LAYER_FLOOR: f64 = 1e-2;

/// The ranges of e^x that `exp_saturates_like_f32` (CPU) and its GPU twin check: over
/// the f32 range, past overflow, into the subnormals, and the normal range.
pub const EXP_RANGES: [&str; 4] = ["uniform(-200, 200)", "uniform(80, 95)", "uniform(-110, -80)", "uniform(-87, 88)"];

/// A layer whose output is y = e^v u per channel (v drawn from `dist`, u in [1, 2]): the
/// generated code's e^x through the skip, one call per channel.
pub fn exp_range_layer(dist: &str) -> String {
    format!(
        "layer f {{
  dims batch B, channel D, time L, state N = 1
  input u: f32[B, D, L] ~ uniform(1, 2)
  input v: f32[D] ~ {dist}
  input Z: f32[N] ~ uniform(0, 0.000001)
  output y: f32[B, D, L]
  x = u
  A = diagonal(0 * Z)
  B = 0 * Z
  C = 0 * Z
  discretize discrete
  skip exp(v)
}}"
    )
}

/// Asserts (got, f64 reference) pairs of [`exp_range_layer`]'s y as f32 e^x should be: inf
/// where the reference rounds to inf in f32, within a few subnormal steps of it below the
/// normal range, finite and within 2e-6 relative error elsewhere; returns the largest
/// relative error. `what` names the range and the machine in a failure.
pub fn assert_exp_like_f32(what: &str, pairs: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let mut worst = 0.0f64;
    for (g, w) in pairs {
        let w32 = w as f32;
        if w32.is_infinite() {
            assert_eq!(g, f64::from(w32), "exp over {what}: {g} where f64 gives {w}");
        } else if w.abs() < f64::from(f32::MIN_POSITIVE) {
            assert!((g - w).abs() <= 4.0 * 2f64.powi(-149), "exp over {what}: {g} where f64 gives {w}");
        } else {
            assert!(g.is_finite(), "exp over {what}: {g} where f64 gives {w}");
            worst = worst.max((g - w).abs() / w.abs());
        }
    }
    println!("exp over {what}: max relative error {worst:.2e}");
    assert!(worst < 2e-6, "exp over {what}: max relative error {worst:e}");
    worst
}

/// The checked module of the `.ssm` file at `path`, and the file's name; panics with the
/// rendered diagnostics if it is rejected.
pub fn checked_module(path: &Path) -> (String, ssmc_compiler::ir::Module) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let checked = ssmc_compiler::check_source(&name, &bytes);
    match checked.result {
        Ok((module, _warnings)) => (name, module),
        Err(diags) => panic!("{name} is rejected:\n{}", diags.render(&checked.file, false)),
    }
}

/// The layers of the schedule tests: every stdlib layer and every layer of
/// `tests/lower/*.ssm`, each with the name of its file.
pub fn schedule_layers() -> Vec<(String, Layer)> {
    let mut layers: Vec<(String, Layer)> = STDLIB.iter().map(|name| (name.to_string(), stdlib_layer(name))).collect();
    let lower = repo().join("tests/lower");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&lower)
        .unwrap_or_else(|e| panic!("{}: {e}", lower.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "ssm"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        layers.extend(checked_module(&path).1.layers.into_iter().map(|l| (name.clone(), l)));
    }
    layers
}

/// Every (file name, layer, form) of [`schedule_layers`] that `target` has a native
/// schedule for (chunked at a chunk of 64).
pub fn schedules(target: &ssmc_compiler::target::Target) -> Vec<(String, Layer, ssmc_compiler::forms::Form)> {
    use ssmc_compiler::forms::Form;
    let forms = [Form::Recurrent, Form::Scan, Form::Chunked { q: 64 }, Form::Conv];
    let mut out = Vec::new();
    for (name, layer) in schedule_layers() {
        for form in forms {
            if ssmc_compiler::schedule::kernel(&layer, target, form).is_ok() {
                out.push((name.clone(), layer.clone(), form));
            }
        }
    }
    out
}

/// Builds `layer` in `form` for `target` and writes its artifact into `dir`, as
/// `ssmc build --form` does: [`ssmc_compiler::back::build`], then
/// [`ssmc_compiler::artifact::write`]. Returns the manifest.
pub fn build_artifact(
    layer: &Layer,
    target: &ssmc_compiler::target::Target,
    form: ssmc_compiler::forms::Form,
    dir: &Path,
) -> Result<ssmc_contract::manifest::Manifest, String> {
    use ssmc_compiler::{artifact, back, forms::Plan};
    let built =
        back::build(layer, &Plan::all(layer, form), target, back::Keep::default()).map_err(|e| e.to_string())?;
    artifact::write(&built, dir).map_err(|e| e.to_string())?;
    Ok(built.manifest)
}
