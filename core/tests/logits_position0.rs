//! Acceptance test for docs/numerics.md: at the first position of a
//! sequence, where SmolLM2's massive activation amplifies last-bit
//! differences ~10^4-fold, our logits equal llama.cpp's (x86 AVX2) to every
//! printed digit, on every kernel path this CPU runs.
//!
//! Position 0 attends only to itself (softmax weight exactly 1), so the
//! attention differences that separate the engines at later positions do
//! not enter: what is compared is the quantized matmul arithmetic.
//!
//! The same run checks the other half of docs/numerics.md: every kernel
//! path computes the same bits, so the logits of every position (attention
//! included) are identical across paths.

use std::path::PathBuf;

use arenalm_core::engine::{Engine, EngineParams, Outputs};
use arenalm_core::kernels::KernelPath;
use arenalm_core::mem::plan::PlanParams;
use arenalm_core::parallel::Serial;
use serde_json::Value;

const VOCAB: usize = 49_152;
/// The reference prints 4 decimals: equal digits means |diff| <= 5e-5.
const TOLERANCE: f64 = 6e-5;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> Vec<u8> {
    let path = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run scripts/fetch-model.sh",
            path.display()
        )
    })
}

#[path = "../../tests/lib.rs"]
#[allow(dead_code)]
mod e2e;

fn reference() -> Value {
    let text = std::fs::read_to_string(e2e::reference("logits-q4_1.json")).unwrap();
    serde_json::from_str(&text).expect("the reference is JSON")
}

#[path = "support/cpu.rs"]
mod cpu;
use cpu::detected;

#[test]
fn story_position_0_equals_llama_cpp_and_every_path_computes_the_same_bits() {
    let model = model();
    let reference = reference();
    let story = &reference["prompts"]["story"];
    let ids: Vec<u32> = story["ids"]
        .as_array()
        .expect("story ids")
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let top10: Vec<(usize, f64)> = story["positions"][0]["top10"]
        .as_array()
        .expect("position 0 top10")
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(top10.len(), 10);

    let features = detected();
    let paths: Vec<KernelPath> = KernelPath::ALL
        .into_iter()
        .filter(|p| features.supports(*p))
        .collect();
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut first: Option<(KernelPath, Vec<f32>)> = None;
    for path in paths {
        let params = EngineParams {
            plan: PlanParams {
                ctx_tokens: 64,
                max_outputs: ids.len() as u32,
                ..PlanParams::default()
            },
            kernel: Some(path),
        };
        let mut arena = vec![0u8; 64 << 20];
        let e = Engine::new(&model, &mut arena, &params, &features).expect("engine");
        assert_eq!(e.kernel_path(), path);
        // The whole prompt in one batch, as llama.cpp evaluated it.
        let logits = e.eval(&Serial, &ids, Outputs::All).expect("eval");
        assert_eq!(logits.len(), ids.len() * VOCAB);
        match &first {
            None => first = Some((path, logits.to_vec())),
            Some((p0, l0)) => {
                if let Some(i) = (0..l0.len()).find(|&i| l0[i].to_bits() != logits[i].to_bits()) {
                    failures.push(format!(
                        "{path} differs from {p0}: position {}, token {}: {} vs {}",
                        i / VOCAB,
                        i % VOCAB,
                        logits[i],
                        l0[i]
                    ));
                }
            }
        }
        let row = &logits[..VOCAB];
        for &(id, want) in &top10 {
            let got = row[id] as f64;
            report.push_str(&format!(
                "{path}: token {id:5}: ours {got:.6}, llama.cpp {want:.4}\n"
            ));
            if (got - want).abs() >= TOLERANCE {
                failures.push(format!(
                    "{path}: token {id}: ours {got}, llama.cpp {want} (diff {:+.2e})",
                    got - want
                ));
            }
        }
    }
    eprint!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
