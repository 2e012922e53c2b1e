//! x86_64 AVX-512 attention: one page of keys against all query heads that
//! share a KV head (a GQA group) at once, so each key and value row is
//! loaded and converted to f32 once for the group, and each head's
//! accumulator stays in registers across the page's keys.
//!
//! The arithmetic per head is exactly [`super::matmul::attend_page_steps`]'s:
//!
//! * a score is the canonical float dot product (docs/numerics.md): four
//!   8-lane accumulators over each 32-value group, here two 16-lane
//!   registers `[acc0 | acc1]` and `[acc2 | acc3]` whose lanes see the same
//!   FMAs in the same order; then `acc0 + acc2`, `acc1 + acc3` (one add of
//!   the two registers), `acc0 + acc1`, `t[l] = x[l] + x[l + 4]`,
//!   `(t0 + t1) + (t2 + t3)`; times `scale`;
//! * the online softmax's factors are [`super::x86_avx2::softmax_factors`];
//! * each accumulator lane takes `acc * ms` where a key raises the maximum,
//!   then `fma(v, vs, acc)`, both rounded to f16 for an F16 cache.
//!
//! Shapes this body is not written for (a head size that is not a multiple
//! of 32, or of 16 values per register for the values) go to the
//! step-by-step reference.

use core::arch::x86_64::*;

use super::x86_avx2::{softmax_factors, Factors, KEYS};
use super::{KvType, SoftmaxState};
use crate::quant::QK;

/// Query heads handled per pass (their accumulators live in registers).
const HEADS: usize = 4;

/// Dimensions of the accumulator kept in registers per pass over a page's
/// values.
const DIMS: usize = 64;

/// Whether [`attend_group`] handles this shape (else the caller runs the
/// reference steps).
pub(crate) fn supports(ty: KvType, dim: usize) -> bool {
    dim > 0
        && dim.is_multiple_of(32)
        && match ty {
            KvType::F16 | KvType::F32 => true,
            KvType::Q8_0 => dim.is_multiple_of(QK),
        }
}

/// 16 values `i..i + 16` of a K or V row as f32 (`i % 16 == 0`; a Q8_0
/// block holds them: `f32(d) * q`, exact).
///
/// # Safety
///
/// The row must hold values `i..i + 16` of type `ty` (and their block's
/// scale).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn load16(ty: KvType, row: *const u8, i: usize) -> __m512 {
    // SAFETY: per the caller.
    unsafe {
        match ty {
            KvType::F32 => _mm512_loadu_ps(row.add(4 * i).cast()),
            KvType::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(row.add(2 * i).cast())),
            KvType::Q8_0 => {
                let blk = row.add(i / QK * 34);
                let d = _mm512_cvtph_ps(_mm256_set1_epi16(i16::from_le_bytes([*blk, *blk.add(1)])));
                let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(2 + i % QK).cast()));
                _mm512_mul_ps(_mm512_cvtepi32_ps(q), d)
            }
        }
    }
}

/// The canonical reduction of one score's two registers (see the module
/// docs).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn reduce(a: __m512, b: __m512) -> f32 {
    let s = _mm512_add_ps(a, b); // [acc0 + acc2 | acc1 + acc3]
    let x = _mm256_add_ps(
        _mm512_castps512_ps256(s),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s))),
    ); // acc0 + acc1
    let t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let t01 = _mm_add_ss(t, _mm_shuffle_ps::<0b01>(t, t));
    let t23 = _mm_add_ss(_mm_movehl_ps(t, t), _mm_shuffle_ps::<0b11>(t, t));
    _mm_cvtss_f32(_mm_add_ss(t01, t23))
}

/// Rounds 16 lanes to f16 and back (nearest even).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn round_f16(x: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// One page for `g <= 8` query heads of one KV head: `q` holds the heads'
/// queries (`g * dim` values), `scores` is scratch (`g * n`, head `h`'s
/// scaled scores at `h * n..`), `states` and `acc` (`g * dim`) the heads'
/// running softmax states and accumulators. `false`, doing nothing, if the
/// shape is not one this body handles or a length does not match.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) fn attend_group(
    ty: KvType,
    q: &[f32],
    k: &[u8],
    v: &[u8],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) -> bool {
    let g = states.len();
    let Some(dim) = q.len().checked_div(g) else {
        return false;
    };
    let n = scores.len().checked_div(g).unwrap_or(0);
    let rows_fit = |buf: &[u8]| {
        ty.row_bytes(dim).is_some_and(|rb| {
            n == 0
                || (n - 1)
                    .checked_mul(stride)
                    .and_then(|e| e.checked_add(rb))
                    .is_some_and(|end| end <= buf.len())
        })
    };
    if !supports(ty, dim)
        || g == 0
        || g > 2 * HEADS
        || q.len() != g * dim
        || acc.len() != g * dim
        || scores.len() != g * n
        || !rows_fit(k)
        || !rows_fit(v)
    {
        return false;
    }
    let mut h0 = 0;
    while h0 < g {
        let gc = (g - h0).min(HEADS);
        let qs = &q[h0 * dim..(h0 + gc) * dim];
        let sc = &mut scores[h0 * n..(h0 + gc) * n];
        // SAFETY: rows 0..n of `k` hold `dim` values of `ty` (checked).
        unsafe {
            match gc {
                1 => scores_of::<1>(ty, qs, k, stride, n, dim, scale, sc),
                2 => scores_of::<2>(ty, qs, k, stride, n, dim, scale, sc),
                3 => scores_of::<3>(ty, qs, k, stride, n, dim, scale, sc),
                _ => scores_of::<4>(ty, qs, k, stride, n, dim, scale, sc),
            }
        }
        for step in 0..n.div_ceil(KEYS) {
            let t0 = step * KEYS;
            let nt = (n - t0).min(KEYS);
            let mut f: [Factors; HEADS] = core::array::from_fn(|_| Factors {
                raises: [false; KEYS],
                ms: [1.0; KEYS],
                vs: [1.0; KEYS],
            });
            for (h, fh) in f.iter_mut().enumerate().take(gc) {
                let ss = &sc[h * n + t0..h * n + t0 + nt];
                *fh = softmax_factors(ss, &mut states[h0 + h]);
            }
            let a = &mut acc[h0 * dim..(h0 + gc) * dim];
            // SAFETY: rows t0..t0 + nt of `v` hold `dim` values (checked).
            unsafe {
                let vt = v.as_ptr().add(t0 * stride);
                match gc {
                    1 => values_into::<1>(ty, vt, stride, nt, dim, &f, a),
                    2 => values_into::<2>(ty, vt, stride, nt, dim, &f, a),
                    3 => values_into::<3>(ty, vt, stride, nt, dim, &f, a),
                    _ => values_into::<4>(ty, vt, stride, nt, dim, &f, a),
                }
            }
        }
        h0 += gc;
    }
    true
}

