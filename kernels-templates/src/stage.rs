//! Time tiles staged through shared memory on the GPU. A `recurrent` thread reads its
//! step's inputs one step at a time; with tensors laid out time-last (`[B, D, L]`) the
//! threads of a warp, each at another sequence, touch as many cache lines per load as they
//! hold sequences. Here a time loop walks tiles of `tile` steps instead: before each tile
//! the block's threads copy the tile's inputs into shared arrays with loads that
//! neighbouring threads make at neighbouring addresses, a barrier, then the steps read the
//! shared arrays, a barrier. Which loads are staged is read off their index expressions:
//!
//! - **Per group**: an index over batch, group, state and time only (B and C of a
//!   selective layer). Every sequence of the block reads the same values when the block's
//!   work items lie in one (batch, group), a condition on the block checked at run time
//!   (the same for all its threads): then the block copies the tile once, `tile x state`
//!   values, in the order of the tensor's unit stride. Blocks that straddle a group read
//!   these loads in place. Only where a warp holds several sequences (fewer than 32
//!   threads per sequence): a warp of one sequence reads each value once already, from
//!   neighbouring addresses where the state has unit stride, and the copy only adds work
//!   (Mamba-2: 23 ms in place, 54 ms staged, bench/NOTES.md).
//! - **Per sequence**: a scalar index over a sequence's axes and time (x, delta, z). Its
//!   loads are the leaves of the step's per-sequence values ([`crate::derive`]: x, dt =
//!   softplus(delta + bias), dt x, silu(z)), which the `split` threads of each sequence
//!   compute for the tile, consecutive steps on consecutive threads (neighbouring
//!   addresses where time has unit stride), each value once instead of once per thread.
//! - **Invariant**: an index over batch, head, element and group only (a bias), outside
//!   any conditional: read once, before the loop.
//!
//! Everything else stays in place. Shared rows are padded so that neither the copies nor
//! the reads of one warp fall on one bank twice (bench/NOTES.md).

use crate::affine::{coefficient, subst, vars};
use crate::axis;
use crate::derive::{at, rename, Derived};
use crate::rewrite::{each_value, map_val, map_values, per_sequence_rounds};
use ssmc_loops::{Builtin, Cond, Index, Scratch, Stmt, Val, Var, WARP};
use std::collections::{HashMap, HashSet};

/// The block a kernel's threads form, as [`crate::state_split`] lays it out.
pub(crate) struct Block {
    /// Threads per block.
    pub threads: u32,
    /// Consecutive threads that share a sequence.
    pub split: u32,
    /// The block's first work item.
    pub first: Index,
    /// Work items per (batch, group): sequences `s` and `t` share them iff `s / per_group
    /// == t / per_group`.
    pub per_group: Index,
    /// State indices.
    pub state: u32,
    /// Tensors of the kernel: scratch array k is buffer `tensors + k`.
    pub tensors: usize,
    /// The kernel's scalar float variables.
    pub scalars: HashSet<Var>,
    /// Output tensors the kernel stores to in one statement only (y, where one scan writes
    /// it): their steps' values can leave through a shared copy.
    pub sole_stores: HashSet<usize>,
    /// This thread's sequence exists (threads past the end repeat the last one).
    pub valid: Cond,
}

/// How one load is staged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    PerGroup,
    PerSequence,
    Invariant,
}

/// A staged load: its source and where its copy lives.
struct Slot {
    class: Class,
    buf: usize,
    index: Index,
    stride: Index,
    /// The index reads the state index (a row of `state` values per step).
    states: bool,
    /// Time has unit stride in the source (copy steps fastest; per-group loads).
    time_fastest: bool,
    /// Shared buffer (or, for invariants, the variable).
    at: usize,
    var: Var,
}

impl Slot {
    /// `v` is a load of this slot's source.
    fn is_load_of(&self, v: &Val) -> bool {
        matches!(v, Val::Load { buf, index, stride, .. }
            if self.buf == *buf && self.index == *index && self.stride == *stride)
    }
}

