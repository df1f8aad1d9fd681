//! Every legal form agrees with the reference interpreter: on the stdlib layers, and on
//! random layer configurations written as `.ssm` source text (A structure,
//! discretization, selectivity, groups, direction, states, skip, gate, tensor layouts),
//! at random sizes with L prime or 1. And the mixer matrix M reproduces y = M x.
//!
//! Agreement is to 1e-9 relative error, ||got - want|| / ||want||, per output.

use proptest::prelude::*;
use ssmc_compiler::bind::{sizes_from_dims, Sizes};
use ssmc_compiler::forms::facts::LayerFacts;
use ssmc_compiler::forms::{self, egraph, Form, Plan, CHUNK_SIZES};
use ssmc_compiler::ir::{AxisRole, Layer};
use ssmc_compiler::roles::{self, silu, ScanRoles};
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors::{TensorData, TensorMap};
use ssmc_compiler::{interp, schedule, tensors};
use ssmc_tests::{rel_err, stdlib_layer, stdlib_source, STDLIB};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;

const TOL: f64 = 1e-9;

/// The largest relative error seen by each test, printed with `--nocapture`.
static MAX_ERR: Mutex<BTreeMap<&'static str, f64>> = Mutex::new(BTreeMap::new());

fn note_err(test: &'static str, e: f64) {
    let mut m = MAX_ERR.lock().unwrap_or_else(|p| p.into_inner());
    let slot = m.entry(test).or_insert(0.0);
    if e > *slot {
        *slot = e;
    }
}

fn report(test: &'static str) {
    let m = MAX_ERR.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!("{test}: max relative error {:.3e}", m.get(test).copied().unwrap_or(0.0));
}

/// Asserts that `got` has exactly the outputs of `want`, each within [`TOL`]; returns the
/// largest error.
fn assert_agree(got: &TensorMap, want: &TensorMap, what: &dyn Fn() -> String) -> f64 {
    let (gk, wk): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(gk, wk, "outputs differ: {}", what());
    let mut worst = 0.0f64;
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.shape, w.shape, "output {k}: shapes differ: {}", what());
        let e = rel_err(&g.data, &w.data);
        assert!(e < TOL, "output {k}: relative error {e:.3e} >= {TOL:e}: {}", what());
        worst = worst.max(e);
    }
    worst
}

#[test]
fn stdlib_forms_agree_with_interpreter() {
    for name in STDLIB {
        let layer = &stdlib_layer(name);
        for l in [1usize, 7, 37, 100] {
            let mut dims = BTreeMap::new();
            dims.insert("L".to_string(), l);
            let sizes = sizes_from_dims(layer, &dims).expect("sizes");
            let inputs = tensors::generate_inputs(layer, &sizes, 5);
            let want = interp::run(layer, &sizes, &inputs);
            let choice = egraph::choose(layer, &sizes, &Target::cpu("native"), &|_| 0);
            let mut ran = 0;
            for c in &choice.candidates {
                if c.legality.is_err() {
                    continue;
                }
                let plan = Plan { forms: vec![c.form; choice.plan.forms.len()] };
                let got = forms::run(layer, &sizes, &inputs, &plan);
                let e = assert_agree(&got, &want, &|| format!("{name} L={l} form {}", c.form));
                note_err("stdlib", e);
                ran += 1;
            }
            // recurrent, scan, four chunk sizes, quadratic; and conv for s4d.
            let expected = if name == "s4d" { 8 } else { 7 };
            assert_eq!(ran, expected, "{name}: legal forms");
        }
    }
    report("stdlib");
}

#[path = "random_layers.rs"]
mod random_layers;
use random_layers::*;

/// The chunk sizes tried besides the e-graph's: dividing L and not, 1, L and L + 1.
fn odd_chunks(l: usize) -> Vec<usize> {
    let mut q = vec![1, 3, 4, 16, l, l + 1];
    q.sort_unstable();
    q.dedup();
    q
}

