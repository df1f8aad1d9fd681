//! Vectorized elementary functions as straight-line IR: no libm call per element on the
//! CPU, no libdevice on the GPU (where e^x and 2^x use the special-function unit's
//! `ex2.approx` instead of a polynomial). Accurate to a few f32 ulp, and
//! saturating (inf, 0) and NaN-propagating like libm over the whole f32 range. Free
//! functions over the codegen context's builder, types and intrinsic calls.

use super::llvm::Cg;
use super::{err, CodegenError};
use inkwell::types::VectorType;
use inkwell::values::VectorValue;

type R<T> = Result<T, CodegenError>;

fn c<'ctx>(cg: &Cg<'_, 'ctx>, v: f64, n: u32) -> VectorValue<'ctx> {
    cg.splat_const(v, n)
}

fn ci<'ctx>(cg: &Cg<'_, 'ctx>, v: i64, n: u32) -> VectorValue<'ctx> {
    let c = cg.i32.const_int(v as u64, true);
    VectorType::const_vector(&vec![c; n as usize])
}

/// a * b + c, fused where the target has FMA.
fn fma<'ctx>(
    cg: &Cg<'_, 'ctx>,
    a: VectorValue<'ctx>,
    b: VectorValue<'ctx>,
    c: VectorValue<'ctx>,
) -> R<VectorValue<'ctx>> {
    cg.call("llvm.fmuladd", &[a, b, c])
}

/// Horner evaluation of sum_k coef[k] x^k.
fn poly<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>, coef: &[f64]) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let mut acc = c(cg, coef[coef.len() - 1], n);
    for k in coef[..coef.len() - 1].iter().rev() {
        acc = fma(cg, acc, x, c(cg, *k, n))?;
    }
    Ok(acc)
}

fn i16_all_ones<'ctx>(cg: &Cg<'_, 'ctx>) -> inkwell::values::IntValue<'ctx> {
    cg.i32.get_context().i16_type().const_all_ones()
}

fn to_int<'ctx>(cg: &Cg<'_, 'ctx>, v: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = v.get_type().get_size();
    cg.b.build_float_to_signed_int(v, cg.i32.vec_type(n), "").map_err(err)
}

fn bits<'ctx>(cg: &Cg<'_, 'ctx>, v: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = v.get_type().get_size();
    Ok(cg.b.build_bit_cast(v, cg.i32.vec_type(n), "").map_err(err)?.into_vector_value())
}

/// x clamped to [lo, hi], NaN kept.
fn clamp<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>, lo: f64, hi: f64) -> R<VectorValue<'ctx>> {
    at_most(cg, at_least(cg, x, lo)?, hi)
}

/// max(x, lo), NaN kept: a compare and a select, one `vmaxps` on x86 (`llvm.maxnum`
/// needs three instructions there to drop a NaN).
fn at_least<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>, lo: f64) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let below = cg.b.build_float_compare(inkwell::FloatPredicate::OLT, x, c(cg, lo, n), "").map_err(err)?;
    Ok(cg.b.build_select(below, c(cg, lo, n), x, "").map_err(err)?.into_vector_value())
}

/// min(x, hi), NaN kept.
fn at_most<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>, hi: f64) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let above = cg.b.build_float_compare(inkwell::FloatPredicate::OGT, x, c(cg, hi, n), "").map_err(err)?;
    Ok(cg.b.build_select(above, c(cg, hi, n), x, "").map_err(err)?.into_vector_value())
}

/// `y`, or x itself where x is NaN (where `y` came through a float-to-int conversion,
/// which gives poison for NaN).
fn keep_nan<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>, y: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let nan = cg.b.build_float_compare(inkwell::FloatPredicate::UNO, x, x, "").map_err(err)?;
    Ok(cg.b.build_select(nan, x, y, "").map_err(err)?.into_vector_value())
}

