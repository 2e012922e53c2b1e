//! Tokenizers: from an engine, or standalone over any GGUF whose tokenizer
//! arenalm supports (even when the architecture is not runnable); text to
//! ids, ids to text (streaming), and chat formatting.

use std::ffi::{c_char, c_void};

use arenalm_core::error::TokenizerError;
use arenalm_core::gguf::Gguf;
use arenalm_core::mem::Arena;
use arenalm_core::tokenizer::{
    ChatFamily, ChatMessage, ChatTemplate, Detokenizer, Role, Tokenizer, TokenizerOptions,
};
use arenalm_core::Error;

use super::engine::{alm_engine, ENGINES};
use super::handles::{HandleError, Handled, Id, Kind, Table, ALM_MAX_TOKENIZERS};
use super::{
    alm_status, caller_slice, caller_slice_mut, guard, out_ptr, sized_result, tri, ErrBuf,
};

/// A tokenizer (opaque handle): an engine's, or a standalone one.
///
/// * From `alm_engine_get_tokenizer`: a view of the engine's tokenizer that
///   takes no slot and needs no free (`alm_tokenizer_free` accepts it and
///   does nothing). It is valid exactly while its engine is: after
///   `alm_engine_free` every call refuses it with `ALM_ERR_BAD_HANDLE`.
/// * From `alm_tokenizer_create`: its tables and the tokenizer struct live
///   in your arena; the handle takes a slot of the handle table until
///   `alm_tokenizer_free`.
///
/// Like every handle it is a number, never an address. A tokenizer takes
/// one call at a time (an engine's also shares the engine's turn): a
/// concurrent call gets `ALM_ERR_BUSY`.
pub struct alm_tokenizer {
    _private: [u8; 0],
}

/// What a standalone tokenizer slot holds: the tokenizer, in the caller's arena.
pub(crate) struct TokHandle(&'static mut Tokenizer<'static>);

// SAFETY: a tokenizer handle is only touched under its slot's exclusive
// lock; the tokenizer borrows caller memory that any thread may use.
unsafe impl Send for TokHandle {}
// SAFETY: as above: no shared access ever happens (slots lock exclusively).
unsafe impl Sync for TokHandle {}

impl Handled for TokHandle {
    const KIND: Kind = Kind::Tokenizer;
}

/// The standalone tokenizer table.
static TOKENIZERS: Table<TokHandle, { ALM_MAX_TOKENIZERS as usize }> = Table::new();

/// Bytes of static memory of the tokenizer table.
#[cfg(test)]
pub(crate) const fn table_bytes() -> usize {
    super::handles::table_bytes::<TokHandle, { ALM_MAX_TOKENIZERS as usize }>()
}

/// Runs `f` on the tokenizer `t` names, exclusively.
fn with_tokenizer(
    err: &ErrBuf,
    t: *const alm_tokenizer,
    f: impl FnOnce(&mut Tokenizer<'static>) -> alm_status,
) -> alm_status {
    let result = Id::from_ptr(t).and_then(|id| match id.kind {
        Kind::Tokenizer => TOKENIZERS.with_mut(id, |h| f(h.0)),
        Kind::EngineTokenizer => ENGINES.with_mut(id, |h| match h.engine.tokenizer_mut() {
            Some(tok) => f(tok),
            None => err.fail_with(
                alm_status::ALM_ERR_TOKENIZER,
                format_args!("the model file has no tokenizer"),
            ),
        }),
        other => Err(HandleError::Foreign(other)),
    });
    result.unwrap_or_else(|e| e.report(err, "tokenizer", Kind::Tokenizer))
}

/// A handle to `engine`'s tokenizer, valid while the engine lives (see
/// `alm_tokenizer`). `ALM_ERR_TOKENIZER` if the model file has none.
///
/// # Safety
///
/// `out` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_get_tokenizer(
    engine: *mut alm_engine,
    out: *mut *mut alm_tokenizer,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, out, "out") });
        *out = std::ptr::null_mut();
        let id = tri!(Id::expect(engine, Kind::Engine).map_err(|e| e.report(
            &err,
            "engine",
            Kind::Engine
        )));
        let has = ENGINES.with_mut(id, |h| h.engine.tokenizer().is_some());
        match has {
            Ok(true) => {
                *out = Id {
                    kind: Kind::EngineTokenizer,
                    ..id
                }
                .to_ptr();
                alm_status::ALM_OK
            }
            Ok(false) => err.fail_with(
                alm_status::ALM_ERR_TOKENIZER,
                format_args!("the model file has no tokenizer"),
            ),
            Err(e) => e.report(&err, "engine", Kind::Engine),
        }
    })
}

