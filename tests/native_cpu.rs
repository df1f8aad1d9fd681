//! Native CPU code of the stdlib layers against the f64 reference interpreter.

use proptest::prelude::*;
use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::Form;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::schedule;
use ssmc_compiler::target::Target;
use ssmc_compiler::{interp, tensors};
use ssmc_runtime::{CpuLayer, TensorRef};
use ssmc_tests::backend::native_dtypes;
use ssmc_tests::{
    f32_inputs, rel_err, rel_err_floored, ssmc_bin, stdlib_layer, stdlib_source, Out, RANDOM_LAYER_FLOOR, STDLIB,
};
use std::collections::BTreeMap;

#[path = "random_layers.rs"]
mod random_layers;

#[path = "guard.rs"]
mod guard;
use guard::{Guarded, Place};
use ssmc_runtime::DType;

#[test]
fn stdlib_layers_match_the_interpreter() {
    stdlib_layers_match_on("native");
}

/// The AVX2 code path (8 lanes, no AVX-512 instructions) runs on AVX-512 machines too.
#[test]
fn stdlib_layers_match_the_interpreter_with_avx2() {
    stdlib_layers_match_on("x86-64-v3");
}

fn stdlib_layers_match_on(cpu: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in STDLIB {
        let layer = stdlib_layer(name);
        let out = dir.path().join(name);
        ssmc_tests::build_artifact(&layer, &Target::cpu(cpu), Form::Recurrent, &out)
            .unwrap_or_else(|e| panic!("{name} for {cpu}: {e}"));
        let lib = CpuLayer::load(&out).expect("loads");
        for l in [1usize, 7, 63, 500, 1000] {
            let dims: BTreeMap<String, usize> =
                [("L".to_string(), l), ("D".to_string(), 37), ("H".to_string(), if name == "mamba2" { 5 } else { 37 })]
                    .into_iter()
                    .filter(|(k, _)| layer.dims.iter().any(|(_, d)| &d.name == k))
                    .collect();
            let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
            // Rounded to f32 first so both sides see the same values.
            let inputs = f32_inputs(tensors::generate_inputs(&layer, &sizes, 11));
            let want = interp::run(&layer, &sizes, &inputs);
            let got = run_native(&lib, &layer, &inputs, &want, 0);
            for (k, w) in &want {
                let e = rel_err(&got[k].data, &w.data);
                println!("{name} L={l} {k}: rel err {e:.2e}");
                assert!(e < 1e-5, "{name} L={l} output {k}: relative error {e:e}");
            }
        }
    }
}

/// Native code of random layers (every option the language has, awkward sizes) against the
/// interpreter on the same inputs, rounded to the declared dtypes (f32 or bf16).
#[test]
fn random_layers_match_the_interpreter() {
    random_layers_match(48, Just(Form::Recurrent), |_| {});
}

/// Runs the native layer on `threads` threads with the inputs in their declared dtypes (bf16
/// as raw bits) and the outputs poisoned with NaN, every buffer against a guard page at
/// `place` (an access out of bounds faults); returns the outputs as f64.
fn run_native_at(
    lib: &CpuLayer,
    layer: &Layer,
    inputs: &tensors::TensorMap,
    outputs: &tensors::TensorMap,
    threads: usize,
    place: Place,
) -> tensors::TensorMap {
    let bufs: BTreeMap<&str, (DType, Guarded)> = inputs
        .iter()
        .map(|(k, v)| {
            let bf16 = layer.inputs().any(|(_, t)| &t.name == k && t.dtype == DType::Bf16);
            let b = if bf16 {
                let bits: Vec<u16> = v.data.iter().map(|x| half::bf16::from_f64(*x).to_bits()).collect();
                (DType::Bf16, Guarded::copy_of(&guard::u16_bytes(&bits), place))
            } else {
                let f: Vec<f32> = v.data.iter().map(|x| *x as f32).collect();
                (DType::F32, Guarded::copy_of(&guard::f32_bytes(&f), place))
            };
            (k.as_str(), b)
        })
        .collect();
    let outs: BTreeMap<&str, Guarded> = outputs
        .iter()
        .map(|(k, v)| (k.as_str(), Guarded::copy_of(&guard::f32_bytes(&vec![f32::NAN; v.data.len()]), place)))
        .collect();
    let mut refs: Vec<TensorRef> =
        inputs.iter().map(|(k, v)| bufs[k.as_str()].1.tensor(k, bufs[k.as_str()].0, &v.shape, false)).collect();
    refs.extend(outs.iter().map(|(k, g)| g.tensor(k, DType::F32, &outputs[*k].shape, true)));
    lib.run(&refs, threads).expect("runs");
    outs.iter()
        .map(|(k, g)| {
            let data = guard::f32s(g.bytes()).into_iter().map(f64::from).collect();
            (k.to_string(), tensors::TensorData { shape: outputs[*k].shape.clone(), data })
        })
        .collect()
}

