//! The portable reference for every kernel: plain Rust, one output at a
//! time, written to be read. The SIMD paths are tested against it.

use super::act::{self, BLOCK_BYTES};
use super::layout::{lane_block, PANEL_ROWS};
use super::matmul::{ActRows, Arith, FltKind, IntKind, Isa, Panels};
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

/// The 32 integer weights of one block in element order: Q8_0's int8,
/// Q4_0's nibble - 8, Q4_1's nibble (element j < 16 is the low half of
/// value byte j, element j >= 16 the high half of byte j - 16).
#[inline]
fn weight_values(kind: IntKind, w: &[u8]) -> [i8; QK] {
    let mut v = [0i8; QK];
    let bb = kind.block_bytes();
    match kind {
        IntKind::Q8_0 => {
            for (d, q) in v.iter_mut().zip(w.get(2..bb).unwrap_or(&[])) {
                *d = *q as i8;
            }
        }
        IntKind::Q4_0 | IntKind::Q4_1 => {
            let off = if kind == IntKind::Q4_0 { 8 } else { 0 };
            let (lo, hi) = v.split_at_mut(QK / 2);
            let qs = w.get(bb - QK / 2..bb).unwrap_or(&[]);
            for ((l, h), q) in lo.iter_mut().zip(hi.iter_mut()).zip(qs) {
                *l = (q & 15) as i8 - off;
                *h = (q >> 4) as i8 - off;
            }
        }
    }
    v
}

/// Adds one block to an output's running state (docs/numerics.md): for
/// [`Arith::BlockSum`] the exact sum of the block's 32 products by one FMA
/// into `st[0]`; for [`Arith::Lanes8`] the exact sums of 4 products by FMA
/// into lanes `st[0..8]`, and for Q4_1 `m_w * s_a` added to `st[8]`.
#[inline]
fn int_block(kind: IntKind, w: &[u8], a: &[u8; BLOCK_BYTES], st: &mut [f32; 9]) {
    let a = act::parts(a);
    let values = weight_values(kind, w);
    let dd = f16_at(w, 0) * a.d;
    let product = |j: usize| i32::from(values[j]) * i32::from(a.q[j] as i8);
    match kind.arith() {
        Arith::BlockSum => {
            // |isum| <= 32 * 128 * 127 < 2^24: exact in f32.
            let isum: i32 = (0..QK).map(product).sum();
            st[0] = fmaf(isum as f32, dd, st[0]);
        }
        Arith::Lanes8 => {
            for (l, lane) in st.iter_mut().take(8).enumerate() {
                let isum: i32 = (4 * l..4 * l + 4).map(product).sum();
                *lane = fmaf(dd, isum as f32, *lane);
            }
            if kind == IntKind::Q4_1 {
                // A multiply and an add, not fused.
                st[8] += f16_at(w, 2) * a.s;
            }
        }
    }
}

/// One output on a plain row: every block of `w` into a fresh state, then
/// [`IntKind::finish`].
pub(crate) fn int_dot(kind: IntKind, w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut st = [0f32; 9];
    for (b, wb) in w.chunks_exact(kind.block_bytes()).take(nb).enumerate() {
        int_block(kind, wb, act_block(a, b), &mut st);
    }
    kind.finish(|l| st[l])
}

/// Activation block `b` of `row` (a zero block past the end).
#[inline]
fn act_block(row: &[u8], b: usize) -> &[u8; BLOCK_BYTES] {
    const ZERO: [u8; BLOCK_BYTES] = [0; BLOCK_BYTES];
    b.checked_mul(BLOCK_BYTES)
        .and_then(|at| row.get(at..at.checked_add(BLOCK_BYTES)?))
        .and_then(|s| s.try_into().ok())
        .unwrap_or(&ZERO)
}

/// `a * b + c` rounded once (round to nearest even): exactly `libm::fmaf`
/// and hardware FMA.
///
/// Where FMA is not an instruction this avoids a library call on the usual
/// path: `a * b` is exact in f64 (24 + 24 bits), so `f32(f64(a * b) + c)`
/// can differ from the fused result only by a double rounding. That needs
/// the f64 sum to land exactly on a point halfway between two f32 values:
/// such points are f64 values, so none lies strictly between the exact sum
/// and its (nearest) f64 rounding, and both round to the same f32 unless
/// the rounding is the halfway point itself. Those sums, and sums in f32's
/// subnormal range (whose halfway points have other bit patterns), go to
/// `libm::fmaf`.
#[inline]
pub(crate) fn fmaf(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_arch = "aarch64") {
        // `fmadd`, one instruction.
        return libm::fmaf(a, b, c);
    }
    let r = f64::from(a) * f64::from(b) + f64::from(c);
    // f64 keeps 29 more significand bits than f32: halfway is 1 then 28 0s.
    let halfway = r.to_bits() & 0x1fff_ffff == 0x1000_0000;
    if r == 0.0 || (!halfway && r.abs() >= f64::from(f32::MIN_POSITIVE)) {
        r as f32
    } else {
        libm::fmaf(a, b, c)
    }
}

