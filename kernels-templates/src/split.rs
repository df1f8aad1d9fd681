//! `recurrent` on the GPU with a sequence's state split over a few threads: `S`
//! consecutive threads of a warp (aligned, `S` a power of two up to 32) share a sequence,
//! each holding `state / S` of its state indices in registers and stepping through time as
//! the `recurrent` template does; after each step their C . h are summed by a butterfly of
//! `S - 1` warp shuffles (in the template, [`ScanSpec::split`]), and the first of them
//! stores y with the skip and the gate.
//!
//! Against one thread per sequence ([`crate::thread_per_item`]): `S` times the threads, so
//! a batch of few channels still fills the GPU, and `S` times fewer state registers per
//! thread; the price is the shuffles and the per-step work (dt, softplus, the gate) done
//! by each of the `S` threads.

use crate::grid::max_var;
use crate::prefetch::prefetch_time;
use crate::stage::{stage_time, Block};
use crate::{axis, recurrent, Mapping, ScanSpec};
use ssmc_loops::{Builtin, Cond, Index, Kernel, Launch, Scratch, Stmt, Var, WARP};

/// Threads that share a sequence of `spec` (lowered with a few state lanes per chunk): as
/// many as there are chunks of lanes, at most a warp, a power of two dividing the chunks;
/// 1 where the chunks are odd (no split).
pub fn threads_per_sequence(spec: &ScanSpec) -> u32 {
    let chunks = spec.state / spec.lanes;
    let mut s = 1;
    while s * 2 <= WARP && chunks % (s * 2) == 0 {
        s *= 2;
    }
    s
}

/// The `recurrent` kernel of `spec` (one sequence per work item, the GPU lowering) with
/// each sequence's state split over [`threads_per_sequence`] threads, in blocks of
/// `threads` threads, the loads of `prefetch` steps issued together
/// ([`crate::prefetch`]); or why it cannot be split.
pub fn state_split(spec: &ScanSpec, threads: u32, prefetch: u32, tile: u32) -> Result<Kernel, String> {
    if spec.mapping != Mapping::StateLanes {
        return Err("the state split takes one sequence per work item (the GPU lowering)".into());
    }
    let s = threads_per_sequence(spec);
    if s < 2 {
        return Err(format!(
            "{} chunks of {} state lanes cannot be split over threads",
            spec.state / spec.lanes,
            spec.lanes
        ));
    }
    if threads % WARP != 0 || threads > 1024 {
        return Err(format!("blocks of {threads} threads: a multiple of {WARP}, at most 1024"));
    }
    let part = ScanSpec { state: spec.state / s, split: s, ..spec.clone() };
    let k = recurrent(&part);
    let mut next = max_var(&k).0 + 3;
    let (first, slice, item) = (Var(next - 2), Var(next - 1), Var(next));
    let tensors = spec.buffers.len();
    let staged_from = tensors + k.scratch.len();
    let input = |b: usize| spec.buffers.get(b).is_some_and(|buf| !buf.output);
    let thread = Index::builtin(Builtin::Thread);
    let end = Index::builtin(Builtin::End);
    let guard = Guard {
        outputs: spec.buffers.len(),
        y: spec.y.buf,
        valid: Cond::lt(Index::Var(item), end.clone()),
        first_of_sequence: Cond::eq(Index::Var(slice), Index::Const(0)),
        base: Index::mul(Index::Var(slice), Index::Const(i64::from(part.state))),
    };
    let mut body = vec![
        Stmt::LetIndex { var: slice, value: Index::rem(thread.clone(), Index::Const(i64::from(s))) },
        Stmt::LetIndex {
            var: item,
            value: Index::add(Index::Var(first), Index::div(thread, Index::Const(i64::from(s)))),
        },
        // Threads past the last sequence repeat it (every thread of a warp takes part in the
        // shuffles) and store nothing.
        Stmt::LetIndex { var: k.seq, value: Index::min(Index::Var(item), Index::sub(end, Index::Const(1))) },
    ];
    let guarded = Kernel { body: guard.apply(k.body.clone()), ..k.clone() };
    let valid = guard.valid.clone();
    let (staged, scratch) = staged(&guarded, spec, (s, threads), tile, (Index::Var(first), valid), &input, &mut next);
    // The staged copies are never written during the steps: their loads move too.
    let readable = |b: usize| input(b) || b >= staged_from;
    body.extend(prefetch_time(staged, prefetch, &readable, &mut next));
    Ok(Kernel { seq: first, launch: Launch::Grid { threads, items_per_block: threads / s }, body, scratch, ..k })
}

