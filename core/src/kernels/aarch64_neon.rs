//! aarch64 NEON bodies, with and without the dot-product extension.
//!
//! Integer matmul, per 32-value block and output: the 8 exact i32 lane
//! sums of 4 consecutive products (docs/numerics.md) in two vectors (lanes
//! 0-3 from values 0..16, lanes 4-7 from values 16..32):
//! * plain NEON: `vmull_s8` / `vmull_high_s8` (i16 products), `vpaddq_s16`
//!   (pairs, at most 2 * 128 * 127 = 32512, no overflow), `vpaddlq_s16`;
//! * dotprod: `sdot` on 16 bytes gives exactly the 4-element lane sums
//!   (reached through `asm!`: the intrinsic is not stable).
//!
//! Q4_0's `- 8` is applied to the nibbles, so every kind multiplies signed
//! bytes. For Q8_0 and Q4_1 each output keeps its own 8-lane accumulator
//! (two vectors), updated with `vfmaq_f32` (fused, rounding as x86's FMA)
//! block after block and reduced by [`hsum8`]; for Q4_0 the 8 lane sums
//! are added up (exactly, in i32) and the block total goes into the
//! output's single accumulator by one fused `fmadd`. These are the orders of
//! roundings of docs/numerics.md, so results are bit-identical to the
//! scalar path (and to x86). Weights in the 16-row panel layout (an x86
//! layout) are multiplied by the scalar bodies. F16 <-> f32
//! conversions use `fcvtl` / `fcvtn` through `asm!` (their intrinsics need
//! the unstable `f16` type); both are base ARMv8 instructions.
//!
//! Float dot products (F32 / F16 / BF16 weights, `kv_scores`) follow the
//! same canonical order as the other paths: four 8-lane accumulators (two
//! vectors each) per output, `vfmaq_f32`, [`reduce32`], the `n % 32` tail by
//! scalar `fmadd` (see [`flt_tile`]).
//!
//! The bodies are `#[target_feature(enable = "neon")]` functions generic
//! over `DOT`; `sdot` is assembled with `.arch_extension dotprod`, so the
//! body compiles whether or not it is inlined into its `"neon,dotprod"`
//! wrapper. They are reached only through [`Neon`], a token that exists only
//! when the CPU has the features.

use core::arch::aarch64::*;
use core::arch::asm;

use super::act::{self, BLOCK_BYTES, D_AT, S_AT};
use super::layout::PANEL_ROWS;
use super::matmul::{ActRows, FltKind, IntKind, Isa, Panels};
use super::KvType;
use crate::quant::{f16_to_f32, QK};

/// Proof that the running CPU has NEON, and dotprod if `DOT`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon<const DOT: bool> {
    _private: (),
}

impl<const DOT: bool> Neon<DOT> {
    /// # Safety
    ///
    /// The running CPU must support NEON, and the dot-product extension
    /// (`FEAT_DotProd`) if `DOT`.
    pub(crate) unsafe fn new() -> Self {
        Neon { _private: () }
    }
}

const K_Q8_0: u8 = 0;
const K_Q4_0: u8 = 1;
const K_Q4_1: u8 = 2;

const F_F32: u8 = 0;
const F_F16: u8 = 1;
const F_BF16: u8 = 2;

/// Instantiates an integer body for each weight kind, under the target
/// features that match `DOT`.
macro_rules! int_wrappers {
    ($plain:ident, $dot:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[target_feature(enable = "neon")]
        unsafe fn $plain<const K: u8>($($arg: $ty),*) -> $ret {
            // SAFETY: DOT = false needs only NEON, which the caller
            // guarantees; the other requirements are the caller's.
            unsafe { $body::<K, false>($($arg),*) }
        }

        #[target_feature(enable = "neon,dotprod")]
        unsafe fn $dot<const K: u8>($($arg: $ty),*) -> $ret {
            // SAFETY: this function's contract is the body's with DOT = true.
            unsafe { $body::<K, true>($($arg),*) }
        }
    };
}

int_wrappers!(int_1x1_neon, int_1x1_dot, int_1x1, (w: &[u8], a: &[u8], nb: usize) -> f32);
int_wrappers!(int_8x1_neon, int_8x1_dot, int_8x1, (w: &[&[u8]; 8], next: &[u8], a: &[u8], nb: usize, out: &mut [f32; 8]) -> ());
int_wrappers!(int_4x2_neon, int_4x2_dot, int_4x2, (w: &[&[u8]; 4], next: &[u8], a: &[&[u8]; 2], nb: usize, out: &mut [f32; 8]) -> ());

/// `$call` with the weight kind as a const generic.
macro_rules! by_kind {
    ($kind:expr, $f:ident, ($($arg:expr),*)) => {
        match $kind {
            IntKind::Q8_0 => $f::<K_Q8_0>($($arg),*),
            IntKind::Q4_0 => $f::<K_Q4_0>($($arg),*),
            IntKind::Q4_1 => $f::<K_Q4_1>($($arg),*),
        }
    };
}

