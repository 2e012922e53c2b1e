//! Streaming detokenization: ids in, complete UTF-8 out.
//!
//! A multi-byte character split across tokens (byte-fallback tokens, or BPE
//! tokens cutting a character) is held back until it is whole. Bytes that
//! can never become a valid character are replaced by U+FFFD right away,
//! one replacement per maximal invalid subpart, as
//! `String::from_utf8_lossy` does, so nothing is held forever. The state is
//! a few bytes and `Copy`.

use super::{piece, Tokenizer};
use crate::error::{Error, Result, TokenizerError};

const REPLACEMENT: [u8; 3] = [0xEF, 0xBF, 0xBD];

/// Incremental detokenizer state. See the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detokenizer {
    pending: [u8; 4],
    pending_len: u8,
    need: u8,
    at_start: bool,
    special: bool,
}

/// Where decoded bytes go: a buffer, or just a count.
struct Out<'o> {
    buf: Option<&'o mut [u8]>,
    n: usize,
}

impl Out<'_> {
    #[inline]
    fn put(&mut self, b: u8) {
        if let Some(buf) = self.buf.as_deref_mut() {
            if let Some(slot) = buf.get_mut(self.n) {
                *slot = b;
            }
        }
        self.n = self.n.saturating_add(1);
    }
}

impl Detokenizer {
    /// A detokenizer at the start of a sequence: if the model adds a space
    /// prefix (SentencePiece), one leading space of the first token's piece
    /// is dropped, as llama.cpp's `detokenize` does. `special` renders
    /// control tokens as their text.
    pub fn new(special: bool) -> Detokenizer {
        Detokenizer {
            pending: [0; 4],
            pending_len: 0,
            need: 0,
            at_start: true,
            special,
        }
    }

    /// A detokenizer continuing a sequence (no leading-space stripping), for
    /// text generated after a prompt.
    pub fn continuing(special: bool) -> Detokenizer {
        Detokenizer {
            at_start: false,
            ..Detokenizer::new(special)
        }
    }

    /// The state as 8 bytes, for callers that keep it in foreign memory
    /// (the C API). [`Detokenizer::from_bytes`] reverses it.
    pub fn to_bytes(&self) -> [u8; 8] {
        let p = self.pending;
        [
            p[0],
            p[1],
            p[2],
            p[3],
            self.pending_len,
            self.need,
            u8::from(self.at_start),
            u8::from(self.special),
        ]
    }

    /// The state encoded by [`Detokenizer::to_bytes`]; `None` if the bytes
    /// are not a state it could have produced.
    pub fn from_bytes(b: [u8; 8]) -> Option<Detokenizer> {
        let flag = |v: u8| match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let (pending_len, need) = (b[4], b[5]);
        if pending_len > 4 || need > 4 {
            return None;
        }
        let state = Detokenizer {
            pending: [b[0], b[1], b[2], b[3]],
            pending_len,
            need,
            at_start: flag(b[6])?,
            special: flag(b[7])?,
        };
        if pending_len == 0 {
            // Nothing held back; the other bytes are leftovers, unused.
            return Some(state);
        }
        // Held-back bytes must be a prefix of a character the decoder would
        // have held back itself: replay them and compare (a `pending_len`
        // at or past `need` would otherwise grow without bound).
        let mut replay = Detokenizer::new(state.special);
        let mut none = Out { buf: None, n: 0 };
        for &p in state.pending() {
            replay.feed(p, &mut none);
        }
        (none.n == 0 && replay.pending_len == pending_len && replay.need == need).then_some(state)
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        self.pending
            .get(..usize::from(self.pending_len))
            .unwrap_or(&[])
    }

    /// Adds token `id` and writes the text that is now complete into `out`,
    /// returning its length. If `out` is too short, returns
    /// [`TokenizerError::BufferTooSmall`] with the length needed and leaves
    /// the state unchanged (retry with a larger buffer).
    pub fn push(&mut self, tok: &Tokenizer<'_>, id: u32, out: &mut [u8]) -> Result<usize> {
        let t = &tok.t;
        if id >= t.n_vocab {
            return Err(Error::Tokenizer(TokenizerError::BadTokenId {
                id,
                vocab: t.n_vocab,
            }));
        }
        let lstrip = self.at_start && t.add_space_prefix;
        let mut dry = *self;
        let mut count = Out { buf: None, n: 0 };
        piece::for_each_byte(t, id, self.special, lstrip, |b| dry.feed(b, &mut count));
        if count.n > out.len() {
            return Err(Error::Tokenizer(TokenizerError::BufferTooSmall {
                needed: count.n,
            }));
        }
        let mut sink = Out {
            buf: Some(out),
            n: 0,
        };
        piece::for_each_byte(t, id, self.special, lstrip, |b| self.feed(b, &mut sink));
        self.at_start = false;
        Ok(sink.n)
    }

