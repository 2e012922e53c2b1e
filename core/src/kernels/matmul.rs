//! The instruction-set interface ([`Isa`]) and the matmul driver that tiles
//! the output and splits it among tasks.
//!
//! The driver owns the loops over output features and batch rows; an
//! [`Isa`] only provides tiles that compute a fixed set of outputs over the
//! whole row length:
//!
//! ```text
//! 8x1: weight rows n..n+8  x  activation row r         (decode, odd last row)
//! 4x2: weight rows n..n+4  x  activation rows r, r+1   (prefill: each weight
//!                                                      block is used twice,
//!                                                      each activation block
//!                                                      four times, in registers)
//! 1x1: one output                                      (the last < 8 features)
//! ```
//!
//! Every tile of a path computes each output with the same instruction
//! sequence as that path's 1x1, so the tiling (and hence the thread split)
//! never changes a result.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::out::OutView;
use super::{act, Act, ActFormat, KvType, Matrix};
use crate::gguf::GgmlType;
use crate::parallel::{split_range, Parallel};
use crate::{Error, Result};

/// Quantized weight formats with an integer matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntKind {
    /// Against [`ActFormat::Q8_0`].
    Q8_0,
    /// Against [`ActFormat::Q8_0`].
    Q4_0,
    /// Against [`ActFormat::Q8_1`].
    Q4_1,
}

impl IntKind {
    /// Bytes of one 32-value weight block.
    pub(crate) const fn block_bytes(self) -> usize {
        match self {
            IntKind::Q8_0 => 34,
            IntKind::Q4_0 => 18,
            IntKind::Q4_1 => 20,
        }
    }
}

/// Float weight formats, multiplied with f32 activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FltKind {
    /// 4 bytes per value.
    F32,
    /// 2 bytes per value, IEEE binary16.
    F16,
    /// 2 bytes per value, upper half of an f32.
    BF16,
}

impl FltKind {
    /// Bytes per value.
    pub(crate) const fn value_bytes(self) -> usize {
        match self {
            FltKind::F32 => 4,
            FltKind::F16 | FltKind::BF16 => 2,
        }
    }
}

/// One instruction set's kernel bodies.
///
/// Every method is safe for any slices: a body reads only within the slices
/// it is given (a slice shorter than the shape implies gives unspecified
/// values, never an out-of-bounds read). The driver passes exact lengths.
/// `nb` is the number of 32-value blocks per row, `w` slices are weight rows
/// of `kind`, `a` slices are rows of quantized activations ([`act`]).
/// `next` is the weight data the driver will read after this tile (or
/// empty): a tile may prefetch it while it computes, so that short row
/// streams, which hardware prefetchers do not pick up, arrive in time.
pub(crate) trait Isa: Sync {
    /// One output of the integer matmul: `dot(w, a)`.
    fn int_1x1(&self, kind: IntKind, w: &[u8], a: &[u8], nb: usize) -> f32;

    /// `out[n] = dot(w[n], a)`.
    fn int_8x1(
        &self,
        kind: IntKind,
        w: [&[u8]; 8],
        next: &[u8],
        a: &[u8],
        nb: usize,
        out: &mut [f32; 8],
    ) {
        let _ = next;
        for (o, wn) in out.iter_mut().zip(w) {
            *o = self.int_1x1(kind, wn, a, nb);
        }
    }

    /// `out[r * 4 + n] = dot(w[n], a[r])`.
    fn int_4x2(
        &self,
        kind: IntKind,
        w: [&[u8]; 4],
        next: &[u8],
        a: [&[u8]; 2],
        nb: usize,
        out: &mut [f32; 8],
    ) {
        let _ = next;
        for (o, i) in out.iter_mut().zip(0..) {
            *o = self.int_1x1(kind, w[i % 4], a[i / 4], nb);
        }
    }

    /// One output of the float matmul: `dot(w, x)` over `x.len()` values,
    /// in the canonical float order ([`super::scalar::float_dot`]).
    fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32;

    /// `out[n] = dot(w[n], x)`.
    fn flt_8x1(&self, kind: FltKind, w: [&[u8]; 8], next: &[u8], x: &[f32], out: &mut [f32; 8]) {
        let _ = next;
        for (o, wn) in out.iter_mut().zip(w) {
            *o = self.flt_1x1(kind, wn, x);
        }
    }