fn check_forms(cfg: &LayerCfg, d: Dims, seed: u64, target: Target) {
    let Case { src, layer, sizes, inputs } = build(cfg, d, seed);
    let ctx = |form: &str| format!("form {form}, {d:?}, seed {seed}, {cfg:?}\n{src}");
    let want = interp::run(&layer, &sizes, &inputs);
    for (k, t) in &want {
        assert!(
            t.data.iter().all(|v| v.is_finite()),
            "interpreter output {k} is not finite (generator draws an unstable layer):\n{src}"
        );
    }
    let mut names: Vec<&String> = want.keys().collect();
    names.sort();
    let expected_names = if cfg.final_ { vec!["hT", "out"] } else { vec!["out"] };
    assert_eq!(names, expected_names, "{}", ctx("-"));

    let scans = if cfg.dir == Dir::Bidirectional { 2 } else { 1 };
    let choice = egraph::choose(&layer, &sizes, &target, &|_| 0);
    assert_eq!(choice.plan.forms.len(), scans, "{}", ctx("chosen"));
    schedules_agree(&layer, &target, &choice, &|| ctx("schedule"));
    let selective = cfg.selective();
    let mut plans: Vec<Plan> = Vec::new();
    for c in &choice.candidates {
        match (&c.legality, c.form) {
            (Ok(_), Form::Conv) => assert!(!selective, "conv legal for a selective layer: {}", ctx("conv")),
            (Err(why), Form::Conv) => {
                assert!(selective, "conv illegal for an LTI layer ({why}): {}", ctx("conv"));
                assert!(why.contains("selective"), "reason: {why}");
            }
            (Ok(e), _) => assert!(e.seconds.is_finite() && e.seconds > 0.0, "estimate {e:?}"),
            // Every supported A is scalar or diagonal: every other form is legal.
            (Err(why), f) => panic!("{f} illegal ({why}): {}", ctx("-")),
        }
        if c.legality.is_ok() {
            plans.push(Plan { forms: vec![c.form; scans] });
        }
    }
    assert_eq!(choice.force(Form::Conv).is_ok(), !selective, "{}", ctx("force conv"));
    for q in odd_chunks(d.l) {
        let plan = choice.force(Form::Chunked { q }).expect("chunked is legal");
        assert_eq!(plan.forms, vec![Form::Chunked { q }; scans]);
        plans.push(plan);
    }
    let any_q = choice.force(Form::Chunked { q: 0 }).expect("chunked is legal");
    assert!(any_q.forms.iter().all(|f| matches!(f, Form::Chunked { q } if CHUNK_SIZES.contains(q))));
    plans.push(choice.plan.clone());
    if scans == 2 {
        // Each scan its own form; conv only where that scan is time-invariant.
        let per_scan: Vec<Vec<Form>> = cfg
            .scans()
            .iter()
            .map(|s| {
                let mut f = vec![Form::Recurrent, Form::Scan, Form::Chunked { q: 5 }, Form::Quadratic];
                if !cfg.scan_selective(s) {
                    f.push(Form::Conv);
                }
                f
            })
            .collect();
        let pick = |v: &Vec<Form>, k: usize| v[(seed as usize / (k + 1)) % v.len()];
        plans.push(Plan { forms: vec![pick(&per_scan[0], 0), pick(&per_scan[1], 7)] });
    }
    for plan in &plans {
        let got = forms::run(&layer, &sizes, &inputs, plan);
        let e = assert_agree(&got, &want, &|| ctx(&plan.to_string()));
        note_err("random_layers", e);
    }
}

