//! Code generation: loop IR to LLVM 19 IR through inkwell, then to an x86-64 object file
//! or to PTX for sm_90. One generator serves both targets; the kernel's launch (a range of
//! work items on the CPU, a grid of blocks on the GPU), the constructs each accepts
//! ([`check`]) and the target machine differ.

mod llvm;
mod math;

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine, TargetTriple,
};
use inkwell::OptimizationLevel;
use ssmc_contract::Target;
use ssmc_loops::{Builtin, Construct, Kernel};
use std::fmt;

/// What the kernel emitter (`llvm/`) reads of the [`Target`]: the kind of
/// entry point, and whether AVX-512 instructions may be used. Private, derived in one place
/// ([`Arch::of`]); the machine itself is named only by the `Target`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Arch {
    /// x86-64: range launches, a loop over the work items in `[begin, end)`.
    X86 {
        /// The CPU has AVX-512 F and DQ.
        avx512: bool,
    },
    /// NVIDIA PTX: grid launches.
    Nvptx,
}

impl Arch {
    fn of(target: &Target) -> Arch {
        match target {
            Target::Cpu { .. } => Arch::X86 { avx512: target.avx512() },
            Target::Cuda { .. } => Arch::Nvptx,
        }
    }

    /// x86 with AVX-512 F and DQ (16-lane vectors, `vscalefps`, `vreduceps`).
    fn avx512(&self) -> bool {
        matches!(self, Arch::X86 { avx512: true })
    }
}

/// Why code generation failed: a loop-IR construct this backend does not lower (a
/// schedule written for another target), or a failure inside LLVM (never the user's
/// input: that is checked before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodegenError {
    /// Kernel `kernel` uses `construct`, which the `target` backend has no lowering for.
    Unsupported {
        /// The kernel.
        kernel: String,
        /// The construct, by name ([`Construct::name`]).
        construct: String,
        /// The backend.
        target: &'static str,
    },
    /// LLVM failed.
    Llvm(String),
}

impl fmt::Display for CodegenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodegenError::Unsupported { kernel, construct, target } => {
                write!(f, "code generation failed: kernel `{kernel}` uses {construct}, which the {target} backend does not lower")
            }
            CodegenError::Llvm(why) => write!(f, "code generation failed: {why}"),
        }
    }
}

/// Refuses a kernel that uses a construct the target's backend does not lower, naming it.
/// The x86-64 backend lowers range launches, local scratch, the `end` built-in, atomics
/// and the CPU statements; the NVPTX backend grid launches, local and shared scratch,
/// every built-in, barriers, warp shuffles and sums, and atomics. Neither lowers matrix
/// fragments yet.
pub fn check(kernel: &Kernel, target: &Target) -> Result<(), CodegenError> {
    let gpu = target.is_gpu();
    let accepts = |c: Construct| match c {
        Construct::RangeLaunch | Construct::Transpose | Construct::HostConvolve => !gpu,
        Construct::GridLaunch | Construct::SharedScratch | Construct::Barrier => gpu,
        Construct::Shuffle | Construct::WarpSum => gpu,
        Construct::Builtin(b) => gpu || b == Builtin::End,
        Construct::AtomicAdd => true,
        Construct::Fragment => false,
    };
    match kernel.constructs().into_iter().find(|c| !accepts(*c)) {
        Some(c) => Err(CodegenError::Unsupported {
            kernel: kernel.name.clone(),
            construct: c.name(),
            target: if gpu { "NVPTX" } else { "x86-64" },
        }),
        None => Ok(()),
    }
}

impl std::error::Error for CodegenError {}

fn err(e: impl fmt::Display) -> CodegenError {
    CodegenError::Llvm(e.to_string())
}

/// The LLVM name and feature string of an x86 CPU: the host's for `native`, else the name
/// as given with no extra features.
fn x86_cpu(cpu: &str) -> (String, String) {
    if cpu == "native" {
        (TargetMachine::get_host_cpu_name().to_string(), TargetMachine::get_host_cpu_features().to_string())
    } else {
        (cpu.to_string(), String::new())
    }
}