/// Arena bytes of a standalone tokenizer for `g`: its tables plus the
/// tokenizer struct, as core's one description of them counts.
fn standalone_bytes(g: &Gguf<'_>) -> arenalm_core::Result<usize> {
    Ok(Tokenizer::standalone_plan(g, &TokenizerOptions::default())?.total())
}

/// Arena bytes `alm_tokenizer_create` needs for the GGUF in `bytes` (from a
/// 64-byte-aligned arena; add 63 if yours may not be), into `*out_bytes`.
///
/// # Safety
///
/// `bytes` `len` readable bytes; `out_bytes` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_tokenizer_arena_bytes(
    bytes: *const u8,
    len: usize,
    out_bytes: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, out_bytes, "out_bytes") });
        if bytes.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`bytes` is NULL"),
            );
        }
        // SAFETY: `len` readable bytes per the contract.
        let bytes = tri!(unsafe { caller_slice(&err, bytes, len, "bytes") });
        match Gguf::parse(bytes)
            .map_err(Error::from)
            .and_then(|g| standalone_bytes(&g))
        {
            Ok(n) => {
                *out = n;
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// A standalone tokenizer over the GGUF in `bytes` (which, like `arena`,
/// must outlive it), its tables and the tokenizer itself carved from
/// `arena` (`arena_len` bytes; see `alm_tokenizer_arena_bytes`). Works for
/// any supported tokenizer, whether or not arenalm can run the model.
/// `ALM_ERR_BUDGET` if the arena is too small (needed and available in the
/// message), `ALM_ERR_FULL` when `ALM_MAX_TOKENIZERS` are alive,
/// `ALM_ERR_INVALID_ARGUMENT` if the arena overlaps `bytes`. `*out` is NULL
/// on failure.
///
/// # Safety
///
/// `bytes` `len` readable bytes and `arena` `arena_len` writable bytes, both
/// valid until `alm_tokenizer_free`; `out` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_tokenizer_create(
    bytes: *const u8,
    len: usize,
    arena: *mut c_void,
    arena_len: usize,
    out: *mut *mut alm_tokenizer,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, out, "out") });
        *out = std::ptr::null_mut();
        if bytes.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`bytes` is NULL"),
            );
        }
        if arena.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`arena` is NULL"),
            );
        }
        // SAFETY: both buffers are valid until `alm_tokenizer_free` per the contract.
        let bytes: &'static [u8] = tri!(unsafe { caller_slice(&err, bytes, len, "bytes") });
        // SAFETY: as above.
        let arena: &'static mut [u8] =
            tri!(unsafe { caller_slice_mut(&err, arena.cast::<u8>(), arena_len, "arena") });
        let (a, b) = (arena.as_ptr_range(), bytes.as_ptr_range());
        if a.start < b.end && b.start < a.end {
            return err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!("`arena` overlaps `bytes`"),
            );
        }
        let Some(slot) = TOKENIZERS.reserve() else {
            return err.fail_with(
                alm_status::ALM_ERR_FULL,
                format_args!(
                    "all {ALM_MAX_TOKENIZERS} tokenizer handles (ALM_MAX_TOKENIZERS) are in use; free one"
                ),
            );
        };
        let g = match Gguf::parse(bytes) {
            Ok(g) => g,
            Err(e) => return err.fail(&e.into()),
        };
        let buffer_len = arena.len();
        let mut arena = Arena::new(arena);
        let needed = match standalone_bytes(&g) {
            Ok(n) => n,
            Err(e) => return err.fail(&e),
        };
        if needed > arena.capacity() {
            return err.fail(&Error::Budget {
                what: "tokenizer",
                needed: needed + arena.skipped(),
                available: buffer_len,
            });
        }
        let tok = match Tokenizer::new_in(&g, &mut arena, &TokenizerOptions::default()) {
            Ok(t) => t,
            Err(e) => return err.fail(&e),
        };
        *out = slot.fill(TokHandle(tok)).to_ptr();
        alm_status::ALM_OK
    })
}

