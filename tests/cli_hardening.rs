//! Bad input never crashes `ssmc` and never destroys a file: closed pipes and full disks,
//! CPU names LLVM would abort on, temporary build folders, output paths that are inputs,
//! devices or links, and runs too large for the machine.

use ssmc_tests::{ssmc_bin, stdlib, Out};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `ssmc args...` in `dir` with extra environment `env`; it must not panic.
fn ssmc_env<I, S>(dir: &Path, env: &[(&str, &str)], args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(ssmc_bin());
    cmd.args(args).current_dir(dir).env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = Out::run_lossy(&mut cmd);
    out.not_panicked("ssmc");
    assert_ne!(out.code, Some(101), "ssmc panicked:\n{}", out.stderr);
    out
}

fn ssmc<I, S>(dir: &Path, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ssmc_env(dir, &[], args)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A copy of `stdlib/NAME.ssm` in `dir`, as `file`.
fn copy_layer(dir: &Path, name: &str, file: &str) -> std::path::PathBuf {
    let p = dir.join(file);
    std::fs::copy(stdlib(name), &p).expect("copy");
    p
}

// ---------------------------------------------------------------------------------------
// 7. stdout closed or full

#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    for _ in 0..20 {
        let mut child = Command::new(ssmc_bin())
            .args(["ir", &stdlib("vim").display().to_string()])
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssmc");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "ssmc panicked on a closed pipe:\n{stderr}");
        assert_eq!(out.status.code(), Some(0), "a closed pipe ends ssmc with status 0:\n{stderr}");
    }
}

#[test]
fn a_full_stdout_is_an_error() {
    let dir = tempdir();
    for args in [vec!["run".to_string()], vec!["explain".to_string()], vec!["ir".to_string()]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
        let mut cmd = Command::new(ssmc_bin());
        cmd.args(&args).arg(stdlib("mamba1")).current_dir(dir.path()).env_remove("RUST_BACKTRACE").stdout(full);
        let out = Out::run_lossy(&mut cmd);
        out.not_panicked("ssmc").fails().stderr_has(&["error: cannot write to stdout", "No space left"]);
    }
}

// ---------------------------------------------------------------------------------------
// 6. CPU names and temporary build folders

#[test]
fn cpu_names_llvm_aborts_on_are_refused_with_the_list() {
    let dir = tempdir();
    for (cpu, why) in
        [("pentium", "lacks AVX2"), ("i686", "lacks AVX2"), ("x86-64-v2", "lacks AVX2"), ("foo", "not an x86-64 CPU")]
    {
        let out = ssmc(dir.path(), ["build", &stdlib("mamba1").display().to_string(), "--cpu", cpu, "-o", "b"]);
        out.errs().stderr_has(&[&format!("--cpu {cpu}"), why, "accepted: native, x86-64-v3, x86-64-v4"]);
        let run = ssmc(dir.path(), ["run", &stdlib("mamba1").display().to_string(), "--target", "cpu", "--cpu", cpu]);
        run.errs().no_stdout().stderr_has(&[why]);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "a refused build left {left:?}");
}

#[test]
fn stale_build_folders_are_swept() {
    let dir = tempdir();
    let (old, fresh) = (dir.path().join(".ssmc-buildOLD"), dir.path().join(".ssmc-buildNEW"));
    std::fs::create_dir(&old).expect("mkdir");
    std::fs::create_dir(&fresh).expect("mkdir");
    let touched = Command::new("touch").args(["-d", "2 hours ago"]).arg(&old).status().expect("touch");
    assert!(touched.success());
    let out = ssmc(dir.path(), ["build", &stdlib("s4d").display().to_string(), "--cpu", "x86-64-v3", "-o", "b"]);
    out.ok();
    assert!(!old.exists(), "a build folder two hours old is left");
    assert!(fresh.exists(), "a fresh build folder (another build's) was removed");
}

// ---------------------------------------------------------------------------------------
// 8. output paths

#[test]
fn an_output_that_is_an_input_or_another_output_is_refused() {
    let dir = tempdir();
    let d = dir.path();
    let layer = copy_layer(d, "mamba1", "layer.ssm");
    let source = std::fs::read(&layer).expect("read");
    ssmc(d, ["run", "layer.ssm", "--save-inputs", "in.safetensors"]).ok();
    let inputs = std::fs::read(d.join("in.safetensors")).expect("read");
    std::os::unix::fs::symlink("layer.ssm", d.join("link.ssm")).expect("symlink");
    std::fs::hard_link(&layer, d.join("hard.ssm")).expect("hard link");
    let cases: [&[&str]; 7] = [
        &["--inputs", "in.safetensors", "--output", "in.safetensors"],
        &["--inputs", "in.safetensors", "--output", "./in.safetensors"],
        &["--output", "layer.ssm"],
        &["--save-inputs", "layer.ssm"],
        &["--output", "link.ssm"],
        &["--emit-matrix", "hard.ssm"],
        &["--save-inputs", "f.safetensors", "--output", "f.safetensors"],
    ];
    for extra in cases {
        let out = ssmc(d, ["run", "layer.ssm"].iter().chain(extra));
        out.errs().no_stdout().stderr_has(&["same file"]);
    }
    assert_eq!(std::fs::read(&layer).expect("read"), source, "the source was changed");
    assert_eq!(std::fs::read(d.join("in.safetensors")).expect("read"), inputs, "the inputs were changed");
    assert!(!d.join("f.safetensors").exists());
}

