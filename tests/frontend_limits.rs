//! Bad input never crashes the front end: expressions past the documented limits are
//! refused with a located error (checked on a thread with a small stack, so that the
//! limits are known to leave margin), a byte-order mark is accepted, errors are capped in
//! the rendering but counted exactly, every `~` distribution that checks can be drawn, and
//! roles that are never finite are warned about.

use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::ir::DimSize;
use ssmc_compiler::{check_source, interp, tensors, Checked};
use ssmc_syntax::{Severity, MAX_NESTING, MAX_OPERATORS, MAX_SHOWN};
use ssmc_tests::{ssmc_bin, Out};
use std::collections::BTreeMap;
use std::process::Command;

/// A small stack, a quarter of a test thread's and a sixteenth of `main`'s: the checker
/// must fit in it at the limits (the deepest tree they allow needs 256 to 512 KiB).
const SMALL_STACK: usize = 512 * 1024;

/// A valid Mamba-style layer whose `x` is `X`.
const LAYER: &str = "layer l {
  dims batch B, channel D, time L, state N = 4
  input u: f32[B, D, L]
  input A_log: f32[D, N]
  input Bm: f32[B, N, L]
  input Cm: f32[B, N, L]
  input delta: f32[B, D, L]
  output out: f32[B, D, L]
  x = X
  dt = softplus(delta)
  A = diagonal(-exp(A_log))
  B = Bm
  C = Cm
  discretize zoh_euler
}
";

fn layer_with_x(x: &str) -> String {
    LAYER.replace("X", x)
}

/// Runs `f` on a thread with a [`SMALL_STACK`]; a stack overflow aborts the test process.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(SMALL_STACK).spawn(f).expect("spawn").join().expect("no panic")
}

fn errors(c: &Checked) -> Vec<(String, usize)> {
    match &c.result {
        Ok(_) => Vec::new(),
        Err(d) => {
            d.0.iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| (d.message.clone(), d.primary.span.start))
                .collect()
        }
    }
}

/// The inputs of the issue, at the sizes reported: the expression, the error's start
/// and where it must point (byte offset within the expression).
fn oversized() -> Vec<(&'static str, String, &'static str, usize)> {
    let sum = vec!["u"; 11_000].join(" + ");
    let plus = sum.match_indices('+').nth(MAX_OPERATORS).map(|(i, _)| i).expect("enough terms");
    let nested = |n: usize, open: &str| format!("{}u{}", open.repeat(n), ")".repeat(n));
    vec![
        ("11,000 summed terms", sum, "expression too long: 10999 operators", plus),
        (
            "7,600 unary minuses",
            format!("{}u", "-".repeat(7_600)),
            "expression too long: 7600 operators",
            MAX_OPERATORS,
        ),
        ("5,000 nested parentheses", nested(5_000, "("), "expression nested too deeply", MAX_NESTING),
        ("30,000 nested parentheses", nested(30_000, "("), "expression nested too deeply", MAX_NESTING),
        ("3,000 nested calls", nested(3_000, "exp("), "expression nested too deeply", 4 * MAX_NESTING + 3),
    ]
}

#[test]
fn oversized_expressions_are_located_errors_on_a_small_stack() {
    for (what, x, message, at) in oversized() {
        let src = layer_with_x(&x);
        let start = src.find("x = ").expect("x role") + 4;
        let found = on_small_stack(move || errors(&check_source("big.ssm", src.as_bytes())));
        assert_eq!(found.len(), 1, "{what}: {found:?}");
        assert!(found[0].0.starts_with(message), "{what}: {}", found[0].0);
        assert_eq!(found[0].1, start + at, "{what}: located at the wrong place");
    }
}

