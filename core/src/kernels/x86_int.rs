//! x86_64 integer GEMM and GEMV: one generic body, compiled three times —
//! AVX2 (`vpmaddubsw` + `vpmaddwd`), AVX-VNNI (`vpdpbusd` ymm) and AVX-512
//! VNNI (`vpdpbusd` zmm) — behind [`X86`], whose other operations (float
//! matmul, attention, activation quantization) are the AVX2 bodies.
//!
//! # GEMM on panels ([`gemm`])
//!
//! A tile is `MV` weight vectors (16 / `LANES` vectors per panel, one lane
//! per weight row) times `RN` activation rows. Per 32-value block, each
//! (vector, row) pair keeps one i32 accumulator vector: it starts at the
//! exact correction for offset weights (`-c * sum(q)`, see below) and takes
//! the block's groups of 4 weights per lane times 4 broadcast activation
//! bytes; the block total is exact. Then one FMA per (vector, row) adds
//! `f32(total) * (d_w * d_a)` to the output accumulators — the canonical
//! chain of `docs/numerics.md`, lane by lane.
//!
//! The dot instructions multiply unsigned by signed bytes. Nibbles are
//! unsigned already (Q4_0's value is `nibble - 8`: correction `-8 sum(q)`).
//! Q8_0 weights are signed: VNNI flips their sign bit (`w + 128`,
//! correction `-128 sum(q)`); AVX2 has no 32-bit accumulation and its
//! 16-bit pair sums would saturate on `255 * 127 * 2`, so it multiplies
//! `|w|` by `sign(q, w)` (pair sums at most `2 * 128 * 127 = 32512`).
//!
//! # GEMV on plain rows ([`gemv`])
//!
//! One activation row against 16 plain rows, read once: per block, each
//! row's 32 products are summed in lanes of 4 (8 lanes per row), then a
//! transposing reduction turns 16 rows of 8 lanes into one vector of 16
//! exact block totals, lane `i` for row `i`, which continue as in the GEMM.

use core::arch::x86_64::*;
use core::marker::PhantomData;

use super::act::{BLOCK_BYTES, D_AT, GROUP_CORR_AT, QSUM_AT, S_AT};
use super::layout::{GROUP_BYTES, PANEL_ROWS};
use super::matmul::{ActRows, Arith, FltKind, IntKind, Isa, Panels};
use super::x86_avx2::Avx2;
use super::KvType;

/// The vector operations one x86 instruction set provides to the generic
/// bodies. Every function is `#[inline(always)]` and only ever inlined into
/// a `#[target_feature]` entry point of its own instruction set.
pub(crate) trait Dot: Copy + Sync + 'static {
    /// `LANES` x i32.
    type I: Copy;
    /// `LANES` x f32.
    type F: Copy;
    /// Q8_0 weights prepared for [`Dot::dot_q8`].
    type W: Copy;
    /// Lanes per vector (16 or 8).
    const LANES: usize;
    /// The offset [`Dot::dot_q8`] adds to Q8_0 weights (128 or 0).
    const Q8_BIAS: i32;

    /// Weight vectors (1 or 2) and activation rows (1 to 4) of the largest
    /// GEMM tile for an arithmetic and a number of rows: what fits the
    /// register file (a single row takes more weight streams at once).
    fn tile(arith: Arith, rows: usize) -> (usize, usize);

    /// The initial integer accumulator of one group of 4 Q8_0 weights
    /// per lane: `-Q8_BIAS * (sum of the group's 4 activation values)`,
    /// from the activation block's correction for that group at `p`.
    ///
    /// # Safety
    ///
    /// `p` must be readable for 4 bytes.
    unsafe fn q8_group_init(p: *const u8) -> Self::I;

    /// The initial accumulator of a plain Q8_0 block on one row's 8 lanes
    /// (in every group of 8 lanes): the 8 group corrections at `p`, or 0.
    ///
    /// # Safety
    ///
    /// `p` must be readable for 32 bytes.
    unsafe fn q8_lanes_init(p: *const u8) -> Self::I;

    /// Lane-wise `a + b`.
    fn add_f(a: Self::F, b: Self::F) -> Self::F;

    /// The eight-lane GEMV ([`gemv_lanes8`] or [`gemv_lanes16`]).
    ///
    /// # Safety
    ///
    /// As those functions.
    unsafe fn gemv_lanes<const K: u8>(
        rows: &[*const u8; PANEL_ROWS],
        nb: usize,
        a: &[u8],
        pf: &[Prefetch; 2],
        out: &mut [f32; PANEL_ROWS],
    );

    /// `LANES * 4` bytes.
    ///
    /// # Safety
    ///
    /// `p` must be readable for `LANES * 4` bytes.
    unsafe fn load(p: *const u8) -> Self::I;
    /// 4 bytes at `p` in every lane.
    ///
    /// # Safety
    ///
    /// `p` must be readable for 4 bytes.
    unsafe fn bcast4(p: *const u8) -> Self::I;
    /// `v` in every lane.
    fn splat_i(v: i32) -> Self::I;
    /// Q8_0 weights, ready for [`Dot::dot_q8`].
    fn prep_q8(w: Self::I) -> Self::W;
    /// `acc + sum over each lane's 4 bytes of (w + Q8_BIAS) * a` (signed
    /// weights, signed activations), exact.
    fn dot_q8(acc: Self::I, w: Self::W, a: Self::I) -> Self::I;
    /// `acc + sum over each lane's 4 bytes of w * a` (unsigned `w` <= 15,
    /// signed `a`), exact.
    fn dot_nib(acc: Self::I, w: Self::I, a: Self::I) -> Self::I;
    /// The low nibbles of every byte.
    fn nib_lo(v: Self::I) -> Self::I;
    /// The high nibbles of every byte.
    fn nib_hi(v: Self::I) -> Self::I;
    /// `LANES` f16 values as f32.
    ///
    /// # Safety
    ///
    /// `p` must be readable for `LANES * 2` bytes.
    unsafe fn load_f16(p: *const u8) -> Self::F;
    /// `LANES` f32.
    ///
    /// # Safety
    ///
    /// `p` must be readable for `LANES` f32.
    unsafe fn load_f(p: *const f32) -> Self::F;
    /// Stores `LANES` f32.
    ///
    /// # Safety
    ///
    /// `p` must be writable for `LANES` f32.
    unsafe fn store_f(p: *mut f32, v: Self::F);
    /// `v` in every lane.
    fn splat_f(v: f32) -> Self::F;
    /// Zeros.
    fn zero_f() -> Self::F;
    /// i32 to f32 (exact for the block totals, below 2^24).
    fn cvt(v: Self::I) -> Self::F;
    /// `a * b`, rounded.
    fn mul(a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, rounded once.
    fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// Lane-wise `a + b`.
    fn add_i(a: Self::I, b: Self::I) -> Self::I;

    /// The exact block totals of 16 plain rows against one activation
    /// block: lane `i` of the result (`16 / LANES` vectors) is
    /// `sum_j (v_ij + c) * q_j` for row `i`'s 32 weights `v_ij` (Q8_0:
    /// int8, `c = Q8_BIAS`; nibble kinds: the nibbles, `c = 0`).
    ///
    /// # Safety
    ///
    /// Every `rows[i]` must be readable for one plain block of kind `K`,
    /// `act` for one activation block.
    unsafe fn block_totals<const K: u8>(
        rows: &[*const u8; PANEL_ROWS],
        act: *const u8,
    ) -> [Self::I; 2];

    /// The GEMM entry point, compiled for this instruction set.
    ///
    /// # Safety
    ///
    /// The CPU must have the instruction set's features.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        kind: IntKind,
        w: &Panels,
        a: &ActRows,
        accumulate: bool,
        state: &mut [f32],
        width: usize,
        finish: bool,
        out: &mut [f32],
    );

    /// The GEMV entry point, compiled for this instruction set.
    ///
    /// # Safety
    ///
    /// The CPU must have the instruction set's features.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemv(
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    );
}

/// Proof that the CPU has `D`'s instruction set (and AVX2, FMA, F16C).
#[derive(Clone, Copy, Debug)]
pub(crate) struct X86<D: Dot> {
    avx2: Avx2,
    _dot: PhantomData<D>,
}

impl<D: Dot> X86<D> {
    /// # Safety
    ///
    /// The running CPU must support AVX2, FMA, F16C and `D`'s features.
    pub(crate) unsafe fn new() -> Self {
        X86 {
            // SAFETY: the caller vouches for AVX2, FMA and F16C.
            avx2: unsafe { Avx2::new() },
            _dot: PhantomData,
        }
    }
}

const K_Q8_0: u8 = 0;
const K_Q4_0: u8 = 1;
const K_Q4_1: u8 = 2;

