//! Random layer configurations written as `.ssm` source text, shared by the tests that
//! check forms and native code against the interpreter.
#![allow(dead_code)]

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssmc_compiler::bind::{sizes_from_dims, Sizes};
use ssmc_compiler::ir::Layer;
use ssmc_compiler::tensors::{self, TensorMap};
use ssmc_compiler::SourceFile;
use std::collections::BTreeMap;

pub fn compile_or_panic(src: &str) -> Layer {
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

// ---------------------------------------------------------------------------------------
// Random layer configurations

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AKind {
    Scalar,
    Diagonal,
    Complex,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Disc {
    Zoh,
    ZohEuler,
    Bilinear,
    Discrete,
}

impl Disc {
    pub fn name(self) -> &'static str {
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
pub enum Var {
    /// Per head (or shared): time-invariant.
    Static,
    /// Along batch too, still time-invariant.
    Batch,
    /// Along batch and time: selective.
    Selective,
}

/// The head-like axis of B or C.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BcHead {
    None,
    Head,
    Group,
}

/// How a B or C of a complex layer is written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cplx {
    Real,
    /// `complex(re, im)` of two tensors.
    Pair,
    /// `complex(t)` of a tensor with a trailing re/im axis.
    View,
}

#[derive(Clone, Copy, Debug)]
pub struct Bc {
    /// `B = 1` (B only).
    pub one: bool,
    pub var: Var,
    pub head: BcHead,
    pub cplx: Cplx,
}

/// The roles of one scan.
#[derive(Clone, Copy, Debug)]
pub struct ScanCfg {
    pub dt: Var,
    /// A varies along heads (else shared by all heads).
    pub a_per_head: bool,
    pub b: Bc,
    pub c: Bc,
    /// Skip D: None, Some(false) per head, Some(true) per head element.
    pub skip: Option<bool>,
    pub gate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dir {
    Causal,
    Reverse,
    Bidirectional,
}

/// Which roles a `reverse { ... }` block gives anew: x, dt, A, B, C, skip, gate.
type Overrides = [bool; 7];

#[derive(Clone, Debug)]
pub struct LayerCfg {
    pub a: AKind,
    pub disc: Disc,
    pub headdim: bool,
    /// Without headdim: `head H` instead of `channel H`.
    pub head_keyword: bool,
    /// The state size written in the file (`state N = 4`) instead of given at run time.
    pub n_const: bool,
    pub dir: Dir,
    /// A `reverse` block (bidirectional only).
    pub block: Option<Overrides>,
    pub fwd: ScanCfg,
    pub bwd: ScanCfg,
    pub initial: bool,
    pub final_: bool,
    /// Seed of the tensor layouts, dtypes and the order of the dims.
    pub layout_seed: u64,
}

impl LayerCfg {
    /// Makes every combination legal: what the language allows, not what the generator drew.
    pub fn normalize(mut self) -> Self {
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
    pub fn backward(&self) -> Option<ScanCfg> {
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

    pub fn scans(&self) -> Vec<ScanCfg> {
        std::iter::once(self.fwd).chain(self.backward()).collect()
    }

    pub fn scan_selective(&self, s: &ScanCfg) -> bool {
        (self.disc != Disc::Discrete && s.dt == Var::Selective)
            || (!s.b.one && s.b.var == Var::Selective)
            || s.c.var == Var::Selective
    }

    pub fn selective(&self) -> bool {
        self.scans().iter().any(|s| self.scan_selective(s))
    }

    pub fn uses_group(&self) -> bool {
        self.scans().iter().any(|s| (!s.b.one && s.b.head == BcHead::Group) || s.c.head == BcHead::Group)
    }

    /// Why no one matrix M with y = silu(z) (M x) exists (a word of `mixer_matrix`'s
    /// refusal), or None when it must give one.
    pub fn mixer_refusal(&self) -> Option<&'static str> {
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
pub struct Writer {
    pub rng: ChaCha8Rng,
    pub dims: Vec<String>,
    pub decls: Vec<String>,
    pub roles: Vec<String>,
    pub reverse: Vec<String>,
}

impl Writer {
    /// Declares a tensor over `axes` in a random order (a trailing re/im axis stays last).
    pub fn tensor(&mut self, io: &str, name: &str, axes: &[&str], view: bool, init: &str) {
        let mut axes: Vec<&str> = axes.to_vec();
        axes.shuffle(&mut self.rng);
        if view {
            axes.push("2");
        }
        let dtype = ["f32", "f64", "bf16", "f16"][self.rng.gen_range(0..4)];
        let init = if init.is_empty() { String::new() } else { format!(" ~ {init}") };
        self.decls.push(format!("  {io} {name}: {dtype}[{}]{init}", axes.join(", ")));
    }

    pub fn input(&mut self, name: &str, axes: &[&str], init: &str) {
        self.tensor("input", name, axes, false, init);
    }
}

pub fn source(cfg: &LayerCfg, n_const: usize) -> String {
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
    w.dims.push(if cfg.n_const { format!("state N = {n_const}") } else { "state N".into() });
    let mut dims = std::mem::take(&mut w.dims);
    dims.shuffle(&mut w.rng);
    let x_axes: Vec<&str> = if cfg.headdim { vec!["B", "L", "H", "P"] } else { vec!["B", "L", "H"] };

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
                    let axes: &[&str] = if s.dt == Var::Batch { &["B", "H"] } else { &["B", "L", "H"] };
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

pub fn var() -> impl Strategy<Value = Var> {
    prop_oneof![Just(Var::Static), Just(Var::Batch), Just(Var::Selective)]
}

pub fn bc() -> impl Strategy<Value = Bc> {
    (
        prop::bool::weighted(0.15),
        var(),
        prop_oneof![Just(BcHead::None), Just(BcHead::Head), Just(BcHead::Group)],
        prop_oneof![Just(Cplx::Real), Just(Cplx::Pair), Just(Cplx::View)],
    )
        .prop_map(|(one, var, head, cplx)| Bc { one, var, head, cplx })
}

pub fn scan_cfg() -> impl Strategy<Value = ScanCfg> {
    (var(), any::<bool>(), bc(), bc(), prop::option::of(any::<bool>()), any::<bool>())
        .prop_map(|(dt, a_per_head, b, c, skip, gate)| ScanCfg { dt, a_per_head, b, c, skip, gate })
}

pub fn config() -> impl Strategy<Value = LayerCfg> {
    let kinds = (
        prop_oneof![Just(AKind::Scalar), Just(AKind::Diagonal), Just(AKind::Complex)],
        prop_oneof![Just(Disc::Zoh), Just(Disc::ZohEuler), Just(Disc::Bilinear), Just(Disc::Discrete)],
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop_oneof![Just(Dir::Causal), Just(Dir::Reverse), Just(Dir::Bidirectional)],
        prop::option::of(any::<[bool; 7]>()),
    );
    let rest = (scan_cfg(), scan_cfg(), any::<bool>(), any::<bool>(), any::<u64>());
    (kinds, rest).prop_map(
        |((a, disc, headdim, head_keyword, n_const, dir, block), (fwd, bwd, initial, final_, layout_seed))| {
            LayerCfg { a, disc, headdim, head_keyword, n_const, dir, block, fwd, bwd, initial, final_, layout_seed }
                .normalize()
        },
    )
}

/// Sizes of a case: B, L, H, P, G, N.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub b: usize,
    pub l: usize,
    pub h: usize,
    pub p: usize,
    pub g: usize,
    pub n: usize,
}

pub fn dims() -> impl Strategy<Value = Dims> {
    (
        1usize..=2,
        prop::sample::select(vec![1usize, 2, 3, 5, 7, 13, 31, 64, 97, 131, 300]),
        1usize..=3,
        1usize..=3,
        any::<prop::sample::Index>(),
        1usize..=8,
    )
        .prop_map(|(b, l, h, p, g, n)| {
            let divisors: Vec<usize> = (1..=h).filter(|d| h % d == 0).collect();
            Dims { b, l, h, p, g: *g.get(&divisors), n }
        })
}

/// A generated layer, ready to run.
pub struct Case {
    pub src: String,
    pub layer: Layer,
    pub sizes: Sizes,
    pub inputs: TensorMap,
}

pub fn build(cfg: &LayerCfg, d: Dims, seed: u64) -> Case {
    build_with(cfg, d, seed, |s| s)
}

/// Like [`build`], with the source text passed through `edit` before it is compiled.
pub fn build_with(cfg: &LayerCfg, d: Dims, seed: u64, edit: impl Fn(String) -> String) -> Case {
    // A complex state holds N/2 conjugate pairs.
    let n = if cfg.a == AKind::Complex { d.n.div_ceil(2) * 2 } else { d.n };
    let src = edit(source(cfg, n));
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
    Case { src, layer, sizes, inputs }
}
