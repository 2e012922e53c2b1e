//! Hostile vocabularies: tokenization stays linear in the input length.

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use super::*;
use crate::gguf::{GgufWriter, Value, ValueType};
use crate::testutil::VecSink;

/// The GPT-2 spelling of byte `b`.
fn gpt2_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('?')
}

/// A BPE vocabulary: the 256 byte tokens (ids 0..256), then `extra`
/// `(text, type)` tokens, and `merges`.
fn bpe_gguf(extra: &[(String, i32)], merges: &[String]) -> Vec<u8> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| gpt2_char(b).to_string()).collect();
    let mut types = vec![1i32; 256];
    for (t, ty) in extra {
        tokens.push(t.clone());
        types.push(*ty);
    }
    let mut w = GgufWriter::with_default_alignment(VecSink(Vec::new()), 0, 5).unwrap();
    w.kv_str("tokenizer.ggml.model", "gpt2").unwrap();
    w.kv_str("tokenizer.ggml.pre", "gpt-2").unwrap();
    w.kv_strings("tokenizer.ggml.tokens", tokens.iter().map(|s| s.as_str()))
        .unwrap();
    w.kv_array(
        "tokenizer.ggml.token_type",
        ValueType::I32,
        types.iter().map(|&t| Value::I32(t)),
    )
    .unwrap();
    w.kv_strings("tokenizer.ggml.merges", merges.iter().map(|s| s.as_str()))
        .unwrap();
    w.finish().unwrap().0
}

/// A tokenizer over `bytes` (leaked: tests only).
fn load(bytes: Vec<u8>) -> Tokenizer<'static> {
    let bytes: &'static [u8] = std::boxed::Box::leak(bytes.into_boxed_slice());
    let g = Gguf::parse(bytes).unwrap();
    let opts = TokenizerOptions::default();
    let n = Tokenizer::arena_bytes(&g, &opts).unwrap();
    let buf: &'static mut [u8] = std::boxed::Box::leak(vec![0u8; n + 64].into_boxed_slice());
    let arena: &'static mut Arena<'static> =
        std::boxed::Box::leak(std::boxed::Box::new(Arena::new(buf)));
    let g: &'static Gguf<'static> = std::boxed::Box::leak(std::boxed::Box::new(g));
    Tokenizer::new(g, arena, &opts).unwrap()
}

fn encode(tok: &mut Tokenizer<'_>, s: &str) -> Vec<u32> {
    let mut out = vec![0u32; s.len() + 8];
    let n = tok.encode(s, true, &mut out).unwrap();
    out.truncate(n);
    out
}

/// llama.cpp's `tokenizer_st_partition`, transcribed literally (fragment
/// list, tokens longest first then by id, leftmost occurrences), with
/// fragments of text spelled out as byte ids (the vocabularies here have
/// no merges).
fn reference(text: &str, specials: &[(String, u32)]) -> Vec<u32> {
    let mut order: Vec<&(String, u32)> = specials.iter().collect();
    order.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
    let mut frags: Vec<core::result::Result<u32, String>> = vec![Err(text.to_string())];
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
    let mut ids = Vec::new();
    for f in frags {
        match f {
            Ok(id) => ids.push(id),
            Err(s) => ids.extend(s.bytes().map(u32::from)),
        }
    }
    ids
}

/// A tokenizer whose special tokens are `specials` (user-defined, ids from
/// 256 in order), and the `(text, id)` list for [`reference`].
fn with_specials(specials: &[String]) -> (Tokenizer<'static>, Vec<(String, u32)>) {
    let extra: Vec<(String, i32)> = specials.iter().map(|s| (s.clone(), 4)).collect();
    let listed = specials
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), 256 + i as u32))
        .collect();
    (load(bpe_gguf(&extra, &[])), listed)
}

/// Random text over `alphabet`.
fn random_text(rng: &mut Rng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]))
        .collect()
}

/// Encodes `text` (checking it against [`reference`]) and returns the work
/// counted per byte.
fn checked_work(tok: &mut Tokenizer<'_>, specials: &[(String, u32)], text: &str) -> f64 {
    assert_eq!(
        encode(tok, text),
        reference(text, specials),
        "{:?}",
        &text[..text.len().min(200)]
    );
    tok.last_work() as f64 / text.len().max(1) as f64
}

use crate::testutil::Rng;

