//! The machine a layer is planned and compiled for: one [`Target`] that the cost model,
//! the schedules, code generation, the artifact and the command line all take.
//!
//! The command line names a target `cpu` or `cuda` (`ptx`, its older name, is accepted as
//! an alias) in every command; `--cpu NAME` picks the CPU.

/// What a layer is planned and compiled for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// x86-64: a shared and a static library, run on all cores.
    Cpu {
        /// `native` (the host), `x86-64-v3` (AVX2), `x86-64-v4` (AVX-512), or one of the
        /// LLVM CPU names of [`CPUS`]; checked by [`Target::check`].
        cpu: String,
    },
    /// An NVIDIA GPU: PTX, loaded and run through the CUDA driver.
    Cuda {
        /// The GPU architecture the PTX is generated for.
        arch: GpuArch,
    },
}

/// An NVIDIA GPU architecture code is generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuArch {
    /// Hopper (H100, H200): PTX ISA 8.0.
    Sm90,
}

impl GpuArch {
    /// Every architecture code is generated for.
    pub const ALL: [GpuArch; 1] = [GpuArch::Sm90];

    /// The architecture named `name` (`sm_90`), or why there is none.
    pub fn parse(name: &str) -> Result<GpuArch, String> {
        GpuArch::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            let names: Vec<&str> = GpuArch::ALL.iter().map(|a| a.name()).collect();
            format!("unknown GPU architecture `{name}`; ssmc generates code for {}", names.join(", "))
        })
    }

    /// The name LLVM and ptxas use: `sm_90`.
    pub fn name(self) -> &'static str {
        match self {
            GpuArch::Sm90 => "sm_90",
        }
    }

    /// The LLVM feature string of the PTX ISA version generated.
    pub fn ptx_features(self) -> &'static str {
        match self {
            GpuArch::Sm90 => "+ptx80",
        }
    }
}

/// The target names every command accepts, with a line of help each.
pub const NAMES: [(&str, &str); 2] =
    [("cpu", "x86-64 CPU (`--cpu` picks which)"), ("cuda", "NVIDIA GPU: PTX for sm_90, run through the CUDA driver")];

/// Older target names still accepted, and the name each stands for.
pub const ALIASES: [(&str, &str); 1] = [("ptx", "cuda")];

impl Target {
    /// An x86-64 CPU by name (`native`, `x86-64-v3`, ...); not checked until [`Target::check`].
    pub fn cpu(name: impl Into<String>) -> Target {
        Target::Cpu { cpu: name.into() }
    }

    /// The GPU ssmc generates code for today: sm_90.
    pub fn cuda() -> Target {
        Target::Cuda { arch: GpuArch::Sm90 }
    }

    /// The target named `name` on the command line (one of [`NAMES`] or [`ALIASES`]), with
    /// `cpu` as its CPU when it is `cpu`.
    pub fn parse(name: &str, cpu: &str) -> Result<Target, String> {
        let name = ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, to)| to);
        match name {
            "cpu" => Ok(Target::cpu(cpu)),
            "cuda" => Ok(Target::cuda()),
            other => {
                let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                Err(format!("unknown target `{other}`; accepted: {}", names.join(", ")))
            }
        }
    }

    /// The name on the command line and in `ssmc run` and `ssmc explain`: `cpu` or `cuda`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Cpu { .. } => "cpu",
            Target::Cuda { .. } => "cuda",
        }
    }

    /// The kind of code in the artifact, as `manifest.json`'s `target` names it and the
    /// runtime checks it: `cpu` (a library) or `ptx`.
    pub fn artifact_kind(&self) -> &'static str {
        match self {
            Target::Cpu { .. } => "cpu",
            Target::Cuda { .. } => "ptx",
        }
    }

    /// The machine within the target, as `manifest.json`'s `arch` names it: the CPU name
    /// as given, or the GPU architecture (`sm_90`).
    pub fn arch_name(&self) -> String {
        match self {
            Target::Cpu { cpu } => cpu.clone(),
            Target::Cuda { arch } => arch.name().to_string(),
        }
    }

    /// The target an artifact was built for, from its manifest's `target` (the artifact
    /// kind, [`Target::artifact_kind`]) and `arch` ([`Target::arch_name`]); the inverse of
    /// those two.
    pub fn of_artifact(kind: &str, arch: &str) -> Result<Target, String> {
        match kind {
            "cpu" => Ok(Target::cpu(arch)),
            "ptx" => Ok(Target::Cuda { arch: GpuArch::parse(arch)? }),
            other => Err(format!("unknown artifact target `{other}`; ssmc writes `cpu` and `ptx` artifacts")),
        }
    }

    /// Whether code runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Target::Cuda { .. })
    }

    /// Checks the CPU name before any LLVM call (LLVM aborts the process on a 32-bit or
    /// unknown CPU): `native` on a host with AVX2, or one of [`CPUS`]. A GPU target passes.
    pub fn check(&self) -> Result<(), String> {
        let Target::Cpu { cpu } = self else { return Ok(()) };
        let accepted = || format!("accepted: native, {}", CPUS.join(", "));
        if cpu == "native" {
            if host_has("avx2") {
                return Ok(());
            }
            return Err(format!(
                "--cpu native: this machine's CPU lacks AVX2 (or is not x86-64), which ssmc's x86-64 kernels need; {}",
                accepted()
            ));
        }
        if CPUS.contains(&cpu.as_str()) {
            return Ok(());
        }
        if OLDER_CPUS.contains(&cpu.as_str()) || cpu.starts_with("pentium") || cpu.starts_with("athlon") {
            return Err(format!(
                "--cpu {cpu}: this CPU lacks AVX2 (or 64-bit mode), which ssmc's x86-64 kernels need; {}",
                accepted()
            ));
        }
        Err(format!("--cpu {cpu}: not an x86-64 CPU name ssmc knows; {}", accepted()))
    }

    /// The widest f32 vector worth using.
    pub fn max_lanes(&self) -> u32 {
        match self {
            Target::Cpu { cpu } => {
                if cpu == "x86-64-v4" || (cpu == "native" && host_has("avx512f")) {
                    16
                } else {
                    8
                }
            }
            // Vectors are split into scalars on the GPU; 16 keeps the state unrolled in registers.
            Target::Cuda { .. } => 16,
        }
    }

    /// x86 with AVX-512 F and DQ (16-lane vectors, `vscalefps`, `vreduceps`).
    pub fn avx512(&self) -> bool {
        match self {
            Target::Cpu { cpu } => {
                cpu == "x86-64-v4" || (cpu == "native" && host_has("avx512f") && host_has("avx512dq"))
            }
            Target::Cuda { .. } => false,
        }
    }
}

