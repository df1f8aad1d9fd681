//! Lowering: a checked layer to the [`ScanSpec`] a schedule template turns into loop IR.
//! Each role expression becomes a loop-IR value over the axis variables; each tensor is
//! addressed through its declared layout.

use crate::arena::Handle;
use crate::ir::*;
use ssmc_kernels::axis;
use ssmc_kernels::{Cx, Mapping, Place, Scalars, ScanSpec, ScanVals};
use ssmc_loops::{Buffer, Elem, Index, UnOp, Val, Var};
use std::fmt;

/// Why a layer cannot be compiled to native code (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerError(pub String);

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LowerError {}

/// The variable of an axis role.
fn axis_var(role: AxisRole) -> Var {
    match role {
        AxisRole::Batch => axis::BATCH,
        AxisRole::Time => axis::TIME,
        AxisRole::Channel | AxisRole::Head => axis::HEAD,
        AxisRole::HeadDim => axis::HEADDIM,
        AxisRole::Group => axis::GROUP,
        AxisRole::State => axis::STATE,
    }
}

/// Symbol name of a layer's kernel.
pub fn kernel_name(layer: &Layer) -> String {
    format!("ssmc_{}", layer.name)
}

/// Runtime dims of a layer, in declaration order: the kernel's dims.
pub fn runtime_dims(layer: &Layer) -> Vec<Handle<Dim>> {
    layer.dims.iter().filter(|(_, d)| d.size == DimSize::Runtime).map(|(h, _)| h).collect()
}

#[derive(Clone)]
struct Lowerer<'a> {
    layer: &'a Layer,
    /// The axis vector lanes run along (the state, or the elements of a head).
    along: AxisRole,
    dims: Vec<Handle<Dim>>,
    /// Buffer position of each tensor.
    buffer_of: Vec<usize>,
}

