//! Loop IR statements: stores (vector, scattered, lane by lane, atomic), counted loops and
//! conditionals, the GPU's barrier, and the CPU statements (the host convolution call and
//! the lane transpose through a tile).
#![allow(unsafe_code)] // inkwell's GEP builders are `unsafe fn`: indices come from the loop IR, bounds from the runtime's checks.

use super::{Cg, R};
use crate::{err, CodegenError};
use inkwell::types::VectorType;
use inkwell::values::{AnyValue, AsValueRef, IntValue, PointerValue, VectorValue};
use inkwell::IntPredicate;
use ssmc_loops::{Cmp, Cond, CpuStmt, Elem, Index, Stmt, Var};

impl<'ctx> Cg<'_, 'ctx> {
    pub(super) fn block(&mut self, body: &[Stmt]) -> R<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    pub(super) fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Let { var, value, .. } | Stmt::Set { var, value } => {
                let (slot, lanes) = self.floats[var];
                let v = self.val(value)?;
                let v = self.widen(v, lanes)?;
                self.b.build_store(slot, v).map_err(err)?;
            }
            Stmt::LetIndex { var, value } => {
                if self.varies(value) {
                    let per_lane = (0..self.seq_lanes).map(|k| self.index_lane(value, k)).collect::<R<Vec<_>>>()?;
                    self.ints.remove(var);
                    self.lane_ints.insert(*var, per_lane);
                } else {
                    let v = self.index(value)?;
                    self.lane_ints.remove(var);
                    self.ints.insert(*var, v);
                }
            }
            Stmt::Store { buf, index, value } if self.consecutive(*buf, index).is_some() => {
                // One element per lane at consecutive indices: one vector store.
                let v = self.val(value)?;
                let v = self.widen(v, self.seq_lanes)?;
                let first = self.consecutive(*buf, index).expect("checked by the guard");
                let store = self.b.build_store(self.elem_ptr(*buf, first)?, v).map_err(err)?;
                store.set_alignment(4).map_err(err)?;
            }
            Stmt::Store { buf, index, value } | Stmt::StoreAdd { buf, index, value } if self.varies(index) => {
                let v = self.val(value)?;
                let v = self.widen(v, self.seq_lanes)?;
                let add = matches!(s, Stmt::StoreAdd { .. });
                self.scatter(*buf, index, v, add)?;
            }
            Stmt::StoreLanes { buf, index, lanes: 1, value, .. } if self.varies(index) => {
                let v = self.val(value)?;
                let v = self.widen(v, self.seq_lanes)?;
                self.scatter(*buf, index, v, false)?;
            }
            Stmt::Store { buf, index, value } | Stmt::StoreAdd { buf, index, value } => {
                let v = self.val(value)?;
                let mut x = self.lane(v, 0)?;
                let p = self.elem_ptr(*buf, index)?;
                if matches!(s, Stmt::StoreAdd { .. }) {
                    let old = self.b.build_load(self.f32, p, "").map_err(err)?.into_float_value();
                    x = self.b.build_float_add(old, x, "").map_err(err)?;
                }
                self.b.build_store(p, x).map_err(err)?;
            }
            Stmt::StoreLanes { buf, index, stride, lanes, value }
                if *stride == Index::Const(1) && *lanes > 1 && self.bufs[*buf].1 == Elem::F32 =>
            {
                // Contiguous lanes: one vector store.
                let v = self.val(value)?;
                let v = self.widen(v, *lanes)?;
                let p = self.elem_ptr(*buf, index)?;
                let store = self.b.build_store(p, v).map_err(err)?;
                store.set_alignment(4).map_err(err)?;
            }
            Stmt::StoreLanes { buf, index, stride, lanes, value } => {
                let v = self.val(value)?;
                for k in 0..*lanes {
                    let at = Index::add(index.clone(), Index::mul(Index::Const(k as i64), stride.clone()));
                    let p = self.elem_ptr(*buf, &at)?;
                    let x = self.lane(v, k)?;
                    self.b.build_store(p, x).map_err(err)?;
                }
            }
            Stmt::Cpu(CpuStmt::Convolve { kernel, input, output, len }) => {
                let f = self
                    .host_conv
                    .ok_or_else(|| CodegenError::Llvm("Convolve in a kernel without host_conv".into()))?;
                let ty = self
                    .ctx
                    .void_type()
                    .fn_type(&[self.ptr.into(), self.ptr.into(), self.ptr.into(), self.i64.into()], false);
                let args = [
                    self.bufs[*kernel].0.into(),
                    self.bufs[*input].0.into(),
                    self.bufs[*output].0.into(),
                    self.index(len)?.into(),
                ];
                self.b.build_indirect_call(ty, f, &args, "").map_err(err)?;
            }
            Stmt::For { var, lo, hi, reverse, body } => {
                let (lo, hi) = (self.index(lo)?, self.index(hi)?);
                self.counted_loop(*var, lo, hi, *reverse, body)?;
            }
            Stmt::Cpu(CpuStmt::Transpose { buf, index, tile, count, into_tile }) => {
                self.transpose(*buf, index, *tile, *count, *into_tile)?
            }
            Stmt::If { cond, then, otherwise } => self.branch(cond, then, otherwise)?,
            Stmt::Barrier => {
                let name = "llvm.nvvm.barrier0";
                let f = inkwell::intrinsics::Intrinsic::find(name)
                    .and_then(|i| i.get_declaration(self.module, &[]))
                    .ok_or_else(|| CodegenError::Llvm(format!("no intrinsic {name}")))?;
                self.b.build_call(f, &[], "").map_err(err)?;
            }
            Stmt::AtomicAdd { buf, index, value } => {
                if self.bufs[*buf].1 != Elem::F32 {
                    return Err(CodegenError::Llvm(format!("atomic add into b{buf}, which is not f32")));
                }
                let v = self.val(value)?;
                let v = self.widen(v, self.seq_lanes)?;
                for k in 0..self.seq_lanes {
                    let p = self.elem_ptr_at(*buf, self.index_lane(index, k)?)?;
                    let x = self.lane(v, k)?;
                    // inkwell 0.7 builds integer read-modify-writes only: LLVM's C API takes floats.
                    unsafe {
                        llvm_sys::core::LLVMBuildAtomicRMW(
                            self.b.as_mut_ptr(),
                            llvm_sys::LLVMAtomicRMWBinOp::LLVMAtomicRMWBinOpFAdd,
                            p.as_value_ref(),
                            x.as_value_ref(),
                            llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingMonotonic,
                            0,
                        )
                    };
                }
            }
            Stmt::Frag(_) => {
                // `check` refuses fragments before code generation starts.
                return Err(CodegenError::Llvm("matrix fragments have no lowering yet".into()));
            }
        }
        Ok(())
    }

    /// The index of lane 0 when lane k of `index` is that plus k (`first + lane`) and the
    /// buffer holds f32: the lanes are one vector in memory.
    pub(super) fn consecutive<'i>(&self, buf: usize, index: &'i Index) -> Option<&'i Index> {
        match index {
            Index::Add(first, lane) if **lane == Index::Lane && !self.varies(first) && self.seq_lanes > 1 => {
                (self.bufs[buf].1 == Elem::F32).then_some(&**first)
            }
            _ => None,
        }
    }

    /// [`Stmt::Transpose`]: where each lane's run is one vector of f32 as long as the
    /// vector of lanes, one load per run or step, a shuffle network (log2 of the lanes
    /// rounds of interleaving pairs) and one store per step or run; element by element
    /// otherwise.
    pub(super) fn transpose(&self, buf: usize, index: &Index, tile: usize, count: u32, into_tile: bool) -> R<()> {
        let s = self.seq_lanes;
        let run = |k: u32| -> R<PointerValue<'ctx>> { self.elem_ptr_at(buf, self.index_lane(index, k)?) };
        let step = |j: u32| self.elem_ptr_at(tile, self.i64.const_int(u64::from(j * s), false));
        if count != s || !s.is_power_of_two() || s < 2 || self.bufs[buf].1 != Elem::F32 {
            for k in 0..s {
                for j in 0..count {
                    let at = self
                        .b
                        .build_int_nsw_add(self.index_lane(index, k)?, self.i64.const_int(j.into(), false), "")
                        .map_err(err)?;
                    let slot = self.elem_ptr_at(tile, self.i64.const_int(u64::from(j * s + k), false))?;
                    if into_tile {
                        self.b.build_store(slot, self.load_at(buf, at)?).map_err(err)?;
                    } else {
                        let x = self.b.build_load(self.f32, slot, "").map_err(err)?;
                        self.b.build_store(self.elem_ptr_at(buf, at)?, x).map_err(err)?;
                    }
                }
            }
            return Ok(());
        }
        let (from, to): (Vec<_>, Vec<_>) = if into_tile {
            ((0..s).map(run).collect::<R<_>>()?, (0..s).map(step).collect::<R<_>>()?)
        } else {
            ((0..s).map(step).collect::<R<_>>()?, (0..s).map(run).collect::<R<_>>()?)
        };
        let mut v = Vec::new();
        for p in from {
            let load = self.b.build_load(self.vt(s), p, "").map_err(err)?;
            if let Some(inst) = load.as_any_value_enum().into_vector_value().as_instruction() {
                inst.set_alignment(4).map_err(err)?;
            }
            v.push(load.into_vector_value());
        }
        // Row r, column c at v[r][c]; each round interleaves rows i and i + s/2 (low halves,
        // then high halves); after log2(s) rounds v[c][r] holds it.
        let half = s / 2;
        let mask = |pick: &dyn Fn(u32) -> u32| {
            VectorType::const_vector(&(0..s).map(|i| self.i32.const_int(pick(i).into(), false)).collect::<Vec<_>>())
        };
        let lo = mask(&|i| i / 2 + (i % 2) * s);
        let hi = mask(&|i| half + i / 2 + (i % 2) * s);
        for _ in 0..s.trailing_zeros() {
            let mut next = Vec::with_capacity(s as usize);
            for i in 0..half as usize {
                let (a, b) = (v[i], v[i + half as usize]);
                next.push(self.b.build_shuffle_vector(a, b, lo, "").map_err(err)?);
                next.push(self.b.build_shuffle_vector(a, b, hi, "").map_err(err)?);
            }
            v = next;
        }
        for (p, x) in to.into_iter().zip(v) {
            self.b.build_store(p, x).map_err(err)?.set_alignment(4).map_err(err)?;
        }
        Ok(())
    }

    /// [`Stmt::If`]: `then` where the condition holds, `otherwise` elsewhere, then on.
    fn branch(&mut self, cond: &Cond, then: &[Stmt], otherwise: &[Stmt]) -> R<()> {
        if self.varies(&cond.lhs) || self.varies(&cond.rhs) {
            return Err(CodegenError::Llvm("a condition that differs between sequence lanes".into()));
        }
        let pred = match cond.cmp {
            Cmp::Lt => IntPredicate::SLT,
            Cmp::Le => IntPredicate::SLE,
            Cmp::Eq => IntPredicate::EQ,
            Cmp::Ne => IntPredicate::NE,
        };
        let c = self.b.build_int_compare(pred, self.index(&cond.lhs)?, self.index(&cond.rhs)?, "").map_err(err)?;
        let (yes, no, join) = (
            self.ctx.append_basic_block(self.func, "then"),
            self.ctx.append_basic_block(self.func, "else"),
            self.ctx.append_basic_block(self.func, "endif"),
        );
        self.b.build_conditional_branch(c, yes, no).map_err(err)?;
        // Integer variables bound inside a branch do not outlive it.
        let outer = (self.ints.clone(), self.lane_ints.clone());
        for (block, body) in [(yes, then), (no, otherwise)] {
            self.b.position_at_end(block);
            self.block(body)?;
            self.b.build_unconditional_branch(join).map_err(err)?;
            (self.ints, self.lane_ints) = outer.clone();
        }
        self.b.position_at_end(join);
        Ok(())
    }

    /// `for var in lo..hi` (or down from hi - 1), running `body`.
    pub(super) fn counted_loop(
        &mut self,
        var: Var,
        lo: IntValue<'ctx>,
        hi: IntValue<'ctx>,
        reverse: bool,
        body: &[Stmt],
    ) -> R<()> {
        let one = self.i64.const_int(1, false);
        let pre = self.b.get_insert_block().expect("builder is positioned");
        let (head, work, exit) = (
            self.ctx.append_basic_block(self.func, "loop"),
            self.ctx.append_basic_block(self.func, "body"),
            self.ctx.append_basic_block(self.func, "exit"),
        );
        let start = if reverse { self.b.build_int_nsw_sub(hi, one, "").map_err(err)? } else { lo };
        self.b.build_unconditional_branch(head).map_err(err)?;
        self.b.position_at_end(head);
        let phi = self.b.build_phi(self.i64, &format!("i{}", var.0)).map_err(err)?;
        phi.add_incoming(&[(&start, pre)]);
        let i = phi.as_basic_value().into_int_value();
        let go = if reverse {
            self.b.build_int_compare(IntPredicate::SGE, i, lo, "").map_err(err)?
        } else {
            self.b.build_int_compare(IntPredicate::SLT, i, hi, "").map_err(err)?
        };
        self.b.build_conditional_branch(go, work, exit).map_err(err)?;
        self.b.position_at_end(work);
        self.ints.insert(var, i);
        self.block(body)?;
        let next = if reverse {
            self.b.build_int_nsw_sub(i, one, "").map_err(err)?
        } else {
            self.b.build_int_nsw_add(i, one, "").map_err(err)?
        };
        let latch = self.b.get_insert_block().expect("builder is positioned");
        self.b.build_unconditional_branch(head).map_err(err)?;
        phi.add_incoming(&[(&next, latch)]);
        self.b.position_at_end(exit);
        Ok(())
    }

    /// Stores lane k of `v` at `index` at lane k; with `add`, adds it (nothing for lanes
    /// past the lane limit, which repeat another lane's sequence).
    pub(super) fn scatter(&self, buf: usize, index: &Index, v: VectorValue<'ctx>, add: bool) -> R<()> {
        for k in 0..self.seq_lanes {
            let at = self.index_lane(index, k)?;
            let p = self.elem_ptr_at(buf, at)?;
            let mut x = self.lane(v, k)?;
            if add {
                let old = self.b.build_load(self.f32, p, "").map_err(err)?.into_float_value();
                let sum = self.b.build_float_add(old, x, "").map_err(err)?;
                x = match &self.lane_limit {
                    Some((a, b)) => {
                        let valid = self
                            .b
                            .build_int_compare(IntPredicate::SLT, self.index_lane(a, k)?, self.index_lane(b, k)?, "")
                            .map_err(err)?;
                        self.b.build_select(valid, sum, old, "").map_err(err)?.into_float_value()
                    }
                    None => sum,
                };
            }
            self.b.build_store(p, x).map_err(err)?;
        }
        Ok(())
    }
}
