//! Splitting input text around special tokens, exactly as llama.cpp's
//! `tokenizer_st_partition` does, in bounded memory and in time linear in
//! the text.
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
//! Every token of [`LONG`] bytes or more ranks before every shorter one, so
//! the selection is made in two stages:
//!
//! 1. **Long tokens** (rare: none in the vocabularies we know) are applied
//!    as llama.cpp does, one after the other, but streamed: each is a stage
//!    that splits the text fragments the previous stage hands it at the
//!    leftmost non-overlapping occurrences found by `str::find` (two-way
//!    string matching: linear in fragment plus token, constant memory).
//!    Up to [`MAX_LONG`] long tokens are staged this way; a vocabulary with
//!    more falls back to stage 2 for all of them.
//! 2. **Short tokens** within each remaining fragment (a fragment edge acts
//!    as the end of the text: no selected occurrence crosses it). We decide
//!    the selection left to right without a fragment list: at a position
//!    `p` with no kept occurrence covering it, candidate `o` (tried best
//!    first) is kept iff no occurrence that starts inside `o`, ranks before
//!    it and is itself kept, overlaps it ([`Matcher::blocked`]). Ranks
//!    strictly improve along that recursion, so it ends. The first- and
//!    second-byte filters make positions that start no special token cost
//!    O(1); the tokens at a position that passes them are found with one
//!    incremental hash of at most 63 bytes, remembered for the overlap
//!    checks that ask about the same position again.
//!
//! Before, stage 2 handled every length: one filter bit stands for all
//! lengths from 64 up, so at every position that could start a long token
//! every length up to the longest token was hashed in full — quadratic in
//! the token's length per position, and the overlap check rescanned it
//! again — minutes for kilobytes of text next to a 4 KiB special token.
//!
//! The work beyond one step per text byte (hashed bytes, filter lookups in
//! overlap checks, bytes searched by stage 1) is counted ([`Work`]) and
//! capped at [`WORK_BASE`] + [`WORK_PER_BYTE`] per byte of text; a crafted
//! vocabulary whose overlaps need more (deep chains of mutually overlapping
//! special tokens) is refused with [`TokenizerError::SpecialTokenOverlap`],
//! as is recursion deeper than 16. Real vocabularies stay far below: their
//! special tokens hardly overlap.
//!
//! With `parse_special` off, control and unknown tokens are plain text but
//! user-defined tokens are still split out (llama.cpp and Hugging Face do
//! the same).

use super::hash::Hasher;
use super::tables::{attr, Tables};
use crate::error::{Error, Result, TokenizerError};

/// A piece of input: text to tokenize, or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frag<'t> {
    Text(&'t str),
    Token(u32),
}

/// Shortest "long" special token: the length filter has one bit for every
/// length from here up, so these are matched by string search instead.
pub(crate) const LONG: usize = 64;
/// Most long special tokens staged (each stage is a few words of stack).
pub(crate) const MAX_LONG: usize = 16;
/// Deepest overlap recursion (stack frames of [`Matcher::blocked`]).
const MAX_DEPTH: u32 = 16;
/// Work allowed per encode call regardless of the text length.
pub(crate) const WORK_BASE: u64 = 1 << 20;
/// Work allowed per byte of text. Natural text needs far less: over the
/// tokenizer reference corpora, SmolLM2's vocabulary at most 3 steps a
/// byte, Gemma 3's (user-defined tokens for runs of up to 31 spaces, tabs
/// or newlines) 5 on average and 29 at worst.
pub(crate) const WORK_PER_BYTE: u64 = 1024;

/// Counted work, against a budget linear in the text length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Work {
    /// Steps taken so far.
    pub(crate) steps: u64,
    budget: u64,
}

impl Work {
    /// A budget for a text of `len` bytes.
    pub(crate) fn for_text(len: usize) -> Work {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        Work {
            steps: 0,
            budget: WORK_BASE.saturating_add(len.saturating_mul(WORK_PER_BYTE)),
        }
    }

    /// Records `n` more steps; an error once the budget is spent.
    #[inline]
    pub(crate) fn add(&mut self, n: usize) -> Result<()> {
        self.steps = self
            .steps
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if self.steps > self.budget {
            return Err(overlap_error());
        }
        Ok(())
    }
}

