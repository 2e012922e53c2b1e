//! The private layout of quantized activations, and its reference quantizer.
//!
//! A row of `cols` values is `cols / 32` blocks of [`BLOCK_BYTES`]:
//!
//! ```text
//! +0   32 x i8   q, each in -127..=127
//! +32  f32       d = amax / 127 (native endian)
//! +36  i32       sum(q)            (ActFormat::Q8_0, for Q4_0's "- 8" offset)
//!      f32       d * sum(q)        (ActFormat::Q8_1, for Q4_1's minimum)
//! ```
//!
//! The scale stays f32 (ggml rounds it to f16), so activations lose less.
//! One block is one 40-byte record, so a tile walks one pointer per row.

use crate::quant::{round_half_away, QK};

/// Bytes of one quantized activation block.
pub(crate) const BLOCK_BYTES: usize = 40;
/// Offset of the f32 scale in a block.
pub(crate) const D_AT: usize = 32;
/// Offset of the sum in a block.
pub(crate) const S_AT: usize = 36;

/// Bytes of one row of `cols` values; `None` unless `cols` is a multiple of
/// 32 (or on overflow).
pub(crate) fn row_bytes(cols: usize) -> Option<usize> {
    if !cols.is_multiple_of(QK) {
        return None;
    }
    (cols / QK).checked_mul(BLOCK_BYTES)
}

/// `(d, 1/d)` for a block whose largest magnitude is `amax`. A block whose
/// scale would be subnormal (`amax` below about 1.5e-36) quantizes to
/// zeros, so `1/d` is never infinite.
#[inline(always)]
pub(crate) fn scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if d >= f32::MIN_POSITIVE { 1.0 / d } else { 0.0 };
    (d, id)
}

/// One value: `clamp(round_half_away(v), -127, 127)`.
#[inline(always)]
pub(crate) fn quantize_value(v: f32) -> i8 {
    round_half_away(v).clamp(-127, 127) as i8
}

/// The reference block quantizer every path reproduces bit for bit (for
/// finite inputs).
pub(crate) fn quantize_block(x: &[f32; QK], q8_1: bool, out: &mut [u8; BLOCK_BYTES]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (d, id) = scale(amax);
    let mut sum = 0i32;
    for (o, v) in out.iter_mut().zip(x) {
        let q = quantize_value(v * id);
        sum += i32::from(q);
        *o = q as u8;
    }
    write_tail(out, d, sum, q8_1);
}

/// Stores the scale and the sum (or `d * sum` for Q8_1) of a block.
#[inline(always)]
pub(crate) fn write_tail(out: &mut [u8; BLOCK_BYTES], d: f32, sum: i32, q8_1: bool) {
    let s = if q8_1 {
        // |sum| <= 32 * 127: exact in f32.
        (d * sum as f32).to_ne_bytes()
    } else {
        sum.to_ne_bytes()
    };
    let (_, tail) = out.split_at_mut(D_AT);
    let (d_bytes, s_bytes) = tail.split_at_mut(S_AT - D_AT);
    d_bytes.copy_from_slice(&d.to_ne_bytes());
    s_bytes.copy_from_slice(&s);
}

/// The parts of one block: values, scale, and the raw sum bytes.
#[inline(always)]
pub(crate) fn parts(b: &[u8; BLOCK_BYTES]) -> (&[u8; QK], f32, [u8; 4]) {
    let (q, tail) = b.split_at(D_AT);
    let q: &[u8; QK] = q.try_into().unwrap_or(&[0; QK]);
    let d = f32::from_ne_bytes([tail[0], tail[1], tail[2], tail[3]]);
    (q, d, [tail[4], tail[5], tail[6], tail[7]])
}
