//! Float values: scalars or vectors of f32, built from constants, variables, loads,
//! elementwise operations and the GPU's warp exchanges.

use crate::{Index, Var};

/// Unary float operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// -x
    Neg,
    /// e^x (a polynomial on every target, vectorized, never a libm call)
    Exp,
    /// 2^x (a polynomial, like `Exp`; e^x as 2^(x log2 e) saves a product where x log2 e
    /// can be formed from a hoisted factor)
    Exp2,
    /// ln x
    Log,
    /// ln(1 + e^x), accurate for very negative x (e^x there) and x itself above 20 as in
    /// torch
    Softplus,
    /// sqrt x
    Sqrt,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// |x|
    Abs,
}

/// Binary float operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// min(a, b)
    Min,
    /// max(a, b)
    Max,
    /// a > b ? 1 : 0
    Gt,
}

/// Which lane of its warp a [`Val::Shuffle`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shuffle {
    /// Lane `lane - k`; lanes below `k` read their own value.
    Up(u32),
    /// Lane `lane + k`; lanes past `31 - k` read their own value.
    Down(u32),
    /// Lane `lane ^ k`.
    Xor(u32),
    /// Lane `k` (a broadcast).
    Lane(u32),
}

/// A float value: a scalar (`lanes` 1) or a vector of f32.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// A constant, splat to any width.
    Const(f32),
    /// A float variable.
    Var(Var),
    /// `lanes` elements of a buffer at `index`, `index + stride`, ...
    Load {
        /// Buffer position in the kernel.
        buf: usize,
        /// Element index of the first lane.
        index: Index,
        /// Number of lanes.
        lanes: u32,
        /// Distance between lanes, in elements.
        stride: Index,
    },
    /// Elementwise unary operation.
    Un(UnOp, Box<Val>),
    /// Elementwise binary operation; operands have the same width.
    Bin(BinOp, Box<Val>, Box<Val>),
    /// `if c != 0 { a } else { b }`, elementwise.
    Select(Box<Val>, Box<Val>, Box<Val>),
    /// A scalar broadcast to `lanes`.
    Splat(Box<Val>, u32),
    /// The sum of a vector's lanes (a scalar).
    ReduceAdd(Box<Val>),
    /// The value another thread of the warp holds (elementwise for a vector). Typing: the
    /// operand's width. Grid launches (GPU) only, and every thread of the warp must
    /// evaluate it together (not under an [`crate::Stmt::If`] that differs within a warp).
    Shuffle(Shuffle, Box<Val>),
    /// The sum over the 32 threads of the warp, in every thread (elementwise). Typing and
    /// targets as [`Val::Shuffle`].
    WarpSum(Box<Val>),
}

// Constructors of expression nodes, named after the operation they build.
#[allow(clippy::should_implement_trait)]
impl Val {
    /// Elementwise `op`.
    pub fn bin(op: BinOp, a: Val, b: Val) -> Val {
        Val::Bin(op, Box::new(a), Box::new(b))
    }
    /// `a + b`.
    pub fn add(a: Val, b: Val) -> Val {
        Val::bin(BinOp::Add, a, b)
    }
    /// `a - b`.
    pub fn sub(a: Val, b: Val) -> Val {
        Val::bin(BinOp::Sub, a, b)
    }
    /// `a * b`.
    pub fn mul(a: Val, b: Val) -> Val {
        Val::bin(BinOp::Mul, a, b)
    }
    /// `a / b`.
    pub fn div(a: Val, b: Val) -> Val {
        Val::bin(BinOp::Div, a, b)
    }
    /// Elementwise `op`.
    pub fn un(op: UnOp, a: Val) -> Val {
        Val::Un(op, Box::new(a))
    }
    /// `s` broadcast to `lanes` (no-op for one lane).
    pub fn splat(s: Val, lanes: u32) -> Val {
        if lanes == 1 {
            s
        } else {
            Val::Splat(Box::new(s), lanes)
        }
    }
    /// `v` as another thread of the warp holds it.
    pub fn shuffle(how: Shuffle, v: Val) -> Val {
        Val::Shuffle(how, Box::new(v))
    }

    /// Calls `f` on every sub-value, this one first.
    pub fn visit(&self, f: &mut dyn FnMut(&Val)) {
        f(self);
        match self {
            Val::Const(_) | Val::Var(_) | Val::Load { .. } => {}
            Val::Un(_, a) | Val::Splat(a, _) | Val::ReduceAdd(a) | Val::Shuffle(_, a) | Val::WarpSum(a) => a.visit(f),
            Val::Bin(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Val::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
        }
    }
}
