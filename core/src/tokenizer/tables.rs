//! The tokenizer's read-only tables, as laid out in the arena, and the
//! lookups on them.
//!
//! Token strings are never copied: `text_start[i]` is the offset of token
//! `i`'s bytes inside the GGUF string array (`strings`), and since GGUF
//! stores the strings back to back, each one `u64` length prefix apart, the
//! length is `text_start[i + 1] - text_start[i] - 8`.

use super::hash::{self, Geometry};
use super::{bytes_map, PreTokenizer};

/// Token attribute bits (llama.cpp's `llama_token_attr`, low byte).
pub(crate) mod attr {
    pub(crate) const UNKNOWN: u8 = 1 << 0;
    pub(crate) const UNUSED: u8 = 1 << 1;
    pub(crate) const NORMAL: u8 = 1 << 2;
    pub(crate) const CONTROL: u8 = 1 << 3;
    pub(crate) const USER_DEFINED: u8 = 1 << 4;
    pub(crate) const BYTE: u8 = 1 << 5;
}

/// "No token" in id tables.
pub(crate) const NONE: u32 = u32::MAX;

/// Which algorithm the vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Byte-level BPE (`tokenizer.ggml.model = gpt2`).
    Bpe,
    /// SentencePiece (`tokenizer.ggml.model = llama`).
    Spm,
}

/// Token scores, read in place from the GGUF array.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scores<'a> {
    None,
    F32(&'a [u8]),
    I32(&'a [u8]),
}

impl Scores<'_> {
    #[inline]
    pub(crate) fn get(&self, id: u32) -> f32 {
        let at = (id as usize).saturating_mul(4);
        let word = |raw: &[u8]| -> Option<[u8; 4]> {
            let b = raw.get(at..at.checked_add(4)?)?;
            let mut w = [0u8; 4];
            w.copy_from_slice(b);
            Some(w)
        };
        match self {
            Scores::None => 0.0,
            Scores::F32(raw) => word(raw).map_or(0.0, f32::from_le_bytes),
            Scores::I32(raw) => word(raw).map_or(0.0, |w| i32::from_le_bytes(w) as f32),
        }
    }
}

/// Special token ids read from metadata (or defaults / detection).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecialIds {
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eot: Option<u32>,
    pub(crate) eom: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) sep: Option<u32>,
    pub(crate) pad: Option<u32>,
    pub(crate) mask: Option<u32>,
    pub(crate) fim_pre: Option<u32>,
    pub(crate) fim_suf: Option<u32>,
    pub(crate) fim_mid: Option<u32>,
    pub(crate) fim_pad: Option<u32>,
    pub(crate) fim_rep: Option<u32>,
    pub(crate) fim_sep: Option<u32>,
}

/// Most end-of-generation ids kept (llama.cpp's lists give at most 28).
pub(crate) const MAX_EOG: usize = 32;
/// Most characters that may precede `▁` inside an SPM token while still
/// splitting SPM input at spaces (see [`Tables::spm_break_ok`]).
pub(crate) const MAX_SPM_JOINERS: usize = 8;

/// Everything `encode`/`decode` read; `Copy`, borrowed from arena and GGUF.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tables<'a> {
    pub(crate) kind: ModelKind,
    pub(crate) pre: PreTokenizer,
    pub(crate) ignore_merges: bool,
    pub(crate) n_vocab: u32,
    pub(crate) strings: &'a [u8],
    pub(crate) text_start: &'a [u32],
    pub(crate) attrs: &'a [u8],
    pub(crate) scores: Scores<'a>,
    pub(crate) vocab_slots: &'a [u32],
    pub(crate) vocab_geo: Geometry,
    pub(crate) special_slots: &'a [u32],
    pub(crate) special_geo: Geometry,
    /// Per first byte: bit `L-1` set if a special token of `L` bytes starts
    /// with it (bit 63: some special token of 64 bytes or more does).
    pub(crate) special_first: &'a [u64],
    /// Per first byte, a 256-bit set of second bytes of special tokens.
    pub(crate) special_second: &'a [u64],
    pub(crate) special_max_len: usize,
    /// Special tokens active when `parse_special` is off (user-defined).
    pub(crate) n_specials_plain: u32,
    /// All special tokens (control, user-defined, unknown).
    pub(crate) n_specials: u32,
    pub(crate) merge_pairs: &'a [u64],
    pub(crate) merge_result: &'a [u32],
    pub(crate) merge_slots: &'a [u32],
    pub(crate) merge_geo: Geometry,
    /// BPE: the token of each single byte; SPM: the `<0xXX>` token.
    pub(crate) byte_ids: &'a [u32],
    pub(crate) spm_joiners: [char; MAX_SPM_JOINERS],
    pub(crate) n_spm_joiners: usize,
    pub(crate) spm_chunking: bool,
    pub(crate) ids: SpecialIds,
    pub(crate) eog: [u32; MAX_EOG],
    pub(crate) n_eog: usize,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) chat_template: Option<&'a [u8]>,
}

