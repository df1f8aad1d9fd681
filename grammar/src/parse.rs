//! pest parse tree to spanned AST: one `parse_<rule>` function per grammar rule, and pest
//! errors turned into diagnostics with readable words instead of rule names.

// A diagnostic is the error of the rare failing parse; its size does not matter there.
#![allow(clippy::result_large_err)]

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::syntax_error::syntax_error;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "../ssm.pest"]
struct SsmParser;

type Result<T> = std::result::Result<T, Diagnostic>;

/// Parses a whole `.ssm` file. A syntax error stops parsing; it is returned alone.
pub fn parse(src: &str) -> std::result::Result<File, Vec<Diagnostic>> {
    // Before pest, which recurses once per level of parentheses.
    crate::limits::check_nesting(src).map_err(|d| vec![d])?;
    // Detailed errors list the literal tokens tried (`]`, `:`), not only the rule names.
    pest::set_error_detail(true);
    let mut pairs = SsmParser::parse(Rule::file, src).map_err(|e| syntax_errors(src, &e))?;
    let file = pairs.next().ok_or_else(|| vec![Diagnostic::error("empty parse", Span::default(), "")])?;
    parse_file(file).map_err(|d| vec![d])
}

/// The first syntax error of a file, and one more for each later layer that has its own:
/// pest stops at the first error, so every layer after it (from a line that starts with
/// `layer`) is parsed again on its own.
fn syntax_errors(src: &str, first: &pest::error::Error<Rule>) -> Vec<Diagnostic> {
    let at = match first.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((p, _)) => p,
    };
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        let rest = line.trim_start();
        let after = rest.strip_prefix("layer").and_then(|r| r.chars().next());
        if after.is_some_and(|c| c.is_whitespace() || c == '{') {
            starts.push(offset + (line.len() - rest.len()));
        }
        offset += line.len();
    }
    let mut diags = vec![syntax_error(src, first)];
    for (k, &start) in starts.iter().enumerate().filter(|(_, s)| **s > at) {
        let end = starts.get(k + 1).copied().unwrap_or(src.len());
        let chunk = &src[start..end];
        if let Err(e) = SsmParser::parse(Rule::file, chunk) {
            let mut d = syntax_error(chunk, &e);
            d.primary.span = Span::new(d.primary.span.start + start, d.primary.span.end + start);
            for l in &mut d.secondary {
                l.span = Span::new(l.span.start + start, l.span.end + start);
            }
            diags.push(d);
        }
    }
    diags
}

fn span(p: &Pair<Rule>) -> Span {
    Span::new(p.as_span().start(), p.as_span().end())
}

fn parse_file(pair: Pair<Rule>) -> Result<File> {
    let layers = pair.into_inner().filter(|p| p.as_rule() == Rule::layer).map(parse_layer).collect::<Result<_>>()?;
    Ok(File { layers })
}

fn parse_layer(pair: Pair<Rule>) -> Result<Layer> {
    let sp = span(&pair);
    let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::kw_layer);
    let name = parse_ident(inner.next().expect("grammar: layer has a name"));
    let stmts = inner.map(parse_stmt).collect::<Result<_>>()?;
    Ok(Layer { name, stmts, span: sp })
}

fn parse_ident(pair: Pair<Rule>) -> Ident {
    Ident { name: pair.as_str().to_string(), span: span(&pair) }
}

/// The pairs of a rule without its leading keyword.
fn operands(pair: Pair<Rule>) -> impl Iterator<Item = Pair<Rule>> {
    pair.into_inner().filter(|p| !format!("{:?}", p.as_rule()).starts_with("kw_"))
}

fn first(pair: Pair<Rule>) -> Pair<Rule> {
    operands(pair).next().expect("grammar: statement has an operand")
}

fn parse_stmt(pair: Pair<Rule>) -> Result<Stmt> {
    let sp = span(&pair);
    let kind = match pair.as_rule() {
        Rule::dims_decl => StmtKind::Dims(operands(pair).map(parse_dim_decl).collect::<Result<_>>()?),
        Rule::tensor_decl => StmtKind::Tensor(parse_tensor_decl(pair)?),
        Rule::discretize_stmt => StmtKind::Discretize(parse_ident(first(pair))),
        Rule::skip_stmt => StmtKind::Skip(parse_top_expr(first(pair))?),
        Rule::gate_stmt => StmtKind::Gate(parse_top_expr(first(pair))?),
        Rule::direction_stmt => StmtKind::Direction(parse_ident(first(pair))),
        Rule::initial_state_stmt => StmtKind::InitialState(parse_ident(first(pair))),
        Rule::final_state_stmt => StmtKind::FinalState(parse_ident(first(pair))),
        Rule::reverse_block => StmtKind::Reverse(operands(pair).map(parse_stmt).collect::<Result<_>>()?),
        Rule::role_stmt => {
            let mut it = pair.into_inner();
            let role = parse_ident(it.next().expect("grammar: role name"));
            let value = parse_top_expr(it.next().expect("grammar: role value"))?;
            StmtKind::Role { role, value }
        }
        r => unreachable!("grammar: {r:?} is not a statement"),
    };
    Ok(Stmt { kind, span: sp })
}

fn parse_int(pair: Pair<Rule>) -> Result<(i64, Span)> {
    let sp = span(&pair);
    pair.as_str()
        .parse::<i64>()
        .map(|v| (v, sp))
        .map_err(|_| Diagnostic::error("number too large", sp, "does not fit in 64 bits"))
}

