//! Engine tests on a tiny random model: the forward pass against a naive
//! f64 implementation, plan == bytes used, guard bytes, refusals.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::gguf::{GgmlType, Gguf};
use crate::kernels::CpuFeatures;
use crate::kv::KvType;
use crate::mem::plan;
use crate::mem::scratch::{
    SCRATCH_ACT, SCRATCH_ATTN, SCRATCH_CANDIDATES, SCRATCH_LOGITS, SCRATCH_ROPE, SCRATCH_WORK,
    SCRATCH_X, SCRATCH_XB,
};
use crate::parallel::Serial;
use crate::testutil::{build_gguf, zero_gguf, Rng, TinySpec};

/// A tiny llama with random f32 weights (norm weights near 1).
fn random_model(spec: &TinySpec, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    build_gguf(
        spec,
        |name, dims, ty| {
            assert_eq!(ty, GgmlType::F32);
            let n: u64 = dims.iter().product();
            let norm = name.contains("norm");
            (0..n)
                .flat_map(|_| {
                    let v = if norm {
                        1.0 + 0.1 * rng.f32()
                    } else {
                        0.3 * rng.f32()
                    };
                    v.to_le_bytes()
                })
                .collect()
        },
        &[],
    )
}

fn f32s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect()
}

/// The forward pass written out naively in f64, logits for every position.
fn reference_logits(bytes: &[u8], tokens: &[u32]) -> Vec<Vec<f64>> {
    let g = Gguf::parse(bytes).unwrap();
    let hp = Hparams::from_gguf(&g).unwrap();
    let t = |name: &str| f32s(g.tensor(name).unwrap().unwrap().data);
    let (dim, hd) = (hp.dim as usize, hp.head_dim as usize);
    let (nh, nkv, ffn) = (
        hp.n_heads as usize,
        hp.n_kv_heads as usize,
        hp.ffn_dim as usize,
    );
    let group = nh / nkv;
    let eps = hp.rms_eps as f64;
    let matvec = |w: &[f64], x: &[f64], rows: usize| -> Vec<f64> {
        (0..rows)
            .map(|r| (0..x.len()).map(|c| w[r * x.len() + c] * x[c]).sum())
            .collect()
    };
    let norm = |x: &[f64], w: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let s = 1.0 / (ms + eps).sqrt();
        x.iter().zip(w).map(|(v, w)| v * s * w).collect()
    };
    let rope = |x: &mut [f64], pos: usize| {
        for head in x.chunks_mut(hd) {
            for i in 0..hd / 2 {
                let theta = pos as f64 * (hp.rope_base as f64).powf(-2.0 * i as f64 / hd as f64);
                let (c, s) = (theta.cos(), theta.sin());
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c - b * s;
                head[2 * i + 1] = a * s + b * c;
            }
        }
    };
    let embd = t("token_embd.weight");
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&id| embd[id as usize * dim..(id as usize + 1) * dim].to_vec())
        .collect();
    for l in 0..hp.n_layers {
        let w = |s: &str| t(&std::format!("blk.{l}.{s}"));
        let (wq, wk, wv, wo) = (
            w("attn_q.weight"),
            w("attn_k.weight"),
            w("attn_v.weight"),
            w("attn_output.weight"),
        );
        let mut qs = vec![];
        let mut ks = vec![];
        let mut vs = vec![];
        for (pos, x) in xs.iter().enumerate() {
            let xb = norm(x, &w("attn_norm.weight"));
            let mut q = matvec(&wq, &xb, nh * hd);
            let mut k = matvec(&wk, &xb, nkv * hd);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &xb, nkv * hd));
        }
        for pos in 0..xs.len() {
            let mut att = vec![0.0; nh * hd];
            for h in 0..nh {
                let kvh = h / group;
                let q = &qs[pos][h * hd..(h + 1) * hd];
                let scores: Vec<f64> = (0..=pos)
                    .map(|j| {
                        let k = &ks[j][kvh * hd..(kvh + 1) * hd];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, p) in e.iter().enumerate() {
                    for d in 0..hd {
                        att[h * hd + d] += p / z * vs[j][kvh * hd + d];
                    }
                }
            }
            let o = matvec(&wo, &att, dim);
            for (x, o) in xs[pos].iter_mut().zip(o) {
                *x += o;
            }
            let xb = norm(&xs[pos], &w("ffn_norm.weight"));
            let gate = matvec(&w("ffn_gate.weight"), &xb, ffn);
            let up = matvec(&w("ffn_up.weight"), &xb, ffn);
            let hidden: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = matvec(&w("ffn_down.weight"), &hidden, dim);
            for (x, d) in xs[pos].iter_mut().zip(down) {
                *x += d;
            }
        }
    }
    let out_norm = t("output_norm.weight");
    xs.iter()
        .map(|x| matvec(&embd, &norm(x, &out_norm), hp.vocab as usize))
        .collect()
}

