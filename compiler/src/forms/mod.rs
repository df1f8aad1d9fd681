//! Algorithmic forms of a layer: equivalent algorithms for the same scan, each with an
//! executable f64 implementation (the specification code generation follows) and a
//! legality condition. The e-graph ([`egraph`]) finds the legal forms and the cost model
//! ([`cost`]) chooses among them.

mod chunked;
mod conv;
pub mod cost;
pub mod egraph;
pub mod facts;
mod quadratic;
mod recurrent;
mod scan;
pub mod sequence;

use crate::arena::Handle;
use crate::bind::Sizes;
use crate::ir::{Expr, Layer};
use crate::roles::{self, silu, Dims, ScanRoles};
use crate::tensors::{TensorData, TensorMap};
use num_complex::Complex64 as C64;
use sequence::{CoreOut, Sequence};
use std::fmt;

/// One algorithm for a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// The sequential recurrence.
    Recurrent,
    /// Work-efficient associative scan.
    Scan,
    /// Chunked SSD with chunk size `q`.
    Chunked {
        /// Chunk size.
        q: usize,
    },
    /// FFT convolution with the SSM kernel (LTI only).
    Conv,
    /// The materialized L x L mixer matrix.
    Quadratic,
}

/// Names of the form kinds, for help texts and errors.
pub const FORM_NAMES: [&str; 5] = ["recurrent", "scan", "chunked", "conv", "quadratic"];

/// Chunk sizes the e-graph considers.
pub const CHUNK_SIZES: [usize; 4] = [32, 64, 128, 256];

/// Every form the e-graph considers, in the order `ssmc explain` lists them.
pub const CANDIDATES: [Form; 8] = [
    Form::Recurrent,
    Form::Scan,
    Form::Chunked { q: CHUNK_SIZES[0] },
    Form::Chunked { q: CHUNK_SIZES[1] },
    Form::Chunked { q: CHUNK_SIZES[2] },
    Form::Chunked { q: CHUNK_SIZES[3] },
    Form::Conv,
    Form::Quadratic,
];

impl Form {
    /// The form's kind name (`chunked` without its size).
    pub fn kind(self) -> &'static str {
        match self {
            Form::Recurrent => "recurrent",
            Form::Scan => "scan",
            Form::Chunked { .. } => "chunked",
            Form::Conv => "conv",
            Form::Quadratic => "quadratic",
        }
    }

    /// Parses `recurrent`, `scan`, `chunked`, `chunked:64`, `conv`, `quadratic`;
    /// `chunked` alone means any chunk size (`q = 0`, chosen by cost).
    pub fn parse(s: &str) -> Result<Form, String> {
        let (kind, q) = match s.split_once(':') {
            Some((k, q)) => (k, Some(q)),
            None => (s, None),
        };
        let form = match kind {
            "recurrent" => Form::Recurrent,
            "scan" => Form::Scan,
            "conv" => Form::Conv,
            "quadratic" => Form::Quadratic,
            "chunked" => {
                let q = match q {
                    None => 0,
                    Some(q) => q
                        .parse::<usize>()
                        .ok()
                        .filter(|q| *q > 0)
                        .ok_or_else(|| format!("chunk size `{q}` is not a positive whole number"))?,
                };
                return Ok(Form::Chunked { q });
            }
            other => return Err(format!("unknown form `{other}`; forms: {}", FORM_NAMES.join(", "))),
        };
        match q {
            Some(_) => Err(format!("only `chunked` takes a size, as in `chunked:64`; got `{s}`")),
            None => Ok(form),
        }
    }

    fn core(self, seq: &Sequence) -> CoreOut {
        match self {
            Form::Recurrent => recurrent::run(seq),
            Form::Scan => scan::run(seq),
            Form::Chunked { q } => chunked::run(seq, q),
            Form::Conv => conv::run(seq),
            Form::Quadratic => quadratic::run(seq, None),
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // q = 0: any chunk size, as written on the command line.
            Form::Chunked { q: 0 } => write!(f, "chunked"),
            Form::Chunked { q } => write!(f, "chunked:{q}"),
            other => write!(f, "{}", other.kind()),
        }
    }
}

/// The form of each scan of a layer: one, or two for a bidirectional layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Form of each scan, in [`Layer::directed_scans`](crate::ir::Layer::directed_scans) order.
    pub forms: Vec<Form>,
}

impl Plan {
    /// `form` on each of the layer's scans.
    pub fn all(layer: &Layer, form: Form) -> Plan {
        Plan { forms: vec![form; layer.directed_scans().len()] }
    }

    /// The one form of every scan, if the scans share it.
    pub fn uniform(&self) -> Option<Form> {
        let first = *self.forms.first()?;
        self.forms.iter().all(|f| *f == first).then_some(first)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v: Vec<String> = self.forms.iter().map(|f| f.to_string()).collect();
        write!(f, "{}", v.join(" + "))
    }
}

