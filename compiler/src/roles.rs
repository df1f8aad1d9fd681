//! Role values of a layer on given inputs: each role's expression evaluated once over its
//! own axes (a [`Field`]), and the index space of the scan. Shared by the reference
//! interpreter and the forms.

use crate::arena::Handle;
use crate::bind::Sizes;
use crate::ir::*;
use crate::tensors::{TensorData, TensorMap};
use num_complex::Complex64 as C64;

/// An index into every role axis: batch, time, head, headdim, group, state.
pub type Env = [usize; SLOTS];

/// Sizes of the scan's index space.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Batch rows.
    pub batch: usize,
    /// Time steps.
    pub time: usize,
    /// Heads (or channels).
    pub heads: usize,
    /// Elements per head (1 without a headdim).
    pub headdim: usize,
    /// Heads per group of B and C (1 without groups).
    pub heads_per_group: usize,
    /// State size of one scan (pairs, for a complex state).
    pub state: usize,
}

impl Dims {
    /// The index space of `layer` at `sizes`.
    pub fn new(layer: &Layer, sizes: &Sizes) -> Self {
        let ax = &layer.axes;
        Dims {
            batch: sizes.dim(ax.batch),
            time: sizes.dim(ax.time),
            heads: sizes.dim(ax.head),
            headdim: ax.headdim.map_or(1, |d| sizes.dim(d)),
            heads_per_group: ax.group.map_or(1, |g| sizes.dim(ax.head) / sizes.dim(g)).max(1),
            state: sizes.axis(ax.state),
        }
    }

    /// The environment of sequence (b, head, p) at time 0, state 0.
    pub fn env(&self, b: usize, head: usize, p: usize) -> Env {
        [b, 0, head, p, head / self.heads_per_group, 0]
    }

    /// Flat index of y in (batch, time, head, headdim) order.
    pub fn y_index(&self, e: &Env) -> usize {
        ((e[0] * self.time + e[1]) * self.heads + e[2]) * self.headdim + e[3]
    }

    /// Flat index of the state in (batch, head, headdim, state) order.
    pub fn state_index(&self, e: &Env) -> usize {
        ((e[0] * self.heads + e[2]) * self.headdim + e[3]) * self.state + e[5]
    }

    /// Number of y values.
    pub fn y_len(&self) -> usize {
        self.batch * self.time * self.heads * self.headdim
    }

    /// Number of state values.
    pub fn state_len(&self) -> usize {
        self.batch * self.heads * self.headdim * self.state
    }
}

/// A role's values over the role's own axes (complex when the role is).
pub struct Field {
    /// (slot, stride) per axis.
    axes: Vec<(usize, usize)>,
    re: Vec<f64>,
    im: Option<Vec<f64>>,
}

impl Field {
    /// The value at an environment (axes the role lacks are ignored: broadcast).
    pub fn get(&self, env: &Env) -> C64 {
        let i: usize = self.axes.iter().map(|(slot, stride)| env[*slot] * stride).sum();
        C64::new(self.re[i], self.im.as_ref().map_or(0.0, |im| im[i]))
    }

    /// Whether the value varies along the slot of `role`.
    pub fn varies_along(&self, role: AxisRole) -> bool {
        self.axes.iter().any(|(s, _)| *s == role.slot())
    }
}

/// The role values of one scan.
pub struct ScanRoles {
    /// x
    pub x: Field,
    /// dt, if any.
    pub dt: Option<Field>,
    /// A
    pub a: Field,
    /// B
    pub b: Field,
    /// C
    pub c: Field,
    /// D, if any.
    pub skip: Option<Field>,
    /// z of the gate, if any.
    pub gate: Option<Field>,
}

impl ScanRoles {
    /// Evaluates every role of `scan`.
    pub fn new(layer: &Layer, sizes: &Sizes, inputs: &TensorMap, scan: &Scan) -> Self {
        let ev = Evaluator { layer, sizes, inputs };
        let real = |e: Handle<Expr>| ev.field(Value { re: e, im: None });
        ScanRoles {
            x: real(scan.x),
            dt: scan.dt.map(real),
            a: ev.field(scan.a),
            b: ev.field(scan.b),
            c: ev.field(scan.c),
            skip: scan.skip.map(real),
            gate: scan.gate.map(real),
        }
    }

    /// Whether Abar, Bbar and C are the same at every time step.
    pub fn time_invariant(&self) -> bool {
        let t = AxisRole::Time;
        !(self.dt.as_ref().is_some_and(|f| f.varies_along(t))
            || self.a.varies_along(t)
            || self.b.varies_along(t)
            || self.c.varies_along(t))
    }
}

/// The initial state input as a field over its own axes.
pub fn initial_state(layer: &Layer, inputs: &TensorMap) -> Option<Field> {
    let t = &layer.tensors[layer.initial_state?];
    let data = &inputs[&t.name];
    let axes = t.shape.iter().map(|a| layer.axis_slot(*a)).zip(strides(&data.shape)).collect();
    Some(Field { axes, re: data.data.clone(), im: None })
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * dims[k + 1];
    }
    strides
}

