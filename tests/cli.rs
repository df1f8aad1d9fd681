//! The `ssmc` binary end to end: exit statuses, messages on stderr, summaries on stdout and
//! the files it writes (or must not write).
//!
//! The binary is built once per test process with `cargo build --bin ssmc` (a no-op when it
//! is fresh): `CARGO_BIN_EXE_ssmc` is only given to tests of the package owning the binary.

use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::check_source;
use ssmc_compiler::tensors::{generate_inputs, read_safetensors, write_safetensors, OutDType, TensorData, TensorMap};
use ssmc_tests::{ssmc_bin, stdlib, Out, STDLIB};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `ssmc args...` in `dir`. Whatever happens, it must not panic.
fn ssmc<I, S>(dir: &Path, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Out::run(Command::new(ssmc_bin()).args(args).current_dir(dir).env_remove("RUST_BACKTRACE"));
    out.not_panicked("ssmc");
    assert_ne!(out.code, Some(101), "ssmc panicked:\n{}", out.stderr);
    out
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Names of the entries of a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.stdout))
}

// ---------------------------------------------------------------------------------------
// check

#[test]
fn check_accepts_every_stdlib_file() {
    let dir = tempdir();
    let files: Vec<PathBuf> = STDLIB.iter().map(|n| stdlib(n)).collect();
    let out = ssmc(dir.path(), std::iter::once(PathBuf::from("check")).chain(files.iter().cloned()));
    out.ok();
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
    for (name, file) in STDLIB.iter().zip(&files) {
        let line = format!("{}: ok ({name})", file.display());
        assert!(out.stdout.lines().any(|l| l == line), "no line {line:?} in:\n{}", out.stdout);
    }
}

/// The 1-based line and column of the first `needle` in `text`.
fn line_col(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("needle in text");
    let before = &text[..at];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
}

#[test]
fn check_reports_file_line_col_and_caret() {
    let dir = tempdir();
    let good = std::fs::read_to_string(stdlib("mamba1")).expect("read");
    let broken = good.replace("softplus(delta + delta_bias)", "softplus(dleta + delta_bias)");
    assert_ne!(good, broken);
    std::fs::write(dir.path().join("broken.ssm"), &broken).expect("write");
    let (line, col) = line_col(&broken, "dleta");

    let out = ssmc(dir.path(), ["check", "broken.ssm"]);
    out.errs().no_stdout().stderr_has(&[&format!("broken.ssm:{line}:{col}"), "^", "dleta"]);
    // The caret line sits under the name: `^` at the column of `dleta` in the quoted source.
    let src_line = broken.lines().nth(line - 1).expect("line");
    assert!(out.stderr.contains(src_line.trim_end()), "source line not quoted:\n{}", out.stderr);

    // Several files: each is checked, the good one is reported ok, the status is 1.
    let out = ssmc(dir.path(), [OsStr::new("check"), stdlib("s4d").as_os_str(), OsStr::new("broken.ssm")]);
    out.errs().stderr_has(&[&format!("broken.ssm:{line}:{col}")]);
    assert!(out.stdout.contains("s4d.ssm: ok (s4d)"), "{}", out.stdout);
}

#[test]
fn check_syntax_error_points_at_the_token() {
    let dir = tempdir();
    let text = "layer m {\n  dims batch B, time L, channel D, state N = 4\n  input u: f32[B, D L]\n}\n";
    std::fs::write(dir.path().join("syntax.ssm"), text).expect("write");
    let (line, col) = line_col(text, "L]");
    let out = ssmc(dir.path(), ["check", "syntax.ssm"]);
    out.errs().no_stdout().stderr_has(&[&format!("syntax.ssm:{line}:{col}"), "^"]);
}

#[test]
fn check_binary_file_is_one_clear_error() {
    let dir = tempdir();
    std::fs::write(dir.path().join("bin.ssm"), [0x7f, b'E', b'L', b'F', 0xff, 0x00, 0x01]).expect("write");
    let out = ssmc(dir.path(), ["check", "bin.ssm"]);
    out.errs().no_stdout().stderr_has(&["bin.ssm:1:5", "not valid UTF-8", "^"]);
}

