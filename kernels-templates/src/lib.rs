//! Schedule templates: per form and target, how a scan maps onto loops, vector lanes and
//! threads. A template takes a [`ScanSpec`] (the scan's role values already written as
//! loop-IR values over the axis variables of [`ssmc_loops::axis`]) and returns a
//! [`Kernel`].
//!
//! Today: `recurrent`, one sequence (batch, head, head element) per CPU work item or GPU
//! thread, the state in registers as vectors of `lanes` f32 over the state index (or, on
//! the CPU, 16 heads side by side, or whole heads in time tiles; for large states in
//! scratch arrays, looped over in tiles: see `hoist`), time sequential;
//! `state_split` on the GPU, the same recurrence with a sequence's state split over a few
//! threads of a warp, its time loops walked in tiles staged through shared memory
//! (`stage`: inputs copied with neighbouring loads, the step's per-sequence values such as
//! dt and silu(z) computed once per sequence and step (`derive`), outputs stored from a
//! shared row), then its loads issued a few steps ahead (`prefetch`); `chunked` on the CPU
//! for scans whose decay is a scalar per head (SSD), a (batch, head) per work item, chunks
//! of q steps as matrix products; `conv` on the CPU for
//! time-invariant scans, one sequence per work item, the kernel K by its Vandermonde sum
//! and the convolution by FFT in a host routine. Templates do not import each other:
//! what they share is in `common`, `hoist`, `lanes` and `complex`; the GPU passes over a
//! template's kernel (`stage`, `derive`, `prefetch`) share `affine` (index expressions)
//! and `rewrite` (statements and values rebuilt).

mod affine;
pub mod axis;
mod block_scan;
mod chunked;
mod common;
mod complex;
mod conv;
mod derive;
mod grid;
mod hoist;
mod lanes;
pub mod prefetch;
mod recurrent;
mod rewrite;
mod split;
mod stage;

pub use block_scan::block_scan;
pub use chunked::{chunked, DEFAULT_CHUNK, MAX_CHUNK};
pub use complex::Cx;
pub use conv::conv;
pub use grid::thread_per_item;
pub use prefetch::prefetched;
pub use recurrent::recurrent;
pub use split::{state_split, threads_per_sequence, STAGE_BYTES};

use ssmc_loops::{Buffer, Index, Val};

/// Continuous to discrete (A, B, dt) -> (Abar, Bbar). The one definition: the layer IR
/// (`compiler/src/ir`) re-exports it, so lowering hands it to the templates unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discretization {
    /// Abar = exp(dt A), Bbar = (dt A)^-1 (exp(dt A) - 1) dt B.
    Zoh,
    /// Abar = exp(dt A), Bbar = dt B (Mamba).
    ZohEuler,
    /// Abar = (1 - dt A/2)^-1 (1 + dt A/2), Bbar = (1 - dt A/2)^-1 dt B (S4).
    Bilinear,
    /// Abar = A, Bbar = B, given directly.
    Discrete,
}

impl Discretization {
    /// All methods.
    pub const ALL: [Discretization; 4] =
        [Discretization::Zoh, Discretization::ZohEuler, Discretization::Bilinear, Discretization::Discrete];

    /// The name used in `.ssm` files.
    pub fn name(self) -> &'static str {
        match self {
            Discretization::Zoh => "zoh",
            Discretization::ZohEuler => "zoh_euler",
            Discretization::Bilinear => "bilinear",
            Discretization::Discrete => "discrete",
        }
    }
}

/// The role values of one scan, over the axis variables.
#[derive(Clone, Debug)]
pub struct ScanVals {
    /// x, a scalar.
    pub x: Val,
    /// dt, a scalar, if any.
    pub dt: Option<Val>,
    /// A over `lanes` state indices.
    pub a: Cx,
    /// B over `lanes` state indices.
    pub b: Cx,
    /// C over `lanes` state indices.
    pub c: Cx,
    /// Skip D, a scalar, if any.
    pub skip: Option<Val>,
    /// Gate argument z, a scalar, if any.
    pub gate: Option<Val>,
    /// The gate argument at `lanes` consecutive elements of a head (HEADDIM the first).
    pub gate_by_element: Option<Val>,
    /// x at `lanes` consecutive elements of a head (HEADDIM the first).
    pub x_by_element: Val,
    /// The skip D at `lanes` consecutive elements of a head, if any.
    pub skip_by_element: Option<Val>,
    /// A and C at the one state index STATE (scalars).
    pub at_one_state: Scalars,
    /// dt, A and B do not depend on time: Abar and Bbar are computed once.
    pub decay_invariant: bool,
    /// A does not depend on time.
    pub a_invariant: bool,
    /// A is the same for every state index (a scalar per head): Abar is computed once per step.
    pub a_shared: bool,
    /// B does not depend on time.
    pub b_invariant: bool,
    /// C does not depend on time.
    pub c_invariant: bool,
    /// The skip D does not depend on time.
    pub skip_invariant: bool,
    /// Runs backward in time.
    pub reversed: bool,
}

