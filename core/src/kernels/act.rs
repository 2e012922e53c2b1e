//! The private layout of quantized activations, and its reference quantizer.
//!
//! A row of `cols` values is `cols / 32` blocks of [`BLOCK_BYTES`]:
//!
//! ```text
//! +0   32 x i8   q, each in -127..=127
//! +32  f32       d = f16(amax / 127), as f32 (native endian)
//! +36  f32       s = f16((amax / 127) * sum(q)), as f32 (native endian)
//! +40  i32       sum(q), exact (native endian)
//! +44  8 x i32   -128 * sum(q[4l..4l+4]) for l = 0..8, exact (native endian)
//! ```
//!
//! This is ggml's AVX2 `quantize_row_q8_0` / `quantize_row_q8_1` (see
//! `docs/numerics.md`): `q = round_half_even(x * (127 / amax))`, and the
//! scale and the sum rounded to f16 exactly as ggml stores them. They are
//! kept as f32 (already rounded) so the dot products need no conversion.
//! Only Q4_1 reads `s`. The integer sum lets kernels that multiply offset
//! weights (a Q4_0 nibble is `w + 8`; VNNI reads Q8_0 as `w + 128`) take
//! the offset back out exactly: `sum((w + c) * q) - c * sum(q)`; the eight
//! group sums do the same per 4 values, where the lanes of 4 are kept apart
//! (Q8_0 weights, `c = 128`). One block is one 76-byte record, so a tile
//! walks one pointer per row.

use crate::quant::{f16_to_f32, f32_to_f16, QK};

/// Bytes of one quantized activation block.
pub(crate) const BLOCK_BYTES: usize = 76;
/// Offset of the f32 scale in a block.
pub(crate) const D_AT: usize = 32;
/// Offset of the f32 scaled sum in a block.
pub(crate) const S_AT: usize = 36;
/// Offset of the i32 sum of the quantized values in a block.
pub(crate) const QSUM_AT: usize = 40;
/// Offset of the 8 i32 `-128 * (sum of 4 values)` in a block.
pub(crate) const GROUP_CORR_AT: usize = 44;

/// Bytes of one row of `cols` values; `None` unless `cols` is a multiple of
/// 32 (or on overflow).
pub(crate) fn row_bytes(cols: usize) -> Option<usize> {
    if !cols.is_multiple_of(QK) {
        return None;
    }
    (cols / QK).checked_mul(BLOCK_BYTES)
}

/// `(d, id)` for a block whose largest magnitude is `amax`: `d = amax / 127`
/// and `id = 127 / amax` (not `1 / d`), both one f32 division, as ggml's
/// AVX2 quantizer. `amax == 0` gives `id = 0` (all-zero quants). So does an
/// `amax` so small (below about 3.7e-37) that `127 / amax` overflows, where
/// ggml would produce -128s; such a block's scale rounds to f16 zero
/// anyway, so its products are zero either way.
#[inline(always)]
pub(crate) fn scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, if id.is_finite() { id } else { 0.0 })
}

/// One value: `clamp(round_half_even(v), -127, 127)`. `v` is `x * id`, one
/// f32 multiply done by the caller; for finite `x` it is within
/// `127 * (1 + 2^-22)`, so the clamp never changes a rounded value (it only
/// keeps NaN and infinity in range).
#[inline(always)]
pub(crate) fn quantize_value(v: f32) -> i8 {
    // `rintf` rounds half to even whatever the floating-point environment.
    libm::rintf(v).clamp(-127.0, 127.0) as i8
}

/// The reference block quantizer every path reproduces bit for bit (for
/// finite inputs).
pub(crate) fn quantize_block(x: &[f32; QK], out: &mut [u8; BLOCK_BYTES]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (d, id) = scale(amax);
    let mut q = [0i8; QK];
    for (o, v) in q.iter_mut().zip(x) {
        *o = quantize_value(v * id);
    }
    for (o, v) in out.iter_mut().zip(q) {
        *o = v as u8;
    }
    write_tail(out, d, &q);
}

/// `f32(f16(v))`: `v` rounded to binary16, nearest even.
#[inline(always)]
pub(crate) fn round_f16(v: f32) -> f32 {
    f16_to_f32(f32_to_f16(v))
}

/// Stores the block's f16-rounded scale and sum, `f16(d)` and
/// `f16(d * sum)` with the f32 `d` (the sum is exact in f32), the integer
/// sum itself and the group corrections, from the block's values `q`.
#[inline(always)]
pub(crate) fn write_tail(out: &mut [u8; BLOCK_BYTES], d: f32, q: &[i8; QK]) {
    let sum: i32 = q.iter().map(|v| i32::from(*v)).sum();
    let s = round_f16(d * sum as f32);
    let (_, tail) = out.split_at_mut(D_AT);
    let (d_bytes, tail) = tail.split_at_mut(S_AT - D_AT);
    let (s_bytes, tail) = tail.split_at_mut(QSUM_AT - S_AT);
    let (q_bytes, groups) = tail.split_at_mut(GROUP_CORR_AT - QSUM_AT);
    d_bytes.copy_from_slice(&round_f16(d).to_ne_bytes());
    s_bytes.copy_from_slice(&s.to_ne_bytes());
    q_bytes.copy_from_slice(&sum.to_ne_bytes());
    for (g, four) in groups.chunks_exact_mut(4).zip(q.chunks_exact(4)) {
        let gsum: i32 = four.iter().map(|v| i32::from(*v)).sum();
        g.copy_from_slice(&(-128 * gsum).to_ne_bytes());
    }
}

/// The parts of one block.
pub(crate) struct Parts<'a> {
    /// The 32 quantized values (as bytes of i8).
    pub(crate) q: &'a [u8; QK],
    /// The f16-rounded scale.
    pub(crate) d: f32,
    /// The f16-rounded `d * sum(q)`.
    pub(crate) s: f32,
}

/// The parts of one block.
#[inline(always)]
pub(crate) fn parts(b: &[u8; BLOCK_BYTES]) -> Parts<'_> {
    let (q, tail) = b.split_at(D_AT);
    let q: &[u8; QK] = q.try_into().unwrap_or(&[0; QK]);
    let word = |at: usize| {
        let i = at - D_AT;
        [tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]
    };
    Parts {
        q,
        d: f32::from_ne_bytes(word(D_AT)),
        s: f32::from_ne_bytes(word(S_AT)),
    }
}
