//! `scan`: a work-efficient (Blelloch) associative scan over the pairs (abar_t, bbar_t x_t),
//! legal when A is scalar or diagonal, so that steps compose elementwise:
//! (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2).

use super::sequence::{CoreOut, Sequence};
use num_complex::Complex64 as C64;

type Pair = (C64, C64);

const IDENTITY: Pair = (C64 { re: 1.0, im: 0.0 }, C64 { re: 0.0, im: 0.0 });

/// `earlier` then `later`.
fn combine(earlier: Pair, later: Pair) -> Pair {
    (later.0 * earlier.0, later.0 * earlier.1 + later.1)
}

/// Exclusive prefix of `e` under `combine`: up-sweep, then down-sweep.
fn blelloch(e: &[Pair]) -> Vec<Pair> {
    let n = e.len().next_power_of_two();
    let mut a = e.to_vec();
    a.resize(n, IDENTITY);
    let mut stride = 1;
    while stride < n {
        for right in (2 * stride - 1..n).step_by(2 * stride) {
            a[right] = combine(a[right - stride], a[right]);
        }
        stride *= 2;
    }
    a[n - 1] = IDENTITY;
    while stride > 1 {
        stride /= 2;
        for right in (2 * stride - 1..n).step_by(2 * stride) {
            let left = a[right - stride];
            a[right - stride] = a[right];
            a[right] = combine(a[right], left);
        }
    }
    a.truncate(e.len());
    a
}

/// h_t = prefix_t applied to h0, per state element.
pub fn run(seq: &Sequence) -> CoreOut {
    let (len, state) = (seq.len, seq.state);
    let mut h = vec![C64::new(0.0, 0.0); len * state];
    let mut h_final = seq.h0.clone();
    for n in 0..state {
        let e: Vec<Pair> = (0..len).map(|t| (seq.abar.at(t, n, state), seq.bbar.at(t, n, state) * seq.x[t])).collect();
        let prefix = blelloch(&e);
        for t in 0..len {
            let (a, b) = combine(prefix[t], e[t]);
            h[t * state + n] = a * seq.h0[n] + b;
        }
        if len > 0 {
            h_final[n] = h[(len - 1) * state + n];
        }
    }
    let y = (0..len).map(|t| seq.output(t, &h[t * state..(t + 1) * state])).collect();
    CoreOut { y, h_final }
}
