//! `scan` on the GPU: a block-level associative scan over time. A block of [`THREADS`]
//! threads owns one sequence (batch, head, head element) and walks time in tiles of
//! [`THREADS`] steps, one step per thread. For each chunk of `lanes` state indices, every
//! thread forms its step's pair (Abar, Bbar x); the pairs are scanned within each warp by
//! shuffles, the warps' totals pass through shared memory (a barrier), and each thread
//! composes the carry from the previous tile with the totals of the warps before its own to
//! get its state; C . h accumulates into its output. The last valid thread leaves the
//! tile's final state as the next tile's carry (double-buffered by tile parity, so one
//! barrier per chunk and one per tile order everything). Pairs compose as
//! (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2), associative for a diagonal A, real or
//! complex.

use crate::axis;
use crate::common::{decode, discretize, silu, state_at, Builder};
use crate::{Cx, Discretization, Mapping, ScanSpec, ScanVals};
use ssmc_loops::{Builtin, Cond, Index, Kernel, Launch, Scratch, Shuffle, Stmt, Val, Var, WARP};

/// Threads per block, and steps per tile.
pub const THREADS: u32 = 128;

const WARPS: u32 = THREADS / WARP;

/// The block-scan kernel of a layer lowered for the GPU (one sequence per work item).
pub fn block_scan(spec: &ScanSpec) -> Result<Kernel, String> {
    if spec.mapping != Mapping::StateLanes {
        return Err("the block scan takes one sequence per work item (the GPU lowering)".into());
    }
    let seq = Var(axis::COUNT);
    let mut bld = Builder { next: axis::COUNT };
    let (mut body, work_items, _, _) = decode(spec, seq, &mut bld);
    let layout = Layout::of(spec);
    for (k, scan) in spec.scans.iter().enumerate() {
        body.extend(one_scan(&mut bld, spec, &layout, scan, k));
    }
    Ok(Kernel {
        name: spec.name.clone(),
        buffers: spec.buffers.clone(),
        dims: spec.dims.clone(),
        seq,
        work_items,
        launch: Launch::Grid { threads: THREADS, items_per_block: 1 },
        seq_lanes: 1,
        lane_limit: None,
        scratch: vec![Scratch::shared(layout.totals_size()), Scratch::shared(layout.carry_size())],
        body,
        host_conv: false,
    })
}

/// Where the shared arrays keep what threads exchange.
struct Layout {
    /// Buffer of the warps' totals: per chunk, part (a re, a im, b re, b im) and warp, one
    /// vector of `lanes`.
    totals: usize,
    /// Buffer of the carries: per parity, chunk and part (re, im), one vector.
    carry: usize,
    lanes: u32,
    chunks: u32,
    /// Parts of a complex number (2 for a complex state, else 1).
    parts: u32,
}

impl Layout {
    fn of(spec: &ScanSpec) -> Layout {
        let b = spec.buffers.len();
        let parts = if spec.pairs { 2 } else { 1 };
        Layout { totals: b, carry: b + 1, lanes: spec.lanes, chunks: spec.state / spec.lanes, parts }
    }

    fn totals_size(&self) -> Index {
        Index::Const(i64::from(self.chunks * 2 * self.parts * WARPS * self.lanes))
    }

    fn carry_size(&self) -> Index {
        Index::Const(i64::from(2 * self.chunks * self.parts * self.lanes))
    }

    /// Element index of chunk `j`'s total part `part` (0, 1: a; then b) of warp `warp`.
    fn total(&self, j: &Index, part: u32, warp: Index) -> Index {
        let row =
            Index::add(Index::mul(j.clone(), Index::Const(i64::from(2 * self.parts))), Index::Const(i64::from(part)));
        let row = Index::add(Index::mul(row, Index::Const(i64::from(WARPS))), warp);
        Index::mul(row, Index::Const(i64::from(self.lanes)))
    }

