//! Block formats of the weight and activation types the kernels read, and
//! their reference (de)quantizers.
//!
//! Every format stores a row of `n` values as `n / block` blocks laid end to
//! end, little-endian, with no padding (ggml's `block_*` structs):
//!
//! ```text
//! F32   4 B / value
//! F16   2 B / value   IEEE binary16
//! BF16  2 B / value   upper half of an f32
//! Q8_0  34 B / 32     d: f16 | qs: 32 x i8            value = qs[j] * d
//! Q8_1  36 B / 32     d: f16 | s: f16 | qs: 32 x i8   value = qs[j] * d, s = d * sum(qs)
//! Q4_0  18 B / 32     d: f16 | qs: 16 B of nibbles    value = (q[j] - 8) * d
//! Q4_1  20 B / 32     d: f16 | m: f16 | qs: 16 B      value = q[j] * d + m
//! ```
//!
//! In the 4-bit formats byte `qs[j]` holds element `j` in its low nibble and
//! element `j + 16` in its high nibble.
//!
//! The quantizers reproduce ggml's reference quantizers
//! (`quantize_row_*_ref` in `ggml-quants.c`) bit for bit: the same f32
//! operations in the same order, f16 by round-to-nearest-even, BF16 by
//! ggml's rounding rule. This is what makes a requantized model identical,
//! byte for byte, to the one `llama-quantize` writes (checked against
//! reference hashes by `core/tests/requant.rs`). Inputs that are undefined
//! behaviour in C (NaN or out-of-range values converted to an integer) get
//! Rust's saturating conversion here; they never panic.
//!
//! Weights come from the caller's model bytes, which may have any
//! alignment, so every block is read byte-wise (`from_le_bytes`), never by
//! casting the byte slice to a wider type.

mod blocks;
mod requant;

pub use requant::{requant_target, requantize_tensor};

use crate::gguf::GgmlType;
use crate::{Error, Result};

/// Values per block of every block format here.
pub const QK: usize = 32;

/// Converts IEEE binary16 bits to f32 (exact).
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Converts f32 to IEEE binary16 bits, rounding to nearest, ties to even
/// (what F16C's `vcvtps2ph` with rounding mode 0 and ggml's
/// `GGML_FP32_TO_FP16` do).
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Converts BF16 bits to f32 (exact).
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Converts f32 to BF16 bits as ggml does (`ggml_compute_fp32_to_bf16`):
/// NaN keeps its upper bits and is made quiet, everything else rounds to
/// nearest, ties to even (subnormals are kept, not flushed).
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 64) as u16;
    }
    // Cannot overflow for non-NaN inputs (the largest is 0xff80_0000), but
    // wrapping keeps the arithmetic total.
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// Whether [`dequantize_row`] and [`quantize_row`] handle `ty`.
pub fn supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::Q4_0
            | GgmlType::Q4_1
    )
}

/// Bytes of a row of `n` values of `ty`, or an error if `ty` is not
/// [`supported`], `n` is not a whole number of blocks, or the size overflows.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize> {
    if !supported(ty) {
        return Err(Error::InvalidArgument {
            what: "element type not supported by the quantizers",
        });
    }
    let bytes = ty.row_bytes(n as u64).ok_or(Error::InvalidArgument {
        what: "row length is not a whole number of blocks",
    })?;
    usize::try_from(bytes).map_err(|_| Error::Overflow { what: "row bytes" })
}

/// Decodes `src` (one or more whole blocks of `ty`) into `dst`.
///
/// `src.len()` must be exactly the bytes of `dst.len()` values of `ty`.
/// Supported: F32, F16, BF16, Q8_0, Q8_1, Q4_0, Q4_1. The arithmetic is
/// ggml's: Q4_1 is `q * d + m` as a separate f32 multiply and add, never
/// fused.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    if src.len() != row_bytes(ty, dst.len())? {
        return Err(Error::InvalidArgument {
            what: "dequantize_row: src length is not the row bytes of dst.len() values",
        });
    }
    match ty {
        GgmlType::F32 => {
            for (out, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *out = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (out, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *out = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::BF16 => {
            for (out, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *out = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::Q8_0 => blocks::for_each_block(src, dst, blocks::dequantize_q8_0),
        GgmlType::Q8_1 => blocks::for_each_block(src, dst, blocks::dequantize_q8_1),
        GgmlType::Q4_0 => blocks::for_each_block(src, dst, blocks::dequantize_q4_0),
        GgmlType::Q4_1 => blocks::for_each_block(src, dst, blocks::dequantize_q4_1),
        // `row_bytes` refused every other type.
        _ => {}
    }
    Ok(())
}

/// Encodes `src` as `ty` into `dst`, bit-exact to ggml's reference
/// quantizers (`quantize_row_q8_0_ref`, `_q8_1_ref`, `_q4_0_ref`,
/// `_q4_1_ref`; F16 by round-to-nearest-even; BF16 by [`f32_to_bf16`]).
///
/// `src.len()` must be a whole number of blocks and `dst.len()` exactly the
/// bytes of that many values of `ty`.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    if dst.len() != row_bytes(ty, src.len())? {
        return Err(Error::InvalidArgument {
            what: "quantize_row: dst length is not the row bytes of src.len() values",
        });
    }
    match ty {
        GgmlType::F32 => {
            for (x, out) in src.iter().zip(dst.chunks_exact_mut(4)) {
                out.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (x, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
                out.copy_from_slice(&f32_to_f16(*x).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (x, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
                out.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => blocks::for_each_block_mut(src, dst, blocks::quantize_q8_0),
        GgmlType::Q8_1 => blocks::for_each_block_mut(src, dst, blocks::quantize_q8_1),
        GgmlType::Q4_0 => blocks::for_each_block_mut(src, dst, blocks::quantize_q4_0),
        GgmlType::Q4_1 => blocks::for_each_block_mut(src, dst, blocks::quantize_q4_1),
        _ => {}
    }
    Ok(())
}

/// `round(v)` with halves away from zero (C's `roundf`), saturated to the
/// `i32` range; NaN gives 0.
///
/// Exact without `f32::round` (not in `core`): `v - trunc(v)` is exact for
/// every f32, and an f32 of magnitude 2^23 or more is already an integer.
#[inline]
pub(crate) fn round_half_away(v: f32) -> i32 {
    let t = v as i32;
    let frac = v - t as f32;
    if frac >= 0.5 {
        t.saturating_add(1)
    } else if frac <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

#[cfg(test)]
mod tests;
