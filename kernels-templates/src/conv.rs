//! `conv` for the CPU: for a time-invariant scan, y = K * x with the kernel K computed in
//! the Vandermonde form and the convolution done by FFT.

use crate::ScanSpec;
use ssmc_loops::Kernel;

/// The `conv` kernel of a layer, or why it has none.
pub fn conv(spec: &ScanSpec) -> Result<Kernel, String> {
    Err(format!("form conv has no native schedule yet for `{}`", spec.name))
}
