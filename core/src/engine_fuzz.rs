//! The engine-path fuzzer: a seeded mutational loop over tiny model files.
//!
//! Each case builds a valid tiny llama/qwen2 model with a byte-level BPE
//! tokenizer (`testutil`, through the GGUF writer), takes it apart into
//! metadata entries, tensor entries and data, applies one to four mutations
//! (metadata values, types and keys; tensor dimensions, types, offsets and
//! names; entries deleted, duplicated or swapped; header counts; the length
//! fields of strings and arrays; truncation), writes it back, and runs the
//! whole path on it: `Model::from_bytes`, the planner, `Engine::new` into an
//! arena with guard bytes on both sides, `encode`, `eval`, `sample`, the
//! streaming detokenizer and `decode`. Every step must return (an error is
//! fine, and is formatted), the guard bytes must stay untouched, a failed
//! `eval` must leave the sequence as it was, and nothing may panic — which,
//! built with overflow checks (`cargo test --profile fuzz`, as
//! `scripts/test.sh` and `scripts/fuzz.sh` do), includes every arithmetic
//! overflow.
//!
//! Budget: `ALM_FUZZ_SECONDS` (a long run) and/or `ALM_FUZZ_CASES` (a
//! number of cases; default 1000, about a second, so plain `cargo test`
//! stays quick). `ALM_FUZZ_SEED` picks the base seed (default fixed, so
//! runs are reproducible); a failing case prints its case seed, and
//! `ALM_FUZZ_CASE=<seed>` replays that one case.
//!
//! Slow cases are failures too: superlinear work on a hostile file shows
//! as one case that takes seconds where the others take a millisecond. The
//! cost of a case is the fuzzing thread's CPU time (on Linux; elsewhere
//! wall time, and no check): not wall time, since a starved or stopped
//! process on a shared machine is slow without hanging, and not the
//! process's, since other tests run beside the fuzzer. A case above 10 CPU
//! seconds fails the run; a watchdog aborts the process, naming the case
//! and the step it is in, if one uses 120 (a hang never returns to be
//! checked). The slowest case is reported at the end.
//!
//! Crashes found by this fuzzer are kept as regression tests at the end of
//! this file, each a minimized file built in the test.

use std::format;
use std::path::{Path, PathBuf};
use std::string::String;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use std::vec;
use std::vec::Vec;

use crate::engine::{Engine, EngineParams, Outputs};
use crate::error::Error;
use crate::gguf::{ArrayView, GgmlType, Gguf, Value, ValueType};
use crate::kernels::CpuFeatures;
use crate::kv::KvType;
use crate::mem::plan::{self, PlanParams};
use crate::model::Model;
use crate::parallel::Serial;
use crate::sample::{Sampler, SamplerParams};
use crate::testutil::{build_gguf, string_array_bytes, tensor_size, Rng, TinySpec};
use crate::tokenizer::special::MAX_LONG;
use crate::tokenizer::{Detokenizer, TokenizerOptions};

/// Arena bytes a case may use (larger plans are run into a too-small arena).
const ARENA_CAP: usize = 8 << 20;
/// Guard bytes on each side of the arena.
const GUARD: usize = 256;
const GUARD_BYTE: u8 = 0xA5;

// ---------------------------------------------------------------- seeds --

/// The GPT-2 spelling of byte `b`.
fn gpt2_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('?')
}

/// Tokenizer metadata for a vocabulary of exactly `vocab` tokens (>= 262):
/// the 256 bytes, merges of common pairs, and a few special tokens.
struct Vocab {
    tokens: Vec<u8>,
    types: Vec<u8>,
    merges: Vec<u8>,
    n_tokens: usize,
    n_merges: usize,
}

fn vocab(n: usize, rng: &mut Rng) -> Vocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| gpt2_char(b).into()).collect();
    let mut types = vec![1i32; 256];
    let specials = [
        ("<|im_start|>", 3),
        ("<|im_end|>", 3),
        ("<|endoftext|>", 3),
        ("<tool>", 4),
        (
            "<tool_call_with_a_long_name_that_goes_on_and_on_and_on_and_on_and_on>",
            4,
        ),
    ];
    // A quarter of the larger vocabularies also hold more long (64 bytes and
    // up) user-defined tokens than the special-token splitter stages, one of
    // them 16 KiB, which sends every long length through its fallback.
    if n >= 300 && rng.next_u64().is_multiple_of(4) {
        for i in 0..=MAX_LONG {
            tokens.push(long_tool_call(i));
            types.push(4);
        }
        tokens.push(format!("<tool_call_with{}>", "x".repeat(16 << 10)));
        types.push(4);
    }
    let mut merges: Vec<String> = Vec::new();
    let letters = b"etaoinshrdlu";
    'outer: for &a in letters {
        for &b in letters {
            if tokens.len() + specials.len() >= n {
                break 'outer;
            }
            let text = format!("{}{}", a as char, b as char);
            merges.push(format!("{} {}", a as char, b as char));
            tokens.push(text);
            types.push(1);
        }
    }
    while tokens.len() + specials.len() < n {
        tokens.push(format!("tok{}x{}", tokens.len(), rng.next_u64() % 1000));
        types.push(1);
    }
    for (t, ty) in specials {
        tokens.push(t.into());
        types.push(ty);
    }
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let merge_refs: Vec<&str> = merges.iter().map(String::as_str).collect();
    Vocab {
        tokens: string_array_bytes(&token_refs),
        types: types.iter().flat_map(|t| t.to_le_bytes()).collect(),
        merges: string_array_bytes(&merge_refs),
        n_tokens: tokens.len(),
        n_merges: merges.len(),
    }
}

