//! ssmc: a compiler for state-space-model sequence layers.
//!
//! The pipeline, one stage per module, each a typed input to a typed output:
//!
//! ```text
//! front half, compile():
//!   .ssm text --ssmc_syntax::parse--> AST --sema::check--> layer IR (ir)
//! back half, back::plan then back::build:
//!   layer --forms::facts::LayerFacts::of--> facts (time-invariance, diagonal, ...)
//!     --forms::egraph::choose, by the cost model of a target::Target, among the forms
//!       the target has a schedule for (schedule::available)--> plan (forms::Plan)
//!     --schedule::kernel: lower::scan_spec, an ssmc_kernels template--> loop IR
//!     --ssmc_codegen::generate--> x86-64 object / PTX --artifact::{manifest, header}-->
//!     back::Artifact, in memory --artifact::write--> library or PTX, header, manifest
//!   f64 specifications of every form: forms::run, interp::run
//! ```
//!
//! [`compile`] is the front half (text to checked layers); `back::build` the back half (a
//! checked layer and its plan to an artifact), with the `codegen` feature, which brings in
//! LLVM through `ssmc-codegen`. The crates and their graph: `docs/architecture.md`.

pub mod arena;
pub mod artifact;
pub mod back;
pub mod bind;
/// Code generation (the `codegen` feature): loop IR to object code or PTX through LLVM.
#[cfg(feature = "codegen")]
pub use ssmc_codegen as codegen;
pub mod forms;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod outpath;
pub mod roles;
pub mod safetensors_check;
pub mod schedule;
pub mod sema;
pub use ssmc_contract::target;
pub mod tensors;

pub use ssmc_syntax::{Diagnostic, Diagnostics, SourceFile};

/// A checked source: the file (for rendering diagnostics) and what checking found.
pub struct Checked {
    /// The source, as text (invalid UTF-8 replaced) for rendering.
    pub file: SourceFile,
    /// The module and its warnings, or every diagnostic.
    pub result: Result<(ir::Module, Diagnostics), Diagnostics>,
}

/// Checks raw bytes of a `.ssm` file named `name`; bytes that are not UTF-8 are an error
/// at the first bad byte.
pub fn check_source(name: &str, bytes: &[u8]) -> Checked {
    match std::str::from_utf8(bytes) {
        Ok(text) => Checked { file: SourceFile::new(name, text), result: compile(text) },
        Err(e) => {
            let at = e.valid_up_to();
            let d = Diagnostic::error(
                "the file is not valid UTF-8",
                ssmc_syntax::Span::new(at, at + 1),
                format!("byte 0x{:02x} here", bytes[at]),
            )
            .with_hint(".ssm files are UTF-8 text; was a binary file passed?");
            Checked { file: SourceFile::new(name, String::from_utf8_lossy(bytes)), result: Err(Diagnostics(vec![d])) }
        }
    }
}

/// Parses and checks a `.ssm` source: the front half of the pipeline. Returns the module
/// and its warnings, or every diagnostic found.
pub fn compile(source: &str) -> Result<(ir::Module, Diagnostics), Diagnostics> {
    let ast = ssmc_syntax::parse(source).map_err(Diagnostics)?;
    sema::check(&ast)
}
