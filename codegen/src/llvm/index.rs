//! Loop IR indices to i64 (one value, or one per sequence lane), element pointers and
//! scalar loads (bf16 widened to f32).
#![allow(unsafe_code)] // inkwell's GEP builders are `unsafe fn`: indices come from the loop IR, bounds from the runtime's checks.

use super::{Cg, R};
use crate::{err, CodegenError};
use inkwell::values::{BasicValue, FloatValue, IntValue, PointerValue};
use inkwell::IntPredicate;
use ssmc_loops::{Elem, Index};

impl<'ctx> Cg<'_, 'ctx> {
    /// Whether an index differs between lanes.
    pub(super) fn varies(&self, i: &Index) -> bool {
        match i {
            Index::Lane => true,
            Index::Var(v) => self.lane_ints.contains_key(v),
            Index::Const(_) | Index::Dim(_) | Index::Builtin(_) => false,
            Index::Add(a, b)
            | Index::Sub(a, b)
            | Index::Mul(a, b)
            | Index::Div(a, b)
            | Index::Rem(a, b)
            | Index::Min(a, b) => self.varies(a) || self.varies(b),
        }
    }

    /// An index at lane `k`.
    pub(super) fn index_lane(&self, i: &Index, k: u32) -> R<IntValue<'ctx>> {
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
            Index::Const(_) | Index::Dim(_) | Index::Builtin(_) => unreachable!("these indices do not vary"),
        })
    }

    pub(super) fn min(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> R<IntValue<'ctx>> {
        let lt = self.b.build_int_compare(IntPredicate::SLT, a, b, "").map_err(err)?;
        Ok(self.b.build_select(lt, a, b, "").map_err(err)?.into_int_value())
    }

    pub(super) fn index(&self, i: &Index) -> R<IntValue<'ctx>> {
        Ok(match i {
            Index::Min(a, b) => self.min(self.index(a)?, self.index(b)?)?,
            Index::Lane => return Err(CodegenError::Llvm("a lane index where one value is needed".into())),
            Index::Const(c) => self.i64.const_int(*c as u64, true),
            Index::Dim(d) => self.dims[*d],
            Index::Builtin(b) => self.builtin(*b)?,
            Index::Var(v) => {
                *self.ints.get(v).ok_or_else(|| CodegenError::Llvm(format!("index variable i{} is not bound", v.0)))?
            }
            Index::Add(a, b) => self.b.build_int_nsw_add(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Sub(a, b) => self.b.build_int_nsw_sub(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Mul(a, b) => self.b.build_int_nsw_mul(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Div(a, b) => self.b.build_int_signed_div(self.index(a)?, self.index(b)?, "").map_err(err)?,
            Index::Rem(a, b) => self.b.build_int_signed_rem(self.index(a)?, self.index(b)?, "").map_err(err)?,
        })
    }

    pub(super) fn elem_ptr(&self, buf: usize, index: &Index) -> R<PointerValue<'ctx>> {
        self.elem_ptr_at(buf, self.index(index)?)
    }

    pub(super) fn elem_ptr_at(&self, buf: usize, i: IntValue<'ctx>) -> R<PointerValue<'ctx>> {
        let (base, elem) = self.bufs[buf];
        let ty: inkwell::types::BasicTypeEnum = match elem {
            Elem::F32 => self.f32.into(),
            Elem::Bf16 => self.ctx.i16_type().into(),
        };
        unsafe { self.b.build_in_bounds_gep(ty, base, &[i], "") }.map_err(err)
    }

    /// One element as f32 (bf16 widened by a 16-bit shift).
    pub(super) fn load_scalar(&self, buf: usize, index: &Index) -> R<FloatValue<'ctx>> {
        self.load_at(buf, self.index(index)?)
    }

    pub(super) fn load_at(&self, buf: usize, i: IntValue<'ctx>) -> R<FloatValue<'ctx>> {
        let p = self.elem_ptr_at(buf, i)?;
        match self.bufs[buf].1 {
            Elem::F32 => {
                let x = self.b.build_load(self.f32, p, "").map_err(err)?;
                self.invariant(buf, x.as_instruction_value())?;
                Ok(x.into_float_value())
            }
            Elem::Bf16 => {
                let h = self.b.build_load(self.ctx.i16_type(), p, "").map_err(err)?;
                self.invariant(buf, h.as_instruction_value())?;
                let h = h.into_int_value();
                let w = self.b.build_int_z_extend(h, self.i32, "").map_err(err)?;
                let w = self.b.build_left_shift(w, self.i32.const_int(16, false), "").map_err(err)?;
                Ok(self.b.build_bit_cast(w, self.f32, "").map_err(err)?.into_float_value())
            }
        }
    }
}
