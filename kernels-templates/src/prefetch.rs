//! Loads issued ahead on the GPU: a time loop unrolled by `steps`, every load of an input
//! tensor in the unrolled steps issued first, then the steps computed. A GPU thread stalls
//! on each load it uses (hundreds of cycles from memory); a step's loads never depend on
//! the floats the steps before it computed, only on integer indices, so the loads of
//! `steps` steps can all be in flight together. Stores to outputs between the steps would
//! otherwise keep the compiler from moving later loads above them (it cannot tell that
//! the buffers do not overlap).
//!
//! Which loads move: those of input tensors (never written by the kernel) in statements
//! directly in the loop's body; loads under a conditional or an inner loop stay where they
//! are, and so does everything else. Integer bindings are repeated in the load phase, so
//! every moved load sees the indices it saw in place.

use crate::axis;
use crate::grid::max_var;
use ssmc_loops::{Index, Kernel, Stmt, Val, Var};

/// `k` with the loads of its input tensors issued `steps` time steps at a time
/// ([`prefetch_time`] over its body). Target-independent: the CPU runs it too, which is how
/// `tests/native_cpu.rs` checks the rewrite against the interpreter.
pub fn prefetched(k: Kernel, steps: u32) -> Kernel {
    let mut next = max_var(&k).0;
    let buffers = k.buffers.clone();
    let input = |b: usize| buffers.get(b).is_some_and(|buf| !buf.output);
    let body = prefetch_time(k.body, steps, &input, &mut next);
    Kernel { body, ..k }
}

/// Rewrites every loop over [`axis::TIME`] in `body`: whole groups of `steps` steps with
/// their input loads first, then the steps left over one at a time, in the loop's order.
/// `input(buf)` tells whether a buffer is an input tensor; `next` numbers fresh variables.
pub(crate) fn prefetch_time(body: Vec<Stmt>, steps: u32, input: &dyn Fn(usize) -> bool, next: &mut u32) -> Vec<Stmt> {
    body.into_iter()
        .flat_map(|s| match s {
            Stmt::For { var, lo, hi, reverse, body } if var == axis::TIME && steps > 1 => {
                unrolled(var, (lo, hi), reverse, body, steps, input, next)
            }
            Stmt::For { var, lo, hi, reverse, body } => {
                vec![Stmt::For { var, lo, hi, reverse, body: prefetch_time(body, steps, input, next) }]
            }
            Stmt::If { cond, then, otherwise } => vec![Stmt::If {
                cond,
                then: prefetch_time(then, steps, input, next),
                otherwise: prefetch_time(otherwise, steps, input, next),
            }],
            other => vec![other],
        })
        .collect()
}

fn fresh(next: &mut u32) -> Var {
    *next += 1;
    Var(*next)
}

/// The loop `time in lo..hi` as groups of `steps` and a remainder.
fn unrolled(
    time: Var,
    (lo, hi): (Index, Index),
    reverse: bool,
    body: Vec<Stmt>,
    steps: u32,
    input: &dyn Fn(usize) -> bool,
    next: &mut u32,
) -> Vec<Stmt> {
    let u = i64::from(steps);
    let (group, first) = (fresh(next), fresh(next));
    let groups = Index::div(Index::sub(hi.clone(), lo.clone()), Index::Const(u));
    let split = Index::add(lo.clone(), Index::mul(groups.clone(), Index::Const(u)));
    let (mut loads, mut compute) = (Vec::new(), Vec::new());
    let order: Vec<i64> = if reverse { (0..u).rev().collect() } else { (0..u).collect() };
    for k in order {
        let at = Stmt::LetIndex { var: time, value: Index::add(Index::Var(first), Index::Const(k)) };
        loads.push(at.clone());
        compute.push(at);
        for s in &body {
            match s {
                Stmt::LetIndex { .. } => {
                    loads.push(s.clone());
                    compute.push(s.clone());
                }
                Stmt::Let { var, lanes, value } => {
                    let value = lift(value, &mut loads, input, next);
                    compute.push(Stmt::Let { var: *var, lanes: *lanes, value });
                }
                Stmt::Set { var, value } => {
                    let value = lift(value, &mut loads, input, next);
                    compute.push(Stmt::Set { var: *var, value });
                }
                Stmt::Store { buf, index, value } => {
                    let value = lift(value, &mut loads, input, next);
                    compute.push(Stmt::Store { buf: *buf, index: index.clone(), value });
                }
                Stmt::StoreAdd { buf, index, value } => {
                    let value = lift(value, &mut loads, input, next);
                    compute.push(Stmt::StoreAdd { buf: *buf, index: index.clone(), value });
                }
                other => compute.push(other.clone()),
            }
        }
    }
    let mut group_body = vec![Stmt::LetIndex {
        var: first,
        value: Index::add(lo.clone(), Index::mul(Index::Var(group), Index::Const(u))),
    }];
    group_body.extend(loads);
    group_body.extend(compute);
    let whole = Stmt::For { var: group, lo: Index::Const(0), hi: groups, reverse, body: group_body };
    let rest = Stmt::For { var: time, lo: split, hi, reverse, body };
    // Backward in time, the steps left over at the end come first.
    if reverse {
        vec![rest, whole]
    } else {
        vec![whole, rest]
    }
}

/// `v` with every load of an input tensor replaced by a fresh variable bound in `loads`.
fn lift(v: &Val, loads: &mut Vec<Stmt>, input: &dyn Fn(usize) -> bool, next: &mut u32) -> Val {
    let mut go = |x: &Val| lift(x, loads, input, next);
    match v {
        Val::Load { buf, lanes, .. } if input(*buf) => {
            let var = fresh(next);
            loads.push(Stmt::Let { var, lanes: *lanes, value: v.clone() });
            Val::Var(var)
        }
        Val::Un(op, a) => Val::Un(*op, Box::new(go(a))),
        Val::Bin(op, a, b) => {
            let a = go(a);
            Val::Bin(*op, Box::new(a), Box::new(go(b)))
        }
        Val::Select(c, a, b) => {
            let c = go(c);
            let a = go(a);
            Val::Select(Box::new(c), Box::new(a), Box::new(go(b)))
        }
        Val::Splat(a, lanes) => Val::Splat(Box::new(go(a)), *lanes),
        Val::ReduceAdd(a) => Val::ReduceAdd(Box::new(go(a))),
        Val::Shuffle(how, a) => Val::Shuffle(*how, Box::new(go(a))),
        Val::WarpSum(a) => Val::WarpSum(Box::new(go(a))),
        other => other.clone(),
    }
}