#[test]
fn a_4_kib_special_token_costs_a_few_steps_a_byte() {
    // Before: every position that could start the token hashed every length
    // from 64 to 4096 in full (and the overlap check rescanned them):
    // 3 s for 4 KiB of text, 28 s for 16 KiB (debug build).
    let long = "a".repeat(4096);
    let (mut tok, specials) = with_specials(&[long.clone(), "ab".to_string()]);
    let near_miss = std::format!("{}b", "a".repeat(4095));
    let mut rng = Rng(7);
    for text in [
        near_miss.repeat(32),
        "a".repeat(128 * 1024 + 17),
        std::format!("{}{}", near_miss.repeat(8), long.repeat(8)),
        random_text(&mut rng, b"aaaaaaaaaaaaaaab", 64 * 1024),
    ] {
        let per_byte = checked_work(&mut tok, &specials, &text);
        assert!(per_byte < 8.0, "{per_byte} steps a byte");
    }
}

#[test]
fn work_grows_linearly_with_the_text() {
    let long = "xy".repeat(1500);
    let (mut tok, specials) = with_specials(&[long.clone(), "xyx".to_string(), "yxy".to_string()]);
    let unit = std::format!("{}x{}", &long[..2999], long);
    let mut work = Vec::new();
    for k in [4usize, 8, 16, 32] {
        let text = unit.repeat(k);
        checked_work(&mut tok, &specials, &text);
        work.push(tok.last_work());
    }
    // Doubling the text at most doubles the work (plus a little).
    for w in work.windows(2) {
        assert!(w[1] <= 2 * w[0] + 4096, "{work:?}");
    }
}

#[test]
fn many_overlapping_special_tokens_match_llama_cpp_in_linear_work() {
    // Runs of one letter (nested: every shorter run is a token too), runs
    // of another up to 63 bytes and long ones from 64 (staged), and tokens
    // that straddle the two letters.
    let mut toks: Vec<String> = Vec::new();
    for k in 2..=40 {
        toks.push("a".repeat(k));
    }
    for k in [63, 64, 65, 100, 300] {
        toks.push("b".repeat(k));
    }
    for t in [
        "ab", "ba", "aab", "abb", "bba", "abab", "baba", "aabb", "bbaa", "<|a|>", "<|ab|>",
    ] {
        toks.push(t.to_string());
    }
    let (mut tok, specials) = with_specials(&toks);
    let mut rng = Rng(11);
    let mut worst: f64 = 0.0;
    for round in 0..40 {
        let len = 50 + (rng.next_u64() % 3000) as usize;
        let alphabet: &[u8] = if round % 2 == 0 {
            b"ab"
        } else {
            b"aaaaabbbbbb<|>"
        };
        let text = random_text(&mut rng, alphabet, len);
        worst = worst.max(checked_work(&mut tok, &specials, &text));
    }
    let text = std::format!("{}{}", "a".repeat(5000), "b".repeat(5000)).repeat(10);
    worst = worst.max(checked_work(&mut tok, &specials, &text));
    assert!(worst < 100.0, "{worst} steps a byte");
}

#[test]
fn long_tokens_beyond_the_staged_count_fall_back_and_still_match() {
    // More long tokens than stage 1 holds: stage 2 takes every length.
    let toks: Vec<String> = (0..(MAX_LONG_FOR_TESTS + 4))
        .map(|i| std::format!("{}{}", "q".repeat(64 + i), "z"))
        .chain(["qz".to_string(), "qq".to_string()])
        .collect();
    let (mut tok, specials) = with_specials(&toks);
    let mut rng = Rng(3);
    for _ in 0..20 {
        let text = random_text(&mut rng, b"qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqz", 400);
        checked_work(&mut tok, &specials, &text);
    }
    // Staged (few enough long tokens) and unstaged give the same ids.
    let few: Vec<String> = toks.iter().skip(10).cloned().collect();
    let (mut staged, few_specials) = with_specials(&few);
    for _ in 0..20 {
        let text = random_text(&mut rng, b"qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqz", 400);
        checked_work(&mut staged, &few_specials, &text);
    }
}

#[test]
fn every_six_letter_word_special_splits_exactly_or_is_refused_within_the_cap() {
    // Every 6-letter word over {a, b} is a special token, with ids in an
    // order that makes chains of overlapping better-ranked occurrences:
    // either the exact llama.cpp split, or a refusal, never unbounded work.
    let mut words: Vec<String> = (0..64u32)
        .map(|w| {
            (0..6)
                .map(|i| if w >> i & 1 == 1 { 'b' } else { 'a' })
                .collect()
        })
        .collect();
    let mut rng = Rng(5);
    for i in (1..words.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        words.swap(i, j);
    }
    let (mut tok, specials) = with_specials(&words);
    for len in [100usize, 10_000, 100_000] {
        let text = random_text(&mut rng, b"ab", len);
        let mut out = vec![0u32; len + 8];
        let start = std::time::Instant::now();
        match tok.encode(&text, true, &mut out) {
            Ok(n) => assert_eq!(out[..n], reference(&text, &specials)[..]),
            Err(e) => assert_eq!(e, Error::Tokenizer(TokenizerError::SpecialTokenOverlap)),
        }
        let cap = special::WORK_BASE + special::WORK_PER_BYTE * len as u64;
        assert!(tok.last_work() <= cap);
        // A very generous wall-clock bound (the cap is ~1 ns steps).
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
    }
}

