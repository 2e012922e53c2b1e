//! Every formula of the sizing model against a number worked out by hand
//! (in the comment above each assertion), on public architectures: the
//! parameter counts equal the published totals, which checks the tensor
//! list as well as the arithmetic.

use super::*;
use crate::kernels::act_bytes;
use crate::mem::plan::{self, PlanParams};
use crate::model::Model;
use crate::testutil::{zero_gguf, TinySpec};

fn dense(
    n_layers: u32,
    dim: u32,
    (n_heads, n_kv_heads, head_dim): (u32, u32, u32),
    ffn_dim: u32,
    vocab: u32,
    tied: bool,
) -> ArchSpec {
    ArchSpec {
        n_layers,
        dim,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim,
        vocab,
        tied_embeddings: tied,
        qkv_bias: false,
        norms_per_layer: 2,
        qk_norm: false,
        rope_dim: 0,
        mla: None,
        sliding_window: None,
        moe: None,
    }
}

fn llama_3_1_8b() -> ArchSpec {
    dense(32, 4096, (32, 8, 128), 14_336, 128_256, false)
}

fn qwen2_5_0_5b() -> ArchSpec {
    ArchSpec {
        qkv_bias: true,
        ..dense(24, 896, (14, 2, 64), 4864, 151_936, true)
    }
}

fn mistral_7b_v0_1() -> ArchSpec {
    ArchSpec {
        sliding_window: Some(SlidingWindow {
            window: 4096,
            n_sliding_layers: 32,
        }),
        ..dense(32, 4096, (32, 8, 128), 14_336, 32_000, false)
    }
}

fn gemma3(n_layers: u32, dim: u32, ffn: u32) -> ArchSpec {
    // One global layer in six: layers 5, 11, 17, ... keep every token.
    ArchSpec {
        norms_per_layer: 4,
        qk_norm: true,
        sliding_window: Some(SlidingWindow {
            window: 512,
            n_sliding_layers: n_layers - n_layers / 6,
        }),
        ..dense(n_layers, dim, (4, 1, 256), ffn, 262_144, true)
    }
}

fn mixtral_8x7b() -> ArchSpec {
    ArchSpec {
        moe: Some(Moe {
            n_experts: 8,
            n_active: 2,
            expert_ffn_dim: 14_336,
            n_shared: 0,
            n_dense_layers: 0,
            router_bias: false,
        }),
        ..dense(32, 4096, (32, 8, 128), 14_336, 32_000, false)
    }
}

fn deepseek_v3() -> ArchSpec {
    ArchSpec {
        mla: Some(Mla {
            q_lora_rank: 1536,
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
        }),
        moe: Some(Moe {
            n_experts: 256,
            n_active: 8,
            expert_ffn_dim: 2048,
            n_shared: 1,
            n_dense_layers: 3,
            router_bias: true,
        }),
        ..dense(61, 7168, (128, 128, 128), 18_432, 129_280, false)
    }
}

fn params(weight_type: GgmlType, ctx_tokens: u32) -> WhatIfParams {
    WhatIfParams {
        weight_type,
        kv_type: KvType::F16,
        ctx_tokens,
        sequences: 1,
        shards: 1,
        scratch: ScratchParams {
            max_batch: 16,
            max_outputs: 1,
            threads: 2,
            page_tokens: 16,
        },
    }
}

/// One quantized activation block (32 values); its size is the kernels' business.
fn q8_block() -> usize {
    act_bytes(ActFormat::Q8, 1, 32).unwrap()
}