/// A and C at one state index.
#[derive(Clone, Debug)]
pub struct Scalars {
    /// A.
    pub a: Cx,
    /// C.
    pub c: Cx,
}

/// Where a tensor with axes among batch, time, head, headdim, state lives.
#[derive(Clone, Debug)]
pub struct Place {
    /// Buffer position.
    pub buf: usize,
    /// Element index at the axis variables (state index 0 for states).
    pub index: Index,
    /// Distance between consecutive state indices (states only).
    pub state_stride: Index,
}

impl Place {
    /// The `lanes` consecutive state indices from STATE (a state's chunk).
    pub fn load(&self, lanes: u32) -> Val {
        Val::Load { buf: self.buf, index: self.index.clone(), lanes, stride: self.state_stride.clone() }
    }

    /// Stores `value` into the `lanes` consecutive state indices from STATE.
    pub fn store(&self, lanes: u32, value: Val) -> ssmc_loops::Stmt {
        ssmc_loops::Stmt::StoreLanes {
            buf: self.buf,
            index: self.index.clone(),
            stride: self.state_stride.clone(),
            lanes,
            value,
        }
    }
}

/// What the lanes of a vector hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// `lanes` consecutive state indices of one sequence (large states, e.g. Mamba-2).
    StateLanes,
    /// `lanes` consecutive state indices, all elements of one head per work item, time in
    /// tiles of `time_tile` steps: each element's state goes to a scratch tile between
    /// tiles, so B and C of a tile are read from memory once for the whole head (large
    /// states with a headdim on the CPU, e.g. Mamba-2).
    StateTiles {
        /// Steps per tile.
        time_tile: u32,
    },
    /// `lanes` heads of one batch row and group, one state index at a time (small states
    /// and many channels, e.g. Mamba-1): per-step work such as softplus and the gate is
    /// vectorized too, and B and C are loaded once for all lanes.
    HeadLanes {
        /// Heads per vector.
        lanes: u32,
    },
}

/// Everything a template needs to know about a layer.
#[derive(Clone, Debug)]
pub struct ScanSpec {
    /// Kernel symbol name.
    pub name: String,
    /// Buffers, inputs then outputs.
    pub buffers: Vec<Buffer>,
    /// Runtime dims, in order.
    pub dims: Vec<String>,
    /// Size of batch, time, head, headdim as index expressions over the dims.
    pub batch: Index,
    /// Time steps.
    pub time: Index,
    /// Heads or channels.
    pub heads: Index,
    /// Elements per head.
    pub headdim: Index,
    /// Heads per group of B and C.
    pub heads_per_group: Index,
    /// State size (a compile-time constant).
    pub state: u32,
    /// Lanes per vector along the state; divides `state` (1 with [`Mapping::HeadLanes`]).
    pub lanes: u32,
    /// What vector lanes hold.
    pub mapping: Mapping,
    /// Number of groups of B and C (1 without groups).
    pub groups: Index,
    /// Complex state of conjugate pairs: y = 2 Re(C . h).
    pub pairs: bool,
    /// The discretization.
    pub discretization: Discretization,
    /// One or two scans, summed.
    pub scans: Vec<ScanVals>,
    /// The output y.
    pub y: Place,
    /// Distance in y between consecutive elements of a head (0 without a headdim).
    pub y_element_stride: Index,
    /// The initial state, if any.
    pub h0: Option<Place>,
    /// The final state, if any.
    pub h_final: Option<Place>,
    /// Threads that share one sequence's state, each holding `state` of its indices (1:
    /// one thread holds the whole state). Above 1 (the GPU's [`state_split`]), C . h is
    /// summed over the threads by warp shuffles before the skip and the gate.
    pub split: u32,
}
