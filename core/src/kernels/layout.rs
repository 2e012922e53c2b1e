//! Where the bytes of a quantized weight matrix sit: ggml's plain rows, or
//! the 16-row **panel** layout every integer GEMM micro-kernel reads.
//!
//! # The panel layout
//!
//! Rows are taken 16 at a time (a *panel*); a panel stores its blocks
//! column by column. Block column `b` of a panel holds block `b` of each of
//! its 16 rows, interleaved so that one 64-byte load gives 4 consecutive
//! weights of each of the 16 rows — one 32-bit lane per row, which is what
//! `vpdpbusd` (one zmm or two ymm), `sdot` (four q registers) and, after a
//! `zip`, `smmla` multiply against 4 broadcast activation bytes:
//!
//! ```text
//! Q8_0 (544 bytes = 16 x 34):  d[16] f16 | g = 0..8:  row 0..16: w[4g..4g+4]
//! Q4_0 (288 bytes = 16 x 18):  d[16] f16 | g = 0..4:  row 0..16: qs[4g..4g+4]
//! Q4_1 (320 bytes = 16 x 20):  d[16] f16 | m[16] f16 | g = 0..4: row 0..16: qs[4g..4g+4]
//! ```
//!
//! (`qs` are ggml's nibble bytes: the low nibbles of `qs[4g..4g+4]` are
//! weights `4g..4g+4`, the high nibbles weights `16+4g..16+4g+4`.) Panel `p`
//! (rows `16p..16p+16`) is `nb` block columns, at byte `p * nb * 16 *
//! block_bytes`. The layout is a permutation of the plain bytes: a matrix
//! takes exactly as many bytes either way, and a matrix whose row count is
//! not a multiple of 16 has no panel form (it stays plain).
//!
//! Plain matrices are packed into panels on the fly by [`pack_panel`]
//! (the GEMM's pack step); a file can also carry its matrices already in
//! panel form (`arenalm quantize --repack`), read in place with no pack
//! step at all.

use super::matmul::IntKind;

/// Rows in a panel.
pub(crate) const PANEL_ROWS: usize = 16;

/// Bytes of one 4-weight group of all 16 rows (one lane per row).
pub(crate) const GROUP_BYTES: usize = 4 * PANEL_ROWS;

/// How the rows of a weight matrix are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightLayout {
    /// ggml's layout: row after row, each row its blocks in order.
    Plain,
    /// 16-row panels (module docs); only for Q8_0, Q4_0 and Q4_1 matrices
    /// with a multiple of 16 rows.
    Panel16,
}

impl IntKind {
    /// Bytes of one block column of a panel.
    pub(crate) const fn panel_block_bytes(self) -> usize {
        PANEL_ROWS * self.block_bytes()
    }

    /// Offset of the weight groups in a panel block column.
    pub(crate) const fn panel_qs_at(self) -> usize {
        match self {
            IntKind::Q4_1 => 4 * PANEL_ROWS,
            IntKind::Q8_0 | IntKind::Q4_0 => 2 * PANEL_ROWS,
        }
    }

    /// Offset of the minimums (Q4_1) in a panel block column.
    pub(crate) const fn panel_m_at(self) -> usize {
        2 * PANEL_ROWS
    }

    /// Offset of the 4 value bytes of a plain block's group `g`.
    const fn plain_qs_at(self) -> usize {
        match self {
            IntKind::Q4_1 => 4,
            IntKind::Q8_0 | IntKind::Q4_0 => 2,
        }
    }

    /// 4-byte groups per block: 8 for Q8_0, 4 for the nibble formats.
    pub(crate) const fn groups(self) -> usize {
        match self {
            IntKind::Q8_0 => 8,
            IntKind::Q4_0 | IntKind::Q4_1 => 4,
        }
    }
}

