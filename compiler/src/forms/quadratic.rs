//! `quadratic`: y = M x with the L x L mixer matrix
//! M[t,s] = pairs Re(sum_n c_t,n (prod_{s<r<=t} abar_r,n) bbar_s,n) for s <= t, 0 above.
//! Always legal; O(L^2) work. Rows are computed one at a time unless the matrix is wanted.

use super::sequence::{CoreOut, Sequence};
use num_complex::Complex64 as C64;

/// Row t of M (length t + 1), and prod_{r<=t} abar_r per state index.
fn row(seq: &Sequence, t: usize, decay: &mut [C64]) -> Vec<f64> {
    let state = seq.state;
    decay.fill(C64::new(1.0, 0.0));
    let mut m = vec![0.0; t + 1];
    for s in (0..=t).rev() {
        let mut v = C64::new(0.0, 0.0);
        for (n, d) in decay.iter_mut().enumerate() {
            v += seq.c.at(t, n, state) * *d * seq.bbar.at(s, n, state);
            *d *= seq.abar.at(s, n, state);
        }
        m[s] = seq.pairs * v.re;
    }
    m
}

/// Runs the quadratic form; with `matrix`, also fills it (L x L, row-major, scan order).
pub fn run(seq: &Sequence, mut matrix: Option<&mut [f64]>) -> CoreOut {
    let (len, state) = (seq.len, seq.state);
    let mut decay = vec![C64::new(0.0, 0.0); state];
    let mut y = Vec::with_capacity(len);
    for t in 0..len {
        let m = row(seq, t, &mut decay);
        let from_h0: C64 = (0..state).map(|n| seq.c.at(t, n, state) * decay[n] * seq.h0[n]).sum();
        y.push(m.iter().zip(&seq.x).map(|(a, b)| a * b).sum::<f64>() + seq.pairs * from_h0.re);
        if let Some(mat) = matrix.as_deref_mut() {
            mat[t * len..t * len + m.len()].copy_from_slice(&m);
        }
    }
    CoreOut { y, h_final: seq.final_state_direct() }
}