#[test]
fn overlap_chains_deeper_than_the_recursion_cap_are_refused() {
    // "ab", "bc", "cd", ...: each pair's id is below the previous one's, so
    // deciding "ab" needs "bc" decided, which needs "cd", and so on.
    let letters: Vec<char> = ('a'..='z').collect();
    let pairs: Vec<String> = letters
        .windows(2)
        .rev()
        .map(|w| w.iter().collect())
        .collect();
    let (mut tok, specials) = with_specials(&pairs);
    // A chain of 15 overlaps: decided, as llama.cpp does.
    let short: String = letters[..16].iter().collect();
    checked_work(&mut tok, &specials, &short);
    // Of 25: refused, after bounded work.
    let long: String = letters.iter().collect();
    let mut out = [0u32; 64];
    assert_eq!(
        tok.encode(&long, true, &mut out),
        Err(Error::Tokenizer(TokenizerError::SpecialTokenOverlap))
    );
    assert!(tok.last_work() < 10_000);
}

#[test]
fn the_work_cap_is_linear_in_the_text_and_refuses_beyond_it() {
    let mut w = special::Work::for_text(10);
    let cap = special::WORK_BASE + 10 * special::WORK_PER_BYTE;
    assert!(w.add(cap as usize).is_ok());
    assert_eq!(
        w.add(1),
        Err(Error::Tokenizer(TokenizerError::SpecialTokenOverlap))
    );
    // Absurd lengths saturate instead of overflowing.
    let mut huge = special::Work::for_text(usize::MAX);
    assert!(huge.add(usize::MAX).is_ok());
}

const MAX_LONG_FOR_TESTS: usize = special::MAX_LONG;

