//! The loop IR: what a schedule template produces and every backend consumes. A kernel
//! is a body of statements over float variables (scalars or vectors of `lanes` f32) and
//! integer variables, reading and writing buffers at integer index expressions, with an
//! explicit parallel hierarchy: a [`Launch`] (a range of work items per CPU thread, or a
//! grid of GPU blocks of threads), built-in indices ([`Builtin`]: block, thread, warp,
//! lane), memory spaces on scratch ([`Space`]), barriers, conditionals, warp shuffles and
//! sums, atomics, and matrix fragments ([`frag`]).
//!
//! Modules: `index` (integer expressions, conditions), `val` (float values), `stmt`
//! (statements and the constructs a backend may refuse), `frag`, `kernel`, `print` (the
//! stable text form). The SSM axis variables are not part of the IR: the templates name
//! their own (`ssmc_kernels::axis`).

pub mod frag;
mod index;
mod kernel;
mod print;
mod stmt;
mod val;

pub use frag::{FragRole, FragStmt, FragType};
pub use index::{Builtin, Cmp, Cond, Index, WARP};
pub use kernel::{Kernel, Launch, Scratch, Space};
pub use stmt::{Construct, CpuStmt, Stmt};
pub use val::{BinOp, Shuffle, UnOp, Val};

/// A variable: an integer or a float value (or a fragment), numbered by the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Var(pub u32);

/// Element type of a buffer in memory; arithmetic is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// binary32
    F32,
    /// bfloat16, widened on load
    Bf16,
}

/// A tensor buffer the kernel reads or writes (in global memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    pub elem: Elem,
    /// Written by the kernel.
    pub output: bool,
}
