//! What the layer writes and carries besides the roles: the output y and the optional
//! states in and out, with the axes each must have; and the unused-input warning.

use super::LayerCx;
use crate::arena::Handle;
use crate::ir::{AStructure, Axis, AxisRole, Scan, ScanAxes, Tensor};
use ssmc_syntax::ast::{self, Io, StmtKind};
use ssmc_syntax::{Diagnostic, Span};

/// The tensors named by `initial_state` and `final_state`, when named.
type States = (Option<Handle<Tensor>>, Option<Handle<Tensor>>);

impl LayerCx<'_> {
    /// The output that is y: every output but the `final_state`. Reports none or several.
    /// It needs no scan, so it is checked even when the roles failed.
    pub(super) fn find_output(&mut self, layer: &ast::Layer, final_: Option<&ast::Ident>) -> Option<Handle<Tensor>> {
        let final_ = final_.and_then(|id| self.tensor_names.get(&id.name).copied());
        let outputs: Vec<Handle<Tensor>> =
            self.tensors.iter().filter(|(h, t)| t.io == Io::Output && Some(*h) != final_).map(|(h, _)| h).collect();
        match outputs.as_slice() {
            [one] => Some(*one),
            [] => {
                // An output whose declaration was wrong has been reported already.
                let broken = layer.stmts.iter().any(|s| {
                    matches!(&s.kind, StmtKind::Tensor(t) if t.io == Io::Output && self.broken_tensors.contains(&t.name.name))
                });
                if !broken {
                    self.error(
                        Diagnostic::error("the layer declares no output", layer.name.span, "in this layer")
                            .with_hint("e.g. `output out: f32[B, D, L]`, with the axes of x"),
                    );
                }
                None
            }
            [first, second, ..] => {
                self.error(
                    Diagnostic::error(
                        "the layer declares more than one output",
                        self.spans.tensors[second.index()],
                        "second output",
                    )
                    .with_secondary(self.spans.tensors[first.index()], "first output")
                    .with_hint("one output is y; another can only be the `final_state`"),
                );
                None
            }
        }
    }

    /// Checks the axes of x, of the output y and of the states; returns the states.
    pub(super) fn check_io(
        &mut self,
        states: [Option<&ast::Ident>; 2],
        output: Handle<Tensor>,
        fwd: &Scan,
        axes: &ScanAxes,
        a: AStructure,
    ) -> Option<States> {
        let mut x_axes = self.axes_of(fwd.x);
        x_axes.sort();
        let x_span = self.spans.exprs[fwd.x.index()];
        for slot in [0, 1, 2] {
            if !x_axes.iter().any(|a| self.slot(*a) == slot) {
                let role = AxisRole::ALL.into_iter().find(|r| r.slot() == slot).map_or("", AxisRole::keyword);
                self.error(
                    Diagnostic::error(format!("x has no {role} axis"), x_span, "x here")
                        .with_note("x varies along batch, time and channel (or head, with headdim)"),
                );
                return None;
            }
        }
        let mut state_axes: Vec<Axis> =
            vec![Axis::Dim { dim: axes.batch, divisor: 1 }, Axis::Dim { dim: axes.head, divisor: 1 }, axes.state];
        state_axes.extend(axes.headdim.map(|d| Axis::Dim { dim: d, divisor: 1 }));
        state_axes.sort();
        let initial = self.state_tensor(states[0], Io::Input, a, &state_axes);
        let final_ = self.state_tensor(states[1], Io::Output, a, &state_axes);
        let output_ok = self.expect_axes(output, &x_axes, "the output must have the axes of x,");
        output_ok?;
        Some((initial?, final_?))
    }

    /// The backward x varies along the axes of the forward x; skip and gate of either scan
    /// only along axes of x (a headdim that x lacks would be read at 0 only).
    pub(super) fn check_scan_axes_agree(&mut self, fwd: &Scan, back: Option<&Scan>) -> Option<()> {
        let mut x_axes = self.axes_of(fwd.x);
        x_axes.sort();
        let x_text = self.shape_text(&x_axes);
        let mut ok = true;
        if let Some(b) = back {
            let mut bx = self.axes_of(b.x);
            bx.sort();
            if bx != x_axes {
                let text = self.shape_text(&bx);
                self.error(
                    Diagnostic::error(
                        format!("the backward x varies along {text}, the forward x along {x_text}"),
                        self.spans.exprs[b.x.index()],
                        "backward x",
                    )
                    .with_secondary(self.spans.exprs[fwd.x.index()], "forward x")
                    .with_note("both scans write the same output, so their x must have the same axes"),
                );
                ok = false;
            }
        }
        for s in std::iter::once(fwd).chain(back) {
            for (name, e) in [("skip", s.skip), ("gate", s.gate)] {
                let Some(e) = e else { continue };
                let extra: Vec<Axis> = self.axes_of(e).into_iter().filter(|a| !x_axes.contains(a)).collect();
                if !extra.is_empty() {
                    let text = self.shape_text(&extra);
                    self.error(
                        Diagnostic::error(
                            format!("`{name}` varies along {text}, which x does not"),
                            self.spans.exprs[e.index()],
                            "not an axis of x",
                        )
                        .with_note(format!("x varies along {x_text}; `{name}` applies to each element of x")),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(())
    }

    /// The tensor named by `initial_state` or `final_state`, if one is named.
    fn state_tensor(
        &mut self,
        id: Option<&ast::Ident>,
        io: Io,
        a: AStructure,
        want: &[Axis],
    ) -> Option<Option<Handle<Tensor>>> {
        let Some(id) = id else { return Some(None) };
        let t = self.resolve_any_tensor(id)?;
        if self.tensors[t].io != io {
            let want = if io == Io::Input { "an input" } else { "an output" };
            self.error(
                Diagnostic::error(format!("`{}` must be {want}", id.name), id.span, format!("not {want}"))
                    .with_secondary(self.spans.tensors[t.index()], "declared here"),
            );
            return None;
        }
        if a == AStructure::Complex {
            self.error(Diagnostic::error(
                "states in and out of a complex state are not supported yet",
                id.span,
                "complex state",
            ));
            return None;
        }
        self.expect_axes(t, want, "a state must have the axes")?;
        Some(Some(t))
    }

    /// Checks that a tensor's axes are exactly `want`, in any order; `what` says whose
    /// axes they are, e.g. "a state must have the axes".
    fn expect_axes(&mut self, t: Handle<Tensor>, want: &[Axis], what: &str) -> Option<()> {
        let mut got = self.tensors[t].shape.clone();
        got.sort();
        if got != want {
            let (w, g) = (self.shape_text(want), self.shape_text(&self.tensors[t].shape));
            let sp: Span = self.spans.tensors[t.index()];
            self.error(
                Diagnostic::error(
                    format!("`{}` has axes {g}, but {what} {w}", self.tensors[t].name),
                    sp,
                    "shape mismatch",
                )
                .with_note("axes may come in any order (the layout), but must be these"),
            );
            return None;
        }
        Some(())
    }

    /// Warns about inputs that no role reads.
    pub(super) fn warn_unused(&mut self, initial: Option<Handle<Tensor>>) {
        let unused: Vec<Handle<Tensor>> = self
            .tensors
            .iter()
            .filter(|(h, t)| t.io == ast::Io::Input && !self.used[h.index()] && Some(*h) != initial)
            .map(|(h, _)| h)
            .collect();
        for h in unused {
            self.diags.push(
                Diagnostic::warning(
                    format!("input `{}` is never used", self.tensors[h].name),
                    self.spans.tensors[h.index()],
                    "unused",
                )
                .with_note("it must still be supplied when the layer runs"),
            );
        }
    }
}
