//! x86_64 AVX2 (+ FMA, F16C) bodies.
//!
//! Integer matmul, per 32-value block and output: the 8 exact i32 lane
//! sums of 4 consecutive products (docs/numerics.md), as ggml's
//! `mul_sum_i8_pairs_float`:
//! * Q8_0 weights: `maddubs(|w|, sign(a, w))` — the weight's magnitude as
//!   the unsigned operand (|-128| = 128 fits a u8), the activation (never
//!   -128) carrying the sign — then `madd` by ones.
//! * Q4_0 / Q4_1 weights: the nibbles (0..=15) are already unsigned:
//!   `maddubs(q, a)`; Q4_0's `- 8` is subtracted from the 16-bit pair sums
//!   as `maddubs(8, a)` (computed once per activation block).
//!
//! No 16-bit sum can saturate (at most 2 * 128 * 127 = 32512), so every
//! lane sum is exact. Each output keeps its own 8-lane accumulator, updated
//! `fma(dd, lanes, acc)` block after block and reduced by [`hsum_ps`]: the
//! canonical order of roundings, so the result is bit-identical to the
//! scalar path.
//!
//! Float dot products (F32 / F16 / BF16 weights, `kv_scores`): four 8-lane
//! accumulators per output, `vfmadd` per 8 values, reduced by [`reduce32`],
//! the `n % 32` tail by scalar FMA — the canonical order, see [`flt_tile`].
//!
//! Every body is a `#[target_feature(enable = "avx2,fma,f16c")]` function;
//! they are reached only through [`Avx2`], a token that exists only when the
//! CPU has those features.

use core::arch::x86_64::*;

use super::act::{self, BLOCK_BYTES, D_AT, S_AT};
use super::matmul::{FltKind, IntKind, Isa};
use super::KvType;
use crate::quant::{f16_to_f32, f32_to_f16, QK};

/// Proof that the running CPU has AVX2, FMA and F16C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// # Safety
    ///
    /// The running CPU must support AVX2, FMA and F16C.
    pub(crate) unsafe fn new() -> Avx2 {
        Avx2 { _private: () }
    }
}

const K_Q8_0: u8 = 0;
const K_Q4_0: u8 = 1;
const K_Q4_1: u8 = 2;

const F_F32: u8 = 0;
const F_F16: u8 = 1;
const F_BF16: u8 = 2;
/// Q8_0 cached keys (for `kv_scores`).
const K_Q8: u8 = 3;

impl Isa for Avx2 {
    fn int_1x1(&self, kind: IntKind, w: &[u8], a: &[u8], nb: usize) -> f32 {
        // SAFETY: `self` exists, so the CPU has avx2, fma and f16c (see
        // `Avx2::new`), which is all the bodies below require.
        unsafe {
            let mut out = [0f32; 8];
            match kind {
                IntKind::Q8_0 => int_tile::<K_Q8_0, 1, 1>(&[w], &[], &[a], nb, &mut out),
                IntKind::Q4_0 => int_tile::<K_Q4_0, 1, 1>(&[w], &[], &[a], nb, &mut out),
                IntKind::Q4_1 => int_tile::<K_Q4_1, 1, 1>(&[w], &[], &[a], nb, &mut out),
            }
            out[0]
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
            match kind {
                IntKind::Q8_0 => int_tile::<K_Q8_0, 8, 1>(&w, next, &[a], nb, out),
                IntKind::Q4_0 => int_tile::<K_Q4_0, 8, 1>(&w, next, &[a], nb, out),
                IntKind::Q4_1 => int_tile::<K_Q4_1, 8, 1>(&w, next, &[a], nb, out),
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
            match kind {
                IntKind::Q8_0 => int_tile::<K_Q8_0, 4, 2>(&w, next, &a, nb, out),
                IntKind::Q4_0 => int_tile::<K_Q4_0, 4, 2>(&w, next, &a, nb, out),
                IntKind::Q4_1 => int_tile::<K_Q4_1, 4, 2>(&w, next, &a, nb, out),
            }
        }
    }

    fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32 {
        let mut out = [0f32; 8];
        // SAFETY: as in `int_1x1`.
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
        // SAFETY: as in `int_1x1`.
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
        // SAFETY: as in `int_1x1`.
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 4, 2>(&w, next, &x, out),
                FltKind::F16 => flt_tile::<F_F16, 4, 2>(&w, next, &x, out),
                FltKind::BF16 => flt_tile::<F_BF16, 4, 2>(&w, next, &x, out),
            }
        }
    }

    fn quantize_act_row(&self, x: &[f32], out: &mut [u8]) {
        // SAFETY: as in `int_1x1`.
        unsafe { quantize_act_row(x, out) }
    }

    fn kv_scores(&self, ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
        // SAFETY: as in `int_1x1`.
        unsafe { kv_scores(ty, q, k, stride, out) }
    }

    fn kv_scale(&self, ty: KvType, acc: &mut [f32], m: f32) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { kv_scale(ty, acc, m) }
    }

    fn kv_mad(&self, ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
        // SAFETY: as above.
        unsafe { kv_mad(ty, row, w, acc) }
    }

    fn expf(&self, x: f32) -> f32 {
        // SAFETY: as in `int_1x1`.
        unsafe { expf_fma(x) }
    }

    fn kv_store_f16(&self, x: &[f32], out: &mut [u8]) {
        // SAFETY: as in `int_1x1`.
        unsafe { kv_store_f16(x, out) }
    }
}

