//! The C and C++ examples, built by `make -C examples-c` (scripts/test.sh
//! does it, natively and for aarch64), run natively, under valgrind when it
//! is installed, and under qemu-aarch64 for both CPU models; and the C test
//! programs of `tests/c`, built here against the release library.

use std::path::PathBuf;
use std::process::Command;

use arenalm_tests::{arenalm_bin, have, model_q4_1, release_dir, root, run, run_ok};

fn example(target: &str, name: &str) -> PathBuf {
    let p = root().join("examples-c/build").join(target).join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make -C examples-c` (scripts/test.sh does)",
        p.display()
    );
    p
}

fn budget_plan_line(output: &str) -> String {
    output
        .lines()
        .find(|l| l.starts_with("largest context"))
        .unwrap_or_else(|| panic!("no context line in:\n{output}"))
        .to_string()
}

#[test]
fn plan_c_agrees_with_the_cli() {
    let m = model_q4_1();
    let out = run_ok(
        Command::new(example("native", "plan"))
            .arg(&m)
            .arg("67108864"),
    );
    // plan.c keeps the C API's default of one thread; the CLI's default is
    // the machine's cores, so say it.
    let cli = run_ok(Command::new(arenalm_bin()).args([
        "plan",
        m.to_str().unwrap(),
        "--budget",
        "67108864",
        "-t",
        "1",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(
        budget_plan_line(&out),
        format!(
            "largest context for this budget: {} tokens",
            v["max_context_tokens"]
        )
    );
    assert!(
        out.contains(&format!("total {:>14}", v["total_bytes"]))
            || out.contains(&v["total_bytes"].to_string())
    );
}

#[test]
fn plan_c_reports_refusals_with_a_status() {
    let m = model_q4_1();
    // A budget too small for even one KV page.
    let out = run(Command::new(example("native", "plan")).arg(&m).arg("1000"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enough memory in the arena"));
    // Not a GGUF file.
    let out = run(Command::new(example("native", "plan"))
        .arg(root().join("Cargo.toml"))
        .arg("1000"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed GGUF"));
}

#[test]
fn cpp_program_compiles_against_the_header_and_runs() {
    let out = run_ok(&mut Command::new(example("native", "version")));
    assert!(out.contains(&format!("arenalm {}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn plan_c_is_clean_under_valgrind() {
    if !have("valgrind") {
        panic!("valgrind is not installed (.ci/run installs it)");
    }
    let m = model_q4_1();
    let out = run(Command::new("valgrind")
        .args([
            "--error-exitcode=9",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "-q",
        ])
        .arg(example("native", "plan"))
        .arg(&m)
        .arg("67108864"));
    assert!(
        out.status.success(),
        "valgrind reported errors:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plan_c_cross_compiled_for_aarch64_gives_the_same_plan() {
    let m = model_q4_1();
    let native = run_ok(
        Command::new(example("native", "plan"))
            .arg(&m)
            .arg("67108864"),
    );
    for cpu in ["cortex-a72", "max"] {
        let out = run_ok(
            Command::new("qemu-aarch64")
                .args(["-L", "/usr/aarch64-linux-gnu", "-cpu", cpu])
                .arg(example("aarch64-unknown-linux-gnu", "plan"))
                .arg(&m)
                .arg("67108864"),
        );
        assert_eq!(out, native, "aarch64 ({cpu}) plan differs");
    }
}

/// The first `n` generated ids printed by generate.c.
fn generated_ids(out: &str, n: usize) -> Vec<u32> {
    let line = out
        .lines()
        .find(|l| l.starts_with("ids:"))
        .unwrap_or_else(|| panic!("no ids in:\n{out}"));
    line["ids:".len()..]
        .split_whitespace()
        .take(n)
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn generate_c_runs_in_its_static_arena_natively_and_under_qemu() {
    let m = model_q4_1();
    let prompt = "Once upon a time, in a small village nestled between the mountains, there lived";
    let native = run_ok(
        Command::new(example("native", "generate"))
            .arg(&m)
            .arg(prompt)
            .arg("64"),
    );
    let arena_line = native
        .lines()
        .find(|l| l.starts_with("arena: "))
        .expect("arena line");
    let parts: Vec<&str> = arena_line.split_whitespace().collect();
    // "arena: USED of N bytes used": the engine takes exactly the planned array.
    assert_eq!(parts[1], parts[3], "{arena_line}");
    let ids = generated_ids(&native, 16);
    assert_eq!(ids.len(), 16);
    for cpu in ["cortex-a72", "max"] {
        let out = run_ok(
            Command::new("qemu-aarch64")
                .args(["-L", "/usr/aarch64-linux-gnu", "-cpu", cpu])
                .arg(example("aarch64-unknown-linux-gnu", "generate"))
                .arg(&m)
                .arg(prompt)
                .arg("16"),
        );
        assert_eq!(
            generated_ids(&out, 16),
            ids,
            "aarch64 {cpu} generated other tokens"
        );
        let kernel = if cpu == "max" { "neon-i8mm" } else { "neon" };
        assert!(out.contains(&format!("(kernel {kernel})")), "{cpu}: {out}");
    }
}

/// Compiles `tests/c/NAME.c` against the release static library, with the
/// examples' warnings-as-errors flags, once per test run.
fn c_program(name: &'static str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(&'static str, PathBuf)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| *n == name) {
        return p.clone();
    }
    let lib = release_dir().join("libarenalm.a");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build --release --workspace` first (scripts/test.sh does)",
        lib.display()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run_ok(
        Command::new(cc)
            .args([
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O1",
                "-g",
            ])
            .arg("-I")
            .arg(root().join("include"))
            .arg(root().join(format!("tests/c/{name}.c")))
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out),
    );
    built.push((name, out.clone()));
    out
}