/// p 2^k for integral k in [-150, 128] (floats), as p 2^(k/2) 2^(k - k/2): both factors
/// normal, so overflow gives inf and underflow rounds to a subnormal or 0 once.
fn scale2<'ctx>(cg: &Cg<'_, 'ctx>, p: VectorValue<'ctx>, k: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = k.get_type().get_size();
    let k = to_int(cg, k)?;
    let k1 = cg.b.build_right_shift(k, ci(cg, 1, n), true, "").map_err(err)?;
    let k2 = cg.b.build_int_nsw_sub(k, k1, "").map_err(err)?;
    let pow = |e: VectorValue<'ctx>| -> R<VectorValue<'ctx>> {
        let e = cg.b.build_int_nsw_add(e, ci(cg, 127, n), "").map_err(err)?;
        float_from_bits(cg, cg.b.build_left_shift(e, ci(cg, 23, n), "").map_err(err)?)
    };
    let y = cg.b.build_float_mul(p, pow(k1)?, "").map_err(err)?;
    cg.b.build_float_mul(y, pow(k2)?, "").map_err(err)
}

fn float_from_bits<'ctx>(cg: &Cg<'_, 'ctx>, v: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = v.get_type().get_size();
    Ok(cg.b.build_bit_cast(v, cg.f32.vec_type(n), "").map_err(err)?.into_vector_value())
}

/// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 minimax polynomial (relative
/// error 3e-9), times 2^n. Over the whole f32 range: inf above 88.72, subnormals and 0
/// below -87.3, NaN for NaN (x is clamped to [-104, 89], where 2^n already overflows and
/// underflows, so the scaling saturates by itself).
pub fn exp<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    if !cg.cpu {
        return exp_gpu(cg, x);
    }
    let y = exp_in_range(cg, clamp(cg, x, -104.0, 89.0)?)?;
    if cg.avx512 && x.get_type().get_size() == 16 {
        return Ok(y);
    }
    keep_nan(cg, x, y)
}

/// e^x on the GPU, by its special-function unit: 2^h (1 + l ln 2) where h + l = x log2 e,
/// h the f32 product and l its rounding error (a fused multiply-add, plus the part of
/// log2 e below f32), 2^h by `ex2.approx` (2 ulp; inf, 0 and NaN as libm) and the factor
/// (1 + l ln 2) undoing the error of h, which would otherwise grow with |x| (|x| ulp).
/// Eight instructions against twenty for the polynomial; x is first clamped to [-104, 89]
/// (NaN kept), where 2^h already saturates, so that h and l stay finite.
fn exp_gpu<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let x = cg.call("llvm.maximum", &[cg.call("llvm.minimum", &[x, c(cg, 89.0, n)])?, c(cg, -104.0, n)])?;
    exp_gpu_in_range(cg, x)
}

/// [`exp_gpu`] of x already in [-104, 89] (or NaN).
fn exp_gpu_in_range<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let log2e = std::f64::consts::LOG2_E;
    let log2e_lo = log2e - f64::from(log2e as f32);
    let h = cg.b.build_float_mul(x, c(cg, log2e, n), "").map_err(err)?;
    let l = cg.call("llvm.fma", &[x, c(cg, log2e, n), cg.b.build_float_neg(h, "").map_err(err)?])?;
    let l = cg.call("llvm.fma", &[x, c(cg, log2e_lo, n), l])?;
    let p = cg.call("llvm.fma", &[l, c(cg, std::f64::consts::LN_2, n), c(cg, 1.0, n)])?;
    let e = per_lane(cg, "llvm.nvvm.ex2.approx.f", h)?;
    cg.b.build_float_mul(e, p, "").map_err(err)
}

/// A scalar f32 intrinsic (the NVPTX ones have no vector forms) on every lane of `x`.
fn per_lane<'ctx>(cg: &Cg<'_, 'ctx>, name: &str, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let f = inkwell::intrinsics::Intrinsic::find(name)
        .and_then(|i| i.get_declaration(cg.module, &[]))
        .ok_or_else(|| CodegenError::Llvm(format!("no intrinsic {name}")))?;
    let mut out = x.get_type().get_poison();
    for k in 0..x.get_type().get_size() {
        let at = cg.i32.const_int(u64::from(k), false);
        let lane = cg.b.build_extract_element(x, at, "").map_err(err)?;
        let y = match cg.b.build_call(f, &[lane.into()], "").map_err(err)?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => v,
            inkwell::values::ValueKind::Instruction(_) => {
                return Err(CodegenError::Llvm(format!("{name} returned nothing")))
            }
        };
        out = cg.b.build_insert_element(out, y, at, "").map_err(err)?;
    }
    Ok(out)
}

