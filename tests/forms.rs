//! Every legal form agrees with the reference interpreter: on the stdlib layers, and on
//! random layer configurations written as `.ssm` source text (A structure,
//! discretization, selectivity, groups, direction, states, skip, gate, tensor layouts),
//! at random sizes with L prime or 1. And the mixer matrix M reproduces y = M x.
//!
//! Agreement is to 1e-9 relative error, ||got - want|| / ||want||, per output.

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssmc_compiler::bind::{sizes_from_dims, Sizes};
use ssmc_compiler::forms::{self, cost::Target, egraph, Form, Plan, CHUNK_SIZES};
use ssmc_compiler::ir::Layer;
use ssmc_compiler::roles::{self, silu, ScanRoles};
use ssmc_compiler::tensors::{TensorData, TensorMap};
use ssmc_compiler::{interp, tensors, SourceFile};
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
    eprintln!(
        "{test}: max relative error {:.3e}",
        m.get(test).copied().unwrap_or(0.0)
    );
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-300)
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
        assert!(
            e < TOL,
            "output {k}: relative error {e:.3e} >= {TOL:e}: {}",
            what()
        );
        worst = worst.max(e);
    }
    worst
}

fn compile_or_panic(src: &str) -> Layer {
    match ssmc_compiler::compile(src) {
        Ok((mut module, _)) => {
            assert_eq!(module.layers.len(), 1, "one layer expected:\n{src}");
            module.layers.remove(0)
        }
        Err(d) => panic!(
            "a generated layer does not compile (generator bug):\n{src}\n{}",
            d.render(&SourceFile::new("generated.ssm", src), false)
        ),
    }
}

