//! Rebuilding loop-IR values and statements with some of their nodes replaced: what the
//! staging passes ([`crate::stage`], [`crate::derive`]) do to a time loop's body.

use ssmc_loops::{Index, Stmt, Val, Var};

/// `v` rebuilt top-down: a node for which `f` gives a replacement becomes it, every other
/// node is rebuilt from its rebuilt operands.
pub(crate) fn map_val(v: &Val, f: &dyn Fn(&Val) -> Option<Val>) -> Val {
    if let Some(new) = f(v) {
        return new;
    }
    let go = |x: &Val| Box::new(map_val(x, f));
    match v {
        Val::Un(op, a) => Val::Un(*op, go(a)),
        Val::Bin(op, a, b) => Val::Bin(*op, go(a), go(b)),
        Val::Select(c, a, b) => Val::Select(go(c), go(a), go(b)),
        Val::Splat(a, lanes) => Val::Splat(go(a), *lanes),
        Val::ReduceAdd(a) => Val::ReduceAdd(go(a)),
        Val::Shuffle(how, a) => Val::Shuffle(*how, go(a)),
        Val::WarpSum(a) => Val::WarpSum(go(a)),
        other => other.clone(),
    }
}

/// `body` with every float value its statements compute (bound, set or stored, in loops
/// and conditionals too) replaced by `f` of it; indices, bounds and conditions unchanged.
pub(crate) fn map_values(body: &[Stmt], f: &dyn Fn(&Val) -> Val) -> Vec<Stmt> {
    body.iter().map(|s| map_stmt(s, f)).collect()
}

/// One statement of [`map_values`].
pub(crate) fn map_stmt(s: &Stmt, f: &dyn Fn(&Val) -> Val) -> Stmt {
    match s {
        Stmt::Let { var, lanes, value } => Stmt::Let { var: *var, lanes: *lanes, value: f(value) },
        Stmt::Set { var, value } => Stmt::Set { var: *var, value: f(value) },
        Stmt::Store { buf, index, value } => Stmt::Store { buf: *buf, index: index.clone(), value: f(value) },
        Stmt::StoreAdd { buf, index, value } => Stmt::StoreAdd { buf: *buf, index: index.clone(), value: f(value) },
        Stmt::StoreLanes { buf, index, stride, lanes, value } => {
            Stmt::StoreLanes { buf: *buf, index: index.clone(), stride: stride.clone(), lanes: *lanes, value: f(value) }
        }
        Stmt::AtomicAdd { buf, index, value } => Stmt::AtomicAdd { buf: *buf, index: index.clone(), value: f(value) },
        Stmt::For { var, lo, hi, reverse, body } => {
            Stmt::For { var: *var, lo: lo.clone(), hi: hi.clone(), reverse: *reverse, body: map_values(body, f) }
        }
        Stmt::If { cond, then, otherwise } => {
            Stmt::If { cond: cond.clone(), then: map_values(then, f), otherwise: map_values(otherwise, f) }
        }
        other => other.clone(),
    }
}

/// Calls `f` on every float value `s` computes (in loops and conditionals too), with
/// whether it is below a conditional (`guarded`, or an `if` on the way).
pub(crate) fn each_value(s: &Stmt, guarded: bool, f: &mut dyn FnMut(&Val, bool)) {
    match s {
        Stmt::Let { value, .. }
        | Stmt::Set { value, .. }
        | Stmt::Store { value, .. }
        | Stmt::StoreAdd { value, .. }
        | Stmt::StoreLanes { value, .. }
        | Stmt::AtomicAdd { value, .. } => f(value, guarded),
        Stmt::For { body, .. } => body.iter().for_each(|s| each_value(s, guarded, f)),
        Stmt::If { then, otherwise, .. } => then.iter().chain(otherwise).for_each(|s| each_value(s, true, f)),
        _ => {}
    }
}

/// The loop over `rounds` in which each of a sequence's `split` threads takes steps
/// `round * split + (thread % split)` of a tile, binding the step to `step` and running
/// `body` where `in_tile` (the step exists): how the staging's per-sequence copies spread
/// a tile over a sequence's threads.
pub(crate) fn per_sequence_rounds(
    round: Var,
    step: Var,
    split: i64,
    rounds: i64,
    in_tile: ssmc_loops::Cond,
    body: Vec<Stmt>,
) -> Stmt {
    let thread = Index::builtin(ssmc_loops::Builtin::Thread);
    let first = Index::add(Index::mul(Index::Var(round), Index::Const(split)), Index::rem(thread, Index::Const(split)));
    let body =
        vec![Stmt::LetIndex { var: step, value: first }, Stmt::If { cond: in_tile, then: body, otherwise: vec![] }];
    Stmt::For { var: round, lo: Index::Const(0), hi: Index::Const(rounds), reverse: false, body }
}
