//! Layer-wide options and their legality: the discretization, the direction (and whether
//! a `reverse` block and states fit it), and whether `dt` is needed.

use super::LayerCx;
use crate::ir::{Direction, Discretization, Scan};
use ssmc_syntax::ast;
use ssmc_syntax::{did_you_mean, Diagnostic, Span};

/// Layer-wide statements, as written.
#[derive(Default)]
pub(super) struct Options<'a> {
    pub(super) discretize: Option<&'a ast::Ident>,
    pub(super) direction: Option<&'a ast::Ident>,
    pub(super) reverse: Option<(&'a [ast::Stmt], Span)>,
    pub(super) initial: Option<&'a ast::Ident>,
    pub(super) final_: Option<&'a ast::Ident>,
}

impl LayerCx<'_> {
    /// The `discretize` statement's method; reported if missing or unknown.
    pub(super) fn check_discretization(&mut self, id: Option<&ast::Ident>, layer: Span) -> Option<Discretization> {
        let Some(id) = id else {
            self.error(Diagnostic::error("the layer has no `discretize` statement", layer, "in this layer").with_hint(
                "e.g. `discretize zoh_euler` (Mamba), `zoh` (S4D), `bilinear` (S4), `discrete` (given Abar, Bbar)",
            ));
            return None;
        };
        let found = Discretization::ALL.into_iter().find(|d| d.name() == id.name);
        if found.is_none() {
            let hint = did_you_mean(&id.name, Discretization::ALL.map(Discretization::name));
            self.error(
                Diagnostic::error(format!("unknown discretization `{}`", id.name), id.span, "not a discretization")
                    .with_note("discretizations: zoh, zoh_euler, bilinear, discrete")
                    .with_hint_opt(hint),
            );
        }
        found
    }

    /// The direction (causal if not given), and whether a `reverse` block and states fit it.
    pub(super) fn check_direction(&mut self, opts: &Options, _layer: Span) -> Option<Direction> {
        let dir = match opts.direction {
            None => Direction::Causal,
            Some(id) => match Direction::ALL.into_iter().find(|d| d.name() == id.name) {
                Some(d) => d,
                None => {
                    let hint = did_you_mean(&id.name, Direction::ALL.map(Direction::name));
                    self.error(
                        Diagnostic::error(format!("unknown direction `{}`", id.name), id.span, "not a direction")
                            .with_note("directions: causal, reverse, bidirectional")
                            .with_hint_opt(hint),
                    );
                    return None;
                }
            },
        };
        if let (Some((_, sp)), false) = (opts.reverse, dir == Direction::Bidirectional) {
            let keyword = Span::new(sp.start, sp.start + "reverse".len());
            let mut d = Diagnostic::error(
                "a `reverse` block needs `direction bidirectional`",
                keyword,
                "parameters of a backward scan",
            )
            .with_hint("write `direction bidirectional`, or remove the block");
            if let Some(id) = opts.direction {
                d = d.with_secondary(id.span, format!("the layer is `{}`", dir.name()));
            }
            self.error(d);
            return None;
        }
        if dir == Direction::Bidirectional {
            for id in [opts.initial, opts.final_].into_iter().flatten() {
                self.error(
                    Diagnostic::error(
                        "states in and out are not defined for a bidirectional layer",
                        id.span,
                        "a bidirectional layer has two states",
                    )
                    .with_secondary(opts.direction.map_or(id.span, |d| d.span), "bidirectional here")
                    .with_hint("use a causal or reverse layer to carry a state"),
                );
            }
        }
        Some(dir)
    }

    /// Whether the discretization needs `dt` (all but `discrete`) and has one.
    pub(super) fn check_dt(&mut self, s: &Scan, disc: Discretization, layer: Span, dt_span: Option<Span>) {
        match (disc, s.dt) {
            (Discretization::Discrete, Some(_)) => self.error(
                Diagnostic::error(
                    "`discrete` takes Abar and Bbar directly, but `dt` is given",
                    dt_span.unwrap_or(layer),
                    "unused step size",
                )
                .with_hint("remove `dt`, or choose zoh, zoh_euler or bilinear"),
            ),
            (Discretization::Discrete, None) | (_, Some(_)) => {}
            (d, None) => self.error(
                Diagnostic::error(format!("`{}` needs a step size `dt`", d.name()), layer, "in this layer")
                    .with_hint("e.g. `dt = softplus(delta + delta_bias)`"),
            ),
        }
    }
}