const fn block_bytes(k: u8) -> usize {
    match k {
        K_Q8_0 => IntKind::Q8_0.block_bytes(),
        K_Q4_0 => IntKind::Q4_0.block_bytes(),
        _ => IntKind::Q4_1.block_bytes(),
    }
}

/// Whether every row holds `nb` blocks of `block` bytes.
fn rows_hold(rows: &[&[u8]], nb: usize, block: usize) -> bool {
    match nb.checked_mul(block) {
        Some(need) => rows.iter().all(|r| r.len() >= need),
        None => false,
    }
}

/// Prefetches `count` cache lines of `data` from line `first` (those that
/// exist) into L1.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn prefetch_lines(data: &[u8], first: usize, count: usize) {
    for line in first..first.saturating_add(count) {
        if let Some(byte) = data.get(line.saturating_mul(64)) {
            _mm_prefetch::<_MM_HINT_T0>((byte as *const u8).cast());
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

/// Reads a native-endian 4-byte value (activation scale or sum).
///
/// # Safety
///
/// `p` must be valid for reading 4 bytes.
#[inline(always)]
unsafe fn read_4(p: *const u8) -> [u8; 4] {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { core::ptr::read_unaligned(p.cast::<[u8; 4]>()) }
}

/// One weight block: its 32 values as bytes (i8 for Q8_0, nibbles 0..=15
/// in element order for Q4_*), the scale bits and (Q4_1) the minimum bits.
///
/// # Safety
///
/// `p` must be valid for reading one block of kind `K`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_weight_block<const K: u8>(p: *const u8) -> (__m256i, u16, u16) {
    // SAFETY: a block of `K` is 2 (+2 for Q4_1) header bytes followed by 32
    // (Q8_0) or 16 (Q4_*) value bytes, all within the caller's guarantee.
    unsafe {
        let d = read_u16(p);
        match K {
            K_Q8_0 => (_mm256_loadu_si256(p.add(2).cast()), d, 0),
            _ => {
                let (m, qs) = if K == K_Q4_1 {
                    (read_u16(p.add(2)), p.add(4))
                } else {
                    (0, p.add(2))
                };
                // The 16 bytes in both halves; the upper half shifted right
                // by 4 so its low nibbles are the high ones; then mask.
                let packed = _mm256_broadcastsi128_si256(_mm_loadu_si128(qs.cast()));
                let shifted = _mm256_srlv_epi64(packed, _mm256_setr_epi64x(0, 0, 4, 4));
                (_mm256_and_si256(shifted, _mm256_set1_epi8(0x0f)), d, m)
            }
        }
    }
}

/// The 8 exact lane sums of one weight block times one activation block
/// (lane `l`: elements `4l..4l+4`). `w_abs` is `|w|` for Q8_0 (else
/// unused), `a8` is `maddubs(8, a)` for Q4_0 (else unused).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn block_products<const K: u8>(w: __m256i, w_abs: __m256i, a: __m256i, a8: __m256i) -> __m256i {
    let pairs = match K {
        K_Q8_0 => _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w)),
        // |q * a| pair sums <= 3810, 8 * (a + a') <= 2032: no overflow.
        K_Q4_0 => _mm256_sub_epi16(_mm256_maddubs_epi16(w, a), a8),
        _ => _mm256_maddubs_epi16(w, a),
    };
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// Total of 8 x i32 (exact, wrapping).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `NT x RT` outputs (`NT * RT <= 8`): `out[r * NT + n] = dot(w[n], a[r])`
/// (the other entries of `out` are unspecified). Every output is computed
/// by the same sequence of f32 operations whatever `NT` and `RT` are.
#[target_feature(enable = "avx2,fma,f16c")]
fn int_tile<const K: u8, const NT: usize, const RT: usize>(
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
    let wp: [*const u8; NT] = core::array::from_fn(|n| w[n].as_ptr());
    let ap: [*const u8; RT] = core::array::from_fn(|r| a[r].as_ptr());
    // One 8-lane accumulator per output; Q4_1's `summs` of output p in
    // lane p.
    let mut acc = [[_mm256_setzero_ps(); NT]; RT];
    let mut summs = _mm256_setzero_ps();
    // Lane p of the per-block scalars is output (row p / NT, feature
    // p % NT); lanes past NT * RT hold copies and are never read.
    let row_of = |p: usize| if p < NT * RT { p / NT } else { 0 };
    let prefetch_step = next.len().div_ceil(64).div_ceil(nb.max(1));
    for b in 0..nb {
        prefetch_lines(next, b * prefetch_step, prefetch_step);
        let mut av = [_mm256_setzero_si256(); RT];
        let mut a8 = [_mm256_setzero_si256(); RT];
        let mut da = [0f32; RT];
        let mut sa = [0f32; RT];
        for r in 0..RT {
            // SAFETY: rows_hold checked `nb * BLOCK_BYTES` readable bytes per
            // activation row, and `b < nb`; a block is 32 values, then d
            // and s.
            unsafe {
                let p = ap[r].add(b * BLOCK_BYTES);
                av[r] = _mm256_loadu_si256(p.cast());
                da[r] = f32::from_ne_bytes(read_4(p.add(D_AT)));
                sa[r] = f32::from_ne_bytes(read_4(p.add(S_AT)));
            }
            if K == K_Q4_0 {
                a8[r] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), av[r]);
            }
        }
        let mut dw = [0u16; NT];
        let mut mw = [0u16; NT];
        for n in 0..NT {
            // SAFETY: rows_hold checked `nb * bb` readable bytes per weight
            // row, and `b < nb`; the header is the first 2 (Q4_1: 4) bytes.
            unsafe {
                let p = wp[n].add(b * bb);
                dw[n] = read_u16(p);
                if K == K_Q4_1 {
                    mw[n] = read_u16(p.add(2));
                }
            }
        }
        // dd = f32(d_w) * d_a for the 8 (or fewer) outputs at once.
        let dwv = f16x8_to_f32(core::array::from_fn(|p| dw[p % NT]));
        let dav = f32x8(core::array::from_fn(|p| da[row_of(p)]));
        let mut dd = [0f32; 8];
        // SAFETY: `dd` is 8 f32.
        unsafe { _mm256_storeu_ps(dd.as_mut_ptr(), _mm256_mul_ps(dwv, dav)) };
        for n in 0..NT {
            // SAFETY: as for the header above.
            let (wv, _, _) = unsafe { load_weight_block::<K>(wp[n].add(b * bb)) };
            let w_abs = if K == K_Q8_0 { _mm256_abs_epi8(wv) } else { wv };
            for r in 0..RT {
                let lanes = _mm256_cvtepi32_ps(block_products::<K>(wv, w_abs, av[r], a8[r]));
                acc[r][n] = _mm256_fmadd_ps(_mm256_set1_ps(dd[r * NT + n]), lanes, acc[r][n]);
            }
        }
        if K == K_Q4_1 {
            // summs + m_w * s_a: a multiply and an add, not fused.
            let mwv = f16x8_to_f32(core::array::from_fn(|p| mw[p % NT]));
            let sav = f32x8(core::array::from_fn(|p| sa[row_of(p)]));
            summs = _mm256_add_ps(summs, _mm256_mul_ps(mwv, sav));
        }
    }
    let mut sm = [0f32; 8];
    // SAFETY: `sm` is 8 f32.
    unsafe { _mm256_storeu_ps(sm.as_mut_ptr(), summs) };
    for (r, acc_r) in acc.iter().enumerate() {
        for (n, acc_rn) in acc_r.iter().enumerate() {
            let p = r * NT + n;
            out[p] = if K == K_Q4_1 {
                hsum_ps(*acc_rn) + sm[p]
            } else {
                hsum_ps(*acc_rn)
            };
        }
    }
}

