//! How an artifact's entry point is launched (`manifest.json`'s `launch`): the number of
//! work items and, on the GPU, the grid's block shape and shared memory, as integer
//! expressions of the layer's dims ([`DimExpr`], written as text such as
//! `batch * ((heads + 15) / 16)`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An integer expression over dims by name: constants, `+ - * / %`, `min(a, b)` and
/// parentheses; `/` and `%` on non-negative values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DimExpr {
    /// A constant.
    Const(i64),
    /// The size of a dim.
    Dim(String),
    /// An operation on two operands.
    Op(Op, Box<DimExpr>, Box<DimExpr>),
}

/// The operations of [`DimExpr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`, rounding toward zero
    Div,
    /// `a % b`
    Rem,
    /// `min(a, b)`
    Min,
}

impl DimExpr {
    /// Its value when dim `name` has size `size(name)`; `None` for an unknown dim, a
    /// division by zero or an overflow.
    pub fn eval(&self, size: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        match self {
            DimExpr::Const(c) => Some(*c),
            DimExpr::Dim(name) => size(name),
            DimExpr::Op(op, a, b) => {
                let (a, b) = (a.eval(size)?, b.eval(size)?);
                match op {
                    Op::Add => a.checked_add(b),
                    Op::Sub => a.checked_sub(b),
                    Op::Mul => a.checked_mul(b),
                    Op::Div => a.checked_div(b),
                    Op::Rem => a.checked_rem(b),
                    Op::Min => Some(a.min(b)),
                }
            }
        }
    }

    /// Every dim it names.
    pub fn dims(&self) -> Vec<&str> {
        match self {
            DimExpr::Const(_) => Vec::new(),
            DimExpr::Dim(n) => vec![n.as_str()],
            DimExpr::Op(_, a, b) => a.dims().into_iter().chain(b.dims()).collect(),
        }
    }

    /// A C expression of it (int64_t), each dim written by `dim`.
    pub fn to_c(&self, dim: &dyn Fn(&str) -> String) -> String {
        match self {
            DimExpr::Const(c) => format!("(int64_t){c}"),
            DimExpr::Dim(n) => dim(n),
            DimExpr::Op(Op::Min, a, b) => {
                let (a, b) = (a.to_c(dim), b.to_c(dim));
                format!("(({a}) < ({b}) ? ({a}) : ({b}))")
            }
            DimExpr::Op(op, a, b) => format!("({} {} {})", a.to_c(dim), op.symbol(), b.to_c(dim)),
        }
    }
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Rem => "%",
            Op::Min => "min",
        }
    }
}

impl fmt::Display for DimExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimExpr::Const(c) => write!(f, "{c}"),
            DimExpr::Dim(n) => f.write_str(n),
            DimExpr::Op(Op::Min, a, b) => write!(f, "min({a}, {b})"),
            DimExpr::Op(op @ (Op::Mul | Op::Div | Op::Rem), a, b) => {
                write!(f, "{} {} {}", Factor(a), op.symbol(), Factor(b))
            }
            DimExpr::Op(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
        }
    }
}

/// An operand of `* / %`: in parentheses unless atomic or a sum already bracketed.
struct Factor<'a>(&'a DimExpr);

impl fmt::Display for Factor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            DimExpr::Op(Op::Mul | Op::Div | Op::Rem, ..) => write!(f, "({})", self.0),
            e => write!(f, "{e}"),
        }
    }
}

impl std::str::FromStr for DimExpr {
    type Err = String;