#[test]
fn check_missing_file_says_cannot_read() {
    let dir = tempdir();
    let out = ssmc(dir.path(), ["check", "missing.ssm"]);
    out.errs().no_stdout().stderr_has(&["cannot read `missing.ssm`"]);
    // Other files are still checked.
    let out = ssmc(dir.path(), [OsStr::new("check"), OsStr::new("missing.ssm"), stdlib("vim").as_os_str()]);
    out.errs().stderr_has(&["cannot read `missing.ssm`"]);
    assert!(out.stdout.contains("vim.ssm: ok (vim)"), "{}", out.stdout);
    // `ir` and `run` say the same.
    ssmc(dir.path(), ["ir", "missing.ssm"]).errs().no_stdout().stderr_has(&["cannot read `missing.ssm`"]);
    ssmc(dir.path(), ["run", "missing.ssm"]).errs().no_stdout().stderr_has(&["cannot read `missing.ssm`"]);
}

#[test]
fn ir_prints_every_stdlib_layer() {
    let dir = tempdir();
    for name in STDLIB {
        let out = ssmc(dir.path(), [OsStr::new("ir"), stdlib(name).as_os_str()]);
        out.ok();
        assert!(out.stdout.contains(name), "IR of {name} does not name it:\n{}", out.stdout);
    }
}

// ---------------------------------------------------------------------------------------
// run: summaries

