//! `arenalm bench`: prompt processing (ppN) and generation (tgN) speed,
//! measured like llama-bench: random tokens, a warm-up run, then `r`
//! repetitions, each from a context holding `depth` tokens (evaluated
//! before the clock starts), reported as mean ± standard deviation.

use std::time::Instant;

use arenalm::host::detect_cpu;
use arenalm_core::engine::{Engine, EngineParams, Outputs};
use arenalm_core::kernels::KernelPath;
use arenalm_core::kv::KvType;
use arenalm_core::mem::plan::{self, PlanParams};
use arenalm_core::model::Model;
use serde_json::json;

use crate::common::{kernel_choice, map_model, mib, ArenaBuf, Threads};

/// What the user asked for.
pub struct BenchArgs {
    /// Model path.
    pub model: String,
    /// Prompt sizes.
    pub prompt: Vec<u32>,
    /// Generation lengths.
    pub gen: Vec<u32>,
    /// Thread counts.
    pub threads: Vec<u32>,
    /// Repetitions.
    pub reps: u32,
    /// Micro-batch.
    pub batch: u32,
    /// Tokens in the KV cache before each measured run.
    pub depth: Vec<u32>,
    /// KV type.
    pub kv: KvType,
    /// Forced kernel.
    pub kernel: Option<KernelPath>,
    /// Measure the memory-bandwidth ceiling too.
    pub bandwidth: bool,
    /// JSON output.
    pub json: bool,
}

/// Bytes the streaming-read probe reads: far beyond any cache a board or
/// an edge box has, so what it measures is memory.
const PROBE_BYTES: usize = 1 << 30;

/// Bytes per second `threads` threads read from memory: each thread streams
/// its share of a [`PROBE_BYTES`] buffer (already touched, so no page
/// faults are timed), best of 3 passes.
fn read_bandwidth(threads: usize) -> f64 {
    let threads = threads.max(1);
    let buf = vec![1u64; PROBE_BYTES / 8];
    let share = buf.len() / threads;
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for part in buf.chunks(share.max(1)) {
                s.spawn(move || {
                    // Eight independent lanes: the loads, not the adds, are
                    // the bottleneck (the compiler vectorizes this).
                    let mut acc = [0u64; 8];
                    for c in part.chunks_exact(8) {
                        for (a, v) in acc.iter_mut().zip(c) {
                            *a = a.wrapping_add(*v);
                        }
                    }
                    std::hint::black_box(acc);
                });
            }
        });
        best = best.max(PROBE_BYTES as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// Bytes one generated token reads: every weight matrix once (the token
/// embedding only when it is also the output head) and the KV cache of the
/// tokens before it.
fn bytes_per_token(model: &Model, kv: KvType, context: usize) -> f64 {
    let g = &model.globals;
    let embedding_read = if g.output == g.token_embd {
        0
    } else {
        g.token_embd.len
    };
    let weights = g.weights_bytes.saturating_sub(embedding_read);
    let kv_per_token = arenalm_core::kv::KvGeometry::new(
        model.hparams.n_layers as usize,
        model.hparams.n_kv_heads as usize,
        model.hparams.head_dim as usize,
        kv,
        16,
    )
    .ok()
    .and_then(|g| g.bytes_per_token())
    .unwrap_or(0);
    weights as f64 + (context * kv_per_token) as f64
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Random token ids below `vocab`, reproducibly.
fn random_tokens(n: usize, vocab: u32, seed: u64) -> Vec<u32> {
    let mut rng = arenalm_core::sample::Rng::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() % u64::from(vocab)) as u32)
        .collect()
}

/// One measured configuration: the kernel used and tokens/s per repetition.
struct Measured {
    kernel: &'static str,
    samples: Vec<f64>,
}

/// The CPU features the host layer detected, for the JSON report.
fn cpu_json() -> serde_json::Value {
    json!(arenalm::host::cpu_feature_names())
}

