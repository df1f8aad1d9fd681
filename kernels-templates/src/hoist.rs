//! Role values computed before the time loop (A, B, C when they do not depend on time, and
//! Abar, Bbar when dt does not either): in variables, one set per chunk of state lanes, or,
//! for large states, in a scratch array written by a loop over the state.

use crate::axis;
use crate::common::{discretize, Builder};
use crate::{Cx, Discretization, Mapping, ScanSpec, ScanVals};
use ssmc_loops::{Index, Stmt, Val};

/// Role values of one chunk of state lanes computed before the time loop: A, B and C when
/// they do not depend on time, and Abar, Bbar when dt does not either.
#[derive(Default)]
pub(crate) struct Hoisted {
    pub(crate) a: Option<Cx>,
    pub(crate) b: Option<Cx>,
    pub(crate) c: Option<Cx>,
    /// A log2(e) of a real, time-invariant A (lanes over heads or over the state of one
    /// sequence), for Abar = 2^(dt A log2 e): one multiply and a 2^x per step.
    pub(crate) a_log2e: Option<Val>,
    pub(crate) discrete: Option<(Cx, Cx)>,
}

/// Above this many chunks of state lanes a scan's state and hoisted values live in scratch
/// arrays and its step loops over the state in tiles of [`TILE`] chunks (code size and
/// build time independent of the state size); at or below it the step is unrolled over the
/// state, every chunk in registers (every stdlib layer: at most 32 chunks).
pub(crate) const MAX_UNROLLED: u32 = 32;

/// Chunks of state lanes unrolled per iteration of a loop over the state.
pub(crate) const TILE: u32 = 8;

/// Whether the scans of `spec` loop over the state instead of unrolling it.
pub(crate) fn looped(spec: &ScanSpec) -> bool {
    spec.state / spec.lanes > MAX_UNROLLED
}

impl Hoisted {
    /// The same values with each part replaced by `f(part)`, in a fixed order.
    pub(crate) fn map(&self, f: &mut dyn FnMut(&Val) -> Val) -> Hoisted {
        fn cx(c: &Option<Cx>, f: &mut dyn FnMut(&Val) -> Val) -> Option<Cx> {
            c.as_ref().map(|c| Cx { re: f(&c.re), im: c.im.as_ref().map(&mut *f) })
        }
        let a = cx(&self.a, f);
        let b = cx(&self.b, f);
        let c = cx(&self.c, f);
        let a_log2e = self.a_log2e.as_ref().map(&mut *f);
        let discrete = self.discrete.as_ref().map(|(abar, bbar)| {
            let abar = cx(&Some(abar.clone()), f).expect("some in, some out");
            (abar, cx(&Some(bbar.clone()), f).expect("some in, some out"))
        });
        Hoisted { a, b, c, a_log2e, discrete }
    }
}

/// Values of every state index of a work item in a scratch array: part `field` of the chunk
/// whose first state index is s at `(origin + field * plane + s) * seq_lanes` (+ the lane
/// when a work item holds `seq_lanes` sequences side by side).
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    /// Buffer position of the scratch array.
    pub(crate) buf: usize,
    /// Offset of the work item's (or head element's) values.
    pub(crate) origin: Index,
    /// Distance between fields.
    pub(crate) plane: Index,
    /// State lanes per chunk (1 with lanes over heads).
    pub(crate) lanes: u32,
    /// Sequences per work item.
    pub(crate) seq_lanes: u32,
}

impl Slots {
    fn index(&self, field: i64, state: Index) -> Index {
        let i = Index::add(Index::add(self.origin.clone(), Index::mul(Index::Const(field), self.plane.clone())), state);
        if self.seq_lanes > 1 {
            // Built by hand: `first + lane` is what codegen turns into one vector access.
            Index::Add(Box::new(Index::mul(i, Index::Const(i64::from(self.seq_lanes)))), Box::new(Index::Lane))
        } else {
            i
        }
    }

    /// Part `field` of the chunk at state index `state`.
    pub(crate) fn load(&self, field: i64, state: Index) -> Val {
        Val::Load { buf: self.buf, index: self.index(field, state), lanes: self.lanes, stride: Index::Const(1) }
    }

    /// Stores part `field` of the chunk at state index `state`.
    pub(crate) fn store(&self, field: i64, state: Index, value: Val) -> Stmt {
        let index = self.index(field, state);
        if self.lanes > 1 {
            Stmt::StoreLanes { buf: self.buf, index, stride: Index::Const(1), lanes: self.lanes, value }
        } else {
            Stmt::Store { buf: self.buf, index, value }
        }
    }
}

