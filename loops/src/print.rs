//! The stable text form of the loop IR, for snapshots and `ssmc build --emit loops`.

use crate::{Cmp, CpuStmt, FragRole, FragStmt, Index, Kernel, Launch, Shuffle, Space, Stmt, Val};
use std::fmt;

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Index::Const(c) => write!(f, "{c}"),
            Index::Dim(d) => write!(f, "d{d}"),
            Index::Var(v) => write!(f, "i{}", v.0),
            Index::Add(a, b) => write!(f, "({a} + {b})"),
            Index::Sub(a, b) => write!(f, "({a} - {b})"),
            Index::Mul(a, b) => write!(f, "{a}*{b}"),
            Index::Div(a, b) => write!(f, "({a} / {b})"),
            Index::Rem(a, b) => write!(f, "({a} % {b})"),
            Index::Min(a, b) => write!(f, "min({a}, {b})"),
            Index::Lane => write!(f, "lane"),
            Index::Builtin(b) => write!(f, "%{}", b.name()),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Const(c) => write!(f, "{c:?}"),
            Val::Var(v) => write!(f, "v{}", v.0),
            Val::Load { buf, index, lanes: 1, .. } => write!(f, "b{buf}[{index}]"),
            Val::Load { buf, index, lanes, stride } => write!(f, "b{buf}[{index} +: {lanes} by {stride}]"),
            Val::Un(op, a) => write!(f, "{}({a})", format!("{op:?}").to_lowercase()),
            Val::Bin(op, a, b) => write!(f, "{}({a}, {b})", format!("{op:?}").to_lowercase()),
            Val::Select(c, a, b) => write!(f, "select({c}, {a}, {b})"),
            Val::Splat(a, n) => write!(f, "splat{n}({a})"),
            Val::ReduceAdd(a) => write!(f, "sum({a})"),
            Val::Shuffle(how, a) => match how {
                Shuffle::Up(k) => write!(f, "shfl_up({a}, {k})"),
                Shuffle::Down(k) => write!(f, "shfl_down({a}, {k})"),
                Shuffle::Xor(k) => write!(f, "shfl_xor({a}, {k})"),
                Shuffle::Lane(k) => write!(f, "shfl_lane({a}, {k})"),
            },
            Val::WarpSum(a) => write!(f, "warp_sum({a})"),
        }
    }
}

fn write_block(f: &mut fmt::Formatter<'_>, body: &[Stmt], depth: usize) -> fmt::Result {
    let pad = "  ".repeat(depth);
    for s in body {
        match s {
            Stmt::Let { var, lanes, value } => writeln!(f, "{pad}let v{}: f32x{lanes} = {value}", var.0)?,
            Stmt::Set { var, value } => writeln!(f, "{pad}v{} = {value}", var.0)?,
            Stmt::Store { buf, index, value } => writeln!(f, "{pad}b{buf}[{index}] = {value}")?,
            Stmt::StoreAdd { buf, index, value } => writeln!(f, "{pad}b{buf}[{index}] += {value}")?,
            Stmt::AtomicAdd { buf, index, value } => writeln!(f, "{pad}atomic b{buf}[{index}] += {value}")?,
            Stmt::StoreLanes { buf, index, stride, lanes, value } => {
                writeln!(f, "{pad}b{buf}[{index} +: {lanes} by {stride}] = {value}")?
            }
            Stmt::Cpu(CpuStmt::Transpose { buf, index, tile, count, into_tile }) => {
                let arrow = if *into_tile { "->" } else { "<-" };
                writeln!(f, "{pad}transpose b{buf}[{index} +: {count} per lane] {arrow} tile b{tile}")?
            }
            Stmt::LetIndex { var, value } => writeln!(f, "{pad}let i{} = {value}", var.0)?,
            Stmt::Cpu(CpuStmt::Convolve { kernel, input, output, len }) => {
                writeln!(f, "{pad}b{output}[..{len}] = causal_conv(b{kernel}, b{input})")?
            }
            Stmt::For { var, lo, hi, reverse, body } => {
                let dir = if *reverse { " rev" } else { "" };
                writeln!(f, "{pad}for i{} in {lo}..{hi}{dir} {{", var.0)?;
                write_block(f, body, depth + 1)?;
                writeln!(f, "{pad}}}")?;
            }
            Stmt::If { cond, then, otherwise } => {
                let cmp = match cond.cmp {
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                    Cmp::Eq => "==",
                    Cmp::Ne => "!=",
                };
                writeln!(f, "{pad}if {} {cmp} {} {{", cond.lhs, cond.rhs)?;
                write_block(f, then, depth + 1)?;
                if !otherwise.is_empty() {
                    writeln!(f, "{pad}}} else {{")?;
                    write_block(f, otherwise, depth + 1)?;
                }
                writeln!(f, "{pad}}}")?;
            }
            Stmt::Barrier => writeln!(f, "{pad}barrier")?,
            Stmt::Frag(FragStmt::Let { var, ty, load }) => {
                let role = match ty.role {
                    FragRole::A => "a",
                    FragRole::B => "b",
                    FragRole::Acc => "acc",
                };
                let init = match load {
                    Some((buf, index, ld)) => format!("b{buf}[{index} by rows of {ld}]"),
                    None => "0".into(),
                };
                writeln!(f, "{pad}let f{}: frag.{role} m{}n{}k{} {:?} = {init}", var.0, ty.m, ty.n, ty.k, ty.elem)?
            }
            Stmt::Frag(FragStmt::Mma { acc, a, b }) => writeln!(f, "{pad}f{} += mma(f{}, f{})", acc.0, a.0, b.0)?,
            Stmt::Frag(FragStmt::Store { var, buf, index, ld }) => {
                writeln!(f, "{pad}b{buf}[{index} by rows of {ld}] = f{}", var.0)?
            }
        }
    }
    Ok(())
}

/// Stable text form, for snapshots and `ssmc build --emit loops`.
impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel {}", self.name)?;
        for (i, b) in self.buffers.iter().enumerate() {
            let io = if b.output { "out" } else { "in" };
            writeln!(f, "  b{i} {io} {}: {:?}", b.name, b.elem)?;
        }
        for (i, d) in self.dims.iter().enumerate() {
            writeln!(f, "  d{i} = {d}")?;
        }
        for (i, s) in self.scratch.iter().enumerate() {
            let space = match s.space {
                Space::Local => "scratch",
                Space::Shared => "shared",
            };
            writeln!(f, "  b{} {space} f32[{}]", self.buffers.len() + i, s.size)?;
        }
        if self.host_conv {
            writeln!(f, "  bufs[{}] = host causal_conv_f32", self.buffers.len())?;
        }
        match self.launch {
            Launch::Range => writeln!(
                f,
                "  for i{} in 0..{} (work items of {} sequences) {{",
                self.seq.0, self.work_items, self.seq_lanes
            )?,
            Launch::Grid { threads, items_per_block } => writeln!(
                f,
                "  grid of {threads} threads per block, {items_per_block} of {} work items per block (i{} the first), {} shared bytes {{",
                self.work_items,
                self.seq.0,
                self.shared_bytes()
            )?,
        }
        write_block(f, &self.body, 2)?;
        writeln!(f, "  }}")
    }
}
