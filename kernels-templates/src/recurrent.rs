//! `recurrent` for CPU and GPU: one work item per sequence (batch, head, head element);
//! the state lives in `state / lanes` vectors of `lanes` f32 (two for a complex state);
//! time is sequential. Abar and Bbar are computed once when they do not depend on time.

use crate::axis;
use crate::common::{decode, discretize, silu, state_at, Builder};
use crate::hoist::{hoist, hoist_looped, looped, over_chunks, Hoisted, Slots, TILE};
use crate::lanes::stage_lanes;
use crate::{Cx, Discretization, Mapping, ScanSpec, ScanVals};
use ssmc_loops::{Index, Kernel, Launch, Scratch, Shuffle, Stmt, Val, Var};

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
                tiled_scan(&mut bld, &mut body, spec, scan, k, time_tile, &mut scratch);
            }
            Mapping::StateLanes | Mapping::HeadLanes { .. } => {
                let start = |lanes| match &spec.h0 {
                    Some(p) => p.load(lanes),
                    None => Val::splat(Val::Const(0.0), lanes),
                };
                let time = (Index::Const(0), spec.time.clone());
                let mut h: Vec<Cx> = Vec::new();
                let slots = looped(spec).then(|| Slots {
                    buf: spec.buffers.len() + scratch.len(),
                    origin: Index::Const(0),
                    plane: Index::Const(i64::from(spec.state)),
                    lanes,
                    seq_lanes,
                });
                let steps = match &slots {
                    None => {
                        // The state, one vector (two if complex) per chunk of lanes.
                        for j in 0..chunks {
                            body.push(state_at(j, lanes));
                            let re = bld.bind(&mut body, lanes, start(lanes));
                            let im = complex.then(|| bld.bind(&mut body, lanes, Val::splat(Val::Const(0.0), lanes)));
                            h.push(Cx { re, im });
                        }
                        scan_steps(&mut bld, spec, scan, k, States::Vars(&h), time, None, &mut scratch)
                    }
                    Some(slots) => {
                        let parts = if complex { 2 } else { 1 };
                        scratch.push(Index::Const(parts * i64::from(spec.state) * i64::from(seq_lanes)));
                        over_chunks(&mut bld, &mut body, spec, true, |_, out, at| {
                            out.push(slots.store(0, at.clone(), start(lanes)));
                            if complex {
                                out.push(slots.store(1, at, Val::splat(Val::Const(0.0), lanes)));
                            }
                        });
                        scan_steps(&mut bld, spec, scan, k, States::Scratch(slots), time, None, &mut scratch)
                    }
                };
                match spec.mapping {
                    Mapping::HeadLanes { lanes } if lanes > 1 => {
                        body.extend(stage_lanes(&mut bld, spec, steps, &mut scratch, lanes))
                    }
                    _ => body.extend(steps),
                }
                if let Some(p) = &spec.h_final {
                    let store = |out: &mut Vec<Stmt>, value| out.push(p.store(lanes, value));
                    match &slots {
                        None => {
                            for (j, hj) in h.iter().enumerate() {
                                body.push(state_at(j as u32, lanes));
                                store(&mut body, hj.re.clone());
                            }
                        }
                        Some(slots) => over_chunks(&mut bld, &mut body, spec, true, |_, out, at| {
                            store(out, slots.load(0, at));
                        }),
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
        work_items,
        launch: Launch::Range,
        seq_lanes,
        lane_limit,
        scratch: scratch.into_iter().map(Scratch::local).collect(),
        body,
        host_conv: false,
    }
}

/// dt and, for a real A shared by the state, Abar of each step, computed before the loop
/// that reads them (once per time tile for all elements of a head).
struct Staged {
    dt: Val,
    abar: Option<Val>,
    /// silu(z) of the step's element.
    gate: Option<Val>,
}

/// Where the state of a scan is kept during its time loop.
#[derive(Clone, Copy)]
enum States<'a> {
    /// One variable (two if complex) per chunk of lanes: the step is unrolled over the state.
    Vars(&'a [Cx]),
    /// In a scratch array (part 0 real, 1 imaginary): the step loops over the state in tiles
    /// of [`TILE`] chunks, with the hoisted values in a scratch array of their own.
    Scratch(&'a Slots),
}

/// What every chunk's update in a step reads.
struct StepCx<'a> {
    shared: Option<(Cx, Cx)>,
    dt: Option<Val>,
    dtx: Option<Val>,
    xs: Val,
    scan: &'a ScanVals,
}

/// The new state of one chunk (bound) and its C, appending to `step`; STATE is bound.
fn update(bld: &mut Builder, step: &mut Vec<Stmt>, spec: &ScanSpec, cx: &StepCx, pre: &Hoisted, h: &Cx) -> (Cx, Cx) {
    let (lanes, scan) = (spec.lanes, cx.scan);
    // Abar and the input term Bbar x of this chunk of state lanes.
    let input = |b: &Cx, bbar: Cx| match &cx.dtx {
        Some(dtx) => b.scale(&Val::splat(dtx.clone(), lanes)),
        None => bbar.scale(&cx.xs),
    };
    let (abar, input) = match (&pre.discrete, &cx.shared) {
        (Some((abar, bbar)), _) => (abar.clone(), bbar.scale(&cx.xs)),
        (None, Some((a, abar))) => {
            let b = pre.b.clone().unwrap_or_else(|| bld.bind_cx(step, lanes, scan.b.clone()));
            let bbar = discretize(spec.discretization, cx.dt.as_ref(), a, None, &b, lanes).1;
            (abar.clone(), input(&b, bbar))
        }
        (None, None) => {
            let a = pre.a.clone().unwrap_or_else(|| bld.bind_cx(step, lanes, scan.a.clone()));
            let b = pre.b.clone().unwrap_or_else(|| bld.bind_cx(step, lanes, scan.b.clone()));
            let a_log2e = pre.a_log2e.as_ref();
            let (abar, bbar) = discretize(spec.discretization, cx.dt.as_ref(), &a, a_log2e, &b, lanes);
            (abar, input(&b, bbar))
        }
    };
    let c = pre.c.clone().unwrap_or_else(|| bld.bind_cx(step, lanes, scan.c.clone()));
    let next = abar.mul(h).add(&input);
    (bld.bind_cx(step, lanes, next), c)
}

/// A sum as a balanced tree (short dependency chains).
fn tree(mut terms: Vec<Val>) -> Option<Val> {
    while terms.len() > 1 {
        terms = terms
            .chunks(2)
            .map(|p| if p.len() == 2 { Val::add(p[0].clone(), p[1].clone()) } else { p[0].clone() })
            .collect();
    }
    terms.pop()
}

/// The hoisted values and the time loop `lo..hi` of scan `k`, updating the state `h`; a
/// looped state's hoisted values join `scratch`.
#[allow(clippy::too_many_arguments)] // One call per mapping; the arguments are its parts.
fn scan_steps(
    bld: &mut Builder,
    spec: &ScanSpec,
    scan: &ScanVals,
    k: usize,
    h: States,
    (lo, hi): (Index, Index),
    staged: Option<&Staged>,
    scratch: &mut Vec<Index>,
) -> Vec<Stmt> {
    let lanes = spec.lanes;
    let mut body = Vec::new();
    let pre = match h {
        States::Vars(h) => hoist(bld, &mut body, spec, scan, h.len() as u32),
        States::Scratch(slots) => vec![hoist_looped(bld, &mut body, spec, scan, scratch, slots.seq_lanes)],
    };
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
    let cx = StepCx { shared, dt, dtx, xs: Val::splat(x.clone(), lanes), scan };
    let acc = match h {
        States::Vars(h) => {
            // C . h per chunk, summed as a balanced tree.
            let mut terms = Vec::new();
            for (j, pre) in pre.iter().enumerate() {
                step.push(state_at(j as u32, lanes));
                let (next, c) = update(bld, &mut step, spec, &cx, pre, &h[j]);
                step.push(Stmt::Set { var: var_of(&h[j].re), value: next.re });
                if let (Some(him), Some(nim)) = (&h[j].im, next.im) {
                    step.push(Stmt::Set { var: var_of(him), value: nim });
                }
                terms.push(bld.bind(&mut step, lanes, c.mul_re(&h[j])));
            }
            tree(terms).unwrap_or_else(|| Val::splat(Val::Const(0.0), lanes))
        }
        States::Scratch(slots) => looped_update(bld, &mut step, spec, &cx, &pre[0], slots),
    };
    let scale = if spec.pairs { 2.0 } else { 1.0 };
    let mut sum = if lanes > 1 { Val::ReduceAdd(Box::new(acc)) } else { acc };
    // A state split over `split` threads (aligned lanes of one warp): their sums, by a
    // butterfly of shuffles, so that every one of them holds the total.
    let mut distance = spec.split / 2;
    while distance >= 1 {
        let own = bld.bind(&mut step, 1, sum);
        sum = Val::add(own.clone(), Val::shuffle(Shuffle::Xor(distance), own));
        distance /= 2;
    }
    if spec.split > 1 {
        // Every thread shuffles, outside the store that only the first makes.
        sum = bld.bind(&mut step, 1, sum);
    }
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

/// The state update of one step for a state in scratch: loops over tiles of [`TILE`]
/// chunks (each tile's C . h summed as a tree), then over the chunks past the last whole
/// tile; returns C . h summed over the state (a variable).
fn looped_update(
    bld: &mut Builder,
    step: &mut Vec<Stmt>,
    spec: &ScanSpec,
    cx: &StepCx,
    pre: &Hoisted,
    slots: &Slots,
) -> Val {
    let (lanes, chunks) = (spec.lanes, spec.state / spec.lanes);
    let acc = bld.var();
    step.push(Stmt::Let { var: acc, lanes, value: Val::splat(Val::Const(0.0), lanes) });
    let chunk = |bld: &mut Builder, out: &mut Vec<Stmt>, first: Index| {
        out.push(Stmt::LetIndex { var: axis::STATE, value: first });
        let at = Index::Var(axis::STATE);
        let re = bld.bind(out, lanes, slots.load(0, at.clone()));
        let im = spec.pairs.then(|| bld.bind(out, lanes, slots.load(1, at.clone())));
        let (next, c) = update(bld, out, spec, cx, pre, &Cx { re, im });
        out.push(slots.store(0, at.clone(), next.re.clone()));
        if let Some(im) = &next.im {
            out.push(slots.store(1, at, im.clone()));
        }
        bld.bind(out, lanes, c.mul_re(&next))
    };
    let (tile, lanes_i) = (i64::from(TILE), i64::from(lanes));
    let t = bld.var();
    let mut per_tile = Vec::new();
    let mut terms = Vec::new();
    for j in 0..tile {
        let first = Index::add(Index::mul(Index::Var(t), Index::Const(tile * lanes_i)), Index::Const(j * lanes_i));
        terms.push(chunk(bld, &mut per_tile, first));
    }
    let sum = tree(terms).expect("a tile has chunks");
    per_tile.push(Stmt::Set { var: acc, value: Val::add(Val::Var(acc), sum) });
    let whole = i64::from(chunks) / tile;
    step.push(Stmt::For { var: t, lo: Index::Const(0), hi: Index::Const(whole), reverse: false, body: per_tile });
    if i64::from(chunks) % tile != 0 {
        let one = bld.var();
        let mut rest = Vec::new();
        let term = chunk(bld, &mut rest, Index::mul(Index::Var(one), Index::Const(lanes_i)));
        rest.push(Stmt::Set { var: acc, value: Val::add(Val::Var(acc), term) });
        let (lo, hi) = (Index::Const(whole * tile), Index::Const(i64::from(chunks)));
        step.push(Stmt::For { var: one, lo, hi, reverse: false, body: rest });
    }
    Val::Var(acc)
}

/// Scan `k` over time tiles: for each tile, every element p of the head in turn, its state
/// loaded from and stored back to a scratch tile of P x N, so that B and C of the tile stay
/// in cache for all P elements.
fn tiled_scan(
    bld: &mut Builder,
    body: &mut Vec<Stmt>,
    spec: &ScanSpec,
    scan: &ScanVals,
    k: usize,
    tile: u32,
    kernel_scratch: &mut Vec<Index>,
) {
    let lanes = spec.lanes;
    let scratch = spec.buffers.len();
    let n = i64::from(spec.state);
    let plane = Index::mul(spec.headdim.clone(), Index::Const(n));
    let at = |first: Index, part: i64| {
        let base = Index::add(Index::mul(Index::Var(axis::HEADDIM), Index::Const(n)), first);
        Index::add(base, Index::mul(plane.clone(), Index::Const(part)))
    };
    let big = looped(spec);
    let parts: &[i64] = if spec.pairs { &[0, 1] } else { &[0] };
    // The initial state of every element into the scratch tile.
    let mut init = Vec::new();
    over_chunks(bld, &mut init, spec, big, |_, init, first| {
        for &part in parts {
            let value = match (&spec.h0, part) {
                (Some(p), 0) => p.load(lanes),
                _ => Val::splat(Val::Const(0.0), lanes),
            };
            let index = at(first.clone(), part);
            init.push(Stmt::StoreLanes { buf: scratch, index, stride: Index::Const(1), lanes, value });
        }
    });
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
    if !big {
        over_chunks(bld, &mut per_element, spec, false, |bld, per_element, first| {
            let load =
                |part: i64| Val::Load { buf: scratch, index: at(first.clone(), part), lanes, stride: Index::Const(1) };
            let re = bld.bind(per_element, lanes, load(0));
            let im = spec.pairs.then(|| bld.bind(per_element, lanes, load(1)));
            h.push(Cx { re, im });
        });
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
    let states = Slots {
        buf: scratch,
        origin: Index::mul(Index::Var(axis::HEADDIM), Index::Const(n)),
        plane: plane.clone(),
        lanes,
        seq_lanes: 1,
    };
    let states = if big { States::Scratch(&states) } else { States::Vars(&h) };
    per_element.extend(scan_steps(bld, spec, scan, k, states, (lo, hi), staged.as_ref(), kernel_scratch));
    for (j, hj) in h.iter().enumerate() {
        per_element.push(state_at(j as u32, lanes));
        for (&part, v) in parts.iter().zip([Some(&hj.re), hj.im.as_ref()].into_iter().flatten()) {
            per_element.push(Stmt::StoreLanes {
                buf: scratch,
                index: at(Index::Const(i64::from(j as u32 * lanes)), part),
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
        over_chunks(bld, &mut fin, spec, big, |_, fin, first| {
            let value = Val::Load { buf: scratch, index: at(first, 0), lanes, stride: Index::Const(1) };
            fin.push(p.store(lanes, value));
        });
        body.push(Stmt::For {
            var: axis::HEADDIM,
            lo: Index::Const(0),
            hi: spec.headdim.clone(),
            reverse: false,
            body: fin,
        });
    }
}

fn var_of(v: &Val) -> Var {
    match v {
        Val::Var(v) => *v,
        _ => unreachable!("state values are variables"),
    }
}
