//! `recurrent` for CPU and GPU: one work item per sequence (batch, head, head element);
//! the state lives in `state / lanes` vectors of `lanes` f32 (two for a complex state);
//! time is sequential. Abar and Bbar are computed once when they do not depend on time.

use crate::{Cx, Discretization, Mapping, ScanSpec, ScanVals};
use ssmc_loops::{axis, BinOp, Index, Kernel, Stmt, UnOp, Val, Var};

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

/// The `recurrent` kernel of a layer.
pub fn recurrent(spec: &ScanSpec) -> Kernel {
    let seq = Var(axis::COUNT);
    let mut bld = Builder { next: axis::COUNT };
    let lanes = spec.lanes;
    let chunks = spec.state / lanes;
    let (mut body, work_items, seq_lanes, lane_limit) = decode(spec, seq, &mut bld);
    let complex = spec.pairs;
    let mut scratch = Vec::new();
    for (k, scan) in spec.scans.iter().enumerate() {
        match spec.mapping {
            Mapping::StateTiles { time_tile } => {
                let parts = if complex { 2 } else { 1 };
                let size = Index::mul(spec.headdim.clone(), Index::Const(i64::from(spec.state) * parts));
                if scratch.is_empty() {
                    // The element states, then dt, Abar and silu(z) of one time tile.
                    let tile = Index::Const(i64::from(time_tile));
                    let gates = Index::mul(tile.clone(), spec.headdim.clone());
                    scratch.extend([size, tile.clone(), tile, gates]);
                }
                tiled_scan(&mut bld, &mut body, spec, scan, k, time_tile);
            }
            Mapping::StateLanes | Mapping::HeadLanes { .. } => {
                // The state, one vector (two if complex) per chunk of lanes.
                let mut h: Vec<Cx> = Vec::new();
                for j in 0..chunks {
                    body.push(state_at(j, lanes));
                    let start = match &spec.h0 {
                        Some(p) => {
                            Val::Load { buf: p.buf, index: p.index.clone(), lanes, stride: p.state_stride.clone() }
                        }
                        None => Val::splat(Val::Const(0.0), lanes),
                    };
                    let re = bld.bind(&mut body, lanes, start);
                    let im = complex.then(|| bld.bind(&mut body, lanes, Val::splat(Val::Const(0.0), lanes)));
                    h.push(Cx { re, im });
                }
                let time = (Index::Const(0), spec.time.clone());
                let steps = scan_steps(&mut bld, spec, scan, k, &h, time, None);
                match spec.mapping {
                    Mapping::HeadLanes { lanes } if lanes > 1 => {
                        body.extend(stage_lanes(&mut bld, spec, steps, &mut scratch, lanes))
                    }
                    _ => body.extend(steps),
                }
                if let Some(p) = &spec.h_final {
                    for (j, hj) in h.iter().enumerate() {
                        body.push(state_at(j as u32, lanes));
                        body.push(Stmt::StoreLanes {
                            buf: p.buf,
                            index: p.index.clone(),
                            stride: p.state_stride.clone(),
                            lanes,
                            value: hj.re.clone(),
                        });
                    }
                }
            }
        }
    }
    Kernel {
        name: spec.name.clone(),
        buffers: spec.buffers.clone(),
        dims: spec.dims.clone(),
        seq,
        sequences: work_items,
        seq_lanes,
        lane_limit,
        scratch,
        body,
        host_conv: false,
    }
}

pub(crate) fn state_at(j: u32, lanes: u32) -> Stmt {
    Stmt::LetIndex { var: axis::STATE, value: Index::Const((j * lanes) as i64) }
}

/// The hoisted values and the time loop `lo..hi` of scan `k`, updating the state `h`.
/// z * sigmoid(z).
pub(crate) fn silu(z: Val) -> Val {
    let sig = Val::div(Val::Const(1.0), Val::add(Val::Const(1.0), Val::un(UnOp::Exp, Val::un(UnOp::Neg, z.clone()))));
    Val::mul(z, sig)
}