/// The lower clamp of `softplus`'s e^-|x|: e^x is the smallest normal f32 there.
const EXP_MIN: f64 = -87.33654;

/// `exp` of x already in [-104, 89] (or NaN, which gives NaN on AVX-512 and poison elsewhere).
fn exp_in_range<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    if !cg.cpu {
        return exp_gpu_in_range(cg, x);
    }
    let n = x.get_type().get_size();
    let k = cg.call("llvm.rint", &[cg.b.build_float_mul(x, c(cg, std::f64::consts::LOG2_E, n), "").map_err(err)?])?;
    // Cody-Waite: ln2 in two parts so that k * ln2_hi is exact.
    let r = fma(cg, k, c(cg, -0.693_145_751_953_125, n), x)?;
    let r = fma(cg, k, c(cg, -1.428_606_765_330_187e-6, n), r)?;
    let p = poly(
        cg,
        r,
        &[
            1.0,
            1.0,
            0.499_999_940_395_355_2,
            0.166_665_211_319_923_4,
            0.041_668_388_992_547_99,
            0.008_368_710_055_947_304,
            0.001_381_461_275_741_458,
        ],
    )?;
    if cg.avx512 && n == 16 {
        // p * 2^k in one instruction (vscalefps) instead of building 2^k in the exponent bits.
        let all = i16_all_ones(cg);
        let cur_direction = cg.i32.const_int(4, false);
        return cg.call_exact(
            "llvm.x86.avx512.mask.scalef.ps.512",
            &[p.into(), k.into(), p.into(), all.into(), cur_direction.into()],
        );
    }
    scale2(cg, p, k)
}

/// 2^t: t = k + f with k = floor(t) and f in [0, 1), 2^f by a degree-6 minimax polynomial
/// (relative error 2e-9, under one f32 ulp after rounding). On AVX-512 f comes from one
/// `vreduceps` and `vscalefps` applies 2^floor(t) with overflow, underflow and special
/// values handled by the hardware, so no clamps; elsewhere t is clamped to [-150, 128].
pub fn exp2<'ctx>(cg: &Cg<'_, 'ctx>, t: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    const COEF: [f64; 7] = [
        1.0,
        0.693_147_003_650_665_3,
        0.240_229_830_145_835_88,
        0.055_483_341_217_041_016,
        0.009_678_840_637_207_031,
        0.001_243_968_727_067_113,
        0.000_217_022_548_895_329_24,
    ];
    let n = t.get_type().get_size();
    if !cg.cpu {
        // The special-function unit: 2 ulp, inf, 0 and NaN as libm.
        return per_lane(cg, "llvm.nvvm.ex2.approx.f", t);
    }
    if cg.avx512 && n == 16 {
        let all = i16_all_ones(cg);
        // imm 0x09: keep no fraction bits, round down, suppress the precision exception.
        let floor_down = cg.i32.const_int(0x09, false);
        let cur_direction = cg.i32.const_int(4, false);
        let f = cg.call_exact(
            "llvm.x86.avx512.mask.reduce.ps.512",
            &[t.into(), floor_down.into(), t.into(), all.into(), cur_direction.into()],
        )?;
        let p = poly(cg, f, &COEF)?;
        return cg.call_exact(
            "llvm.x86.avx512.mask.scalef.ps.512",
            &[p.into(), t.into(), p.into(), all.into(), cur_direction.into()],
        );
    }
    let x = t;
    let t = clamp(cg, t, -150.0, 128.0)?;
    let k = cg.call("llvm.floor", &[t])?;
    let p = poly(cg, cg.b.build_float_sub(t, k, "").map_err(err)?, &COEF)?;
    // k = 128 gives inf, k = -150 gives 0.
    keep_nan(cg, x, scale2(cg, p, k)?)
}