impl<const DOT: bool> Isa for Neon<DOT> {
    fn plain_int_tiles(&self) -> bool {
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn int_panels(
        &self,
        kind: IntKind,
        w: &Panels,
        a: &ActRows,
        accumulate: bool,
        state: &mut [f32],
        width: usize,
        finish: bool,
        out: &mut [f32],
    ) {
        super::scalar::Scalar.int_panels(kind, w, a, accumulate, state, width, finish, out)
    }

    fn int_rows(
        &self,
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    ) {
        // Two 8x1 tiles; rows past `n_rows` repeat row 0 (outputs unused).
        let row = |i: usize| {
            let i = if i < n_rows { i } else { 0 };
            w.get(i.saturating_mul(row_bytes)..).unwrap_or(&[])
        };
        for h in 0..2 {
            let rows: [&[u8]; 8] = core::array::from_fn(|i| row(8 * h + i));
            let mut tile = [0f32; 8];
            self.int_8x1(
                kind,
                rows,
                if h == 1 { next } else { &[] },
                a,
                nb,
                &mut tile,
            );
            out[8 * h..8 * h + 8].copy_from_slice(&tile);
        }
    }

    fn int_1x1(&self, kind: IntKind, w: &[u8], a: &[u8], nb: usize) -> f32 {
        // SAFETY: `self` exists, so the CPU has NEON and, if DOT, dotprod
        // (see `Neon::new`); the bodies check their slices.
        unsafe {
            if DOT {
                by_kind!(kind, int_1x1_dot, (w, a, nb))
            } else {
                by_kind!(kind, int_1x1_neon, (w, a, nb))
            }
        }
    }

    fn int_8x1(
        &self,
        kind: IntKind,
        w: [&[u8]; 8],
        next: &[u8],
        a: &[u8],
        nb: usize,
        out: &mut [f32; 8],
    ) {
        // SAFETY: as in `int_1x1`.
        unsafe {
            if DOT {
                by_kind!(kind, int_8x1_dot, (&w, next, a, nb, out))
            } else {
                by_kind!(kind, int_8x1_neon, (&w, next, a, nb, out))
            }
        }
    }

    fn int_4x2(
        &self,
        kind: IntKind,
        w: [&[u8]; 4],
        next: &[u8],
        a: [&[u8]; 2],
        nb: usize,
        out: &mut [f32; 8],
    ) {
        // SAFETY: as in `int_1x1`.
        unsafe {
            if DOT {
                by_kind!(kind, int_4x2_dot, (&w, next, &a, nb, out))
            } else {
                by_kind!(kind, int_4x2_neon, (&w, next, &a, nb, out))
            }
        }
    }

    fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32 {
        let mut out = [0f32; 8];
        // SAFETY: as in `int_1x1` (the float bodies need only NEON).
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 1, 1>(&[w], &[], &[x], &mut out),
                FltKind::F16 => flt_tile::<F_F16, 1, 1>(&[w], &[], &[x], &mut out),
                FltKind::BF16 => flt_tile::<F_BF16, 1, 1>(&[w], &[], &[x], &mut out),
            }
        }
        out[0]
    }

    fn flt_8x1(&self, kind: FltKind, w: [&[u8]; 8], next: &[u8], x: &[f32], out: &mut [f32; 8]) {
        // SAFETY: as in `flt_1x1`.
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 8, 1>(&w, next, &[x], out),
                FltKind::F16 => flt_tile::<F_F16, 8, 1>(&w, next, &[x], out),
                FltKind::BF16 => flt_tile::<F_BF16, 8, 1>(&w, next, &[x], out),
            }
        }
    }

    fn flt_4x2(
        &self,
        kind: FltKind,
        w: [&[u8]; 4],
        next: &[u8],
        x: [&[f32]; 2],
        out: &mut [f32; 8],
    ) {
        // SAFETY: as in `flt_1x1`.
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 4, 2>(&w, next, &x, out),
                FltKind::F16 => flt_tile::<F_F16, 4, 2>(&w, next, &x, out),
                FltKind::BF16 => flt_tile::<F_BF16, 4, 2>(&w, next, &x, out),
            }
        }
    }

    fn quantize_act_row(&self, x: &[f32], out: &mut [u8]) {
        // SAFETY: as in `flt_1x1`.
        unsafe { quantize_act_row(x, out) }
    }

    fn kv_scores(&self, ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
        // SAFETY: as in `flt_1x1`.
        unsafe { kv_scores(ty, q, k, stride, out) }
    }

    fn kv_scale(&self, ty: KvType, acc: &mut [f32], m: f32) {
        // SAFETY: `Neon` exists only where NEON is available.
        unsafe { kv_scale(ty, acc, m) }
    }

    fn kv_mad(&self, ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
        // SAFETY: as above.
        unsafe { kv_mad(ty, row, w, acc) }
    }

    fn expf(&self, x: f32) -> f32 {
        // SAFETY: `Neon` exists only where NEON is available.
        unsafe { expf_fma(x) }
    }

    fn kv_store_f16(&self, x: &[f32], out: &mut [u8]) {
        // SAFETY: as in `flt_1x1`.
        unsafe { kv_store_f16(x, out) }
    }
}

