//! The PTX of the stdlib layers run on an NVIDIA GPU (ssmc-runtime's `GpuLayer`, and
//! `ssmc run --target cuda`) against the f64 reference interpreter.
//!
//! Without a GPU or its driver the GPU checks print `skipped: no CUDA GPU (...)` and pass,
//! unless `SSMC_REQUIRE_GPU` is set (`scripts/gpu-test` sets it): then they fail. The checks
//! that need no GPU (tensors are checked before the GPU is touched, a missing driver is an
//! error and not a crash) always run.
//!
//! `scripts/gpu-test` runs this test binary, built elsewhere, on a machine without Rust:
//! there `SSMC_REPO` names the repository (for `stdlib/`) and `SSMC_BIN` the `ssmc` binary.

use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::Form;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::target::Target;
use ssmc_compiler::{interp, tensors};
use ssmc_runtime::{cuda_device, Error, GpuLayer, TensorRef};
use ssmc_tests::{
    assert_exp_like_f32, exp_range_layer, f32_inputs, rel_err, repo, ssmc_bin, stdlib_layer, EXP_RANGES, STDLIB,
};
use std::collections::BTreeMap;
use std::process::Command;

/// The GPU's name, or `None` after printing why the GPU checks are skipped.
fn gpu() -> Option<String> {
    ssmc_tests::backend::cuda_gpu()
}

/// Runs the GPU layer on `inputs` (as f32) and returns its outputs as f64.
fn run_gpu(
    lib: &GpuLayer,
    inputs: &tensors::TensorMap,
    outputs: &tensors::TensorMap,
) -> Result<tensors::TensorMap, Error> {
    let f32s: BTreeMap<&str, Vec<f32>> =
        inputs.iter().map(|(k, v)| (k.as_str(), v.data.iter().map(|x| *x as f32).collect())).collect();
    // Poisoned: an element the kernel does not write stays NaN and fails the comparison.
    let mut outs: BTreeMap<&str, Vec<f32>> =
        outputs.iter().map(|(k, v)| (k.as_str(), vec![f32::NAN; v.data.len()])).collect();
    {
        let mut refs: Vec<TensorRef> =
            inputs.iter().map(|(k, v)| TensorRef::input(k, &f32s[k.as_str()], &v.shape)).collect();
        for (k, buf) in outs.iter_mut() {
            refs.push(TensorRef::output(k, buf, &outputs[*k].shape));
        }
        lib.run(&refs)?;
    }
    Ok(outs
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                tensors::TensorData { shape: outputs[k].shape.clone(), data: v.into_iter().map(f64::from).collect() },
            )
        })
        .collect())
}

/// Seeded inputs at the given sizes, rounded to f32 so that both sides see the same values.
fn inputs(layer: &Layer, dims: &[(&str, usize)]) -> (ssmc_compiler::bind::Sizes, tensors::TensorMap) {
    let dims: BTreeMap<String, usize> = dims
        .iter()
        .filter(|(k, _)| layer.dims.iter().any(|(_, d)| d.name == *k))
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let sizes = sizes_from_dims(layer, &dims).expect("sizes");
    let inputs = f32_inputs(tensors::generate_inputs(layer, &sizes, 11));
    (sizes, inputs)
}

/// Asserts every output within 1e-5 relative error of the interpreter's (printing each);
/// returns the largest error.
fn assert_close(what: &str, got: &tensors::TensorMap, want: &tensors::TensorMap) -> f64 {
    let mut max = 0f64;
    for (k, w) in want {
        let e = rel_err(&got[k].data, &w.data);
        println!("{what} {k}: rel err {e:.2e}");
        assert!(e < 1e-5, "{what} output {k}: relative error {e:e}");
        max = max.max(e);
    }
    max
}

