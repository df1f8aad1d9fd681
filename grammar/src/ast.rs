//! Spanned syntax tree of a `.ssm` file, exactly as written; meaning comes later (sema).

/// A byte range `start..end` in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The range `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A whole `.ssm` file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// Layers in source order.
    pub layers: Vec<Layer>,
}

/// `layer NAME { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The layer's name.
    pub name: Ident,
    /// Statements in source order.
    pub stmts: Vec<Stmt>,
    /// The whole layer.
    pub span: Span,
}

/// One statement of a layer body.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// What the statement says.
    pub kind: StmtKind,
    /// The whole statement.
    pub span: Span,
}

/// The statements of the language.
#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `dims batch B, channel D, state N = 16`
    Dims(Vec<DimDecl>),
    /// `input u: f32[B, D, L]` or `output out: f32[B, D, L]`
    Tensor(TensorDecl),
    /// `discretize zoh_euler`
    Discretize(Ident),
    /// `skip D`: y += D x
    Skip(Expr),
    /// `gate silu(z)`: y *= silu(z)
    Gate(Expr),
    /// `direction causal`
    Direction(Ident),
    /// `reverse { ... }`: parameters of the backward scan of a bidirectional layer
    Reverse(Vec<Stmt>),
    /// `initial_state h0`
    InitialState(Ident),
    /// `final_state hT`
    FinalState(Ident),
    /// `ROLE = expr`, e.g. `dt = softplus(delta + delta_bias)`
    Role {
        /// The role: `x`, `dt`, `A`, `B` or `C`.
        role: Ident,
        /// Its value.
        value: Expr,
    },
}

/// `ROLE NAME` or `ROLE NAME = SIZE` inside `dims`.
#[derive(Clone, Debug, PartialEq)]
pub struct DimDecl {
    /// The axis role: batch, time, channel, head, headdim, group, state.
    pub role: Ident,
    /// The dim's name.
    pub name: Ident,
    /// A compile-time size, if given.
    pub size: Option<(i64, Span)>,
}

/// Whether a tensor is read or written by the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// `input`
    Input,
    /// `output`
    Output,
}

/// `input NAME: DTYPE[SHAPE] ~ DIST(ARGS)`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDecl {
    /// Input or output.
    pub io: Io,
    /// The tensor's name.
    pub name: Ident,
    /// The element type as written (`f32`, ...).
    pub dtype: Ident,
    /// One atom per axis, outermost first.
    pub shape: Vec<ShapeAtom>,
    /// The `[...]` part.
    pub shape_span: Span,
    /// Distribution of generated inputs for `ssmc run`.
    pub init: Option<Init>,
}

/// One axis of a declared shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeAtom {
    /// What the axis is.
    pub kind: ShapeAtomKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of shape atoms.
#[derive(Clone, Debug, PartialEq)]
pub enum ShapeAtomKind {
    /// `N` or `N/2`.
    Dim {
        /// The dim.
        name: Ident,
        /// The divisor after `/`, if any.
        divisor: Option<(i64, Span)>,
    },
    /// A literal size such as `2`.
    Literal(i64),
}

/// `~ normal(0, 1)`: how `ssmc run` draws a generated input.
#[derive(Clone, Debug, PartialEq)]
pub struct Init {
    /// The distribution's name.
    pub dist: Ident,
    /// Its arguments.
    pub args: Vec<f64>,
    /// The whole `~ ...` part.
    pub span: Span,
}

/// An elementwise expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it computes.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// The kinds of expressions.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal number.
    Number(f64),
    /// A tensor name.
    Name(Ident),
    /// `-e`
    Neg(Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `f(a, ...)`
    Call(Ident, Vec<Expr>),
}