// ---------------------------------------------------------------------------
// Conversions and loads.

/// Four binary16 values to f32 (`fcvtl`, exact).
#[inline(always)]
fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl` (half to single) is a base ARMv8 AdvSIMD instruction
    // on registers only: no memory, stack or flags.
    unsafe {
        asm!("fcvtl {o:v}.4s, {i:v}.4h", o = lateout(vreg) out, i = in(vreg) h,
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// The upper four of eight binary16 values to f32 (`fcvtl2`, exact).
#[inline(always)]
fn f16x8_high_to_f32(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: as in `f16x4_to_f32`.
    unsafe {
        asm!("fcvtl2 {o:v}.4s, {i:v}.8h", o = lateout(vreg) out, i = in(vreg) h,
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// Four f32 to binary16, rounding as FPCR says (nearest even by default).
#[inline(always)]
fn f32x4_to_f16(v: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    // SAFETY: `fcvtn` (single to half) is a base ARMv8 AdvSIMD instruction
    // on registers only.
    unsafe {
        asm!("fcvtn {o:v}.4h, {i:v}.4s", o = lateout(vreg) out, i = in(vreg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// `acc + sdot(a, b)`: per 32-bit lane, the sum of four i8 products.
///
/// # Safety
///
/// The CPU must have the dot-product extension.
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the caller guarantees FEAT_DotProd; registers only.
    unsafe {
        asm!(".arch_extension dotprod", "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
             options(pure, nomem, nostack, preserves_flags));
    }
    acc
}

/// Prefetches `count` cache lines of `data` from line `first` (those that
/// exist) into L1.
#[inline(always)]
fn prefetch_lines(data: &[u8], first: usize, count: usize) {
    for line in first..first.saturating_add(count) {
        if let Some(byte) = data.get(line.saturating_mul(64)) {
            // SAFETY: `prfm` is a hint: it never faults, writes nothing and
            // touches no registers but its address operand.
            unsafe {
                asm!("prfm pldl1keep, [{p}]", p = in(reg) byte as *const u8,
                     options(nostack, readonly, preserves_flags));
            }
        }
    }
}

/// Reads a little-endian u16.
///
/// # Safety
///
/// `p` must be valid for reading 2 bytes.
#[inline(always)]
unsafe fn read_u16(p: *const u8) -> u16 {
    // SAFETY: the caller guarantees 2 readable bytes; no alignment needed.
    u16::from_le(unsafe { core::ptr::read_unaligned(p.cast::<u16>()) })
}

/// Reads 4 bytes.
///
/// # Safety
///
/// `p` must be valid for reading 4 bytes.
#[inline(always)]
unsafe fn read_4(p: *const u8) -> [u8; 4] {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { core::ptr::read_unaligned(p.cast::<[u8; 4]>()) }
}

const fn block_bytes(k: u8) -> usize {
    match k {
        K_Q8_0 => IntKind::Q8_0.block_bytes(),
        K_Q4_0 => IntKind::Q4_0.block_bytes(),
        _ => IntKind::Q4_1.block_bytes(),
    }
}

fn rows_hold(rows: &[&[u8]], nb: usize, block: usize) -> bool {
    match nb.checked_mul(block) {
        Some(need) => rows.iter().all(|r| r.len() >= need),
        None => false,
    }
}

/// A weight block: values 0..16 and 16..32 as i8 (Q4_0: nibble - 8, Q4_1:
/// nibble), scale bits, minimum bits (Q4_1).
///
/// # Safety
///
/// `p` must be valid for reading one block of kind `K`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_weight_block<const K: u8>(p: *const u8) -> (int8x16_t, int8x16_t, u16, u16) {
    // SAFETY: a block is its header and 32 (Q8_0) or 16 (Q4_*) value bytes,
    // all readable per the caller.
    unsafe {
        let d = read_u16(p);
        if K == K_Q8_0 {
            (vld1q_s8(p.add(2).cast()), vld1q_s8(p.add(18).cast()), d, 0)
        } else {
            let (m, qs) = if K == K_Q4_1 {
                (read_u16(p.add(2)), p.add(4))
            } else {
                (0, p.add(2))
            };
            let packed = vld1q_u8(qs);
            let lo = vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0f)));
            let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(packed));
            if K == K_Q4_0 {
                let eight = vdupq_n_s8(8);
                (vsubq_s8(lo, eight), vsubq_s8(hi, eight), d, m)
            } else {
                (lo, hi, d, m)
            }
        }
    }
}

/// The 8 exact lane sums of one weight block times one activation block:
/// lanes 0-3 (values 0..16) and 4-7 (values 16..32), lane `l` the sum of
/// values `4l..4l+4`.
///
/// # Safety
///
/// If `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn block_products<const DOT: bool>(
    w: (int8x16_t, int8x16_t),
    a: (int8x16_t, int8x16_t),
) -> (int32x4_t, int32x4_t) {
    if DOT {
        let zero = vdupq_n_s32(0);
        // SAFETY: DOT implies dotprod, per the caller.
        unsafe { (sdot(zero, w.0, a.0), sdot(zero, w.1, a.1)) }
    } else {
        (lane_sums16(w.0, a.0), lane_sums16(w.1, a.1))
    }
}

