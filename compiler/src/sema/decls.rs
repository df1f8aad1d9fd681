//! Declarations: dims and tensors, with their sizes, shapes, dtypes and distributions.

use super::LayerCx;
use crate::ir::{Axis, AxisRole, DType, Dim, DimSize, Tensor};
use ssmc_syntax::ast::{self, ShapeAtomKind, StmtKind};
use ssmc_syntax::{did_you_mean, Diagnostic};
use std::collections::BTreeMap;

/// The largest size of a `state` dim: native code keeps the state (and on the CPU the
/// time-invariant parameters of every state index) in per-thread scratch memory, which at
/// this size is a few MiB on the CPU and at most 256 KiB of a GPU thread's local memory.
pub const MAX_STATE: u64 = 16384;

impl LayerCx<'_> {
    pub(super) fn declare_dims(&mut self, layer: &ast::Layer) {
        let mut by_role: BTreeMap<usize, (AxisRole, ssmc_syntax::Span)> = BTreeMap::new();
        for stmt in &layer.stmts {
            let StmtKind::Dims(decls) = &stmt.kind else {
                continue;
            };
            for d in decls {
                let Some(role) = AxisRole::from_keyword(&d.role.name) else {
                    let hint = did_you_mean(&d.role.name, AxisRole::ALL.map(AxisRole::keyword));
                    let roles: Vec<&str> = AxisRole::ALL.map(AxisRole::keyword).to_vec();
                    self.error(
                        Diagnostic::error(
                            format!("unknown axis role `{}`", d.role.name),
                            d.role.span,
                            "not an axis role",
                        )
                        .with_note(format!("axis roles: {}", roles.join(", ")))
                        .with_hint_opt(hint),
                    );
                    self.broken_dims.insert(d.name.name.clone());
                    continue;
                };
                if let Some(&prev) = self.dim_names.get(&d.name.name) {
                    self.error(
                        Diagnostic::error(
                            format!("dim `{}` is declared twice", d.name.name),
                            d.name.span,
                            "again here",
                        )
                        .with_secondary(self.spans.dims[prev.index()], "first declared here"),
                    );
                    continue;
                }
                if let Some((prev_role, prev_span)) = by_role.get(&role.slot()) {
                    let e = if *prev_role == role {
                        Diagnostic::error(
                            format!("two dims have the role `{}`", role.keyword()),
                            d.role.span,
                            "second one here",
                        )
                        .with_note("a layer has at most one dim of each role")
                    } else {
                        Diagnostic::error("`channel` and `head` both declared", d.role.span, "second one here")
                            .with_hint(
                                "a channel is a head with one element: declare `channel D`, or `head H, headdim P`",
                            )
                    };
                    self.error(e.with_secondary(*prev_span, "first one here"));
                    // Its uses are not reported again as unknown dims.
                    self.broken_dims.insert(d.name.name.clone());
                    continue;
                }
                by_role.insert(role.slot(), (role, d.role.span));
                let size = match d.size {
                    None => DimSize::Runtime,
                    Some((v, span)) if v <= 0 => {
                        self.error(
                            Diagnostic::error(format!("dim `{}` has size {v}", d.name.name), span, "must be positive")
                                .with_hint("sizes are whole numbers of at least 1"),
                        );
                        DimSize::Const(1)
                    }
                    Some((v, span)) if role == AxisRole::State && v as u64 > MAX_STATE => {
                        self.error(
                            Diagnostic::error(
                                format!("state `{}` has size {v}, over ssmc's limit of {MAX_STATE}", d.name.name),
                                span,
                                format!("at most {MAX_STATE}"),
                            )
                            .with_note(format!(
                                "native code keeps a state in per-thread memory; {MAX_STATE} is 64 times \
                                 mamba_ssm's largest state (256)"
                            )),
                        );
                        DimSize::Const(MAX_STATE)
                    }
                    Some((v, _)) => DimSize::Const(v as u64),
                };
                let h = self.dims.append(Dim { name: d.name.name.clone(), role, size });
                self.spans.dims.push(d.name.span);
                self.dim_names.insert(d.name.name.clone(), h);
            }
        }
    }

    pub(super) fn declare_tensors(&mut self, layer: &ast::Layer) {
        for stmt in &layer.stmts {
            let StmtKind::Tensor(t) = &stmt.kind else {
                continue;
            };
            if let Some(&prev) = self.tensor_names.get(&t.name.name) {
                self.error(
                    Diagnostic::error(format!("tensor `{}` is declared twice", t.name.name), t.name.span, "again here")
                        .with_secondary(self.spans.tensors[prev.index()], "first declared here"),
                );
                continue;
            }
            let dtype = DType::ALL.into_iter().find(|d| d.name() == t.dtype.name);
            if dtype.is_none() {
                let hint = did_you_mean(&t.dtype.name, DType::ALL.map(DType::name));
                self.error(
                    Diagnostic::error(format!("unknown dtype `{}`", t.dtype.name), t.dtype.span, "not a dtype")
                        .with_note("dtypes: f32, f64, bf16, f16")
                        .with_hint_opt(hint),
                );
            }
            let shape = self.check_shape(t);
            let init = self.check_init(t, dtype);
            let (Some(dtype), Some(shape)) = (dtype, shape) else {
                self.broken_tensors.insert(t.name.name.clone());
                continue;
            };
            let h = self.tensors.append(Tensor { name: t.name.name.clone(), io: t.io, dtype, shape, init });
            self.spans.tensors.push(t.name.span);
            self.used.push(false);
            self.tensor_names.insert(t.name.name.clone(), h);
        }
    }

    fn check_shape(&mut self, t: &ast::TensorDecl) -> Option<Vec<Axis>> {
        let mut shape = Vec::new();
        let mut ok = true;
        for (i, atom) in t.shape.iter().enumerate() {
            let axis = match &atom.kind {
                ShapeAtomKind::Literal(2) if i + 1 == t.shape.len() => Some(Axis::Complex),
                ShapeAtomKind::Literal(2) => {
                    self.error(
                        Diagnostic::error(
                            format!("the re/im axis `2` of `{}` is not its last axis", t.name.name),
                            atom.span,
                            "not last",
                        )
                        .with_note("a literal `2` is the real/imaginary axis of a complex tensor, stored last")
                        .with_hint("move it to the end of the shape"),
                    );
                    None
                }
                ShapeAtomKind::Literal(n) => {
                    self.error(
                        Diagnostic::error(format!("literal axis of size {n} in `{}`", t.name.name), atom.span, "not a dim")
                            .with_note("axes are named dims; the one literal allowed is a trailing `2`, the real/imaginary axis of a complex tensor")
                            .with_hint("declare a dim, e.g. `dims state N = 16`, and write its name"),
                    );
                    None
                }
                ShapeAtomKind::Dim { name, divisor } => self.check_shape_dim(name, *divisor, atom.span),
            };
            match axis {
                Some(a) if shape.contains(&a) => {
                    self.error(
                        Diagnostic::error(
                            format!("axis `{}` appears twice in the shape of `{}`", atom_text(atom), t.name.name),
                            atom.span,
                            "repeated axis",
                        )
                        .with_note("each axis of a tensor must be a different dim"),
                    );
                    ok = false;
                }
                Some(a) => shape.push(a),
                None => ok = false,
            }
        }
        ok.then_some(shape)
    }

    fn check_shape_dim(
        &mut self,
        name: &ast::Ident,
        divisor: Option<(i64, ssmc_syntax::Span)>,
        atom: ssmc_syntax::Span,
    ) -> Option<Axis> {
        // Already reported: a dim with a bad role, or a layer with no `dims` at all.
        if self.broken_dims.contains(&name.name) || (self.dims.is_empty() && self.broken_dims.is_empty()) {
            return None;
        }
        let Some(&dim) = self.dim_names.get(&name.name) else {
            let hint = did_you_mean(&name.name, self.dim_names.keys().map(String::as_str));
            self.error(
                Diagnostic::error(format!("unknown dim `{}`", name.name), name.span, "not declared in `dims`")
                    .with_hint(hint.unwrap_or_else(|| format!("declare it, e.g. `dims time {}`", name.name))),
            );
            return None;
        };
        let div = match divisor {
            None => 1,
            Some((d, span)) if d <= 0 => {
                self.error(
                    Diagnostic::error(format!("`{}` is divided by {d}", name.name), span, "must be positive")
                        .with_hint(format!("a divisor is a whole number of at least 1, as in `{}/2`", name.name)),
                );
                return None;
            }
            Some((d, _)) => {
                if let DimSize::Const(n) = self.dims[dim].size {
                    if n % d as u64 != 0 {
                        self.error(Diagnostic::error(
                            format!("`{}/{}` is not a whole size: {} = {n}", name.name, d, name.name),
                            atom,
                            format!("{d} does not divide {n}"),
                        ));
                        return None;
                    }
                }
                d as u64
            }
        };
        Some(Axis::Dim { dim, divisor: div })
    }
}

fn atom_text(atom: &ast::ShapeAtom) -> String {
    match &atom.kind {
        ShapeAtomKind::Literal(n) => n.to_string(),
        ShapeAtomKind::Dim { name, divisor: None } => name.name.clone(),
        ShapeAtomKind::Dim { name, divisor: Some((d, _)) } => format!("{}/{d}", name.name),
    }
}