/// Expressions exactly at the limits: the deepest tree the limits allow.
fn at_the_limits() -> Vec<String> {
    let calls = |inner: &str| format!("{}{inner}{}", "exp(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    vec![
        calls(&format!("{}u", "-".repeat(MAX_OPERATORS))),
        vec!["u"; MAX_OPERATORS + 1].join(" * "),
        calls(&format!("{}u{}", "0 - ".repeat(MAX_OPERATORS), "")),
        format!("{}u{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING)),
    ]
}

#[test]
fn expressions_at_the_limits_check_on_a_small_stack() {
    for x in at_the_limits() {
        let src = layer_with_x(&x);
        let found = on_small_stack(move || errors(&check_source("limit.ssm", src.as_bytes())));
        assert!(found.is_empty(), "{found:?}");
    }
}

#[test]
fn expressions_at_the_limits_run_in_the_interpreter() {
    for x in at_the_limits() {
        let src = layer_with_x(&x);
        // Twice the small stack: still far below the 8 MB of `main`, where `ssmc run` runs.
        let rows = std::thread::Builder::new()
            .stack_size(2 * SMALL_STACK)
            .spawn(move || {
                let (module, _) = ssmc_compiler::compile(&src).expect("checks");
                let layer = &module.layers[0];
                let dims: BTreeMap<String, usize> = layer
                    .dims
                    .iter()
                    .filter(|(_, d)| d.size == DimSize::Runtime)
                    .map(|(_, d)| (d.name.clone(), 2))
                    .collect();
                let sizes = sizes_from_dims(layer, &dims).expect("binds");
                let inputs = tensors::generate_inputs(layer, &sizes, 1);
                interp::run(layer, &sizes, &inputs)["out"].data.len()
            })
            .expect("spawn")
            .join()
            .expect("no panic");
        assert_eq!(rows, 8);
    }
}

#[test]
fn the_binary_refuses_oversized_expressions_with_a_located_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, x, message, _) in oversized() {
        let path = dir.path().join("big.ssm");
        std::fs::write(&path, layer_with_x(&x)).expect("write");
        let out = Out::run(Command::new(ssmc_bin()).arg("check").arg(&path).env_remove("RUST_BACKTRACE"));
        assert_eq!(out.code, Some(1), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{what}: {}", out.stderr);
        assert!(out.stderr.contains("big.ssm:9:"), "{what}: not located:\n{}", out.stderr);
    }
}

#[test]
fn a_byte_order_mark_is_accepted_and_not_shown() {
    let ok = format!("\u{feff}{}", layer_with_x("u"));
    assert!(check_source("bom.ssm", ok.as_bytes()).result.is_ok());
    let bad = format!("\u{feff}{}", layer_with_x("v"));
    let c = check_source("bom.ssm", bad.as_bytes());
    let text = c.result.as_ref().map(|_| ()).expect_err("unknown tensor v").render(&c.file, false);
    assert!(text.contains("bom.ssm:9:7") && !text.contains('\u{feff}'), "{text}");
    // Anywhere else it is a stray invisible character, named by its code point.
    let inside = layer_with_x("u \u{feff}");
    let c = check_source("bom.ssm", inside.as_bytes());
    let text = c.result.as_ref().map(|_| ()).expect_err("stray BOM").render(&c.file, false);
    assert!(text.contains("found the invisible character U+FEFF"), "{text}");
}

#[test]
fn errors_past_the_cap_are_counted_not_shown() {
    let dups = 1_000;
    let src = LAYER.replace("  x = X\n", &"  x = u\n".repeat(dups + 1));
    let c = check_source("dups.ssm", src.as_bytes());
    let diags = c.result.as_ref().map(|_| ()).expect_err("duplicate roles");
    assert_eq!(diags.error_count(), dups);
    let text = diags.render(&c.file, false);
    assert_eq!(text.matches("error: role `x` is given twice").count(), MAX_SHOWN);
    assert!(
        text.contains(&format!("error: {} more errors not shown", dups - MAX_SHOWN)),
        "{}",
        &text[text.len() - 300..]
    );
    let one = diags.render_at_most(&c.file, false, dups - 1);
    assert!(one.contains("error: 1 more error not shown"));
}

/// Every tiny-size run of a layer whose inputs are drawn from `init` (for `u`, of `dtype`).
fn draw(dtype: &str, init: &str) -> Result<Vec<f64>, String> {
    let src = layer_with_x("u").replace("input u: f32[B, D, L]", &format!("input u: {dtype}[B, D, L] ~ {init}"));
    let c = check_source("init.ssm", src.as_bytes());
    let module = match c.result {
        Ok((m, _)) => m,
        Err(d) => return Err(d.0.iter().map(|d| d.message.clone()).collect::<Vec<_>>().join("; ")),
    };
    let layer = &module.layers[0];
    let dims = [("B", 1), ("D", 2), ("L", 3)].map(|(k, v)| (k.to_string(), v)).into_iter().collect();
    let sizes = sizes_from_dims(layer, &dims).expect("binds");
    Ok(tensors::generate_inputs(layer, &sizes, 7)["u"].data.clone())
}