impl Lowerer<'_> {
    fn dim(&self, d: Handle<Dim>) -> Index {
        match self.layer.dims[d].size {
            DimSize::Const(n) => Index::Const(n as i64),
            DimSize::Runtime => Index::Dim(self.dims.iter().position(|x| *x == d).expect("runtime dims are listed")),
        }
    }

    fn axis_size(&self, a: Axis) -> Index {
        match a {
            Axis::Dim { dim, divisor } => Index::div(self.dim(dim), Index::Const(divisor as i64)),
            Axis::Complex => Index::Const(2),
        }
    }

    /// Row-major stride of each axis of a tensor.
    fn strides(&self, t: Handle<Tensor>) -> Vec<Index> {
        let shape = &self.layer.tensors[t].shape;
        let mut strides = vec![Index::Const(1); shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            strides[k] = Index::mul(strides[k + 1].clone(), self.axis_size(shape[k + 1]));
        }
        strides
    }

    /// Element index of a tensor at the axis variables; the state axis (if any) at STATE.
    fn place(&self, t: Handle<Tensor>, component: Option<u8>) -> Place {
        let shape = &self.layer.tensors[t].shape;
        let strides = self.strides(t);
        let mut index = Index::Const(0);
        let mut state_stride = Index::Const(0);
        for (a, s) in shape.iter().zip(strides) {
            let term = match a {
                Axis::Complex => Index::mul(Index::Const(component.unwrap_or(0) as i64), s.clone()),
                Axis::Dim { dim, .. } => {
                    let role = self.layer.dims[*dim].role;
                    if role == AxisRole::State {
                        state_stride = s.clone();
                    }
                    Index::mul(Index::Var(axis_var(role)), s.clone())
                }
            };
            index = Index::add(index, term);
        }
        Place { buf: self.buffer_of[t.index()], index, state_stride }
    }

    /// The stride of the axis lanes run along in a tensor (0 when it has none).
    fn stride_along(&self, t: Handle<Tensor>) -> Index {
        let shape = &self.layer.tensors[t].shape;
        let strides = self.strides(t);
        shape
            .iter()
            .zip(strides)
            .find(|(a, _)| matches!(a, Axis::Dim { dim, .. } if self.layer.dims[*dim].role.slot() == self.along.slot()))
            .map_or(Index::Const(0), |(_, s)| s)
    }

    /// A role expression at width `lanes` (vectorized along `along` when it varies there).
    fn expr(&self, e: Handle<Expr>, lanes: u32) -> Val {
        let c = |v: f32| Val::splat(Val::Const(v), lanes);
        match &self.layer.exprs[e] {
            Expr::Const(v) => c(*v as f32),
            Expr::Load { tensor, component } => {
                let p = self.place(*tensor, *component);
                let stride = self.stride_along(*tensor);
                if stride != Index::Const(0) && lanes > 1 {
                    Val::Load { buf: p.buf, index: p.index, lanes, stride }
                } else {
                    Val::splat(Val::Load { buf: p.buf, index: p.index, lanes: 1, stride: Index::Const(1) }, lanes)
                }
            }
            Expr::Neg(a) => Val::un(UnOp::Neg, self.expr(*a, lanes)),
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.expr(*a, lanes), self.expr(*b, lanes));
                match op {
                    BinOp::Add => Val::add(a, b),
                    BinOp::Sub => Val::sub(a, b),
                    BinOp::Mul => Val::mul(a, b),
                    BinOp::Div => Val::div(a, b),
                }
            }
            Expr::Call(f, args) => {
                let v: Vec<Val> = args.iter().map(|a| self.expr(*a, lanes)).collect();
                let sigmoid = |x: Val| Val::div(c(1.0), Val::add(c(1.0), Val::un(UnOp::Exp, Val::un(UnOp::Neg, x))));
                match f {
                    Func::Exp => Val::un(UnOp::Exp, v[0].clone()),
                    Func::Log => Val::un(UnOp::Log, v[0].clone()),
                    Func::Sqrt => Val::un(UnOp::Sqrt, v[0].clone()),
                    Func::Abs => Val::un(UnOp::Abs, v[0].clone()),
                    Func::Softplus => Val::un(UnOp::Softplus, v[0].clone()),
                    Func::Sigmoid => sigmoid(v[0].clone()),
                    Func::Silu => Val::mul(v[0].clone(), sigmoid(v[0].clone())),
                    Func::Clamp => Val::bin(
                        ssmc_loops::BinOp::Min,
                        Val::bin(ssmc_loops::BinOp::Max, v[0].clone(), v[1].clone()),
                        v[2].clone(),
                    ),
                    Func::Min => Val::bin(ssmc_loops::BinOp::Min, v[0].clone(), v[1].clone()),
                    Func::Max => Val::bin(ssmc_loops::BinOp::Max, v[0].clone(), v[1].clone()),
                }
            }
        }
    }

    fn value(&self, v: Value, lanes: u32) -> Cx {
        Cx { re: self.expr(v.re, lanes), im: v.im.map(|im| self.expr(im, lanes)) }
    }

    fn varies_in_time(&self, e: Option<Handle<Expr>>) -> bool {
        e.is_some_and(|e| self.layer.is_selective(e))
    }

    fn scan(&self, s: &Scan, reversed: bool, lanes: u32) -> ScanVals {
        let by_element = Lowerer { along: AxisRole::HeadDim, ..self.clone() };
        let t = |v: Value| self.varies_in_time(Some(v.re)) || self.varies_in_time(v.im);
        ScanVals {
            x: self.expr(s.x, 1),
            dt: s.dt.map(|e| self.expr(e, 1)),
            a: self.value(s.a, lanes),
            b: self.value(s.b, lanes),
            c: self.value(s.c, lanes),
            skip: s.skip.map(|e| self.expr(e, 1)),
            gate: s.gate.map(|e| self.expr(e, 1)),
            gate_by_element: s.gate.map(|e| by_element.expr(e, lanes)),
            x_by_element: by_element.expr(s.x, lanes),
            skip_by_element: s.skip.map(|e| by_element.expr(e, lanes)),
            at_one_state: Scalars { a: self.value(s.a, 1), c: self.value(s.c, 1) },
            decay_invariant: !(self.varies_in_time(s.dt) || t(s.a) || t(s.b)),
            a_invariant: !t(s.a),
            a_shared: crate::forms::facts::ScanFacts::of(self.layer, s).scalar_decay,
            b_invariant: !t(s.b),
            c_invariant: !t(s.c),
            skip_invariant: !self.varies_in_time(s.skip),
            reversed,
        }
    }
}

/// How a schedule wants work items and vector lanes laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingChoice {
    /// The CPU's `recurrent`: lanes over heads without a headdim, time tiles of whole heads
    /// with one.
    Cpu,
    /// The GPU: one sequence per thread, lanes over the state.
    Gpu,
    /// A whole head (all its elements) per work item, lanes over the state (`chunked`).
    HeadTiles,
    /// One sequence (batch, head, element) per work item, lanes over the state (`conv`).
    Sequences,
}

