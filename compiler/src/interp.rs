//! The reference interpreter: the layer model of DESIGN.md evaluated in f64, sequentially,
//! one (batch, head, head element) at a time. It is the oracle for every form and backend,
//! so it stays simple: materialize each role's values, then run the recurrence.

use crate::arena::Handle;
use crate::bind::Sizes;
use crate::ir::*;
use crate::tensors::{TensorData, TensorMap};
use num_complex::Complex64 as C64;

/// An index into every role axis: batch, time, head, headdim, group, state.
type Env = [usize; SLOTS];

/// Runs the layer on inputs already checked by [`crate::bind::sizes_from_inputs`] (or
/// generated at `sizes`). Returns the output y and the final state, if declared, by name.
pub fn run(layer: &Layer, sizes: &Sizes, inputs: &TensorMap) -> TensorMap {
    let ev = Evaluator { layer, sizes, inputs };
    let ax = &layer.axes;
    let dims = Dims {
        batch: sizes.dim(ax.batch),
        time: sizes.dim(ax.time),
        heads: sizes.dim(ax.head),
        headdim: ax.headdim.map_or(1, |d| sizes.dim(d)),
        heads_per_group: ax.group.map_or(1, |g| sizes.dim(ax.head) / sizes.dim(g)),
        state: sizes.axis(ax.state),
    };
    let mut y = vec![0.0; dims.batch * dims.time * dims.heads * dims.headdim];
    let mut final_state = vec![C64::new(0.0, 0.0); dims.batch * dims.heads * dims.headdim * dims.state];
    let scans: Vec<(&Scan, bool)> = match layer.direction {
        Direction::Causal => vec![(&layer.forward, false)],
        Direction::Reverse => vec![(&layer.forward, true)],
        Direction::Bidirectional => vec![(&layer.forward, false), (layer.backward.as_ref().unwrap_or(&layer.forward), true)],
    };
    let h0 = layer.initial_state.map(|t| ev.tensor_field(t));
    for (scan, reversed) in scans {
        let roles = Roles {
            x: ev.field(Value { re: scan.x, im: None }),
            dt: scan.dt.map(|e| ev.field(Value { re: e, im: None })),
            a: ev.field(scan.a),
            b: ev.field(scan.b),
            c: ev.field(scan.c),
            skip: scan.skip.map(|e| ev.field(Value { re: e, im: None })),
            gate: scan.gate.map(|e| ev.field(Value { re: e, im: None })),
        };
        recurrence(layer, &dims, &roles, h0.as_ref(), reversed, &mut y, &mut final_state);
    }
    let mut out = TensorMap::new();
    let y_tensor = &layer.tensors[layer.output];
    out.insert(y_tensor.name.clone(), store(layer, sizes, &y_tensor.shape, |e| y[y_index(&dims, e)]));
    if let Some(t) = layer.final_state {
        let t = &layer.tensors[t];
        out.insert(t.name.clone(), store(layer, sizes, &t.shape, |e| final_state[state_index(&dims, e)].re));
    }
    out
}

struct Dims {
    batch: usize,
    time: usize,
    heads: usize,
    headdim: usize,
    heads_per_group: usize,
    state: usize,
}

struct Roles {
    x: Field,
    dt: Option<Field>,
    a: Field,
    b: Field,
    c: Field,
    skip: Option<Field>,
    gate: Option<Field>,
}

/// h_t = Abar_t h_{t-1} + Bbar_t x_t ;  y_t += (C_t . h_t + D x_t) silu(z_t), for every
/// (batch, head, head element), over time in scan order.
fn recurrence(layer: &Layer, d: &Dims, r: &Roles, h0: Option<&Field>, reversed: bool, y: &mut [f64], final_state: &mut [C64]) {
    let pairs = if layer.a_structure == AStructure::Complex { 2.0 } else { 1.0 };
    for b in 0..d.batch {
        for head in 0..d.heads {
            for p in 0..d.headdim {
                let mut env: Env = [b, 0, head, p, head / d.heads_per_group, 0];
                let mut h: Vec<C64> = (0..d.state)
                    .map(|n| {
                        env[5] = n;
                        h0.map_or(C64::new(0.0, 0.0), |f| f.get(&env))
                    })
                    .collect();
                for step in 0..d.time {
                    env[1] = if reversed { d.time - 1 - step } else { step };
                    let x = r.x.get(&env).re;
                    let dt = r.dt.as_ref().map_or(0.0, |f| f.get(&env).re);
                    let mut out = 0.0;
                    for (n, hn) in h.iter_mut().enumerate() {
                        env[5] = n;
                        let (abar, bbar) = discretize(layer.discretization, dt, r.a.get(&env), r.b.get(&env));
                        *hn = abar * *hn + bbar * x;
                        out += pairs * (r.c.get(&env) * *hn).re;
                    }
                    if let Some(skip) = &r.skip {
                        out += skip.get(&env).re * x;
                    }
                    if let Some(gate) = &r.gate {
                        out *= silu(gate.get(&env).re);
                    }
                    y[y_index(d, &env)] += out;
                }
                for (n, hn) in h.iter().enumerate() {
                    env[5] = n;
                    final_state[state_index(d, &env)] = *hn;
                }
            }
        }
    }
}

