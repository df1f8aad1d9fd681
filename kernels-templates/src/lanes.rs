//! Staging for [`Mapping::HeadLanes`](crate::Mapping::HeadLanes): the time loop of a scan
//! whose vector lanes hold heads, rewritten so that lane-varying loads and stores along
//! time go through transposed scratch tiles instead of a gather or scatter per step.

use crate::axis;
use crate::common::Builder;
use crate::ScanSpec;
use ssmc_loops::{CpuStmt, Index, Stmt, Val};

/// Whether an index differs between the lanes of a work item of `Mapping::HeadLanes` (it
/// reads the head, which decode binds per lane).
fn per_lane(i: &Index) -> bool {
    mentions(i, &|i| matches!(i, Index::Lane | Index::Var(axis::HEAD)))
}

/// Whether `i` or a part of it satisfies `hit`.
fn mentions(i: &Index, hit: &dyn Fn(&Index) -> bool) -> bool {
    hit(i)
        || match i {
            Index::Add(a, b)
            | Index::Sub(a, b)
            | Index::Mul(a, b)
            | Index::Div(a, b)
            | Index::Rem(a, b)
            | Index::Min(a, b) => mentions(a, hit) || mentions(b, hit),
            Index::Const(_) | Index::Dim(_) | Index::Var(_) | Index::Lane | Index::Builtin(_) => false,
        }
}

/// `base` of an index `base + t` at time t: the tensor's steps are adjacent in memory.
fn time_run(i: &Index) -> Option<&Index> {
    match i {
        Index::Add(base, t) if **t == Index::Var(axis::TIME) && !mentions(base, &|i| *i == Index::Var(axis::TIME)) => {
            Some(&**base)
        }
        _ => None,
    }
}

/// Rewrites the time loop of a scan with lanes over heads (`steps`' last statement), where
/// a lane-varying load or store is a gather or scatter of one element per lane:
/// - loads that do not depend on time (delta_bias) are read once before the loop;
/// - the time loop walks tiles of `lanes` steps; for every lane-varying tensor read or
///   written along its contiguous time axis (not by state index), a tile of `lanes` steps of all lanes is
///   transposed into (or out of) a scratch tile, and each step reads (writes) one vector;
/// - the steps past the last whole tile run as before.
pub(crate) fn stage_lanes(
    bld: &mut Builder,
    spec: &ScanSpec,
    mut steps: Vec<Stmt>,
    scratch: &mut Vec<Index>,
    lanes: u32,
) -> Vec<Stmt> {
    let Some(Stmt::For { var, lo, hi, reverse, body: step }) = steps.pop() else {
        unreachable!("scan_steps ends with the time loop")
    };
    let first_tile = spec.buffers.len();
    let s = Index::Const(i64::from(lanes));
    let tile_var = bld.var();
    let t0 = Index::add(lo.clone(), Index::mul(Index::Var(tile_var), s.clone()));
    let slot = Index::add(Index::mul(Index::sub(Index::Var(var), t0.clone()), s.clone()), Index::Lane);
    let mut st = Stager {
        bld,
        spec,
        hoisted: Vec::new(),
        tiles: Vec::new(),
        outs: Vec::new(),
        loads: Vec::new(),
        scratch,
        first_tile,
        lanes,
    };
    let tail: Vec<Stmt> = step.iter().map(|x| st.stmt(x, None)).collect();
    let tiled: Vec<Stmt> = step.iter().map(|x| st.stmt(x, Some(&slot))).collect();
    let moves = |list: &[(usize, Index, usize)], into_tile| {
        list.iter()
            .map(|(buf, base, tile)| {
                Stmt::Cpu(CpuStmt::Transpose {
                    buf: *buf,
                    index: Index::add(base.clone(), t0.clone()),
                    tile: *tile,
                    count: lanes,
                    into_tile,
                })
            })
            .collect::<Vec<_>>()
    };
    let mut tile_body = moves(&st.tiles, true);
    tile_body.push(Stmt::For { var, lo: t0.clone(), hi: Index::add(t0.clone(), s.clone()), reverse, body: tiled });
    tile_body.extend(moves(&st.outs, false));
    let whole = Index::div(Index::sub(hi.clone(), lo.clone()), s.clone());
    let rest = Index::add(lo, Index::mul(whole.clone(), s));
    let tiles = Stmt::For { var: tile_var, lo: Index::Const(0), hi: whole, reverse, body: tile_body };
    let tail = Stmt::For { var, lo: rest, hi, reverse, body: tail };
    steps.append(&mut st.hoisted);
    // A reverse scan starts at the end: the steps past the last whole tile first.
    steps.extend(if reverse { [tail, tiles] } else { [tiles, tail] });
    steps
}

