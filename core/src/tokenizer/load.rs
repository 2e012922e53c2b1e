//! Building the tables from GGUF metadata. [`TableCounts::carve`] is the
//! one description of the tables' arena items: counted, it is what
//! `arena_bytes` and the planner report; carved, it is what `new` fills.
//!
//! # Arena layout (in this order, each item 64-byte aligned and rounded)
//!
//! | item | element | count |
//! |---|---|---|
//! | token text offsets | `u32` | `n_vocab + 1` |
//! | token attributes | `u8` | `n_vocab` |
//! | vocabulary hash slots | `u32` | `pow2 >= 1.5 n_vocab + 1` (min 16) |
//! | special-token hash slots | `u32` | `pow2 >= 1.5 min(n_vocab, n_typed_special + 73) + 1` (min 16) |
//! | special first-byte length masks | `u64` | 256 |
//! | special second-byte sets | `u64` | 1024 |
//! | merge pairs (BPE) | `u64` | `n_merges` |
//! | merge results (BPE) | `u32` | `n_merges` |
//! | merge hash slots (BPE) | `u32` | `pow2 >= 1.5 n_merges + 1` (min 16) |
//! | byte tokens | `u32` | 256 |
//! | encode scratch: symbol arrays | `u32` | `8 * max_piece_bytes` |
//! | encode scratch: SPM text (SPM only) | `u8` | `max_piece_bytes` |
//!
//! `n_typed_special` counts token types 2, 3 and 4; 73 is the number of
//! texts llama.cpp may promote to special by name. With default options:
//! SmolLM2 (49,152 tokens, 48,900 merges) takes 2,417,856 bytes, Gemma 3
//! (262,144 tokens) 4,025,408 bytes, of which 524,288 (+16,384 for SPM) are
//! encode scratch.

use super::hash::{self, Geometry};
use super::tables::{attr, ModelKind, Scores, SpecialIds, Tables, MAX_EOG, MAX_SPM_JOINERS, NONE};
use super::{bytes_map, PreTokenizer, TokenizerOptions, SCRATCH_ARRAYS};
use crate::error::{Error, Name, Result, TokenizerError};
use crate::gguf::{ArrayView, Gguf, Value, ValueType};
use crate::mem::{Carved, Carver, ItemGroup, Yield};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

// Texts llama.cpp recognises by name (llama-vocab.cpp, `load`). Where it
// takes "the first one found" in hash-map order, we take the first in list
// order.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
/// gpt-oss tokens llama.cpp always renders (made user-defined).
const ALWAYS_RENDER_TEXTS: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Upper bound on tokens that become special only through the text lists.
const OVERRIDE_MAX: usize = 11 + 1 + 8 + 8 + 8 + 5 + 5 + 1 + 22 + 4;

fn bad(key: &str, why: &'static str) -> Error {
    Error::Tokenizer(TokenizerError::BadMetadata {
        key: Name::new(key),
        why,
    })
}

fn missing(key: &str) -> Error {
    Error::Tokenizer(TokenizerError::MissingKey {
        key: Name::new(key),
    })
}

fn overflow(what: &'static str) -> Error {
    Error::Overflow { what }
}

/// The pre-tokenizer llama.cpp selects for `tokenizer.ggml.pre = name`,
/// and whether it skips merges for words that are whole tokens.
pub(crate) fn pre_from_name(name: &str) -> Option<PreTokenizer> {
    Some(match name {
        "" | "default" => PreTokenizer::Default,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreTokenizer::Llama3,
        "dbrx" | "smaug-bpe" => PreTokenizer::Dbrx,
        "gpt2" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" | "exaone4" | "mpt" | "olmo" | "jais" => PreTokenizer::Gpt2,
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => PreTokenizer::Smollm,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" => {
            PreTokenizer::Qwen2
        }
        _ => return None,
    })
}

