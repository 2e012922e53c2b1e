//! The portable reference for every kernel: plain Rust, one output at a
//! time, written to be read. The SIMD paths are tested against it.

use super::act::{self, BLOCK_BYTES};
use super::matmul::{FltKind, IntKind, Isa};
use super::KvType;
use crate::quant::{bf16_to_f32, f16_to_f32, f32_to_f16, QK};

/// The scalar instruction set (available everywhere).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalar;

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => f16_to_f32(u16::from_le_bytes([lo, hi])),
        _ => 0.0,
    }
}

/// The exact integer dot product of one weight block with one activation
/// block: `sum(w_j * a_j)`, for Q4_0 with the `- 8` folded in as
/// `- 8 * sum(a)` (wrapping, like the SIMD paths, in case the sum bytes were
/// not written by `quantize_act`).
#[inline]
fn block_isum(kind: IntKind, w: &[u8], a: &[u8; QK], a_sum: i32) -> i32 {
    let (lo, hi) = a.split_at(QK / 2);
    let mut s = 0i32;
    match kind {
        IntKind::Q8_0 => {
            for (q, x) in w.get(2..).unwrap_or(&[]).iter().zip(a) {
                s += i32::from(*q as i8) * i32::from(*x as i8);
            }
        }
        IntKind::Q4_0 | IntKind::Q4_1 => {
            let qs = w.get(kind.block_bytes() - QK / 2..).unwrap_or(&[]);
            for ((q, x0), x1) in qs.iter().zip(lo).zip(hi) {
                s += i32::from(q & 15) * i32::from(*x0 as i8)
                    + i32::from(q >> 4) * i32::from(*x1 as i8);
            }
            if kind == IntKind::Q4_0 {
                s = s.wrapping_sub(a_sum.wrapping_mul(8));
            }
        }
    }
    s
}

impl Isa for Scalar {
    fn int_1x1(&self, kind: IntKind, w: &[u8], a: &[u8], nb: usize) -> f32 {
        let mut acc = 0.0f32;
        for (wb, ab) in w
            .chunks_exact(kind.block_bytes())
            .zip(a.chunks_exact(BLOCK_BYTES))
            .take(nb)
        {
            let Ok(ab) = <&[u8; BLOCK_BYTES]>::try_from(ab) else {
                break;
            };
            let (aq, da, s) = act::parts(ab);
            let dw = f16_at(wb, 0);
            let isum = block_isum(kind, wb, aq, i32::from_ne_bytes(s));
            // The canonical sequence of roundings (see the module docs).
            acc = match kind {
                IntKind::Q4_1 => {
                    acc + ((dw * da) * isum as f32 + f16_at(wb, 2) * f32::from_ne_bytes(s))
                }
                _ => acc + (dw * da) * isum as f32,
            };
        }
        acc
    }

    fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32 {
        let mut acc = 0.0f32;
        for (b, xv) in w.chunks_exact(kind.value_bytes()).zip(x) {
            let wv = match kind {
                FltKind::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                FltKind::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
                FltKind::BF16 => bf16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            };
            acc += wv * xv;
        }
        acc
    }

    fn quantize_act_row(&self, q8_1: bool, x: &[f32], out: &mut [u8]) {
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
            if let (Ok(xb), Ok(ob)) = (xb.try_into(), ob.try_into()) {
                act::quantize_block(xb, q8_1, ob);
            }
        }
    }

    fn kv_scores(&self, ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
        for (t, o) in out.iter_mut().enumerate() {
            let row = k.get(t.saturating_mul(stride)..).unwrap_or(&[]);
            let mut acc = 0.0f32;
            for_each_kv_value(ty, row, q.len(), |i, v| {
                if let Some(qi) = q.get(i) {
                    acc += qi * v;
                }
            });
            *o = acc;
        }
    }

    fn kv_accumulate(&self, ty: KvType, p: &[f32], v: &[u8], stride: usize, acc: &mut [f32]) {
        for (t, pt) in p.iter().enumerate() {
            let row = v.get(t.saturating_mul(stride)..).unwrap_or(&[]);
            let n = acc.len();
            for_each_kv_value(ty, row, n, |i, vi| {
                if let Some(a) = acc.get_mut(i) {
                    *a += pt * vi;
                }
            });
        }
    }

    fn kv_store_f16(&self, x: &[f32], out: &mut [u8]) {
        for (v, o) in x.iter().zip(out.chunks_exact_mut(2)) {
            o.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
        }
    }
}

/// Calls `f(i, value)` for the first `n` values of a KV row. Q8_0 values are
/// `q * d` (one f32 multiply), as ggml dequantizes them.
#[inline]
pub(crate) fn for_each_kv_value(ty: KvType, row: &[u8], n: usize, mut f: impl FnMut(usize, f32)) {
    match ty {
        KvType::F32 => {
            for (i, b) in row.chunks_exact(4).take(n).enumerate() {
                f(i, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        KvType::F16 => {
            for (i, b) in row.chunks_exact(2).take(n).enumerate() {
                f(i, f16_to_f32(u16::from_le_bytes([b[0], b[1]])));
            }
        }
        KvType::Q8_0 => {
            for (blk, b) in row.chunks_exact(34).take(n / QK).enumerate() {
                let d = f16_at(b, 0);
                for (j, q) in b.iter().skip(2).enumerate() {
                    f(blk * QK + j, f32::from(*q as i8) * d);
                }
            }
        }
    }
}
