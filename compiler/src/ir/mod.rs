//! The layer IR: one checked layer, its dims, tensors and the elementwise expressions that
//! feed each role of the scan. Nodes live in arenas; spans live in a side table.
//!
//! The model every form reproduces (DESIGN.md), per batch b, head h, head element p:
//!
//! ```text
//! h_t = Abar_t * h_{t-1} + Bbar_t x_t        state: one value per state index n
//! y_t = C_t . h_t + D x_t ;  y_t *= silu(z_t)
//! ```

use crate::arena::{Arena, Handle};
use ssmc_syntax::Span;

/// What an axis means to the scan. `channel` (Mamba-1's D) and `head` (Mamba-2's H)
/// take the same place: a channel is a head with one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AxisRole {
    /// Independent sequences.
    Batch,
    /// The scanned axis.
    Time,
    /// Channels, each with its own scan (Mamba-1 `D`, S4D `H`).
    Channel,
    /// Heads, each sharing A and dt over `headdim` elements (Mamba-2 `H`).
    Head,
    /// Elements of a head (Mamba-2 `P`).
    HeadDim,
    /// Groups of heads sharing B and C.
    Group,
    /// The state of one scan.
    State,
}

/// Index positions of the roles in an evaluation environment.
pub const SLOTS: usize = 6;

impl AxisRole {
    /// All roles, in the order of their keywords.
    pub const ALL: [AxisRole; 7] = [
        AxisRole::Batch,
        AxisRole::Time,
        AxisRole::Channel,
        AxisRole::Head,
        AxisRole::HeadDim,
        AxisRole::Group,
        AxisRole::State,
    ];

    /// The keyword of the role.
    pub fn keyword(self) -> &'static str {
        match self {
            AxisRole::Batch => "batch",
            AxisRole::Time => "time",
            AxisRole::Channel => "channel",
            AxisRole::Head => "head",
            AxisRole::HeadDim => "headdim",
            AxisRole::Group => "group",
            AxisRole::State => "state",
        }
    }

    /// The role of a keyword.
    pub fn from_keyword(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.keyword() == s)
    }

    /// Slot of this role in an index environment (channel and head share one).
    pub fn slot(self) -> usize {
        match self {
            AxisRole::Batch => 0,
            AxisRole::Time => 1,
            AxisRole::Channel | AxisRole::Head => 2,
            AxisRole::HeadDim => 3,
            AxisRole::Group => 4,
            AxisRole::State => 5,
        }
    }
}

/// A named size.
#[derive(Clone, Debug, PartialEq)]
pub struct Dim {
    /// Its name, as written.
    pub name: String,
    /// What its axis means.
    pub role: AxisRole,
    /// Fixed when compiled, or bound when run.
    pub size: DimSize,
}

/// When a dim's size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimSize {
    /// Bound from the tensors at run time.
    Runtime,
    /// Fixed in the `.ssm` file.
    Const(u64),
}

/// One axis of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Axis {
    /// `dim / divisor` (divisor 1 when written `dim`).
    Dim {
        /// The dim.
        dim: Handle<Dim>,
        /// Divides the dim's size exactly.
        divisor: u64,
    },
    /// The size-2 real/imaginary axis of a complex tensor stored as reals.
    Complex,
}

/// Element types of tensors: the runtime's, so manifests and the IR speak of one type.
pub use ssmc_contract::DType;

/// Whether a tensor is read or written.
pub use ssmc_syntax::ast::Io;

/// How `ssmc run` draws a generated input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Gaussian with this mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Uniform in `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
}

/// A declared tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Its name.
    pub name: String,
    /// Input or output.
    pub io: Io,
    /// Declared element type.
    pub dtype: DType,
    /// Axes, outermost first (row-major layout).
    pub shape: Vec<Axis>,
    /// Distribution of generated values.
    pub init: Init,
}

/// Elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// e^x
    Exp,
    /// natural logarithm
    Log,
    /// log(1 + e^x)
    Softplus,
    /// x * sigmoid(x)
    Silu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// square root
    Sqrt,
    /// |x|
    Abs,
    /// clamp(x, lo, hi)
    Clamp,
    /// min(a, b)
    Min,
    /// max(a, b)
    Max,
}

impl Func {
    /// All functions.
    pub const ALL: [Func; 10] = [
        Func::Exp,
        Func::Log,
        Func::Softplus,
        Func::Silu,
        Func::Sigmoid,
        Func::Sqrt,
        Func::Abs,
        Func::Clamp,
        Func::Min,
        Func::Max,
    ];

    /// The name used in `.ssm` files.
    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Softplus => "softplus",
            Func::Silu => "silu",
            Func::Sigmoid => "sigmoid",
            Func::Sqrt => "sqrt",
            Func::Abs => "abs",
            Func::Clamp => "clamp",
            Func::Min => "min",
            Func::Max => "max",
        }
    }

    /// Number of arguments.
    pub fn arity(self) -> usize {
        match self {
            Func::Clamp => 3,
            Func::Min | Func::Max => 2,
            _ => 1,
        }
    }
}

