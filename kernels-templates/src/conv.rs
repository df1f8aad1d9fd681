//! `conv` for the CPU: for a time-invariant scan, y = K * x + (the initial state's free
//! response) with the kernel K computed in the Vandermonde form and the convolution done
//! by FFT in a host routine ([`CpuStmt::Convolve`]).
//!
//! One work item is one sequence (batch, head, head element). Per scan:
//! K[l] = Re(sum_n w_n z_n^l) with w_n = pairs c_n bbar_n and z_n = abar_n, vectorized over
//! l: per state index n the vectors w_n z_n^j (j < [`STEP`]) are built once, then each step
//! of [`STEP`] consecutive l adds Re(z_n^l0 (w_n z_n^j)) and advances z_n^l0 by z_n^STEP,
//! one scalar (complex) product. Every [`SUPER`] steps z_n^l0 is recomputed as
//! exp(l0 log z_n) (log z_n = dt A for the exponential discretizations, ln|z_n| for a real
//! z_n; complex bilinear and discrete scans only multiply) so that the error of the
//! repeated products stays bounded, and set to zero once negligible, which also keeps the
//! products out of slow subnormal arithmetic. [`GROUP`] state indices go side by side so
//! that their products overlap. The free response of an initial state h0 is the same sum
//! with g_n = pairs c_n abar_n h0_n.

use crate::axis;
use crate::common::{decode, silu, state_at, Builder};
use crate::hoist::{hoist, hoist_at, looped, Hoisted};
use crate::{Cx, Discretization, Mapping, ScanSpec, ScanVals};
use ssmc_loops::{BinOp, CpuStmt, Index, Kernel, Launch, Scratch, Stmt, UnOp, Val, Var};

/// Lanes of a vector of K: 16 consecutive l.
const LANES: i64 = 16;
/// Consecutive l per product z^l0 z^STEP (four vectors).
const STEP: i64 = 64;
/// Steps between exact recomputations of z^l0.
const SUPER: i64 = 64;
/// State indices advanced side by side.
const GROUP: i64 = 2;
/// Below this |re| + |im|, z^l0 is set to zero.
const NEGLIGIBLE: f32 = 1e-20;

/// Per-state-index values kept in the parameter scratch array, `npad` of each.
#[derive(Clone, Copy)]
enum Field {
    WRe,
    WIm,
    ZRe,
    ZIm,
    LogRe,
    LogIm,
    GRe,
    GIm,
}

const FIELDS: i64 = 8;

/// The `conv` kernel of a layer, or why it has none.
pub fn conv(spec: &ScanSpec) -> Result<Kernel, String> {
    if spec.h_final.is_some() {
        return Err(format!("form conv does not produce the final state that `{}` outputs; use recurrent", spec.name));
    }
    if let Some(s) = spec.scans.iter().find(|s| !(s.decay_invariant && s.c_invariant)) {
        let what = if s.decay_invariant { "C" } else { "dt, A or B" };
        return Err(format!(
            "form conv needs a time-invariant scan; `{}` has {what} varying in time (a selective layer): use recurrent",
            spec.name
        ));
    }
    if spec.mapping != Mapping::StateLanes {
        return Err(format!("form conv takes one sequence per work item, not {:?}", spec.mapping));
    }
    let seq = Var(axis::COUNT);
    let mut bld = Builder { next: axis::COUNT };
    let (mut body, sequences, seq_lanes, lane_limit) = decode(spec, seq, &mut bld);
    let base = spec.buffers.len();
    let bufs = Bufs { k: base, x: base + 1, y: base + 2, param: base + 3, table: base + 4, free: base + 5 };
    let steps = Index::div(Index::add(spec.time.clone(), Index::Const(STEP - 1)), Index::Const(STEP));
    let padded = Index::mul(steps.clone(), Index::Const(STEP));
    let npad = (i64::from(spec.state) + GROUP - 1) / GROUP * GROUP;
    let mut scratch = vec![
        padded.clone(),
        spec.time.clone(),
        spec.time.clone(),
        Index::Const(FIELDS * npad),
        Index::Const(GROUP * 4 * STEP),
    ];
    if spec.h0.is_some() {
        scratch.push(padded);
    }
    // The padding state indices stay zero: they add nothing.
    let n = bld.var();
    body.push(Stmt::For {
        var: n,
        lo: Index::Const(0),
        hi: Index::Const(FIELDS * npad),
        reverse: false,
        body: vec![Stmt::Store { buf: bufs.param, index: Index::Var(n), value: Val::Const(0.0) }],
    });
    let mut ctx = Ctx { spec, bld, bufs, npad, steps };
    for (k, scan) in spec.scans.iter().enumerate() {
        ctx.scan(&mut body, scan, k);
    }
    Ok(Kernel {
        name: spec.name.clone(),
        buffers: spec.buffers.clone(),
        dims: spec.dims.clone(),
        seq,
        work_items: sequences,
        launch: Launch::Range,
        seq_lanes,
        lane_limit,
        scratch: scratch.into_iter().map(Scratch::local).collect(),
        body,
        host_conv: true,
    })
}

