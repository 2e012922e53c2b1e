//! plan == carve, item by item, on the real models: the planner's item list
//! (names, offsets, bytes) is exactly what init carves, for several
//! parameter sets, on SmolLM2 (byte-level BPE) as an engine and on Gemma 3
//! (SentencePiece; the engine cannot run the model, its tokenizer runs
//! standalone) as a standalone tokenizer.

mod common;

use arenalm_core::engine::{Engine, EngineParams, Outputs};
use arenalm_core::kernels::CpuFeatures;
use arenalm_core::kv::KvType;
use arenalm_core::mem::plan::{self, PlanParams};
use arenalm_core::mem::{Arena, ItemGroup};
use arenalm_core::model::Model;
use arenalm_core::parallel::Serial;
use arenalm_core::tokenizer::{Tokenizer, TokenizerOptions};
use common::{gguf, model_bytes, GEMMA3, SMOLLM2};

/// A 64-byte-aligned, zeroed buffer of `len` bytes (leaked: engines borrow it).
fn aligned(len: usize) -> &'static mut [u8] {
    let buf: &'static mut [u8] = Box::leak(vec![0u8; len + 64].into_boxed_slice());
    let skew = buf.as_ptr().align_offset(64);
    &mut buf[skew..skew + len]
}

fn params() -> Vec<PlanParams> {
    let base = PlanParams {
        ctx_tokens: 256,
        ..PlanParams::default()
    };
    vec![
        base,
        PlanParams {
            ctx_tokens: 100,
            kv_type: KvType::Q8_0,
            page_tokens: 32,
            max_batch: 16,
            max_outputs: 4,
            threads: 3,
            ..base
        },
        PlanParams {
            ctx_tokens: 513,
            kv_type: KvType::F32,
            page_tokens: 8,
            max_batch: 128,
            threads: 2,
            tokenizer: TokenizerOptions {
                max_piece_bytes: 1000,
                ..TokenizerOptions::default()
            },
            ..base
        },
        // Fill a budget (set below).
        PlanParams {
            ctx_tokens: 0,
            ..base
        },
    ]
}

#[test]
fn the_engine_carves_exactly_the_planned_items_on_smollm2() {
    for file in [SMOLLM2, "SmolLM2-135M-Instruct.Q8_0.gguf"] {
        let bytes = model_bytes(file);
        let model = Model::from_bytes(bytes).unwrap();
        for p in params() {
            let budget = 40 << 20;
            let planned = plan::plan_for_budget(&model, &p, budget).unwrap();
            let arena = aligned(planned.total_bytes);
            let e = Engine::new(
                bytes,
                arena,
                &EngineParams {
                    plan: p,
                    kernel: None,
                },
                &CpuFeatures::none(),
            )
            .unwrap_or_else(|err| panic!("{file} {p:?}: {err}"));
            // What init carved (the engine's plan lists the carving) equals
            // the planner's list, item by item.
            let carved = e.plan().items;
            assert_eq!(carved.len(), planned.items.len(), "{file} {p:?}");
            for (c, q) in carved.iter().zip(planned.items.iter()) {
                assert_eq!(
                    (c.name, c.offset, c.bytes),
                    (q.name, q.offset, q.bytes),
                    "{file} {p:?}"
                );
            }
            assert_eq!(e.arena_used(), planned.total_bytes);
            // The model index, 12 tokenizer items, 3 KV items, 8 scratch
            // buffers and the engine state.
            assert_eq!(carved.len(), 25);
            let group = |g| carved.iter().filter(|i| i.group == g).count();
            assert_eq!(group(ItemGroup::Tokenizer), 12);
            assert_eq!(group(ItemGroup::Scratch), 8);
            assert_eq!(
                carved.group_bytes(ItemGroup::Tokenizer),
                planned.tokenizer_bytes
            );
            // BPE: merges take bytes; no SentencePiece text scratch.
            assert!(carved.get("tokenizer: merge pairs").unwrap().bytes > 0);
            assert_eq!(carved.get("tokenizer: encode text").unwrap().bytes, 0);
            // And it runs.
            let tok = e.require_tokenizer().unwrap().bos().unwrap_or(1);
            e.eval(&Serial, &[tok], Outputs::Last).unwrap();
        }
    }
}