/// The `i`th long user-defined token of a [`vocab`] that has them.
fn long_tool_call(i: usize) -> String {
    format!("<tool_call_{i:02}_{}>", "x".repeat(60))
}

/// A random valid tiny model with a tokenizer.
fn seed_model(rng: &mut Rng) -> Vec<u8> {
    let pick = |rng: &mut Rng, xs: &[u64]| xs[(rng.next_u64() % xs.len() as u64) as usize];
    let quantized = rng.next_u64().is_multiple_of(2);
    let (dim, ffn) = if quantized {
        (pick(rng, &[32, 64]), pick(rng, &[32, 64, 96]))
    } else {
        (pick(rng, &[16, 32, 64]), pick(rng, &[8, 24, 64]))
    };
    let n_heads = pick(rng, &[1, 2, 4]);
    let n_kv_heads = pick(rng, &[1, n_heads]);
    let matrix_type = if quantized {
        [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::F16,
            GgmlType::BF16,
        ][(rng.next_u64() % 5) as usize]
    } else {
        [GgmlType::F32, GgmlType::F16][(rng.next_u64() % 2) as usize]
    };
    let spec = TinySpec {
        arch: if rng.next_u64().is_multiple_of(3) {
            "qwen2"
        } else {
            "llama"
        },
        n_layers: 1 + rng.next_u64() % 3,
        dim,
        ffn,
        n_heads,
        n_kv_heads,
        vocab: pick(rng, &[270, 300]),
        ctx: pick(rng, &[64, 256]) as u32,
        matrix_type,
        tied: rng.next_u64().is_multiple_of(2),
        shuffle_seed: (rng.next_u64().is_multiple_of(4)).then(|| rng.next_u64()),
        ..TinySpec::default()
    };
    let v = vocab(spec.vocab as usize, rng);
    let pre: &[u8] =
        [&b"gpt-2"[..], b"smollm", b"llama-bpe", b"qwen2", b""][(rng.next_u64() % 5) as usize];
    let kv: Vec<(&str, Value<'_>)> = vec![
        ("tokenizer.ggml.model", Value::String(b"gpt2")),
        ("tokenizer.ggml.pre", Value::String(pre)),
        (
            "tokenizer.ggml.tokens",
            Value::Array(ArrayView::new(ValueType::String, v.n_tokens, &v.tokens)),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(ArrayView::new(ValueType::I32, v.n_tokens, &v.types)),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(ArrayView::new(ValueType::String, v.n_merges, &v.merges)),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            Value::U32(v.n_tokens as u32 - 3),
        ),
        (
            "tokenizer.ggml.add_bos_token",
            Value::Bool(rng.next_u64().is_multiple_of(2)),
        ),
        (
            "tokenizer.chat_template",
            Value::String(b"{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>"),
        ),
    ];
    let mut data_rng = Rng(rng.next_u64() | 1);
    build_gguf(
        &spec,
        |name, dims, ty| {
            let n = tensor_size(dims, ty);
            match ty {
                GgmlType::F32 => (0..n / 4)
                    .flat_map(|_| {
                        let v = if name.contains("norm") {
                            1.0 + 0.1 * data_rng.f32()
                        } else {
                            0.3 * data_rng.f32()
                        };
                        v.to_le_bytes()
                    })
                    .collect(),
                // Any bits: quantized scales may be NaN or infinite.
                _ => (0..n).map(|_| data_rng.next_u64() as u8).collect(),
            }
        },
        &kv,
    )
}

// ------------------------------------------------------------ the model --

/// One metadata entry: key, value type id, and the value's raw bytes.
#[derive(Clone, Debug)]
struct Kv {
    key: Vec<u8>,
    ty: u32,
    payload: Vec<u8>,
}