/// Scratch buffer positions.
struct Bufs {
    /// K, padded to whole blocks.
    k: usize,
    /// x in scan order.
    x: usize,
    /// K * x.
    y: usize,
    /// [`Field`]s per state index.
    param: usize,
    /// w z^j and g z^j (j < 16) of the state indices of a group.
    table: usize,
    /// The initial state's free response, padded to whole blocks (with an initial state).
    free: usize,
}

struct Ctx<'a> {
    spec: &'a ScanSpec,
    bld: Builder,
    bufs: Bufs,
    /// State indices rounded up to whole groups.
    npad: i64,
    /// Steps of K.
    steps: Index,
}

fn load(buf: usize, index: Index) -> Val {
    Val::Load { buf, index, lanes: 1, stride: Index::Const(1) }
}

fn var_of(v: &Val) -> Var {
    match v {
        Val::Var(v) => *v,
        _ => unreachable!("bound values are variables"),
    }
}

impl Ctx<'_> {
    fn at(&self, f: Field, n: Index) -> Index {
        Index::add(Index::Const(f as i64 * self.npad), n)
    }

    /// Sets the variables of `to` to `v`.
    fn set(out: &mut Vec<Stmt>, to: &Cx, v: Cx) {
        out.push(Stmt::Set { var: var_of(&to.re), value: v.re });
        if let (Some(t), Some(im)) = (&to.im, v.im) {
            out.push(Stmt::Set { var: var_of(t), value: im });
        }
    }

    /// Scan `k`: its parameters, K, the convolution and the output.
    fn scan(&mut self, body: &mut Vec<Stmt>, scan: &ScanVals, k: usize) {
        let spec = self.spec;
        let exact = self.parameters(body, scan);
        let time = spec.time.clone();
        let time_of =
            |v: Index| if scan.reversed { Index::sub(Index::sub(time.clone(), Index::Const(1)), v) } else { v };
        // x in scan order.
        let v = self.bld.var();
        let mut fill = vec![Stmt::LetIndex { var: axis::TIME, value: time_of(Index::Var(v)) }];
        let x = self.bld.bind(&mut fill, 1, scan.x.clone());
        fill.push(Stmt::Store { buf: self.bufs.x, index: Index::Var(v), value: x });
        body.push(Stmt::For { var: v, lo: Index::Const(0), hi: time.clone(), reverse: false, body: fill });
        self.kernel(body, exact);
        body.push(Stmt::Cpu(CpuStmt::Convolve {
            kernel: self.bufs.k,
            input: self.bufs.x,
            output: self.bufs.y,
            len: time.clone(),
        }));
        // y = K * x (+ the free response) + D x, times silu(z); added for the second scan.
        let skip = match (&scan.skip, scan.skip_invariant) {
            (Some(d), true) => Some(self.bld.bind(body, 1, d.clone())),
            (d, _) => d.clone(),
        };
        let v = self.bld.var();
        let mut step = vec![Stmt::LetIndex { var: axis::TIME, value: time_of(Index::Var(v)) }];
        let mut y = load(self.bufs.y, Index::Var(v));
        if spec.h0.is_some() {
            y = Val::add(y, load(self.bufs.free, Index::Var(v)));
        }
        if let Some(d) = skip {
            y = Val::add(y, Val::mul(d, load(self.bufs.x, Index::Var(v))));
        }
        if let Some(z) = &scan.gate {
            let z = self.bld.bind(&mut step, 1, z.clone());
            y = Val::mul(y, silu(z));
        }
        let (buf, index) = (spec.y.buf, spec.y.index.clone());
        step.push(if k == 0 { Stmt::Store { buf, index, value: y } } else { Stmt::StoreAdd { buf, index, value: y } });
        body.push(Stmt::For { var: v, lo: Index::Const(0), hi: time, reverse: false, body: step });
    }

    /// Stores w, z, log z and g of every state index into the parameter array; returns
    /// whether log z is known (else z^l0 is only advanced by products). Unrolled over the
    /// chunks of state lanes, or for a large state a loop over them.
    fn parameters(&mut self, body: &mut Vec<Stmt>, scan: &ScanVals) -> bool {
        let spec = self.spec;
        let lanes = spec.lanes;
        let chunks = spec.state / lanes;
        let from_dt_a = matches!(spec.discretization, Discretization::Zoh | Discretization::ZohEuler);
        let exact = from_dt_a || !spec.pairs;
        if looped(spec) {
            body.push(Stmt::LetIndex { var: axis::TIME, value: Index::Const(0) });
            let dt = scan.dt.clone().map(|v| self.bld.bind(body, 1, v));
            let c = self.bld.var();
            let mut each = Vec::new();
            let first = Index::mul(Index::Var(c), Index::Const(i64::from(lanes)));
            let pre = hoist_at(&mut self.bld, &mut each, spec, scan, first);
            self.chunk_parameters(&mut each, &pre, dt.as_ref(), Index::Var(axis::STATE));
            let hi = Index::Const(i64::from(chunks));
            body.push(Stmt::For { var: c, lo: Index::Const(0), hi, reverse: false, body: each });
            return exact;
        }
        let pre = hoist(&mut self.bld, body, spec, scan, chunks);
        let dt = scan.dt.clone().map(|v| self.bld.bind(body, 1, v));
        for (j, pre) in pre.iter().enumerate() {
            body.push(state_at(j as u32, lanes));
            self.chunk_parameters(body, pre, dt.as_ref(), Index::Const(i64::from(j as u32 * lanes)));
        }
        exact
    }

    /// The parameters of the chunk of state lanes from `first` (STATE bound to it).
    fn chunk_parameters(&mut self, body: &mut Vec<Stmt>, pre: &Hoisted, dt: Option<&Val>, first: Index) {
        let spec = self.spec;
        let lanes = spec.lanes;
        let scale = Val::splat(Val::Const(if spec.pairs { 2.0 } else { 1.0 }), lanes);
        let from_dt_a = matches!(spec.discretization, Discretization::Zoh | Discretization::ZohEuler);
        let exact = from_dt_a || !spec.pairs;
        let (abar, bbar) = pre.discrete.clone().expect("time-invariant scans have hoisted Abar and Bbar");
        let c = pre.c.clone().expect("time-invariant scans have a hoisted C");
        let w = c.mul(&bbar).scale(&scale);
        let log = if from_dt_a {
            let a = pre.a.clone().expect("time-invariant scans have a hoisted A");
            let dt = dt.cloned().map_or(Val::splat(Val::Const(0.0), lanes), |d| Val::splat(d, lanes));
            Some(a.scale(&dt))
        } else {
            // z^l0 = |z|^l0: l0 is even. ln 0 = -inf is kept finite so that 0 ln z = 0.
            let log = Val::un(UnOp::Log, Val::un(UnOp::Abs, abar.re.clone()));
            exact.then(|| Cx::real(Val::bin(BinOp::Max, log, Val::Const(-1e30))))
        };
        let g = spec.h0.as_ref().map(|p| {
            let h0 = p.load(lanes);
            c.mul(&abar).scale(&Val::mul(h0, scale.clone()))
        });
        let zero = Val::splat(Val::Const(0.0), lanes);
        let mut put = |f: Field, v: Option<&Val>| {
            let index = self.at(f, first.clone());
            let value = v.cloned().unwrap_or(zero.clone());
            body.push(Stmt::StoreLanes { buf: self.bufs.param, index, stride: Index::Const(1), lanes, value });
        };
        put(Field::WRe, Some(&w.re));
        put(Field::WIm, w.im.as_ref());
        put(Field::ZRe, Some(&abar.re));
        put(Field::ZIm, abar.im.as_ref());
        if let Some(l) = &log {
            put(Field::LogRe, Some(&l.re));
            put(Field::LogIm, l.im.as_ref());
        }
        if let Some(g) = &g {
            put(Field::GRe, Some(&g.re));
            put(Field::GIm, g.im.as_ref());
        }
    }

    /// A complex scalar of the parameter array (real without pairs).
    fn param(&mut self, out: &mut Vec<Stmt>, re: Field, im: Field, n: &Index) -> Cx {
        let r = self.bld.bind(out, 1, load(self.bufs.param, self.at(re, n.clone())));
        let i = self.spec.pairs.then(|| load(self.bufs.param, self.at(im, n.clone())));
        Cx { re: r, im: i.map(|v| self.bld.bind(out, 1, v)) }
    }

    /// K (and the free response) from the parameter array, in groups of state indices.
    fn kernel(&mut self, body: &mut Vec<Stmt>, exact: bool) {
        let lanes = LANES as u32;
        let with_free = self.spec.h0.is_some();
        let at_step =
            |s: Var, v: i64| Index::add(Index::mul(Index::Var(s), Index::Const(STEP)), Index::Const(v * LANES));
        let vector = |buf: usize, index: Index| Val::Load { buf, index, lanes, stride: Index::Const(1) };
        let store = |buf: usize, index: Index, value: Val| Stmt::StoreLanes {
            buf,
            index,
            stride: Index::Const(1),
            lanes,
            value,
        };
        let s = self.bld.var();
        let zero = Val::splat(Val::Const(0.0), lanes);
        let mut clear = Vec::new();
        for v in 0..STEP / LANES {
            clear.push(store(self.bufs.k, at_step(s, v), zero.clone()));
            if with_free {
                clear.push(store(self.bufs.free, at_step(s, v), zero.clone()));
            }
        }
        body.push(Stmt::For { var: s, lo: Index::Const(0), hi: self.steps.clone(), reverse: false, body: clear });
        let group = self.bld.var();
        let mut per_group = Vec::new();
        // Per state index of the group: z^STEP, log z, the tables as vectors, z^l0.
        struct Member {
            z_step: Cx,
            log: Option<Cx>,
            w: Vec<Cx>,
            g: Vec<Cx>,
            power: Cx,
        }
        let mut members = Vec::new();
        for i in 0..GROUP {
            let n = Index::add(Index::mul(Index::Var(group), Index::Const(GROUP)), Index::Const(i));
            let z = self.param(&mut per_group, Field::ZRe, Field::ZIm, &n);
            let w = self.param(&mut per_group, Field::WRe, Field::WIm, &n);
            let log = exact.then(|| self.param(&mut per_group, Field::LogRe, Field::LogIm, &n));
            let g = with_free.then(|| self.param(&mut per_group, Field::GRe, Field::GIm, &n));
            let mut z_step = z.clone();
            for _ in 0..STEP.trailing_zeros() {
                z_step = self.bld.bind_cx(&mut per_group, 1, z_step.mul(&z_step));
            }
            // The tables w z^j and g z^j, j < STEP, by a loop of products.
            let row = |part: i64| Index::Const((i * 4 + part) * STEP);
            let pw = self.bld.bind_cx(&mut per_group, 1, w);
            let pg = g.map(|g| self.bld.bind_cx(&mut per_group, 1, g));
            let j = self.bld.var();
            let mut fill = Vec::new();
            for (part, p) in [(0, Some(&pw)), (2, pg.as_ref())] {
                if let Some(p) = p {
                    let im = p.im.clone().unwrap_or(Val::Const(0.0));
                    for (off, v) in [(0, p.re.clone()), (1, im)] {
                        let index = Index::add(row(part + off), Index::Var(j));
                        fill.push(Stmt::Store { buf: self.bufs.table, index, value: v });
                    }
                    let next = self.bld.bind_cx(&mut fill, 1, p.mul(&z));
                    Self::set(&mut fill, p, next);
                }
            }
            per_group.push(Stmt::For {
                var: j,
                lo: Index::Const(0),
                hi: Index::Const(STEP),
                reverse: false,
                body: fill,
            });
            let pairs = self.spec.pairs;
            let mut vectors = |part: i64| -> Vec<Cx> {
                (0..STEP / LANES)
                    .map(|v| {
                        let at = |p: i64| Index::add(row(p), Index::Const(v * LANES));
                        let re = self.bld.bind(&mut per_group, lanes, vector(self.bufs.table, at(part)));
                        let im =
                            pairs.then(|| self.bld.bind(&mut per_group, lanes, vector(self.bufs.table, at(part + 1))));
                        Cx { re, im }
                    })
                    .collect()
            };
            let w = vectors(0);
            let g = if with_free { vectors(2) } else { Vec::new() };
            let one = Cx { re: Val::Const(1.0), im: self.spec.pairs.then_some(Val::Const(0.0)) };
            let power = self.bld.bind_cx(&mut per_group, 1, one);
            members.push(Member { z_step, log, w, g, power });
        }
        // Super-steps of SUPER steps, l0 as a float (exact: a multiple of STEP below 2^30).
        let l0 = self.bld.bind(&mut per_group, 1, Val::Const(0.0));
        let sup = self.bld.var();
        let mut per_super = Vec::new();
        for m in &members {
            let at_l0 = match &m.log {
                Some(log) => log.scale(&l0).exp(),
                None => m.power.clone(),
            };
            let at_l0 = self.bld.bind_cx(&mut per_super, 1, at_l0);
            let size = match &at_l0.im {
                Some(im) => Val::add(Val::un(UnOp::Abs, at_l0.re.clone()), Val::un(UnOp::Abs, im.clone())),
                None => Val::un(UnOp::Abs, at_l0.re.clone()),
            };
            let keep = self.bld.bind(&mut per_super, 1, Val::bin(BinOp::Gt, size, Val::Const(NEGLIGIBLE)));
            let flushed = at_l0.map(|v| Val::Select(Box::new(keep.clone()), Box::new(v), Box::new(Val::Const(0.0))));
            Self::set(&mut per_super, &m.power, flushed);
        }
        let first = Index::mul(Index::Var(sup), Index::Const(SUPER));
        let last = Index::min(Index::add(first.clone(), Index::Const(SUPER)), self.steps.clone());
        let s = self.bld.var();
        let mut step = Vec::new();
        // Re(z^l0 w z^j) = Re(z^l0) Re(w z^j) - Im(z^l0) Im(w z^j), summed over the group as
        // a tree (short dependency chains).
        let mut splats = Vec::new();
        for m in &members {
            let re = self.bld.bind(&mut step, lanes, Val::splat(m.power.re.clone(), lanes));
            let im = m.power.im.as_ref().map(|im| self.bld.bind(&mut step, lanes, Val::splat(im.clone(), lanes)));
            splats.push(Cx { re, im });
        }
        let sum = |table: &dyn Fn(&Member) -> &Vec<Cx>, v: usize, acc: Val| {
            let terms: Vec<Val> = members.iter().zip(&splats).map(|(m, p)| p.mul_re(&table(m)[v])).collect();
            Val::add(acc, terms.into_iter().reduce(Val::add).unwrap_or(Val::Const(0.0)))
        };
        for v in 0..STEP / LANES {
            let at = at_step(s, v);
            let k = sum(&|m: &Member| &m.w, v as usize, vector(self.bufs.k, at.clone()));
            step.push(store(self.bufs.k, at.clone(), k));
            if with_free {
                let f = sum(&|m: &Member| &m.g, v as usize, vector(self.bufs.free, at.clone()));
                step.push(store(self.bufs.free, at, f));
            }
        }
        for m in &members {
            let next = self.bld.bind_cx(&mut step, 1, m.power.mul(&m.z_step));
            Self::set(&mut step, &m.power, next);
        }
        per_super.push(Stmt::For { var: s, lo: first, hi: last, reverse: false, body: step });
        per_super.push(Stmt::Set { var: var_of(&l0), value: Val::add(l0.clone(), Val::Const((SUPER * STEP) as f32)) });
        let supers = Index::div(Index::add(self.steps.clone(), Index::Const(SUPER - 1)), Index::Const(SUPER));
        per_group.push(Stmt::For { var: sup, lo: Index::Const(0), hi: supers, reverse: false, body: per_super });
        body.push(Stmt::For {
            var: group,
            lo: Index::Const(0),
            hi: Index::Const(self.npad / GROUP),
            reverse: false,
            body: per_group,
        });
    }
}