#[test]
fn llama_3_1_8b_weights_kv_and_scratch() {
    let a = llama_3_1_8b();
    let w = a.what_if(&params(GgmlType::F16, 8192)).unwrap();
    // Per layer: q 4,096 x 4,096 = 16,777,216; k, v 1,024 x 4,096 = 4,194,304
    // each; o 16,777,216; gate, up, down 14,336 x 4,096 = 58,720,256 each;
    // two norms of 4,096: 218,112,000. x 32 = 6,979,584,000; embeddings and
    // head 2 x 128,256 x 4,096 = 1,050,673,152; final norm 4,096:
    // 8,030,261,248 (the published count).
    assert_eq!(w.model.params_total, 8_030_261_248);
    // F16: f32 norms 32 x 8,192 + 4,096 = 266,240 params = 1,064,960 bytes;
    // matrices (8,030,261,248 - 266,240) x 2 = 16,059,990,016: 16,061,054,976.
    assert_eq!(w.model.weights_resident_bytes, 16_061_054_976);
    // Per token all but the embedding table (525,336,576 params, 1,050,673,152 bytes).
    assert_eq!(w.model.params_active, 7_504_924_672);
    assert_eq!(w.model.weights_read_per_token_bytes, 15_010_381_824);
    // KV F16: 32 layers x 2 x 8 KV heads x 128 x 2 bytes = 131,072 a token;
    // 8,192 tokens: 1,073,741,824.
    assert_eq!(w.model.kv_bytes_per_token, 131_072);
    assert_eq!(w.model.kv_bytes, 1_073_741_824);
    // One shard is the whole model.
    assert_eq!(w.shard, w.model);

    // Q8_0 (34 bytes per 32 weights): 8,029,995,008 / 32 x 34 = 8,531,869,696
    // + the f32 norms 1,064,960 = 8,532,934,656.
    let q8 = a.what_if(&params(GgmlType::Q8_0, 8192)).unwrap();
    assert_eq!(q8.model.weights_resident_bytes, 8_532_934_656);

    // Scratch (batch 16, 2 threads, 1 output row, pages of 16), Q8_0 weights:
    let s = q8.shard_scratch;
    // x, xb: 16 x 4,096 f32 = 262,144 bytes each.
    assert_eq!((s.x, s.xb), (262_144, 262_144));
    // work: 16 x max(4,096 + 1,024 + 1,024 + 4,096, 2 x 14,336) = 16 x 28,672 f32 = 1,835,008.
    assert_eq!(s.work, 1_835_008);
    // act: the widest input is down's 14,336 = 448 blocks, 16 rows.
    assert_eq!(s.act, (16 * 448 * q8_block()).div_ceil(64) * 64);
    // attn: 2 threads x 4 heads per KV head x 16 page scores = 128 f32 = 512.
    assert_eq!(s.attn, 512);
    // rope 16 x 128 f32 = 8,192; logits 128,256 f32 = 513,024; candidates x 8 = 1,026,048.
    assert_eq!((s.rope, s.logits, s.candidates), (8192, 513_024, 1_026_048));
    assert_eq!(
        q8.shard_total_bytes,
        8_532_934_656 + 1_073_741_824 + s.total() as u64
    );
}

#[test]
fn llama_3_1_8b_on_four_tensor_parallel_shards() {
    let mut p = params(GgmlType::F16, 8192);
    p.shards = 4;
    let w = llama_3_1_8b().what_if(&p).unwrap();
    // A shard: 8 query heads, 2 KV heads, ffn 3,584, vocab 32,064.
    // KV: 32 x 2 x 2 x 128 x 2 = 32,768 a token; 8,192 tokens: 268,435,456.
    assert_eq!(w.shard.kv_bytes_per_token, 32_768);
    assert_eq!(w.shard.kv_bytes, 268_435_456);
    // Per layer: q 1,024 x 4,096 = 4,194,304; k, v 256 x 4,096 = 1,048,576
    // each; o 4,194,304; gate, up, down 3,584 x 4,096 = 14,680,064 each:
    // 54,525,952; x 32 = 1,744,830,464; embeddings and head 2 x 32,064 x
    // 4,096 = 262,668,288; norms (replicated) 266,240: 2,007,764,992.
    assert_eq!(w.shard.params_total, 2_007_764_992);
    // F16: (2,007,764,992 - 266,240) x 2 + 266,240 x 4 = 4,016,062,464.
    assert_eq!(w.shard.weights_resident_bytes, 4_016_062_464);
    // The whole model is unchanged by sharding.
    assert_eq!(w.model.params_total, 8_030_261_248);
    // Scratch: work 16 x max(1,024 + 256 + 256 + 1,024, 2 x 3,584) = 16 x 7,168
    // f32 = 458,752; logits 32,064 f32 = 128,256.
    assert_eq!(w.shard_scratch.work, 458_752);
    assert_eq!(w.shard_scratch.logits, 128_256);
    // 16 shards: 8 KV heads replicated, one per shard: 16,384 a token.
    p.shards = 16;
    assert_eq!(
        llama_3_1_8b().what_if(&p).unwrap().shard.kv_bytes_per_token,
        16_384
    );
}

