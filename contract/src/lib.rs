//! The contract between the ssmc compiler and the programs that load its artifacts: the
//! [`Target`] code is planned and generated for, `manifest.json` ([`manifest::Manifest`]),
//! the element types at the boundary ([`DType`]) and the host routines an artifact may call.
//!
//! Both `ssmc-compiler` (which writes artifacts) and `ssmc-runtime` (which loads them)
//! depend on this crate and on nothing of each other.

pub mod launch;
pub mod manifest;
pub mod target;

pub use manifest::{DType, Io, Manifest};
pub use target::{GpuArch, Target};

/// Names of the host routines a CPU kernel may call back into (`manifest.json`'s `host`).
pub mod host {
    /// `void (const float* k, const float* x, float* y, int64_t len)`: the causal
    /// convolution `y[t] = sum over s <= t of k[t - s] x[s]`, from `libssmc_runtime`.
    pub const CAUSAL_CONV_F32: &str = "causal_conv_f32";
}
