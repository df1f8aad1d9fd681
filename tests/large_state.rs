//! Layers with large states (above the size where the schedules stop unrolling the state
//! and loop over it in tiles) against the f64 interpreter, in every native form, at an
//! awkward state (300: not a multiple of 16 or 8) and a large one (4096).

use proptest::prelude::*;
use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::Form;
use ssmc_compiler::{interp, tensors};
use ssmc_tests::{f32_inputs, rel_err, stdlib_source};
use std::collections::BTreeMap;

#[path = "native_run.rs"]
mod native_run;

#[path = "random_layers.rs"]
mod random_layers;

/// `name` from the stdlib with its state set to `n` and, with `states`, an initial and a
/// final state (causal layers only).
fn layer_with_state(name: &str, n: usize, states: bool) -> ssmc_compiler::ir::Layer {
    let src = stdlib_source(name);
    let at = src.find("state N = ").expect("a constant state");
    let end = at + src[at..].find(['\n', ',']).expect("end of the dims line");
    let mut src = format!("{}state N = {n}{}", &src[..at], &src[end..]);
    if states {
        let close = src.rfind('}').expect("the layer's brace");
        let axes = if name == "mamba2" { "B, H, P, N" } else { "B, D, N" };
        let decl = format!("  input h0: f32[{axes}]\n  output hT: f32[{axes}]\n  initial_state h0\n  final_state hT\n");
        src.insert_str(close, &decl);
    }
    ssmc_compiler::compile(&src).unwrap_or_else(|d| panic!("{d:?}\n{src}")).0.layers.remove(0)
}

/// Runs every case and checks each output: relative error under 1e-5, no NaN left.
fn check(name: &str, n: usize, states: bool, forms: &[Form]) {
    let layer = layer_with_state(name, n, states);
    let dir = tempfile::tempdir().expect("tempdir");
    for (k, form) in forms.iter().enumerate() {
        let lib = native_run::build(&layer, *form, &dir.path().join(format!("f{k}")));
        let dims: BTreeMap<String, usize> =
            [("B", 2), ("D", 19), ("H", if name == "mamba2" { 2 } else { 19 }), ("P", 5), ("L", 23)]
                .into_iter()
                .filter(|(d, _)| layer.dims.iter().any(|(_, x)| x.name == *d))
                .map(|(d, v)| (d.to_string(), v))
                .collect();
        let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
        let inputs = f32_inputs(tensors::generate_inputs(&layer, &sizes, 3));
        let want = interp::run(&layer, &sizes, &inputs);
        let got = native_run::run(&lib, &inputs, &want);
        for (out, w) in &want {
            let g = &got[out].data;
            assert!(g.iter().all(|x| x.is_finite()), "{name} N={n} {form:?} {out}: not every element written");
            let e = rel_err(g, &w.data);
            println!("{name} N={n} {form:?} {out}: rel err {e:.2e}");
            assert!(e < 1e-5, "{name} N={n} {form:?} {out}: relative error {e:e}");
        }
    }
}

#[test]
fn mamba1_with_large_states_matches_the_interpreter() {
    for n in [300, 4096] {
        check("mamba1", n, false, &[Form::Recurrent]);
    }
    check("mamba1", 300, true, &[Form::Recurrent]);
}

#[test]
fn mamba2_with_large_states_matches_the_interpreter() {
    for n in [300, 4096] {
        check("mamba2", n, false, &[Form::Recurrent, Form::Chunked { q: 16 }]);
    }
    check("mamba2", 300, true, &[Form::Recurrent, Form::Chunked { q: 7 }]);
}

#[test]
fn s4d_with_large_states_matches_the_interpreter() {
    for n in [300, 4096] {
        check("s4d", n, false, &[Form::Recurrent, Form::Conv]);
    }
}

#[test]
fn vim_with_large_states_matches_the_interpreter() {
    for n in [300, 4096] {
        check("vim", n, false, &[Form::Recurrent]);
    }
}

/// Random layers (every option of the language: real and complex A, each discretization,
/// directions, groups, headdims, initial and final states, layouts) with states large
/// enough to be looped over, native recurrent code against the interpreter.
#[test]
fn random_layers_with_large_states_match_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = proptest::test_runner::Config { cases: 40, failure_persistence: None, ..Default::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let count = std::cell::Cell::new(0);
    // Above 32 vectors of state: 66 (lanes over heads), 257 (one lane), 600 (8 lanes).
    let states = prop::sample::select(vec![66usize, 130, 257, 600]);
    let strategy = (random_layers::config(), random_layers::dims(), states, any::<u64>());
    runner
        .run(&strategy, |(mut cfg, mut d, n, seed)| {
            cfg.n_const = true;
            d.n = n;
            let cfg = cfg.normalize();
            let case = random_layers::build_with(&cfg, d, seed, f32_only);
            let k = count.get();
            count.set(k + 1);
            let lib = native_run::build(&case.layer, Form::Recurrent, &dir.path().join(format!("case{k}")));
            let inputs = f32_inputs(case.inputs.clone());
            let want = interp::run(&case.layer, &case.sizes, &inputs);
            let got = native_run::run(&lib, &inputs, &want);
            for (name, w) in &want {
                let e = rel_err(&got[name].data, &w.data);
                prop_assert!(e < 1e-5, "N={n} output {name}: relative error {e:e}\n{}", case.src);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Every tensor declared f32 (the helper of this file passes f32 buffers only).
fn f32_only(src: String) -> String {
    src.lines()
        .map(|l| l.replace(": f64[", ": f32[").replace(": f16[", ": f32[").replace(": bf16[", ": f32["))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The PTX of every stdlib layer at the largest state `ssmc check` accepts assembles for
/// sm_90, and each function's stack frame (the state and hoisted values in a thread's local
/// memory) fits the 512 KiB a GPU thread may have. Skipped without `ptxas` (which
/// scripts/setup.sh installs into `.venv-ptxas/`; `$SSMC_PTXAS` names another), except
/// under CI.
#[test]
fn ptx_at_the_state_limit_fits_a_threads_local_memory() {
    let venv = ssmc_tests::repo().join(".venv-ptxas/lib");
    let found = std::fs::read_dir(venv).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/nvidia/cuda_nvcc/bin/ptxas"))
            .find(|p| p.is_file())
    });
    let Some(ptxas) = std::env::var_os("SSMC_PTXAS").map(std::path::PathBuf::from).or(found) else {
        assert!(std::env::var_os("CI").is_none(), "ptxas not found under CI");
        println!("skipped: ptxas not found");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ssmc_tests::STDLIB {
        let layer = layer_with_state(name, 16384, false);
        let out = dir.path().join(name);
        let m = ssmc_tests::build_artifact(&layer, &ssmc_compiler::target::Target::cuda(), Form::Recurrent, &out)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let run = std::process::Command::new(&ptxas)
            .args(["-arch=sm_90", "-v"])
            .arg(out.join(&m.files["ptx"]))
            .arg("-o")
            .arg(dir.path().join(format!("{name}.cubin")))
            .output()
            .expect("runs ptxas");
        let report = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success(), "{name}: ptxas failed:\n{report}");
        let frames: Vec<u64> = report
            .lines()
            .filter_map(|l| {
                let at = l.find(" bytes stack frame")?;
                l[..at].split_whitespace().last()?.parse().ok()
            })
            .collect();
        println!("{name} N=16384: stack frames {frames:?} bytes");
        assert!(!frames.is_empty(), "{name}: no stack frame in:\n{report}");
        assert!(frames.iter().all(|&f| f <= 512 * 1024), "{name}: stack frames {frames:?} over 512 KiB");
    }
}
