//! Complex arithmetic on loop-IR values; a missing imaginary part is zero, so real scans
//! pay nothing for it.

use ssmc_loops::{BinOp, UnOp, Val};

/// `re + i im`; `im: None` is a real value.
#[derive(Clone, Debug, PartialEq)]
pub struct Cx {
    /// Real part.
    pub re: Val,
    /// Imaginary part, if not zero.
    pub im: Option<Val>,
}

impl Cx {
    /// A real value.
    pub fn real(re: Val) -> Cx {
        Cx { re, im: None }
    }

    /// `a + b`.
    pub fn add(&self, b: &Cx) -> Cx {
        let im = match (&self.im, &b.im) {
            (Some(x), Some(y)) => Some(Val::add(x.clone(), y.clone())),
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (None, None) => None,
        };
        Cx { re: Val::add(self.re.clone(), b.re.clone()), im }
    }

    /// `a - b`.
    pub fn sub(&self, b: &Cx) -> Cx {
        self.add(&b.neg())
    }

    /// `-a`.
    pub fn neg(&self) -> Cx {
        Cx { re: Val::un(UnOp::Neg, self.re.clone()), im: self.im.clone().map(|v| Val::un(UnOp::Neg, v)) }
    }

    /// `a * b`.
    pub fn mul(&self, b: &Cx) -> Cx {
        let (ar, br) = (self.re.clone(), b.re.clone());
        match (&self.im, &b.im) {
            (None, None) => Cx::real(Val::mul(ar, br)),
            (Some(ai), None) => Cx { re: Val::mul(ar, br.clone()), im: Some(Val::mul(ai.clone(), br)) },
            (None, Some(bi)) => Cx { re: Val::mul(ar.clone(), br), im: Some(Val::mul(ar, bi.clone())) },
            (Some(ai), Some(bi)) => Cx {
                re: Val::sub(Val::mul(ar.clone(), br.clone()), Val::mul(ai.clone(), bi.clone())),
                im: Some(Val::add(Val::mul(ar, bi.clone()), Val::mul(ai.clone(), br))),
            },
        }
    }

    /// `a * s` for a real `s`.
    pub fn scale(&self, s: &Val) -> Cx {
        self.mul(&Cx::real(s.clone()))
    }

    /// `a / b`.
    pub fn div(&self, b: &Cx) -> Cx {
        match &b.im {
            None => Cx {
                re: Val::div(self.re.clone(), b.re.clone()),
                im: self.im.clone().map(|v| Val::div(v, b.re.clone())),
            },
            Some(bi) => {
                // Smith's division: by the larger part of b, so that |b|^2 never overflows
                // (b with an infinite part gives 0 for a finite a, not inf/inf = NaN).
                let (br, ar) = (b.re.clone(), self.re.clone());
                let ai = self.im.clone().unwrap_or(Val::Const(0.0));
                let re_big = Val::bin(BinOp::Gt, Val::un(UnOp::Abs, br.clone()), Val::un(UnOp::Abs, bi.clone()));
                let pick = |a: Val, b: Val| Val::Select(Box::new(re_big.clone()), Box::new(a), Box::new(b));
                // |br| > |bi|: t = bi/br, a/b = ((ar + ai t) + i (ai - ar t)) / (br + bi t);
                // else t = br/bi, a/b = ((ar t + ai) + i (ai t - ar)) / (br t + bi).
                let t = pick(Val::div(bi.clone(), br.clone()), Val::div(br.clone(), bi.clone()));
                let den = pick(
                    Val::add(br.clone(), Val::mul(bi.clone(), t.clone())),
                    Val::add(Val::mul(br, t.clone()), bi.clone()),
                );
                let re = pick(
                    Val::add(ar.clone(), Val::mul(ai.clone(), t.clone())),
                    Val::add(Val::mul(ar.clone(), t.clone()), ai.clone()),
                );
                let im = pick(Val::sub(ai.clone(), Val::mul(ar.clone(), t.clone())), Val::sub(Val::mul(ai, t), ar));
                Cx { re: Val::div(re, den.clone()), im: Some(Val::div(im, den)) }
            }
        }
    }

    /// `e^a`.
    pub fn exp(&self) -> Cx {
        let m = Val::un(UnOp::Exp, self.re.clone());
        match &self.im {
            None => Cx::real(m),
            Some(im) => Cx {
                re: Val::mul(m.clone(), Val::un(UnOp::Cos, im.clone())),
                im: Some(Val::mul(m, Val::un(UnOp::Sin, im.clone()))),
            },
        }
    }

    /// `e^a - 1`, accurate near a = 0 where `exp(a) - 1` cancels: for a complex a = x + iy,
    /// (expm1(x) cos y - 2 sin^2(y/2)) + i e^x sin y.
    pub fn exp_m1(&self) -> Cx {
        match &self.im {
            None => Cx::real(expm1(self.re.clone())),
            Some(y) => {
                let half = Val::un(UnOp::Sin, Val::mul(y.clone(), Val::Const(0.5)));
                let re = Val::sub(
                    Val::mul(expm1(self.re.clone()), Val::un(UnOp::Cos, y.clone())),
                    Val::mul(Val::Const(2.0), Val::mul(half.clone(), half)),
                );
                let im = Val::mul(Val::un(UnOp::Exp, self.re.clone()), Val::un(UnOp::Sin, y.clone()));
                Cx { re, im: Some(im) }
            }
        }
    }

    /// A constant of width `lanes`.
    pub fn constant(v: f32, lanes: u32) -> Cx {
        Cx::real(Val::splat(Val::Const(v), lanes))
    }

    /// Replaces each part by `f(part)`.
    pub fn map(&self, f: impl Fn(Val) -> Val) -> Cx {
        Cx { re: f(self.re.clone()), im: self.im.clone().map(f) }
    }

    /// The real part of `a * b` (cheaper than the product).
    pub fn mul_re(&self, b: &Cx) -> Val {
        let rr = Val::mul(self.re.clone(), b.re.clone());
        match (&self.im, &b.im) {
            (Some(ai), Some(bi)) => Val::bin(BinOp::Sub, rr, Val::mul(ai.clone(), bi.clone())),
            _ => rr,
        }
    }
}

/// e^x - 1 of a real value: where |x| < 1/2 its Taylor polynomial of degree 8 (relative
/// error under 1e-8 there), elsewhere e^x - 1, which does not cancel there.
pub fn expm1(x: Val) -> Val {
    // x (1 + x/2! + x^2/3! + ... + x^7/8!), by Horner.
    let factorial = |n: u32| (1..=n).map(f64::from).product::<f64>();
    let mut q = Val::Const((1.0 / factorial(8)) as f32);
    for j in (0..7).rev() {
        q = Val::add(Val::Const((1.0 / factorial(j + 1)) as f32), Val::mul(x.clone(), q));
    }
    let series = Val::mul(x.clone(), q);
    let plain = Val::sub(Val::un(UnOp::Exp, x.clone()), Val::Const(1.0));
    let small = Val::bin(BinOp::Gt, Val::Const(0.5), Val::un(UnOp::Abs, x));
    Val::Select(Box::new(small), Box::new(series), Box::new(plain))
}