/// [`run_native_at`] with the guard pages after the buffers.
fn run_native(
    lib: &CpuLayer,
    layer: &Layer,
    inputs: &tensors::TensorMap,
    outputs: &tensors::TensorMap,
    threads: usize,
) -> tensors::TensorMap {
    run_native_at(lib, layer, inputs, outputs, threads, Place::After)
}

/// The elementwise functions of the generated code (polynomials, no libm) against f64,
/// element by element, over wide ranges: y = f(u) through a layer whose state is zero.
#[test]
fn elementwise_functions_are_accurate() {
    let cases = [
        ("exp(u)", "uniform(-80, 80)"),
        ("log(u)", "uniform(0.000001, 1000000)"),
        ("softplus(u)", "uniform(-30, 30)"),
        ("softplus(u)", "uniform(-2, 2)"),
        ("softplus(u)", "uniform(-87, 87)"),
        ("silu(u)", "uniform(-30, 30)"),
        ("sigmoid(u)", "uniform(-30, 30)"),
        ("sqrt(u)", "uniform(0, 1000)"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (k, (f, dist)) in cases.iter().enumerate() {
        let src = format!(
            "layer f {{
  dims batch B, channel D, time L, state N = 1
  input u: f32[B, D, L] ~ {dist}
  input Z: f32[N] ~ uniform(0, 0.000001)
  output y: f32[B, D, L]
  x = {f}
  A = diagonal(0 * Z)
  B = 0 * Z
  C = 0 * Z
  discretize discrete
  skip 1
}}"
        );
        let layer = ssmc_compiler::compile(&src).unwrap_or_else(|d| panic!("{d:?}\n{src}")).0.layers.remove(0);
        let out = dir.path().join(format!("f{k}"));
        ssmc_tests::build_artifact(&layer, &Target::cpu("native"), Form::Recurrent, &out).expect("builds");
        let lib = CpuLayer::load(&out).expect("loads");
        let dims: BTreeMap<String, usize> =
            [("B".to_string(), 1), ("D".to_string(), 64), ("L".to_string(), 512)].into();
        let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
        let inputs = tensors::generate_inputs(&layer, &sizes, 5);
        let want = interp::run(&layer, &sizes, &inputs);
        let got = run_native(&lib, &layer, &inputs, &want, 1);
        let worst = got["y"]
            .data
            .iter()
            .zip(&want["y"].data)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1e-30))
            .fold(0.0f64, f64::max);
        println!("{f} over {dist}: max relative error {worst:.2e}");
        assert!(worst < 2e-6, "{f} over {dist}: max relative error {worst:e}");
    }
}

