//! The PTX of every stdlib layer assembles for sm_90 with NVIDIA's `ptxas`: the check that
//! CI (no GPU) makes of the GPU code. Every GPU schedule of the stdlib layers and of
//! `tests/lower/` is assembled; registers and spills are printed, and spill stores must be
//! zero except for the cases listed in `KNOWN_SPILLS`, held to their measured bytes.
//!
//! `ptxas` is `$SSMC_PTXAS`, else the one `scripts/setup.sh` installs into `.venv-ptxas/`,
//! else `ptxas` on the PATH. Without one the test is skipped, except under CI (`$CI` set),
//! where it fails.

use ssmc_compiler::target::Target;
use ssmc_tests::{repo, STDLIB};
use std::path::PathBuf;
use std::process::Command;

/// The ptxas of the setup script's virtual environment, if installed.
fn venv_ptxas() -> Option<PathBuf> {
    let lib = repo().join(".venv-ptxas/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/nvidia/cuda_nvcc/bin/ptxas"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSMC_PTXAS") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = venv_ptxas() {
        return Some(p);
    }
    let on_path = Command::new("ptxas").arg("--version").output().is_ok_and(|o| o.status.success());
    on_path.then(|| PathBuf::from("ptxas"))
}

/// The number before `what` in ptxas's `-v` report, e.g. `Used 56 registers`.
fn figure(report: &str, what: &str) -> Option<u64> {
    let at = report.find(what)?;
    report[..at].split_whitespace().last()?.parse().ok()
}

#[test]
fn stdlib_ptx_assembles_for_sm_90() {
    let Some(ptxas) = ptxas() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ptxas not found under CI: scripts/setup.sh installs it into .venv-ptxas/ (or set SSMC_PTXAS)"
        );
        println!("skipped: ptxas not found; scripts/setup.sh installs it (or set SSMC_PTXAS)");
        return;
    };
    let version = Command::new(&ptxas)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas.display()));
    let version = String::from_utf8_lossy(&version.stdout);
    println!("{}: {}", ptxas.display(), version.lines().last().unwrap_or("?"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut built = 0;
    let mut spilling = Vec::new();
    for (name, layer, form) in ssmc_tests::schedules(&Target::cuda()) {
        let out = dir.path().join(format!("{name}-{form}"));
        let m =
            ssmc_tests::build_artifact(&layer, &Target::cuda(), form, &out).unwrap_or_else(|e| panic!("{name}: {e}"));
        built += 1;
        assert_eq!((m.target.as_str(), m.arch.as_str()), ("ptx", "sm_90"));
        let ptx = out.join(&m.files["ptx"]);
        let cubin = dir.path().join(format!("{name}.cubin"));
        let run = Command::new(&ptxas)
            .args(["-arch=sm_90", "-v"])
            .arg(&ptx)
            .arg("-o")
            .arg(&cubin)
            .output()
            .expect("run ptxas");
        let report = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success(), "{name}: ptxas -arch=sm_90 failed on {}:\n{report}", ptx.display());
        assert!(
            report.contains(&format!("Compiling entry function '{}' for 'sm_90'", m.entry)),
            "{name}: no entry `{}` in:\n{report}",
            m.entry
        );
        assert!(std::fs::metadata(&cubin).is_ok_and(|c| c.len() > 0), "{name}: ptxas wrote no cubin");
        let f = |what| figure(&report, what).map_or("?".to_string(), |n| n.to_string());
        let line = format!(
            "{name} {form}: {} registers, {} bytes stack, {} bytes spill stores, {} bytes spill loads",
            f("registers"),
            f("bytes stack frame"),
            f("bytes spill stores"),
            f("bytes spill loads")
        );
        println!("{line}");
        let known = KNOWN_SPILLS.iter().find(|(n, f, _)| *n == name && *f == form.to_string()).map_or(0, |k| k.2);
        match figure(&report, "bytes spill stores") {
            Some(bytes) if bytes <= known => {}
            _ => spilling.push(format!("{line} (allowed: {known})")),
        }
    }
    assert!(built >= STDLIB.len(), "only {built} GPU schedules were built");
    assert!(spilling.is_empty(), "GPU schedules that spill registers to local memory:\n{}", spilling.join("\n"));
}

/// Schedules that spill today, with the spill-store bytes ptxas 12 reports for sm_90: the
/// assertion holds them to that and every other schedule to zero. None since the GPU's
/// `recurrent` splits a large state over threads (S4D's 64 complex values spilled 208
/// bytes in one thread's registers).
const KNOWN_SPILLS: [(&str, &str, u64); 0] = [];