const fn int_kind(k: u8) -> IntKind {
    match k {
        K_Q8_0 => IntKind::Q8_0,
        K_Q4_0 => IntKind::Q4_0,
        _ => IntKind::Q4_1,
    }
}

/// The exact correction that starts a block's integer accumulator: the
/// dot instructions add `c * sum(q)` for weights stored as `w + c`.
#[inline(always)]
fn block_init<D: Dot, const K: u8>(qsum: i32) -> i32 {
    match K {
        K_Q8_0 => qsum.wrapping_mul(-D::Q8_BIAS),
        K_Q4_0 => qsum.wrapping_mul(-8),
        _ => 0,
    }
}

/// Reads a native-endian 4-byte value.
///
/// # Safety
///
/// `p` must be readable for 4 bytes.
#[inline(always)]
unsafe fn read4(p: *const u8) -> [u8; 4] {
    // SAFETY: per the caller; no alignment needed.
    unsafe { core::ptr::read_unaligned(p.cast::<[u8; 4]>()) }
}

/// The pointers and shape of one tile call.
struct Tile {
    /// Panel 0 of the call.
    w: *const u8,
    panel_stride: usize,
    nb: usize,
    /// First weight vector of the tile (vector `v` covers lanes
    /// `(v % vpp) * LANES ..` of panel `v / vpp`, `vpp = 16 / LANES`).
    v0: usize,
    /// Activation row 0 of the tile, at block `b0` of the call.
    a: *const u8,
    a_stride: usize,
    accumulate: bool,
    /// State of activation row 0 of the tile (see `Isa::int_panels`).
    state: *mut f32,
    width: usize,
    /// Write finished outputs to `out` (row 0 of the tile) instead of the
    /// state.
    finish: bool,
    out: *mut f32,
}

impl Tile {
    /// The first output (column of the state) of vector `v`.
    #[inline(always)]
    fn n_of<D: Dot>(&self, v: usize) -> usize {
        let vpp = PANEL_ROWS / D::LANES;
        let va = self.v0 + v;
        (va / vpp) * PANEL_ROWS + (va % vpp) * D::LANES
    }

    /// Block column `b` of vector `v`'s panel, and the byte offset of the
    /// vector's lanes in a 64-byte group.
    ///
    /// # Safety
    ///
    /// `v`'s panel and `b < nb` must be inside the call's weights.
    #[inline(always)]
    unsafe fn col<D: Dot>(&self, v: usize, b: usize, pbb: usize) -> (*const u8, usize) {
        let vpp = PANEL_ROWS / D::LANES;
        let va = self.v0 + v;
        // SAFETY: per the caller.
        let col = unsafe { self.w.add((va / vpp) * self.panel_stride + b * pbb) };
        (col, (va % vpp) * D::LANES * 4)
    }

    /// The output of row `r`, vector `v`.
    ///
    /// # Safety
    ///
    /// Must be inside the call's outputs (checked by `gemm`).
    #[inline(always)]
    unsafe fn out_at<D: Dot>(&self, r: usize, v: usize) -> *mut f32 {
        // SAFETY: per the caller.
        unsafe { self.out.add(r * self.width + self.n_of::<D>(v)) }
    }

    /// The state value `l` of row `r`, vector `v`.
    ///
    /// # Safety
    ///
    /// Must be inside the call's state (checked by `gemm`).
    #[inline(always)]
    unsafe fn state_at<D: Dot>(&self, r: usize, l: usize, s_len: usize, v: usize) -> *mut f32 {
        // SAFETY: per the caller.
        unsafe {
            self.state
                .add((r * s_len + l) * self.width + self.n_of::<D>(v))
        }
    }
}

/// Activation block `b` of tile row `r`: its pointer, `d` and `s`.
///
/// # Safety
///
/// The block must be inside the call's activations.
#[inline(always)]
unsafe fn act_block(t: &Tile, r: usize, b: usize) -> (*const u8, f32, f32) {
    // SAFETY: per the caller.
    unsafe {
        let p = t.a.add(r * t.a_stride + b * BLOCK_BYTES);
        (
            p,
            f32::from_ne_bytes(read4(p.add(D_AT))),
            f32::from_ne_bytes(read4(p.add(S_AT))),
        )
    }
}

/// A block-sum (Q4_0) tile of `MV` vectors by `RN` rows over the call's
/// blocks: per block, each (vector, row) integer accumulator starts at the
/// `-8 sum(q)` correction and takes all 32 products; then one FMA each.
///
/// # Safety
///
/// The tile's weights, activations and state are inside the call's
/// (checked by `gemm`).
#[inline(always)]
unsafe fn tile_blocksum<D: Dot, const MV: usize, const RN: usize>(t: &Tile) {
    let kind = IntKind::Q4_0;
    let pbb = kind.panel_block_bytes();
    let qs_at = kind.panel_qs_at();
    let mut acc = [[D::zero_f(); RN]; MV];
    if t.accumulate {
        for (v, acc_v) in acc.iter_mut().enumerate() {
            for (r, acc_vr) in acc_v.iter_mut().enumerate() {
                // SAFETY: a tile state (caller).
                *acc_vr = unsafe { D::load_f(t.state_at::<D>(r, 0, 1, v)) };
            }
        }
    }
    for b in 0..t.nb {
        let mut ap = [t.a; RN];
        let mut da = [0f32; RN];
        let mut iacc = [[D::splat_i(0); RN]; MV];
        for r in 0..RN {
            // SAFETY: activation block (r, b) (caller).
            unsafe {
                let (p, d, _) = act_block(t, r, b);
                ap[r] = p;
                da[r] = d;
                let qsum = i32::from_ne_bytes(read4(p.add(QSUM_AT)));
                let init = D::splat_i(block_init::<D, K_Q4_0>(qsum));
                for iacc_v in iacc.iter_mut() {
                    iacc_v[r] = init;
                }
            }
        }
        for g in 0..4 {
            let mut lo = [D::splat_i(0); MV];
            let mut hi = [D::splat_i(0); MV];
            for v in 0..MV {
                // SAFETY: group g of vector v's lanes in block column b.
                let raw = unsafe {
                    let (col, lanes) = t.col::<D>(v, b, pbb);
                    D::load(col.add(qs_at + g * GROUP_BYTES + lanes))
                };
                lo[v] = D::nib_lo(raw);
                hi[v] = D::nib_hi(raw);
            }
            for r in 0..RN {
                // SAFETY: values 4g.. and 16+4g.. of activation block (r, b).
                let (a_lo, a_hi) = unsafe {
                    (
                        D::bcast4(ap[r].add(4 * g)),
                        D::bcast4(ap[r].add(16 + 4 * g)),
                    )
                };
                for v in 0..MV {
                    iacc[v][r] = D::dot_nib(D::dot_nib(iacc[v][r], lo[v], a_lo), hi[v], a_hi);
                }
            }
        }
        for v in 0..MV {
            // SAFETY: the f16 scales of vector v's lanes.
            let dw = unsafe {
                let (col, lanes) = t.col::<D>(v, b, pbb);
                D::load_f16(col.add(lanes / 2))
            };
            for r in 0..RN {
                let dd = D::mul(dw, D::splat_f(da[r]));
                acc[v][r] = D::fma(D::cvt(iacc[v][r]), dd, acc[v][r]);
            }
        }
    }
    for (v, acc_v) in acc.iter().enumerate() {
        for (r, acc_vr) in acc_v.iter().enumerate() {
            // SAFETY: a tile output or state (caller).
            unsafe {
                let to = if t.finish {
                    t.out_at::<D>(r, v)
                } else {
                    t.state_at::<D>(r, 0, 1, v)
                };
                D::store_f(to, *acc_vr)
            };
        }
    }
}