fn machine(target: &Target) -> Result<TargetMachine, CodegenError> {
    let (triple, cpu, features) = match target {
        Target::Cpu { cpu } => {
            LlvmTarget::initialize_x86(&InitializationConfig::default());
            let (name, features) = x86_cpu(cpu);
            ("x86_64-unknown-linux-gnu", name, features)
        }
        Target::Cuda { arch } => {
            LlvmTarget::initialize_nvptx(&InitializationConfig::default());
            ("nvptx64-nvidia-cuda", arch.name().to_string(), arch.ptx_features().to_string())
        }
    };
    let triple = TargetTriple::create(triple);
    let llvm_target = LlvmTarget::from_triple(&triple).map_err(err)?;
    llvm_target
        .create_target_machine(
            &triple,
            &cpu,
            &features,
            OptimizationLevel::Aggressive,
            RelocMode::PIC,
            CodeModel::Default,
        )
        .ok_or_else(|| CodegenError::Llvm(format!("LLVM has no target machine for cpu `{cpu}`")))
}

/// Turns LLVM's SLP vectorizer off, once per process. The kernels are vectorized
/// explicitly; the SLP vectorizer found nothing to add and took most of the build time of
/// large states (S4D: 2.4 of 3 s). The pass builder options' switch for it did not remove
/// it from `default<O3>`; LLVM's own command-line option does.
fn no_slp_vectorizer() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let args = [c"ssmc".as_ptr(), c"-vectorize-slp=false".as_ptr()];
        #[allow(unsafe_code)] // Two NUL-terminated strings that outlive the call; run once.
        unsafe {
            llvm_sys::support::LLVMParseCommandLineOptions(2, args.as_ptr(), std::ptr::null())
        };
    });
}

/// Builds, verifies and optimizes the LLVM module of `kernels`.
fn build<'ctx>(
    ctx: &'ctx Context,
    kernels: &[Kernel],
    target: &Target,
    tm: &TargetMachine,
) -> Result<Module<'ctx>, CodegenError> {
    let arch = Arch::of(target);
    let module = ctx.create_module("ssmc");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    for k in kernels {
        check(k, target)?;
        llvm::emit_kernel(ctx, &module, k, &arch)?;
    }
    module.verify().map_err(|e| CodegenError::Llvm(format!("invalid LLVM IR: {e}")))?;
    no_slp_vectorizer();
    module.run_passes("default<O3>", tm, PassBuilderOptions::create()).map_err(err)?;
    Ok(module)
}

/// The machine code of an artifact: what the target runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineCode {
    /// An ELF object file (position independent) for a CPU target, to link into a library.
    Object(Vec<u8>),
    /// PTX assembly for a GPU target, loaded by the CUDA driver.
    Ptx(String),
}

/// What code generation produced: the machine code, and the optimized LLVM IR text when
/// asked for (`ssmc build --emit llvm`), both from one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The machine code.
    pub code: MachineCode,
    /// The optimized LLVM IR, if `keep_llvm_ir` was set.
    pub llvm_ir: Option<String>,
}

/// Generates the machine code of `kernels` for `target` (an object file for a CPU, PTX for
/// a GPU), building and optimizing the LLVM module once; `keep_llvm_ir` also returns its
/// text.
pub fn generate(kernels: &[Kernel], target: &Target, keep_llvm_ir: bool) -> Result<Generated, CodegenError> {
    let tm = machine(target)?;
    let ctx = Context::create();
    let module = build(&ctx, kernels, target, &tm)?;
    let llvm_ir = keep_llvm_ir.then(|| module.print_to_string().to_string());
    let code = match target {
        Target::Cpu { .. } => {
            let buf = tm.write_to_memory_buffer(&module, FileType::Object).map_err(err)?;
            MachineCode::Object(buf.as_slice().to_vec())
        }
        Target::Cuda { .. } => {
            let buf = tm.write_to_memory_buffer(&module, FileType::Assembly).map_err(err)?;
            MachineCode::Ptx(String::from_utf8_lossy(buf.as_slice()).into_owned())
        }
    };
    Ok(Generated { code, llvm_ir })
}
