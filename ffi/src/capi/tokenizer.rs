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

use super::engine::{alm_engine, engine_tokenizer};
use super::{alm_status, caller_bytes, caller_bytes_mut, guard, out_ref, sized_result, ErrBuf};

/// A tokenizer (opaque): an engine's, or a standalone one in its own arena.
pub struct alm_tokenizer {
    _private: [u8; 0],
}

enum TokHandle {
    /// Borrowed from an engine (valid while the engine lives).
    Engine(*mut alm_engine),
    /// Built by `alm_tokenizer_create` in the caller's arena.
    Owned(Box<Tokenizer<'static>>),
}

/// # Safety
///
/// `t` must be NULL or a live `alm_tokenizer` handle.
unsafe fn resolve<'h>(
    t: *mut alm_tokenizer,
    err: &ErrBuf,
) -> Result<&'h mut Tokenizer<'static>, alm_status> {
    // SAFETY: per the contract, a `Box<TokHandle>` pointer or NULL.
    let Some(h) = (unsafe { t.cast::<TokHandle>().as_mut() }) else {
        return Err(err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`tokenizer` is NULL"));
    };
    match h {
        TokHandle::Owned(tok) => Ok(tok),
        // SAFETY: the engine outlives the tokenizer handle per the contract.
        TokHandle::Engine(e) => match unsafe { engine_tokenizer(*e) } {
            Some(tok) => Ok(tok),
            None => Err(err.fail_with(
                alm_status::ALM_ERR_TOKENIZER,
                "the model file has no tokenizer",
            )),
        },
    }
}

fn boxed(h: TokHandle) -> *mut alm_tokenizer {
    Box::into_raw(Box::new(h)).cast::<alm_tokenizer>()
}

/// A handle to `engine`'s tokenizer, valid while the engine lives; free it
/// with `alm_tokenizer_free`. Use it from the engine's thread only.
///
/// # Safety
///
/// `engine` a live handle; `out` writable; `err` NULL or `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_engine_get_tokenizer(
    engine: *mut alm_engine,
    out: *mut *mut alm_tokenizer,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        let out = out_ref!(err, out, "out");
        *out = std::ptr::null_mut();
        if engine.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`engine` is NULL");
        }
        // SAFETY: a live engine per the contract.
        if unsafe { engine_tokenizer(engine) }.is_none() {
            return err.fail_with(
                alm_status::ALM_ERR_TOKENIZER,
                "the model file has no tokenizer",
            );
        }
        *out = boxed(TokHandle::Engine(engine));
        alm_status::ALM_OK
    })
}

/// Arena bytes `alm_tokenizer_create` needs for the GGUF in `bytes`, into
/// `*out_bytes`.
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
        let out = out_ref!(err, out_bytes, "out_bytes");
        if bytes.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`bytes` is NULL");
        }
        // SAFETY: `len` readable bytes per the contract.
        let bytes = unsafe { std::slice::from_raw_parts(bytes, len) };
        let result = Gguf::parse(bytes)
            .map_err(Error::from)
            .and_then(|g| Tokenizer::arena_bytes(&g, &TokenizerOptions::default()));
        match result {
            Ok(n) => {
                *out = n;
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// A standalone tokenizer over the GGUF in `bytes` (which, like `arena`,
/// must outlive it), its tables carved from `arena` (`arena_len` bytes; see
/// `alm_tokenizer_arena_bytes`). Works for any supported tokenizer, whether
/// or not arenalm can run the model.
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
        let out = out_ref!(err, out, "out");
        *out = std::ptr::null_mut();
        if bytes.is_null() || arena.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                "`bytes` or `arena` is NULL",
            );
        }
        // SAFETY: both buffers are valid until `alm_tokenizer_free` per the contract.
        let (bytes, arena) = unsafe {
            (
                std::slice::from_raw_parts(bytes, len),
                std::slice::from_raw_parts_mut(arena.cast::<u8>(), arena_len),
            )
        };
        let g = match Gguf::parse(bytes) {
            Ok(g) => g,
            Err(e) => return err.fail(&e.into()),
        };
        let mut arena = Arena::new(arena);
        match Tokenizer::new(&g, &mut arena, &TokenizerOptions::default()) {
            Ok(t) => {
                *out = boxed(TokHandle::Owned(Box::new(t)));
                alm_status::ALM_OK
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// Frees a tokenizer handle (NULL accepted). An engine's tokenizer stays
/// with its engine.
///
/// # Safety
///
/// `tokenizer` NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn alm_tokenizer_free(tokenizer: *mut alm_tokenizer) {
    let _ = guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        if !tokenizer.is_null() {
            // SAFETY: created by `boxed`.
            drop(unsafe { Box::from_raw(tokenizer.cast::<TokHandle>()) });
        }
        alm_status::ALM_OK
    });
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

