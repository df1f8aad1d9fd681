//! The stable text form of the layer IR, for snapshots and `ssmc ir`.

use super::*;
use std::fmt;

/// Stable text form of the IR, for snapshots and `ssmc ir`.
impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "layer {} {{", self.name)?;
        for (h, d) in self.dims.iter() {
            let size = match d.size {
                DimSize::Runtime => "runtime".to_string(),
                DimSize::Const(n) => n.to_string(),
            };
            writeln!(f, "  dim {:?} {} {}: {}", h, d.role.keyword(), d.name, size)?;
        }
        for (h, t) in self.tensors.iter() {
            let io = if t.io == Io::Input { "input" } else { "output" };
            let init = match t.init {
                Init::Normal { mean, std } => format!("normal({mean}, {std})"),
                Init::Uniform { lo, hi } => format!("uniform({lo}, {hi})"),
            };
            let init = if t.io == Io::Input { format!(" ~ {init}") } else { String::new() };
            writeln!(f, "  {} {:?} {}: {}{}{}", io, h, t.name, t.dtype.name(), self.shape_name(&t.shape), init)?;
        }
        for (h, _) in self.exprs.iter() {
            let axes: Vec<String> = self.axes_of(h).iter().map(|a| self.axis_name(*a)).collect();
            writeln!(f, "  expr {:?} = {} : [{}]", h, ExprText(self, h), axes.join(", "))?;
        }
        writeln!(f, "  A {}", self.a_structure.name())?;
        writeln!(f, "  discretize {}", self.discretization.name())?;
        writeln!(f, "  direction {}", self.direction.name())?;
        writeln!(f, "  lti {}", self.is_lti())?;
        let ax = &self.axes;
        let opt = |d: Option<Handle<Dim>>| d.map_or("-".to_string(), |d| self.dims[d].name.clone());
        writeln!(
            f,
            "  axes batch {} time {} head {} headdim {} group {} state {}",
            self.dims[ax.batch].name,
            self.dims[ax.time].name,
            self.dims[ax.head].name,
            opt(ax.headdim),
            opt(ax.group),
            self.axis_name(ax.state)
        )?;
        self.fmt_scan(f, "forward", &self.forward)?;
        if let Some(b) = &self.backward {
            self.fmt_scan(f, "backward", b)?;
        }
        let tname = |t: Option<Handle<Tensor>>| t.map_or("-".to_string(), |t| self.tensors[t].name.clone());
        writeln!(f, "  initial_state {}", tname(self.initial_state))?;
        writeln!(f, "  final_state {}", tname(self.final_state))?;
        writeln!(f, "  output {}", self.tensors[self.output].name)?;
        writeln!(f, "}}")
    }
}

impl Layer {
    fn fmt_scan(&self, f: &mut fmt::Formatter<'_>, name: &str, s: &Scan) -> fmt::Result {
        let e = |h: Option<Handle<Expr>>| h.map_or("-".to_string(), |h| format!("{h:?}"));
        let v = |v: Value| match v.im {
            Some(im) => format!("complex({:?}, {:?})", v.re, im),
            None => format!("{:?}", v.re),
        };
        writeln!(
            f,
            "  scan {name}: x {:?} dt {} A {} B {} C {} skip {} gate {}",
            s.x,
            e(s.dt),
            v(s.a),
            v(s.b),
            v(s.c),
            e(s.skip),
            e(s.gate)
        )
    }
}

/// Displays one expression as source-like text.
pub struct ExprText<'a>(pub &'a Layer, pub Handle<Expr>);

impl fmt::Display for ExprText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.0;
        match &l.exprs[self.1] {
            Expr::Const(c) => write!(f, "{c}"),
            Expr::Load { tensor, component: None } => write!(f, "{}", l.tensors[*tensor].name),
            Expr::Load { tensor, component: Some(c) } => {
                write!(f, "{}.{}", l.tensors[*tensor].name, if *c == 0 { "re" } else { "im" })
            }
            Expr::Neg(a) => write!(f, "-({})", ExprText(l, *a)),
            Expr::Binary(op, a, b) => {
                let op = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                };
                write!(f, "({} {op} {})", ExprText(l, *a), ExprText(l, *b))
            }
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", ExprText(l, *a))?;
                }
                write!(f, ")")
            }
        }
    }
}