/// Frees a tokenizer handle. NULL is accepted (`ALM_OK`); an engine's
/// tokenizer is accepted while its engine lives and stays with its engine
/// (nothing to free). `ALM_ERR_BAD_HANDLE` for a handle already freed (a
/// double free), one whose engine was freed, or one that is not a
/// tokenizer; `ALM_ERR_BUSY` while another thread is using it.
///
/// # Safety
///
/// None beyond the conventions: the handle is only a number.
#[no_mangle]
pub unsafe extern "C" fn alm_tokenizer_free(tokenizer: *mut alm_tokenizer) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        let result = Id::from_ptr(tokenizer).and_then(|id| match id.kind {
            Kind::Tokenizer => TOKENIZERS.remove(id).map(drop),
            Kind::EngineTokenizer if ENGINES.is_live(id) => Ok(()),
            Kind::EngineTokenizer => Err(HandleError::Stale(Kind::EngineTokenizer)),
            other => Err(HandleError::Foreign(other)),
        });
        match result {
            Ok(()) | Err(HandleError::Null) => alm_status::ALM_OK,
            Err(e) => e.report(&err, "tokenizer", Kind::Tokenizer),
        }
    })
}

/// Flags of `alm_tokenize`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum alm_tokenize_flags {
    /// Prepend BOS if the model adds one (llama.cpp's `add_special`).
    ALM_TOKENIZE_ADD_BOS = 1,
    /// Turn control-token texts (`<|im_start|>`, `<bos>`) into their ids.
    ALM_TOKENIZE_PARSE_SPECIAL = 2,
}

const KNOWN_FLAGS: u32 = alm_tokenize_flags::ALM_TOKENIZE_ADD_BOS as u32
    | alm_tokenize_flags::ALM_TOKENIZE_PARSE_SPECIAL as u32;

/// Encodes `text_len` bytes of UTF-8 `text` into `ids` (`cap` entries);
/// `*n_ids` receives the count. If `cap` is too small the result is
/// `ALM_ERR_BUFFER_TOO_SMALL` and `*n_ids` is the exact count needed.
/// `flags` is a bitwise OR of `alm_tokenize_flags`; any other bit is
/// `ALM_ERR_INVALID_ARGUMENT`, as is text that is not UTF-8.
///
/// # Safety
///
/// `text` `text_len` readable bytes; `ids` `cap` writable entries (may be
/// NULL when `cap` is 0); `n_ids` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_tokenize(
    tokenizer: *mut alm_tokenizer,
    text: *const c_char,
    text_len: usize,
    flags: u32,
    ids: *mut u32,
    cap: usize,
    n_ids: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let n_ids = tri!(unsafe { out_ptr(&err, n_ids, "n_ids") });
        if flags & !KNOWN_FLAGS != 0 {
            return err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!("flags = {flags:#x} has bits that are not alm_tokenize_flags"),
            );
        }
        // SAFETY: `text_len` readable bytes (or NULL) per the contract.
        let raw = tri!(unsafe { caller_slice(&err, text.cast::<u8>(), text_len, "text") });
        let Ok(text) = std::str::from_utf8(raw) else {
            return err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!("text is not UTF-8"),
            );
        };
        // SAFETY: `cap` writable entries per the contract.
        let out = tri!(unsafe { caller_slice_mut(&err, ids, cap, "ids") });
        with_tokenizer(&err, tokenizer, |tok| {
            let add_bos = flags & alm_tokenize_flags::ALM_TOKENIZE_ADD_BOS as u32 != 0;
            let bos = if add_bos && tok.add_bos() {
                tok.bos()
            } else {
                None
            };
            let parse_special = flags & alm_tokenize_flags::ALM_TOKENIZE_PARSE_SPECIAL as u32 != 0;
            let skip = usize::from(bos.is_some());
            let rest = out.get_mut(skip..).unwrap_or(&mut []);
            match tok.encode(text, parse_special, rest) {
                Ok(n) => {
                    *n_ids = n + skip;
                    match (bos, out.first_mut()) {
                        (Some(b), Some(slot)) => *slot = b,
                        (Some(_), None) => {
                            return err.fail_with(
                                alm_status::ALM_ERR_BUFFER_TOO_SMALL,
                                format_args!("{} ids needed", n + skip),
                            )
                        }
                        (None, _) => {}
                    }
                    alm_status::ALM_OK
                }
                Err(Error::Tokenizer(TokenizerError::BufferTooSmall { needed })) => {
                    *n_ids = needed + skip;
                    err.fail_with(
                        alm_status::ALM_ERR_BUFFER_TOO_SMALL,
                        format_args!("{} ids needed", needed + skip),
                    )
                }
                Err(e) => err.fail(&e),
            }
        })
    })
}

