//! `chunked` for the CPU (the SSD algorithm of Mamba-2).

use crate::ScanSpec;
use ssmc_loops::Kernel;

/// The `chunked` kernel of a layer with chunks of `q` steps, or why it has none.
pub fn chunked(spec: &ScanSpec, q: u32) -> Result<Kernel, String> {
    Err(format!("form chunked:{q} has no native schedule yet for `{}`", spec.name))
}
