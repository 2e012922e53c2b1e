//! Token ids back to bytes, as llama.cpp's `token_to_piece` renders them.
//!
//! * Control and unknown tokens render as their text only when `special`
//!   is asked for; otherwise as nothing.
//! * User-defined tokens render as their text.
//! * Normal tokens: SentencePiece turns `▁` into a space; byte-level BPE
//!   maps each code point back to its byte (a code point outside the
//!   mapping renders as `[UNK_BYTE_0x…<token>]`, as llama.cpp does).
//! * Byte tokens `<0xXX>` render as the byte.
//! * Unused and undefined tokens render as nothing.

use super::bytes_map;
use super::tables::{attr, ModelKind, Tables};

/// Hex value of one ASCII hex digit (`strtol` semantics: invalid ends the number).
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte of a `<0xXX>` token (`strtol(text.substr(3, 2), 16)`).
fn byte_token_value(text: &[u8]) -> u8 {
    let mut v = 0u8;
    for &b in text.iter().skip(3).take(2) {
        match hex(b) {
            Some(d) => v = v.wrapping_mul(16).wrapping_add(d),
            None => break,
        }
    }
    v
}

/// Calls `f` on each byte of token `id`'s piece. `lstrip` drops one leading
/// space (llama.cpp's `lstrip = 1`). The id must be in range.
pub(crate) fn for_each_byte(
    t: &Tables<'_>,
    id: u32,
    special: bool,
    lstrip: bool,
    mut f: impl FnMut(u8),
) {
    let a = t.attr(id);
    if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
        return;
    }
    let mut skip = lstrip;
    let mut emit = |b: u8| {
        if skip {
            skip = false;
            if b == b' ' {
                return;
            }
        }
        f(b);
    };
    let text = t.text(id);
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        text.iter().for_each(|&b| emit(b));
    } else if a & attr::NORMAL != 0 {
        match t.kind {
            ModelKind::Spm => {
                let mut rest = text;
                while let Some(&b) = rest.first() {
                    if rest.starts_with("▁".as_bytes()) {
                        emit(b' ');
                        rest = rest.get(3..).unwrap_or(&[]);
                    } else {
                        emit(b);
                        rest = rest.get(1..).unwrap_or(&[]);
                    }
                }
            }
            ModelKind::Bpe => {
                let mut rest = text;
                while !rest.is_empty() {
                    match bytes_map::decode_one(rest) {
                        Some((b, n)) => {
                            emit(b);
                            rest = rest.get(n..).unwrap_or(&[]);
                        }
                        None => {
                            // One UTF-8 sequence (or one invalid byte) that
                            // is not a mapped code point.
                            let n = utf8_len(rest);
                            emit_unk(rest.get(..n).unwrap_or(rest), text, &mut emit);
                            rest = rest.get(n..).unwrap_or(&[]);
                        }
                    }
                }
            }
        }
    } else if a & attr::BYTE != 0 {
        emit(byte_token_value(text));
    }
}

/// Length of the UTF-8 sequence at the start of `s` (1 if invalid).
fn utf8_len(s: &[u8]) -> usize {
    let want = match s.first() {
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return 1,
    };
    match s.get(..want).map(core::str::from_utf8) {
        Some(Ok(_)) => want,
        _ => 1,
    }
}

fn emit_unk(seq: &[u8], text: &[u8], emit: &mut impl FnMut(u8)) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b"[UNK_BYTE_0x".iter().for_each(|&b| emit(b));
    for &b in seq {
        emit(HEX[usize::from(b >> 4)]);
        emit(HEX[usize::from(b & 15)]);
    }
    text.iter().for_each(|&b| emit(b));
    emit(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_token_values_follow_strtol() {
        assert_eq!(byte_token_value(b"<0x0A>"), 10);
        assert_eq!(byte_token_value(b"<0xfF>"), 255);
        assert_eq!(byte_token_value(b"<0xZ1>"), 0);
        assert_eq!(byte_token_value(b"<0x"), 0);
    }
}