/// dt and, for a real A shared by the state, Abar of each step, computed before the loop
/// that reads them (once per time tile for all elements of a head).
struct Staged {
    dt: Val,
    abar: Option<Val>,
    /// silu(z) of the step's element.
    gate: Option<Val>,
}

fn scan_steps(
    bld: &mut Builder,
    spec: &ScanSpec,
    scan: &ScanVals,
    k: usize,
    h: &[Cx],
    (lo, hi): (Index, Index),
    staged: Option<&Staged>,
) -> Vec<Stmt> {
    let lanes = spec.lanes;
    let mut body = Vec::new();
    let pre = hoist(bld, &mut body, spec, scan, h.len() as u32);
    let skip = match (&scan.skip, scan.skip_invariant) {
        (Some(d), true) => Some(bld.bind(&mut body, 1, d.clone())),
        (d, _) => d.clone(),
    };
    let mut step = Vec::new();
    let x = bld.bind(&mut step, 1, scan.x.clone());
    let dt = match (&scan.dt, scan.decay_invariant, staged) {
        (Some(_), false, Some(st)) => Some(bld.bind(&mut step, 1, st.dt.clone())),
        (Some(dt), false, None) => Some(bld.bind(&mut step, 1, dt.clone())),
        _ => None,
    };
    // C . h per chunk, summed as a balanced tree (short dependency chains).
    let mut terms = Vec::new();
    // One A for the whole state (Mamba-2): its Abar once per step, not once per chunk.
    let shared = match (&pre[0].discrete, scan.a_shared, staged.and_then(|st| st.abar.as_ref())) {
        (None, true, Some(abar)) => {
            step.push(state_at(0, lanes));
            let a = pre[0].a.clone().unwrap_or_else(|| bld.bind_cx(&mut step, lanes, scan.a.clone()));
            Some((a, Cx::real(bld.bind(&mut step, lanes, Val::splat(abar.clone(), lanes)))))
        }
        (None, true, None) => {
            step.push(state_at(0, lanes));
            let a = pre[0].a.clone().unwrap_or_else(|| bld.bind_cx(&mut step, lanes, scan.a.clone()));
            let (abar, _) = discretize(spec.discretization, dt.as_ref(), &a, None, &a, lanes);
            Some((a, bld.bind_cx(&mut step, lanes, abar)))
        }
        _ => None,
    };
    // Zoh-Euler: Bbar x = B (dt x), with dt x once per step instead of a product per chunk.
    let dtx = match (spec.discretization, &dt) {
        (Discretization::ZohEuler, Some(dt)) => Some(bld.bind(&mut step, 1, Val::mul(dt.clone(), x.clone()))),
        _ => None,
    };
    let xs = Val::splat(x.clone(), lanes);
    for (j, pre) in pre.iter().enumerate() {
        step.push(state_at(j as u32, lanes));
        // Abar and the input term Bbar x of this chunk of state lanes.
        let input = |b: &Cx, bbar: Cx| match &dtx {
            Some(dtx) => b.scale(&Val::splat(dtx.clone(), lanes)),
            None => bbar.scale(&xs),
        };
        let (abar, input) = match (&pre.discrete, &shared) {
            (Some((abar, bbar)), _) => (abar.clone(), bbar.scale(&xs)),
            (None, Some((a, abar))) => {
                let b = pre.b.clone().unwrap_or_else(|| bld.bind_cx(&mut step, lanes, scan.b.clone()));
                let bbar = discretize(spec.discretization, dt.as_ref(), a, None, &b, lanes).1;
                (abar.clone(), input(&b, bbar))
            }
            (None, None) => {
                let a = pre.a.clone().unwrap_or_else(|| bld.bind_cx(&mut step, lanes, scan.a.clone()));
                let b = pre.b.clone().unwrap_or_else(|| bld.bind_cx(&mut step, lanes, scan.b.clone()));
                let a_log2e = pre.a_log2e.as_ref();
                let (abar, bbar) = discretize(spec.discretization, dt.as_ref(), &a, a_log2e, &b, lanes);
                (abar, input(&b, bbar))
            }
        };
        let c = pre.c.clone().unwrap_or_else(|| bld.bind_cx(&mut step, lanes, scan.c.clone()));
        let next = abar.mul(&h[j]).add(&input);
        let next = bld.bind_cx(&mut step, lanes, next);
        step.push(Stmt::Set { var: var_of(&h[j].re), value: next.re });
        if let (Some(him), Some(nim)) = (&h[j].im, next.im) {
            step.push(Stmt::Set { var: var_of(him), value: nim });
        }
        terms.push(bld.bind(&mut step, lanes, c.mul_re(&h[j])));
    }
    let scale = if spec.pairs { 2.0 } else { 1.0 };
    while terms.len() > 1 {
        let mut next: Vec<Val> = terms
            .chunks(2)
            .map(|p| if p.len() == 2 { Val::add(p[0].clone(), p[1].clone()) } else { p[0].clone() })
            .collect();
        std::mem::swap(&mut terms, &mut next);
    }
    let acc = terms.pop().unwrap_or_else(|| Val::splat(Val::Const(0.0), lanes));
    let sum = if lanes > 1 { Val::ReduceAdd(Box::new(acc)) } else { acc };
    let mut y = Val::mul(sum, Val::Const(scale));
    if let Some(d) = &skip {
        y = Val::add(y, Val::mul(d.clone(), x.clone()));
    }
    match (&scan.gate, staged.and_then(|st| st.gate.as_ref())) {
        (Some(_), Some(g)) => y = Val::mul(y, g.clone()),
        (Some(z), None) => {
            let z = bld.bind(&mut step, 1, z.clone());
            y = Val::mul(y, silu(z));
        }
        (None, _) => {}
    }
    let (buf, index) = (spec.y.buf, spec.y.index.clone());
    step.push(if k == 0 { Stmt::Store { buf, index, value: y } } else { Stmt::StoreAdd { buf, index, value: y } });
    body.push(Stmt::For { var: axis::TIME, lo, hi, reverse: scan.reversed, body: step });
    body
}

