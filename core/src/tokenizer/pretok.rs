//! Pre-tokenizers for byte-level BPE: hand-written scanners equivalent to
//! the regexes llama.cpp selects by `tokenizer.ggml.pre`.
//!
//! llama.cpp applies a list of regexes in turn, each splitting every piece
//! the previous one produced (matches and the gaps between them both become
//! pieces; a piece's end acts as end of text for lookaheads). For the GPT-2,
//! Llama 3 and Qwen2 regexes it runs hand-written scanners
//! (`unicode_regex_split_custom_*`), whose exact behaviour (not the regex's)
//! is what we reproduce; the other stages (`\p{N}`, `[\p{P}...]+`, `\p{N}+`,
//! `[0-9][0-9][0-9]`) run through `std::regex` on text where every non-ASCII
//! code point is collapsed to its class, which the run splitters here mirror.
//!
//! | name | stages |
//! |---|---|
//! | `gpt2` | GPT-2 scanner |
//! | `smollm` (starcoder, …) | each `\p{N}` alone, then GPT-2 |
//! | `llama-bpe` (llama3, …), `dbrx` | Llama 3 scanner |
//! | `qwen2` (…) | Qwen2 scanner |
//! | `default` | `[\p{P}$+<=>^~\|]+` runs, GPT-2, `\p{N}+` runs, ASCII digit triples |

use super::unicode::{flags, Flags};
use super::PreTokenizer;
use crate::error::Result;

/// A piece of text, scanned by byte position.
struct Piece<'t> {
    s: &'t str,
}

impl<'t> Piece<'t> {
    #[inline]
    fn at(&self, pos: usize) -> Option<(char, usize)> {
        let c = self.s.get(pos..)?.chars().next()?;
        Some((c, c.len_utf8()))
    }

    #[inline]
    fn flags(&self, pos: usize) -> Flags {
        self.at(pos).map_or(Flags::END, |(c, _)| flags(c))
    }

    #[inline]
    fn byte(&self, pos: usize) -> Option<u8> {
        self.s.as_bytes().get(pos).copied()
    }

    /// Position after the run of code points from `pos` that satisfy `f`.
    #[inline]
    fn skip_while(&self, mut pos: usize, f: impl Fn(Flags) -> bool) -> usize {
        while let Some((c, l)) = self.at(pos) {
            if !f(flags(c)) {
                break;
            }
            pos += l;
        }
        pos
    }
}

/// Emits `s[start..end]` if non-empty and moves `start`.
#[inline]
fn cut<'t>(
    s: &'t str,
    start: &mut usize,
    end: usize,
    emit: &mut impl FnMut(&'t str) -> Result<()>,
) -> Result<()> {
    if end > *start {
        if let Some(w) = s.get(*start..end) {
            emit(w)?;
        }
    }
    *start = end;
    Ok(())
}

#[inline]
fn is_word_class(f: Flags) -> bool {
    f.is_whitespace() || f.is_letter() || f.is_number()
}

/// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (ASCII case-folded if `fold`):
/// the contraction's length in bytes.
#[inline]
fn contraction(p: &Piece<'_>, pos: usize, fold: bool) -> Option<usize> {
    if p.byte(pos)? != b'\'' {
        return None;
    }
    let low = |b: u8| if fold { b.to_ascii_lowercase() } else { b };
    let b1 = low(p.byte(pos + 1)?);
    if matches!(b1, b's' | b't' | b'm' | b'd') {
        return Some(2);
    }
    let b2 = low(p.byte(pos + 2)?);
    matches!((b1, b2), (b'r', b'e') | (b'v', b'e') | (b'l', b'l')).then_some(3)
}