#[test]
fn qwen2_5_0_5b_has_biases_and_tied_embeddings() {
    let w = qwen2_5_0_5b()
        .what_if(&params(GgmlType::F16, 32_768))
        .unwrap();
    // Per layer: q 896 x 896 = 802,816; k, v 128 x 896 = 114,688 each; o
    // 802,816; gate, up, down 4,864 x 896 = 4,358,144 each; f32: biases 896 +
    // 128 + 128 and norms 2 x 896: 14,912,384. x 24 = 357,897,216; tied
    // embeddings 151,936 x 896 = 136,134,656; final norm 896: 494,032,768.
    assert_eq!(w.model.params_total, 494_032_768);
    // f32: 24 x 2,944 + 896 = 71,552 params; F16 bytes (494,032,768 - 71,552)
    // x 2 + 71,552 x 4 = 988,208,640. Tied: the table is read whole as the head,
    // so every weight is read per token.
    assert_eq!(w.model.weights_resident_bytes, 988_208_640);
    assert_eq!(w.model.weights_read_per_token_bytes, 988_208_640);
    assert_eq!(w.model.params_active, 494_032_768);
    // KV: 24 x 2 x 2 x 64 x 2 = 12,288 a token; 32,768 tokens: 402,653,184.
    assert_eq!(w.model.kv_bytes_per_token, 12_288);
    assert_eq!(w.model.kv_bytes, 402_653_184);
    // Q4_K rows must be whole 256-value blocks: 896 is not.
    assert_eq!(
        qwen2_5_0_5b().what_if(&params(GgmlType::Q4_K, 64)),
        Err(Error::InvalidArgument { what: DIM_BLOCKS })
    );
}

#[test]
fn mistral_7b_sliding_window_caps_the_cache() {
    let a = mistral_7b_v0_1();
    let w = a.what_if(&params(GgmlType::F16, 8192)).unwrap();
    // Per layer 218,112,000 (as Llama 3.1 8B) x 32 = 6,979,584,000; embeddings
    // and head 2 x 32,000 x 4,096 = 262,144,000; final norm 4,096: 7,241,732,096.
    assert_eq!(w.model.params_total, 7_241_732_096);
    // KV: 131,072 a token, but every layer keeps at most 4,096 tokens:
    // 131,072 x 4,096 = 536,870,912 at 8,192 tokens (not 1,073,741,824).
    assert_eq!(w.model.kv_bytes_per_token, 131_072);
    assert_eq!(w.model.kv_bytes, 536_870_912);
    // Below the window the whole context: 1,000 x 131,072 = 131,072,000;
    // 3 sequences: 393,216,000.
    let mut p = params(GgmlType::F16, 1000);
    p.sequences = 3;
    assert_eq!(a.what_if(&p).unwrap().model.kv_bytes, 393_216_000);
}