/// The `n` lowest bits set (`n <= 64`): lengths `1..=n` in a filter mask.
#[inline]
fn low_bits(n: usize) -> u64 {
    match n {
        0 => 0,
        1..=63 => (1u64 << n) - 1,
        _ => u64::MAX,
    }
}

fn overlap_error() -> Error {
    Error::Tokenizer(TokenizerError::SpecialTokenOverlap)
}

fn split_error() -> Error {
    Error::Tokenizer(TokenizerError::BadVocab {
        why: "special token split a character",
    })
}

/// Whether special token `id` is split out of text (`parse_special` off:
/// user-defined tokens only).
#[inline]
fn active(t: &Tables<'_>, id: u32, parse_special: bool) -> bool {
    parse_special || t.attr(id) & (attr::CONTROL | attr::UNKNOWN) == 0
}

struct Matcher<'t, 'a, 'w> {
    t: &'t Tables<'a>,
    text: &'t [u8],
    parse_special: bool,
    /// Longest token length stage 2 considers.
    max_len: usize,
    work: &'w mut Work,
    /// `(position, matches)` of recent positions, by position mod size.
    cache: [(usize, u64); MATCH_CACHE],
}

/// Positions whose short matches a [`Matcher`] remembers (1 KiB of stack).
const MATCH_CACHE: usize = 64;

