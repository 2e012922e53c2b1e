//! `arenalm inspect` and `arenalm plan` on the real model.

use arenalm_tests::{arenalm_bin, model_q4_1, run, run_ok};
use serde_json::Value;
use std::process::Command;

fn arenalm(args: &[&str]) -> String {
    run_ok(Command::new(arenalm_bin()).args(args))
}

#[test]
fn inspect_reads_the_header_and_tensor_table() {
    let m = model_q4_1();
    let out = arenalm(&["inspect", m.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["gguf_version"], 3);
    assert_eq!(v["tensor_count"], 272);
    assert_eq!(v["metadata"]["general.architecture"], "llama");
    assert_eq!(v["metadata"]["tokenizer.ggml.tokens"]["len"], 49152);
    let h = &v["hparams"];
    assert_eq!(
        (
            h["n_layers"].as_u64(),
            h["dim"].as_u64(),
            h["ffn_dim"].as_u64()
        ),
        (Some(30), Some(576), Some(1536))
    );
    assert_eq!(
        (
            h["n_heads"].as_u64(),
            h["n_kv_heads"].as_u64(),
            h["head_dim"].as_u64()
        ),
        (Some(9), Some(3), Some(64))
    );
    assert_eq!(h["tied_embeddings"], true);
    let tensors = v["tensors"].as_array().unwrap();
    let embd = tensors
        .iter()
        .find(|t| t["name"] == "token_embd.weight")
        .unwrap();
    assert_eq!(embd["type"], "Q8_0");
    // 49,152 rows of 576 Q8_0 values: 18 blocks of 34 bytes = 612 bytes a row.
    assert_eq!(embd["bytes"].as_u64(), Some(49_152 * 612));
    let text = arenalm(&["inspect", m.to_str().unwrap()]);
    assert!(text.contains("blk.29.ffn_down.weight"));
}

#[test]
fn plan_reports_23040_kv_bytes_per_token() {
    let m = model_q4_1();
    let out = arenalm(&[
        "plan",
        m.to_str().unwrap(),
        "--ctx",
        "2048",
        "--kv",
        "f16",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    // 30 layers x 2 (K, V) x 3 KV heads x 64 x 2 bytes.
    assert_eq!(v["kv_bytes_per_token"], 23_040);
    // 2048 tokens = 128 pages of 16 x 23,040 = 368,640 bytes.
    assert_eq!(v["kv_pages"], 128);
    assert_eq!(v["kv_pool_bytes"], 128 * 368_640 + 512);
    let items = [
        "engine_state_bytes",
        "model_index_bytes",
        "tokenizer_bytes",
        "kv_pool_bytes",
        "page_table_bytes",
    ];
    let sum: u64 = items.iter().map(|k| v[k].as_u64().unwrap()).sum::<u64>()
        + v["scratch"]["total"].as_u64().unwrap();
    assert_eq!(v["total_bytes"].as_u64(), Some(sum));
    // Q8_0: 64 values = 2 blocks of 34 bytes: 30 x 2 x 3 x 68 = 12,240.
    let q8 = arenalm(&[
        "plan",
        m.to_str().unwrap(),
        "--ctx",
        "2048",
        "--kv",
        "q8_0",
        "--json",
    ]);
    let q8: Value = serde_json::from_str(&q8).unwrap();
    assert_eq!(q8["kv_bytes_per_token"], 12_240);
}

#[test]
fn the_largest_context_for_a_budget_is_consistent_with_the_fixed_costs() {
    let m = model_q4_1();
    let budget: u64 = 64 << 20;
    let out = arenalm(&["plan", m.to_str().unwrap(), "--budget", "64MiB", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let g = |k: &str| v[k].as_u64().unwrap();
    let fixed = g("total_bytes") - g("kv_pool_bytes") - g("page_table_bytes");
    let page = g("kv_bytes_per_page");
    let round = |x: u64| x.div_ceil(64) * 64;
    // Arena bytes for n pages: the fixed items, n pages, their free-list
    // links (4 bytes each) and page table entries (8 bytes each).
    let total = |n: u64| fixed + n * page + round(4 * n) + round(8 * n);
    let ctx = g("max_context_tokens");
    assert_eq!(ctx % 16, 0);
    let pages = ctx / 16;
    assert!(total(pages) <= budget, "{} > {budget}", total(pages));
    assert!(total(pages + 1) > budget, "one more page would fit");
    assert_eq!(g("ctx_tokens"), ctx);
    // The human-readable table says the same.
    let text = arenalm(&["plan", m.to_str().unwrap(), "--budget", "64MiB"]);
    assert!(
        text.contains(&format!("largest context {ctx} tokens")),
        "{text}"
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let m = model_q4_1();
    let out =
        run(Command::new(arenalm_bin()).args(["plan", m.to_str().unwrap(), "--budget", "12XB"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
    let out =
        run(Command::new(arenalm_bin()).args(["plan", m.to_str().unwrap(), "--budget", "1MiB"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enough memory"));
    let out = run(Command::new(arenalm_bin()).args(["inspect", "/nonexistent.gguf"]));
    assert!(!out.status.success());
    // An absurd thread count is refused before a thread starts or an arena
    // is allocated, by every command that takes one (bench measures nothing).
    for args in [
        &["run", "-p", "Hi", "--budget", "1GB"][..],
        &["bench", "-p", "0", "-n", "1"][..],
        &["plan"][..],
    ] {
        let out = run(Command::new(arenalm_bin()).args(args).args([
            "-m",
            m.to_str().unwrap(),
            "-t",
            "100000",
        ]));
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("threads = 100000 is out of range (accepted: 1 to 256)"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn total_bytes(json: &str) -> u64 {
    let v: Value = serde_json::from_str(json).unwrap();
    v["total_bytes"].as_u64().unwrap()
}

/// The "arena: USED of BUDGET bytes used" numbers `run` prints.
fn arena_line(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("arena: "))
        .unwrap_or_else(|| panic!("no arena line in:\n{stderr}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[1].parse().unwrap(), w[3].parse().unwrap())
}

#[test]
fn the_arena_plan_prints_is_the_arena_run_needs_with_the_same_flags() {
    let m = model_q4_1();
    let m = m.to_str().unwrap();
    // Default flags, then a thread count that changes the arena: each time
    // `plan`'s total is exactly what `run` uses for the same context.
    for extra in [&[][..], &["-t", "3", "-b", "32"][..]] {
        let plan = arenalm(&[&["plan", "-m", m, "--json"], extra].concat());
        let total = total_bytes(&plan);
        let v: Value = serde_json::from_str(&plan).unwrap();
        assert_eq!(
            v["params"]["ctx_tokens"], 2048,
            "the shared default context"
        );
        let budget = total.to_string();
        let out = run(Command::new(arenalm_bin()).args(
            [
                &["run", "-m", m, "--ctx", "2048", "--budget", &budget][..],
                extra,
                &["-n", "1", "-p", "Hi", "--temp", "0"],
            ]
            .concat(),
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(arena_line(&stderr), (total, total), "{stderr}");
    }
}

#[test]
fn a_context_beyond_training_needs_an_explicit_flag() {
    let m = model_q4_1();
    let m = m.to_str().unwrap();
    let out = run(Command::new(arenalm_bin()).args(["plan", m, "--ctx", "9000"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("9000")
            && stderr.contains("8192")
            && stderr.contains("--allow-ctx-beyond-train"),
        "{stderr}"
    );
    let ok = arenalm(&[
        "plan",
        m,
        "--ctx",
        "9000",
        "--allow-ctx-beyond-train",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&ok).unwrap();
    assert_eq!(v["ctx_tokens"], 9000);
    // run refuses it the same way, before allocating the arena.
    let out = run(Command::new(arenalm_bin()).args(["run", "-m", m, "--ctx", "9000", "-p", "Hi"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("training context of 8192"));
}

#[test]
fn every_command_takes_dash_m() {
    let m = model_q4_1();
    let m = m.to_str().unwrap();
    // The positional form and -m give the same answer.
    assert_eq!(
        arenalm(&["inspect", "-m", m, "--json"]),
        arenalm(&["inspect", m, "--json"])
    );
    assert_eq!(
        arenalm(&["plan", "-m", m, "--json"]),
        arenalm(&["plan", m, "--json"])
    );
    let ids = arenalm(&["tokenize", "-m", m, "-p", "Hello", "--json"]);
    assert!(ids.contains("19556"), "{ids}");
    // quantize reads its input from -m (a missing file proves which argument it took).
    let out = run(Command::new(arenalm_bin()).args([
        "quantize",
        "-m",
        "/nonexistent.gguf",
        "out.gguf",
        "q8_0",
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent.gguf"));
    // Both forms at once are refused.
    let out = run(Command::new(arenalm_bin()).args(["plan", m, "-m", m]));
    assert!(!out.status.success());
}
