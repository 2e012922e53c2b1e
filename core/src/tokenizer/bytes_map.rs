//! GPT-2's byte-to-unicode mapping: byte-level BPE vocabularies spell every
//! byte as one printable code point (`Ġ` for a space, `Ċ` for a newline).
//!
//! Printable bytes `!`..`~`, `¡`..`¬` and `®`..`ÿ` stand for themselves; the
//! 68 others map, in byte order, to U+0100, U+0101, … U+0143.

/// Whether byte `b` stands for itself.
const fn is_identity(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The code point spelling each byte.
#[cfg(test)]
pub(crate) static BYTE_TO_CHAR: [u16; 256] = {
    let mut out = [0u16; 256];
    let mut n = 0u16;
    let mut b = 0usize;
    while b < 256 {
        out[b] = if is_identity(b as u8) {
            b as u16
        } else {
            n += 1;
            255 + n
        };
        b += 1;
    }
    out
};

/// The byte spelled by code points U+0100..=U+0143, in order.
static HIGH_TO_BYTE: [u8; 68] = {
    let mut out = [0u8; 68];
    let mut n = 0usize;
    let mut b = 0usize;
    while b < 256 {
        if !is_identity(b as u8) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// The byte spelled by code point `cp`, if it is one of the 256.
#[inline]
pub(crate) fn char_to_byte(cp: u32) -> Option<u8> {
    match cp {
        0..=0xFF if is_identity(cp as u8) => Some(cp as u8),
        0x100..=0x143 => HIGH_TO_BYTE.get((cp - 0x100) as usize).copied(),
        _ => None,
    }
}

/// Decodes the next mapped code point of `s` (one or two UTF-8 bytes, since
/// every mapped code point is below U+0800): `(byte, bytes consumed)`, or
/// `None` if `s` does not start with a mapped code point.
#[inline]
pub(crate) fn decode_one(s: &[u8]) -> Option<(u8, usize)> {
    let b0 = *s.first()?;
    if b0 < 0x80 {
        return Some((char_to_byte(u32::from(b0))?, 1));
    }
    if b0 & 0xE0 != 0xC0 {
        return None;
    }
    let b1 = *s.get(1)?;
    if b1 & 0xC0 != 0x80 {
        return None;
    }
    let cp = (u32::from(b0 & 0x1F) << 6) | u32::from(b1 & 0x3F);
    if cp < 0x80 {
        return None; // overlong
    }
    Some((char_to_byte(cp)?, 2))
}

/// Calls `f` with each byte `mapped` spells; false if some part of `mapped`
/// is not a mapped code point (then `f` has seen a prefix only).
#[inline]
pub(crate) fn for_each_byte(mut mapped: &[u8], mut f: impl FnMut(u8) -> bool) -> bool {
    while !mapped.is_empty() {
        match decode_one(mapped) {
            Some((b, n)) => {
                if !f(b) {
                    return false;
                }
                mapped = mapped.get(n..).unwrap_or(&[]);
            }
            None => return false,
        }
    }
    true
}

/// UTF-8 encoding of the code point spelling `b`: `(bytes, length)`.
#[cfg(test)]
pub(crate) fn encode_byte(b: u8) -> ([u8; 2], usize) {
    let cp = u32::from(BYTE_TO_CHAR[usize::from(b)]);
    if cp < 0x80 {
        ([cp as u8, 0], 1)
    } else {
        ([0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8], 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_with_gpt2_spellings() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ' as u16);
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ' as u16);
        assert_eq!(BYTE_TO_CHAR[b'\t' as usize], 'ĉ' as u16);
        assert_eq!(BYTE_TO_CHAR[b'a' as usize], 'a' as u16);
        assert_eq!(BYTE_TO_CHAR[0xAD], 'Ń' as u16); // the 68th unprintable byte -> U+0143
        let mut seen = [false; 0x144];
        for b in 0..=255u8 {
            let cp = BYTE_TO_CHAR[b as usize];
            assert!(!seen[cp as usize]);
            seen[cp as usize] = true;
            assert_eq!(char_to_byte(u32::from(cp)), Some(b));
            let (enc, n) = encode_byte(b);
            assert_eq!(decode_one(&enc[..n]), Some((b, n)));
        }
        assert_eq!(char_to_byte(' ' as u32), None);
        assert_eq!(char_to_byte(0x144), None);
        assert!(!for_each_byte("a b".as_bytes(), |_| true));
    }
}