/// Sums of 4 consecutive products of 16 i8 pairs, without dotprod.
#[target_feature(enable = "neon")]
#[inline]
fn lane_sums16(w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(w), vget_low_s8(a));
    let hi = vmull_high_s8(w, a);
    // Products 2k and 2k+1, then pairs of those.
    vpaddlq_s16(vpaddq_s16(lo, hi))
}

#[target_feature(enable = "neon")]
#[inline]
fn f32x4(v: [f32; 4]) -> float32x4_t {
    // SAFETY: `v` is 4 f32.
    unsafe { vld1q_f32(v.as_ptr()) }
}

#[target_feature(enable = "neon")]
#[inline]
fn f16x4(v: [u16; 4]) -> float32x4_t {
    // SAFETY: `v` is 4 u16.
    f16x4_to_f32(unsafe { vld1_u16(v.as_ptr()) })
}

#[target_feature(enable = "neon")]
#[inline]
fn i32x4(v: [i32; 4]) -> int32x4_t {
    // SAFETY: `v` is 4 i32.
    unsafe { vld1q_s32(v.as_ptr()) }
}

// ---------------------------------------------------------------------------
// Integer matmul.

/// `NT x RT` outputs (`NT * RT <= 8`): `out[r * NT + n] = dot(w[n], a[r])`
/// (the other entries of `out` are unspecified). Every output is computed
/// by the same sequence of f32 operations whatever `NT` and `RT` are.
///
/// # Safety
///
/// If `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn int_tile<const K: u8, const NT: usize, const RT: usize, const DOT: bool>(
    w: &[&[u8]; NT],
    next: &[u8],
    a: &[&[u8]; RT],
    nb: usize,
    out: &mut [f32; 8],
) {
    const { assert!(NT * RT <= 8 && NT * RT > 0) };
    let bb = block_bytes(K);
    if !rows_hold(w, nb, bb) || !rows_hold(a, nb, BLOCK_BYTES) {
        *out = [0.0; 8];
        return;
    }
    let zero = vdupq_n_f32(0.0);
    // One 8-lane accumulator (lanes 0-3, 4-7) per output; Q4_1's `summs`
    // of output p in lane p % 4 of summs[p / 4]; Q4_0's single
    // accumulators in `single`.
    let mut acc = [[(zero, zero); NT]; RT];
    let mut single = [[0f32; NT]; RT];
    let mut summs = [zero; 2];
    // Lane p of the per-block scalars is output (row p / NT, feature
    // p % NT); lanes past NT * RT hold copies and are never read.
    let row_of = |p: usize| if p < NT * RT { p / NT } else { 0 };
    let prefetch_step = next.len().div_ceil(64).div_ceil(nb.max(1));
    for b in 0..nb {
        prefetch_lines(next, b * prefetch_step, prefetch_step);
        let mut av = [(vdupq_n_s8(0), vdupq_n_s8(0)); RT];
        let mut da = [0f32; RT];
        let mut sa = [0f32; RT];
        for r in 0..RT {
            // SAFETY: rows_hold checked nb activation blocks per row; b < nb.
            unsafe {
                let p = a[r].as_ptr().add(b * BLOCK_BYTES);
                av[r] = (vld1q_s8(p.cast()), vld1q_s8(p.add(16).cast()));
                da[r] = f32::from_ne_bytes(read_4(p.add(D_AT)));
                sa[r] = f32::from_ne_bytes(read_4(p.add(S_AT)));
            }
        }
        let mut dw = [0u16; NT];
        let mut mw = [0u16; NT];
        for n in 0..NT {
            // SAFETY: rows_hold checked nb blocks per weight row; b < nb; the
            // header is the first 2 (Q4_1: 4) bytes of a block.
            unsafe {
                let p = w[n].as_ptr().add(b * bb);
                dw[n] = read_u16(p);
                if K == K_Q4_1 {
                    mw[n] = read_u16(p.add(2));
                }
            }
        }
        // dd = f32(d_w) * d_a for the 8 (or fewer) outputs, 4 at a time.
        let mut dd = [0f32; 8];
        for (h, half) in dd.chunks_exact_mut(4).enumerate() {
            let dwv = f16x4(core::array::from_fn(|p| dw[(4 * h + p) % NT]));
            let dav = f32x4(core::array::from_fn(|p| da[row_of(4 * h + p)]));
            // SAFETY: `half` is 4 f32.
            unsafe { vst1q_f32(half.as_mut_ptr(), vmulq_f32(dwv, dav)) };
        }
        for n in 0..NT {
            // SAFETY: as for the header above.
            let (lo, hi, _, _) = unsafe { load_weight_block::<K>(w[n].as_ptr().add(b * bb)) };
            for r in 0..RT {
                // SAFETY: DOT implies dotprod, per the caller.
                let (s0, s1) = unsafe { block_products::<DOT>((lo, hi), av[r]) };
                if K == K_Q4_0 {
                    // The block total (exact), one fused multiply-add.
                    let total = vaddvq_s32(vaddq_s32(s0, s1));
                    single[r][n] = super::scalar::fmaf(total as f32, dd[r * NT + n], single[r][n]);
                    continue;
                }
                let ddv = vdupq_n_f32(dd[r * NT + n]);
                let (a0, a1) = acc[r][n];
                acc[r][n] = (
                    vfmaq_f32(a0, ddv, vcvtq_f32_s32(s0)),
                    vfmaq_f32(a1, ddv, vcvtq_f32_s32(s1)),
                );
            }
        }
        if K == K_Q4_1 {
            // summs + m_w * s_a: a multiply and an add, not fused.
            for (h, sm) in summs.iter_mut().enumerate() {
                let mwv = f16x4(core::array::from_fn(|p| mw[(4 * h + p) % NT]));
                let sav = f32x4(core::array::from_fn(|p| sa[row_of(4 * h + p)]));
                *sm = vaddq_f32(*sm, vmulq_f32(mwv, sav));
            }
        }
    }
    let mut sm = [0f32; 8];
    let (lo, hi) = sm.split_at_mut(4);
    // SAFETY: each half of `sm` is 4 f32.
    unsafe {
        vst1q_f32(lo.as_mut_ptr(), summs[0]);
        vst1q_f32(hi.as_mut_ptr(), summs[1]);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (n, &(a0, a1)) in acc_r.iter().enumerate() {
            let p = r * NT + n;
            out[p] = match K {
                K_Q4_1 => hsum8(a0, a1) + sm[p],
                K_Q4_0 => single[r][n],
                _ => hsum8(a0, a1),
            };
        }
    }
}

