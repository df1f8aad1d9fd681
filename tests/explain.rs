//! `ssmc explain`: the text it prints for the stdlib layers at the sizes that matter
//! (long LTI convolution, SSD training, one decoding step, a GPU batch, a bidirectional
//! layer), reviewed as snapshots; the chosen forms are also asserted by name, so that an
//! accepted bad snapshot cannot hide a wrong choice.
//!
//! The text is formatted in the binary (`cli/src/summary.rs`), so the binary is run,
//! from the repository root with relative paths: snapshots do not depend on where the
//! repository lives.

use ssmc_tests::{root, ssmc_bin};
use std::process::Command;

/// `ssmc explain args...` from the repository root; must succeed with nothing on stderr.
fn explain(args: &[&str]) -> String {
    let out = Command::new(ssmc_bin())
        .arg("explain")
        .args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run ssmc");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert_eq!(out.status.code(), Some(0), "ssmc explain {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.is_empty(), "unexpected stderr:\n{stderr}");
    stdout
}

/// The forms of the `chosen` line, one per scan: `chosen  recurrent + recurrent   (...)`.
fn chosen(text: &str) -> Vec<String> {
    let line =
        text.lines().find_map(|l| l.strip_prefix("chosen ")).unwrap_or_else(|| panic!("no `chosen` line:\n{text}"));
    let plan = line.split("(extracted term").next().expect("split").trim();
    plan.split(" + ").map(str::to_string).collect()
}

/// A row of the form table: the form, its estimated seconds if legal, whether it is marked
/// chosen, and whether the target has a native schedule for it.
struct Row {
    form: String,
    seconds: Option<f64>,
    marked: bool,
    scheduled: bool,
}

fn rows(text: &str) -> Vec<Row> {
    let table = text.split_once("\nform ").unwrap_or_else(|| panic!("no table:\n{text}")).1;
    table
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let form = words.next().expect("form").to_string();
            let (value, unit) = (words.next().expect("time"), words.next().unwrap_or(""));
            let seconds = if value == "illegal:" {
                None
            } else {
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("time in `{l}`"));
                let scale = match unit {
                    "s" => 1.0,
                    "ms" => 1e-3,
                    "us" => 1e-6,
                    other => panic!("unit `{other}` in `{l}`"),
                };
                Some(v * scale)
            };
            Row { form, seconds, marked: l.ends_with("<- chosen"), scheduled: !l.ends_with("(no schedule)") }
        })
        .collect()
}

/// Runs `explain` twice (the text must not change), snapshots it, and checks that the
/// chosen form is marked, legal, scheduled and the cheapest such row of the table; returns
/// the chosen forms.
fn check(snapshot: &str, args: &[&str]) -> Vec<String> {
    let text = explain(args);
    assert_eq!(text, explain(args), "explain {args:?} is not deterministic");
    insta::with_settings!({ description => format!("ssmc explain {}", args.join(" ")), omit_expression => true }, {
        insta::assert_snapshot!(snapshot, text);
    });
    let forms = chosen(&text);
    let rows = rows(&text);
    assert_eq!(rows.len(), 8, "every form is listed:\n{text}");
    let marked: Vec<&Row> = rows.iter().filter(|r| r.marked).collect();
    for f in &forms {
        let row =
            rows.iter().find(|r| &r.form == f).unwrap_or_else(|| panic!("chosen {f} is not in the table:\n{text}"));
        assert!(row.marked, "chosen {f} is not marked:\n{text}");
        assert!(row.seconds.is_some(), "chosen {f} is illegal:\n{text}");
        assert!(row.scheduled, "chosen {f} has no schedule:\n{text}");
    }
    assert!(marked.iter().all(|r| forms.contains(&r.form)), "a row is marked but not chosen:\n{text}");
    // With the same form on every scan, the cheapest row is the cheapest plan.
    if forms.iter().all(|f| *f == forms[0]) {
        let cheapest = rows.iter().filter(|r| r.scheduled).filter_map(|r| r.seconds).fold(f64::INFINITY, f64::min);
        let own = rows.iter().find(|r| r.form == forms[0]).and_then(|r| r.seconds);
        assert_eq!(own, Some(cheapest), "chosen is not the cheapest:\n{text}");
    }
    forms
}

/// The estimate of `form` in the table, and whether it has a schedule.
fn row(text: &str, form: &str) -> (Option<f64>, bool) {
    let rows = rows(text);
    let r = rows.iter().find(|r| r.form == form).unwrap_or_else(|| panic!("no row {form}:\n{text}"));
    (r.seconds, r.scheduled)
}