/// Encodes `text_len` bytes of UTF-8 `text` into `ids` (`cap` entries);
/// `*n_ids` receives the count. If `cap` is too small the result is
/// `ALM_ERR_BUFFER_TOO_SMALL` and `*n_ids` is the exact count needed.
/// `flags` is a bitwise OR of `alm_tokenize_flags`.
///
/// # Safety
///
/// `tokenizer` a live handle; `text` `text_len` readable bytes; `ids` `cap`
/// writable entries (may be NULL when `cap` is 0); `n_ids` writable; `err`
/// NULL or `err_len` bytes.
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
        let n_ids = out_ref!(err, n_ids, "n_ids");
        // SAFETY: a live handle per the contract.
        let tok = match unsafe { resolve(tokenizer, &err) } {
            Ok(t) => t,
            Err(s) => return s,
        };
        if ids.is_null() && cap > 0 {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`ids` is NULL");
        }
        // SAFETY: `text_len` readable bytes (or NULL) per the contract.
        let raw = match unsafe { caller_bytes(&err, text.cast::<u8>(), text_len, "text") } {
            Ok(b) => b,
            Err(s) => return s,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            return err.fail_with(alm_status::ALM_ERR_INVALID_ARGUMENT, "text is not UTF-8");
        };
        let out: &mut [u32] = if cap == 0 {
            &mut []
        } else {
            // SAFETY: `cap` writable entries per the contract.
            unsafe { std::slice::from_raw_parts_mut(ids, cap) }
        };
        let bos = if flags & alm_tokenize_flags::ALM_TOKENIZE_ADD_BOS as u32 != 0 && tok.add_bos() {
            tok.bos()
        } else {
            None
        };
        let parse_special = flags & alm_tokenize_flags::ALM_TOKENIZE_PARSE_SPECIAL as u32 != 0;
        let skip = usize::from(bos.is_some());
        let rest = out.get_mut(skip..).unwrap_or(&mut []);
        match tok.encode(text, parse_special, rest) {
            Ok(n) => {
                if let (Some(b), Some(slot)) = (bos, out.first_mut()) {
                    *slot = b;
                } else if bos.is_some() {
                    *n_ids = n + skip;
                    return err.fail_with(alm_status::ALM_ERR_BUFFER_TOO_SMALL, "no room for BOS");
                }
                *n_ids = n + skip;
                alm_status::ALM_OK
            }
            Err(Error::Tokenizer(TokenizerError::BufferTooSmall { needed })) => {
                *n_ids = needed + skip;
                err.fail_with(
                    alm_status::ALM_ERR_BUFFER_TOO_SMALL,
                    &format!("{} ids needed", needed + skip),
                )
            }
            Err(e) => err.fail(&e),
        }
    })
}

/// Writes the text of token `id` into `out` (`cap` bytes, not
/// NUL-terminated); `*n_bytes` receives its length, or the length needed
/// with `ALM_ERR_BUFFER_TOO_SMALL`. With `special` non-zero, control tokens
/// render as their text.
///
/// # Safety
///
/// `tokenizer` a live handle; `out` `cap` writable bytes (NULL if 0);
/// `n_bytes` writable; `err` NULL or `err_len` bytes.
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
        let n_bytes = out_ref!(err, n_bytes, "n_bytes");
        // SAFETY: a live handle per the contract.
        let tok = match unsafe { resolve(tokenizer, &err) } {
            Ok(t) => t,
            Err(s) => return s,
        };
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = match unsafe { caller_bytes_mut(&err, out, cap, "out") } {
            Ok(b) => b,
            Err(s) => return s,
        };
        sized_result(&err, tok.token_to_piece(id, special != 0, buf), n_bytes)
    })
}

