//! The stages of a campaign: source mutants through `check`; accepted layers through `ir`,
//! `explain` and `run` (interpreter, then native CPU code compared with it); damaged input
//! files through `run`.

use super::exec::{self, Exit, Problem};
use super::{mutate, parallel, rng_for, Cx, SOURCES};
use rand::seq::SliceRandom;
use rand::Rng;
use ssmc_compiler::ir::{DimSize, Layer};
use ssmc_compiler::tensors::read_safetensors;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Files checked by one `ssmc check` process.
const BATCH: usize = 25;

/// Source mutants through `check`, `BATCH` files per process; a batch with a problem is
/// checked again one file at a time to find the culprit. Returns the accepted sources.
pub(super) fn check(cx: &Cx) -> Vec<Vec<u8>> {
    let accepted = Mutex::new(Vec::new());
    let batches = cx.config.check.div_ceil(BATCH);
    parallel(cx.config.jobs, batches, |b| {
        let dir = cx.config.work.join(format!("check-{b}"));
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let first = b * BATCH;
        let cases: Vec<(String, Vec<u8>)> = (first..(first + BATCH).min(cx.config.check))
            .map(|n| {
                let mut rng = rng_for(cx.config.seed, 1, n);
                let (_, src) = SOURCES.choose(&mut rng).copied().unwrap_or(SOURCES[0]);
                (format!("m{n}.ssm"), mutate::source(&mut rng, src, cx.config.max_edits))
            })
            .collect();
        for (name, bytes) in &cases {
            let _ = std::fs::write(dir.join(name), bytes);
        }
        let mut args = vec!["check".to_string()];
        args.extend(cases.iter().map(|(n, _)| n.clone()));
        let Some(exit) = cx.ssmc(&dir, &args, &[]) else { return };
        let whole_batch_fine = exec::judge(&exit).is_none() && exec::every_error_located(&exit.stderr);
        for (k, (name, bytes)) in cases.iter().enumerate() {
            let ok_line = format!("{name}: ok");
            let fine = if whole_batch_fine {
                Some(exit.stdout.lines().any(|l| l.starts_with(&ok_line)))
            } else {
                check_one(cx, &dir, name, bytes)
            };
            match fine {
                Some(true) => {
                    cx.count("check", true);
                    accepted.lock().unwrap_or_else(|e| e.into_inner()).push((first + k, bytes.clone()));
                }
                Some(false) => cx.count("check", false),
                // A failure, recorded with its case.
                None => {}
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    // In case order, whichever worker checked them: the same seed runs the same layers.
    let mut accepted = accepted.into_inner().unwrap_or_else(|e| e.into_inner());
    accepted.sort_by_key(|(n, _)| *n);
    accepted.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Checks one file in a folder of its own; `Some(accepted)`, or `None` after recording a
/// failure.
fn check_one(cx: &Cx, batch_dir: &Path, name: &str, bytes: &[u8]) -> Option<bool> {
    let dir = batch_dir.join(name.trim_end_matches(".ssm"));
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(dir.join(name), bytes).ok()?;
    let args = vec!["check".to_string(), name.to_string()];
    let exit = cx.ssmc(&dir, &args, &[])?;
    let problem = exec::judge(&exit).or((!exec::every_error_located(&exit.stderr)).then_some(Problem::Unlocated));
    if let Some(p) = problem {
        cx.fail("check", p, &dir, &format!("ssmc {}", args.join(" ")), &exit.stderr);
        return None;
    }
    Some(exit.code == Some(0))
}

/// The first layer of an accepted source, checked in this process on a thread with a large
/// stack (the child already survived the same check).
fn layer_of(bytes: &[u8]) -> Option<Layer> {
    let bytes = bytes.to_vec();
    let t = std::thread::Builder::new().stack_size(256 << 20).spawn(move || {
        let c = ssmc_compiler::check_source("case.ssm", &bytes);
        c.result.ok().and_then(|(mut m, _)| (!m.layers.is_empty()).then(|| m.layers.remove(0)))
    });
    t.ok()?.join().ok().flatten()
}

/// `--dim NAME=2|3` for every runtime dim of the layer.
fn tiny_dims(layer: &Layer, rng: &mut impl Rng) -> Vec<String> {
    let mut args = Vec::new();
    for (_, d) in layer.dims.iter() {
        if d.size == DimSize::Runtime {
            args.push("--dim".to_string());
            args.push(format!("{}={}", d.name, rng.gen_range(2..=3)));
        }
    }
    args
}

const FORMS: [&str; 6] = ["recurrent", "scan", "chunked", "chunked:2", "conv", "quadratic"];

/// Accepted mutants through `ir`, `explain` and `run` on the interpreter; the first
/// `cpu` of them also as native code, compared with the interpreter's outputs.
pub(super) fn layers(cx: &Cx, accepted: &[Vec<u8>]) {
    let n = cx.config.interp.min(accepted.len());
    parallel(cx.config.jobs, n, |i| {
        let mut rng = rng_for(cx.config.seed, 2, i);
        let bytes = &accepted[i];
        let dir = cx.config.work.join(format!("layer-{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_err() || std::fs::write(dir.join("case.ssm"), bytes).is_err() {
            return;
        }
        let Some(layer) = layer_of(bytes) else {
            cx.fail(
                "interp",
                Problem::Harness,
                &dir,
                "check_source in process",
                "accepted by ssmc check, not in process",
            );
            return;
        };
        let mut common = vec!["case.ssm".to_string(), "--layer".to_string(), layer.name.clone()];
        common.extend(tiny_dims(&layer, &mut rng));
        let cache = cx.config.work.join(format!("cache-{i}"));
        let envs: [(&str, &Path); 1] = [("SSMC_CACHE", &cache)];
        let step = |stage: &'static str, args: Vec<String>, outputs: &[&str]| -> Option<Exit> {
            let outs: Vec<PathBuf> = outputs.iter().map(|o| dir.join(o)).collect();
            let before = exec::snapshot(&dir, &cache);
            let exit = cx.ssmc(&dir, &args, &envs)?;
            let after = exec::snapshot(&dir, &cache);
            let touched = exec::touched(&before, &after, &outs);
            let problem = exec::judge(&exit)
                .or((!touched.is_empty()).then_some(Problem::Touched))
                .or(exec::temporary_left(&dir).map(|_| Problem::LeftTemporary))
                .or(exec::temporary_left(&cache).map(|_| Problem::LeftTemporary));
            let command = format!("SSMC_CACHE={} ssmc {}", cache.display(), args.join(" "));
            match problem {
                Some(p) => {
                    let why = format!("{}\ntouched: {touched:?}", exit.stderr);
                    cx.fail(stage, p, &dir, &command, &why);
                    None
                }
                None => {
                    cx.count(stage, exit.code == Some(0));
                    Some(exit)
                }
            }
        };
        step("ir", vec!["ir".to_string(), "case.ssm".to_string()], &[]);
        let mut explain = vec!["explain".to_string()];
        explain.extend(common.iter().cloned());
        explain.extend(["--target".to_string(), ["cpu", "ptx"].choose(&mut rng).unwrap_or(&"cpu").to_string()]);
        step("explain", explain, &[]);
        let seed = rng.gen_range(0..1000u32).to_string();
        let mut interp = vec!["run".to_string()];
        interp.extend(common.iter().cloned());
        interp.extend(["--seed".to_string(), seed.clone(), "--output".to_string(), "interp.safetensors".to_string()]);
        interp.extend(["--save-inputs".to_string(), "in.safetensors".to_string()]);
        if rng.gen_bool(0.3) {
            interp.extend(["--form".to_string(), FORMS.choose(&mut rng).unwrap_or(&"recurrent").to_string()]);
        }
        let interp_ok =
            step("interp", interp, &["interp.safetensors", "in.safetensors"]).is_some_and(|e| e.code == Some(0));
        if i < cx.config.cpu && interp_ok {
            let mut native = vec!["run".to_string(), "case.ssm".to_string(), "--layer".to_string(), layer.name.clone()];
            native.extend(["--inputs", "in.safetensors", "--target", "cpu", "--threads", "2"].map(String::from));
            native.extend(["--output".to_string(), "cpu.safetensors".to_string()]);
            if step("cpu", native.clone(), &["cpu.safetensors"]).is_some_and(|e| e.code == Some(0)) {
                compare(cx, &dir);
            }
            if i < cx.config.valgrind {
                memcheck(cx, &dir, native, &envs);
            }
        }
        if !cx.config.keep_cases {
            let _ = std::fs::remove_dir_all(&cache);
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

/// The native run again as AVX2 code (valgrind decodes no AVX-512), built first outside
/// valgrind, then run inside it on one thread.
fn memcheck(cx: &Cx, dir: &Path, mut args: Vec<String>, envs: &[(&str, &Path)]) {
    args.extend(["--cpu", "x86-64-v3"].map(String::from));
    for (flag, value) in [("--threads", "1"), ("--output", "memcheck.safetensors")] {
        if let Some(i) = args.iter().position(|a| a == flag) {
            args[i + 1] = value.to_string();
        }
    }
    let built = match cx.ssmc(dir, &args, envs) {
        Some(e) if e.code == Some(0) => true,
        Some(e) => {
            cx.fail("memcheck", Problem::Harness, dir, &args.join(" "), &format!("AVX2 build failed\n{}", e.stderr));
            false
        }
        None => false,
    };
    if !built {
        return;
    }
    let Some(exit) = cx.ssmc_in_valgrind(dir, &args, envs) else { return };
    let problem = match exit.code {
        Some(99) => Some(Problem::OutOfBounds),
        _ => exec::judge(&exit),
    };
    match problem {
        Some(p) => cx.fail("memcheck", p, dir, &format!("valgrind ssmc {}", args.join(" ")), &exit.stderr),
        None => cx.count("memcheck", exit.code == Some(0)),
    }
}

/// Native outputs against the interpreter's where the interpreter's are finite and modest:
/// mutants make wild layers, whose f32 results may differ from f64 by overflow alone.
fn compare(cx: &Cx, dir: &Path) {
    let (Ok(a), Ok(b)) =
        (read_safetensors(&dir.join("cpu.safetensors")), read_safetensors(&dir.join("interp.safetensors")))
    else {
        cx.fail("cpu", Problem::Harness, dir, "read outputs", "an output file does not read back");
        return;
    };
    for (name, want) in &b {
        let Some(got) = a.get(name) else {
            cx.fail("cpu", Problem::Disagrees, dir, "compare", &format!("native run lacks output `{name}`"));
            return;
        };
        let tame = want.data.iter().all(|v| v.is_finite() && v.abs() < 1e6);
        if !tame || got.shape != want.shape {
            continue;
        }
        let err = crate::rel_err(&got.data, &want.data);
        if err.is_nan() || err >= 1e-3 {
            let what = format!("output `{name}`: relative error {err:.3e} against the interpreter");
            cx.fail("cpu", Problem::Disagrees, dir, "compare cpu.safetensors with interp.safetensors", &what);
        }
    }
}

/// Damaged input files through `run`: generated once per stdlib layer, then mutated; the
/// input file must be untouched and every error in words.
pub(super) fn tensor_files(cx: &Cx) {
    let base = cx.config.work.join("tensors");
    let _ = std::fs::remove_dir_all(&base);
    let mut valid = Vec::new();
    for (name, src) in SOURCES {
        let dir = base.join(name);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("layer.ssm"), src);
        let args: Vec<String> =
            ["run", "layer.ssm", "--dim", "L=5", "--dim", "B=2", "--save-inputs", "valid.safetensors"]
                .map(String::from)
                .to_vec();
        let made = cx.ssmc(&dir, &args, &[]).is_some_and(|e| e.code == Some(0));
        match std::fs::read(dir.join("valid.safetensors")) {
            Ok(bytes) if made => valid.push((name, bytes)),
            _ => cx.fail("tensors", Problem::Harness, &dir, &args.join(" "), "cannot make a valid input file"),
        }
    }
    if valid.is_empty() {
        return;
    }
    parallel(cx.config.jobs, cx.config.tensors, |i| {
        let mut rng = rng_for(cx.config.seed, 3, i);
        let (name, bytes) = &valid[i % valid.len()];
        let dir = base.join(format!("case-{i}"));
        let cache = base.join(format!("cache-{}", i % cx.config.jobs.max(1)));
        let _ = std::fs::create_dir_all(&dir);
        let src = SOURCES.iter().find(|(n, _)| n == name).map_or("", |(_, s)| s);
        let mutant = mutate::tensor_file(&mut rng, bytes);
        if std::fs::write(dir.join("layer.ssm"), src).is_err()
            || std::fs::write(dir.join("in.safetensors"), &mutant).is_err()
        {
            return;
        }
        let target = if rng.gen_bool(0.5) { "interp" } else { "cpu" };
        let args: Vec<String> =
            ["run", "layer.ssm", "--inputs", "in.safetensors", "--target", target, "--output", "out.safetensors"]
                .map(String::from)
                .to_vec();
        let before = exec::snapshot(&dir, &cache);
        let envs: [(&str, &Path); 1] = [("SSMC_CACHE", &cache)];
        let Some(exit) = cx.ssmc(&dir, &args, &envs) else { return };
        let touched = exec::touched(&before, &exec::snapshot(&dir, &cache), &[dir.join("out.safetensors")]);
        let problem = exec::judge(&exit).or((!touched.is_empty()).then_some(Problem::Touched));
        match problem {
            Some(p) => cx.fail("tensors", p, &dir, &args.join(" "), &format!("{}\ntouched: {touched:?}", exit.stderr)),
            None => cx.count("tensors", exit.code == Some(0)),
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    let _ = std::fs::remove_dir_all(&base);
}
