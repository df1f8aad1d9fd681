//! Statements. Each variant's doc gives its typing rule and the launches (targets) that
//! accept it; a backend refuses the rest by name ([`Construct`]).

use crate::{Cond, FragStmt, Index, Val, Var};

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// Declares float variable `var` of width `lanes`, set to `value` (of width 1 or
    /// `lanes`). Every target.
    Let {
        /// The variable.
        var: Var,
        /// Its width.
        lanes: u32,
        /// Its first value.
        value: Val,
    },
    /// Sets a declared float variable to a value of its width (or 1). Every target.
    Set {
        /// The variable.
        var: Var,
        /// Its new value.
        value: Val,
    },
    /// Stores a scalar into a buffer. Every target.
    Store {
        /// Buffer position.
        buf: usize,
        /// Element index.
        index: Index,
        /// The scalar stored.
        value: Val,
    },
    /// Stores the `lanes` lanes of a vector at `index`, `index + stride`, ... Every target.
    StoreLanes {
        /// Buffer position.
        buf: usize,
        /// Element index of lane 0.
        index: Index,
        /// Distance between lanes, in elements.
        stride: Index,
        /// Number of lanes.
        lanes: u32,
        /// The vector stored.
        value: Val,
    },
    /// Stores a scalar added to what the buffer holds (not atomic: one thread owns the
    /// element). Every target.
    StoreAdd {
        /// Buffer position.
        buf: usize,
        /// Element index.
        index: Index,
        /// The scalar added.
        value: Val,
    },
    /// Adds a scalar to an element of an f32 buffer atomically (threads may share the
    /// element). Every target.
    AtomicAdd {
        /// Buffer position (an f32 tensor or scratch).
        buf: usize,
        /// Element index.
        index: Index,
        /// The scalar added.
        value: Val,
    },
    /// Declares integer variable `var` = `value`. Every target.
    LetIndex {
        /// The variable.
        var: Var,
        /// Its value.
        value: Index,
    },
    /// `for var in lo..hi` (descending from hi - 1 when `reverse`). Every target.
    For {
        /// The counter.
        var: Var,
        /// First value.
        lo: Index,
        /// One past the last value.
        hi: Index,
        /// Count down.
        reverse: bool,
        /// The body.
        body: Vec<Stmt>,
    },
    /// Runs `then` where `cond` holds, else `otherwise`. Every target; on the GPU a
    /// condition that differs between threads makes them diverge, so neither branch may
    /// hold a [`Stmt::Barrier`] or a warp exchange then.
    If {
        /// The condition.
        cond: Cond,
        /// Run where it holds.
        then: Vec<Stmt>,
        /// Run where it does not.
        otherwise: Vec<Stmt>,
    },
    /// Waits until every thread of the block reaches it; memory (global and shared) written
    /// before it by any thread of the block is then visible to all. Grid launches (GPU)
    /// only, reached by every thread of the block.
    Barrier,
    /// A warp-wide matrix multiply-accumulate statement (see [`crate::frag`]). No backend
    /// lowers it yet.
    Frag(FragStmt),
    /// A statement of the CPU's vector-of-sequences kernels. CPU only.
    Cpu(CpuStmt),
}

/// Statements that only the CPU backend lowers.
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStmt {
    /// Moves `count` consecutive elements of every sequence lane between `buf` and the
    /// scratch tile `tile`, which holds them step-major: element j of lane k at
    /// `j * seq_lanes + k`. Step j of all lanes is then one contiguous vector of the tile
    /// where the lanes are far apart in `buf` (one transpose per tile instead of a gather
    /// or scatter per step). Only in kernels whose work item is a vector of sequences.
    Transpose {
        /// The tensor's buffer position.
        buf: usize,
        /// Element index of a lane's first element (differs between lanes).
        index: Index,
        /// Buffer position of the scratch tile (`count * seq_lanes` elements).
        tile: usize,
        /// Number of consecutive elements per lane.
        count: u32,
        /// From `buf` into the tile; otherwise from the tile back into `buf`.
        into_tile: bool,
    },
    /// The causal convolution `output[t] = sum_{s <= t} kernel[t - s] * input[s]` for
    /// `t < len`, over f32 buffers (scratch arrays), by a call to the host routine of
    /// [`crate::Kernel::host_conv`].
    Convolve {
        /// Buffer of the convolution kernel (`len` elements).
        kernel: usize,
        /// Buffer of the input (`len` elements).
        input: usize,
        /// Buffer written (`len` elements).
        output: usize,
        /// Number of elements.
        len: Index,
    },
}

