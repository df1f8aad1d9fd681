//! The never-finite warning: constant folding and interval arithmetic over the declared
//! `~ uniform` ranges (a `normal` input may take any value) find roles whose value is
//! never a finite number, such as `u / 0`, `log(-1)` or `log(v)` with `v ~ uniform(-2, -1)`.
//! Only certain facts warn: a role that may be finite for some input is left alone.

use super::roles::Parts;
use super::LayerCx;
use crate::arena::Handle;
use crate::ir::{BinOp, Expr, Func, Init};
use crate::roles::{silu, softplus};
use crate::tensors::round_to;
use ssmc_syntax::Diagnostic;

/// Why a value is never finite, at the sub-expression where it starts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Why {
    /// `a / 0`.
    DivByZero,
    /// `log(v)` with v <= 0 everywhere in `[lo, hi]`.
    LogOfNonPositive(f64, f64),
    /// `sqrt(v)` with v < 0 everywhere in `[lo, hi]`.
    SqrtOfNegative(f64, f64),
    /// `exp(v)` with v above ln(f64::MAX) everywhere from `lo` on.
    ExpOverflows(f64),
    /// A sub-expression of constants that evaluates to this (an infinity or NaN).
    Folded(f64),
}

/// What is known of an expression's value for every input drawn from the declared ranges.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fact {
    /// Within `[lo, hi]` (bounds may be infinite); an over-approximation.
    Range(f64, f64),
    /// Never finite (an infinity or NaN; always NaN if `nan`); first so at `origin`, for
    /// the reason `why`.
    Never { origin: Handle<Expr>, why: Why, nan: bool },
}

const ANY: Fact = Fact::Range(f64::NEG_INFINITY, f64::INFINITY);

