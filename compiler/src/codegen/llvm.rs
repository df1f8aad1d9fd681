//! Loop IR statements and values to LLVM IR. Every float value is a vector of f32 (a
//! scalar is a vector of one lane), so one code path serves scalars and vectors.
#![allow(unsafe_code)] // inkwell's GEP builders are `unsafe fn`: indices come from the loop IR, bounds from the runtime's checks.

use super::{err, math, Arch, CodegenError};
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::{FloatType, IntType, PointerType, VectorType};
use inkwell::values::{AnyValue, BasicValueEnum, FunctionValue, IntValue, PointerValue, VectorValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use ssmc_loops::{BinOp, Elem, Index, Kernel, Stmt, UnOp, Val, Var};
use std::collections::HashMap;

type R<T> = Result<T, CodegenError>;

/// Emits `k` into `module` as `void name(ptr bufs, ptr dims, i64 begin, i64 end)`.
pub fn emit_kernel<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, k: &Kernel, arch: &Arch) -> R<()> {
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i64t = ctx.i64_type();
    let fn_ty = ctx.void_type().fn_type(&[ptr.into(), ptr.into(), i64t.into(), i64t.into()], false);
    let func = module.add_function(&k.name, fn_ty, None);
    if *arch == Arch::Nvptx {
        // The PTX kernel calling convention marks an entry point.
        func.set_call_conventions(71);
    } else {
        // A frame aligned to 64 bytes, so that 512-bit spills and the hoisted invariants read
        // in the hot loops do not straddle cache lines wherever the caller's stack happens to be.
        let align = ctx.create_enum_attribute(Attribute::get_named_enum_kind_id("alignstack"), 64);
        func.add_attribute(AttributeLoc::Function, align);
    }
    let entry = ctx.append_basic_block(func, "entry");
    let builder = ctx.create_builder();
    builder.position_at_end(entry);
    let mut cg = Cg {
        ctx,
        module,
        b: builder,
        func,
        f32: ctx.f32_type(),
        i32: ctx.i32_type(),
        i64: i64t,
        ptr,
        bufs: Vec::new(),
        dims: Vec::new(),
        ints: HashMap::new(),
        lane_ints: HashMap::new(),
        floats: HashMap::new(),
        seq_lanes: k.seq_lanes,
        avx512: arch.avx512(),
        lane_limit: k.lane_limit.clone(),
        cpu: matches!(arch, Arch::X86 { .. }),
        heap: Vec::new(),
        host_conv: None,
    };
    cg.prologue(k)?;
    let param = |i: u32| func.get_nth_param(i).expect("kernel has four parameters").into_int_value();
    let (begin, end) = (param(2), param(3));
    match arch {
        Arch::X86 { .. } => cg.counted_loop(k.seq, begin, end, false, &k.body)?,
        Arch::Nvptx => {
            let tid = cg.sreg("llvm.nvvm.read.ptx.sreg.tid.x")?;
            let ntid = cg.sreg("llvm.nvvm.read.ptx.sreg.ntid.x")?;
            let ctaid = cg.sreg("llvm.nvvm.read.ptx.sreg.ctaid.x")?;
            let global =
                cg.b.build_int_nsw_add(cg.b.build_int_nsw_mul(ctaid, ntid, "").map_err(err)?, tid, "").map_err(err)?;
            let seq = cg.b.build_int_nsw_add(begin, global, "seq").map_err(err)?;
            let inside = cg.b.build_int_compare(IntPredicate::SLT, seq, end, "").map_err(err)?;
            let (work, done) = (ctx.append_basic_block(func, "work"), ctx.append_basic_block(func, "done"));
            cg.b.build_conditional_branch(inside, work, done).map_err(err)?;
            cg.b.position_at_end(work);
            cg.ints.insert(k.seq, seq);
            cg.block(&k.body)?;
            cg.b.build_unconditional_branch(done).map_err(err)?;
            cg.b.position_at_end(done);
        }
    }
    cg.release()?;
    cg.b.build_return(None).map_err(err)?;
    Ok(())
}

