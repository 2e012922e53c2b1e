//! Options shared by several commands, with their defaults in one place.
//!
//! Every command that plans or builds an engine (`plan`, `run`, `chat`,
//! `perplexity`) reads the arena-deciding options from [`PlanOpts`] and
//! turns them into core's `PlanParams` with [`PlanOpts::params`], so an
//! arena that `plan` sizes is exactly the arena `run` needs with the same
//! flags (the thread count, for one, changes the arena).

use arenalm_core::gguf::GgmlType;
use arenalm_core::kv::KvType;
use arenalm_core::mem::plan::PlanParams;

use crate::common::{parse_kv, parse_size};

/// Context used when neither `--ctx` nor `--budget` is given (at most the
/// model's training context).
pub const DEFAULT_CTX: u32 = 2048;

/// Threads when `-t` is not given: the machine's cores, at most 4.
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .min(4)
}

/// The micro-batch when `-b` is not given (core's default).
pub fn default_batch() -> u32 {
    PlanParams::default().max_batch
}

/// The options that decide an engine's arena.
#[derive(clap::Args, Clone, Debug)]
pub struct PlanOpts {
    /// Arena budget (bytes, or with a unit: 64MiB, 1.5GB, 512K); the context
    /// is the largest that fits unless --ctx is also given.
    #[arg(long, value_parser = parse_size)]
    pub budget: Option<usize>,
    /// Context in tokens (default: 2048, at most the model's training
    /// context; with --budget, the largest that fits).
    #[arg(long)]
    pub ctx: Option<u32>,
    /// Accept a context longer than the model's training context (output
    /// degrades there); without it such a context is refused.
    #[arg(long)]
    pub allow_ctx_beyond_train: bool,
    /// Threads (the arena holds per-thread attention scratch).
    #[arg(short = 't', long, default_value_t = default_threads())]
    pub threads: u32,
    /// Tokens per micro-batch.
    #[arg(short = 'b', long, default_value_t = default_batch())]
    pub batch: u32,
    /// KV cache element type: f16, q8_0, f32.
    #[arg(long, default_value = "f16", value_parser = parse_kv)]
    pub kv: KvType,
}

impl PlanOpts {
    /// Core's parameters for a model trained on `ctx_train` tokens,
    /// returning `outputs` logits rows per evaluation. The context: `--ctx`
    /// if given; 0 ("fill the budget") with `--budget`; else
    /// [`DEFAULT_CTX`], at most the training context.
    pub fn params(&self, ctx_train: u32, outputs: u32) -> PlanParams {
        let ctx_tokens = match (self.ctx, self.budget) {
            (Some(ctx), _) => ctx,
            (None, Some(_)) => 0,
            (None, None) => DEFAULT_CTX.min(ctx_train),
        };
        PlanParams {
            ctx_tokens,
            allow_ctx_beyond_train: self.allow_ctx_beyond_train,
            kv_type: self.kv,
            max_batch: self.batch,
            max_outputs: outputs,
            threads: self.threads,
            ..PlanParams::default()
        }
    }
}

/// A model path given as `-m MODEL` (every command) or, where a command
/// always took one, as its first positional argument.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArg {
    /// The GGUF model (or -m MODEL).
    #[arg(
        value_name = "MODEL",
        required_unless_present = "model_flag",
        conflicts_with = "model_flag"
    )]
    model_pos: Option<String>,
    /// The GGUF model.
    #[arg(short = 'm', long = "model", id = "model_flag", value_name = "MODEL")]
    model_flag: Option<String>,
}

impl ModelArg {
    /// The path, however it was given.
    pub fn path(&self) -> String {
        self.model_flag
            .clone()
            .or_else(|| self.model_pos.clone())
            .unwrap_or_default()
    }
}

/// What `plan` sizes: a GGUF model (`MODEL` or `-m MODEL`) or an
/// architecture described by a Hugging Face config.json (`--config`).
#[derive(clap::Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct PlanSource {
    /// The GGUF model (or -m MODEL).
    #[arg(value_name = "MODEL")]
    model_pos: Option<String>,
    /// The GGUF model.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    model_flag: Option<String>,
    /// A Hugging Face config.json: what-if sizing of an architecture the
    /// engine may not run (weights, KV cache, scratch; see --weights, --tp).
    #[arg(long, value_name = "CONFIG_JSON")]
    pub config: Option<String>,
}

impl PlanSource {
    /// The GGUF model's path, if one was given.
    pub fn model(&self) -> Option<String> {
        self.model_flag.clone().or_else(|| self.model_pos.clone())
    }
}

