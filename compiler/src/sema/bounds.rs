//! Bounds: every element the scan reads or writes lies inside its tensor.
//!
//! The interpreter ([`crate::roles`]) and the native kernels ([`crate::lower`]) address an
//! axis of a tensor by the scan's own index along that axis' role: batch `b`, time `t`,
//! head (or channel) `h`, head element `p`, group `h / (heads / groups)` and state `n`.
//! Neither looks at the axis' declared size. So an access is in bounds exactly when each
//! axis of each tensor the scan touches has the size of the scan's index space along its
//! role, which this pass proves from the declarations alone:
//!
//! * a batch, time, channel/head, headdim or group axis must be the dim itself (`D`, not
//!   `D/2`); the state axis must be the scan's state axis (`N/2` for conjugate pairs);
//! * a role the scan has no index for (a group axis where B and C have no groups) is refused;
//! * a tensor varies along each role at most once (`[H, H]` would be read on its diagonal
//!   by the interpreter, but with the wrong stride by vectorized native code);
//! * the re/im axis is read at 0 or 1, always inside its size 2.
//!
//! What only sizes bound at run time can show (`D/2` with an odd `D`, heads that `G` does
//! not divide) is refused when binding: [`crate::bind`] and the runtime's `bind`.

use super::roles::Parts;
use super::LayerCx;
use crate::arena::Handle;
use crate::ir::{Axis, Expr, Scan, ScanAxes, Tensor, SLOTS};
use ssmc_syntax::ast::{self, StmtKind};
use ssmc_syntax::{Diagnostic, Span};

/// Who touches a tensor, for the secondary label.
#[derive(Clone, Copy)]
enum Access {
    /// Read by a role, at the load written here.
    Read { role: &'static str, at: Span },
    /// Written (the output y, the final state) or read as the initial state.
    Whole(&'static str),
}

/// The axis the scan indexes each slot by, if it has an index there.
pub(super) fn index_space(axes: &ScanAxes) -> [Option<Axis>; SLOTS] {
    let whole = |dim| Axis::Dim { dim, divisor: 1 };
    [
        Some(whole(axes.batch)),
        Some(whole(axes.time)),
        Some(whole(axes.head)),
        axes.headdim.map(whole),
        axes.group.map(whole),
        Some(axes.state),
    ]
}

impl LayerCx<'_> {
    /// Reports every axis of every tensor the scan touches whose size is not the scan's
    /// index space along it. `layer` gives the spans of the axes as declared.
    pub(super) fn check_bounds(&mut self, layer: &ast::Layer, parts: &Parts) {
        let space = index_space(&parts.axes);
        let mut touched: Vec<(Handle<Tensor>, Access)> = Vec::new();
        for scan in std::iter::once(&parts.forward).chain(parts.backward.as_ref()) {
            for (role, e) in role_exprs(scan) {
                self.collect_loads(e, role, &mut touched);
            }
        }
        let whole = [
            (Some(parts.output), "the scan writes it as the output"),
            (parts.initial_state, "the scan reads it as the initial state"),
            (parts.final_state, "the scan writes it as the final state"),
        ];
        for (t, what) in whole {
            if let Some(t) = t {
                touched.push((t, Access::Whole(what)));
            }
        }
        let mut seen = vec![false; self.tensors.len()];
        for (t, access) in touched {
            if !std::mem::replace(&mut seen[t.index()], true) {
                self.check_tensor_bounds(layer, t, access, &space);
            }
        }
    }

    fn collect_loads(&self, e: Handle<Expr>, role: &'static str, out: &mut Vec<(Handle<Tensor>, Access)>) {
        let mut stack = vec![e];
        while let Some(h) = stack.pop() {
            match &self.exprs[h] {
                Expr::Const(_) => {}
                Expr::Load { tensor, .. } => {
                    out.push((*tensor, Access::Read { role, at: self.spans.exprs[h.index()] }))
                }
                Expr::Neg(a) => stack.push(*a),
                Expr::Binary(_, a, b) => stack.extend([*b, *a]),
                Expr::Call(_, args) => stack.extend(args.iter().rev().copied()),
            }
        }
    }

    fn check_tensor_bounds(
        &mut self,
        layer: &ast::Layer,
        t: Handle<Tensor>,
        access: Access,
        space: &[Option<Axis>; SLOTS],
    ) {
        let shape = self.tensors[t].shape.clone();
        let name = self.tensors[t].name.clone();
        let atoms = axis_spans(layer, &name, self.spans.tensors[t.index()], shape.len());
        let mut first_at: [Option<Span>; SLOTS] = [None; SLOTS];
        for (k, axis) in shape.iter().enumerate() {
            let Axis::Dim { dim, .. } = *axis else { continue };
            let slot = self.slot(*axis);
            let role = self.dims[dim].role.keyword();
            let text = self.axis_text(*axis);
            let d = match (space[slot], first_at[slot]) {
                (None, _) => Diagnostic::error(
                    format!("axis `{text}` of `{name}` is a {role} axis, but the scan has no {role} index"),
                    atoms[k],
                    format!("no {role} index to read it by"),
                )
                .with_note(match role {
                    "group" => "the scan's groups come from the real parts of B and C: give them the group axis too",
                    _ => "x gives the scan its headdim: give x that axis too",
                }),
                (Some(want), _) if want != *axis => {
                    let want_text = self.axis_text(want);
                    Diagnostic::error(
                        format!("axis `{text}` of `{name}` does not match the scan's {role} axis `{want_text}`"),
                        atoms[k],
                        format!("`{text}` elements, but the scan reads `{want_text}`"),
                    )
                    .with_note(format!(
                        "the scan reads every {role} axis at each of its `{want_text}` {role} indices, so \
                         the axis must have exactly that size"
                    ))
                    .with_hint(format!("declare the axis as `{want_text}`"))
                }
                (Some(_), Some(prev)) => {
                    Diagnostic::error(format!("`{name}` has two {role} axes"), atoms[k], format!("second {role} axis"))
                        .with_secondary(prev, format!("first {role} axis"))
                        .with_note(format!("the scan has one {role} index, so a tensor varies along it at most once"))
                }
                (Some(_), None) => {
                    first_at[slot] = Some(atoms[k]);
                    continue;
                }
            };
            let d = match access {
                Access::Read { role: r, at } => d.with_secondary(at, format!("`{r}` reads `{name}` here")),
                Access::Whole(what) => d.with_note(format!("`{name}`: {what}")),
            };
            self.error(d);
        }
    }
}

/// The expressions of each role of a scan, by role name.
fn role_exprs(s: &Scan) -> Vec<(&'static str, Handle<Expr>)> {
    let mut out = vec![("x", s.x)];
    out.extend(s.dt.map(|e| ("dt", e)));
    for (name, v) in [("A", s.a), ("B", s.b), ("C", s.c)] {
        out.extend([Some(v.re), v.im].into_iter().flatten().map(|e| (name, e)));
    }
    out.extend(s.skip.map(|e| ("skip", e)));
    out.extend(s.gate.map(|e| ("gate", e)));
    out
}

/// The span of each axis of tensor `name` as declared (the tensor's name span where the
/// declaration cannot be found, which check has already reported).
fn axis_spans(layer: &ast::Layer, name: &str, fallback: Span, rank: usize) -> Vec<Span> {
    let decl = layer.stmts.iter().find_map(|s| match &s.kind {
        StmtKind::Tensor(t) if t.name.name == name && t.shape.len() == rank => Some(t),
        _ => None,
    });
    match decl {
        Some(t) => t.shape.iter().map(|a| a.span).collect(),
        None => vec![fallback; rank],
    }
}
