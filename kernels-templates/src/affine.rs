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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Index {
        Index::Var(Var(n))
    }

    #[test]
    fn coefficients_of_layout_indices() {
        // b * (D * L) + d * L + t: time at unit stride; d at L; a dim-free product of b.
        let (b, d, t) = (v(0), v(2), v(1));
        let l = Index::Dim(2);
        let i = Index::add(
            Index::add(Index::mul(b.clone(), Index::mul(Index::Dim(1), l.clone())), Index::mul(d.clone(), l.clone())),
            t.clone(),
        );
        assert_eq!(coefficient(&i, Var(1)), Some(Index::Const(1)));
        assert_eq!(coefficient(&i, Var(2)), Some(l.clone()));
        assert_eq!(coefficient(&i, Var(9)), Some(Index::Const(0)));
        // Time-major: (b * L + t) * D + d has time at stride D.
        let tm = Index::add(Index::mul(Index::add(Index::mul(b, l), t.clone()), Index::Dim(1)), d);
        assert_eq!(coefficient(&tm, Var(1)), Some(Index::Dim(1)));
        // Not affine in t: a quotient, a product of t with itself, a subtracted t.
        assert_eq!(coefficient(&Index::div(t.clone(), Index::Const(4)), Var(1)), None);
        assert_eq!(coefficient(&Index::mul(t.clone(), t.clone()), Var(1)), None);
        assert_eq!(coefficient(&Index::sub(Index::Const(9), t), Var(1)), None);
    }

    #[test]
    fn substitution_and_variables() {
        let i = Index::add(Index::mul(v(1), Index::Const(3)), v(5));
        assert_eq!(subst(&i, Var(1), &Index::Const(2)), Index::add(Index::Const(6), v(5)));
        let mut used = Vec::new();
        assert!(vars(&i, &mut used));
        assert_eq!(used, vec![Var(1), Var(5)]);
        assert!(reads(&i, Var(5)) && !reads(&i, Var(2)));
        // The lane and the built-ins are not variables a copy could substitute.
        assert!(!vars(&Index::add(i, Index::Lane), &mut Vec::new()));
    }
}
