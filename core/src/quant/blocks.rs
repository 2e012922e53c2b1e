//! One block of each 32-value format: decode and ggml's reference encode.
//!
//! Each function sees exactly one block (`&[u8; N]` / `&[f32; 32]`), so no
//! index in here can go out of bounds.

use super::{f16_to_f32, f32_to_f16, round_half_away, QK};

/// Bytes of a Q8_0 block: f16 scale and 32 x i8.
pub(crate) const Q8_0_BYTES: usize = 34;
/// Bytes of a Q8_1 block: f16 scale, f16 `d * sum(q)`, 32 x i8.
pub(crate) const Q8_1_BYTES: usize = 36;
/// Bytes of a Q4_0 block: f16 scale and 16 bytes of nibbles.
pub(crate) const Q4_0_BYTES: usize = 18;
/// Bytes of a Q4_1 block: f16 scale, f16 minimum, 16 bytes of nibbles.
pub(crate) const Q4_1_BYTES: usize = 20;

/// Calls `f` on every (block bytes, 32 outputs) pair. Lengths were checked
/// by the caller; a trailing partial block (impossible then) is ignored.
pub(crate) fn for_each_block<const N: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: fn(&[u8; N], &mut [f32; QK]),
) {
    for (block, out) in src.chunks_exact(N).zip(dst.chunks_exact_mut(QK)) {
        if let (Ok(block), Ok(out)) = (block.try_into(), out.try_into()) {
            f(block, out);
        }
    }
}

/// Calls `f` on every (32 inputs, block bytes) pair.
pub(crate) fn for_each_block_mut<const N: usize>(
    src: &[f32],
    dst: &mut [u8],
    f: fn(&[f32; QK], &mut [u8; N]),
) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(N)) {
        if let (Ok(x), Ok(block)) = (x.try_into(), block.try_into()) {
            f(x, block);
        }
    }
}

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => f16_to_f32(u16::from_le_bytes([lo, hi])),
        _ => 0.0,
    }
}

#[inline]
fn put_f16(b: &mut [u8], at: usize, x: f32) {
    if let Some(slot) = b.get_mut(at..at + 2) {
        slot.copy_from_slice(&f32_to_f16(x).to_le_bytes());
    }
}

pub(crate) fn dequantize_q8_0(b: &[u8; Q8_0_BYTES], y: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for (out, q) in y.iter_mut().zip(&b[2..]) {
        *out = f32::from(*q as i8) * d;
    }
}

pub(crate) fn dequantize_q8_1(b: &[u8; Q8_1_BYTES], y: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for (out, q) in y.iter_mut().zip(&b[4..]) {
        *out = f32::from(*q as i8) * d;
    }
}

pub(crate) fn dequantize_q4_0(b: &[u8; Q4_0_BYTES], y: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(QK / 2);
    for ((q, y0), y1) in b[2..].iter().zip(lo).zip(hi) {
        *y0 = f32::from(i16::from(q & 0x0f) - 8) * d;
        *y1 = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

pub(crate) fn dequantize_q4_1(b: &[u8; Q4_1_BYTES], y: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(QK / 2);
    for ((q, y0), y1) in b[4..].iter().zip(lo).zip(hi) {
        // Multiply, then add: two roundings, like ggml (Rust never fuses).
        *y0 = f32::from(q & 0x0f) * d + m;
        *y1 = f32::from(q >> 4) * d + m;
    }
}

/// `MAX(amax, fabsf(v))` over the block, with C's `a > b ? a : b` (so a NaN
/// input propagates, as in ggml).
#[inline]
fn abs_max(x: &[f32; QK]) -> f32 {
    let mut amax = 0.0f32;
    for v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    amax
}

/// `d ? 1/d : 0`.
#[inline]
fn inverse_or_zero(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

#[inline]
fn round_to_i8(v: f32) -> i8 {
    round_half_away(v).clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
}

/// `quantize_row_q8_0_ref`: `d = amax / 127`, the f16 of `d` stored, the
/// f32 `1/d` used to quantize, `q = roundf(x / d)`.
pub(crate) fn quantize_q8_0(x: &[f32; QK], b: &mut [u8; Q8_0_BYTES]) {
    let d = abs_max(x) / 127.0;
    let id = inverse_or_zero(d);
    put_f16(b, 0, d);
    for (out, v) in b[2..].iter_mut().zip(x) {
        *out = round_to_i8(v * id) as u8;
    }
}

/// `quantize_row_q8_1_ref`: as Q8_0, plus `s = f16(sum(q) * d)`.
pub(crate) fn quantize_q8_1(x: &[f32; QK], b: &mut [u8; Q8_1_BYTES]) {
    let d = abs_max(x) / 127.0;
    let id = inverse_or_zero(d);
    put_f16(b, 0, d);
    let mut sum = 0i32;
    for (out, v) in b[4..].iter_mut().zip(x) {
        let q = round_to_i8(v * id);
        sum += i32::from(q);
        *out = q as u8;
    }
    // |sum| <= 32 * 128, exact in f32.
    put_f16(b, 2, sum as f32 * d);
}

/// `quantize_row_q4_0_ref`: the value of largest magnitude (the first one
/// if several tie) gives `d = max / -8`; `q = min(15, (i8)(x / d + 8.5))`.
pub(crate) fn quantize_q4_0(x: &[f32; QK], b: &mut [u8; Q4_0_BYTES]) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = *v;
        }
    }
    let d = max / -8.0;
    let id = inverse_or_zero(d);
    put_f16(b, 0, d);
    let (lo, hi) = x.split_at(QK / 2);
    for ((out, x0), x1) in b[2..].iter_mut().zip(lo).zip(hi) {
        // C: uint8_t xi = MIN(15, (int8_t)(x*id + 8.5f)); truncation toward
        // zero, then the (never negative for finite input) int8 reinterpreted.
        let q0 = ((x0 * id + 8.5) as i8).min(15) as u8;
        let q1 = ((x1 * id + 8.5) as i8).min(15) as u8;
        *out = q0 | (q1 << 4);
    }
}

/// `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`,
/// `q = min(15, (i8)((x - min) / d + 0.5))`.
pub(crate) fn quantize_q4_1(x: &[f32; QK], b: &mut [u8; Q4_1_BYTES]) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for v in x {
        if *v < min {
            min = *v;
        }
        if *v > max {
            max = *v;
        }
    }
    let d = (max - min) / 15.0;
    let id = inverse_or_zero(d);
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    let (lo, hi) = x.split_at(QK / 2);
    for ((out, x0), x1) in b[4..].iter_mut().zip(lo).zip(hi) {
        let q0 = (((x0 - min) * id + 0.5) as i8).min(15) as u8;
        let q1 = (((x1 - min) * id + 0.5) as i8).min(15) as u8;
        *out = q0 | (q1 << 4);
    }
}