/// `ssmc run --target cpu` as a user runs it: on a file of inputs (handed to the kernel as
/// they are), on generated inputs, with `--bench`, and with a bf16 input converted on the way.
#[test]
fn ssmc_run_target_cpu_matches_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bf16_src = stdlib_source("mamba1").replace("input u:          f32", "input u:          bf16");
    let bf16_file = dir.path().join("mamba1_bf16.ssm");
    std::fs::write(&bf16_file, bf16_src).expect("write");
    let files: Vec<std::path::PathBuf> = STDLIB.iter().map(|n| ssmc_tests::stdlib(n)).chain([bf16_file]).collect();
    for file in &files {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        let (inp, want, got) = (
            dir.path().join(format!("{name}.in")),
            dir.path().join(format!("{name}.ref")),
            dir.path().join(format!("{name}.out")),
        );
        let run = |args: &[&str]| {
            let mut cmd = std::process::Command::new(ssmc_bin());
            cmd.arg("run").arg(file).args(args);
            Out::run(&mut cmd)
        };
        let p = |f: &std::path::Path| f.to_str().expect("utf-8 path").to_string();
        run(&["--dim", "L=37", "--seed", "4", "--save-inputs", &p(&inp), "--output", &p(&want), "--dtype", "f64"])
            .ok_for(&name);
        let out = run(&[
            "--target",
            "cpu",
            "--inputs",
            &p(&inp),
            "--output",
            &p(&got),
            "--dtype",
            "f64",
            "--bench",
            "3",
            "--json",
        ]);
        out.ok_for(&name);
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json summary");
        assert_eq!(json["target"], "cpu", "{name}");
        assert!(json["median_ms"].as_f64().is_some_and(|m| m > 0.0), "{name}: {json}");
        let (w, g) = (tensors::read_safetensors(&want).expect("ref"), tensors::read_safetensors(&got).expect("out"));
        let e = rel_err(&g["out"].data, &w["out"].data);
        assert!(e < 1e-5, "{name}: --target cpu against the interpreter: relative error {e:e}");
        // Generated inputs take the other path (converted from f64 one tensor at a time).
        run(&["--dim", "L=37", "--seed", "4", "--target", "cpu", "--output", &p(&got), "--dtype", "f64"]).ok_for(&name);
        let g = tensors::read_safetensors(&got).expect("out");
        let e = rel_err(&g["out"].data, &w["out"].data);
        assert!(e < 1e-5, "{name}: --target cpu on generated inputs: relative error {e:e}");
    }
}

/// The native `chunked` form of Mamba-2 (SSD) against the interpreter: chunk sizes that
/// divide L, that do not, of one step and longer than L; heads of a size that is not a
/// multiple of the vector width.
#[test]
fn chunked_mamba2_matches_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = stdlib_layer("mamba2");
    // Every chunk size on this CPU, one with AVX2's 8 lanes.
    let cases = [("native", 1u32), ("native", 3), ("native", 16), ("native", 64), ("x86-64-v3", 16)];
    for (cpu, q) in cases {
        let out = dir.path().join(format!("{cpu}-q{q}"));
        ssmc_tests::build_artifact(&layer, &Target::cpu(cpu), Form::Chunked { q: q as usize }, &out)
            .unwrap_or_else(|e| panic!("chunked:{q} for {cpu}: {e}"));
        let lib = CpuLayer::load(&out).expect("loads");
        assert_eq!(lib.manifest().form, format!("chunked:{q}"));
        for (l, p) in [(1usize, 16usize), (7, 37), (63, 64), (500, 21), (1000, 32)] {
            let dims: BTreeMap<String, usize> =
                [("L".to_string(), l), ("H".to_string(), 3), ("P".to_string(), p), ("B".to_string(), 2)].into();
            let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
            let inputs = f32_inputs(tensors::generate_inputs(&layer, &sizes, 7));
            let want = interp::run(&layer, &sizes, &inputs);
            let got = run_native(&lib, &layer, &inputs, &want, 2);
            let e = rel_err(&got["out"].data, &want["out"].data);
            println!("chunked:{q} for {cpu} L={l} P={p}: rel err {e:.2e}");
            assert!(e < 1e-5, "chunked:{q} for {cpu} L={l} P={p}: relative error {e:e}");
        }
    }
}

/// Native `chunked` of random layers whose decay is a scalar per head (every direction,
/// skip, gate, groups, initial and final state, layouts, zoh and zoh_euler), at random
/// chunk sizes, against the interpreter; layers it cannot take are refused with a reason.
#[test]
fn chunked_random_layers_match_the_interpreter() {
    let q = prop::sample::select(vec![1usize, 2, 3, 4, 16, 32, 64]).prop_map(|q| Form::Chunked { q });
    random_layers_match(32, q, |cfg| {
        // A scalar decay per head, by an exponential: what chunked takes.
        cfg.a = random_layers::AKind::Scalar;
        if !matches!(cfg.disc, random_layers::Disc::Zoh | random_layers::Disc::ZohEuler) {
            cfg.disc = random_layers::Disc::ZohEuler;
        }
    });
}