#[test]
fn distributions_that_check_can_be_drawn() {
    let extreme = [
        ("f64", "uniform(-8.9e307, 8.9e307)"),
        ("f64", "normal(0, 1e306)"),
        ("f32", "uniform(-3.4e38, 3.4e38)"),
        ("bf16", "uniform(-3.3e38, 3.3e38)"),
        ("f16", "uniform(-65504, 65504)"),
        ("f16", "normal(100, 4000)"),
    ];
    for (dtype, init) in extreme {
        let values = std::panic::catch_unwind(|| draw(dtype, init)).unwrap_or_else(|_| panic!("{init} panicked"));
        let values = values.unwrap_or_else(|e| panic!("{dtype} {init} rejected: {e}"));
        assert!(values.iter().all(|v| v.is_finite()), "{dtype} {init}: {values:?}");
    }
}

#[test]
fn distributions_that_cannot_be_drawn_are_refused() {
    let refused = [
        ("f64", "uniform(-1e308, 1e308)", "overflows"),
        ("f64", "uniform(1, 1)", "bad arguments"),
        ("f64", "uniform(2, 1)", "bad arguments"),
        ("f64", "normal(0, -1)", "bad arguments"),
        ("f64", "normal(0, 1.2e307)", "do not fit f64"),
        ("f32", "uniform(0, 1e39)", "do not fit f32"),
        ("f32", "normal(3.4e38, 1e37)", "do not fit f32"),
        ("bf16", "uniform(-3.4e38, 0)", "do not fit bf16"),
        ("f16", "uniform(0, 70000)", "do not fit f16"),
        ("f16", "normal(0, 5000)", "do not fit f16"),
    ];
    for (dtype, init, why) in refused {
        let e = draw(dtype, init).expect_err(init);
        assert!(e.contains(why), "{dtype} {init}: {e}");
    }
}

/// Warnings of a layer whose `x` is `X` and `dt` is `dt`, with `delta ~ uniform(-2, -1)`.
fn warnings(x: &str, dt: &str) -> Vec<(String, String)> {
    let src = layer_with_x(x)
        .replace("dt = softplus(delta)", &format!("dt = {dt}"))
        .replace("input delta: f32[B, D, L]", "input delta: f32[B, D, L] ~ uniform(-2, -1)");
    let c = check_source("w.ssm", src.as_bytes());
    let (_, w) = c.result.unwrap_or_else(|d| panic!("{}", d.render(&c.file, false)));
    w.0.iter().map(|d| (d.message.clone(), c.file.text[d.primary.span.start..d.primary.span.end].to_string())).collect()
}

#[test]
fn roles_that_are_never_finite_are_warned_about() {
    let never = [
        ("u / 0", "u / 0"),
        ("u * log(-1)", "log(-1)"),
        ("u + log(delta)", "log(delta)"),
        ("sqrt(delta + 0.5) * u", "sqrt(delta + 0.5)"),
        ("u / (2 - 2)", "u / (2 - 2)"),
        ("exp(710 - delta) + u", "exp(710 - delta)"),
        // NaN (log of a negative) stays NaN through exp, unlike -inf.
        ("exp(log(delta)) * u", "log(delta)"),
        ("max(log(-1), sqrt(delta)) + u", "log(-1)"),
    ];
    for (x, at) in never {
        let w = warnings(x, "softplus(delta)");
        assert_eq!(w, vec![("`x` is never finite".to_string(), at.to_string())], "x = {x}");
    }
    assert_eq!(warnings("u", "log(delta) * u")[0].0, "`dt` is never finite");
    // Possibly finite somewhere: no warning.
    for x in ["u * exp(-1 / 0)", "log(u)", "u / (delta + 1.5)", "min(u, log(-1))", "sqrt(delta + 1) + u"] {
        assert_eq!(warnings(x, "softplus(delta)"), Vec::new(), "x = {x}");
    }
}