/// Whether `id` ends generation (EOS, end-of-turn ...), into `*is_eog` (0/1).
///
/// # Safety
///
/// `tokenizer` a live handle; `is_eog` writable.
#[no_mangle]
pub unsafe extern "C" fn alm_token_is_eog(
    tokenizer: *mut alm_tokenizer,
    id: u32,
    is_eog: *mut i32,
) -> alm_status {
    let err = ErrBuf::new(std::ptr::null_mut(), 0);
    guard(err, || {
        let out = out_ref!(err, is_eog, "is_eog");
        // SAFETY: a live handle per the contract.
        match unsafe { resolve(tokenizer, &err) } {
            Ok(t) => {
                *out = i32::from(t.is_eog(id));
                alm_status::ALM_OK
            }
            Err(s) => s,
        }
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
    let err = ErrBuf::new(std::ptr::null_mut(), 0);
    guard(err, || {
        let state = out_ref!(err, state, "state");
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
///
/// # Safety
///
/// `tokenizer` a live handle; `state` initialized by `alm_detok_init`;
/// `out` `cap` writable bytes (NULL if 0); `n_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn alm_detok_push(
    tokenizer: *mut alm_tokenizer,
    state: *mut alm_detok,
    id: u32,
    out: *mut c_char,
    cap: usize,
    n_bytes: *mut usize,
) -> alm_status {
    let err = ErrBuf::new(std::ptr::null_mut(), 0);
    guard(err, || {
        let n_bytes = out_ref!(err, n_bytes, "n_bytes");
        let state = out_ref!(err, state, "state");
        let Some(mut d) = detok_get(state) else {
            return alm_status::ALM_ERR_INVALID_ARGUMENT;
        };
        // SAFETY: a live handle per the contract.
        let tok = match unsafe { resolve(tokenizer, &err) } {
            Ok(t) => t,
            Err(s) => return s,
        };
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = match unsafe { caller_bytes_mut(&err, out, cap, "out") } {
            Ok(b) => b,
            Err(s) => return s,
        };
        let status = sized_result(&err, d.push(tok, id, buf), n_bytes);
        if status == alm_status::ALM_OK {
            detok_put(state, d);
        }
        status
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
    let err = ErrBuf::new(std::ptr::null_mut(), 0);
    guard(err, || {
        let n_bytes = out_ref!(err, n_bytes, "n_bytes");
        let state = out_ref!(err, state, "state");
        let Some(mut d) = detok_get(state) else {
            return alm_status::ALM_ERR_INVALID_ARGUMENT;
        };
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = match unsafe { caller_bytes_mut(&err, out, cap, "out") } {
            Ok(b) => b,
            Err(s) => return s,
        };
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

/// Formats `n_messages` messages with the model's chat template (recognized
/// among ChatML, Llama 2/3, Gemma, Zephyr, Phi-3, Mistral) or with the
/// family named by `family` (NUL-terminated, e.g. "chatml"; NULL = the
/// model's). Appends the assistant's opener if `add_generation_prompt`.
/// Writes UTF-8 (not NUL-terminated) into `out` (`cap` bytes) and its length
/// into `*n_bytes`, or the length needed with `ALM_ERR_BUFFER_TOO_SMALL`.
/// The text is meant to be tokenized with `ALM_TOKENIZE_PARSE_SPECIAL` (and
/// `ALM_TOKENIZE_ADD_BOS` at the start of a conversation).
///
/// # Safety
///
/// `tokenizer` a live handle; `messages` `n_messages` valid entries whose
/// `content` has `content_len` readable bytes; `family` NULL or
/// NUL-terminated; `out` `cap` writable bytes; `n_bytes` writable; `err` NULL
/// or `err_len` bytes.
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
        let n_bytes = out_ref!(err, n_bytes, "n_bytes");
        // SAFETY: a live handle per the contract.
        let tok = match unsafe { resolve(tokenizer, &err) } {
            Ok(t) => t,
            Err(s) => return s,
        };
        if (messages.is_null() && n_messages > 0) || (out.is_null() && cap > 0) {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                "`messages` or `out` is NULL",
            );
        }
        let template = if family.is_null() {
            let Some(src) = tok.chat_template() else {
                return err.fail_with(
                    alm_status::ALM_ERR_TOKENIZER,
                    "the model has no chat template; name a family",
                );
            };
            match ChatTemplate::detect(src) {
                Ok(t) => t,
                Err(e) => return err.fail(&e),
            }
        } else {
            // SAFETY: NUL-terminated per the contract.
            let name = unsafe { std::ffi::CStr::from_ptr(family) }.to_string_lossy();
            match ChatFamily::from_name(&name) {
                Some(f) => ChatTemplate::from_family(f),
                None => {
                    return err.fail_with(
                        alm_status::ALM_ERR_INVALID_ARGUMENT,
                        &format!("unknown chat template family {name:?}"),
                    )
                }
            }
        };
        let raw: &[alm_chat_message] = if n_messages == 0 {
            &[]
        } else {
            // SAFETY: `n_messages` valid entries per the contract.
            unsafe { std::slice::from_raw_parts(messages, n_messages) }
        };
        let mut msgs = Vec::with_capacity(raw.len());
        for m in raw {
            let role = match m.role {
                0 => Role::System,
                1 => Role::User,
                2 => Role::Assistant,
                _ => {
                    return err.fail_with(
                        alm_status::ALM_ERR_INVALID_ARGUMENT,
                        "role is not an alm_role value",
                    )
                }
            };
            // SAFETY: `content_len` readable bytes per the contract.
            let bytes = match unsafe {
                caller_bytes(&err, m.content.cast::<u8>(), m.content_len, "content")
            } {
                Ok(b) => b,
                Err(s) => return s,
            };
            let Ok(content) = std::str::from_utf8(bytes) else {
                return err.fail_with(
                    alm_status::ALM_ERR_INVALID_ARGUMENT,
                    "message content is not UTF-8",
                );
            };
            msgs.push(ChatMessage { role, content });
        }
        // SAFETY: `cap` writable bytes (or NULL) per the contract.
        let buf = match unsafe { caller_bytes_mut(&err, out, cap, "out") } {
            Ok(b) => b,
            Err(s) => return s,
        };
        sized_result(
            &err,
            template.format(&msgs, add_generation_prompt != 0, buf),
            n_bytes,
        )
    })
}