/// A kind of loop-IR construct that a backend may not lower: what a refusal names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Construct {
    /// A grid launch.
    GridLaunch,
    /// A range launch.
    RangeLaunch,
    /// A built-in index.
    Builtin(crate::Builtin),
    /// [`Stmt::Barrier`].
    Barrier,
    /// [`Val::Shuffle`].
    Shuffle,
    /// [`Val::WarpSum`].
    WarpSum,
    /// Scratch in shared memory.
    SharedScratch,
    /// [`Stmt::AtomicAdd`].
    AtomicAdd,
    /// [`Stmt::Frag`].
    Fragment,
    /// [`CpuStmt::Transpose`].
    Transpose,
    /// [`CpuStmt::Convolve`] (a host routine).
    HostConvolve,
}

impl Construct {
    /// Its name in a refusal.
    pub fn name(self) -> String {
        match self {
            Construct::GridLaunch => "a grid launch".into(),
            Construct::RangeLaunch => "a range launch".into(),
            Construct::Builtin(b) => format!("the built-in index `{}`", b.name()),
            Construct::Barrier => "`barrier`".into(),
            Construct::Shuffle => "a warp shuffle".into(),
            Construct::WarpSum => "a warp sum".into(),
            Construct::SharedScratch => "shared-memory scratch".into(),
            Construct::AtomicAdd => "`atomic_add`".into(),
            Construct::Fragment => "matrix fragments (`mma`)".into(),
            Construct::Transpose => "`transpose`".into(),
            Construct::HostConvolve => "the host convolution `causal_conv`".into(),
        }
    }
}

/// Calls `f` on every construct of [`Construct`] that `body` uses (launch and scratch
/// aside: see [`crate::Kernel::constructs`]).
pub(crate) fn constructs(body: &[Stmt], f: &mut dyn FnMut(Construct)) {
    let index = |i: &Index, f: &mut dyn FnMut(Construct)| i.builtins(&mut |b| f(Construct::Builtin(b)));
    let val = |v: &Val, f: &mut dyn FnMut(Construct)| {
        v.visit(&mut |v| match v {
            Val::Shuffle(..) => f(Construct::Shuffle),
            Val::WarpSum(_) => f(Construct::WarpSum),
            Val::Load { index: i, stride, .. } => {
                i.builtins(&mut |b| f(Construct::Builtin(b)));
                stride.builtins(&mut |b| f(Construct::Builtin(b)));
            }
            _ => {}
        })
    };
    for s in body {
        match s {
            Stmt::Let { value, .. } | Stmt::Set { value, .. } => val(value, f),
            Stmt::Store { index: i, value, .. } | Stmt::StoreAdd { index: i, value, .. } => {
                index(i, f);
                val(value, f);
            }
            Stmt::StoreLanes { index: i, stride, value, .. } => {
                index(i, f);
                index(stride, f);
                val(value, f);
            }
            Stmt::AtomicAdd { index: i, value, .. } => {
                f(Construct::AtomicAdd);
                index(i, f);
                val(value, f);
            }
            Stmt::LetIndex { value, .. } => index(value, f),
            Stmt::For { lo, hi, body, .. } => {
                index(lo, f);
                index(hi, f);
                constructs(body, f);
            }
            Stmt::If { cond, then, otherwise } => {
                index(&cond.lhs, f);
                index(&cond.rhs, f);
                constructs(then, f);
                constructs(otherwise, f);
            }
            Stmt::Barrier => f(Construct::Barrier),
            Stmt::Frag(_) => f(Construct::Fragment),
            Stmt::Cpu(CpuStmt::Transpose { index: i, .. }) => {
                f(Construct::Transpose);
                index(i, f);
            }
            Stmt::Cpu(CpuStmt::Convolve { len, .. }) => {
                f(Construct::HostConvolve);
                index(len, f);
            }
        }
    }
}
