//! The instruction-set interface ([`Isa`]) and the matmul drivers that
//! split the output among tasks.
//!
//! # Integer weights (Q8_0, Q4_0, Q4_1): panels
//!
//! The integer GEMM reads weights as 16-row panels ([`super::layout`]).
//! Output rows are split among tasks by panel; a task computes its panels
//! for every activation row:
//!
//! ```text
//! panel-layout weights  ->  Isa::int_panels, read in place
//! plain weights, 1 row  ->  Isa::int_rows: 16 plain rows at a time (decode)
//! plain weights, more   ->  pack_panel into a stack buffer, then int_panels
//!                           (each packed panel serves every activation row)
//! ```
//!
//! Every output is the same chain of f32 operations however it is reached
//! (`docs/numerics.md`): an exact integer sum per 32-value block, then one
//! fused multiply-add into the output's single accumulator, block after
//! block. Layout, tile, task and thread count never change a bit.
//!
//! # Float weights (F32, F16, BF16): row tiles
//!
//! [`run`] tiles the output into 8x1 (decode) and 4x2 (two batch rows)
//! tiles and 1x1 for the last few features; every tile computes each output
//! with the same instruction sequence as the path's 1x1.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::layout::{pack_panel, WeightLayout, PANEL_ROWS};
use super::out::OutView;
use super::{act, Act, ActFormat, KvType, Matrix};
use crate::gguf::GgmlType;
use crate::parallel::{split_range, Parallel};
use crate::{Error, Result};

/// Quantized weight formats with an integer matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntKind {
    /// int8 weights.
    Q8_0,
    /// 4-bit weights, value `nibble - 8`.
    Q4_0,
    /// 4-bit weights, value `d * nibble + m`.
    Q4_1,
}

/// The two orders of roundings of the integer dot product
/// (`docs/numerics.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    /// Eight f32 lane accumulators per output, lane `l` taking the exact
    /// sum of elements `4l..4l+4` of each block by FMA, summed at the end
    /// (`hsum8`): llama.cpp's AVX2 `vec_dot` and llamafile's tinyBLAS.
    Lanes8,
    /// One f32 accumulator per output taking each block's exact total by
    /// FMA: llama.cpp's repacked Q4_0 GEMM/GEMV.
    BlockSum,
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

    /// The kind's order of roundings: what llama.cpp's x86 build computes
    /// for it by default (Q8_0 and Q4_1 are never repacked there; Q4_0 is).
    pub(crate) const fn arith(self) -> Arith {
        match self {
            IntKind::Q8_0 | IntKind::Q4_1 => Arith::Lanes8,
            IntKind::Q4_0 => Arith::BlockSum,
        }
    }

    /// f32 values of one output's running state between block ranges: 8
    /// lanes (and Q4_1's minimum sum) or 1.
    pub(crate) const fn state_len(self) -> usize {
        match self {
            IntKind::Q8_0 => 8,
            IntKind::Q4_1 => 9,
            IntKind::Q4_0 => 1,
        }
    }

    /// The output from a finished state `s` (`state_len` values, `at(l)`
    /// giving value `l`): `hsum8` of the lanes (plus the minimum sum for
    /// Q4_1), or the single accumulator.
    #[inline]
    pub(crate) fn finish(self, at: impl Fn(usize) -> f32) -> f32 {
        match self.arith() {
            Arith::BlockSum => at(0),
            Arith::Lanes8 => {
                let h = ((at(0) + at(4)) + (at(2) + at(6))) + ((at(1) + at(5)) + (at(3) + at(7)));
                if self == IntKind::Q4_1 {
                    h + at(8)
                } else {
                    h
                }
            }
        }
    }
}

/// The integer weights of a GEMM call, in panel layout: `np` panels of
/// `nb` block columns each, `panel_stride` bytes apart (the block columns
/// of a panel are consecutive).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Panels<'a> {
    /// The panel bytes.
    pub(crate) data: &'a [u8],
    /// Panels.
    pub(crate) np: usize,
    /// Block columns per panel in this call.
    pub(crate) nb: usize,
    /// Bytes from one panel to the next.
    pub(crate) panel_stride: usize,
}

/// The activation rows of a GEMM call: `rows` rows, `stride` bytes apart,
/// read from block `b0` on (`data` starts at row 0, block 0).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActRows<'a> {
    /// Quantized activation rows ([`act`]).
    pub(crate) data: &'a [u8],
    /// Rows.
    pub(crate) rows: usize,
    /// Bytes from one row to the next.
    pub(crate) stride: usize,
    /// First block read.
    pub(crate) b0: usize,
}

