//! Splitting input text around special tokens, exactly as llama.cpp's
//! `tokenizer_st_partition` does, in bounded memory.
//!
//! llama.cpp takes the special tokens longest first and, for each, splits
//! every remaining text fragment at all its leftmost non-overlapping
//! occurrences. That is a greedy selection of occurrences in the order
//! `(length descending, token, position ascending)`: an occurrence is kept
//! unless it overlaps a kept one that comes earlier in that order.
//! (Tokens of equal length are ordered by id here; llama.cpp's `std::sort`
//! leaves their order unspecified, which only matters if two different
//! special tokens of equal length overlap in the input.)
//!
//! We decide the same selection left to right without a fragment list: at a
//! position `p` with no kept occurrence covering it, candidate `o` (tried
//! best first) is kept iff no occurrence that starts inside `o`, ranks before
//! it and is itself kept, overlaps it ([`Matcher::blocked`]). Ranks strictly
//! improve along that recursion, so it ends; its depth and work are capped
//! against crafted vocabularies ([`TokenizerError::SpecialTokenOverlap`]).
//!
//! With `parse_special` off, control and unknown tokens are plain text but
//! user-defined tokens are still split out (llama.cpp and Hugging Face do
//! the same).

use super::tables::{attr, Tables};
use crate::error::{Error, Result, TokenizerError};

/// A piece of input: text to tokenize, or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frag<'t> {
    Text(&'t str),
    Token(u32),
}

const MAX_DEPTH: u32 = 16;
const MAX_WORK: u32 = 100_000;

struct Matcher<'t, 'a> {
    t: &'t Tables<'a>,
    text: &'t [u8],
    parse_special: bool,
    work: u32,
}

fn overlap_error() -> Error {
    Error::Tokenizer(TokenizerError::SpecialTokenOverlap)
}

impl Matcher<'_, '_> {
    /// Lengths of special tokens that could start at `p` (bit `L-1`;
    /// bit 63 stands for every length from 64 up).
    #[inline]
    fn mask(&self, p: usize) -> u64 {
        let Some(&b0) = self.text.get(p) else {
            return 0;
        };
        let mut m = self
            .t
            .special_first
            .get(usize::from(b0))
            .copied()
            .unwrap_or(0);
        if m == 0 {
            return 0;
        }
        let second_ok = match self.text.get(p + 1) {
            None => false,
            Some(&b1) => self
                .t
                .special_second
                .get(usize::from(b0) * 4 + usize::from(b1 >> 6))
                .is_some_and(|w| w & (1u64 << (b1 & 63)) != 0),
        };
        if !second_ok {
            m &= 1;
        }
        m
    }

    #[inline]
    fn has_len(mask: u64, len: usize) -> bool {
        match len {
            0 => false,
            1..=63 => mask & (1u64 << (len - 1)) != 0,
            _ => mask & (1u64 << 63) != 0,
        }
    }

    #[inline]
    fn boundary(&self, i: usize) -> bool {
        self.text.get(i).is_none_or(|&b| b & 0xC0 != 0x80)
    }

    /// The active special token of exactly `len` bytes at `p`.
    fn at(&self, p: usize, len: usize) -> Option<u32> {
        let end = p.checked_add(len)?;
        let s = self.text.get(p..end)?;
        if !self.boundary(p) || !self.boundary(end) {
            return None;
        }
        let id = self.t.find_special(s)?;
        if !self.parse_special && self.t.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return None;
        }
        Some(id)
    }

    /// Whether occurrence `(s, len, id)` loses to a kept occurrence starting
    /// inside it. Assumes nothing that starts before `s` and ranks before it
    /// is kept while overlapping it (see the module doc).
    fn blocked(&mut self, s: usize, len: usize, id: u32, depth: u32) -> Result<bool> {
        self.work += 1;
        if depth > MAX_DEPTH || self.work > MAX_WORK {
            return Err(overlap_error());
        }
        let e = s + len;
        let mut l2 = self.t.special_max_len;
        while l2 >= len {
            // Occurrences of length l2 starting in (s, e), in (id, position) order.
            let mut last: Option<(u32, usize)> = None;
            loop {
                let mut best: Option<(u32, usize)> = None;
                for q in s + 1..e {
                    if !Self::has_len(self.mask(q), l2) {
                        continue;
                    }
                    let Some(id2) = self.at(q, l2) else { continue };
                    if l2 == len && id2 >= id {
                        continue;
                    }
                    let cand = (id2, q);
                    if last.is_some_and(|l| cand <= l) || best.is_some_and(|b| cand >= b) {
                        continue;
                    }
                    best = Some(cand);
                }
                let Some((id2, q)) = best else { break };
                if !self.blocked(q, l2, id2, depth + 1)? {
                    return Ok(true);
                }
                last = best;
            }
            if l2 == 0 {
                break;
            }
            l2 -= 1;
        }
        Ok(false)
    }
}

/// Splits `text` into fragments, calling `f` on each in order.
pub(crate) fn partition<'t>(
    t: &Tables<'_>,
    text: &'t str,
    parse_special: bool,
    mut f: impl FnMut(Frag<'t>) -> Result<()>,
) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let active = if parse_special {
        t.n_specials
    } else {
        t.n_specials_plain
    };
    if active == 0 {
        return f(Frag::Text(text));
    }
    let bytes = text.as_bytes();
    let mut m = Matcher {
        t,
        text: bytes,
        parse_special,
        work: 0,
    };
    let slice = |a: usize, b: usize| -> Result<&'t str> {
        text.get(a..b)
            .ok_or(Error::Tokenizer(TokenizerError::BadVocab {
                why: "special token split a character",
            }))
    };
    let n = bytes.len();
    let (mut p, mut frag) = (0, 0);
    while p < n {
        let mask = m.mask(p);
        if mask == 0 {
            p += 1;
            continue;
        }
        let mut kept = None;
        let mut len = t.special_max_len.min(n - p);
        while len >= 1 {
            if Matcher::has_len(mask, len) {
                if let Some(id) = m.at(p, len) {
                    m.work = 0;
                    if !m.blocked(p, len, id, 0)? {
                        kept = Some((len, id));
                        break;
                    }
                }
            }
            len -= 1;
        }
        match kept {
            Some((len, id)) => {
                if frag < p {
                    f(Frag::Text(slice(frag, p)?))?;
                }
                f(Frag::Token(id))?;
                p += len;
                frag = p;
            }
            None => p += 1,
        }
    }
    if frag < n {
        f(Frag::Text(slice(frag, n)?))?;
    }
    Ok(())
}