#[test]
fn run_json_summarizes_every_stdlib_layer() {
    let dir = tempdir();
    for name in STDLIB {
        let out = ssmc(dir.path(), [OsStr::new("run"), stdlib(name).as_os_str(), OsStr::new("--json")]);
        out.ok();
        eprintln!("ssmc run {name}.ssm --json: {:.0} ms wall", out.wall.as_secs_f64() * 1e3);
        assert!(out.wall < Duration::from_secs(5), "{name} took {:?}", out.wall);
        let v = json(&out);
        for key in ["layer", "target", "form", "dims", "outputs", "elapsed_ms"] {
            assert!(v.get(key).is_some(), "{name}: no key {key} in {v}");
        }
        assert_eq!(v["layer"], name);
        assert_eq!(v["target"], "interp");
        assert_eq!(v["seed"], 0);
        assert!(v["elapsed_ms"].as_f64().is_some_and(|t| t >= 0.0 && t.is_finite()), "{v}");
        let dims = v["dims"].as_object().expect("dims object");
        assert!(!dims.is_empty() && dims.values().all(|d| d.as_u64().is_some_and(|n| n >= 1)), "{v}");
        let outputs = v["outputs"].as_object().expect("outputs object");
        assert!(outputs.contains_key("out"), "{name}: {v}");
        for (o, s) in outputs {
            assert_eq!(s["non_finite"], 0, "{name}.{o}: {s}");
            for stat in ["mean", "std", "min", "max", "l2"] {
                assert!(s[stat].as_f64().is_some_and(f64::is_finite), "{name}.{o}.{stat} not finite: {s}");
            }
            assert!(s["l2"].as_f64().is_some_and(|l2| l2 > 0.0), "{name}.{o} is all zeros: {s}");
            let shape: Vec<u64> =
                s["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("size")).collect();
            assert!(shape.iter().all(|&d| d >= 1) && !shape.is_empty(), "{name}.{o}: {s}");
        }
    }
}

#[test]
fn run_text_summary_and_dims() {
    let dir = tempdir();
    let out = ssmc(
        dir.path(),
        [
            OsStr::new("run"),
            stdlib("mamba1").as_os_str(),
            OsStr::new("--dim"),
            OsStr::new("L=7"),
            OsStr::new("--seed"),
            OsStr::new("5"),
        ],
    );
    out.ok();
    for needle in [
        "layer   mamba1",
        "dims    B=2 D=64 G=1 L=7 N=16",
        "inputs  generated, seed 5",
        "output  out [2, 64, 7]:",
        "time ",
    ] {
        assert!(out.stdout.contains(needle), "no {needle:?} in:\n{}", out.stdout);
    }
    assert!(listing(dir.path()).is_empty(), "run without --output wrote files: {:?}", listing(dir.path()));
}

// ---------------------------------------------------------------------------------------
// run: files

#[test]
fn saved_inputs_reproduce_the_run() {
    let dir = tempdir();
    let d = dir.path();
    let m1 = stdlib("mamba1");
    let m1 = m1.as_os_str();
    let run = |extra: &[&str]| {
        let mut args = vec![OsStr::new("run"), m1, OsStr::new("--json")];
        args.extend(extra.iter().map(OsStr::new));
        let out = ssmc(d, args);
        out.ok();
        json(&out)
    };
    let first = run(&["--save-inputs", "in.safetensors", "--seed", "3", "--dim", "L=37", "--output", "a.safetensors"]);
    let second = run(&["--inputs", "in.safetensors", "--output", "b.safetensors", "--dtype", "f64"]);
    assert_eq!(first["dims"], second["dims"]);
    assert_eq!(first["dims"]["L"], 37);
    assert_eq!(second["inputs"], "in.safetensors");
    assert_eq!(second["seed"], serde_json::Value::Null);
    assert_eq!(first["outputs"], second["outputs"], "same inputs, same statistics");

    let inputs = read_safetensors(&d.join("in.safetensors")).expect("inputs");
    let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
    assert_eq!(names, ["A", "B", "C", "D", "delta", "delta_bias", "u", "z"]);
    assert_eq!(inputs["u"].shape, [2, 64, 37]);
    assert_eq!(inputs["B"].shape, [2, 1, 16, 37]);

    let a = read_safetensors(&d.join("a.safetensors")).expect("a");
    let b = read_safetensors(&d.join("b.safetensors")).expect("b");
    assert_eq!(a.keys().collect::<Vec<_>>(), ["out"]);
    assert_eq!(b.keys().collect::<Vec<_>>(), ["out"]);
    assert_eq!(a["out"].shape, [2, 64, 37]);
    assert_eq!(a["out"].shape, b["out"].shape);
    // The inputs were saved in f64, so the runs agree exactly; a holds f32, b f64.
    let mut rounded_differ = 0;
    for (x, y) in a["out"].data.iter().zip(&b["out"].data) {
        assert_eq!(*x, f64::from(*y as f32), "f32 output is not the f64 output rounded");
        rounded_differ += usize::from(x != y);
    }
    assert!(rounded_differ > 0, "the f64 file holds no more precision than the f32 one");
    // Written as F32 (4 bytes per value) and F64 (8 bytes per value).
    let (len_a, len_b) = (
        std::fs::metadata(d.join("a.safetensors")).expect("a").len(),
        std::fs::metadata(d.join("b.safetensors")).expect("b").len(),
    );
    assert!(len_b > len_a + 4 * 2 * 64 * 37 - 64, "sizes {len_a} and {len_b}");

    // Same seed, same bytes; another seed, other inputs and outputs.
    run(&["--save-inputs", "in3.safetensors", "--seed", "3", "--dim", "L=37", "--output", "a3.safetensors"]);
    let other =
        run(&["--save-inputs", "in4.safetensors", "--seed", "4", "--dim", "L=37", "--output", "a4.safetensors"]);
    let bytes = |f: &str| std::fs::read(d.join(f)).expect("read");
    assert_eq!(bytes("in.safetensors"), bytes("in3.safetensors"));
    assert_eq!(bytes("a.safetensors"), bytes("a3.safetensors"));
    assert_ne!(bytes("in.safetensors"), bytes("in4.safetensors"));
    assert_ne!(bytes("a.safetensors"), bytes("a4.safetensors"));
    assert_ne!(first["outputs"], other["outputs"]);
    assert_eq!(
        listing(d),
        [
            "a.safetensors",
            "a3.safetensors",
            "a4.safetensors",
            "b.safetensors",
            "in.safetensors",
            "in3.safetensors",
            "in4.safetensors"
        ],
        "stray files"
    );
}

/// Valid inputs of a stdlib layer at `dims`, made by the library.
fn valid_inputs(name: &str, dims: &[(&str, usize)]) -> TensorMap {
    let text = std::fs::read(stdlib(name)).expect("read");
    let c = check_source(name, &text);
    let (module, _) = c.result.unwrap_or_else(|d| panic!("{}", d.render(&c.file, false)));
    let layer = &module.layers[0];
    let dims: BTreeMap<String, usize> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let sizes = sizes_from_dims(layer, &dims).expect("sizes");
    generate_inputs(layer, &sizes, 0)
}

/// A safetensors file written by hand, for dtypes and shapes the library does not write.
fn raw_safetensors(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [start, data.len()] }),
        );
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    file
}

