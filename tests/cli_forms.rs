//! `ssmc run --form` and `--emit-matrix` end to end: every legal form of every stdlib layer
//! writes the same output as `--form recurrent`, an illegal form is refused with the
//! reason, a malformed one is a usage error, and the mixer matrix is written whole or not
//! at all.

use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::{self, egraph, CHUNK_SIZES};
use ssmc_compiler::ir::Layer;
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors::{generate_inputs, read_safetensors, TensorMap};
use ssmc_compiler::{interp, Checked};
use ssmc_tests::{rel_err, root, ssmc_bin, stdlib_source, Out};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

const TOL: f64 = 1e-9;

/// Small sizes per stdlib layer (the state size is fixed in each file).
const CASES: [(&str, &[(&str, usize)]); 4] = [
    ("mamba1", &[("L", 13), ("D", 6), ("G", 1)]),
    ("mamba2", &[("L", 13), ("H", 4), ("P", 3)]),
    ("s4d", &[("L", 13), ("H", 5)]),
    ("vim", &[("L", 13), ("D", 6)]),
];

/// Runs `ssmc args...` from the repository root; it must not panic.
fn ssmc<S: AsRef<OsStr>>(args: &[S]) -> Out {
    let out = Out::run(Command::new(ssmc_bin()).args(args).current_dir(root()).env_remove("RUST_BACKTRACE"));
    out.not_panicked("ssmc");
    out
}

fn stdlib_path(name: &str) -> String {
    format!("stdlib/{name}.ssm")
}

fn load(name: &str) -> (Layer, String) {
    let text = stdlib_source(name);
    let Checked { result, .. } = ssmc_compiler::check_source(name, text.as_bytes());
    let (mut module, _) = result.unwrap_or_else(|_| panic!("{name} compiles"));
    (module.layers.remove(0), text)
}

/// `--dim NAME=SIZE` arguments.
fn dim_args(dims: &[(&str, usize)]) -> Vec<String> {
    dims.iter().flat_map(|(k, v)| ["--dim".to_string(), format!("{k}={v}")]).collect()
}

/// The 1-based line of the first line of `text` that starts (after spaces) with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"))
        + 1
}

/// Runs `ssmc run FILE --form FORM --output PATH --dtype f64 --json`; returns the outputs
/// read back and the form the summary reports.
fn run_form(name: &str, dims: &[(&str, usize)], form: &str, dir: &Path) -> (TensorMap, String) {
    let path = dir.join(format!("{}.safetensors", form.replace(':', "_")));
    let mut args = vec!["run".to_string(), stdlib_path(name)];
    args.extend(dim_args(dims));
    args.extend(["--form".into(), form.into(), "--dtype".into(), "f64".into(), "--json".into()]);
    args.extend(["--output".into(), path.display().to_string()]);
    let out = ssmc(&args);
    out.ok_for(&format!("{name} --form {form}"));
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}):\n{}", out.stdout));
    let reported = summary["form"].as_str().expect("form in summary").to_string();
    (read_safetensors(&path).expect("read output"), reported)
}

#[test]
fn every_legal_form_writes_the_recurrent_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut worst = 0.0f64;
    for (name, dims) in CASES {
        let (layer, _) = load(name);
        let over: BTreeMap<String, usize> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let sizes = sizes_from_dims(&layer, &over).expect("sizes");
        let scans = if layer.backward.is_some() { 2 } else { 1 };
        let choice = egraph::choose(&layer, &sizes, &Target::cpu("native"), &|_| 0);
        let mut form_names: Vec<String> =
            choice.candidates.iter().filter(|c| c.legality.is_ok()).map(|c| c.form.to_string()).collect();
        assert!(form_names.len() >= 7, "{name}: legal forms {form_names:?}");
        // Any chunk size, and the cheapest one.
        form_names.extend(["chunked:5".to_string(), "chunked:13".to_string(), "chunked".to_string()]);

        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).expect("mkdir");
        let (want, reported) = run_form(name, dims, "recurrent", &sub);
        assert_eq!(reported, vec!["recurrent"; scans].join(" + "));
        // The f64 file holds the interpreter's values exactly (seed 0, the CLI's default).
        let oracle = interp::run(&layer, &sizes, &generate_inputs(&layer, &sizes, 0));
        assert_eq!(want, oracle, "{name}: --form recurrent --dtype f64 differs from interp::run");
        for form in &form_names {
            let (got, reported) = run_form(name, dims, form, &sub);
            let reported: Vec<&str> = reported.split(" + ").collect();
            assert_eq!(reported.len(), scans, "{name} --form {form}: summary says {reported:?}");
            for r in &reported {
                if form == "chunked" {
                    let q: usize = r
                        .strip_prefix("chunked:")
                        .and_then(|q| q.parse().ok())
                        .unwrap_or_else(|| panic!("--form chunked ran {r}"));
                    assert!(CHUNK_SIZES.contains(&q), "--form chunked ran {r}");
                } else {
                    assert_eq!(r, form, "{name}: --form {form} ran {r}");
                }
            }
            assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
            for (k, w) in &want {
                assert_eq!(got[k].shape, w.shape, "{name} --form {form}: {k}");
                let e = rel_err(&got[k].data, &w.data);
                assert!(e < TOL, "{name} --form {form}: {k} off by {e:.3e}");
                worst = worst.max(e);
            }
        }
    }
    eprintln!("max relative error against --form recurrent: {worst:.3e}");
}

