//! SentencePiece (llama.cpp's `llm_tokenizer_spm_session`): spaces become
//! `▁`, the text is split into UTF-8 characters, and the adjacent pair whose
//! concatenation is the vocabulary token with the highest score is merged
//! first (leftmost on ties), until no pair is a token. A final symbol that
//! is not a token is emitted as byte tokens `<0xXX>`.
//!
//! llama.cpp runs this on a whole text fragment. To keep memory bounded we
//! cut the escaped text before a `▁` whenever no token could span the cut
//! (the character before it never precedes `▁` inside a token, see
//! [`Tables::spm_break_ok`]); merges never cross such a cut, and merges on
//! either side do not interact, so the result is identical. A chunk longer
//! than the scratch is refused ([`TokenizerError::PieceTooLong`]).
//!
//! Cost: each merge re-hashes the pairs it changes, so a chunk of `c` bytes
//! costs O(c log c) heap work plus the bytes of the pairs looked up. Pairs
//! longer than the vocabulary's longest token are not looked up; still, a
//! vocabulary whose scores grow a symbol one character at a time (every
//! run `a`, `aa`, ... up to `K` bytes a token) costs about `K / 2` hashed
//! bytes per input byte — linear in the text, as in llama.cpp's loop, which
//! hashes the same strings.

use super::bpe::Symbols;
use super::heap::Heap;
use super::tables::{Tables, NONE};
use super::Sink;
use crate::error::{Error, Result, TokenizerError};

/// A priority (smaller is better) from a score (higher is better), over a
/// total order of `f32` (llama.cpp compares with `<`; they agree for every
/// non-NaN score, `-0.0` and `0.0` included).
#[inline]
fn score_prio(score: f32) -> u32 {
    let score = if score == 0.0 { 0.0 } else { score };
    let b = score.to_bits();
    let ordered = if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    };
    !ordered
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

/// Tokenizes one text fragment. `space_prefix` prepends a space (llama.cpp
/// does so when the model adds one and the fragment follows a special token
/// or starts the input).
pub(crate) fn encode_fragment(
    t: &Tables<'_>,
    sym: &mut Symbols<'_>,
    buf: &mut [u8],
    text: &str,
    space_prefix: bool,
    out: &mut Sink<'_>,
) -> Result<()> {
    let mut len = 0usize;
    let mut prev: Option<char> = None;
    let chars = space_prefix.then_some(' ').into_iter().chain(text.chars());
    for c in chars {
        let esc = if c == ' ' { '▁' } else { c };
        if esc == '▁' && len > 0 && prev.is_some_and(|p| t.spm_break_ok(p)) {
            encode_chunk(t, sym, buf.get(..len).unwrap_or(&[]), out)?;
            len = 0;
        }
        let mut tmp = [0u8; 4];
        let e = esc.encode_utf8(&mut tmp).as_bytes();
        let end = len + e.len();
        match buf.get_mut(len..end) {
            Some(dst) => dst.copy_from_slice(e),
            None => {
                return Err(Error::Tokenizer(TokenizerError::PieceTooLong {
                    bytes: end,
                    max: buf.len(),
                }))
            }
        }
        len = end;
        prev = Some(esc);
    }
    if len > 0 {
        encode_chunk(t, sym, buf.get(..len).unwrap_or(&[]), out)?;
    }
    Ok(())
}

/// End (exclusive byte offset) of symbol `i` in a chunk of `len` bytes.
#[inline]
fn end_of(next: &[u32], start: &[u32], i: u32, len: usize) -> usize {
    match get(next, i) {
        NONE => len,
        j => get(start, j) as usize,
    }
}

/// Recomputes symbol `i`'s candidate merge with its right neighbour;
/// returns the bytes hashed (the pair's length).
#[allow(clippy::too_many_arguments)]
fn try_pair(
    t: &Tables<'_>,
    next: &[u32],
    start: &[u32],
    aux: &mut [u32],
    heap: &mut Heap<'_>,
    chunk: &[u8],
    max_token_len: usize,
    i: u32,
) -> usize {
    let j = get(next, i);
    if j == NONE {
        heap.remove(i);
        return 0;
    }
    let a = get(start, i) as usize;
    let b = end_of(next, start, j, chunk.len());
    let hashed = b.saturating_sub(a);
    if hashed > max_token_len {
        // Longer than every token: not one, no need to hash it.
        heap.remove(i);
        return 0;
    }
    match chunk.get(a..b).and_then(|s| t.find(s)) {
        Some(id) => {
            put(aux, i, id);
            heap.set(i, score_prio(t.scores.get(id)));
        }
        None => heap.remove(i),
    }
    hashed
}

fn encode_chunk(
    t: &Tables<'_>,
    sym: &mut Symbols<'_>,
    chunk: &[u8],
    out: &mut Sink<'_>,
) -> Result<()> {
    let Ok(s) = core::str::from_utf8(chunk) else {
        return Err(Error::Tokenizer(TokenizerError::BadVocab {
            why: "internal: SPM chunk is not UTF-8",
        }));
    };
    let cap = sym.start.len();
    let mut n = 0u32;
    for (i, _) in s.char_indices() {
        if n as usize >= cap {
            return Err(Error::Tokenizer(TokenizerError::PieceTooLong {
                bytes: chunk.len(),
                max: cap,
            }));
        }
        put(sym.start, n, i as u32);
        put(sym.id, n, NONE);
        n += 1;
    }
    for i in 0..n {
        put(sym.next, i, if i + 1 < n { i + 1 } else { NONE });
        put(sym.prev, i, if i == 0 { NONE } else { i - 1 });
    }
    // Steps: symbols, bytes hashed, heap operations weighted by depth.
    let op = super::bpe::heap_cost(n as usize);
    let longest = sym.max_token_len;
    let mut steps = n as usize;
    let mut heap = Heap::new(sym.heap, sym.pos, sym.prio, n as usize);
    for i in 0..n.saturating_sub(1) {
        steps = steps
            .saturating_add(try_pair(
                t, sym.next, sym.start, sym.aux, &mut heap, chunk, longest, i,
            ))
            .saturating_add(op);
    }
    while let Some(left) = heap.peek() {
        let right = get(sym.next, left);
        heap.remove(left);
        heap.remove(right);
        put(sym.id, left, get(sym.aux, left));
        let after = get(sym.next, right);
        put(sym.next, left, after);
        if after != NONE {
            put(sym.prev, after, left);
        }
        let before = get(sym.prev, left);
        if before != NONE {
            steps = steps.saturating_add(try_pair(
                t, sym.next, sym.start, sym.aux, &mut heap, chunk, longest, before,
            ));
        }
        steps = steps
            .saturating_add(try_pair(
                t, sym.next, sym.start, sym.aux, &mut heap, chunk, longest, left,
            ))
            .saturating_add(4 * op);
    }
    sym.count(steps);
    let mut i = 0u32;
    while i != NONE && i < n {
        let a = get(sym.start, i) as usize;
        let b = end_of(sym.next, sym.start, i, chunk.len());
        let text = chunk.get(a..b).unwrap_or(&[]);
        let id = match get(sym.id, i) {
            NONE => t.find(text).unwrap_or(NONE),
            id => id,
        };
        if id != NONE {
            out.push(id);
        } else {
            for &byte in text {
                match t.byte_ids.get(usize::from(byte)).copied() {
                    Some(bid) if bid != NONE => out.push(bid),
                    _ => return Err(Error::Tokenizer(TokenizerError::MissingByteToken { byte })),
                }
            }
        }
        i = get(sym.next, i);
    }
    Ok(())
}