    fn from_str(s: &str) -> Result<DimExpr, String> {
        let mut p = Parser { s: s.as_bytes(), at: 0 };
        let e = p.sum()?;
        p.space();
        if p.at != p.s.len() {
            return Err(format!("unexpected `{}` at column {} of `{s}`", &s[p.at..], p.at + 1));
        }
        Ok(e)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.space();
        let hit = self.s.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn sum(&mut self) -> Result<DimExpr, String> {
        let mut e = self.product()?;
        loop {
            let op = if self.eat(b'+') {
                Op::Add
            } else if self.eat(b'-') {
                Op::Sub
            } else {
                return Ok(e);
            };
            e = DimExpr::Op(op, Box::new(e), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<DimExpr, String> {
        let mut e = self.atom()?;
        loop {
            let op = if self.eat(b'*') {
                Op::Mul
            } else if self.eat(b'/') {
                Op::Div
            } else if self.eat(b'%') {
                Op::Rem
            } else {
                return Ok(e);
            };
            e = DimExpr::Op(op, Box::new(e), Box::new(self.atom()?));
        }
    }

    fn atom(&mut self) -> Result<DimExpr, String> {
        self.space();
        let start = self.at;
        if self.eat(b'(') {
            let e = self.sum()?;
            return if self.eat(b')') { Ok(e) } else { Err(format!("expected `)` at column {}", self.at + 1)) };
        }
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            self.at += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.at]).unwrap_or_default();
        if word.is_empty() {
            return Err(format!("expected a number, a dim or `(` at column {}", start + 1));
        }
        if let Ok(n) = word.parse::<i64>() {
            return Ok(DimExpr::Const(n));
        }
        if word.as_bytes()[0].is_ascii_digit() {
            return Err(format!("`{word}` is neither a number nor a dim name"));
        }
        if word == "min" && self.eat(b'(') {
            let a = self.sum()?;
            if !self.eat(b',') {
                return Err(format!("expected `,` in min at column {}", self.at + 1));
            }
            let b = self.sum()?;
            if !self.eat(b')') {
                return Err(format!("expected `)` at column {}", self.at + 1));
            }
            return Ok(DimExpr::Op(Op::Min, Box::new(a), Box::new(b)));
        }
        Ok(DimExpr::Dim(word.to_string()))
    }
}

impl Serialize for DimExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DimExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DimExpr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How the entry point runs: every call covers work items `[begin, end)` of
/// `[0, work_items)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Launch {
    /// CPU: one thread loops over its range; ranges may run on different threads.
    Range {
        /// Number of work items.
        work_items: DimExpr,
    },
    /// GPU: `ceil((end - begin) / items_per_block)` blocks of `threads` threads, each with
    /// `shared_bytes` of dynamic shared memory.
    Grid {
        /// Number of work items.
        work_items: DimExpr,
        /// Threads per block.
        threads: u32,
        /// Work items per block.
        items_per_block: u32,
        /// Dynamic shared memory per block, in bytes.
        shared_bytes: DimExpr,
    },
}

impl Launch {
    /// The number of work items.
    pub fn work_items(&self) -> &DimExpr {
        match self {
            Launch::Range { work_items } | Launch::Grid { work_items, .. } => work_items,
        }
    }

    /// Every expression of the launch.
    pub fn exprs(&self) -> Vec<&DimExpr> {
        match self {
            Launch::Range { work_items } => vec![work_items],
            Launch::Grid { work_items, shared_bytes, .. } => vec![work_items, shared_bytes],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_print_and_parse_back() {
        for text in ["batch * ((heads + 15) / 16)", "min(a, 3) - 1", "7", "b * h * p", "((l + 127) / 128) % 4"] {
            let e: DimExpr = text.parse().expect("parses");
            let again: DimExpr = e.to_string().parse().expect("its text parses");
            assert_eq!(e, again, "{text} printed as {e}");
            let size = |n: &str| Some(n.len() as i64 + 10);
            assert_eq!(e.eval(&size), again.eval(&size));
        }
        let e: DimExpr = "b * ((h + 15) / 16)".parse().expect("parses");
        assert_eq!(e.eval(&|n| Some(if n == "b" { 3 } else { 17 })), Some(6));
        assert_eq!(e.eval(&|n| (n == "b").then_some(3)), None, "an unknown dim has no value");
    }

    #[test]
    fn bad_expressions_are_errors_with_a_column() {
        for (text, want) in [("a +", "column 4"), ("(a", "expected `)`"), ("3x", "neither"), ("a $ b", "column 3")] {
            let e = text.parse::<DimExpr>().expect_err("refused");
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
