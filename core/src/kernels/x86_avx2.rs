//! x86_64 AVX2 (+ FMA, F16C) bodies of everything but the integer matmul
//! (which is in [`super::x86_int`]): shared by the AVX2, AVX-VNNI and
//! AVX-512 VNNI paths.
//!
//! Float dot products (F32 / F16 / BF16 weights, `kv_scores`): four 8-lane
//! accumulators per output, `vfmadd` per 8 values, reduced by [`reduce32`],
//! the `n % 32` tail by scalar FMA — the canonical order, see [`flt_tile`].
//!
//! Every body is a `#[target_feature(enable = "avx2,fma,f16c")]` function;
//! they are reached only through [`Avx2`], a token that exists only when the
//! CPU has those features.

use core::arch::x86_64::*;

use super::act::{self, BLOCK_BYTES};
use super::matmul::FltKind;
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

const F_F32: u8 = 0;
const F_F16: u8 = 1;
const F_BF16: u8 = 2;
/// Q8_0 cached keys (for `kv_scores`).
const K_Q8: u8 = 3;

/// The float and attention bodies, shared by every x86 path ([`super::x86_int::X86`]).
impl Avx2 {
    pub(crate) fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32 {
        let mut out = [0f32; 8];
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 1, 1>(&[w], &[], &[x], &mut out),
                FltKind::F16 => flt_tile::<F_F16, 1, 1>(&[w], &[], &[x], &mut out),
                FltKind::BF16 => flt_tile::<F_BF16, 1, 1>(&[w], &[], &[x], &mut out),
            }
        }
        out[0]
    }

    pub(crate) fn flt_8x1(
        &self,
        kind: FltKind,
        w: [&[u8]; 8],
        next: &[u8],
        x: &[f32],
        out: &mut [f32; 8],
    ) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 8, 1>(&w, next, &[x], out),
                FltKind::F16 => flt_tile::<F_F16, 8, 1>(&w, next, &[x], out),
                FltKind::BF16 => flt_tile::<F_BF16, 8, 1>(&w, next, &[x], out),
            }
        }
    }

    pub(crate) fn flt_4x2(
        &self,
        kind: FltKind,
        w: [&[u8]; 4],
        next: &[u8],
        x: [&[f32]; 2],
        out: &mut [f32; 8],
    ) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe {
            match kind {
                FltKind::F32 => flt_tile::<F_F32, 4, 2>(&w, next, &x, out),
                FltKind::F16 => flt_tile::<F_F16, 4, 2>(&w, next, &x, out),
                FltKind::BF16 => flt_tile::<F_BF16, 4, 2>(&w, next, &x, out),
            }
        }
    }

    pub(crate) fn quantize_act_row(&self, x: &[f32], out: &mut [u8]) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { quantize_act_row(x, out) }
    }

    pub(crate) fn kv_scores(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        stride: usize,
        out: &mut [f32],
    ) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { kv_scores(ty, q, k, stride, out) }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend_page(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        v: &[u8],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
        state: &mut super::SoftmaxState,
        acc: &mut [f32],
    ) -> bool {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { attend_page(ty, q, k, v, stride, scale, scores, state, acc) }
    }

    pub(crate) fn kv_scale(&self, ty: KvType, acc: &mut [f32], m: f32) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { kv_scale(ty, acc, m) }
    }

    pub(crate) fn kv_mad(&self, ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
        // SAFETY: as above.
        unsafe { kv_mad(ty, row, w, acc) }
    }

    pub(crate) fn expf(&self, x: f32) -> f32 {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { expf_fma(x) }
    }

    pub(crate) fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { swiglu(gate, up) }
    }

    pub(crate) fn kv_store_f16(&self, x: &[f32], out: &mut [u8]) {
        // SAFETY: `Avx2` exists only where AVX2, FMA and F16C are available.
        unsafe { kv_store_f16(x, out) }
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
        let p01 = _mm256_packs_epi32(q[0], q[1]);
        let p23 = _mm256_packs_epi32(q[2], q[3]);
        let bytes = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(p01, p23),
            _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
        );
        let mut values = [0i8; QK];
        // SAFETY: `values` is 32 bytes.
        unsafe { _mm256_storeu_si256(values.as_mut_ptr().cast(), bytes) };
        for (o, v) in ob.iter_mut().zip(values) {
            *o = v as u8;
        }
        act::write_tail(ob, d, &values);
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