/// `tests/c/abuse.c`, built.
fn abuse_program() -> PathBuf {
    c_program("abuse")
}

/// The last line abuse.c prints: "abuse: N checks, 0 failed".
fn assert_abuse_passed(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "abuse.c failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let checks: usize = line
        .strip_prefix("abuse: ")
        .and_then(|l| l.strip_suffix(" checks, 0 failed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected summary {line:?}"));
    // Every size loop, NULL and handle check ran (the count only grows).
    assert!(checks >= 1600, "only {checks} checks ran");
}

#[test]
fn abuse_c_gets_the_exact_status_for_every_misuse() {
    let out = run(Command::new(abuse_program()).arg(model_q4_1()));
    assert_abuse_passed(&out);
}

#[test]
fn abuse_c_is_clean_under_valgrind() {
    if !have("valgrind") {
        panic!("valgrind is not installed (.ci/run installs it)");
    }
    let out = run(Command::new("valgrind")
        .args([
            "--error-exitcode=9",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "-q",
        ])
        .arg(abuse_program())
        .arg(model_q4_1()));
    assert_abuse_passed(&out);
}

/// The `key=value` numbers of one line of whatif.c's output.
fn whatif_line(out: &str, name: &str) -> Vec<(String, u64)> {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} line in:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn whatif_c_gets_what_plan_config_reports() {
    let out = run_ok(&mut Command::new(c_program("whatif")));
    for (name, config, args) in [
        (
            "llama-3.1-8b",
            "llama-3.1-8b.json",
            &["--weights", "q8_0", "--ctx", "8192"][..],
        ),
        ("gemma-3-270m", "gemma-3-270m.json", &["--ctx", "32768"][..]),
        (
            "deepseek-v3",
            "deepseek-v3.json",
            &["--ctx", "4096", "--tp", "8"][..],
        ),
    ] {
        let cli = run_ok(
            Command::new(arenalm_bin())
                .args(["plan", "--json", "-t", "1", "--config"])
                .arg(root().join("tests/data/configs").join(config))
                .args(args),
        );
        let v: serde_json::Value = serde_json::from_str(&cli).unwrap();
        for (key, value) in whatif_line(&out, name) {
            let want = match key.strip_prefix("shard_") {
                Some("scratch_bytes") => &v["shard"]["scratch"]["total"],
                Some(k) => &v["shard"][k],
                None => &v["model"][key.as_str()],
            };
            assert_eq!(want.as_u64(), Some(value), "{name} {key}");
        }
    }
    // Numbers worked out by hand (core/src/mem/arch_tests.rs): Llama 3.1 8B's
    // 8,030,261,248 parameters, Gemma 3 270M's 108,527,616 KV bytes at 32,768
    // tokens, one of 8 DeepSeek-V3 shards holding 84,780,357,120 parameters.
    let get = |name: &str, key: &str| {
        whatif_line(&out, name)
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap()
            .1
    };
    assert_eq!(get("llama-3.1-8b", "params_total"), 8_030_261_248);
    assert_eq!(get("gemma-3-270m", "kv_bytes"), 108_527_616);
    assert_eq!(get("deepseek-v3", "shard_params_total"), 84_780_357_120);
    assert!(
        out.contains("refused status=2 message=n_active = 300 is out of range"),
        "{out}"
    );
}

#[test]
fn whatif_c_is_clean_under_valgrind() {
    if !have("valgrind") {
        panic!("valgrind is not installed (.ci/run installs it)");
    }
    let out = run(Command::new("valgrind")
        .args(["--error-exitcode=9", "--leak-check=full", "-q"])
        .arg(c_program("whatif")));
    assert!(
        out.status.success(),
        "valgrind reported errors:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
