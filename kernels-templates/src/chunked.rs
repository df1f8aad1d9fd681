//! `chunked` for the CPU: the SSD algorithm (Mamba-2) for scans whose decay is one scalar
//! per step and head. A work item is one (batch, head) pair. Time is cut into chunks of `q`
//! steps; within a chunk every output is a matrix product instead of a recurrence:
//!
//! ```text
//! cum_i   = sum_{j<=i} dt_j a                (log of the decay from the chunk start)
//! M[i,s]  = (C_i . B_s) exp(cum_i - cum_s) beta_s          for s <= i, else 0
//! y_i     = exp(cum_i) C_i . H  +  sum_s M[i,s] x_s        (H: the state at the chunk start)
//! H'      = exp(cum_last) H  +  sum_s exp(cum_last - cum_s) beta_s B_s x_s^T
//! ```
//!
//! with beta_s = dt_s (zoh_euler) or (exp(dt_s a) - 1) / a (zoh). The state H of a head is a
//! scratch array [N][P] (state-major, so elements are contiguous); the products run with
//! vector lanes over the elements of the head and several rows (or state indices) at once,
//! each its own accumulator, so no single dependency chain bounds the speed.

use crate::axis;
use crate::common::{decode, silu, Builder};
use crate::complex::expm1;
use crate::hoist::{looped, over_chunks};
use crate::{Discretization, Mapping, ScanSpec, ScanVals};
use ssmc_loops::{BinOp, Index, Kernel, Launch, Stmt, UnOp, Val, Var};

/// Chunk length when none is asked for.
pub const DEFAULT_CHUNK: u32 = 64;

/// The longest chunk: its q x q matrix M (4 MiB) and q x N weighted B stay per thread.
pub const MAX_CHUNK: u32 = 1024;

/// Output rows computed together (one accumulator each).
const ROWS: u32 = 8;

/// The `chunked` kernel of a layer with chunks of `q` steps (0: [`DEFAULT_CHUNK`]), or why
/// it has none.
pub fn chunked(spec: &ScanSpec, q: u32) -> Result<Kernel, String> {
    supported(spec)?;
    let q = if q == 0 { DEFAULT_CHUNK } else { q };
    if q > MAX_CHUNK {
        return Err(format!(
            "form chunked:{q} has no native schedule: chunks of at most {MAX_CHUNK} steps (a chunk keeps q x q floats per thread)"
        ));
    }
    let seq = Var(axis::COUNT);
    let mut bld = Builder { next: axis::COUNT };
    let (mut body, work_items, _, _) = decode(spec, seq, &mut bld);
    let (scratch, sizes) = Scratch::layout(spec.buffers.len(), i64::from(q), i64::from(spec.state), &spec.headdim);
    for (k, scan) in spec.scans.iter().enumerate() {
        let mut c = Chunks { spec, scan, k, q, s: scratch, bld: &mut bld };
        c.emit(&mut body);
    }
    Ok(Kernel {
        name: spec.name.clone(),
        buffers: spec.buffers.clone(),
        dims: spec.dims.clone(),
        seq,
        work_items,
        launch: Launch::Range,
        seq_lanes: 1,
        lane_limit: None,
        scratch: sizes.into_iter().map(ssmc_loops::Scratch::local).collect(),
        host_conv: false,
        body,
    })
}

/// Why a layer has no native chunked schedule, if it has none.
fn supported(spec: &ScanSpec) -> Result<(), String> {
    let why = if !matches!(spec.mapping, Mapping::StateTiles { .. }) {
        "it needs work items of whole heads"
    } else if spec.pairs || spec.scans.iter().any(|s| s.a.im.is_some() || s.b.im.is_some() || s.c.im.is_some()) {
        "it takes real A, B and C, and this layer's are complex"
    } else if !spec.scans.iter().all(|s| s.a_shared) {
        "it needs A shared by the whole state (one scalar decay per step and head, as in Mamba-2); here A varies along the state"
    } else if !matches!(spec.discretization, Discretization::Zoh | Discretization::ZohEuler)
        || spec.scans.iter().any(|s| s.dt.is_none())
    {
        "it needs the decay exp(dt A) (discretize zoh or zoh_euler with a dt)"
    } else {
        return Ok(());
    };
    Err(format!("form chunked has no native schedule for this layer: {why}; recurrent has"))
}

