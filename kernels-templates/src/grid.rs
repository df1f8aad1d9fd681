//! GPU launches of kernels written for one work item at a time.

use ssmc_loops::{Builtin, Cond, Index, Kernel, Launch, Stmt, Var};

/// `k` (a range kernel, one work item per turn of its loop) as a grid kernel with one work
/// item per thread: blocks of `threads` threads take `threads` consecutive work items, and
/// a thread past `end` does nothing. The plain GPU schedule of the `recurrent` template.
pub fn thread_per_item(k: Kernel, threads: u32) -> Kernel {
    let first = Var(max_var(&k).0 + 1);
    let item = Index::add(Index::Var(first), Index::builtin(Builtin::Thread));
    let body = vec![
        Stmt::LetIndex { var: k.seq, value: item },
        Stmt::If {
            cond: Cond::lt(Index::Var(k.seq), Index::builtin(Builtin::End)),
            then: k.body,
            otherwise: Vec::new(),
        },
    ];
    Kernel { seq: first, launch: Launch::Grid { threads, items_per_block: threads }, body, ..k }
}

/// The largest variable a kernel declares or reads as its work item.
pub(crate) fn max_var(k: &Kernel) -> Var {
    fn walk(body: &[Stmt], top: &mut Var) {
        for s in body {
            match s {
                Stmt::Let { var, .. } | Stmt::LetIndex { var, .. } => *top = (*top).max(*var),
                Stmt::For { var, body, .. } => {
                    *top = (*top).max(*var);
                    walk(body, top);
                }
                Stmt::If { then, otherwise, .. } => {
                    walk(then, top);
                    walk(otherwise, top);
                }
                _ => {}
            }
        }
    }
    let mut top = k.seq;
    walk(&k.body, &mut top);
    top
}
