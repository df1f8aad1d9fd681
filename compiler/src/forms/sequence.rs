//! One scanned sequence, discretized: what every form computes on. Time runs in scan order
//! (a reverse scan reads the layer's time axis backward: an index map, not a flip of data).

use crate::ir::{AStructure, Layer};
use crate::roles::{discretize, Dims, Env, Field, ScanRoles};
use num_complex::Complex64 as C64;

/// Per-step values of one state element, or one value for all steps (time-invariant).
pub enum Steps {
    /// The same N values at every step.
    Const(Vec<C64>),
    /// L x N values, step-major.
    PerStep(Vec<C64>),
}

impl Steps {
    /// Value at step `t`, state index `n` of a state of size `state`.
    pub fn at(&self, t: usize, n: usize, state: usize) -> C64 {
        match self {
            Steps::Const(v) => v[n],
            Steps::PerStep(v) => v[t * state + n],
        }
    }
}

/// h_t = abar_t h_{t-1} + bbar_t x_t;  y_t = pairs Re(c_t . h_t), for t in scan order.
pub struct Sequence {
    /// Steps.
    pub len: usize,
    /// State size.
    pub state: usize,
    /// x_t.
    pub x: Vec<f64>,
    /// Abar.
    pub abar: Steps,
    /// Bbar.
    pub bbar: Steps,
    /// C.
    pub c: Steps,
    /// The state before the first step.
    pub h0: Vec<C64>,
    /// 2 for a complex state of conjugate pairs, else 1.
    pub pairs: f64,
}

/// What a form computes from a sequence.
pub struct CoreOut {
    /// y_t = pairs Re(c_t . h_t), in scan order.
    pub y: Vec<f64>,
    /// The state after the last step.
    pub h_final: Vec<C64>,
}

impl Sequence {
    /// The sequence of (b, head, p) of one scan; `reversed` reads time backward.
    pub fn extract(layer: &Layer, d: &Dims, r: &ScanRoles, h0: Option<&Field>, env0: Env, reversed: bool) -> Self {
        let (len, state) = (d.time, d.state);
        let time_of = |step: usize| if reversed { len - 1 - step } else { step };
        let mut env = env0;
        let x = (0..len)
            .map(|s| {
                env[1] = time_of(s);
                r.x.get(&env).re
            })
            .collect();
        let disc = layer.discretization;
        let steps = if r.time_invariant() { 1.min(len) } else { len };
        let (mut abar, mut bbar, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..steps {
            env[1] = time_of(s);
            let dt = r.dt.as_ref().map_or(0.0, |f| f.get(&env).re);
            for n in 0..state {
                env[5] = n;
                let (ab, bb) = discretize(disc, dt, r.a.get(&env), r.b.get(&env));
                abar.push(ab);
                bbar.push(bb);
                c.push(r.c.get(&env));
            }
        }
        let wrap = |v: Vec<C64>| if r.time_invariant() { Steps::Const(v) } else { Steps::PerStep(v) };
        let h0 = (0..state)
            .map(|n| {
                env[5] = n;
                h0.map_or(C64::new(0.0, 0.0), |f| f.get(&env))
            })
            .collect();
        Sequence {
            len,
            state,
            x,
            abar: wrap(abar),
            bbar: wrap(bbar),
            c: wrap(c),
            h0,
            pairs: if layer.a_structure == AStructure::Complex { 2.0 } else { 1.0 },
        }
    }

    /// y_t from a state at step t.
    pub fn output(&self, t: usize, h: &[C64]) -> f64 {
        let s: C64 = (0..self.state).map(|n| self.c.at(t, n, self.state) * h[n]).sum();
        self.pairs * s.re
    }

    /// The final state, directly: sum_s (prod_{r>s} abar_r) bbar_s x_s + (prod_r abar_r) h0.
    pub fn final_state_direct(&self) -> Vec<C64> {
        (0..self.state)
            .map(|n| {
                let mut h = C64::new(0.0, 0.0);
                let mut decay = C64::new(1.0, 0.0);
                for s in (0..self.len).rev() {
                    h += decay * self.bbar.at(s, n, self.state) * self.x[s];
                    decay *= self.abar.at(s, n, self.state);
                    // Earlier steps add nothing more; stopping avoids slow subnormal arithmetic.
                    if decay.norm_sqr() < f64::MIN_POSITIVE {
                        return h;
                    }
                }
                h + decay * self.h0[n]
            })
            .collect()
    }
}