/// 8 binary16 values to f32 (exact). The halves are assembled in general
/// registers: inserting words into a vector register (`vpinsrw`) would
/// make the result depend on whatever that register held before, which the
/// compiler may pick from the accumulators, chaining every block's scales
/// to the previous block's FMAs.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16x8_to_f32(h: [u16; 8]) -> __m256 {
    let pack = |q: &[u16]| {
        q.iter()
            .rev()
            .fold(0u64, |acc, v| (acc << 16) | u64::from(*v))
    };
    let (lo, hi) = h.split_at(4);
    _mm256_cvtph_ps(_mm_set_epi64x(pack(hi) as i64, pack(lo) as i64))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f32x8(v: [f32; 8]) -> __m256 {
    _mm256_setr_ps(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
}

/// 8 weights of kind `F` from `p` as f32.
///
/// # Safety
///
/// `p` must be valid for reading 8 values of kind `F`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_flt8<const F: u8>(p: *const u8) -> __m256 {
    // SAFETY: 32 (F32) or 16 (F16, BF16) readable bytes, per the caller.
    unsafe {
        match F {
            F_F32 => _mm256_loadu_ps(p.cast()),
            F_F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(p.cast()),
            ))),
        }
    }
}

const fn flt_bytes(f: u8) -> usize {
    match f {
        F_F32 => 4,
        _ => 2,
    }
}