impl Panels<'_> {
    /// Whether `data` holds every byte the shape implies.
    pub(crate) fn fits(&self, kind: IntKind) -> bool {
        let Some(panel_bytes) = self.nb.checked_mul(kind.panel_block_bytes()) else {
            return false;
        };
        self.np == 0
            || (self.panel_stride >= panel_bytes
                && (self.np - 1)
                    .checked_mul(self.panel_stride)
                    .and_then(|v| v.checked_add(panel_bytes))
                    .is_some_and(|end| end <= self.data.len()))
    }
}

impl ActRows<'_> {
    /// Whether `data` holds blocks `b0..b0 + nb` of every row.
    pub(crate) fn fits(&self, nb: usize) -> bool {
        let end_block = self.b0.checked_add(nb);
        let row_need = end_block.and_then(|e| e.checked_mul(act::BLOCK_BYTES));
        self.rows == 0
            || row_need.is_some_and(|need| {
                self.stride >= need
                    && (self.rows - 1)
                        .checked_mul(self.stride)
                        .and_then(|v| v.checked_add(need))
                        .is_some_and(|end| end <= self.data.len())
            })
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
/// Every method is safe for any arguments: a body checks the shapes it is
/// given against its slices (or reads only within them); a slice shorter
/// than the shape implies gives unspecified values, never an out-of-bounds
/// access. The drivers pass exact shapes. Float-weight slices `w` are rows
/// of [`FltKind`] values; `next` is weight data the driver reads after this
/// tile (or empty), which a tile may prefetch.
pub(crate) trait Isa: Sync {
    /// The integer GEMM on panels, as running states: for every
    /// activation row `r`, panel `p` and panel row `i`, output `n = 16 p +
    /// i` keeps its `S = kind.state_len()` state values at `state[(r * S +
    /// l) * width + n]` (`width >= 16 * np`): the lane accumulators (and
    /// Q4_1's minimum sum) or the single accumulator of `docs/numerics.md`,
    /// after the blocks of this call. With `accumulate` the state holds the
    /// values after blocks `0..a.b0` and continues from them (so a row split
    /// into block ranges gives the same bits); otherwise it starts at zero.
    /// [`IntKind::finish`] turns a state into the output: with `finish`
    /// (the call covers the row's last blocks) the body does so itself and
    /// writes output `n` of row `r` to `out[r * width + n]` instead of the
    /// state.
    #[allow(clippy::too_many_arguments)]
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
    );

    /// The integer GEMV on plain rows: `out[i]` is the output of weight row
    /// `i` (of `n_rows <= 16`, each `row_bytes` apart, `nb` blocks) with the
    /// one activation row `a`; `out[n_rows..]` is unspecified. `next` is
    /// the weight data read after these rows (or empty), which the body may
    /// prefetch as it goes: 16 interleaved row streams are more than the
    /// hardware prefetchers follow on their own.
    #[allow(clippy::too_many_arguments)]
    fn int_rows(
        &self,
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    );

    /// Whether this instruction set multiplies plain integer weights with
    /// its row tiles ([`Isa::int_1x1`], [`Isa::int_8x1`], [`Isa::int_4x2`])
    /// instead of packing them into panels (NEON: its tiles keep every
    /// output's state in registers over the whole row).
    fn plain_int_tiles(&self) -> bool {
        false
    }

    /// One output of the integer matmul on a plain row: `dot(w, a)`.
    fn int_1x1(&self, kind: IntKind, w: &[u8], a: &[u8], nb: usize) -> f32 {
        super::scalar::int_dot(kind, w, a, nb)
    }

    /// `out[n] = dot(w[n], a)` on plain rows.
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

    /// `out[r * 4 + n] = dot(w[n], a[r])` on plain rows.
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

    /// [`super::Kernels::attend_page`], lengths checked: the scores, then
    /// [`attend_keys`].
    #[allow(clippy::too_many_arguments)]
    fn attend_page(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        v: &[u8],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
        state: &mut super::SoftmaxState,
        acc: &mut [f32],
    ) {
        attend_page_steps(self, ty, q, k, v, stride, scale, scores, state, acc)
    }

    /// [`super::Kernels::attend_group`], lengths checked: by default each
    /// head alone.
    #[allow(clippy::too_many_arguments)]
    fn attend_group(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        v: &[u8],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
        states: &mut [super::SoftmaxState],
        acc: &mut [f32],
    ) {
        attend_group_heads(self, ty, q, k, v, stride, scale, scores, states, acc)
    }

    /// [`pack_panel`]: the same bytes, perhaps faster.
    #[allow(clippy::too_many_arguments)]
    fn pack_panel(
        &self,
        kind: IntKind,
        rows: &[u8],
        row_bytes: usize,
        n_rows: usize,
        b0: usize,
        n_blocks: usize,
        out: &mut [u8],
    ) -> bool {
        pack_panel(kind, rows, row_bytes, n_rows, b0, n_blocks, out)
    }

    /// `gate[i] = gate[i] / (1 + ggml_expf(-gate[i])) * up[i]` over the
    /// common length, bit for bit as [`crate::model::ops::swiglu`].
    fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        crate::model::ops::swiglu(gate, up)
    }
}