/// [`crate::model::ops::ggml_expf`] on 8 lanes, for lanes whose `n` is a
/// normal exponent (`|n| <= 126`); the mask says which lanes need the
/// scalar routine's two-step scaling instead.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn ggml_expf8(x: __m256) -> (__m256, i32) {
    let c = |bits: u32| _mm256_castsi256_ps(_mm256_set1_epi32(bits as i32));
    let shift = c(0x4b40_0000);
    let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), shift);
    let n = _mm256_sub_ps(z, shift);
    let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f80_0000)));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        _mm256_mul_ps(c(0x3f7f_fff6), b),
    );
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0)));
    (_mm256_fmadd_ps(k, j, k), big)
}

/// [`super::matmul::Isa::swiglu`]: 8 lanes at a time; a chunk with a lane
/// outside `expf`'s normal range, and the tail, take the scalar routine.
#[target_feature(enable = "avx2,fma,f16c")]
fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (gate, up) = (&mut gate[..n], &up[..n]);
    let mut gs = gate.chunks_exact_mut(8);
    let mut us = up.chunks_exact(8);
    for (g, u) in (&mut gs).zip(&mut us) {
        // SAFETY: both chunks are 8 f32.
        unsafe {
            let gv = _mm256_loadu_ps(g.as_ptr());
            let (e, big) = ggml_expf8(_mm256_xor_ps(gv, _mm256_set1_ps(-0.0)));
            if big != 0 {
                crate::model::ops::swiglu(g, u);
                continue;
            }
            let s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0), e));
            _mm256_storeu_ps(
                g.as_mut_ptr(),
                _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr())),
            );
        }
    }
    crate::model::ops::swiglu(gs.into_remainder(), us.remainder());
}

/// [`crate::math::expf`] of 4 values, lanes computed as the scalar routine
/// does in f64 (the same operations, fused where it fuses); lanes that need
/// its special cases (`|x| >= 88`, infinities, NaN) take the scalar routine.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn expf4(x: [f32; 4]) -> [f32; 4] {
    let e = &crate::math::EXPF;
    // SAFETY: `x` is 4 f32.
    let xd = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(x.as_ptr()) });
    let z = _mm256_mul_pd(_mm256_set1_pd(e.inv_ln2_n), xd);
    let kd = _mm256_add_pd(z, _mm256_set1_pd(e.shift));
    let ki = _mm256_castpd_si256(kd);
    let kd = _mm256_sub_pd(kd, _mm256_set1_pd(e.shift));
    let r = _mm256_sub_pd(z, kd);
    let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    // SAFETY: every index is in 0..32, inside the table.
    let t =
        unsafe { _mm256_i64gather_epi64::<8>(crate::math::EXP2_TABLE.as_ptr().cast::<i64>(), idx) };
    let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
    let zz = _mm256_fmadd_pd(_mm256_set1_pd(e.c0), r, _mm256_set1_pd(e.c1));
    let r2 = _mm256_mul_pd(r, r);
    let y = _mm256_fmadd_pd(_mm256_set1_pd(e.c2), r, _mm256_set1_pd(1.0));
    let y = _mm256_fmadd_pd(zz, r2, y);
    let mut out = [0f32; 4];
    // SAFETY: `out` is 4 f32.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm256_cvtpd_ps(_mm256_mul_pd(y, s))) };
    for (o, xi) in out.iter_mut().zip(x) {
        if crate::math::expf_is_special(xi) {
            *o = expf_fma(xi);
        }
    }
    out
}