/// Writes block columns `b0..b0 + n_blocks` of one panel into `out`
/// (exactly `n_blocks * kind.panel_block_bytes()` bytes), from up to 16
/// plain rows: row `i` of the panel is `rows[i * row_bytes..]`. Rows past
/// `n_rows` (the last panel of a matrix whose row count is not a multiple
/// of 16) are written as zero blocks. Returns `false`, writing nothing
/// useful, if a slice is shorter than the shape implies.
pub(crate) fn pack_panel(
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
    let Some(need) = n_blocks.checked_mul(pbb) else {
        return false;
    };
    if out.len() != need || n_rows > PANEL_ROWS {
        return false;
    }
    let Some(run) = n_blocks.checked_mul(bb) else {
        return false;
    };
    let Some(start) = b0.checked_mul(bb) else {
        return false;
    };
    for i in 0..PANEL_ROWS {
        // The row's blocks b0..b0 + n_blocks, or zeros past `n_rows`.
        let src = if i < n_rows {
            let at = i.checked_mul(row_bytes).and_then(|o| o.checked_add(start));
            match at.and_then(|o| rows.get(o..o.checked_add(run)?)) {
                Some(s) => Some(s),
                None => return false,
            }
        } else {
            None
        };
        match src {
            Some(src) => {
                for (blk, col) in src.chunks_exact(bb).zip(out.chunks_exact_mut(pbb)) {
                    write_lane(kind, blk, i, col);
                }
            }
            None => {
                let zero = [0u8; 34];
                for col in out.chunks_exact_mut(pbb) {
                    write_lane(kind, &zero[..bb], i, col);
                }
            }
        }
    }
    true
}

/// Puts plain block `blk` (`kind.block_bytes()`) into lane `i` of panel
/// block column `col` (`kind.panel_block_bytes()`).
#[inline(always)]
fn write_lane(kind: IntKind, blk: &[u8], i: usize, col: &mut [u8]) {
    fn copy<const N: usize>(dst: &mut [u8], at: usize, src: &[u8], from: usize) {
        if let (Some(d), Some(s)) = (dst.get_mut(at..at + N), src.get(from..from + N)) {
            d.copy_from_slice(s);
        }
    }
    copy::<2>(col, 2 * i, blk, 0);
    if kind == IntKind::Q4_1 {
        copy::<2>(col, kind.panel_m_at() + 2 * i, blk, 2);
    }
    let (qs, pqs) = (kind.plain_qs_at(), kind.panel_qs_at() + 4 * i);
    for g in 0..kind.groups() {
        copy::<4>(col, pqs + g * GROUP_BYTES, blk, qs + 4 * g);
    }
}

/// The plain bytes of block `b` of row `n` (`out`: `kind.block_bytes()`
/// bytes) of a panel-layout matrix of `nb` blocks per row. `false` if the
/// block is outside `data`.
pub(crate) fn unpack_block(
    kind: IntKind,
    data: &[u8],
    nb: usize,
    n: usize,
    b: usize,
    out: &mut [u8],
) -> bool {
    let (p, i) = (n / PANEL_ROWS, n % PANEL_ROWS);
    let pbb = kind.panel_block_bytes();
    let start = p
        .checked_mul(nb)
        .and_then(|v| v.checked_add(b))
        .and_then(|v| v.checked_mul(pbb));
    match start.and_then(|s| data.get(s..s.checked_add(pbb)?)) {
        Some(col) if b < nb => lane_block(kind, col, i, out),
        _ => false,
    }
}

/// The plain bytes of lane `i` (panel row `i`) of one panel block column
/// `col` (`kind.panel_block_bytes()` bytes) into `out` (`kind.block_bytes()`
/// bytes). `false` if a length is wrong.
pub(crate) fn lane_block(kind: IntKind, col: &[u8], i: usize, out: &mut [u8]) -> bool {
    if out.len() != kind.block_bytes() || col.len() != kind.panel_block_bytes() || i >= PANEL_ROWS {
        return false;
    }
    let mut get = |at: usize, to: usize, len: usize| {
        if let (Some(d), Some(s)) = (out.get_mut(to..to + len), col.get(at..at + len)) {
            d.copy_from_slice(s);
        }
    };
    get(2 * i, 0, 2);
    if kind == IntKind::Q4_1 {
        get(kind.panel_m_at() + 2 * i, 2, 2);
    }
    for g in 0..kind.groups() {
        get(
            kind.panel_qs_at() + g * GROUP_BYTES + 4 * i,
            kind.plain_qs_at() + 4 * g,
            4,
        );
    }
    true
}