#[test]
fn devices_and_directories_are_refused_by_kind() {
    let dir = tempdir();
    let d = dir.path();
    copy_layer(d, "mamba1", "layer.ssm");
    std::fs::create_dir(d.join("sub")).expect("mkdir");
    for (path, kind) in
        [("/dev/null", "a character device"), ("sub", "a directory"), ("/dev/stdout", "file descriptor")]
    {
        ssmc(d, ["run", "layer.ssm", "--output", path]).errs().no_stdout().stderr_has(&[kind]);
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").expect("stat").file_type().is_char_device());
}

#[test]
fn a_symbolic_link_is_written_through_and_kept() {
    let dir = tempdir();
    let d = dir.path();
    copy_layer(d, "mamba1", "layer.ssm");
    std::fs::write(d.join("target.safetensors"), b"old").expect("write");
    std::os::unix::fs::symlink("target.safetensors", d.join("link.safetensors")).expect("symlink");
    ssmc(d, ["run", "layer.ssm", "--output", "link.safetensors"]).ok();
    assert!(std::fs::symlink_metadata(d.join("link.safetensors")).expect("lstat").file_type().is_symlink());
    let written = ssmc_compiler::tensors::read_safetensors(&d.join("target.safetensors")).expect("a safetensors file");
    assert!(written.contains_key("out"));
    // A dangling link: the file it names is created.
    std::os::unix::fs::symlink("new.safetensors", d.join("dangling.safetensors")).expect("symlink");
    ssmc(d, ["run", "layer.ssm", "--output", "dangling.safetensors"]).ok();
    assert!(d.join("new.safetensors").is_file());
}

#[test]
fn build_never_replaces_its_source() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::create_dir(d.join("b")).expect("mkdir");
    let src = copy_layer(&d.join("b"), "mamba1", "manifest.json");
    let text = std::fs::read(&src).expect("read");
    let out = ssmc(d, ["build", "b/manifest.json", "--cpu", "x86-64-v3", "-o", "b"]);
    out.errs().no_stdout().stderr_has(&["b/manifest.json", "would replace it"]);
    assert_eq!(std::fs::read(&src).expect("read"), text);
    let loops = copy_layer(&d.join("b"), "mamba1", "mamba1.loops");
    let out = ssmc(d, ["build", "b/mamba1.loops", "--cpu", "x86-64-v3", "-o", "b", "--emit", "loops"]);
    out.errs().stderr_has(&["mamba1.loops"]);
    assert_eq!(std::fs::read(&loops).expect("read"), text);
}

// ---------------------------------------------------------------------------------------
// 5. memory

#[test]
fn a_run_too_large_for_memory_is_refused_up_front() {
    let dir = tempdir();
    let m = stdlib("mamba1").display().to_string();
    let out = ssmc_env(dir.path(), &[("SSMC_MAX_MEMORY", "1G")], ["run", &m, "--dim", "L=4000000"]);
    out.errs().no_stdout().stderr_has(&["L=4000000", "interpreter state", "SSMC_MAX_MEMORY", "1.0 GiB"]);
    let out = ssmc_env(dir.path(), &[("SSMC_MAX_MEMORY", "1G")], ["run", &m, "--dim", "L=4000000", "--target", "cpu"]);
    out.errs().no_stdout().stderr_has(&["L=4000000", "SSMC_MAX_MEMORY"]);
    let out = ssmc_env(dir.path(), &[("SSMC_MAX_MEMORY", "lots")], ["run", &m]);
    out.errs().stderr_has(&["SSMC_MAX_MEMORY=lots"]);
    ssmc_env(dir.path(), &[("SSMC_MAX_MEMORY", "1G")], ["run", &m]).ok();
}

#[test]
fn explain_and_build_do_not_speak_of_the_interpreter() {
    let dir = tempdir();
    let m = stdlib("mamba1").display().to_string();
    for cmd in [vec!["explain", &m, "--dim", "L=400000000"], vec!["build", &m, "-o", "b", "--dim", "L=400000000"]] {
        let out = ssmc(dir.path(), &cmd);
        out.errs().stderr_has(&["L", "cost model"]);
        assert!(!out.stderr.contains("interpreter"), "{}", out.stderr);
    }
    ssmc(dir.path(), ["run", &m, "--dim", "L=400000000"]).errs().stderr_has(&["`ssmc run`"]);
}
