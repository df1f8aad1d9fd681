//! The reference interpreter: the layer model of DESIGN.md evaluated in f64, sequentially,
//! one (batch, head, head element) at a time. It is the oracle for every form and backend,
//! so it stays simple: evaluate each role's values, then run the recurrence step by step.

use crate::bind::Sizes;
use crate::ir::*;
use crate::roles::{self, discretize, silu, Dims, Field, ScanRoles};
use crate::tensors::TensorMap;
use num_complex::Complex64 as C64;

/// Runs the layer on inputs already checked by [`crate::bind::sizes_from_shapes`] (or
/// generated at `sizes`). Returns the output y and the final state, if declared, by name.
pub fn run(layer: &Layer, sizes: &Sizes, inputs: &TensorMap) -> TensorMap {
    let d = Dims::new(layer, sizes);
    let mut y = vec![0.0; d.y_len()];
    let mut final_state = vec![C64::new(0.0, 0.0); d.state_len()];
    let h0 = roles::initial_state(layer, inputs);
    for (scan, reversed) in layer.directed_scans() {
        let r = ScanRoles::new(layer, sizes, inputs, scan);
        recurrence(layer, &d, &r, h0.as_ref(), reversed, &mut y, &mut final_state);
    }
    roles::outputs(layer, sizes, &d, &y, &final_state)
}

/// h_t = Abar_t h_{t-1} + Bbar_t x_t ;  y_t += (C_t . h_t + D x_t) silu(z_t), for every
/// (batch, head, head element), over time in scan order.
fn recurrence(
    layer: &Layer,
    d: &Dims,
    r: &ScanRoles,
    h0: Option<&Field>,
    reversed: bool,
    y: &mut [f64],
    final_state: &mut [C64],
) {
    let pairs = if layer.a_structure == AStructure::Complex { 2.0 } else { 1.0 };
    for b in 0..d.batch {
        for head in 0..d.heads {
            for p in 0..d.headdim {
                let mut env = d.env(b, head, p);
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
                    y[d.y_index(&env)] += out;
                }
                for (n, hn) in h.iter().enumerate() {
                    env[5] = n;
                    final_state[d.state_index(&env)] = *hn;
                }
            }
        }
    }
}