/// An eight-lane (Q8_0, Q4_1) tile of `MV` vectors by `RN` rows: each
/// group of 4 weights per lane is its own exact sum, taken by FMA into
/// that group's accumulator; Q4_1 adds `m_w * s_a` (multiply, then add).
///
/// # Safety
///
/// As [`tile_blocksum`].
#[inline(always)]
unsafe fn tile_lanes<D: Dot, const K: u8, const MV: usize, const RN: usize>(t: &Tile) {
    let kind = int_kind(K);
    let s_len = kind.state_len();
    let pbb = kind.panel_block_bytes();
    let qs_at = kind.panel_qs_at();
    let mut acc = [[[D::zero_f(); RN]; MV]; 8];
    let mut summs = [[D::zero_f(); RN]; MV];
    if t.accumulate {
        for v in 0..MV {
            for r in 0..RN {
                // SAFETY: tile states (caller).
                unsafe {
                    for (l, acc_l) in acc.iter_mut().enumerate() {
                        acc_l[v][r] = D::load_f(t.state_at::<D>(r, l, s_len, v));
                    }
                    if K == K_Q4_1 {
                        summs[v][r] = D::load_f(t.state_at::<D>(r, 8, s_len, v));
                    }
                }
            }
        }
    }
    for b in 0..t.nb {
        let mut ap = [t.a; RN];
        let mut dd = [[D::zero_f(); RN]; MV];
        let mut sa = [0f32; RN];
        let mut da = [0f32; RN];
        for r in 0..RN {
            // SAFETY: activation block (r, b) (caller).
            (ap[r], da[r], sa[r]) = unsafe { act_block(t, r, b) };
        }
        for v in 0..MV {
            // SAFETY: the f16 scales (and Q4_1 minimums) of vector v's lanes.
            unsafe {
                let (col, lanes) = t.col::<D>(v, b, pbb);
                let dw = D::load_f16(col.add(lanes / 2));
                for r in 0..RN {
                    dd[v][r] = D::mul(dw, D::splat_f(da[r]));
                }
                if K == K_Q4_1 {
                    let mw = D::load_f16(col.add(kind.panel_m_at() + lanes / 2));
                    for r in 0..RN {
                        summs[v][r] = D::add_f(summs[v][r], D::mul(mw, D::splat_f(sa[r])));
                    }
                }
            }
        }
        if K == K_Q8_0 {
            #[allow(clippy::needless_range_loop)] // `g` is also an offset.
            for g in 0..8 {
                let mut wv = [D::prep_q8(D::splat_i(0)); MV];
                for (v, wvv) in wv.iter_mut().enumerate() {
                    // SAFETY: group g of vector v's lanes in block column b.
                    *wvv = D::prep_q8(unsafe {
                        let (col, lanes) = t.col::<D>(v, b, pbb);
                        D::load(col.add(qs_at + g * GROUP_BYTES + lanes))
                    });
                }
                for r in 0..RN {
                    // SAFETY: values 4g..4g+4 of activation block (r, b), and
                    // their correction.
                    let (av, init) = unsafe {
                        (
                            D::bcast4(ap[r].add(4 * g)),
                            D::q8_group_init(ap[r].add(GROUP_CORR_AT + 4 * g)),
                        )
                    };
                    for v in 0..MV {
                        let isum = D::dot_q8(init, wv[v], av);
                        acc[g][v][r] = D::fma(dd[v][r], D::cvt(isum), acc[g][v][r]);
                    }
                }
            }
        } else {
            for g in 0..4 {
                let mut lo = [D::splat_i(0); MV];
                let mut hi = [D::splat_i(0); MV];
                for v in 0..MV {
                    // SAFETY: as above.
                    let raw = unsafe {
                        let (col, lanes) = t.col::<D>(v, b, pbb);
                        D::load(col.add(qs_at + g * GROUP_BYTES + lanes))
                    };
                    lo[v] = D::nib_lo(raw);
                    hi[v] = D::nib_hi(raw);
                }
                for r in 0..RN {
                    // SAFETY: values 4g.. and 16+4g.. of activation block (r, b).
                    let (a_lo, a_hi) = unsafe {
                        (
                            D::bcast4(ap[r].add(4 * g)),
                            D::bcast4(ap[r].add(16 + 4 * g)),
                        )
                    };
                    for v in 0..MV {
                        let s_lo = D::dot_nib(D::splat_i(0), lo[v], a_lo);
                        let s_hi = D::dot_nib(D::splat_i(0), hi[v], a_hi);
                        acc[g][v][r] = D::fma(dd[v][r], D::cvt(s_lo), acc[g][v][r]);
                        acc[4 + g][v][r] = D::fma(dd[v][r], D::cvt(s_hi), acc[4 + g][v][r]);
                    }
                }
            }
        }
    }
    for v in 0..MV {
        for r in 0..RN {
            // SAFETY: tile outputs or states (caller).
            unsafe {
                if t.finish {
                    // hsum_float_8 of each lane's 8 accumulators, vertically.
                    let l = |i: usize| acc[i][v][r];
                    let h = D::add_f(
                        D::add_f(D::add_f(l(0), l(4)), D::add_f(l(2), l(6))),
                        D::add_f(D::add_f(l(1), l(5)), D::add_f(l(3), l(7))),
                    );
                    let h = if K == K_Q4_1 {
                        D::add_f(h, summs[v][r])
                    } else {
                        h
                    };
                    D::store_f(t.out_at::<D>(r, v), h);
                    continue;
                }
                for (l, acc_l) in acc.iter().enumerate() {
                    D::store_f(t.state_at::<D>(r, l, s_len, v), acc_l[v][r]);
                }
                if K == K_Q4_1 {
                    D::store_f(t.state_at::<D>(r, 8, s_len, v), summs[v][r]);
                }
            }
        }
    }
}

/// The GEMM of [`Isa::int_panels`] for kind `K`, shapes checked: tiles of
/// up to `D::tile(kind)` vectors and rows, smaller ones at the edges.
///
/// # Safety
///
/// `w`, `a` and `state` hold every byte their shapes imply (see [`gemm`]).
#[inline(always)]
unsafe fn gemm_k<D: Dot, const K: u8>(
    w: &Panels,
    a: &ActRows,
    accumulate: bool,
    state: &mut [f32],
    width: usize,
    finish: bool,
    out: &mut [f32],
) {
    let kind = int_kind(K);
    let (mv_max, rn_max) = D::tile(kind.arith(), a.rows);
    let n_vectors = w.np * (PANEL_ROWS / D::LANES);
    let s_len = kind.state_len();
    // SAFETY: block b0 of row 0 is inside `a.data` (checked by `gemm`).
    let ab = unsafe { a.data.as_ptr().add(a.b0 * BLOCK_BYTES) };
    let mut v0 = 0;
    while v0 < n_vectors {
        let mv = (n_vectors - v0).min(mv_max);
        let mut r = 0;
        while r < a.rows {
            let rows = (a.rows - r).min(rn_max);
            // SAFETY: vectors v0..v0 + mv, rows r..r + rows and their states
            // are inside the checked shapes.
            unsafe {
                let t = Tile {
                    w: w.data.as_ptr(),
                    panel_stride: w.panel_stride,
                    nb: w.nb,
                    v0,
                    a: ab.add(r * a.stride),
                    a_stride: a.stride,
                    accumulate,
                    state: state.as_mut_ptr().add(r * s_len * width),
                    width,
                    finish,
                    out: out.as_mut_ptr().add(if finish { r * width } else { 0 }),
                };
                macro_rules! go {
                    ($($mv:literal, $rn:literal);*) => {
                        match (mv, rows) {
                            $(($mv, $rn) => {
                                if K == K_Q4_0 {
                                    tile_blocksum::<D, $mv, $rn>(&t)
                                } else {
                                    tile_lanes::<D, K, $mv, $rn>(&t)
                                }
                            })*
                            _ => {}
                        }
                    };
                }
                go!(2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1);
            }
            r += rows;
        }
        v0 += mv;
    }
}

/// Checks the shapes, then runs the GEMM. The body of every [`Dot::gemm`].
///
/// # Safety
///
/// The CPU must have `D`'s features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<D: Dot>(
    kind: IntKind,
    w: &Panels,
    a: &ActRows,
    accumulate: bool,
    state: &mut [f32],
    width: usize,
    finish: bool,
    out: &mut [f32],
) {
    let s_len = kind.state_len();
    let fits = |len: usize, per_row: usize| {
        a.rows
            .checked_mul(per_row)
            .and_then(|v| v.checked_mul(width))
            .is_some_and(|end| end <= len)
    };
    let shapes_ok = a.rows == 0
        || w.np == 0
        || (width >= w.np * PANEL_ROWS
            && fits(state.len(), s_len)
            && (!finish || fits(out.len(), 1)));
    if !w.fits(kind) || !a.fits(w.nb) || !shapes_ok {
        return;
    }
    // SAFETY: shapes checked above; the CPU per the caller.
    unsafe {
        match kind {
            IntKind::Q8_0 => gemm_k::<D, K_Q8_0>(w, a, accumulate, state, width, finish, out),
            IntKind::Q4_0 => gemm_k::<D, K_Q4_0>(w, a, accumulate, state, width, finish, out),
            IntKind::Q4_1 => gemm_k::<D, K_Q4_1>(w, a, accumulate, state, width, finish, out),
        }
    }
}