/// Rewrites a whole plain matrix (`rows` x `nb` blocks) into panel layout
/// (`out` the same length as `plain`). `false` unless `rows` is a multiple
/// of 16 and the lengths match.
pub(crate) fn to_panels(
    kind: IntKind,
    plain: &[u8],
    rows: usize,
    nb: usize,
    out: &mut [u8],
) -> bool {
    let row_bytes = nb.saturating_mul(kind.block_bytes());
    let panel_bytes = nb.saturating_mul(kind.panel_block_bytes());
    if !rows.is_multiple_of(PANEL_ROWS)
        || Some(plain.len()) != rows.checked_mul(row_bytes)
        || out.len() != plain.len()
        || panel_bytes == 0
    {
        return false;
    }
    plain
        .chunks_exact(PANEL_ROWS * row_bytes)
        .zip(out.chunks_exact_mut(panel_bytes))
        .all(|(src, dst)| pack_panel(kind, src, row_bytes, PANEL_ROWS, 0, nb, dst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const KINDS: [IntKind; 3] = [IntKind::Q8_0, IntKind::Q4_0, IntKind::Q4_1];

    #[test]
    fn panel_block_columns_have_the_plain_size() {
        assert_eq!(IntKind::Q8_0.panel_block_bytes(), 544);
        assert_eq!(IntKind::Q4_0.panel_block_bytes(), 288);
        assert_eq!(IntKind::Q4_1.panel_block_bytes(), 320);
        for k in KINDS {
            let end = k.panel_qs_at() + k.groups() * GROUP_BYTES;
            assert_eq!(end, k.panel_block_bytes(), "{k:?}");
        }
    }

    #[test]
    fn panels_are_a_permutation_of_the_plain_bytes() {
        for k in KINDS {
            let (rows, nb) = (48, 5);
            let plain: Vec<u8> = (0..rows * nb * k.block_bytes())
                .map(|i| (i * 31 % 251) as u8)
                .collect();
            let mut panels = vec![0u8; plain.len()];
            assert!(to_panels(k, &plain, rows, nb, &mut panels));
            let mut sorted_a = plain.clone();
            let mut sorted_b = panels.clone();
            sorted_a.sort_unstable();
            sorted_b.sort_unstable();
            assert_eq!(sorted_a, sorted_b);
            let mut block = vec![0u8; k.block_bytes()];
            for n in 0..rows {
                for b in 0..nb {
                    assert!(unpack_block(k, &panels, nb, n, b, &mut block));
                    let at = (n * nb + b) * k.block_bytes();
                    assert_eq!(
                        block,
                        plain[at..at + k.block_bytes()],
                        "{k:?} row {n} block {b}"
                    );
                }
            }
            assert!(!unpack_block(k, &panels, nb, rows, 0, &mut block));
            assert!(!unpack_block(k, &panels, nb, 0, nb, &mut block));
        }
    }

    #[test]
    fn a_short_last_panel_is_padded_with_zero_blocks() {
        let k = IntKind::Q8_0;
        let plain: Vec<u8> = (0..3 * 34).map(|i| i as u8 + 1).collect();
        let mut out = vec![0xAAu8; 544];
        assert!(pack_panel(k, &plain, 34, 3, 0, 1, &mut out));
        // Lane 3 onwards: zero scale and zero weights.
        assert_eq!(&out[6..32], &[0u8; 26]);
        for g in 0..8 {
            let lanes = &out[32 + g * 64..32 + (g + 1) * 64];
            assert_eq!(&lanes[..4], &plain[2 + 4 * g..6 + 4 * g]);
            assert!(lanes[12..].iter().all(|&v| v == 0));
        }
        assert!(
            !pack_panel(k, &plain, 34, 4, 0, 1, &mut out),
            "a row past the data"
        );
        assert!(
            !to_panels(k, &plain, 3, 1, &mut out[..102]),
            "3 rows have no panel form"
        );
    }
}
