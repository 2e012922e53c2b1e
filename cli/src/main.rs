//! `arenalm`: run, chat, plan, bench, perplexity, tokenize, quantize and
//! inspect, built on the same engine and host layer a C program uses.

mod bench;
mod common;
mod inspect;
mod plan;

use clap::{Parser, Subcommand};

use common::{parse_kernel, parse_kv, parse_size};

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

#[derive(Subcommand)]
enum Command {
    /// Show a GGUF file's metadata, hyperparameters and tensor table.
    Inspect {
        /// The GGUF file.
        model: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// With --json, print arrays in full instead of their first elements.
        #[arg(long)]
        full: bool,
    },
    /// Show the arena an engine needs, item by item, and what fits a budget.
    Plan {
        /// The GGUF file.
        model: String,
        /// Context in tokens (default: the model's training context, or
        /// the largest that fits --budget).
        #[arg(long)]
        ctx: Option<u32>,
        /// Arena budget: bytes, or with a unit (64MiB, 1.5GB, 512K).
        #[arg(long, value_parser = parse_size)]
        budget: Option<usize>,
        /// KV cache element type.
        #[arg(long, default_value = "f16", value_parser = parse_kv)]
        kv: arenalm_core::kv::KvType,
        /// Tokens per micro-batch.
        #[arg(long, default_value_t = 64)]
        batch: u32,
        /// Rows of logits per evaluation.
        #[arg(long, default_value_t = 1)]
        outputs: u32,
        /// Threads.
        #[arg(short = 't', long, default_value_t = 1)]
        threads: u32,
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
        #[arg(short = 'b', long, default_value_t = 64)]
        batch: u32,
        /// KV cache element type.
        #[arg(long, default_value = "f16", value_parser = parse_kv)]
        kv: arenalm_core::kv::KvType,
        /// Kernel path.
        #[arg(long, default_value = "auto", value_parser = parse_kernel)]
        kernel: Option<arenalm_core::kernels::KernelPath>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { model, json, full } => inspect::run(&model, json, full),
        Command::Plan {
            model,
            ctx,
            budget,
            kv,
            batch,
            outputs,
            threads,
            json,
        } => plan::run(&plan::PlanArgs {
            model,
            ctx,
            budget,
            kv,
            batch,
            outputs,
            threads,
            json,
        }),
        Command::Bench {
            model,
            prompt,
            gen,
            threads,
            reps,
            batch,
            kv,
            kernel,
            json,
        } => bench::run(&bench::BenchArgs {
            model,
            prompt,
            gen,
            threads,
            reps,
            batch,
            kv,
            kernel,
            json,
        }),
    };
    if let Err(e) = result {
        eprintln!("arenalm: {e}");
        std::process::exit(1);
    }
}