/// Horizontal sum of 8 lanes in a fixed order:
/// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// The canonical reduction of a float dot's 4 x 8 partial sums
/// (docs/numerics.md): `acc0 += acc2; acc1 += acc3; acc0 += acc1`, then
/// `t[l] = acc0[l] + acc0[l + 4]` and `(t0 + t1) + (t2 + t3)`, as ggml's
/// `GGML_F32x8_REDUCE` (whose two `hadd`s add the same pairs).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn reduce32(acc: [__m256; 4]) -> f32 {
    let a0 = _mm256_add_ps(acc[0], acc[2]);
    let a1 = _mm256_add_ps(acc[1], acc[3]);
    let s = _mm256_add_ps(a0, a1);
    let t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    // [t0 + t1, t1 + t0, t2 + t3, t3 + t2], then lane 0 + lane 2.
    let p = _mm_add_ps(t, _mm_shuffle_ps::<0b10_11_00_01>(t, t));
    _mm_cvtss_f32(_mm_add_ss(p, _mm_movehl_ps(p, p)))
}

/// `fma(a, b, c)`, one rounding (`vfmadd` on scalars).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fma1(a: f32, b: f32, c: f32) -> f32 {
    _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)))
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

/// `out[r * NT + n] = dot(w[n], x[r])` over `x[0].len()` values, in the
/// canonical order (docs/numerics.md): accumulator `j` of an output takes
/// the 8 values at `32 b + 8 j` for every `b`, by FMA in order of `b`; then
/// [`reduce32`] and the tail (`cols % 32` values) by scalar FMA.
///
/// One output keeps its 4 accumulators in registers ([`flt_pass4`]). More
/// outputs would need `4 * NT * RT` registers, so they go by segments of
/// [`SEGMENT`] groups ([`flt_pass_seg`]): accumulator 0 of every output
/// over the segment, then 1, 2, 3, each reloaded from and stored to memory
/// between segments. Each accumulator still sees its values in order, so
/// the results are the same for every tile, and a segment's weights are
/// read from memory once, then from L1.
#[target_feature(enable = "avx2,fma,f16c")]
fn flt_tile<const F: u8, const NT: usize, const RT: usize>(
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
    let groups = cols / 32;
    let wp: [*const u8; NT] = core::array::from_fn(|n| w[n].as_ptr());
    let xp: [*const f32; RT] = core::array::from_fn(|r| x[r].as_ptr());
    let mut parts = [[[_mm256_setzero_ps(); NT]; RT]; 4];
    // SAFETY: `groups * 32 <= cols` values are readable from every weight
    // row (rows_hold) and activation row (length checked).
    unsafe {
        if NT * RT == 1 {
            let acc = flt_pass4::<F>(wp[0], xp[0], groups);
            for (p, a) in parts.iter_mut().zip(acc) {
                p[0][0] = a;
            }
        } else {
            flt_pass_seg::<F, NT, RT>(&wp, &xp, groups, next, &mut parts);
        }
    }
    let main = groups * 32;
    for r in 0..RT {
        for n in 0..NT {
            let acc = [
                parts[0][r][n],
                parts[1][r][n],
                parts[2][r][n],
                parts[3][r][n],
            ];
            let mut s = reduce32(acc);
            for e in main..cols {
                s = fma1(flt_at::<F>(w[n], e), x[r].get(e).copied().unwrap_or(0.0), s);
            }
            out[r * NT + n] = s;
        }
    }
}