impl<'a> Tables<'a> {
    /// Token `id`'s stored text (empty if out of range).
    #[inline]
    pub(crate) fn text(&self, id: u32) -> &'a [u8] {
        let i = id as usize;
        let (Some(&start), Some(&next)) = (
            self.text_start.get(i),
            i.checked_add(1).and_then(|j| self.text_start.get(j)),
        ) else {
            return &[];
        };
        let end = next.saturating_sub(8);
        self.strings
            .get(start as usize..(end as usize).max(start as usize))
            .unwrap_or(&[])
    }

    /// Token `id`'s attribute bits (0 if out of range).
    #[inline]
    pub(crate) fn attr(&self, id: u32) -> u8 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// The key bytes the main table hashes token `id` by: its text for SPM,
    /// the bytes its GPT-2 spelling stands for for BPE.
    #[inline]
    fn key_eq(&self, id: u32, query: &[u8]) -> bool {
        let text = self.text(id);
        match self.kind {
            ModelKind::Spm => text == query,
            ModelKind::Bpe => {
                let mut i = 0;
                let ok = bytes_map::for_each_byte(text, |b| {
                    let same = query.get(i) == Some(&b);
                    i += 1;
                    same
                });
                ok && i == query.len()
            }
        }
    }

    /// The token whose key bytes are `query` (raw bytes for BPE, text for SPM).
    #[inline]
    pub(crate) fn find(&self, query: &[u8]) -> Option<u32> {
        if query.is_empty() {
            return None;
        }
        let h = hash::hash_bytes(query);
        self.vocab_geo
            .find(self.vocab_slots, h, |id| self.key_eq(id, query))
    }

    /// The special token whose text is exactly `text`.
    #[inline]
    pub(crate) fn find_special(&self, text: &[u8]) -> Option<u32> {
        self.find_special_hashed(text, hash::hash_bytes(text))
    }

    /// [`Tables::find_special`] with `hash == hash::hash_bytes(text)`
    /// computed by the caller (incrementally, for several prefixes).
    #[inline]
    pub(crate) fn find_special_hashed(&self, text: &[u8], hash: u64) -> Option<u32> {
        self.special_geo
            .find(self.special_slots, hash, |id| self.text(id) == text)
    }

    /// BPE: rank of merging tokens `left` and `right`, and the merged token.
    #[inline]
    pub(crate) fn merge(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        if left == NONE || right == NONE {
            return None;
        }
        let key = (u64::from(left) << 32) | u64::from(right);
        let rank = self.merge_geo.find(self.merge_slots, hash::mix(key), |r| {
            self.merge_pairs.get(r as usize) == Some(&key)
        })?;
        let result = self.merge_result.get(rank as usize).copied()?;
        Some((rank, result))
    }

    /// Whether `id` is an end-of-generation token.
    pub(crate) fn is_eog(&self, id: u32) -> bool {
        self.eog.iter().take(self.n_eog).any(|&e| e == id)
    }

    /// Whether SPM input may be split before a `▁` preceded by `c`: no
    /// token contains `c▁`, so no merge can cross there.
    #[inline]
    pub(crate) fn spm_break_ok(&self, c: char) -> bool {
        self.spm_chunking
            && c != '▁'
            && !self
                .spm_joiners
                .iter()
                .take(self.n_spm_joiners)
                .any(|&j| j == c)
    }
}