/// Measures one test (`n_prompt` tokens in one evaluation, or `n_gen`
/// single-token evaluations) after `depth` tokens, `a.reps` times after a
/// warm-up.
#[allow(clippy::too_many_arguments)]
fn bench_one(
    a: &BenchArgs,
    model: &Model,
    bytes: &[u8],
    pool: &Threads,
    threads: u32,
    depth: usize,
    n_prompt: usize,
    n_gen: usize,
) -> Result<Measured, String> {
    let ctx = depth + n_prompt.max(n_gen).max(1);
    let params = EngineParams {
        plan: PlanParams {
            ctx_tokens: u32::try_from(ctx).map_err(|_| "context too large".to_string())?,
            kv_type: a.kv,
            max_batch: a.batch,
            max_outputs: 1,
            threads: threads.max(1),
            ..PlanParams::default()
        },
        kernel: kernel_choice(a.kernel)?,
    };
    let need = plan::plan(model, &params.plan)
        .map_err(|e| e.to_string())?
        .total_bytes;
    let mut arena = ArenaBuf::new(need)?;
    let engine =
        Engine::new(bytes, arena.bytes(), &params, &detect_cpu()).map_err(|e| e.to_string())?;
    let kernel = engine.kernel_path().name();
    let vocab = model.hparams.vocab;
    let context = random_tokens(depth, vocab, 7);
    let tokens = random_tokens(n_prompt.max(n_gen), vocab, 42);
    let mut samples = Vec::new();
    for rep in 0..=a.reps {
        engine.reset().map_err(|e| e.to_string())?;
        if depth > 0 {
            engine
                .eval(pool.get(), &context, Outputs::Last)
                .map_err(|e| e.to_string())?;
        }
        let start = Instant::now();
        if n_prompt > 0 {
            engine
                .eval(pool.get(), &tokens[..n_prompt], Outputs::Last)
                .map_err(|e| e.to_string())?;
        } else {
            for tok in &tokens[..n_gen] {
                engine
                    .eval(pool.get(), std::slice::from_ref(tok), Outputs::Last)
                    .map_err(|e| e.to_string())?;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        if rep > 0 {
            // Repetition 0 is the warm-up.
            samples.push((n_prompt + n_gen) as f64 / secs);
        }
    }
    Ok(Measured { kernel, samples })
}

/// Runs the subcommand.
pub fn run(a: &BenchArgs) -> Result<(), String> {
    let map = map_model(&a.model)?;
    let bytes = map.bytes();
    let model = Model::from_bytes(bytes).map_err(|e| format!("{}: {e}", a.model))?;
    let name = std::path::Path::new(&a.model)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let weights = model.globals.weights_bytes;
    let mut rows = Vec::new();
    let tests: Vec<(String, usize, usize)> = a
        .prompt
        .iter()
        .filter(|&&p| p > 0)
        .map(|&p| (format!("pp{p}"), p as usize, 0))
        .chain(
            a.gen
                .iter()
                .filter(|&&n| n > 0)
                .map(|&n| (format!("tg{n}"), 0, n as usize)),
        )
        .collect();
    // The ceiling per thread count, measured before any engine exists.
    let ceilings: Vec<(u32, f64)> = if a.bandwidth {
        a.threads
            .iter()
            .map(|&t| (t, read_bandwidth(t as usize)))
            .collect()
    } else {
        Vec::new()
    };
    if !a.json {
        for (t, bw) in &ceilings {
            println!("memory read bandwidth, {t} thread(s): {:.1} GB/s", bw / 1e9);
        }
        println!("| model | size | kernel | threads | test | t/s |");
        println!("| --- | ---: | --- | ---: | ---: | ---: |");
    }
    let depths: Vec<u32> = if a.depth.is_empty() {
        vec![0]
    } else {
        a.depth.clone()
    };
    // Refuse absurd counts before any thread starts.
    for &t in &a.threads {
        let params = PlanParams {
            threads: t,
            max_batch: a.batch,
            ..PlanParams::default()
        };
        params.validate().map_err(|e| e.to_string())?;
    }
    for &t in &a.threads {
        let pool = Threads::new(t as usize)?;
        for &depth in &depths {
            for (test, n_prompt, n_gen) in &tests {
                let row = bench_one(
                    a,
                    &model,
                    bytes,
                    &pool,
                    t,
                    depth as usize,
                    *n_prompt,
                    *n_gen,
                )?;
                let (mean, sd) = mean_sd(&row.samples);
                // Decoding's share of the bandwidth ceiling: tokens/s times
                // the bytes each token reads (its context grows from
                // `depth` to `depth + n_gen`; the middle stands for all).
                let ceiling = ceilings.iter().find(|(ct, _)| *ct == t).map(|c| c.1);
                let fraction = match (ceiling, *n_gen > 0) {
                    (Some(bw), true) => {
                        let ctx = depth as usize + n_gen / 2;
                        Some(mean * bytes_per_token(&model, a.kv, ctx) / bw)
                    }
                    _ => None,
                };
                let test = if depth > 0 {
                    format!("{test} @ d{depth}")
                } else {
                    test.clone()
                };
                if a.json {
                    rows.push(json!({
                        "model": name, "model_bytes": weights, "kernel": row.kernel,
                        "cpu": cpu_json(), "threads": t, "test": test,
                        "n_prompt": n_prompt, "n_gen": n_gen, "depth": depth,
                        "batch": a.batch, "kv_type": a.kv.name(),
                        "avg_ts": mean, "stddev_ts": sd, "samples_ts": row.samples,
                        "bandwidth_bytes_per_s": ceiling,
                        "bandwidth_fraction": fraction,
                    }));
                } else {
                    let share = fraction
                        .map(|f| format!(" ({:.0}% of bandwidth)", f * 100.0))
                        .unwrap_or_default();
                    println!(
                        "| {name} | {} MiB | {} | {t} | {test} | {mean:.2} ± {sd:.2}{share} |",
                        mib(weights),
                        row.kernel
                    );
                }
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}