/// Layers native `chunked` cannot take get a reason, not wrong code.
#[test]
fn chunked_refuses_what_it_cannot_take() {
    let target = Target::cpu("native");
    for (name, why) in [("mamba1", "A varies along the state"), ("s4d", "complex"), ("vim", "A varies along the state")]
    {
        let e = schedule::kernel(&stdlib_layer(name), &target, Form::Chunked { q: 64 }).expect_err(name);
        assert!(e.contains(why), "{name}: {e}");
    }
    let e = schedule::kernel(&stdlib_layer("mamba2"), &target, Form::Chunked { q: 100_000 }).expect_err("too long");
    assert!(e.contains("chunks of at most 1024 steps"), "{e}");
    let e = schedule::kernel(&stdlib_layer("mamba2"), &Target::cuda(), Form::Chunked { q: 64 }).expect_err("ptx");
    assert!(e.contains("no GPU schedule"), "{e}");
}

/// A random case's inputs as the kernel sees them: rounded to f32 or bf16, as declared.
fn kernel_inputs(case: &random_layers::Case) -> tensors::TensorMap {
    ssmc_tests::backend::kernel_inputs(&case.layer, &case.inputs)
}

/// Generated inputs rounded to f32.
fn rounded_inputs(layer: &Layer, sizes: &ssmc_compiler::bind::Sizes, seed: u64) -> tensors::TensorMap {
    f32_inputs(tensors::generate_inputs(layer, sizes, seed))
}

/// Forms on the command line: `ssmc run --target cpu --form chunked:Q` runs native chunked
/// code and matches the interpreter; without `--form` the cost model's native choice runs;
/// a form without a native schedule for the layer is refused with the reason, and `ssmc
/// build` records the form in the manifest and writes nothing when it refuses.
#[test]
fn cli_native_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &std::path::Path| f.to_str().expect("utf-8 path").to_string();
    let (inp, want, got) = (dir.path().join("in"), dir.path().join("ref"), dir.path().join("out"));
    let mamba2 = ssmc_tests::stdlib("mamba2");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(ssmc_bin());
        cmd.arg("run").arg(&mamba2).args(args);
        Out::run(&mut cmd)
    };
    let dims = ["--dim", "L=300", "--dim", "P=24", "--dim", "H=3"];
    let mut args: Vec<&str> = dims.to_vec();
    let (inp_s, want_s, got_s) = (p(&inp), p(&want), p(&got));
    args.extend(["--save-inputs", &inp_s, "--output", &want_s, "--dtype", "f64"]);
    run(&args).ok();
    for (form, shown) in [(Some("chunked:16"), "chunked:16"), (Some("recurrent"), "recurrent"), (None, "chunked:")] {
        let mut args = vec!["--target", "cpu", "--inputs", &inp_s, "--output", &got_s, "--dtype", "f64", "--json"];
        if let Some(f) = form {
            args.extend(["--form", f]);
        }
        let out = run(&args);
        out.ok();
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json summary");
        let f = json["form"].as_str().expect("form").to_string();
        assert!(f.starts_with(shown), "{form:?}: ran {f}");
        let (w, g) = (tensors::read_safetensors(&want).expect("ref"), tensors::read_safetensors(&got).expect("out"));
        let e = rel_err(&g["out"].data, &w["out"].data);
        assert!(e < 1e-5, "{form:?}: relative error {e:e}");
    }
    let mut cmd = std::process::Command::new(ssmc_bin());
    cmd.args(["run", "--target", "cpu", "--form", "chunked"]).arg(ssmc_tests::stdlib("mamba1"));
    Out::run(&mut cmd).fails().stderr_has(&["form chunked has no native schedule", "A varies along the state"]);
    let mut cmd = std::process::Command::new(ssmc_bin());
    cmd.args(["run", "--target", "cpu", "--form", "quadratic"]).arg(&mamba2);
    Out::run(&mut cmd).fails().stderr_has(&["form quadratic has no CPU schedule", "--target interp --form quadratic"]);

    let build = |out: &std::path::Path, extra: &[&str]| {
        let mut cmd = std::process::Command::new(ssmc_bin());
        cmd.arg("build").arg(&mamba2).arg("-o").arg(out).args(extra);
        Out::run(&mut cmd)
    };
    let manifest_form = |d: &std::path::Path| {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).expect("manifest")).expect("json");
        m["form"].as_str().expect("form").to_string()
    };
    let plain = dir.path().join("plain");
    build(&plain, &[]).ok();
    assert_eq!(manifest_form(&plain), "recurrent");
    let sized = dir.path().join("sized");
    build(&sized, &["--dim", "L=2048", "--dim", "H=24", "--dim", "P=64"]).ok();
    assert!(manifest_form(&sized).starts_with("chunked:"), "{}", manifest_form(&sized));
    let forced = dir.path().join("forced");
    build(&forced, &["--form", "chunked:8"]).ok();
    assert_eq!(manifest_form(&forced), "chunked:8");
    let refused = dir.path().join("refused");
    build(&refused, &["--form", "scan"]).fails().stderr_has(&["form scan has no CPU schedule"]);
    assert!(!refused.exists(), "a refused build writes nothing");
}

