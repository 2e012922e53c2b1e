//! `arenalm`: run, chat, plan, bench, perplexity, tokenize, quantize and
//! inspect, built on the same engine and host layer a C program uses.

mod bench;
mod chat;
mod common;
mod config;
mod inspect;
mod opts;
mod perplexity;
mod plan;
mod quantize;
mod run;
mod tokenize;

use clap::{Parser, Subcommand};

use common::{parse_kernel, parse_kv};
use opts::{default_batch, ModelArg, PlanOpts, PlanSource, WhatIfOpts};

#[derive(Parser)]
#[command(
    name = "arenalm",
    version,
    about = "LLM inference inside a memory budget you fix"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the engine runs: model, arena, threads, kernels.
#[derive(clap::Args, Clone, Debug)]
struct EngineOpts {
    /// The GGUF model.
    #[arg(short = 'm', long)]
    model: String,
    #[command(flatten)]
    plan: PlanOpts,
    /// Kernel path: auto, scalar, avx2, avx-vnni, avx512-vnni, neon, neon-dotprod, neon-i8mm
    /// (also ALM_KERNEL).
    #[arg(long, default_value = "auto", value_parser = parse_kernel)]
    kernel: common::KernelArg,
}

impl EngineOpts {
    fn args(&self) -> run::EngineArgs {
        run::EngineArgs {
            model: self.model.clone(),
            plan: self.plan.clone(),
            kernel: self.kernel.0,
        }
    }
}

