//! Loop IR kernels to LLVM IR: the codegen context [`Cg`] and the kernel's frame (entry
//! point, buffer and dim loads, float slots, scratch arrays). Every float value is a
//! vector of f32 (a scalar is a vector of one lane), so one code path serves scalars and
//! vectors. Statements, indices and values are lowered in the child modules, which share
//! the context's private state.
#![allow(unsafe_code)] // inkwell's GEP builders are `unsafe fn`: indices come from the loop IR, bounds from the runtime's checks.

mod index;
mod stmt;
mod value;

use super::{err, Arch, CodegenError};
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::{FloatType, IntType, PointerType};
use inkwell::values::{FunctionValue, IntValue, PointerValue};
use inkwell::AddressSpace;
use ssmc_loops::{Builtin, Elem, Index, Kernel, Launch, Space, Stmt, Var};
use std::collections::HashMap;

type R<T> = Result<T, CodegenError>;

/// Emits `k` into `module` as `void name(ptr bufs, ptr dims, i64 begin, i64 end)`; its
/// constructs were checked against the target ([`crate::check`]).
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
    let param = |i: u32| func.get_nth_param(i).expect("kernel has four parameters").into_int_value();
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
        read_only: k.buffers.iter().map(|b| !b.output).collect(),
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
        range: (param(2), param(3)),
    };
    cg.prologue(k)?;
    let (begin, end) = cg.range;
    match k.launch {
        // `check` has refused a launch the target does not run.
        Launch::Range => cg.counted_loop(k.seq, begin, end, false, &k.body)?,
        Launch::Grid { items_per_block, .. } => {
            let block = cg.builtin(Builtin::Block)?;
            let per = cg.i64.const_int(u64::from(items_per_block), false);
            let first = cg.b.build_int_nsw_mul(block, per, "").map_err(err)?;
            let seq = cg.b.build_int_nsw_add(begin, first, "seq").map_err(err)?;
            cg.ints.insert(k.seq, seq);
            cg.block(&k.body)?;
        }
    }
    cg.release()?;
    cg.b.build_return(None).map_err(err)?;
    Ok(())
}

/// The state of one kernel's code generation: the builder, the common types, and where
/// each loop IR buffer, dim and variable lives.
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
    /// Per tensor (scratch arrays past the end): the kernel never writes it.
    read_only: Vec<bool>,
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
    pub(crate) cpu: bool,
    /// Scratch arrays on the heap, freed before the return.
    heap: Vec<PointerValue<'ctx>>,
    /// The host routine of [`ssmc_loops::CpuStmt::Convolve`], loaded from `bufs`.
    host_conv: Option<PointerValue<'ctx>>,
    /// The entry point's `begin` and `end`.
    range: (IntValue<'ctx>, IntValue<'ctx>),
}

/// Bytes of a cache line, the alignment of heap scratch arrays.
const LINE: u64 = 64;