/// Whether native code can take `layer` at all, or why not: its tensors are f32 or bf16
/// (outputs f32), and its state has a compile-time size along a real axis. Every native
/// form needs this; [`scan_spec`] checks it first, and [`LayerFacts`](crate::forms::facts::LayerFacts)
/// records it for planning.
pub fn native_support(layer: &Layer) -> Result<(), LowerError> {
    for (_, t) in layer.tensors.iter() {
        if !matches!(t.dtype, DType::F32 | DType::Bf16) {
            return Err(LowerError(format!(
                "native code takes f32 and bf16 tensors; `{}` is {} (the interpreter takes it)",
                t.name,
                t.dtype.name()
            )));
        }
        if t.io == Io::Output && t.dtype != DType::F32 {
            return Err(LowerError(format!("native code writes f32 outputs; `{}` is {}", t.name, t.dtype.name())));
        }
    }
    state_size(layer).map(|_| ())
}

/// The state size: a compile-time size of a real axis.
fn state_size(layer: &Layer) -> Result<u32, LowerError> {
    match layer.axes.state {
        Axis::Dim { dim, divisor } => match layer.dims[dim].size {
            DimSize::Const(n) => Ok((n / divisor) as u32),
            DimSize::Runtime => Err(LowerError(format!(
                "native code needs a compile-time state size: declare `state {} = SIZE`",
                layer.dims[dim].name
            ))),
        },
        Axis::Complex => Err(LowerError("the state axis cannot be a re/im axis".into())),
    }
}

/// The scan spec of a layer for vectors of at most `max_lanes` f32, its work items and
/// lanes laid out as `choice` says.
pub fn scan_spec(layer: &Layer, max_lanes: u32, choice: MappingChoice) -> Result<ScanSpec, LowerError> {
    native_support(layer)?;
    let mut buffers = Vec::new();
    let mut buffer_of = vec![0; layer.tensors.len()];
    for io in [Io::Input, Io::Output] {
        for (h, t) in layer.tensors.iter().filter(|(_, t)| t.io == io) {
            let elem = if t.dtype == DType::Bf16 { Elem::Bf16 } else { Elem::F32 };
            buffer_of[h.index()] = buffers.len();
            buffers.push(Buffer { name: t.name.clone(), elem, output: io == Io::Output });
        }
    }
    let dims = runtime_dims(layer);
    let lw = Lowerer { layer, along: AxisRole::State, dims: dims.clone(), buffer_of };
    let ax = &layer.axes;
    let state = state_size(layer)?;
    // Without a headdim (Mamba-1, S4D, Vim) lanes hold heads: one sequence per lane, the
    // state a loop of scalars; with one (Mamba-2) lanes hold state indices of one sequence.
    // With one on the CPU, each work item walks a whole head in time tiles, so B and C are
    // read once per head, not once per element. 16 steps: B and C of a tile (16 KiB at
    // N = 128) stay in L1 for all elements; tiles of 8, 32 and 64 measured slower.
    let mapping = match (choice, ax.headdim) {
        (MappingChoice::Cpu, None) => Mapping::HeadLanes { lanes: max_lanes },
        (MappingChoice::Cpu, Some(_)) | (MappingChoice::HeadTiles, _) => Mapping::StateTiles { time_tile: 16 },
        (MappingChoice::Gpu | MappingChoice::Sequences, _) => Mapping::StateLanes,
    };
    let lanes = match mapping {
        Mapping::HeadLanes { .. } => 1,
        Mapping::StateLanes | Mapping::StateTiles { .. } => {
            (0..=max_lanes.trailing_zeros()).rev().map(|k| 1u32 << k).find(|l| state % l == 0).unwrap_or(1)
        }
    };
    let size = |d: Option<Handle<Dim>>| d.map_or(Index::Const(1), |d| lw.dim(d));
    let scans = layer.directed_scans().into_iter().map(|(s, rev)| lw.scan(s, rev, lanes)).collect();
    Ok(ScanSpec {
        name: kernel_name(layer),
        buffers,
        dims: dims.iter().map(|d| layer.dims[*d].name.clone()).collect(),
        batch: lw.dim(ax.batch),
        time: lw.dim(ax.time),
        heads: lw.dim(ax.head),
        headdim: size(ax.headdim),
        heads_per_group: match ax.group {
            Some(g) => Index::div(lw.dim(ax.head), lw.dim(g)),
            None => lw.dim(ax.head),
        },
        groups: size(ax.group),
        state,
        lanes,
        mapping,
        pairs: layer.a_structure == AStructure::Complex,
        discretization: layer.discretization,
        scans,
        y: lw.place(layer.output, None),
        y_element_stride: Lowerer { along: AxisRole::HeadDim, ..lw.clone() }.stride_along(layer.output),
        h0: layer.initial_state.map(|t| lw.place(t, None)),
        h_final: layer.final_state.map(|t| lw.place(t, None)),
        split: 1,
    })
}
