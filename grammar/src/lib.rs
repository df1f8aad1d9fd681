//! The `.ssm` language front end: grammar (`ssm.pest`), spanned AST, parser and the one
//! diagnostic type shared by every stage of ssmc.
//!
//! ```
//! let src = "layer tiny { dims batch B }";
//! let file = ssmc_syntax::parse(src).expect("parses");
//! assert_eq!(file.layers[0].name.name, "tiny");
//! ```

pub mod ast;
pub mod diag;
mod parse;
mod syntax_error;

pub use ast::Span;
pub use diag::{did_you_mean, Diagnostic, Diagnostics, Label, Severity, SourceFile};
pub use parse::parse;