impl<'a, 'ctx> Cg<'a, 'ctx> {
    fn prologue(&mut self, k: &Kernel) -> R<()> {
        let bufs = self.func.get_nth_param(0).expect("bufs").into_pointer_value();
        let dims = self.func.get_nth_param(1).expect("dims").into_pointer_value();
        for (i, buf) in k.buffers.iter().enumerate() {
            let slot =
                unsafe { self.b.build_in_bounds_gep(self.ptr, bufs, &[self.i64.const_int(i as u64, false)], "") }
                    .map_err(err)?;
            let mut p = self.b.build_load(self.ptr, slot, &buf.name).map_err(err)?.into_pointer_value();
            if !self.cpu {
                // Tensors are in global memory: through its address space, loads and stores
                // become ld.global/st.global (read-only ones the non-coherent path, see
                // `invariant`) instead of generic ones.
                let global = self.ctx.ptr_type(AddressSpace::from(1u16));
                p = self.b.build_address_space_cast(p, global, "").map_err(err)?;
            }
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
                return Err(CodegenError::Llvm("a host convolution (the conv form) has no GPU code".into()));
            }
            let at = self.i64.const_int(k.buffers.len() as u64, false);
            let slot = unsafe { self.b.build_in_bounds_gep(self.ptr, bufs, &[at], "") }.map_err(err)?;
            self.host_conv = Some(self.b.build_load(self.ptr, slot, "host_conv").map_err(err)?.into_pointer_value());
        }
        // Scratch arrays come after the tensors in buffer order. Local ones, one set per
        // call: on the heap on the CPU (they grow with the runtime dims; a worker thread's
        // stack is small), on the stack (local memory) on the GPU. Shared ones at their
        // place in the block's dynamic shared memory (the layout the launch sizes).
        let (starts, _) = k.shared_layout();
        for (s, start) in k.scratch.iter().zip(starts) {
            let p = match (s.space, start) {
                (Space::Shared, Some(start)) => {
                    let base = self.shared_base()?;
                    let at = self.index(&start)?;
                    unsafe { self.b.build_in_bounds_gep(self.f32, base, &[at], "shared") }.map_err(err)?
                }
                _ if self.cpu => self.malloc(self.index(&s.size)?)?,
                _ => self.b.build_array_alloca(self.f32, self.index(&s.size)?, "scratch").map_err(err)?,
            };
            self.bufs.push((p, Elem::F32));
        }
        Ok(())
    }

    /// Marks a load of `buf` as reading memory no thread writes during the launch, where
    /// `buf` is a tensor the kernel only reads, on the GPU: it then goes through the
    /// read-only data path (ld.global.nc).
    pub(super) fn invariant(&self, buf: usize, load: Option<inkwell::values::InstructionValue<'ctx>>) -> R<()> {
        if let (false, Some(true), Some(load)) = (self.cpu, self.read_only.get(buf), load) {
            let kind = self.ctx.get_kind_id("invariant.load");
            load.set_metadata(self.ctx.metadata_node(&[]), kind).map_err(err)?;
        }
        Ok(())
    }

    /// The block's dynamic shared memory (`extern __shared__`), as a generic pointer.
    fn shared_base(&self) -> R<PointerValue<'ctx>> {
        let name = "ssmc_shared";
        let global = self.module.get_global(name).unwrap_or_else(|| {
            let ty = self.f32.array_type(0);
            let g = self.module.add_global(ty, Some(AddressSpace::from(3u16)), name);
            g.set_linkage(inkwell::module::Linkage::External);
            g.set_alignment(16);
            g
        });
        self.b.build_address_space_cast(global.as_pointer_value(), self.ptr, "").map_err(err)
    }

    /// A built-in index of the launch, as i64.
    pub(super) fn builtin(&self, b: Builtin) -> R<IntValue<'ctx>> {
        let tid = || self.sreg("llvm.nvvm.read.ptx.sreg.tid.x");
        let warp = self.i64.const_int(u64::from(ssmc_loops::WARP), false);
        match b {
            Builtin::End => Ok(self.range.1),
            Builtin::Block => self.sreg("llvm.nvvm.read.ptx.sreg.ctaid.x"),
            Builtin::Thread => tid(),
            Builtin::Warp => self.b.build_int_unsigned_div(tid()?, warp, "warp").map_err(err),
            Builtin::WarpLane => self.b.build_int_unsigned_rem(tid()?, warp, "lane").map_err(err),
        }
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
            inkwell::values::ValueKind::Instruction(_) => {
                return Err(CodegenError::Llvm("malloc returned nothing".into()))
            }
        };
        let null = self.b.build_is_null(p, "").map_err(err)?;
        let (fail, ok) =
            (self.ctx.append_basic_block(self.func, "no_memory"), self.ctx.append_basic_block(self.func, "scratch"));
        self.b.build_conditional_branch(null, fail, ok).map_err(err)?;
        self.b.position_at_end(fail);
        let trap = inkwell::intrinsics::Intrinsic::find("llvm.trap")
            .and_then(|t| t.get_declaration(self.module, &[]))
            .ok_or_else(|| CodegenError::Llvm("no llvm.trap".into()))?;
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
            inkwell::values::ValueKind::Instruction(_) => {
                return Err(CodegenError::Llvm(format!("{name} returned nothing")))
            }
        };
        self.b.build_int_z_extend(v, self.i64, "").map_err(err)
    }
}

fn collect_lets(body: &[Stmt], out: &mut Vec<(Var, u32)>) {
    for s in body {
        match s {
            Stmt::Let { var, lanes, .. } => out.push((*var, *lanes)),
            Stmt::For { body, .. } => collect_lets(body, out),
            Stmt::If { then, otherwise, .. } => {
                collect_lets(then, out);
                collect_lets(otherwise, out);
            }
            _ => {}
        }
    }
}
