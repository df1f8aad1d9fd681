//! Loop IR values to vectors of f32: loads, gathers, arithmetic, selects and reductions,
//! and the vector helpers (splats, widening, intrinsic calls) the math routines share.
#![allow(unsafe_code)] // inkwell's GEP builders are `unsafe fn`: indices come from the loop IR, bounds from the runtime's checks.

use super::{Cg, R};
use crate::{err, math, CodegenError};
use inkwell::types::VectorType;
use inkwell::values::{AnyValue, BasicValue, BasicValueEnum, FloatValue, VectorValue};
use inkwell::FloatPredicate;
use ssmc_loops::{BinOp, Elem, Index, Shuffle, UnOp, Val};

/// `contract`: lets LLVM fuse a multiply and an add into one FMA.
const CONTRACT: u32 = 1 << 5;

fn contract(v: VectorValue) -> VectorValue {
    if let Some(i) = v.as_instruction() {
        i.set_fast_math_flags(CONTRACT);
    }
    v
}

impl<'ctx> Cg<'_, 'ctx> {
    pub(crate) fn vt(&self, lanes: u32) -> VectorType<'ctx> {
        self.f32.vec_type(lanes)
    }

    pub(crate) fn splat_const(&self, v: f64, lanes: u32) -> VectorValue<'ctx> {
        let c = self.f32.const_float(v);
        VectorType::const_vector(&vec![c; lanes as usize])
    }

    pub(super) fn lane(&self, v: VectorValue<'ctx>, k: u32) -> R<FloatValue<'ctx>> {
        Ok(self.b.build_extract_element(v, self.i32.const_int(k as u64, false), "").map_err(err)?.into_float_value())
    }

    /// Broadcasts a one-lane vector to `lanes`.
    pub(crate) fn widen(&self, v: VectorValue<'ctx>, lanes: u32) -> R<VectorValue<'ctx>> {
        let have = v.get_type().get_size();
        if have == lanes {
            return Ok(v);
        }
        if have != 1 {
            return Err(CodegenError::Llvm(format!("cannot widen {have} lanes to {lanes}")));
        }
        let mask = VectorType::const_vector(&vec![self.i32.const_zero(); lanes as usize]);
        self.b.build_shuffle_vector(v, v.get_type().get_poison(), mask, "").map_err(err)
    }

    pub(super) fn same_width(
        &self,
        a: VectorValue<'ctx>,
        b: VectorValue<'ctx>,
    ) -> R<(VectorValue<'ctx>, VectorValue<'ctx>)> {
        let n = a.get_type().get_size().max(b.get_type().get_size());
        Ok((self.widen(a, n)?, self.widen(b, n)?))
    }

    /// Calls a target intrinsic that is not overloaded: `args` as they are, result a vector.
    pub(crate) fn call_exact(
        &self,
        name: &str,
        args: &[inkwell::values::BasicMetadataValueEnum<'ctx>],
    ) -> R<VectorValue<'ctx>> {
        let intrinsic = inkwell::intrinsics::Intrinsic::find(name)
            .ok_or_else(|| CodegenError::Llvm(format!("no intrinsic {name}")))?;
        let f = intrinsic
            .get_declaration(self.module, &[])
            .ok_or_else(|| CodegenError::Llvm(format!("no declaration of {name}")))?;
        match self.b.build_call(f, args, "").map_err(err)?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(BasicValueEnum::VectorValue(v)) => Ok(v),
            _ => Err(CodegenError::Llvm(format!("{name} did not return a vector"))),
        }
    }

    pub(crate) fn call(&self, name: &str, args: &[VectorValue<'ctx>]) -> R<VectorValue<'ctx>> {
        let intrinsic = inkwell::intrinsics::Intrinsic::find(name)
            .ok_or_else(|| CodegenError::Llvm(format!("no intrinsic {name}")))?;
        let f = intrinsic
            .get_declaration(self.module, &[args[0].get_type().into()])
            .ok_or_else(|| CodegenError::Llvm(format!("no declaration of {name}")))?;
        let args: Vec<inkwell::values::BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        match self.b.build_call(f, &args, "").map_err(err)?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(BasicValueEnum::VectorValue(v)) => Ok(v),
            _ => Err(CodegenError::Llvm(format!("{name} did not return a vector"))),
        }
    }

    pub(super) fn val(&mut self, v: &Val) -> R<VectorValue<'ctx>> {
        Ok(match v {
            Val::Const(c) => self.splat_const(*c as f64, 1),
            Val::Var(var) => {
                let (slot, lanes) = self
                    .floats
                    .get(var)
                    .copied()
                    .ok_or_else(|| CodegenError::Llvm(format!("float variable v{} is not declared", var.0)))?;
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
                    self.invariant(*buf, load.as_instruction_value())?;
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
            Val::Shuffle(how, a) => {
                let a = self.val(a)?;
                self.shuffle(*how, a)?
            }
            Val::WarpSum(a) => {
                // A butterfly: after rounds of distance 16, 8, 4, 2, 1 every lane holds the sum.
                let mut v = self.val(a)?;
                let mut d = ssmc_loops::WARP / 2;
                while d > 0 {
                    let other = self.shuffle(Shuffle::Xor(d), v)?;
                    v = self.b.build_float_add(v, other, "").map_err(err)?;
                    d /= 2;
                }
                v
            }
        })
    }

    /// `v` as another lane of the warp holds it, element by element (`shfl.sync` over the
    /// full warp).
    fn shuffle(&self, how: Shuffle, v: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
        // The last operand packs the clamp: lanes at or below it (up) or above it (down,
        // xor, lane) are the segment; 0 and 31 make the whole warp one segment.
        let (name, k, clamp) = match how {
            Shuffle::Up(k) => ("llvm.nvvm.shfl.sync.up.f32", k, 0),
            Shuffle::Down(k) => ("llvm.nvvm.shfl.sync.down.f32", k, 31),
            Shuffle::Xor(k) => ("llvm.nvvm.shfl.sync.bfly.f32", k, 31),
            Shuffle::Lane(k) => ("llvm.nvvm.shfl.sync.idx.f32", k, 31),
        };
        let f = inkwell::intrinsics::Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[]))
            .ok_or_else(|| CodegenError::Llvm(format!("no intrinsic {name}")))?;
        let mut out = v.get_type().get_poison();
        for lane in 0..v.get_type().get_size() {
            let x = self.lane(v, lane)?;
            let args = [
                self.i32.const_all_ones().into(),
                x.into(),
                self.i32.const_int(u64::from(k), false).into(),
                self.i32.const_int(clamp, false).into(),
            ];
            let y = match self.b.build_call(f, &args, "").map_err(err)?.try_as_basic_value() {
                inkwell::values::ValueKind::Basic(BasicValueEnum::FloatValue(y)) => y,
                _ => return Err(CodegenError::Llvm(format!("{name} did not return a float"))),
            };
            out = self.b.build_insert_element(out, y, self.i32.const_int(u64::from(lane), false), "").map_err(err)?;
        }
        Ok(out)
    }
}