pub(super) struct Cg<'a, 'ctx> {
    pub(super) ctx: &'ctx Context,
    pub(super) module: &'a Module<'ctx>,
    pub(super) b: Builder<'ctx>,
    func: FunctionValue<'ctx>,
    pub(super) f32: FloatType<'ctx>,
    pub(super) i32: IntType<'ctx>,
    i64: IntType<'ctx>,
    ptr: PointerType<'ctx>,
    bufs: Vec<(PointerValue<'ctx>, Elem)>,
    dims: Vec<IntValue<'ctx>>,
    ints: HashMap<Var, IntValue<'ctx>>,
    /// Index variables that differ per lane: one value per lane.
    lane_ints: HashMap<Var, Vec<IntValue<'ctx>>>,
    floats: HashMap<Var, (PointerValue<'ctx>, u32)>,
    /// Sequences side by side per work item.
    seq_lanes: u32,
    /// The target has AVX-512 F and DQ (16-lane vectors, `vscalefps`, `vreduceps`).
    pub(super) avx512: bool,
    lane_limit: Option<(Index, Index)>,
    /// x86-64 (else NVPTX).
    cpu: bool,
    /// Scratch arrays on the heap, freed before the return.
    heap: Vec<PointerValue<'ctx>>,
    /// The host routine of [`Stmt::Convolve`], loaded from `bufs`.
    host_conv: Option<PointerValue<'ctx>>,
}

/// Bytes of a cache line, the alignment of heap scratch arrays.
const LINE: u64 = 64;

/// `contract`: lets LLVM fuse a multiply and an add into one FMA.
const CONTRACT: u32 = 1 << 5;

fn contract(v: VectorValue) -> VectorValue {
    if let Some(i) = v.as_instruction() {
        i.set_fast_math_flags(CONTRACT);
    }
    v
}

impl<'a, 'ctx> Cg<'a, 'ctx> {
    fn prologue(&mut self, k: &Kernel) -> R<()> {
        let bufs = self.func.get_nth_param(0).expect("bufs").into_pointer_value();
        let dims = self.func.get_nth_param(1).expect("dims").into_pointer_value();
        for (i, buf) in k.buffers.iter().enumerate() {
            let slot =
                unsafe { self.b.build_in_bounds_gep(self.ptr, bufs, &[self.i64.const_int(i as u64, false)], "") }
                    .map_err(err)?;
            let p = self.b.build_load(self.ptr, slot, &buf.name).map_err(err)?.into_pointer_value();
            self.bufs.push((p, buf.elem));
        }
        for (i, name) in k.dims.iter().enumerate() {
            let slot =
                unsafe { self.b.build_in_bounds_gep(self.i64, dims, &[self.i64.const_int(i as u64, false)], "") }
                    .map_err(err)?;
            self.dims.push(self.b.build_load(self.i64, slot, name).map_err(err)?.into_int_value());
        }
        // Every float variable lives in an entry-block slot (before the
        // branches of the heap scratch); mem2reg makes them registers.
        let mut lets = Vec::new();
        collect_lets(&k.body, &mut lets);
        for (var, lanes) in lets {
            let lanes = lanes * self.seq_lanes;
            let slot = self.b.build_alloca(self.vt(lanes), &format!("v{}", var.0)).map_err(err)?;
            self.floats.insert(var, (slot, lanes));
        }
        if k.host_conv {
            if !self.cpu {
                return Err(CodegenError("a host convolution (the conv form) has no GPU code".into()));
            }
            let at = self.i64.const_int(k.buffers.len() as u64, false);
            let slot = unsafe { self.b.build_in_bounds_gep(self.ptr, bufs, &[at], "") }.map_err(err)?;
            self.host_conv = Some(self.b.build_load(self.ptr, slot, "host_conv").map_err(err)?.into_pointer_value());
        }
        // Scratch arrays come after the tensors in buffer order, one set per call: on the
        // heap on the CPU (they grow with the runtime dims; a worker thread's stack is small),
        // on the stack (local memory) on the GPU.
        for size in &k.scratch {
            let n = self.index(size)?;
            let p = if self.cpu {
                self.malloc(n)?
            } else {
                self.b.build_array_alloca(self.f32, n, "scratch").map_err(err)?
            };
            self.bufs.push((p, Elem::F32));
        }
        Ok(())
    }

    /// `n` f32 from `malloc` (one more, so that a size 0 is no null result), starting at a
    /// multiple of 64 bytes: `malloc` aligns to 16 only, and the 16-lane vectors of a scratch
    /// tile would straddle two cache lines (now and then a page); traps when there is no
    /// memory.
    fn malloc(&mut self, n: IntValue<'ctx>) -> R<PointerValue<'ctx>> {
        let malloc = self
            .module
            .get_function("malloc")
            .unwrap_or_else(|| self.module.add_function("malloc", self.ptr.fn_type(&[self.i64.into()], false), None));
        let bytes = self.b.build_int_nsw_add(n, self.i64.const_int(1, false), "").map_err(err)?;
        let bytes = self.b.build_int_nsw_mul(bytes, self.i64.const_int(4, false), "").map_err(err)?;
        let bytes = self.b.build_int_nsw_add(bytes, self.i64.const_int(LINE - 1, false), "").map_err(err)?;
        let p = match self.b.build_call(malloc, &[bytes.into()], "scratch").map_err(err)?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => v.into_pointer_value(),
            inkwell::values::ValueKind::Instruction(_) => return Err(CodegenError("malloc returned nothing".into())),
        };
        let null = self.b.build_is_null(p, "").map_err(err)?;
        let (fail, ok) =
            (self.ctx.append_basic_block(self.func, "no_memory"), self.ctx.append_basic_block(self.func, "scratch"));
        self.b.build_conditional_branch(null, fail, ok).map_err(err)?;
        self.b.position_at_end(fail);
        let trap = inkwell::intrinsics::Intrinsic::find("llvm.trap")
            .and_then(|t| t.get_declaration(self.module, &[]))
            .ok_or_else(|| CodegenError("no llvm.trap".into()))?;
        self.b.build_call(trap, &[], "").map_err(err)?;
        self.b.build_unreachable().map_err(err)?;
        self.b.position_at_end(ok);
        self.heap.push(p);
        // p + (-p mod 64): the first line boundary at or after p.
        let addr = self.b.build_ptr_to_int(p, self.i64, "").map_err(err)?;
        let skip = self.b.build_int_neg(addr, "").map_err(err)?;
        let skip = self.b.build_and(skip, self.i64.const_int(LINE - 1, false), "").map_err(err)?;
        let i8t = self.ctx.i8_type();
        unsafe { self.b.build_in_bounds_gep(i8t, p, &[skip], "aligned") }.map_err(err)
    }

    /// Frees the heap scratch arrays.
    fn release(&self) -> R<()> {
        if self.heap.is_empty() {
            return Ok(());
        }
        let free = self.module.get_function("free").unwrap_or_else(|| {
            self.module.add_function("free", self.ctx.void_type().fn_type(&[self.ptr.into()], false), None)
        });
        for p in &self.heap {
            self.b.build_call(free, &[(*p).into()], "").map_err(err)?;
        }
        Ok(())
    }

    fn sreg(&self, name: &str) -> R<IntValue<'ctx>> {
        let f = self
            .module
            .get_function(name)
            .unwrap_or_else(|| self.module.add_function(name, self.i32.fn_type(&[], false), None));
        let v = self.b.build_call(f, &[], "").map_err(err)?;
        let v = match v.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => v.into_int_value(),
            inkwell::values::ValueKind::Instruction(_) => return Err(CodegenError(format!("{name} returned nothing"))),
        };
        self.b.build_int_z_extend(v, self.i64, "").map_err(err)
    }

