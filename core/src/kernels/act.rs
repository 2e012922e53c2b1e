//! The private layout of quantized activations, and its reference quantizer.
//!
//! A row of `cols` values is `cols / 32` blocks of [`BLOCK_BYTES`]:
//!
//! ```text
//! +0   32 x i8   q, each in -127..=127
//! +32  f32       d = f16(amax / 127), as f32 (native endian)
//! +36  f32       s = f16((amax / 127) * sum(q)), as f32 (native endian)
//! ```
//!
//! This is ggml's AVX2 `quantize_row_q8_0` / `quantize_row_q8_1` (see
//! `docs/numerics.md`): `q = round_half_even(x * (127 / amax))`, and the
//! scale and the sum rounded to f16 exactly as ggml stores them. They are
//! kept as f32 (already rounded) so the dot products need no conversion.
//! Both activation formats write the same bytes; only Q4_1 reads `s`.
//! One block is one 40-byte record, so a tile walks one pointer per row.

use crate::quant::{f16_to_f32, f32_to_f16, QK};

/// Bytes of one quantized activation block.
pub(crate) const BLOCK_BYTES: usize = 40;
/// Offset of the f32 scale in a block.
pub(crate) const D_AT: usize = 32;
/// Offset of the f32 sum in a block.
pub(crate) const S_AT: usize = 36;

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
    let mut sum = 0i32;
    for (o, v) in out.iter_mut().zip(x) {
        let q = quantize_value(v * id);
        sum += i32::from(q);
        *o = q as u8;
    }
    write_tail(out, d, sum);
}

/// `f32(f16(v))`: `v` rounded to binary16, nearest even.
#[inline(always)]
pub(crate) fn round_f16(v: f32) -> f32 {
    f16_to_f32(f32_to_f16(v))
}

/// Stores the block's f16-rounded scale and sum: `f16(d)` and
/// `f16(d * sum)` with the f32 `d` (the sum is exact in f32).
#[inline(always)]
pub(crate) fn write_tail(out: &mut [u8; BLOCK_BYTES], d: f32, sum: i32) {
    let s = round_f16(d * sum as f32);
    let (_, tail) = out.split_at_mut(D_AT);
    let (d_bytes, s_bytes) = tail.split_at_mut(S_AT - D_AT);
    d_bytes.copy_from_slice(&round_f16(d).to_ne_bytes());
    s_bytes.copy_from_slice(&s.to_ne_bytes());
}

/// The parts of one block: values, scale `d`, sum `s`.
#[inline(always)]
pub(crate) fn parts(b: &[u8; BLOCK_BYTES]) -> (&[u8; QK], f32, f32) {
    let (q, tail) = b.split_at(D_AT);
    let q: &[u8; QK] = q.try_into().unwrap_or(&[0; QK]);
    let d = f32::from_ne_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let s = f32::from_ne_bytes([tail[4], tail[5], tail[6], tail[7]]);
    (q, d, s)
}