/// The canonical float dot product (docs/numerics.md) of the first `n`
/// pairs `(a_e, b_e)`: ggml's `ggml_vec_dot_f32` on AVX2 with FMA.
///
/// ```text
/// m = n - n % 32
/// acc[j][l] = 0                                   (4 x 8 f32)
/// e in 0..m:  acc[(e/8)%4][e%8] = fma(a_e, b_e, acc[(e/8)%4][e%8])
/// acc0 += acc2; acc1 += acc3; acc0 += acc1        (lane-wise)
/// t[l] = acc0[l] + acc0[l+4]                      (l = 0..4)
/// s = (t0 + t1) + (t2 + t3)
/// e in m..n:  s = fma(a_e, b_e, s)                (the tail, in order)
/// ```
///
/// An iterator shorter than `n` gives an unspecified (finite-input: some)
/// value, never a panic.
#[inline]
pub(crate) fn float_dot(n: usize, pairs: impl Iterator<Item = (f32, f32)>) -> f32 {
    let main = n - n % 32;
    let mut pairs = pairs.take(n);
    let mut acc = [[0f32; 8]; 4];
    for (e, (a, b)) in pairs.by_ref().take(main).enumerate() {
        let lane = &mut acc[(e / 8) % 4][e % 8];
        *lane = fmaf(a, b, *lane);
    }
    let mut s = reduce32(acc);
    for (a, b) in pairs {
        s = fmaf(a, b, s);
    }
    s
}

/// The canonical reduction of the 32 partial sums of [`float_dot`]: ggml's
/// `GGML_F32x8_REDUCE` for four AVX registers.
#[inline]
pub(crate) fn reduce32(acc: [[f32; 8]; 4]) -> f32 {
    let [a0, a1, a2, a3] = acc;
    let a0: [f32; 8] = core::array::from_fn(|l| a0[l] + a2[l]);
    let a1: [f32; 8] = core::array::from_fn(|l| a1[l] + a3[l]);
    let s: [f32; 8] = core::array::from_fn(|l| a0[l] + a1[l]);
    let t: [f32; 4] = core::array::from_fn(|l| s[l] + s[l + 4]);
    (t[0] + t[1]) + (t[2] + t[3])
}

impl Isa for Scalar {
    fn int_panels(
        &self,
        kind: IntKind,
        w: &Panels,
        a: &ActRows,
        accumulate: bool,
        state: &mut [f32],
        width: usize,
        finish: bool,
        out: &mut [f32],
    ) {
        if !w.fits(kind) || !a.fits(w.nb) || width < w.np * PANEL_ROWS {
            return;
        }
        let s_len = kind.state_len();
        let pbb = kind.panel_block_bytes();
        let mut block = [0u8; 34];
        let block = &mut block[..kind.block_bytes()];
        for r in 0..a.rows {
            let a_row = a.data.get(r * a.stride..).unwrap_or(&[]);
            for p in 0..w.np {
                let panel = w.data.get(p * w.panel_stride..).unwrap_or(&[]);
                for i in 0..PANEL_ROWS {
                    let n = p * PANEL_ROWS + i;
                    let at = |l: usize| (r * s_len + l) * width + n;
                    let mut st = [0f32; 9];
                    if accumulate {
                        for (l, v) in st.iter_mut().enumerate().take(s_len) {
                            *v = state.get(at(l)).copied().unwrap_or(0.0);
                        }
                    }
                    for (b, col) in panel.chunks_exact(pbb).take(w.nb).enumerate() {
                        lane_block(kind, col, i, block);
                        int_block(kind, block, act_block(a_row, a.b0 + b), &mut st);
                    }
                    if finish {
                        if let Some(o) = out.get_mut(r * width + n) {
                            *o = kind.finish(|l| st[l]);
                        }
                        continue;
                    }
                    for (l, v) in st.iter().enumerate().take(s_len) {
                        if let Some(o) = state.get_mut(at(l)) {
                            *o = *v;
                        }
                    }
                }
            }
        }
    }

