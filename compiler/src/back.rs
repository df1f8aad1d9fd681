//! The back half of the pipeline: a checked layer to an artifact in memory, one stage a
//! line in [`build`]; the plan it builds comes from [`plan`]. Disk writes (and the link
//! with `cc` and `ar`, which work on files) are [`crate::artifact::write`]'s; the cache is
//! the command line's.
//!
//! ```text
//! plan:  layer, sizes, target --forms::egraph::choose--> the cheapest form with a schedule
//! build: plan --schedule::kernel (lower::scan_spec, a template)--> loop IR
//!             --ssmc_codegen::generate--> object code or PTX --artifact::{manifest, header}-->
//! ```

#[cfg(feature = "codegen")]
use crate::artifact;
use crate::bind::Sizes;
use crate::forms::egraph::{self, Choice};
use crate::forms::facts::LayerFacts;
use crate::forms::{Form, Plan};
use crate::ir::Layer;
use crate::schedule;
use crate::target::Target;
#[cfg(feature = "codegen")]
use ssmc_contract::manifest::Manifest;
#[cfg(feature = "codegen")]
use ssmc_loops::Kernel;
use std::fmt;

/// What the cost model of a target plans for a layer at some sizes.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Every form with its estimate and schedule on the target, and the cheapest plan.
    pub choice: Choice,
    /// What native code is built in: the choice's plan, or the forced form on every scan.
    pub plan: Plan,
}

impl Planned {
    /// The one form of the plan (every scan runs the same one).
    pub fn form(&self) -> Form {
        self.plan.uniform().unwrap_or(Form::Recurrent)
    }
}

/// Why a forced form cannot be built natively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The form is illegal for the layer; the legality analysis says why.
    Illegal(String),
    /// The form is legal but has no native schedule for this layer and target.
    NoSchedule(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Illegal(why) | PlanError::NoSchedule(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for PlanError {}

/// Plans a native artifact of `layer` for `target` at `sizes`: `target`'s cost model
/// chooses among the forms it has a schedule for ([`egraph::choose`]), or `forced` runs
/// on every scan if it is legal and has a schedule. `ssmc run`, `ssmc build` and
/// `ssmc explain` all plan through here. `line_of` maps a span to its line.
pub fn plan(
    layer: &Layer,
    sizes: &Sizes,
    target: &Target,
    forced: Option<Form>,
    line_of: &dyn Fn(ssmc_syntax::Span) -> usize,
) -> Result<Planned, PlanError> {
    let choice = egraph::choose(layer, sizes, target, line_of);
    let plan = match forced {
        None => choice.plan.clone(),
        Some(f) => {
            let plan = choice.force(f).map_err(PlanError::Illegal)?;
            let form = plan.uniform().unwrap_or(f);
            schedule::available(&LayerFacts::of(layer), &layer.name, form, target).map_err(PlanError::NoSchedule)?;
            plan
        }
    };
    Ok(Planned { choice, plan })
}

/// Which intermediates [`build`] keeps besides the artifact's own (the loop IR always).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// The optimized LLVM IR text.
    pub llvm_ir: bool,
}

#[cfg(feature = "codegen")]
/// A layer's artifact in memory: what [`artifact::write`] puts on disk, and the
/// intermediates of the same run.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The manifest; its `files` name the files [`artifact::write`] writes.
    pub manifest: Manifest,
    /// The C header.
    pub header: String,
    /// The loop-IR kernel the code was generated from.
    pub kernel: Kernel,
    /// The object file (CPU) or PTX (GPU).
    pub code: ssmc_codegen::MachineCode,
    /// The optimized LLVM IR, when [`Keep::llvm_ir`] asked for it.
    pub llvm_ir: Option<String>,
}

#[cfg(feature = "codegen")]
/// Why a layer could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// Code cannot be generated for the target (a CPU without AVX2, an unknown name).
    Target(String),
    /// The plan runs different forms on the layer's scans; a native kernel runs one.
    MixedPlan(Plan),
    /// The form has no native schedule for this layer and target.
    NoSchedule(String),
    /// Code generation failed.
    Codegen(ssmc_codegen::CodegenError),
    /// The kernel's launch cannot be written as sizes of the runtime dims.
    Launch(String),
}

#[cfg(feature = "codegen")]
impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Target(why) | BuildError::NoSchedule(why) => f.write_str(why),
            BuildError::MixedPlan(plan) => {
                write!(f, "native code runs one form on every scan of a layer; the plan is {plan}")
            }
            BuildError::Codegen(e) => write!(f, "{e}"),
            BuildError::Launch(why) => write!(f, "the kernel's launch cannot be stated in its manifest: {why}"),
        }
    }
}

#[cfg(feature = "codegen")]
impl std::error::Error for BuildError {}

#[cfg(feature = "codegen")]
/// Builds `layer` as `plan` says for `target`, in memory: the back half of the pipeline.
pub fn build(layer: &Layer, plan: &Plan, target: &Target, keep: Keep) -> Result<Artifact, BuildError> {
    target.check().map_err(BuildError::Target)?;
    let form = plan.uniform().ok_or_else(|| BuildError::MixedPlan(plan.clone()))?;
    let kernel = schedule::kernel(layer, target, form).map_err(BuildError::NoSchedule)?;
    let generated =
        ssmc_codegen::generate(std::slice::from_ref(&kernel), target, keep.llvm_ir).map_err(BuildError::Codegen)?;
    let manifest = artifact::manifest(layer, target, form, &kernel).map_err(BuildError::Launch)?;
    let header = artifact::header(&manifest);
    Ok(Artifact { manifest, header, kernel, code: generated.code, llvm_ir: generated.llvm_ir })
}