/// Positions of the scratch arrays.
#[derive(Clone, Copy)]
struct Scratch {
    /// The state of the head, [N][P].
    state: usize,
    /// cum_i of the chunk.
    cum: usize,
    /// beta_i of the chunk.
    beta: usize,
    /// exp(cum_last - cum_s) beta_s.
    carry: usize,
    /// M, [q][q].
    m: usize,
    /// carry_s B_s, [q][N].
    wb: usize,
    /// x of the chunk, [q][P].
    x: usize,
    /// exp(cum_i).
    from_start: usize,
    /// i as a float (masks the upper triangle of M).
    pos: usize,
    /// z of the chunk, [q][P].
    gate: usize,
    /// C of one row, [N] (large states, whose C is not kept in variables).
    row: usize,
}

impl Scratch {
    /// The arrays, numbered from buffer `first` on, and their sizes in that order, for
    /// chunks of `q` steps, `n` state indices and `p` elements per head.
    fn layout(first: usize, q: i64, n: i64, p: &Index) -> (Self, Vec<Index>) {
        let per_element = |rows: i64| Index::mul(Index::Const(rows), p.clone());
        let sized = [
            per_element(n),      // state
            Index::Const(q),     // cum
            Index::Const(q),     // beta
            Index::Const(q),     // carry
            Index::Const(q * q), // m
            Index::Const(q * n), // wb
            per_element(q),      // x
            Index::Const(q),     // from_start
            Index::Const(q),     // pos
            per_element(q),      // gate
            Index::Const(n),     // row
        ];
        let at = |k: usize| first + k;
        let s = Scratch {
            state: at(0),
            cum: at(1),
            beta: at(2),
            carry: at(3),
            m: at(4),
            wb: at(5),
            x: at(6),
            from_start: at(7),
            pos: at(8),
            gate: at(9),
            row: at(10),
        };
        (s, sized.to_vec())
    }
}

fn load(buf: usize, index: Index) -> Val {
    Val::Load { buf, index, lanes: 1, stride: Index::Const(1) }
}

/// Stores `value` of `width` lanes (a scalar for 1) at `index`, `index + 1`, ...
fn store_at(buf: usize, index: Index, width: u32, value: Val) -> Stmt {
    if width > 1 {
        Stmt::StoreLanes { buf, index, stride: Index::Const(1), lanes: width, value }
    } else {
        Stmt::Store { buf, index, value }
    }
}

fn load_lanes(buf: usize, index: Index, lanes: u32) -> Val {
    Val::Load { buf, index, lanes, stride: Index::Const(1) }
}

fn var(v: Var) -> Index {
    Index::Var(v)
}

fn c(v: i64) -> Index {
    Index::Const(v)
}

/// A loop over `v` in `lo..hi`.
fn for_range(v: Var, lo: Index, hi: Index, body: Vec<Stmt>) -> Stmt {
    Stmt::For { var: v, lo, hi, reverse: false, body }
}

/// Emits the statements of one scan.
struct Chunks<'a> {
    spec: &'a ScanSpec,
    scan: &'a ScanVals,
    /// Scan number: the first stores y, a second adds to it.
    k: usize,
    q: u32,
    s: Scratch,
    bld: &'a mut Builder,
}