/// `body` with every loop over [`axis::TIME`] (not nested in another) walked in staged
/// tiles of `tile` steps, `tile` a multiple of `block.split`; the shared arrays it needs
/// join `scratch` (the kernel's scratch arrays). `input(buf)` tells the tensors the kernel
/// never writes.
pub(crate) fn stage_time(
    body: Vec<Stmt>,
    block: &Block,
    tile: u32,
    input: &dyn Fn(usize) -> bool,
    scratch: &mut Vec<Scratch>,
    next: &mut u32,
) -> Vec<Stmt> {
    Pass { block, tile, input }.body(body, scratch, next)
}

/// What every time loop of one kernel is staged with.
struct Pass<'a> {
    block: &'a Block,
    tile: u32,
    input: &'a dyn Fn(usize) -> bool,
}

impl Pass<'_> {
    fn body(&self, body: Vec<Stmt>, scratch: &mut Vec<Scratch>, next: &mut u32) -> Vec<Stmt> {
        body.into_iter()
            .flat_map(|s| match s {
                Stmt::For { var, lo, hi, reverse, body } if var == axis::TIME => {
                    staged_loop((lo, hi), reverse, body, self, scratch, next)
                }
                Stmt::For { var, lo, hi, reverse, body } => {
                    vec![Stmt::For { var, lo, hi, reverse, body: self.body(body, scratch, next) }]
                }
                Stmt::If { cond, then, otherwise } => vec![Stmt::If {
                    cond,
                    then: self.body(then, scratch, next),
                    otherwise: self.body(otherwise, scratch, next),
                }],
                other => vec![other],
            })
            .collect()
    }
}

fn fresh(next: &mut u32) -> Var {
    *next += 1;
    Var(*next)
}

fn staged_loop(
    (lo, hi): (Index, Index),
    reverse: bool,
    body: Vec<Stmt>,
    pass: &Pass,
    scratch: &mut Vec<Scratch>,
    next: &mut u32,
) -> Vec<Stmt> {
    let (block, tile, input) = (pass.block, pass.tile, pass.input);
    let mut slots: Vec<Slot> = Vec::new();
    collect(&body, block, input, &mut slots, next);
    let t = i64::from(tile);
    let per_sequence_row = t + i64::from(block.split);
    let sequences = i64::from(block.threads / block.split);
    let mut out: Vec<Stmt> = slots
        .iter()
        .filter(|s| s.class == Class::Invariant)
        .map(|s| Stmt::Let {
            var: s.var,
            lanes: 1,
            value: Val::Load { buf: s.buf, index: s.index.clone(), lanes: 1, stride: s.stride.clone() },
        })
        .collect();
    let invariant: Vec<&Slot> = slots.iter().filter(|s| s.class == Class::Invariant).collect();
    let plain = replace_body(&body, &invariant, None);
    // The per-sequence values of a step, computed in the copy (loads of a sequence's
    // tensors at the step are their leaves).
    let leaf = |v: &Val| slots.iter().any(|s| s.class == Class::PerSequence && s.is_load_of(v));
    let scalar = |v: Var| block.scalars.contains(&v) || invariant.iter().any(|s| s.var == v);
    let derived = Derived::of(&plain, &leaf, &scalar);
    let mut per_sequence = Vec::new();
    for _ in 0..derived.slots() {
        per_sequence.push(block.tensors + scratch.len());
        scratch.push(Scratch::shared(Index::Const(sequences * per_sequence_row)));
    }
    for slot in slots.iter_mut().filter(|s| s.class == Class::PerGroup) {
        slot.at = block.tensors + scratch.len();
        scratch.push(Scratch::shared(Index::Const(t * row(slot, block.state))));
    }
    let per_group: Vec<&Slot> = slots.iter().filter(|s| s.class == Class::PerGroup).collect();
    if per_group.is_empty() && derived.slots() == 0 {
        out.push(Stmt::For { var: axis::TIME, lo, hi, reverse, body: plain });
        return out;
    }
    // Outputs leave through shared memory only in a staged walk (the tiles' barriers order
    // the row's writes and reads).
    let output = output_of(&plain, block).map(|(buf, index)| {
        let at = block.tensors + scratch.len();
        scratch.push(Scratch::shared(Index::Const(sequences * per_sequence_row)));
        Output { buf, index, at }
    });
    let tiles = Tiles { lo, hi, reverse, tile, per_sequence_row, t_lo: fresh(next), t_hi: fresh(next) };
    let staging = Staging { derived: &derived, per_sequence: &per_sequence, per_group: &[], output: output.as_ref() };
    let in_place = if derived.slots() > 0 {
        tiles.walk(block, &plain, &staging, next)
    } else {
        vec![Stmt::For { var: axis::TIME, lo: tiles.lo.clone(), hi: tiles.hi.clone(), reverse, body: plain.clone() }]
    };
    if per_group.is_empty() {
        out.extend(in_place);
        return out;
    }
    let staged = tiles.walk(block, &plain, &Staging { per_group: &per_group, ..staging }, next);
    // The block's last work item (threads past the end repeat the last one).
    let ipb = Index::Const(sequences);
    let last =
        Index::sub(Index::min(Index::add(block.first.clone(), ipb), Index::builtin(Builtin::End)), Index::Const(1));
    let group = |i: Index| Index::div(i, block.per_group.clone());
    out.push(Stmt::If { cond: Cond::eq(group(block.first.clone()), group(last)), then: staged, otherwise: in_place });
    out
}