/// Runs the layer with the plan's forms: per scan and sequence, the form computes
/// pairs Re(C . h); skip and gate are applied after it, as in the model.
pub fn run(layer: &Layer, sizes: &Sizes, inputs: &TensorMap, plan: &Plan) -> TensorMap {
    let d = Dims::new(layer, sizes);
    let mut y = vec![0.0; d.y_len()];
    let mut final_state = vec![C64::new(0.0, 0.0); d.state_len()];
    let h0 = roles::initial_state(layer, inputs);
    for ((scan, reversed), form) in layer.directed_scans().into_iter().zip(&plan.forms) {
        let r = ScanRoles::new(layer, sizes, inputs, scan);
        for_each_sequence(&d, |b, head, p| {
            let env0 = d.env(b, head, p);
            let seq = Sequence::extract(layer, &d, &r, h0.as_ref(), env0, reversed);
            let core = form.core(&seq);
            let mut env = env0;
            for (step, core_y) in core.y.iter().enumerate() {
                env[1] = if reversed { d.time - 1 - step } else { step };
                let x = seq.x[step];
                let mut out = core_y + r.skip.as_ref().map_or(0.0, |f| f.get(&env).re * x);
                if let Some(g) = &r.gate {
                    out *= silu(g.get(&env).re);
                }
                y[d.y_index(&env)] += out;
            }
            for (n, h) in core.h_final.iter().enumerate() {
                env[5] = n;
                final_state[d.state_index(&env)] = *h;
            }
        });
    }
    roles::outputs(layer, sizes, &d, &y, &final_state)
}

fn for_each_sequence(d: &Dims, mut f: impl FnMut(usize, usize, usize)) {
    for b in 0..d.batch {
        for head in 0..d.heads {
            for p in 0..d.headdim {
                f(b, head, p);
            }
        }
    }
}

/// Whether two expressions compute the same values: the same node, or the same operation
/// on the same operands (a role written twice in the source is lowered twice).
fn same_expr(layer: &Layer, a: Handle<Expr>, b: Handle<Expr>) -> bool {
    if a == b {
        return true;
    }
    let same = |x: &Handle<Expr>, y: &Handle<Expr>| same_expr(layer, *x, *y);
    match (&layer.exprs[a], &layer.exprs[b]) {
        (Expr::Const(x), Expr::Const(y)) => x.to_bits() == y.to_bits(),
        (Expr::Load { tensor: t, component: c }, Expr::Load { tensor: u, component: d }) => t == u && c == d,
        (Expr::Neg(x), Expr::Neg(y)) => same(x, y),
        (Expr::Binary(o, x1, x2), Expr::Binary(p, y1, y2)) => o == p && same(x1, y1) && same(x2, y2),
        (Expr::Call(f, xs), Expr::Call(g, ys)) => {
            f == g && xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        _ => false,
    }
}

/// The mixer matrix M (batch, head, L, L) of the layer on these inputs: y = M x before the
/// gate, with the skip D on the diagonal and every scan of the layer summed, in the layer's
/// time order. dt, A, B and C never vary along headdim (sema); the skip D must not either.
/// Refused when no one M exists: an initial state (y is then affine in x), scans that read
/// different x or are gated differently, a skip that varies along headdim.
pub fn mixer_matrix(layer: &Layer, sizes: &Sizes, inputs: &TensorMap) -> Result<TensorData, String> {
    let d = Dims::new(layer, sizes);
    let l = d.time;
    let elements = [d.batch, d.heads, l, l].iter().try_fold(1usize, |n, &k| n.checked_mul(k));
    if elements.is_none_or(|n| n > crate::bind::MAX_ELEMENTS) {
        return Err(format!(
            "the mixer matrix would have {}x{}x{l}x{l} elements; choose a smaller L",
            d.batch, d.heads
        ));
    }
    if layer.initial_state.is_some() {
        return Err("the layer has an initial state, so y = M x + (the initial state's term) is not linear in x; M cannot hold it".into());
    }
    if let Some(back) = &layer.backward {
        if !same_expr(layer, back.x, layer.forward.x) {
            return Err("the forward and backward scans read different x, so no one matrix maps x to y".into());
        }
        let same_gate = match (back.gate, layer.forward.gate) {
            (None, None) => true,
            (Some(b), Some(f)) => same_expr(layer, b, f),
            _ => false,
        };
        if !same_gate {
            return Err(
                "the forward and backward scans are gated differently, so no one matrix maps x to y before the gate"
                    .into(),
            );
        }
    }
    for (scan, _) in layer.directed_scans() {
        if scan.skip.is_some_and(|e| {
            layer.axes_of(e).iter().any(|a| layer.axis_slot(*a) == crate::ir::AxisRole::HeadDim.slot())
        }) {
            return Err("the skip D varies along headdim, so the mixer differs per head element; M (batch, head, L, L) cannot hold it".into());
        }
    }
    let mut m = vec![0.0; d.batch * d.heads * l * l];
    let h0 = roles::initial_state(layer, inputs);
    for (scan, reversed) in layer.directed_scans() {
        let r = ScanRoles::new(layer, sizes, inputs, scan);
        for b in 0..d.batch {
            for head in 0..d.heads {
                let env0 = d.env(b, head, 0);
                let seq = Sequence::extract(layer, &d, &r, h0.as_ref(), env0, reversed);
                let mut scan_m = vec![0.0; l * l];
                quadratic::run(&seq, Some(&mut scan_m));
                let block = &mut m[(b * d.heads + head) * l * l..][..l * l];
                let time = |step: usize| if reversed { l - 1 - step } else { step };
                for t in 0..l {
                    for s in 0..=t {
                        block[time(t) * l + time(s)] += scan_m[t * l + s];
                    }
                    let mut env = env0;
                    env[1] = time(t);
                    block[time(t) * l + time(t)] += r.skip.as_ref().map_or(0.0, |f| f.get(&env).re);
                }
            }
        }
    }
    Ok(TensorData { shape: vec![d.batch, d.heads, l, l], data: m })
}
