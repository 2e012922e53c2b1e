//! Tokenizer speed: encoding ~1 MB of English (the Apache-2.0 licence text
//! repeated) on one core, and building the tables (init), for SmolLM2
//! (byte-level BPE) and Gemma 3 (SentencePiece).
//!
//! Needs models/SmolLM2-135M-Instruct.Q4_1.gguf and
//! models/gemma-3-270m-q4_k_m.gguf (scripts/fetch-gemma.sh), and
//! tests/reference/Apache-2.0.txt.

use std::path::PathBuf;
use std::time::Duration;

use arenalm_core::gguf::Gguf;
use arenalm_core::mem::Arena;
use arenalm_core::tokenizer::{Tokenizer, TokenizerOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../../tests/lib.rs"]
#[allow(dead_code)]
mod e2e;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); see the bench's module doc for how to fetch it",
            path.display()
        )
    })
}

fn corpus() -> String {
    let text = String::from_utf8(read(e2e::reference("Apache-2.0.txt"))).expect("utf8");
    let mut s = String::with_capacity(1 << 20);
    while s.len() < 1_000_000 {
        s.push_str(&text);
    }
    s
}

fn bench_model(c: &mut Criterion, name: &str, file: &str, text: &str) {
    let bytes = read(root().join("models").join(file));
    let gguf = Gguf::parse(&bytes).expect("gguf");
    let opts = TokenizerOptions::default();
    let need = Tokenizer::arena_bytes(&gguf, &opts).expect("arena_bytes");
    let mut buf = vec![0u8; need + 64];

    let mut group = c.benchmark_group(format!("tokenizer/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("init", |b| {
        b.iter(|| {
            let mut arena = Arena::new(&mut buf);
            let tok = Tokenizer::new(&gguf, &mut arena, &opts).expect("init");
            tok.vocab_size()
        })
    });

    let mut arena = Arena::new(&mut buf);
    let mut tok = Tokenizer::new(&gguf, &mut arena, &opts).expect("init");
    let mut out = vec![0u32; text.len()];
    let n = tok.encode(text, false, &mut out).expect("encode");
    eprintln!(
        "{name}: {} bytes -> {n} tokens ({:.2} bytes/token), arena {need} bytes",
        text.len(),
        text.len() as f64 / n as f64
    );
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("encode_1MB", |b| {
        b.iter(|| tok.encode(text, false, &mut out).expect("encode"))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let text = corpus();
    bench_model(c, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", &text);
    bench_model(c, "gemma3", "gemma-3-270m-q4_k_m.gguf", &text);
}

criterion_group!(tokenizer, benches);
criterion_main!(tokenizer);