    pub(super) fn vt(&self, lanes: u32) -> VectorType<'ctx> {
        self.f32.vec_type(lanes)
    }

    fn block(&mut self, body: &[Stmt]) -> R<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
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
            Stmt::Convolve { kernel, input, output, len } => {
                let f = self.host_conv.ok_or_else(|| CodegenError("Convolve in a kernel without host_conv".into()))?;
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
            Stmt::Transpose { buf, index, tile, count, into_tile } => {
                self.transpose(*buf, index, *tile, *count, *into_tile)?
            }
        }
        Ok(())
    }

    /// The index of lane 0 when lane k of `index` is that plus k (`first + lane`) and the
    /// buffer holds f32: the lanes are one vector in memory.
    fn consecutive<'i>(&self, buf: usize, index: &'i Index) -> Option<&'i Index> {
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
    fn transpose(&self, buf: usize, index: &Index, tile: usize, count: u32, into_tile: bool) -> R<()> {
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

    /// `for var in lo..hi` (or down from hi - 1), running `body`.
    fn counted_loop(
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

    /// Whether an index differs between lanes.
    fn varies(&self, i: &Index) -> bool {
        match i {
            Index::Lane => true,
            Index::Var(v) => self.lane_ints.contains_key(v),
            Index::Const(_) | Index::Dim(_) => false,
            Index::Add(a, b)
            | Index::Sub(a, b)
            | Index::Mul(a, b)
            | Index::Div(a, b)
            | Index::Rem(a, b)
            | Index::Min(a, b) => self.varies(a) || self.varies(b),
        }
    }

    /// An index at lane `k`.
    fn index_lane(&self, i: &Index, k: u32) -> R<IntValue<'ctx>> {
        if !self.varies(i) {
            return self.index(i);
        }
        let two = |a: &Index, b: &Index| -> R<(IntValue<'ctx>, IntValue<'ctx>)> {
            Ok((self.index_lane(a, k)?, self.index_lane(b, k)?))
        };
        Ok(match i {
            Index::Lane => self.i64.const_int(k as u64, false),
            Index::Var(v) => self.lane_ints[v][k as usize],
            Index::Add(a, b) => {
                let (a, b) = two(a, b)?;
                self.b.build_int_nsw_add(a, b, "").map_err(err)?
            }
            Index::Sub(a, b) => {
                let (a, b) = two(a, b)?;
                self.b.build_int_nsw_sub(a, b, "").map_err(err)?
            }
            Index::Mul(a, b) => {
                let (a, b) = two(a, b)?;
                self.b.build_int_nsw_mul(a, b, "").map_err(err)?
            }
            Index::Div(a, b) => {
                let (a, b) = two(a, b)?;
                self.b.build_int_signed_div(a, b, "").map_err(err)?
            }
            Index::Rem(a, b) => {
                let (a, b) = two(a, b)?;
                self.b.build_int_signed_rem(a, b, "").map_err(err)?
            }
            Index::Min(a, b) => {
                let (a, b) = two(a, b)?;
                self.min(a, b)?
            }
            Index::Const(_) | Index::Dim(_) => unreachable!("constant indices do not vary"),
        })
    }

    fn min(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> R<IntValue<'ctx>> {
        let lt = self.b.build_int_compare(IntPredicate::SLT, a, b, "").map_err(err)?;
        Ok(self.b.build_select(lt, a, b, "").map_err(err)?.into_int_value())
    }

    /// Stores lane k of `v` at `index` at lane k; with `add`, adds it (nothing for lanes
    /// past the lane limit, which repeat another lane's sequence).
    fn scatter(&self, buf: usize, index: &Index, v: VectorValue<'ctx>, add: bool) -> R<()> {
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

    fn index(&self, i: &Index) -> R<IntValue<'ctx>> {
        Ok(match i {
            Index::Min(a, b) => self.min(self.index(a)?, self.index(b)?)?,
            Index::Lane => return Err(CodegenError("a lane index where one value is needed".into())),
            Index::Const(c) => self.i64.const_int(*c as u64, true),
            Index::Dim(d) => self.dims[*d],
            Index::Var(v) => {
                *self.ints.get(v).ok_or_else(|| CodegenError(format!("index variable i{} is not bound", v.0)))?
            }
            Index::Add(a, b) => self.b.build_int_nsw_add(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Sub(a, b) => self.b.build_int_nsw_sub(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Mul(a, b) => self.b.build_int_nsw_mul(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Div(a, b) => self.b.build_int_signed_div(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Rem(a, b) => self.b.build_int_signed_rem(self.index(a)?, self.index(b)?, "").map_err(err)?,
        })
    }

    fn elem_ptr(&self, buf: usize, index: &Index) -> R<PointerValue<'ctx>> {
        self.elem_ptr_at(buf, self.index(index)?)
    }

    fn elem_ptr_at(&self, buf: usize, i: IntValue<'ctx>) -> R<PointerValue<'ctx>> {
        let (base, elem) = self.bufs[buf];
        let ty: inkwell::types::BasicTypeEnum = match elem {
            Elem::F32 => self.f32.into(),
            Elem::Bf16 => self.ctx.i16_type().into(),
        };
        unsafe { self.b.build_in_bounds_gep(ty, base, &[i], "") }.map_err(err)
    }

    /// One element as f32 (bf16 widened by a 16-bit shift).
    fn load_scalar(&self, buf: usize, index: &Index) -> R<inkwell::values::FloatValue<'ctx>> {
        self.load_at(buf, self.index(index)?)
    }

    fn load_at(&self, buf: usize, i: IntValue<'ctx>) -> R<inkwell::values::FloatValue<'ctx>> {
        let p = self.elem_ptr_at(buf, i)?;
        match self.bufs[buf].1 {
            Elem::F32 => Ok(self.b.build_load(self.f32, p, "").map_err(err)?.into_float_value()),
            Elem::Bf16 => {
                let h = self.b.build_load(self.ctx.i16_type(), p, "").map_err(err)?.into_int_value();
                let w = self.b.build_int_z_extend(h, self.i32, "").map_err(err)?;
                let w = self.b.build_left_shift(w, self.i32.const_int(16, false), "").map_err(err)?;
                Ok(self.b.build_bit_cast(w, self.f32, "").map_err(err)?.into_float_value())
            }
        }
    }

    pub(super) fn splat_const(&self, v: f64, lanes: u32) -> VectorValue<'ctx> {
        let c = self.f32.const_float(v);
        VectorType::const_vector(&vec![c; lanes as usize])
    }

    fn lane(&self, v: VectorValue<'ctx>, k: u32) -> R<inkwell::values::FloatValue<'ctx>> {
        Ok(self.b.build_extract_element(v, self.i32.const_int(k as u64, false), "").map_err(err)?.into_float_value())
    }

    /// Broadcasts a one-lane vector to `lanes`.
    pub(super) fn widen(&self, v: VectorValue<'ctx>, lanes: u32) -> R<VectorValue<'ctx>> {
        let have = v.get_type().get_size();
        if have == lanes {
            return Ok(v);
        }
        if have != 1 {
            return Err(CodegenError(format!("cannot widen {have} lanes to {lanes}")));
        }
        let mask = VectorType::const_vector(&vec![self.i32.const_zero(); lanes as usize]);
        self.b.build_shuffle_vector(v, v.get_type().get_poison(), mask, "").map_err(err)
    }

    fn same_width(&self, a: VectorValue<'ctx>, b: VectorValue<'ctx>) -> R<(VectorValue<'ctx>, VectorValue<'ctx>)> {
        let n = a.get_type().get_size().max(b.get_type().get_size());
        Ok((self.widen(a, n)?, self.widen(b, n)?))
    }

    /// Calls a target intrinsic that is not overloaded: `args` as they are, result a vector.
    pub(super) fn call_exact(
        &self,
        name: &str,
        args: &[inkwell::values::BasicMetadataValueEnum<'ctx>],
    ) -> R<VectorValue<'ctx>> {
        let intrinsic =
            inkwell::intrinsics::Intrinsic::find(name).ok_or_else(|| CodegenError(format!("no intrinsic {name}")))?;
        let f = intrinsic
            .get_declaration(self.module, &[])
            .ok_or_else(|| CodegenError(format!("no declaration of {name}")))?;
        match self.b.build_call(f, args, "").map_err(err)?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(BasicValueEnum::VectorValue(v)) => Ok(v),
            _ => Err(CodegenError(format!("{name} did not return a vector"))),
        }
    }

    pub(super) fn call(&self, name: &str, args: &[VectorValue<'ctx>]) -> R<VectorValue<'ctx>> {
        let intrinsic =
            inkwell::intrinsics::Intrinsic::find(name).ok_or_else(|| CodegenError(format!("no intrinsic {name}")))?;
        let f = intrinsic
            .get_declaration(self.module, &[args[0].get_type().into()])
            .ok_or_else(|| CodegenError(format!("no declaration of {name}")))?;
        let args: Vec<inkwell::values::BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        match self.b.build_call(f, &args, "").map_err(err)?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(BasicValueEnum::VectorValue(v)) => Ok(v),
            _ => Err(CodegenError(format!("{name} did not return a vector"))),
        }
    }

    fn val(&mut self, v: &Val) -> R<VectorValue<'ctx>> {
        Ok(match v {
            Val::Const(c) => self.splat_const(*c as f64, 1),
            Val::Var(var) => {
                let (slot, lanes) = self
                    .floats
                    .get(var)
                    .copied()
                    .ok_or_else(|| CodegenError(format!("float variable v{} is not declared", var.0)))?;
                self.b.build_load(self.vt(lanes), slot, "").map_err(err)?.into_vector_value()
            }
            Val::Load { buf, index, lanes: 1, .. } if self.consecutive(*buf, index).is_some() => {
                let first = self.consecutive(*buf, index).expect("checked by the guard");
                let load = self.b.build_load(self.vt(self.seq_lanes), self.elem_ptr(*buf, first)?, "").map_err(err)?;
                if let Some(inst) = load.as_any_value_enum().into_vector_value().as_instruction() {
                    inst.set_alignment(4).map_err(err)?;
                }
                load.into_vector_value()
            }
            Val::Load { buf, index, lanes: 1, .. } if self.varies(index) => {
                // A gather: one element per sequence lane.
                let mut out = self.vt(self.seq_lanes).get_poison();
                for k in 0..self.seq_lanes {
                    let x = self.load_at(*buf, self.index_lane(index, k)?)?;
                    out = self.b.build_insert_element(out, x, self.i32.const_int(k as u64, false), "").map_err(err)?;
                }
                out
            }
            Val::Load { buf, index, lanes, stride } => {
                if *stride == Index::Const(1) && *lanes > 1 && self.bufs[*buf].1 == Elem::F32 {
                    let p = self.elem_ptr(*buf, index)?;
                    let load = self.b.build_load(self.vt(*lanes), p, "").map_err(err)?;
                    if let Some(inst) = load.as_any_value_enum().into_vector_value().as_instruction() {
                        inst.set_alignment(4).map_err(err)?;
                    }
                    load.into_vector_value()
                } else {
                    let mut out = self.vt(*lanes).get_poison();
                    for k in 0..*lanes {
                        let at = Index::add(index.clone(), Index::mul(Index::Const(k as i64), stride.clone()));
                        let x = self.load_scalar(*buf, &at)?;
                        out = self
                            .b
                            .build_insert_element(out, x, self.i32.const_int(k as u64, false), "")
                            .map_err(err)?;
                    }
                    out
                }
            }
            Val::Un(op, a) => {
                let a = self.val(a)?;
                match op {
                    UnOp::Neg => self.b.build_float_neg(a, "").map_err(err)?,
                    UnOp::Exp => math::exp(self, a)?,
                    UnOp::Exp2 => math::exp2(self, a)?,
                    UnOp::Log => math::log(self, a)?,
                    UnOp::Softplus => math::softplus(self, a)?,
                    UnOp::Sin => math::sin_cos(self, a)?.0,
                    UnOp::Cos => math::sin_cos(self, a)?.1,
                    UnOp::Sqrt => self.call("llvm.sqrt", &[a])?,
                    UnOp::Abs => self.call("llvm.fabs", &[a])?,
                }
            }
            Val::Bin(op, a, b) => {
                let (a, b) = (self.val(a)?, self.val(b)?);
                let (a, b) = self.same_width(a, b)?;
                match op {
                    BinOp::Add => contract(self.b.build_float_add(a, b, "").map_err(err)?),
                    BinOp::Sub => contract(self.b.build_float_sub(a, b, "").map_err(err)?),
                    BinOp::Mul => contract(self.b.build_float_mul(a, b, "").map_err(err)?),
                    BinOp::Div => self.b.build_float_div(a, b, "").map_err(err)?,
                    BinOp::Min => self.call("llvm.minnum", &[a, b])?,
                    BinOp::Max => self.call("llvm.maxnum", &[a, b])?,
                    BinOp::Gt => {
                        let n = a.get_type().get_size();
                        let c = self.b.build_float_compare(FloatPredicate::OGT, a, b, "").map_err(err)?;
                        self.b
                            .build_select(c, self.splat_const(1.0, n), self.splat_const(0.0, n), "")
                            .map_err(err)?
                            .into_vector_value()
                    }
                }
            }
            Val::Select(c, a, b) => {
                let (c, a, b) = (self.val(c)?, self.val(a)?, self.val(b)?);
                let (a, b) = self.same_width(a, b)?;
                let n = a.get_type().get_size();
                let c = self.widen(c, n)?;
                let t =
                    self.b.build_float_compare(FloatPredicate::UNE, c, self.splat_const(0.0, n), "").map_err(err)?;
                self.b.build_select(t, a, b, "").map_err(err)?.into_vector_value()
            }
            Val::Splat(a, lanes) => {
                let a = self.val(a)?;
                self.widen(a, *lanes)?
            }
            Val::ReduceAdd(a) => {
                let mut v = self.val(a)?;
                // A tree of halves: log2(lanes) shuffles and adds.
                while v.get_type().get_size() > 1 {
                    let n = v.get_type().get_size();
                    let half = |lo: u32| {
                        VectorType::const_vector(
                            &(lo..lo + n / 2).map(|k| self.i32.const_int(k as u64, false)).collect::<Vec<_>>(),
                        )
                    };
                    let lo = self.b.build_shuffle_vector(v, v, half(0), "").map_err(err)?;
                    let hi = self.b.build_shuffle_vector(v, v, half(n / 2), "").map_err(err)?;
                    v = self.b.build_float_add(lo, hi, "").map_err(err)?;
                }
                v
            }
        })
    }
}

fn collect_lets(body: &[Stmt], out: &mut Vec<(Var, u32)>) {
    for s in body {
        match s {
            Stmt::Let { var, lanes, .. } => out.push((*var, *lanes)),
            Stmt::For { body, .. } => collect_lets(body, out),
            _ => {}
        }
    }
}
