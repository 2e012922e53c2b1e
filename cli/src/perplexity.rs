//! `arenalm perplexity`: llama.cpp's protocol. The text is cut into
//! non-overlapping chunks of `ctx` tokens; each chunk is evaluated from a
//! fresh context (its first token replaced by BOS when the model adds one)
//! and only the second half is scored: the log-probability of token j + 1
//! given tokens up to j, for j from ctx/2 to ctx - 2. The last line is
//! `PPL = X +/- Y`, Y being the standard error of the mean negative
//! log-likelihood propagated through exp, as llama.cpp prints it.

use arenalm_core::engine::Outputs;
use indicatif::{ProgressBar, ProgressStyle};

use crate::run::{leak_model, tokenize, EngineArgs, Session};

/// Runs the subcommand.
pub fn run(a: &EngineArgs, file: &str, ctx: u32) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    if ctx < 4 {
        return Err("--ctx must be at least 4".into());
    }
    let bytes = leak_model(&a.model)?;
    let mut args = a.clone();
    args.plan.ctx = Some(ctx);
    args.plan.budget = None;
    let session = Session::new(bytes, &args, a.plan.batch)?;
    let engine = session.engine;
    let par = session.threads.get();
    let (tokens, bos) = {
        let tok = engine.require_tokenizer().map_err(|e| e.to_string())?;
        let bos = if tok.add_bos() { tok.bos() } else { None };
        (tokenize(tok, &text, true)?, bos)
    };
    let n_ctx = ctx as usize;
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        return Err(format!(
            "{file} has {} tokens, fewer than one chunk of {n_ctx}",
            tokens.len()
        ));
    }
    let vocab = engine.vocab();
    let first = n_ctx / 2;
    let batch = a.plan.batch as usize;
    eprintln!(
        "{file}: {} tokens, {n_chunks} chunks of {n_ctx}, scoring {} tokens per chunk",
        tokens.len(),
        n_ctx - 1 - first
    );
    let bar = ProgressBar::new(n_chunks as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} chunks, PPL {msg} [{elapsed} < {eta}]")
            .map_err(|e| e.to_string())?,
    );
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        engine.reset().map_err(|e| e.to_string())?;
        let mut pos = 0;
        while pos < n_ctx {
            let end = (pos + batch).min(n_ctx);
            // Logits are needed for positions first..n_ctx-1 only.
            let outputs = if end > first {
                Outputs::All
            } else {
                Outputs::Last
            };
            let logits = engine
                .eval(par, &chunk[pos..end], outputs)
                .map_err(|e| e.to_string())?;
            if outputs == Outputs::All {
                for j in pos.max(first)..end.min(n_ctx - 1) {
                    let row = &logits[(j - pos) * vocab..(j - pos + 1) * vocab];
                    let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
                    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
                    let logprob = row[chunk[j + 1] as usize] as f64 - max - sum.ln();
                    nll -= logprob;
                    nll2 += logprob * logprob;
                    count += 1;
                }
            }
            pos = end;
        }
        bar.set_message(format!("{:.4}", (nll / count as f64).exp()));
        bar.inc(1);
    }
    bar.finish();
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let err = if var > 0.0 && count > 1 {
        (var / (count as f64 - 1.0)).sqrt() * ppl
    } else {
        0.0
    };
    println!("PPL = {ppl:.4} +/- {err:.5}");
    Ok(())
}
