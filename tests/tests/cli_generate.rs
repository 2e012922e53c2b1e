//! `arenalm run`, `chat`, `tokenize` and `perplexity` on the real model.

use std::io::Write;
use std::process::{Command, Stdio};

use arenalm_tests::{arenalm_bin, model_q4_1, model_q8_0, reference, root, run, run_ok};

fn q4() -> String {
    model_q4_1().to_str().unwrap().to_string()
}

#[test]
fn run_generates_inside_its_budget_and_reports() {
    let out = run(Command::new(arenalm_bin()).args([
        "run",
        "-m",
        &q4(),
        "-p",
        "The capital of France is",
        "-n",
        "16",
        "--temp",
        "0",
        "--budget",
        "64MiB",
        "-t",
        "2",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(text.starts_with("The capital of France is Paris"), "{text}");
    assert!(report.contains("prompt: 5 tokens"), "{report}");
    assert!(report.contains("generation: 16 tokens"), "{report}");
    // The fill-the-budget engine uses the budget (less what a page cannot fill).
    let used: u64 = report
        .split("arena: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("arena line");
    assert!(
        used <= 64 << 20 && used > (64 << 20) - 368_640 - 64,
        "{used}"
    );
    assert!(report.contains("peak RSS"));
}

#[test]
fn the_same_seed_gives_the_same_text() {
    let gen = |seed: &str| {
        run_ok(Command::new(arenalm_bin()).args([
            "run",
            "-m",
            &q4(),
            "-p",
            "Once upon a time",
            "-n",
            "24",
            "--temp",
            "0.9",
            "--seed",
            seed,
            "--ctx",
            "64",
        ]))
    };
    let a = gen("7");
    assert_eq!(a, gen("7"));
    let others: Vec<String> = ["8", "9", "10"].iter().map(|s| gen(s)).collect();
    assert!(
        others.iter().any(|o| o != &a),
        "three other seeds all gave the same text"
    );
}

#[test]
fn chat_holds_a_conversation_in_the_kv_cache() {
    let mut child = Command::new(arenalm_bin())
        .args([
            "chat",
            "-m",
            &q4(),
            "--temp",
            "0",
            "-n",
            "48",
            "--ctx",
            "512",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is 2+2?\n/stats\nAnd what is the capital of Italy?\n/stats\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(lines.len(), 2, "{replies}");
    assert!(lines[0].contains('4'), "{replies}");
    assert!(lines[1].contains("Rome"), "{replies}");
    // The second turn evaluated only its own tokens: the context grew by the
    // new turn, not by the whole conversation again.
    let err = String::from_utf8_lossy(&out.stderr);
    let stats: Vec<(u64, u64)> = err
        .lines()
        .filter(|l| l.starts_with("context: "))
        .map(|l| {
            let n: u64 = l["context: ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let prompt: u64 = l
                .split("last turn: ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (n, prompt)
        })
        .collect();
    assert_eq!(stats.len(), 2, "{err}");
    let (after_first, first_prompt) = stats[0];
    let (after_second, second_prompt) = stats[1];
    assert!(
        second_prompt < after_first,
        "the second turn re-evaluated the history: {stats:?}"
    );
    assert!(after_second > after_first + second_prompt, "{stats:?}");
    assert!(
        first_prompt > 20,
        "the first turn includes the default system prompt: {stats:?}"
    );
}

#[test]
fn chat_c_says_the_same_as_the_cli() {
    let exe = root().join("examples-c/build/native/chat");
    assert!(exe.exists(), "run make -C examples-c");
    let out = run_ok(
        Command::new(exe)
            .arg(model_q4_1())
            .arg("What is 2+2?")
            .arg("And what is the capital of Italy?"),
    );
    assert!(
        out.contains("assistant: The answer to this classic math problem is 4."),
        "{out}"
    );
    assert!(
        out.contains("assistant: The capital of Italy is Rome."),
        "{out}"
    );
    assert!(out.contains("context: "));
}

#[test]
fn tokenize_matches_the_reference_ids_and_works_without_a_runnable_model() {
    let records = std::fs::read_to_string(reference("tokenizer-smollm2.jsonl")).unwrap();
    for line in records
        .lines()
        .filter(|l| l.contains("Hello") || l.contains("im_start"))
        .take(6)
    {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = r["text"].as_str().unwrap();
        for (flag, key) in [
            (None, "ids"),
            (Some("--parse-special"), "ids_parse_special"),
        ] {
            let mut cmd = Command::new(arenalm_bin());
            cmd.args(["tokenize", "-m", &q4(), "-p", text, "--json"]);
            if let Some(f) = flag {
                cmd.arg(f);
            }
            let ids: serde_json::Value = serde_json::from_str(run_ok(&mut cmd).trim()).unwrap();
            assert_eq!(ids, r[key], "{text:?} ({key})");
        }
    }
    // Gemma 3 is not runnable yet, but its SentencePiece tokenizer loads.
    let gemma = root().join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(gemma.exists(), "run scripts/fetch-gemma.sh");
    let records = std::fs::read_to_string(reference("tokenizer-gemma3.jsonl")).unwrap();
    let r: serde_json::Value = serde_json::from_str(records.lines().nth(8).unwrap()).unwrap();
    let out = run_ok(Command::new(arenalm_bin()).args([
        "tokenize",
        "-m",
        gemma.to_str().unwrap(),
        "-p",
        r["text"].as_str().unwrap(),
        "--json",
    ]));
    let ids: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids, r["ids"]);
}

/// The reference perplexities (llama.cpp, --ctx 512, Apache-2.0.txt).
const PPL_Q8_0: f64 = 16.0196;
const PPL_Q4_1: f64 = 15.9411;

/// The issue's bound on the relative perplexity difference.
const ISSUE_PPL_BOUND: f64 = 0.005;

fn perplexity(model: &std::path::Path) -> f64 {
    let out = run_ok(
        Command::new(arenalm_bin())
            .arg("perplexity")
            .arg("-m")
            .arg(model)
            .arg("-f")
            .arg(reference("Apache-2.0.txt"))
            .args(["--ctx", "512", "-t", "2"]),
    );
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("PPL = ") && last.contains(" +/- "),
        "{last}"
    );
    last["PPL = ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Within 0.5% of llama.cpp, the issue's bound. (Not bit-exact: llama.cpp
/// evaluates 512-token batches with its tiled flash attention, whose
/// rounding differs from the one-row attention arenalm reproduces.)
#[test]
fn perplexity_is_within_half_a_percent_of_llama_cpp() {
    let bound = ISSUE_PPL_BOUND;
    for (model, want) in [(model_q8_0(), PPL_Q8_0), (model_q4_1(), PPL_Q4_1)] {
        let ppl = perplexity(&model);
        let rel = (ppl - want).abs() / want;
        eprintln!(
            "{}: PPL {ppl:.4} vs llama.cpp {want} ({:+.3}%; bound {:.1}%)",
            model.display(),
            (ppl - want) / want * 100.0,
            bound * 100.0
        );
        assert!(
            rel <= bound,
            "{}: PPL {ppl} is {:.3}% from {want}",
            model.display(),
            rel * 100.0
        );
    }
}