/// The GPT-2 regex `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
/// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, as llama.cpp's custom scanner runs it.
pub(crate) fn split_gpt2<'t>(
    s: &'t str,
    emit: &mut impl FnMut(&'t str) -> Result<()>,
) -> Result<()> {
    let p = Piece { s };
    let n = s.len();
    let (mut start, mut pos) = (0usize, 0usize);
    while pos < n {
        let Some((c, clen)) = p.at(pos) else { break };
        let f = flags(c);
        if let Some(len) = contraction(&p, pos, false) {
            pos += len;
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        let f2 = if c == ' ' { p.flags(pos + 1) } else { f };
        let skip = usize::from(c == ' ');
        if f2.is_letter() {
            pos = p.skip_while(pos + skip, Flags::is_letter);
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        if f2.is_number() {
            pos = p.skip_while(pos + skip, Flags::is_number);
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        if !is_word_class(f2) && f2.in_range() {
            pos = p.skip_while(pos + skip, |g| !is_word_class(g) && g.in_range());
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        let (end, last, count) = whitespace_run(&p, pos);
        if count > 1 && end < n {
            pos = last; // \s+(?!\S): leave the last space to the next word
        } else if count > 0 {
            pos = end;
        } else {
            pos += clen;
        }
        cut(s, &mut start, pos, emit)?;
    }
    cut(s, &mut start, n, emit)
}

/// The whitespace run at `pos`: (end, start of its last code point, count).
#[inline]
fn whitespace_run(p: &Piece<'_>, pos: usize) -> (usize, usize, usize) {
    let (mut q, mut last, mut count) = (pos, pos, 0);
    while let Some((c, l)) = p.at(q) {
        if !flags(c).is_whitespace() {
            break;
        }
        last = q;
        q += l;
        count += 1;
    }
    (q, last, count)
}

/// The Llama 3 (`digits = 3`) and Qwen2 (`digits = 1`) regex
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, as llama.cpp's
/// custom scanners run it.
pub(crate) fn split_llama3<'t>(
    s: &'t str,
    digits: usize,
    emit: &mut impl FnMut(&'t str) -> Result<()>,
) -> Result<()> {
    let p = Piece { s };
    let n = s.len();
    let (mut start, mut pos) = (0usize, 0usize);
    while pos < n {
        let Some((c, clen)) = p.at(pos) else { break };
        let f = flags(c);
        if let Some(len) = contraction(&p, pos, true) {
            pos += len;
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        if !(c == '\r' || c == '\n' || f.is_number())
            && (f.is_letter() || p.flags(pos + clen).is_letter())
        {
            pos = p.skip_while(pos + clen, Flags::is_letter);
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        if f.is_number() {
            let mut count = 0;
            while let Some((c2, l2)) = p.at(pos) {
                if !flags(c2).is_number() {
                    break;
                }
                pos += l2;
                count += 1;
                if count >= digits {
                    cut(s, &mut start, pos, emit)?;
                    count = 0;
                }
            }
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        let f2 = if c == ' ' { p.flags(pos + 1) } else { f };
        if !is_word_class(f2) && f.in_range() {
            pos = p.skip_while(pos + usize::from(c == ' '), |g| {
                !is_word_class(g) && g.in_range()
            });
            while matches!(p.byte(pos), Some(b'\r' | b'\n')) {
                pos += 1;
            }
            cut(s, &mut start, pos, emit)?;
            continue;
        }
        let (mut q, mut last, mut count, mut last_rn_end) = (pos, pos, 0usize, None);
        while let Some((c2, l2)) = p.at(q) {
            if !flags(c2).is_whitespace() {
                break;
            }
            if c2 == '\r' || c2 == '\n' {
                last_rn_end = Some(q + l2);
            }
            last = q;
            q += l2;
            count += 1;
        }
        if let Some(e) = last_rn_end {
            pos = e; // \s*[\r\n]+
        } else if count > 1 && q < n {
            pos = last; // \s+(?!\S)
        } else if count > 0 {
            pos = q; // \s+
        } else {
            pos += clen;
        }
        cut(s, &mut start, pos, emit)?;
    }
    cut(s, &mut start, n, emit)
}

/// A code point's class in llama.cpp's collapsed-text regex stages:
/// non-ASCII whitespace is `\s` first, then its category decides.
#[inline]
fn collapsed(c: char) -> Flags {
    flags(c)
}

/// `\p{N}` as the collapsed regex sees it.
#[inline]
fn is_n(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        let f = collapsed(c);
        !f.is_whitespace() && f.is_number()
    }
}

/// `[\p{P}\$\+<=>\^~\|]` as the collapsed regex sees it: ASCII punctuation
/// and symbols except the backtick, or a non-ASCII `\p{P}` code point.
#[inline]
fn is_default_punct(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_punctuation() && c != '`'
    } else {
        let f = collapsed(c);
        !f.is_whitespace() && f.is_punctuation()
    }
}

/// Splits into maximal runs of code points with `pred` and without.
fn split_runs<'t>(
    s: &'t str,
    pred: impl Fn(char) -> bool,
    emit: &mut impl FnMut(&'t str) -> Result<()>,
) -> Result<()> {
    let mut start = 0;
    let mut state: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let k = pred(c);
        if state.is_some_and(|st| st != k) {
            cut(s, &mut start, i, emit)?;
        }
        state = Some(k);
    }
    cut(s, &mut start, s.len(), emit)
}

/// `\p{N}` (one code point a match): every number alone.
fn split_each_number<'t>(s: &'t str, emit: &mut impl FnMut(&'t str) -> Result<()>) -> Result<()> {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if is_n(c) {
            cut(s, &mut start, i, emit)?;
            cut(s, &mut start, i + c.len_utf8(), emit)?;
        }
    }
    cut(s, &mut start, s.len(), emit)
}

/// `[0-9][0-9][0-9]`: leftmost non-overlapping ASCII digit triples.
fn split_digit_triples<'t>(s: &'t str, emit: &mut impl FnMut(&'t str) -> Result<()>) -> Result<()> {
    let b = s.as_bytes();
    let (mut start, mut i) = (0usize, 0usize);
    while i + 3 <= b.len() {
        if b[i].is_ascii_digit() && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_digit() {
            cut(s, &mut start, i, emit)?;
            cut(s, &mut start, i + 3, emit)?;
            i += 3;
        } else {
            i += 1;
        }
    }
    cut(s, &mut start, b.len(), emit)
}

/// Splits `s` into words with pre-tokenizer `pre`, calling `emit` on each.
pub(crate) fn split<'t>(
    pre: PreTokenizer,
    s: &'t str,
    emit: &mut impl FnMut(&'t str) -> Result<()>,
) -> Result<()> {
    match pre {
        PreTokenizer::Gpt2 => split_gpt2(s, emit),
        PreTokenizer::Smollm => split_each_number(s, &mut |piece| split_gpt2(piece, emit)),
        PreTokenizer::Llama3 | PreTokenizer::Dbrx => split_llama3(s, 3, emit),
        PreTokenizer::Qwen2 => split_llama3(s, 1, emit),
        PreTokenizer::Default => split_runs(s, is_default_punct, &mut |a| {
            split_gpt2(a, &mut |b| {
                split_runs(b, is_n, &mut |c| split_digit_triples(c, emit))
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn words(pre: PreTokenizer, s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split(pre, s, &mut |w| {
            out.push(w);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.concat(), s, "pieces must cover the text");
        out
    }

    // Expected splits derived by hand from the regexes in the module doc.
    #[test]
    fn gpt2_words() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello, world!  I'm 42\n\n x"),
            ["Hello", ",", " world", "!", " ", " I", "'m", " 42", "\n\n", " x"]
        );
        assert_eq!(words(PreTokenizer::Gpt2, "a  "), ["a", "  "]);
    }

    #[test]
    fn smollm_splits_every_digit_first() {
        assert_eq!(
            words(PreTokenizer::Smollm, "year 2024 had"),
            ["year", " ", "2", "0", "2", "4", " had"]
        );
    }

    #[test]
    fn llama3_words() {
        assert_eq!(
            words(PreTokenizer::Llama3, "I'M 12345 ok!!\n\n  \nhi  there"),
            ["I", "'M", " ", "123", "45", " ok", "!!\n\n", "  \n", "hi", " ", " there"]
        );
    }

    #[test]
    fn qwen2_splits_single_digits() {
        assert_eq!(
            words(PreTokenizer::Qwen2, "x 123"),
            ["x", " ", "1", "2", "3"]
        );
    }

    #[test]
    fn default_stages() {
        assert_eq!(
            words(PreTokenizer::Default, "a+b=12345`c"),
            ["a", "+", "b", "=", "123", "45", "`", "c"]
        );
    }
}
