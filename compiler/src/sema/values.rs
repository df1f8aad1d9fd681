//! Values of A, B and C: the structure A names (`scalar`, `diagonal`, `complex`, and the
//! ones not supported yet), and complex values built with `complex(...)`.

use super::LayerCx;
use crate::ir::{AStructure, Axis, Discretization, Expr, Value};
use ssmc_syntax::ast;
use ssmc_syntax::{did_you_mean, Diagnostic, Span};

impl LayerCx<'_> {
    /// A as `structure(args)`, with the axes its structure allows; `disc` to report a
    /// structure the discretization cannot handle.
    pub(super) fn lower_a(
        &mut self,
        e: &ast::Expr,
        sp: Span,
        disc: Option<Discretization>,
    ) -> Option<(Value, AStructure)> {
        let ast::ExprKind::Call(f, args) = &e.kind else {
            self.error(
                Diagnostic::error("A must name its structure", e.span, "structure not given")
                    .with_note("structures: scalar(a) per head, diagonal(a) real, complex(re, im) complex diagonal")
                    .with_hint("e.g. `A = diagonal(-exp(A_log))`"),
            );
            return None;
        };
        let structure = match f.name.as_str() {
            "scalar" => AStructure::Scalar,
            "diagonal" => AStructure::Diagonal,
            "complex" => AStructure::Complex,
            "dplr" | "companion" => {
                if f.name == "dplr" && matches!(disc, Some(Discretization::Zoh | Discretization::ZohEuler)) {
                    self.error(
                        Diagnostic::error(
                            format!("`{}` does not fit a dplr A", disc.map_or("", Discretization::name)),
                            f.span,
                            "dplr here",
                        )
                        .with_note("exp(dt A) of a diagonal-plus-low-rank A is a dense matrix exponential")
                        .with_hint("S4 discretizes a dplr A with `bilinear`"),
                    );
                } else {
                    self.error(
                        Diagnostic::error(
                            format!("A structure `{}` is not supported yet", f.name),
                            f.span,
                            "not supported yet",
                        )
                        .with_note("supported: scalar, diagonal, complex"),
                    );
                }
                return None;
            }
            other => {
                let hint = did_you_mean(other, ["scalar", "diagonal", "complex"]);
                self.error(
                    Diagnostic::error(format!("unknown A structure `{other}`"), f.span, "not a structure")
                        .with_note("structures: scalar, diagonal, complex")
                        .with_hint_opt(hint),
                );
                return None;
            }
        };
        let value = if structure == AStructure::Complex {
            self.lower_value(e)?
        } else {
            if args.len() != 1 {
                self.error(Diagnostic::error(
                    format!("`{}` takes 1 argument, got {}", f.name, args.len()),
                    e.span,
                    "wrong number of arguments",
                ));
                return None;
            }
            Value { re: self.lower(&args[0])?, im: None }
        };
        let allowed: &[usize] = if structure == AStructure::Scalar { &[2] } else { &[2, 5] };
        let ok = [Some(value.re), value.im].into_iter().flatten().all(|h| self.check_axes(h, sp, "A", allowed));
        ok.then_some((value, structure))
    }

    /// `complex(re, im)`, `complex(t)` of a tensor with a trailing re/im axis, or a real expression.
    pub(super) fn lower_value(&mut self, e: &ast::Expr) -> Option<Value> {
        let ast::ExprKind::Call(f, args) = &e.kind else {
            return Some(Value { re: self.lower(e)?, im: None });
        };
        if f.name != "complex" {
            return Some(Value { re: self.lower(e)?, im: None });
        }
        match args.as_slice() {
            [re, im] => {
                // Both parts lowered before either fails, so that both report their errors.
                let (re, im) = (self.lower(re), self.lower(im));
                Some(Value { re: re?, im: Some(im?) })
            }
            [ast::Expr { kind: ast::ExprKind::Name(n), .. }] => {
                let t = self.resolve_tensor(n)?;
                if self.tensors[t].shape.last() != Some(&Axis::Complex) {
                    self.error(
                        Diagnostic::error(
                            format!("`complex({})` needs a trailing axis of size 2", n.name),
                            n.span,
                            "no re/im axis",
                        )
                        .with_secondary(self.spans.tensors[t.index()], "declared here")
                        .with_hint("declare it with a last axis `2` (real view), or write `complex(re, im)`"),
                    );
                    return None;
                }
                let re = self.exprs.append(Expr::Load { tensor: t, component: Some(0) });
                self.spans.exprs.push(n.span);
                let im = self.exprs.append(Expr::Load { tensor: t, component: Some(1) });
                self.spans.exprs.push(n.span);
                Some(Value { re, im: Some(im) })
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        "`complex` takes (re, im) or one tensor with a re/im axis",
                        e.span,
                        "wrong arguments",
                    )
                    .with_hint("e.g. `complex(-exp(log_A_real), A_imag)` or `complex(C)`"),
                );
                None
            }
        }
    }
}