/// The native `conv` form of S4D (K by the Vandermonde sum, the convolution by FFT in the
/// runtime) against the f64 interpreter, at short and FFT lengths and a channel count that
/// is not a multiple of the vector width.
#[test]
fn conv_of_s4d_matches_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = stdlib_layer("s4d");
    // Every length on this CPU, two with AVX2's 8 lanes.
    for (cpu, lengths) in [("native", &[1usize, 7, 63, 500, 1000][..]), ("x86-64-v3", &[63, 500][..])] {
        let out = dir.path().join(format!("s4d-{cpu}"));
        let m = ssmc_tests::build_artifact(&layer, &Target::cpu(cpu), Form::Conv, &out).expect("builds");
        assert_eq!((m.form.as_str(), m.host.as_slice()), ("conv", ["causal_conv_f32".to_string()].as_slice()));
        let header = std::fs::read_to_string(out.join("s4d.h")).expect("header");
        assert!(header.contains("ssmc_causal_conv_f32"), "{header}");
        let lib = CpuLayer::load(&out).expect("loads");
        for &l in lengths {
            let dims: BTreeMap<String, usize> = [("L".to_string(), l), ("H".to_string(), 37)].into();
            let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
            let inputs = rounded_inputs(&layer, &sizes, 5 + l as u64);
            let want = interp::run(&layer, &sizes, &inputs);
            let got = run_native(&lib, &layer, &inputs, &want, 2);
            let e = rel_err(&got["out"].data, &want["out"].data);
            println!("s4d conv for {cpu} L={l}: rel err {e:.2e}");
            assert!(e < 1e-5, "s4d conv for {cpu} L={l}: relative error {e:e}");
        }
    }
}

/// Random time-invariant layers (real and complex A, every discretization, reverse and
/// bidirectional scans, skip, gate, initial state, awkward sizes) in the native `conv` form
/// against the interpreter.
#[test]
fn conv_of_random_time_invariant_layers_matches_the_interpreter() {
    random_layers_match(40, Just(Form::Conv), |cfg| {
        // Time-invariant (varying per batch row is fine), and conv produces no final state.
        cfg.final_ = false;
        for s in [&mut cfg.fwd, &mut cfg.bwd] {
            for v in [&mut s.dt, &mut s.b.var, &mut s.c.var] {
                if *v == random_layers::Var::Selective {
                    *v = random_layers::Var::Batch;
                }
            }
        }
    });
}