/// ln x: x = (1 + f) 2^e with 1 + f in [sqrt(1/2), sqrt(2)), ln(1 + f) = f - f^2/2 + f^3 P(f)
/// with the degree-8 polynomial P of Cephes' logf (no division), ln 2 in two parts. NaN
/// for x < 0 and -inf at 0 are set explicitly.
pub fn log<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let bits = bits(cg, x)?;
    let e = cg.b.build_right_shift(bits, ci(cg, 23, n), false, "").map_err(err)?;
    let e = cg.b.build_and(e, ci(cg, 255, n), "").map_err(err)?;
    let e = cg.b.build_int_nsw_sub(e, ci(cg, 127, n), "").map_err(err)?;
    let m = cg.b.build_and(bits, ci(cg, 0x007f_ffff, n), "").map_err(err)?;
    let m = float_from_bits(cg, cg.b.build_or(m, ci(cg, 0x3f80_0000, n), "").map_err(err)?)?;
    // Move m from [1, 2) to [sqrt(1/2), sqrt(2)).
    let big =
        cg.b.build_float_compare(inkwell::FloatPredicate::OGT, m, c(cg, std::f64::consts::SQRT_2, n), "")
            .map_err(err)?;
    let m =
        cg.b.build_select(big, cg.b.build_float_mul(m, c(cg, 0.5, n), "").map_err(err)?, m, "")
            .map_err(err)?
            .into_vector_value();
    let e1 = cg.b.build_int_nsw_add(e, ci(cg, 1, n), "").map_err(err)?;
    let e = cg.b.build_select(big, e1, e, "").map_err(err)?.into_vector_value();
    let ef = cg.b.build_signed_int_to_float(e, cg.f32.vec_type(n), "").map_err(err)?;
    let f = cg.b.build_float_sub(m, c(cg, 1.0, n), "").map_err(err)?;
    let f2 = cg.b.build_float_mul(f, f, "").map_err(err)?;
    let p = poly(
        cg,
        f,
        &[
            3.333_333_117_4e-1,
            -2.499_999_399_3e-1,
            2.000_071_476_5e-1,
            -1.666_805_766_5e-1,
            1.424_932_278_7e-1,
            -1.242_014_084_6e-1,
            1.167_699_874e-1,
            -1.151_461_031e-1,
            7.037_683_629_2e-2,
        ],
    )?;
    let y = cg.b.build_float_mul(cg.b.build_float_mul(f, f2, "").map_err(err)?, p, "").map_err(err)?;
    let y = fma(cg, ef, c(cg, -2.121_944_40e-4, n), y)?;
    let y = fma(cg, f2, c(cg, -0.5, n), y)?;
    let y = cg.b.build_float_add(f, y, "").map_err(err)?;
    let y = fma(cg, ef, c(cg, 0.693_359_375, n), y)?;
    // log(0) = -inf, log(negative or NaN) = NaN, log(inf) = inf.
    let zero = cg.b.build_float_compare(inkwell::FloatPredicate::OEQ, x, c(cg, 0.0, n), "").map_err(err)?;
    let y = cg.b.build_select(zero, c(cg, f64::NEG_INFINITY, n), y, "").map_err(err)?.into_vector_value();
    let bad = cg.b.build_float_compare(inkwell::FloatPredicate::ULT, x, c(cg, 0.0, n), "").map_err(err)?;
    let y = cg.b.build_select(bad, c(cg, f64::NAN, n), y, "").map_err(err)?.into_vector_value();
    let inf = cg.b.build_float_compare(inkwell::FloatPredicate::OEQ, x, c(cg, f64::INFINITY, n), "").map_err(err)?;
    Ok(cg.b.build_select(inf, x, y, "").map_err(err)?.into_vector_value())
}