/// Scan `k` over time tiles: for each tile, every element p of the head in turn, its state
/// loaded from and stored back to a scratch tile of P x N, so that B and C of the tile stay
/// in cache for all P elements.
fn tiled_scan(bld: &mut Builder, body: &mut Vec<Stmt>, spec: &ScanSpec, scan: &ScanVals, k: usize, tile: u32) {
    let (lanes, chunks) = (spec.lanes, spec.state / spec.lanes);
    let scratch = spec.buffers.len();
    let n = i64::from(spec.state);
    let plane = Index::mul(spec.headdim.clone(), Index::Const(n));
    let at = |j: u32, part: i64| {
        let base =
            Index::add(Index::mul(Index::Var(axis::HEADDIM), Index::Const(n)), Index::Const(i64::from(j * lanes)));
        Index::add(base, Index::mul(plane.clone(), Index::Const(part)))
    };
    let parts: &[i64] = if spec.pairs { &[0, 1] } else { &[0] };
    // The initial state of every element into the scratch tile.
    let mut init = Vec::new();
    for j in 0..chunks {
        init.push(state_at(j, lanes));
        for &part in parts {
            let value = match (&spec.h0, part) {
                (Some(p), 0) => Val::Load { buf: p.buf, index: p.index.clone(), lanes, stride: p.state_stride.clone() },
                _ => Val::splat(Val::Const(0.0), lanes),
            };
            init.push(Stmt::StoreLanes { buf: scratch, index: at(j, part), stride: Index::Const(1), lanes, value });
        }
    }
    body.push(Stmt::For {
        var: axis::HEADDIM,
        lo: Index::Const(0),
        hi: spec.headdim.clone(),
        reverse: false,
        body: init,
    });
    let t = i64::from(tile);
    let tiles = Index::div(Index::add(spec.time.clone(), Index::Const(t - 1)), Index::Const(t));
    let tile_var = bld.var();
    let mut per_element = Vec::new();
    let mut h = Vec::new();
    for j in 0..chunks {
        per_element.push(state_at(j, lanes));
        let load = |part: i64| Val::Load { buf: scratch, index: at(j, part), lanes, stride: Index::Const(1) };
        let re = bld.bind(&mut per_element, lanes, load(0));
        let im = spec.pairs.then(|| bld.bind(&mut per_element, lanes, load(1)));
        h.push(Cx { re, im });
    }
    let lo = Index::mul(Index::Var(tile_var), Index::Const(t));
    let hi = Index::min(Index::add(lo.clone(), Index::Const(t)), spec.time.clone());
    // dt (and a shared real Abar) of the tile, once for all elements: they do not depend on
    // the element (sema keeps dt and A off the headdim axis).
    let mut stage = Vec::new();
    let staged = match (&scan.dt, scan.decay_invariant) {
        (Some(dt_val), false) => {
            let (dt_buf, abar_buf) = (scratch + 1, scratch + 2);
            let slot = Index::sub(Index::Var(axis::TIME), lo.clone());
            let mut fill = vec![state_at(0, lanes)];
            let dt = bld.bind(&mut fill, 1, dt_val.clone());
            fill.push(Stmt::Store { buf: dt_buf, index: slot.clone(), value: dt.clone() });
            let real_shared = scan.a_shared && scan.a.im.is_none();
            if real_shared {
                // A is lowered at the state's vector width; lane 0 is stored.
                let a = Cx::real(bld.bind(&mut fill, lanes, scan.a.re.clone()));
                let (abar, _) = discretize(spec.discretization, Some(&dt), &a, None, &a, lanes);
                fill.push(Stmt::Store { buf: abar_buf, index: slot.clone(), value: abar.re });
            }
            // silu(z) of every (step, element) of the tile: an inner loop over the elements,
            // contiguous in z for the usual layouts, that LLVM vectorizes.
            let gate_slot = Index::add(Index::mul(slot.clone(), spec.headdim.clone()), Index::Var(axis::HEADDIM));
            if let (Some(z), Some(z_lanes)) = (&scan.gate, &scan.gate_by_element) {
                // Whole vectors of elements first, then the elements left over one by one.
                let width = Index::Const(i64::from(lanes));
                let full = Index::div(spec.headdim.clone(), width.clone());
                let chunk = bld.var();
                let mut vectors =
                    vec![Stmt::LetIndex { var: axis::HEADDIM, value: Index::mul(Index::Var(chunk), width.clone()) }];
                let zv = bld.bind(&mut vectors, lanes, z_lanes.clone());
                vectors.push(Stmt::StoreLanes {
                    buf: scratch + 3,
                    index: gate_slot.clone(),
                    stride: Index::Const(1),
                    lanes,
                    value: silu(zv),
                });
                fill.push(Stmt::For {
                    var: chunk,
                    lo: Index::Const(0),
                    hi: full.clone(),
                    reverse: false,
                    body: vectors,
                });
                let mut rest = Vec::new();
                let zs = bld.bind(&mut rest, 1, z.clone());
                rest.push(Stmt::Store { buf: scratch + 3, index: gate_slot.clone(), value: silu(zs) });
                let first = Index::mul(full, width);
                fill.push(Stmt::For {
                    var: axis::HEADDIM,
                    lo: first,
                    hi: spec.headdim.clone(),
                    reverse: false,
                    body: rest,
                });
            }
            stage.push(Stmt::For { var: axis::TIME, lo: lo.clone(), hi: hi.clone(), reverse: false, body: fill });
            let load = |buf, index: Index| Val::Load { buf, index, lanes: 1, stride: Index::Const(1) };
            Some(Staged {
                dt: load(dt_buf, slot.clone()),
                abar: real_shared.then(|| load(abar_buf, slot.clone())),
                gate: scan.gate.as_ref().map(|_| load(scratch + 3, gate_slot)),
            })
        }
        _ => None,
    };
    per_element.extend(scan_steps(bld, spec, scan, k, &h, (lo, hi), staged.as_ref()));
    for (j, hj) in h.iter().enumerate() {
        per_element.push(state_at(j as u32, lanes));
        for (&part, v) in parts.iter().zip([Some(&hj.re), hj.im.as_ref()].into_iter().flatten()) {
            per_element.push(Stmt::StoreLanes {
                buf: scratch,
                index: at(j as u32, part),
                stride: Index::Const(1),
                lanes,
                value: v.clone(),
            });
        }
    }
    let elements = Stmt::For {
        var: axis::HEADDIM,
        lo: Index::Const(0),
        hi: spec.headdim.clone(),
        reverse: false,
        body: per_element,
    };
    stage.push(elements);
    body.push(Stmt::For { var: tile_var, lo: Index::Const(0), hi: tiles, reverse: scan.reversed, body: stage });
    if let Some(p) = &spec.h_final {
        let mut fin = Vec::new();
        for j in 0..chunks {
            fin.push(state_at(j, lanes));
            let value = Val::Load { buf: scratch, index: at(j, 0), lanes, stride: Index::Const(1) };
            fin.push(Stmt::StoreLanes {
                buf: p.buf,
                index: p.index.clone(),
                stride: p.state_stride.clone(),
                lanes,
                value,
            });
        }
        body.push(Stmt::For {
            var: axis::HEADDIM,
            lo: Index::Const(0),
            hi: spec.headdim.clone(),
            reverse: false,
            body: fin,
        });
    }
}

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
            Index::Const(_) | Index::Dim(_) | Index::Var(_) | Index::Lane => false,
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
fn stage_lanes(
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
            .map(|(buf, base, tile)| Stmt::Transpose {
                buf: *buf,
                index: Index::add(base.clone(), t0.clone()),
                tile: *tile,
                count: lanes,
                into_tile,
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
            other => other.clone(),
        }
    }

    fn val(&mut self, v: &Val, slot: Option<&Index>) -> Val {
        match v {
            Val::Load { buf, index, lanes: 1, .. } if !self.spec.buffers[*buf].output && per_lane(index) => {
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
            Val::Const(_) | Val::Var(_) | Val::Load { .. } => v.clone(),
        }
    }
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

/// Role values of one chunk of state lanes computed before the time loop: A, B and C when
/// they do not depend on time, and Abar, Bbar when dt does not either.
#[derive(Default)]
pub(crate) struct Hoisted {
    pub(crate) a: Option<Cx>,
    pub(crate) b: Option<Cx>,
    pub(crate) c: Option<Cx>,
    /// A log2(e) of a real, time-invariant A with lanes over heads, for Abar = 2^(dt A log2 e).
    pub(crate) a_log2e: Option<Val>,
    pub(crate) discrete: Option<(Cx, Cx)>,
}

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
    (0..chunks)
        .map(|j| {
            body.push(Stmt::LetIndex { var: axis::STATE, value: Index::Const((j * lanes) as i64) });
            let mut bind = |inv: bool, v: &Cx| inv.then(|| bld.bind_cx(body, lanes, v.clone()));
            let mut out = Hoisted {
                a: bind(scan.a_invariant, &scan.a),
                b: bind(scan.b_invariant, &scan.b),
                c: bind(scan.c_invariant, &scan.c),
                a_log2e: None,
                discrete: None,
            };
            let exp_of_dta = matches!(spec.discretization, Discretization::ZohEuler | Discretization::Zoh);
            if let (Mapping::HeadLanes { .. }, Some(a), true, false) =
                (spec.mapping, &out.a, exp_of_dta, scan.decay_invariant)
            {
                if a.im.is_none() {
                    let log2e = Val::splat(Val::Const(std::f32::consts::LOG2_E), lanes);
                    out.a_log2e = Some(bld.bind(body, lanes, Val::mul(a.re.clone(), log2e)));
                }
            }
            if scan.decay_invariant {
                let dt = scan.dt.clone().map(|v| bld.bind(body, 1, v));
                let (a, b) =
                    (out.a.clone().unwrap_or_else(|| scan.a.clone()), out.b.clone().unwrap_or_else(|| scan.b.clone()));
                let (abar, bbar) = discretize(spec.discretization, dt.as_ref(), &a, None, &b, lanes);
                out.discrete = Some((bld.bind_cx(body, lanes, abar), bld.bind_cx(body, lanes, bbar)));
            }
            out
        })
        .collect()
}

fn var_of(v: &Val) -> Var {
    match v {
        Val::Var(v) => *v,
        _ => unreachable!("state values are variables"),
    }
}