/// # Safety
///
/// If `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn int_8x1<const K: u8, const DOT: bool>(
    w: &[&[u8]; 8],
    next: &[u8],
    a: &[u8],
    nb: usize,
    out: &mut [f32; 8],
) {
    // SAFETY: same contract.
    unsafe { int_tile::<K, 8, 1, DOT>(w, next, &[a], nb, out) }
}

/// # Safety
///
/// If `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn int_4x2<const K: u8, const DOT: bool>(
    w: &[&[u8]; 4],
    next: &[u8],
    a: &[&[u8]; 2],
    nb: usize,
    out: &mut [f32; 8],
) {
    // SAFETY: same contract.
    unsafe { int_tile::<K, 4, 2, DOT>(w, next, a, nb, out) }
}

/// One output: the 1x1 tile.
///
/// # Safety
///
/// If `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn int_1x1<const K: u8, const DOT: bool>(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut out = [0f32; 8];
    // SAFETY: same contract.
    unsafe { int_tile::<K, 1, 1, DOT>(&[w], &[], &[a], nb, &mut out) };
    out[0]
}

// ---------------------------------------------------------------------------
// Float matmul.

const fn flt_bytes(f: u8) -> usize {
    match f {
        F_F32 => 4,
        _ => 2,
    }
}

/// 8 weights of kind `F` as two f32 vectors.
///
/// # Safety
///
/// `p` must be valid for reading 8 values of kind `F`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_flt8<const F: u8>(p: *const u8) -> (float32x4_t, float32x4_t) {
    // SAFETY: 32 or 16 readable bytes, per the caller.
    unsafe {
        match F {
            F_F32 => (vld1q_f32(p.cast()), vld1q_f32(p.add(16).cast())),
            F_F16 => {
                let h = vld1q_u16(p.cast());
                (f16x4_to_f32(vget_low_u16(h)), f16x8_high_to_f32(h))
            }
            _ => {
                let h = vld1q_u16(p.cast());
                (
                    vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
                    vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
                )
            }
        }
    }
}