/// Writes the text of token `id` into `out` (`cap` bytes, not
/// NUL-terminated); `*n_bytes` receives its length, or the length needed
/// with `ALM_ERR_BUFFER_TOO_SMALL`. With `special` non-zero, control tokens
/// render as their text. `ALM_ERR_TOKENIZER` for an id outside the
/// vocabulary.
///
/// # Safety
///
/// `out` `cap` writable bytes (NULL if 0); `n_bytes` writable; `err` NULL
/// or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_token_to_piece(
    tokenizer: *mut alm_tokenizer,
    id: u32,
    special: i32,
    out: *mut c_char,
    cap: usize,
    n_bytes: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let n_bytes = tri!(unsafe { out_ptr(&err, n_bytes, "n_bytes") });
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = tri!(unsafe { caller_slice_mut(&err, out.cast::<u8>(), cap, "out") });
        with_tokenizer(&err, tokenizer, |tok| {
            sized_result(&err, tok.token_to_piece(id, special != 0, buf), n_bytes)
        })
    })
}

/// Whether `id` ends generation (EOS, end-of-turn ...), into `*is_eog`
/// (0/1). `ALM_ERR_TOKENIZER` for an id outside the vocabulary.
///
/// # Safety
///
/// `is_eog` writable.
#[no_mangle]
pub unsafe extern "C" fn alm_token_is_eog(
    tokenizer: *mut alm_tokenizer,
    id: u32,
    is_eog: *mut i32,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, is_eog, "is_eog") });
        with_tokenizer(&err, tokenizer, |t| {
            if id >= t.vocab_size() {
                return err.fail(&Error::Tokenizer(TokenizerError::BadTokenId {
                    id,
                    vocab: t.vocab_size(),
                }));
            }
            *out = i32::from(t.is_eog(id));
            alm_status::ALM_OK
        })
    })
}

/// Streaming detokenizer state, kept by the caller (plain bytes; initialize
/// with `alm_detok_init`, copy freely). Bytes not written by the library
/// are refused with `ALM_ERR_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct alm_detok {
    /// Opaque state.
    pub opaque: [u8; 16],
}

const DETOK_TAG: u8 = 0xD7;

fn detok_get(d: &alm_detok) -> Option<Detokenizer> {
    if d.opaque[0] != DETOK_TAG {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.opaque[1..9]);
    Detokenizer::from_bytes(b)
}

fn detok_put(d: &mut alm_detok, v: Detokenizer) {
    d.opaque[0] = DETOK_TAG;
    d.opaque[1..9].copy_from_slice(&v.to_bytes());
}

/// Starts a detokenizer. `special`: render control tokens as text.
/// `continuing`: the ids follow text already shown (no leading-space strip).
///
/// # Safety
///
/// `state` writable.
#[no_mangle]
pub unsafe extern "C" fn alm_detok_init(
    state: *mut alm_detok,
    special: i32,
    continuing: i32,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        // SAFETY: writable per the contract.
        let state = tri!(unsafe { out_ptr(&err, state, "state") });
        let d = if continuing != 0 {
            Detokenizer::continuing(special != 0)
        } else {
            Detokenizer::new(special != 0)
        };
        *state = alm_detok { opaque: [0; 16] };
        detok_put(state, d);
        alm_status::ALM_OK
    })
}

