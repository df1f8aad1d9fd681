//! The host programs of `examples/` end to end: `ssmc build` writes the artifact of
//! `stdlib/mamba1.ssm`, `ssmc run` the inputs and the reference output; the C programs are
//! compiled by `examples/c/build.sh` with `cc` and run, and so is the Rust program.
//!
//! The binaries and `libssmc_runtime.a` are built once per test process with `cargo build`
//! (a no-op when fresh), in the profile this test was built with.

use ssmc_compiler::tensors::{read_safetensors, write_safetensors, OutDType, TensorMap};
use ssmc_tests::{cargo_build, repo, Out};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>`, with `ssmc`, `ssmc-example` and `libssmc_runtime.a` freshly built.
fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = cargo_build(
            &[
                "-p",
                "ssmc-cli",
                "-p",
                "ssmc-runtime",
                "-p",
                "ssmc-example",
                "--lib",
                "--bin",
                "ssmc",
                "--bin",
                "ssmc-example",
            ],
            "cargo build of ssmc, ssmc-runtime and ssmc-example failed",
        );
        for file in ["ssmc", "ssmc-example", "libssmc_runtime.a"] {
            assert!(dir.join(file).is_file(), "no {file} in {}", dir.display());
        }
        dir
    })
}

/// Runs `program args...`; whatever happens, it must not panic.
fn run(program: &Path, args: &[&OsStr]) -> Out {
    let out = Out::run_lossy(Command::new(program).args(args));
    out.not_panicked(&program.display().to_string());
    out
}

/// The artifact, inputs and reference of the examples, in a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// What the README tells the user to run: `ssmc build`, then `ssmc run`.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ssmc = profile_dir().join("ssmc");
        let mamba1 = repo().join("stdlib/mamba1.ssm");
        let f = Fixture { dir };
        run(&ssmc, &[OsStr::new("build"), mamba1.as_os_str(), OsStr::new("-o"), f.path("mamba1").as_os_str()]).ok();
        let (inputs, reference) = (f.path("in.safetensors"), f.path("ref.safetensors"));
        let mut args: Vec<&OsStr> = vec![OsStr::new("run"), mamba1.as_os_str()];
        args.extend(["--dim", "L=63", "--dim", "D=37", "--dtype", "f32"].map(OsStr::new));
        args.extend([OsStr::new("--save-inputs"), inputs.as_os_str()]);
        args.extend([OsStr::new("--output"), reference.as_os_str()]);
        run(&ssmc, &args).ok();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a copy of the inputs (or the reference) changed by `edit` to `name`.
    fn edited(&self, from: &str, name: &str, edit: impl FnOnce(&mut TensorMap)) -> PathBuf {
        let mut t = read_safetensors(&self.path(from)).expect("read tensors");
        edit(&mut t);
        let path = self.path(name);
        write_safetensors(&path, &t, OutDType::F32).expect("write tensors");
        path
    }

    /// Inputs with `D` one element short: the shape `[36]` where `[D]` with D=37 is due.
    fn short_d(&self) -> PathBuf {
        self.edited("in.safetensors", "short_d.safetensors", |t| {
            let d = t.get_mut("D").expect("D");
            d.shape = vec![36];
            d.data.truncate(36);
        })
    }

    /// Inputs without `z`.
    fn without_z(&self) -> PathBuf {
        self.edited("in.safetensors", "no_z.safetensors", |t| {
            t.remove("z");
        })
    }

    /// A reference that no correct run matches: every value 1% off.
    fn wrong_reference(&self) -> PathBuf {
        self.edited("ref.safetensors", "wrong_ref.safetensors", |t| {
            t.values_mut().for_each(|v| v.data.iter_mut().for_each(|x| *x *= 1.01));
        })
    }
}

/// The relative error printed in `... max relative error E (tolerance ...`.
fn printed_error(line: &str) -> f64 {
    let rest = line.split("max relative error ").nth(1).unwrap_or_else(|| panic!("no error in {line:?}"));
    let e = rest.split_whitespace().next().unwrap_or("");
    e.parse().unwrap_or_else(|_| panic!("bad error {e:?} in {line:?}"))
}

#[test]
fn c_examples_build_with_cc_and_match_the_reference() {
    let f = Fixture::new();
    let bin = f.path("bin");
    let out = Command::new("sh")
        .arg(repo().join("examples/c/build.sh"))
        .args([f.path("mamba1"), profile_dir().to_path_buf(), bin.clone()])
        .env("CFLAGS", "-O2 -std=c11 -Wall -Wextra -Werror")
        .output()
        .expect("run sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "examples/c/build.sh failed:\n{stderr}");
    assert_eq!(stderr.matches("+ cc ").count(), 2, "the cc lines are echoed:\n{stderr}");
    let (inputs, reference) = (f.path("in.safetensors"), f.path("ref.safetensors"));
    let (main, checked) = (bin.join("main"), bin.join("checked"));

    // Direct: the generated header and static library, no runtime.
    let out = run(&main, &[inputs.as_os_str(), reference.as_os_str()]);
    out.ok();
    let line = out.stdout.trim_end();
    assert!(
        line.starts_with("mamba1 direct: out [2, 37, 63] max relative error ")
            && line.ends_with("(tolerance 1e-05): ok"),
        "{line}"
    );
    assert!(printed_error(line) < 1e-5, "{line}");
    let out = run(&main, &[inputs.as_os_str(), f.wrong_reference().as_os_str()]);
    out.fails();
    assert!(out.stdout.trim_end().ends_with(": FAILED") && printed_error(&out.stdout) > 1e-3, "{}", out.stdout);
    let out = run(&main, &[f.short_d().as_os_str(), reference.as_os_str()]);
    out.fails();
    assert!(out.stderr.contains("tensor `D` is missing or does not have the shape mamba1.h gives"), "{}", out.stderr);

    // Checked: through ssmc-runtime's C ABI, including its deliberate wrong shape.
    let artifact = f.path("mamba1");
    let out = run(&checked, &[artifact.as_os_str(), inputs.as_os_str(), reference.as_os_str()]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].starts_with("checked (ssmc-runtime 0.1.0): out max relative error ") && lines[0].ends_with(": ok"),
        "{}",
        lines[0]
    );
    assert!(printed_error(lines[0]) < 1e-5, "{}", lines[0]);
    assert_eq!(
        lines[1],
        "wrong shape: code 2, output untouched: tensor `out`: expected shape [B, D, L] with L=63 (from tensor `u`), got [2, 37, 62]"
    );

    // Wrong inputs from a file: a code and a message naming the tensor, then exit 1.
    let out = run(&checked, &[artifact.as_os_str(), f.short_d().as_os_str(), reference.as_os_str()]);
    out.fails();
    assert_eq!(
        out.stderr.trim_end(),
        "error (code 2): tensor `D`: expected shape [D] with D=37 (from tensor `u`), got [36]"
    );
    let out = run(&checked, &[artifact.as_os_str(), f.without_z().as_os_str(), reference.as_os_str()]);
    out.fails();
    assert_eq!(out.stderr.trim_end(), "error (code 2): missing input `z` with shape [B, D, L]");
    let out = run(&checked, &[f.path("nowhere").as_os_str(), inputs.as_os_str(), reference.as_os_str()]);
    out.fails();
    assert!(out.stderr.starts_with("error: cannot read ") && out.stderr.contains("manifest.json"), "{}", out.stderr);
    let out = run(&checked, &[artifact.as_os_str(), inputs.as_os_str(), f.wrong_reference().as_os_str()]);
    out.fails();
    assert!(out.stdout.lines().next().is_some_and(|l| l.ends_with(": FAILED")), "{}", out.stdout);
}

#[test]
fn rust_example_runs_through_the_runtime_and_matches_the_reference() {
    let f = Fixture::new();
    let example = profile_dir().join("ssmc-example");
    let (artifact, inputs, reference) = (f.path("mamba1"), f.path("in.safetensors"), f.path("ref.safetensors"));
    let out = run(&example, &[artifact.as_os_str(), inputs.as_os_str(), reference.as_os_str()]);
    out.ok();
    let line = out.stdout.trim_end();
    assert!(
        line.starts_with("mamba1 rust: out [2, 37, 63] max relative error ") && line.ends_with("(tolerance 1e-5): ok"),
        "{line}"
    );
    assert!(printed_error(line) < 1e-5, "{line}");

    let out = run(&example, &[artifact.as_os_str(), inputs.as_os_str(), f.wrong_reference().as_os_str()]);
    out.fails();
    assert!(out.stdout.trim_end().ends_with(": FAILED") && printed_error(&out.stdout) > 1e-3, "{}", out.stdout);
    let out = run(&example, &[artifact.as_os_str(), f.short_d().as_os_str(), reference.as_os_str()]);
    out.fails();
    assert_eq!(out.stderr.trim_end(), "error: tensor `D`: expected shape [D] with D=37 (from tensor `u`), got [36]");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