/// What one staged walk copies: the per-sequence values (and the shared arrays of their
/// slots) and the per-group loads.
#[derive(Clone, Copy)]
struct Staging<'a> {
    derived: &'a Derived,
    per_sequence: &'a [usize],
    per_group: &'a [&'a Slot],
    output: Option<&'a Output>,
}

/// An output whose steps' values the steps leave in a per-sequence shared array and the
/// sequence's threads then store, consecutive steps on consecutive threads.
struct Output {
    buf: usize,
    index: Index,
    at: usize,
}

/// The output of `body` (a time loop's) to stage: the store of a tensor stored nowhere else,
/// at an index over a sequence's axes and time, time at unit stride.
fn output_of(body: &[Stmt], block: &Block) -> Option<(usize, Index)> {
    let mut found = None;
    for s in body {
        match s {
            Stmt::Store { buf, index, .. } if block.sole_stores.contains(buf) => {
                let mut used = Vec::new();
                let per_sequence = [axis::BATCH, axis::HEAD, axis::HEADDIM, axis::GROUP, axis::TIME];
                // Only where steps are neighbours in memory: elsewhere (time-major y) the
                // copy's stores are no better placed than the steps' own (Mamba-2: 12.3 ms
                // in place, 18.8 staged, bench/NOTES.md).
                let unit_time = coefficient(index, axis::TIME) == Some(Index::Const(1));
                if vars(index, &mut used) && unit_time && used.iter().all(|v| per_sequence.contains(v)) {
                    found = Some((*buf, index.clone()));
                }
            }
            Stmt::If { then, otherwise, .. } => {
                found = found.or(output_of(then, block)).or(output_of(otherwise, block));
            }
            _ => {}
        }
    }
    found
}

/// `body` with the store of `out` into its shared array (at the step's place in the row).
fn store_output(body: Vec<Stmt>, out: &Output, row: &Index) -> Vec<Stmt> {
    body.into_iter()
        .map(|s| match s {
            Stmt::Store { buf, index, value } if buf == out.buf && index == out.index => {
                Stmt::Store { buf: out.at, index: row.clone(), value }
            }
            Stmt::If { cond, then, otherwise } => {
                Stmt::If { cond, then: store_output(then, out, row), otherwise: store_output(otherwise, out, row) }
            }
            other => other,
        })
        .collect()
}