/// Groups of 32 values per segment of [`flt_pass_seg`]: 8 weight rows of
/// a segment take at most 8 KiB (F32).
const SEGMENT: usize = 8;

/// The 4 accumulators of one output, all in registers.
///
/// # Safety
///
/// `w` must be readable for `32 * groups` values of kind `F`, `x` for
/// `32 * groups` f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn flt_pass4<const F: u8>(w: *const u8, x: *const f32, groups: usize) -> [__m256; 4] {
    let vb = flt_bytes(F);
    let mut acc = [_mm256_setzero_ps(); 4];
    for b in 0..groups {
        for (j, acc_j) in acc.iter_mut().enumerate() {
            let k = 32 * b + 8 * j;
            // SAFETY: k + 8 <= 32 * groups values, per the caller.
            unsafe {
                let wv = load_flt8::<F>(w.add(k * vb));
                *acc_j = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(k)), *acc_j);
            }
        }
    }
    acc
}

/// The accumulators of `NT x RT` outputs by segments (see [`flt_tile`]):
/// `parts[j][r][n]` is accumulator `j` of output `(r, n)`, updated in
/// place. Spreads a prefetch of `next` over the segments. Not inlined, so
/// that the register allocator sees one accumulator of each output at a
/// time.
///
/// # Safety
///
/// `w[n]` must be readable for `32 * groups` values of kind `F`, `x[r]`
/// for `32 * groups` f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline(never)]
unsafe fn flt_pass_seg<const F: u8, const NT: usize, const RT: usize>(
    w: &[*const u8; NT],
    x: &[*const f32; RT],
    groups: usize,
    next: &[u8],
    parts: &mut [[[__m256; NT]; RT]; 4],
) {
    let vb = flt_bytes(F);
    let segments = groups.div_ceil(SEGMENT);
    let per_segment = next.len().div_ceil(64).div_ceil(segments.max(1));
    for seg in 0..segments {
        prefetch_lines(next, seg * per_segment, per_segment);
        let (g0, g1) = (seg * SEGMENT, ((seg + 1) * SEGMENT).min(groups));
        // Through an opaque pointer, so that the compiler keeps the
        // accumulators in memory between segments instead of in (too few)
        // registers.
        let parts: &mut [[[__m256; NT]; RT]; 4] = core::hint::black_box(&mut *parts);
        for (j, parts_j) in parts.iter_mut().enumerate() {
            let mut acc = *parts_j;
            for b in g0..g1 {
                let k = 32 * b + 8 * j;
                // SAFETY: k + 8 <= 32 * groups values, per the caller.
                let wv: [__m256; NT] =
                    core::array::from_fn(|n| unsafe { load_flt8::<F>(w[n].add(k * vb)) });
                for r in 0..RT {
                    // SAFETY: as above.
                    let xv = unsafe { _mm256_loadu_ps(x[r].add(k)) };
                    for n in 0..NT {
                        acc[r][n] = _mm256_fmadd_ps(wv[n], xv, acc[r][n]);
                    }
                }
            }
            *parts_j = acc;
        }
    }
}

