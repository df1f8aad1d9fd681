//! `conv`: for a linear time-invariant scan, y = K * x with the kernel
//! K_k = pairs Re(sum_n c_n abar_n^k bbar_n) (Vandermonde form), computed by FFT.
//! Legal only when dt, A, B and C do not depend on time.

use super::sequence::{CoreOut, Sequence, Steps};
use num_complex::Complex64 as C64;
use realfft::RealFftPlanner;

/// Runs the convolution form; the sequence must be time-invariant.
pub fn run(seq: &Sequence) -> CoreOut {
    let (len, state) = (seq.len, seq.state);
    debug_assert!(matches!(seq.abar, Steps::Const(_)) || len <= 1, "conv needs a time-invariant sequence");
    let mut kernel = vec![0.0; len];
    // Initial-state term: pairs Re(sum_n c_n abar_n^(t+1) h0_n).
    let mut from_h0 = vec![0.0; len];
    for n in 0..state {
        let (a, b, c) = (seq.abar.at(0, n, state), seq.bbar.at(0, n, state), seq.c.at(0, n, state));
        let mut power = C64::new(1.0, 0.0);
        for k in 0..len {
            kernel[k] += seq.pairs * (c * power * b).re;
            power *= a;
            from_h0[k] += seq.pairs * (c * power * seq.h0[n]).re;
            // Below |a^k| ~ 1e-154 the terms are nothing, and subnormal arithmetic is very slow.
            if power.norm_sqr() < f64::MIN_POSITIVE {
                break;
            }
        }
    }
    let conv = causal_convolution(&kernel, &seq.x);
    let y = conv.iter().zip(&from_h0).map(|(a, b)| a + b).collect();
    CoreOut { y, h_final: seq.final_state_direct() }
}

/// y_t = sum_{s<=t} k_{t-s} x_s, by real FFTs of length >= 2L.
pub fn causal_convolution(k: &[f64], x: &[f64]) -> Vec<f64> {
    let len = x.len();
    if len == 0 {
        return Vec::new();
    }
    let n = (2 * len).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let spectrum = |v: &[f64]| {
        let mut buf = v.to_vec();
        buf.resize(n, 0.0);
        let mut out = fwd.make_output_vec();
        fwd.process(&mut buf, &mut out).expect("buffer lengths match the plan");
        out
    };
    let (kf, xf) = (spectrum(k), spectrum(x));
    let mut prod: Vec<C64> = kf.iter().zip(&xf).map(|(a, b)| a * b).collect();
    let mut out = inv.make_output_vec();
    inv.process(&mut prod, &mut out).expect("buffer lengths match the plan");
    out.truncate(len);
    out.iter_mut().for_each(|v| *v /= n as f64);
    out
}
