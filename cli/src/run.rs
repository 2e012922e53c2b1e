//! `arenalm run`: generate text from a prompt inside a fixed arena,
//! streaming it, then report speed and memory.

use std::io::Write;
use std::time::Instant;

use arenalm::host::detect_cpu;
use arenalm_core::engine::{Engine, EngineParams, Outputs};
use arenalm_core::kernels::KernelPath;
use arenalm_core::mem::plan;
use arenalm_core::model::Model;
use arenalm_core::sample::{Sampler, SamplerParams};
use arenalm_core::tokenizer::{Detokenizer, Tokenizer};

use crate::common::{kernel_choice, map_model, mib, peak_rss_bytes, ArenaBuf, Threads};
use crate::opts::PlanOpts;

/// Arena and engine options shared by `run`, `chat` and `perplexity`.
#[derive(Clone, Debug)]
pub struct EngineArgs {
    /// Model path.
    pub model: String,
    /// The arena-deciding options (shared with `plan`).
    pub plan: PlanOpts,
    /// Forced kernel.
    pub kernel: Option<KernelPath>,
}

/// An engine in its own arena, with its thread pool.
pub struct Session {
    /// The arena (kept alive for the engine).
    _arena: ArenaBuf,
    /// Bytes of the arena.
    pub arena_bytes: usize,
    /// The engine, inside the arena.
    pub engine: &'static mut Engine<'static>,
    /// Threads.
    pub threads: Threads,
}

impl Session {
    /// Maps nothing: builds the engine over `model_bytes` (which must
    /// outlive the session) with `outputs` rows of logits.
    pub fn new(
        model_bytes: &'static [u8],
        a: &EngineArgs,
        outputs: u32,
    ) -> Result<Session, String> {
        let model = Model::from_bytes(model_bytes).map_err(|e| format!("{}: {e}", a.model))?;
        let p = a.plan.params(model.hparams.ctx_train, outputs);
        // Absurd counts and a context beyond training are refused before
        // the arena is allocated or a thread started.
        p.check_for(&model.hparams).map_err(|e| e.to_string())?;
        // The budget is the arena; without one, exactly what the plan needs.
        let arena_bytes = match a.plan.budget {
            Some(b) => b,
            None => {
                plan::plan(&model, &p)
                    .map_err(|e| e.to_string())?
                    .total_bytes
            }
        };
        let mut arena = ArenaBuf::new(arena_bytes)?;
        // SAFETY: the arena's heap block lives in `Session::_arena` as long as
        // the engine that borrows it; the block does not move when the
        // `ArenaBuf` value moves.
        let bytes: &'static mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(arena.bytes().as_mut_ptr(), arena_bytes) };
        let params = EngineParams {
            plan: p,
            kernel: kernel_choice(a.kernel)?,
        };
        let engine =
            Engine::new(model_bytes, bytes, &params, &detect_cpu()).map_err(|e| e.to_string())?;
        Ok(Session {
            _arena: arena,
            arena_bytes,
            engine,
            threads: Threads::new(p.threads as usize)?,
        })
    }
}

/// Leaks a mapped model so engines can borrow it for the process lifetime.
pub fn leak_model(path: &str) -> Result<&'static [u8], String> {
    let map = Box::leak(Box::new(map_model(path)?));
    Ok(map.bytes())
}

/// Tokenizes `text` (special tokens parsed), with BOS first if the model
/// adds one.
pub fn tokenize(tok: &mut Tokenizer<'_>, text: &str, with_bos: bool) -> Result<Vec<u32>, String> {
    let mut out = vec![0u32; text.len() + 2];
    let bos = match (with_bos && tok.add_bos(), tok.bos()) {
        (true, Some(b)) => Some(b),
        _ => None,
    };
    let start = usize::from(bos.is_some());
    let n = tok
        .encode(text, true, &mut out[start..])
        .map_err(|e| e.to_string())?;
    if let Some(b) = bos {
        out[0] = b;
    }
    out.truncate(start + n);
    Ok(out)
}