/// Shared bytes the staged copies of one block may take: 24 KiB, so that 9 blocks share
/// an H200 SM's 228 KiB (occupancy hides the latency of the steps).
pub const STAGE_BYTES: i64 = 24 * 1024;

/// `k`'s body with its time loops staged in tiles of `tile` steps ([`crate::stage`];
/// `input(buf)`: a tensor the kernel never writes),
/// halved while the copies take more than [`STAGE_BYTES`], and its scratch with theirs;
/// a `tile` of 0 stages nothing.
fn staged(
    k: &Kernel,
    spec: &ScanSpec,
    (split, threads): (u32, u32),
    tile: u32,
    (first, valid): (Index, Cond),
    input: &dyn Fn(usize) -> bool,
    next: &mut u32,
) -> (Vec<Stmt>, Vec<Scratch>) {
    let block = Block {
        threads,
        split,
        first,
        per_group: Index::mul(spec.headdim.clone(), spec.heads_per_group.clone()),
        state: spec.state,
        tensors: spec.buffers.len(),
        scalars: scalars(&k.body),
        sole_stores: (0..spec.buffers.len()).filter(|&b| spec.buffers[b].output && stores(&k.body, b) == 1).collect(),
        valid,
    };
    let mut tile = tile.next_multiple_of(split);
    while tile > 0 {
        let mut scratch = k.scratch.clone();
        let body = stage_time(k.body.clone(), &block, tile, input, &mut scratch, next);
        let bytes: i64 = scratch[k.scratch.len()..].iter().map(|s| 4 * s.size.eval(&[]).unwrap_or(i64::MAX / 8)).sum();
        if bytes <= STAGE_BYTES || tile <= split {
            return (body, scratch);
        }
        tile /= 2;
    }
    (k.body.clone(), k.scratch.clone())
}

/// The statements of `body` that store into buffer `buf`.
fn stores(body: &[Stmt], buf: usize) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::Store { buf: b, .. }
            | Stmt::StoreAdd { buf: b, .. }
            | Stmt::StoreLanes { buf: b, .. }
            | Stmt::AtomicAdd { buf: b, .. } => usize::from(*b == buf),
            Stmt::For { body, .. } => stores(body, buf),
            Stmt::If { then, otherwise, .. } => stores(then, buf) + stores(otherwise, buf),
            _ => 0,
        })
        .sum()
}

/// The scalar float variables `body` binds.
fn scalars(body: &[Stmt]) -> std::collections::HashSet<Var> {
    let mut out = std::collections::HashSet::new();
    for s in body {
        match s {
            Stmt::Let { var, lanes: 1, .. } => {
                out.insert(*var);
            }
            Stmt::For { body, .. } => out.extend(scalars(body)),
            Stmt::If { then, otherwise, .. } => {
                out.extend(scalars(then));
                out.extend(scalars(otherwise));
            }
            _ => {}
        }
    }
    out
}

/// How a thread's statements change when it holds one slice of the state.
struct Guard {
    /// Buffers below this are tensors (above: scratch).
    outputs: usize,
    /// The buffer of y.
    y: usize,
    /// The thread's sequence exists.
    valid: Cond,
    /// The thread holds the sequence's first slice.
    first_of_sequence: Cond,
    /// The first state index of the thread's slice.
    base: Index,
}

impl Guard {
    fn apply(&self, body: Vec<Stmt>) -> Vec<Stmt> {
        body.into_iter().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&self, s: Stmt) -> Stmt {
        let when = |cond: &Cond, then: Stmt| Stmt::If { cond: cond.clone(), then: vec![then], otherwise: Vec::new() };
        match s {
            // Every state index the template binds is within the thread's slice.
            Stmt::LetIndex { var, value } if var == axis::STATE => {
                Stmt::LetIndex { var, value: Index::add(value, self.base.clone()) }
            }
            Stmt::Store { buf, .. } | Stmt::StoreAdd { buf, .. } | Stmt::StoreLanes { buf, .. }
                if buf < self.outputs =>
            {
                // y once per sequence; a final state by each thread, its own slice.
                let s = if buf == self.y { when(&self.first_of_sequence, s) } else { s };
                when(&self.valid, s)
            }
            Stmt::For { var, lo, hi, reverse, body } => Stmt::For { var, lo, hi, reverse, body: self.apply(body) },
            Stmt::If { cond, then, otherwise } => {
                Stmt::If { cond, then: self.apply(then), otherwise: self.apply(otherwise) }
            }
            other => other,
        }
    }
}
