//! The native schedules: which forms have one on which target, stated over a layer's
//! facts ([`available`], so planning never builds a kernel only to learn that it cannot),
//! and the schedule function that builds a form's loop-IR kernel ([`kernel`]). Both read
//! one table, [`Schedule::of`]; `tests/schedules.rs` checks that they agree on random
//! layers.

use crate::forms::facts::LayerFacts;
use crate::forms::Form;
use crate::ir::Layer;
use crate::lower::{self, MappingChoice};
use crate::target::Target;
use ssmc_loops::Kernel;

/// Threads per block of the GPU's `recurrent`.
pub const GPU_RECURRENT_THREADS: u32 = 128;

/// Threads per block of the GPU's `recurrent` with the state split over threads; 32, 64
/// and 128 measured within 3% of each other on the H200 (bench/NOTES.md).
pub const GPU_SPLIT_THREADS: u32 = 64;

/// Time steps whose loads the GPU's `recurrent` with a split state issues together: 4 was
/// the best of 1, 2, 4, 8 and 16 measured on the H200 (bench/NOTES.md); more steps cost
/// registers (128 at 4, 254 at 16) and occupancy.
pub const GPU_PREFETCH_STEPS: u32 = 4;

/// State indices per thread of the GPU's `recurrent` where the state splits over threads
/// (`ssmc_kernels::state_split`): few enough to keep occupancy high, enough that the per-step
/// work each thread repeats (dt, softplus, the gate) and the shuffles stay small beside it.
pub const GPU_STATES_PER_THREAD: u32 = 4;

/// Time steps per tile that the GPU's `recurrent` with a split state stages through
/// shared memory (`ssmc_kernels::state_split`; fewer where the copies would pass
/// `ssmc_kernels::STAGE_BYTES`). 32 was the best of 16 and 32 with outputs staged (16 of
/// 16, 32 and 64 before), bench/NOTES.md: the copies' loops are unrolled, so longer tiles
/// cost registers.
pub const GPU_STAGE_STEPS: u32 = 32;

/// What each target has, for refusals.
const NATIVE: &str =
    "native forms: on the CPU recurrent, chunked (a decay shared by the state) and conv; on the GPU recurrent and scan";

/// One native schedule: a template of `ssmc-kernels` on a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// CPU `recurrent`: lanes over heads, or time tiles of whole heads with a headdim.
    CpuRecurrent,
    /// GPU `recurrent`: a sequence's state split over the threads of part of a warp where
    /// its chunks of [`GPU_STATES_PER_THREAD`] lanes divide, else one sequence per thread;
    /// 128 threads per block.
    GpuRecurrent,
    /// GPU `scan`: a block of threads per sequence, a warp-shuffle scan over time tiles.
    BlockScan,
    /// CPU `chunked` with chunks of `q` steps (0: the default).
    Chunked {
        /// Chunk length.
        q: u32,
    },
    /// CPU `conv`: the SSM kernel, then an FFT convolution per sequence.
    Conv,
}

impl Schedule {
    /// The schedule of `form` on `target`, or why there is none.
    pub fn of(form: Form, target: &Target) -> Result<Schedule, String> {
        match (form, target.is_gpu()) {
            (Form::Recurrent, false) => Ok(Schedule::CpuRecurrent),
            (Form::Recurrent, true) => Ok(Schedule::GpuRecurrent),
            (Form::Scan, true) => Ok(Schedule::BlockScan),
            (Form::Chunked { q }, false) => Ok(Schedule::Chunked { q: u32::try_from(q).unwrap_or(u32::MAX) }),
            (Form::Conv, false) => Ok(Schedule::Conv),
            (f, false) => Err(format!("form {f} has no CPU schedule ({NATIVE})")),
            (f, true) => Err(format!("form {f} has no GPU schedule yet ({NATIVE})")),
        }
    }

