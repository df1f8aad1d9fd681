//! The per-sequence values of a time step, found in a time loop's body so that they can be
//! computed once per (sequence, step) instead of once per thread: where a sequence's state
//! is split over threads ([`crate::state_split`]), each of them repeats its step's scalar
//! work (dt = softplus(delta + bias), dt x, silu(z)); [`crate::stage`] computes these values
//! while it copies a tile, one thread per (sequence, step), and the steps read them.
//!
//! A value is per-sequence when it is a scalar built from constants, loads that
//! `leaf` accepts (a sequence's tensors at the step), scalar variables bound before the
//! loop and other per-sequence values. The body's scalar bindings (`let v = ...`, directly
//! in the loop's body, bound once and never set) of per-sequence values are *derived
//! variables*; elsewhere, every largest per-sequence subexpression that computes something
//! (not a bare variable or constant) is a *derived expression*. Both are slots: the copy
//! stores each slot per (sequence, step), and [`Derived::apply`] reads them back.

use crate::affine::subst;
use crate::rewrite::{each_value, map_stmt, map_val};
use ssmc_loops::{Index, Stmt, Val, Var};
use std::collections::HashMap;

/// What a time loop's steps compute per sequence.
pub(crate) struct Derived {
    /// The derived variables and their values, in the body's order.
    pub(crate) lets: Vec<(Var, Val)>,
    /// The derived variables the rest of the body reads (those with a slot), in order.
    pub(crate) stored: Vec<Var>,
    /// The derived expressions.
    pub(crate) exprs: Vec<Val>,
}

impl Derived {
    /// Finds the per-sequence values of `body` (a time loop's); `leaf(load)` tells the loads
    /// of a sequence's tensors at the step, `scalar(v)` the scalar variables of the kernel.
    pub(crate) fn of(body: &[Stmt], leaf: &dyn Fn(&Val) -> bool, scalar: &dyn Fn(Var) -> bool) -> Derived {
        let mut bound: HashMap<Var, usize> = HashMap::new();
        let mut set = Vec::new();
        defined(body, &mut bound, &mut set);
        let outer = |v: Var| !bound.contains_key(&v) && !set.contains(&v) && scalar(v);
        let mut d = Derived { lets: Vec::new(), stored: Vec::new(), exprs: Vec::new() };
        for s in body {
            if let Stmt::Let { var, lanes: 1, value } = s {
                let once = bound.get(var) == Some(&1) && !set.contains(var);
                if once && d.per_sequence(value, leaf, &outer) {
                    d.lets.push((*var, value.clone()));
                    continue;
                }
            }
            d.find_exprs(s, leaf, &outer);
        }
        // Slots for the derived variables that the steps still read once the derived
        // expressions are replaced; the others only feed the copy's own computations.
        let mut read = Vec::new();
        let placeholder = |_| Val::Const(0.0);
        for s in d.apply(body, &placeholder) {
            reads(&s, &mut read);
        }
        d.stored = d.lets.iter().map(|(v, _)| *v).filter(|v| read.contains(v)).collect();
        d
    }

    /// The slots: stored derived variables, then derived expressions.
    pub(crate) fn slots(&self) -> usize {
        self.stored.len() + self.exprs.len()
    }

    /// The value slot `k` holds, with the variables of `lets` renamed by `names`.
    pub(crate) fn slot_value(&self, k: usize, names: &HashMap<Var, Var>) -> Val {
        match self.stored.get(k) {
            Some(var) => Val::Var(names[var]),
            None => rename(&self.exprs[k - self.stored.len()], names),
        }
    }

    fn per_sequence(&self, v: &Val, leaf: &dyn Fn(&Val) -> bool, outer: &dyn Fn(Var) -> bool) -> bool {
        let go = |x: &Val| self.per_sequence(x, leaf, outer);
        match v {
            Val::Const(_) => true,
            Val::Var(x) => outer(*x) || self.lets.iter().any(|(d, _)| d == x),
            Val::Load { .. } => leaf(v),
            Val::Un(_, a) => go(a),
            Val::Bin(_, a, b) => go(a) && go(b),
            Val::Select(c, a, b) => go(c) && go(a) && go(b),
            Val::Splat(..) | Val::ReduceAdd(_) | Val::Shuffle(..) | Val::WarpSum(_) => false,
        }
    }

    /// Adds the largest per-sequence subexpressions of `s` that compute something.
    fn find_exprs(&mut self, s: &Stmt, leaf: &dyn Fn(&Val) -> bool, outer: &dyn Fn(Var) -> bool) {
        each_value(s, false, &mut |v, _| self.find_in(v, leaf, outer));
    }

    fn find_in(&mut self, v: &Val, leaf: &dyn Fn(&Val) -> bool, outer: &dyn Fn(Var) -> bool) {
        if !matches!(v, Val::Const(_) | Val::Var(_)) && self.per_sequence(v, leaf, outer) {
            if !self.exprs.contains(v) {
                self.exprs.push(v.clone());
            }
            return;
        }
        match v {
            Val::Un(_, a) | Val::Splat(a, _) | Val::ReduceAdd(a) | Val::Shuffle(_, a) | Val::WarpSum(a) => {
                self.find_in(a, leaf, outer)
            }
            Val::Bin(_, a, b) => {
                self.find_in(a, leaf, outer);
                self.find_in(b, leaf, outer);
            }
            Val::Select(c, a, b) => {
                self.find_in(c, leaf, outer);
                self.find_in(a, leaf, outer);
                self.find_in(b, leaf, outer);
            }
            _ => {}
        }
    }

