//! A kernel: its buffers, dims, scratch, launch and body.

use crate::stmt::constructs;
use crate::{Buffer, Construct, Index, Stmt, Var};
use std::collections::BTreeSet;

/// How a kernel's work items map onto the machine. The entry point is always
/// `void name(const void* const* bufs, const int64_t* dims, int64_t begin, int64_t end)`
/// and runs work items `[begin, end)`; the runtime covers `[0, work_items)` with calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// One thread loops over the work items `[begin, end)`, `seq` bound to each in turn;
    /// the runtime splits the range over its threads. The CPU's launch.
    Range,
    /// A grid of blocks of `threads` threads: block i takes the `items_per_block` work items
    /// from `begin + i * items_per_block` (the last block fewer, up to `end`), and the body
    /// runs once per thread with `seq` bound to the block's first work item; the built-in
    /// indices say which thread it is, and the body itself keeps to `end`
    /// ([`crate::Builtin::End`]). The GPU's launch: `ceil((end - begin) / items_per_block)`
    /// blocks, with [`Kernel::shared_bytes`] of shared memory each.
    Grid {
        /// Threads per block (a multiple of 32, at most 1024).
        threads: u32,
        /// Work items per block.
        items_per_block: u32,
    },
}

/// Where a scratch array lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Private to one call (CPU: the heap, one per call) or one GPU thread (local memory,
    /// registers where the indices are constant). Every target.
    Local,
    /// One per GPU block, shared by its threads; order accesses with
    /// [`crate::Stmt::Barrier`]. Grid launches only.
    Shared,
}

/// A scratch array of f32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scratch {
    /// Elements, from the dims.
    pub size: Index,
    /// Where it lives.
    pub space: Space,
}

impl Scratch {
    /// A local array of `size` f32.
    pub fn local(size: Index) -> Scratch {
        Scratch { size, space: Space::Local }
    }
    /// A shared array of `size` f32.
    pub fn shared(size: Index) -> Scratch {
        Scratch { size, space: Space::Shared }
    }
}

/// A kernel. A work item is one sequence, or `seq_lanes` sequences side by side in the
/// lanes of every value (then index expressions may use [`Index::Lane`], and loads and
/// stores at lane-varying indices gather and scatter). Tensor buffers are in global
/// memory; scratch arrays in the space they name.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Symbol name.
    pub name: String,
    /// Buffers, inputs then outputs.
    pub buffers: Vec<Buffer>,
    /// Names of the runtime dims, in order.
    pub dims: Vec<String>,
    /// The integer variable holding the work item (the block's first one in a grid).
    pub seq: Var,
    /// Number of work items, from the dims: the one statement of it, which the manifest,
    /// the header and the runtimes take from here.
    pub work_items: Index,
    /// How the work items run.
    pub launch: Launch,
    /// Sequences per work item, side by side in lanes (1: one sequence per work item).
    pub seq_lanes: u32,
    /// Lane k holds a sequence of its own only if `a < b` at lane k; the other lanes repeat
    /// one (their `StoreAdd`s add nothing).
    pub lane_limit: Option<(Index, Index)>,
    /// Scratch arrays of f32, addressed as buffers `buffers.len()`, `buffers.len() + 1`, ...
    pub scratch: Vec<Scratch>,
    /// Statements run for each work item (each thread of a block in a grid).
    pub body: Vec<Stmt>,
    /// The body has [`crate::CpuStmt::Convolve`]: the caller passes the address of a
    /// routine `void (*)(const float* k, const float* x, float* y, int64_t len)` computing
    /// it (the runtime's `ssmc_causal_conv_f32`) in `bufs[buffers.len()]`, after the
    /// tensors.
    pub host_conv: bool,
}

/// Shared scratch arrays start at multiples of this many f32 (16 bytes, a vector access).
const SHARED_ALIGN: i64 = 4;

impl Kernel {
    /// Every construct the kernel uses that some backend may refuse, its launch included.
    pub fn constructs(&self) -> BTreeSet<Construct> {
        let mut set = BTreeSet::new();
        set.insert(match self.launch {
            Launch::Range => Construct::RangeLaunch,
            Launch::Grid { .. } => Construct::GridLaunch,
        });
        if self.scratch.iter().any(|s| s.space == Space::Shared) {
            set.insert(Construct::SharedScratch);
        }
        constructs(&self.body, &mut |c| {
            set.insert(c);
        });
        set
    }

    /// Where each shared scratch array starts in the block's shared memory, in f32
    /// (`None` for local ones), and the bytes of shared memory a block needs: the layout
    /// the code generator and the launch both use.
    pub fn shared_layout(&self) -> (Vec<Option<Index>>, Index) {
        let mut at = Index::Const(0);
        let mut starts = Vec::new();
        for s in &self.scratch {
            if s.space == Space::Shared {
                starts.push(Some(at.clone()));
                let padded = Index::mul(Index::div_ceil(s.size.clone(), SHARED_ALIGN), Index::Const(SHARED_ALIGN));
                at = Index::add(at, padded);
            } else {
                starts.push(None);
            }
        }
        (starts, Index::mul(at, Index::Const(4)))
    }

    /// Bytes of shared memory per block, from the dims.
    pub fn shared_bytes(&self) -> Index {
        self.shared_layout().1
    }
}