/// Elements per step of a per-group copy: one row of states, padded by one where steps
/// are copied fastest (consecutive threads a row apart would share banks).
fn row(slot: &Slot, state: u32) -> i64 {
    match (slot.states, slot.time_fastest) {
        (false, _) => 1,
        (true, false) => i64::from(state),
        (true, true) => i64::from(state) + 1,
    }
}

/// The staged walk of one time loop.
struct Tiles {
    lo: Index,
    hi: Index,
    reverse: bool,
    tile: u32,
    per_sequence_row: i64,
    t_lo: Var,
    t_hi: Var,
}

impl Tiles {
    /// The loop as tiles: copies, a barrier, the steps reading their copies, a barrier.
    fn walk(&self, block: &Block, body: &[Stmt], staging: &Staging, next: &mut u32) -> Vec<Stmt> {
        let t = i64::from(self.tile);
        let tile_var = fresh(next);
        let count = Index::div_ceil(Index::sub(self.hi.clone(), self.lo.clone()), t);
        let mut per_tile = vec![
            Stmt::LetIndex {
                var: self.t_lo,
                value: Index::add(self.lo.clone(), Index::mul(Index::Var(tile_var), Index::Const(t))),
            },
            Stmt::LetIndex {
                var: self.t_hi,
                value: Index::min(Index::add(Index::Var(self.t_lo), Index::Const(t)), self.hi.clone()),
            },
        ];
        for slot in staging.per_group {
            per_tile.extend(self.copy(block, slot, next));
        }
        if staging.derived.slots() > 0 {
            per_tile.extend(self.compute(block, staging, next));
        }
        per_tile.push(Stmt::Barrier);
        let step = Index::sub(Index::Var(axis::TIME), Index::Var(self.t_lo));
        let read = |k: usize| Val::Load {
            buf: staging.per_sequence[k],
            index: Index::add(self.sequence_row(block), step.clone()),
            lanes: 1,
            stride: Index::Const(1),
        };
        let steps = replace_body(body, staging.per_group, Some((self, block)));
        let mut steps = staging.derived.apply(&steps, &read);
        if let Some(out) = staging.output {
            steps = store_output(steps, out, &Index::add(self.sequence_row(block), step.clone()));
        }
        per_tile.push(Stmt::For {
            var: axis::TIME,
            lo: Index::Var(self.t_lo),
            hi: Index::Var(self.t_hi),
            reverse: self.reverse,
            body: steps,
        });
        per_tile.push(Stmt::Barrier);
        if let Some(out) = staging.output {
            per_tile.extend(self.store(block, out, next));
        }
        vec![Stmt::For { var: tile_var, lo: Index::Const(0), hi: count, reverse: self.reverse, body: per_tile }]
    }