/// What the metadata says, before anything is carved.
pub(crate) struct Plan<'a> {
    kind: ModelKind,
    pre: PreTokenizer,
    tokens: ArrayView<'a>,
    n_vocab: usize,
    types: Option<ArrayView<'a>>,
    scores: Scores<'a>,
    merges: Option<ArrayView<'a>>,
    n_merges: usize,
    n_typed_special: usize,
    max_piece: usize,
}

/// Everything that sizes the tables, as plain counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableCounts {
    n_vocab: usize,
    vocab_slots: usize,
    special_slots: usize,
    n_merges: usize,
    merge_slots: usize,
    scratch_words: usize,
    scratch_text: usize,
}

/// What [`TableCounts::carve`] yields, one field per arena item.
pub(crate) struct TableSlices<'a, Y: Yield<'a>> {
    text_start: Y::Slice<u32>,
    attrs: Y::Slice<u8>,
    vocab_slots: Y::Slice<u32>,
    special_slots: Y::Slice<u32>,
    special_first: Y::Slice<u64>,
    special_second: Y::Slice<u64>,
    merge_pairs: Y::Slice<u64>,
    merge_result: Y::Slice<u32>,
    merge_slots: Y::Slice<u32>,
    byte_ids: Y::Slice<u32>,
    scratch: Y::Slice<u32>,
    scratch_text: Y::Slice<u8>,
}

impl TableCounts {
    /// The tables' arena items, in order: the one list (see the module doc).
    pub(crate) fn carve<'a, C: Carver<'a>>(&self, c: &mut C) -> Result<TableSlices<'a, C::Out>> {
        const G: ItemGroup = ItemGroup::Tokenizer;
        let n = self.n_vocab;
        Ok(TableSlices {
            text_start: c.slice(G, "tokenizer: token text offsets", n.saturating_add(1))?,
            attrs: c.slice(G, "tokenizer: token attributes", n)?,
            vocab_slots: c.slice(G, "tokenizer: vocabulary hash", self.vocab_slots)?,
            special_slots: c.slice(G, "tokenizer: special-token hash", self.special_slots)?,
            special_first: c.slice(G, "tokenizer: special first-byte masks", 256)?,
            special_second: c.slice(G, "tokenizer: special second-byte sets", 1024)?,
            merge_pairs: c.slice(G, "tokenizer: merge pairs", self.n_merges)?,
            merge_result: c.slice(G, "tokenizer: merge results", self.n_merges)?,
            merge_slots: c.slice(G, "tokenizer: merge hash", self.merge_slots)?,
            byte_ids: c.slice(G, "tokenizer: byte tokens", 256)?,
            scratch: c.slice(G, "tokenizer: encode scratch", self.scratch_words)?,
            scratch_text: c.slice(G, "tokenizer: encode text", self.scratch_text)?,
        })
    }
}

fn get<'a>(gguf: &Gguf<'a>, key: &str) -> Result<Option<Value<'a>>> {
    Ok(gguf.get(key)?)
}

fn get_str<'a>(gguf: &Gguf<'a>, key: &str) -> Result<Option<&'a str>> {
    match get(gguf, key)? {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| bad(key, "not a UTF-8 string")),
    }
}

fn get_bool(gguf: &Gguf<'_>, key: &str) -> Result<Option<bool>> {
    match get(gguf, key)? {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(key, "not a boolean")),
    }
}