/// A SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then
/// `(piece, score)` normal tokens.
fn spm_gguf(pieces: &[(String, f32)]) -> Vec<u8> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u32 {
        tokens.push(std::format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (p, s) in pieces {
        tokens.push(p.clone());
        types.push(1);
        scores.push(*s);
    }
    let mut w = GgufWriter::with_default_alignment(VecSink(Vec::new()), 0, 4).unwrap();
    w.kv_str("tokenizer.ggml.model", "llama").unwrap();
    w.kv_strings("tokenizer.ggml.tokens", tokens.iter().map(|s| s.as_str()))
        .unwrap();
    w.kv_array(
        "tokenizer.ggml.scores",
        ValueType::F32,
        scores.iter().map(|&s| Value::F32(s)),
    )
    .unwrap();
    w.kv_array(
        "tokenizer.ggml.token_type",
        ValueType::I32,
        types.iter().map(|&t| Value::I32(t)),
    )
    .unwrap();
    w.finish().unwrap().0
}

/// llama.cpp's SentencePiece merge, naively: repeatedly merge the
/// adjacent pair whose concatenation is the best-scoring token (leftmost on
/// ties). For a text of pieces only (no spaces, no byte fallback).
fn spm_reference(text: &str, pieces: &[(String, f32)], first_id: u32) -> Vec<u32> {
    let lookup = |s: &str| pieces.iter().position(|(p, _)| p == s);
    let mut syms: Vec<String> = text.chars().map(|c| c.to_string()).collect();
    loop {
        let mut best: Option<(f32, usize)> = None;
        for i in 0..syms.len().saturating_sub(1) {
            let cat = std::format!("{}{}", syms[i], syms[i + 1]);
            if let Some(k) = lookup(&cat) {
                if best.is_none_or(|(s, _)| pieces[k].1 > s) {
                    best = Some((pieces[k].1, i));
                }
            }
        }
        let Some((_, i)) = best else { break };
        let right = syms.remove(i + 1);
        syms[i].push_str(&right);
    }
    syms.iter()
        .map(|s| first_id + lookup(s).unwrap() as u32)
        .collect()
}

#[test]
fn a_long_token_of_one_repeated_character_merges_in_linear_work() {
    // SentencePiece, every run a^1..a^K a token scoring its length: each
    // merge extends the leftmost run by one character (the worst order for
    // this algorithm), re-hashing the run; the work is linear in the text,
    // at most about K/2 hashed bytes a byte — as in llama.cpp, whose merge
    // loop hashes the same strings.
    const K: usize = 1024;
    let pieces: Vec<(String, f32)> = (1..=K).map(|n| ("a".repeat(n), n as f32)).collect();
    let mut tok = load(spm_gguf(&pieces));
    tok.t.add_space_prefix = false;
    let first_id = 3 + 256;
    let small = "a".repeat(2 * K + 37);
    assert_eq!(
        encode(&mut tok, &small),
        spm_reference(&small, &pieces, first_id)
    );
    let mut work = Vec::new();
    for n in [4000usize, 8000, 16000] {
        let text = "a".repeat(n);
        let ids = encode(&mut tok, &text);
        assert_eq!(ids.len(), n.div_ceil(K));
        work.push(tok.last_work());
        assert!(tok.last_work() <= (n * (K / 2 + 128)) as u64, "{work:?}");
    }
    for w in work.windows(2) {
        assert!(w[1] <= 2 * w[0] + 2 * (K * K) as u64, "{work:?}");
    }

    // Byte-level BPE with merges a+a, aa+a, ..., up to a 4096-byte token:
    // merges are looked up by token ids, so each costs a heap operation.
    let merges: Vec<String> = (1..4096)
        .map(|k| std::format!("{} a", "a".repeat(k)))
        .collect();
    let extra: Vec<(String, i32)> = (2..=4096).map(|k| ("a".repeat(k), 1)).collect();
    let mut tok = load(bpe_gguf(&extra, &merges));
    for n in [4096usize, 8000, 16000] {
        let text = "a".repeat(n);
        let ids = encode(&mut tok, &text);
        // Rank order merges a+a everywhere first, then aa+a, ...: llama.cpp
        // ends with pairs "aa" (ids 256 + 0) and a final "a" if n is odd.
        assert_eq!(ids.len(), n.div_ceil(2));
        assert!(ids[..n / 2].iter().all(|&id| id == 256));
        assert!(tok.last_work() <= (n * 64) as u64, "{}", tok.last_work());
    }
}

#[test]
fn random_vocabularies_of_short_and_long_tokens_split_as_llama_cpp_does() {
    // Tokens from a 2-letter alphabet, some of them 64 bytes or longer
    // (stage 1), some shorter (stage 2), overlapping each other; texts made
    // of pieces of tokens and noise, so occurrences overlap in every way.
    let mut rng = Rng(0x5EED);
    for case in 0..60 {
        let mut toks: Vec<String> = Vec::new();
        let n_toks = 2 + (rng.next_u64() % 10) as usize;
        while toks.len() < n_toks {
            let len = match rng.next_u64() % 3 {
                0 => 2 + (rng.next_u64() % 6) as usize,
                1 => 60 + (rng.next_u64() % 10) as usize,
                _ => 64 + (rng.next_u64() % 100) as usize,
            };
            let period = 1 + (rng.next_u64() % 4) as usize;
            let unit = random_text(&mut rng, b"ab", period);
            let t: String = unit.chars().cycle().take(len).collect();
            if !toks.contains(&t) {
                toks.push(t);
            }
        }
        let (mut tok, specials) = with_specials(&toks);
        for _ in 0..5 {
            let mut text = String::new();
            while text.len() < 1500 {
                let t = &toks[(rng.next_u64() % toks.len() as u64) as usize];
                let cut = (rng.next_u64() % (t.len() as u64 + 1)) as usize;
                text.push_str(&t[..cut]);
                let noise = (rng.next_u64() % 3) as usize;
                text.push_str(&random_text(&mut rng, b"ab", noise));
            }
            let per_byte = checked_work(&mut tok, &specials, &text);
            assert!(per_byte < 400.0, "case {case}: {per_byte} steps a byte");
        }
    }
}

#[test]
fn a_huge_special_token_beside_unstaged_long_ones_costs_no_unbounded_step() {
    // More long tokens than stage 1 stages, so stage 2 takes every length
    // up to the longest token, and one 1 MiB token among them. Every short
    // candidate ("ab", "ba" overlapping it) asks the overlap check, which
    // stepped down through every length from the longest token, uncounted:
    // 2^20 steps for each of the 40,000 candidates of this 40 KB text.
    let mut toks: Vec<String> = (0..(MAX_LONG_FOR_TESTS + 1))
        .map(|i| "z".repeat(64 + i))
        .collect();
    toks.push("y".repeat(1 << 20));
    toks.push("ab".to_string());
    toks.push("ba".to_string());
    let (mut tok, specials) = with_specials(&toks);
    // Every length the check steps through is counted now (it jumps to the
    // lengths that occur): before, this took 15 s at 6 counted steps a byte.
    let per_byte = checked_work(&mut tok, &specials, &"ab".repeat(20_000));
    assert!(per_byte < 200.0, "{per_byte} steps a byte");
}