/// [`Isa::attend_page`] as separate steps: the scores, the scale, then
/// [`attend_keys`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_page_steps<I: Isa + ?Sized>(
    isa: &I,
    ty: KvType,
    q: &[f32],
    k: &[u8],
    v: &[u8],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut super::SoftmaxState,
    acc: &mut [f32],
) {
    isa.kv_scores(ty, q, k, stride, scores);
    for s in scores.iter_mut() {
        *s *= scale;
    }
    let row = ty.row_bytes(acc.len()).unwrap_or(usize::MAX);
    attend_keys(isa, ty, scores, v, stride, row, state, acc);
}

/// [`Isa::attend_group`] one head at a time with [`Isa::attend_page`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_group_heads<I: Isa + ?Sized>(
    isa: &I,
    ty: KvType,
    q: &[f32],
    k: &[u8],
    v: &[u8],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [super::SoftmaxState],
    acc: &mut [f32],
) {
    let g = states.len().max(1);
    let (dim, n) = (q.len() / g, scores.len() / g);
    for (h, st) in states.iter_mut().enumerate() {
        let (Some(qh), Some(sh), Some(ah)) = (
            q.get(h * dim..(h + 1) * dim),
            scores.get_mut(h * n..(h + 1) * n),
            acc.get_mut(h * dim..(h + 1) * dim),
        ) else {
            return;
        };
        isa.attend_page(ty, qh, k, v, stride, scale, sh, st, ah);
    }
}

/// [`super::Kernels::kv_attend`] with `isa`'s bodies, key by key (rows of
/// `row` bytes at `stride`, checked by the caller; a row outside `v` ends
/// the loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_keys<I: Isa + ?Sized>(
    isa: &I,
    ty: KvType,
    scores: &[f32],
    v: &[u8],
    stride: usize,
    row: usize,
    state: &mut super::SoftmaxState,
    acc: &mut [f32],
) {
    for (t, &s) in scores.iter().enumerate() {
        let Some(v_t) = t
            .checked_mul(stride)
            .and_then(|o| v.get(o..o.checked_add(row)?))
        else {
            return;
        };
        let (ms, vs) = if s > state.max {
            let ms = isa.expf(state.max - s);
            state.max = s;
            isa.kv_scale(ty, acc, ms);
            (ms, 1.0)
        } else {
            (1.0, isa.expf(s - state.max))
        };
        isa.kv_mad(ty, v_t, vs, acc);
        state.sum = super::scalar::fmaf(state.sum, ms, vs);
    }
}

/// What one matmul reads, with lengths already checked.
pub(crate) struct Job<'a> {
    weights: &'a [u8],
    kind: Kind,
    layout: WeightLayout,
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

/// The integer kind and layout of a weight type, if it has an integer
/// matmul.
pub(crate) fn int_kind(ty: GgmlType) -> Option<(IntKind, WeightLayout)> {
    match ty {
        GgmlType::Q8_0 => Some((IntKind::Q8_0, WeightLayout::Plain)),
        GgmlType::Q4_0 => Some((IntKind::Q4_0, WeightLayout::Plain)),
        GgmlType::Q4_1 => Some((IntKind::Q4_1, WeightLayout::Plain)),
        GgmlType::Q8_0_P16 => Some((IntKind::Q8_0, WeightLayout::Panel16)),
        GgmlType::Q4_0_P16 => Some((IntKind::Q4_0, WeightLayout::Panel16)),
        GgmlType::Q4_1_P16 => Some((IntKind::Q4_1, WeightLayout::Panel16)),
        _ => None,
    }
}

