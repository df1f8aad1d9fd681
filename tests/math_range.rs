//! The vectorized elementary functions of the generated code (exp, sin, cos: polynomials,
//! no libm) over the whole f32 range, against the f64 interpreter: finite and accurate
//! where the f64 value is representable in f32, the same inf or 0 where it is not.

use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::Form;
use ssmc_compiler::{interp, tensors};
use ssmc_tests::{assert_exp_like_f32, exp_range_layer, f32_inputs, rel_err, stdlib_source, EXP_RANGES};
use std::collections::BTreeMap;

#[path = "native_run.rs"]
mod native_run;

/// Native and interpreted outputs `y` of `src` at the given dims, element by element.
fn outputs(src: &str, dims: &[(&str, usize)], form: Form) -> Vec<(f64, f64)> {
    let layer = ssmc_compiler::compile(src).unwrap_or_else(|d| panic!("{d:?}\n{src}")).0.layers.remove(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = native_run::build(&layer, form, dir.path());
    let dims: BTreeMap<String, usize> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
    let inputs = f32_inputs(tensors::generate_inputs(&layer, &sizes, 9));
    let want = interp::run(&layer, &sizes, &inputs);
    let got = native_run::run(&lib, &inputs, &want);
    let out = want.keys().next().expect("an output").clone();
    got[&out].data.iter().copied().zip(want[&out].data.iter().copied()).collect()
}

/// y = e^v u per channel (u in [1, 2]) over ranges that overflow and underflow f32: inf where
/// the f64 value rounds to inf in f32, within a few subnormal steps of it below the normal
/// range, within 2e-6 relative error elsewhere.
#[test]
fn exp_saturates_like_f32() {
    for dist in EXP_RANGES {
        let src = exp_range_layer(dist);
        assert_exp_like_f32(dist, outputs(&src, &[("B", 1), ("D", 2000), ("L", 1)], Form::Recurrent));
    }
}

/// y = 2 sin(w) u (u in [1, 2]) through a complex zoh scan with dt = 1, A = i w, C = w
/// (Bbar = (e^{iw} - 1)/(iw): its real part is sin(w)/w, the imaginary one 2 sin^2(w/2)/w),
/// and y = -2 (1 - cos w) u with C = i w: absolute error under 1e-5 for arguments up to
/// 1e37, where the reduction mod pi/2 needs 180 bits of 2/pi.
#[test]
fn sin_and_cos_hold_over_the_f32_range() {
    let ranges = [
        "uniform(-10, 10)",
        "uniform(-100000, 100000)",
        "uniform(1000000000, 10000000000)",
        "uniform(-10000000000000000000, 10000000000000000000)",
        "uniform(1000000000000000000000000000000, 10000000000000000000000000000000000000)",
    ];
    for dist in ranges {
        for c in ["complex(w, 0 * w)", "complex(0 * w, w)"] {
            let src = format!(
                "layer s {{
  dims batch B, channel H, time L, state N = 2
  input u: f32[B, H, L] ~ uniform(1, 2)
  input w: f32[H, N/2] ~ {dist}
  output y: f32[B, H, L]
  x = u
  dt = 1
  A = complex(0 * w, w)
  B = 1
  C = {c}
  discretize zoh
}}"
            );
            let mut worst = 0.0f64;
            for (g, w) in outputs(&src, &[("B", 1), ("H", 2000), ("L", 1)], Form::Recurrent) {
                assert!(g.is_finite(), "C = {c}, w ~ {dist}: {g} where f64 gives {w}");
                worst = worst.max((g - w).abs());
            }
            println!("C = {c}, w ~ {dist}: max absolute error {worst:.2e}");
            assert!(worst < 1e-5, "C = {c}, w ~ {dist}: max absolute error {worst:e}");
        }
    }
}

/// S4D with A_imag in [1e9, 1e10] (the products dt A_imag reach 1e9) or a huge log_A_real
/// (A's real part overflows f32 while f64 holds it: Abar is 0, Bbar is 0): native and
/// interpreted outputs both finite and close, recurrent and conv.
#[test]
fn s4d_with_extreme_a_matches_the_interpreter() {
    let s4d = stdlib_source("s4d");
    // (log_A_real, A_imag)
    let cases = [
        ("~ uniform(-1, 0)", "~ uniform(1000000000, 10000000000)"),
        ("~ uniform(-1, 0)", "~ uniform(-10000000000, 10000000000)"),
        ("~ uniform(100, 700)", "~ uniform(0, 100)"),
        ("~ uniform(100, 700)", "~ uniform(1000000000, 10000000000)"),
    ];
    for (real, imag) in cases {
        let src = s4d.replace("~ uniform(-1, 0)", real).replace("~ uniform(0, 100)", imag);
        assert_ne!(src, s4d);
        for form in [Form::Recurrent, Form::Conv] {
            let pairs = outputs(&src, &[("B", 2), ("H", 7), ("L", 100)], form);
            for (g, w) in &pairs {
                assert_eq!(g.is_finite(), w.is_finite(), "log_A_real {real}, A_imag {imag}, {form:?}: {g} vs {w}");
            }
            let (g, w): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            let e = rel_err(&g, &w);
            println!("log_A_real {real}, A_imag {imag}, {form:?}: rel err {e:.2e}");
            assert!(e < 1e-5, "log_A_real {real}, A_imag {imag}, {form:?}: relative error {e:e}");
        }
    }
}