/// softplus(x) = ln(1 + e^x) as max(x, 0) + ln(1 + u) with u = e^-|x| in (0, 1], which
/// needs no division and no exponent extraction: ln(1 + u) = ln(1 + f) with f = u below
/// sqrt 2 - 1, and ln 2 + ln(1 + f) with f = (u - 1) / 2 (exact) above, so f stays in
/// [-0.293, 0.414], where ln(1 + f) = f + f^2 S(f) with S a degree-8 minimax polynomial
/// (relative error 4e-9). For x > 20 this is x itself in f32, as torch's threshold gives.
pub fn softplus<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<VectorValue<'ctx>> {
    let n = x.get_type().get_size();
    let a = cg.call("llvm.fabs", &[x])?;
    let a = at_most(cg, a, -EXP_MIN)?;
    let u = exp_in_range(cg, cg.b.build_float_neg(a, "").map_err(err)?)?;
    let big =
        cg.b.build_float_compare(inkwell::FloatPredicate::OGE, u, c(cg, std::f64::consts::SQRT_2 - 1.0, n), "")
            .map_err(err)?;
    let f = cg.b.build_select(big, fma(cg, u, c(cg, 0.5, n), c(cg, -0.5, n))?, u, "").map_err(err)?.into_vector_value();
    let s = poly(
        cg,
        f,
        &[
            -0.499_999_880_790_710_45,
            0.333_333_253_860_473_63,
            -0.250_015_825_033_187_87,
            0.200_019_747_018_814_1,
            -0.166_090_816_259_384_16,
            0.141_818_135_976_791_38,
            -0.132_429_867_982_864_38,
            0.129_044_994_711_875_92,
            -0.076_218_590_140_342_71,
        ],
    )?;
    let l = fma(cg, cg.b.build_float_mul(f, s, "").map_err(err)?, f, f)?;
    let ln2 = cg.b.build_select(big, c(cg, std::f64::consts::LN_2, n), c(cg, 0.0, n), "").map_err(err)?;
    let l = cg.b.build_float_add(l, ln2.into_vector_value(), "").map_err(err)?;
    let pos = cg.call("llvm.maxnum", &[x, c(cg, 0.0, n)])?;
    let y = cg.b.build_float_add(pos, l, "").map_err(err)?;
    if cg.avx512 && n == 16 {
        return Ok(y);
    }
    keep_nan(cg, x, y)
}

/// 2/pi in 24-bit words: bits 24k+1 to 24k+24 after the binary point in word k.
const TWO_OVER_PI: [u32; 9] =
    [0xa2_f983, 0x6e_4e44, 0x15_29fc, 0x27_57d1, 0xf5_34dd, 0xc0_db62, 0x95_993c, 0x43_9041, 0xfe_5163];

/// (sin x, cos x) over the whole f32 range: x = q pi/2 + r with |r| <= pi/4, Taylor
/// polynomials of r, and the quadrant q mod 4 choosing signs and which one. The reduction
/// is exact in f64 for every f32 x (a Payne-Hanek reduction without integers): each product
/// of x (24 bits) with a 24-bit word of 2/pi is exact, and so is its remainder mod 4, so
/// x 2/pi mod 4 is their sum, to about 2^-45; words whose product is a multiple of 4 give 0.
/// NaN and inf give NaN.
///
/// Emitted once per vector width as an internal function (not inlined; no memory access,
/// so calls on the same x are merged): the reduction is about 60 f64 operations, and
/// S4D's hoisted values call it at every chunk of the state.
pub fn sin_cos<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<(VectorValue<'ctx>, VectorValue<'ctx>)> {
    use inkwell::attributes::{Attribute, AttributeLoc};
    let n = x.get_type().get_size();
    let name = format!("ssmc.sin_cos.v{n}");
    let vt = cg.f32.vec_type(n);
    let pair = cg.ctx.struct_type(&[vt.into(), vt.into()], false);
    let f = match cg.module.get_function(&name) {
        Some(f) => f,
        None => {
            let f = cg.module.add_function(
                &name,
                pair.fn_type(&[vt.into()], false),
                Some(inkwell::module::Linkage::Internal),
            );
            for (attr, value) in [("noinline", 0), ("nounwind", 0), ("willreturn", 0), ("memory", 0)] {
                let kind = Attribute::get_named_enum_kind_id(attr);
                f.add_attribute(AttributeLoc::Function, cg.ctx.create_enum_attribute(kind, value));
            }
            let back = cg.b.get_insert_block().ok_or_else(|| CodegenError::Llvm("builder is not positioned".into()))?;
            cg.b.position_at_end(cg.ctx.append_basic_block(f, "entry"));
            let arg = f.get_first_param().ok_or_else(|| CodegenError::Llvm("sin_cos has a parameter".into()))?;
            let (s, c) = sin_cos_inline(cg, arg.into_vector_value())?;
            let out = cg.b.build_insert_value(pair.get_undef(), s, 0, "").map_err(err)?;
            let out = cg.b.build_insert_value(out, c, 1, "").map_err(err)?;
            cg.b.build_return(Some(&out)).map_err(err)?;
            cg.b.position_at_end(back);
            f
        }
    };
    let call = cg.b.build_call(f, &[x.into()], "").map_err(err)?;
    let out = match call.try_as_basic_value() {
        inkwell::values::ValueKind::Basic(v) => v.into_struct_value(),
        inkwell::values::ValueKind::Instruction(_) => {
            return Err(CodegenError::Llvm("sin_cos returned nothing".into()))
        }
    };
    let part =
        |k: u32| -> R<VectorValue<'ctx>> { Ok(cg.b.build_extract_value(out, k, "").map_err(err)?.into_vector_value()) };
    Ok((part(0)?, part(1)?))
}