    /// `out[r * 4 + n] = dot(w[n], x[r])`.
    fn flt_4x2(
        &self,
        kind: FltKind,
        w: [&[u8]; 4],
        next: &[u8],
        x: [&[f32]; 2],
        out: &mut [f32; 8],
    ) {
        let _ = next;
        for (o, i) in out.iter_mut().zip(0..) {
            *o = self.flt_1x1(kind, w[i % 4], x[i / 4]);
        }
    }

    /// Quantizes one row (`x.len()` a multiple of 32, `out` its
    /// [`act::row_bytes`]) exactly as [`act::quantize_block`] does.
    fn quantize_act_row(&self, x: &[f32], out: &mut [u8]);

    /// See [`super::Kernels::kv_scores`]; lengths already checked.
    fn kv_scores(&self, ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]);

    /// `acc[i] = acc[i] * m` for every element, rounded to f16 when `ty` is
    /// F16 (ggml's `ggml_vec_scale_f16` / `_f32`).
    fn kv_scale(&self, ty: KvType, acc: &mut [f32], m: f32);

    /// `acc[i] = fma(v_i, w, acc[i])` for the `acc.len()` values `v_i` of
    /// the KV row `row` (Q8_0 values are `f32(d) * q`), rounded to f16 when
    /// `ty` is F16 (ggml's `ggml_vec_mad_f16` / `_f32`). The row holds at
    /// least `ty.row_bytes(acc.len())` bytes (checked by the caller).
    fn kv_mad(&self, ty: KvType, row: &[u8], w: f32, acc: &mut [f32]);

    /// [`crate::math::expf`] (glibc's `expf` bits) with the CPU's fused
    /// multiply-add where it has one.
    fn expf(&self, x: f32) -> f32 {
        crate::math::expf(x)
    }

    /// Rounds `x` to binary16 (nearest even) into `out` (2 bytes a value).
    fn kv_store_f16(&self, x: &[f32], out: &mut [u8]);
}

/// What one matmul reads, with lengths already checked.
pub(crate) struct Job<'a> {
    weights: &'a [u8],
    kind: Kind,
    /// Output features.
    n_out: usize,
    /// Bytes of one weight row.
    w_row_bytes: usize,
    /// Blocks of 32 per row (quantized formats).
    nb: usize,
    /// Batch rows.
    batch: usize,
    /// f32 activations (float formats) or quantized ones.
    x: &'a [f32],
    q: &'a [u8],
    cols: usize,
    /// Bytes of one quantized activation row.
    q_row_bytes: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Int(IntKind),
    Flt(FltKind),
}

impl<'a> Job<'a> {
    /// The job for checked arguments (see [`super::Kernels::matmul`]).
    pub(crate) fn new(w: &Matrix<'a>, x: &Act<'a>, w_row_bytes: usize) -> Job<'a> {
        let kind = match w.ty {
            GgmlType::Q8_0 => Kind::Int(IntKind::Q8_0),
            GgmlType::Q4_0 => Kind::Int(IntKind::Q4_0),
            GgmlType::Q4_1 => Kind::Int(IntKind::Q4_1),
            GgmlType::F16 => Kind::Flt(FltKind::F16),
            GgmlType::BF16 => Kind::Flt(FltKind::BF16),
            _ => Kind::Flt(FltKind::F32),
        };
        Job {
            weights: w.data,
            kind,
            n_out: w.rows,
            w_row_bytes,
            nb: w.cols / 32,
            batch: x.rows,
            x: x.x,
            q: x.q,
            cols: x.cols,
            q_row_bytes: match x.fmt {
                ActFormat::F32 => 0,
                _ => act::row_bytes(x.cols).unwrap_or(0),
            },
        }
    }

    fn w_row(&self, n: usize) -> &'a [u8] {
        let start = n.saturating_mul(self.w_row_bytes);
        self.weights
            .get(start..start.saturating_add(self.w_row_bytes))
            .unwrap_or(&[])
    }

    /// Up to `count` weight rows from row `n` (fewer at the end).
    fn w_rows(&self, n: usize, count: usize) -> &'a [u8] {
        let start = n.saturating_mul(self.w_row_bytes).min(self.weights.len());
        let end = n
            .saturating_add(count)
            .saturating_mul(self.w_row_bytes)
            .min(self.weights.len());
        self.weights.get(start..end).unwrap_or(&[])
    }

    fn q_row(&self, r: usize) -> &'a [u8] {
        let start = r.saturating_mul(self.q_row_bytes);
        self.q
            .get(start..start.saturating_add(self.q_row_bytes))
            .unwrap_or(&[])
    }

    fn x_row(&self, r: usize) -> &'a [f32] {
        let start = r.saturating_mul(self.cols);
        self.x
            .get(start..start.saturating_add(self.cols))
            .unwrap_or(&[])
    }
}