#[test]
fn a_standalone_tokenizer_carves_exactly_its_planned_items_for_both_kinds() {
    for file in [SMOLLM2, GEMMA3] {
        let g = gguf(file);
        for max_piece_bytes in [64, 1000, 16 * 1024] {
            let opts = TokenizerOptions {
                max_piece_bytes,
                ..TokenizerOptions::default()
            };
            let items = Tokenizer::standalone_plan(&g, &opts).unwrap();
            // The tables' 12 items and the tokenizer itself.
            assert_eq!(items.len(), 13, "{file}");
            let state = items.get("tokenizer state").unwrap();
            assert_eq!(state.group, ItemGroup::State);
            // The tables alone are what Tokenizer::new takes.
            assert_eq!(
                items.group_bytes(ItemGroup::Tokenizer),
                Tokenizer::arena_bytes(&g, &opts).unwrap()
            );
            // Carve it after 64 used bytes: offsets count from where it starts.
            let buf = aligned(items.total() + 64);
            let base = buf.as_ptr() as usize;
            let mut arena = Arena::new(buf);
            arena.take_bytes(1, "before").unwrap();
            let tok = Tokenizer::new_in(&g, &mut arena, &opts).unwrap();
            assert_eq!(arena.used(), 64 + items.total(), "{file}");
            assert_eq!(tok as *const _ as usize - base - 64, state.offset);
            // SentencePiece: encode text scratch, no merges; BPE the reverse.
            let spm = file == GEMMA3;
            assert_eq!(items.get("tokenizer: merge pairs").unwrap().bytes == 0, spm);
            assert_eq!(items.get("tokenizer: encode text").unwrap().bytes > 0, spm);
            assert!(!tok.encode_to_vec_for_test("Hello").is_empty());
            // One byte less is refused before anything is carved.
            let short = aligned(items.total() - 1);
            let mut arena = Arena::new(short);
            assert!(Tokenizer::new_in(&g, &mut arena, &opts).is_err());
            assert_eq!(arena.used(), 0);
        }
    }
}

/// Encoding through the public API.
trait EncodeForTest {
    fn encode_to_vec_for_test(&mut self, text: &str) -> Vec<u32>;
}

impl EncodeForTest for Tokenizer<'_> {
    fn encode_to_vec_for_test(&mut self, text: &str) -> Vec<u32> {
        let mut out = vec![0u32; 64];
        let n = self.encode(text, false, &mut out).unwrap();
        out.truncate(n);
        out
    }
}

#[test]
fn the_sizing_model_sizes_smollm2_as_the_gguf_and_the_engine_plan_do() {
    use arenalm_core::gguf::GgmlType;
    use arenalm_core::mem::arch::{ArchSpec, WhatIfParams};
    // Our Q8_0 twin: every matrix Q8_0, norms f32, as the model assumes.
    let bytes = model_bytes("SmolLM2-135M-Instruct.Q8_0.gguf");
    let model = Model::from_bytes(bytes).unwrap();
    let p = PlanParams {
        ctx_tokens: 2048,
        threads: 2,
        max_outputs: 3,
        ..PlanParams::default()
    };
    let plan = plan::plan(&model, &p).unwrap();
    let w = ArchSpec::from_hparams(&model.hparams)
        .what_if(&WhatIfParams {
            weight_type: GgmlType::Q8_0,
            kv_type: p.kv_type,
            ctx_tokens: 2048,
            sequences: 1,
            shards: 1,
            scratch: p.scratch(),
        })
        .unwrap();
    let elements: u64 = model.gguf.tensors().map(|t| t.n_elements()).sum();
    // SmolLM2-135M: 134,515,008 parameters.
    assert_eq!(elements, 134_515_008);
    assert_eq!(w.model.params_total, elements);
    assert_eq!(w.model.weights_resident_bytes, plan.weights_in_place_bytes);
    assert_eq!(w.shard_scratch, plan.scratch);
    assert_eq!(w.model.kv_bytes_per_token, plan.kv_bytes_per_token as u64);
    assert_eq!(w.model.kv_bytes, 2048 * 23_040);
}
