//! Semantic analysis: AST to layer IR. Resolves names, checks dims, shapes, dtypes and the
//! legality of the layer's options, and reports every problem it finds, not only the first.

mod bounds;
mod decls;
mod expr;
mod finite;
mod inits;
mod io;
mod options;
mod roles;
mod values;

use crate::arena::{Arena, Handle};
use crate::ir::{Dim, Expr, Layer, Module, SpanTable, Tensor};
use ssmc_syntax::ast;
use ssmc_syntax::{Diagnostic, Diagnostics, Span};
use std::collections::{BTreeMap, BTreeSet};

/// Checks every layer of a file. On success returns the module and any warnings; on
/// failure every diagnostic found (errors and warnings).
pub fn check(file: &ast::File) -> Result<(Module, Diagnostics), Diagnostics> {
    let mut diags = Vec::new();
    if file.layers.is_empty() {
        diags.push(
            Diagnostic::error("the file declares no layer", Span::new(0, 0), "no layer in this file")
                .with_hint("start with `layer NAME { ... }`; see stdlib/mamba1.ssm"),
        );
    }
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    let mut module = Module::default();
    for layer in &file.layers {
        if let Some(prev) = seen.insert(&layer.name.name, layer.name.span) {
            diags.push(
                Diagnostic::error(
                    format!("layer `{}` is declared twice", layer.name.name),
                    layer.name.span,
                    "again here",
                )
                .with_secondary(prev, "first declared here"),
            );
        }
        let mut cx = LayerCx::new(&mut diags);
        if let Some(l) = cx.check_layer(layer) {
            module.layers.push(l);
        }
    }
    let diags = Diagnostics(diags);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok((module, diags))
    }
}

/// What one layer's check has built so far.
struct LayerCx<'d> {
    diags: &'d mut Vec<Diagnostic>,
    dims: Arena<Dim>,
    dim_names: BTreeMap<String, Handle<Dim>>,
    tensors: Arena<Tensor>,
    tensor_names: BTreeMap<String, Handle<Tensor>>,
    exprs: Arena<Expr>,
    spans: SpanTable,
    /// Inputs read by some role, for the unused-input warning.
    used: Vec<bool>,
    /// Dims whose declaration was already reported as wrong; their uses are not reported again.
    broken_dims: BTreeSet<String>,
    /// Tensors whose declaration was already reported as wrong; likewise.
    broken_tensors: BTreeSet<String>,
    /// Name comparisons left for "did you mean" hints of unknown tensors.
    hint_budget: usize,
}

/// Name comparisons one layer may spend on "did you mean" hints of unknown tensors (about
/// a second): unlimited in practice, but linear, not quadratic, for a layer of a million.
const HINT_BUDGET: usize = 1 << 22;

impl<'d> LayerCx<'d> {
    fn new(diags: &'d mut Vec<Diagnostic>) -> Self {
        LayerCx {
            diags,
            dims: Arena::default(),
            dim_names: BTreeMap::new(),
            tensors: Arena::default(),
            tensor_names: BTreeMap::new(),
            exprs: Arena::default(),
            spans: SpanTable::default(),
            used: Vec::new(),
            broken_dims: BTreeSet::new(),
            broken_tensors: BTreeSet::new(),
            hint_budget: HINT_BUDGET,
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn check_layer(&mut self, layer: &ast::Layer) -> Option<Layer> {
        // This layer's diagnostics start here: counting only them keeps many layers linear.
        let first = self.diags.len();
        self.declare_dims(layer);
        self.declare_tensors(layer);
        let parts = self.check_roles(layer)?;
        self.check_bounds(layer, &parts);
        if self.diags[first..].iter().any(|d| d.severity == ssmc_syntax::Severity::Error) {
            return None;
        }
        // Warnings only for a layer without errors: after an error they are mostly echoes.
        self.warn_unused(parts.initial_state);
        self.warn_never_finite(&parts);
        Some(Layer {
            name: layer.name.name.clone(),
            dims: std::mem::take(&mut self.dims),
            tensors: std::mem::take(&mut self.tensors),
            exprs: std::mem::take(&mut self.exprs),
            axes: parts.axes,
            a_structure: parts.a_structure,
            discretization: parts.discretization,
            direction: parts.direction,
            forward: parts.forward,
            backward: parts.backward,
            initial_state: parts.initial_state,
            final_state: parts.final_state,
            output: parts.output,
            spans: std::mem::take(&mut self.spans),
        })
    }
}