fn params(ctx: u32, kv: KvType, batch: u32, outputs: u32, page: u32) -> EngineParams {
    EngineParams {
        plan: PlanParams {
            ctx_tokens: ctx,
            kv_type: kv,
            page_tokens: page,
            max_batch: batch,
            max_outputs: outputs,
            threads: 1,
            ..PlanParams::default()
        },
        kernel: None,
    }
}

fn tokens(n: usize, vocab: u32) -> Vec<u32> {
    let mut rng = Rng(99);
    (0..n)
        .map(|_| (rng.next_u64() % u64::from(vocab)) as u32)
        .collect()
}

#[test]
fn forward_pass_matches_a_naive_f64_implementation() {
    let spec = TinySpec::default();
    let model = random_model(&spec, 1);
    let toks = tokens(20, 300);
    let expected = reference_logits(&model, &toks);
    let mut arena = vec![0u8; 1 << 20];
    // Batches of 8 over pages of 4 tokens: micro-batches and page boundaries both cross.
    let e = Engine::new(
        &model,
        &mut arena,
        &params(32, KvType::F32, 8, 20, 4),
        &CpuFeatures::none(),
    )
    .unwrap();
    let got = e.eval(&Serial, &toks, Outputs::All).unwrap().to_vec();
    let mut worst = 0.0f64;
    for (pos, row) in expected.iter().enumerate() {
        for (v, r) in row.iter().enumerate() {
            worst = worst.max((got[pos * 300 + v] as f64 - r).abs());
        }
    }
    // f32 arithmetic against f64 on logits of magnitude ~1: errors near 1e-5.
    assert!(worst < 1e-4, "max |ours - naive| = {worst}");
}

#[test]
fn token_by_token_decoding_equals_batched_prefill() {
    let spec = TinySpec::default();
    let model = random_model(&spec, 2);
    let toks = tokens(13, 300);
    let mut a1 = vec![0u8; 1 << 20];
    let mut a2 = vec![0u8; 1 << 20];
    let p = params(16, KvType::F16, 8, 1, 4);
    let batched = Engine::new(&model, &mut a1, &p, &CpuFeatures::none()).unwrap();
    let last = batched
        .eval(&Serial, &toks, Outputs::Last)
        .unwrap()
        .to_vec();
    let single = Engine::new(&model, &mut a2, &p, &CpuFeatures::none()).unwrap();
    let mut one = vec![];
    for t in &toks {
        one = single.eval(&Serial, &[*t], Outputs::Last).unwrap().to_vec();
    }
    assert_eq!(single.n_past(), 13);
    // The same arithmetic per row whatever the batch: identical bits.
    assert_eq!(last, one);
}