/// The e-graph's schedule facts say what the schedules build: for every candidate and a
/// few more forms (a default chunk, a chunk too long, quadratic), [`schedule::available`]
/// (decided from the layer's facts) is Ok exactly when [`schedule::kernel`] builds a
/// kernel; and the extracted plan runs one form that can be built, the cheapest such,
/// whenever any candidate can.
fn schedules_agree(layer: &Layer, target: &Target, choice: &egraph::Choice, ctx: &dyn Fn() -> String) {
    let facts = LayerFacts::of(layer);
    let extra = [Form::Chunked { q: 0 }, Form::Chunked { q: 2048 }, Form::Quadratic];
    for form in choice.candidates.iter().map(|c| c.form).chain(extra) {
        let available = schedule::available(&facts, &layer.name, form, target);
        let built = schedule::kernel(layer, target, form);
        assert_eq!(
            available.is_ok(),
            built.is_ok(),
            "{form} on {target:?}: {available:?} / {:?}\n{}",
            built.err(),
            ctx()
        );
        if let (Err(a), Err(b)) = (&available, &built) {
            assert_eq!(a, b, "the refusal is the facts' reason\n{}", ctx());
        }
    }
    for c in &choice.candidates {
        assert_eq!(c.schedule.is_ok(), schedule::available(&facts, &layer.name, c.form, target).is_ok(), "{}", ctx());
    }
    let buildable: Vec<&egraph::Candidate> = choice.candidates.iter().filter(|c| c.buildable()).collect();
    if let Some(cheapest) =
        buildable.iter().map(|c| c.legality.as_ref().map_or(f64::INFINITY, |e| e.seconds)).reduce(f64::min)
    {
        let form = choice.plan.uniform().unwrap_or_else(|| panic!("plan {} mixes forms\n{}", choice.plan, ctx()));
        let chosen = choice.candidates.iter().find(|c| c.form == form).expect("the chosen form is a candidate");
        assert!(chosen.buildable(), "chose {form}, which cannot be built\n{}", ctx());
        let own = chosen.legality.as_ref().map(|e| e.seconds).expect("legal");
        assert_eq!(own, cheapest, "chose {form}, not the cheapest buildable form\n{}", ctx());
    }
}

/// [`schedules_agree`] on every stdlib layer and every layer of `tests/lower/`, for the
/// CPU and the GPU, at a short and a long sequence.
#[test]
fn schedule_facts_agree_with_the_schedules() {
    for (name, layer) in ssmc_tests::schedule_layers() {
        for target in [Target::cpu("x86-64-v3"), Target::cuda()] {
            for l in [1, 4096] {
                let time = layer.dims.iter().map(|(_, d)| d).find(|d| d.role == AxisRole::Time).expect("a time dim");
                let dims = BTreeMap::from([(time.name.clone(), l)]);
                let sizes = sizes_from_dims(&layer, &dims).unwrap_or_else(|e| panic!("{name}: {e}"));
                let choice = egraph::choose(&layer, &sizes, &target, &|_| 0);
                schedules_agree(&layer, &target, &choice, &|| format!("{name} ({}) at L={l}", layer.name));
            }
        }
    }
}

fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[test]
fn random_layers_agree_in_every_form() {
    let strategy = (config(), dims(), any::<u64>(), any::<bool>());
    let result = runner(96).run(&strategy, |(cfg, d, seed, ptx)| {
        let target = if ptx { Target::cuda() } else { Target::cpu("native") };
        check_forms(&cfg, d, seed, target);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    report("random_layers");
}

#[test]
fn random_layers_mixer_matrix() {
    let (checked, refused) = (Cell::new(0), Cell::new(0));
    let result = runner(64).run(&(config(), dims(), any::<u64>()), |(cfg, d, seed)| {
        let c = if check_mixer(&cfg, d, seed) { &checked } else { &refused };
        c.set(c.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Neither branch may be vacuous (each has a chance of about one half per case).
    assert!(checked.get() >= 8 && refused.get() >= 1, "checked {checked:?}, refused {refused:?}");
    report("mixer");
}

// ---------------------------------------------------------------------------------------
// The mixer matrix

/// y computed from M: y[b, t, h, p] = silu(z) sum_s M[b, h, t, s] x[b, s, h, p], in the
/// layout of the layer's output.
fn y_from_matrix(layer: &Layer, sizes: &Sizes, inputs: &TensorMap, m: &TensorData) -> TensorData {
    let r = ScanRoles::new(layer, sizes, inputs, &layer.forward);
    let (heads, l) = (m.shape[1], m.shape[2]);
    let y = &layer.tensors[layer.output];
    roles::store(layer, sizes, &y.shape, |e| {
        let (b, t, h) = (e[0], e[1], e[2]);
        let row = &m.data[((b * heads + h) * l + t) * l..][..l];
        let mut env = *e;
        let mut acc = 0.0;
        for (s, ms) in row.iter().enumerate() {
            env[1] = s;
            acc += ms * r.x.get(&env).re;
        }
        match &r.gate {
            Some(z) => acc * silu(z.get(e).re),
            None => acc,
        }
    })
}

/// Checks `mixer_matrix` on a generated layer; true if it gave M (and M was checked).
fn check_mixer(cfg: &LayerCfg, d: Dims, seed: u64) -> bool {
    let Case { src, layer, sizes, inputs } = build(cfg, d, seed);
    let got = forms::mixer_matrix(&layer, &sizes, &inputs);
    if let Some(word) = cfg.mixer_refusal() {
        let why = got.expect_err(&format!("no one M maps x to y ({word}), yet mixer_matrix gave one:\n{src}"));
        assert!(why.contains(word), "refused for another reason: {why}\n{src}");
        return false;
    }
    let m = got.unwrap_or_else(|e| panic!("mixer_matrix refused ({e}):\n{src}"));
    assert_eq!(m.shape, vec![d.b, d.h, d.l, d.l], "{src}");
    let want = interp::run(&layer, &sizes, &inputs);
    let y = y_from_matrix(&layer, &sizes, &inputs, &m);
    let out = &want["out"];
    assert_eq!(y.shape, out.shape);
    let e = rel_err(&y.data, &out.data);
    assert!(e < TOL, "y = M x: relative error {e:.3e}, {d:?}, seed {seed}\n{src}");
    note_err("mixer", e);
    // Causal scans give a lower triangular M, reverse ones an upper triangular M.
    let l = d.l;
    for (i, v) in m.data.iter().enumerate() {
        let (t, s) = ((i / l) % l, i % l);
        let zero = match cfg.dir {
            Dir::Causal => s > t,
            Dir::Reverse => s < t,
            Dir::Bidirectional => false,
        };
        assert!(!zero || *v == 0.0, "M[.., {t}, {s}] = {v} outside the triangle\n{src}");
    }
    true
}

fn stdlib_case(name: &str, l: usize) -> (Layer, Sizes, TensorMap) {
    let layer = compile_or_panic(&stdlib_source(name));
    let mut dims = BTreeMap::new();
    dims.insert("L".to_string(), l);
    match name {
        "mamba1" | "vim" => dims.insert("D".to_string(), 6),
        "mamba2" => dims.insert("H".to_string(), 4),
        _ => dims.insert("H".to_string(), 5),
    };
    let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
    let inputs = tensors::generate_inputs(&layer, &sizes, 11);
    (layer, sizes, inputs)
}

#[test]
fn mixer_matrix_reproduces_stdlib_outputs() {
    // s4d has no gate; mamba1 and mamba2 gate, and mamba2 has a headdim.
    for (name, gated) in [("s4d", false), ("mamba1", true), ("mamba2", true)] {
        let (layer, sizes, inputs) = stdlib_case(name, 23);
        assert_eq!(layer.forward.gate.is_some(), gated, "{name}");
        let m = forms::mixer_matrix(&layer, &sizes, &inputs).expect("mixer");
        let want = interp::run(&layer, &sizes, &inputs);
        let y = y_from_matrix(&layer, &sizes, &inputs, &m);
        let e = rel_err(&y.data, &want["out"].data);
        assert!(e < TOL, "{name}: y = M x off by {e:.3e}");
        note_err("mixer", e);
        // The skip D sits on the diagonal, and nowhere else: M - M(D = 0) = diag(D).
        let mut no_skip = inputs.clone();
        let dk = no_skip.get_mut("D").expect("skip input D");
        let zeros = vec![0.0; dk.data.len()];
        let d = std::mem::replace(&mut dk.data, zeros);
        let m0 = forms::mixer_matrix(&layer, &sizes, &no_skip).expect("mixer");
        let (b, h, l) = (m.shape[0], m.shape[1], m.shape[2]);
        for i in 0..b * h * l * l {
            let (c, t, s) = ((i / (l * l)) % h, (i / l) % l, i % l);
            let want = if t == s { d[c] } else { 0.0 };
            let got = m.data[i] - m0.data[i];
            assert!(
                (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "{name}: M - M(D = 0) at (.., {c}, {t}, {s}) is {got}, not {want}"
            );
        }
    }
}

#[test]
fn mixer_matrix_refuses_scans_of_different_x() {
    let (layer, sizes, inputs) = stdlib_case("vim", 9);
    let why = forms::mixer_matrix(&layer, &sizes, &inputs).expect_err("vim's scans read u and u_b");
    assert!(why.contains("different x"), "{why}");
}

#[test]
fn mixer_matrix_accepts_roles_written_twice_alike() {
    // The reverse block repeats x and the gate: the same values, lowered twice.
    let src = "layer twice {
  dims batch B, channel D, time L, state N = 4
  input u: f32[B, D, L]
  input A_log: f32[D, N] ~ uniform(-1, 1)
  input log_dt: f32[D] ~ uniform(-3, -1)
  input Bt: f32[B, N, L]
  input Ct: f32[B, N, L]
  input Bb: f32[B, N, L]
  input z: f32[B, D, L]
  output out: f32[B, D, L]
  x = 2 * u
  dt = exp(log_dt)
  A = diagonal(-exp(A_log))
  B = Bt
  C = Ct
  gate silu(z - 0.5)
  discretize zoh
  direction bidirectional
  reverse {
    x = 2 * u
    B = Bb
    gate silu(z - 0.5)
  }
}
";
    let layer = compile_or_panic(src);
    let mut dims = BTreeMap::new();
    dims.insert("L".to_string(), 11);
    dims.insert("D".to_string(), 3);
    let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
    let inputs = tensors::generate_inputs(&layer, &sizes, 3);
    let m = forms::mixer_matrix(&layer, &sizes, &inputs).expect("one M exists");
    let want = interp::run(&layer, &sizes, &inputs);
    let y = y_from_matrix(&layer, &sizes, &inputs, &m);
    let e = rel_err(&y.data, &want["out"].data);
    assert!(e < TOL, "y = M x off by {e:.3e}");
    // A different gate in the block has no one M.
    let other = src.replacen("    gate silu(z - 0.5)\n  }", "    gate silu(z + 0.5)\n  }", 1);
    assert_ne!(other, src);
    let layer = compile_or_panic(&other);
    let why = forms::mixer_matrix(&layer, &sizes, &inputs).expect_err("gates differ");
    assert!(why.contains("gated differently"), "{why}");
}

/// A group axis that only the reverse block's C uses: the interpreter must run it (today it
/// indexes C_b by head instead of group and panics out of bounds, because sema's scan axes
/// take the group from the forward B and C only).
#[test]
fn group_only_in_reverse_block() {
    let src = "layer g {
  dims batch B, head H, time L, group G, state N = 2
  input u: f32[B, L, H]
  input A_log: f32[H] ~ uniform(-1, 1)
  input log_dt: f32[H] ~ uniform(-3, -1)
  input Bt: f32[N]
  input Ct: f32[N]
  input Cb: f32[G, N]
  output out: f32[B, L, H]
  x = u
  dt = exp(log_dt)
  A = scalar(-exp(A_log))
  B = Bt
  C = Ct
  discretize zoh
  direction bidirectional
  reverse {
    C = Cb
  }
}
";
    let layer = compile_or_panic(src);
    let mut dims = BTreeMap::new();
    for (k, v) in [("H", 4), ("G", 2), ("L", 5)] {
        dims.insert(k.to_string(), v);
    }
    let sizes = sizes_from_dims(&layer, &dims).expect("sizes");
    let inputs = tensors::generate_inputs(&layer, &sizes, 1);
    let want = interp::run(&layer, &sizes, &inputs);
    let got = forms::run(&layer, &sizes, &inputs, &Plan { forms: vec![Form::Scan; 2] });
    assert_agree(&got, &want, &|| "scan".into());
    // Heads 0, 1 read group 0 and heads 2, 3 group 1: with Cb's groups swapped, y changes
    // for every head.
    let mut swapped = inputs.clone();
    let cb = swapped.get_mut("Cb").expect("Cb");
    cb.data.rotate_left(2);
    assert_ne!(interp::run(&layer, &sizes, &swapped)["out"], want["out"]);
}