    /// Element index of chunk `j`'s carry part `part` at parity `parity`.
    fn carry(&self, parity: Index, j: &Index, part: u32) -> Index {
        let per_parity = i64::from(self.chunks * self.parts);
        let in_parity =
            Index::add(Index::mul(j.clone(), Index::Const(i64::from(self.parts))), Index::Const(i64::from(part)));
        let row = Index::add(Index::mul(parity, Index::Const(per_parity)), in_parity);
        Index::mul(row, Index::Const(i64::from(self.lanes)))
    }

    fn load(&self, buf: usize, index: Index) -> Val {
        Val::Load { buf, index, lanes: self.lanes, stride: Index::Const(1) }
    }

    fn store(&self, buf: usize, index: Index, value: Val) -> Stmt {
        Stmt::StoreLanes { buf, index, stride: Index::Const(1), lanes: self.lanes, value }
    }

    /// A complex value's parts: `[re]` or `[re, im]`, an absent imaginary part as zero.
    fn parts_of(&self, v: &Cx) -> Vec<Val> {
        let zero = Val::splat(Val::Const(0.0), self.lanes);
        let mut out = vec![v.re.clone()];
        if self.parts == 2 {
            out.push(v.im.clone().unwrap_or(zero));
        }
        out
    }

    fn cx(&self, parts: Vec<Val>) -> Cx {
        let mut it = parts.into_iter();
        let re = it.next().expect("a real part");
        Cx { re, im: it.next() }
    }
}

fn thread() -> Index {
    Index::builtin(Builtin::Thread)
}

fn when(cond: Cond, then: Vec<Stmt>) -> Stmt {
    Stmt::If { cond, then, otherwise: Vec::new() }
}

/// Binds every part of `v` to a fresh variable.
fn bind_parts(bld: &mut Builder, out: &mut Vec<Stmt>, lay: &Layout, v: &Cx) -> Cx {
    let parts = lay.parts_of(v).into_iter().map(|p| bld.bind(out, lay.lanes, p)).collect();
    lay.cx(parts)
}

/// Sets the variables of `to` to `value`, every part computed before any is set (the
/// parts of a complex product read each other).
fn set_parts(bld: &mut Builder, out: &mut Vec<Stmt>, lay: &Layout, to: &Cx, value: &Cx) {
    let value = bind_parts(bld, out, lay, value);
    for (var, v) in lay.parts_of(to).into_iter().zip(lay.parts_of(&value)) {
        let Val::Var(var) = var else { unreachable!("bound by bind_parts") };
        out.push(Stmt::Set { var, value: v });
    }
}