/// Sum of 8 lanes (`a` = lanes 0..4, `b` = 4..8) in the same order as the
/// AVX2 path: `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
#[target_feature(enable = "neon")]
#[inline]
fn hsum8(a: float32x4_t, b: float32x4_t) -> f32 {
    let s = vaddq_f32(a, b);
    let h = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    vpadds_f32(h)
}

/// 8 f32 lanes as two vectors (lanes 0..4, 4..8).
type F32x8 = (float32x4_t, float32x4_t);

/// The canonical reduction of a float dot's 4 x 8 partial sums
/// (docs/numerics.md): `acc0 += acc2; acc1 += acc3; acc0 += acc1`, then
/// `t[l] = acc0[l] + acc0[l + 4]` and `(t0 + t1) + (t2 + t3)` (two
/// pairwise adds), as ggml's x86 `GGML_F32x8_REDUCE`.
#[target_feature(enable = "neon")]
#[inline]
fn reduce32(acc: [F32x8; 4]) -> f32 {
    let add = |a: F32x8, b: F32x8| (vaddq_f32(a.0, b.0), vaddq_f32(a.1, b.1));
    let s = add(add(acc[0], acc[2]), add(acc[1], acc[3]));
    let t = vaddq_f32(s.0, s.1);
    let p = vpaddq_f32(t, t);
    vpadds_f32(vget_low_f32(p))
}

/// Weight `i` of kind `F` (exactly as [`load_flt8`] converts it); 0 past
/// the end of `w`.
#[inline(always)]
fn flt_at<const F: u8>(w: &[u8], i: usize) -> f32 {
    let vb = flt_bytes(F);
    match w.get(i.saturating_mul(vb)..).unwrap_or(&[]) {
        [a, b, c, d, ..] if F == F_F32 => f32::from_le_bytes([*a, *b, *c, *d]),
        [a, b, ..] if F == F_F16 => f16_to_f32(u16::from_le_bytes([*a, *b])),
        [a, b, ..] if F == F_BF16 => crate::quant::bf16_to_f32(u16::from_le_bytes([*a, *b])),
        _ => 0.0,
    }
}

/// How many of a float dot's 4 accumulators (two vectors each) a tile of
/// `outputs` outputs keeps in registers at once: 4 for up to 2 outputs, 2
/// for up to 4, else 1.
const fn acc_group(outputs: usize) -> usize {
    if outputs <= 2 {
        4
    } else if outputs <= 4 {
        2
    } else {
        1
    }
}

/// `out[r * NT + n] = dot(w[n], x[r])` in the canonical order
/// (docs/numerics.md), as the AVX2 path: accumulator `j` of an output
/// takes the 8 values at `32 b + 8 j` for every `b` (two `vfmaq_f32`), in
/// order of `b`; [`acc_group`] accumulators of every output at a time over
/// the whole row; then [`reduce32`] and the `cols % 32` tail by scalar FMA.
///
/// # Safety
///
/// None beyond NEON (slices are checked).
#[target_feature(enable = "neon")]
unsafe fn flt_tile<const F: u8, const NT: usize, const RT: usize>(
    w: &[&[u8]; NT],
    next: &[u8],
    x: &[&[f32]; RT],
    out: &mut [f32; 8],
) {
    const { assert!(NT * RT <= 8 && NT * RT > 0) };
    let cols = x[0].len();
    let vb = flt_bytes(F);
    if x.iter().any(|r| r.len() != cols) || !rows_hold(w, cols, vb) {
        *out = [0.0; 8];
        return;
    }
    let g = const { acc_group(NT * RT) };
    let main = cols / 32 * 32;
    let zero = vdupq_n_f32(0.0);
    let mut parts = [[[(zero, zero); 4]; NT]; RT];
    let prefetch_step = next.len().div_ceil(64).div_ceil((cols / 8).max(1));
    let mut step = 0;
    for j0 in (0..4).step_by(g) {
        // acc[jj][r][n]: accumulator j0 + jj of output (r, n).
        let mut acc = [[[(zero, zero); NT]; RT]; 4];
        let mut b = 0;
        while b < main {
            for (jj, acc_j) in acc.iter_mut().enumerate().take(g) {
                prefetch_lines(next, step * prefetch_step, prefetch_step);
                step += 1;
                let k = b + 8 * (j0 + jj);
                // SAFETY: k + 8 <= main <= cols values in every row.
                let wv: [F32x8; NT] =
                    core::array::from_fn(|n| unsafe { load_flt8::<F>(w[n].as_ptr().add(k * vb)) });
                for r in 0..RT {
                    // SAFETY: as above.
                    let (x0, x1) = unsafe {
                        (
                            vld1q_f32(x[r].as_ptr().add(k)),
                            vld1q_f32(x[r].as_ptr().add(k + 4)),
                        )
                    };
                    for n in 0..NT {
                        let a = &mut acc_j[r][n];
                        *a = (vfmaq_f32(a.0, wv[n].0, x0), vfmaq_f32(a.1, wv[n].1, x1));
                    }
                }
            }
            b += 32;
        }
        for (jj, acc_j) in acc.iter().enumerate().take(g) {
            for r in 0..RT {
                for n in 0..NT {
                    if let Some(p) = parts[r][n].get_mut(j0 + jj) {
                        *p = acc_j[r][n];
                    }
                }
            }
        }
    }
    for r in 0..RT {
        for n in 0..NT {
            let mut s = reduce32(parts[r][n]);
            for e in main..cols {
                let xe = x[r].get(e).copied().unwrap_or(0.0);
                s = super::scalar::fmaf(flt_at::<F>(w[n], e), xe, s);
            }
            out[r * NT + n] = s;
        }
    }
}

