//! ssmc: a compiler for state-space-model sequence layers.
//!
//! The pipeline, one stage per line of [`compile`]:
//! `.ssm` text -> AST ([`ssmc_syntax::parse`]) -> layer IR ([`sema::check`]) -> run by the
//! reference interpreter ([`interp`]). Forms, lowering and code generation come next.

pub mod arena;
pub mod ir;
pub mod sema;

pub use ssmc_syntax::{Diagnostic, Diagnostics, SourceFile};

/// Parses and checks a `.ssm` source: the front half of the pipeline. Returns the module
/// and its warnings, or every diagnostic found.
pub fn compile(source: &str) -> Result<(ir::Module, Diagnostics), Diagnostics> {
    let ast = ssmc_syntax::parse(source).map_err(Diagnostics)?;
    sema::check(&ast)
}