    fn int_rows(
        &self,
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        _next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    ) {
        for (i, o) in out.iter_mut().enumerate().take(n_rows) {
            let row = w.get(i.saturating_mul(row_bytes)..).unwrap_or(&[]);
            *o = int_dot(kind, row, a, nb);
        }
    }

    fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32 {
        let weights = w.chunks_exact(kind.value_bytes()).map(|b| match kind {
            FltKind::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            FltKind::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            FltKind::BF16 => bf16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        });
        float_dot(x.len(), weights.zip(x.iter().copied()))
    }

    fn quantize_act_row(&self, x: &[f32], out: &mut [u8]) {
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
            if let (Ok(xb), Ok(ob)) = (xb.try_into(), ob.try_into()) {
                act::quantize_block(xb, ob);
            }
        }
    }

    fn kv_scores(&self, ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
        let n = q.len();
        for (t, o) in out.iter_mut().enumerate() {
            let row = k.get(t.saturating_mul(stride)..).unwrap_or(&[]);
            let q = q.iter().copied();
            *o = match ty {
                KvType::F32 => float_dot(
                    n,
                    q.zip(
                        row.chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    ),
                ),
                KvType::F16 => float_dot(
                    n,
                    q.zip(
                        row.chunks_exact(2)
                            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
                    ),
                ),
                KvType::Q8_0 => float_dot(
                    n,
                    q.zip(row.chunks_exact(34).take(n / QK).flat_map(|b| {
                        let d = f16_at(b, 0);
                        // f16 times i8: exact in f32.
                        b.iter().skip(2).map(move |v| f32::from(*v as i8) * d)
                    })),
                ),
            };
        }
    }

    fn kv_scale(&self, ty: KvType, acc: &mut [f32], m: f32) {
        for a in acc.iter_mut() {
            *a = kv_round(ty, *a * m);
        }
    }

    fn kv_mad(&self, ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
        kv_mad_from(ty, row, w, acc, 0);
    }

    fn kv_store_f16(&self, x: &[f32], out: &mut [u8]) {
        for (v, o) in x.iter().zip(out.chunks_exact_mut(2)) {
            o.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
        }
    }
}

/// Calls `f(i, value)` for the values `from..n` of a KV row, decoding only
/// those. Q8_0 values are `q * d` (one f32 multiply), as ggml dequantizes
/// them.
#[inline]
pub(crate) fn for_each_kv_value(
    ty: KvType,
    row: &[u8],
    from: usize,
    n: usize,
    mut f: impl FnMut(usize, f32),
) {
    match ty {
        KvType::F32 => {
            for (i, b) in row.chunks_exact(4).enumerate().take(n).skip(from) {
                f(i, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        KvType::F16 => {
            for (i, b) in row.chunks_exact(2).enumerate().take(n).skip(from) {
                f(i, f16_to_f32(u16::from_le_bytes([b[0], b[1]])));
            }
        }
        KvType::Q8_0 => {
            let blocks = row.chunks_exact(34).enumerate().take(n / QK);
            for (blk, b) in blocks.skip(from / QK) {
                let d = f16_at(b, 0);
                for (j, q) in b.iter().skip(2).enumerate() {
                    let i = blk * QK + j;
                    if i >= from {
                        f(i, f32::from(*q as i8) * d);
                    }
                }
            }
        }
    }
}

/// An attention accumulator value as the cache type keeps it: rounded to
/// f16 (nearest even) for an F16 cache, unchanged otherwise.
#[inline]
pub(crate) fn kv_round(ty: KvType, x: f32) -> f32 {
    match ty {
        KvType::F16 => f16_to_f32(f32_to_f16(x)),
        KvType::F32 | KvType::Q8_0 => x,
    }
}

/// [`Isa::kv_mad`] for the elements `from..` of `acc`: the whole operation
/// on the scalar path, the tail the vector paths leave (nothing to decode
/// when the tail is empty).
#[inline]
pub(crate) fn kv_mad_from(ty: KvType, row: &[u8], w: f32, acc: &mut [f32], from: usize) {
    let n = acc.len();
    if from >= n {
        return;
    }
    for_each_kv_value(ty, row, from, n, |i, vi| {
        if let Some(a) = acc.get_mut(i) {
            *a = kv_round(ty, fmaf(vi, w, *a));
        }
    });
}
