//! Shared helpers for the tokenizer integration tests: load a model's GGUF
//! once, build its tokenizer in a leaked arena.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Mutex;

use arenalm_core::gguf::Gguf;
use arenalm_core::mem::Arena;
use arenalm_core::tokenizer::{Tokenizer, TokenizerOptions};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The end-to-end helpers (tests/lib.rs), for the one place that says where
/// llama.cpp's reference data is.
#[path = "../../../tests/lib.rs"]
mod e2e;

/// `tests/reference/`, llama.cpp's outputs.
pub fn reference_dir() -> PathBuf {
    e2e::reference_dir()
}

/// The model file's bytes; fails loudly (with the fix) if it is missing.
pub fn model_bytes(name: &str) -> &'static [u8] {
    let path = std::env::var("ARENALM_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("models"))
        .join(name);
    match std::fs::read(&path) {
        Ok(b) => Box::leak(b.into_boxed_slice()),
        Err(e) => panic!(
            "model file {} is missing ({e}); fetch it first (Gemma: scripts/fetch-gemma.sh; \
             SmolLM2: scripts/fetch-model.sh)",
            path.display()
        ),
    }
}

pub fn gguf(name: &str) -> Gguf<'static> {
    Gguf::parse(model_bytes(name)).expect("GGUF parses")
}

/// A tokenizer with default options in an exactly sized, leaked arena;
/// also returns `arena.used()` and the planned size.
pub fn tokenizer_with(name: &str, opts: &TokenizerOptions) -> (Tokenizer<'static>, usize, usize) {
    let g = gguf(name);
    let planned = Tokenizer::arena_bytes(&g, opts).expect("arena_bytes");
    let buf: &'static mut [u8] = Box::leak(vec![0u8; planned + 64].into_boxed_slice());
    let arena: &'static mut Arena<'static> = Box::leak(Box::new(Arena::new(buf)));
    let tok = Tokenizer::new(&g, arena, opts).expect("tokenizer builds");
    (tok, arena.used(), planned)
}

static CACHE: Mutex<Vec<(&'static str, &'static Mutex<Tokenizer<'static>>)>> =
    Mutex::new(Vec::new());

/// A shared tokenizer per model (built once per test binary).
pub fn shared(name: &'static str) -> &'static Mutex<Tokenizer<'static>> {
    let mut cache = CACHE.lock().unwrap();
    if let Some((_, t)) = cache.iter().find(|(n, _)| *n == name) {
        return t;
    }
    let (tok, _, _) = tokenizer_with(name, &TokenizerOptions::default());
    let t: &'static Mutex<Tokenizer<'static>> = Box::leak(Box::new(Mutex::new(tok)));
    cache.push((name, t));
    t
}

pub fn encode(tok: &mut Tokenizer<'_>, text: &str, parse_special: bool) -> Vec<u32> {
    let mut out = vec![0u32; text.len() + 8];
    let n = tok.encode(text, parse_special, &mut out).expect("encode");
    out.truncate(n);
    out
}

pub fn decode(tok: &Tokenizer<'_>, ids: &[u32], special: bool) -> Vec<u8> {
    let mut out = vec![0u8; ids.len() * 64 + 16];
    let n = tok.decode_with(ids, special, &mut out).expect("decode");
    out.truncate(n);
    out
}
