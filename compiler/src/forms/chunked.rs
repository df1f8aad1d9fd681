//! `chunked` (SSD): the sequence in chunks of Q steps; within a chunk the masked quadratic
//! term sum_{s<=t} c_t L[t,s] bbar_s x_s with L[t,s] = prod_{s<r<=t} abar_r, plus the state
//! carried in from earlier chunks; between chunks only the state is passed.
//! Legal when A is scalar or diagonal (the decay L is then elementwise per state index).

use super::sequence::{CoreOut, Sequence};
use num_complex::Complex64 as C64;

/// Runs with chunk size `q` (any q >= 1; the last chunk may be shorter).
pub fn run(seq: &Sequence, q: usize) -> CoreOut {
    let (len, state) = (seq.len, seq.state);
    let q = q.max(1);
    let mut h = seq.h0.clone();
    let mut y = vec![0.0; len];
    let mut decay = vec![C64::new(0.0, 0.0); state];
    for start in (0..len).step_by(q) {
        let end = (start + q).min(len);
        for (t, yt) in y.iter_mut().enumerate().take(end).skip(start) {
            decay.fill(C64::new(1.0, 0.0));
            let mut acc = C64::new(0.0, 0.0);
            for s in (start..=t).rev() {
                for (n, d) in decay.iter_mut().enumerate() {
                    acc += seq.c.at(t, n, state) * *d * seq.bbar.at(s, n, state) * seq.x[s];
                    *d *= seq.abar.at(s, n, state);
                }
            }
            // decay is now prod_{start<=r<=t} abar_r: the carried-in state's contribution.
            acc += (0..state).map(|n| seq.c.at(t, n, state) * decay[n] * h[n]).sum::<C64>();
            *yt = seq.pairs * acc.re;
        }
        for (n, hn) in h.iter_mut().enumerate() {
            let mut next = C64::new(0.0, 0.0);
            let mut d = C64::new(1.0, 0.0);
            for s in (start..end).rev() {
                next += d * seq.bbar.at(s, n, state) * seq.x[s];
                d *= seq.abar.at(s, n, state);
            }
            *hn = d * *hn + next;
        }
    }
    CoreOut { y, h_final: h }
}
