//! Work is split by output rows, never inside a reduction, so logits are
//! bit-identical for any thread count.

use arenalm::host::{detect_cpu, MappedModel, ThreadPool};
use arenalm_core::engine::{Engine, EngineParams, Outputs};
use arenalm_core::mem::plan::PlanParams;
use arenalm_core::parallel::{Parallel, Serial};
use arenalm_tests::model_q4_1;

fn logits(bytes: &[u8], par: &dyn Parallel, threads: u32) -> Vec<f32> {
    let mut arena = vec![0u8; 64 << 20];
    let params = EngineParams {
        plan: PlanParams {
            ctx_tokens: 128,
            max_outputs: 40,
            threads,
            ..PlanParams::default()
        },
        kernel: None,
    };
    let e = Engine::new(bytes, &mut arena, &params, &detect_cpu()).unwrap();
    // A 40-token prompt (micro-batches of 64 hold it whole) then 3 decode steps.
    let prompt: Vec<u32> = (0..40).map(|i| 100 + 37 * i).collect();
    let mut out = e.eval(par, &prompt, Outputs::All).unwrap().to_vec();
    for t in [5u32, 6, 7] {
        out.extend_from_slice(e.eval(par, &[t], Outputs::Last).unwrap());
    }
    out
}

#[test]
fn logits_are_bit_identical_for_1_2_3_and_4_threads() {
    let map = MappedModel::open(model_q4_1()).unwrap();
    let one = logits(map.bytes(), &Serial, 1);
    for n in [2usize, 3, 4] {
        let pool = ThreadPool::new(n).unwrap();
        let got = logits(map.bytes(), &pool, n as u32);
        let first_diff = one
            .iter()
            .zip(&got)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first_diff, None, "{n} threads differ from 1 thread");
    }
}