/// Sampling flags.
#[derive(Clone, Debug)]
pub struct SampleArgs {
    /// Temperature.
    pub temp: f32,
    /// Top-k.
    pub top_k: u32,
    /// Top-p.
    pub top_p: f32,
    /// Min-p.
    pub min_p: f32,
    /// Repetition penalty.
    pub repeat_penalty: f32,
    /// Seed.
    pub seed: u64,
}

impl SampleArgs {
    /// As core sampler parameters.
    pub fn params(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplerParams::default()
        }
    }
}

/// Runs the subcommand.
pub fn run(a: &EngineArgs, prompt: &str, n_predict: u32, s: &SampleArgs) -> Result<(), String> {
    let bytes = leak_model(&a.model)?;
    let session = Session::new(bytes, a, 1)?;
    let engine = session.engine;
    let par = session.threads.get();
    let mut sampler = Sampler::new(s.params()).map_err(|e| e.to_string())?;
    let tokens = tokenize(
        engine.require_tokenizer().map_err(|e| e.to_string())?,
        prompt,
        true,
    )?;
    if tokens.is_empty() {
        return Err("the prompt is empty".into());
    }
    for &t in &tokens {
        sampler.accept(t);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = write!(out, "{prompt}");
    let _ = out.flush();

    let t0 = Instant::now();
    engine
        .eval(par, &tokens, Outputs::Last)
        .map_err(|e| e.to_string())?;
    let prompt_secs = t0.elapsed().as_secs_f64();

    let mut detok = Detokenizer::continuing(false);
    let mut piece = [0u8; 256];
    let t1 = Instant::now();
    let mut generated = 0u32;
    let mut stop = "length";
    for _ in 0..n_predict {
        let tok = engine.sample(&mut sampler).map_err(|e| e.to_string())?;
        sampler.accept(tok);
        generated += 1;
        let t = engine.require_tokenizer().map_err(|e| e.to_string())?;
        if t.is_eog(tok) {
            stop = "end of generation";
            break;
        }
        let n = detok.push(t, tok, &mut piece).map_err(|e| e.to_string())?;
        let _ = out.write_all(&piece[..n]);
        let _ = out.flush();
        if engine.n_past() >= engine.ctx_capacity() {
            stop = "context full";
            break;
        }
        engine
            .eval(par, &[tok], Outputs::Last)
            .map_err(|e| e.to_string())?;
    }
    let n = detok.finish(&mut piece).map_err(|e| e.to_string())?;
    let _ = out.write_all(&piece[..n]);
    let _ = writeln!(out);
    let gen_secs = t1.elapsed().as_secs_f64();
    drop(out);

    let plan = engine.plan();
    eprintln!();
    eprintln!(
        "prompt: {} tokens in {:.3} s ({:.1} tokens/s)",
        tokens.len(),
        prompt_secs,
        tokens.len() as f64 / prompt_secs
    );
    eprintln!(
        "generation: {generated} tokens in {:.3} s ({:.1} tokens/s), stopped by {stop}",
        gen_secs,
        generated as f64 / gen_secs.max(1e-9)
    );
    eprintln!(
        "arena: {} of {} bytes used ({} of {} MiB); context {} tokens, KV {}; kernel {}, {} threads",
        engine.arena_used(),
        session.arena_bytes,
        mib(engine.arena_used() as u64),
        mib(session.arena_bytes as u64),
        engine.ctx_capacity(),
        a.plan.kv.name(),
        engine.kernel_path().name(),
        a.plan.threads
    );
    eprintln!(
        "weights mapped from the model file: {} MiB; peak RSS: {} MiB",
        mib(plan.weights_in_place_bytes),
        peak_rss_bytes().map(mib).unwrap_or_else(|| "?".into())
    );
    Ok(())
}
