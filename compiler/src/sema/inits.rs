//! Distributions of generated inputs (`~ normal(mean, std)`, `~ uniform(lo, hi)`): checked
//! so that `ssmc run` can always draw them. rand's `Uniform::new` panics unless lo < hi
//! and hi - lo is finite; every draw must be a finite value of the tensor's dtype.

use super::LayerCx;
use crate::ir::{DType, Init};
use ssmc_syntax::ast::{self, Io};
use ssmc_syntax::{did_you_mean, Diagnostic};

/// A standard-normal draw of rand_distr's ziggurat never exceeds 13.7 in magnitude (its
/// tail draw is bounded by the smallest open-interval uniform, 2^-53); 16 leaves margin.
pub(crate) const NORMAL_REACH: f64 = 16.0;

/// The largest finite value of a dtype.
pub(crate) fn dtype_max(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::MAX as f64,
        DType::F64 => f64::MAX,
        DType::Bf16 => half::bf16::MAX.to_f64(),
        DType::F16 => half::f16::MAX.to_f64(),
    }
}

impl LayerCx<'_> {
    /// The distribution of an input (`normal(0, 1)` if none); reported if it is unknown,
    /// malformed, or draws values that are not finite values of `dtype`.
    pub(super) fn check_init(&mut self, t: &ast::TensorDecl, dtype: Option<DType>) -> Init {
        let default = Init::Normal { mean: 0.0, std: 1.0 };
        let Some(init) = &t.init else { return default };
        if t.io == Io::Output {
            self.error(Diagnostic::error(
                format!("output `{}` has a distribution", t.name.name),
                init.span,
                "only inputs are generated",
            ));
            return default;
        }
        let (name, args) = (init.dist.name.as_str(), init.args.as_slice());
        let checked = match (name, args) {
            ("normal", [mean, std]) if *std > 0.0 => Init::Normal { mean: *mean, std: *std },
            ("uniform", [lo, hi]) if lo < hi => Init::Uniform { lo: *lo, hi: *hi },
            ("normal" | "uniform", _) => {
                let want =
                    if name == "normal" { "normal(mean, std) with std > 0" } else { "uniform(lo, hi) with lo < hi" };
                self.error(Diagnostic::error(
                    format!("bad arguments to `{name}`"),
                    init.span,
                    format!("expected {want}"),
                ));
                return default;
            }
            _ => {
                let hint = did_you_mean(name, ["normal", "uniform"]);
                self.error(
                    Diagnostic::error(format!("unknown distribution `{name}`"), init.dist.span, "not a distribution")
                        .with_note("distributions: normal(mean, std), uniform(lo, hi)")
                        .with_hint_opt(hint),
                );
                return default;
            }
        };
        if let Some(d) = unrepresentable(checked, dtype, &t.name.name, init.span) {
            self.error(d);
            return default;
        }
        checked
    }
}

/// Why `ssmc run` could not draw `init` for a tensor of `dtype`, if it could not.
fn unrepresentable(init: Init, dtype: Option<DType>, tensor: &str, span: ssmc_syntax::Span) -> Option<Diagnostic> {
    if let Init::Uniform { lo, hi } = init {
        if !(hi - lo).is_finite() {
            return Some(
                Diagnostic::error(
                    format!("the range of `{tensor}`'s distribution overflows"),
                    span,
                    "hi - lo is not finite",
                )
                .with_note(format!(
                    "uniform({}, {}) spans more than the largest f64, {}",
                    num(lo),
                    num(hi),
                    num(f64::MAX)
                ))
                .with_hint("narrow the range"),
            );
        }
    }
    let dtype = dtype?;
    let max = dtype_max(dtype);
    let (reach, how) = match init {
        Init::Uniform { lo, hi } => (lo.abs().max(hi.abs()), "its draws reach".to_string()),
        Init::Normal { mean, std } => (mean.abs() + NORMAL_REACH * std, format!("|mean| + {NORMAL_REACH} std is")),
    };
    (reach > max).then(|| {
        Diagnostic::error(
            format!("`{tensor}` is drawn from values that do not fit {}", dtype.name()),
            span,
            format!("draws beyond the largest {}", dtype.name()),
        )
        .with_note(format!("{how} {}; the largest {} is {}", num(reach), dtype.name(), num(max)))
        .with_hint(format!("narrow the distribution, or declare `{tensor}` with a wider dtype such as f64"))
    })
}

/// A number as written in a note: plainly when short, else in exponent form (`3.4e38`).
fn num(v: f64) -> String {
    if v == 0.0 || (1e-4..1e16).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}
