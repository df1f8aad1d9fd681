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
                let den = Val::add(Val::mul(b.re.clone(), b.re.clone()), Val::mul(bi.clone(), bi.clone()));
                let conj = Cx { re: b.re.clone(), im: Some(Val::un(UnOp::Neg, bi.clone())) };
                let num = self.mul(&conj);
                Cx { re: Val::div(num.re, den.clone()), im: num.im.map(|v| Val::div(v, den)) }
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
