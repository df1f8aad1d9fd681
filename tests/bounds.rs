//! Bad shapes never read out of bounds: layers whose tensors are declared with axes the
//! scan does not index them by are refused by check, and what check accepts the
//! interpreter runs without a panic; native runs against guard pages fault on an overrun
//! (and `tests/native_cpu.rs` runs every native form's random layers against them).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::Form;
use ssmc_compiler::ir::{DimSize, Layer};
use ssmc_compiler::target::Target;
use ssmc_compiler::{interp, tensors};
use ssmc_runtime::{CpuLayer, DType, TensorRef};
use ssmc_tests::stdlib_layer;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[path = "random_layers.rs"]
mod random_layers;

#[path = "guard.rs"]
mod guard;
use guard::{Guarded, Place};

/// One axis of one tensor declaration of `src` replaced: divided by 2, or by another dim
/// of the layer. Returns the edited source and what was done.
fn mutate(src: &str, seed: u64) -> (String, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lines: Vec<&str> = src.lines().collect();
    let decls: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let t = lines[i].trim_start();
            (t.starts_with("input ") || t.starts_with("output ")) && lines[i].contains('[')
        })
        .collect();
    let i = decls[rng.gen_range(0..decls.len())];
    let line = lines[i];
    let (open, close) = (line.find('[').unwrap_or(0), line.find(']').unwrap_or(line.len()));
    let mut axes: Vec<String> = line[open + 1..close].split(", ").map(str::to_string).collect();
    let k = rng.gen_range(0..axes.len());
    let names = ["B", "L", "H", "P", "G", "N"];
    let new = match rng.gen_range(0..3) {
        0 if !axes[k].contains('/') && axes[k] != "2" => format!("{}/2", axes[k]),
        1 => names[rng.gen_range(0..names.len())].to_string(),
        _ => format!("{}/2", names[rng.gen_range(0..names.len())]),
    };
    let what = format!("{}: axis {k} `{}` -> `{new}`", line.trim(), axes[k]);
    axes[k] = new;
    let edited = format!("{}[{}]{}", &line[..open], axes.join(", "), &line[close + 1..]);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[i] = edited;
    (out.join("\n"), what)
}

