//! Limits on the size of one expression, checked without recursion: parentheses nest at
//! most [`MAX_NESTING`] levels (checked on the text, before pest, which recurses once per
//! level) and an expression holds at most [`MAX_OPERATORS`] operators (checked on the
//! flat parse tree, before the AST is built). Together they bound the depth of every
//! expression tree, so the passes that recurse over it (AST building, sema, printing,
//! the interpreter, the e-graph, lowering) run in a small, bounded stack.

// A diagnostic is the error of the rare failing parse; its size does not matter there.
#![allow(clippy::result_large_err)]

use crate::ast::Span;
use crate::diag::Diagnostic;
use crate::parse::Rule;
use pest::iterators::Pair;

/// Most levels of parentheses, call parentheses included, that may be open at once.
pub const MAX_NESTING: usize = 64;

/// Most operators (`+ - * /` and unary `-`) one role, `skip` or `gate` expression may hold.
pub const MAX_OPERATORS: usize = 256;

/// Where the limits are documented, for the notes of their errors.
const DOCS: &str = "see \"Limits\" in docs/language.md";

/// The first `(` that opens a level past [`MAX_NESTING`], as an error. Comments are
/// skipped; `;`, `{` and `}` cannot stand inside parentheses, so they close every level
/// (unbalanced text is left to the parser, which explains it better).
pub(crate) fn check_nesting(src: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    let mut outermost = 0usize;
    let mut in_comment = false;
    for (at, b) in src.bytes().enumerate() {
        match b {
            b'\n' => in_comment = false,
            _ if in_comment => {}
            b'#' => in_comment = true,
            b'(' => {
                if depth == 0 {
                    outermost = at;
                }
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::error(
                        format!("expression nested too deeply: more than {MAX_NESTING} levels of parentheses"),
                        Span::new(at, at + 1),
                        format!("level {depth} opens here"),
                    )
                    .with_secondary(Span::new(outermost, outermost + 1), "the outermost level opens here")
                    .with_note(format!(
                        "ssmc accepts at most {MAX_NESTING} nested parentheses or calls in one expression ({DOCS})"
                    ))
                    .with_hint("write the expression with fewer nested parentheses"));
                }
            }
            b')' => depth = depth.saturating_sub(1),
            b';' | b'{' | b'}' => depth = 0,
            _ => {}
        }
    }
    Ok(())
}

/// The operator past [`MAX_OPERATORS`] in the expression `expr` (a whole role, `skip` or
/// `gate` value), as an error. pest's flattened pairs are walked without recursion.
pub(crate) fn check_operators(expr: &Pair<Rule>) -> Result<(), Diagnostic> {
    let is_op = |p: &Pair<Rule>| matches!(p.as_rule(), Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::neg);
    let mut first_past: Option<Span> = None;
    let mut count = 0usize;
    for p in expr.clone().into_inner().flatten().filter(is_op) {
        count += 1;
        if count == MAX_OPERATORS + 1 {
            first_past = Some(Span::new(p.as_span().start(), p.as_span().end()));
        }
    }
    let Some(at) = first_past else { return Ok(()) };
    Err(Diagnostic::error(
        format!("expression too long: {count} operators, more than {MAX_OPERATORS}"),
        at,
        format!("operator {} is here", MAX_OPERATORS + 1),
    )
    .with_note(format!(
        "ssmc accepts at most {MAX_OPERATORS} operators (`+ - * /` and unary `-`) in one expression ({DOCS})"
    ))
    .with_hint("simplify the expression, or compute part of it into an input tensor"))
}

#[cfg(test)]
mod tests {
    use crate::parse;

    fn layer(value: &str) -> String {
        format!("layer l {{ x = {value} }}")
    }

    #[test]
    fn nesting_at_the_limit_parses_and_past_it_is_located() {
        let ok = format!("{}a{}", "(".repeat(super::MAX_NESTING), ")".repeat(super::MAX_NESTING));
        assert!(parse(&layer(&ok)).is_ok());
        let deep = format!("{}a{}", "(".repeat(super::MAX_NESTING + 1), ")".repeat(super::MAX_NESTING + 1));
        let src = layer(&deep);
        let err = parse(&src).expect_err("too deep");
        assert!(err[0].message.contains("nested too deeply"), "{}", err[0].message);
        assert_eq!(err[0].primary.span.start, src.find('(').expect("a paren") + super::MAX_NESTING);
    }

    #[test]
    fn parentheses_in_comments_do_not_count() {
        let src = format!("# {}\n{}", "(".repeat(1000), layer("a"));
        assert!(parse(&src).is_ok());
    }

    #[test]
    fn operators_at_the_limit_parse_and_past_them_are_located() {
        let ok = vec!["a"; super::MAX_OPERATORS + 1].join(" + ");
        assert!(parse(&layer(&ok)).is_ok());
        let long = vec!["a"; super::MAX_OPERATORS + 2].join(" + ");
        let src = layer(&long);
        let err = parse(&src).expect_err("too long");
        assert_eq!(err[0].message, format!("expression too long: {} operators, more than 256", 257));
        assert_eq!(&src[err[0].primary.span.start..err[0].primary.span.end], "+");
        let minuses = layer(&format!("{}a", "-".repeat(super::MAX_OPERATORS + 1)));
        assert!(parse(&minuses).expect_err("too many minuses")[0].message.contains("too long"));
    }
}