/// Keys per step of [`attend_page`]: the softmax factors of this many keys
/// are computed together.
pub(crate) const KEYS: usize = 32;

/// The online-softmax factors of up to [`KEYS`] keys of one head: whether
/// key `t` raises the running maximum, its accumulator factor `ms[t]` and
/// its value weight `vs[t]` (1 where not used).
pub(crate) struct Factors {
    pub(crate) raises: [bool; KEYS],
    pub(crate) ms: [f32; KEYS],
    pub(crate) vs: [f32; KEYS],
}

/// The factors of the scaled scores `ss` (at most [`KEYS`]), key by key as
/// [`super::matmul::attend_keys`] computes them: the running maximum in
/// order (scalar), every `expf` 4 at a time, then the sum in order. Updates
/// `state`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn softmax_factors(ss: &[f32], state: &mut super::SoftmaxState) -> Factors {
    let n = ss.len().min(KEYS);
    // The exponent of each key's factor, and whether it raises the max.
    let mut arg = [0f32; KEYS];
    let mut raises = [false; KEYS];
    for t in 0..n {
        let s = ss[t];
        if s > state.max {
            arg[t] = state.max - s;
            raises[t] = true;
            state.max = s;
        } else {
            arg[t] = s - state.max;
        }
    }
    let mut ex = [0f32; KEYS];
    for (e4, a4) in ex
        .chunks_exact_mut(4)
        .zip(arg.chunks_exact(4))
        .take(n.div_ceil(4))
    {
        let a: [f32; 4] = [a4[0], a4[1], a4[2], a4[3]];
        e4.copy_from_slice(&expf4(a));
    }
    let mut ms = [1f32; KEYS];
    let mut vs = [1f32; KEYS];
    for t in 0..n {
        if raises[t] {
            ms[t] = ex[t];
        } else {
            vs[t] = ex[t];
        }
        state.sum = fma1(state.sum, ms[t], vs[t]);
    }
    Factors { raises, ms, vs }
}

/// [`super::matmul::Isa::attend_page`] for head dimensions that are a
/// multiple of 8 (`false`, doing nothing, otherwise): the scores, then per step of
/// [`KEYS`] keys: the running maximum key by key (scalar), every `expf` of
/// the step 4 at a time, the sums, then the value rows streamed into the
/// accumulator 64 dimensions at a time, held in registers across the keys.
/// Each dimension sees the same operations in the same order as
/// [`super::matmul::attend_keys`]; only the order between dimensions and
/// between the sum and the accumulator changes, which no result depends on.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
fn attend_page(
    ty: KvType,
    q: &[f32],
    k: &[u8],
    v: &[u8],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut super::SoftmaxState,
    acc: &mut [f32],
) -> bool {
    let dim = acc.len();
    let row = ty.row_bytes(dim);
    let rows_ok = |buf: &[u8]| {
        row.is_some_and(|rb| {
            scores.is_empty()
                || (scores.len() - 1)
                    .checked_mul(stride)
                    .and_then(|e| e.checked_add(rb))
                    .is_some_and(|end| end <= buf.len())
        })
    };
    if !dim.is_multiple_of(8) || q.len() != dim || !rows_ok(k) || !rows_ok(v) {
        return false;
    }
    kv_scores(ty, q, k, stride, scores);
    let sv = _mm256_set1_ps(scale);
    let mut chunks = scores.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 f32.
        unsafe {
            _mm256_storeu_ps(
                c.as_mut_ptr(),
                _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), sv),
            )
        };
    }
    for s in chunks.into_remainder() {
        *s *= scale;
    }
    for (step, ss) in scores.chunks(KEYS).enumerate() {
        let n = ss.len();
        let Factors { raises, ms, vs } = softmax_factors(ss, state);
        // SAFETY: rows step * KEYS .. + n are inside `v` (checked above).
        let v0 = unsafe { v.as_ptr().add(step * KEYS * stride) };
        let mut d0 = 0;
        while d0 < dim {
            let nv = ((dim - d0) / 8).min(8);
            let a = &mut acc[d0..d0 + 8 * nv];
            // SAFETY: dimensions d0.. of rows 0..n (checked above).
            unsafe {
                match (ty, nv) {
                    (KvType::F16, 8) => {
                        mad_keys::<F_F16, 8>(v0, stride, d0, n, &raises, &ms, &vs, a)
                    }
                    (KvType::F16, _) => {
                        mad_keys::<F_F16, 1>(v0, stride, d0, n, &raises, &ms, &vs, &mut a[..8])
                    }
                    (KvType::F32, 8) => {
                        mad_keys::<F_F32, 8>(v0, stride, d0, n, &raises, &ms, &vs, a)
                    }
                    (KvType::F32, _) => {
                        mad_keys::<F_F32, 1>(v0, stride, d0, n, &raises, &ms, &vs, &mut a[..8])
                    }
                    (KvType::Q8_0, 8) => {
                        mad_keys::<K_Q8, 8>(v0, stride, d0, n, &raises, &ms, &vs, a)
                    }
                    (KvType::Q8_0, _) => {
                        mad_keys::<K_Q8, 1>(v0, stride, d0, n, &raises, &ms, &vs, &mut a[..8])
                    }
                }
            }
            d0 += if nv == 8 { 64 } else { 8 };
        }
    }
    true
}