/// The scaled scores of `n` keys for `G` heads (`scores[h * n + t]`).
///
/// # Safety
///
/// Rows `0..n` at `stride` from `k` hold `dim` values of `ty`; `q` is
/// `G * dim`, `scores` `G * n`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn scores_of<const G: usize>(
    ty: KvType,
    q: &[f32],
    k: &[u8],
    stride: usize,
    n: usize,
    dim: usize,
    scale: f32,
    scores: &mut [f32],
) {
    for t in 0..n {
        // SAFETY: row t (caller).
        let row = unsafe { k.as_ptr().add(t * stride) };
        let mut a = [_mm512_setzero_ps(); G];
        let mut b = [_mm512_setzero_ps(); G];
        for c in (0..dim).step_by(32) {
            // SAFETY: values c..c + 32 of the row (dim is a multiple of 32).
            let (ka, kb) = unsafe { (load16(ty, row, c), load16(ty, row, c + 16)) };
            for h in 0..G {
                // SAFETY: q holds G * dim values.
                unsafe {
                    let qh = q.as_ptr().add(h * dim + c);
                    a[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qh), ka, a[h]);
                    b[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qh.add(16)), kb, b[h]);
                }
            }
        }
        for h in 0..G {
            if let Some(s) = scores.get_mut(h * n + t) {
                *s = reduce(a[h], b[h]) * scale;
            }
        }
    }
}

/// The values of `nt` keys into `G` heads' accumulators (`acc[h * dim..]`),
/// [`DIMS`] dimensions per pass (32 for the last if `dim % 64 == 32`).
///
/// # Safety
///
/// Rows `0..nt` at `stride` from `v` hold `dim` values of `ty`; `acc` is
/// `G * dim`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn values_into<const G: usize>(
    ty: KvType,
    v: *const u8,
    stride: usize,
    nt: usize,
    dim: usize,
    f: &[Factors; HEADS],
    acc: &mut [f32],
) {
    let mut d0 = 0;
    while d0 < dim {
        // SAFETY: per the caller; `dim` is a multiple of 32.
        unsafe {
            if dim - d0 >= DIMS {
                values_pass::<G, { DIMS / 16 }>(ty, v, stride, nt, dim, d0, f, acc);
                d0 += DIMS;
            } else {
                values_pass::<G, 2>(ty, v, stride, nt, dim, d0, f, acc);
                d0 += 32;
            }
        }
    }
}

/// One pass of [`values_into`]: dimensions `d0..d0 + 16 NV` of `G` heads,
/// all `G * NV` accumulator registers live across the keys.
///
/// # Safety
///
/// As [`values_into`], with `d0 + 16 NV <= dim`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn values_pass<const G: usize, const NV: usize>(
    ty: KvType,
    v: *const u8,
    stride: usize,
    nt: usize,
    dim: usize,
    d0: usize,
    f: &[Factors; HEADS],
    acc: &mut [f32],
) {
    let f16 = ty == KvType::F16;
    let mut a = [[_mm512_setzero_ps(); NV]; G];
    for (h, ah) in a.iter_mut().enumerate() {
        for (i, r) in ah.iter_mut().enumerate() {
            // SAFETY: acc holds G * dim values, d0 + 16 NV <= dim.
            *r = unsafe { _mm512_loadu_ps(acc.as_ptr().add(h * dim + d0 + 16 * i)) };
        }
    }
    for t in 0..nt.min(KEYS) {
        // SAFETY: row t, values d0.. (caller).
        let row = unsafe { v.add(t * stride) };
        let mut vv = [_mm512_setzero_ps(); NV];
        for (i, x) in vv.iter_mut().enumerate() {
            // SAFETY: as above.
            *x = unsafe { load16(ty, row, d0 + 16 * i) };
        }
        for h in 0..G {
            let fh = &f[h];
            if fh.raises[t] {
                let m = _mm512_set1_ps(fh.ms[t]);
                for r in a[h].iter_mut() {
                    let x = _mm512_mul_ps(*r, m);
                    *r = if f16 { round_f16(x) } else { x };
                }
            }
            let w = _mm512_set1_ps(fh.vs[t]);
            for (r, x) in a[h].iter_mut().zip(&vv) {
                let y = _mm512_fmadd_ps(*x, w, *r);
                *r = if f16 { round_f16(y) } else { y };
            }
        }
    }
    for (h, ah) in a.iter().enumerate() {
        for (i, r) in ah.iter().enumerate() {
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(h * dim + d0 + 16 * i), *r) };
        }
    }
}
