//! Roles of the scan (x, dt, A, B, C, skip, gate): gathered from the statements, lowered
//! to expressions, checked for their axes; then the scan's axes. The structure of A and
//! complex values are in `values`, the layer-wide options in `options`, states and output
//! in `io`.

use super::options::Options;
use super::LayerCx;
use crate::arena::Handle;
use crate::ir::*;
use ssmc_syntax::ast::{self, StmtKind};
use ssmc_syntax::{did_you_mean, Diagnostic, Span};

/// The parts of a layer that the roles decide.
pub(super) struct Parts {
    pub axes: ScanAxes,
    pub a_structure: AStructure,
    pub discretization: Discretization,
    pub direction: Direction,
    pub forward: Scan,
    pub backward: Option<Scan>,
    pub initial_state: Option<Handle<Tensor>>,
    pub final_state: Option<Handle<Tensor>>,
    pub output: Handle<Tensor>,
}

const ROLES: [&str; 5] = ["x", "dt", "A", "B", "C"];

/// The role statements of a layer or of its `reverse` block, as written.
#[derive(Default)]
struct RoleStmts<'a> {
    roles: [Option<(&'a ast::Expr, Span)>; 5],
    /// Role names that are not roles (already reported), e.g. `c` for `C`.
    unknown: Vec<&'a str>,
    skip: Option<(&'a ast::Expr, Span)>,
    gate: Option<(&'a ast::Expr, Span)>,
}

fn set_once<T: Copy>(
    slot: &mut Option<T>,
    v: T,
    span: Span,
    prev_span: impl Fn(T) -> Span,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if let Some(prev) = *slot {
        diags.push(
            Diagnostic::error(format!("{what} is given twice"), span, "again here")
                .with_secondary(prev_span(prev), "first given here"),
        );
    } else {
        *slot = Some(v);
    }
}

impl LayerCx<'_> {
    fn gather<'a>(&mut self, stmts: &'a [ast::Stmt], opts: Option<&mut Options<'a>>) -> RoleStmts<'a> {
        let mut r = RoleStmts::default();
        let mut opts = opts;
        for stmt in stmts {
            let sp = stmt.span;
            match &stmt.kind {
                StmtKind::Role { role, value } => {
                    let Some(i) = ROLES.iter().position(|n| *n == role.name) else {
                        self.unknown_role(role);
                        r.unknown.push(&role.name);
                        continue;
                    };
                    set_once(
                        &mut r.roles[i],
                        (value, role.span),
                        role.span,
                        |p| p.1,
                        &format!("role `{}`", role.name),
                        self.diags,
                    );
                }
                StmtKind::Skip(e) => set_once(&mut r.skip, (e, sp), sp, |p| p.1, "`skip`", self.diags),
                StmtKind::Gate(e) => set_once(&mut r.gate, (e, sp), sp, |p| p.1, "`gate`", self.diags),
                _ => {
                    let Some(o) = opts.as_deref_mut() else {
                        continue;
                    };
                    match &stmt.kind {
                        StmtKind::Discretize(id) => {
                            set_once(&mut o.discretize, id, id.span, |p| p.span, "`discretize`", self.diags)
                        }
                        StmtKind::Direction(id) => {
                            set_once(&mut o.direction, id, id.span, |p| p.span, "`direction`", self.diags)
                        }
                        StmtKind::InitialState(id) => {
                            set_once(&mut o.initial, id, id.span, |p| p.span, "`initial_state`", self.diags)
                        }
                        StmtKind::FinalState(id) => {
                            set_once(&mut o.final_, id, id.span, |p| p.span, "`final_state`", self.diags)
                        }
                        StmtKind::Reverse(body) => set_once(
                            &mut o.reverse,
                            (body.as_slice(), sp),
                            sp,
                            |p| p.1,
                            "a `reverse` block",
                            self.diags,
                        ),
                        _ => {}
                    }
                }
            }
        }
        r
    }

    fn unknown_role(&mut self, role: &ast::Ident) {
        let hint = match role.name.as_str() {
            "D" => Some("the skip connection is written `skip D`".to_string()),
            "z" => Some("the gate is written `gate silu(z)`".to_string()),
            "delta" | "Delta" | "dt_" => Some("the step size role is `dt`".to_string()),
            other => did_you_mean(other, ROLES),
        };
        self.error(
            Diagnostic::error(format!("unknown role `{}`", role.name), role.span, "not a role of the scan")
                .with_note("roles: x, dt, A, B, C; and the statements skip, gate")
                .with_hint_opt(hint),
        );
    }

    fn dim_with_role(&self, slot: usize) -> Option<Handle<Dim>> {
        self.dims.iter().find(|(_, d)| d.role.slot() == slot).map(|(h, _)| h)
    }

    pub(super) fn check_roles(&mut self, layer: &ast::Layer) -> Option<Parts> {
        let mut opts = Options::default();
        let fwd = self.gather(&layer.stmts, Some(&mut opts));
        let name_span = layer.name.span;

        // A dim with an unknown role was reported already; it may be the one missing here.
        let mut missing_dims = !self.broken_dims.is_empty();
        for role in [AxisRole::Batch, AxisRole::Time, AxisRole::Channel] {
            if self.dim_with_role(role.slot()).is_none() && !self.dims.is_empty() && self.broken_dims.is_empty() {
                let what = if role == AxisRole::Channel {
                    "`channel` (or `head`)".to_string()
                } else {
                    format!("`{}`", role.keyword())
                };
                self.error(
                    Diagnostic::error(format!("the layer declares no {what} dim"), name_span, "in this layer")
                        .with_hint(format!(
                            "add it to `dims`, e.g. `dims {} {}`",
                            role.keyword(),
                            default_dim_name(role)
                        )),
                );
                missing_dims = true;
            }
        }
        if self.dims.is_empty() && self.broken_dims.is_empty() {
            self.error(
                Diagnostic::error("the layer declares no dims", name_span, "in this layer")
                    .with_hint("e.g. `dims batch B, channel D, time L, state N = 16`"),
            );
            missing_dims = true;
        }

        let discretization = self.check_discretization(opts.discretize, name_span);
        let direction = self.check_direction(&opts, name_span);
        let a_scan = self.lower_scan(&fwd, None, name_span, discretization);
        let back = match opts.reverse {
            Some((body, _)) => {
                let r = self.gather(body, None);
                self.lower_scan(&r, a_scan.as_ref(), name_span, discretization).map(Some)
            }
            None if direction == Some(Direction::Bidirectional) => a_scan.map(Some),
            None => Some(None),
        };
        let output = self.find_output(layer, opts.final_);
        let (forward, a_structure) = a_scan?;
        let backward = back?.map(|(s, _)| s);
        if missing_dims {
            return None;
        }
        let discretization = discretization?;
        let direction = direction?;
        self.check_dt(&forward, discretization, name_span, fwd.roles[1].map(|r| r.1));
        let axes = self.scan_axes(&forward, backward.as_ref(), a_structure)?;
        let output = output?;
        let (initial_state, final_state) =
            self.check_io([opts.initial, opts.final_], output, &forward, &axes, a_structure)?;
        self.check_scan_axes_agree(&forward, backward.as_ref())?;
        Some(Parts {
            axes,
            a_structure,
            discretization,
            direction,
            forward,
            backward,
            initial_state,
            final_state,
            output,
        })
    }

    /// Lowers the roles of one scan; `base` supplies the roles a `reverse` block leaves out.
    fn lower_scan(
        &mut self,
        r: &RoleStmts,
        base: Option<&(Scan, AStructure)>,
        layer: Span,
        disc: Option<Discretization>,
    ) -> Option<(Scan, AStructure)> {
        let [x, dt, a, b, c] = r.roles;
        let mut ok = true;
        if base.is_none() {
            let required = [
                (x, "x", "name the input sequence, e.g. `x = u`"),
                (a, "A", "e.g. `A = diagonal(-exp(A_log))`"),
                (b, "B", "e.g. `B = B`, or `B = 1` for a constant input matrix"),
                (c, "C", "e.g. `C = C`"),
            ];
            for (role, name, hint) in required {
                // `c = C` was reported as an unknown role; a missing `C` would say it twice.
                let misspelt = r.unknown.iter().any(|u| did_you_mean(u, [name]).is_some());
                if role.is_none() && misspelt {
                    ok = false;
                } else if role.is_none() {
                    self.error(
                        Diagnostic::error(format!("the layer gives no `{name}`"), layer, "in this layer")
                            .with_hint(hint),
                    );
                    ok = false;
                }
            }
        }
        let x = self.opt_role(x, base.map(|s| Some(s.0.x)), "x", &[0, 1, 2, 3]);
        let dt = self.opt_role(dt, base.map(|s| s.0.dt), "dt", &[0, 1, 2]);
        let a = match a {
            Some((e, sp)) => self.lower_a(e, sp, disc),
            None => base.map(|s| (s.0.a, s.1)),
        };
        if let (Some((_, sa)), Some((_, sb)), Some(base)) = (a, r.roles[2], base) {
            if sa != base.1 {
                self.error(Diagnostic::error(
                    format!("the backward A is {} but the forward A is {}", sa.name(), base.1.name()),
                    sb,
                    "structure differs",
                ));
                ok = false;
            }
        }
        let b = self.role_value(b, base.map(|s| s.0.b), "B");
        let c = self.role_value(c, base.map(|s| s.0.c), "C");
        let skip = self.opt_role(r.skip, base.map(|s| s.0.skip), "skip", &[2, 3]);
        let gate = self.gate(r.gate, base.map(|s| s.0.gate));
        if let Some((_, s @ (AStructure::Diagonal | AStructure::Scalar))) = a {
            for (v, written, name) in [(b, r.roles[3], "B"), (c, r.roles[4], "C")] {
                if v.is_some_and(|v| v.im.is_some()) {
                    let sp = written.map_or(layer, |w| w.0.span);
                    let mut d = Diagnostic::error(format!("complex {name} needs a complex A"), sp, "complex here")
                        .with_hint("make A `complex(re, im)`, or B and C real");
                    if let Some((e, _)) = r.roles[2] {
                        d = d.with_secondary(e.span, format!("A is {}, so real", s.name()));
                    }
                    self.error(d);
                    ok = false;
                }
            }
        }
        let (x, dt, (a, s), b, c, skip, gate) = (x??, dt?, a?, b?, c?, skip?, gate?);
        ok.then_some((Scan { x, dt, a, b, c, skip, gate }, s))
    }

    /// A real role: its expression if written, else the base scan's. `Some(None)` if absent.
    fn opt_role(
        &mut self,
        written: Option<(&ast::Expr, Span)>,
        base: Option<Option<Handle<Expr>>>,
        name: &str,
        allowed: &[usize],
    ) -> Option<Option<Handle<Expr>>> {
        match written {
            Some((e, sp)) => {
                let h = self.lower(e)?;
                self.check_axes(h, sp, name, allowed).then_some(Some(h))
            }
            None => Some(base.flatten()),
        }
    }

    fn role_value(&mut self, written: Option<(&ast::Expr, Span)>, base: Option<Value>, name: &str) -> Option<Value> {
        let Some((e, sp)) = written else { return base };
        let v = self.lower_value(e)?;
        let ok = [Some(v.re), v.im].into_iter().flatten().all(|h| self.check_axes(h, sp, name, &[0, 1, 2, 4, 5]));
        if ok {
            for h in [Some(v.re), v.im].into_iter().flatten() {
                let axes = self.axes_of(h);
                let slots: Vec<usize> = axes.iter().map(|a| self.slot(*a)).collect();
                if slots.contains(&2) && slots.contains(&4) {
                    let names: Vec<String> = axes
                        .iter()
                        .filter(|a| matches!(self.slot(**a), 2 | 4))
                        .map(|a| format!("`{}`", self.axis_text(*a)))
                        .collect();
                    self.error(
                        Diagnostic::error(
                            format!("`{name}` varies along both heads and groups"),
                            e.span,
                            format!("varies along {}", names.join(" and ")),
                        )
                        .with_note("heads share B and C within a group: use one of the two axes"),
                    );
                    return None;
                }
            }
        }
        ok.then_some(v)
    }

    fn gate(
        &mut self,
        written: Option<(&ast::Expr, Span)>,
        base: Option<Option<Handle<Expr>>>,
    ) -> Option<Option<Handle<Expr>>> {
        let Some((e, sp)) = written else {
            return Some(base.flatten());
        };
        match &e.kind {
            ast::ExprKind::Call(f, args) if f.name == "silu" && args.len() == 1 => {
                let h = self.lower(&args[0])?;
                self.check_axes(h, sp, "gate", &[0, 1, 2, 3]).then_some(Some(h))
            }
            _ => {
                self.error(
                    Diagnostic::error("the gate must be `silu(...)`", e.span, "not a silu gate")
                        .with_note("the gate multiplies the output: y *= silu(z)")
                        .with_hint("write `gate silu(z)`"),
                );
                None
            }
        }
    }

    fn scan_axes(&mut self, fwd: &Scan, back: Option<&Scan>, _a: AStructure) -> Option<ScanAxes> {
        let head = self.dim_with_role(2)?;
        let x_axes = self.axes_of(fwd.x);
        let headdim = x_axes.iter().find(|a| self.slot(**a) == 3).and_then(|a| match a {
            Axis::Dim { dim, .. } => Some(*dim),
            Axis::Complex => None,
        });
        let mut state: Option<(Axis, Span)> = None;
        for s in std::iter::once(fwd).chain(back) {
            for v in [s.a, s.b, s.c] {
                for h in [Some(v.re), v.im].into_iter().flatten() {
                    for a in self.axes_of(h) {
                        if self.slot(a) != 5 {
                            continue;
                        }
                        let sp = self.spans.exprs[h.index()];
                        match state {
                            None => state = Some((a, sp)),
                            Some((prev, psp)) if prev != a => {
                                let (pn, an) = (self.axis_text(prev), self.axis_text(a));
                                self.error(
                                    Diagnostic::error(
                                        format!("state axis mismatch: `{pn}` and `{an}`"),
                                        sp,
                                        format!("uses `{an}`"),
                                    )
                                    .with_secondary(psp, format!("uses `{pn}`"))
                                    .with_note("A, B and C must index the same state"),
                                );
                                return None;
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        let Some((state, _)) = state else {
            let sp = self.spans.exprs[fwd.a.re.index()];
            self.error(
                Diagnostic::error("no state axis: none of A, B, C varies along a `state` dim", sp, "A here")
                    .with_hint("declare `dims state N = 16` and give B or C the axis N"),
            );
            return None;
        };
        let group =
            std::iter::once(fwd).chain(back).flat_map(|s| [s.b, s.c]).flat_map(|v| self.axes_of(v.re)).find_map(|a| {
                match a {
                    Axis::Dim { dim, .. } if self.dims[dim].role.slot() == 4 => Some(dim),
                    _ => None,
                }
            });
        Some(ScanAxes { batch: self.dim_with_role(0)?, time: self.dim_with_role(1)?, head, headdim, group, state })
    }
}

fn default_dim_name(role: AxisRole) -> &'static str {
    match role {
        AxisRole::Batch => "B",
        AxisRole::Time => "L",
        AxisRole::Channel => "D",
        AxisRole::Head => "H",
        AxisRole::HeadDim => "P",
        AxisRole::Group => "G",
        AxisRole::State => "N",
    }
}