impl Chunks<'_> {
    fn n(&self) -> i64 {
        i64::from(self.spec.state)
    }

    fn p(&self) -> Index {
        self.spec.headdim.clone()
    }

    /// Sets TIME to the layer time of position `i` of chunk `chunk` (reversed scans read
    /// time backward).
    fn at_time(&self, chunk: Var, i: Index) -> Stmt {
        let v = Index::add(Index::mul(var(chunk), c(i64::from(self.q))), i);
        let t = if self.scan.reversed { Index::sub(Index::sub(self.spec.time.clone(), c(1)), v) } else { v };
        Stmt::LetIndex { var: axis::TIME, value: t }
    }

    fn emit(&mut self, body: &mut Vec<Stmt>) {
        let (n, p) = (self.n(), self.p());
        let s = self.s;
        // The state of every element: the initial state, or zero.
        let elem = axis::HEADDIM;
        let mut init = Vec::new();
        let h0 = match &self.spec.h0 {
            Some(pl) => load(pl.buf, pl.index.clone()),
            None => Val::Const(0.0),
        };
        init.push(for_range(
            axis::STATE,
            c(0),
            c(n),
            vec![Stmt::Store { buf: s.state, index: self.state_index(var(axis::STATE), var(elem)), value: h0 }],
        ));
        body.push(for_range(elem, c(0), p.clone(), init));
        body.push(Stmt::LetIndex { var: axis::STATE, value: c(0) });

        let q = i64::from(self.q);
        let chunk = self.bld.var();
        let chunks = Index::div(Index::add(self.spec.time.clone(), c(q - 1)), c(q));
        let len_var = self.bld.var();
        let len = var(len_var);
        let mut per_chunk = vec![Stmt::LetIndex {
            var: len_var,
            value: Index::min(c(q), Index::sub(self.spec.time.clone(), Index::mul(var(chunk), c(q)))),
        }];
        self.decays(&mut per_chunk, chunk, &len);
        self.stage_x(&mut per_chunk, chunk, &len);
        self.matrix(&mut per_chunk, chunk, &len);
        for width in self.widths() {
            let outputs = self.outputs(chunk, &len, width);
            per_chunk.extend(self.over_elements(width, outputs));
        }
        self.weighted_b(&mut per_chunk, chunk, &len);
        for width in self.widths() {
            let update = self.update(&len, width);
            per_chunk.extend(self.over_elements(width, update));
        }
        body.push(for_range(chunk, c(0), chunks, per_chunk));

        if let Some(pl) = &self.spec.h_final {
            let value = load(s.state, self.state_index(var(axis::STATE), var(elem)));
            let store = Stmt::Store { buf: pl.buf, index: pl.index.clone(), value };
            let fin = vec![for_range(axis::STATE, c(0), c(n), vec![store])];
            body.push(for_range(elem, c(0), p, fin));
            body.push(Stmt::LetIndex { var: axis::STATE, value: c(0) });
        }
    }

    /// Index of state (n, element) in the scratch state.
    fn state_index(&self, n: Index, element: Index) -> Index {
        Index::add(Index::mul(n, self.p()), element)
    }

    /// The vector widths along the elements of a head: whole vectors of the state's lane
    /// count (the width the by-element role values were lowered at), then single elements.
    fn widths(&self) -> Vec<u32> {
        if self.spec.lanes > 1 {
            vec![self.spec.lanes, 1]
        } else {
            vec![1]
        }
    }

    /// `body` once per vector of `width` elements of the head (HEADDIM its first element):
    /// with `width` > 1 over the whole vectors, with 1 over the elements left over.
    fn over_elements(&mut self, width: u32, body: Vec<Stmt>) -> Vec<Stmt> {
        let lanes = self.spec.lanes;
        let w = c(i64::from(lanes));
        let full = Index::div(self.p(), w.clone());
        if width > 1 {
            let v = self.bld.var();
            let mut b = vec![Stmt::LetIndex { var: axis::HEADDIM, value: Index::mul(var(v), w) }];
            b.extend(body);
            vec![for_range(v, c(0), full, b)]
        } else {
            let first = if lanes > 1 { Index::mul(full, w) } else { c(0) };
            vec![for_range(axis::HEADDIM, first, self.p(), body)]
        }
    }

    /// dt, cum, beta and the carry weights of the chunk.
    fn decays(&mut self, out: &mut Vec<Stmt>, chunk: Var, len: &Index) {
        let s = self.s;
        let scan = self.scan;
        let i = self.bld.var();
        let cum = self.bld.var();
        out.push(Stmt::Let { var: cum, lanes: 1, value: Val::Const(0.0) });
        let pos = self.bld.var();
        out.push(Stmt::Let { var: pos, lanes: 1, value: Val::Const(0.0) });
        let mut step = vec![self.at_time(chunk, var(i)), Stmt::LetIndex { var: axis::STATE, value: c(0) }];
        let dt = self.bld.bind(&mut step, 1, scan.dt.clone().unwrap_or(Val::Const(0.0)));
        let a = self.bld.bind(&mut step, 1, scan.at_one_state.a.re.clone());
        let la = self.bld.bind(&mut step, 1, Val::mul(dt.clone(), a.clone()));
        step.push(Stmt::Set { var: cum, value: Val::add(Val::Var(cum), la.clone()) });
        step.push(Stmt::Store { buf: s.cum, index: var(i), value: Val::Var(cum) });
        step.push(Stmt::Store { buf: s.from_start, index: var(i), value: Val::un(UnOp::Exp, Val::Var(cum)) });
        step.push(Stmt::Store { buf: s.pos, index: var(i), value: Val::Var(pos) });
        step.push(Stmt::Set { var: pos, value: Val::add(Val::Var(pos), Val::Const(1.0)) });
        let beta = match self.spec.discretization {
            Discretization::Zoh => {
                // (exp(dt a) - 1) / a, and dt (1 + dt a / 2) near dt a = 0 where the ratio loses digits.
                let exact = Val::div(expm1(la.clone()), a);
                let series = Val::mul(dt, Val::add(Val::Const(1.0), Val::mul(la.clone(), Val::Const(0.5))));
                let small = Val::bin(BinOp::Gt, Val::Const(1e-4), Val::un(UnOp::Abs, la));
                Val::Select(Box::new(small), Box::new(series), Box::new(exact))
            }
            _ => dt,
        };
        step.push(Stmt::Store { buf: s.beta, index: var(i), value: beta });
        out.push(for_range(i, c(0), len.clone(), step));
        // carry_s = exp(cum_last - cum_s) beta_s.
        let last = load(s.cum, Index::sub(len.clone(), c(1)));
        let j = self.bld.var();
        let w = Val::mul(Val::un(UnOp::Exp, Val::sub(last, load(s.cum, var(j)))), load(s.beta, var(j)));
        out.push(for_range(j, c(0), len.clone(), vec![Stmt::Store { buf: s.carry, index: var(j), value: w }]));
    }

    /// x and z of every (step, element) of the chunk into scratch [q][P]: a pass of plain
    /// copies over their rows, whose cache misses overlap, instead of a miss in the middle
    /// of every output row.
    fn stage_x(&mut self, out: &mut Vec<Stmt>, chunk: Var, len: &Index) {
        let i = self.bld.var();
        let mut step = vec![self.at_time(chunk, var(i))];
        for width in self.widths() {
            let vector = width > 1;
            let scan = self.scan;
            let x = if vector { scan.x_by_element.clone() } else { scan.x.clone() };
            let gate = if vector { scan.gate_by_element.clone() } else { scan.gate.clone() };
            let index = Index::add(Index::mul(var(i), self.p()), var(axis::HEADDIM));
            let mut stores = vec![store_at(self.s.x, index.clone(), width, x)];
            if let Some(z) = gate {
                stores.push(store_at(self.s.gate, index, width, z));
            }
            step.extend(self.over_elements(width, stores));
        }
        out.push(for_range(i, c(0), len.clone(), step));
    }

    /// M of the chunk: row i, columns s <= i; zero above the diagonal (up to q).
    fn matrix(&mut self, out: &mut Vec<Stmt>, chunk: Var, len: &Index) {
        let (s, lanes) = (self.s, self.spec.lanes);
        let q = i64::from(self.q);
        let (i, col) = (self.bld.var(), self.bld.var());
        let mut row = vec![self.at_time(chunk, var(i))];
        let mut cell = vec![self.at_time(chunk, var(col))];
        let dot = if looped(self.spec) {
            // C_i into scratch, then each dot a loop over the state.
            let ci = self.scan.c.re.clone();
            over_chunks(self.bld, &mut row, self.spec, true, |_, out, first| {
                out.push(store_at(s.row, first, lanes, ci.clone()));
            });
            let acc = self.bld.var();
            cell.push(Stmt::Let { var: acc, lanes, value: Val::splat(Val::Const(0.0), lanes) });
            over_chunks(self.bld, &mut cell, self.spec, true, |_, out, first| {
                let term = Val::mul(load_lanes(s.row, first, lanes), self.scan.b.re.clone());
                out.push(Stmt::Set { var: acc, value: Val::add(Val::Var(acc), term) });
            });
            Val::Var(acc)
        } else {
            let mut ci = Vec::new();
            for j in 0..self.spec.state / lanes {
                row.push(Stmt::LetIndex { var: axis::STATE, value: c(i64::from(j * lanes)) });
                ci.push(self.bld.bind(&mut row, lanes, self.scan.c.re.clone()));
            }
            let mut terms = Vec::new();
            for (j, cj) in ci.iter().enumerate() {
                cell.push(Stmt::LetIndex { var: axis::STATE, value: c(j as i64 * i64::from(lanes)) });
                // Bound here: the load reads STATE as it is now.
                terms.push(self.bld.bind(&mut cell, lanes, Val::mul(cj.clone(), self.scan.b.re.clone())));
            }
            tree_sum(terms)
        };
        let dot = if lanes > 1 { Val::ReduceAdd(Box::new(dot)) } else { dot };
        let at = |col: Index| Index::add(Index::mul(var(i), c(q)), col);
        if lanes > 1 && q % i64::from(lanes) == 0 {
            // The dots, then decay and beta for whole vectors of columns at once; columns
            // after i (and after the chunk's end) are masked to zero by their position.
            cell.push(Stmt::Store { buf: s.m, index: at(var(col)), value: dot });
            row.push(for_range(col, c(0), Index::add(var(i), c(1)), cell));
            let v = self.bld.var();
            let first = Index::mul(var(v), c(i64::from(lanes)));
            let vec = |buf: usize, index: Index| load_lanes(buf, index, lanes);
            let splat = |x: Val| Val::splat(x, lanes);
            let decay = Val::un(UnOp::Exp, Val::sub(splat(load(s.cum, var(i))), vec(s.cum, first.clone())));
            let value = Val::mul(Val::mul(vec(s.m, at(first.clone())), decay), vec(s.beta, first.clone()));
            let after = Val::bin(BinOp::Gt, vec(s.pos, first.clone()), splat(load(s.pos, var(i))));
            let masked = Val::Select(Box::new(after), Box::new(splat(Val::Const(0.0))), Box::new(value));
            let store = Stmt::StoreLanes { buf: s.m, index: at(first), stride: c(1), lanes, value: masked };
            row.push(for_range(v, c(0), c(q / i64::from(lanes)), vec![store]));
        } else {
            let decay = Val::un(UnOp::Exp, Val::sub(load(s.cum, var(i)), load(s.cum, var(col))));
            let value = Val::mul(Val::mul(dot, decay), load(s.beta, var(col)));
            cell.push(Stmt::Store { buf: s.m, index: at(var(col)), value });
            row.push(for_range(col, c(0), Index::add(var(i), c(1)), cell));
            let zero = vec![Stmt::Store { buf: s.m, index: at(var(col)), value: Val::Const(0.0) }];
            row.push(for_range(col, Index::add(var(i), c(1)), c(q), zero));
        }
        out.push(for_range(i, c(0), len.clone(), row));
        out.push(Stmt::LetIndex { var: axis::STATE, value: c(0) });
    }

    /// y of the chunk at the `width` elements from HEADDIM: rows in blocks of [`ROWS`],
    /// then the rows left over one by one.
    fn outputs(&mut self, chunk: Var, len: &Index, width: u32) -> Vec<Stmt> {
        let block = self.bld.var();
        let rows = c(i64::from(ROWS));
        let full = Index::div(len.clone(), rows.clone());
        let first = Index::mul(var(block), rows.clone());
        let blocked = self.rows(chunk, len, first, ROWS, width);
        let one = self.bld.var();
        let single = self.rows(chunk, len, var(one), 1, width);
        vec![for_range(block, c(0), full.clone(), blocked), for_range(one, Index::mul(full, rows), len.clone(), single)]
    }

    /// y at rows `first..first + count` and the `width` elements from HEADDIM.
    fn rows(&mut self, chunk: Var, len: &Index, first: Index, count: u32, width: u32) -> Vec<Stmt> {
        let s = self.s;
        let (n, q) = (self.n(), i64::from(self.q));
        let zero = Val::splat(Val::Const(0.0), width);
        let mut out = Vec::new();
        let i0 = self.bld.var();
        out.push(Stmt::LetIndex { var: i0, value: first });
        let row = |r: u32| Index::add(var(i0), c(i64::from(r)));
        let acc: Vec<Var> = (0..count).map(|_| self.bld.var()).collect();
        for a in &acc {
            out.push(Stmt::Let { var: *a, lanes: width, value: zero.clone() });
        }
        // exp(cum_i) C_i . H
        let mut per_n = Vec::new();
        let h = self.bld.bind(
            &mut per_n,
            width,
            load_lanes(s.state, self.state_index(var(axis::STATE), var(axis::HEADDIM)), width),
        );
        for (r, a) in acc.iter().enumerate() {
            per_n.push(self.at_time(chunk, row(r as u32)));
            let ci = Val::splat(self.scan.at_one_state.c.re.clone(), width);
            per_n.push(Stmt::Set { var: *a, value: Val::add(Val::Var(*a), Val::mul(ci, h.clone())) });
        }
        out.push(for_range(axis::STATE, c(0), c(n), per_n));
        out.push(Stmt::LetIndex { var: axis::STATE, value: c(0) });
        for (r, a) in acc.iter().enumerate() {
            let decay = Val::splat(load(s.from_start, row(r as u32)), width);
            out.push(Stmt::Set { var: *a, value: Val::mul(Val::Var(*a), decay) });
        }
        // + sum_s M[i, s] x_s (M is zero above the diagonal).
        let col = self.bld.var();
        let per_col =
            self.add_columns(col, &acc, width, |r| load(s.m, Index::add(Index::mul(row(r as u32), c(q)), var(col))));
        let cols = Index::min(Index::add(var(i0), c(i64::from(count))), len.clone());
        out.push(for_range(col, c(0), cols, per_col));
        // + D x, times silu(z); stored, or added to the first scan's y.
        for (r, a) in acc.iter().enumerate() {
            out.push(self.at_time(chunk, row(r as u32)));
            let mut y = Val::Var(*a);
            let skip = if width > 1 { self.scan.skip_by_element.clone() } else { self.scan.skip.clone() };
            let gate = &self.scan.gate;
            let x = load_lanes(s.x, Index::add(Index::mul(row(r as u32), self.p()), var(axis::HEADDIM)), width);
            if let Some(d) = skip {
                let d = if width > 1 && !is_vector(&d) { Val::splat(d, width) } else { d };
                y = Val::add(y, Val::mul(d, x));
            }
            if gate.is_some() {
                let z = load_lanes(s.gate, Index::add(Index::mul(row(r as u32), self.p()), var(axis::HEADDIM)), width);
                let z = self.bld.bind(&mut out, width, z);
                y = Val::mul(y, silu(z));
            }
            let (buf, index) = (self.spec.y.buf, self.spec.y.index.clone());
            let stride = self.spec.y_element_stride.clone();
            if self.k > 0 {
                y = Val::add(Val::Load { buf, index: index.clone(), lanes: width, stride: stride.clone() }, y);
            }
            out.push(if width > 1 {
                Stmt::StoreLanes { buf, index, stride, lanes: width, value: y }
            } else {
                Stmt::Store { buf, index, value: y }
            });
        }
        out
    }

    /// The body of a loop over the chunk's steps `col`: x of step `col` at the `width`
    /// elements from HEADDIM, times the scalar `coef(r)`, added to accumulator r of `acc`.
    fn add_columns(&mut self, col: Var, acc: &[Var], width: u32, coef: impl Fn(usize) -> Val) -> Vec<Stmt> {
        let mut body = Vec::new();
        let x = Index::add(Index::mul(var(col), self.p()), var(axis::HEADDIM));
        let x = self.bld.bind(&mut body, width, load_lanes(self.s.x, x, width));
        for (r, a) in acc.iter().enumerate() {
            let term = Val::mul(Val::splat(coef(r), width), x.clone());
            body.push(Stmt::Set { var: *a, value: Val::add(Val::Var(*a), term) });
        }
        body
    }

    /// carry_s B_s of the chunk into scratch [q][N].
    fn weighted_b(&mut self, out: &mut Vec<Stmt>, chunk: Var, len: &Index) {
        let (s, lanes, n) = (self.s, self.spec.lanes, self.n());
        let i = self.bld.var();
        let mut step = vec![self.at_time(chunk, var(i))];
        let w = Val::splat(load(s.carry, var(i)), lanes);
        let b = self.scan.b.re.clone();
        over_chunks(self.bld, &mut step, self.spec, looped(self.spec), |_, out, first| {
            out.push(Stmt::StoreLanes {
                buf: s.wb,
                index: Index::add(Index::mul(var(i), c(n)), first),
                stride: c(1),
                lanes,
                value: Val::mul(w.clone(), b.clone()),
            });
        });
        out.push(for_range(i, c(0), len.clone(), step));
        out.push(Stmt::LetIndex { var: axis::STATE, value: c(0) });
    }

    /// H = exp(cum_last) H + sum_s carry_s B_s x_s^T at the `width` elements from HEADDIM,
    /// state indices in blocks (one accumulator each).
    fn update(&mut self, len: &Index, width: u32) -> Vec<Stmt> {
        let s = self.s;
        let n = self.n();
        let block = [8, 4, 2, 1].into_iter().find(|b| n % b == 0).unwrap_or(1);
        let decay = self.bld.var();
        let mut out = vec![Stmt::Let {
            var: decay,
            lanes: width,
            value: Val::splat(load(s.from_start, Index::sub(len.clone(), c(1))), width),
        }];
        let nb = self.bld.var();
        let mut per_block = Vec::new();
        let first = Index::mul(var(nb), c(block));
        let at = |r: i64| Index::add(first.clone(), c(r));
        let acc: Vec<Var> = (0..block).map(|_| self.bld.var()).collect();
        for (r, a) in acc.iter().enumerate() {
            let h = load_lanes(s.state, self.state_index(at(r as i64), var(axis::HEADDIM)), width);
            per_block.push(Stmt::Let { var: *a, lanes: width, value: Val::mul(h, Val::Var(decay)) });
        }
        let col = self.bld.var();
        let per_col =
            self.add_columns(col, &acc, width, |r| load(s.wb, Index::add(Index::mul(var(col), c(n)), at(r as i64))));
        per_block.push(for_range(col, c(0), len.clone(), per_col));
        for (r, a) in acc.iter().enumerate() {
            per_block.push(if width > 1 {
                Stmt::StoreLanes {
                    buf: s.state,
                    index: self.state_index(at(r as i64), var(axis::HEADDIM)),
                    stride: c(1),
                    lanes: width,
                    value: Val::Var(*a),
                }
            } else {
                Stmt::Store {
                    buf: s.state,
                    index: self.state_index(at(r as i64), var(axis::HEADDIM)),
                    value: Val::Var(*a),
                }
            });
        }
        out.push(for_range(nb, c(0), c(n / block), per_block));
        out
    }
}

/// Whether a value is a vector (not a scalar to splat).
fn is_vector(v: &Val) -> bool {
    match v {
        Val::Load { lanes, .. } | Val::Splat(_, lanes) => *lanes > 1,
        Val::Const(_) | Val::Var(_) | Val::ReduceAdd(_) => false,
        Val::Un(_, a) | Val::Shuffle(_, a) | Val::WarpSum(a) => is_vector(a),
        Val::Bin(_, a, b) => is_vector(a) || is_vector(b),
        Val::Select(c, a, b) => is_vector(c) || is_vector(a) || is_vector(b),
    }
}

/// The sum of some values as a balanced tree (short dependency chains).
fn tree_sum(mut terms: Vec<Val>) -> Val {
    while terms.len() > 1 {
        terms = terms
            .chunks(2)
            .map(|p| if p.len() == 2 { Val::add(p[0].clone(), p[1].clone()) } else { p[0].clone() })
            .collect();
    }
    terms.pop().unwrap_or(Val::Const(0.0))
}