#[test]
fn conv_on_a_selective_layer_names_the_selective_roles() {
    let (_, text) = load("mamba1");
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out.safetensors");
    let out = ssmc(&[
        "run",
        "stdlib/mamba1.ssm",
        "--dim",
        "L=8",
        "--form",
        "conv",
        "--output",
        &out_path.display().to_string(),
    ]);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout:\n{}", out.stdout);
    let want = [
        "form conv is not legal".to_string(),
        format!("dt (line {})", line_of(&text, "dt =")),
        format!("B (line {})", line_of(&text, "B  =")),
        format!("C (line {})", line_of(&text, "C  =")),
        "selective".to_string(),
    ];
    for w in &want {
        assert!(out.stderr.contains(w.as_str()), "stderr lacks {w:?}:\n{}", out.stderr);
    }
    assert!(!out_path.exists(), "an output was written for a refused form");
    // s4d is time-invariant: conv runs.
    ssmc(&["run", "stdlib/s4d.ssm", "--dim", "L=8", "--form", "conv"]).ok_for("s4d conv");
}

#[test]
fn malformed_forms_are_usage_errors() {
    for (form, needle) in [
        ("bogus", "unknown form `bogus`"),
        ("chunked:0", "chunk size `0`"),
        ("chunked:x", "chunk size `x`"),
        ("recurrent:4", "only `chunked` takes a size"),
    ] {
        let out = ssmc(&["run", "stdlib/s4d.ssm", "--dim", "L=8", "--form", form]);
        assert_eq!(out.code, Some(2), "--form {form}: stderr:\n{}", out.stderr);
        assert!(out.stderr.contains(needle), "--form {form}: stderr lacks {needle:?}:\n{}", out.stderr);
        assert!(out.stdout.is_empty(), "--form {form}: stdout:\n{}", out.stdout);
    }
}

#[test]
fn emit_matrix_writes_m_of_batch_channel_l_l() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, dims) in CASES.iter().filter(|(n, _)| *n != "vim") {
        let (layer, _) = load(name);
        let mut dims: Vec<(&str, usize)> = dims.to_vec();
        dims.retain(|(k, _)| *k != "L");
        dims.push(("L", 9));
        let path = dir.path().join(format!("{name}_M.safetensors"));
        let mut args = vec!["run".to_string(), stdlib_path(name)];
        args.extend(dim_args(&dims));
        args.extend(["--emit-matrix".to_string(), path.display().to_string()]);
        ssmc(&args).ok_for(&format!("{name} --emit-matrix"));
        let m = read_safetensors(&path).expect("read M");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["M"], "{name}: tensors in the file");
        let over: BTreeMap<String, usize> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let sizes = sizes_from_dims(&layer, &over).expect("sizes");
        let (b, c) = (sizes.dim(layer.axes.batch), sizes.dim(layer.axes.head));
        assert_eq!(m["M"].shape, vec![b, c, 9, 9], "{name}: shape of M");
        // The values are the library's M (of the same generated inputs), written as f32.
        let want = forms::mixer_matrix(&layer, &sizes, &generate_inputs(&layer, &sizes, 0)).expect("M");
        assert_eq!(want.shape, m["M"].shape);
        for (i, (g, w)) in m["M"].data.iter().zip(&want.data).enumerate() {
            assert_eq!(*g, *w as f32 as f64, "{name}: M[{i}]");
        }
        assert!(want.data.iter().any(|v| *v != 0.0), "{name}: M is all zeros");
    }
}

#[test]
fn emit_matrix_error_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("M.safetensors");
    let out_path = dir.path().join("out.safetensors");
    let out = ssmc(&[
        "run",
        "stdlib/vim.ssm",
        "--dim",
        "L=8",
        "--emit-matrix",
        &m.display().to_string(),
        "--output",
        &out_path.display().to_string(),
    ]);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("different x"), "stderr:\n{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout:\n{}", out.stdout);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
    assert!(left.is_empty(), "files were written: {left:?}");
}