    /// What the schedule needs of a layer beyond native code's own needs, or why `facts`
    /// lack it.
    fn requires(self, facts: &LayerFacts, layer: &str) -> Result<(), String> {
        match self {
            Schedule::CpuRecurrent | Schedule::GpuRecurrent => Ok(()),
            Schedule::BlockScan if facts.all(|s| s.diagonal) => Ok(()),
            Schedule::BlockScan => Err("form scan needs a scalar or diagonal A".to_string()),
            Schedule::Chunked { q } => {
                let why = if facts.scans.iter().any(|s| s.complex) {
                    "it takes real A, B and C, and this layer's are complex"
                } else if !facts.all(|s| s.scalar_decay) {
                    "it needs A shared by the whole state (one scalar decay per step and head, as in Mamba-2); here A varies along the state"
                } else if !facts.exp_decay || !facts.all(|s| s.has_dt) {
                    "it needs the decay exp(dt A) (discretize zoh or zoh_euler with a dt)"
                } else {
                    let q = if q == 0 { ssmc_kernels::DEFAULT_CHUNK } else { q };
                    if q <= ssmc_kernels::MAX_CHUNK {
                        return Ok(());
                    }
                    return Err(format!(
                        "form chunked:{q} has no native schedule: chunks of at most {} steps (a chunk keeps q x q floats per thread)",
                        ssmc_kernels::MAX_CHUNK
                    ));
                };
                Err(format!("form chunked has no native schedule for this layer: {why}; recurrent has"))
            }
            Schedule::Conv if facts.final_state => {
                Err(format!("form conv does not produce the final state that layer `{layer}` outputs; use recurrent"))
            }
            Schedule::Conv if !facts.all(|s| s.lti) => Err(format!(
                "form conv needs a time-invariant scan; layer `{layer}` has dt, A, B or C varying in time (a selective layer): use recurrent"
            )),
            Schedule::Conv => Ok(()),
        }
    }

    /// The kernel of `layer` on `target` (the lowering with this schedule's work items and
    /// lanes, then its template).
    fn build(self, layer: &Layer, target: &Target) -> Result<Kernel, String> {
        let lanes = |max, choice| lower::scan_spec(layer, max, choice).map_err(|e| e.to_string());
        let spec = |choice| lanes(target.max_lanes(), choice);
        match self {
            Schedule::CpuRecurrent => Ok(ssmc_kernels::recurrent(&spec(MappingChoice::Cpu)?)),
            Schedule::GpuRecurrent => {
                // The state split over threads where it divides, else a thread per sequence.
                let split = lanes(GPU_STATES_PER_THREAD, MappingChoice::Gpu)?;
                if ssmc_kernels::threads_per_sequence(&split) > 1 {
                    return ssmc_kernels::state_split(&split, GPU_SPLIT_THREADS, GPU_PREFETCH_STEPS, GPU_STAGE_STEPS);
                }
                let k = ssmc_kernels::recurrent(&spec(MappingChoice::Gpu)?);
                Ok(ssmc_kernels::thread_per_item(k, GPU_RECURRENT_THREADS))
            }
            Schedule::BlockScan => ssmc_kernels::block_scan(&spec(MappingChoice::Gpu)?),
            Schedule::Chunked { q } => ssmc_kernels::chunked(&spec(MappingChoice::HeadTiles)?, q),
            Schedule::Conv => ssmc_kernels::conv(&spec(MappingChoice::Sequences)?),
        }
    }
}

/// Whether `target` has a native schedule for `form` of a layer with `facts` (named
/// `layer`), or why not; decided from the facts alone.
pub fn available(facts: &LayerFacts, layer: &str, form: Form, target: &Target) -> Result<(), String> {
    facts.native.clone()?;
    Schedule::of(form, target)?.requires(facts, layer)
}

/// The loop-IR kernel of `layer` in `form` for `target`, or why that form has no native
/// schedule for this layer and target ([`available`]'s reason).
pub fn kernel(layer: &Layer, target: &Target, form: Form) -> Result<Kernel, String> {
    available(&LayerFacts::of(layer), &layer.name, form, target)?;
    Schedule::of(form, target)?.build(layer, target)
}

/// One line on how `layer`'s `form` runs on `target` at `dims` (names to sizes): the
/// schedule's launch as its kernel states it (for `ssmc explain`).
pub fn describe_launch(
    layer: &Layer,
    target: &Target,
    form: Form,
    dims: &std::collections::BTreeMap<String, usize>,
) -> Result<String, String> {
    let k = kernel(layer, target, form)?;
    let values: Vec<i64> = k.dims.iter().map(|d| dims.get(d).map_or(0, |&v| v as i64)).collect();
    let eval = |i: &ssmc_loops::Index| i.eval(&values).map_or_else(|| "?".to_string(), |v| v.to_string());
    let items = k.work_items.eval(&values);
    Ok(match k.launch {
        ssmc_loops::Launch::Range => format!(
            "{} work items of {} sequence(s) each, spread over the CPU threads",
            items.map_or_else(|| "?".to_string(), |v| v.to_string()),
            k.seq_lanes
        ),
        ssmc_loops::Launch::Grid { threads, items_per_block } => {
            let per = i64::from(items_per_block);
            let blocks = items.map_or_else(|| "?".to_string(), |n| ((n + per - 1) / per).to_string());
            let sequences = if items_per_block == 1 { "sequence" } else { "sequences" };
            format!(
                "{blocks} blocks of {threads} threads, {items_per_block} {sequences} per block ({} threads per sequence), {} bytes of shared memory per block",
                threads / items_per_block.max(1),
                eval(&k.shared_bytes())
            )
        }
    })
}
