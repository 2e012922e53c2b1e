//! Byte-level BPE merges on one pre-tokenized word, as llama.cpp's
//! `llm_tokenizer_bpe_session` does them.
//!
//! Symbols start as single bytes (the word's GPT-2 spelling, one code point
//! per byte). The pair with the lowest merge rank is merged first, the
//! leftmost on ties; merging `L` and `R` extends `L` over `R` and creates new
//! candidate pairs with `L`'s neighbours. An indexed heap keeps one
//! candidate per left symbol, which is exactly the set of entries llama.cpp's
//! lazy heap would still accept, so the merge order is identical and each
//! merge costs O(log n). Symbol `i` always starts at byte `i` of the word.

use super::heap::Heap;
use super::tables::{Tables, NONE};
use super::{Sink, SCRATCH_ARRAYS};
use crate::error::{Error, Result, TokenizerError};

/// Per-symbol scratch arrays, each at least `max_piece_bytes` long.
pub(crate) struct Symbols<'s> {
    pub(crate) next: &'s mut [u32],
    pub(crate) prev: &'s mut [u32],
    pub(crate) id: &'s mut [u32],
    pub(crate) heap: &'s mut [u32],
    pub(crate) pos: &'s mut [u32],
    pub(crate) prio: &'s mut [u32],
    pub(crate) aux: &'s mut [u32],
    pub(crate) start: &'s mut [u32],
    /// Steps counted by the merge loops (symbols set up, heap operations
    /// weighted by the heap's depth, bytes hashed): tests bound it.
    pub(crate) work: u64,
    /// Longest token text in the vocabulary (SPM skips longer pairs).
    pub(crate) max_token_len: usize,
}

impl<'s> Symbols<'s> {
    /// Splits `scratch` into the [`SCRATCH_ARRAYS`] arrays of `cap` entries
    /// each (shorter if `scratch` is): the count the planner sized the
    /// encode scratch with, so a different number of arrays here does not
    /// compile.
    pub(crate) fn new(scratch: &'s mut [u32], cap: usize) -> Symbols<'s> {
        let mut rest = scratch;
        let [next, prev, id, heap, pos, prio, aux, start]: [&'s mut [u32]; SCRATCH_ARRAYS] =
            core::array::from_fn(|_| {
                let all = core::mem::take(&mut rest);
                let (array, tail) = all.split_at_mut(cap.min(all.len()));
                rest = tail;
                array
            });
        Symbols {
            next,
            prev,
            id,
            heap,
            pos,
            prio,
            aux,
            start,
            work: 0,
            max_token_len: usize::MAX,
        }
    }

    /// Counts `n` steps.
    #[inline]
    pub(crate) fn count(&mut self, n: usize) {
        self.work = self
            .work
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// Steps of one heap operation on `n` entries: its depth.
#[inline]
pub(crate) fn heap_cost(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()) as usize + 1
}

#[inline]
fn get(a: &[u32], i: u32) -> u32 {
    a.get(i as usize).copied().unwrap_or(NONE)
}

#[inline]
fn put(a: &mut [u32], i: u32, v: u32) {
    if let Some(s) = a.get_mut(i as usize) {
        *s = v;
    }
}

/// Emits the tokens of a symbol that is not a token itself, byte by byte:
/// llama.cpp looks up each byte of the symbol's spelling as a one-byte
/// string, which only the printable ASCII bytes can match.
fn emit_fallback(t: &Tables<'_>, bytes: &[u8], out: &mut Sink<'_>) {
    for &b in bytes {
        if (0x21..=0x7E).contains(&b) {
            let id = t.byte_ids.get(usize::from(b)).copied().unwrap_or(NONE);
            if id != NONE {
                out.push(id);
            }
        }
    }
}

/// Tokenizes one word (raw bytes) into `out`.
pub(crate) fn encode_word(
    t: &Tables<'_>,
    sym: &mut Symbols<'_>,
    word: &[u8],
    out: &mut Sink<'_>,
) -> Result<()> {
    let n = word.len();
    if n == 0 {
        return Ok(());
    }
    if t.ignore_merges {
        if let Some(id) = t.find(word) {
            out.push(id);
            return Ok(());
        }
    }
    if n == 1 {
        let id = t
            .byte_ids
            .get(usize::from(word[0]))
            .copied()
            .unwrap_or(NONE);
        if id != NONE {
            out.push(id);
        } else {
            emit_fallback(t, word, out);
        }
        return Ok(());
    }
    if n > sym.next.len() || n > sym.start.len() {
        return Err(Error::Tokenizer(TokenizerError::PieceTooLong {
            bytes: n,
            max: sym.next.len(),
        }));
    }
    let n32 = n as u32;
    sym.count(n);
    let op = heap_cost(n);
    for (i, &b) in word.iter().enumerate() {
        let i = i as u32;
        put(sym.next, i, if i + 1 < n32 { i + 1 } else { NONE });
        put(sym.prev, i, if i == 0 { NONE } else { i - 1 });
        put(
            sym.id,
            i,
            t.byte_ids.get(usize::from(b)).copied().unwrap_or(NONE),
        );
    }
    let mut heap = Heap::new(sym.heap, sym.pos, sym.prio, n);
    for i in 0..n32 - 1 {
        if let Some((rank, _)) = t.merge(get(sym.id, i), get(sym.id, i + 1)) {
            heap.set(i, rank);
        }
    }
    let mut iterations = 0usize;
    while let Some(left) = heap.peek() {
        iterations += 1;
        let right = get(sym.next, left);
        let merged = t.merge(get(sym.id, left), get(sym.id, right));
        heap.remove(left);
        let Some((_, result)) = merged else { continue };
        // Merge `right` into `left`.
        heap.remove(right);
        let after = get(sym.next, right);
        put(sym.id, left, result);
        put(sym.next, left, after);
        if after != NONE {
            put(sym.prev, after, left);
        }
        let before = get(sym.prev, left);
        if before != NONE {
            match t.merge(get(sym.id, before), result) {
                Some((rank, _)) => heap.set(before, rank),
                None => heap.remove(before),
            }
        }
        if after != NONE {
            if let Some((rank, _)) = t.merge(result, get(sym.id, after)) {
                heap.set(left, rank);
            }
        }
    }
    // Each iteration: at most four heap operations.
    sym.count(iterations.saturating_mul(4 * op));
    let mut i = 0u32;
    while i != NONE && (i as usize) < n {
        let next = get(sym.next, i);
        let id = get(sym.id, i);
        if id != NONE {
            out.push(id);
        } else {
            let end = if next == NONE { n } else { next as usize };
            emit_fallback(t, word.get(i as usize..end).unwrap_or(&[]), out);
        }
        i = next;
    }
    Ok(())
}