    /// Ends the sequence: writes U+FFFD for an incomplete character still
    /// held back (0 or 3 bytes) and resets to the start of a sequence.
    pub fn finish(&mut self, out: &mut [u8]) -> Result<usize> {
        let needed = if self.pending_len > 0 { 3 } else { 0 };
        let dst = out
            .get_mut(..needed)
            .ok_or(Error::Tokenizer(TokenizerError::BufferTooSmall { needed }))?;
        dst.copy_from_slice(&REPLACEMENT[..needed]);
        *self = Detokenizer::new(self.special);
        Ok(needed)
    }

    /// Whether byte `b` may follow the pending bytes.
    fn continues(&self, b: u8) -> bool {
        if b & 0xC0 != 0x80 {
            return false;
        }
        if self.pending_len != 1 {
            return true;
        }
        match self.pending[0] {
            0xE0 => b >= 0xA0,
            0xED => b <= 0x9F,
            0xF0 => b >= 0x90,
            0xF4 => b <= 0x8F,
            _ => true,
        }
    }

    fn feed(&mut self, b: u8, out: &mut Out<'_>) {
        if self.pending_len > 0 {
            if self.continues(b) {
                if let Some(slot) = self.pending.get_mut(usize::from(self.pending_len)) {
                    *slot = b;
                }
                self.pending_len = self.pending_len.saturating_add(1);
                if self.pending_len >= self.need {
                    for &p in self.pending.iter().take(usize::from(self.need)) {
                        out.put(p);
                    }
                    self.pending_len = 0;
                }
                return;
            }
            REPLACEMENT.iter().for_each(|&r| out.put(r));
            self.pending_len = 0;
        }
        let need = match b {
            0x00..=0x7F => {
                out.put(b);
                return;
            }
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => {
                REPLACEMENT.iter().for_each(|&r| out.put(r));
                return;
            }
        };
        self.pending[0] = b;
        self.pending_len = 1;
        self.need = need;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_bytes_accepts_exactly_the_states_the_decoder_can_reach() {
        // Every reachable state round-trips.
        let fresh = Detokenizer::new(true);
        assert_eq!(Detokenizer::from_bytes(fresh.to_bytes()), Some(fresh));
        for lead in [0xC3u8, 0xE2, 0xF0] {
            let mut d = Detokenizer::new(false);
            let mut none = Out { buf: None, n: 0 };
            d.feed(lead, &mut none);
            assert_eq!(Detokenizer::from_bytes(d.to_bytes()), Some(d));
            d.feed(0x9F, &mut none);
            if d.pending_len > 0 {
                assert_eq!(Detokenizer::from_bytes(d.to_bytes()), Some(d));
            }
        }
        // Held-back counts at or beyond what the lead byte needs, a lead
        // that is no lead, a continuation that is none, a bad flag: refused.
        for bad in [
            [0xC3, 0x80, 0, 0, 2, 2, 0, 0],
            [0, 0, 0, 0, 4, 0, 0, 0],
            [0x80, 0, 0, 0, 1, 2, 0, 0],
            [0xE2, 0x41, 0, 0, 2, 3, 0, 0],
            [0xE0, 0x80, 0, 0, 2, 3, 0, 0],
            [0xC3, 0, 0, 0, 1, 3, 0, 0],
            [0, 0, 0, 0, 0, 0, 2, 0],
            [0, 0, 0, 0, 5, 0, 0, 0],
        ] {
            assert_eq!(Detokenizer::from_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn continuation_bytes_after_any_accepted_state_never_overflow() {
        // Before: pending_len 4 with need 0 was accepted, and each further
        // continuation byte incremented it until a u8 overflow.
        for bytes in [
            [0u8, 0, 0, 0, 0, 3, 1, 0],
            [0xF0, 0x90, 0x80, 0, 3, 4, 0, 0],
        ] {
            let Some(mut d) = Detokenizer::from_bytes(bytes) else {
                continue;
            };
            let mut out = Out { buf: None, n: 0 };
            for _ in 0..1000 {
                d.feed(0x80, &mut out);
            }
            assert!(d.pending_len <= 4);
        }
    }
}