/// Random layers with one axis of one tensor changed: check refuses most; whatever it
/// accepts, and binding accepts at even (divisible) sizes, the interpreter runs to the end.
#[test]
fn what_check_accepts_the_interpreter_runs_without_panic() {
    let config = proptest::test_runner::Config { cases: 1000, failure_persistence: None, ..Default::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let counts = std::cell::Cell::new((0u32, 0u32));
    let strategy = (random_layers::config(), random_layers::dims(), any::<u64>());
    runner
        .run(&strategy, |(cfg, d, seed)| {
            let cfg = cfg.normalize();
            let src = random_layers::source(&cfg, 2 * d.n);
            let (src, what) = mutate(&src, seed);
            let Ok((mut module, _)) = ssmc_compiler::compile(&src) else {
                counts.set((counts.get().0 + 1, counts.get().1));
                return Ok(());
            };
            let layer: Layer = module.layers.remove(0);
            // Even sizes, groups dividing heads, so that divided axes can bind.
            let want = [("B", 2 * d.b), ("L", 2 * d.l), ("H", 2 * d.h), ("P", 2 * d.p), ("G", 2 * d.g), ("N", 2 * d.n)];
            let over: BTreeMap<String, usize> = want
                .iter()
                .filter(|(n, _)| layer.dims.iter().any(|(_, dim)| dim.name == *n && dim.size == DimSize::Runtime))
                .map(|(n, v)| (n.to_string(), *v))
                .collect();
            let Ok(sizes) = sizes_from_dims(&layer, &over) else { return Ok(()) };
            let inputs = tensors::generate_inputs(&layer, &sizes, seed);
            counts.set((counts.get().0, counts.get().1 + 1));
            let ran = catch_unwind(AssertUnwindSafe(|| interp::run(&layer, &sizes, &inputs)));
            prop_assert!(ran.is_ok(), "the interpreter panicked on an accepted layer ({what}):\n{src}");
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (refused, ran) = counts.get();
    println!("{refused} mutated layers refused by check, {ran} accepted and run");
    assert!(refused > 0 && ran > 0, "the mutations exercise neither side: {refused} refused, {ran} run");
}

/// The two layers: S4D with `log_A_real: f32[H, H/2]` and Mamba-1 with
/// `delta_bias: f32[D/2]` are refused by check, naming the axis and the role.
#[test]
fn divided_dims_in_the_stdlib_layers_are_refused() {
    let cases = [
        ("s4d", "input log_A_real: f32[H, N/2]", "input log_A_real: f32[H, H/2]", "`H/2` of `log_A_real`", "`A`"),
        ("mamba1", "input delta_bias: f32[D]", "input delta_bias: f32[D/2]", "`D/2` of `delta_bias`", "`dt`"),
    ];
    for (name, from, to, axis, role) in cases {
        let src = ssmc_tests::stdlib_source(name);
        assert!(src.contains(from), "{name} no longer declares `{from}`");
        let bad = src.replace(from, to);
        let checked = ssmc_compiler::check_source("bad.ssm", bad.as_bytes());
        let Err(diags) = &checked.result else { panic!("{name} with `{to}` was accepted") };
        let text = diags.render(&checked.file, false);
        assert!(text.contains(axis) && text.contains(&format!("{role} reads")), "{name}:\n{text}");
    }
}

/// The guard pages catch an overrun: a child process runs Mamba-1 on a `u` that claims one
/// element more than lies before the guard page (after), or starts one element inside it
/// (before), and dies by SIGSEGV; the same run in bounds exits normally.
#[test]
fn guard_pages_catch_an_overrun() {
    let test = "guard_child_runs_one_call";
    let (signal, stdout) = guard::run_child(test, "inbounds");
    assert_eq!(signal, None, "the run in bounds was killed");
    assert!(stdout.contains("the run ended normally"), "the child did not run:\n{stdout}");
    for place in ["after", "before"] {
        let (signal, stdout) = guard::run_child(test, place);
        assert_eq!(signal, Some(libc::SIGSEGV), "an overrun {place} the buffer went unnoticed:\n{stdout}");
    }
}

/// The child of [`guard_pages_catch_an_overrun`]: one Mamba-1 call, its `u` shifted one
/// element onto the guard page as `SSMC_GUARD_CHILD` says.
#[test]
#[ignore = "run by guard_pages_catch_an_overrun in a child process"]
fn guard_child_runs_one_call() {
    let Ok(what) = std::env::var(guard::CHILD) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = stdlib_layer("mamba1");
    ssmc_tests::build_artifact(&layer, &Target::cpu("native"), Form::Recurrent, dir.path()).expect("builds");
    let lib = CpuLayer::load(dir.path()).expect("loads");
    let dims: BTreeMap<String, usize> = [("L".to_string(), 5), ("D".to_string(), 3), ("B".to_string(), 1)].into();
    let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
    let inputs = tensors::generate_inputs(&layer, &sizes, 3);
    let place = if what == "before" { Place::Before } else { Place::After };
    let bufs: BTreeMap<&str, Guarded> = inputs
        .iter()
        .map(|(k, v)| {
            let f: Vec<f32> = v.data.iter().map(|x| *x as f32).collect();
            (k.as_str(), Guarded::copy_of(&guard::f32_bytes(&f), place))
        })
        .collect();
    let out_shape = sizes.shape(&layer.tensors[layer.output].shape);
    let out = Guarded::new(4 * out_shape.iter().product::<usize>(), place);
    let mut refs: Vec<TensorRef> =
        inputs.iter().map(|(k, v)| bufs[k.as_str()].tensor(k, DType::F32, &v.shape, false)).collect();
    refs.push(out.tensor("out", DType::F32, &out_shape, true));
    let u = refs.iter_mut().find(|t| t.name == "u").expect("u");
    // One element onto the guard page: past the end (after), or before the start.
    u.data = match what.as_str() {
        "after" => u.data.wrapping_add(4),
        "before" => u.data.wrapping_sub(4),
        _ => u.data,
    };
    lib.run(&refs, 1).expect("runs");
    println!("the run ended normally");
}

/// Native code reads the B and C of head h at group h / (H / G): heads that G does not
/// divide are refused when the tensors are bound, not read past the last group.
#[test]
fn native_runs_refuse_groups_that_do_not_divide_heads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = stdlib_layer("mamba2");
    ssmc_tests::build_artifact(&layer, &Target::cpu("native"), Form::Recurrent, dir.path()).expect("builds");
    let lib = CpuLayer::load(dir.path()).expect("loads");
    // Inputs at H=4, G=3 that the compiler's own binding would refuse, built at G=1 and
    // reshaped: B and C get 3 groups.
    let dims: BTreeMap<String, usize> =
        [("L".to_string(), 4), ("H".to_string(), 4), ("P".to_string(), 2), ("B".to_string(), 1)].into();
    let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
    let mut inputs = tensors::generate_inputs(&layer, &sizes, 3);
    for name in ["B", "C"] {
        let t = inputs.get_mut(name).expect("B and C");
        t.shape[2] = 3;
        t.data = t.data.iter().cycle().take(t.data.len() * 3).copied().collect();
    }
    let outs: tensors::TensorMap = zero_outputs(&layer, &sizes);
    let f: BTreeMap<&str, Vec<f32>> =
        inputs.iter().map(|(k, v)| (k.as_str(), v.data.iter().map(|x| *x as f32).collect())).collect();
    let mut y = vec![0f32; outs["out"].data.len()];
    let mut refs: Vec<TensorRef> = inputs.iter().map(|(k, v)| TensorRef::input(k, &f[k.as_str()], &v.shape)).collect();
    refs.push(TensorRef::output("out", &mut y, &outs["out"].shape));
    let err = lib.run(&refs, 1).expect_err("H=4, G=3 ran").to_string();
    assert!(err.contains("H=4 is not a multiple of G=3"), "{err}");
}

/// Zeroed outputs of a layer at `sizes`, by name.
fn zero_outputs(layer: &Layer, sizes: &ssmc_compiler::bind::Sizes) -> tensors::TensorMap {
    layer
        .outputs()
        .map(|(_, t)| {
            let shape = sizes.shape(&t.shape);
            (t.name.clone(), tensors::TensorData { data: vec![0.0; shape.iter().product()], shape })
        })
        .collect()
}