// ---------------------------------------------------------------------------
// Activations and KV cache.

/// # Safety
///
/// None beyond NEON (slices are checked).
#[target_feature(enable = "neon")]
unsafe fn quantize_act_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
        let Ok(ob) = <&mut [u8; BLOCK_BYTES]>::try_from(ob) else {
            break;
        };
        // SAFETY: xb is 32 f32.
        let v: [float32x4_t; 8] =
            core::array::from_fn(|i| unsafe { vld1q_f32(xb.as_ptr().add(4 * i)) });
        let mut m = vabsq_f32(v[0]);
        for vi in &v[1..] {
            m = vmaxq_f32(m, vabsq_f32(*vi));
        }
        let (d, id) = act::scale(vmaxvq_f32(m));
        let mut q = [vdupq_n_s32(0); 8];
        for (qi, vi) in q.iter_mut().zip(&v) {
            // One f32 multiply, then FCVTNS: round half to even, whatever
            // FPCR says.
            let r = vcvtnq_s32_f32(vmulq_n_f32(*vi, id));
            *qi = vminq_s32(vmaxq_s32(r, vdupq_n_s32(-127)), vdupq_n_s32(127));
        }
        let h: [int16x8_t; 4] =
            core::array::from_fn(|i| vcombine_s16(vqmovn_s32(q[2 * i]), vqmovn_s32(q[2 * i + 1])));
        let b0 = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
        let b1 = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
        let mut values = [0i8; QK];
        // SAFETY: `values` is 32 bytes.
        unsafe {
            vst1q_s8(values.as_mut_ptr(), b0);
            vst1q_s8(values.as_mut_ptr().add(16), b1);
        }
        for (o, v) in ob.iter_mut().zip(values) {
            *o = v as u8;
        }
        act::write_tail(ob, d, &values);
    }
}

/// `dot(q, row)` for a KV row of `q.len()` values, in the canonical order.
/// A Q8_0 block is one 32-value group: its 8-value chunk `j` goes to
/// accumulator `j`, each key `f32(d) * q` (exact).
///
/// # Safety
///
/// None beyond NEON (slices are checked).
#[target_feature(enable = "neon")]
unsafe fn kv_dot(ty: KvType, q: &[f32], row: &[u8]) -> f32 {
    let mut out = [0f32; 8];
    // SAFETY: NEON, per the caller.
    unsafe {
        match ty {
            KvType::F32 => flt_tile::<F_F32, 1, 1>(&[row], &[], &[q], &mut out),
            KvType::F16 => flt_tile::<F_F16, 1, 1>(&[row], &[], &[q], &mut out),
            KvType::Q8_0 => {
                let nb = q.len() / QK;
                if !rows_hold(&[row], nb, 34) || nb * QK != q.len() {
                    return 0.0;
                }
                let zero = vdupq_n_f32(0.0);
                let mut acc = [(zero, zero); 4];
                for b in 0..nb {
                    // SAFETY: the row holds nb blocks, q nb * 32 values.
                    let p = row.as_ptr().add(b * 34);
                    let d = vdupq_n_f32(f16_to_f32(read_u16(p)));
                    let k8 = [vld1q_s8(p.add(2).cast()), vld1q_s8(p.add(18).cast())];
                    for (c, kv) in k8.iter().enumerate() {
                        let k16 = [vmovl_s8(vget_low_s8(*kv)), vmovl_high_s8(*kv)];
                        for (e, k) in k16.iter().enumerate() {
                            // Values 16c + 8e .. + 8: accumulator 2c + e.
                            let base = b * QK + 16 * c + 8 * e;
                            let lo = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(*k))), d);
                            let hi = vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(*k)), d);
                            let a = &mut acc[2 * c + e];
                            *a = (
                                vfmaq_f32(a.0, vld1q_f32(q.as_ptr().add(base)), lo),
                                vfmaq_f32(a.1, vld1q_f32(q.as_ptr().add(base + 4)), hi),
                            );
                        }
                    }
                }
                out[0] = reduce32(acc);
            }
        }
    }
    out[0]
}