/// Output features per scheduling unit: task ranges are multiples of it, so
/// only the matrix's last few features take the 1x1 path.
const UNIT: usize = 8;

/// Runs `job` on `par`, writing `y` (`batch * n_out` values, checked).
pub(crate) fn run(isa: &dyn Isa, par: &dyn Parallel, job: &Job, y: &mut [f32]) -> Result<()> {
    let out = OutView::new(y);
    let units = job.n_out.div_ceil(UNIT);
    let n_tasks = par.threads().clamp(1, units.max(1));
    let finished = AtomicUsize::new(0);
    par.run(n_tasks, &|task| {
        if task >= n_tasks {
            return;
        }
        let u = split_range(units, n_tasks, task);
        let start = u.start.saturating_mul(UNIT).min(job.n_out);
        let end = u.end.saturating_mul(UNIT).min(job.n_out);
        run_range(isa, job, &out, start, end);
        // Release: this task's stores happen before the count is read below.
        finished.fetch_add(1, Ordering::Release);
    });
    if finished.load(Ordering::Acquire) != n_tasks {
        return Err(Error::InvalidArgument {
            what: "Parallel::run did not run every task exactly once",
        });
    }
    Ok(())
}

/// Computes outputs `start..end` of every batch row.
fn run_range(isa: &dyn Isa, job: &Job, out: &OutView, start: usize, end: usize) {
    let store =
        |r: usize, n: usize, v: f32| out.set(r.saturating_mul(job.n_out).saturating_add(n), v);
    let mut n0 = start;
    let mut tile = [0f32; 8];
    while end - n0 >= 8 {
        let w8: [&[u8]; 8] = core::array::from_fn(|i| job.w_row(n0 + i));
        // The next 8 rows, split between the two 4x2 tiles of the first
        // row pair (later pairs find them in cache).
        let next = job.w_rows(n0 + 8, 8);
        let (next_a, next_b) = next.split_at(next.len() / 2);
        let mut r = 0;
        while job.batch - r >= 2 {
            for half in 0..2 {
                let w4: [&[u8]; 4] = core::array::from_fn(|i| w8[half * 4 + i]);
                let next = match (r, half) {
                    (0, 0) => next_a,
                    (0, _) => next_b,
                    _ => &[],
                };
                match job.kind {
                    Kind::Int(k) => isa.int_4x2(
                        k,
                        w4,
                        next,
                        [job.q_row(r), job.q_row(r + 1)],
                        job.nb,
                        &mut tile,
                    ),
                    Kind::Flt(k) => {
                        isa.flt_4x2(k, w4, next, [job.x_row(r), job.x_row(r + 1)], &mut tile)
                    }
                }
                for (i, v) in tile.iter().enumerate() {
                    store(r + i / 4, n0 + half * 4 + i % 4, *v);
                }
            }
            r += 2;
        }
        while r < job.batch {
            let next = if r == 0 { next } else { &[] };
            match job.kind {
                Kind::Int(k) => isa.int_8x1(k, w8, next, job.q_row(r), job.nb, &mut tile),
                Kind::Flt(k) => isa.flt_8x1(k, w8, next, job.x_row(r), &mut tile),
            }
            for (i, v) in tile.iter().enumerate() {
                store(r, n0 + i, *v);
            }
            r += 1;
        }
        n0 += 8;
    }
    for n in n0..end {
        let w = job.w_row(n);
        for r in 0..job.batch {
            let v = match job.kind {
                Kind::Int(k) => isa.int_1x1(k, w, job.q_row(r), job.nb),
                Kind::Flt(k) => isa.flt_1x1(k, w, job.x_row(r)),
            };
            store(r, n, v);
        }
    }
}
