//! Exactness against llama.cpp: every record of the reference files
//! (`tests/reference/tokenizer-*.jsonl`, produced by llama.cpp) and the
//! reference prompts of the logits files must tokenize to exactly the ids
//! llama.cpp produced, with and without special-token parsing, and decode
//! back to the text.

mod common;

use common::*;
use serde_json::Value;

struct Record {
    text: String,
    ids: Vec<u32>,
    ids_special: Vec<u32>,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn records(file: &str) -> Vec<Record> {
    let path = if file.contains('/') {
        repo_root().join(file)
    } else {
        reference_dir().join(file)
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            Record {
                text: v["text"].as_str().expect("text").to_owned(),
                ids: ids(&v["ids"]),
                ids_special: ids(&v["ids_parse_special"]),
            }
        })
        .collect()
}

fn check_records(model: &'static str, file: &str) {
    check_records_with(model, file, true)
}

fn check_records_with(model: &'static str, file: &str, roundtrip: bool) {
    let recs = records(file);
    assert!(recs.len() > 30, "{file}: too few records ({})", recs.len());
    let mut tok = shared(model).lock().unwrap();
    let mut failures = Vec::new();
    for r in &recs {
        let plain = encode(&mut tok, &r.text, false);
        if plain != r.ids {
            failures.push(format!(
                "plain  {:?}\n  want {:?}\n  got  {:?}",
                r.text, r.ids, plain
            ));
        }
        let special = encode(&mut tok, &r.text, true);
        if special != r.ids_special {
            failures.push(format!(
                "special {:?}\n  want {:?}\n  got  {:?}",
                r.text, r.ids_special, special
            ));
        }
        // Lossless round trips: plain ids decode to the text (control tokens
        // are never produced by plain encoding); special ids decode to the
        // text when control tokens render.
        if !roundtrip {
            continue;
        }
        let back = decode(&tok, &r.ids, false);
        if back != r.text.as_bytes() {
            failures.push(format!(
                "decode {:?} -> {:?}",
                r.text,
                String::from_utf8_lossy(&back)
            ));
        }
        let back = decode(&tok, &r.ids_special, true);
        if back != r.text.as_bytes() {
            failures.push(format!(
                "decode special {:?} -> {:?}",
                r.text,
                String::from_utf8_lossy(&back)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} of {} checks failed:\n{}",
        failures.len(),
        recs.len() * 4,
        failures.join("\n")
    );
    eprintln!("{file}: all {} records match llama.cpp", recs.len());
}

#[test]
fn smollm2_records_match_llama_cpp() {
    check_records(SMOLLM2, "tokenizer-smollm2.jsonl");
}

#[test]
fn gemma3_records_match_llama_cpp() {
    check_records(GEMMA3, "tokenizer-gemma3.jsonl");
}

fn check_prompts(model: &'static str, file: &str, with_bos: bool) {
    let path = reference_dir().join(file);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("logits json")).expect("json");
    let prompts = v["prompts"].as_object().expect("prompts");
    assert_eq!(prompts.len(), 3);
    let mut tok = shared(model).lock().unwrap();
    for (name, p) in prompts {
        let text = p["text"].as_str().expect("text");
        let parse_special = p["parse_special"].as_bool().expect("parse_special");
        let want = ids(&p["ids"]);
        let mut got = Vec::new();
        if with_bos {
            assert!(tok.add_bos(), "{model} should ask for BOS");
            got.push(tok.bos().expect("bos"));
        } else {
            assert!(!tok.add_bos(), "{model} should not ask for BOS");
        }
        got.extend(encode(&mut tok, text, parse_special));
        assert_eq!(got, want, "{file} prompt {name}");
    }
}

#[test]
fn smollm2_logit_prompts_match_llama_cpp() {
    check_prompts(SMOLLM2, "logits-q8_0.json", false);
    check_prompts(SMOLLM2, "logits-q4_1.json", false);
}

#[test]
fn gemma3_logit_prompts_match_llama_cpp() {
    check_prompts(GEMMA3, "logits-gemma3.json", true);
}

// Randomised texts (mixed scripts, digit and whitespace runs, combining
// marks, emoji, control characters, special-token texts) tokenized by
// llama.cpp itself; see core/tests/data/README.md.
#[test]
fn smollm2_fuzz_records_match_llama_cpp() {
    check_records_with(
        SMOLLM2,
        "core/tests/data/tokenizer-smollm2-fuzz.jsonl",
        false,
    );
}

#[test]
fn gemma3_fuzz_records_match_llama_cpp() {
    check_records_with(GEMMA3, "core/tests/data/tokenizer-gemma3-fuzz.jsonl", false);
}

/// The SmolLM2 vocabulary with each other pre-tokenizer forced, against
/// llama.cpp run on copies of the file whose `tokenizer.ggml.pre` was
/// rewritten to that name (see core/tests/data/README.md).
#[test]
fn forced_pre_tokenizers_match_llama_cpp() {
    use arenalm_core::tokenizer::{PreTokenizer, TokenizerOptions};
    for name in ["llama-bpe", "qwen2", "gpt-2", "default", "dbrx"] {
        let pre = PreTokenizer::from_name(name).expect("known name");
        let opts = TokenizerOptions {
            pre_tokenizer: Some(pre),
            ..TokenizerOptions::default()
        };
        let (mut tok, _, _) = tokenizer_with(SMOLLM2, &opts);
        let file = format!("core/tests/data/tokenizer-smollm2-pre-{name}.jsonl");
        let recs = records(&file);
        assert!(recs.len() >= 400, "{file}");
        for r in &recs {
            assert_eq!(
                encode(&mut tok, &r.text, false),
                r.ids,
                "{name}: {:?}",
                r.text
            );
            assert_eq!(
                encode(&mut tok, &r.text, true),
                r.ids_special,
                "{name} (special): {:?}",
                r.text
            );
        }
        eprintln!("pre-tokenizer {name}: {} records match", recs.len());
    }
}

/// A whole realistic document (the Apache-2.0 licence, 11 KB): llama.cpp's
/// ids (core/tests/data/apache-2.0-*.json, made with the oracle) match.
#[test]
fn apache_license_matches_llama_cpp() {
    let text = std::fs::read_to_string(reference_dir().join("Apache-2.0.txt")).expect("text");
    for (model, file) in [
        (SMOLLM2, "core/tests/data/apache-2.0-smollm2.json"),
        (GEMMA3, "core/tests/data/apache-2.0-gemma3.json"),
    ] {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(repo_root().join(file)).unwrap())
                .unwrap();
        let want = ids(&v["ids"]);
        assert!(want.len() > 2000);
        let mut tok = shared(model).lock().unwrap();
        for special in [false, true] {
            assert_eq!(
                encode(&mut tok, &text, special),
                want,
                "{model} special={special}"
            );
        }
        assert_eq!(decode(&tok, &want, false), text.as_bytes());
    }
}