impl Matcher<'_, '_, '_> {
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
        let second_ok = match self.text.get(p.saturating_add(1)) {
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

    /// The active special token of exactly `len` bytes at `p` (costs `len`).
    fn at(&mut self, p: usize, len: usize) -> Result<Option<u32>> {
        let Some(end) = p.checked_add(len) else {
            return Ok(None);
        };
        let Some(s) = self.text.get(p..end) else {
            return Ok(None);
        };
        if !self.boundary(p) || !self.boundary(end) {
            return Ok(None);
        }
        self.work.add(len)?;
        Ok(self
            .t
            .find_special(s)
            .filter(|&id| active(self.t, id, self.parse_special)))
    }

    /// Lengths (bit `L-1`, `L <= 63`) of the active special tokens that
    /// occur at `q`: one incremental hash up to the longest length the
    /// filter allows (at most 63 bytes), remembered for the last
    /// [`MATCH_CACHE`] positions asked about, since overlap checks ask
    /// about the same positions again.
    fn matches(&mut self, q: usize) -> Result<u64> {
        let slot = q % MATCH_CACHE;
        if let Some(&(pos, bits)) = self.cache.get(slot) {
            if pos == q {
                return Ok(bits);
            }
        }
        let room = self.text.len().saturating_sub(q);
        let top = self.max_len.min(LONG - 1).min(room);
        let wanted = self.mask(q) & low_bits(top);
        let mut bits = 0u64;
        if wanted != 0 && self.boundary(q) {
            let longest = 64 - wanted.leading_zeros() as usize;
            let bytes = self.text.get(q..q + longest).unwrap_or(&[]);
            self.work.add(longest)?;
            let mut h = Hasher::new();
            for (i, &b) in bytes.iter().enumerate() {
                h.byte(b);
                let len = i + 1;
                if !Self::has_len(wanted, len) || !self.boundary(q + len) {
                    continue;
                }
                let Some(s) = bytes.get(..len) else { break };
                let found = self
                    .t
                    .find_special_hashed(s, h.finish())
                    .filter(|&id| active(self.t, id, self.parse_special));
                if found.is_some() {
                    bits |= 1u64 << (len - 1);
                }
            }
        }
        if let Some(c) = self.cache.get_mut(slot) {
            *c = (q, bits);
        }
        Ok(bits)
    }

    /// Whether a token of `len` bytes may occur at `q`: exactly for short
    /// lengths ([`Matcher::matches`]), by the filter for long ones.
    fn may_occur(&mut self, q: usize, len: usize) -> Result<bool> {
        if len < LONG {
            Ok(Self::has_len(self.matches(q)?, len))
        } else {
            Ok(Self::has_len(self.mask(q), len))
        }
    }

    /// Whether occurrence `(s, len, id)` loses to a kept occurrence starting
    /// inside it. Assumes nothing that starts before `s` and ranks before it
    /// is kept while overlapping it (see the module doc).
    fn blocked(&mut self, s: usize, len: usize, id: u32, depth: u32) -> Result<bool> {
        if depth > MAX_DEPTH {
            return Err(overlap_error());
        }
        let e = s.saturating_add(len).min(self.text.len());
        // Lengths that occur anywhere inside: the only ones worth a pass.
        self.work.add(e.saturating_sub(s))?;
        let mut inside = 0u64;
        for q in s + 1..e {
            inside |= self.matches(q)?;
            if self.max_len >= LONG {
                inside |= self.mask(q) & (1u64 << 63);
            }
        }
        // Bits of lengths >= len (bit 63: every length from 64 up).
        let at_least_len = if len >= LONG {
            1u64 << 63
        } else {
            !low_bits(len - 1)
        };
        if inside & at_least_len == 0 {
            return Ok(false);
        }
        // An occurrence starting after `s` ends by the end of the text.
        let mut l2 = self.max_len.min(self.text.len().saturating_sub(s + 1));
        while l2 >= len {
            self.work.add(1)?;
            if !Self::has_len(inside, l2) {
                // Straight to the next length that occurs inside (bit 63
                // stands for every length from 64 up), not one step at a
                // time: stepping down from a long token's length cost that
                // length, uncounted, on every call.
                let below = inside & low_bits(l2.min(LONG) - 1);
                l2 = 64 - below.leading_zeros() as usize;
                continue;
            }
            // Occurrences of length l2 starting in (s, e), in (id, position) order.
            let mut last: Option<(u32, usize)> = None;
            loop {
                let mut best: Option<(u32, usize)> = None;
                self.work.add(e.saturating_sub(s))?;
                for q in s + 1..e {
                    if !self.may_occur(q, l2)? {
                        continue;
                    }
                    let Some(id2) = self.at(q, l2)? else { continue };
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

/// Stage 2 on one fragment (`text`, whose ends act as the text's ends).
fn partition_short<'t>(
    t: &Tables<'_>,
    text: &'t str,
    parse_special: bool,
    max_len: usize,
    work: &mut Work,
    f: &mut impl FnMut(Frag<'t>) -> Result<()>,
) -> Result<()> {
    if max_len == 0 {
        return f(Frag::Text(text));
    }
    let bytes = text.as_bytes();
    let mut m = Matcher {
        t,
        text: bytes,
        parse_special,
        max_len,
        work,
        cache: [(usize::MAX, 0); MATCH_CACHE],
    };
    let slice = |a: usize, b: usize| -> Result<&'t str> { text.get(a..b).ok_or_else(split_error) };
    let n = bytes.len();
    let (mut p, mut frag) = (0, 0);
    while p < n {
        let mask = m.mask(p);
        if mask == 0 {
            p += 1;
            continue;
        }
        let mut kept = None;
        // Long lengths (the fallback for vocabularies with too many long
        // tokens to stage): every length from the longest down to 64.
        if max_len >= LONG && Matcher::has_len(mask, LONG) {
            let mut len = max_len.min(n - p);
            while len >= LONG {
                m.work.add(1)?;
                if let Some(id) = m.at(p, len)? {
                    if !m.blocked(p, len, id, 0)? {
                        kept = Some((len, id));
                        break;
                    }
                }
                len -= 1;
            }
        }
        if kept.is_none() {
            let bits = m.matches(p)?;
            let mut len = 64 - bits.leading_zeros() as usize;
            while len >= 1 {
                if Matcher::has_len(bits, len) {
                    if let Some(id) = m.at(p, len)? {
                        if !m.blocked(p, len, id, 0)? {
                            kept = Some((len, id));
                            break;
                        }
                    }
                }
                len -= 1;
            }
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

/// A long special token applied as a stage of stage 1.
#[derive(Clone, Copy)]
struct Stage<'v> {
    id: u32,
    needle: &'v str,
    /// The rest of the current input fragment, still to split.
    start: usize,
    end: usize,
    /// Emit `Token(id)` next.
    pending: bool,
}

/// A fragment of the text by byte range, or a token.
#[derive(Clone, Copy)]
enum Piece {
    Text(usize, usize),
    Token(u32),
}

/// The next piece out of the last of `stages` (the first stage reads the
/// whole text once, flagged by `source_done`).
fn pull(
    stages: &mut [Stage<'_>],
    text: &str,
    source_done: &mut bool,
    work: &mut Work,
) -> Result<Option<Piece>> {
    let Some((stage, upstream)) = stages.split_last_mut() else {
        if *source_done {
            return Ok(None);
        }
        *source_done = true;
        return Ok(Some(Piece::Text(0, text.len())));
    };
    loop {
        if stage.pending {
            stage.pending = false;
            return Ok(Some(Piece::Token(stage.id)));
        }
        if stage.start < stage.end {
            let (a, b) = (stage.start, stage.end);
            let m = stage.needle.len();
            let found = if b - a >= m {
                let hay = text.get(a..b).ok_or_else(split_error)?;
                let found = hay.find(stage.needle);
                // Two-way search reads at most the haystack up to the match's
                // end, after preprocessing the needle.
                let read = found.map_or(b - a, |off| off.saturating_add(m));
                work.add(read.saturating_add(m))?;
                found
            } else {
                None
            };
            match found {
                Some(off) => {
                    let q = a + off;
                    stage.start = q + m;
                    stage.pending = true;
                    if q > a {
                        return Ok(Some(Piece::Text(a, q)));
                    }
                }
                None => {
                    stage.start = b;
                    return Ok(Some(Piece::Text(a, b)));
                }
            }
            continue;
        }
        match pull(upstream, text, source_done, work)? {
            None => return Ok(None),
            Some(Piece::Token(id)) => return Ok(Some(Piece::Token(id))),
            Some(Piece::Text(a, b)) => {
                stage.start = a;
                stage.end = b;
            }
        }
    }
}

const NO_STAGE: Stage<'static> = Stage {
    id: 0,
    needle: "",
    start: 0,
    end: 0,
    pending: false,
};

/// Fills `stages` with the long special tokens that could occur in a text
/// of `text_len` bytes, in rank order (longest first, then by id), and
/// returns their count; `None` if there are more than fit.
fn long_tokens<'a>(
    t: &Tables<'a>,
    text_len: usize,
    parse_special: bool,
    stages: &mut [Stage<'a>],
) -> Option<usize> {
    let mut n = 0usize;
    if t.special_max_len < LONG || text_len < LONG {
        return Some(0);
    }
    for id in t.special_geo.ids(t.special_slots) {
        let text = t.text(id);
        if text.len() < LONG || text.len() > text_len || !active(t, id, parse_special) {
            continue;
        }
        // A token that is not UTF-8 never matches UTF-8 text.
        let Ok(needle) = core::str::from_utf8(text) else {
            continue;
        };
        if n == stages.len() {
            return None;
        }
        // Insertion in rank order: shift worse-ranked stages up by one.
        let rank = |s: &Stage<'_>| (core::cmp::Reverse(s.needle.len()), s.id);
        let new = Stage {
            id,
            needle,
            ..NO_STAGE
        };
        let mut i = n;
        while i > 0 {
            match stages.get(i - 1).copied() {
                Some(prev) if rank(&prev) > rank(&new) => {
                    if let Some(slot) = stages.get_mut(i) {
                        *slot = prev;
                    }
                    i -= 1;
                }
                _ => break,
            }
        }
        if let Some(slot) = stages.get_mut(i) {
            *slot = new;
        }
        n += 1;
    }
    Some(n)
}

/// Splits `text` into fragments, calling `f` on each in order, and returns
/// the work counted (see [`Work`]).
pub(crate) fn partition<'t>(
    t: &Tables<'_>,
    text: &'t str,
    parse_special: bool,
    mut f: impl FnMut(Frag<'t>) -> Result<()>,
) -> Result<u64> {
    if text.is_empty() {
        return Ok(0);
    }
    let n_active = if parse_special {
        t.n_specials
    } else {
        t.n_specials_plain
    };
    if n_active == 0 {
        f(Frag::Text(text))?;
        return Ok(0);
    }
    let mut work = Work::for_text(text.len());
    let mut stages = [NO_STAGE; MAX_LONG];
    let (n_long, max_short) = match long_tokens(t, text.len(), parse_special, &mut stages) {
        Some(n) => (n, t.special_max_len.min(LONG - 1)),
        // Too many long tokens to stage: stage 2 handles every length.
        None => (0, t.special_max_len),
    };
    let stages = stages.get_mut(..n_long).unwrap_or(&mut []);
    let mut source_done = false;
    while let Some(piece) = pull(stages, text, &mut source_done, &mut work)? {
        match piece {
            Piece::Token(id) => f(Frag::Token(id))?,
            Piece::Text(a, b) => {
                let frag = text.get(a..b).ok_or_else(split_error)?;
                partition_short(t, frag, parse_special, max_short, &mut work, &mut f)?;
            }
        }
    }
    Ok(work.steps)
}