fn parse_dim_decl(pair: Pair<Rule>) -> Result<DimDecl> {
    let mut it = pair.into_inner();
    let role = parse_ident(it.next().expect("grammar: dim role"));
    let name = parse_ident(it.next().expect("grammar: dim name"));
    let size = it.next().map(parse_int).transpose()?;
    Ok(DimDecl { role, name, size })
}

fn parse_tensor_decl(pair: Pair<Rule>) -> Result<TensorDecl> {
    let mut it = pair.into_inner();
    let io_pair = it.next().expect("grammar: io kind");
    let io = match io_pair.into_inner().next().map(|p| p.as_rule()) {
        Some(Rule::kw_output) => Io::Output,
        _ => Io::Input,
    };
    let name = parse_ident(it.next().expect("grammar: tensor name"));
    let dtype = parse_ident(it.next().expect("grammar: dtype"));
    let shape_pair = it.next().expect("grammar: shape");
    let shape_span = span(&shape_pair);
    let shape = shape_pair.into_inner().map(parse_shape_atom).collect::<Result<_>>()?;
    let init = it.next().map(parse_init).transpose()?;
    Ok(TensorDecl { io, name, dtype, shape, shape_span, init })
}

fn parse_shape_atom(pair: Pair<Rule>) -> Result<ShapeAtom> {
    let sp = span(&pair);
    let mut it = pair.into_inner();
    let head = it.next().expect("grammar: shape atom");
    let kind = match head.as_rule() {
        Rule::int => ShapeAtomKind::Literal(parse_int(head)?.0),
        _ => ShapeAtomKind::Dim { name: parse_ident(head), divisor: it.next().map(parse_int).transpose()? },
    };
    Ok(ShapeAtom { kind, span: sp })
}

fn parse_number(pair: &Pair<Rule>) -> Result<f64> {
    let sp = span(pair);
    match pair.as_str().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Diagnostic::error("number out of range", sp, "not a finite number")),
    }
}

fn parse_init(pair: Pair<Rule>) -> Result<Init> {
    let sp = span(&pair);
    let mut it = pair.into_inner();
    let dist = parse_ident(it.next().expect("grammar: distribution"));
    let args = it.map(|p| parse_number(&p)).collect::<Result<_>>()?;
    Ok(Init { dist, args, span: sp })
}

fn pratt() -> PrattParser<Rule> {
    PrattParser::new()
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg))
}

/// A whole role, `skip` or `gate` value, refused past the operator limit before the
/// recursive Pratt parser sees it.
fn parse_top_expr(pair: Pair<Rule>) -> Result<Expr> {
    crate::limits::check_operators(&pair)?;
    parse_expr(pair)
}

fn parse_expr(pair: Pair<Rule>) -> Result<Expr> {
    pratt()
        .map_primary(parse_primary)
        .map_prefix(|op, rhs| {
            let rhs = rhs?;
            Ok(Expr { span: Span::new(op.as_span().start(), rhs.span.end), kind: ExprKind::Neg(Box::new(rhs)) })
        })
        .map_infix(|lhs, op, rhs| {
            let (lhs, rhs) = (lhs?, rhs?);
            let op = match op.as_rule() {
                Rule::add => BinOp::Add,
                Rule::sub => BinOp::Sub,
                Rule::mul => BinOp::Mul,
                _ => BinOp::Div,
            };
            Ok(Expr {
                span: Span::new(lhs.span.start, rhs.span.end),
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
            })
        })
        .parse(pair.into_inner())
}

fn parse_primary(pair: Pair<Rule>) -> Result<Expr> {
    let sp = span(&pair);
    let kind = match pair.as_rule() {
        Rule::number => ExprKind::Number(parse_number(&pair)?),
        Rule::ident => ExprKind::Name(parse_ident(pair)),
        Rule::paren => {
            let inner = pair.into_inner().next().expect("grammar: parenthesized expression");
            return parse_expr(inner).map(|e| Expr { span: sp, ..e });
        }
        Rule::call => {
            let mut it = pair.into_inner();
            let f = parse_ident(it.next().expect("grammar: callee"));
            ExprKind::Call(f, it.map(parse_expr).collect::<Result<_>>()?)
        }
        r => unreachable!("grammar: {r:?} is not a primary"),
    };
    Ok(Expr { kind, span: sp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence() {
        let f = parse("layer l { x = a + b * -c }").expect("parses");
        let StmtKind::Role { value, .. } = &f.layers[0].stmts[0].kind else { panic!("role") };
        let ExprKind::Binary(BinOp::Add, _, rhs) = &value.kind else { panic!("add on top") };
        assert!(matches!(rhs.kind, ExprKind::Binary(BinOp::Mul, _, _)));
    }

    #[test]
    fn syntax_error_names_literal_tokens() {
        let err = parse("layer l { input u f32[B] }").expect_err("fails");
        assert_eq!(err[0].message, "syntax error: expected `:`, found `f32`");
        let err = parse("layer l { x = f(a }").expect_err("fails");
        assert_eq!(err[0].message, "syntax error: expected an operator, `)` or `,`, found `}`");
        assert_eq!(err[0].secondary[0].message, "this `(` is never closed");
    }

    #[test]
    fn syntax_error_is_readable() {
        let err = parse("layer l { input u: f32[B, }").expect_err("fails");
        assert!(err[0].message.contains("expected a name or a number, found `}`"), "{}", err[0].message);
    }
}