/// Whether the host CPU has the x86 feature `name` (`avx2`, `avx512f`, `avx512dq`), by
/// CPUID and the operating system's register support, as LLVM's `native` sees it; false
/// off x86-64.
pub fn host_has(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match name {
            "avx2" => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = name;
        false
    }
}

/// LLVM x86 CPU names with AVX2 and FMA, which ssmc's x86-64 kernels are written for
/// (8-lane f32 vectors; 16 lanes and AVX-512 instructions with `x86-64-v4` or a `native`
/// AVX-512 host). Besides these: `native`, the host, when it has AVX2.
#[rustfmt::skip]
pub const CPUS: [&str; 36] = [
    "x86-64-v3", "x86-64-v4", "haswell", "broadwell", "skylake", "skylake-avx512", "skx", "cascadelake",
    "cooperlake", "cannonlake", "icelake-client", "icelake-server", "tigerlake", "rocketlake", "alderlake",
    "raptorlake", "meteorlake", "arrowlake", "arrowlake-s", "lunarlake", "pantherlake", "gracemont",
    "sierraforest", "grandridge", "clearwaterforest", "sapphirerapids", "emeraldrapids", "graniterapids",
    "graniterapids-d", "znver1", "znver2", "znver3", "znver4", "znver5", "core-avx2", "bdver4",
];

/// LLVM x86 CPU names without AVX2 (or 32-bit only), refused with that reason.
#[rustfmt::skip]
const OLDER_CPUS: [&str; 48] = [
    "x86-64", "x86-64-v2", "i386", "i486", "i586", "i686", "pentium", "pentium-mmx", "pentiumpro", "pentium2",
    "pentium3", "pentium3m", "pentium-m", "pentium4", "pentium4m", "prescott", "nocona", "yonah", "core2", "penryn",
    "nehalem", "corei7", "westmere", "sandybridge", "corei7-avx", "ivybridge", "core-avx-i", "bonnell", "atom",
    "silvermont", "slm", "goldmont", "goldmont-plus", "tremont", "k6", "k8", "athlon64", "opteron", "amdfam10",
    "barcelona", "btver1", "btver2", "bdver1", "bdver2", "bdver3", "generic", "geode", "lakemont",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_alias_parses_to_its_target() {
        assert_eq!(Target::parse("cpu", "znver3"), Ok(Target::cpu("znver3")));
        assert_eq!(Target::parse("cuda", "native"), Ok(Target::cuda()));
        assert_eq!(Target::parse("ptx", "native"), Ok(Target::cuda()));
        for (name, _) in NAMES {
            assert_eq!(Target::parse(name, "native").map(|t| t.name()), Ok(name));
        }
        let e = Target::parse("gpu", "native").expect_err("unknown");
        assert!(e.contains("accepted: cpu, cuda"), "{e}");
    }

    #[test]
    fn the_manifest_keeps_its_names() {
        assert_eq!((Target::cuda().artifact_kind(), Target::cuda().arch_name().as_str()), ("ptx", "sm_90"));
        assert_eq!(
            (Target::cpu("x86-64-v3").artifact_kind(), Target::cpu("x86-64-v3").arch_name().as_str()),
            ("cpu", "x86-64-v3")
        );
        for t in [Target::cuda(), Target::cpu("znver4"), Target::cpu("native")] {
            assert_eq!(Target::of_artifact(t.artifact_kind(), &t.arch_name()), Ok(t));
        }
        let e = Target::of_artifact("ptx", "sm_70").expect_err("old arch");
        assert!(e.contains("`sm_70`") && e.contains("sm_90"), "{e}");
        let e = Target::of_artifact("metal", "m1").expect_err("kind");
        assert!(e.contains("`metal`"), "{e}");
    }
}