/// One tensor entry.
#[derive(Clone, Debug)]
struct Tensor {
    name: Vec<u8>,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

/// A GGUF file taken apart, to be mutated and written back.
#[derive(Clone, Debug)]
struct Doc {
    version: u32,
    tensor_count: Option<u64>,
    kv_count: Option<u64>,
    kvs: Vec<Kv>,
    tensors: Vec<Tensor>,
    alignment: usize,
    data: Vec<u8>,
}

fn put_value(out: &mut Vec<u8>, v: Value<'_>) {
    match v {
        Value::U8(x) => out.push(x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(x)),
        Value::String(s) => {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
        }
        Value::Array(a) => {
            out.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            out.extend_from_slice(a.raw_bytes());
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

impl Doc {
    fn parse(bytes: &[u8]) -> Doc {
        let g = Gguf::parse(bytes).expect("seed models are valid");
        let kvs = g
            .metadata()
            .map(|(k, v)| {
                let mut payload = Vec::new();
                put_value(&mut payload, v);
                Kv {
                    key: k.as_bytes().to_vec(),
                    ty: v.value_type() as u32,
                    payload,
                }
            })
            .collect();
        let tensors = g
            .tensors()
            .map(|t| Tensor {
                name: t.name.as_bytes().to_vec(),
                dims: t.shape.as_slice().to_vec(),
                ty: t.ggml_type.id(),
                offset: t.offset,
            })
            .collect();
        Doc {
            version: g.version(),
            tensor_count: None,
            kv_count: None,
            kvs,
            tensors,
            alignment: g.alignment() as usize,
            data: bytes[g.data_start()..].to_vec(),
        }
    }

    /// The file, and the offsets of its u64 length, count, dimension and
    /// offset fields (targets for raw mutations).
    fn write(&self) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut fields = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        fields.push(out.len());
        let tensor_count = self.tensor_count.unwrap_or(self.tensors.len() as u64);
        out.extend_from_slice(&tensor_count.to_le_bytes());
        fields.push(out.len());
        let kv_count = self.kv_count.unwrap_or(self.kvs.len() as u64);
        out.extend_from_slice(&kv_count.to_le_bytes());
        for kv in &self.kvs {
            fields.push(out.len());
            out.extend_from_slice(&(kv.key.len() as u64).to_le_bytes());
            out.extend_from_slice(&kv.key);
            out.extend_from_slice(&kv.ty.to_le_bytes());
            match kv.ty {
                // String: its length; array: its length after the type.
                8 => fields.push(out.len()),
                9 => fields.push(out.len() + 4),
                _ => {}
            }
            out.extend_from_slice(&kv.payload);
        }
        for t in &self.tensors {
            fields.push(out.len());
            out.extend_from_slice(&(t.name.len() as u64).to_le_bytes());
            out.extend_from_slice(&t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                fields.push(out.len());
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.to_le_bytes());
            fields.push(out.len());
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        let align = self.alignment.clamp(1, 4096);
        while out.len() % align != 0 {
            out.push(0);
        }
        out.extend_from_slice(&self.data);
        (out, fields)
    }
}

// ------------------------------------------------------------ mutations --

fn interesting_u64(rng: &mut Rng) -> u64 {
    const V: [u64; 22] = [
        0,
        1,
        2,
        3,
        7,
        31,
        32,
        33,
        64,
        255,
        1024,
        1025,
        65_535,
        65_536,
        1 << 20,
        1 << 22,
        (1 << 24) + 1,
        u32::MAX as u64,
        1 << 32,
        i64::MAX as u64,
        u64::MAX - 1,
        u64::MAX,
    ];
    match rng.next_u64() % 4 {
        0 => rng.next_u64(),
        1 => rng.next_u64() % 600,
        _ => V[(rng.next_u64() % V.len() as u64) as usize],
    }
}

const KEYS: [&str; 16] = [
    "llama.block_count",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.key_length",
    "llama.attention.value_length",
    "llama.rope.dimension_count",
    "llama.context_length",
    "llama.vocab_size",
    "llama.rope.scaling.type",
    "general.alignment",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.scores",
    "general.architecture",
];

fn pick<T>(rng: &mut Rng, xs: &[T]) -> Option<usize> {
    (!xs.is_empty()).then(|| (rng.next_u64() % xs.len() as u64) as usize)
}

/// Applies one random mutation; returns its name (for failure reports).
fn mutate(doc: &mut Doc, raw: &mut Option<(usize, u64)>, rng: &mut Rng) -> &'static str {
    let r = rng.next_u64();
    match r % 25 {
        22..=24 => {
            // The tokenizer's arrays, element by element.
            let which = [
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges",
            ][(r >> 8) as usize % 3];
            let Some(kv) = doc.kvs.iter_mut().find(|k| k.key == which.as_bytes()) else {
                return "none";
            };
            mutate_array(&mut kv.payload, rng);
            "tokenizer array"
        }
        20 | 21 => {
            // Several dimensions at once, biased to values whose products
            // overflow 32 bits (head_count x key_length, ...).
            const DIMS: [&str; 9] = [
                "llama.block_count",
                "llama.embedding_length",
                "llama.feed_forward_length",
                "llama.attention.head_count",
                "llama.attention.head_count_kv",
                "llama.attention.key_length",
                "llama.context_length",
                "llama.vocab_size",
                "llama.rope.dimension_count",
            ];
            const BIG: [u64; 7] = [
                65_536,
                65_537,
                1 << 20,
                1 << 24,
                1 << 31,
                u32::MAX as u64,
                1 << 40,
            ];
            for _ in 0..2 + (r >> 8) % 3 {
                let key = DIMS[(rng.next_u64() % DIMS.len() as u64) as usize];
                let key = if r & 0x4_0000 != 0 {
                    key.replace("llama.", "qwen2.")
                } else {
                    key.into()
                };
                let v = BIG[(rng.next_u64() % BIG.len() as u64) as usize];
                let kv = Kv {
                    key: key.into_bytes(),
                    ty: if v > u64::from(u32::MAX) {
                        ValueType::U64
                    } else {
                        ValueType::U32
                    } as u32,
                    payload: if v > u64::from(u32::MAX) {
                        v.to_le_bytes().to_vec()
                    } else {
                        (v as u32).to_le_bytes().to_vec()
                    },
                };
                match doc.kvs.iter().position(|k| k.key == kv.key) {
                    Some(i) => doc.kvs[i] = kv,
                    None => doc.kvs.push(kv),
                }
            }
            "dimensions"
        }
        18 | 19 => {
            // A metadata entry the engine reads, added (or set, if the
            // builder wrote it) with an interesting integer.
            let key = KEYS[(r >> 8) as usize % KEYS.len()].as_bytes().to_vec();
            let v = interesting_u64(rng);
            let (ty, payload) = if r & 0x8000_0000 == 0 {
                (ValueType::U32 as u32, (v as u32).to_le_bytes().to_vec())
            } else {
                (ValueType::U64 as u32, v.to_le_bytes().to_vec())
            };
            let kv = Kv { key, ty, payload };
            match doc.kvs.iter().position(|k| k.key == kv.key) {
                Some(i) if r & 0x4000_0000 == 0 => doc.kvs[i] = kv,
                _ => doc.kvs.push(kv),
            }
            "metadata insert"
        }
        16 | 17 => {
            // Tensor data: NaN, infinity or random bits in the weights.
            let n = doc.data.len();
            for _ in 0..1 + (r >> 8) % 64 {
                let at = (rng.next_u64() as usize) % n.max(1);
                let v = [0xFF, 0x7F, 0x80, 0x00, rng.next_u64() as u8][(r >> 20) as usize % 5];
                if let Some(b) = doc.data.get_mut(at) {
                    *b = v;
                }
            }
            "tensor data"
        }
        0 | 1 => {
            // A metadata value: an interesting number in its own width.
            let Some(i) = pick(rng, &doc.kvs) else {
                return "none";
            };
            let v = interesting_u64(rng);
            let kv = &mut doc.kvs[i];
            let width = match kv.ty {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                10..=12 => 8,
                _ => 0,
            };
            if width > 0 {
                kv.payload = v.to_le_bytes()[..width].to_vec();
            } else {
                let at = (v as usize) % kv.payload.len().max(1);
                if let Some(b) = kv.payload.get_mut(at) {
                    *b = v as u8;
                }
            }
            "metadata value"
        }
        2 => {
            // A value type id, keeping or replacing the payload.
            let Some(i) = pick(rng, &doc.kvs) else {
                return "none";
            };
            doc.kvs[i].ty = (rng.next_u64() % 14) as u32;
            if rng.next_u64().is_multiple_of(2) {
                doc.kvs[i].payload = interesting_u64(rng).to_le_bytes().to_vec();
            }
            "metadata type"
        }
        3 => {
            // A float value: NaN, infinities, zero, huge, negative.
            let Some(i) = pick(rng, &doc.kvs) else {
                return "none";
            };
            let f = [f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30, 1e-30, 1.0][(r >> 8) as usize % 7];
            doc.kvs[i].ty = ValueType::F32 as u32;
            doc.kvs[i].payload = f.to_le_bytes().to_vec();
            "metadata float"
        }
        4 => {
            // A key renamed to another key the engine reads (or a near miss).
            let Some(i) = pick(rng, &doc.kvs) else {
                return "none";
            };
            let k = KEYS[(r >> 8) as usize % KEYS.len()];
            doc.kvs[i].key = if r & 0x10000 == 0 {
                k.as_bytes().to_vec()
            } else {
                format!("{k}x").into_bytes()
            };
            "metadata key"
        }
        5 => {
            // An entry deleted, duplicated or two swapped.
            let (Some(i), Some(j)) = (pick(rng, &doc.kvs), pick(rng, &doc.kvs)) else {
                return "none";
            };
            match (r >> 8) % 3 {
                0 => {
                    doc.kvs.remove(i);
                }
                1 => {
                    let kv = doc.kvs[i].clone();
                    doc.kvs.insert(j, kv);
                }
                _ => {
                    let (a, b) = (doc.kvs[i].payload.clone(), doc.kvs[i].ty);
                    doc.kvs[i].payload = doc.kvs[j].payload.clone();
                    doc.kvs[i].ty = doc.kvs[j].ty;
                    doc.kvs[j].payload = a;
                    doc.kvs[j].ty = b;
                }
            }
            "metadata entries"
        }
        6 | 7 => {
            // A tensor dimension.
            let Some(i) = pick(rng, &doc.tensors) else {
                return "none";
            };
            let t = &mut doc.tensors[i];
            let Some(d) = pick(rng, &t.dims) else {
                return "none";
            };
            t.dims[d] = match (r >> 8) % 4 {
                0 => t.dims[d].wrapping_mul(2),
                1 => t.dims[d] / 2,
                _ => interesting_u64(rng),
            };
            "tensor dim"
        }
        8 => {
            // Tensor dimensions added or removed.
            let Some(i) = pick(rng, &doc.tensors) else {
                return "none";
            };
            let t = &mut doc.tensors[i];
            if r & 0x100 == 0 {
                t.dims.push(1 + (r >> 16) % 3);
            } else {
                t.dims.pop();
            }
            "tensor rank"
        }
        9 => {
            // A tensor type: another known type, or any id.
            let Some(i) = pick(rng, &doc.tensors) else {
                return "none";
            };
            let types: Vec<GgmlType> = GgmlType::all().collect();
            doc.tensors[i].ty = if r & 0x100 == 0 {
                types[(r >> 16) as usize % types.len()].id()
            } else {
                interesting_u64(rng) as u32
            };
            "tensor type"
        }
        10 => {
            // A tensor offset.
            let Some(i) = pick(rng, &doc.tensors) else {
                return "none";
            };
            let t = &mut doc.tensors[i];
            t.offset = match (r >> 8) % 3 {
                0 => t.offset.wrapping_add(doc.alignment as u64),
                1 => t.offset.wrapping_sub(doc.alignment as u64),
                _ => interesting_u64(rng),
            };
            "tensor offset"
        }
        11 => {
            // A tensor renamed: another's name, another layer, a near miss.
            let (Some(i), Some(j)) = (pick(rng, &doc.tensors), pick(rng, &doc.tensors)) else {
                return "none";
            };
            doc.tensors[i].name = match (r >> 8) % 3 {
                0 => doc.tensors[j].name.clone(),
                1 => format!("blk.{}.attn_q.weight", (r >> 16) % 5).into_bytes(),
                _ => {
                    let mut n = doc.tensors[i].name.clone();
                    n.push(b'x');
                    n
                }
            };
            "tensor name"
        }
        12 => {
            // Tensor entries deleted, duplicated or swapped.
            let (Some(i), Some(j)) = (pick(rng, &doc.tensors), pick(rng, &doc.tensors)) else {
                return "none";
            };
            match (r >> 8) % 3 {
                0 => {
                    doc.tensors.remove(i);
                }
                1 => {
                    let t = doc.tensors[i].clone();
                    doc.tensors.push(t);
                }
                _ => doc.tensors.swap(i, j),
            }
            "tensor entries"
        }
        13 => {
            // Header counts.
            let delta = interesting_u64(rng) % 4;
            if r & 0x100 == 0 {
                doc.tensor_count = Some(if r & 0x200 == 0 {
                    doc.tensors.len() as u64 + delta
                } else {
                    interesting_u64(rng)
                });
            } else {
                doc.kv_count = Some((doc.kvs.len() as u64).wrapping_sub(delta));
            }
            "header count"
        }
        14 => {
            // A string or array length, a dimension or an offset, raw.
            *raw = Some((rng.next_u64() as usize, interesting_u64(rng)));
            "length field"
        }
        _ => {
            // The data section truncated or grown.
            let n = doc.data.len();
            if r & 0x100 == 0 {
                doc.data
                    .truncate(n.saturating_sub(1 + (r >> 16) as usize % 64));
            } else {
                doc.data
                    .extend(std::iter::repeat_n(0u8, (r >> 16) as usize % 64));
            }
            "data length"
        }
    }
}

/// Splits an array payload (element type, length, elements) of strings or
/// 4-byte integers into elements; `None` for other arrays.
fn array_elements(payload: &[u8]) -> Option<(u32, Vec<Vec<u8>>)> {
    let ty = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    let len = u64::from_le_bytes(payload.get(4..12)?.try_into().ok()?) as usize;
    let mut rest = payload.get(12..)?;
    let mut out = Vec::new();
    for _ in 0..len {
        let n = match ty {
            8 => {
                let n = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
                rest = rest.get(8..)?;
                n
            }
            4..=6 => 4,
            _ => return None,
        };
        out.push(rest.get(..n)?.to_vec());
        rest = rest.get(n..)?;
    }
    Some((ty, out))
}

/// Mutates one to eight elements of a string or 4-byte array payload.
fn mutate_array(payload: &mut Vec<u8>, rng: &mut Rng) {
    let Some((ty, mut items)) = array_elements(payload) else {
        return;
    };
    for _ in 0..1 + rng.next_u64() % 8 {
        let Some(i) = pick(rng, &items) else { return };
        let r = rng.next_u64();
        if ty == 8 {
            items[i] = match r % 8 {
                0 => Vec::new(),
                1 => "a".repeat(1 + (r >> 8) as usize % 300).into_bytes(),
                2 => items[(r >> 8) as usize % items.len()].clone(),
                3 => vec![0xFF, 0xFE, b'<'],
                4 => format!("<|x{}|>", r % 7).into_bytes(),
                5 => format!("{} {}", (b'a' + (r % 5) as u8) as char, "zz").into_bytes(),
                6 => {
                    items.remove(i);
                    continue;
                }
                _ => {
                    let mut t = items[i].clone();
                    t.extend_from_slice(&items[(r >> 8) as usize % items.len()]);
                    t
                }
            };
        } else {
            let v: i32 = [0, 1, 2, 3, 4, 5, 6, -1, 99, i32::MIN][(r % 10) as usize];
            items[i] = v.to_le_bytes().to_vec();
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
    for it in &items {
        if ty == 8 {
            out.extend_from_slice(&(it.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(it);
    }
    *payload = out;
}

/// A text to encode: pieces of prose, special-token texts, multibyte
/// characters, whitespace runs and long runs of one letter (longer than a
/// small `max_piece_bytes`).
fn random_text(rng: &mut Rng) -> String {
    const PIECES: [&str; 14] = [
        "Hello",
        " the tea is hot",
        "<|im_start|>",
        "<|im_end|>",
        "<tool>",
        "<tool_call_with_a_long_name_that_goes_on_and_on_and_on_and_on_and_on>",
        "<|endoftext|>",
        " 12345",
        "  \t\n\n ",
        "éé漢字",
        "don't",
        "\u{85}\u{200b}",
        "<|",
        "<tool_call_with",
    ];
    let mut s = String::new();
    for _ in 0..rng.next_u64() % 12 {
        if rng.next_u64().is_multiple_of(10) {
            let run = 1 + (rng.next_u64() % 300) as usize;
            s.push_str(&"a".repeat(run));
        } else if rng.next_u64().is_multiple_of(10) {
            // A long token (if the vocabulary has them), whole or cut short.
            let t = long_tool_call((rng.next_u64() % (MAX_LONG as u64 + 4)) as usize);
            let cut = (rng.next_u64() % (t.len() as u64 + 8)) as usize;
            s.push_str(t.get(..cut).unwrap_or(&t));
        } else {
            s.push_str(PIECES[(rng.next_u64() % PIECES.len() as u64) as usize]);
        }
    }
    s
}

// ------------------------------------------------------------ the path --

/// How far a case got, for the statistics.
#[derive(Clone, Copy, Debug, Default)]
struct Reached {
    model: u32,
    engine: u32,
    eval: u32,
    sampled: u32,
}

/// An arena with guard bytes on both sides, 64-byte aligned.
struct Guarded {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Guarded {
    fn new(len: usize) -> Guarded {
        let buf = vec![GUARD_BYTE; len + 2 * GUARD + 64];
        let start = GUARD + buf[GUARD..].as_ptr().align_offset(64);
        Guarded { buf, start, len }
    }

    fn arena(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    fn guards_intact(&self) -> bool {
        self.buf[..self.start].iter().all(|&b| b == GUARD_BYTE)
            && self.buf[self.start + self.len..]
                .iter()
                .all(|&b| b == GUARD_BYTE)
    }
}

/// Formats an error (every `Display` arm must work on any value).
fn shown(e: Error) -> String {
    let s = format!("{e}");
    assert!(!s.is_empty());
    s
}

/// Runs the whole path on `bytes`; panics (with context) on a violation.
fn run_path(bytes: &[u8], rng: &mut Rng, reached: &mut Reached) {
    phase(1);
    let model = match Model::from_bytes(bytes) {
        Ok(m) => m,
        Err(e) => {
            shown(e);
            return;
        }
    };
    reached.model += 1;
    let params = EngineParams {
        plan: PlanParams {
            ctx_tokens: [0, 1, 24, 64][(rng.next_u64() % 4) as usize],
            allow_ctx_beyond_train: rng.next_u64().is_multiple_of(4),
            kv_type: [KvType::F16, KvType::F16, KvType::F32, KvType::Q8_0]
                [(rng.next_u64() % 4) as usize],
            page_tokens: [1, 4, 16][(rng.next_u64() % 3) as usize],
            max_batch: [1, 3, 8][(rng.next_u64() % 3) as usize],
            max_outputs: [1, 2, 8][(rng.next_u64() % 3) as usize],
            threads: 1,
            tokenizer: TokenizerOptions {
                pre_tokenizer: None,
                max_piece_bytes: [64, 1024][(rng.next_u64() % 2) as usize],
            },
        },
        kernel: None,
    };
    // The planner on its own, both ways.
    phase(2);
    let planned = if params.plan.ctx_tokens > 0 {
        plan::plan(&model, &params.plan)
    } else {
        plan::plan_for_budget(&model, &params.plan, ARENA_CAP)
    };
    let total = match planned {
        Ok(p) => {
            // The items lie back to back from 0 and end at the total.
            let end = p.items.iter().try_fold(0usize, |at, i| {
                (i.offset == at).then(|| at.checked_add(i.bytes)).flatten()
            });
            assert_eq!(end, Some(p.total_bytes), "plan items do not tile the total");
            p.total_bytes
        }
        Err(e) => {
            shown(e);
            ARENA_CAP / 4
        }
    };
    // Sometimes one byte short of the plan: a Budget error, never an overrun.
    let short = rng.next_u64().is_multiple_of(8);
    let len = total.min(ARENA_CAP).saturating_sub(usize::from(short));
    let features = if rng.next_u64().is_multiple_of(2) {
        CpuFeatures::none()
    } else {
        CpuFeatures::detect()
    };
    let mut guarded = Guarded::new(len);
    phase(3);
    {
        let engine = match Engine::new(bytes, guarded.arena(), &params, &features) {
            Ok(e) => e,
            Err(e) => {
                shown(e);
                return check_guards(&guarded);
            }
        };
        reached.engine += 1;
        assert!(
            engine.arena_used() <= len,
            "engine claims more than its arena"
        );
        let vocab = engine.vocab() as u32;
        // Tokens: the model's own tokenizer on a random text, or raw ids.
        let mut ids = [0u32; 48];
        let mut n = 0;
        phase(4);
        if let Some(tok) = engine.tokenizer_mut() {
            let text = random_text(rng);
            match tok.encode(&text, rng.next_u64().is_multiple_of(2), &mut ids) {
                Ok(k) => n = k.min(ids.len()),
                Err(e) => {
                    shown(e);
                }
            }
        }
        if n == 0 {
            n = 1 + (rng.next_u64() % 8) as usize;
            for id in ids.iter_mut().take(n) {
                // Mostly valid ids, sometimes one out of range.
                *id = (rng.next_u64() % (u64::from(vocab) + 2)) as u32;
            }
        }
        let outputs = if rng.next_u64().is_multiple_of(3) {
            Outputs::All
        } else {
            Outputs::Last
        };
        phase(5);
        let before = engine.n_past();
        let toks = &ids[..n.min(ids.len())];
        match engine.eval(&Serial, toks, outputs) {
            Ok(logits) => {
                reached.eval += 1;
                assert_eq!(logits.len() % vocab.max(1) as usize, 0);
            }
            Err(e) => {
                shown(e);
                assert_eq!(
                    engine.n_past(),
                    before,
                    "a failed eval changed the sequence"
                );
            }
        }
        // Sample and detokenize a few steps.
        phase(6);
        let sp = if rng.next_u64().is_multiple_of(2) {
            SamplerParams::greedy()
        } else {
            SamplerParams {
                seed: rng.next_u64(),
                repeat_penalty: 1.3,
                ..SamplerParams::default()
            }
        };
        let mut sampler = Sampler::new(sp).expect("valid sampler params");
        let mut detok = Detokenizer::new(rng.next_u64().is_multiple_of(2));
        for _ in 0..3 {
            let id = match engine.sample(&mut sampler) {
                Ok(id) => id,
                Err(e) => {
                    shown(e);
                    break;
                }
            };
            reached.sampled += 1;
            assert!(id < vocab, "sampled id {id} outside the vocabulary {vocab}");
            sampler.accept(id);
            if let Some(tok) = engine.tokenizer() {
                let mut out = [0u8; 256];
                if let Err(e) = detok.push(tok, id, &mut out) {
                    shown(e);
                }
                let mut text = [0u8; 1024];
                if let Err(e) = tok.decode_with(&ids[..n], true, &mut text) {
                    shown(e);
                }
            }
            if let Err(e) = engine.eval(&Serial, &[id], Outputs::Last) {
                shown(e);
                break;
            }
        }
        let mut tail = [0u8; 8];
        let _ = detok.finish(&mut tail);
        let _ = engine.truncate(rng.next_u64() as usize % 4);
        let _ = engine.reset();
    }
    check_guards(&guarded);
    phase(7);
}

fn check_guards(g: &Guarded) {
    assert!(g.guards_intact(), "bytes outside the arena were written");
}

/// One case: a seed model, mutated, through the path. Returns the
/// mutations applied (for the report).
fn run_case(case_seed: u64, reached: &mut Reached) -> Vec<&'static str> {
    let mut rng = Rng(case_seed | 1);
    phase(0);
    let seed = seed_model(&mut rng);
    let mut doc = Doc::parse(&seed);
    let mut raw = None;
    let mut applied = Vec::new();
    // Mostly one mutation (to get past the parser), sometimes none (the
    // seed itself), sometimes up to four.
    let n_mutations = match rng.next_u64() % 10 {
        0 | 1 => 0,
        2..=6 => 1,
        _ => 2 + rng.next_u64() % 3,
    };
    for _ in 0..n_mutations {
        applied.push(mutate(&mut doc, &mut raw, &mut rng));
    }
    let (mut bytes, fields) = doc.write();
    if let Some((which, value)) = raw {
        if let Some(&at) = fields.get(which % fields.len().max(1)) {
            if let Some(dst) = bytes.get_mut(at..at + 8) {
                dst.copy_from_slice(&value.to_le_bytes());
            }
        }
    }
    if rng.next_u64().is_multiple_of(16) {
        let keep = (rng.next_u64() as usize) % (bytes.len() + 1);
        bytes.truncate(keep);
        applied.push("truncate");
    }
    if std::env::var("ALM_FUZZ_CASE").is_ok() {
        std::eprintln!("mutations {applied:?}, {} bytes", bytes.len());
    }
    run_path(&bytes, &mut rng, reached);
    applied
}

/// Seconds of a long run, or `None` for the quick default.
fn budget_from_env() -> Option<Duration> {
    std::env::var("ALM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
}

static CURRENT_CASE: AtomicU64 = AtomicU64::new(0);
/// Cases started so far (the watchdog sees progress through it).
static CASES_STARTED: AtomicU64 = AtomicU64::new(0);
/// The step of the path the current case is in, for a hang report (the
/// regression tests that run the path beside the fuzzer set it too).
static PHASE: AtomicUsize = AtomicUsize::new(0);
const PHASES: [&str; 8] = [
    "building", "parse", "plan", "engine", "encode", "eval", "sample", "done",
];
/// Where the last panic happened (set by the hook `ALM_FUZZ_KEEP_GOING` installs).
static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// CPU seconds one case may use before the watchdog calls it a hang.
const HANG_CPU_SECONDS: f64 = 120.0;
/// CPU seconds above which a finished case fails the run as too slow: a
/// case takes about a millisecond, so this is superlinear work, not noise.
const SLOW_CPU_SECONDS: f64 = 10.0;

fn phase(p: usize) {
    PHASE.store(p, Ordering::Relaxed);
}

/// The `/proc` stat file of the calling thread, by a path that other
/// threads can read too (`None` off Linux).
fn own_stat_path() -> Option<PathBuf> {
    // "/proc/thread-self" links to "<pid>/task/<tid>".
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(Path::new("/proc").join(link).join("stat"))
}

/// CPU seconds used by the thread whose stat file is `stat_path`.
fn cpu_seconds(stat_path: &Path) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may contain spaces): utime and
    // stime are the 12th and 13th of them, in clock ticks (100 a second on
    // Linux for this interface).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Aborts the process, naming the case and its step, if one case uses
/// [`HANG_CPU_SECONDS`] of the fuzzing thread's CPU time: CPU time, since
/// a starved or stopped process on a shared machine is slow without
/// hanging, and the thread's own, since other tests run beside it. Where
/// CPU time cannot be read, 30 minutes of wall time. Stops when dropped.
struct Watchdog {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Watches the calling thread.
    fn start() -> Watchdog {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stat = own_stat_path();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let cpu = || stat.as_deref().and_then(cpu_seconds);
            let mut last = (u64::MAX, 0.0f64, Instant::now());
            while !flag.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_secs(1));
                let n = CASES_STARTED.load(Ordering::Relaxed);
                let now = cpu();
                if n != last.0 {
                    last = (n, now.unwrap_or(0.0), Instant::now());
                    continue;
                }
                let stuck = match now {
                    Some(c) => c - last.1 > HANG_CPU_SECONDS,
                    None => last.2.elapsed() > Duration::from_secs(1800),
                };
                if stuck && !flag.load(Ordering::Relaxed) {
                    let case = CURRENT_CASE.load(Ordering::Relaxed);
                    let step = PHASES.get(PHASE.load(Ordering::Relaxed)).unwrap_or(&"?");
                    std::eprintln!(
                        "engine fuzzer: case {case:#x} is stuck in {step}; replay with \
                         ALM_FUZZ_CASE={case:#x}"
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The seed of case `n` of a run from `base` (SplitMix64 of both).
fn case_seed(base: u64, n: u64) -> u64 {
    let mut x = base ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[test]
fn engine_path_survives_mutated_models() {
    let mut reached = Reached::default();
    if let Some(case) = std::env::var("ALM_FUZZ_CASE")
        .ok()
        .and_then(|s| parse_seed(&s))
    {
        let applied = run_case(case, &mut reached);
        std::eprintln!("case {case:#x}: {applied:?}, reached {reached:?}");
        return;
    }
    let base = std::env::var("ALM_FUZZ_SEED")
        .ok()
        .and_then(|s| parse_seed(&s))
        .unwrap_or(0x00A1_E9A1);
    let budget = budget_from_env();
    let max_cases: u64 = std::env::var("ALM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if budget.is_some() { u64::MAX } else { 1000 });
    let epoch = Instant::now();
    let watchdog = Watchdog::start();
    // A case's cost: this thread's CPU time where it can be read, else
    // wall time (reported, not checked).
    let stat = own_stat_path();
    let cpu_clock = stat.as_deref().and_then(cpu_seconds).is_some();
    let clock = || match stat.as_deref().and_then(cpu_seconds) {
        Some(cpu) if cpu_clock => cpu,
        _ => epoch.elapsed().as_secs_f64(),
    };
    // Exploration: record every distinct panic site instead of stopping.
    let keep_going = std::env::var("ALM_FUZZ_KEEP_GOING").is_ok();
    let mut sites: Vec<(String, u64, u64)> = Vec::new();
    if keep_going {
        std::panic::set_hook(std::boxed::Box::new(|info| {
            let site = match info.location() {
                Some(l) => format!(
                    "{}:{}: {}",
                    l.file(),
                    l.line(),
                    info.payload_as_str().unwrap_or("")
                ),
                None => String::from("?"),
            };
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = site;
            }
        }));
    }
    let mut slowest = (0.0f64, 0u64);
    let mut cases = 0u64;
    loop {
        let done = cases >= max_cases || budget.is_some_and(|b| epoch.elapsed() >= b);
        if done {
            break;
        }
        let case_seed = case_seed(base, cases);
        CURRENT_CASE.store(case_seed, Ordering::Relaxed);
        CASES_STARTED.fetch_add(1, Ordering::Relaxed);
        let started = clock();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut r = Reached::default();
            let applied = run_case(case_seed, &mut r);
            (r, applied)
        }));
        let took = clock() - started;
        if took > slowest.0 {
            slowest = (took, case_seed);
        }
        match result {
            Ok((r, applied)) => {
                if std::env::var("ALM_FUZZ_VERBOSE").is_ok() {
                    std::eprintln!("{case_seed:#x} {applied:?} {r:?}");
                }
                reached.model += r.model;
                reached.engine += r.engine;
                reached.eval += r.eval;
                reached.sampled += r.sampled;
            }
            Err(_) if keep_going => {
                let site = LAST_PANIC.lock().map(|s| s.clone()).unwrap_or_default();
                match sites.iter_mut().find(|s| s.0 == site) {
                    Some(s) => s.2 += 1,
                    None => sites.push((site, case_seed, 1)),
                }
            }
            Err(_) => panic!(
                "engine fuzzer: case {case_seed:#x} (case {cases} of base seed {base:#x}) \
                 panicked; replay with ALM_FUZZ_CASE={case_seed:#x}"
            ),
        }
        cases += 1;
    }
    drop(watchdog);
    let clock_kind = if cpu_clock { "CPU" } else { "wall" };
    std::eprintln!(
        "engine fuzzer: {cases} cases in {:.1} s from seed {base:#x}; reached {reached:?}; \
         slowest case {:#x} ({:.2} s {clock_kind} time)",
        epoch.elapsed().as_secs_f64(),
        slowest.1,
        slowest.0
    );
    if keep_going {
        let _ = std::panic::take_hook();
        for (site, seed, n) in &sites {
            std::eprintln!("panic site ({n} cases, e.g. ALM_FUZZ_CASE={seed:#x}): {site}");
        }
        assert!(sites.is_empty(), "{} distinct panic sites", sites.len());
    }
    // Superlinear work shows as one slow case long before it hangs.
    assert!(
        !cpu_clock || slowest.0 < SLOW_CPU_SECONDS,
        "engine fuzzer: case {:#x} used {:.1} s of CPU time; replay with ALM_FUZZ_CASE={:#x}",
        slowest.1,
        slowest.0,
        slowest.1
    );
    // The mutations must leave enough models intact to exercise the engine.
    assert!(
        reached.engine as u64 * 20 >= cases,
        "too few cases reached Engine::new: {reached:?}"
    );
    assert!(
        reached.eval as u64 * 40 >= cases,
        "too few cases reached eval: {reached:?}"
    );
}

// ---------------------------------------------------------- regressions --
//
// Every crash the fuzzer found, minimized to the smallest file that still
// showed it, runs the whole path here.

/// Runs the path on `bytes` with several seeds (engine parameters, texts).
fn survives(bytes: &[u8]) {
    for seed in 1..8 {
        let mut reached = Reached::default();
        run_path(bytes, &mut Rng(seed), &mut reached);
    }
}

/// Found by the first runs (panic site `hparams.rs`: "attempt to multiply
/// with overflow" in `Hparams::q_dim`, 45 of 150,770 cases): a `dimensions`
/// mutation set both head counts and the key length to 65536, whose product
/// is 2^32. Debug builds panicked in `Model::from_bytes`; release builds
/// wrapped the query width to 0, accepted empty attention tensors, and
/// failed in `eval`. Minimized: the default tiny model with the three keys.
#[test]
fn regression_query_width_of_two_to_the_32() {
    use crate::testutil::build_gguf_edit;
    for (heads, key_length) in [(65_536u32, 65_536u32), (1 << 20, 1 << 12), (4, u32::MAX)] {
        let bytes = build_gguf_edit(
            &TinySpec::default(),
            |_, d, t| vec![0u8; tensor_size(d, t)],
            &[],
            &[
                ("llama.attention.head_count", Some(Value::U32(heads))),
                ("llama.attention.head_count_kv", Some(Value::U32(heads))),
                ("llama.attention.key_length", Some(Value::U32(key_length))),
            ],
        );
        assert!(matches!(
            Model::from_bytes(&bytes),
            Err(Error::Model(crate::error::ModelError::TooLarge { .. }))
        ));
        survives(&bytes);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_watchdog_clock_is_this_threads_cpu_time() {
    let stat = own_stat_path().expect("/proc/thread-self readable");
    let before = cpu_seconds(&stat).expect("thread stat readable");
    // Spin until the clock moves 50 ms (it counts 10 ms ticks), giving up
    // after a minute of wall time (a clock that never moves).
    let start = Instant::now();
    let mut x = 0u64;
    let mut after = before;
    while after < before + 0.05 && start.elapsed() < Duration::from_secs(60) {
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        after = cpu_seconds(&stat).expect("thread stat readable");
    }
    assert!(after >= before + 0.05, "{before} {after}");
    // Each thread has its own clock, not the process's, which other tests
    // move.
    let other = std::thread::spawn(|| own_stat_path().expect("/proc/thread-self readable"))
        .join()
        .expect("thread ran");
    assert_ne!(other, stat, "each thread has its own clock");
}
