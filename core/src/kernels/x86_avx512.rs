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
//! * the online softmax's factors are [`super::x86_avx2::softmax_factors`]'s,
//!   computed 16 keys at a time by [`softmax_factors16`] (the running
//!   maximum as a prefix scan, `expf` on 8 doubles);
//! * each accumulator lane takes `acc * ms` where a key raises the maximum,
//!   then `fma(v, vs, acc)`, both rounded to f16 for an F16 cache.
//!
//! Shapes this body is not written for (a head size that is not a multiple
//! of 32, or of 16 values per register for the values) go to the
//! step-by-step reference.

use core::arch::x86_64::*;

use super::x86_avx2::{expf_fma, fma1, softmax_factors, Factors, KEYS};
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
                *fh = softmax_factors16(ss, &mut states[h0 + h]);
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

/// `x` moved up `K` lanes (lane `i` gets lane `i - K`), `-inf` shifted in.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn up<const K: i32>(x: __m512) -> __m512 {
    let fill = _mm512_castps_si512(_mm512_set1_ps(f32::NEG_INFINITY));
    // alignr of (x : fill) by 16 - K lanes: lanes below K come from the
    // top of `fill`, the rest are x's lanes 0..16 - K. (`K` is 1, 2, 4 or
    // 8; the shift is a constant expression the intrinsic wants as such.)
    _mm512_castsi512_ps(match K {
        1 => _mm512_alignr_epi32::<15>(_mm512_castps_si512(x), fill),
        2 => _mm512_alignr_epi32::<14>(_mm512_castps_si512(x), fill),
        4 => _mm512_alignr_epi32::<12>(_mm512_castps_si512(x), fill),
        _ => _mm512_alignr_epi32::<8>(_mm512_castps_si512(x), fill),
    })
}

/// [`crate::math::expf`] of 8 values given as doubles, lane by lane the
/// scalar routine's operations (the table looked up in registers); lanes
/// that need its special cases are the caller's to redo.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn expf8(xd: __m512d) -> __m256 {
    let e = &crate::math::EXPF;
    let tp = crate::math::EXP2_TABLE.as_ptr();
    // SAFETY: the table is 32 u64, four registers of 8.
    let tab: [__m512i; 4] =
        core::array::from_fn(|i| unsafe { _mm512_loadu_si512(tp.add(8 * i).cast()) });
    let z = _mm512_mul_pd(_mm512_set1_pd(e.inv_ln2_n), xd);
    let kd = _mm512_add_pd(z, _mm512_set1_pd(e.shift));
    let ki = _mm512_castpd_si512(kd);
    let kd = _mm512_sub_pd(kd, _mm512_set1_pd(e.shift));
    let r = _mm512_sub_pd(z, kd);
    // Entry ki % 32: bits 0..4 pick within a pair of registers, bit 4 the pair.
    let lo = _mm512_permutex2var_epi64(tab[0], ki, tab[1]);
    let hi = _mm512_permutex2var_epi64(tab[2], ki, tab[3]);
    let t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
    let s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
    let zz = _mm512_fmadd_pd(_mm512_set1_pd(e.c0), r, _mm512_set1_pd(e.c1));
    let r2 = _mm512_mul_pd(r, r);
    let y = _mm512_fmadd_pd(_mm512_set1_pd(e.c2), r, _mm512_set1_pd(1.0));
    let y = _mm512_fmadd_pd(zz, r2, y);
    _mm512_cvtpd_ps(_mm512_mul_pd(y, s))
}