/// Native code in the forms `forms` draws of `cases` random layers (every option the
/// language has that `adjust` leaves, awkward sizes), against the interpreter on the same
/// inputs rounded to the declared dtypes (f32 or bf16), outputs poisoned first.
fn random_layers_match(cases: u32, forms: impl Strategy<Value = Form>, adjust: impl Fn(&mut random_layers::LayerCfg)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = proptest::test_runner::Config { cases, failure_persistence: None, ..Default::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let count = std::cell::Cell::new(0);
    let strategy = (random_layers::config(), random_layers::dims(), any::<u64>(), forms);
    runner
        .run(&strategy, |(mut cfg, d, seed, form)| {
            // Native code needs a compile-time state size.
            cfg.n_const = true;
            adjust(&mut cfg);
            let cfg = cfg.normalize();
            let case = random_layers::build_with(&cfg, d, seed, native_dtypes);
            let k = count.get();
            count.set(k + 1);
            let out = dir.path().join(format!("case{k}"));
            ssmc_tests::build_artifact(&case.layer, &Target::cpu("native"), form, &out)
                .unwrap_or_else(|e| panic!("{form}: {e}\n{}", case.src));
            let lib = CpuLayer::load(&out).expect("loads");
            let inputs = kernel_inputs(&case);
            let want = interp::run(&case.layer, &case.sizes, &inputs);
            // Guard pages after, then before every buffer: an overrun either way faults.
            for place in Place::BOTH {
                let got = run_native_at(&lib, &case.layer, &inputs, &want, 2, place);
                for (name, w) in &want {
                    let e = rel_err_floored(&got[name].data, &w.data, RANDOM_LAYER_FLOOR);
                    prop_assert!(e < 1e-5, "{form} ({place:?}) output {name}: relative error {e:e}\n{}", case.src);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Layers the native `conv` form cannot compute are refused with the reason: a selective
/// layer, and a final state.
#[test]
fn conv_refuses_selective_layers_and_final_states() {
    let cpu = Target::cpu("native");
    let err = schedule::kernel(&stdlib_layer("mamba1"), &cpu, Form::Conv).expect_err("mamba1 is selective");
    assert!(err.contains("time-invariant") && err.contains("use recurrent"), "{err}");
    let src = "layer lti {
  dims batch B, channel H, time L, state N = 4
  input u: f32[B, H, L]
  input log_dt: f32[H]
  input A_log: f32[H, N]
  input Bt: f32[H, N]
  input Ct: f32[H, N]
  output out: f32[B, H, L]
  output hT: f32[B, H, N]
  x = u
  dt = exp(log_dt)
  A = diagonal(-exp(A_log))
  B = Bt
  C = Ct
  final_state hT
  discretize zoh
}";
    let layer = ssmc_compiler::compile(src).unwrap_or_else(|d| panic!("{d:?}\n{src}")).0.layers.remove(0);
    let err = schedule::kernel(&layer, &cpu, Form::Conv).expect_err("conv has no final state");
    assert!(err.contains("final state") && err.contains("use recurrent"), "{err}");
    // The CLI names the reason too, and writes no output.
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out.safetensors");
    let mut cmd = std::process::Command::new(ssmc_bin());
    cmd.args(["run", "--dim", "L=8", "--target", "cpu", "--form", "conv", "--output"]).arg(&out_path);
    let out = Out::run(cmd.arg(ssmc_tests::stdlib("mamba1")));
    out.fails().stderr_has(&["conv"]);
    assert!(!out_path.exists(), "an output was written for a refused form");
}

/// `ssmc run --target cpu --form conv` of S4D against `--target interp` on the same inputs.
#[test]
fn ssmc_run_conv_matches_the_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &std::path::Path| f.to_str().expect("utf-8 path").to_string();
    let (inp, want, got) = (dir.path().join("in"), dir.path().join("ref"), dir.path().join("out"));
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(ssmc_bin());
        cmd.arg("run").arg(ssmc_tests::stdlib("s4d")).args(args);
        Out::run(&mut cmd)
    };
    run(&["--dim", "L=777", "--dim", "H=19", "--seed", "2", "--save-inputs", &p(&inp)]).ok_for("inputs");
    run(&["--inputs", &p(&inp), "--target", "interp", "--output", &p(&want), "--dtype", "f64"]).ok_for("interp");
    let out = run(&["--inputs", &p(&inp), "--target", "cpu", "--form", "conv", "--output", &p(&got), "--json"]);
    out.ok_for("conv");
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json summary");
    assert_eq!((json["target"].as_str(), json["form"].as_str()), (Some("cpu"), Some("conv")), "{json}");
    let (w, g) = (tensors::read_safetensors(&want).expect("ref"), tensors::read_safetensors(&got).expect("out"));
    let e = rel_err(&g["out"].data, &w["out"].data);
    assert!(e < 1e-5, "--form conv against the interpreter: relative error {e:e}");
}