/// Binary arithmetic.
pub use ssmc_syntax::ast::BinOp;

/// An elementwise real expression. Its axes are the union of the axes of the tensors it
/// loads (broadcast by dim); see [`Layer::axes_of`].
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal; no axes.
    Const(f64),
    /// An element of a tensor; axes: the tensor's dim axes. `component` picks the real (0)
    /// or imaginary (1) part along its `Axis::Complex`, when it has one.
    Load {
        /// The tensor read.
        tensor: Handle<Tensor>,
        /// Which part of a complex tensor.
        component: Option<u8>,
    },
    /// `-a`; axes of `a`.
    Neg(Handle<Expr>),
    /// `a op b`; union of the axes.
    Binary(BinOp, Handle<Expr>, Handle<Expr>),
    /// `f(args)`; union of the axes.
    Call(Func, Vec<Handle<Expr>>),
}

/// A possibly complex role value: `re + i im`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value {
    /// Real part.
    pub re: Handle<Expr>,
    /// Imaginary part, if complex.
    pub im: Option<Handle<Expr>>,
}

/// Structure of the state matrix A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AStructure {
    /// One real value per head, shared by its state (Mamba-2).
    Scalar,
    /// One real value per state index (Mamba-1, S4D-Real).
    Diagonal,
    /// One complex value per state index; the state holds one of each conjugate pair and
    /// the output is 2 Re(C . h) (S4D).
    Complex,
}

impl AStructure {
    /// The name used in `.ssm` files.
    pub fn name(self) -> &'static str {
        match self {
            AStructure::Scalar => "scalar",
            AStructure::Diagonal => "diagonal",
            AStructure::Complex => "complex",
        }
    }
}

/// Continuous to discrete (A, B, dt) -> (Abar, Bbar); defined in the templates crate,
/// which cannot depend on this one, so that the IR and the templates share one type.
pub use ssmc_kernels::Discretization;

/// Scan order over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// t = 0 .. L-1.
    Causal,
    /// t = L-1 .. 0.
    Reverse,
    /// A causal and a reverse scan, outputs summed (Vision Mamba).
    Bidirectional,
}

impl Direction {
    /// All directions.
    pub const ALL: [Direction; 3] = [Direction::Causal, Direction::Reverse, Direction::Bidirectional];

    /// The name used in `.ssm` files.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Causal => "causal",
            Direction::Reverse => "reverse",
            Direction::Bidirectional => "bidirectional",
        }
    }
}

/// The role values of one scan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scan {
    /// Input sequence; axes: batch, time, head (or channel) and optionally headdim.
    pub x: Handle<Expr>,
    /// Step size; axes within batch, time, head. Absent for `discrete`.
    pub dt: Option<Handle<Expr>>,
    /// State matrix; axes within head, state (head only when scalar).
    pub a: Value,
    /// Input matrix; axes within batch, time, head or group, state.
    pub b: Value,
    /// Output matrix; axes as B.
    pub c: Value,
    /// Skip D; axes within head, headdim.
    pub skip: Option<Handle<Expr>>,
    /// Argument z of the gate `y *= silu(z)`; axes within those of x.
    pub gate: Option<Handle<Expr>>,
}

/// The dims that give the scan its index space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScanAxes {
    /// Batch dim.
    pub batch: Handle<Dim>,
    /// Time dim.
    pub time: Handle<Dim>,
    /// Channel or head dim.
    pub head: Handle<Dim>,
    /// Elements per head, if any.
    pub headdim: Option<Handle<Dim>>,
    /// Groups of heads sharing B and C, if any.
    pub group: Option<Handle<Dim>>,
    /// The state axis (e.g. `N`, or `N/2` for conjugate pairs).
    pub state: Axis,
}

/// One checked layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Its name.
    pub name: String,
    /// Declared dims.
    pub dims: Arena<Dim>,
    /// Declared tensors, in source order.
    pub tensors: Arena<Tensor>,
    /// Expressions of all roles.
    pub exprs: Arena<Expr>,
    /// The axes of the scan.
    pub axes: ScanAxes,
    /// Structure of A.
    pub a_structure: AStructure,
    /// Discretization.
    pub discretization: Discretization,
    /// Scan direction.
    pub direction: Direction,
    /// The (first) scan.
    pub forward: Scan,
    /// The reverse scan of a bidirectional layer.
    pub backward: Option<Scan>,
    /// Initial state input, axes batch, head, \[headdim\], state.
    pub initial_state: Option<Handle<Tensor>>,
    /// Final state output, axes as the initial state.
    pub final_state: Option<Handle<Tensor>>,
    /// The output y, with the axes of x.
    pub output: Handle<Tensor>,
    /// Where things were written.
    pub spans: SpanTable,
}