/// Feeds token `id`: writes the complete UTF-8 it finishes into `out`
/// (`cap` bytes) and its length into `*n_bytes`. A character split across
/// tokens is held back until whole. If `cap` is too small:
/// `ALM_ERR_BUFFER_TOO_SMALL`, `*n_bytes` = bytes needed, state unchanged.
/// `ALM_ERR_TOKENIZER` for an id outside the vocabulary, and
/// `ALM_ERR_INVALID_ARGUMENT` for a state `alm_detok_init` did not write
/// (state unchanged in both cases).
///
/// # Safety
///
/// `state` writable; `out` `cap` writable bytes (NULL if 0); `n_bytes`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn alm_detok_push(
    tokenizer: *mut alm_tokenizer,
    state: *mut alm_detok,
    id: u32,
    out: *mut c_char,
    cap: usize,
    n_bytes: *mut usize,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        // SAFETY: writable per the contract.
        let n_bytes = tri!(unsafe { out_ptr(&err, n_bytes, "n_bytes") });
        // SAFETY: writable per the contract.
        let state = tri!(unsafe { out_ptr(&err, state, "state") });
        let Some(mut d) = detok_get(state) else {
            return alm_status::ALM_ERR_INVALID_ARGUMENT;
        };
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = tri!(unsafe { caller_slice_mut(&err, out.cast::<u8>(), cap, "out") });
        with_tokenizer(&err, tokenizer, |tok| {
            let status = sized_result(&err, d.push(tok, id, buf), n_bytes);
            if status == alm_status::ALM_OK {
                detok_put(state, d);
            }
            status
        })
    })
}

/// Flushes what the detokenizer holds (an incomplete character becomes
/// U+FFFD) into `out`, like `alm_detok_push`.
///
/// # Safety
///
/// As for `alm_detok_push`, without a tokenizer.
#[no_mangle]
pub unsafe extern "C" fn alm_detok_finish(
    state: *mut alm_detok,
    out: *mut c_char,
    cap: usize,
    n_bytes: *mut usize,
) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        // SAFETY: writable per the contract.
        let n_bytes = tri!(unsafe { out_ptr(&err, n_bytes, "n_bytes") });
        // SAFETY: writable per the contract.
        let state = tri!(unsafe { out_ptr(&err, state, "state") });
        let Some(mut d) = detok_get(state) else {
            return alm_status::ALM_ERR_INVALID_ARGUMENT;
        };
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = tri!(unsafe { caller_slice_mut(&err, out.cast::<u8>(), cap, "out") });
        let status = sized_result(&err, d.finish(buf), n_bytes);
        if status == alm_status::ALM_OK {
            detok_put(state, d);
        }
        status
    })
}

/// Message roles for `alm_chat_message.role`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum alm_role {
    /// Instructions.
    ALM_ROLE_SYSTEM = 0,
    /// The person.
    ALM_ROLE_USER = 1,
    /// The model.
    ALM_ROLE_ASSISTANT = 2,
}

/// One chat message.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct alm_chat_message {
    /// One of `alm_role`.
    pub role: u32,
    /// UTF-8 text (not necessarily NUL-terminated).
    pub content: *const c_char,
    /// Bytes of `content`.
    pub content_len: usize,
}

/// The role of a C message, if it is an `alm_role` value.
fn role_of(value: u32) -> Option<Role> {
    match value {
        0 => Some(Role::System),
        1 => Some(Role::User),
        2 => Some(Role::Assistant),
        _ => None,
    }
}

