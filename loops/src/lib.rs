//! The loop IR: what a schedule template produces and every backend consumes. A kernel
//! is a body of statements over float variables (scalars or vectors of `lanes` f32) and
//! integer loop variables, reading and writing buffers at integer index expressions.
//!
//! The kernel works on a range of sequences `[begin, end)`: the CPU runtime gives each
//! thread a range; on the GPU each thread takes one sequence.

use std::fmt;

/// A variable: an integer loop counter or a float value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Var(pub u32);

/// Well-known integer variables that role values are written over.
pub mod axis {
    use super::Var;
    /// Batch row.
    pub const BATCH: Var = Var(0);
    /// Time step (the layer's time index, already reversed for reverse scans).
    pub const TIME: Var = Var(1);
    /// Head or channel.
    pub const HEAD: Var = Var(2);
    /// Element of a head.
    pub const HEADDIM: Var = Var(3);
    /// Group of the head.
    pub const GROUP: Var = Var(4);
    /// First state index of the current vector of lanes.
    pub const STATE: Var = Var(5);
    /// Variables below this are axis variables.
    pub const COUNT: u32 = 6;
}

/// Element type of a buffer in memory; arithmetic is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// binary32
    F32,
    /// bfloat16, widened on load
    Bf16,
}

/// A buffer the kernel reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    pub elem: Elem,
    /// Written by the kernel.
    pub output: bool,
}

/// An integer expression (an index or a bound).
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
            (a, b) => Index::Div(Box::new(a), Box::new(b)),
        }
    }

    /// `a % b`.
    pub fn rem(a: Index, b: Index) -> Index {
        Index::Rem(Box::new(a), Box::new(b))
    }

    /// `min(a, b)`.
    pub fn min(a: Index, b: Index) -> Index {
        Index::Min(Box::new(a), Box::new(b))
    }

    /// The value at runtime dims `dims` (by position), for an expression of constants and
    /// dims only (a kernel's work-item count); `None` where it reads a variable or the
    /// lane, divides by zero or overflows.
    pub fn eval(&self, dims: &[i64]) -> Option<i64> {
        let two = |a: &Index, b: &Index| Some((a.eval(dims)?, b.eval(dims)?));
        match self {
            Index::Const(c) => Some(*c),
            Index::Dim(d) => dims.get(*d).copied(),
            Index::Var(_) | Index::Lane => None,
            Index::Add(a, b) => two(a, b).and_then(|(a, b)| a.checked_add(b)),
            Index::Sub(a, b) => two(a, b).and_then(|(a, b)| a.checked_sub(b)),
            Index::Mul(a, b) => two(a, b).and_then(|(a, b)| a.checked_mul(b)),
            Index::Div(a, b) => two(a, b).and_then(|(a, b)| a.checked_div(b)),
            Index::Rem(a, b) => two(a, b).and_then(|(a, b)| a.checked_rem(b)),
            Index::Min(a, b) => two(a, b).map(|(a, b)| a.min(b)),
        }
    }
}

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
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// Declares float variable `var` of width `lanes`, set to `value`.
    Let {
        /// The variable.
        var: Var,
        /// Its width.
        lanes: u32,
        /// Its first value.
        value: Val,
    },
    /// Sets a declared float variable.
    Set {
        /// The variable.
        var: Var,
        /// Its new value.
        value: Val,
    },
    /// Stores a scalar into a buffer.
    Store {
        /// Buffer position.
        buf: usize,
        /// Element index.
        index: Index,
        /// The scalar stored.
        value: Val,
    },
    /// Stores the `lanes` lanes of a vector at `index`, `index + stride`, ...
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
    /// Stores a scalar added to what the buffer holds.
    StoreAdd {
        /// Buffer position.
        buf: usize,
        /// Element index.
        index: Index,
        /// The scalar added.
        value: Val,
    },
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
    /// Declares integer variable `var` = `value`.
    LetIndex {
        /// The variable.
        var: Var,
        /// Its value.
        value: Index,
    },
    /// `for var in lo..hi` (descending from hi - 1 when `reverse`).
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
    /// The causal convolution `output[t] = sum_{s <= t} kernel[t - s] * input[s]` for
    /// `t < len`, over f32 buffers (scratch arrays), by the host routine of
    /// [`Kernel::host_conv`].
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