/// (Abar, Bbar) of one state element, per DESIGN.md.
pub fn discretize(method: Discretization, dt: f64, a: C64, b: C64) -> (C64, C64) {
    let dta = a * dt;
    match method {
        Discretization::ZohEuler => (dta.exp(), b * dt),
        Discretization::Zoh => {
            // (dt A)^-1 (exp(dt A) - 1) dt B, with the series near dt A = 0.
            let phi = if dta.norm() < 1e-5 { C64::new(1.0, 0.0) + dta / 2.0 + dta * dta / 6.0 } else { (dta.exp() - 1.0) / dta };
            (dta.exp(), phi * b * dt)
        }
        Discretization::Bilinear => {
            let inv = 1.0 / (C64::new(1.0, 0.0) - dta / 2.0);
            (inv * (C64::new(1.0, 0.0) + dta / 2.0), inv * b * dt)
        }
        Discretization::Discrete => (a, b),
    }
}

/// x sigmoid(x).
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// log(1 + e^x), without overflow.
pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn y_index(d: &Dims, e: &Env) -> usize {
    ((e[0] * d.time + e[1]) * d.heads + e[2]) * d.headdim + e[3]
}

fn state_index(d: &Dims, e: &Env) -> usize {
    ((e[0] * d.heads + e[2]) * d.headdim + e[3]) * d.state + e[5]
}

/// Lays out a tensor of `shape` from a function of the role environment.
fn store(layer: &Layer, sizes: &Sizes, shape: &[Axis], value: impl Fn(&Env) -> f64) -> TensorData {
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
fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize])) {
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

/// A role's values over the role's own axes (complex when the role is).
struct Field {
    /// (slot, stride) per axis.
    axes: Vec<(usize, usize)>,
    re: Vec<f64>,
    im: Option<Vec<f64>>,
}

impl Field {
    fn get(&self, env: &Env) -> C64 {
        let i: usize = self.axes.iter().map(|(slot, stride)| env[*slot] * stride).sum();
        C64::new(self.re[i], self.im.as_ref().map_or(0.0, |im| im[i]))
    }
}

struct Evaluator<'a> {
    layer: &'a Layer,
    sizes: &'a Sizes,
    inputs: &'a TensorMap,
}

impl Evaluator<'_> {
    /// A whole input tensor as a field over its own axes.
    fn tensor_field(&self, t: Handle<Tensor>) -> Field {
        let t = &self.layer.tensors[t];
        let data = &self.inputs[&t.name];
        let mut strides = vec![1; data.shape.len()];
        for k in (0..data.shape.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * data.shape[k + 1];
        }
        let axes = t.shape.iter().map(|a| self.layer.axis_slot(*a)).zip(strides).collect();
        Field { axes, re: data.data.clone(), im: None }
    }

    /// Evaluates a role value at every point of its axes.
    fn field(&self, v: Value) -> Field {
        let mut axes = self.layer.axes_of(v.re);
        if let Some(im) = v.im {
            axes.extend(self.layer.axes_of(im));
            axes.sort_by_key(|a| self.layer.axis_slot(*a));
            axes.dedup();
        }
        let dims = self.sizes.shape(&axes);
        let mut strides = vec![1; dims.len()];
        for k in (0..dims.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * dims[k + 1];
        }
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
        Field { axes: slots.into_iter().zip(strides).collect(), re, im: v.im.map(|_| im) }
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