#[test]
fn stdlib_layers_match_the_interpreter_on_the_gpu() {
    let Some(gpu_name) = gpu() else { return };
    println!("GPU: {gpu_name}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut worst = Vec::new();
    for name in STDLIB {
        let layer = stdlib_layer(name);
        let out = dir.path().join(name);
        ssmc_tests::build_artifact(&layer, &Target::cuda(), Form::Recurrent, &out)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let lib = GpuLayer::load(&out).expect("loads");
        let heads = if name == "mamba2" { 5 } else { 37 };
        // Awkward lengths at a few dozen sequences, then about 900 sequences: several
        // blocks of 128 threads, the last one partly idle.
        let mut cases: Vec<Vec<(&str, usize)>> =
            [1usize, 7, 63, 500].iter().map(|&l| vec![("L", l), ("D", 37), ("H", heads)]).collect();
        cases.push(vec![("L", 20), ("B", 3), ("D", 300), ("H", if name == "mamba2" { 19 } else { 300 })]);
        let mut max = 0f64;
        for dims in cases {
            let (sizes, inputs) = inputs(&layer, &dims);
            let want = interp::run(&layer, &sizes, &inputs);
            let got = run_gpu(&lib, &inputs, &want).unwrap_or_else(|e| panic!("{name} {dims:?}: {e}"));
            max = max.max(assert_close(&format!("{name} {dims:?}"), &got, &want));
        }
        worst.push(format!("{name} {max:.2e}"));
    }
    println!("max rel err per layer on {gpu_name}: {}", worst.join(", "));
}

/// Tensors are checked against the manifest before the GPU is touched, so a wrong shape is
/// reported the same with or without a GPU; right tensors either run or get a clear error.
#[test]
fn gpu_layer_checks_tensors_first_and_never_panics_without_a_gpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = stdlib_layer("mamba1");
    let out = dir.path().join("mamba1");
    ssmc_tests::build_artifact(&layer, &Target::cuda(), Form::Recurrent, &out).expect("builds");
    let lib = GpuLayer::load(&out).expect("loads");
    assert_eq!(lib.manifest().target, "ptx");
    let (sizes, inputs) = inputs(&layer, &[("L", 7), ("D", 5)]);
    let want = interp::run(&layer, &sizes, &inputs);

    // A mis-shaped output: the error names it, whatever the machine.
    let mut wrong = want.clone();
    let o = wrong.get_mut("out").expect("output out");
    o.shape[2] += 1;
    o.data.push(0.0);
    let e = run_gpu(&lib, &inputs, &wrong).expect_err("a mis-shaped output is refused");
    assert!(matches!(&e, Error::Tensors(p) if p.iter().any(|l| l.starts_with("tensor `out`: expected shape"))), "{e}");

    match (run_gpu(&lib, &inputs, &want), cuda_device()) {
        (Ok(got), Ok(_)) => assert!(rel_err(&got["out"].data, &want["out"].data) < 1e-5),
        (Err(e), Err(_)) => {
            let msg = e.to_string();
            assert!(
                matches!(e, Error::NotCompiledWithCuda) || msg.starts_with("no CUDA driver/GPU: "),
                "a missing GPU is reported clearly, got: {msg}"
            );
            gpu();
        }
        (Ok(_), Err(e)) => panic!("ran although cuda_device says: {e}"),
        (Err(e), Ok(name)) => panic!("failed on {name}: {e}"),
    }

    // A CPU artifact is not a GPU one.
    let cpu = dir.path().join("cpu");
    ssmc_tests::build_artifact(&layer, &Target::cpu("x86-64-v3"), Form::Recurrent, &cpu).expect("builds");
    let e = GpuLayer::load(&cpu).err().expect("a cpu artifact is refused");
    assert!(e.to_string().contains("holds a cpu artifact (x86-64-v3), not a cuda one"), "{e}");
    assert!(e.to_string().contains("`ssmc build --target cuda`"), "{e}");
}