/// Round half to even (whatever MXCSR says), clamped to +-127, of 8 lanes:
/// exactly the scalar [`act::quantize_value`] for finite input.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round_clamp(v: __m256) -> __m256i {
    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    let r = _mm256_min_ps(
        _mm256_max_ps(r, _mm256_set1_ps(-127.0)),
        _mm256_set1_ps(127.0),
    );
    // Already an integer: truncation is exact.
    _mm256_cvttps_epi32(r)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_act_row(x: &[f32], out: &mut [u8]) {
    let sign = _mm256_set1_ps(-0.0);
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
        let Ok(ob) = <&mut [u8; BLOCK_BYTES]>::try_from(ob) else {
            break;
        };
        // SAFETY: xb is 32 f32.
        let v: [__m256; 4] =
            core::array::from_fn(|i| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * i)) });
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
        let (d, id) = act::scale(_mm_cvtss_f32(m));
        let idv = _mm256_set1_ps(id);
        // One f32 multiply, then round: as ggml's `_mm256_round_ps`.
        let q: [__m256i; 4] = core::array::from_fn(|i| round_clamp(_mm256_mul_ps(v[i], idv)));
        let sum = hsum_i32(_mm256_add_epi32(
            _mm256_add_epi32(q[0], q[1]),
            _mm256_add_epi32(q[2], q[3]),
        ));
        let p01 = _mm256_packs_epi32(q[0], q[1]);
        let p23 = _mm256_packs_epi32(q[2], q[3]);
        let bytes = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(p01, p23),
            _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
        );
        // SAFETY: ob is 40 bytes; the values take the first 32.
        unsafe { _mm256_storeu_si256(ob.as_mut_ptr().cast(), bytes) };
        act::write_tail(ob, d, sum);
    }
}

/// 8 keys of a KV row: values `32 b + 8 j ..` (of the whole groups only;
/// a Q8_0 block is one group, each key `f32(d) * q`, exact).
///
/// # Safety
///
/// The row must hold values `32 b .. 32 b + 32` of type `T`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kv_keys8<const T: u8>(row: *const u8, b: usize, j: usize) -> __m256 {
    // SAFETY: per the caller, the group's bytes (and its Q8_0 scale) are
    // readable.
    unsafe {
        match T {
            F_F32 => _mm256_loadu_ps(row.add(4 * (32 * b + 8 * j)).cast()),
            F_F16 => _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * (32 * b + 8 * j)).cast())),
            _ => {
                let p = row.add(34 * b);
                let d = _mm256_cvtph_ps(_mm_set1_epi16(read_u16(p) as i16));
                let kq = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(2 + 8 * j).cast()));
                _mm256_mul_ps(_mm256_cvtepi32_ps(kq), d)
            }
        }
    }
}

/// `out[t] = dot(q, K_t)` in the canonical order, for rows of type `T`
/// (`F_F32`, `F_F16`, or `K_Q8`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn kv_scores_t<const T: u8>(q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
    let dim = q.len();
    let groups = dim / 32;
    let row_bytes = match T {
        F_F32 => dim.checked_mul(4),
        F_F16 => dim.checked_mul(2),
        _ => dim.is_multiple_of(32).then_some(groups * 34),
    };
    // Every row must be in `k` (the caller checked; here it costs one test).
    let fits = row_bytes.is_some_and(|rb| {
        out.is_empty()
            || (out.len() - 1)
                .checked_mul(stride)
                .and_then(|e| e.checked_add(rb))
                .is_some_and(|end| end <= k.len())
    });
    let (true, Some(row_bytes)) = (fits, row_bytes) else {
        out.fill(0.0);
        return;
    };
    for (t, o) in out.iter_mut().enumerate() {
        // SAFETY: row t is within `k` (checked above).
        let row = unsafe { k.as_ptr().add(t * stride) };
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..groups {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                // SAFETY: the row holds all `groups` groups; q holds
                // dim >= 32 * groups values.
                unsafe {
                    let kv = kv_keys8::<T>(row, b, j);
                    let qv = _mm256_loadu_ps(q.as_ptr().add(32 * b + 8 * j));
                    *acc_j = _mm256_fmadd_ps(qv, kv, *acc_j);
                }
            }
        }
        let mut s = reduce32(acc);
        if T != K_Q8 && 32 * groups < dim {
            // SAFETY: as above, `row_bytes` bytes.
            let row = unsafe { core::slice::from_raw_parts(row, row_bytes) };
            for (e, qe) in q.iter().enumerate().skip(32 * groups) {
                s = fma1(*qe, flt_at::<T>(row, e), s);
            }
        }
        *o = s;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn kv_scores(ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
    match ty {
        KvType::F32 => kv_scores_t::<F_F32>(q, k, stride, out),
        KvType::F16 => kv_scores_t::<F_F16>(q, k, stride, out),
        KvType::Q8_0 => kv_scores_t::<K_Q8>(q, k, stride, out),
    }
}