impl<'a> Job<'a> {
    /// The job for checked arguments (see [`super::Kernels::matmul`]).
    pub(crate) fn new(w: &Matrix<'a>, x: &Act<'a>, w_row_bytes: usize) -> Job<'a> {
        let (kind, layout) = match int_kind(w.ty) {
            Some((k, l)) => (Kind::Int(k), l),
            None => (
                Kind::Flt(match w.ty {
                    GgmlType::F16 => FltKind::F16,
                    GgmlType::BF16 => FltKind::BF16,
                    _ => FltKind::F32,
                }),
                WeightLayout::Plain,
            ),
        };
        Job {
            weights: w.data,
            kind,
            layout,
            n_out: w.rows,
            w_row_bytes,
            nb: w.cols / 32,
            batch: x.rows,
            x: x.x,
            q: x.q,
            cols: x.cols,
            q_row_bytes: match x.fmt {
                ActFormat::F32 => 0,
                ActFormat::Q8 => act::row_bytes(x.cols).unwrap_or(0),
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

/// Output features per scheduling unit of the float matmul: task ranges
/// are multiples of it, so only the matrix's last few features take the
/// 1x1 path.
const UNIT: usize = 8;

/// Tasks per thread: work is cut finer than one piece per thread and the
/// pieces are handed out as threads ask for them, so a thread whose core is
/// busy with another process takes fewer pieces instead of holding the
/// others up at the end of every matmul.
const TASKS_PER_THREAD: usize = 4;

/// Runs `job` on `par`, writing `y` (`batch * n_out` values, checked).
pub(crate) fn run(isa: &dyn Isa, par: &dyn Parallel, job: &Job, y: &mut [f32]) -> Result<()> {
    let out = OutView::new(y);
    // Integer weights go by panels unless the instruction set multiplies
    // plain rows with its own tiles (a panel-layout matrix always goes by
    // panels).
    let plain_tiles = match job.kind {
        Kind::Int(_) => isa.plain_int_tiles() && job.layout == WeightLayout::Plain,
        Kind::Flt(_) => true,
    };
    let (units, per_unit) = if plain_tiles {
        (job.n_out.div_ceil(UNIT), UNIT)
    } else {
        (job.n_out.div_ceil(PANEL_ROWS), PANEL_ROWS)
    };
    let n_tasks = par
        .threads()
        .saturating_mul(TASKS_PER_THREAD)
        .clamp(1, units.max(1));
    let finished = AtomicUsize::new(0);
    par.run(n_tasks, &|task| {
        if task >= n_tasks {
            return;
        }
        let u = split_range(units, n_tasks, task);
        match job.kind {
            Kind::Int(kind) if !plain_tiles => int_range(isa, kind, job, &out, u),
            _ => {
                let start = u.start.saturating_mul(per_unit).min(job.n_out);
                let end = u.end.saturating_mul(per_unit).min(job.n_out);
                run_range(isa, job, &out, start, end);
            }
        }
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

/// Bytes of the stack buffer plain weights are packed into: a few panels of
/// a typical row length, so that every packed panel is reused from L1 by
/// every activation row. Longer rows are packed a block range at a time.
const PACK_BYTES: usize = 24 * 1024;

/// Activation rows computed per kernel call.
const ROWS_PER_CALL: usize = 16;

/// f32 values of the state tile of one kernel call, on the stack: 16 rows
/// by 16 outputs by 9 state values (one panel of a lane kind), or up to 4
/// panels of a one-value kind.
const TILE: usize = ROWS_PER_CALL * PANEL_ROWS * 9;

/// Panels per kernel call (and packed together) at most.
const PANELS_PER_CALL: usize = 4;

/// The finished outputs of one kernel call, on the stack.
const OUT_TILE: usize = ROWS_PER_CALL * PANELS_PER_CALL * PANEL_ROWS;

/// Computes output panels `panels` for every batch row.
fn int_range(
    isa: &dyn Isa,
    kind: IntKind,
    job: &Job,
    out: &OutView,
    panels: core::ops::Range<usize>,
) {
    let nb = job.nb;
    let pbb = kind.panel_block_bytes();
    let panel_bytes = nb.saturating_mul(pbb);
    // One GEMV row over plain weights: no packing, every weight read once.
    if job.layout == WeightLayout::Plain && job.batch == 1 {
        let a = job.q_row(0);
        let mut tile = [0f32; PANEL_ROWS];
        for p in panels.clone() {
            let n0 = p * PANEL_ROWS;
            let n_rows = job.n_out.saturating_sub(n0).min(PANEL_ROWS);
            let w = job.w_rows(n0, n_rows);
            let next = if p + 1 < panels.end {
                job.w_rows(n0 + PANEL_ROWS, PANEL_ROWS)
            } else {
                &[]
            };
            isa.int_rows(kind, w, job.w_row_bytes, n_rows, nb, a, next, &mut tile);
            for (i, v) in tile.iter().take(n_rows).enumerate() {
                out.set(n0 + i, *v);
            }
        }
        return;
    }
    let s_len = kind.state_len();
    let mut pack = [0u8; PACK_BYTES];
    let mut tile = [0f32; TILE];
    let mut outs = [0f32; OUT_TILE];
    let in_place = job.layout == WeightLayout::Panel16;
    // Blocks per packed chunk: all of them when a panel fits the buffer.
    let chunk_blocks = if in_place || panel_bytes <= PACK_BYTES {
        nb
    } else {
        (PACK_BYTES / pbb).max(1)
    };
    let per_call = {
        let by_tile = TILE / (ROWS_PER_CALL * s_len * PANEL_ROWS);
        let by_pack = if in_place {
            PANELS_PER_CALL
        } else {
            PACK_BYTES / panel_bytes.max(1)
        };
        by_tile.min(by_pack).clamp(1, PANELS_PER_CALL)
    };
    let mut p0 = panels.start;
    while p0 < panels.end {
        let np = (panels.end - p0).min(per_call);
        let width = np * PANEL_ROWS;
        let valid = job.n_out.saturating_sub(p0 * PANEL_ROWS).min(width);
        let whole = chunk_blocks >= nb;
        if whole && !in_place {
            pack_into(isa, kind, job, &mut pack, p0, np, 0, nb);
        }
        let mut r0 = 0;
        while r0 < job.batch {
            let rows = (job.batch - r0).min(ROWS_PER_CALL);
            let mut b0 = 0;
            while b0 < nb {
                let nbk = (nb - b0).min(chunk_blocks);
                if !whole {
                    pack_into(isa, kind, job, &mut pack, p0, np, b0, nbk);
                }
                let w = if in_place {
                    Panels {
                        data: job
                            .weights
                            .get(p0.saturating_mul(panel_bytes)..)
                            .unwrap_or(&[]),
                        np,
                        nb,
                        panel_stride: panel_bytes,
                    }
                } else {
                    Panels {
                        data: &pack,
                        np,
                        nb: nbk,
                        panel_stride: nbk * pbb,
                    }
                };
                let a = ActRows {
                    data: job
                        .q
                        .get(r0.saturating_mul(job.q_row_bytes)..)
                        .unwrap_or(&[]),
                    rows,
                    stride: job.q_row_bytes,
                    b0,
                };
                let finish = b0 + nbk >= nb;
                isa.int_panels(kind, &w, &a, b0 > 0, &mut tile, width, finish, &mut outs);
                b0 += nbk;
            }
            for (r, row) in outs.chunks_exact(width).take(rows).enumerate() {
                out.set_run((r0 + r) * job.n_out + p0 * PANEL_ROWS, &row[..valid]);
            }
            r0 += rows;
        }
        p0 += np;
    }
}

/// Packs blocks `b0..b0 + nbk` of panels `p0..p0 + np` of the plain
/// weights of `job` into `pack`, panel after panel.
#[allow(clippy::too_many_arguments)]
fn pack_into(
    isa: &dyn Isa,
    kind: IntKind,
    job: &Job,
    pack: &mut [u8],
    p0: usize,
    np: usize,
    b0: usize,
    nbk: usize,
) {
    let chunk = nbk * kind.panel_block_bytes();
    for i in 0..np {
        let n0 = (p0 + i) * PANEL_ROWS;
        let n_rows = job.n_out.saturating_sub(n0).min(PANEL_ROWS);
        let dst = pack.get_mut(i * chunk..(i + 1) * chunk).unwrap_or(&mut []);
        isa.pack_panel(
            kind,
            job.w_rows(n0, n_rows),
            job.w_row_bytes,
            n_rows,
            b0,
            nbk,
            dst,
        );
    }
}

/// Computes outputs `start..end` of every batch row with row tiles (float
/// weights, and plain integer weights on instruction sets that prefer it).
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