#[test]
fn ssmc_run_target_cuda_matches_interp_or_says_why_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = repo().join("stdlib/mamba2.ssm");
    let run = |target: &str| {
        let out = dir.path().join(format!("{target}.safetensors"));
        let o = Command::new(ssmc_bin())
            .args(["run", "--dim", "L=63", "--dim", "H=3", "--seed", "5", "--target", target, "--output"])
            .arg(&out)
            .arg(&file)
            .env("SSMC_CACHE", dir.path().join("cache"))
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run ssmc");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!stderr.contains("panicked") && o.status.code() != Some(101), "ssmc panicked:\n{stderr}");
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), stderr, out)
    };
    let (code, stdout, stderr, cuda_out) = run("cuda");
    if gpu().is_none() {
        assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
        assert!(
            stderr.starts_with("error: no CUDA driver/GPU: ") || stderr.contains("without its `cuda` feature"),
            "{stderr}"
        );
        assert!(!cuda_out.exists(), "no output file after a failure");
        return;
    }
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(stdout.contains("target  cuda, form recurrent"), "{stdout}");
    let (code, _, stderr, interp_out) = run("interp");
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    let (got, want) = (
        tensors::read_safetensors(&cuda_out).expect("cuda output"),
        tensors::read_safetensors(&interp_out).expect("interp output"),
    );
    let e = rel_err(&got["out"].data, &want["out"].data);
    println!("ssmc run --target cuda, mamba2 L=63 H=3: rel err {e:.2e} against --target interp");
    assert!(e < 1e-5, "relative error {e:e}");
}

/// Large states, where the PTX loops over the state in tiles instead of unrolling it (an
/// awkward size and a large one), against the interpreter with poisoned outputs.
#[test]
fn large_states_match_the_interpreter_on_the_gpu() {
    let Some(gpu_name) = gpu() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for name in STDLIB {
        let source = ssmc_tests::stdlib_source(name);
        let default = source.lines().find_map(|l| l.split("state N = ").nth(1)).expect("a const state");
        let default: String = default.chars().take_while(char::is_ascii_digit).collect();
        for n in [300usize, 4096] {
            let text = source.replace(&format!("state N = {default}"), &format!("state N = {n}"));
            let layer = ssmc_compiler::compile(&text).expect("compiles").0.layers.remove(0);
            let out = dir.path().join(format!("{name}-{n}"));
            ssmc_tests::build_artifact(&layer, &Target::cuda(), Form::Recurrent, &out)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let lib = GpuLayer::load(&out).expect("loads");
            let dims = [("L", 9), ("B", 2), ("D", 5), ("H", 3), ("P", 3)];
            let (sizes, inputs) = inputs(&layer, &dims);
            let want = interp::run(&layer, &sizes, &inputs);
            let got = run_gpu(&lib, &inputs, &want).unwrap_or_else(|e| panic!("{name} N={n}: {e}"));
            assert_close(&format!("{name} N={n} on {gpu_name}"), &got, &want);
        }
    }
}