#[test]
fn plan_equals_arena_bytes_used_and_guard_bytes_stay_untouched() {
    let spec = TinySpec::default();
    let model = random_model(&spec, 3);
    for p in [
        params(64, KvType::F16, 8, 1, 16),
        params(17, KvType::F32, 3, 3, 4),
        params(256, KvType::F16, 64, 64, 16),
        params(0, KvType::F16, 8, 2, 8), // fill the budget
    ] {
        const GUARD: usize = 4096;
        let mut buf = vec![0xA5u8; (1 << 20) + 2 * GUARD];
        // Make the arena start 64-byte aligned so used == plan total exactly.
        let skew = buf[GUARD..].as_ptr().align_offset(64);
        let (lo, rest) = buf.split_at_mut(GUARD + skew);
        let (arena, hi) = rest.split_at_mut(1 << 19);
        let e = Engine::new(&model, arena, &p, &CpuFeatures::none()).unwrap();
        let plan = *e.plan();
        assert_eq!(e.arena_used(), plan.total_bytes, "{p:?}");
        // Prefill to the capacity, then decode one more... which must be refused.
        let cap = e.ctx_capacity();
        let toks = tokens(cap, 300);
        let n_out = (p.plan.max_outputs as usize).min(cap);
        e.eval(&Serial, &toks[..cap - n_out], Outputs::Last)
            .unwrap();
        e.eval(&Serial, &toks[cap - n_out..], Outputs::All).unwrap();
        assert!(matches!(
            e.eval(&Serial, &[1], Outputs::Last),
            Err(Error::Full { .. })
        ));
        assert!(
            lo.iter().all(|&b| b == 0xA5),
            "bytes before the arena written"
        );
        assert!(
            hi.iter().all(|&b| b == 0xA5),
            "bytes after the arena written"
        );
    }
}

#[test]
fn init_carves_every_planned_item_where_the_plan_says() {
    // Several parameter sets, f32 and Q8_0 weights (the latter need a
    // quantized activation buffer), fixed contexts and a filled budget.
    let q8 = TinySpec {
        matrix_type: GgmlType::Q8_0,
        tied: false,
        ..TinySpec::default()
    };
    let f32_model = random_model(&TinySpec::default(), 7);
    let q8_model = zero_gguf(&q8);
    let mut threads = params(64, KvType::F16, 8, 2, 16);
    threads.plan.threads = 3;
    let cases = [
        (&f32_model, params(64, KvType::F16, 8, 1, 16)),
        (&f32_model, params(17, KvType::F32, 3, 3, 4)),
        (&f32_model, params(0, KvType::F16, 8, 2, 8)),
        (&f32_model, threads),
        (&q8_model, params(96, KvType::F32, 16, 4, 32)),
        (&q8_model, params(0, KvType::F16, 64, 1, 16)),
    ];
    for (model, p) in cases {
        const LEN: usize = 1 << 19;
        let mut buf = vec![0u8; LEN + 64];
        let skew = buf.as_ptr().align_offset(64);
        let arena = &mut buf[skew..skew + LEN];
        let base = arena.as_ptr() as usize;
        let m = Model::from_bytes(model).unwrap();
        let planned = plan::plan_for_budget(&m, &p.plan, LEN).unwrap();
        let e = Engine::new(model, arena, &p, &CpuFeatures::none()).unwrap();
        // Item by item: names, offsets and bytes; and every summary field.
        assert_eq!(e.plan().items, planned.items, "{p:?}");
        assert_eq!(*e.plan(), planned, "{p:?}");
        assert_eq!(
            planned.items.len(),
            13,
            "index, 3 KV items, 8 scratch, state"
        );
        // The engine's slices are where the items say, and fill them.
        let check = |name: &str, ptr: usize, bytes: usize| {
            let item = planned.items.get(name).unwrap();
            assert_eq!(ptr - base, item.offset, "{name}");
            assert!(bytes <= item.bytes && item.bytes < bytes + 64, "{name}");
        };
        let s = &e.s;
        check(
            plan::MODEL_INDEX,
            e.layers.as_ptr() as usize,
            core::mem::size_of_val(e.layers),
        );
        check(SCRATCH_X, s.x.as_ptr() as usize, 4 * s.x.len());
        check(SCRATCH_XB, s.xb.as_ptr() as usize, 4 * s.xb.len());
        check(SCRATCH_WORK, s.work.as_ptr() as usize, 4 * s.work.len());
        check(SCRATCH_ATTN, s.attn.as_ptr() as usize, 4 * s.attn.len());
        check(SCRATCH_ROPE, s.rope.as_ptr() as usize, 4 * s.rope.len());
        check(
            SCRATCH_LOGITS,
            s.logits.as_ptr() as usize,
            4 * s.logits.len(),
        );
        check(
            SCRATCH_CANDIDATES,
            s.candidates.as_ptr() as usize,
            core::mem::size_of_val(s.candidates),
        );
        if !s.act.is_empty() {
            check(SCRATCH_ACT, s.act.as_ptr() as usize, s.act.len());
        }
        check(
            plan::ENGINE_STATE,
            &*e as *const Engine<'_> as usize,
            core::mem::size_of::<Engine<'_>>(),
        );
        // The items tile the arena without gaps, and the engine evaluates.
        let mut end = 0;
        for item in planned.items.iter() {
            assert_eq!(item.offset, end, "{}", item.name);
            end += item.bytes;
        }
        assert_eq!(end, e.arena_used());
        e.eval(&Serial, &[1, 2, 3], Outputs::Last).unwrap();
    }
}

