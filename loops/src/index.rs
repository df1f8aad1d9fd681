//! Integer expressions: indices into buffers, loop bounds, work-item counts and launch
//! sizes.

use crate::Var;

/// An index the launch provides (see [`crate::Launch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    /// The block's number in the grid. Grid launches (GPU) only.
    Block,
    /// The thread's number in its block, `0..threads`. Grid launches only.
    Thread,
    /// The warp's number in its block, `Thread / 32`. Grid launches only.
    Warp,
    /// The thread's lane in its warp, `Thread % 32`. Grid launches only.
    WarpLane,
    /// One past the last work item of this call (the entry point's `end`). Every launch.
    End,
}

impl Builtin {
    /// The name in the loop IR's text and in a backend's refusal.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Block => "block",
            Builtin::Thread => "thread",
            Builtin::Warp => "warp",
            Builtin::WarpLane => "warp_lane",
            Builtin::End => "end",
        }
    }
}

/// Threads of a warp.
pub const WARP: u32 = 32;

/// An integer expression (an index or a bound), evaluated in i64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Index {
    /// A constant.
    Const(i64),
    /// A runtime dim, by position in the kernel's dims.
    Dim(usize),
    /// An integer variable.
    Var(Var),
    /// Sum.
    Add(Box<Index>, Box<Index>),
    /// Difference.
    Sub(Box<Index>, Box<Index>),
    /// Product.
    Mul(Box<Index>, Box<Index>),
    /// Quotient, rounding toward zero (operands are never negative).
    Div(Box<Index>, Box<Index>),
    /// Remainder.
    Rem(Box<Index>, Box<Index>),
    /// The smaller of two.
    Min(Box<Index>, Box<Index>),
    /// The lane number 0..`seq_lanes` of a kernel whose work item is a vector of sequences.
    Lane,
    /// An index of the launch: which block, thread, warp or lane this is.
    Builtin(Builtin),
}

// Constructors that fold constants; they take operands by value like the operators would.
#[allow(clippy::should_implement_trait)]
impl Index {
    /// `a + b`, folding constants.
    pub fn add(a: Index, b: Index) -> Index {
        match (a, b) {
            (Index::Const(0), x) | (x, Index::Const(0)) => x,
            (Index::Const(x), Index::Const(y)) => Index::Const(x + y),
            (a, b) => Index::Add(Box::new(a), Box::new(b)),
        }
    }

    /// `a * b`, folding constants.
    pub fn mul(a: Index, b: Index) -> Index {
        match (a, b) {
            (Index::Const(0), _) | (_, Index::Const(0)) => Index::Const(0),
            (Index::Const(1), x) | (x, Index::Const(1)) => x,
            (Index::Const(x), Index::Const(y)) => Index::Const(x * y),
            (a, b) => Index::Mul(Box::new(a), Box::new(b)),
        }
    }

    /// `a - b`.
    pub fn sub(a: Index, b: Index) -> Index {
        match (a, b) {
            (x, Index::Const(0)) => x,
            (Index::Const(x), Index::Const(y)) => Index::Const(x - y),
            (a, b) => Index::Sub(Box::new(a), Box::new(b)),
        }
    }

    /// `a / b`.
    pub fn div(a: Index, b: Index) -> Index {
        match (a, b) {
            (x, Index::Const(1)) => x,
            (Index::Const(x), Index::Const(y)) if y > 0 => Index::Const(x / y),
            (a, b) => Index::Div(Box::new(a), Box::new(b)),
        }
    }

    /// `ceil(a / b)` for `b > 0`.
    pub fn div_ceil(a: Index, b: i64) -> Index {
        Index::div(Index::add(a, Index::Const(b - 1)), Index::Const(b))
    }

    /// `a % b`.
    pub fn rem(a: Index, b: Index) -> Index {
        Index::Rem(Box::new(a), Box::new(b))
    }

    /// `min(a, b)`.
    pub fn min(a: Index, b: Index) -> Index {
        match (a, b) {
            (Index::Const(x), Index::Const(y)) => Index::Const(x.min(y)),
            (a, b) => Index::Min(Box::new(a), Box::new(b)),
        }
    }

    /// A built-in index.
    pub fn builtin(b: Builtin) -> Index {
        Index::Builtin(b)
    }

    /// The value at runtime dims `dims` (by position), for an expression of constants and
    /// dims only (a kernel's work-item count, a launch size); `None` where it reads a
    /// variable, the lane or a built-in, divides by zero or overflows.
    pub fn eval(&self, dims: &[i64]) -> Option<i64> {
        let two = |a: &Index, b: &Index| Some((a.eval(dims)?, b.eval(dims)?));
        match self {
            Index::Const(c) => Some(*c),
            Index::Dim(d) => dims.get(*d).copied(),
            Index::Var(_) | Index::Lane | Index::Builtin(_) => None,
            Index::Add(a, b) => two(a, b).and_then(|(a, b)| a.checked_add(b)),
            Index::Sub(a, b) => two(a, b).and_then(|(a, b)| a.checked_sub(b)),
            Index::Mul(a, b) => two(a, b).and_then(|(a, b)| a.checked_mul(b)),
            Index::Div(a, b) => two(a, b).and_then(|(a, b)| a.checked_div(b)),
            Index::Rem(a, b) => two(a, b).and_then(|(a, b)| a.checked_rem(b)),
            Index::Min(a, b) => two(a, b).map(|(a, b)| a.min(b)),
        }
    }

    /// Calls `f` on every built-in this expression reads.
    pub fn builtins(&self, f: &mut dyn FnMut(Builtin)) {
        match self {
            Index::Builtin(b) => f(*b),
            Index::Add(a, b)
            | Index::Sub(a, b)
            | Index::Mul(a, b)
            | Index::Div(a, b)
            | Index::Rem(a, b)
            | Index::Min(a, b) => {
                a.builtins(f);
                b.builtins(f);
            }
            Index::Const(_) | Index::Dim(_) | Index::Var(_) | Index::Lane => {}
        }
    }
}

/// How a condition compares two indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
}

/// A condition of [`crate::Stmt::If`]: `lhs cmp rhs` over indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Left operand.
    pub lhs: Index,
    /// The comparison.
    pub cmp: Cmp,
    /// Right operand.
    pub rhs: Index,
}

impl Cond {
    /// `a < b`.
    pub fn lt(a: Index, b: Index) -> Cond {
        Cond { lhs: a, cmp: Cmp::Lt, rhs: b }
    }
    /// `a == b`.
    pub fn eq(a: Index, b: Index) -> Cond {
        Cond { lhs: a, cmp: Cmp::Eq, rhs: b }
    }
    /// `a <= b`.
    pub fn le(a: Index, b: Index) -> Cond {
        Cond { lhs: a, cmp: Cmp::Le, rhs: b }
    }
}
