//! Tokenizers read from GGUF metadata: byte-level BPE and SentencePiece,
//! reproducing llama.cpp's token ids exactly.
//!
//! A [`Tokenizer`] is built from a parsed GGUF and an [`Arena`]: token
//! strings stay in the GGUF bytes (the tables hold offsets), everything else
//! — attributes, open-addressing hash tables, merges, encode scratch — is
//! carved from the arena once; [`Tokenizer::arena_bytes`] says exactly how
//! much (the layout is in `load.rs`). Encoding uses only that scratch: a
//! pre-token longer than [`TokenizerOptions::max_piece_bytes`] is refused
//! with [`TokenizerError::PieceTooLong`], never truncated.
//!
//! Encoding, as llama.cpp's `llama_tokenize(add_special = false)`:
//! 1. split the text around special tokens (`special.rs`),
//! 2. BPE: pre-tokenize each text fragment into words (`pretok.rs`) and merge
//!    each word's bytes by rank (`bpe.rs`); SentencePiece: merge each
//!    fragment's characters by score (`spm.rs`).
//!
//! BOS/EOS are never added by [`Tokenizer::encode`]: callers prepend
//! [`Tokenizer::bos`] when [`Tokenizer::add_bos`] says so (and append EOS
//! when [`Tokenizer::add_eos`] does).
//!
//! Known differences from llama.cpp (none affects the supported, well-formed
//! vocabularies; all are tested or argued in the module they concern):
//! * per-token LSTRIP/RSTRIP attributes (set by model name for phi-3 and
//!   jina) are not applied;
//! * two *different* special tokens of equal length that overlap in the
//!   input are ranked by id (llama.cpp's `std::sort` leaves it unspecified),
//!   and the EOT/FIM tokens detected by name take the first match in
//!   llama.cpp's list order (llama.cpp: hash-map order);
//! * special tokens whose text is not UTF-8 never match;
//! * empty token strings are skipped (llama.cpp renames them `[EMPTY_n]`);
//! * special-token ids in metadata outside the vocabulary are an error
//!   (llama.cpp warns and keeps its default);
//! * BPE merges whose parts are not tokens are ignored, and a merge whose
//!   result is not a token ends merging for that symbol;
//! * SentencePiece scores that are NaN are ordered by `f32::total_cmp`;
//! * [`Tokenizer::decode`] does not apply `clean_spaces`, so it is lossless.

mod bpe;
mod bytes_map;
pub mod chat;
mod detok;
mod hash;
mod heap;
mod load;
mod piece;
mod pretok;
pub(crate) mod special;
mod spm;
mod tables;
mod unicode;
mod unicode_table;

#[cfg(test)]
mod hostile_tests;

pub use chat::{format_chat, ChatFamily, ChatMessage, ChatTemplate, Role};
pub use detok::Detokenizer;
pub use tables::ModelKind;

use crate::error::{Error, Result, TokenizerError};
use crate::gguf::Gguf;
use crate::mem::carve::check_carved;
use crate::mem::{Arena, ArenaItems, Carved, Carver, Counter, ItemGroup, Logged, Yield};
pub(crate) use load::{TableCounts, TableSlices};
use special::Frag;
use tables::{attr, Tables};

/// Symbol arrays in the encode scratch (`u32` each, `max_piece_bytes` long).
pub(crate) const SCRATCH_ARRAYS: usize = 8;

/// Default [`TokenizerOptions::max_piece_bytes`]: 16 KiB, which costs
/// 16 Ki x 8 x 4 = 512 KiB of arena (plus 16 KiB of text for SentencePiece).
/// Natural text has no pre-token near that long.
pub const DEFAULT_MAX_PIECE_BYTES: usize = 16 * 1024;

