//! Malformed safetensors files get a message in words naming the tensor and the byte
//! offsets, the same from the interpreter and the native paths; files and layers of many
//! tensors are checked in n log n, and their reports stay bounded.

use ssmc_tests::{ssmc_bin, stdlib, Out};
use std::path::Path;
use std::process::Command;

fn ssmc(dir: &Path, args: &[&str]) -> Out {
    let out = Out::run_lossy(Command::new(ssmc_bin()).args(args).current_dir(dir).env_remove("RUST_BACKTRACE"));
    out.not_panicked("ssmc");
    assert_ne!(out.code, Some(101), "ssmc panicked:\n{}", out.stderr);
    out
}

/// A file of header `header` (JSON text) and `data` bytes of data, with `extra` after.
fn file(header: &str, data: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.resize(b.len() + data, 0);
    b
}

fn entry(name: &str, dtype: &str, shape: &[usize], begin: usize, end: usize) -> String {
    format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{end}]}}"#)
}

/// Runs mamba1 on `bytes` with the interpreter and with native code; both must refuse with
/// the same message, which holds every one of `needles`.
fn refused(dir: &Path, bytes: &[u8], needles: &[&str]) {
    std::fs::write(dir.join("bad.safetensors"), bytes).expect("write");
    let m = stdlib("mamba1").display().to_string();
    let interp = ssmc(dir, &["run", &m, "--inputs", "bad.safetensors"]);
    interp.errs().no_stdout().stderr_has(needles).stderr_has(&["bad.safetensors"]);
    assert!(!interp.stderr.contains("Metadata") && !interp.stderr.contains("InvalidOffset"), "{}", interp.stderr);
    let cpu = ssmc(dir, &["run", &m, "--inputs", "bad.safetensors", "--target", "cpu"]);
    cpu.errs().no_stdout();
    assert_eq!(interp.stderr, cpu.stderr, "the interpreter and the CPU path disagree");
}

#[test]
fn every_malformed_header_is_said_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let u = |b, e| entry("u", "F32", &[2], b, e);
    refused(d, b"abc", &["3 bytes long", "8-byte header length"]);
    refused(d, &[0xff, 0xff, 0, 0, 0, 0, 0, 0, b'{'], &["header length", "only 1 bytes follow"]);
    refused(d, &file(&format!("{{{},{}}}", u(0, 8), u(8, 16)), 16), &["tensor `u` appears twice", "at byte"]);
    refused(d, &file(&format!("{{{}}}", u(0, 8)), 4), &["tensor `u`", "file ends at byte", "truncated"]);
    refused(d, &file(&format!("{{{}}}", u(0, 8)), 11), &["3 trailing bytes", "`u`", "belong to no tensor"]);
    refused(d, &file(&format!("{{{}}}", u(0, 4)), 4), &["tensor `u`", "needs 8 bytes", "hold 4"]);
    refused(d, &file(&format!("{{{},{}}}", u(0, 8), entry("v", "F32", &[1], 4, 8)), 8), &["overlaps", "`v`", "`u`"]);
    refused(
        d,
        &file(&format!("{{{},{}}}", u(0, 8), entry("v", "F32", &[1], 12, 16)), 16),
        &["belong to no tensor", "after tensor `u`"],
    );
    refused(d, &file(&format!("{{{}}}", entry("u", "Q7", &[2], 0, 8)), 8), &["`Q7` is not a safetensors dtype"]);
    refused(d, &file(&format!("{{{}}}", entry("u", "I8", &[2], 0, 2)), 2), &["`u`", "I8", "ssmc reads F32"]);
    refused(d, &file(r#"{"u":{"dtype":"F32"}}"#, 0), &["tensor `u`", "missing field"]);
    refused(d, &file("[1, 2]", 0), &["JSON object of tensors"]);
}

/// `n` extra tensors `x0000000...` of one f32 each, appended to the safetensors file `src`.
fn with_extra_tensors(src: &[u8], n: usize) -> Vec<u8> {
    let len = u64::from_le_bytes(src[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&src[8..8 + len]).expect("utf8").trim_end();
    let data = &src[8 + len..];
    let mut h = header.strip_suffix('}').expect("a JSON object").to_string();
    for i in 0..n {
        h += &format!(",{}", entry(&format!("x{i:07}"), "F32", &[1], data.len() + 4 * i, data.len() + 4 * i + 4));
    }
    h.push('}');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + 4 * n, 0);
    out
}

#[test]
fn many_unknown_tensors_get_a_bounded_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let m = stdlib("mamba1").display().to_string();
    ssmc(d, &["run", &m, "--save-inputs", "in.safetensors"]).ok();
    let bytes = with_extra_tensors(&std::fs::read(d.join("in.safetensors")).expect("read"), 20_000);
    std::fs::write(d.join("many.safetensors"), bytes).expect("write");
    for target in ["interp", "cpu"] {
        let out = ssmc(d, &["run", &m, "--inputs", "many.safetensors", "--target", target]);
        out.errs().stderr_has(&["unexpected tensor `x0000000`", "and 19980 more problems"]);
        assert!(out.stderr.lines().count() < 30, "{} lines on stderr", out.stderr.lines().count());
    }
}

#[test]
fn a_layer_of_many_inputs_binds_in_n_log_n() {
    // 100,000 declared inputs: matching names by linear search took about 30 s here (2 s now).
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let src = std::fs::read_to_string(stdlib("mamba1")).expect("read");
    let extra: String = (0..100_000).map(|i| format!("  input x{i}: f32[D]\n")).collect();
    let text = src.replacen("  output out:", &format!("{extra}  output out:"), 1);
    assert_ne!(text, src);
    std::fs::write(d.join("many.ssm"), text).expect("write");
    ssmc(d, &["run", "many.ssm", "--dim", "L=4", "--save-inputs", "in.safetensors"]).ok();
    let out = ssmc(d, &["run", "many.ssm", "--inputs", "in.safetensors"]);
    out.ok();
    assert!(out.wall.as_secs_f64() < 12.0, "binding 100,000 inputs took {:?}", out.wall);
}