/// The smallest interval holding `values`; any value unbounded if one is NaN (0 * inf).
fn hull(values: &[f64]) -> Fact {
    if values.iter().any(|v| v.is_nan()) {
        return ANY;
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Fact::Range(lo, hi)
}

/// The fact of `op` on the facts of its operands; `this` is the node, for a new origin.
fn binary(op: BinOp, a: Fact, b: Fact, this: Handle<Expr>) -> Fact {
    match (op, a, b) {
        // NaN stays NaN through every operator.
        (_, Fact::Never { nan: true, .. }, _) => a,
        (_, _, Fact::Never { nan: true, .. }) => b,
        // An infinity stays non-finite through +, -, * and as a dividend.
        (_, Fact::Never { origin, why, .. }, _) => Fact::Never { origin, why, nan: false },
        (BinOp::Add | BinOp::Sub | BinOp::Mul, _, Fact::Never { origin, why, .. }) => {
            Fact::Never { origin, why, nan: false }
        }
        // finite / inf is 0: nothing certain.
        (BinOp::Div, _, Fact::Never { .. }) => ANY,
        (BinOp::Div, _, Fact::Range(0.0, 0.0)) => Fact::Never { origin: this, why: Why::DivByZero, nan: false },
        (_, Fact::Range(al, ah), Fact::Range(bl, bh)) => match op {
            BinOp::Add => hull(&[al + bl, ah + bh]),
            BinOp::Sub => hull(&[al - bh, ah - bl]),
            BinOp::Mul => hull(&[al * bl, al * bh, ah * bl, ah * bh]),
            BinOp::Div if bl <= 0.0 && bh >= 0.0 => ANY,
            BinOp::Div => hull(&[al / bl, al / bh, ah / bl, ah / bh]),
        },
    }
}

/// The fact of `f` applied to the facts of its arguments.
fn call(f: Func, args: &[Fact], this: Handle<Expr>) -> Fact {
    let never = |why, nan| Fact::Never { origin: this, why, nan };
    let ranges: Vec<(f64, f64)> = args
        .iter()
        .filter_map(|a| match a {
            Fact::Range(lo, hi) => Some((*lo, *hi)),
            Fact::Never { .. } => None,
        })
        .collect();
    if ranges.len() < args.len() {
        let nevers: Vec<(Handle<Expr>, Why, bool)> = args
            .iter()
            .filter_map(|a| match *a {
                Fact::Never { origin, why, nan } => Some((origin, why, nan)),
                Fact::Range(..) => None,
            })
            .collect();
        let nan_arg = nevers.iter().copied().find(|n| n.2);
        let (origin, why, _) = nan_arg.unwrap_or(nevers[0]);
        // min, max and clamp drop a NaN argument: non-finite only when every argument is.
        if matches!(f, Func::Min | Func::Max | Func::Clamp) {
            let all_nan = nevers.iter().all(|n| n.2);
            return if ranges.is_empty() { Fact::Never { origin, why, nan: all_nan } } else { ANY };
        }
        // Every other function keeps a NaN; log, sqrt, abs and silu keep an infinity too,
        // while exp, softplus and sigmoid of -inf are finite.
        return match (nan_arg, f) {
            (Some(_), _) => Fact::Never { origin, why, nan: true },
            (None, Func::Log | Func::Sqrt | Func::Abs | Func::Silu) => Fact::Never { origin, why, nan: false },
            (None, _) => ANY,
        };
    }
    let (lo, hi) = ranges.first().copied().unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    match f {
        Func::Log if hi <= 0.0 => never(Why::LogOfNonPositive(lo, hi), hi < 0.0),
        Func::Sqrt if hi < 0.0 => never(Why::SqrtOfNegative(lo, hi), true),
        Func::Exp if lo > f64::MAX.ln() => never(Why::ExpOverflows(lo), false),
        Func::Exp => hull(&[lo.exp(), hi.exp()]),
        Func::Log => hull(&[if lo > 0.0 { lo.ln() } else { f64::NEG_INFINITY }, hi.ln()]),
        Func::Sqrt => hull(&[lo.max(0.0).sqrt(), hi.sqrt()]),
        Func::Softplus => hull(&[softplus(lo), softplus(hi)]),
        Func::Sigmoid => Fact::Range(0.0, 1.0),
        // silu is smallest, about -0.2785, at x = -1.278; increasing beyond.
        Func::Silu if lo >= 0.0 => hull(&[silu(lo), silu(hi)]),
        Func::Silu => hull(&[-0.279, silu(hi).max(0.0)]),
        Func::Abs if lo >= 0.0 => Fact::Range(lo, hi),
        Func::Abs if hi <= 0.0 => Fact::Range(-hi, -lo),
        Func::Abs => Fact::Range(0.0, hi.max(-lo)),
        Func::Min | Func::Max | Func::Clamp => {
            let pick = |g: fn(f64, f64) -> f64, a: (f64, f64), b: (f64, f64)| (g(a.0, b.0), g(a.1, b.1));
            let r = match (f, ranges.as_slice()) {
                (Func::Min, [a, b]) => pick(f64::min, *a, *b),
                (Func::Max, [a, b]) => pick(f64::max, *a, *b),
                (Func::Clamp, [x, l, h]) => pick(f64::min, pick(f64::max, *x, *l), *h),
                _ => (f64::NEG_INFINITY, f64::INFINITY),
            };
            Fact::Range(r.0, r.1)
        }
    }
}

/// `f` applied to constants, as the reference interpreter computes it.
fn fold(f: Func, v: &[f64]) -> f64 {
    let a = v.first().copied().unwrap_or(f64::NAN);
    let b = v.get(1).copied().unwrap_or(f64::NAN);
    match f {
        Func::Exp => a.exp(),
        Func::Log => a.ln(),
        Func::Softplus => softplus(a),
        Func::Silu => silu(a),
        Func::Sigmoid => 1.0 / (1.0 + (-a).exp()),
        Func::Sqrt => a.sqrt(),
        Func::Abs => a.abs(),
        Func::Clamp => a.max(b).min(v.get(2).copied().unwrap_or(f64::NAN)),
        Func::Min => a.min(b),
        Func::Max => a.max(b),
    }
}

/// The point value of a fact, if it is one.
fn point(f: Fact) -> Option<f64> {
    match f {
        Fact::Range(lo, hi) if lo == hi => Some(lo),
        _ => None,
    }
}

impl LayerCx<'_> {
    /// Facts of every expression, in arena order: operands come before their users.
    fn facts(&self) -> Vec<Fact> {
        let mut facts: Vec<Fact> = Vec::with_capacity(self.exprs.len());
        for (h, e) in self.exprs.iter() {
            // Operands come first; one that does not is taken as unknown, never misread.
            let of = |x: &Handle<Expr>| facts.get(x.index()).copied().filter(|_| x.index() < h.index()).unwrap_or(ANY);
            let fact = match e {
                Expr::Const(v) => Fact::Range(*v, *v),
                Expr::Load { tensor, .. } => match self.tensors[*tensor].init {
                    Init::Uniform { lo, hi } => {
                        let dtype = self.tensors[*tensor].dtype;
                        Fact::Range(round_to(dtype, lo), round_to(dtype, hi))
                    }
                    Init::Normal { .. } => ANY,
                },
                Expr::Neg(a) => match of(a) {
                    Fact::Range(lo, hi) => Fact::Range(-hi, -lo),
                    never => never,
                },
                Expr::Binary(op, a, b) => {
                    let (a, b) = (of(a), of(b));
                    match (point(a), point(b)) {
                        // `1 / 0` is named a division by zero, not a folded inf.
                        (Some(x), Some(y)) if !(*op == BinOp::Div && y == 0.0) => constant(h, fold_binary(*op, x, y)),
                        _ => binary(*op, a, b, h),
                    }
                }
                Expr::Call(f, args) => {
                    let args: Vec<Fact> = args.iter().map(of).collect();
                    match args.iter().map(|a| point(*a)).collect::<Option<Vec<f64>>>() {
                        Some(v) => constant(h, fold(*f, &v)),
                        None => call(*f, &args, h),
                    }
                }
            };
            facts.push(fact);
        }
        facts
    }

    /// Warns about each role whose value is never finite, at the sub-expression where the
    /// non-finite value starts.
    pub(super) fn warn_never_finite(&mut self, parts: &Parts) {
        let facts = self.facts();
        let mut warned: Vec<Handle<Expr>> = Vec::new();
        for scan in std::iter::once(&parts.forward).chain(parts.backward.as_ref()) {
            let roles = [
                ("x", Some(scan.x)),
                ("dt", scan.dt),
                ("A", Some(scan.a.re)),
                ("A", scan.a.im),
                ("B", Some(scan.b.re)),
                ("B", scan.b.im),
                ("C", Some(scan.c.re)),
                ("C", scan.c.im),
                ("skip", scan.skip),
                ("gate", scan.gate),
            ];
            for (role, root) in roles {
                let Some(Fact::Never { origin, why, .. }) = root.and_then(|r| facts.get(r.index()).copied()) else {
                    continue;
                };
                if warned.contains(&origin) {
                    continue;
                }
                warned.push(origin);
                let d = never_finite(role, why, self.spans.exprs[origin.index()]);
                self.diags.push(d);
            }
        }
    }
}

