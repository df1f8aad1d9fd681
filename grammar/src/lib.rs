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
pub mod limits;
mod parse;
mod shown;
mod syntax_error;

pub use ast::Span;
pub use diag::{did_you_mean, Diagnostic, Diagnostics, Label, Severity, SourceFile, MAX_SHOWN};
pub use limits::{MAX_NESTING, MAX_OPERATORS};
pub use parse::parse;
pub use shown::{escaped, is_invisible};