/// An `i32` read from element `i` of a fixed-size 4-byte integer array.
fn read_i32(raw: &[u8], i: usize) -> i32 {
    let at = i.saturating_mul(4);
    match raw.get(at..at.saturating_add(4)) {
        Some(b) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

impl<'a> Plan<'a> {
    pub(crate) fn new(gguf: &Gguf<'a>, opts: &TokenizerOptions) -> Result<Plan<'a>> {
        if opts.max_piece_bytes == 0 || opts.max_piece_bytes > (u32::MAX as usize) / 8 {
            return Err(Error::InvalidArgument {
                what: "TokenizerOptions::max_piece_bytes must be in 1..=2^29",
            });
        }
        let model = get_str(gguf, KEY_MODEL)?.ok_or_else(|| missing(KEY_MODEL))?;
        let kind = match model {
            "gpt2" => ModelKind::Bpe,
            "llama" => ModelKind::Spm,
            other => {
                return Err(Error::Tokenizer(TokenizerError::UnsupportedModel {
                    name: Name::new(other),
                }))
            }
        };
        let pre = match (kind, opts.pre_tokenizer) {
            (ModelKind::Spm, _) => PreTokenizer::Default,
            (ModelKind::Bpe, Some(forced)) => forced,
            (ModelKind::Bpe, None) => {
                let name = get_str(gguf, KEY_PRE)?.unwrap_or("");
                pre_from_name(name).ok_or(Error::Tokenizer(
                    TokenizerError::UnsupportedPreTokenizer {
                        name: Name::new(name),
                    },
                ))?
            }
        };

        let tokens = get(gguf, KEY_TOKENS)?
            .ok_or_else(|| missing(KEY_TOKENS))?
            .as_array()
            .filter(|a| a.elem_type() == ValueType::String)
            .ok_or_else(|| bad(KEY_TOKENS, "not an array of strings"))?;
        let n_vocab = tokens.len();
        if n_vocab == 0 {
            return Err(bad(KEY_TOKENS, "empty vocabulary"));
        }
        if n_vocab >= (1 << 30) || tokens.raw_bytes().len() > (u32::MAX as usize) - 16 {
            return Err(bad(
                KEY_TOKENS,
                "vocabulary larger than 2^30 tokens or 4 GiB",
            ));
        }

        let scores = match get(gguf, KEY_SCORES)? {
            None => Scores::None,
            Some(v) => {
                let a = v
                    .as_array()
                    .ok_or_else(|| bad(KEY_SCORES, "not an array"))?;
                if a.len() < n_vocab {
                    return Err(bad(KEY_SCORES, "fewer scores than tokens"));
                }
                match a.elem_type() {
                    ValueType::F32 => Scores::F32(a.raw_bytes()),
                    ValueType::I32 => Scores::I32(a.raw_bytes()),
                    _ => return Err(bad(KEY_SCORES, "not an array of f32 or i32")),
                }
            }
        };

        let types = match get(gguf, KEY_TYPES)? {
            None => None,
            Some(v) => {
                let a = v
                    .as_array()
                    .filter(|a| a.elem_type() == ValueType::I32)
                    .ok_or_else(|| bad(KEY_TYPES, "not an array of i32"))?;
                if a.len() < n_vocab {
                    return Err(bad(KEY_TYPES, "fewer token types than tokens"));
                }
                Some(a)
            }
        };
        let n_typed_special = match types {
            None => 0,
            Some(a) => (0..n_vocab)
                .filter(|&i| matches!(read_i32(a.raw_bytes(), i), 2..=4))
                .count(),
        };

        let (merges, n_merges) = match kind {
            ModelKind::Spm => (None, 0),
            ModelKind::Bpe => {
                let a = get(gguf, KEY_MERGES)?
                    .ok_or_else(|| missing(KEY_MERGES))?
                    .as_array()
                    .filter(|a| a.elem_type() == ValueType::String)
                    .ok_or_else(|| bad(KEY_MERGES, "not an array of strings"))?;
                if a.len() >= (1 << 30) {
                    return Err(bad(KEY_MERGES, "more than 2^30 merges"));
                }
                (Some(a), a.len())
            }
        };

        Ok(Plan {
            kind,
            pre,
            tokens,
            n_vocab,
            types,
            scores,
            merges,
            n_merges,
            n_typed_special,
            max_piece: opts.max_piece_bytes,
        })
    }

    fn vocab_slots(&self) -> Result<usize> {
        hash::capacity_for(self.n_vocab).ok_or(overflow("vocabulary hash"))
    }

    fn special_slots(&self) -> Result<usize> {
        hash::capacity_for(
            self.n_typed_special
                .saturating_add(OVERRIDE_MAX)
                .min(self.n_vocab),
        )
        .ok_or(overflow("special-token hash"))
    }

    fn merge_slots(&self) -> Result<usize> {
        match self.kind {
            ModelKind::Spm => Ok(0),
            ModelKind::Bpe => hash::capacity_for(self.n_merges).ok_or(overflow("merge hash")),
        }
    }

    /// The counts that size the tables (no borrow of the file).
    pub(crate) fn counts(&self) -> Result<TableCounts> {
        Ok(TableCounts {
            n_vocab: self.n_vocab,
            vocab_slots: self.vocab_slots()?,
            special_slots: self.special_slots()?,
            n_merges: self.n_merges,
            merge_slots: self.merge_slots()?,
            scratch_words: self
                .max_piece
                .checked_mul(SCRATCH_ARRAYS)
                .ok_or(overflow("tokenizer scratch"))?,
            scratch_text: match self.kind {
                ModelKind::Spm => self.max_piece,
                ModelKind::Bpe => 0,
            },
        })
    }

    /// Fills carved tables (from [`TableCounts::carve`] of this plan's
    /// counts); returns them with the encode scratch.
    pub(crate) fn fill(
        self,
        gguf: &Gguf<'a>,
        slices: TableSlices<'a, Carved>,
    ) -> Result<(Tables<'a>, &'a mut [u32], &'a mut [u8])> {
        let n = self.n_vocab;
        let TableSlices {
            text_start,
            attrs,
            vocab_slots,
            special_slots,
            special_first,
            special_second,
            merge_pairs,
            merge_result,
            merge_slots,
            byte_ids,
            scratch,
            scratch_text,
        } = slices;
        if text_start.len() != n + 1 || attrs.len() != n || merge_pairs.len() != self.n_merges {
            return Err(Error::InvalidArgument {
                what: "internal: tokenizer tables carved for another vocabulary",
            });
        }

        // Token text offsets: each string is a u64 length then the bytes.
        let strings = self.tokens.raw_bytes();
        let mut it = self.tokens.iter();
        for slot in text_start.iter_mut().take(n) {
            let at = it.position();
            if it.next().is_none() {
                return Err(bad(KEY_TOKENS, "string array shorter than its length"));
            }
            *slot = u32::try_from(at + 8).map_err(|_| overflow("token offsets"))?;
        }
        if let Some(last) = text_start.get_mut(n) {
            *last = u32::try_from(it.position() + 8).map_err(|_| overflow("token offsets"))?;
        }

        // Attributes from the token types.
        for (i, a) in attrs.iter_mut().enumerate() {
            *a = match self.types.map(|t| read_i32(t.raw_bytes(), i)) {
                None | Some(1) => attr::NORMAL,
                Some(2) => attr::UNKNOWN,
                Some(3) => attr::CONTROL,
                Some(4) => attr::USER_DEFINED,
                Some(5) => attr::UNUSED,
                Some(6) => attr::BYTE,
                Some(_) => 0,
            };
        }

        let vocab_geo = Geometry::new(vocab_slots.len(), n as u32);
        let mut t = Tables {
            kind: self.kind,
            pre: self.pre,
            ignore_merges: matches!(self.pre, PreTokenizer::Llama3),
            n_vocab: n as u32,
            strings,
            text_start,
            attrs: &[],
            scores: self.scores,
            vocab_slots: &[],
            vocab_geo,
            special_slots: &[],
            special_geo: Geometry::new(special_slots.len(), n as u32),
            special_first: &[],
            special_second: &[],
            special_max_len: 0,
            n_specials_plain: 0,
            n_specials: 0,
            merge_pairs: &[],
            merge_result: &[],
            merge_slots: &[],
            merge_geo: Geometry::new(merge_slots.len(), self.n_merges as u32),
            byte_ids: &[],
            spm_joiners: ['\0'; MAX_SPM_JOINERS],
            n_spm_joiners: 0,
            spm_chunking: self.kind == ModelKind::Spm,
            ids: SpecialIds::default(),
            eog: [NONE; MAX_EOG],
            n_eog: 0,
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            chat_template: None,
        };

        // Main hash: SPM by text, BPE by the bytes the spelling stands for.
        for id in 0..n as u32 {
            let text = t.text(id);
            if text.is_empty() {
                continue;
            }
            let mut h = hash::Hasher::new();
            let keyed = match self.kind {
                ModelKind::Spm => {
                    h.bytes(text);
                    true
                }
                ModelKind::Bpe => bytes_map::for_each_byte(text, |b| {
                    h.byte(b);
                    true
                }),
            };
            if !keyed {
                continue;
            }
            let tt = t;
            let got = vocab_geo
                .insert(vocab_slots, h.finish(), id, |other| tt.text(other) == text)
                .ok_or(overflow("vocabulary hash"))?;
            if got != id {
                return Err(Error::Tokenizer(TokenizerError::BadVocab {
                    why: "two tokens have the same text",
                }));
            }
        }
        t.vocab_slots = vocab_slots;

        // Special ids and the flags, as llama.cpp reads them.
        read_flags(gguf, &mut t)?;
        read_special_ids(gguf, &mut t)?;
        apply_text_overrides(&mut t, attrs);
        t.attrs = attrs;
        collect_eog(&mut t);

        // Special-token table and the first/second byte filters.
        build_specials(&mut t, special_slots, special_first, special_second)?;
        t.special_slots = special_slots;
        t.special_first = special_first;
        t.special_second = special_second;

        // Merges (BPE), rank = index in the list; the first of duplicate
        // pairs wins (as `std::map::emplace` does in llama.cpp).
        if let Some(merges) = self.merges {
            let geo = t.merge_geo;
            for (rank, s) in merges.strings().enumerate().take(self.n_merges) {
                let (key, res) = match resolve_merge(&t, s) {
                    Some((l, r, res)) => ((u64::from(l) << 32) | u64::from(r), res),
                    None => (u64::MAX, NONE),
                };
                if let (Some(p), Some(q)) = (merge_pairs.get_mut(rank), merge_result.get_mut(rank))
                {
                    *p = key;
                    *q = res;
                }
                if key == u64::MAX {
                    continue;
                }
                let pairs: &[u64] = merge_pairs;
                geo.insert(merge_slots, hash::mix(key), rank as u32, |o| {
                    pairs.get(o as usize) == Some(&key)
                })
                .ok_or(overflow("merge hash"))?;
            }
        }
        t.merge_pairs = merge_pairs;
        t.merge_result = merge_result;
        t.merge_slots = merge_slots;

        // Byte tokens.
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let b = b as u8;
            *slot = match self.kind {
                ModelKind::Bpe => t.find(&[b]).unwrap_or(NONE),
                ModelKind::Spm => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    let name = [
                        b'<',
                        b'0',
                        b'x',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                        b'>',
                    ];
                    t.find(&name).or_else(|| t.find(&[b])).unwrap_or(NONE)
                }
            };
        }
        t.byte_ids = byte_ids;

        if self.kind == ModelKind::Spm {
            find_spm_joiners(&mut t);
        }
        t.chat_template = get(gguf, "tokenizer.chat_template")?.and_then(|v| v.as_bytes());
        Ok((t, scratch, scratch_text))
    }
}

/// Looks up the three tokens of merge `s` ("left right", GPT-2 spelled).
fn resolve_merge(t: &Tables<'_>, s: &[u8]) -> Option<(u32, u32, u32)> {
    // llama.cpp splits at the first space after the first byte.
    let space = s.iter().skip(1).position(|&b| b == b' ')? + 1;
    let left = s.get(..space)?;
    let right = s.get(space + 1..)?;
    let l = find_spelled(t, left, &[])?;
    let r = find_spelled(t, right, &[])?;
    let res = find_spelled(t, left, right).unwrap_or(NONE);
    Some((l, r, res))
}

/// The BPE token whose spelling is `a` followed by `b`.
fn find_spelled(t: &Tables<'_>, a: &[u8], b: &[u8]) -> Option<u32> {
    // Decode into a small stack buffer; longer keys cannot be looked up
    // (no real merge part comes close).
    let mut buf = [0u8; 512];
    let mut n = 0;
    for part in [a, b] {
        let ok = bytes_map::for_each_byte(part, |byte| match buf.get_mut(n) {
            Some(slot) => {
                *slot = byte;
                n += 1;
                true
            }
            None => false,
        });
        if !ok {
            return None;
        }
    }
    t.find(buf.get(..n)?)
}

fn read_flags(gguf: &Gguf<'_>, t: &mut Tables<'_>) -> Result<()> {
    match t.kind {
        ModelKind::Spm => {
            t.add_space_prefix = true;
            t.add_bos = true;
        }
        ModelKind::Bpe => {
            t.add_space_prefix = false;
            t.add_bos = matches!(t.pre, PreTokenizer::Llama3);
        }
    }
    t.add_eos = false;
    if let Some(v) = get_bool(gguf, "tokenizer.ggml.add_space_prefix")? {
        t.add_space_prefix = v;
    }
    if let Some(v) = get_bool(gguf, "tokenizer.ggml.add_bos_token")? {
        t.add_bos = v;
    }
    if let Some(v) = get_bool(gguf, "tokenizer.ggml.add_eos_token")? {
        t.add_eos = v;
    }
    Ok(())
}

fn read_special_ids(gguf: &Gguf<'_>, t: &mut Tables<'_>) -> Result<()> {
    let n = t.n_vocab;
    let default = |id: u32| if id < n { Some(id) } else { None };
    let mut ids = SpecialIds::default();
    match t.kind {
        ModelKind::Spm => {
            ids.bos = default(1);
            ids.eos = default(2);
            ids.unk = default(0);
        }
        ModelKind::Bpe => {
            ids.bos = default(11);
            ids.eos = default(11);
        }
    }
    type Field = fn(&mut SpecialIds) -> &mut Option<u32>;
    let keys: [(&str, Field); 17] = [
        ("tokenizer.ggml.bos_token_id", |i| &mut i.bos),
        ("tokenizer.ggml.eos_token_id", |i| &mut i.eos),
        ("tokenizer.ggml.eot_token_id", |i| &mut i.eot),
        ("tokenizer.ggml.eom_token_id", |i| &mut i.eom),
        ("tokenizer.ggml.unknown_token_id", |i| &mut i.unk),
        ("tokenizer.ggml.seperator_token_id", |i| &mut i.sep),
        ("tokenizer.ggml.padding_token_id", |i| &mut i.pad),
        ("tokenizer.ggml.mask_token_id", |i| &mut i.mask),
        ("tokenizer.ggml.fim_pre_token_id", |i| &mut i.fim_pre),
        ("tokenizer.ggml.fim_suf_token_id", |i| &mut i.fim_suf),
        ("tokenizer.ggml.fim_mid_token_id", |i| &mut i.fim_mid),
        ("tokenizer.ggml.fim_pad_token_id", |i| &mut i.fim_pad),
        ("tokenizer.ggml.fim_rep_token_id", |i| &mut i.fim_rep),
        ("tokenizer.ggml.fim_sep_token_id", |i| &mut i.fim_sep),
        ("tokenizer.ggml.prefix_token_id", |i| &mut i.fim_pre),
        ("tokenizer.ggml.suffix_token_id", |i| &mut i.fim_suf),
        ("tokenizer.ggml.middle_token_id", |i| &mut i.fim_mid),
    ];
    for (key, field) in keys {
        let Some(v) = get(gguf, key)? else { continue };
        let id = v
            .as_u64()
            .ok_or_else(|| bad(key, "not a non-negative integer"))?;
        if id >= u64::from(n) {
            return Err(bad(key, "token id outside the vocabulary"));
        }
        *field(&mut ids) = Some(id as u32);
    }
    t.ids = ids;
    Ok(())
}

/// Calls `f(id, list_index)` for each token whose text is in `list`.
fn for_each_named(t: &Tables<'_>, list: &[&str], mut f: impl FnMut(u32, usize)) {
    // Every listed text is 3..=40 bytes; compare only plausible tokens.
    for id in 0..t.n_vocab {
        let text = t.text(id);
        if text.len() < 3 || text.len() > 40 {
            continue;
        }
        if let Some(k) = list.iter().position(|s| s.as_bytes() == text) {
            f(id, k);
        }
    }
}

/// The token among `list` that comes first in list order.
fn first_named(t: &Tables<'_>, list: &[&str]) -> Option<u32> {
    let mut best: Option<(usize, u32)> = None;
    for_each_named(t, list, |id, k| {
        if best.is_none_or(|(bk, _)| k < bk) {
            best = Some((k, id));
        }
    });
    best.map(|(_, id)| id)
}

/// llama.cpp's by-name detection of EOT, EOM and FIM tokens, and the
/// attribute fixes it makes (control-looking tokens become control tokens,
/// control tokens named "unused" are unused, gpt-oss markers always render).
fn apply_text_overrides(t: &mut Tables<'_>, attrs: &mut [u8]) {
    let set_control = |attrs: &mut [u8], id: u32| {
        if let Some(a) = attrs.get_mut(id as usize) {
            *a |= attr::CONTROL;
        }
    };
    type Field = fn(&mut SpecialIds) -> &mut Option<u32>;
    let lists: [(&[&str], Field); 8] = [
        (EOT_TEXTS, |i| &mut i.eot),
        (EOM_TEXTS, |i| &mut i.eom),
        (FIM_PRE_TEXTS, |i| &mut i.fim_pre),
        (FIM_SUF_TEXTS, |i| &mut i.fim_suf),
        (FIM_MID_TEXTS, |i| &mut i.fim_mid),
        (FIM_PAD_TEXTS, |i| &mut i.fim_pad),
        (FIM_REP_TEXTS, |i| &mut i.fim_rep),
        (FIM_SEP_TEXTS, |i| &mut i.fim_sep),
    ];
    for (list, field) in lists {
        if field(&mut t.ids).is_some() {
            continue;
        }
        if let Some(id) = first_named(t, list) {
            *field(&mut t.ids) = Some(id);
            set_control(attrs, id);
        }
    }
    // Control tokens whose text says "unused".
    for (id, a) in attrs.iter_mut().enumerate() {
        if *a & attr::CONTROL != 0 && t.text(id as u32).windows(6).any(|w| w == b"unused") {
            *a |= attr::UNUSED;
        }
    }
    let mut eog_named = [NONE; EOG_TEXTS.len()];
    for_each_named(t, EOG_TEXTS, |id, k| {
        if let Some(slot) = eog_named.get_mut(k) {
            *slot = id;
        }
    });
    for &id in eog_named.iter().filter(|&&id| id != NONE) {
        set_control(attrs, id);
    }
    for_each_named(t, ALWAYS_RENDER_TEXTS, |id, _| {
        if let Some(a) = attrs.get_mut(id as usize) {
            *a = attr::USER_DEFINED;
        }
    });
}

/// The end-of-generation set, in llama.cpp's order of insertion.
fn collect_eog(t: &mut Tables<'_>) {
    let mut eog = [NONE; MAX_EOG];
    let mut n = 0;
    let add = |id: Option<u32>, eog: &mut [u32; MAX_EOG], n: &mut usize| {
        if let Some(id) = id {
            if !eog.iter().take(*n).any(|&e| e == id) && *n < MAX_EOG {
                eog[*n] = id;
                *n += 1;
            }
        }
    };
    add(t.ids.fim_pad, &mut eog, &mut n);
    add(t.ids.fim_rep, &mut eog, &mut n);
    add(t.ids.fim_sep, &mut eog, &mut n);
    let mut named = [NONE; EOG_TEXTS.len()];
    for_each_named(t, EOG_TEXTS, |id, k| {
        if let Some(slot) = named.get_mut(k) {
            *slot = id;
        }
    });
    for &id in named.iter().filter(|&&id| id != NONE) {
        add(Some(id), &mut eog, &mut n);
    }
    add(t.ids.eos, &mut eog, &mut n);
    add(t.ids.eot, &mut eog, &mut n);
    add(t.ids.eom, &mut eog, &mut n);
    // gpt-oss / solar-open: "<|end|>" is not EOG next to "<|return|>"+"<|call|>"
    // or "<|calls|>"+"<|flush|>".
    let has = |s: &str, eog: &[u32; MAX_EOG], n: usize| {
        eog.iter().take(n).any(|&id| t.text(id) == s.as_bytes())
    };
    let has_call = has("<|call|>", &eog, n) || has("<|calls|>", &eog, n);
    if has_call && (has("<|return|>", &eog, n) || has("<|flush|>", &eog, n)) {
        if let Some(k) = eog.iter().take(n).position(|&id| t.text(id) == b"<|end|>") {
            let end_id = eog[k];
            eog.copy_within(k + 1..n, k);
            n -= 1;
            eog[n] = NONE;
            // llama.cpp also makes it user-defined; attrs are frozen here,
            // which only matters for gpt-oss vocabularies.
            let _ = end_id;
        }
    }
    t.eog = eog;
    t.n_eog = n;
}

fn build_specials(
    t: &mut Tables<'_>,
    slots: &mut [u32],
    first: &mut [u64],
    second: &mut [u64],
) -> Result<()> {
    let geo = t.special_geo;
    let mut n_all = 0u32;
    let mut n_plain = 0u32;
    let mut max_len = 0usize;
    for id in 0..t.n_vocab {
        let a = t.attr(id);
        if a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) == 0 {
            continue;
        }
        let text = t.text(id);
        let Some(&b0) = text.first() else { continue };
        let tt = *t;
        let got = geo
            .insert(slots, hash::hash_bytes(text), id, |o| tt.text(o) == text)
            .ok_or(Error::Tokenizer(TokenizerError::BadVocab {
                why: "special-token table overflow",
            }))?;
        if got != id {
            continue;
        }
        n_all += 1;
        if a & (attr::CONTROL | attr::UNKNOWN) == 0 {
            n_plain += 1;
        }
        max_len = max_len.max(text.len());
        let bit = text.len().min(64) - 1;
        if let Some(m) = first.get_mut(usize::from(b0)) {
            *m |= 1u64 << bit;
        }
        if let Some(&b1) = text.get(1) {
            if let Some(w) = second.get_mut(usize::from(b0) * 4 + usize::from(b1 >> 6)) {
                *w |= 1u64 << (b1 & 63);
            }
        }
    }
    t.n_specials = n_all;
    t.n_specials_plain = n_plain;
    t.special_max_len = max_len;
    Ok(())
}

/// SPM: the characters that precede `▁` inside some token. Splitting the
/// input before a space is exact unless the character before it is one of
/// these (then no token can span the split).
fn find_spm_joiners(t: &mut Tables<'_>) {
    const MARK: &[u8] = "▁".as_bytes();
    let mut joiners = ['\0'; MAX_SPM_JOINERS];
    let mut n = 0;
    for id in 0..t.n_vocab {
        let text = t.text(id);
        if text.len() <= MARK.len() {
            continue;
        }
        let Ok(s) = core::str::from_utf8(text) else {
            continue; // cannot match valid UTF-8 input across a split point
        };
        let mut prev: Option<char> = None;
        for c in s.chars() {
            if c == '▁' {
                if let Some(p) = prev.filter(|&p| p != '▁') {
                    if !joiners.iter().take(n).any(|&j| j == p) {
                        if n == MAX_SPM_JOINERS {
                            t.spm_chunking = false;
                            return;
                        }
                        joiners[n] = p;
                        n += 1;
                    }
                }
            }
            prev = Some(c);
        }
    }
    t.spm_joiners = joiners;
    t.n_spm_joiners = n;
}