/// Runs `layer` on an inputs file that must be rejected: exit 1, no summary, no output file.
fn rejected_inputs(layer: &str, dir: &Path, file: &str) -> Out {
    let out = ssmc(
        dir,
        [
            OsStr::new("run"),
            stdlib(layer).as_os_str(),
            OsStr::new("--inputs"),
            OsStr::new(file),
            OsStr::new("--output"),
            OsStr::new("out.safetensors"),
        ],
    );
    eprintln!("--inputs {file}:\n{}", out.stderr);
    out.errs().no_stdout();
    assert!(!dir.join("out.safetensors").exists(), "an output was written for rejected inputs:\n{}", out.stderr);
    assert!(!listing(dir).iter().any(|f| f.starts_with(".tmp")), "temporary files left: {:?}", listing(dir));
    out
}

#[test]
fn bad_input_files_are_rejected_by_name_and_shape() {
    let dir = tempdir();
    let d = dir.path();
    let good = valid_inputs("mamba1", &[("L", 5), ("D", 4)]);
    let write = |file: &str, m: &TensorMap| write_safetensors(&d.join(file), m, OutDType::F32).expect("write");

    // The unchanged file runs, so each failure below is the change's doing.
    write("good.safetensors", &good);
    let out = ssmc(
        d,
        [
            OsStr::new("run"),
            stdlib("mamba1").as_os_str(),
            OsStr::new("--inputs"),
            OsStr::new("good.safetensors"),
            OsStr::new("--json"),
        ],
    );
    out.ok();
    assert_eq!(json(&out)["dims"]["L"], 5);

    // (i) a missing tensor
    let mut m = good.clone();
    m.remove("delta");
    write("missing.safetensors", &m);
    rejected_inputs("mamba1", d, "missing.safetensors").stderr_has(&["`delta`", "[B, D, L]", "missing.safetensors"]);

    // (ii) an extra tensor, and an output given as an input
    let mut m = good.clone();
    m.insert("bogus".into(), TensorData::full(vec![3], 1.0));
    m.insert("out".into(), TensorData::full(vec![2, 4, 5], 1.0));
    write("extra.safetensors", &m);
    let out = rejected_inputs("mamba1", d, "extra.safetensors");
    out.stderr_has(&["`bogus`", "`out`", "output"]);

    // (iii) a wrong rank: both the declared and the given shape
    let mut m = good.clone();
    m.insert("D".into(), TensorData::full(vec![4, 1], 1.0));
    write("rank.safetensors", &m);
    rejected_inputs("mamba1", d, "rank.safetensors").stderr_has(&["`D`", "1 axis [D]", "2 axes [4, 1]"]);

    // (iv) a size in conflict with another tensor's
    let mut m = good.clone();
    m.insert("z".into(), TensorData::full(vec![2, 4, 6], 0.5));
    write("conflict.safetensors", &m);
    rejected_inputs("mamba1", d, "conflict.safetensors").stderr_has(&["`z`", "[B, D, L]", "L=5", "[2, 4, 6]"]);

    // (iv) a size in conflict with a compile-time constant (N = 16)
    let mut m = good.clone();
    m.insert("A".into(), TensorData::full(vec![4, 17], -1.0));
    write("constant.safetensors", &m);
    rejected_inputs("mamba1", d, "constant.safetensors").stderr_has(&["`A`", "[D, N]", "N=16", "[4, 17]"]);

    // (iv) a size-0 axis
    let mut m = good.clone();
    m.insert("u".into(), TensorData::full(vec![2, 0, 5], 0.0));
    write("empty.safetensors", &m);
    rejected_inputs("mamba1", d, "empty.safetensors").stderr_has(&["`u`", "[2, 0, 5]"]);

    // (v) an integer dtype
    let mut tensors: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = good
        .iter()
        .filter(|(n, _)| n.as_str() != "D")
        .map(|(n, t)| {
            (
                n.as_str(),
                "F32",
                t.shape.iter().map(|&s| s as u64).collect(),
                t.data.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
            )
        })
        .collect();
    tensors.push(("D", "I32", vec![4], [1i32, 2, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect()));
    std::fs::write(d.join("int.safetensors"), raw_safetensors(&tensors)).expect("write");
    rejected_inputs("mamba1", d, "int.safetensors").stderr_has(&["`D`", "I32", "int.safetensors"]);

    // (vi) not a safetensors file: text, and a header length beyond the file
    std::fs::write(d.join("text.safetensors"), "u = [1, 2, 3]\n").expect("write");
    rejected_inputs("mamba1", d, "text.safetensors").stderr_has(&["text.safetensors", "not a safetensors file"]);
    std::fs::write(d.join("cut.safetensors"), [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, b'{']).expect("write");
    rejected_inputs("mamba1", d, "cut.safetensors").stderr_has(&["cut.safetensors", "not a safetensors file"]);

    // (vii) a missing file
    rejected_inputs("mamba1", d, "nowhere.safetensors").stderr_has(&["nowhere.safetensors", "cannot read"]);
}

#[test]
fn bad_complex_and_divided_axes_are_rejected() {
    let dir = tempdir();
    let d = dir.path();
    let good = valid_inputs("s4d", &[("L", 3), ("H", 2)]);
    let write = |file: &str, m: &TensorMap| write_safetensors(&d.join(file), m, OutDType::F64).expect("write");

    // The re/im axis of a complex tensor must be 2.
    let mut m = good.clone();
    m.insert("C".into(), TensorData::full(vec![2, 32, 3], 0.1));
    write("complex.safetensors", &m);
    rejected_inputs("s4d", d, "complex.safetensors").stderr_has(&["`C`", "[H, N/2, 2]", "[2, 32, 3]"]);

    // N/2 given as 33 (N = 64 is a constant).
    let mut m = good.clone();
    m.insert("log_A_real".into(), TensorData::full(vec![2, 33], -0.5));
    write("half.safetensors", &m);
    rejected_inputs("s4d", d, "half.safetensors").stderr_has(&["`log_A_real`", "[H, N/2]", "[2, 33]"]);

    // An empty tensor with an absurd axis: the header is valid (0 elements), the axis
    // times its divisor overflows.
    let mut tensors: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = good
        .iter()
        .filter(|(n, _)| n.as_str() != "log_A_real")
        .map(|(n, t)| {
            (
                n.as_str(),
                "F64",
                t.shape.iter().map(|&s| s as u64).collect(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    tensors.push(("log_A_real", "F64", vec![0, 1 << 63], Vec::new()));
    std::fs::write(d.join("huge.safetensors"), raw_safetensors(&tensors)).expect("write");
    rejected_inputs("s4d", d, "huge.safetensors").stderr_has(&["`log_A_real`", "[H, N/2]"]);
}

// ---------------------------------------------------------------------------------------
// run: dims and layers

#[test]
fn dim_overrides_are_checked() {
    let dir = tempdir();
    let d = dir.path();
    let m1 = stdlib("mamba1");
    let run = |args: &[&str]| {
        let mut all = vec![OsStr::new("run"), m1.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        ssmc(d, all)
    };
    run(&["--dim", "N=32", "--output", "o.safetensors"]).errs().no_stdout().stderr_has(&[
        "N=32",
        "`N` is a compile-time constant",
        "16",
    ]);
    // The constant's own value is fine.
    run(&["--dim", "N=16", "--dim", "L=3", "--json"]).ok();
    run(&["--dim", "Q=3"]).errs().no_stdout().stderr_has(&["`Q`", "no dim", "B, D, L, G, N"]);
    run(&["--dim", "L=0"]).errs().no_stdout().stderr_has(&["L=0", "at least 1"]);
    // Every problem at once.
    run(&["--dim", "Q=3", "--dim", "N=8"]).errs().stderr_has(&["`Q`", "`N`"]);
    // Sizes too large to hold, or to count, are errors, not crashes.
    run(&["--dim", "L=1000000000000"]).errs().no_stdout().stderr_has(&["`u`", "[B, D, L]", "elements"]);
    run(&["--dim", "L=99999999999999999", "--dim", "D=99999999999"])
        .errs()
        .no_stdout()
        .stderr_has(&["[B, D, L]", "elements"]);

    // Malformed values are usage errors (exit 2) from the argument parser.
    for bad in ["L=abc", "L", "L=-1", "L=1.5"] {
        let out = run(&["--dim", bad]);
        assert_eq!(out.code, Some(2), "--dim {bad}:\n{}", out.stderr);
        assert!(out.stderr.contains(bad) && out.stderr.contains("--dim"), "--dim {bad}:\n{}", out.stderr);
    }
    // --dim and --seed generate inputs; with --inputs they make no sense.
    let out = run(&["--inputs", "x.safetensors", "--dim", "L=3"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--inputs"), "{}", out.stderr);
    assert!(!d.join("o.safetensors").exists());
    assert!(listing(d).is_empty(), "{:?}", listing(d));
}

#[test]
fn two_layer_file_needs_layer() {
    let dir = tempdir();
    let d = dir.path();
    let text = std::fs::read_to_string(stdlib("mamba1")).expect("read")
        + "\n"
        + &std::fs::read_to_string(stdlib("s4d")).expect("read");
    std::fs::write(d.join("two.ssm"), text).expect("write");

    let out = ssmc(d, ["check", "two.ssm"]);
    out.ok();
    assert!(out.stdout.contains("two.ssm: ok (mamba1, s4d)"), "{}", out.stdout);

    ssmc(d, ["run", "two.ssm", "--output", "o.safetensors"])
        .errs()
        .no_stdout()
        .stderr_has(&["2 layers", "mamba1", "s4d", "--layer"]);
    assert!(!d.join("o.safetensors").exists());
    ssmc(d, ["run", "two.ssm", "--layer", "s5"]).errs().no_stdout().stderr_has(&["`s5`", "mamba1, s4d"]);

    for layer in ["s4d", "mamba1"] {
        let out = ssmc(d, ["run", "two.ssm", "--layer", layer, "--dim", "L=4", "--json"]);
        out.ok();
        let v = json(&out);
        assert_eq!(v["layer"], layer);
        assert_eq!(v["dims"]["L"], 4);
    }
}

#[test]
fn unwritable_outputs_fail_before_writing_anything() {
    let dir = tempdir();
    let d = dir.path();
    let m1 = stdlib("mamba1");
    let run = |args: &[&str]| {
        let mut all = vec![OsStr::new("run"), m1.as_os_str(), OsStr::new("--dim"), OsStr::new("L=4")];
        all.extend(args.iter().map(OsStr::new));
        ssmc(d, all)
    };
    run(&["--output", "nodir/out.safetensors"])
        .errs()
        .no_stdout()
        .stderr_has(&["nodir/out.safetensors", "`nodir` does not exist"]);
    run(&["--save-inputs", "nodir/in.safetensors"])
        .errs()
        .no_stdout()
        .stderr_has(&["nodir/in.safetensors", "does not exist"]);
    // --save-inputs would succeed, but the output cannot: neither is written.
    run(&["--save-inputs", "in.safetensors", "--output", "nodir/out.safetensors"])
        .errs()
        .no_stdout()
        .stderr_has(&["nodir"]);
    // An output path that is a directory.
    std::fs::create_dir(d.join("sub")).expect("mkdir");
    run(&["--output", "sub"]).errs().no_stdout().stderr_has(&["sub", "directory"]);
    // A directory path through a file.
    std::fs::write(d.join("plain"), "x").expect("write");
    run(&["--output", "plain/out.safetensors"])
        .errs()
        .no_stdout()
        .stderr_has(&["plain/out.safetensors", "not a directory"]);
    assert_eq!(listing(d), ["plain", "sub"], "files written by failed runs");
    assert!(listing(&d.join("sub")).is_empty());

    // The output replaces an existing file whole.
    std::fs::write(d.join("o.safetensors"), "old").expect("write");
    run(&["--output", "o.safetensors"]).ok();
    let o = read_safetensors(&d.join("o.safetensors")).expect("replaced");
    assert_eq!(o["out"].shape, [2, 64, 4]);
    assert_eq!(listing(d), ["o.safetensors", "plain", "sub"]);
}
