//! Single-thread matmul speed on SmolLM2-135M's shapes, every kernel path
//! this CPU has.
//!
//! * `decode/*`: one activation row (token generation, memory-bound);
//!   throughput in bytes of weights read (criterion's GB/s, decimal).
//! * `prefill/*`: 64 activation rows; throughput in operations
//!   (2 * rows * cols * batch; criterion's Gelem/s = GOP/s).
//!
//! * `kv_scores/*`: attention scores of one 64-value query head against 16
//!   to 512 cached keys (one call; the engine calls it once per KV page);
//!   throughput in multiply-adds (keys x 64, criterion's Gelem/s).
//!
//! Activations are quantized outside the timed loop (`quantize_act` is
//! measured separately). Filter with e.g. `cargo bench -p arenalm-core --bench
//! kernels -- 'decode/q8_0'`; the float weights are `decode/f16` etc.

use std::hint::black_box;
use std::time::Duration;

use arenalm_core::gguf::GgmlType;
use arenalm_core::kernels::{
    act_bytes, act_format, Act, ActFormat, KernelPath, Kernels, KvType, Matrix,
};
use arenalm_core::parallel::Serial;
use arenalm_core::quant;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// (output features, columns): q/o, k/v, gate/up, down, the tied head.
const SHAPES: [(usize, usize); 5] = [
    (576, 576),
    (192, 576),
    (1536, 576),
    (576, 1536),
    (49152, 576),
];
const TYPES: [GgmlType; 6] = [
    GgmlType::Q8_0,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];
#[path = "../tests/support/cpu.rs"]
mod cpu;
use cpu::detected;

const PREFILL_ROWS: usize = 64;

struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut rng = Lcg(rows as u64 * 31 + cols as u64);
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.unit() * 0.05).collect();
    let mut w = vec![0u8; quant::row_bytes(ty, rows * cols).unwrap()];
    quant::quantize_row(ty, &x, &mut w).unwrap();
    w
}

fn activations(k: &Kernels, fmt: ActFormat, batch: usize, cols: usize) -> (Vec<f32>, Vec<u8>) {
    let mut rng = Lcg(7);
    let x: Vec<f32> = (0..batch * cols).map(|_| rng.unit()).collect();
    let mut q = vec![0u8; act_bytes(fmt, batch, cols).unwrap()];
    k.quantize_act(fmt, &x, cols, &mut q).unwrap();
    (x, q)
}

fn matmul(c: &mut Criterion) {
    let features = detected();
    let paths: Vec<KernelPath> = KernelPath::ALL
        .into_iter()
        .filter(|p| features.supports(*p))
        .collect();
    for (mode, batch) in [("decode", 1), ("prefill", PREFILL_ROWS)] {
        for ty in TYPES {
            let mut group = c.benchmark_group(format!("{mode}/{}", ty.name().to_lowercase()));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
            for (rows, cols) in SHAPES {
                let w = weights(ty, rows, cols);
                let m = Matrix {
                    data: &w,
                    ty,
                    rows,
                    cols,
                };
                group.throughput(if batch == 1 {
                    Throughput::BytesDecimal(w.len() as u64)
                } else {
                    Throughput::Elements((2 * rows * cols * batch) as u64)
                });
                for path in &paths {
                    let k = Kernels::new(&features, Some(*path)).unwrap();
                    let fmt = act_format(ty).unwrap();
                    let (x, q) = activations(&k, fmt, batch, cols);
                    let act = Act {
                        x: &x,
                        q: &q,
                        fmt,
                        rows: batch,
                        cols,
                    };
                    let mut y = vec![0f32; batch * rows];
                    group.bench_function(
                        BenchmarkId::new(format!("{rows}x{cols}"), path.name()),
                        |b| {
                            b.iter(|| {
                                k.matmul(&Serial, black_box(&m), black_box(&act), &mut y)
                                    .unwrap()
                            })
                        },
                    );
                }
            }
            group.finish();
        }
    }
}

fn quantize_act(c: &mut Criterion) {
    let features = detected();
    let mut group = c.benchmark_group("quantize_act");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(1));
    for path in KernelPath::ALL
        .into_iter()
        .filter(|p| features.supports(*p))
    {
        let k = Kernels::new(&features, Some(path)).unwrap();
        let (x, mut q) = activations(&k, ActFormat::Q8, PREFILL_ROWS, 576);
        group.throughput(Throughput::Elements(x.len() as u64));
        group.bench_function(BenchmarkId::new("64x576", path.name()), |b| {
            b.iter(|| {
                k.quantize_act(ActFormat::Q8, black_box(&x), 576, &mut q)
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn kv_scores(c: &mut Criterion) {
    const DIM: usize = 64;
    let features = detected();
    for ty in [KvType::F16, KvType::Q8_0, KvType::F32] {
        let mut group = c.benchmark_group(format!("kv_scores/{}", ty.name()));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for keys in [16, 64, 256, 512] {
            let row = ty.row_bytes(DIM).unwrap();
            let mut rng = Lcg(keys as u64);
            let q: Vec<f32> = (0..DIM).map(|_| rng.unit()).collect();
            let mut cache = vec![0u8; keys * row];
            let scalar = Kernels::scalar();
            for r in cache.chunks_exact_mut(row) {
                let x: Vec<f32> = (0..DIM).map(|_| rng.unit() * 3.0).collect();
                scalar.kv_store(ty, &x, r).unwrap();
            }
            let mut out = vec![0f32; keys];
            group.throughput(Throughput::Elements((keys * DIM) as u64));
            for path in KernelPath::ALL
                .into_iter()
                .filter(|p| features.supports(*p))
            {
                let k = Kernels::new(&features, Some(path)).unwrap();
                group.bench_function(
                    BenchmarkId::new(format!("{DIM}x{keys}"), path.name()),
                    |b| {
                        b.iter(|| {
                            k.kv_scores(ty, black_box(&q), black_box(&cache), row, &mut out)
                                .unwrap()
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, matmul, quantize_act, kv_scores);
criterion_main!(benches);