/// The content of a C message as text, once [`check_messages`] passed.
///
/// # Safety
///
/// `m.content` must point to `m.content_len` readable bytes (or be
/// anything when the length is 0).
unsafe fn content_of<'m>(m: &alm_chat_message) -> &'m str {
    if m.content_len == 0 || m.content.is_null() {
        return "";
    }
    // SAFETY: non-null with `content_len` readable bytes per the contract.
    let bytes = unsafe { std::slice::from_raw_parts(m.content.cast::<u8>(), m.content_len) };
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Checks every message: a known role, readable content, UTF-8.
///
/// # Safety
///
/// Each message's `content` must point to `content_len` readable bytes.
unsafe fn check_messages(err: &ErrBuf, msgs: &[alm_chat_message]) -> Result<(), alm_status> {
    for (i, m) in msgs.iter().enumerate() {
        if role_of(m.role).is_none() {
            return Err(err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!(
                    "messages[{i}].role = {} is not an alm_role value (0 to 2)",
                    m.role
                ),
            ));
        }
        // SAFETY: `content_len` readable bytes per the contract.
        let bytes = unsafe { caller_slice(err, m.content.cast::<u8>(), m.content_len, "content") }?;
        if std::str::from_utf8(bytes).is_err() {
            return Err(err.fail_with(
                alm_status::ALM_ERR_INVALID_ARGUMENT,
                format_args!("messages[{i}].content is not UTF-8"),
            ));
        }
    }
    Ok(())
}

/// Formats `n_messages` messages with the model's chat template (recognized
/// among ChatML, Llama 2/3, Gemma, Zephyr, Phi-3, Mistral) or with the
/// family named by `family` (NUL-terminated, e.g. "chatml"; NULL = the
/// model's). Appends the assistant's opener if `add_generation_prompt`.
/// Writes UTF-8 (not NUL-terminated) into `out` (`cap` bytes) and its length
/// into `*n_bytes`, or the length needed with `ALM_ERR_BUFFER_TOO_SMALL`.
/// The text is meant to be tokenized with `ALM_TOKENIZE_PARSE_SPECIAL` (and
/// `ALM_TOKENIZE_ADD_BOS` at the start of a conversation). A role that is
/// not an `alm_role`, content that is not UTF-8 or an unknown family is
/// `ALM_ERR_INVALID_ARGUMENT`. Nothing is allocated.
///
/// # Safety
///
/// `messages` `n_messages` valid entries whose `content` has `content_len`
/// readable bytes; `family` NULL or NUL-terminated; `out` `cap` writable
/// bytes; `n_bytes` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_chat_format(
    tokenizer: *mut alm_tokenizer,
    messages: *const alm_chat_message,
    n_messages: usize,
    add_generation_prompt: i32,
    family: *const c_char,
    out: *mut c_char,
    cap: usize,
    n_bytes: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: writable per the contract.
        let n_bytes = tri!(unsafe { out_ptr(&err, n_bytes, "n_bytes") });
        // SAFETY: `n_messages` valid entries per the contract.
        let raw = tri!(unsafe { caller_slice(&err, messages, n_messages, "messages") });
        // SAFETY: each message's content is readable per the contract.
        tri!(unsafe { check_messages(&err, raw) });
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = tri!(unsafe { caller_slice_mut(&err, out.cast::<u8>(), cap, "out") });
        let named = if family.is_null() {
            None
        } else {
            // SAFETY: NUL-terminated per the contract.
            let name = unsafe { std::ffi::CStr::from_ptr(family) }.to_bytes();
            match std::str::from_utf8(name)
                .ok()
                .and_then(ChatFamily::from_name)
            {
                Some(f) => Some(f),
                None => {
                    return err.fail_with(
                        alm_status::ALM_ERR_INVALID_ARGUMENT,
                        format_args!(
                            "unknown chat template family {:?}",
                            arenalm_core::error::Name::from_bytes(name)
                        ),
                    )
                }
            }
        };
        let msgs = raw.iter().map(|m| ChatMessage {
            role: role_of(m.role).unwrap_or(Role::User),
            // SAFETY: checked readable and UTF-8 above.
            content: unsafe { content_of(m) },
        });
        with_tokenizer(&err, tokenizer, |tok| {
            let template = match named {
                Some(f) => ChatTemplate::from_family(f),
                None => {
                    let Some(src) = tok.chat_template() else {
                        return err.fail_with(
                            alm_status::ALM_ERR_TOKENIZER,
                            format_args!("the model has no chat template; name a family"),
                        );
                    };
                    match ChatTemplate::detect(src) {
                        Ok(t) => t,
                        Err(e) => return err.fail(&e),
                    }
                }
            };
            sized_result(
                &err,
                template.format_iter(msgs, add_generation_prompt != 0, buf),
                n_bytes,
            )
        })
    })
}
