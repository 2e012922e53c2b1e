//! Small synthetic vocabularies written with the GGUF writer: exact arena
//! accounting, hand-checkable encodings, the special-token partition against
//! a literal transcription of llama.cpp's algorithm, and hostile metadata
//! (every case an error, never a panic).

#![allow(clippy::result_large_err)] // arenalm's Error is Copy with inline context

use arenalm_core::error::{Error, TokenizerError};
use arenalm_core::gguf::{Gguf, GgufError, GgufWriter, Sink, Value, ValueType};
use arenalm_core::mem::Arena;
use arenalm_core::tokenizer::{PreTokenizer, Tokenizer, TokenizerOptions};
use proptest::prelude::*;

struct VecSink(Vec<u8>);

impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

#[derive(Clone)]
enum E {
    Str(String),
    U32(u32),
    I32(i32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
    U32s(Vec<u32>),
}

type Meta = Vec<(&'static str, E)>;

fn build(meta: &Meta) -> Vec<u8> {
    let mut w =
        GgufWriter::with_default_alignment(VecSink(Vec::new()), 0, meta.len() as u64).unwrap();
    for (k, v) in meta {
        match v {
            E::Str(s) => w.kv_str(k, s).unwrap(),
            E::U32(x) => w.kv_u32(k, *x).unwrap(),
            E::I32(x) => w.kv(k, Value::I32(*x)).unwrap(),
            E::Bool(b) => w.kv(k, Value::Bool(*b)).unwrap(),
            E::Strs(v) => w.kv_strings(k, v.iter().map(|s| s.as_str())).unwrap(),
            E::I32s(v) => w
                .kv_array(k, ValueType::I32, v.iter().map(|x| Value::I32(*x)))
                .unwrap(),
            E::F32s(v) => w
                .kv_array(k, ValueType::F32, v.iter().map(|x| Value::F32(*x)))
                .unwrap(),
            E::U32s(v) => w
                .kv_array(k, ValueType::U32, v.iter().map(|x| Value::U32(*x)))
                .unwrap(),
        }
    }
    w.finish().unwrap().0
}

fn gpt2_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// A byte-level BPE vocabulary: the 256 byte tokens (ids 0..256), then
/// `extra` tokens with their types, and `merges`.
fn bpe_meta(extra: &[(&str, i32)], merges: &[&str]) -> Meta {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| gpt2_char(b).to_string()).collect();
    let mut types = vec![1i32; 256];
    for (t, ty) in extra {
        tokens.push(t.to_string());
        types.push(*ty);
    }
    vec![
        ("tokenizer.ggml.model", E::Str("gpt2".into())),
        ("tokenizer.ggml.pre", E::Str("gpt-2".into())),
        ("tokenizer.ggml.tokens", E::Strs(tokens)),
        ("tokenizer.ggml.token_type", E::I32s(types)),
        (
            "tokenizer.ggml.merges",
            E::Strs(merges.iter().map(|s| s.to_string()).collect()),
        ),
    ]
}

fn id_of_byte(b: u8) -> u32 {
    u32::from(b)
}

/// `(used, planned)` and the tokenizer, or the error from either step.
fn load(
    bytes: &'static [u8],
    opts: &TokenizerOptions,
) -> Result<(Tokenizer<'static>, usize, usize), Error> {
    let g = Gguf::parse(bytes).expect("GGUF itself is valid");
    let planned = Tokenizer::arena_bytes(&g, opts)?;
    let buf: &'static mut [u8] = Box::leak(vec![0u8; planned + 64].into_boxed_slice());
    let arena: &'static mut Arena<'static> = Box::leak(Box::new(Arena::new(buf)));
    let tok = Tokenizer::new(&g, arena, opts)?;
    Ok((tok, arena.used(), planned))
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn encode(tok: &mut Tokenizer<'_>, s: &str, special: bool) -> Vec<u32> {
    let mut out = vec![0u32; s.len() * 2 + 8];
    let n = tok.encode(s, special, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn small_bpe_vocab_merges_by_rank_and_accounts_its_arena_exactly() {
    // 256 "ab", 257 "abc", 258 "bc", 259 "<|s|>" control, 260 "<u>" user-defined.
    let meta = bpe_meta(
        &[("ab", 1), ("abc", 1), ("bc", 1), ("<|s|>", 3), ("<u>", 4)],
        // rank 0: "b c", rank 1: "a b", rank 2: "ab c" (never reachable after
        // "b c" wins on "abc"), rank 3: junk without a space, rank 4: unknown part.
        &["b c", "a b", "ab c", "junk", "a zz"],
    );
    let meta = with(&meta, "tokenizer.ggml.add_bos_token", Some(E::Bool(true)));
    let (mut tok, used, planned) = load(leak(build(&meta)), &TokenizerOptions::default()).unwrap();
    assert_eq!(used, planned);
    assert_eq!(tok.vocab_size(), 261);
    assert!(tok.add_bos());
    // "abc": pairs (a,b) rank 1 and (b,c) rank 0 -> "b c" first -> a + bc.
    assert_eq!(encode(&mut tok, "abc", false), [id_of_byte(b'a'), 258]);
    // "ab": -> "ab" (256); " ab" is one GPT-2 word: Ġ + ab.
    assert_eq!(encode(&mut tok, "ab", false), [256]);
    assert_eq!(encode(&mut tok, " ab", false), [id_of_byte(b' '), 256]);
    // Control text is plain unless parsed; user-defined always splits.
    assert_eq!(encode(&mut tok, "<|s|>", true), [259]);
    assert_eq!(
        encode(&mut tok, "x<u>y", false),
        [id_of_byte(b'x'), 260, id_of_byte(b'y')]
    );
    assert_eq!(encode(&mut tok, "<|s|>", false).len(), 5);
    let mut out = [0u8; 16];
    let n = tok.decode(&[259, 256, 260], &mut out).unwrap();
    assert_eq!(&out[..n], b"ab<u>");
    // Out-of-range ids are errors everywhere.
    let bad = Error::Tokenizer(TokenizerError::BadTokenId {
        id: 261,
        vocab: 261,
    });
    assert_eq!(tok.decode(&[261], &mut out).unwrap_err(), bad);
    assert_eq!(tok.token_to_piece(261, true, &mut out).unwrap_err(), bad);
    assert_eq!(tok.token_type(261).unwrap_err(), bad);
}

/// A SentencePiece vocabulary: <unk> <s> </s>, byte tokens (ids 3..259),
/// then pieces with scores.
fn spm_meta(pieces: &[(&str, f32)], with_bytes: bool) -> Meta {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32, 0.0, 0.0];
    if with_bytes {
        for b in 0..=255u32 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    vec![
        ("tokenizer.ggml.model", E::Str("llama".into())),
        ("tokenizer.ggml.tokens", E::Strs(tokens)),
        ("tokenizer.ggml.scores", E::F32s(scores)),
        ("tokenizer.ggml.token_type", E::I32s(types)),
    ]
}

#[test]
fn small_spm_vocab_merges_by_score_with_byte_fallback() {
    // ids: 259 ▁, 260 a, 261 b, 262 ▁a, 263 ab, 264 ▁ab
    let meta = spm_meta(
        &[
            ("▁", -1.0),
            ("a", -1.0),
            ("b", -1.0),
            ("▁a", -2.0),
            ("ab", -1.5),
            ("▁ab", -3.0),
        ],
        true,
    );
    let (mut tok, used, planned) = load(leak(build(&meta)), &TokenizerOptions::default()).unwrap();
    assert_eq!(used, planned);
    assert!(tok.add_bos() && tok.add_space_prefix()); // SPM defaults
                                                      // "ab" gets a space prefix: ▁ a b. Best pair: "ab" (-1.5) beats "▁a"
                                                      // (-2.0) -> ▁ + ab; then "▁ab" (-3.0) is a token -> ▁ab.
    assert_eq!(encode(&mut tok, "ab", false), [264]);
    // "é" has no piece: bytes C3 A9 -> <0xC3> <0xA9> (3 + byte).
    assert_eq!(encode(&mut tok, "é", false), [259, 3 + 0xC3, 3 + 0xA9]);
    // Decoding drops the leading space the prefix added.
    let mut out = [0u8; 16];
    let n = tok.decode(&[264, 259, 260], &mut out).unwrap();
    assert_eq!(&out[..n], b"ab a");
    // Without byte tokens, an unknown character is an error, not a panic.
    let meta = spm_meta(&[("▁", -1.0), ("a", -1.0)], false);
    let (mut tok, _, _) = load(leak(build(&meta)), &TokenizerOptions::default()).unwrap();
    let mut out = [0u32; 8];
    assert_eq!(
        tok.encode("é", false, &mut out).unwrap_err(),
        Error::Tokenizer(TokenizerError::MissingByteToken { byte: 0xC3 })
    );
}

fn with(meta: &Meta, key: &'static str, value: Option<E>) -> Meta {
    let mut m: Meta = meta.iter().filter(|(k, _)| *k != key).cloned().collect();
    if let Some(v) = value {
        m.push((key, v));
    }
    m
}

fn load_err(meta: &Meta) -> Error {
    match load(leak(build(meta)), &TokenizerOptions::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn missing(key: &'static str) -> impl Fn(&Error) -> bool {
    move |e: &Error| matches!(e, Error::Tokenizer(TokenizerError::MissingKey { key: k }) if k.as_str() == key)
}

fn bad_meta(key: &str) -> impl Fn(&Error) -> bool + '_ {
    move |e| matches!(e, Error::Tokenizer(TokenizerError::BadMetadata { key: k, .. }) if k.as_str() == key)
}

#[test]
fn hostile_metadata_is_refused_with_context() {
    let base = bpe_meta(&[("ab", 1)], &["a b"]);
    let n = 257;
    type Check = Box<dyn Fn(&Error) -> bool>;
    let cases: Vec<(Meta, Check)> = vec![
        (
            with(&base, "tokenizer.ggml.model", None),
            Box::new(missing("tokenizer.ggml.model")),
        ),
        (
            with(&base, "tokenizer.ggml.model", Some(E::Str("bert".into()))),
            Box::new(|e: &Error| {
                matches!(e, Error::Tokenizer(TokenizerError::UnsupportedModel { .. }))
            }),
        ),
        (
            with(&base, "tokenizer.ggml.pre", Some(E::Str("weird".into()))),
            Box::new(
                |e: &Error| matches!(e, Error::Tokenizer(TokenizerError::UnsupportedPreTokenizer { name }) if name.as_str() == "weird"),
            ),
        ),
        (
            with(&base, "tokenizer.ggml.tokens", None),
            Box::new(missing("tokenizer.ggml.tokens")),
        ),
        (
            with(&base, "tokenizer.ggml.merges", None),
            Box::new(missing("tokenizer.ggml.merges")),
        ),
        (
            with(&base, "tokenizer.ggml.tokens", Some(E::U32s(vec![1, 2]))),
            Box::new(bad_meta("tokenizer.ggml.tokens")),
        ),
        (
            with(&base, "tokenizer.ggml.tokens", Some(E::Strs(vec![]))),
            Box::new(bad_meta("tokenizer.ggml.tokens")),
        ),
        (
            with(
                &base,
                "tokenizer.ggml.token_type",
                Some(E::I32s(vec![1; 10])),
            ),
            Box::new(bad_meta("tokenizer.ggml.token_type")),
        ),
        (
            with(
                &base,
                "tokenizer.ggml.token_type",
                Some(E::F32s(vec![1.0; 257])),
            ),
            Box::new(bad_meta("tokenizer.ggml.token_type")),
        ),
        (
            with(&base, "tokenizer.ggml.scores", Some(E::F32s(vec![0.0; 3]))),
            Box::new(bad_meta("tokenizer.ggml.scores")),
        ),
        (
            with(
                &base,
                "tokenizer.ggml.scores",
                Some(E::Strs(vec!["x".into(); 257])),
            ),
            Box::new(bad_meta("tokenizer.ggml.scores")),
        ),
        (
            with(&base, "tokenizer.ggml.merges", Some(E::I32s(vec![0; 4]))),
            Box::new(bad_meta("tokenizer.ggml.merges")),
        ),
        (
            with(&base, "tokenizer.ggml.bos_token_id", Some(E::U32(n))),
            Box::new(bad_meta("tokenizer.ggml.bos_token_id")),
        ),
        (
            with(&base, "tokenizer.ggml.eos_token_id", Some(E::I32(-1))),
            Box::new(bad_meta("tokenizer.ggml.eos_token_id")),
        ),
        (
            with(
                &base,
                "tokenizer.ggml.padding_token_id",
                Some(E::U32(u32::MAX)),
            ),
            Box::new(bad_meta("tokenizer.ggml.padding_token_id")),
        ),
        (
            with(&base, "tokenizer.ggml.add_bos_token", Some(E::U32(1))),
            Box::new(bad_meta("tokenizer.ggml.add_bos_token")),
        ),
        (
            bpe_meta(&[("a", 1)], &[]), // "a" duplicates byte token 97
            Box::new(|e: &Error| matches!(e, Error::Tokenizer(TokenizerError::BadVocab { .. }))),
        ),
    ];
    for (i, (meta, check)) in cases.iter().enumerate() {
        let e = load_err(meta);
        assert!(check(&e), "case {i}: unexpected {e:?}");
        // Errors render without panicking.
        let _ = format!("{e}");
    }
    // An unknown pre-tokenizer loads when the caller forces one.
    let meta = with(&base, "tokenizer.ggml.pre", Some(E::Str("weird".into())));
    let opts = TokenizerOptions {
        pre_tokenizer: Some(PreTokenizer::Gpt2),
        ..TokenizerOptions::default()
    };
    assert!(load(leak(build(&meta)), &opts).is_ok());
    // Unknown token types load (as undefined); zero scratch is refused.
    let mut meta = base.clone();
    if let Some((_, E::I32s(t))) = meta
        .iter_mut()
        .find(|(k, _)| *k == "tokenizer.ggml.token_type")
    {
        t[5] = 99;
        t[6] = -7;
    }
    let (tok, _, _) = load(leak(build(&meta)), &TokenizerOptions::default()).unwrap();
    assert_eq!(
        tok.token_type(5).unwrap(),
        arenalm_core::tokenizer::TokenType::Undefined
    );
    let zero = TokenizerOptions {
        max_piece_bytes: 0,
        ..TokenizerOptions::default()
    };
    assert!(matches!(
        load(leak(build(&base)), &zero).unwrap_err(),
        Error::InvalidArgument { .. }
    ));
}

#[test]
fn a_too_small_arena_is_a_budget_error() {
    let bytes = leak(build(&bpe_meta(&[("ab", 1)], &["a b"])));
    let g = Gguf::parse(bytes).unwrap();
    let opts = TokenizerOptions::default();
    let need = Tokenizer::arena_bytes(&g, &opts).unwrap();
    for have in [0, 64, need / 2, need - 64] {
        let mut buf = vec![0u8; have];
        let mut arena = Arena::new(&mut buf);
        assert!(matches!(
            Tokenizer::new(&g, &mut arena, &opts).unwrap_err(),
            Error::Budget { .. }
        ));
    }
}

/// llama.cpp's `tokenizer_st_partition`, transcribed literally (fragment
/// list, tokens longest first, leftmost occurrences), for comparison.
fn reference_partition(text: &str, specials: &[(String, u32)]) -> Vec<Result<u32, String>> {
    let mut order: Vec<&(String, u32)> = specials.iter().collect();
    order.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
    let mut frags: Vec<Result<u32, String>> = vec![Err(text.to_string())];
    for (tok, id) in order {
        let mut next = Vec::new();
        for f in frags {
            match f {
                Ok(t) => next.push(Ok(t)),
                Err(s) => {
                    let mut rest = s.as_str();
                    while let Some(p) = rest.find(tok.as_str()) {
                        if p > 0 {
                            next.push(Err(rest[..p].to_string()));
                        }
                        next.push(Ok(*id));
                        rest = &rest[p + tok.len()..];
                    }
                    if !rest.is_empty() {
                        next.push(Err(rest.to_string()));
                    }
                }
            }
        }
        frags = next;
    }
    frags
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random user-defined tokens over a 3-letter alphabet (so they overlap
    /// a lot) and random texts: the left-to-right partition equals the
    /// literal llama.cpp algorithm.
    #[test]
    fn special_partition_equals_llama_cpp_literal_algorithm(
        toks in proptest::collection::btree_set("[abc]{1,5}", 1..8),
        text in "[abc ]{0,60}",
    ) {
        let toks: Vec<String> = toks.into_iter().collect();
        let extra: Vec<(&str, i32)> = toks.iter().map(|t| (t.as_str(), 4)).collect();
        // Single letters are byte tokens already; skip those (duplicates).
        let extra: Vec<(&str, i32)> = extra.into_iter().filter(|(t, _)| t.len() > 1).collect();
        let meta = bpe_meta(&extra, &[]);
        let (mut tok, used, planned) = load(leak(build(&meta)), &TokenizerOptions::default()).unwrap();
        prop_assert_eq!(used, planned);
        let specials: Vec<(String, u32)> = extra.iter().enumerate().map(|(i, (t, _))| (t.to_string(), 256 + i as u32)).collect();
        let mut want = Vec::new();
        for f in reference_partition(&text, &specials) {
            match f {
                Ok(id) => want.push(id),
                Err(s) => want.extend(s.bytes().map(id_of_byte)),
            }
        }
        prop_assert_eq!(encode(&mut tok, &text, false), want);
    }
}