/// How byte-level BPE text is split into words before merging, named after
/// llama.cpp's `tokenizer.ggml.pre` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's default: punctuation runs, GPT-2, number runs, digit triples.
    Default,
    /// GPT-2 (`gpt-2`, `gpt2`, `phi-2`, `mpt`, `olmo`, …).
    Gpt2,
    /// Every digit alone, then GPT-2 (`smollm`, `starcoder`, `refact`, …).
    Smollm,
    /// Llama 3 (`llama-bpe`, `llama3`, …): digit triples, and a word that is
    /// a whole token skips merging.
    Llama3,
    /// The Llama 3 split with ordinary merging (`dbrx`, `smaug-bpe`).
    Dbrx,
    /// Qwen2 (`qwen2`, `deepseek-r1-qwen`, `stablelm2`, …): digits alone.
    Qwen2,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp selects for `tokenizer.ggml.pre = name`
    /// (an empty name is `Default`, as in llama.cpp); `None` if unsupported.
    pub fn from_name(name: &str) -> Option<PreTokenizer> {
        load::pre_from_name(name)
    }
}

/// Options for [`Tokenizer::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenizerOptions {
    /// Use this pre-tokenizer instead of the one `tokenizer.ggml.pre` names
    /// (BPE only; needed when the name is unknown).
    pub pre_tokenizer: Option<PreTokenizer>,
    /// Longest pre-token (BPE word, or SentencePiece chunk of escaped text)
    /// encoding can handle, in bytes. Costs `32 x` this in arena bytes
    /// (`33 x` for SentencePiece).
    pub max_piece_bytes: usize,
}

impl Default for TokenizerOptions {
    fn default() -> Self {
        TokenizerOptions {
            pre_tokenizer: None,
            max_piece_bytes: DEFAULT_MAX_PIECE_BYTES,
        }
    }
}

/// A token's type, from `tokenizer.ggml.token_type` (after llama.cpp's
/// by-name fixes: control-looking tokens such as `<|im_end|>` are control).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// Type 0 or unknown to GGUF.
    Undefined,
    /// 1: ordinary text.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: control (BOS, EOS, chat markers).
    Control,
    /// 4: user-defined (always split out of text).
    UserDefined,
    /// 5: unused.
    Unused,
    /// 6: a byte-fallback token `<0xXX>`.
    Byte,
}

/// Output of encoding: writes while there is room, always counts.
pub(crate) struct Sink<'o> {
    out: &'o mut [u32],
    n: usize,
}

impl Sink<'_> {
    #[inline]
    pub(crate) fn push(&mut self, id: u32) {
        if let Some(slot) = self.out.get_mut(self.n) {
            *slot = id;
        }
        self.n = self.n.saturating_add(1);
    }
}

/// What a standalone tokenizer's walk yields: its tables and its own place.
struct StandaloneParts<'a, Y: Yield<'a>> {
    tables: TableSlices<'a, Y>,
    state: Y::Slot<Tokenizer<'a>>,
}

/// A tokenizer whose tables live in an arena and whose strings live in the
/// GGUF bytes. See the module doc.
pub struct Tokenizer<'a> {
    t: Tables<'a>,
    scratch: &'a mut [u32],
    scratch_text: &'a mut [u8],
    max_piece: usize,
    /// Steps the last `encode` counted beyond one per text byte (special
    /// tokens and merges; see `special::Work`), for tests of its bounds.
    last_work: u64,
    /// Longest token text, found on the first SentencePiece encode (0:
    /// not yet): merges never form a longer symbol, so longer pairs are
    /// not looked up.
    max_token_len: usize,
}

impl core::fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.t.kind)
            .field("pre_tokenizer", &self.pre_tokenizer())
            .field("vocab_size", &self.t.n_vocab)
            .field("bos", &self.t.ids.bos)
            .field("eos", &self.t.ids.eos)
            .field("max_piece_bytes", &self.max_piece)
            .finish_non_exhaustive()
    }
}

fn bad_id(id: u32, vocab: u32) -> Error {
    Error::Tokenizer(TokenizerError::BadTokenId { id, vocab })
}