/// A kernel: the body runs once per work item in `[begin, end)`, with `seq` bound. A work
/// item is one sequence, or `seq_lanes` sequences side by side in the lanes of every value
/// (then index expressions may use [`Index::Lane`], and loads and stores at lane-varying
/// indices gather and scatter).
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Symbol name.
    pub name: String,
    /// Buffers, inputs then outputs.
    pub buffers: Vec<Buffer>,
    /// Names of the runtime dims, in order.
    pub dims: Vec<String>,
    /// The integer variable holding the sequence number.
    pub seq: Var,
    /// Number of work items, from the dims.
    pub sequences: Index,
    /// Sequences per work item, side by side in lanes (1: one sequence per work item).
    pub seq_lanes: u32,
    /// Lane k holds a sequence of its own only if `a < b` at lane k; the other lanes repeat
    /// one (their `StoreAdd`s add nothing).
    pub lane_limit: Option<(Index, Index)>,
    /// Scratch arrays of f32 private to one call (sizes in elements), addressed as buffers
    /// `buffers.len()`, `buffers.len() + 1`, ...
    pub scratch: Vec<Index>,
    /// Statements run for each sequence.
    pub body: Vec<Stmt>,
    /// The body has [`Stmt::Convolve`]: the caller passes the address of a routine
    /// `void (*)(const float* k, const float* x, float* y, int64_t len)` computing it (the
    /// runtime's `ssmc_causal_conv_f32`) in `bufs[buffers.len()]`, after the tensors.
    pub host_conv: bool,
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Index::Const(c) => write!(f, "{c}"),
            Index::Dim(d) => write!(f, "d{d}"),
            Index::Var(v) => write!(f, "i{}", v.0),
            Index::Add(a, b) => write!(f, "({a} + {b})"),
            Index::Sub(a, b) => write!(f, "({a} - {b})"),
            Index::Mul(a, b) => write!(f, "{a}*{b}"),
            Index::Div(a, b) => write!(f, "({a} / {b})"),
            Index::Rem(a, b) => write!(f, "({a} % {b})"),
            Index::Min(a, b) => write!(f, "min({a}, {b})"),
            Index::Lane => write!(f, "lane"),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Const(c) => write!(f, "{c:?}"),
            Val::Var(v) => write!(f, "v{}", v.0),
            Val::Load { buf, index, lanes: 1, .. } => write!(f, "b{buf}[{index}]"),
            Val::Load { buf, index, lanes, stride } => write!(f, "b{buf}[{index} +: {lanes} by {stride}]"),
            Val::Un(op, a) => write!(f, "{}({a})", format!("{op:?}").to_lowercase()),
            Val::Bin(op, a, b) => write!(f, "{}({a}, {b})", format!("{op:?}").to_lowercase()),
            Val::Select(c, a, b) => write!(f, "select({c}, {a}, {b})"),
            Val::Splat(a, n) => write!(f, "splat{n}({a})"),
            Val::ReduceAdd(a) => write!(f, "sum({a})"),
        }
    }
}

fn write_block(f: &mut fmt::Formatter<'_>, body: &[Stmt], depth: usize) -> fmt::Result {
    let pad = "  ".repeat(depth);
    for s in body {
        match s {
            Stmt::Let { var, lanes, value } => writeln!(f, "{pad}let v{}: f32x{lanes} = {value}", var.0)?,
            Stmt::Set { var, value } => writeln!(f, "{pad}v{} = {value}", var.0)?,
            Stmt::Store { buf, index, value } => writeln!(f, "{pad}b{buf}[{index}] = {value}")?,
            Stmt::StoreAdd { buf, index, value } => writeln!(f, "{pad}b{buf}[{index}] += {value}")?,
            Stmt::StoreLanes { buf, index, stride, lanes, value } => {
                writeln!(f, "{pad}b{buf}[{index} +: {lanes} by {stride}] = {value}")?
            }
            Stmt::Transpose { buf, index, tile, count, into_tile } => {
                let arrow = if *into_tile { "->" } else { "<-" };
                writeln!(f, "{pad}transpose b{buf}[{index} +: {count} per lane] {arrow} tile b{tile}")?
            }
            Stmt::LetIndex { var, value } => writeln!(f, "{pad}let i{} = {value}", var.0)?,
            Stmt::Convolve { kernel, input, output, len } => {
                writeln!(f, "{pad}b{output}[..{len}] = causal_conv(b{kernel}, b{input})")?
            }
            Stmt::For { var, lo, hi, reverse, body } => {
                let dir = if *reverse { " rev" } else { "" };
                writeln!(f, "{pad}for i{} in {lo}..{hi}{dir} {{", var.0)?;
                write_block(f, body, depth + 1)?;
                writeln!(f, "{pad}}}")?;
            }
        }
    }
    Ok(())
}

/// Stable text form, for snapshots and `ssmc build --emit loops`.
impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel {}", self.name)?;
        for (i, b) in self.buffers.iter().enumerate() {
            let io = if b.output { "out" } else { "in" };
            writeln!(f, "  b{i} {io} {}: {:?}", b.name, b.elem)?;
        }
        for (i, d) in self.dims.iter().enumerate() {
            writeln!(f, "  d{i} = {d}")?;
        }
        for (i, s) in self.scratch.iter().enumerate() {
            writeln!(f, "  b{} scratch f32[{s}]", self.buffers.len() + i)?;
        }
        if self.host_conv {
            writeln!(f, "  bufs[{}] = host causal_conv_f32", self.buffers.len())?;
        }
        writeln!(f, "  for i{} in 0..{} (work items of {} sequences) {{", self.seq.0, self.sequences, self.seq_lanes)?;
        write_block(f, &self.body, 2)?;
        writeln!(f, "  }}")
    }
}