#[test]
fn gemma3_local_and_global_layers() {
    // 270M: 18 layers, 3 global (5, 11, 17), 15 sliding over 512 tokens.
    let g = gemma3(18, 640, 2048);
    let w = g.what_if(&params(GgmlType::F16, 32_768)).unwrap();
    // Per layer: q 1,024 x 640 = 655,360; k, v 256 x 640 = 163,840 each; o
    // 655,360; gate, up, down 2,048 x 640 = 1,310,720 each; f32: 4 norms of
    // 640 and q, k norms of 256: 3,072. 5,573,632 x 18 = 100,325,376; tied
    // embeddings 262,144 x 640 = 167,772,160; final norm 640: 268,098,176.
    assert_eq!(w.model.params_total, 268_098_176);
    // KV: one KV head of 256, 2 x 256 x 2 = 1,024 bytes per layer and token,
    // 18,432 a token. At 32,768 tokens: 3 x 32,768 x 1,024 = 100,663,296 and
    // 15 x 512 x 1,024 = 7,864,320: 108,527,616.
    assert_eq!(w.model.kv_bytes_per_token, 18_432);
    assert_eq!(w.model.kv_bytes, 108_527_616);
    // Below the window every layer holds the context: 18 x 100 x 1,024.
    assert_eq!(
        g.what_if(&params(GgmlType::F16, 100))
            .unwrap()
            .model
            .kv_bytes,
        1_843_200
    );
    // 1B: 26 layers, 4 global, 22 sliding. Per layer: q 1,024 x 1,152 =
    // 1,179,648; k, v 294,912 each; o 1,179,648; gate, up, down 6,912 x
    // 1,152 = 7,962,624 each; f32 4 x 1,152 + 512 = 5,120: 26,842,112. x 26 =
    // 697,894,912; embeddings 262,144 x 1,152 = 301,989,888; final norm
    // 1,152: 999,885,952.
    let w = gemma3(26, 1152, 6912)
        .what_if(&params(GgmlType::F16, 32_768))
        .unwrap();
    assert_eq!(w.model.params_total, 999_885_952);
    // KV at 32,768: 4 x 32,768 x 1,024 + 22 x 512 x 1,024 = 134,217,728 +
    // 11,534,336 = 145,752,064.
    assert_eq!(w.model.kv_bytes, 145_752_064);
    // Scratch: a page of scores per task for the 4 heads of the one KV
    // head: 2 threads x 4 x 16 = 128 f32 = 512 bytes.
    assert_eq!(w.shard_scratch.attn, 512);
}

#[test]
fn mixtral_keeps_every_expert_resident_and_reads_two() {
    let w = mixtral_8x7b()
        .what_if(&params(GgmlType::Q4_0, 4096))
        .unwrap();
    // Per layer: attention 41,943,040 (as Llama 3.1 8B); 8 experts of 3 x
    // 14,336 x 4,096 = 176,160,768: 1,409,286,144; router 8 x 4,096 = 32,768;
    // norms 8,192: 1,451,270,144. x 32 = 46,440,644,608; embeddings and head
    // 2 x 32,000 x 4,096 = 262,144,000; final norm 4,096: 46,702,792,704.
    assert_eq!(w.model.params_total, 46_702_792_704);
    // Per token: 32 x (41,943,040 + 2 x 176,160,768 + 32,768 + 8,192) =
    // 12,617,777,152, the head 131,072,000 and the final norm: 12,748,853,248.
    assert_eq!(w.model.params_active, 12_748_853_248);
    // Q4_0 (18 bytes per 32): f32 routers and norms 32 x 40,960 + 4,096 =
    // 1,314,816 params = 5,259,264 bytes; matrices (46,702,792,704 -
    // 1,314,816) / 32 x 18 = 26,269,581,312: 26,274,840,576.
    assert_eq!(w.model.weights_resident_bytes, 26_274_840_576);
    // Read: (12,748,853,248 - 1,314,816) / 32 x 18 + 5,259,264 = 7,175,749,632.
    assert_eq!(w.model.weights_read_per_token_bytes, 7_175_749_632);
    // KV as Mistral without a window: 131,072 x 4,096 = 536,870,912.
    assert_eq!(w.model.kv_bytes, 536_870_912);
    // Scratch: feed-forward phase gate + up of one expert + 8 router logits:
    // 16 x (2 x 14,336 + 8) = 458,880 f32 = 1,835,520 bytes.
    assert_eq!(w.shard_scratch.work, 1_835_520);
}

