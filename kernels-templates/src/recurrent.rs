//! `recurrent` for CPU and GPU: one work item per sequence (batch, head, head element);
//! the state lives in `state / lanes` vectors of `lanes` f32 (two for a complex state);
//! time is sequential. Abar and Bbar are computed once when they do not depend on time.

use crate::{Cx, Discretization, ScanSpec, ScanVals};
use ssmc_loops::{axis, BinOp, Index, Kernel, Stmt, UnOp, Val, Var};

struct Builder {
    next: u32,
}

impl Builder {
    fn var(&mut self) -> Var {
        self.next += 1;
        Var(self.next)
    }

    /// Binds `v` to a fresh variable and returns the variable's value.
    fn bind(&mut self, out: &mut Vec<Stmt>, lanes: u32, value: Val) -> Val {
        let var = self.var();
        out.push(Stmt::Let { var, lanes, value });
        Val::Var(var)
    }

    fn bind_cx(&mut self, out: &mut Vec<Stmt>, lanes: u32, v: Cx) -> Cx {
        Cx { re: self.bind(out, lanes, v.re), im: v.im.map(|im| self.bind(out, lanes, im)) }
    }
}

/// (Abar, Bbar) from dt (a scalar), A and B (vectors).
fn discretize(d: Discretization, dt: Option<&Val>, a: &Cx, b: &Cx, lanes: u32) -> (Cx, Cx) {
    let one = Cx::constant(1.0, lanes);
    let dt = dt.map(|v| Val::splat(v.clone(), lanes)).unwrap_or(Val::splat(Val::Const(0.0), lanes));
    let dta = a.scale(&dt);
    match d {
        Discretization::ZohEuler => (dta.exp(), b.scale(&dt)),
        Discretization::Zoh => {
            let abar = dta.exp();
            let exact = abar.sub(&one).div(a).mul(b);
            let bbar = match (&a.im, &exact.im) {
                // Real A: near dt A = 0 the ratio loses digits; dt B (1 + dt A / 2) there.
                (None, None) => {
                    let small = Val::bin(BinOp::Gt, Val::splat(Val::Const(1e-4), lanes), Val::un(UnOp::Abs, dta.re.clone()));
                    let series = Val::mul(Val::mul(b.re.clone(), dt), Val::add(Val::splat(Val::Const(1.0), lanes), Val::mul(dta.re.clone(), Val::splat(Val::Const(0.5), lanes))));
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

/// The `recurrent` kernel of a layer.
pub fn recurrent(spec: &ScanSpec) -> Kernel {
    let seq = Var(axis::COUNT);
    let mut bld = Builder { next: axis::COUNT };
    let lanes = spec.lanes;
    let chunks = spec.state / lanes;
    let pd = spec.headdim.clone();
    let mut body = vec![
        Stmt::LetIndex { var: axis::HEADDIM, value: Index::rem(Index::Var(seq), pd.clone()) },
        Stmt::LetIndex { var: axis::HEAD, value: Index::rem(Index::div(Index::Var(seq), pd.clone()), spec.heads.clone()) },
        Stmt::LetIndex { var: axis::BATCH, value: Index::div(Index::Var(seq), Index::mul(pd, spec.heads.clone())) },
        Stmt::LetIndex { var: axis::GROUP, value: Index::div(Index::Var(axis::HEAD), spec.heads_per_group.clone()) },
    ];
    let state_at = |j: u32| Stmt::LetIndex { var: axis::STATE, value: Index::Const((j * lanes) as i64) };
    let complex = spec.pairs;
    for (k, scan) in spec.scans.iter().enumerate() {
        // The state, one vector (two if complex) per chunk of lanes.
        let mut h: Vec<Cx> = Vec::new();
        for j in 0..chunks {
            body.push(state_at(j));
            let start = match &spec.h0 {
                Some(p) => Val::Load { buf: p.buf, index: p.index.clone(), lanes, stride: p.state_stride.clone() },
                None => Val::splat(Val::Const(0.0), lanes),
            };
            let re = bld.bind(&mut body, lanes, start);
            let im = complex.then(|| bld.bind(&mut body, lanes, Val::splat(Val::Const(0.0), lanes)));
            h.push(Cx { re, im });
        }
        let hoisted = hoist(&mut bld, &mut body, spec, scan, chunks);
        let mut step = Vec::new();
        let x = bld.bind(&mut step, 1, scan.x.clone());
        let dt = match (&scan.dt, scan.decay_invariant) {
            (Some(dt), false) => Some(bld.bind(&mut step, 1, dt.clone())),
            _ => None,
        };
        let mut acc = bld.bind(&mut step, lanes, Val::splat(Val::Const(0.0), lanes));
        let acc_var = match acc {
            Val::Var(v) => v,
            _ => unreachable!("bind returns a variable"),
        };
        for j in 0..chunks as usize {
            step.push(state_at(j as u32));
            let (abar, bbar, c) = match &hoisted[j] {
                Some(h) => h.clone(),
                None => {
                    let a = bld.bind_cx(&mut step, lanes, scan.a.clone());
                    let b = bld.bind_cx(&mut step, lanes, scan.b.clone());
                    let (abar, bbar) = discretize(spec.discretization, dt.as_ref(), &a, &b, lanes);
                    let c = bld.bind_cx(&mut step, lanes, scan.c.clone());
                    (abar, bbar, c)
                }
            };
            let c = if scan.c_invariant || hoisted[j].is_none() { c } else { bld.bind_cx(&mut step, lanes, scan.c.clone()) };
            let next = abar.mul(&h[j]).add(&bbar.scale(&Val::splat(x.clone(), lanes)));
            let next = bld.bind_cx(&mut step, lanes, next);
            step.push(Stmt::Set { var: var_of(&h[j].re), value: next.re });
            if let (Some(him), Some(nim)) = (&h[j].im, next.im) {
                step.push(Stmt::Set { var: var_of(him), value: nim });
            }
            step.push(Stmt::Set { var: acc_var, value: Val::add(acc.clone(), c.mul_re(&h[j])) });
            acc = Val::Var(acc_var);
        }
        let scale = if spec.pairs { 2.0 } else { 1.0 };
        let mut y = Val::mul(Val::ReduceAdd(Box::new(acc)), Val::Const(scale));
        if let Some(d) = &scan.skip {
            y = Val::add(y, Val::mul(d.clone(), x.clone()));
        }
        if let Some(z) = &scan.gate {
            let z = bld.bind(&mut step, 1, z.clone());
            let sig = Val::div(Val::Const(1.0), Val::add(Val::Const(1.0), Val::un(UnOp::Exp, Val::un(UnOp::Neg, z.clone()))));
            y = Val::mul(y, Val::mul(z, sig));
        }
        let (buf, index) = (spec.y.buf, spec.y.index.clone());
        step.push(if k == 0 { Stmt::Store { buf, index, value: y } } else { Stmt::StoreAdd { buf, index, value: y } });
        body.push(Stmt::For { var: axis::TIME, lo: Index::Const(0), hi: spec.time.clone(), reverse: scan.reversed, body: step });
        if let Some(p) = &spec.h_final {
            for (j, hj) in h.iter().enumerate() {
                body.push(state_at(j as u32));
                body.push(Stmt::StoreLanes { buf: p.buf, index: p.index.clone(), stride: p.state_stride.clone(), lanes, value: hj.re.clone() });
            }
        }
    }
    Kernel {
        name: spec.name.clone(),
        buffers: spec.buffers.clone(),
        dims: spec.dims.clone(),
        seq,
        sequences: Index::mul(Index::mul(spec.batch.clone(), spec.heads.clone()), spec.headdim.clone()),
        body,
    }
}

/// Abar, Bbar (and C) per chunk, computed before the time loop when they do not depend on time.
fn hoist(bld: &mut Builder, body: &mut Vec<Stmt>, spec: &ScanSpec, scan: &ScanVals, chunks: u32) -> Vec<Option<(Cx, Cx, Cx)>> {
    let lanes = spec.lanes;
    (0..chunks)
        .map(|j| {
            if !scan.decay_invariant {
                return None;
            }
            body.push(Stmt::LetIndex { var: axis::STATE, value: Index::Const((j * lanes) as i64) });
            // TIME is not read by invariant values; bind it so every variable is defined.
            body.push(Stmt::LetIndex { var: axis::TIME, value: Index::Const(0) });
            let dt = scan.dt.clone().map(|v| bld.bind(body, 1, v));
            let a = bld.bind_cx(body, lanes, scan.a.clone());
            let b = bld.bind_cx(body, lanes, scan.b.clone());
            let (abar, bbar) = discretize(spec.discretization, dt.as_ref(), &a, &b, lanes);
            let abar = bld.bind_cx(body, lanes, abar);
            let bbar = bld.bind_cx(body, lanes, bbar);
            let c = if scan.c_invariant { bld.bind_cx(body, lanes, scan.c.clone()) } else { scan.c.clone() };
            Some((abar, bbar, c))
        })
        .collect()
}

fn var_of(v: &Val) -> Var {
    match v {
        Val::Var(v) => *v,
        _ => unreachable!("state values are variables"),
    }
}
