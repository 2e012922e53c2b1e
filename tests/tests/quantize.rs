//! `arenalm quantize` reproduces llama-quantize's tensor bytes: every tensor
//! of the shipped Q4_1 model requantized to q8_0, q4_0 and f16 hashes to the
//! sha256 in tests/reference/requant-tensor-sha256.json.

use std::process::Command;

use arenalm_core::gguf::Gguf;
use arenalm_tests::{arenalm_bin, model_q4_1, model_q8_0, reference, run_ok};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn check_file(path: &std::path::Path, target: &str) {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(reference("requant-tensor-sha256.json")).unwrap(),
    )
    .unwrap();
    let want = reference[target].as_object().unwrap();
    let bytes = std::fs::read(path).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(
        g.tensor_count() as usize,
        want.len(),
        "{target}: tensor count"
    );
    for t in g.tensors() {
        let entry = &want[t.name];
        assert_eq!(
            entry["type"],
            t.ggml_type.name(),
            "{target}: type of {}",
            t.name
        );
        let hash: String = Sha256::digest(t.data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            entry["sha256"],
            hash.as_str(),
            "{target}: bytes of {}",
            t.name
        );
    }
    // Metadata is copied; the file type says what the tensors are.
    let ftype = g.get("general.file_type").unwrap().unwrap().as_u64();
    let want_ftype = match target {
        "q8_0" => 7,
        "q4_0" => 2,
        _ => 1,
    };
    assert_eq!(ftype, Some(want_ftype));
    assert_eq!(g.metadata_count(), 33);
}

#[test]
fn quantize_reproduces_llama_quantize_tensor_bytes() {
    let dir = std::env::temp_dir().join(format!("arenalm-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for target in ["q8_0", "q4_0", "f16"] {
        let out = dir.join(format!("smollm2-{target}.gguf"));
        run_ok(
            Command::new(arenalm_bin())
                .arg("quantize")
                .arg(model_q4_1())
                .arg(&out)
                .arg(target),
        );
        check_file(&out, target);
        std::fs::remove_file(&out).unwrap();
    }
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn the_q8_0_twin_used_by_the_tests_is_llama_quantizes() {
    check_file(&model_q8_0(), "q8_0");
}