impl<'a> Tokenizer<'a> {
    /// Exactly the arena bytes [`Tokenizer::new`] carves for this GGUF and
    /// these options (what the memory planner reserves): the counted
    /// tables walk.
    pub fn arena_bytes(gguf: &Gguf<'_>, opts: &TokenizerOptions) -> Result<usize> {
        let mut counter = Counter::new();
        load::Plan::new(gguf, opts)?.counts()?.carve(&mut counter)?;
        Ok(counter.used())
    }

    /// Builds the tokenizer from `gguf`'s `tokenizer.*` metadata, carving its
    /// tables from `arena`. Works for any GGUF with a supported tokenizer,
    /// whatever its architecture.
    pub fn new(
        gguf: &Gguf<'a>,
        arena: &mut Arena<'a>,
        opts: &TokenizerOptions,
    ) -> Result<Tokenizer<'a>> {
        let plan = load::Plan::new(gguf, opts)?;
        let slices = plan.counts()?.carve(arena)?;
        Tokenizer::fill(plan, gguf, opts, slices)
    }

    /// The counts that size the tables of `gguf` (what an engine's walk
    /// carves for its tokenizer).
    pub(crate) fn table_counts(gguf: &Gguf<'_>, opts: &TokenizerOptions) -> Result<TableCounts> {
        load::Plan::new(gguf, opts)?.counts()
    }

    /// The tokenizer over tables carved by an enclosing walk (the engine's).
    pub(crate) fn from_slices(
        gguf: &Gguf<'a>,
        opts: &TokenizerOptions,
        slices: TableSlices<'a, Carved>,
    ) -> Result<Tokenizer<'a>> {
        Tokenizer::fill(load::Plan::new(gguf, opts)?, gguf, opts, slices)
    }

    fn fill(
        plan: load::Plan<'a>,
        gguf: &Gguf<'a>,
        opts: &TokenizerOptions,
        slices: TableSlices<'a, Carved>,
    ) -> Result<Tokenizer<'a>> {
        let (t, scratch, scratch_text) = plan.fill(gguf, slices)?;
        Ok(Tokenizer {
            t,
            scratch,
            scratch_text,
            max_piece: opts.max_piece_bytes,
            last_work: 0,
            max_token_len: 0,
        })
    }

    /// Work counted by the last [`Tokenizer::encode`] (tests bound it).
    #[cfg(test)]
    pub(crate) fn last_work(&self) -> u64 {
        self.last_work
    }

    /// A standalone tokenizer's arena items: its tables, then the
    /// tokenizer itself. The one description both
    /// [`Tokenizer::standalone_plan`] counts and [`Tokenizer::new_in`] carves.
    fn standalone_walk<'c, C: Carver<'c>>(
        counts: &TableCounts,
        c: &mut C,
    ) -> Result<StandaloneParts<'c, C::Out>> {
        Ok(StandaloneParts {
            tables: counts.carve(c)?,
            state: c.slot::<Tokenizer<'c>>(ItemGroup::State, "tokenizer state")?,
        })
    }

    /// The arena a standalone tokenizer ([`Tokenizer::new_in`]) takes,
    /// item by item; `.total()` is the bytes (from a 64-byte-aligned start).
    pub fn standalone_plan(gguf: &Gguf<'_>, opts: &TokenizerOptions) -> Result<ArenaItems> {
        let mut counter = Counter::new();
        Tokenizer::standalone_walk(&Tokenizer::table_counts(gguf, opts)?, &mut counter)?;
        Ok(*counter.items())
    }

    /// A standalone tokenizer: its tables and the tokenizer itself carved
    /// from `arena`, exactly the items of [`Tokenizer::standalone_plan`]
    /// (checked item by item). An arena too small is refused before
    /// anything is carved, with needed and available bytes.
    pub fn new_in(
        gguf: &Gguf<'a>,
        arena: &mut Arena<'a>,
        opts: &TokenizerOptions,
    ) -> Result<&'a mut Tokenizer<'a>> {
        let plan = load::Plan::new(gguf, opts)?;
        let counts = plan.counts()?;
        let mut counter = Counter::new();
        Tokenizer::standalone_walk(&counts, &mut counter)?;
        if counter.used() > arena.remaining() {
            return Err(Error::Budget {
                what: "tokenizer",
                needed: counter.used(),
                available: arena.remaining(),
            });
        }
        let mut logged = Logged::new(arena);
        let parts = Tokenizer::standalone_walk(&counts, &mut logged)?;
        check_carved(
            counter.items(),
            logged.items(),
            "internal: tokenizer carving differs from its plan",
        )?;
        let tok = Tokenizer::fill(plan, gguf, opts, parts.tables)?;
        Ok(parts.state.write(tok))
    }

    /// BPE or SentencePiece.
    pub fn model_kind(&self) -> ModelKind {
        self.t.kind
    }

    /// The pre-tokenizer in use (`None` for SentencePiece).
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match self.t.kind {
            ModelKind::Bpe => Some(self.t.pre),
            ModelKind::Spm => None,
        }
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> u32 {
        self.t.n_vocab
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.t.ids.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.t.ids.eos
    }

    /// End-of-turn token (metadata, else detected by name: `<|eot_id|>`,
    /// `<|im_end|>`, `<end_of_turn>`, …, first in llama.cpp's list order).
    pub fn eot(&self) -> Option<u32> {
        self.t.ids.eot
    }

    /// End-of-message token (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.t.ids.eom
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.t.ids.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.t.ids.pad
    }

    /// Whether the model wants BOS prepended (callers do it).
    pub fn add_bos(&self) -> bool {
        self.t.add_bos
    }

    /// Whether the model wants EOS appended (callers do it).
    pub fn add_eos(&self) -> bool {
        self.t.add_eos
    }

    /// Whether SentencePiece text gets a leading space (and decoding drops it).
    pub fn add_space_prefix(&self) -> bool {
        self.t.add_space_prefix
    }

    /// Whether `id` ends generation: EOS, EOT, EOM, and every token
    /// llama.cpp recognises by name (`<|im_end|>`, `<end_of_turn>`,
    /// `<|endoftext|>`, FIM pad/repo/sep, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.t.is_eog(id)
    }

    /// The end-of-generation ids.
    pub fn eog_ids(&self) -> &[u32] {
        self.t.eog.get(..self.t.n_eog).unwrap_or(&[])
    }

    fn check(&self, id: u32) -> Result<()> {
        if id < self.t.n_vocab {
            Ok(())
        } else {
            Err(bad_id(id, self.t.n_vocab))
        }
    }

    /// Token `id`'s type.
    pub fn token_type(&self, id: u32) -> Result<TokenType> {
        self.check(id)?;
        let a = self.t.attr(id);
        Ok(if a & attr::CONTROL != 0 {
            TokenType::Control
        } else if a & attr::USER_DEFINED != 0 {
            TokenType::UserDefined
        } else if a & attr::UNKNOWN != 0 {
            TokenType::Unknown
        } else if a & attr::BYTE != 0 {
            TokenType::Byte
        } else if a & attr::UNUSED != 0 {
            TokenType::Unused
        } else if a & attr::NORMAL != 0 {
            TokenType::Normal
        } else {
            TokenType::Undefined
        })
    }

    /// Token `id`'s stored text (GPT-2 spelled for BPE, `▁` for SPM spaces).
    pub fn token_text(&self, id: u32) -> Result<&'a [u8]> {
        self.check(id)?;
        Ok(self.t.text(id))
    }

    /// Token `id`'s score (0 if the file has none).
    pub fn score(&self, id: u32) -> Result<f32> {
        self.check(id)?;
        Ok(self.t.scores.get(id))
    }

    /// The token whose stored text is exactly `text` (GPT-2 spelling for
    /// BPE). A linear scan, O(vocabulary): for tools and tests, not loops.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        (0..self.t.n_vocab).find(|&id| self.t.text(id) == text.as_bytes())
    }

    /// The GGUF's `tokenizer.chat_template`, if present and UTF-8.
    pub fn chat_template(&self) -> Option<&'a str> {
        self.t
            .chat_template
            .and_then(|b| core::str::from_utf8(b).ok())
    }

    /// Writes token `id`'s bytes into `out` and returns their count, as
    /// llama.cpp's `token_to_piece(id, lstrip = 0, special)`: control tokens
    /// render as their text only if `special`.
    pub fn token_to_piece(&self, id: u32, special: bool, out: &mut [u8]) -> Result<usize> {
        self.check(id)?;
        let mut n = 0usize;
        piece::for_each_byte(&self.t, id, special, false, |b| {
            if let Some(slot) = out.get_mut(n) {
                *slot = b;
            }
            n += 1;
        });
        if n > out.len() {
            return Err(Error::Tokenizer(TokenizerError::BufferTooSmall {
                needed: n,
            }));
        }
        Ok(n)
    }

    /// Decodes `ids` into `out` (control tokens render as nothing), as
    /// llama.cpp's `detokenize(remove_special = false, unparse_special =
    /// false)` without `clean_spaces`. Returns the byte count, or
    /// [`TokenizerError::BufferTooSmall`] with the exact size needed.
    pub fn decode(&self, ids: &[u32], out: &mut [u8]) -> Result<usize> {
        self.decode_with(ids, false, out)
    }

    /// [`Tokenizer::decode`], rendering control tokens as text if `special`.
    pub fn decode_with(&self, ids: &[u32], special: bool, out: &mut [u8]) -> Result<usize> {
        let mut n = 0usize;
        for (k, &id) in ids.iter().enumerate() {
            self.check(id)?;
            let lstrip = k == 0 && self.t.add_space_prefix;
            piece::for_each_byte(&self.t, id, special, lstrip, |b| {
                if let Some(slot) = out.get_mut(n) {
                    *slot = b;
                }
                n = n.saturating_add(1);
            });
        }
        if n > out.len() {
            return Err(Error::Tokenizer(TokenizerError::BufferTooSmall {
                needed: n,
            }));
        }
        Ok(n)
    }

    /// Encodes `text` into `out` and returns the number of ids (no BOS/EOS
    /// added; see [`Tokenizer::add_bos`]). With `parse_special`, control
    /// token texts in `text` (`<|im_start|>`, `<bos>`) become their ids;
    /// user-defined tokens always do.
    ///
    /// If `out` is too short, returns [`TokenizerError::BufferTooSmall`]
    /// with the exact number of ids the text encodes to. Memory is bounded
    /// by the scratch carved at init.
    pub fn encode(&mut self, text: &str, parse_special: bool, out: &mut [u32]) -> Result<usize> {
        if self.t.kind == ModelKind::Spm && self.max_token_len == 0 {
            let t = &self.t;
            self.max_token_len = (0..t.n_vocab).map(|id| t.text(id).len()).max().unwrap_or(0);
        }
        let t = &self.t;
        let mut sym = bpe::Symbols::new(self.scratch, self.max_piece);
        sym.max_token_len = self.max_token_len;
        let buf: &mut [u8] = self.scratch_text;
        let mut sink = Sink { out, n: 0 };
        let mut prev_special = true;
        self.last_work = 0;
        let work = special::partition(t, text, parse_special, |frag| match frag {
            Frag::Token(id) => {
                sink.push(id);
                prev_special = true;
                Ok(())
            }
            Frag::Text(s) => {
                let r = match t.kind {
                    ModelKind::Bpe => pretok::split(t.pre, s, &mut |w| {
                        bpe::encode_word(t, &mut sym, w.as_bytes(), &mut sink)
                    }),
                    ModelKind::Spm => spm::encode_fragment(
                        t,
                        &mut sym,
                        buf,
                        s,
                        t.add_space_prefix && prev_special,
                        &mut sink,
                    ),
                };
                prev_special = false;
                r
            }
        })?;
        self.last_work = work.saturating_add(sym.work);
        if sink.n > sink.out.len() {
            return Err(Error::Tokenizer(TokenizerError::BufferTooSmall {
                needed: sink.n,
            }));
        }
        Ok(sink.n)
    }
}