/// Checks the shapes, then runs the GEMV. The body of every [`Dot::gemv`].
///
/// # Safety
///
/// The CPU must have `D`'s features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemv<D: Dot>(
    kind: IntKind,
    w: &[u8],
    row_bytes: usize,
    n_rows: usize,
    nb: usize,
    a: &[u8],
    next: &[u8],
    out: &mut [f32; PANEL_ROWS],
) {
    let bb = kind.block_bytes();
    let rows_ok = (1..=PANEL_ROWS).contains(&n_rows)
        && nb.checked_mul(bb).is_some_and(|rb| rb <= row_bytes)
        && (n_rows - 1)
            .checked_mul(row_bytes)
            .and_then(|v| v.checked_add(nb * bb))
            .is_some_and(|end| end <= w.len());
    let a_ok = nb.checked_mul(BLOCK_BYTES).is_some_and(|n| n <= a.len());
    if !rows_ok || !a_ok {
        return;
    }
    let rows: [*const u8; PANEL_ROWS] = core::array::from_fn(|i| {
        let i = if i < n_rows { i } else { 0 };
        // SAFETY: row i < n_rows starts inside `w` (checked above).
        unsafe { w.as_ptr().add(i * row_bytes) }
    });
    // The eight-lane GEMVs stream rows 0..8, then 8..16: while on the
    // first half they prefetch the second (rows are contiguous), while on
    // the second the first half of the next rows.
    let half = 8usize.saturating_mul(row_bytes);
    let second = w
        .get(half.min(w.len())..n_rows.saturating_mul(row_bytes).min(w.len()))
        .unwrap_or(&[]);
    let halves = [
        Prefetch::new(second, nb),
        Prefetch::new(next.get(..half.min(next.len())).unwrap_or(&[]), nb),
    ];
    // SAFETY: shapes checked above (rows past `n_rows` read row 0 again);
    // the CPU per the caller.
    unsafe {
        match kind {
            IntKind::Q4_0 => gemv_blocksum::<D>(&rows, nb, a, &Prefetch::new(next, nb), out),
            IntKind::Q8_0 => D::gemv_lanes::<K_Q8_0>(&rows, nb, a, &halves, out),
            IntKind::Q4_1 => D::gemv_lanes::<K_Q4_1>(&rows, nb, a, &halves, out),
        }
    }
}

/// Prefetches the weight data read after a GEMV's rows, spread evenly over
/// its blocks.
pub(crate) struct Prefetch<'a> {
    next: &'a [u8],
    lines: usize,
    per_block: usize,
}

impl<'a> Prefetch<'a> {
    fn new(next: &'a [u8], nb: usize) -> Self {
        let lines = next.len().div_ceil(64);
        Prefetch {
            next,
            lines,
            per_block: lines.div_ceil(nb.max(1)),
        }
    }

    /// The share of block `b`.
    #[inline(always)]
    fn block(&self, b: usize) {
        for line in b * self.per_block..((b + 1) * self.per_block).min(self.lines) {
            if let Some(byte) = self.next.get(line * 64) {
                // SAFETY: SSE; prefetching has no architectural effect.
                unsafe { _mm_prefetch::<_MM_HINT_T0>((byte as *const u8).cast()) };
            }
        }
    }
}

/// Block-sum (Q4_0) GEMV over 16 plain rows: each block's 16 exact row
/// totals in one pass of [`Dot::block_totals`], then one FMA per row.
///
/// # Safety
///
/// Every row holds `nb` blocks, `a` `nb` activation blocks.
#[inline(always)]
unsafe fn gemv_blocksum<D: Dot>(
    rows: &[*const u8; PANEL_ROWS],
    nb: usize,
    a: &[u8],
    pf: &Prefetch,
    out: &mut [f32; PANEL_ROWS],
) {
    let v_per_panel = PANEL_ROWS / D::LANES;
    let bb = IntKind::Q4_0.block_bytes();
    let mut acc = [D::zero_f(); 2];
    for b in 0..nb {
        pf.block(b);
        // SAFETY: activation block b and block b of every row (caller).
        unsafe {
            let ap = a.as_ptr().add(b * BLOCK_BYTES);
            let da = f32::from_ne_bytes(read4(ap.add(D_AT)));
            let qsum = i32::from_ne_bytes(read4(ap.add(QSUM_AT)));
            let mut blocks = [ap; PANEL_ROWS];
            let mut dw = [0u16; PANEL_ROWS];
            for i in 0..PANEL_ROWS {
                blocks[i] = rows[i].add(b * bb);
                dw[i] = u16::from_le_bytes([*blocks[i], *blocks[i].add(1)]);
            }
            let totals = D::block_totals::<K_Q4_0>(&blocks, ap);
            let init = D::splat_i(block_init::<D, K_Q4_0>(qsum));
            for v in 0..v_per_panel {
                let dwv = D::load_f16(dw.as_ptr().cast::<u8>().add(v * D::LANES * 2));
                let dd = D::mul(dwv, D::splat_f(da));
                acc[v] = D::fma(D::cvt(D::add_i(totals[v], init)), dd, acc[v]);
            }
        }
    }
    for (v, acc_v) in acc.iter().take(v_per_panel).enumerate() {
        // SAFETY: `out` is 16 f32.
        unsafe { D::store_f(out.as_mut_ptr().add(v * D::LANES), *acc_v) };
    }
}

/// `hsum_float_8` of 8 lanes (ggml's order).
#[inline(always)]
fn hsum8(l: &[f32]) -> f32 {
    match l {
        [a0, a1, a2, a3, a4, a5, a6, a7, ..] => ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)),
        _ => 0.0,
    }
}

/// Byte offsets of rows 0..8 from row 0 when the 16 rows of a GEMV are
/// at one stride (every full panel of a plain matrix, or one row repeated),
/// for [`headers8`]; `None` otherwise, or when an offset would not fit the
/// gather's i32 indices.
#[target_feature(enable = "avx2")]
#[inline]
fn header_offsets(rows: &[*const u8; PANEL_ROWS], nb: usize, bb: usize) -> Option<__m256i> {
    let base = rows[0] as usize;
    let stride = (rows[1] as usize).wrapping_sub(base);
    let uniform = rows
        .iter()
        .enumerate()
        .all(|(i, r)| *r as usize == base.wrapping_add(i.wrapping_mul(stride)));
    let fits = 7usize
        .checked_mul(stride)
        .and_then(|v| v.checked_add(nb.checked_mul(bb)?))
        .is_some_and(|end| end <= i32::MAX as usize);
    (uniform && fits).then(|| {
        _mm256_mullo_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(stride as i32),
        )
    })
}

/// The f16 scales and (Q4_1) minimums of block `off / block bytes` of 8
/// rows at `base + row_at[i]`, as [`scales8`] returns them: one gather of
/// each row's first 4 block bytes (scale, then Q4_1's minimum or Q8_0's
/// first weights), the low and high halves packed.
///
/// # Safety
///
/// 4 bytes at `base + row_at[i] + off` must be readable for every `i`
/// (the offsets from [`header_offsets`] and a block inside every row).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn headers8(base: *const u8, row_at: __m256i, off: usize) -> (__m128i, __m128i) {
    let idx = _mm256_add_epi32(row_at, _mm256_set1_epi32(off as i32));
    // SAFETY: per the caller.
    let g = unsafe { _mm256_i32gather_epi32::<1>(base.cast(), idx) };
    // Per 128-bit lane: the low halves (bytes 0, 1, 4, 5, ...), then the
    // high halves; then the low halves of both lanes, the high of both.
    let sel = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7,
        10, 11, 14, 15,
    );
    let x = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(g, sel));
    (_mm256_castsi256_si128(x), _mm256_extracti128_si256::<1>(x))
}

/// The f16 scales (at byte 0) and, for Q4_1, minimums (at byte 2) of
/// block `b` of rows `r0..r0 + 8`.
///
/// # Safety
///
/// Block `b` of those rows must be readable.
#[inline(always)]
unsafe fn scales8<const K: u8>(
    rows: &[*const u8; PANEL_ROWS],
    r0: usize,
    b: usize,
) -> ([u16; 8], [u16; 8]) {
    let bb = int_kind(K).block_bytes();
    let mut dw = [0u16; 8];
    let mut mw = [0u16; 8];
    for i in 0..8 {
        // SAFETY: per the caller.
        unsafe {
            let p = rows[(r0 + i) % PANEL_ROWS].add(b * bb);
            dw[i] = u16::from_le_bytes([*p, *p.add(1)]);
            if K == K_Q4_1 {
                mw[i] = u16::from_le_bytes([*p.add(2), *p.add(3)]);
            }
        }
    }
    (dw, mw)
}