#[test]
fn deepseek_v3_latent_attention_and_experts() {
    let a = deepseek_v3();
    let mut p = params(GgmlType::F16, 4096);
    let w = a.what_if(&p).unwrap();
    // Attention per layer: q_a 1,536 x 7,168 = 11,010,048; its norm 1,536;
    // q_b 128 x 192 x 1,536 = 37,748,736; kv_a 576 x 7,168 = 4,128,768; its
    // norm 512; kv_b 128 x 256 x 512 = 16,777,216; o 7,168 x 16,384 =
    // 117,440,512: 187,107,328. Norms 2 x 7,168 = 14,336.
    // Dense layers (3): ffn 3 x 18,432 x 7,168 = 396,361,728 -> 583,483,392 each.
    // MoE layers (58): 257 experts (256 routed, 1 shared) of 3 x 2,048 x 7,168
    // = 44,040,192: 11,318,329,344; router 256 x 7,168 = 1,835,008 and its
    // bias 256 -> 11,507,286,272 each.
    // 3 x 583,483,392 + 58 x 11,507,286,272 = 1,750,450,176 + 667,422,603,776;
    // embeddings and head 2 x 129,280 x 7,168 = 1,853,358,080; final norm
    // 7,168: 671,026,419,200 (the published count).
    assert_eq!(w.model.params_total, 671_026_419_200);
    // Per token: attention 61 x 187,107,328 = 11,413,547,008; norms 61 x
    // 14,336 + 7,168 = 881,664; dense ffn 1,189,085,184; MoE 58 x (1,835,264 +
    // 9 x 44,040,192) = 23,095,425,536; head 926,679,040: 36,625,618,432.
    assert_eq!(w.model.params_active, 36_625_618_432);
    // F16: f32 params are the norms 881,664, the latent norms 61 x 2,048 =
    // 124,928 and the routers 58 x 1,835,264 = 106,445,312: 107,451,904 x 4 =
    // 429,807,616; matrices (671,026,419,200 - 107,451,904) x 2 =
    // 1,341,837,934,592: 1,342,267,742,208.
    assert_eq!(w.model.weights_resident_bytes, 1_342_267_742_208);
    // KV: the latent and the RoPE key, 61 x (512 + 64) x 2 = 70,272 a token;
    // 4,096 tokens: 287,834,112.
    assert_eq!(w.model.kv_bytes_per_token, 70_272);
    assert_eq!(w.model.kv_bytes, 287_834_112);

    // Scratch, batch 4, one thread: x 4 x 7,168 f32 = 114,688 bytes.
    p.scratch.max_batch = 4;
    p.scratch.threads = 1;
    let w = a.what_if(&p).unwrap();
    let s = w.shard_scratch;
    assert_eq!(s.x, 114_688);
    // Attention phase per row: q_a 1,536 + q_b 128 x 192 = 24,576 + q 128 x
    // 576 = 73,728 + kv_a 576 + att 128 x 512 = 65,536 + v 128 x 128 = 16,384
    // = 182,336 (> ffn 2 x 18,432 + 256); x 4 rows = 729,344 f32 = 2,917,376.
    assert_eq!(s.work, 2_917_376);
    // All 128 heads attend to the one latent: 128 x 16 page scores = 2,048
    // f32 = 8,192. RoPE 4 x 64 f32 = 1,024.
    assert_eq!((s.attn, s.rope), (8192, 1024));

    // 8 shards: 16 heads each; the latent cache is replicated.
    p.shards = 8;
    let w = a.what_if(&p).unwrap();
    assert_eq!(w.shard.kv_bytes_per_token, 70_272);
    assert_eq!(w.shard.kv_bytes, 287_834_112);
    // Attention phase: 1,536 + 16 x 192 + 16 x 576 + 576 + 16 x 512 + 16 x 128
    // = 24,640; ffn: 2 x 2,304 + 256 = 4,864; x 4 rows = 98,560 f32 = 394,240.
    assert_eq!(w.shard_scratch.work, 394_240);
}

