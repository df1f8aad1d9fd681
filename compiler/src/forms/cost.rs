//! The cost model: operations, bytes and sequential depth of each form at given shapes,
//! turned into an estimated time on a target. A roofline with a latency term:
//!
//! ```text
//! time = max(flops / (peak * efficiency * utilization), bytes / bandwidth)
//!        + depth * step_latency + passes * launch
//! ```
//!
//! The constants are round figures of the machines in `../shared/PERF.md` (2-core AVX-512
//! CPU; H200); they only need to rank forms correctly, and `ssmc explain` shows them.

use super::Form;
use crate::bind::Sizes;
use crate::ir::{AxisRole, Layer, Scan};
use crate::target::Target;

/// The machine model of `target`: the same figures for every CPU name and GPU architecture.
pub fn machine(target: &Target) -> Machine {
    match target {
        // 2 cores x 2 FMA units x 16 fp32 lanes x 2 flops x 3 GHz.
        Target::Cpu { .. } => Machine {
            peak_flops: 384e9,
            bandwidth: 20e9,
            lanes: 32.0,
            step_latency: 2e-9,
            launch: 1e-6,
            eff_serial: 0.35,
            eff_parallel: 0.5,
            eff_matmul: 0.7,
            // No CPU schedule: as elementwise work.
            eff_scan: 0.5,
            // Measured: ssmc's FFT convolution (realfft) reaches about 50 GFLOP/s on
            // two cores, counting 2.5 n log2 n per real transform (bench/NOTES.md).
            eff_fft: 0.13,
        },
        // H200: 67 TFLOP/s fp32, 4.28 TB/s, 132 SMs x 128 lanes. The step latency and the
        // scan's efficiency are fitted to ssmc's GPU schedules (bench/NOTES.md, 2026-12-03):
        // a `recurrent` step of one sequence takes about 170 ns where the GPU is not full
        // (Mamba-1 b1 d1536 L2048: 356 us), and the block `scan`'s combines reach about a
        // twentieth of peak (b1 d1536: 213 us; b8 d4096: 4.1 ms).
        Target::Cuda { .. } => Machine {
            peak_flops: 67e12,
            bandwidth: 4.28e12,
            lanes: 16896.0,
            step_latency: 150e-9,
            launch: 5e-6,
            eff_serial: 0.25,
            eff_parallel: 0.5,
            eff_scan: 0.05,
            eff_matmul: 0.6,
            eff_fft: 0.3,
        },
    }
}

/// Rates of a target.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    /// fp32 operations per second at peak.
    pub peak_flops: f64,
    /// Bytes per second to and from memory.
    pub bandwidth: f64,
    /// Independent operations in flight at once.
    pub lanes: f64,
    /// Seconds per dependent step of a sequential loop.
    pub step_latency: f64,
    /// Seconds per pass over the data (a kernel launch, a parallel loop).
    pub launch: f64,
    /// Fraction of peak reached by a recurrence (a dependent chain per state).
    pub eff_serial: f64,
    /// Fraction of peak reached by independent elementwise work.
    pub eff_parallel: f64,
    /// Fraction of peak reached by an associative scan's combines (shuffles, shared memory
    /// and barriers between them).
    pub eff_scan: f64,
    /// Fraction of peak reached by matrix products.
    pub eff_matmul: f64,
    /// Fraction of peak reached by FFTs.
    pub eff_fft: f64,
}

/// The shape facts the cost model needs about one scan.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Batch rows.
    pub batch: f64,
    /// Time steps.
    pub time: f64,
    /// Heads or channels.
    pub heads: f64,
    /// Elements per head.
    pub headdim: f64,
    /// Groups sharing B and C.
    pub groups: f64,
    /// State size.
    pub state: f64,
    /// Complex state: 4 real operations per complex one, roughly.
    pub complex: bool,
    /// A scalar per head: the decay is shared by the state, so chunks are matrix products.
    pub scalar_decay: bool,
    /// dt or A depend on time: Abar is computed at every step.
    pub selective_decay: bool,
    /// Distinct convolution kernels (heads, or batch x heads when a role varies by batch).
    pub kernels: f64,
    /// Bytes of inputs read and outputs written, once each, in f32.
    pub io_bytes: f64,
}

impl Shape {
    /// Facts of `scan` of `layer` at `sizes`.
    pub fn of(layer: &Layer, scan: &Scan, sizes: &Sizes) -> Self {
        let ax = &layer.axes;
        let dim = |d: Option<crate::arena::Handle<crate::ir::Dim>>| d.map_or(1.0, |d| sizes.dim(d) as f64);
        let varies = |role: AxisRole| {
            let parts = [scan.dt, Some(scan.a.re), scan.a.im, Some(scan.b.re), scan.b.im, Some(scan.c.re), scan.c.im];
            parts.into_iter().flatten().any(|e| layer.axes_of(e).iter().any(|a| layer.axis_slot(*a) == role.slot()))
        };
        let facts = super::facts::ScanFacts::of(layer, scan);
        let io: usize = layer.tensors.iter().map(|(_, t)| sizes.shape(&t.shape).iter().product::<usize>()).sum();
        let heads = dim(Some(ax.head));
        let batch = dim(Some(ax.batch));
        Shape {
            batch,
            time: dim(Some(ax.time)),
            heads,
            headdim: dim(ax.headdim),
            groups: dim(ax.group),
            state: sizes.axis(ax.state) as f64,
            complex: facts.complex,
            scalar_decay: facts.scalar_decay,
            selective_decay: facts.selective_decay,
            kernels: if varies(AxisRole::Batch) { batch * heads } else { heads },
            io_bytes: 4.0 * io as f64,
        }
    }