/// Eight-lane (Q8_0, Q4_1) GEMV over 16 plain rows on 8-lane vectors: 8
/// rows at a time, one accumulator vector per row (lane `l` = elements
/// `4l..4l+4`), `hsum8` at the end.
///
/// # Safety
///
/// As [`gemv_blocksum`], and AVX2, FMA, F16C.
#[inline(always)]
unsafe fn gemv_lanes8<D: Dot<I = __m256i, F = __m256>, const K: u8>(
    rows: &[*const u8; PANEL_ROWS],
    nb: usize,
    a: &[u8],
    pf: &[Prefetch; 2],
    out: &mut [f32; PANEL_ROWS],
) {
    let bb = int_kind(K).block_bytes();
    // SAFETY: AVX2 (caller).
    let row_at = unsafe { header_offsets(rows, nb, bb) };
    let mut lanes = [0f32; 8 * PANEL_ROWS];
    // SAFETY: AVX (caller).
    let zero = unsafe { _mm256_setzero_ps() };
    let mut summs = [zero; 2];
    for h in 0..2 {
        let mut acc = [zero; 8];
        for b in 0..nb {
            pf[h].block(b);
            // SAFETY: activation block b and block b of every row (caller).
            unsafe {
                let ap = a.as_ptr().add(b * BLOCK_BYTES);
                let da = _mm256_set1_ps(f32::from_ne_bytes(read4(ap.add(D_AT))));
                let q = _mm256_loadu_si256(ap.cast());
                let init = D::q8_lanes_init(ap.add(GROUP_CORR_AT));
                let (dh, mh) = if let Some(at) = row_at {
                    headers8(rows[8 * h], at, b * bb)
                } else {
                    let (dw, mw) = scales8::<K>(rows, 8 * h, b);
                    (
                        _mm_loadu_si128(dw.as_ptr().cast()),
                        _mm_loadu_si128(mw.as_ptr().cast()),
                    )
                };
                let dd = _mm256_mul_ps(_mm256_cvtph_ps(dh), da);
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let p = rows[8 * h + i].add(b * bb);
                    let isum = if K == K_Q8_0 {
                        D::dot_q8(init, D::prep_q8(_mm256_loadu_si256(p.add(2).cast())), q)
                    } else {
                        D::dot_nib(_mm256_setzero_si256(), nibbles32(p.add(4)), q)
                    };
                    let ddi = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(i as i32));
                    *acc_i = _mm256_fmadd_ps(ddi, _mm256_cvtepi32_ps(isum), *acc_i);
                }
                if K == K_Q4_1 {
                    // A multiply and an add, not fused.
                    let sa = _mm256_set1_ps(f32::from_ne_bytes(read4(ap.add(S_AT))));
                    let m = _mm256_cvtph_ps(mh);
                    summs[h] = _mm256_add_ps(summs[h], _mm256_mul_ps(m, sa));
                }
            }
        }
        for (i, acc_i) in acc.iter().enumerate() {
            // SAFETY: 8 f32 inside `lanes`.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * (8 * h + i)), *acc_i) };
        }
    }
    let mut sm = [0f32; PANEL_ROWS];
    for (h, v) in summs.iter().enumerate() {
        // SAFETY: 8 f32 inside `sm`.
        unsafe { _mm256_storeu_ps(sm.as_mut_ptr().add(8 * h), *v) };
    }
    for (i, o) in out.iter_mut().enumerate() {
        let h = hsum8(&lanes[8 * i..8 * i + 8]);
        *o = if K == K_Q4_1 { h + sm[i] } else { h };
    }
}

/// Eight-lane (Q8_0, Q4_1) GEMV over 16 plain rows on 16-lane vectors: two
/// rows per vector (8 lanes each), 8 rows at a time, `hsum8` per row at the
/// end.
///
/// # Safety
///
/// As [`gemv_blocksum`], and AVX-512 F/BW/VNNI.
#[inline(always)]
unsafe fn gemv_lanes16<const K: u8>(
    rows: &[*const u8; PANEL_ROWS],
    nb: usize,
    a: &[u8],
    pf: &[Prefetch; 2],
    out: &mut [f32; PANEL_ROWS],
) {
    let bb = int_kind(K).block_bytes();
    // SAFETY: AVX2 (caller).
    let row_at = unsafe { header_offsets(rows, nb, bb) };
    let mut lanes = [0f32; 8 * PANEL_ROWS];
    // SAFETY: AVX (caller).
    let zero8 = unsafe { _mm256_setzero_ps() };
    let mut summs = [zero8; 2];
    for h in 0..2 {
        // SAFETY: AVX-512F (caller).
        let mut acc = [unsafe { _mm512_setzero_ps() }; 4];
        for b in 0..nb {
            pf[h].block(b);
            // SAFETY: activation block b and block b of every row (caller).
            unsafe {
                let ap = a.as_ptr().add(b * BLOCK_BYTES);
                let da = _mm256_set1_ps(f32::from_ne_bytes(read4(ap.add(D_AT))));
                let q = _mm512_broadcast_i64x4(_mm256_loadu_si256(ap.cast()));
                // The 8 rows' f16 scales and (Q4_1) minimums.
                let (dh, mh) = if let Some(at) = row_at {
                    headers8(rows[8 * h], at, b * bb)
                } else {
                    let (dw, mw) = scales8::<K>(rows, 8 * h, b);
                    (
                        _mm_loadu_si128(dw.as_ptr().cast()),
                        _mm_loadu_si128(mw.as_ptr().cast()),
                    )
                };
                let dd = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtph_ps(dh), da));
                let init = if K == K_Q8_0 {
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(ap.add(GROUP_CORR_AT).cast()))
                } else {
                    _mm512_setzero_si512()
                };
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let r = 8 * h + 2 * j;
                    let (p0, p1) = (rows[r].add(b * bb), rows[r + 1].add(b * bb));
                    let isum = if K == K_Q8_0 {
                        let lo = _mm512_castsi256_si512(_mm256_loadu_si256(p0.add(2).cast()));
                        let v = _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(p1.add(2).cast()));
                        _mm512_dpbusd_epi32(init, _mm512_xor_si512(v, _mm512_set1_epi8(-128)), q)
                    } else {
                        _mm512_dpbusd_epi32(init, nibbles64(p0.add(4), p1.add(4)), q)
                    };
                    // Lanes 0..8: the scale of the pair's first row, 8..16:
                    // the second's.
                    let (x, y) = (2 * j as i32, 2 * j as i32 + 1);
                    let pick = _mm512_setr_epi32(x, x, x, x, x, x, x, x, y, y, y, y, y, y, y, y);
                    let ddj = _mm512_permutexvar_ps(pick, dd);
                    *acc_j = _mm512_fmadd_ps(ddj, _mm512_cvtepi32_ps(isum), *acc_j);
                }
                if K == K_Q4_1 {
                    // A multiply and an add, not fused.
                    let sa = _mm256_set1_ps(f32::from_ne_bytes(read4(ap.add(S_AT))));
                    let m = _mm256_cvtph_ps(mh);
                    summs[h] = _mm256_add_ps(summs[h], _mm256_mul_ps(m, sa));
                }
            }
        }
        for (j, acc_j) in acc.iter().enumerate() {
            // SAFETY: 16 f32 inside `lanes`.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr().add(16 * (4 * h + j)), *acc_j) };
        }
    }
    let mut sm = [0f32; PANEL_ROWS];
    for (h, v) in summs.iter().enumerate() {
        // SAFETY: 8 f32 inside `sm`.
        unsafe { _mm256_storeu_ps(sm.as_mut_ptr().add(8 * h), *v) };
    }
    for (i, o) in out.iter_mut().enumerate() {
        let h = hsum8(&lanes[8 * i..8 * i + 8]);
        *o = if K == K_Q4_1 { h + sm[i] } else { h };
    }
}

/// [`nibbles32`] of two blocks, `[lo0 | hi0 | lo1 | hi1]`: both blocks'
/// 16 bytes in one register, each 128-bit lane doubled, the odd lanes
/// shifted down a nibble, every byte masked.
///
/// # Safety
///
/// `p0` and `p1` must be readable for 16 bytes each; AVX-512 F/BW.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
#[inline]
unsafe fn nibbles64(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: per the caller.
    let two = unsafe { _mm256_loadu2_m128i(p1.cast(), p0.cast()) };
    // 128-bit lanes [p0, p0, p1, p1].
    let v = _mm512_shuffle_i64x2::<0b01_01_00_00>(
        _mm512_castsi256_si512(two),
        _mm512_castsi256_si512(two),
    );
    // Words 8..16 and 24..32 (lanes 1 and 3) shifted right by 4.
    let v = _mm512_mask_srli_epi16::<4>(v, 0xff00_ff00, v);
    _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
}

/// The 32 weights of a plain nibble block in element order: its 16 bytes'
/// low nibbles then their high nibbles, as `[lo | hi]`.
///
/// # Safety
///
/// `p` must be readable for the 16 nibble bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: per the caller.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(v, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
    _mm256_set_m128i(hi, lo)
}