/// `GpuLayer::run_device` on tensors already in GPU memory, on a stream of the caller's:
/// the same outputs as the host path (every stdlib layer at an awkward size), outputs
/// poisoned; nothing waits for the stream but the caller. A host pointer, memory of
/// another allocation's end and a mis-shaped tensor are refused with the tensor's name
/// before anything is enqueued.
#[test]
fn run_device_matches_the_host_path_and_refuses_host_pointers() {
    use cudarc::driver::CudaContext;
    let Some(_) = gpu() else { return };
    let ctx = CudaContext::new(0).expect("GPU 0");
    let stream = ctx.new_stream().expect("a stream");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in STDLIB {
        let layer = stdlib_layer(name);
        let out = dir.path().join(name);
        ssmc_tests::build_artifact(&layer, &Target::cuda(), Form::Recurrent, &out).expect("builds");
        let lib = GpuLayer::load(&out).expect("loads");
        let (sizes, inputs) = inputs(&layer, &[("L", 63), ("D", 37), ("H", 5)]);
        let want = interp::run(&layer, &sizes, &inputs);
        let host = run_gpu(&lib, &inputs, &want).expect("host path");
        let up = |v: &[f64]| stream.clone_htod(&v.iter().map(|x| *x as f32).collect::<Vec<f32>>()).expect("upload");
        let ins: BTreeMap<&str, _> = inputs.iter().map(|(k, v)| (k.as_str(), up(&v.data))).collect();
        let mut outs: BTreeMap<&str, _> =
            want.iter().map(|(k, v)| (k.as_str(), up(&vec![f64::NAN; v.data.len()]))).collect();
        let addr = |b: &cudarc::driver::CudaSlice<f32>| cudarc::driver::DevicePtr::device_ptr(b, &stream).0;
        let mut refs: Vec<TensorRef> = inputs
            .iter()
            .map(|(k, v)| TensorRef::on_device(k, ssmc_runtime::DType::F32, &v.shape, addr(&ins[k.as_str()]), false))
            .collect();
        for (k, v) in &want {
            refs.push(TensorRef::on_device(k, ssmc_runtime::DType::F32, &v.shape, addr(&outs[k.as_str()]), true));
        }
        lib.run_device(&refs, stream.cu_stream().cast()).unwrap_or_else(|e| panic!("{name}: {e}"));
        stream.synchronize().expect("the stream finishes");
        for (k, v) in outs.iter_mut() {
            let got: Vec<f64> = stream.clone_dtoh(v).expect("download").into_iter().map(f64::from).collect();
            assert_eq!(got, host[*k].data, "{name} {k}: device path differs from the host path");
        }
        assert_close(&format!("{name} on device memory"), &host, &want);

        // A host pointer where a device address belongs: refused by name, nothing run.
        let host_u: Vec<f32> = vec![0.0; inputs.values().next().expect("an input").data.len()];
        let first = refs[0];
        let mut bad = refs.clone();
        bad[0] = TensorRef { data: host_u.as_ptr().cast(), bytes: first.bytes, ..first };
        if host_u.len() * 4 == first.bytes {
            let e = lib.run_device(&bad, stream.cu_stream().cast()).expect_err("a host pointer is refused").to_string();
            assert!(e.contains(&format!("tensor `{}`", first.name)) && e.contains("not GPU memory"), "{e}");
        }
        // An address whose tensor would run past the end of its allocation.
        let mut past = refs.clone();
        let n = past.len() - 1;
        past[n] = TensorRef { data: past[n].data.wrapping_add(4), ..past[n] };
        let e = lib.run_device(&past, stream.cu_stream().cast()).expect_err("past the end").to_string();
        assert!(e.contains("pass the end of its allocation") || e.contains("not aligned"), "{e}");
    }
}

/// `ssmc run --target cuda --bench N` reports the time with copies and, apart, the kernel's
/// own (CUDA events), the kernel's not above the other; `--json` carries both.
#[test]
fn ssmc_run_bench_reports_kernel_time_apart() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Command::new(ssmc_bin())
        .args(["run", "--dim", "L=500", "--dim", "D=64", "--target", "cuda", "--bench", "5", "--json"])
        .arg(repo().join("stdlib/mamba1.ssm"))
        .env("SSMC_CACHE", dir.path().join("cache"))
        .output()
        .expect("run ssmc");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("one line of JSON");
    let (kernel, all) = (j["kernel_median_ms"].as_f64(), j["median_ms"].as_f64());
    println!("kernel {kernel:?} ms, with copies {all:?} ms");
    let (Some(kernel), Some(all)) = (kernel, all) else { panic!("both times: {stdout}") };
    assert!(kernel > 0.0 && kernel <= all, "{stdout}");
}

/// e^x on the GPU (the special-function unit's 2^x with the rounding of x log2 e undone)
/// over ranges that overflow and underflow f32, as `tests/math_range.rs` checks the CPU's:
/// inf where the f64 value rounds to inf in f32, within a few subnormal steps of it below
/// the normal range, within 2e-6 relative error elsewhere.
#[test]
fn exp_on_the_gpu_saturates_like_f32() {
    let Some(gpu_name) = gpu() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for (k, dist) in EXP_RANGES.iter().enumerate() {
        let layer = ssmc_compiler::compile(&exp_range_layer(dist)).expect("compiles").0.layers.remove(0);
        let out = dir.path().join(format!("exp-{k}"));
        ssmc_tests::build_artifact(&layer, &Target::cuda(), Form::Recurrent, &out).expect("builds");
        let lib = GpuLayer::load(&out).expect("loads");
        let (sizes, inputs) = inputs(&layer, &[("B", 1), ("D", 2000), ("L", 1)]);
        let want = interp::run(&layer, &sizes, &inputs);
        let got = run_gpu(&lib, &inputs, &want).expect("runs");
        let pairs = got["y"].data.iter().copied().zip(want["y"].data.iter().copied());
        assert_exp_like_f32(&format!("{dist} on {gpu_name}"), pairs);
    }
}