/// The output tensors of a layer, laid out as declared, from y in (batch, time, head,
/// headdim) order and the final state in (batch, head, headdim, state) order.
pub fn outputs(layer: &Layer, sizes: &Sizes, d: &Dims, y: &[f64], final_state: &[C64]) -> TensorMap {
    let mut out = TensorMap::new();
    let y_tensor = &layer.tensors[layer.output];
    out.insert(y_tensor.name.clone(), store(layer, sizes, &y_tensor.shape, |e| y[d.y_index(e)]));
    if let Some(t) = layer.final_state {
        let t = &layer.tensors[t];
        out.insert(t.name.clone(), store(layer, sizes, &t.shape, |e| final_state[d.state_index(e)].re));
    }
    out
}

/// Lays out a tensor of `shape` from a function of the role environment.
pub fn store(layer: &Layer, sizes: &Sizes, shape: &[Axis], value: impl Fn(&Env) -> f64) -> TensorData {
    let dims = sizes.shape(shape);
    let mut data = Vec::with_capacity(dims.iter().product());
    for_each_index(&dims, |idx| {
        let mut env: Env = [0; SLOTS];
        for (a, i) in shape.iter().zip(idx) {
            env[layer.axis_slot(*a)] = *i;
        }
        data.push(value(&env));
    });
    TensorData { shape: dims, data }
}

/// Calls `f` with every multi-index of `dims`, last axis fastest.
pub fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize])) {
    if dims.contains(&0) {
        return;
    }
    let mut idx = vec![0; dims.len()];
    loop {
        f(&idx);
        let mut k = dims.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

struct Evaluator<'a> {
    layer: &'a Layer,
    sizes: &'a Sizes,
    inputs: &'a TensorMap,
}

impl Evaluator<'_> {
    /// Evaluates a role value at every point of its axes.
    fn field(&self, v: Value) -> Field {
        let mut axes = self.layer.axes_of(v.re);
        if let Some(im) = v.im {
            axes.extend(self.layer.axes_of(im));
            axes.sort_by_key(|a| self.layer.axis_slot(*a));
            axes.dedup();
        }
        let dims = self.sizes.shape(&axes);
        let slots: Vec<usize> = axes.iter().map(|a| self.layer.axis_slot(*a)).collect();
        let (mut re, mut im) = (Vec::new(), Vec::new());
        for_each_index(&dims, |idx| {
            let mut env: Env = [0; SLOTS];
            for (s, i) in slots.iter().zip(idx) {
                env[*s] = *i;
            }
            re.push(self.eval(v.re, &env));
            if let Some(h) = v.im {
                im.push(self.eval(h, &env));
            }
        });
        Field { axes: slots.into_iter().zip(strides(&dims)).collect(), re, im: v.im.map(|_| im) }
    }

    fn eval(&self, e: Handle<Expr>, env: &Env) -> f64 {
        match &self.layer.exprs[e] {
            Expr::Const(c) => *c,
            Expr::Load { tensor, component } => {
                let t = &self.layer.tensors[*tensor];
                let data = &self.inputs[&t.name];
                let mut i = 0;
                for (a, n) in t.shape.iter().zip(&data.shape) {
                    let k = match a {
                        Axis::Complex => component.map_or(0, usize::from),
                        _ => env[self.layer.axis_slot(*a)],
                    };
                    i = i * n + k;
                }
                data.data[i]
            }
            Expr::Neg(a) => -self.eval(*a, env),
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.eval(*a, env), self.eval(*b, env));
                match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                }
            }
            Expr::Call(f, args) => {
                let v: Vec<f64> = args.iter().map(|a| self.eval(*a, env)).collect();
                match f {
                    Func::Exp => v[0].exp(),
                    Func::Log => v[0].ln(),
                    Func::Softplus => softplus(v[0]),
                    Func::Silu => silu(v[0]),
                    Func::Sigmoid => 1.0 / (1.0 + (-v[0]).exp()),
                    Func::Sqrt => v[0].sqrt(),
                    Func::Abs => v[0].abs(),
                    Func::Clamp => v[0].max(v[1]).min(v[2]),
                    Func::Min => v[0].min(v[1]),
                    Func::Max => v[0].max(v[1]),
                }
            }
        }
    }
}

/// x sigmoid(x).
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// log(1 + e^x); x itself above 20, as torch's softplus (threshold 20) and mamba_ssm.
pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// (Abar, Bbar) of one state element, per DESIGN.md.
pub fn discretize(method: Discretization, dt: f64, a: C64, b: C64) -> (C64, C64) {
    let one = C64::new(1.0, 0.0);
    let dta = a * dt;
    match method {
        Discretization::ZohEuler => (dta.exp(), b * dt),
        Discretization::Zoh => {
            // (dt A)^-1 (exp(dt A) - 1) dt B, with the series near dt A = 0.
            let phi = if dta.norm() < 1e-5 { one + dta / 2.0 + dta * dta / 6.0 } else { (dta.exp() - 1.0) / dta };
            (dta.exp(), phi * b * dt)
        }
        Discretization::Bilinear => {
            let inv = 1.0 / (one - dta / 2.0);
            (inv * (one + dta / 2.0), inv * b * dt)
        }
        Discretization::Discrete => (a, b),
    }
}