    /// The statements that copy a per-group `slot`'s tile into its shared array, the whole
    /// block's threads in the order of the source's unit stride.
    fn copy(&self, block: &Block, slot: &Slot, next: &mut u32) -> Vec<Stmt> {
        let t = i64::from(self.tile);
        let thread = Index::builtin(Builtin::Thread);
        let source = |step: Index, state: Index| {
            let at = subst(&slot.index, axis::TIME, &Index::add(Index::Var(self.t_lo), step));
            let at = subst(&at, axis::STATE, &state);
            Val::Load { buf: slot.buf, index: at, lanes: 1, stride: Index::Const(1) }
        };
        let (round, step, state) = (fresh(next), fresh(next), fresh(next));
        let states = if slot.states { i64::from(block.state) } else { 1 };
        let total = t * states;
        let threads = i64::from(block.threads);
        let e = Index::add(Index::mul(Index::Var(round), Index::Const(threads)), thread);
        let (s, n) = if slot.time_fastest {
            (Index::rem(e.clone(), Index::Const(t)), Index::div(e.clone(), Index::Const(t)))
        } else {
            (Index::div(e.clone(), Index::Const(states)), Index::rem(e.clone(), Index::Const(states)))
        };
        let at = Index::add(Index::mul(Index::Var(step), Index::Const(row(slot, block.state))), Index::Var(state));
        let store = Stmt::Store { buf: slot.at, index: at, value: source(Index::Var(step), Index::Var(state)) };
        let body = vec![
            Stmt::LetIndex { var: step, value: s },
            Stmt::LetIndex { var: state, value: n },
            Stmt::If {
                cond: Cond::lt(e, Index::Const(total)),
                then: vec![Stmt::If { cond: self.in_tile(step), then: vec![store], otherwise: vec![] }],
                otherwise: vec![],
            },
        ];
        let rounds = (total + threads - 1) / threads;
        vec![Stmt::For { var: round, lo: Index::Const(0), hi: Index::Const(rounds), reverse: false, body }]
    }

    /// The statements that compute the tile's per-sequence values into their shared arrays:
    /// the `split` threads of each sequence, consecutive steps on consecutive threads.
    fn compute(&self, block: &Block, staging: &Staging, next: &mut u32) -> Vec<Stmt> {
        let split = i64::from(block.split);
        let (round, step) = (fresh(next), fresh(next));
        let time = Index::add(Index::Var(self.t_lo), Index::Var(step));
        let d = staging.derived;
        let names: HashMap<Var, Var> = d.lets.iter().map(|(v, _)| (*v, fresh(next))).collect();
        let mut then: Vec<Stmt> = d
            .lets
            .iter()
            .map(|(v, value)| Stmt::Let {
                var: names[v],
                lanes: 1,
                value: rename(&at(value, axis::TIME, &time), &names),
            })
            .collect();
        let slot = Index::add(self.sequence_row(block), Index::Var(step));
        for (k, &buf) in staging.per_sequence.iter().enumerate() {
            let value = at(&d.slot_value(k, &names), axis::TIME, &time);
            then.push(Stmt::Store { buf, index: slot.clone(), value });
        }
        let rounds = i64::from(self.tile) / split;
        vec![per_sequence_rounds(round, step, split, rounds, self.in_tile(step), then)]
    }

    /// The statements that store the tile's steps of `out` from its shared array, the
    /// `split` threads of each sequence, consecutive steps on consecutive threads (after
    /// the barrier that ends the steps; the next tile's first barrier orders them before
    /// the array is written again).
    fn store(&self, block: &Block, out: &Output, next: &mut u32) -> Vec<Stmt> {
        let split = i64::from(block.split);
        let (round, step) = (fresh(next), fresh(next));
        let time = Index::add(Index::Var(self.t_lo), Index::Var(step));
        let value = Val::Load {
            buf: out.at,
            index: Index::add(self.sequence_row(block), Index::Var(step)),
            lanes: 1,
            stride: Index::Const(1),
        };
        let store = Stmt::Store { buf: out.buf, index: subst(&out.index, axis::TIME, &time), value };
        let valid = Stmt::If { cond: block.valid.clone(), then: vec![store], otherwise: vec![] };
        let rounds = i64::from(self.tile) / split;
        vec![per_sequence_rounds(round, step, split, rounds, self.in_tile(step), vec![valid])]
    }

    /// Step `step` of the tile exists.
    fn in_tile(&self, step: Var) -> Cond {
        Cond::lt(Index::add(Index::Var(self.t_lo), Index::Var(step)), Index::Var(self.t_hi))
    }

    /// The first element of this thread's sequence in a per-sequence array.
    fn sequence_row(&self, block: &Block) -> Index {
        let sequence = Index::div(Index::builtin(Builtin::Thread), Index::Const(i64::from(block.split)));
        Index::mul(sequence, Index::Const(self.per_sequence_row))
    }

