//! Index expressions as the staging reads them: the variables one reads, the coefficient
//! of a variable in an affine one, and a variable replaced by an expression.

use ssmc_loops::{Index, Var};

/// Collects the variables `i` reads; false where it reads the lane or a built-in.
pub(crate) fn vars(i: &Index, out: &mut Vec<Var>) -> bool {
    match i {
        Index::Const(_) | Index::Dim(_) => true,
        Index::Var(v) => {
            if !out.contains(v) {
                out.push(*v);
            }
            true
        }
        Index::Lane | Index::Builtin(_) => false,
        Index::Add(a, b)
        | Index::Sub(a, b)
        | Index::Mul(a, b)
        | Index::Div(a, b)
        | Index::Rem(a, b)
        | Index::Min(a, b) => vars(a, out) && vars(b, out),
    }
}

pub(crate) fn reads(i: &Index, v: Var) -> bool {
    let mut used = Vec::new();
    !vars(i, &mut used) || used.contains(&v)
}

/// The coefficient of `v` in `i` where `i` is affine in `v` (its other terms free of it).
pub(crate) fn coefficient(i: &Index, v: Var) -> Option<Index> {
    match i {
        Index::Var(x) if *x == v => Some(Index::Const(1)),
        _ if !reads(i, v) => Some(Index::Const(0)),
        Index::Add(a, b) => Some(Index::add(coefficient(a, v)?, coefficient(b, v)?)),
        Index::Sub(a, b) => match coefficient(b, v)? {
            Index::Const(0) => coefficient(a, v),
            _ => None,
        },
        Index::Mul(a, b) if !reads(a, v) => Some(Index::mul((**a).clone(), coefficient(b, v)?)),
        Index::Mul(a, b) if !reads(b, v) => Some(Index::mul(coefficient(a, v)?, (**b).clone())),
        _ => None,
    }
}

/// `i` with `v` replaced by `by`.
pub(crate) fn subst(i: &Index, v: Var, by: &Index) -> Index {
    let go = |x: &Index| subst(x, v, by);
    match i {
        Index::Var(x) if *x == v => by.clone(),
        Index::Add(a, b) => Index::add(go(a), go(b)),
        Index::Sub(a, b) => Index::sub(go(a), go(b)),
        Index::Mul(a, b) => Index::mul(go(a), go(b)),
        Index::Div(a, b) => Index::div(go(a), go(b)),
        Index::Rem(a, b) => Index::rem(go(a), go(b)),
        Index::Min(a, b) => Index::min(go(a), go(b)),
        other => other.clone(),
    }
}