    fn sequences(&self) -> f64 {
        self.batch * self.heads * self.headdim
    }

    /// Real operations per complex (or real) multiply-add.
    fn mac(&self) -> f64 {
        if self.complex {
            8.0
        } else {
            2.0
        }
    }

    /// Operations to compute Abar (one exp each) where it is needed.
    fn decay_flops(&self) -> f64 {
        let per = if self.scalar_decay { 1.0 } else { self.state };
        let count = if self.selective_decay { self.batch * self.heads * self.time * per } else { self.heads * per };
        count * 10.0 * if self.complex { 2.0 } else { 1.0 }
    }
}

/// The estimate of one form on one target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Arithmetic operations.
    pub flops: f64,
    /// Bytes moved to and from memory.
    pub bytes: f64,
    /// Dependent sequential steps.
    pub depth: f64,
    /// Estimated seconds.
    pub seconds: f64,
}

/// Estimates `form` on `shape` for `m`.
pub fn estimate(form: Form, s: &Shape, m: &Machine) -> Estimate {
    let (seq, l, n) = (s.sequences(), s.time, s.state);
    let chains = seq * n;
    // The final state, computed directly by the forms that do not carry it step by step.
    let final_state = seq * l * n * s.mac();
    let util = |parallel: f64| (parallel / m.lanes).min(1.0);
    // Flops of an associative scan's combines (at `eff_scan`).
    let mut combines = 0.0;
    // (flops at each efficiency, extra bytes, depth, passes)
    let (serial, parallel, matmul, fft, extra_bytes, depth, passes) = match form {
        Form::Recurrent => (seq * l * n * 2.0 * s.mac(), s.decay_flops(), 0.0, 0.0, 0.0, l, 1.0),
        Form::Scan => {
            // Up-sweep and down-sweep: about two combines of three multiply-adds per element.
            combines = seq * l * n * 6.0 * s.mac();
            (0.0, s.decay_flops(), 0.0, 0.0, 0.0, 2.0 * l.max(2.0).log2(), 2.0)
        }
        Form::Chunked { q } => {
            let q = (q as f64).min(l).max(1.0);
            let chunks = (l / q).ceil();
            let states = seq * l * n * 2.0 * s.mac();
            if s.scalar_decay {
                // C B^T per group, decay mask, (mask . CB^T) x, chunk states, output from states.
                let cb = s.batch * s.groups * l * q * n * 2.0;
                let apply = seq * l * q * 2.0;
                (
                    0.0,
                    s.decay_flops() + s.batch * s.heads * l * q,
                    cb + apply + states,
                    0.0,
                    seq * chunks * n * 4.0,
                    chunks,
                    3.0,
                )
            } else {
                // A decay per state index: the intra-chunk term is elementwise, not a product.
                (
                    0.0,
                    seq * l * q * n * s.mac() + states + s.decay_flops(),
                    0.0,
                    0.0,
                    seq * chunks * n * 4.0,
                    chunks,
                    3.0,
                )
            }
        }
        Form::Conv => {
            let nfft = (2.0 * l).max(2.0).log2().ceil().exp2();
            let fft_one = 2.5 * nfft * nfft.log2();
            // As the CPU schedule does it, per sequence: K = sum over the state of w z^l (z^l
            // by products: a multiply-add per (l, state index), twice that for a complex
            // state), then three transforms (K, x, the inverse) and the product.
            let kernel = seq * l * n * if s.complex { 4.0 } else { 2.0 } + s.decay_flops();
            let ffts = 3.0 * seq * fft_one + seq * nfft * 3.0;
            (0.0, kernel + final_state, 0.0, ffts, s.kernels * l * 4.0, nfft.log2(), 4.0)
        }
        Form::Quadratic => {
            let matrices = s.batch * s.heads;
            let build = matrices * l * l / 2.0 * n * s.mac() * 2.0;
            (0.0, build + s.decay_flops() + final_state, seq * l * l, 0.0, matrices * l * l * 4.0, 1.0, 2.0)
        }
    };
    // One step has no dependent chain to wait on.
    let eff_serial = if l <= 1.0 { m.eff_parallel } else { m.eff_serial };
    let compute = serial / (m.peak_flops * eff_serial * util(chains))
        + parallel / (m.peak_flops * m.eff_parallel * util(chains * l))
        + combines / (m.peak_flops * m.eff_scan * util(chains * l))
        + matmul / (m.peak_flops * m.eff_matmul)
        + fft / (m.peak_flops * m.eff_fft);
    let bytes = s.io_bytes + extra_bytes;
    let seconds = compute.max(bytes / m.bandwidth) + depth * m.step_latency + passes * m.launch;
    Estimate { flops: serial + parallel + combines + matmul + fft, bytes, depth, seconds }
}
