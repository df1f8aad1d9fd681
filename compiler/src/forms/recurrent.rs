//! `recurrent`: the sequential recurrence, one step at a time. Always legal.

use super::sequence::{CoreOut, Sequence};

/// h_t = abar_t h_{t-1} + bbar_t x_t, y_t = pairs Re(c_t . h_t).
pub fn run(seq: &Sequence) -> CoreOut {
    let mut h = seq.h0.clone();
    let mut y = Vec::with_capacity(seq.len);
    for t in 0..seq.len {
        for (n, hn) in h.iter_mut().enumerate() {
            *hn = seq.abar.at(t, n, seq.state) * *hn + seq.bbar.at(t, n, seq.state) * seq.x[t];
        }
        y.push(seq.output(t, &h));
    }
    CoreOut { y, h_final: h }
}