/// `each(out, first state index)` for every chunk of `lanes` state indices of `state`:
/// unrolled with constant indices, or (`looped`) one loop, STATE bound in either case.
pub(crate) fn over_chunks(
    bld: &mut Builder,
    out: &mut Vec<Stmt>,
    spec: &ScanSpec,
    looped: bool,
    mut each: impl FnMut(&mut Builder, &mut Vec<Stmt>, Index),
) {
    let (lanes, chunks) = (spec.lanes, spec.state / spec.lanes);
    if !looped {
        for j in 0..chunks {
            let first = Index::Const(i64::from(j * lanes));
            out.push(Stmt::LetIndex { var: axis::STATE, value: first.clone() });
            each(bld, out, first);
        }
        return;
    }
    let c = bld.var();
    let first = Index::mul(Index::Var(c), Index::Const(i64::from(lanes)));
    let mut body = vec![Stmt::LetIndex { var: axis::STATE, value: first }];
    each(bld, &mut body, Index::Var(axis::STATE));
    out.push(Stmt::For { var: c, lo: Index::Const(0), hi: Index::Const(i64::from(chunks)), reverse: false, body });
}

/// The hoisted values of one chunk of state lanes at state index `state` (STATE bound to it).
pub(crate) fn hoist_at(
    bld: &mut Builder,
    body: &mut Vec<Stmt>,
    spec: &ScanSpec,
    scan: &ScanVals,
    state: Index,
) -> Hoisted {
    let lanes = spec.lanes;
    body.push(Stmt::LetIndex { var: axis::STATE, value: state });
    let mut bind = |inv: bool, v: &Cx| inv.then(|| bld.bind_cx(body, lanes, v.clone()));
    let mut out = Hoisted {
        a: bind(scan.a_invariant, &scan.a),
        b: bind(scan.b_invariant, &scan.b),
        c: bind(scan.c_invariant, &scan.c),
        a_log2e: None,
        discrete: None,
    };
    let exp_of_dta = matches!(spec.discretization, Discretization::ZohEuler | Discretization::Zoh);
    let lanes_of_one_kind = matches!(spec.mapping, Mapping::HeadLanes { .. } | Mapping::StateLanes);
    if let (true, Some(a), true, false) = (lanes_of_one_kind, &out.a, exp_of_dta, scan.decay_invariant) {
        if a.im.is_none() {
            let log2e = Val::splat(Val::Const(std::f32::consts::LOG2_E), lanes);
            out.a_log2e = Some(bld.bind(body, lanes, Val::mul(a.re.clone(), log2e)));
        }
    }
    if scan.decay_invariant {
        let dt = scan.dt.clone().map(|v| bld.bind(body, 1, v));
        let (a, b) = (out.a.clone().unwrap_or_else(|| scan.a.clone()), out.b.clone().unwrap_or_else(|| scan.b.clone()));
        let (abar, bbar) = discretize(spec.discretization, dt.as_ref(), &a, None, &b, lanes);
        out.discrete = Some((bld.bind_cx(body, lanes, abar), bld.bind_cx(body, lanes, bbar)));
    }
    out
}

/// The hoisted values of every chunk of `chunks`, in variables, computed in `body`.
pub(crate) fn hoist(
    bld: &mut Builder,
    body: &mut Vec<Stmt>,
    spec: &ScanSpec,
    scan: &ScanVals,
    chunks: u32,
) -> Vec<Hoisted> {
    let lanes = spec.lanes;
    // TIME is not read by time-invariant values; bind it so every variable is defined.
    body.push(Stmt::LetIndex { var: axis::TIME, value: Index::Const(0) });
    (0..chunks).map(|j| hoist_at(bld, body, spec, scan, Index::Const(i64::from(j * lanes)))).collect()
}

/// The hoisted values of every chunk computed by a loop over the state in `body` into a new
/// scratch array (joining `scratch`, the kernel's list, numbered after the tensors); returns
/// them as loads at the state index STATE, for a step that binds it.
pub(crate) fn hoist_looped(
    bld: &mut Builder,
    body: &mut Vec<Stmt>,
    spec: &ScanSpec,
    scan: &ScanVals,
    scratch: &mut Vec<Index>,
    seq_lanes: u32,
) -> Hoisted {
    let n = i64::from(spec.state);
    let slots = Slots {
        buf: spec.buffers.len() + scratch.len(),
        origin: Index::Const(0),
        plane: Index::Const(n),
        lanes: spec.lanes,
        seq_lanes,
    };
    body.push(Stmt::LetIndex { var: axis::TIME, value: Index::Const(0) });
    let mut fields = 0;
    let mut loaded = Hoisted::default();
    over_chunks(bld, body, spec, true, |bld, each, state| {
        let one = hoist_at(bld, each, spec, scan, state.clone());
        loaded = one.map(&mut |v| {
            each.push(slots.store(fields, state.clone(), v.clone()));
            fields += 1;
            slots.load(fields - 1, Index::Var(axis::STATE))
        });
    });
    scratch.push(Index::Const(fields * n * i64::from(seq_lanes)));
    loaded
}
