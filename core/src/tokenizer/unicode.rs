//! Code point classes for the byte-level BPE pre-tokenizers.
//!
//! llama.cpp's pre-tokenizer regexes ask whether a code point is a letter
//! (`\p{L}`), a number (`\p{N}`), punctuation (`\p{P}`) or whitespace (`\s`).
//! `core` answers only approximately (`char::is_alphabetic` also accepts
//! combining marks and letter-like symbols such as `Ⓐ`), so the classes come
//! from a table generated from llama.cpp's own Unicode data
//! ([`super::unicode_table`], about 7 KiB): the text is split exactly where
//! llama.cpp splits it, including for code points whose category changed
//! between Unicode versions.

use super::unicode_table::{CLASS_RUNS, WHITESPACE};

/// The classes of one code point (bit set).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Flags(u8);

impl Flags {
    const LETTER: u8 = 1;
    const NUMBER: u8 = 2;
    const PUNCT: u8 = 4;
    const WHITESPACE: u8 = 8;
    /// Set for every code point, clear for "past the end of the piece"
    /// (llama.cpp's `as_uint() != 0`).
    const IN_RANGE: u8 = 16;

    /// No code point (past the end of the piece).
    pub(crate) const END: Flags = Flags(0);

    /// `\p{L}`.
    pub(crate) fn is_letter(self) -> bool {
        self.0 & Flags::LETTER != 0
    }

    /// `\p{N}`.
    pub(crate) fn is_number(self) -> bool {
        self.0 & Flags::NUMBER != 0
    }

    /// `\p{P}`.
    pub(crate) fn is_punctuation(self) -> bool {
        self.0 & Flags::PUNCT != 0
    }

    /// `\s`.
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Flags::WHITESPACE != 0
    }

    /// A code point rather than the end of the piece.
    pub(crate) fn in_range(self) -> bool {
        self.0 & Flags::IN_RANGE != 0
    }
}

const fn class_bits(class: u32) -> u8 {
    match class {
        1 => Flags::LETTER,
        2 => Flags::NUMBER,
        3 => Flags::PUNCT,
        _ => 0,
    }
}

/// Flags of the 128 ASCII code points, computed from the same table at
/// compile time.
static ASCII: [Flags; 128] = {
    let mut out = [Flags(0); 128];
    let mut cp = 0u32;
    while cp < 128 {
        // Last run starting at or before `cp` (the table starts at 0).
        let mut i = 0;
        while i + 1 < CLASS_RUNS.len() && (CLASS_RUNS[i + 1] >> 8) <= cp {
            i += 1;
        }
        let mut bits = class_bits(CLASS_RUNS[i] & 0xFF) | Flags::IN_RANGE;
        let mut w = 0;
        while w < WHITESPACE.len() {
            if WHITESPACE[w] == cp {
                bits |= Flags::WHITESPACE;
            }
            w += 1;
        }
        out[cp as usize] = Flags(bits);
        cp += 1;
    }
    out
};

/// The classes of `c`, as llama.cpp's `unicode_cpt_flags_from_cpt` gives them.
#[inline]
pub(crate) fn flags(c: char) -> Flags {
    let cp = c as u32;
    if let Some(f) = ASCII.get(cp as usize) {
        return *f;
    }
    let run = CLASS_RUNS
        .partition_point(|&r| (r >> 8) <= cp)
        .saturating_sub(1);
    let mut bits = CLASS_RUNS.get(run).map_or(0, |r| class_bits(r & 0xFF)) | Flags::IN_RANGE;
    if WHITESPACE.binary_search(&cp).is_ok() {
        bits |= Flags::WHITESPACE;
    }
    Flags(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes_match_the_regex_classes() {
        assert!(flags('a').is_letter() && flags('Z').is_letter());
        assert!(flags('7').is_number() && !flags('7').is_letter());
        for c in [' ', '\t', '\n', '\r', '\x0b', '\x0c'] {
            assert!(flags(c).is_whitespace(), "{c:?}");
        }
        // '$', '+', '<', '=', '>', '^', '`', '|', '~' are symbols, not \p{P}.
        for c in ['$', '+', '<', '=', '>', '^', '`', '|', '~'] {
            assert!(!flags(c).is_punctuation(), "{c:?}");
        }
        for c in [
            '!', '"', '#', '%', '&', '\'', '(', ')', '*', ',', '-', '.', '/', ':', ';', '?', '@',
            '[', '\\', ']', '_', '{', '}',
        ] {
            assert!(flags(c).is_punctuation(), "{c:?}");
        }
    }

    #[test]
    fn unicode_categories_differ_from_core_where_the_regex_needs_it() {
        // Combining marks are alphabetic for `core` but not \p{L}.
        assert!('\u{093E}'.is_alphabetic());
        assert!(!flags('\u{093E}').is_letter());
        assert!(!flags('\u{0301}').is_letter());
        // Circled letters: alphabetic for `core`, a symbol for \p{L}.
        assert!('Ⓐ'.is_alphabetic());
        assert!(!flags('Ⓐ').is_letter());
        // Letters and numbers outside ASCII.
        assert!(flags('é').is_letter() && flags('漢').is_letter());
        assert!(flags('٣').is_number() && flags('Ⅻ').is_number() && flags('½').is_number());
        assert!(flags('\u{3000}').is_whitespace() && flags('\u{a0}').is_whitespace());
        assert!(!flags('\u{200b}').is_whitespace());
        assert!(flags('«').is_punctuation() && !flags('€').is_punctuation());
        let emoji = flags('😀');
        assert!(emoji.in_range() && !emoji.is_letter() && !emoji.is_punctuation());
        assert!(!Flags::END.in_range());
    }
}
