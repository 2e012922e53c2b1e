//! Shared helpers for the end-to-end tests: where the models, the reference
//! data and the release artifacts are, and how to run programs.
//!
//! The tests need what `scripts/test.sh` prepares: the real model in
//! `models/` and release builds of the library, the CLI and the C examples.
//! When something is missing they fail and say what to run.
//!
//! arenalm-core's integration tests and benches include this file by path
//! (`#[path = ".../tests/lib.rs"] mod e2e;`) for [`reference_dir`], since
//! they cannot depend on this crate (it depends on them). So it uses only
//! std and serde_json, which arenalm-core has as dev-dependencies, and finds
//! the root as `CARGO_MANIFEST_DIR/..`, true for both crates.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `tests/reference/`: llama.cpp's outputs that the tests compare against,
/// checked in (its README.md says how llama.cpp made each file). The one
/// place that says where the reference data is.
pub fn reference_dir() -> PathBuf {
    root().join("tests/reference")
}

/// `tests/reference/<name>`, which must exist.
pub fn reference(name: &str) -> PathBuf {
    let p = reference_dir().join(name);
    assert!(
        p.is_file(),
        "reference file {} is missing; it is checked in (see tests/reference/README.md)",
        p.display()
    );
    p
}

/// SmolLM2-135M-Instruct Q4_1 as shipped.
pub fn model_q4_1() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        p.display()
    );
    p
}

/// The Q8_0 twin made by our quantizer.
pub fn model_q8_0() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q8_0.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh (it makes the Q8_0 twin with `arenalm quantize`)",
        p.display()
    );
    p
}

/// The directory of release artifacts.
pub fn release_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("release"),
        None => root().join("target/release"),
    }
}

/// The release `arenalm` binary.
pub fn arenalm_bin() -> PathBuf {
    let p = release_dir().join("arenalm");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release --workspace` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Runs a program and returns its output, failing the test with its stderr
/// if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a program that must succeed; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `program` can be run (e.g. valgrind, qemu-aarch64).
pub fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// Reads a little-endian f32 file.
pub fn read_f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// llama.cpp's measurements of itself against its own reference outputs
/// (tests/data/llama-cpp-noise-floor.json, made by scripts/llama-cpp-probe).
pub fn noise_floor() -> serde_json::Value {
    let path = root().join("tests/data/llama-cpp-noise-floor.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