#[test]
fn the_engine_plan_and_the_model_size_a_gguf_model_alike() {
    // The tiny f32 model: what the model counts is what the GGUF holds, and
    // its scratch is the engine plan's, buffer by buffer.
    for spec in [
        TinySpec::default(),
        TinySpec {
            arch: "qwen2",
            tied: false,
            ..TinySpec::default()
        },
    ] {
        let bytes = zero_gguf(&spec);
        let model = Model::from_bytes(&bytes).unwrap();
        let arch = ArchSpec::from_hparams(&model.hparams);
        let pp = PlanParams {
            ctx_tokens: 64,
            max_batch: 8,
            max_outputs: 2,
            threads: 3,
            ..PlanParams::default()
        };
        let engine = plan::plan(&model, &pp).unwrap();
        let w = arch
            .what_if(&WhatIfParams {
                weight_type: GgmlType::F32,
                kv_type: pp.kv_type,
                ctx_tokens: 64,
                sequences: 1,
                shards: 1,
                scratch: pp.scratch(),
            })
            .unwrap();
        assert_eq!(
            w.model.weights_resident_bytes, model.globals.weights_bytes,
            "{}",
            spec.arch
        );
        assert_eq!(w.shard_scratch, engine.scratch);
        assert_eq!(w.model.kv_bytes_per_token, engine.kv_bytes_per_token as u64);
        // 64 tokens of 256 bytes.
        assert_eq!(w.model.kv_bytes, 64 * 256);
    }
}

#[test]
fn inconsistent_or_hostile_sizes_are_errors_naming_the_field() {
    let p = params(GgmlType::F16, 64);
    let mut a = llama_3_1_8b();
    a.n_kv_heads = 5;
    assert_eq!(
        a.what_if(&p),
        Err(Error::InvalidArgument {
            what: "n_heads must be a multiple of n_kv_heads"
        })
    );
    a.n_kv_heads = 64;
    assert!(matches!(
        a.what_if(&p),
        Err(Error::OutOfRange {
            what: "n_kv_heads",
            ..
        })
    ));
    let mut m = mixtral_8x7b();
    if let Some(moe) = m.moe.as_mut() {
        moe.n_active = 9;
    }
    assert!(matches!(
        m.what_if(&p),
        Err(Error::OutOfRange {
            what: "n_active",
            value: 9,
            ..
        })
    ));
    let mut d = deepseek_v3();
    if let Some(moe) = d.moe.as_mut() {
        moe.n_dense_layers = 62;
    }
    assert!(matches!(
        d.what_if(&p),
        Err(Error::OutOfRange {
            what: "n_dense_layers",
            ..
        })
    ));
    // Every dimension at its cap: an overflow error, never a wrapped size.
    let huge = ArchSpec {
        n_layers: MAX_DIM,
        dim: MAX_DIM,
        n_heads: MAX_DIM,
        n_kv_heads: MAX_DIM,
        head_dim: MAX_DIM,
        ffn_dim: MAX_DIM,
        vocab: MAX_DIM,
        ..llama_3_1_8b()
    };
    let mut big = params(GgmlType::F32, MAX_CTX_TOKENS);
    big.sequences = MAX_SEQUENCES;
    assert!(matches!(huge.what_if(&big), Err(Error::Overflow { .. })));
    for bad in [
        WhatIfParams { shards: 0, ..p },
        WhatIfParams { ctx_tokens: 0, ..p },
        WhatIfParams { sequences: 0, ..p },
    ] {
        assert!(matches!(
            llama_3_1_8b().what_if(&bad),
            Err(Error::OutOfRange { .. })
        ));
    }
    // Q8_0 KV needs whole blocks: MLA's 576 is 18, Gemma's 256 is 8; a head of 48 is not.
    let mut q8 = p;
    q8.kv_type = KvType::Q8_0;
    assert!(deepseek_v3().what_if(&q8).is_ok());
    let odd = dense(2, 96, (2, 2, 48), 64, 100, true);
    assert!(odd.what_if(&q8).is_err());
}