/// Sampling options.
#[derive(clap::Args, Clone, Debug)]
struct SampleOpts {
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: u32,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SampleOpts {
    fn args(&self) -> run::SampleArgs {
        run::SampleArgs {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt inside a fixed arena and report speed and memory.
    Run {
        #[command(flatten)]
        engine: EngineOpts,
        /// The prompt (special tokens such as <|im_start|> are parsed).
        #[arg(short = 'p', long)]
        prompt: String,
        /// Tokens to generate at most.
        #[arg(short = 'n', long, default_value_t = 128)]
        n_predict: u32,
        #[command(flatten)]
        sample: SampleOpts,
    },
    /// Chat with the model; the conversation stays in the KV cache.
    Chat {
        #[command(flatten)]
        engine: EngineOpts,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Chat template family instead of the model's (chatml, llama3, llama2, gemma, zephyr, phi3, mistral-v7, ...).
        #[arg(long)]
        template: Option<String>,
        /// Tokens per reply at most.
        #[arg(short = 'n', long, default_value_t = 512)]
        n_predict: u32,
        #[command(flatten)]
        sample: SampleOpts,
    },
    /// Perplexity of a text file, following llama.cpp's protocol (--ctx is the chunk size, default 512).
    Perplexity {
        #[command(flatten)]
        engine: EngineOpts,
        /// The text file.
        #[arg(short = 'f', long)]
        file: String,
    },
    /// Write a GGUF with its tensors converted to q8_0, q4_0 or f16 (llama-quantize's rules),
    /// and/or its matrices in arenalm's 16-row panel layout (--repack).
    Quantize {
        /// Input GGUF (instead of the first positional argument).
        #[arg(short = 'm', long = "model", value_name = "IN.gguf")]
        model: Option<String>,
        /// IN.gguf OUT.gguf [TYPE] (or OUT.gguf [TYPE] with -m IN.gguf); TYPE is q8_0, q4_0
        /// or f16 (omitted: keep each tensor's type).
        #[arg(value_names = ["IN.gguf", "OUT.gguf", "TYPE"], num_args = 1..=3, required = true)]
        args: Vec<String>,
        /// Store every Q8_0/Q4_0/Q4_1 matrix with a multiple of 16 rows in the
        /// panel layout the integer GEMM reads, so that no pack step runs at
        /// inference. Such a file is arenalm's own: other GGUF readers refuse it.
        #[arg(long)]
        repack: bool,
    },
    /// Token ids of a text (works on any GGUF with a supported tokenizer).
    Tokenize {
        /// The GGUF model.
        #[arg(short = 'm', long)]
        model: String,
        /// Text to tokenize.
        #[arg(short = 'p', long, conflicts_with = "file")]
        prompt: Option<String>,
        /// File to tokenize.
        #[arg(short = 'f', long)]
        file: Option<String>,
        /// Turn special-token texts (<|im_start|>, <bos>) into their ids.
        #[arg(long)]
        parse_special: bool,
        /// Prepend BOS.
        #[arg(long)]
        bos: bool,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        /// Print each id with its piece.
        #[arg(long)]
        pieces: bool,
    },
    /// Show a GGUF file's metadata, hyperparameters and tensor table.
    Inspect {
        #[command(flatten)]
        model: ModelArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// With --json, print arrays in full instead of their first elements.
        #[arg(long)]
        full: bool,
    },
    /// Show the arena an engine needs, item by item, and what fits a budget
    /// (same defaults as run and chat, so the arena it prints is theirs);
    /// or, with --config, what an architecture needs (weights, KV, scratch).
    Plan {
        #[command(flatten)]
        source: PlanSource,
        #[command(flatten)]
        plan: PlanOpts,
        #[command(flatten)]
        whatif: WhatIfOpts,
        /// Rows of logits per evaluation.
        #[arg(long, default_value_t = 1)]
        outputs: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure prompt processing (pp) and generation (tg) speed, like llama-bench.
    Bench {
        /// The GGUF file.
        #[arg(short = 'm', long)]
        model: String,
        /// Prompt tokens (comma-separated list; 0 skips).
        #[arg(short = 'p', long, default_value = "512", value_delimiter = ',')]
        prompt: Vec<u32>,
        /// Generated tokens (comma-separated list; 0 skips).
        #[arg(short = 'n', long, default_value = "128", value_delimiter = ',')]
        gen: Vec<u32>,
        /// Thread counts to test (comma-separated).
        #[arg(short = 't', long, default_value = "1,2", value_delimiter = ',')]
        threads: Vec<u32>,
        /// Repetitions of each test.
        #[arg(short = 'r', long, default_value_t = 3)]
        reps: u32,
        /// Tokens per micro-batch for prompt processing.
        #[arg(short = 'b', long, default_value_t = default_batch())]
        batch: u32,
        /// Tokens already in the KV cache before each measurement (comma-separated
        /// list), like llama-bench's `-d`.
        #[arg(short = 'd', long, default_value = "0", value_delimiter = ',')]
        depth: Vec<u32>,
        /// KV cache element type.
        #[arg(long, default_value = "f16", value_parser = parse_kv)]
        kv: arenalm_core::kv::KvType,
        /// Kernel path.
        #[arg(long, default_value = "auto", value_parser = parse_kernel)]
        kernel: common::KernelArg,
        /// Also measure the memory-bandwidth ceiling (a streaming read of a
        /// buffer far larger than the caches, per thread count) and report
        /// each tg as the fraction of it that decoding used.
        #[arg(long)]
        bandwidth: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    // Like a C tool, end quietly when the reader of stdout goes away
    // (`arenalm inspect ... | head`) instead of failing on every write.
    // SAFETY: restoring the default disposition of SIGPIPE at startup,
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            engine,
            prompt,
            n_predict,
            sample,
        } => run::run(&engine.args(), &prompt, n_predict, &sample.args()),
        Command::Chat {
            engine,
            system,
            template,
            n_predict,
            sample,
        } => chat::run(
            &engine.args(),
            system.as_deref(),
            template.as_deref(),
            n_predict,
            &sample.args(),
        ),
        Command::Quantize {
            model,
            args,
            repack,
        } => match (model, args.as_slice()) {
            (Some(input), [output]) => quantize::run(&input, output, None, repack),
            (Some(input), [output, target]) => quantize::run(&input, output, Some(target), repack),
            (None, [input, output]) => quantize::run(input, output, None, repack),
            (None, [input, output, target]) => quantize::run(input, output, Some(target), repack),
            (Some(_), _) => Err("with -m IN.gguf, give OUT.gguf [TYPE]".into()),
            (None, _) => Err("give IN.gguf OUT.gguf [TYPE] (or -m IN.gguf OUT.gguf [TYPE])".into()),
        },
        Command::Perplexity { engine, file } => {
            // --ctx is the chunk size here (llama.cpp's -c), 512 by default.
            let chunk = engine.plan.ctx.unwrap_or(512);
            perplexity::run(&engine.args(), &file, chunk)
        }
        Command::Tokenize {
            model,
            prompt,
            file,
            parse_special,
            bos,
            json,
            pieces,
        } => match (prompt, file) {
            (Some(p), None) => tokenize::run(&model, &p, parse_special, bos, json, pieces),
            (None, Some(f)) => std::fs::read_to_string(&f)
                .map_err(|e| format!("cannot read {f}: {e}"))
                .and_then(|t| tokenize::run(&model, &t, parse_special, bos, json, pieces)),
            _ => Err("give the text with -p TEXT or -f FILE".into()),
        },
        Command::Inspect { model, json, full } => inspect::run(&model.path(), json, full),
        Command::Plan {
            source,
            plan,
            whatif,
            outputs,
            json,
        } => match whatif
            .check(&source)
            .map(|()| (source.model(), source.config))
        {
            Err(e) => Err(e),
            Ok((Some(model), _)) => plan::run(&plan::PlanArgs {
                model,
                plan,
                outputs,
                json,
            }),
            Ok((None, Some(config))) => plan::run_config(&plan::WhatIfArgs {
                config,
                plan,
                outputs,
                weights: whatif.weights(),
                sequences: whatif.sequences(),
                tp: whatif.tp(),
                json,
            }),
            Ok((None, None)) => Err("give a model (MODEL or -m MODEL) or --config".into()),
        },
        Command::Bench {
            model,
            prompt,
            gen,
            threads,
            reps,
            batch,
            depth,
            kv,
            kernel,
            bandwidth,
            json,
        } => bench::run(&bench::BenchArgs {
            model,
            prompt,
            gen,
            threads,
            reps,
            batch,
            depth,
            kv,
            kernel: kernel.0,
            bandwidth,
            json,
        }),
    };
    if let Err(e) = result {
        eprintln!("arenalm: {e}");
        std::process::exit(1);
    }
}