#[test]
fn an_arena_one_byte_too_small_is_a_budget_error() {
    let spec = TinySpec::default();
    let model = random_model(&spec, 4);
    let p = params(64, KvType::F16, 8, 1, 16);
    let need = {
        let m = Model::from_bytes(&model).unwrap();
        plan::plan(&m, &p.plan).unwrap().total_bytes
    };
    let mut buf = vec![0u8; need + 64];
    let skew = buf.as_ptr().align_offset(64);
    let exact = &mut buf[skew..skew + need];
    assert!(Engine::new(&model, exact, &p, &CpuFeatures::none()).is_ok());
    let short = &mut buf[skew..skew + need - 1];
    match Engine::new(&model, short, &p, &CpuFeatures::none()) {
        Err(Error::Budget {
            needed, available, ..
        }) => {
            assert_eq!((needed, available), (need, need - 1))
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("fit in one byte less"),
    }
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let spec = TinySpec::default();
    let model = random_model(&spec, 5);
    let mut arena = vec![0u8; 1 << 20];
    let e = Engine::new(
        &model,
        &mut arena,
        &params(32, KvType::F16, 8, 2, 4),
        &CpuFeatures::none(),
    )
    .unwrap();
    e.eval(&Serial, &[1, 2, 3], Outputs::Last).unwrap();
    assert_eq!(
        e.eval(&Serial, &[4, 300], Outputs::Last).unwrap_err(),
        Error::Tokenizer(TokenizerError::BadTokenId {
            id: 300,
            vocab: 300
        })
    );
    assert!(e.eval(&Serial, &[], Outputs::Last).is_err());
    assert!(e.eval(&Serial, &[1, 2, 3], Outputs::All).is_err()); // 3 rows > max_outputs 2
    assert!(e.eval(&Serial, &[7; 40], Outputs::Last).is_err()); // beyond the context
    assert_eq!(e.n_past(), 3);
    // Rewinding and replaying gives the same logits.
    let before = e.eval(&Serial, &[9], Outputs::Last).unwrap().to_vec();
    e.truncate(3).unwrap();
    assert_eq!(e.eval(&Serial, &[9], Outputs::Last).unwrap(), &before[..]);
    e.reset().unwrap();
    assert_eq!(e.n_past(), 0);
    assert!(e
        .sample(&mut crate::sample::Sampler::new(crate::sample::SamplerParams::greedy()).unwrap())
        .is_err());
}

#[test]
fn unknown_rope_scaling_and_broken_models_fail_at_init() {
    let spec = TinySpec::default();
    let mut model = random_model(&spec, 6);
    // Truncate the file: the reader refuses it.
    model.truncate(model.len() - 10);
    let mut arena = vec![0u8; 1 << 20];
    assert!(matches!(
        Engine::new(
            &model,
            &mut arena,
            &params(32, KvType::F16, 8, 1, 4),
            &CpuFeatures::none()
        ),
        Err(Error::Gguf(_))
    ));
}