/// Offset of the 32 weight bytes (Q8_0) or 16 nibble bytes in a plain block.
const fn plain_qs_at(k: u8) -> usize {
    match k {
        K_Q4_1 => 4,
        _ => 2,
    }
}

/// One row's 32 weights against the activation block `q` on 8 lanes: lane
/// `l` is the sum over elements `4l..4l+4`.
///
/// # Safety
///
/// `row` must be readable for one plain block of kind `K`.
#[inline(always)]
unsafe fn row_dot8<D: Dot<I = __m256i>, const K: u8>(row: *const u8, q: __m256i) -> __m256i {
    // SAFETY: per the caller.
    unsafe {
        let p = row.add(plain_qs_at(K));
        if K == K_Q8_0 {
            D::dot_q8(
                _mm256_setzero_si256(),
                D::prep_q8(_mm256_loadu_si256(p.cast())),
                q,
            )
        } else {
            D::dot_nib(_mm256_setzero_si256(), nibbles32(p), q)
        }
    }
}

/// [`Dot::block_totals`] on 8 lanes: 16 row dots, folded by `vphaddd` and
/// a cross-lane add into two vectors (rows 0..8, rows 8..16). Exact.
///
/// # Safety
///
/// As [`Dot::block_totals`], and AVX2.
#[inline(always)]
unsafe fn totals8<D: Dot<I = __m256i>, const K: u8>(
    rows: &[*const u8; PANEL_ROWS],
    act: *const u8,
) -> [__m256i; 2] {
    // SAFETY: per the caller.
    unsafe {
        let q = _mm256_loadu_si256(act.cast());
        let mut d = [_mm256_setzero_si256(); PANEL_ROWS];
        for (di, row) in d.iter_mut().zip(rows) {
            *di = row_dot8::<D, K>(*row, q);
        }
        [
            fold8(half8(&d, 0), half8(&d, 4)),
            fold8(half8(&d, 8), half8(&d, 12)),
        ]
    }
}

/// Rows `o..o + 4` of 8-lane row dots folded by `vphaddd`:
/// `[r0 (l0..3), r1, r2, r3 | r0 (l4..7), r1, r2, r3]`.
#[inline(always)]
fn half8(d: &[__m256i; PANEL_ROWS], o: usize) -> __m256i {
    // SAFETY: AVX2 (every caller is inlined into an AVX2 entry point).
    unsafe {
        let h01 = _mm256_hadd_epi32(d[o], d[o + 1]);
        let h23 = _mm256_hadd_epi32(d[o + 2], d[o + 3]);
        _mm256_hadd_epi32(h01, h23)
    }
}

/// Two [`half8`] results into the 8 row totals `[r0 .. r7]`.
#[inline(always)]
fn fold8(x: __m256i, y: __m256i) -> __m256i {
    // SAFETY: as above.
    unsafe {
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(x, y),
            _mm256_permute2x128_si256::<0x31>(x, y),
        )
    }
}

/// AVX2: 8 lanes, `vpmaddubsw` + `vpmaddwd`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Dot;

/// AVX-VNNI: 8 lanes, `vpdpbusd` ymm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AvxVnniDot;

/// AVX-512 VNNI: 16 lanes, `vpdpbusd` zmm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Dot;