/// 8 values of a KV row starting at value `i` (`i % 8 == 0`; for Q8_0 the
/// 8 values are inside one block).
///
/// # Safety
///
/// The row must hold the values `i..i + 8` of type `ty`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kv_load8(ty: KvType, row: *const u8, i: usize) -> __m256 {
    // SAFETY: per the caller, the bytes of values i..i+8 (and, for Q8_0,
    // their block's scale) are readable.
    unsafe {
        match ty {
            KvType::F32 => _mm256_loadu_ps(row.add(4 * i).cast()),
            KvType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * i).cast())),
            KvType::Q8_0 => {
                let blk = row.add(i / QK * 34);
                let d = _mm256_set1_ps(f16_to_f32(read_u16(blk)));
                let qv = _mm256_cvtepi8_epi32(_mm_loadl_epi64(blk.add(2 + i % QK).cast()));
                _mm256_mul_ps(_mm256_cvtepi32_ps(qv), d)
            }
        }
    }
}

/// [`crate::math::expf`] with `vfmadd` for its fused multiply-adds.
#[target_feature(enable = "avx2,fma,f16c")]
fn expf_fma(x: f32) -> f32 {
    crate::math::expf_with(x, |a, b, c| {
        _mm_cvtsd_f64(_mm_fmadd_sd(_mm_set_sd(a), _mm_set_sd(b), _mm_set_sd(c)))
    })
}

/// Rounds 8 lanes to f16 (nearest even) and back, as ggml's F16
/// accumulator stores and reloads them.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round_f16x8(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// [`super::matmul::Isa::kv_scale`]: 8 elements at a time, the tail as
/// the scalar reference.
#[target_feature(enable = "avx2,fma,f16c")]
fn kv_scale(ty: KvType, acc: &mut [f32], m: f32) {
    let mv = _mm256_set1_ps(m);
    let mut chunks = acc.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 f32.
        unsafe {
            let mut a = _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), mv);
            if ty == KvType::F16 {
                a = round_f16x8(a);
            }
            _mm256_storeu_ps(c.as_mut_ptr(), a);
        }
    }
    for a in chunks.into_remainder() {
        *a = super::scalar::kv_round(ty, *a * m);
    }
}

/// [`super::matmul::Isa::kv_mad`]: 8 elements at a time with `vfmadd`,
/// the tail as the scalar reference.
#[target_feature(enable = "avx2,fma,f16c")]
fn kv_mad(ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
    let dim = acc.len();
    if ty.row_bytes(dim).is_none_or(|need| row.len() < need) {
        return;
    }
    let wv = _mm256_set1_ps(w);
    let full = dim / 8 * 8;
    for i in (0..full).step_by(8) {
        // SAFETY: values i..i + 8 are in the row (its length was checked
        // above) and in `acc` (i + 8 <= full <= dim).
        unsafe {
            let v = kv_load8(ty, row.as_ptr(), i);
            let p = acc.as_mut_ptr().add(i);
            let mut a = _mm256_fmadd_ps(v, wv, _mm256_loadu_ps(p));
            if ty == KvType::F16 {
                a = round_f16x8(a);
            }
            _mm256_storeu_ps(p, a);
        }
    }
    super::scalar::kv_mad_from(ty, row, w, acc, full);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn kv_store_f16(x: &[f32], out: &mut [u8]) {
    let mut xs = x.chunks_exact(8);
    let mut os = out.chunks_exact_mut(16);
    for (xc, oc) in (&mut xs).zip(&mut os) {
        // SAFETY: xc is 8 f32 and oc 16 bytes.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(xc.as_ptr()));
            _mm_storeu_si128(oc.as_mut_ptr().cast(), h);
        }
    }
    for (v, o) in xs
        .remainder()
        .iter()
        .zip(os.into_remainder().chunks_exact_mut(2))
    {
        o.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
    }
}