/// The body of [`sin_cos`].
fn sin_cos_inline<'ctx>(cg: &Cg<'_, 'ctx>, x: VectorValue<'ctx>) -> R<(VectorValue<'ctx>, VectorValue<'ctx>)> {
    let n = x.get_type().get_size();
    let f64t = cg.f32.get_context().f64_type();
    let vd = f64t.vec_type(n);
    let d = |v: f64| VectorType::const_vector(&vec![f64t.const_float(v); n as usize]);
    let xd = cg.b.build_float_ext(x, vd, "").map_err(err)?;
    let mod4 = |p: VectorValue<'ctx>| -> R<VectorValue<'ctx>> {
        let quarter = cg.call("llvm.floor", &[cg.b.build_float_mul(p, d(0.25), "").map_err(err)?])?;
        cg.b.build_float_sub(p, cg.b.build_float_mul(quarter, d(4.0), "").map_err(err)?, "").map_err(err)
    };
    let mut y = d(0.0);
    for (k, w) in TWO_OVER_PI.iter().enumerate() {
        let word = f64::from(*w) * 2f64.powi(-24 * (k as i32 + 1));
        let p = cg.b.build_float_mul(xd, d(word), "").map_err(err)?;
        y = cg.b.build_float_add(y, mod4(p)?, "").map_err(err)?;
    }
    let y = mod4(y)?;
    let q = cg.call("llvm.rint", &[y])?;
    let f = cg.b.build_float_sub(y, q, "").map_err(err)?;
    let r = cg.b.build_float_mul(f, d(std::f64::consts::FRAC_PI_2), "").map_err(err)?;
    let r = cg.b.build_float_trunc(r, cg.f32.vec_type(n), "").map_err(err)?;
    // q of NaN (x NaN or inf) is 0 before the conversion, which would give poison; r is NaN.
    let ord = cg.b.build_float_compare(inkwell::FloatPredicate::ORD, q, q, "").map_err(err)?;
    let q = cg.b.build_select(ord, q, d(0.0), "").map_err(err)?.into_vector_value();
    let qi = cg.b.build_float_to_signed_int(q, cg.i32.vec_type(n), "").map_err(err)?;
    let r2 = cg.b.build_float_mul(r, r, "").map_err(err)?;
    let s =
        cg.b.build_float_mul(r, poly(cg, r2, &[1.0, -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362_880.0])?, "")
            .map_err(err)?;
    let c = poly(cg, r2, &[1.0, -0.5, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40320.0, -1.0 / 3_628_800.0])?;
    let qi = cg.b.build_and(qi, ci(cg, 3, n), "").map_err(err)?;
    let is = |k: i64| cg.b.build_int_compare(inkwell::IntPredicate::EQ, qi, ci(cg, k, n), "").map_err(err);
    let neg = |v: VectorValue<'ctx>| cg.b.build_float_neg(v, "").map_err(err);
    let pick = |mask, a: VectorValue<'ctx>, b: VectorValue<'ctx>| -> R<VectorValue<'ctx>> {
        Ok(cg.b.build_select(mask, a, b, "").map_err(err)?.into_vector_value())
    };
    // q: 0 -> (s, c), 1 -> (c, -s), 2 -> (-s, -c), 3 -> (-c, s)
    let sin = pick(is(1)?, c, s)?;
    let sin = pick(is(2)?, neg(s)?, sin)?;
    let sin = pick(is(3)?, neg(c)?, sin)?;
    let cos = pick(is(1)?, neg(s)?, c)?;
    let cos = pick(is(2)?, neg(c)?, cos)?;
    let cos = pick(is(3)?, s, cos)?;
    Ok((sin, cos))
}