/// Source spans of IR nodes, beside the nodes.
#[derive(Clone, Debug, Default)]
pub struct SpanTable {
    /// One per dim.
    pub dims: Vec<Span>,
    /// One per tensor.
    pub tensors: Vec<Span>,
    /// One per expression.
    pub exprs: Vec<Span>,
}

impl Layer {
    /// The dim axes of an expression: union of its loads' dim axes, sorted.
    pub fn axes_of(&self, e: Handle<Expr>) -> Vec<Axis> {
        let mut out = Vec::new();
        self.collect_axes(e, &mut out);
        out.sort_by_key(|a| (self.axis_slot(*a), *a));
        out.dedup();
        out
    }

    fn collect_axes(&self, e: Handle<Expr>, out: &mut Vec<Axis>) {
        match &self.exprs[e] {
            Expr::Const(_) => {}
            Expr::Load { tensor, .. } => {
                out.extend(self.tensors[*tensor].shape.iter().filter(|a| !matches!(a, Axis::Complex)))
            }
            Expr::Neg(a) => self.collect_axes(*a, out),
            Expr::Binary(_, a, b) => {
                self.collect_axes(*a, out);
                self.collect_axes(*b, out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| self.collect_axes(*a, out)),
        }
    }

    /// Environment slot of an axis (`Axis::Complex` has none and sorts last).
    pub fn axis_slot(&self, a: Axis) -> usize {
        match a {
            Axis::Dim { dim, .. } => self.dims[dim].role.slot(),
            Axis::Complex => SLOTS,
        }
    }

    /// Whether the role value varies along time (is selective).
    pub fn is_selective(&self, e: Handle<Expr>) -> bool {
        self.axes_of(e).iter().any(|a| self.axis_slot(*a) == AxisRole::Time.slot())
    }

    /// Linear time-invariant: neither dt, A, B nor C of any scan depends on time.
    pub fn is_lti(&self) -> bool {
        self.scans().all(|s| self.selective_roles(s).is_empty())
    }

    /// The roles of `scan` that depend on time (`dt`, `A`, `B`, `C`), each with the span of
    /// its part that does: the one definition of time-invariance.
    pub fn selective_roles(&self, scan: &Scan) -> Vec<(&'static str, Span)> {
        let roles = [
            ("dt", scan.dt, None),
            ("A", Some(scan.a.re), scan.a.im),
            ("B", Some(scan.b.re), scan.b.im),
            ("C", Some(scan.c.re), scan.c.im),
        ];
        roles
            .into_iter()
            .filter_map(|(name, re, im)| {
                let sel = [re, im].into_iter().flatten().find(|e| self.is_selective(*e))?;
                Some((name, self.spans.exprs[sel.index()]))
            })
            .collect()
    }

    /// The forward scan, then the backward one if any.
    pub fn scans(&self) -> impl Iterator<Item = &Scan> {
        std::iter::once(&self.forward).chain(self.backward.as_ref())
    }

    /// The scans as they run, each with whether it runs backward in time: the forward scan
    /// (backward for a reverse layer), then for a bidirectional layer the backward scan (the
    /// forward one again when the two share their roles).
    pub fn directed_scans(&self) -> Vec<(&Scan, bool)> {
        match self.direction {
            Direction::Causal => vec![(&self.forward, false)],
            Direction::Reverse => vec![(&self.forward, true)],
            Direction::Bidirectional => {
                vec![(&self.forward, false), (self.backward.as_ref().unwrap_or(&self.forward), true)]
            }
        }
    }

    /// The inputs in declaration order.
    pub fn inputs(&self) -> impl Iterator<Item = (Handle<Tensor>, &Tensor)> {
        self.tensors.iter().filter(|(_, t)| t.io == Io::Input)
    }

    /// The outputs in declaration order.
    pub fn outputs(&self) -> impl Iterator<Item = (Handle<Tensor>, &Tensor)> {
        self.tensors.iter().filter(|(_, t)| t.io == Io::Output)
    }

    /// An axis written as in the source: `N`, `N/2` or `2`.
    pub fn axis_name(&self, a: Axis) -> String {
        match a {
            Axis::Dim { dim, divisor: 1 } => self.dims[dim].name.clone(),
            Axis::Dim { dim, divisor } => format!("{}/{}", self.dims[dim].name, divisor),
            Axis::Complex => "2".to_string(),
        }
    }

    /// A shape written as in the source: `[B, D, L]`.
    pub fn shape_name(&self, shape: &[Axis]) -> String {
        let parts: Vec<String> = shape.iter().map(|a| self.axis_name(*a)).collect();
        format!("[{}]", parts.join(", "))
    }
}

/// All layers of one file.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// Layers in source order.
    pub layers: Vec<Layer>,
}

impl Module {
    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }
}

mod print;
pub use print::ExprText;