/// The rewriting of [`stage_lanes`]: what it hoisted and which tiles it made.
struct Stager<'a> {
    bld: &'a mut Builder,
    spec: &'a ScanSpec,
    /// Lets of the time-invariant lane-varying loads, run before the loop.
    hoisted: Vec<Stmt>,
    /// (tensor, `base` of its index `base + t`, scratch tile) read per tile.
    tiles: Vec<(usize, Index, usize)>,
    /// The same, written per tile.
    outs: Vec<(usize, Index, usize)>,
    /// The hoisted loads and their variables.
    loads: Vec<(Val, Val)>,
    /// The kernel's scratch arrays, which the tiles join.
    scratch: &'a mut Vec<Index>,
    /// Buffer position of the kernel's first scratch array.
    first_tile: usize,
    /// Sequences per work item, and steps per tile.
    lanes: u32,
}

impl Stager<'_> {
    /// The scratch tile of (buf, base), made on first use.
    fn tile(&mut self, buf: usize, base: &Index, output: bool) -> usize {
        let list = if output { &mut self.outs } else { &mut self.tiles };
        if let Some(&(_, _, t)) = list.iter().find(|(b, i, _)| *b == buf && i == base) {
            return t;
        }
        let t = self.first_tile + self.scratch.len();
        self.scratch.push(Index::Const(i64::from(self.lanes * self.lanes)));
        list.push((buf, base.clone(), t));
        t
    }

    /// A step statement; with `slot` (the step's index in a tile), staged through tiles.
    fn stmt(&mut self, s: &Stmt, slot: Option<&Index>) -> Stmt {
        let by_state = |i: &Index| *i == Index::Var(axis::STATE);
        match s {
            Stmt::Let { var, lanes, value } => Stmt::Let { var: *var, lanes: *lanes, value: self.val(value, slot) },
            Stmt::Set { var, value } => Stmt::Set { var: *var, value: self.val(value, slot) },
            Stmt::Store { buf, index, value } => {
                let value = self.val(value, slot);
                match (slot, time_run(index)) {
                    (Some(slot), Some(base)) if per_lane(base) && !mentions(base, &by_state) => {
                        Stmt::Store { buf: self.tile(*buf, base, true), index: slot.clone(), value }
                    }
                    _ => Stmt::Store { buf: *buf, index: index.clone(), value },
                }
            }
            Stmt::StoreAdd { buf, index, value } => {
                Stmt::StoreAdd { buf: *buf, index: index.clone(), value: self.val(value, slot) }
            }
            // The loop over a large state inside a step.
            Stmt::For { var, lo, hi, reverse, body } => Stmt::For {
                var: *var,
                lo: lo.clone(),
                hi: hi.clone(),
                reverse: *reverse,
                body: body.iter().map(|x| self.stmt(x, slot)).collect(),
            },
            Stmt::StoreLanes { buf, index, stride, lanes, value } => Stmt::StoreLanes {
                buf: *buf,
                index: index.clone(),
                stride: stride.clone(),
                lanes: *lanes,
                value: self.val(value, slot),
            },
            other => other.clone(),
        }
    }

    fn val(&mut self, v: &Val, slot: Option<&Index>) -> Val {
        match v {
            Val::Load { buf, index, lanes: 1, .. }
                if self.spec.buffers.get(*buf).is_some_and(|b| !b.output) && per_lane(index) =>
            {
                let in_step = |i: &Index| matches!(i, Index::Var(axis::TIME) | Index::Var(axis::STATE));
                if !mentions(index, &in_step) {
                    if let Some((_, var)) = self.loads.iter().find(|(load, _)| load == v) {
                        return var.clone();
                    }
                    let var = self.bld.bind(&mut self.hoisted, 1, v.clone());
                    self.loads.push((v.clone(), var.clone()));
                    return var;
                }
                // Not by state index (C of a lane's head): the tile is filled before the step.
                match (slot, time_run(index)) {
                    (Some(slot), Some(base)) if !mentions(base, &in_step) => Val::Load {
                        buf: self.tile(*buf, base, false),
                        index: slot.clone(),
                        lanes: 1,
                        stride: Index::Const(1),
                    },
                    _ => v.clone(),
                }
            }
            Val::Un(op, a) => Val::Un(*op, Box::new(self.val(a, slot))),
            Val::Bin(op, a, b) => Val::Bin(*op, Box::new(self.val(a, slot)), Box::new(self.val(b, slot))),
            Val::Select(c, a, b) => {
                Val::Select(Box::new(self.val(c, slot)), Box::new(self.val(a, slot)), Box::new(self.val(b, slot)))
            }
            Val::Splat(a, n) => Val::Splat(Box::new(self.val(a, slot)), *n),
            Val::ReduceAdd(a) => Val::ReduceAdd(Box::new(self.val(a, slot))),
            Val::Shuffle(how, a) => Val::Shuffle(*how, Box::new(self.val(a, slot))),
            Val::WarpSum(a) => Val::WarpSum(Box::new(self.val(a, slot))),
            Val::Const(_) | Val::Var(_) | Val::Load { .. } => v.clone(),
        }
    }
}