macro_rules! ymm_common {
    () => {
        type I = __m256i;
        type F = __m256;
        const LANES: usize = 8;

        #[inline(always)]
        fn tile(arith: Arith, _rows: usize) -> (usize, usize) {
            match arith {
                Arith::BlockSum => (2, 2),
                Arith::Lanes8 => (1, 1),
            }
        }
        #[inline(always)]
        fn add_f(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX: every caller is a `#[target_feature]` entry point.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn gemv_lanes<const K: u8>(
            rows: &[*const u8; PANEL_ROWS],
            nb: usize,
            a: &[u8],
            pf: &[Prefetch; 2],
            out: &mut [f32; PANEL_ROWS],
        ) {
            // SAFETY: per the trait contract.
            unsafe { gemv_lanes8::<Self, K>(rows, nb, a, pf, out) }
        }

        #[inline(always)]
        unsafe fn load(p: *const u8) -> __m256i {
            // SAFETY: per the trait contract.
            unsafe { _mm256_loadu_si256(p.cast()) }
        }
        #[inline(always)]
        unsafe fn bcast4(p: *const u8) -> __m256i {
            // SAFETY: per the trait contract.
            unsafe { _mm256_set1_epi32(i32::from_ne_bytes(read4(p))) }
        }
        #[inline(always)]
        fn splat_i(v: i32) -> __m256i {
            // SAFETY: AVX: every caller is a `#[target_feature]` entry point.
            unsafe { _mm256_set1_epi32(v) }
        }
        #[inline(always)]
        fn nib_lo(v: __m256i) -> __m256i {
            // SAFETY: as above.
            unsafe { _mm256_and_si256(v, _mm256_set1_epi8(0x0f)) }
        }
        #[inline(always)]
        fn nib_hi(v: __m256i) -> __m256i {
            // SAFETY: as above.
            unsafe { _mm256_and_si256(_mm256_srli_epi16::<4>(v), _mm256_set1_epi8(0x0f)) }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u8) -> __m256 {
            // SAFETY: per the trait contract.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
        }
        #[inline(always)]
        unsafe fn load_f(p: *const f32) -> __m256 {
            // SAFETY: per the trait contract.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store_f(p: *mut f32, v: __m256) {
            // SAFETY: per the trait contract.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        fn splat_f(v: f32) -> __m256 {
            // SAFETY: as above.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        fn zero_f() -> __m256 {
            // SAFETY: as above.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        fn cvt(v: __m256i) -> __m256 {
            // SAFETY: as above.
            unsafe { _mm256_cvtepi32_ps(v) }
        }
        #[inline(always)]
        fn mul(a: __m256, b: __m256) -> __m256 {
            // SAFETY: as above.
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: as above (FMA).
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add_i(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: as above.
            unsafe { _mm256_add_epi32(a, b) }
        }
        #[inline(always)]
        unsafe fn block_totals<const K: u8>(
            rows: &[*const u8; PANEL_ROWS],
            act: *const u8,
        ) -> [__m256i; 2] {
            // SAFETY: per the trait contract.
            unsafe { totals8::<Self, K>(rows, act) }
        }
    };
}

impl Dot for Avx2Dot {
    ymm_common!();
    type W = (__m256i, __m256i);
    const Q8_BIAS: i32 = 0;

    #[inline(always)]
    unsafe fn q8_group_init(_p: *const u8) -> __m256i {
        // SAFETY: AVX.
        unsafe { _mm256_setzero_si256() }
    }
    #[inline(always)]
    unsafe fn q8_lanes_init(_p: *const u8) -> __m256i {
        // SAFETY: AVX.
        unsafe { _mm256_setzero_si256() }
    }

    #[inline(always)]
    fn prep_q8(w: __m256i) -> (__m256i, __m256i) {
        // SAFETY: AVX2 (the caller is an AVX2 entry point).
        (unsafe { _mm256_abs_epi8(w) }, w)
    }
    #[inline(always)]
    fn dot_q8(acc: __m256i, w: (__m256i, __m256i), a: __m256i) -> __m256i {
        // |w| * sign(a, w): pair sums at most 2 * 128 * 127, no saturation.
        // SAFETY: as above.
        unsafe {
            let pairs = _mm256_maddubs_epi16(w.0, _mm256_sign_epi8(a, w.1));
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    }
    #[inline(always)]
    fn dot_nib(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        // Pair sums at most 2 * 15 * 127: no saturation.
        // SAFETY: as above.
        unsafe {
            let pairs = _mm256_maddubs_epi16(w, a);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    }

    unsafe fn gemm(
        kind: IntKind,
        w: &Panels,
        a: &ActRows,
        accumulate: bool,
        state: &mut [f32],
        width: usize,
        finish: bool,
        out: &mut [f32],
    ) {
        // SAFETY: the caller vouches for the CPU.
        unsafe { gemm_avx2(kind, w, a, accumulate, state, width, finish, out) }
    }

    unsafe fn gemv(
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    ) {
        // SAFETY: the caller vouches for the CPU.
        unsafe { gemv_avx2(kind, w, row_bytes, n_rows, nb, a, next, out) }
    }
}

impl Dot for AvxVnniDot {
    ymm_common!();
    type W = __m256i;
    const Q8_BIAS: i32 = 128;

    #[inline(always)]
    unsafe fn q8_group_init(p: *const u8) -> __m256i {
        // SAFETY: per the trait contract.
        unsafe { Self::bcast4(p) }
    }
    #[inline(always)]
    unsafe fn q8_lanes_init(p: *const u8) -> __m256i {
        // SAFETY: per the trait contract.
        unsafe { _mm256_loadu_si256(p.cast()) }
    }

    #[inline(always)]
    fn prep_q8(w: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller is an AVX-VNNI entry point).
        unsafe { _mm256_xor_si256(w, _mm256_set1_epi8(-128)) }
    }
    #[inline(always)]
    fn dot_q8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        // SAFETY: AVX-VNNI.
        unsafe { _mm256_dpbusd_avx_epi32(acc, w, a) }
    }
    #[inline(always)]
    fn dot_nib(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        // SAFETY: AVX-VNNI.
        unsafe { _mm256_dpbusd_avx_epi32(acc, w, a) }
    }

    unsafe fn gemm(
        kind: IntKind,
        w: &Panels,
        a: &ActRows,
        accumulate: bool,
        state: &mut [f32],
        width: usize,
        finish: bool,
        out: &mut [f32],
    ) {
        // SAFETY: the caller vouches for the CPU.
        unsafe { gemm_avxvnni(kind, w, a, accumulate, state, width, finish, out) }
    }

    unsafe fn gemv(
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    ) {
        // SAFETY: the caller vouches for the CPU.
        unsafe { gemv_avxvnni(kind, w, row_bytes, n_rows, nb, a, next, out) }
    }
}

impl Dot for Avx512Dot {
    type I = __m512i;
    type F = __m512;
    type W = __m512i;
    const LANES: usize = 16;
    const Q8_BIAS: i32 = 128;

    #[inline(always)]
    fn tile(arith: Arith, rows: usize) -> (usize, usize) {
        match (arith, rows) {
            (Arith::BlockSum, _) => (2, 4),
            (Arith::Lanes8, 1) => (2, 1),
            (Arith::Lanes8, _) => (1, 3),
        }
    }
    #[inline(always)]
    unsafe fn q8_group_init(p: *const u8) -> __m512i {
        // SAFETY: per the trait contract.
        unsafe { Self::bcast4(p) }
    }
    #[inline(always)]
    unsafe fn q8_lanes_init(p: *const u8) -> __m512i {
        // SAFETY: per the trait contract.
        unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    fn add_f(a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn gemv_lanes<const K: u8>(
        rows: &[*const u8; PANEL_ROWS],
        nb: usize,
        a: &[u8],
        pf: &[Prefetch; 2],
        out: &mut [f32; PANEL_ROWS],
    ) {
        // SAFETY: per the trait contract.
        unsafe { gemv_lanes16::<K>(rows, nb, a, pf, out) }
    }

    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512i {
        // SAFETY: per the trait contract.
        unsafe { _mm512_loadu_si512(p.cast()) }
    }
    #[inline(always)]
    unsafe fn bcast4(p: *const u8) -> __m512i {
        // SAFETY: per the trait contract.
        unsafe { _mm512_set1_epi32(i32::from_ne_bytes(read4(p))) }
    }
    #[inline(always)]
    fn splat_i(v: i32) -> __m512i {
        // SAFETY: AVX-512F: every caller is an AVX-512 entry point.
        unsafe { _mm512_set1_epi32(v) }
    }
    #[inline(always)]
    fn prep_q8(w: __m512i) -> __m512i {
        // SAFETY: as above.
        unsafe { _mm512_xor_si512(w, _mm512_set1_epi8(-128)) }
    }
    #[inline(always)]
    fn dot_q8(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
        // SAFETY: AVX-512 VNNI.
        unsafe { _mm512_dpbusd_epi32(acc, w, a) }
    }
    #[inline(always)]
    fn dot_nib(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
        // SAFETY: AVX-512 VNNI.
        unsafe { _mm512_dpbusd_epi32(acc, w, a) }
    }
    #[inline(always)]
    fn nib_lo(v: __m512i) -> __m512i {
        // SAFETY: AVX-512F.
        unsafe { _mm512_and_si512(v, _mm512_set1_epi8(0x0f)) }
    }
    #[inline(always)]
    fn nib_hi(v: __m512i) -> __m512i {
        // SAFETY: AVX-512BW.
        unsafe { _mm512_and_si512(_mm512_srli_epi16::<4>(v), _mm512_set1_epi8(0x0f)) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u8) -> __m512 {
        // SAFETY: per the trait contract.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> __m512 {
        // SAFETY: per the trait contract.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: __m512) {
        // SAFETY: per the trait contract.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    fn splat_f(v: f32) -> __m512 {
        // SAFETY: AVX-512F.
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    fn zero_f() -> __m512 {
        // SAFETY: AVX-512F.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn cvt(v: __m512i) -> __m512 {
        // SAFETY: AVX-512F.
        unsafe { _mm512_cvtepi32_ps(v) }
    }
    #[inline(always)]
    fn mul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add_i(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: AVX-512F.
        unsafe { _mm512_add_epi32(a, b) }
    }

    #[inline(always)]
    unsafe fn block_totals<const K: u8>(
        rows: &[*const u8; PANEL_ROWS],
        act: *const u8,
    ) -> [__m512i; 2] {
        // SAFETY: per the trait contract; AVX-512 F/BW/VNNI.
        unsafe {
            let q = _mm512_broadcast_i64x4(_mm256_loadu_si256(act.cast()));
            // Rows 2j and 2j + 1 in the low and high halves: 8 lanes each.
            let mut parts = [_mm512_setzero_si512(); 8];
            for (j, part) in parts.iter_mut().enumerate() {
                let (r0, r1) = (
                    rows[2 * j].add(plain_qs_at(K)),
                    rows[2 * j + 1].add(plain_qs_at(K)),
                );
                let v = if K == K_Q8_0 {
                    let lo = _mm512_castsi256_si512(_mm256_loadu_si256(r0.cast()));
                    Self::prep_q8(_mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(r1.cast())))
                } else {
                    let lo = _mm512_castsi256_si512(nibbles32(r0));
                    _mm512_inserti64x4::<1>(lo, nibbles32(r1))
                };
                *part = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, q);
            }
            let q0 = level16(parts[0], parts[1]);
            let q1 = level16(parts[2], parts[3]);
            let q2 = level16(parts[4], parts[5]);
            let q3 = level16(parts[6], parts[7]);
            let total = level16(level16(q0, q1), level16(q2, q3));
            [total, _mm512_setzero_si512()]
        }
    }

    unsafe fn gemm(
        kind: IntKind,
        w: &Panels,
        a: &ActRows,
        accumulate: bool,
        state: &mut [f32],
        width: usize,
        finish: bool,
        out: &mut [f32],
    ) {
        // SAFETY: the caller vouches for the CPU.
        unsafe { gemm_avx512(kind, w, a, accumulate, state, width, finish, out) }
    }

    unsafe fn gemv(
        kind: IntKind,
        w: &[u8],
        row_bytes: usize,
        n_rows: usize,
        nb: usize,
        a: &[u8],
        next: &[u8],
        out: &mut [f32; PANEL_ROWS],
    ) {
        // SAFETY: the caller vouches for the CPU.
        unsafe { gemv_avx512(kind, w, row_bytes, n_rows, nb, a, next, out) }
    }
}

/// Pairwise sums of neighbouring lanes of `[x | y]` (32 lanes into 16):
/// each use halves the lanes per row, rows keep their order.
#[inline(always)]
fn level16(x: __m512i, y: __m512i) -> __m512i {
    // SAFETY: AVX-512F (every caller is inlined into an AVX-512 entry point).
    unsafe {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        _mm512_add_epi32(
            _mm512_permutex2var_epi32(x, even, y),
            _mm512_permutex2var_epi32(x, odd, y),
        )
    }
}

macro_rules! entry_points {
    ($dot:ty, $features:literal, $gemm:ident, $gemv:ident) => {
        /// [`gemm`] compiled for this instruction set.
        ///
        /// # Safety
        ///
        /// The CPU must have the features named in `target_feature`.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $gemm(
            kind: IntKind,
            w: &Panels,
            a: &ActRows,
            accumulate: bool,
            state: &mut [f32],
            width: usize,
            finish: bool,
            out: &mut [f32],
        ) {
            // SAFETY: this function's features are the caller's promise.
            unsafe { gemm::<$dot>(kind, w, a, accumulate, state, width, finish, out) }
        }

        /// [`gemv`] compiled for this instruction set.
        ///
        /// # Safety
        ///
        /// The CPU must have the features named in `target_feature`.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $gemv(
            kind: IntKind,
            w: &[u8],
            row_bytes: usize,
            n_rows: usize,
            nb: usize,
            a: &[u8],
            next: &[u8],
            out: &mut [f32; PANEL_ROWS],
        ) {
            // SAFETY: as above.
            unsafe { gemv::<$dot>(kind, w, row_bytes, n_rows, nb, a, next, out) }
        }
    };
}

entry_points!(Avx2Dot, "avx2,fma,f16c", gemm_avx2, gemv_avx2);
entry_points!(
    AvxVnniDot,
    "avx2,fma,f16c,avxvnni",
    gemm_avxvnni,
    gemv_avxvnni
);
entry_points!(
    Avx512Dot,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    gemm_avx512,
    gemv_avx512
);

impl<D: Dot> Isa for X86<D> {
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
    ) {
        // SAFETY: `X86<D>` exists only on a CPU with D's features.
        unsafe { D::gemm(kind, w, a, accumulate, state, width, finish, out) }
    }

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
    ) {
        // SAFETY: as above.
        unsafe { D::gemv(kind, w, row_bytes, n_rows, nb, a, next, out) }
    }

    fn flt_1x1(&self, kind: FltKind, w: &[u8], x: &[f32]) -> f32 {
        self.avx2.flt_1x1(kind, w, x)
    }

    fn flt_8x1(&self, kind: FltKind, w: [&[u8]; 8], next: &[u8], x: &[f32], out: &mut [f32; 8]) {
        self.avx2.flt_8x1(kind, w, next, x, out)
    }

    fn flt_4x2(
        &self,
        kind: FltKind,
        w: [&[u8]; 4],
        next: &[u8],
        x: [&[f32]; 2],
        out: &mut [f32; 8],
    ) {
        self.avx2.flt_4x2(kind, w, next, x, out)
    }

    fn quantize_act_row(&self, x: &[f32], out: &mut [u8]) {
        self.avx2.quantize_act_row(x, out)
    }

    fn kv_scores(&self, ty: KvType, q: &[f32], k: &[u8], stride: usize, out: &mut [f32]) {
        self.avx2.kv_scores(ty, q, k, stride, out)
    }

    fn kv_scale(&self, ty: KvType, acc: &mut [f32], m: f32) {
        self.avx2.kv_scale(ty, acc, m)
    }

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
        // SAFETY: a 16-lane `D` exists only on a CPU with AVX-512 F/BW/VL
        // (and AVX2, FMA, F16C).
        let done = D::LANES == 16
            && unsafe {
                super::x86_avx512::attend_group(ty, q, k, v, stride, scale, scores, states, acc)
            };
        if !done {
            super::matmul::attend_group_heads(self, ty, q, k, v, stride, scale, scores, states, acc)
        }
    }

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
        if !self
            .avx2
            .attend_page(ty, q, k, v, stride, scale, scores, state, acc)
        {
            super::matmul::attend_page_steps(self, ty, q, k, v, stride, scale, scores, state, acc)
        }
    }

    fn kv_mad(&self, ty: KvType, row: &[u8], w: f32, acc: &mut [f32]) {
        self.avx2.kv_mad(ty, row, w, acc)
    }

    fn expf(&self, x: f32) -> f32 {
        self.avx2.expf(x)
    }

    fn kv_store_f16(&self, x: &[f32], out: &mut [u8]) {
        self.avx2.kv_store_f16(x, out)
    }

    fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        self.avx2.swiglu(gate, up)
    }

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
        // SAFETY: `X86<D>` exists only on a CPU with AVX2.
        unsafe { pack_panel_avx2(kind, rows, row_bytes, n_rows, b0, n_blocks, out) }
    }
}

