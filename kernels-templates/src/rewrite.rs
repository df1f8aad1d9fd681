//! Rebuilding loop-IR values and statements with some of their nodes replaced: what the
//! staging passes ([`crate::stage`], [`crate::derive`]) do to a time loop's body.

use ssmc_loops::{Stmt, Val};

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