/// The statements of scan `k`: carry set up, the tiles, the final state.
fn one_scan(bld: &mut Builder, spec: &ScanSpec, lay: &Layout, scan: &ScanVals, k: usize) -> Vec<Stmt> {
    let lanes = lay.lanes;
    let time = spec.time.clone();
    // Every thread is done with the previous scan's carries and outputs.
    let mut out = vec![Stmt::Barrier];
    let mut init = Vec::new();
    for j in 0..lay.chunks {
        init.push(state_at(j, lanes));
        let start = match &spec.h0 {
            Some(p) => p.load(lanes),
            None => Val::splat(Val::Const(0.0), lanes),
        };
        let j = Index::Const(i64::from(j));
        init.push(lay.store(lay.carry, lay.carry(Index::Const(0), &j, 0), start));
        if lay.parts == 2 {
            init.push(lay.store(lay.carry, lay.carry(Index::Const(0), &j, 1), Val::splat(Val::Const(0.0), lanes)));
        }
    }
    out.push(when(Cond::eq(thread(), Index::Const(0)), init));
    out.push(Stmt::Barrier);

    let tile = bld.var();
    let t = i64::from(THREADS);
    let (parity, next) = (bld.var(), bld.var());
    let (step, valid, clamped) = (bld.var(), bld.var(), bld.var());
    let first = Index::mul(Index::Var(tile), Index::Const(t));
    let mut per_tile = vec![
        Stmt::LetIndex { var: parity, value: Index::rem(Index::Var(tile), Index::Const(2)) },
        Stmt::LetIndex { var: next, value: Index::sub(Index::Const(1), Index::Var(parity)) },
        Stmt::LetIndex { var: step, value: Index::add(first.clone(), thread()) },
        // Steps of this tile; threads past them compute a clamped step that no valid one reads.
        Stmt::LetIndex { var: valid, value: Index::min(Index::sub(time.clone(), first), Index::Const(t)) },
        Stmt::LetIndex { var: clamped, value: Index::min(Index::Var(step), Index::sub(time.clone(), Index::Const(1))) },
        Stmt::LetIndex {
            var: axis::TIME,
            value: if scan.reversed {
                Index::sub(Index::sub(time.clone(), Index::Const(1)), Index::Var(clamped))
            } else {
                Index::Var(clamped)
            },
        },
    ];
    let x = bld.bind(&mut per_tile, 1, scan.x.clone());
    let dt = scan.dt.as_ref().map(|dt| bld.bind(&mut per_tile, 1, dt.clone()));
    let dtx = match (spec.discretization, &dt) {
        (Discretization::ZohEuler, Some(dt)) => Some(bld.bind(&mut per_tile, 1, Val::mul(dt.clone(), x.clone()))),
        _ => None,
    };
    let acc = bld.var();
    per_tile.push(Stmt::Let { var: acc, lanes, value: Val::splat(Val::Const(0.0), lanes) });
    // The chunks in a loop, not unrolled: one chunk's values live at a time (registers).
    let j = bld.var();
    let one = chunk(bld, spec, lay, scan, &Index::Var(j), (&x, dt.as_ref(), dtx.as_ref()), (parity, next, valid), acc);
    let hi = Index::Const(i64::from(lay.chunks));
    per_tile.push(Stmt::For { var: j, lo: Index::Const(0), hi, reverse: false, body: one });
    let scale = if spec.pairs { 2.0 } else { 1.0 };
    let sum = if lanes > 1 { Val::ReduceAdd(Box::new(Val::Var(acc))) } else { Val::Var(acc) };
    let mut y = Val::mul(sum, Val::Const(scale));
    if let Some(d) = &scan.skip {
        y = Val::add(y, Val::mul(d.clone(), x.clone()));
    }
    if let Some(z) = &scan.gate {
        let z = bld.bind(&mut per_tile, 1, z.clone());
        y = Val::mul(y, silu(z));
    }
    let (buf, index) = (spec.y.buf, spec.y.index.clone());
    let store = if k == 0 { Stmt::Store { buf, index, value: y } } else { Stmt::StoreAdd { buf, index, value: y } };
    per_tile.push(when(Cond::lt(Index::Var(step), time.clone()), vec![store]));
    // The next tile reads the carry this one left, and overwrites the totals.
    per_tile.push(Stmt::Barrier);
    let tiles = Index::div_ceil(time, t);
    out.push(Stmt::For { var: tile, lo: Index::Const(0), hi: tiles.clone(), reverse: false, body: per_tile });

    if let Some(p) = &spec.h_final {
        let last = Index::rem(tiles, Index::Const(2));
        let mut fin = Vec::new();
        for j in 0..lay.chunks {
            fin.push(state_at(j, lanes));
            let value = lay.load(lay.carry, lay.carry(last.clone(), &Index::Const(i64::from(j)), 0));
            fin.push(p.store(lanes, value));
        }
        out.push(when(Cond::eq(thread(), Index::Const(0)), fin));
    }
    out
}