/// A long time-invariant sequence: on the GPU the FFT convolution would beat a serial
/// recurrence of 65536 steps, but it has no GPU schedule yet, so the block scan is chosen;
/// on the 2-core CPU, where the recurrence runs 16 channels per vector, three FFTs of 131072
/// points per channel cost more than the recurrence at S4D's state of 64 (measured:
/// bench/NOTES.md), and the convolution only wins with a much larger state.
#[test]
fn s4d_long_sequence_form_follows_the_target() {
    let cpu = check("s4d_cpu_L65536", &["stdlib/s4d.ssm", "--dim", "L=65536", "--target", "cpu"]);
    assert_eq!(cpu, ["recurrent"]);
    let args = ["stdlib/s4d.ssm", "--dim", "L=65536", "--target", "cuda"];
    let cuda = check("s4d_cuda_L65536", &args);
    assert_eq!(cuda, ["scan"]);
    let text = explain(&args);
    let ((conv, conv_scheduled), (scan, _)) = (row(&text, "conv"), row(&text, "scan"));
    assert!(conv.expect("conv is legal") < scan.expect("scan is legal"), "the GPU model prefers conv:\n{text}");
    assert!(!conv_scheduled, "conv has no GPU schedule:\n{text}");
    let why =
        text.lines().filter_map(|l| l.strip_prefix("conv ")).find_map(|l| l.trim_start().strip_prefix("no schedule: "));
    assert!(why.is_some_and(|w| w.starts_with("form conv has no GPU schedule yet")), "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("s4d_n512.ssm");
    let src = std::fs::read_to_string(root().join("stdlib/s4d.ssm")).expect("read");
    std::fs::write(&big, src.replace("state N = 64", "state N = 512")).expect("write");
    let text = explain(&[big.to_str().expect("utf-8"), "--dim", "L=65536", "--dim", "H=64", "--target", "cpu"]);
    assert_eq!(chosen(&text), ["conv"], "{text}");
}

/// `cuda` and its older name `ptx` are one target in `explain` and `build`: the same text,
/// the same artifact, in the form explain chose (planned by the GPU's cost model among the
/// GPU's schedules: the block scan for S4D at L = 65536, where the CPU's chooses recurrent).
#[test]
fn cuda_and_ptx_name_one_target_in_every_command() {
    let args = |target: &'static str| ["stdlib/s4d.ssm", "--dim", "L=65536", "--target", target];
    let text = explain(&args("cuda"));
    assert_eq!(explain(&args("ptx")), text);
    assert_eq!(chosen(&text), ["scan"], "{text}");
    assert_eq!(chosen(&explain(&args("cpu"))), ["recurrent"]);
    assert!(text.contains("`ssmc run --target cuda`"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let build = |target: &'static str| {
        let out = dir.path().join(target);
        let status = Command::new(ssmc_bin())
            .arg("build")
            .args(args(target))
            .arg("-o")
            .arg(&out)
            .current_dir(root())
            .output()
            .expect("run ssmc");
        assert!(status.status.success(), "build --target {target}: {}", String::from_utf8_lossy(&status.stderr));
        let built = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(built.contains("(ptx sm_90, form scan)"), "{built}");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("manifest")).expect("json");
        assert_eq!((manifest["target"].as_str(), manifest["form"].as_str()), (Some("ptx"), Some("scan")));
        std::fs::read(out.join("s4d.ptx")).expect("the PTX")
    };
    assert_eq!(build("cuda"), build("ptx"));
}

#[test]
fn mamba2_training_chooses_chunked() {
    let args =
        ["stdlib/mamba2.ssm", "--dim", "B=1", "--dim", "L=2048", "--dim", "H=24", "--dim", "P=64", "--target", "cpu"];
    let forms = check("mamba2_cpu_b1_L2048_h24_p64", &args);
    assert_eq!(forms.len(), 1);
    assert!(forms[0].starts_with("chunked:"), "chosen {forms:?}");
    // conv is illegal, and the reason points at the selective roles in the file.
    let src = std::fs::read_to_string(root().join("stdlib/mamba2.ssm")).expect("read");
    let line = |prefix: &str| 1 + src.lines().position(|l| l.trim_start().starts_with(prefix)).expect("role line");
    let reason = format!(
        "conv           illegal: dt (line {}), B (line {}) and C (line {}) are selective",
        line("dt ="),
        line("B  ="),
        line("C  =")
    );
    let text = explain(&args);
    assert!(text.contains(&reason), "lacks {reason:?}:\n{text}");
}

#[test]
fn mamba1_decode_step_chooses_recurrent() {
    let forms = check("mamba1_cpu_L1", &["stdlib/mamba1.ssm", "--dim", "L=1"]);
    assert_eq!(forms, ["recurrent"]);
}

#[test]
fn mamba1_gpu_batch() {
    let args = ["stdlib/mamba1.ssm", "--dim", "B=8", "--dim", "D=4096", "--dim", "L=2048", "--target", "cuda"];
    let forms = check("mamba1_cuda_b8_d4096_L2048", &args);
    assert_eq!(forms.len(), 1);
    assert_ne!(forms[0], "conv", "mamba1 is selective");
    let text = explain(&args);
    assert!(text.contains("target  cuda"), "{text}");
    assert!(text.contains("dims    B=8 D=4096 G=1 L=2048 N=16"), "{text}");
}

#[test]
fn vim_default_is_two_scans() {
    let forms = check("vim_cpu_default", &["stdlib/vim.ssm"]);
    // One form per scan; both scans have the same shape, so the same form.
    assert_eq!(forms.len(), 2, "chosen {forms:?}");
    assert_eq!(forms[0], forms[1], "chosen {forms:?}");
    assert_ne!(forms[0], "conv", "vim is selective");
    let text = explain(&["stdlib/vim.ssm"]);
    assert!(text.contains("term    (bidir fwd bwd)"), "{text}");
    // The backward scan is a causal scan read backward.
    assert!(text.contains("(flip bwd)))"), "{text}");
}
