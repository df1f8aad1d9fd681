//! Expressions: name resolution, functions, and the axes each role may vary along.

use super::LayerCx;
use crate::arena::Handle;
use crate::ir::{Axis, AxisRole, Expr, Func, Tensor};
use ssmc_syntax::ast::{self, ExprKind, Io};
use ssmc_syntax::{did_you_mean, Diagnostic, Span};

impl LayerCx<'_> {
    /// Lowers a real elementwise expression; reports every problem in it.
    pub(super) fn lower(&mut self, e: &ast::Expr) -> Option<Handle<Expr>> {
        let node = match &e.kind {
            ExprKind::Number(v) => Expr::Const(*v),
            ExprKind::Name(n) => {
                let t = self.resolve_tensor(n)?;
                if self.tensors[t].shape.contains(&Axis::Complex) {
                    self.error(
                        Diagnostic::error(
                            format!("`{}` is complex (it has a re/im axis)", n.name),
                            n.span,
                            "complex tensor",
                        )
                        .with_secondary(self.spans.tensors[t.index()], "declared here")
                        .with_hint(format!("use it whole as `complex({})` in A, B or C", n.name)),
                    );
                    return None;
                }
                Expr::Load { tensor: t, component: None }
            }
            ExprKind::Neg(a) => Expr::Neg(self.lower(a)?),
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.lower(a), self.lower(b));
                Expr::Binary(*op, a?, b?)
            }
            ExprKind::Call(f, args) => {
                let Some(func) = Func::ALL.into_iter().find(|g| g.name() == f.name) else {
                    self.unknown_function(f);
                    args.iter().for_each(|a| {
                        self.lower(a);
                    });
                    return None;
                };
                if args.len() != func.arity() {
                    self.error(Diagnostic::error(
                        format!(
                            "`{}` takes {} argument{}, got {}",
                            f.name,
                            func.arity(),
                            if func.arity() == 1 { "" } else { "s" },
                            args.len()
                        ),
                        e.span,
                        "wrong number of arguments",
                    ));
                    return None;
                }
                let lowered: Vec<Option<Handle<Expr>>> = args.iter().map(|a| self.lower(a)).collect();
                Expr::Call(func, lowered.into_iter().collect::<Option<_>>()?)
            }
        };
        let h = self.exprs.append(node);
        self.spans.exprs.push(e.span);
        Some(h)
    }

    fn unknown_function(&mut self, f: &ast::Ident) {
        let d = if matches!(f.name.as_str(), "scalar" | "diagonal" | "complex") {
            Diagnostic::error(format!("`{}` is only allowed at the top of A, B or C", f.name), f.span, "not here")
                .with_note("it says how A is structured, or builds a complex B or C")
        } else {
            let names: Vec<&str> = Func::ALL.iter().map(|g| g.name()).collect();
            Diagnostic::error(format!("unknown function `{}`", f.name), f.span, "not a function")
                .with_note(format!("functions: {}", names.join(", ")))
                .with_hint_opt(did_you_mean(&f.name, names))
        };
        self.error(d);
    }

    /// The input tensor called `n`; marks it used.
    pub(super) fn resolve_tensor(&mut self, n: &ast::Ident) -> Option<Handle<Tensor>> {
        let t = self.resolve_any_tensor(n)?;
        if self.tensors[t].io == Io::Output {
            self.error(
                Diagnostic::error(format!("`{}` is an output; it cannot be read", n.name), n.span, "output")
                    .with_secondary(self.spans.tensors[t.index()], "declared as an output here"),
            );
            return None;
        }
        self.used[t.index()] = true;
        Some(t)
    }

    /// Any tensor called `n`.
    pub(super) fn resolve_any_tensor(&mut self, n: &ast::Ident) -> Option<Handle<Tensor>> {
        if let Some(&t) = self.tensor_names.get(&n.name) {
            return Some(t);
        }
        if self.broken_tensors.contains(&n.name) {
            return None;
        }
        let mut d = Diagnostic::error(format!("unknown tensor `{}`", n.name), n.span, "not declared");
        if self.dim_names.contains_key(&n.name) {
            d = d.with_note(format!("`{}` is a dim; dims appear only in shapes", n.name));
        }
        let close = match self.hint_budget.checked_sub(self.tensor_names.len()) {
            Some(left) => {
                self.hint_budget = left;
                did_you_mean(&n.name, self.tensor_names.keys().map(String::as_str))
            }
            None => None,
        };
        let hint = close.unwrap_or_else(|| format!("declare it, e.g. `input {}: f32[...]`", n.name));
        self.error(d.with_hint(hint));
        None
    }

    /// Checks that `e` varies only along axes whose slots are in `allowed`.
    pub(super) fn check_axes(&mut self, e: Handle<Expr>, role_span: Span, role: &str, allowed: &[usize]) -> bool {
        let bad: Vec<Axis> = self.axes_of(e).into_iter().filter(|a| !allowed.contains(&self.slot(*a))).collect();
        if bad.is_empty() {
            return true;
        }
        let roles = |slots: &[usize]| -> String {
            let mut names: Vec<&str> = Vec::new();
            for s in slots {
                let r = AxisRole::ALL.into_iter().find(|r| r.slot() == *s).map_or("?", |r| {
                    if *s == 2 {
                        "channel/head"
                    } else {
                        r.keyword()
                    }
                });
                names.push(r);
            }
            names.join(", ")
        };
        let bad_text: Vec<String> =
            bad.iter().map(|a| format!("`{}` ({})", self.axis_text(*a), roles(&[self.slot(*a)]))).collect();
        self.error(
            Diagnostic::error(
                format!("`{role}` varies along {}", bad_text.join(", ")),
                self.spans.exprs[e.index()],
                "shape mismatch",
            )
            .with_secondary(role_span, format!("`{role}` is given here"))
            .with_note(format!("`{role}` may vary only along: {}", roles(allowed))),
        );
        false
    }

    /// Axes of an expression built so far, sorted and deduplicated.
    pub(super) fn axes_of(&self, e: Handle<Expr>) -> Vec<Axis> {
        let mut out = Vec::new();
        let mut stack = vec![e];
        while let Some(h) = stack.pop() {
            match &self.exprs[h] {
                Expr::Const(_) => {}
                Expr::Load { tensor, .. } => {
                    out.extend(self.tensors[*tensor].shape.iter().copied().filter(|a| *a != Axis::Complex))
                }
                Expr::Neg(a) => stack.push(*a),
                Expr::Binary(_, a, b) => stack.extend([*a, *b]),
                Expr::Call(_, args) => stack.extend(args.iter().copied()),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Environment slot of an axis.
    pub(super) fn slot(&self, a: Axis) -> usize {
        match a {
            Axis::Dim { dim, .. } => self.dims[dim].role.slot(),
            Axis::Complex => crate::ir::SLOTS,
        }
    }

    pub(super) fn axis_text(&self, a: Axis) -> String {
        match a {
            Axis::Dim { dim, divisor: 1 } => self.dims[dim].name.clone(),
            Axis::Dim { dim, divisor } => format!("{}/{divisor}", self.dims[dim].name),
            Axis::Complex => "2".into(),
        }
    }

    pub(super) fn shape_text(&self, shape: &[Axis]) -> String {
        let v: Vec<String> = shape.iter().map(|a| self.axis_text(*a)).collect();
        format!("[{}]", v.join(", "))
    }
}