/// One chunk of `lanes` state indices in one tile: the pair of the thread's step, the scan
/// within the warp, the totals through shared memory, the state, C . h into `acc`.
#[allow(clippy::too_many_arguments)] // The step's values and the tile's indices, as the caller has them.
fn chunk(
    bld: &mut Builder,
    spec: &ScanSpec,
    lay: &Layout,
    scan: &ScanVals,
    j: &Index,
    (x, dt, dtx): (&Val, Option<&Val>, Option<&Val>),
    (parity, next, valid): (Var, Var, Var),
    acc: Var,
) -> Vec<Stmt> {
    let lanes = lay.lanes;
    let mut out =
        vec![Stmt::LetIndex { var: axis::STATE, value: Index::mul(j.clone(), Index::Const(i64::from(lanes))) }];
    let a = bld.bind_cx(&mut out, lanes, scan.a.clone());
    let b = bld.bind_cx(&mut out, lanes, scan.b.clone());
    let (abar, bbar) = discretize(spec.discretization, dt, &a, None, &b, lanes);
    let input = match dtx {
        Some(dtx) => b.scale(&Val::splat(dtx.clone(), lanes)),
        None => bbar.scale(&Val::splat(x.clone(), lanes)),
    };
    let pa = bind_parts(bld, &mut out, lay, &abar);
    let pb = bind_parts(bld, &mut out, lay, &input);
    // Inclusive scan within the warp: after the round of distance d, each lane holds the
    // composition of the 2d steps ending at it (fewer at the warp's start).
    let lane = Index::builtin(Builtin::WarpLane);
    let mut d = 1;
    while d < WARP {
        let up = |bld: &mut Builder, out: &mut Vec<Stmt>, v: &Cx| {
            let parts =
                lay.parts_of(v).into_iter().map(|p| bld.bind(out, lanes, Val::shuffle(Shuffle::Up(d), p))).collect();
            lay.cx(parts)
        };
        let (ua, ub) = (up(bld, &mut out, &pa), up(bld, &mut out, &pb));
        let mut compose = Vec::new();
        set_parts(bld, &mut compose, lay, &pb, &pa.mul(&ub).add(&pb));
        set_parts(bld, &mut compose, lay, &pa, &pa.mul(&ua));
        out.push(when(Cond::le(Index::Const(i64::from(d)), lane.clone()), compose));
        d *= 2;
    }
    let warp = Index::builtin(Builtin::Warp);
    let mut publish = Vec::new();
    for (part, v) in lay.parts_of(&pa).into_iter().chain(lay.parts_of(&pb)).enumerate() {
        publish.push(lay.store(lay.totals, lay.total(j, part as u32, warp.clone()), v));
    }
    out.push(when(Cond::eq(lane, Index::Const(i64::from(WARP - 1))), publish));
    out.push(Stmt::Barrier);
    // The state entering this warp: the carry, then every earlier warp's total.
    let carried: Vec<Val> =
        (0..lay.parts).map(|part| lay.load(lay.carry, lay.carry(Index::Var(parity), j, part))).collect();
    let h = bind_parts(bld, &mut out, lay, &lay.cx(carried));
    let w = bld.var();
    let total = |part: u32| lay.load(lay.totals, lay.total(j, part, Index::Var(w)));
    let ta = lay.cx((0..lay.parts).map(total).collect());
    let tb = lay.cx((lay.parts..2 * lay.parts).map(total).collect());
    let mut earlier = Vec::new();
    set_parts(bld, &mut earlier, lay, &h, &ta.mul(&h).add(&tb));
    out.push(Stmt::For { var: w, lo: Index::Const(0), hi: warp, reverse: false, body: earlier });
    let state = bind_parts(bld, &mut out, lay, &pa.mul(&h).add(&pb));
    let c = bld.bind_cx(&mut out, lanes, scan.c.clone());
    out.push(Stmt::Set { var: acc, value: Val::add(Val::Var(acc), c.mul_re(&state)) });
    let mut leave = Vec::new();
    for (part, v) in lay.parts_of(&state).into_iter().enumerate() {
        leave.push(lay.store(lay.carry, lay.carry(Index::Var(next), j, part as u32), v));
    }
    out.push(when(Cond::eq(thread(), Index::sub(Index::Var(valid), Index::Const(1))), leave));
    out
}