    /// Where a step reads a per-group `slot`'s value.
    fn read(&self, block: &Block, slot: &Slot, lanes: u32) -> Val {
        let step = Index::sub(Index::Var(axis::TIME), Index::Var(self.t_lo));
        let state = if slot.states { Index::Var(axis::STATE) } else { Index::Const(0) };
        let index = Index::add(Index::mul(step, Index::Const(row(slot, block.state))), state);
        Val::Load { buf: slot.at, index, lanes, stride: Index::Const(1) }
    }
}

/// Finds the loads of `body` (a time loop's) that can be staged.
fn collect(body: &[Stmt], block: &Block, input: &dyn Fn(usize) -> bool, slots: &mut Vec<Slot>, next: &mut u32) {
    // A warp that holds one sequence reads a group's values once per step already.
    let one_per_warp = block.split >= WARP;
    let mut found = |v: &Val, guarded: bool| {
        v.visit(&mut |x| {
            if let Val::Load { buf, index, lanes, stride } = x {
                if !input(*buf) || slots.iter().any(|s| s.is_load_of(x)) {
                    return;
                }
                let classified = classify(index, *lanes, stride, guarded);
                if let Some((class, states, time_fastest)) =
                    classified.filter(|c| !(c.0 == Class::PerGroup && one_per_warp))
                {
                    let (buf, index, stride) = (*buf, index.clone(), stride.clone());
                    let var = fresh(next);
                    slots.push(Slot { class, buf, index, stride, states, time_fastest, at: 0, var });
                }
            }
        })
    };
    for s in body {
        each_value(s, false, &mut found);
    }
}

/// How a load at `index` (of `lanes` lanes `stride` apart) is staged: its class, whether
/// it reads the state index, whether time has unit stride; `None` to leave it in place.
fn classify(index: &Index, lanes: u32, stride: &Index, guarded: bool) -> Option<(Class, bool, bool)> {
    let mut used = Vec::new();
    if !vars(index, &mut used) || !vars(stride, &mut used) {
        return None;
    }
    let has = |v: Var| used.contains(&v);
    let only = |allowed: &[Var]| used.iter().all(|v| allowed.contains(v));
    let per_sequence = [axis::BATCH, axis::HEAD, axis::HEADDIM, axis::GROUP];
    if !has(axis::TIME) {
        return (lanes == 1 && !guarded && only(&per_sequence)).then_some((Class::Invariant, false, false));
    }
    if lanes == 1 && only(&[axis::BATCH, axis::HEAD, axis::HEADDIM, axis::GROUP, axis::TIME]) {
        return Some((Class::PerSequence, false, false));
    }
    if !only(&[axis::BATCH, axis::GROUP, axis::STATE, axis::TIME]) {
        return None;
    }
    let time_fastest = coefficient(index, axis::TIME)? == Index::Const(1);
    let states = has(axis::STATE);
    let lanes_fit = if states { lanes == 1 || coefficient(index, axis::STATE)? == *stride } else { lanes == 1 };
    lanes_fit.then_some((Class::PerGroup, states, time_fastest))
}

/// `body` with the loads of `slots` read from their copies (`tiles`; invariants from their
/// variables).
fn replace_body(body: &[Stmt], slots: &[&Slot], tiles: Option<(&Tiles, &Block)>) -> Vec<Stmt> {
    let copy = |x: &Val| match x {
        Val::Load { lanes, .. } => {
            let slot = slots.iter().find(|s| s.is_load_of(x))?;
            match tiles {
                _ if slot.class == Class::Invariant => Some(Val::Var(slot.var)),
                Some((tiles, block)) => Some(tiles.read(block, slot, *lanes)),
                None => None,
            }
        }
        _ => None,
    };
    map_values(body, &|v| map_val(v, &copy))
}