/// The fact of a folded constant.
fn constant(h: Handle<Expr>, v: f64) -> Fact {
    if v.is_finite() {
        Fact::Range(v, v)
    } else {
        Fact::Never { origin: h, why: Why::Folded(v), nan: v.is_nan() }
    }
}

fn fold_binary(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
    }
}

/// The warning for role `role`, never finite because of `why` at `span`.
fn never_finite(role: &str, why: Why, span: ssmc_syntax::Span) -> Diagnostic {
    let ranges = "for every input the `~` distributions allow";
    let (label, note) = match why {
        Why::DivByZero => ("division by zero".to_string(), "`a / 0` is an infinity or NaN for every a".to_string()),
        Why::LogOfNonPositive(lo, hi) => (
            "log of a value that is never positive".to_string(),
            format!("its argument lies in [{lo}, {hi}] {ranges}; log is -inf at 0 and NaN below"),
        ),
        Why::SqrtOfNegative(lo, hi) => (
            "square root of a value that is always negative".to_string(),
            format!("its argument lies in [{lo}, {hi}] {ranges}; sqrt is NaN below 0"),
        ),
        Why::ExpOverflows(lo) => (
            "exp overflows".to_string(),
            format!("its argument is at least {lo} {ranges}; exp is inf above {:.2}", f64::MAX.ln()),
        ),
        Why::Folded(v) => (format!("this evaluates to {v}"), "it is computed from constants only".to_string()),
    };
    Diagnostic::warning(format!("`{role}` is never finite"), span, label)
        .with_note(note)
        .with_hint("a role that is never finite makes the output inf or NaN; check the constants and the `~` ranges")
}
