//! Helpers every template shares: fresh variables ([`Builder`]), the discretization of
//! (dt, A, B), the work-item decoding of each [`Mapping`], and small loop-IR pieces.

use crate::axis;
use crate::{Cx, Discretization, Mapping, ScanSpec};
use ssmc_loops::{BinOp, Index, Stmt, UnOp, Val, Var};

/// Allocates fresh variables and binds values to them.
pub(crate) struct Builder {
    pub(crate) next: u32,
}

impl Builder {
    pub(crate) fn var(&mut self) -> Var {
        self.next += 1;
        Var(self.next)
    }

    /// Binds `v` to a fresh variable and returns the variable's value.
    pub(crate) fn bind(&mut self, out: &mut Vec<Stmt>, lanes: u32, value: Val) -> Val {
        let var = self.var();
        out.push(Stmt::Let { var, lanes, value });
        Val::Var(var)
    }

    pub(crate) fn bind_cx(&mut self, out: &mut Vec<Stmt>, lanes: u32, v: Cx) -> Cx {
        Cx { re: self.bind(out, lanes, v.re), im: v.im.map(|im| self.bind(out, lanes, im)) }
    }
}

/// (Abar, Bbar) from dt (a scalar), A and B (vectors); `a_log2e`, A log2(e) of a real A
/// when it is hoisted, gives Abar = 2^(dt A log2 e) without the product by log2(e).
pub(crate) fn discretize(
    d: Discretization,
    dt: Option<&Val>,
    a: &Cx,
    a_log2e: Option<&Val>,
    b: &Cx,
    lanes: u32,
) -> (Cx, Cx) {
    let one = Cx::constant(1.0, lanes);
    let dt = dt.map(|v| Val::splat(v.clone(), lanes)).unwrap_or(Val::splat(Val::Const(0.0), lanes));
    let dta = a.scale(&dt);
    let exp_dta = || match a_log2e {
        Some(a2) => Cx::real(Val::un(UnOp::Exp2, Val::mul(a2.clone(), dt.clone()))),
        None => dta.exp(),
    };
    match d {
        Discretization::ZohEuler => (exp_dta(), b.scale(&dt)),
        Discretization::Zoh => {
            let abar = exp_dta();
            let exact = dta.exp_m1().div(a).mul(b);
            let bbar = match (&a.im, &exact.im) {
                // Real A: near dt A = 0 the ratio loses digits; dt B (1 + dt A / 2) there.
                (None, None) => {
                    let small =
                        Val::bin(BinOp::Gt, Val::splat(Val::Const(1e-4), lanes), Val::un(UnOp::Abs, dta.re.clone()));
                    let series = Val::mul(
                        Val::mul(b.re.clone(), dt),
                        Val::add(
                            Val::splat(Val::Const(1.0), lanes),
                            Val::mul(dta.re.clone(), Val::splat(Val::Const(0.5), lanes)),
                        ),
                    );
                    Cx::real(Val::Select(Box::new(small), Box::new(series), Box::new(exact.re)))
                }
                _ => exact,
            };
            (abar, bbar)
        }
        Discretization::Bilinear => {
            let half = dta.scale(&Val::splat(Val::Const(0.5), lanes));
            let den = one.sub(&half);
            (one.add(&half).div(&den), b.scale(&dt).div(&den))
        }
        Discretization::Discrete => (a.clone(), b.clone()),
    }
}

pub(crate) fn state_at(j: u32, lanes: u32) -> Stmt {
    Stmt::LetIndex { var: axis::STATE, value: Index::Const((j * lanes) as i64) }
}

/// z * sigmoid(z).
pub(crate) fn silu(z: Val) -> Val {
    let sig = Val::div(Val::Const(1.0), Val::add(Val::Const(1.0), Val::un(UnOp::Exp, Val::un(UnOp::Neg, z.clone()))));
    Val::mul(z, sig)
}

/// Binds the axis variables of work item `seq`; returns the statements, the number of
/// work items, the sequences per item and the lane validity bound.
pub(crate) fn decode(spec: &ScanSpec, seq: Var, bld: &mut Builder) -> (Vec<Stmt>, Index, u32, Option<(Index, Index)>) {
    let w = Index::Var(seq);
    match spec.mapping {
        Mapping::StateLanes => {
            let pd = spec.headdim.clone();
            let body = vec![
                Stmt::LetIndex { var: axis::HEADDIM, value: Index::rem(w.clone(), pd.clone()) },
                Stmt::LetIndex {
                    var: axis::HEAD,
                    value: Index::rem(Index::div(w.clone(), pd.clone()), spec.heads.clone()),
                },
                Stmt::LetIndex { var: axis::BATCH, value: Index::div(w, Index::mul(pd.clone(), spec.heads.clone())) },
                Stmt::LetIndex {
                    var: axis::GROUP,
                    value: Index::div(Index::Var(axis::HEAD), spec.heads_per_group.clone()),
                },
            ];
            let items = Index::mul(Index::mul(spec.batch.clone(), spec.heads.clone()), pd);
            (body, items, 1, None)
        }
        Mapping::StateTiles { .. } => {
            // Work item (b, h): every element of the head, walked in time tiles.
            let body = vec![
                Stmt::LetIndex { var: axis::HEAD, value: Index::rem(w.clone(), spec.heads.clone()) },
                Stmt::LetIndex { var: axis::BATCH, value: Index::div(w, spec.heads.clone()) },
                Stmt::LetIndex {
                    var: axis::GROUP,
                    value: Index::div(Index::Var(axis::HEAD), spec.heads_per_group.clone()),
                },
            ];
            (body, Index::mul(spec.batch.clone(), spec.heads.clone()), 1, None)
        }
        Mapping::HeadLanes { lanes } => {
            // Work item (b, g, c): heads g*hpg + c*lanes + lane of batch row b, clamped to the
            // group's last head (those lanes repeat it and only count once).
            let hpg = spec.heads_per_group.clone();
            let per_group =
                Index::div(Index::add(hpg.clone(), Index::Const(lanes as i64 - 1)), Index::Const(lanes as i64));
            let chunk = bld.var();
            let first = Index::mul(Index::Var(chunk), Index::Const(lanes as i64));
            let in_group = Index::add(first, Index::Lane);
            let body = vec![
                Stmt::LetIndex { var: chunk, value: Index::rem(w.clone(), per_group.clone()) },
                Stmt::LetIndex {
                    var: axis::GROUP,
                    value: Index::rem(Index::div(w.clone(), per_group.clone()), spec.groups.clone()),
                },
                Stmt::LetIndex {
                    var: axis::BATCH,
                    value: Index::div(w, Index::mul(per_group.clone(), spec.groups.clone())),
                },
                Stmt::LetIndex { var: axis::HEADDIM, value: Index::Const(0) },
                Stmt::LetIndex {
                    var: axis::HEAD,
                    value: Index::add(
                        Index::mul(Index::Var(axis::GROUP), hpg.clone()),
                        Index::min(in_group.clone(), Index::sub(hpg.clone(), Index::Const(1))),
                    ),
                },
            ];
            let items = Index::mul(Index::mul(spec.batch.clone(), spec.groups.clone()), per_group);
            (body, items, lanes, Some((in_group, hpg)))
        }
    }
}