/// [`softmax_factors`], bit for bit, 16 keys per step: the running maximum
/// before each key is a prefix scan of `max` (`vmaxps` returns its second,
/// earlier operand on equal zeros, as the scalar `s > max` test keeps the
/// earlier one), the `expf`s are [`expf8`], and the sum stays a chain of
/// scalar FMAs in key order. A NaN score hands the whole step to
/// [`softmax_factors`] (`vmaxps` does not order NaN as `>` does).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) fn softmax_factors16(ss: &[f32], state: &mut SoftmaxState) -> Factors {
    let n = ss.len().min(KEYS);
    let ss = &ss[..n];
    let mut f = Factors {
        raises: [false; KEYS],
        ms: [1.0; KEYS],
        vs: [1.0; KEYS],
    };
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let masks: [__mmask16; KEYS / 16] = core::array::from_fn(|c| {
        let m = n.saturating_sub(16 * c).min(16);
        ((1u32 << m) - 1) as __mmask16
    });
    let s: [__m512; KEYS / 16] = core::array::from_fn(|c| {
        // SAFETY: lanes set in masks[c] are keys 16c..n, inside `ss` (the
        // masked stores below write the same lanes of `f`'s 32 entries).
        unsafe { _mm512_mask_loadu_ps(neg_inf, masks[c], ss.as_ptr().wrapping_add(16 * c)) }
    });
    if s.iter()
        .any(|v| _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(*v, *v) != 0)
    {
        return softmax_factors(ss, state);
    }
    for (c, (&x, &k)) in s.iter().zip(&masks).enumerate() {
        if k == 0 {
            break;
        }
        // Inclusive prefix maximum of the step's keys, then the maximum
        // before each key (the state's maximum first).
        let mut p = x;
        p = _mm512_max_ps(p, up::<1>(p));
        p = _mm512_max_ps(p, up::<2>(p));
        p = _mm512_max_ps(p, up::<4>(p));
        p = _mm512_max_ps(p, up::<8>(p));
        let m0 = _mm512_set1_ps(state.max);
        let prev = _mm512_max_ps(up::<1>(p), m0);
        let raises = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(k, x, prev);
        // max - s where the key raises the maximum, s - max elsewhere.
        let arg = _mm512_mask_sub_ps(_mm512_sub_ps(x, prev), raises, prev, x);
        let lo = expf8(_mm512_cvtps_pd(_mm512_castps512_ps256(arg)));
        let hi = expf8(_mm512_cvtps_pd(_mm256_castpd_ps(
            _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(arg)),
        )));
        let mut ex = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castps_pd(_mm512_castps256_ps512(lo)),
            _mm256_castps_pd(hi),
        ));
        // Lanes the scalar routine treats specially.
        let bits = _mm512_castps_si512(arg);
        let exp = _mm512_and_si512(_mm512_srli_epi32::<20>(bits), _mm512_set1_epi32(0x7ff));
        let special = _mm512_mask_cmpge_epu32_mask(k, exp, _mm512_set1_epi32(0x42b));
        if special != 0 {
            let mut a = [0f32; 16];
            let mut e = [0f32; 16];
            // SAFETY: both arrays are 16 f32.
            unsafe {
                _mm512_storeu_ps(a.as_mut_ptr(), arg);
                _mm512_storeu_ps(e.as_mut_ptr(), ex);
            }
            for (i, (ei, ai)) in e.iter_mut().zip(a).enumerate() {
                if special & (1 << i) != 0 {
                    *ei = expf_fma(ai);
                }
            }
            // SAFETY: `e` is 16 f32.
            ex = unsafe { _mm512_loadu_ps(e.as_ptr()) };
        }
        // SAFETY: lanes set in `k` are keys 16c..n < 32, inside `f`'s arrays.
        unsafe {
            let at = 16 * c;
            _mm512_mask_storeu_ps(f.ms.as_mut_ptr().add(at), k & raises, ex);
            _mm512_mask_storeu_ps(f.vs.as_mut_ptr().add(at), k & !raises, ex);
        }
        for (i, r) in f.raises[16 * c..].iter_mut().take(16).enumerate() {
            *r = raises & (1 << i) != 0;
        }
        // The maximum after the step's last key.
        let mut last = [0f32; 16];
        // SAFETY: `last` is 16 f32.
        unsafe { _mm512_storeu_ps(last.as_mut_ptr(), _mm512_max_ps(p, m0)) };
        let m = (k as u32).count_ones() as usize;
        state.max = last[m - 1];
    }
    for t in 0..n {
        state.sum = fma1(state.sum, f.ms[t], f.vs[t]);
    }
    f
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// [`softmax_factors16`] equals [`softmax_factors`] bit for bit on
    /// every length and on the values that take special paths: keys that
    /// raise the maximum in every position, ties (signed zeros included),
    /// infinities, NaN, and arguments past `expf`'s special-case bound.
    #[test]
    fn softmax_factors16_equals_the_reference() {
        if !(std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c"))
        {
            // The kernel-path tests require this path where the CI
            // machine has it (ALM_REQUIRE_PATHS); nothing to run here.
            return;
        }
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            100.0,
            -100.0,
            87.9,
            1e30,
            -1e30,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let starts = [
            SoftmaxState::new(),
            SoftmaxState { max: 0.5, sum: 2.0 },
            SoftmaxState {
                max: -0.0,
                sum: 1.0,
            },
            SoftmaxState {
                max: f32::INFINITY,
                sum: 1.0,
            },
        ];
        for case in 0..20_000u32 {
            let n = 1 + (next() % KEYS as u64) as usize;
            let pattern = case % 5;
            let ss: Vec<f32> = (0..n)
                .map(|t| {
                    let r = next();
                    match pattern {
                        0 => (r % 2000) as f32 / 100.0 - 10.0,
                        1 => t as f32 * 0.75 - 3.0, // every key raises
                        2 => 5.0 - t as f32 * 0.5,  // none after the first
                        3 => ((r % 4) as f32 - 2.0) * 0.0625, // many ties
                        _ if r % 3 == 0 => specials[(r / 3 % specials.len() as u64) as usize],
                        _ => (r % 4000) as f32 / 10.0 - 200.0,
                    }
                })
                .collect();
            let start = starts[(next() % starts.len() as u64) as usize];
            let (mut a, mut b) = (start, start);
            // SAFETY: the CPU has the features (checked above).
            let fa = unsafe { softmax_factors16(&ss, &mut a) };
            // SAFETY: as above.
            let fb = unsafe { softmax_factors(&ss, &mut b) };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let what = std::format!("case {case}: {ss:?} from {start:?}");
            assert_eq!(fa.raises, fb.raises, "{what}");
            assert_eq!(bits(&fa.ms), bits(&fb.ms), "{what}");
            assert_eq!(bits(&fa.vs), bits(&fb.vs), "{what}");
            assert_eq!(
                (a.max.to_bits(), a.sum.to_bits()),
                (b.max.to_bits(), b.sum.to_bits()),
                "{what}"
            );
        }
    }
}