/// Options of `plan --config` only (defaults applied by the accessors, so
/// that giving one without --config can be refused: [`WhatIfOpts::check`]).
#[derive(clap::Args, Clone, Debug)]
pub struct WhatIfOpts {
    /// With --config: type of the weight matrices (f16, bf16, q8_0, q4_0,
    /// q4_k, ... any ggml type; norms, biases and routers stay f32) [default: f16].
    #[arg(long, value_parser = parse_weight_type)]
    weights: Option<GgmlType>,
    /// With --config: sequences held at once, each with its own KV cache [default: 1].
    #[arg(long)]
    sequences: Option<u32>,
    /// With --config: tensor-parallel shards; the report gives one shard [default: 1].
    #[arg(long)]
    tp: Option<u32>,
}

impl WhatIfOpts {
    /// Refuses what-if options given without `--config` (clap's `requires`
    /// cannot say it: `--config` conflicts with the model, which excuses it).
    pub fn check(&self, source: &PlanSource) -> Result<(), String> {
        let given = self.weights.is_some() || self.sequences.is_some() || self.tp.is_some();
        if given && source.config.is_none() {
            return Err(
                "--weights, --sequences and --tp size a --config architecture; \
                        a GGUF model's weights are what the file holds"
                    .into(),
            );
        }
        Ok(())
    }

    /// The weight type (default F16).
    pub fn weights(&self) -> GgmlType {
        self.weights.unwrap_or(GgmlType::F16)
    }

    /// Sequences (default 1).
    pub fn sequences(&self) -> u32 {
        self.sequences.unwrap_or(1)
    }

    /// Tensor-parallel shards (default 1).
    pub fn tp(&self) -> u32 {
        self.tp.unwrap_or(1)
    }
}

/// Parses a weight type name (ggml's, case-insensitive).
pub fn parse_weight_type(text: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(text)
        .ok_or_else(|| format!("{text:?} is not a ggml type (f16, bf16, q8_0, q4_0, q4_k, ...)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        plan: PlanOpts,
    }

    #[test]
    fn the_model_comes_from_either_form_but_not_both() {
        let a = Cmd::try_parse_from(["x", "m.gguf"]).unwrap();
        assert_eq!(a.model.path(), "m.gguf");
        let b = Cmd::try_parse_from(["x", "-m", "m.gguf"]).unwrap();
        assert_eq!(b.model.path(), "m.gguf");
        assert!(Cmd::try_parse_from(["x"]).is_err());
        assert!(Cmd::try_parse_from(["x", "a.gguf", "-m", "b.gguf"]).is_err());
    }

    #[derive(Parser)]
    struct PlanCmd {
        #[command(flatten)]
        source: PlanSource,
        #[command(flatten)]
        whatif: WhatIfOpts,
    }

    #[test]
    fn plan_takes_one_model_or_one_config() {
        let a = PlanCmd::try_parse_from(["x", "m.gguf"]).unwrap();
        assert_eq!(
            (a.source.model().as_deref(), a.source.config),
            (Some("m.gguf"), None)
        );
        let b = PlanCmd::try_parse_from(["x", "--config", "c.json", "--weights", "Q4_K"]).unwrap();
        assert_eq!(b.source.config.as_deref(), Some("c.json"));
        assert_eq!(b.whatif.weights(), GgmlType::Q4_K);
        assert_eq!((b.whatif.sequences(), b.whatif.tp()), (1, 1));
        assert!(PlanCmd::try_parse_from(["x"]).is_err());
        assert!(PlanCmd::try_parse_from(["x", "m.gguf", "--config", "c.json"]).is_err());
        assert!(PlanCmd::try_parse_from(["x", "-m", "m.gguf", "--config", "c.json"]).is_err());
        // What-if options need --config.
        let c = PlanCmd::try_parse_from(["x", "m.gguf", "--tp", "2"]).unwrap();
        assert!(c.whatif.check(&c.source).unwrap_err().contains("--config"));
        assert!(b.whatif.check(&b.source).is_ok());
        assert!(PlanCmd::try_parse_from(["x", "--config", "c", "--weights", "q9"]).is_err());
    }

    #[test]
    fn the_context_default_is_the_same_for_every_command() {
        let a = Cmd::try_parse_from(["x", "m"]).unwrap();
        let p = a.plan.params(8192, 1);
        assert_eq!(p.ctx_tokens, DEFAULT_CTX);
        assert_eq!(p.threads, default_threads());
        assert_eq!(p.max_batch, PlanParams::default().max_batch);
        assert_eq!(a.plan.params(512, 1).ctx_tokens, 512);
        let b = Cmd::try_parse_from(["x", "m", "--budget", "64MiB"]).unwrap();
        assert_eq!(b.plan.params(8192, 1).ctx_tokens, 0);
        let c =
            Cmd::try_parse_from(["x", "m", "--ctx", "9000", "--allow-ctx-beyond-train"]).unwrap();
        let p = c.plan.params(8192, 1);
        assert_eq!((p.ctx_tokens, p.allow_ctx_beyond_train), (9000, true));
    }
}
