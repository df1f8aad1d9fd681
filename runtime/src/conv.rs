//! Host routines that generated kernels call through a pointer the caller passes after the
//! tensors (see [`crate::manifest::Manifest::host`]): today the causal convolution of the
//! `conv` form, by real FFTs.

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::{Arc, Mutex};

/// The name of [`ssmc_causal_conv_f32`] in a manifest's `host` list.
pub use ssmc_contract::host::CAUSAL_CONV_F32;

/// The address of the host routine named `name` in a manifest, if this runtime has it.
pub fn host_routine(name: &str) -> Option<*const u8> {
    match name {
        CAUSAL_CONV_F32 => Some(ssmc_causal_conv_f32 as *const u8),
        _ => None,
    }
}

/// At most this many points the convolution is computed directly (O(len^2) is cheaper than
/// three transforms there).
const DIRECT_MAX: usize = 64;

/// Plans and buffers of one transform size.
struct Workspace {
    /// Transform size: the next power of two of 2 len.
    n: usize,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    /// The zero-padded kernel, then the zero-padded input, then the inverse transform.
    real: Vec<f32>,
    /// The kernel's spectrum.
    kf: Vec<Complex<f32>>,
    /// The input's spectrum, then the product.
    xf: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

/// Shared plans (their twiddles) and idle workspaces. The runtime's worker threads live for
/// one run, so a cache private to a thread would be rebuilt at every run; a call takes a
/// workspace of its size from here and puts it back, so after the first call at a size
/// no call allocates.
struct Cache {
    planner: RealFftPlanner<f32>,
    idle: Vec<Workspace>,
}

/// Idle workspaces kept at most (more are freed): enough for every thread of a large host.
const IDLE_MAX: usize = 256;

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn take(n: usize) -> Workspace {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(|| Cache { planner: RealFftPlanner::new(), idle: Vec::new() });
    if let Some(i) = cache.idle.iter().rposition(|w| w.n == n) {
        return cache.idle.swap_remove(i);
    }
    let (fwd, inv) = (cache.planner.plan_fft_forward(n), cache.planner.plan_fft_inverse(n));
    drop(guard);
    let scratch = vec![Complex::default(); fwd.get_scratch_len().max(inv.get_scratch_len())];
    let (kf, xf) = (fwd.make_output_vec(), fwd.make_output_vec());
    Workspace { n, real: fwd.make_input_vec(), kf, xf, scratch, fwd, inv }
}

fn put_back(w: Workspace) {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cache) = guard.as_mut() {
        if cache.idle.len() >= IDLE_MAX {
            // Drop the oldest: sizes in use come back often.
            cache.idle.remove(0);
        }
        cache.idle.push(w);
    }
}

/// `y[t] = sum_{s <= t} k[t - s] x[s]` for `t < len`.
pub fn causal_conv(k: &[f32], x: &[f32], y: &mut [f32]) {
    let len = y.len().min(k.len()).min(x.len());
    if len <= DIRECT_MAX {
        for (t, out) in y[..len].iter_mut().enumerate() {
            *out = (0..=t).map(|s| k[t - s] * x[s]).sum();
        }
        return;
    }
    let n = (2 * len).next_power_of_two();
    let mut w = take(n);
    let Workspace { fwd, inv, real, kf, xf, scratch, .. } = &mut w;
    // The transforms fail only on buffers of the wrong length, which these are not.
    let spectrum = |v: &[f32], real: &mut Vec<f32>, out: &mut Vec<Complex<f32>>, scratch: &mut Vec<Complex<f32>>| {
        real[..len].copy_from_slice(&v[..len]);
        real[len..].fill(0.0);
        let _ = fwd.process_with_scratch(real, out, scratch);
    };
    spectrum(k, real, kf, scratch);
    spectrum(x, real, xf, scratch);
    let norm = 1.0 / n as f32;
    for (a, b) in xf.iter_mut().zip(kf.iter()) {
        *a = *a * *b * norm;
    }
    // The inverse of a real signal's spectrum: the imaginary parts at 0 and n/2 are zero
    // up to rounding; realfft wants them exactly zero.
    xf[0].im = 0.0;
    if let Some(last) = xf.last_mut() {
        last.im = 0.0;
    }
    let _ = inv.process_with_scratch(xf, real, scratch);
    y[..len].copy_from_slice(&real[..len]);
    put_back(w);
}