/// [`super::layout::pack_panel`] for full panels with AVX2: each block
/// column is a transpose of 16 rows x `groups` 4-byte groups (8x8 blocks
/// of u32 for Q8_0, 4x4 for the nibble kinds); scales are copied one by
/// one. A short last panel takes the portable routine.
///
/// # Safety
///
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn pack_panel_avx2(
    kind: IntKind,
    rows: &[u8],
    row_bytes: usize,
    n_rows: usize,
    b0: usize,
    n_blocks: usize,
    out: &mut [u8],
) -> bool {
    let bb = kind.block_bytes();
    let pbb = kind.panel_block_bytes();
    let fits = n_rows == PANEL_ROWS
        && n_blocks.checked_mul(pbb) == Some(out.len())
        && b0
            .checked_add(n_blocks)
            .and_then(|e| e.checked_mul(bb))
            .is_some_and(|need| need <= row_bytes)
        && (PANEL_ROWS - 1)
            .checked_mul(row_bytes)
            .and_then(|v| v.checked_add(b0.checked_add(n_blocks)?.checked_mul(bb)?))
            .is_some_and(|end| end <= rows.len());
    if !fits {
        return super::layout::pack_panel(kind, rows, row_bytes, n_rows, b0, n_blocks, out);
    }
    let qs_plain = plain_qs_at(match kind {
        IntKind::Q8_0 => K_Q8_0,
        IntKind::Q4_0 => K_Q4_0,
        IntKind::Q4_1 => K_Q4_1,
    });
    let qs_panel = kind.panel_qs_at();
    for (j, col) in out.chunks_exact_mut(pbb).enumerate() {
        let b = b0 + j;
        // SAFETY: block b of rows 0..16 is inside `rows` and the column is
        // `pbb` bytes (both checked above).
        unsafe {
            let src: [*const u8; PANEL_ROWS] =
                core::array::from_fn(|i| rows.as_ptr().add(i * row_bytes + b * bb));
            let dst = col.as_mut_ptr();
            for (i, s) in src.iter().enumerate() {
                core::ptr::copy_nonoverlapping(*s, dst.add(2 * i), 2);
                if kind == IntKind::Q4_1 {
                    core::ptr::copy_nonoverlapping(s.add(2), dst.add(kind.panel_m_at() + 2 * i), 2);
                }
            }
            let q = dst.add(qs_panel);
            if kind == IntKind::Q8_0 {
                // Rows 8h..8h + 8: an 8x8 transpose of u32 groups; group g
                // of those rows is 32 bytes at 64g + 32h.
                for h in 0..2 {
                    let mut r = [_mm256_setzero_si256(); 8];
                    for (i, ri) in r.iter_mut().enumerate() {
                        *ri = _mm256_loadu_si256(src[8 * h + i].add(qs_plain).cast());
                    }
                    let t = transpose8x8(r);
                    for (g, v) in t.iter().enumerate() {
                        _mm256_storeu_si256(q.add(g * GROUP_BYTES + 32 * h).cast(), *v);
                    }
                }
            } else {
                // Rows 4h..4h + 4: a 4x4 transpose; group g of those rows is
                // 16 bytes at 64g + 16h.
                for h in 0..4 {
                    let mut r = [_mm_setzero_si128(); 4];
                    for (i, ri) in r.iter_mut().enumerate() {
                        *ri = _mm_loadu_si128(src[4 * h + i].add(qs_plain).cast());
                    }
                    let t01 = _mm_unpacklo_epi32(r[0], r[1]);
                    let t23 = _mm_unpacklo_epi32(r[2], r[3]);
                    let t45 = _mm_unpackhi_epi32(r[0], r[1]);
                    let t67 = _mm_unpackhi_epi32(r[2], r[3]);
                    let t = [
                        _mm_unpacklo_epi64(t01, t23),
                        _mm_unpackhi_epi64(t01, t23),
                        _mm_unpacklo_epi64(t45, t67),
                        _mm_unpackhi_epi64(t45, t67),
                    ];
                    for (g, v) in t.iter().enumerate() {
                        _mm_storeu_si128(q.add(g * GROUP_BYTES + 16 * h).cast(), *v);
                    }
                }
            }
        }
    }
    true
}

/// Transposes an 8x8 matrix of u32 (row `i` in `r[i]`).
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8x8(r: [__m256i; 8]) -> [__m256i; 8] {
    let a0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let a1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let a2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let a3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let a4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let a5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let a6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let a7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let b0 = _mm256_unpacklo_epi64(a0, a2);
    let b1 = _mm256_unpackhi_epi64(a0, a2);
    let b2 = _mm256_unpacklo_epi64(a1, a3);
    let b3 = _mm256_unpackhi_epi64(a1, a3);
    let b4 = _mm256_unpacklo_epi64(a4, a6);
    let b5 = _mm256_unpackhi_epi64(a4, a6);
    let b6 = _mm256_unpacklo_epi64(a5, a7);
    let b7 = _mm256_unpackhi_epi64(a5, a7);
    [
        _mm256_permute2x128_si256::<0x20>(b0, b4),
        _mm256_permute2x128_si256::<0x20>(b1, b5),
        _mm256_permute2x128_si256::<0x20>(b2, b6),
        _mm256_permute2x128_si256::<0x20>(b3, b7),
        _mm256_permute2x128_si256::<0x31>(b0, b4),
        _mm256_permute2x128_si256::<0x31>(b1, b5),
        _mm256_permute2x128_si256::<0x31>(b2, b6),
        _mm256_permute2x128_si256::<0x31>(b3, b7),
    ]
}