/// Dimensions `d0..d0 + 8 NV` of the accumulator (`acc`) through `n` keys:
/// per key, `acc *= ms` where the key raised the maximum, then
/// `acc = fma(V_t, vs, acc)`, each rounded to f16 for an F16 cache.
///
/// # Safety
///
/// Rows `0..n` at `stride` from `v` must hold dimensions `d0..d0 + 8 NV`
/// of type `T`; `acc` is `8 NV` values.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn mad_keys<const T: u8, const NV: usize>(
    v: *const u8,
    stride: usize,
    d0: usize,
    n: usize,
    raises: &[bool; KEYS],
    ms: &[f32; KEYS],
    vs: &[f32; KEYS],
    acc: &mut [f32],
) {
    let round = |x: __m256| if T == F_F16 { round_f16x8(x) } else { x };
    let mut a: [__m256; NV] = core::array::from_fn(|i| {
        acc.get(8 * i..8 * i + 8)
            // SAFETY: 8 f32.
            .map_or(_mm256_setzero_ps(), |c| unsafe {
                _mm256_loadu_ps(c.as_ptr())
            })
    });
    for t in 0..n.min(KEYS) {
        if raises[t] {
            let m = _mm256_set1_ps(ms[t]);
            for ai in a.iter_mut() {
                *ai = round(_mm256_mul_ps(*ai, m));
            }
        }
        let w = _mm256_set1_ps(vs[t]);
        // SAFETY: row t, dimensions d0.. (caller).
        let row = unsafe { v.add(t * stride) };
        for (i, ai) in a.iter_mut().enumerate() {
            // SAFETY: as above.
            let vv = unsafe { kv_values8::<T>(row, d0 + 8 * i) };
            *ai = round(_mm256_fmadd_ps(vv, w, *ai));
        }
    }
    for (i, ai) in a.iter().enumerate() {
        if let Some(c) = acc.get_mut(8 * i..8 * i + 8) {
            // SAFETY: 8 f32.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), *ai) };
        }
    }
}

/// [`kv_load8`] for a type known at compile time.
///
/// # Safety
///
/// As [`kv_load8`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kv_values8<const T: u8>(row: *const u8, i: usize) -> __m256 {
    let ty = match T {
        F_F32 => KvType::F32,
        F_F16 => KvType::F16,
        _ => KvType::Q8_0,
    };
    // SAFETY: per the caller.
    unsafe { kv_load8(ty, row, i) }
}