/// The causal convolution of the `conv` form: `y[t] = sum_{s <= t} k[t - s] x[s]` for
/// `t < len`, by real FFTs of the next power of two of `2 len` points (directly for short
/// `len`). Generated kernels call it through the pointer passed after the tensors.
///
/// # Safety
/// `k` and `x` point to `len` readable f32 and `y` to `len` writable f32 that overlap
/// neither; nothing happens for `len <= 0`.
#[allow(unsafe_code)] // Exported to generated code: the caller upholds the pointer contract above.
#[no_mangle]
pub unsafe extern "C" fn ssmc_causal_conv_f32(k: *const f32, x: *const f32, y: *mut f32, len: i64) {
    let Ok(len) = usize::try_from(len) else { return };
    if len == 0 || k.is_null() || x.is_null() || y.is_null() {
        return;
    }
    // Sound: the caller promises `len` elements at each pointer, `y` apart from `k` and `x`.
    let (k, x, y) = unsafe {
        (std::slice::from_raw_parts(k, len), std::slice::from_raw_parts(x, len), std::slice::from_raw_parts_mut(y, len))
    };
    // A panic must not unwind into generated code; there is none to catch but allocation.
    // Should one happen, the output is NaN rather than whatever the buffer held.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| causal_conv(k, x, &mut *y))).is_err() {
        y.fill(f32::NAN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(k: &[f32], x: &[f32]) -> Vec<f64> {
        (0..x.len()).map(|t| (0..=t).map(|s| k[t - s] as f64 * x[s] as f64).sum()).collect()
    }

    fn signal(len: usize, seed: u64) -> Vec<f32> {
        // A small LCG: the test needs no randomness crate.
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_direct_convolution_at_awkward_lengths() {
        for len in [1usize, 2, 3, 5, 17, 64, 65, 100, 1000, 4097] {
            let (k, x) = (signal(len, 1 + len as u64), signal(len, 2 + len as u64));
            // A decaying kernel, as the conv form's are.
            let k: Vec<f32> = k.iter().enumerate().map(|(i, v)| v * (-(i as f32) / 300.0).exp()).collect();
            let want = direct(&k, &x);
            let mut y = vec![f32::NAN; len];
            #[allow(unsafe_code)] // Three buffers of `len` f32, `y` apart.
            unsafe {
                ssmc_causal_conv_f32(k.as_ptr(), x.as_ptr(), y.as_mut_ptr(), len as i64)
            };
            let num: f64 = y.iter().zip(&want).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
            let den: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(num / den < 1e-6, "len {len}: relative error {:e}", num / den);
        }
    }

    #[test]
    fn reuses_workspaces_and_ignores_empty_calls() {
        let (k, x) = (signal(300, 5), signal(300, 6));
        let mut first = vec![0.0; 300];
        causal_conv(&k, &x, &mut first);
        // Same size again (a workspace from the cache), and the same answer.
        let mut again = vec![0.0; 300];
        causal_conv(&k, &x, &mut again);
        assert_eq!(first, again);
        let mut y = [7.0f32];
        #[allow(unsafe_code)] // len 0: nothing is read or written.
        unsafe {
            ssmc_causal_conv_f32(k.as_ptr(), x.as_ptr(), y.as_mut_ptr(), 0)
        };
        assert_eq!(y, [7.0]);
        assert!(host_routine(CAUSAL_CONV_F32).is_some() && host_routine("nope").is_none());
    }
}