#[test]
fn stdlib_forms_agree_with_interpreter() {
    for name in ["mamba1", "mamba2", "s4d", "vim"] {
        let src = std::fs::read_to_string(format!(
            "{}/../stdlib/{name}.ssm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("read");
        let (module, _) = ssmc_compiler::compile(&src).expect("compiles");
        let layer = &module.layers[0];
        for l in [1usize, 7, 37, 100] {
            let mut dims = BTreeMap::new();
            dims.insert("L".to_string(), l);
            let sizes = sizes_from_dims(layer, &dims).expect("sizes");
            let inputs = tensors::generate_inputs(layer, &sizes, 5);
            let want = interp::run(layer, &sizes, &inputs);
            let choice = egraph::choose(layer, &sizes, Target::Cpu, &|_| 0);
            let mut ran = 0;
            for c in &choice.candidates {
                if c.legality.is_err() {
                    continue;
                }
                let plan = Plan {
                    forms: vec![c.form; choice.plan.forms.len()],
                };
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

// ---------------------------------------------------------------------------------------
// Random layer configurations

#[derive(Clone, Copy, Debug, PartialEq)]
enum AKind {
    Scalar,
    Diagonal,
    Complex,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Disc {
    Zoh,
    ZohEuler,
    Bilinear,
    Discrete,
}

impl Disc {
    fn name(self) -> &'static str {
        match self {
            Disc::Zoh => "zoh",
            Disc::ZohEuler => "zoh_euler",
            Disc::Bilinear => "bilinear",
            Disc::Discrete => "discrete",
        }
    }
}

/// How a role varies besides its head and state axes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Var {
    /// Per head (or shared): time-invariant.
    Static,
    /// Along batch too, still time-invariant.
    Batch,
    /// Along batch and time: selective.
    Selective,
}

/// The head-like axis of B or C.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BcHead {
    None,
    Head,
    Group,
}

/// How a B or C of a complex layer is written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cplx {
    Real,
    /// `complex(re, im)` of two tensors.
    Pair,
    /// `complex(t)` of a tensor with a trailing re/im axis.
    View,
}

#[derive(Clone, Copy, Debug)]
struct Bc {
    /// `B = 1` (B only).
    one: bool,
    var: Var,
    head: BcHead,
    cplx: Cplx,
}

/// The roles of one scan.
#[derive(Clone, Copy, Debug)]
struct ScanCfg {
    dt: Var,
    /// A varies along heads (else shared by all heads).
    a_per_head: bool,
    b: Bc,
    c: Bc,
    /// Skip D: None, Some(false) per head, Some(true) per head element.
    skip: Option<bool>,
    gate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dir {
    Causal,
    Reverse,
    Bidirectional,
}

/// Which roles a `reverse { ... }` block gives anew: x, dt, A, B, C, skip, gate.
type Overrides = [bool; 7];

#[derive(Clone, Debug)]
struct LayerCfg {
    a: AKind,
    disc: Disc,
    headdim: bool,
    /// Without headdim: `head H` instead of `channel H`.
    head_keyword: bool,
    /// The state size written in the file (`state N = 4`) instead of given at run time.
    n_const: bool,
    dir: Dir,
    /// A `reverse` block (bidirectional only).
    block: Option<Overrides>,
    fwd: ScanCfg,
    bwd: ScanCfg,
    initial: bool,
    final_: bool,
    /// Seed of the tensor layouts, dtypes and the order of the dims.
    layout_seed: u64,
}

impl LayerCfg {
    /// Makes every combination legal: what the language allows, not what the generator drew.
    fn normalize(mut self) -> Self {
        let complex = self.a == AKind::Complex;
        if self.dir != Dir::Bidirectional {
            self.block = None;
        }
        if self.dir == Dir::Bidirectional || complex {
            self.initial = false;
            self.final_ = false;
        }
        for s in [&mut self.fwd, &mut self.bwd] {
            if !complex {
                s.b.cplx = Cplx::Real;
                s.c.cplx = Cplx::Real;
            }
            // C always reads the state axis, so that a scalar A has one.
            s.c.one = false;
            if !self.headdim {
                s.skip = s.skip.map(|_| false);
            }
        }
        if let Some(o) = &mut self.block {
            if self.disc == Disc::Discrete {
                o[1] = false;
            }
        }
        self
    }

    /// The roles of the backward scan as it runs: the reverse block's, else the forward's.
    fn backward(&self) -> Option<ScanCfg> {
        if self.dir != Dir::Bidirectional {
            return None;
        }
        let o = self.block.unwrap_or([false; 7]);
        let (f, b) = (self.fwd, self.bwd);
        Some(ScanCfg {
            dt: if o[1] { b.dt } else { f.dt },
            a_per_head: if o[2] { b.a_per_head } else { f.a_per_head },
            b: if o[3] { b.b } else { f.b },
            c: if o[4] { b.c } else { f.c },
            skip: if o[5] { b.skip.or(f.skip) } else { f.skip },
            gate: if o[6] { b.gate || f.gate } else { f.gate },
        })
    }

    fn scans(&self) -> Vec<ScanCfg> {
        std::iter::once(self.fwd).chain(self.backward()).collect()
    }

    fn scan_selective(&self, s: &ScanCfg) -> bool {
        (self.disc != Disc::Discrete && s.dt == Var::Selective)
            || (!s.b.one && s.b.var == Var::Selective)
            || s.c.var == Var::Selective
    }

    fn selective(&self) -> bool {
        self.scans().iter().any(|s| self.scan_selective(s))
    }

    fn uses_group(&self) -> bool {
        self.scans()
            .iter()
            .any(|s| (!s.b.one && s.b.head == BcHead::Group) || s.c.head == BcHead::Group)
    }

    /// Why no one matrix M with y = silu(z) (M x) exists (a word of `mixer_matrix`'s
    /// refusal), or None when it must give one.
    fn mixer_refusal(&self) -> Option<&'static str> {
        let o = self.block.unwrap_or([false; 7]);
        let bidir = self.dir == Dir::Bidirectional;
        if self.initial {
            Some("initial state")
        } else if bidir && o[0] {
            Some("different x")
        } else if bidir && o[6] && self.bwd.gate {
            Some("gated differently")
        } else if self.scans().iter().any(|s| s.skip == Some(true)) {
            Some("headdim")
        } else {
            None
        }
    }
}

/// Writes the `.ssm` text of a configuration.
struct Writer {
    rng: ChaCha8Rng,
    dims: Vec<String>,
    decls: Vec<String>,
    roles: Vec<String>,
    reverse: Vec<String>,
}

impl Writer {
    /// Declares a tensor over `axes` in a random order (a trailing re/im axis stays last).
    fn tensor(&mut self, io: &str, name: &str, axes: &[&str], view: bool, init: &str) {
        let mut axes: Vec<&str> = axes.to_vec();
        axes.shuffle(&mut self.rng);
        if view {
            axes.push("2");
        }
        let dtype = ["f32", "f64", "bf16", "f16"][self.rng.gen_range(0..4)];
        let init = if init.is_empty() {
            String::new()
        } else {
            format!(" ~ {init}")
        };
        self.decls
            .push(format!("  {io} {name}: {dtype}[{}]{init}", axes.join(", ")));
    }

    fn input(&mut self, name: &str, axes: &[&str], init: &str) {
        self.tensor("input", name, axes, false, init);
    }
}

fn source(cfg: &LayerCfg, n_const: usize) -> String {
    let mut w = Writer {
        rng: ChaCha8Rng::seed_from_u64(cfg.layout_seed),
        dims: Vec::new(),
        decls: Vec::new(),
        roles: Vec::new(),
        reverse: Vec::new(),
    };
    let complex = cfg.a == AKind::Complex;
    let state = if complex { "N/2" } else { "N" };
    w.dims.push("batch B".into());
    w.dims.push("time L".into());
    if cfg.headdim {
        w.dims.push("head H".into());
        w.dims.push("headdim P".into());
    } else if cfg.head_keyword {
        w.dims.push("head H".into());
    } else {
        w.dims.push("channel H".into());
    }
    if cfg.uses_group() {
        w.dims.push("group G".into());
    }
    w.dims.push(if cfg.n_const {
        format!("state N = {n_const}")
    } else {
        "state N".into()
    });
    let mut dims = std::mem::take(&mut w.dims);
    dims.shuffle(&mut w.rng);
    let x_axes: Vec<&str> = if cfg.headdim {
        vec!["B", "L", "H", "P"]
    } else {
        vec!["B", "L", "H"]
    };

    // The forward scan's roles, then the reverse block's.
    let o = cfg.block.unwrap_or([false; 7]);
    for (suffix, s, given) in [("", cfg.fwd, [true; 7]), ("_b", cfg.bwd, o)] {
        if suffix == "_b" && cfg.block.is_none() {
            break;
        }
        let mut roles = Vec::new();
        if given[0] {
            w.input(&format!("u{suffix}"), &x_axes, "");
            roles.push(format!("x = u{suffix}"));
        }
        if given[1] && cfg.disc != Disc::Discrete {
            let (delta, bias) = (format!("delta{suffix}"), format!("dt_bias{suffix}"));
            match s.dt {
                Var::Static => {
                    w.input(&format!("log_dt{suffix}"), &["H"], "uniform(-3, -1)");
                    roles.push(format!("dt = exp(log_dt{suffix})"));
                }
                Var::Batch | Var::Selective => {
                    let axes: &[&str] = if s.dt == Var::Batch {
                        &["B", "H"]
                    } else {
                        &["B", "L", "H"]
                    };
                    w.input(&delta, axes, "");
                    w.input(&bias, &["H"], "uniform(-3, -1)");
                    roles.push(format!("dt = softplus({delta} + {bias})"));
                }
            }
        }
        if given[2] {
            let mut axes = Vec::new();
            if s.a_per_head || cfg.a == AKind::Scalar {
                axes.push("H");
            }
            if cfg.a != AKind::Scalar {
                axes.push(state);
            }
            let log = format!("A_log{suffix}");
            w.input(&log, &axes, "uniform(-1, 1)");
            let discrete = cfg.disc == Disc::Discrete;
            let a = match (cfg.a, discrete) {
                (AKind::Scalar, false) => format!("scalar(-exp({log}))"),
                (AKind::Scalar, true) => format!("scalar(exp(-exp({log})))"),
                (AKind::Diagonal, false) => format!("diagonal(-exp({log}))"),
                (AKind::Diagonal, true) => format!("diagonal(exp(-exp({log})))"),
                (AKind::Complex, _) => {
                    let im = format!("A_im{suffix}");
                    // |A| < 0.87 when given directly.
                    if discrete {
                        w.input(&im, &axes, "uniform(-1, 1)");
                        format!("complex(0.7 * exp(-exp({log})), 0.5 * {im})")
                    } else {
                        w.input(&im, &axes, "uniform(-3, 3)");
                        format!("complex(-exp({log}), {im})")
                    }
                }
            };
            roles.push(format!("A = {a}"));
        }
        for (role, bc, on) in [("B", s.b, given[3]), ("C", s.c, given[4])] {
            if !on {
                continue;
            }
            if bc.one {
                roles.push(format!("{role} = 1"));
                continue;
            }
            let mut axes = match bc.var {
                Var::Static => vec![],
                Var::Batch => vec!["B"],
                Var::Selective => vec!["B", "L"],
            };
            match bc.head {
                BcHead::None => {}
                BcHead::Head => axes.push("H"),
                BcHead::Group => axes.push("G"),
            }
            axes.push(state);
            let t = format!("{role}t{suffix}");
            match bc.cplx {
                Cplx::Real => {
                    w.input(&t, &axes, "");
                    roles.push(format!("{role} = {t}"));
                }
                Cplx::Pair => {
                    w.input(&format!("{t}_re"), &axes, "");
                    w.input(&format!("{t}_im"), &axes, "uniform(-1, 1)");
                    roles.push(format!("{role} = complex({t}_re, {t}_im)"));
                }
                Cplx::View => {
                    w.tensor("input", &t, &axes, true, "normal(0, 0.7)");
                    roles.push(format!("{role} = complex({t})"));
                }
            }
        }
        if given[5] {
            if let Some(per_element) = s.skip {
                let axes: &[&str] = if per_element { &["H", "P"] } else { &["H"] };
                w.input(&format!("Dk{suffix}"), axes, "");
                roles.push(format!("skip Dk{suffix}"));
            }
        }
        if given[6] && s.gate {
            w.input(&format!("z{suffix}"), &x_axes, "");
            roles.push(format!("gate silu(z{suffix})"));
        }
        if suffix.is_empty() {
            w.roles = roles;
        } else {
            w.reverse = roles;
        }
    }
    let mut state_axes = vec!["B", "H", "N"];
    if cfg.headdim {
        state_axes.push("P");
    }
    if cfg.initial {
        w.input("h0", &state_axes, "");
        w.roles.push("initial_state h0".into());
    }
    w.tensor("output", "out", &x_axes, false, "");
    if cfg.final_ {
        w.tensor("output", "hT", &state_axes, false, "");
        w.roles.push("final_state hT".into());
    }
    w.roles.push(format!("discretize {}", cfg.disc.name()));
    let direction = match cfg.dir {
        Dir::Causal => ["", "direction causal"][w.rng.gen_range(0..2)],
        Dir::Reverse => "direction reverse",
        Dir::Bidirectional => "direction bidirectional",
    };
    if !direction.is_empty() {
        w.roles.push(direction.into());
    }
    let mut text = format!("# generated\nlayer gen {{\n  dims {}\n", dims.join(", "));
    for d in &w.decls {
        text.push_str(d);
        text.push('\n');
    }
    for r in &w.roles {
        text.push_str(&format!("  {r}\n"));
    }
    if cfg.block.is_some() {
        text.push_str("  reverse {\n");
        for r in &w.reverse {
            text.push_str(&format!("    {r}\n"));
        }
        text.push_str("  }\n");
    }
    text.push_str("}\n");
    text
}

fn var() -> impl Strategy<Value = Var> {
    prop_oneof![Just(Var::Static), Just(Var::Batch), Just(Var::Selective)]
}

fn bc() -> impl Strategy<Value = Bc> {
    (
        prop::bool::weighted(0.15),
        var(),
        prop_oneof![Just(BcHead::None), Just(BcHead::Head), Just(BcHead::Group)],
        prop_oneof![Just(Cplx::Real), Just(Cplx::Pair), Just(Cplx::View)],
    )
        .prop_map(|(one, var, head, cplx)| Bc {
            one,
            var,
            head,
            cplx,
        })
}

fn scan_cfg() -> impl Strategy<Value = ScanCfg> {
    (
        var(),
        any::<bool>(),
        bc(),
        bc(),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|(dt, a_per_head, b, c, skip, gate)| ScanCfg {
            dt,
            a_per_head,
            b,
            c,
            skip,
            gate,
        })
}

fn config() -> impl Strategy<Value = LayerCfg> {
    let kinds = (
        prop_oneof![
            Just(AKind::Scalar),
            Just(AKind::Diagonal),
            Just(AKind::Complex)
        ],
        prop_oneof![
            Just(Disc::Zoh),
            Just(Disc::ZohEuler),
            Just(Disc::Bilinear),
            Just(Disc::Discrete)
        ],
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop_oneof![
            Just(Dir::Causal),
            Just(Dir::Reverse),
            Just(Dir::Bidirectional)
        ],
        prop::option::of(any::<[bool; 7]>()),
    );
    let rest = (
        scan_cfg(),
        scan_cfg(),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    (kinds, rest).prop_map(
        |(
            (a, disc, headdim, head_keyword, n_const, dir, block),
            (fwd, bwd, initial, final_, layout_seed),
        )| {
            LayerCfg {
                a,
                disc,
                headdim,
                head_keyword,
                n_const,
                dir,
                block,
                fwd,
                bwd,
                initial,
                final_,
                layout_seed,
            }
            .normalize()
        },
    )
}

/// Sizes of a case: B, L, H, P, G, N.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    l: usize,
    h: usize,
    p: usize,
    g: usize,
    n: usize,
}

fn dims() -> impl Strategy<Value = Dims> {
    (
        1usize..=2,
        prop::sample::select(vec![1usize, 2, 3, 5, 7, 13, 31, 64, 97]),
        1usize..=3,
        1usize..=3,
        any::<prop::sample::Index>(),
        1usize..=8,
    )
        .prop_map(|(b, l, h, p, g, n)| {
            let divisors: Vec<usize> = (1..=h).filter(|d| h % d == 0).collect();
            Dims {
                b,
                l,
                h,
                p,
                g: *g.get(&divisors),
                n,
            }
        })
}

/// A generated layer, ready to run.
struct Case {
    src: String,
    layer: Layer,
    sizes: Sizes,
    inputs: TensorMap,
}

fn build(cfg: &LayerCfg, d: Dims, seed: u64) -> Case {
    // A complex state holds N/2 conjugate pairs.
    let n = if cfg.a == AKind::Complex {
        d.n.div_ceil(2) * 2
    } else {
        d.n
    };
    let src = source(cfg, n);
    let layer = compile_or_panic(&src);
    let mut over = BTreeMap::new();
    for (name, v) in [("B", d.b), ("L", d.l), ("H", d.h)] {
        over.insert(name.to_string(), v);
    }
    if cfg.headdim {
        over.insert("P".to_string(), d.p);
    }
    if cfg.uses_group() {
        over.insert("G".to_string(), d.g);
    }
    if !cfg.n_const {
        over.insert("N".to_string(), n);
    }
    let sizes = sizes_from_dims(&layer, &over)
        .unwrap_or_else(|e| panic!("sizes {over:?} do not fit (generator bug): {e}\n{src}"));
    let inputs = tensors::generate_inputs(&layer, &sizes, seed);
    Case {
        src,
        layer,
        sizes,
        inputs,
    }
}

/// The chunk sizes tried besides the e-graph's: dividing L and not, 1, L and L + 1.
fn odd_chunks(l: usize) -> Vec<usize> {
    let mut q = vec![1, 3, 4, 16, l, l + 1];
    q.sort_unstable();
    q.dedup();
    q
}

fn check_forms(cfg: &LayerCfg, d: Dims, seed: u64, target: Target) {
    let Case {
        src,
        layer,
        sizes,
        inputs,
    } = build(cfg, d, seed);
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
    let expected_names = if cfg.final_ {
        vec!["hT", "out"]
    } else {
        vec!["out"]
    };
    assert_eq!(names, expected_names, "{}", ctx("-"));

    let scans = if cfg.dir == Dir::Bidirectional { 2 } else { 1 };
    let choice = egraph::choose(&layer, &sizes, target, &|_| 0);
    assert_eq!(choice.plan.forms.len(), scans, "{}", ctx("chosen"));
    let selective = cfg.selective();
    let mut plans: Vec<Plan> = Vec::new();
    for c in &choice.candidates {
        match (&c.legality, c.form) {
            (Ok(_), Form::Conv) => assert!(
                !selective,
                "conv legal for a selective layer: {}",
                ctx("conv")
            ),
            (Err(why), Form::Conv) => {
                assert!(
                    selective,
                    "conv illegal for an LTI layer ({why}): {}",
                    ctx("conv")
                );
                assert!(why.contains("selective"), "reason: {why}");
            }
            (Ok(e), _) => assert!(e.seconds.is_finite() && e.seconds > 0.0, "estimate {e:?}"),
            // Every supported A is scalar or diagonal: every other form is legal.
            (Err(why), f) => panic!("{f} illegal ({why}): {}", ctx("-")),
        }
        if c.legality.is_ok() {
            plans.push(Plan {
                forms: vec![c.form; scans],
            });
        }
    }
    assert_eq!(
        choice.force(Form::Conv).is_ok(),
        !selective,
        "{}",
        ctx("force conv")
    );
    for q in odd_chunks(d.l) {
        let plan = choice.force(Form::Chunked { q }).expect("chunked is legal");
        assert_eq!(plan.forms, vec![Form::Chunked { q }; scans]);
        plans.push(plan);
    }
    let any_q = choice
        .force(Form::Chunked { q: 0 })
        .expect("chunked is legal");
    assert!(any_q
        .forms
        .iter()
        .all(|f| matches!(f, Form::Chunked { q } if CHUNK_SIZES.contains(q))));
    plans.push(choice.plan.clone());
    if scans == 2 {
        // Each scan its own form; conv only where that scan is time-invariant.
        let per_scan: Vec<Vec<Form>> = cfg
            .scans()
            .iter()
            .map(|s| {
                let mut f = vec![
                    Form::Recurrent,
                    Form::Scan,
                    Form::Chunked { q: 5 },
                    Form::Quadratic,
                ];
                if !cfg.scan_selective(s) {
                    f.push(Form::Conv);
                }
                f
            })
            .collect();
        let pick = |v: &Vec<Form>, k: usize| v[(seed as usize / (k + 1)) % v.len()];
        plans.push(Plan {
            forms: vec![pick(&per_scan[0], 0), pick(&per_scan[1], 7)],
        });
    }
    for plan in &plans {
        let got = forms::run(&layer, &sizes, &inputs, plan);
        let e = assert_agree(&got, &want, &|| ctx(&plan.to_string()));
        note_err("random_layers", e);
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
        let target = if ptx { Target::Ptx } else { Target::Cpu };
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
        let c = if check_mixer(&cfg, d, seed) {
            &checked
        } else {
            &refused
        };
        c.set(c.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Neither branch may be vacuous (each has a chance of about one half per case).
    assert!(
        checked.get() >= 8 && refused.get() >= 1,
        "checked {checked:?}, refused {refused:?}"
    );
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
    let Case {
        src,
        layer,
        sizes,
        inputs,
    } = build(cfg, d, seed);
    let got = forms::mixer_matrix(&layer, &sizes, &inputs);
    if let Some(word) = cfg.mixer_refusal() {
        let why = got.expect_err(&format!(
            "no one M maps x to y ({word}), yet mixer_matrix gave one:\n{src}"
        ));
        assert!(
            why.contains(word),
            "refused for another reason: {why}\n{src}"
        );
        return false;
    }
    let m = got.unwrap_or_else(|e| panic!("mixer_matrix refused ({e}):\n{src}"));
    assert_eq!(m.shape, vec![d.b, d.h, d.l, d.l], "{src}");
    let want = interp::run(&layer, &sizes, &inputs);
    let y = y_from_matrix(&layer, &sizes, &inputs, &m);
    let out = &want["out"];
    assert_eq!(y.shape, out.shape);
    let e = rel_err(&y.data, &out.data);
    assert!(
        e < TOL,
        "y = M x: relative error {e:.3e}, {d:?}, seed {seed}\n{src}"
    );
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
        assert!(
            !zero || *v == 0.0,
            "M[.., {t}, {s}] = {v} outside the triangle\n{src}"
        );
    }
    true
}

fn stdlib_case(name: &str, l: usize) -> (Layer, Sizes, TensorMap) {
    let src = std::fs::read_to_string(format!(
        "{}/../stdlib/{name}.ssm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("read");
    let layer = compile_or_panic(&src);
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
    let other = src.replacen(
        "    gate silu(z - 0.5)\n  }",
        "    gate silu(z + 0.5)\n  }",
        1,
    );
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
    let got = forms::run(
        &layer,
        &sizes,
        &inputs,
        &Plan {
            forms: vec![Form::Scan; 2],
        },
    );
    assert_agree(&got, &want, &|| "scan".into());
    // Heads 0, 1 read group 0 and heads 2, 3 group 1: with Cb's groups swapped, y changes
    // for every head.
    let mut swapped = inputs.clone();
    let cb = swapped.get_mut("Cb").expect("Cb");
    cb.data.rotate_left(2);
    assert_ne!(interp::run(&layer, &sizes, &swapped)["out"], want["out"]);
}