    /// `body` with each stored derived variable bound to `read(k)` of its slot, the other
    /// derived variables' bindings dropped, and each derived expression replaced by
    /// `read(k)`.
    pub(crate) fn apply(&self, body: &[Stmt], read: &dyn Fn(usize) -> Val) -> Vec<Stmt> {
        let dropped = |s: &Stmt| {
            matches!(s, Stmt::Let { var, .. }
                if self.lets.iter().any(|(d, _)| d == var) && !self.stored.contains(var))
        };
        let replace = |v: &Val| self.replace(v, read);
        body.iter()
            .filter(|s| !dropped(s))
            .map(|s| match s {
                Stmt::Let { var, lanes, .. } if self.stored.contains(var) => {
                    let k = self.stored.iter().position(|d| d == var).expect("a stored variable");
                    Stmt::Let { var: *var, lanes: *lanes, value: read(k) }
                }
                _ => map_stmt(s, &replace),
            })
            .collect()
    }

    fn replace(&self, v: &Val, read: &dyn Fn(usize) -> Val) -> Val {
        map_val(v, &|x| self.exprs.iter().position(|e| e == x).map(|j| read(self.stored.len() + j)))
    }
}

/// Adds the float variables `s` reads to `out`.
fn reads(s: &Stmt, out: &mut Vec<Var>) {
    each_value(s, false, &mut |v, _| {
        v.visit(&mut |x| {
            if let Val::Var(var) = x {
                out.push(*var);
            }
        })
    });
}

/// Counts the `let`s of each variable in `body` and lists the variables it sets.
fn defined(body: &[Stmt], bound: &mut HashMap<Var, usize>, set: &mut Vec<Var>) {
    for s in body {
        match s {
            Stmt::Let { var, .. } => *bound.entry(*var).or_default() += 1,
            Stmt::Set { var, .. } => set.push(*var),
            Stmt::For { body, .. } => defined(body, bound, set),
            Stmt::If { then, otherwise, .. } => {
                defined(then, bound, set);
                defined(otherwise, bound, set);
            }
            _ => {}
        }
    }
}

/// `v` with its variables renamed by `names` (others kept).
pub(crate) fn rename(v: &Val, names: &HashMap<Var, Var>) -> Val {
    map_val(v, &|x| match x {
        Val::Var(var) => names.get(var).map(|n| Val::Var(*n)),
        _ => None,
    })
}

/// `v` with the loads' indices at `var = by`.
pub(crate) fn at(v: &Val, var: Var, by: &Index) -> Val {
    map_val(v, &|x| match x {
        Val::Load { buf, index, lanes, stride } => {
            Some(Val::Load { buf: *buf, index: subst(index, var, by), lanes: *lanes, stride: subst(stride, var, by) })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssmc_loops::UnOp;

    fn load(buf: usize) -> Val {
        Val::Load { buf, index: Index::Var(crate::axis::TIME), lanes: 1, stride: Index::Const(1) }
    }

    /// A step: x = u[t]; dt = softplus(delta[t] + bias); h = h * exp(dt) + dt * x (a state
    /// var, set); y[t] = h * silu(z[t]), under a conditional.
    #[test]
    fn finds_the_per_sequence_values_of_a_step() {
        let (x, dt, h, bias) = (Var(10), Var(11), Var(12), Var(3));
        let silu = Val::mul(load(2), Val::un(UnOp::Exp, load(2)));
        let body = vec![
            Stmt::Let { var: x, lanes: 1, value: load(0) },
            Stmt::Let { var: dt, lanes: 1, value: Val::un(UnOp::Softplus, Val::add(load(1), Val::Var(bias))) },
            Stmt::Set {
                var: h,
                value: Val::add(
                    Val::mul(Val::Var(h), Val::un(UnOp::Exp, Val::Var(dt))),
                    Val::mul(Val::Var(dt), Val::Var(x)),
                ),
            },
            Stmt::If {
                cond: ssmc_loops::Cond::lt(Index::Const(0), Index::Const(1)),
                then: vec![Stmt::Store { buf: 9, index: Index::Const(0), value: Val::mul(Val::Var(h), silu.clone()) }],
                otherwise: vec![],
            },
        ];
        let leaf = |v: &Val| matches!(v, Val::Load { buf, .. } if *buf < 3);
        let d = Derived::of(&body, &leaf, &|v| v == bias);
        assert_eq!(d.lets.iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![x, dt]);
        // exp(dt) and dt x are per-sequence expressions of the state update; silu(z) of the store.
        let want = [Val::un(UnOp::Exp, Val::Var(dt)), Val::mul(Val::Var(dt), Val::Var(x)), silu];
        assert_eq!(d.exprs, want.to_vec());
        // Nothing reads x or dt once those expressions are slots: no variable slot.
        assert!(d.stored.is_empty(), "{:?}", d.stored);
        let read = |k: usize| Val::Const(k as f32);
        let applied = d.apply(&body, &read);
        // The derived bindings are gone; the set and the store read slots 0, 1 and 2.
        assert_eq!(applied.len(), 2);
        assert_eq!(
            applied[0],
            Stmt::Set { var: h, value: Val::add(Val::mul(Val::Var(h), Val::Const(0.0)), Val::Const(1.0)) }
        );
        // A state variable (set in the loop) is never per-sequence.
        let d = Derived::of(&body, &leaf, &|v| v == bias || v == h);
        let reads_h = |e: &Val| {
            let mut found = false;
            e.visit(&mut |x| found |= *x == Val::Var(h));
            found
        };
        assert!(!d.exprs.iter().any(reads_h), "{:?}", d.exprs);
    }
}