/// # Safety
///
/// None beyond NEON (slices are checked by the caller and here).
#[target_feature(enable = "neon")]
unsafe fn kv_scores(ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
    for (t, o) in out.iter_mut().enumerate() {
        let row = k.get(t.saturating_mul(stride)..).unwrap_or(&[]);
        // SAFETY: NEON, per the caller.
        *o = unsafe { kv_dot(ty, q, row) };
    }
}

/// 4 values of a KV row starting at value `i` (`i % 4 == 0`).
///
/// # Safety
///
/// The row must hold values `i..i + 4` of type `ty`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn kv_load4(ty: KvType, row: *const u8, i: usize) -> float32x4_t {
    // SAFETY: the bytes of values i..i+4 (and their Q8_0 block's scale) are
    // readable, per the caller.
    unsafe {
        match ty {
            KvType::F32 => vld1q_f32(row.add(4 * i).cast()),
            KvType::F16 => f16x4_to_f32(vld1_u16(row.add(2 * i).cast())),
            KvType::Q8_0 => {
                let blk = row.add(i / QK * 34);
                let d = f16_to_f32(read_u16(blk));
                let q = read_4(blk.add(2 + i % QK)).map(|b| i32::from(b as i8));
                vmulq_f32(vcvtq_f32_s32(i32x4(q)), vdupq_n_f32(d))
            }
        }
    }
}

/// [`crate::math::expf`] with `fmadd` for its fused multiply-adds.
///
/// # Safety
///
/// None beyond NEON.
#[target_feature(enable = "neon")]
unsafe fn expf_fma(x: f32) -> f32 {
    crate::math::expf_with(x, |a, b, c| {
        vget_lane_f64::<0>(vfma_f64(vdup_n_f64(c), vdup_n_f64(a), vdup_n_f64(b)))
    })
}

/// Rounds 4 lanes to f16 (nearest even) and back, as ggml's F16
/// accumulator stores and reloads them.
#[inline(always)]
fn round_f16x4(x: float32x4_t) -> float32x4_t {
    f16x4_to_f32(f32x4_to_f16(x))
}

/// [`super::matmul::Isa::kv_scale`]: 4 elements at a time, the tail as the
/// scalar reference.
///
/// # Safety
///
/// None beyond NEON (slices are checked).
#[target_feature(enable = "neon")]
unsafe fn kv_scale(ty: KvType, acc: &mut [f32], m: f32) {
    let mut chunks = acc.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: `c` is 4 f32.
        unsafe {
            let mut a = vmulq_f32(vld1q_f32(c.as_ptr()), vdupq_n_f32(m));
            if ty == KvType::F16 {
                a = round_f16x4(a);
            }
            vst1q_f32(c.as_mut_ptr(), a);
        }
    }
    for a in chunks.into_remainder() {
        *a = super::scalar::kv_round(ty, *a * m);
    }
}

/// [`super::matmul::Isa::kv_mad`]: 4 elements at a time with `fmla`, the
/// tail as the scalar reference.
///
/// # Safety
///
/// None beyond NEON (slices are checked).
#[target_feature(enable = "neon")]
unsafe fn kv_mad(ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
    let dim = acc.len();
    if ty.row_bytes(dim).is_none_or(|need| row.len() < need) {
        return;
    }
    let full = dim / 4 * 4;
    for i in (0..full).step_by(4) {
        // SAFETY: values i..i + 4 are in the row (its length was checked
        // above) and in `acc` (i + 4 <= full <= dim).
        unsafe {
            let v = kv_load4(ty, row.as_ptr(), i);
            let p = acc.as_mut_ptr().add(i);
            let mut a = vfmaq_f32(vld1q_f32(p), v, vdupq_n_f32(w));
            if ty == KvType::F16 {
                a = round_f16x4(a);
            }
            vst1q_f32(p, a);
        }
    }
    super::scalar::kv_mad_from(ty, row, w, acc, full);
}

/// # Safety
///
/// None beyond NEON (slices are checked).
#[target_feature(enable = "neon")]
unsafe fn kv_store_f16(x: &[f32], out: &mut [u8]) {
    let mut xs = x.chunks_exact(4);
    let mut os = out.chunks_exact_mut(8);
    for (xc, oc) in (&mut xs).zip(&mut os) {
        // SAFETY: xc is 4 f32 and oc 8 bytes.
        unsafe { vst1_u16(oc.as_mut_ptr().cast(), f32x4_to_f16(vld1q_f32(xc.as_ptr()))) };
    }
    for (v, o) in xs
        .remainder()
        .iter()
        .zip(os.into_remainder().chunks_exact_mut(2))
    {
        o.copy_from_slice(&crate::quant::f32_to_f16(*v).to_le_bytes());
    }
}
