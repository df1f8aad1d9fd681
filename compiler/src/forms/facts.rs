//! What a layer's forms and schedules depend on, computed once from the layer: per scan,
//! time-invariance, diagonal and scalar decays, complex values; for the layer, what native
//! code needs of its tensors and outputs. The e-graph's analysis carries the per-scan facts
//! ([`super::egraph`]), the cost model reads them ([`super::cost::Shape`]), lowering reads
//! them ([`crate::lower`]) and the schedules' reach is stated over them
//! ([`crate::schedule::available`]): one definition of each.

use crate::ir::{AStructure, AxisRole, Discretization, Layer, Scan};

/// Facts of one scan of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanFacts {
    /// dt, A, B and C do not depend on time (the layer is linear time-invariant).
    pub lti: bool,
    /// dt or A depend on time: the decay Abar changes at every step.
    pub selective_decay: bool,
    /// A is scalar or diagonal, so steps compose elementwise.
    pub diagonal: bool,
    /// A does not vary along the state: one decay per step and head, shared by the state
    /// (Mamba-2's scalar A, or a diagonal one that names no state axis).
    pub scalar_decay: bool,
    /// Complex values: a complex A, or an imaginary part of A, B or C.
    pub complex: bool,
    /// The scan has a dt (discretization multiplies A by it).
    pub has_dt: bool,
}

impl ScanFacts {
    /// The facts of `scan` of `layer`.
    pub fn of(layer: &Layer, scan: &Scan) -> ScanFacts {
        let varies = |parts: &[Option<crate::arena::Handle<crate::ir::Expr>>], role: AxisRole| {
            parts.iter().flatten().any(|e| layer.axes_of(*e).iter().any(|a| layer.axis_slot(*a) == role.slot()))
        };
        let a = [Some(scan.a.re), scan.a.im];
        ScanFacts {
            lti: layer.selective_roles(scan).is_empty(),
            selective_decay: varies(&[scan.dt, Some(scan.a.re), scan.a.im], AxisRole::Time),
            diagonal: match layer.a_structure {
                AStructure::Scalar | AStructure::Diagonal | AStructure::Complex => true,
            },
            scalar_decay: !varies(&a, AxisRole::State),
            complex: layer.a_structure == AStructure::Complex
                || [scan.a.im, scan.b.im, scan.c.im].iter().any(Option::is_some),
            has_dt: scan.dt.is_some(),
        }
    }
}

/// Facts of a whole layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFacts {
    /// Facts of each scan, in [`Layer::directed_scans`] order.
    pub scans: Vec<ScanFacts>,
    /// The layer outputs its final state.
    pub final_state: bool,
    /// The decay is exp(dt A): discretization `zoh` or `zoh_euler`.
    pub exp_decay: bool,
    /// Whether native code can take the layer's tensors and state at all, or why not
    /// ([`crate::lower::native_support`]).
    pub native: Result<(), String>,
}

impl LayerFacts {
    /// The facts of `layer`.
    pub fn of(layer: &Layer) -> LayerFacts {
        LayerFacts {
            scans: layer.directed_scans().into_iter().map(|(s, _)| ScanFacts::of(layer, s)).collect(),
            final_state: layer.final_state.is_some(),
            exp_decay: matches!(layer.discretization, Discretization::Zoh | Discretization::ZohEuler),
            native: crate::lower::native_support(layer).map_err(|e| e.to_string()),
        }
    }

    /// Every scan has the fact `test`.
    pub fn all(&self, test: impl Fn(&ScanFacts) -> bool) -> bool {
        self.scans.iter().all(test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str) -> LayerFacts {
        let path = format!("{}/../stdlib/{name}.ssm", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(path).expect("stdlib file");
        let layer = crate::compile(&src).expect("compiles").0.layers.remove(0);
        LayerFacts::of(&layer)
    }

    #[test]
    fn stdlib_layers_have_their_facts() {
        let mamba1 = facts("mamba1");
        assert_eq!(mamba1.scans.len(), 1);
        let s = mamba1.scans[0];
        assert!(!s.lti && s.selective_decay && s.diagonal && !s.scalar_decay && !s.complex && s.has_dt);
        let s = facts("mamba2").scans[0];
        assert!(!s.lti && s.scalar_decay && !s.complex);
        let s4d = facts("s4d");
        assert!(s4d.scans[0].lti && !s4d.scans[0].selective_decay && s4d.scans[0].complex);
        let vim = facts("vim");
        assert_eq!(vim.scans.len(), 2, "bidirectional: two scans");
        assert!(vim.native.is_ok() && !vim.final_state);
    }
}
