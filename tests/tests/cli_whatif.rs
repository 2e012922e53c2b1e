//! `arenalm plan --config`: what-if sizing from Hugging Face config.json
//! files (fixtures in tests/data/configs, written from the models' public
//! configs), every expected number worked out by hand in the comment above it.

use arenalm_tests::{arenalm_bin, root, run, run_ok};
use serde_json::Value;
use std::process::Command;

fn config(name: &str) -> String {
    root()
        .join("tests/data/configs")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// `plan --config NAME --json` with `args`, parsed.
fn whatif(name: &str, args: &[&str]) -> Value {
    let out = run_ok(
        Command::new(arenalm_bin())
            .args(["plan", "--config", &config(name), "--json", "-t", "1"])
            .args(args),
    );
    serde_json::from_str(&out).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn llama_3_1_8b() {
    let v = whatif("llama-3.1-8b.json", &["--ctx", "8192", "--weights", "q8_0"]);
    let m = &v["model"];
    // 32 x (q 16,777,216 + k, v 2 x 4,194,304 + o 16,777,216 + 3 x 58,720,256
    // + norms 8,192) = 6,979,584,000; + 2 x 128,256 x 4,096 + 4,096 = 8,030,261,248.
    assert_eq!(u(&m["params_total"]), 8_030_261_248);
    // Q8_0: (8,030,261,248 - 266,240 f32 norm values) / 32 x 34 + 266,240 x 4 = 8,532,934,656.
    assert_eq!(u(&m["weights_resident_bytes"]), 8_532_934_656);
    // F16 KV: 32 layers x 2 x 8 KV heads x 128 x 2 bytes = 131,072 per token;
    // 8,192 tokens: 1,073,741,824.
    assert_eq!(u(&m["kv_bytes_per_token"]), 131_072);
    assert_eq!(u(&m["kv_bytes"]), 1_073_741_824);
    assert_eq!(v["model_type"], "llama");
    assert_eq!(v["params"]["weights"], "q8_0");
    // One shard is the whole model; its total adds the scratch.
    let s = &v["shard"];
    assert_eq!(s["params_total"], m["params_total"]);
    assert_eq!(
        u(&s["total_bytes"]),
        8_532_934_656 + 1_073_741_824 + u(&s["scratch"]["total"])
    );
    // Q8_0 KV: 128 values = 4 blocks of 34 bytes = 136: 32 x 2 x 8 x 136 = 69,632 per token.
    let q8 = whatif("llama-3.1-8b.json", &["--kv", "q8_0"]);
    assert_eq!(u(&q8["model"]["kv_bytes_per_token"]), 69_632);
    // The default context: 2,048 tokens (at most the 131,072 trained).
    assert_eq!(q8["params"]["ctx_tokens"], 2048);
}

#[test]
fn qwen2_5_0_5b() {
    let v = whatif("qwen2.5-0.5b.json", &["--ctx", "32768"]);
    let m = &v["model"];
    // 24 x (q 802,816 + k, v 2 x 114,688 + o 802,816 + 3 x 4,358,144 + biases
    // 1,152 + norms 1,792) = 357,897,216; tied embeddings 136,134,656; norm 896.
    assert_eq!(u(&m["params_total"]), 494_032_768);
    // F16 (the default): 493,961,216 x 2 + 71,552 f32 x 4; tied, so all of it is read.
    assert_eq!(u(&m["weights_resident_bytes"]), 988_208_640);
    assert_eq!(u(&m["weights_read_per_token_bytes"]), 988_208_640);
    // 24 x 2 x 2 x 64 x 2 = 12,288 per token; x 32,768 = 402,653,184.
    assert_eq!(u(&m["kv_bytes_per_token"]), 12_288);
    assert_eq!(u(&m["kv_bytes"]), 402_653_184);
    // use_sliding_window is false: no window, despite sliding_window 32,768.
    assert_eq!(v["arch"]["sliding_window"], Value::Null);
    assert_eq!(v["arch"]["qkv_bias"], true);
}

#[test]
fn mistral_7b_sliding_window() {
    let v = whatif("mistral-7b-v0.1.json", &["--ctx", "8192"]);
    let m = &v["model"];
    // 32 x 218,112,000 + 2 x 32,000 x 4,096 + 4,096 = 7,241,732,096.
    assert_eq!(u(&m["params_total"]), 7_241_732_096);
    // Every layer keeps at most 4,096 tokens: 131,072 x 4,096 = 536,870,912.
    assert_eq!(u(&m["kv_bytes_per_token"]), 131_072);
    assert_eq!(u(&m["kv_bytes"]), 536_870_912);
    assert_eq!(v["arch"]["sliding_window"]["n_sliding_layers"], 32);
    // Below the window, 3 sequences of 1,000 tokens: 3 x 1,000 x 131,072.
    let v = whatif(
        "mistral-7b-v0.1.json",
        &["--ctx", "1000", "--sequences", "3"],
    );
    assert_eq!(u(&v["model"]["kv_bytes"]), 393_216_000);
}

#[test]
fn gemma3_local_and_global_layers() {
    let v = whatif("gemma-3-270m.json", &["--ctx", "32768"]);
    let m = &v["model"];
    // 18 x (q 655,360 + k, v 2 x 163,840 + o 655,360 + 3 x 1,310,720 + 4 norms
    // of 640 + q, k norms 2 x 256) = 100,325,376; tied embeddings 262,144 x 640
    // = 167,772,160; final norm 640: 268,098,176.
    assert_eq!(u(&m["params_total"]), 268_098_176);
    // layer_types: 15 sliding, 3 global. 1,024 bytes per layer and token:
    // 3 x 32,768 x 1,024 + 15 x 512 x 1,024 = 108,527,616.
    assert_eq!(v["arch"]["sliding_window"]["n_sliding_layers"], 15);
    assert_eq!(u(&m["kv_bytes_per_token"]), 18_432);
    assert_eq!(u(&m["kv_bytes"]), 108_527_616);

    // Gemma 3 4B (multimodal: the language model nested in text_config),
    // sliding_window_pattern 6: 34 - 34 / 6 = 29 sliding, 5 global, window
    // 1,024; 2 x 4 KV heads x 256 x 2 = 4,096 bytes per layer and token.
    let v = whatif("gemma-3-4b-it.json", &["--ctx", "8192"]);
    assert_eq!(v["model_type"], "gemma3_text");
    // 34 x 4,096 = 139,264 per token; 5 x 8,192 x 4,096 + 29 x 1,024 x 4,096
    // = 167,772,160 + 121,634,816 = 289,406,976.
    assert_eq!(u(&v["model"]["kv_bytes_per_token"]), 139_264);
    assert_eq!(u(&v["model"]["kv_bytes"]), 289_406_976);
}

#[test]
fn gemma3_270m_parameters_are_the_gguf_files() {
    // The same count from the real file's tensor table.
    let gguf = root().join("models/gemma-3-270m-q4_k_m.gguf");
    let out =
        run_ok(Command::new(arenalm_bin()).args(["inspect", gguf.to_str().unwrap(), "--json"]));
    let inspect: Value = serde_json::from_str(&out).unwrap();
    let elements: u64 = inspect["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(u)
                .product::<u64>()
        })
        .sum();
    let v = whatif("gemma-3-270m.json", &[]);
    assert_eq!(u(&v["model"]["params_total"]), elements);
}

#[test]
fn mixtral_8x7b_moe() {
    let v = whatif(
        "mixtral-8x7b-v0.1.json",
        &["--weights", "q4_0", "--ctx", "4096"],
    );
    let m = &v["model"];
    // 32 x (attention 41,943,040 + 8 experts x 176,160,768 + router 32,768 +
    // norms 8,192) + 2 x 131,072,000 + 4,096 = 46,702,792,704.
    assert_eq!(u(&m["params_total"]), 46_702_792_704);
    // Per token 2 experts: 32 x (41,943,040 + 352,321,536 + 40,960) + 131,072,000 + 4,096.
    assert_eq!(u(&m["params_active"]), 12_748_853_248);
    // Q4_0 (18 bytes per 32): (46,702,792,704 - 1,314,816) / 32 x 18 + 1,314,816 x 4.
    assert_eq!(u(&m["weights_resident_bytes"]), 26_274_840_576);
    assert_eq!(u(&m["weights_read_per_token_bytes"]), 7_175_749_632);
    // No window (sliding_window null): 131,072 x 4,096.
    assert_eq!(u(&m["kv_bytes"]), 536_870_912);
    assert_eq!(v["arch"]["moe"]["expert_ffn_dim"], 14_336);
}

#[test]
fn deepseek_v3_mla_and_moe_on_eight_shards() {
    let v = whatif("deepseek-v3.json", &["--ctx", "4096", "--tp", "8"]);
    let m = &v["model"];
    // 3 dense layers x 583,483,392 + 58 MoE layers x 11,507,286,272 +
    // embeddings and head 1,853,358,080 + final norm 7,168 = 671,026,419,200.
    assert_eq!(u(&m["params_total"]), 671_026_419_200);
    assert_eq!(u(&m["params_active"]), 36_625_618_432);
    // The latent and RoPE key: 61 x (512 + 64) x 2 = 70,272 per token, x 4,096.
    assert_eq!(u(&m["kv_bytes_per_token"]), 70_272);
    assert_eq!(u(&m["kv_bytes"]), 287_834_112);
    assert_eq!(v["arch"]["moe"]["router_bias"], true);
    // One of 8 shards: 16 heads, vocab 16,160, dense ffn 2,304, experts of 256.
    // Attention 11,010,048 + 1,536 + 1,536 x 16 x 192 + 4,128,768 + 512 + 512
    // x 16 x 256 + 7,168 x 16 x 128 = 36,636,672; norms 14,336; dense ffn 3 x
    // 2,304 x 7,168 = 49,545,216; MoE 257 x 3 x 256 x 7,168 + 1,835,264 =
    // 1,416,626,432. 3 x 86,196,224 + 58 x 1,453,277,440 + 2 x 16,160 x 7,168
    // + 7,168 = 84,780,357,120.
    let s = &v["shard"];
    assert_eq!(u(&s["params_total"]), 84_780_357_120);
    // The latent is not split by heads: every shard caches all of it.
    assert_eq!(u(&s["kv_bytes"]), 287_834_112);
}

fn fails(args: &[&str]) -> String {
    let out = run(Command::new(arenalm_bin()).args(args));
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configs_and_flags_are_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("arenalm-whatif-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let unknown = write(
        "unknown.json",
        r#"{"model_type": "gpt9", "hidden_size": 8}"#,
    );
    assert!(fails(&["plan", "--config", &unknown]).contains("`model_type` = \"gpt9\""));
    let missing = write(
        "missing.json",
        r#"{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 128}"#,
    );
    assert!(fails(&["plan", "--config", &missing]).contains("missing key `vocab_size`"));
    let gqa = write(
        "gqa.json",
        r#"{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 3, "intermediate_size": 128,
            "vocab_size": 100}"#,
    );
    assert!(fails(&["plan", "--config", &gqa]).contains("`num_key_value_heads` = 3"));
    let llama = config("llama-3.1-8b.json");
    // Q4_K needs whole 256-value rows; Qwen2.5-0.5B's 896 is not.
    let qwen = config("qwen2.5-0.5b.json");
    assert!(fails(&["plan", "--config", &qwen, "--weights", "q4_k"])
        .contains("dim is not a whole number"));
    assert!(fails(&["plan", "--config", &llama, "--weights", "q9"]).contains("not a ggml type"));
    assert!(fails(&["plan", "--config", &llama, "--budget", "1GB"]).contains("--budget"));
    assert!(fails(&["plan", "--config", &llama, "--tp", "0"]).contains("shards = 0"));
    // Beyond max_position_embeddings without the flag.
    let mistral = config("mistral-7b-v0.1.json");
    let e = fails(&["plan", "--config", &mistral, "--ctx", "40000"]);
    assert!(
        e.contains("40000") && e.contains("max_position_embeddings"),
        "{e}"
    );
    // What-if flags need --config; a model and a config together are refused.
    let m = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = m.to_str().unwrap();
    assert!(fails(&["plan", m, "--tp", "2"]).contains("--config"));
    fails(&["plan", m, "--config", &llama]);
    assert!(fails(&["plan", "--config", "/nonexistent.json"]).contains("cannot read"));
    // The text report names the model and its window.
    let text = run_ok(Command::new(arenalm_bin()).args(["plan", "--config", &mistral, "-t", "1"]));
    assert!(
        text.contains("32 layers with a 4096-token window"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
