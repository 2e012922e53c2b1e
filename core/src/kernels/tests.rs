//! Every operation on every path this CPU has, against the scalar reference
//! and against f64 arithmetic on the dequantized weights.
//!
//! Bounds (u = 2^-24, the f32 unit roundoff):
//! * Every operation is **bit-identical** on every path: integer matmul,
//!   `quantize_act`, `kv_attend`, `kv_store` (exact integer block sums;
//!   the same f32 roundings in the same order), and the float dot products
//!   of the float matmul and `kv_scores` (docs/numerics.md's canonical
//!   order, checked against a transcription with std's `mul_add`).
//! * Float matmul and `kv_scores` are also within `gamma_n * sum|w x|` of
//!   the exact sum (`gamma_n ~ n u`, the classic bound for any summation
//!   order, FMA or not).
//! * Against f64 on dequantized weights and unquantized activations, the
//!   integer paths are off by the activation rounding — at most half a step
//!   `d_a / 2` per value, so `sum_b d_a(b) / 2 * sum_{k in b} |w_k|` — plus
//!   f32 rounding, at most `(nb + 4) u` times the magnitude of the terms.

use std::string::String;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::parallel::Serial;
use crate::quant;

// ---------------------------------------------------------------------------
// Which paths to cover.

#[path = "../../tests/support/cpu.rs"]
mod cpu;
use cpu::detected;

/// Every path this CPU runs. Fails if `ALM_REQUIRE_PATHS` (a comma list of
/// path names) names a path the CPU lacks, so CI cannot silently skip one.
fn paths() -> Vec<KernelPath> {
    let features = detected();
    let have: Vec<KernelPath> = KernelPath::ALL
        .into_iter()
        .filter(|p| features.supports(*p))
        .collect();
    if let Ok(required) = std::env::var("ALM_REQUIRE_PATHS") {
        for name in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let path = KernelPath::from_name(name)
                .unwrap_or_else(|| panic!("ALM_REQUIRE_PATHS names unknown path {name:?}"));
            assert!(
                have.contains(&path),
                "ALM_REQUIRE_PATHS requires {name} but this CPU only runs {have:?}"
            );
        }
    }
    have
}

fn kernels(path: KernelPath) -> Kernels {
    Kernels::new(&detected(), Some(path)).unwrap()
}

#[test]
fn required_paths_are_available_and_listed() {
    let p = paths();
    assert_eq!(p[0], KernelPath::Scalar);
    // The best path is among them and is what `new` picks by default.
    let best = Kernels::new(&detected(), None).unwrap().path();
    assert!(p.contains(&best));
    std::eprintln!("kernel paths under test: {p:?}");
}

// ---------------------------------------------------------------------------
// Test-only thread pools.

/// Runs tasks on `n` scoped threads (task i on thread i % n).
struct Threads(usize);

// SAFETY: thread t calls the indices t, t + n, ...: each once; the scope
// joins every thread before `run` returns.
unsafe impl Parallel for Threads {
    fn threads(&self) -> usize {
        self.0
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for t in 0..self.0 {
                s.spawn(move || {
                    let mut i = t;
                    while i < n_tasks {
                        task(i);
                        i += self.0;
                    }
                });
            }
        });
    }
}

/// Claims `n` threads but runs the tasks backwards on the caller.
struct Backwards(usize);

// SAFETY: each index once, on the caller.
unsafe impl Parallel for Backwards {
    fn threads(&self) -> usize {
        self.0
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        for i in (0..n_tasks).rev() {
            task(i);
        }
    }
}

/// Breaks the contract: skips the last task.
struct Lazy;

// SAFETY: no index twice, all on the caller (skipping one is allowed by
// the safety contract; the kernels must detect it).
unsafe impl Parallel for Lazy {
    fn threads(&self) -> usize {
        3
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        for i in 0..n_tasks.saturating_sub(1) {
            task(i);
        }
    }
}

// ---------------------------------------------------------------------------
// Data.

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Values like activations: mostly small, a few outliers, some exact
    /// ties for the rounding, some zero blocks.
    fn activations(&mut self, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|i| {
                let x = self.unit();
                match self.next() % 16 {
                    0 => x * 40.0,
                    1 => (x * 20.0).round() + 0.5,
                    _ => x * if i % 64 < 32 { 1.0 } else { 0.01 },
                }
            })
            .collect();
        if n >= 96 {
            v[64..96].fill(0.0);
        }
        v
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const INT_TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1];
const FLT_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Weights made by quantizing random rows (like a real model).
fn quantized_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = quant::row_bytes(ty, cols).unwrap();
    let mut out = vec![0u8; rows * row_bytes];
    for row in out.chunks_exact_mut(row_bytes) {
        let x: Vec<f32> = (0..cols).map(|_| rng.unit() * 0.1).collect();
        quant::quantize_row(ty, &x, row).unwrap();
    }
    out
}

/// Arbitrary bytes with finite scales (every value a block can hold,
/// including Q8_0's -128).
fn random_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = quant::row_bytes(ty, cols).unwrap();
    let mut out = rng.bytes(rows * row_bytes);
    let block = ty.type_size() as usize;
    let scales = if ty == GgmlType::Q4_1 { 2 } else { 1 };
    for b in out.chunks_exact_mut(block) {
        for s in 0..scales {
            let v = quant::f32_to_f16(rng.unit() * 0.05);
            b[2 * s..2 * s + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn float_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.unit()).collect();
    let mut out = vec![0u8; quant::row_bytes(ty, rows * cols).unwrap()];
    quant::quantize_row(ty, &x, &mut out).unwrap();
    out
}

struct Case {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    batch: usize,
    w: Vec<u8>,
    x: Vec<f32>,
}

impl Case {
    fn new(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, batch: usize, raw: bool) -> Case {
        let w = match (act_format(ty).unwrap(), raw) {
            (ActFormat::F32, _) => float_weights(rng, ty, rows, cols),
            (_, false) => quantized_weights(rng, ty, rows, cols),
            (_, true) => random_weights(rng, ty, rows, cols),
        };
        Case {
            ty,
            rows,
            cols,
            batch,
            w,
            x: rng.activations(batch * cols),
        }
    }

    fn matrix(&self) -> Matrix<'_> {
        Matrix {
            data: &self.w,
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The same matrix in 16-row panels (the Panel16 type), if it has a
    /// panel form.
    fn panels(&self) -> Option<Case> {
        let panel_ty = self.ty.panel16()?;
        if !self.rows.is_multiple_of(16) {
            return None;
        }
        let mut w = vec![0u8; self.w.len()];
        let (kind, _) = matmul::int_kind(self.ty)?;
        assert!(layout::to_panels(
            kind,
            &self.w,
            self.rows,
            self.cols / 32,
            &mut w
        ));
        Some(Case {
            ty: panel_ty,
            w,
            x: self.x.clone(),
            ..*self
        })
    }

    fn quantized(&self, k: &Kernels) -> (ActFormat, Vec<u8>) {
        let fmt = act_format(self.ty).unwrap();
        let mut q = vec![0u8; act_bytes(fmt, self.batch, self.cols).unwrap()];
        k.quantize_act(fmt, &self.x, self.cols, &mut q).unwrap();
        (fmt, q)
    }

    fn run(&self, k: &Kernels, par: &dyn Parallel) -> Vec<f32> {
        let (fmt, q) = self.quantized(k);
        let act = Act {
            x: &self.x,
            q: &q,
            fmt,
            rows: self.batch,
            cols: self.cols,
        };
        let mut y = vec![f32::NAN; self.batch * self.rows];
        k.matmul(par, &self.matrix(), &act, &mut y).unwrap();
        y
    }

    /// Dequantized weight row `n`, and for Q4_1 the split `(q*d, m)` whose
    /// magnitudes bound the rounding.
    fn weight_row(&self, n: usize) -> Vec<f32> {
        let rb = quant::row_bytes(self.ty, self.cols).unwrap();
        let mut out = vec![0f32; self.cols];
        quant::dequantize_row(self.ty, &self.w[n * rb..(n + 1) * rb], &mut out).unwrap();
        out
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn first_difference(a: &[f32], b: &[f32]) -> String {
    match a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
    {
        Some(i) => std::format!("index {i}: {} vs {}", a[i], b[i]),
        None => String::from("none"),
    }
}

/// (rows, cols, batch): tails of every tile, the real model's widths.
///
/// For the integer GEMM: one panel and several (rows 16, 48, 80 have a
/// panel form), a short last panel, every remainder of the row tiles
/// (batch 1 to 9), rows whose plain panels do not fit the pack buffer at
/// once (cols 2048 and 4096: packed a block range at a time).
const SHAPES: [(usize, usize, usize); 16] = [
    (1, 32, 1),
    (7, 64, 3),
    (8, 96, 1),
    (9, 32, 2),
    (16, 64, 4),
    (17, 1536, 5),
    (24, 576, 1),
    (33, 160, 7),
    (64, 576, 2),
    (48, 96, 9),
    (80, 64, 6),
    (50, 128, 8),
    (16, 2048, 3),
    (32, 4096, 2),
    (48, 4096, 1),
    (112, 32, 13),
];

// ---------------------------------------------------------------------------
// Dispatch.

#[test]
fn forcing_an_unsupported_path_is_an_error() {
    let none = CpuFeatures::none();
    assert_eq!(none.best_path(), KernelPath::Scalar);
    for p in KernelPath::ALL.into_iter().skip(1) {
        assert!(!none.supports(p));
        assert!(Kernels::new(&none, Some(p)).is_err(), "{p}");
    }
    assert_eq!(
        Kernels::new(&none, None).unwrap().path(),
        KernelPath::Scalar
    );
    // A path of the other architecture is refused even if claimed.
    // SAFETY: this value is only used to choose a path, and the paths it
    // could choose on this architecture are checked against `detected()`.
    let all = unsafe { CpuFeatures::assume(&CpuFeature::ALL) };
    #[cfg(target_arch = "x86_64")]
    {
        for p in [
            KernelPath::Neon,
            KernelPath::NeonDotprod,
            KernelPath::NeonI8mm,
        ] {
            assert!(Kernels::new(&all, Some(p)).is_err(), "{p}");
        }
        assert_eq!(all.best_path(), KernelPath::Avx512Vnni);
        assert_eq!(
            all.without(CpuFeature::Avx512vnni).best_path(),
            KernelPath::AvxVnni
        );
        assert_eq!(
            all.without(CpuFeature::Avx512bw)
                .without(CpuFeature::AvxVnni)
                .best_path(),
            KernelPath::Avx2
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        for p in [
            KernelPath::Avx2,
            KernelPath::AvxVnni,
            KernelPath::Avx512Vnni,
        ] {
            assert!(Kernels::new(&all, Some(p)).is_err(), "{p}");
        }
        assert_eq!(all.best_path(), KernelPath::NeonI8mm);
        assert_eq!(
            all.without(CpuFeature::I8mm).best_path(),
            KernelPath::NeonDotprod
        );
    }
    // Every path needs all of its features: dropping any one refuses it.
    for p in KernelPath::ALL {
        for f in p.requires() {
            assert!(!all.without(*f).supports(p), "{p} without {f:?}");
        }
    }
    assert_eq!(Kernels::scalar().path(), KernelPath::Scalar);
}

#[test]
fn compile_time_features_are_supported_by_the_cpu() {
    let ct = CpuFeatures::compile_time();
    for p in KernelPath::ALL {
        if ct.supports(p) {
            assert!(detected().supports(p), "{p} claimed at compile time");
        }
    }
}

#[test]
fn path_names_round_trip() {
    for p in KernelPath::ALL {
        assert_eq!(KernelPath::from_name(p.name()), Some(p));
    }
    assert_eq!(
        KernelPath::from_name("NEON-DOTPROD"),
        Some(KernelPath::NeonDotprod)
    );
    assert_eq!(KernelPath::from_name("sse2"), None);
}

#[test]
fn act_formats_and_sizes() {
    for t in INT_TYPES {
        assert_eq!(act_format(t).unwrap(), ActFormat::Q8);
        assert_eq!(act_format(t.panel16().unwrap()).unwrap(), ActFormat::Q8);
    }
    for t in FLT_TYPES {
        assert_eq!(act_format(t).unwrap(), ActFormat::F32);
    }
    assert!(act_format(GgmlType::Q6_K).is_err());
    assert_eq!(act_bytes(ActFormat::F32, 3, 7), Some(0));
    // 576 values: 18 blocks of 76 bytes.
    assert_eq!(act::BLOCK_BYTES, 76);
    assert_eq!(act_bytes(ActFormat::Q8, 2, 576), Some(2 * 18 * 76));
    assert_eq!(act_bytes(ActFormat::Q8, 1, 33), None);
    assert_eq!(act_bytes(ActFormat::Q8, usize::MAX, 64), None);
    assert_eq!(KvType::Q8_0.row_bytes(64), Some(68));
    assert_eq!(KvType::Q8_0.row_bytes(48), None);
    assert_eq!(KvType::F16.row_bytes(64), Some(128));
    assert_eq!(KvType::F32.row_bytes(usize::MAX), None);
}

// ---------------------------------------------------------------------------
// Length checks.

#[test]
fn matmul_refuses_bad_shapes() {
    let k = Kernels::scalar();
    let mut rng = Rng(1);
    let case = Case::new(&mut rng, GgmlType::Q8_0, 4, 64, 2, false);
    let (fmt, q) = case.quantized(&k);
    let act = Act {
        x: &case.x,
        q: &q,
        fmt,
        rows: 2,
        cols: 64,
    };
    let w = case.matrix();
    let mut y = vec![0f32; 8];
    assert!(k.matmul(&Serial, &w, &act, &mut y).is_ok());
    assert!(k.matmul(&Serial, &w, &act, &mut y[..7]).is_err());
    assert!(k
        .matmul(&Serial, &Matrix { rows: 5, ..w }, &act, &mut y)
        .is_err());
    assert!(k
        .matmul(
            &Serial,
            &Matrix {
                data: &case.w[1..],
                ..w
            },
            &act,
            &mut y
        )
        .is_err());
    assert!(k
        .matmul(
            &Serial,
            &Matrix {
                ty: GgmlType::Q4_0,
                ..w
            },
            &act,
            &mut y
        )
        .is_err());
    assert!(k
        .matmul(
            &Serial,
            &Matrix {
                ty: GgmlType::Q6_K,
                ..w
            },
            &act,
            &mut y
        )
        .is_err());
    assert!(k
        .matmul(
            &Serial,
            &w,
            &Act {
                fmt: ActFormat::F32,
                ..act
            },
            &mut y
        )
        .is_err());
    assert!(k
        .matmul(&Serial, &w, &Act { q: &q[1..], ..act }, &mut y)
        .is_err());
    assert!(k
        .matmul(&Serial, &w, &Act { rows: 3, ..act }, &mut y)
        .is_err());
    assert!(k
        .matmul(&Serial, &w, &Act { cols: 32, ..act }, &mut y)
        .is_err());
    let odd = Matrix { cols: 63, ..w };
    assert!(k
        .matmul(&Serial, &odd, &Act { cols: 63, ..act }, &mut y)
        .is_err());
    // Overflowing shapes are errors, not panics.
    let huge = Matrix {
        rows: usize::MAX,
        ..w
    };
    assert!(k.matmul(&Serial, &huge, &act, &mut y).is_err());
    // A Parallel that skips a task is caught.
    let big = Case::new(&mut rng, GgmlType::Q8_0, 64, 64, 1, false);
    let (fmt, q) = big.quantized(&k);
    let act = Act {
        x: &big.x,
        q: &q,
        fmt,
        rows: 1,
        cols: 64,
    };
    let mut y = vec![0f32; 64];
    assert!(k.matmul(&Lazy, &big.matrix(), &act, &mut y).is_err());
    // F32 activations: x must be rows * cols.
    let f = Case::new(&mut rng, GgmlType::F16, 3, 10, 2, false);
    let act = Act {
        x: &f.x,
        q: &[],
        fmt: ActFormat::F32,
        rows: 2,
        cols: 10,
    };
    let mut y = vec![0f32; 6];
    assert!(k.matmul(&Serial, &f.matrix(), &act, &mut y).is_ok());
    assert!(k
        .matmul(
            &Serial,
            &f.matrix(),
            &Act {
                x: &f.x[1..],
                ..act
            },
            &mut y
        )
        .is_err());
    // Empty is fine.
    let empty = Act {
        rows: 0,
        x: &[],
        ..act
    };
    assert!(k.matmul(&Serial, &f.matrix(), &empty, &mut []).is_ok());
}

#[test]
fn quantize_act_refuses_bad_lengths() {
    let k = Kernels::scalar();
    let x = [0.5f32; 64];
    let mut out = [0u8; 2 * act::BLOCK_BYTES];
    assert!(k.quantize_act(ActFormat::Q8, &x, 64, &mut out).is_ok());
    assert!(k.quantize_act(ActFormat::Q8, &x, 0, &mut out).is_err());
    assert!(k.quantize_act(ActFormat::Q8, &x, 48, &mut out).is_err());
    assert!(k
        .quantize_act(
            ActFormat::Q8,
            &x[..48],
            48,
            &mut out[..act::BLOCK_BYTES * 3 / 2]
        )
        .is_err());
    assert!(k
        .quantize_act(ActFormat::Q8, &x, 32, &mut out[..2 * act::BLOCK_BYTES - 1])
        .is_err());
    assert!(k.quantize_act(ActFormat::F32, &x, 64, &mut []).is_ok());
    assert!(k.quantize_act(ActFormat::F32, &x, 64, &mut out).is_err());
}

#[test]
fn kv_ops_refuse_bad_lengths() {
    let k = Kernels::scalar();
    let q = [1.0f32; 64];
    let cache = [0u8; 4 * 136];
    let mut s = [0f32; 4];
    assert!(k.kv_scores(KvType::Q8_0, &q, &cache, 136, &mut s).is_ok());
    assert!(k
        .kv_scores(KvType::Q8_0, &q, &cache[..475], 136, &mut s)
        .is_err());
    assert!(k
        .kv_scores(KvType::Q8_0, &q, &cache[..476], 136, &mut s)
        .is_ok());
    assert!(k.kv_scores(KvType::Q8_0, &q, &cache, 67, &mut s).is_err());
    assert!(k
        .kv_scores(KvType::Q8_0, &q[..48], &cache, 136, &mut s)
        .is_err());
    assert!(k
        .kv_scores(KvType::F16, &q, &cache, usize::MAX, &mut s)
        .is_err());
    assert!(k.kv_scores(KvType::F16, &q, &[], 128, &mut []).is_ok());
    let mut acc = [0f32; 64];
    let mut st = SoftmaxState::new();
    assert!(k
        .kv_attend(KvType::F16, &[0.5; 4], &cache, 128, &mut st, &mut acc)
        .is_ok());
    let f32_cache = [0u8; 3 * 256];
    assert!(k
        .kv_attend(KvType::F32, &[0.5; 4], &f32_cache, 256, &mut st, &mut acc)
        .is_err());
    assert!(k
        .kv_attend(KvType::F32, &[0.5; 3], &f32_cache, 256, &mut st, &mut acc)
        .is_ok());
    assert!(k
        .kv_attend(
            KvType::F32,
            &[0.5; 3],
            &f32_cache[..767],
            256,
            &mut st,
            &mut acc
        )
        .is_err());
    let mut out = [0u8; 128];
    assert!(k.kv_store(KvType::F16, &q, &mut out).is_ok());
    assert!(k.kv_store(KvType::F16, &q, &mut out[..127]).is_err());
    assert!(k.kv_store(KvType::Q8_0, &q, &mut out[..68]).is_ok());
    assert!(k.kv_store(KvType::Q8_0, &q[..40], &mut out[..68]).is_err());
}

// ---------------------------------------------------------------------------
// Paths against scalar.

#[test]
fn quantize_act_is_identical_on_every_path() {
    let mut rng = Rng(7);
    let scalar = Kernels::scalar();
    for cols in [32, 96, 576] {
        let mut x = rng.activations(3 * cols);
        // Exact ties after scaling: amax 127 gives 1/d = 1.
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 1e-38; // a block scale below the normal range elsewhere
        x[4] = 3.5;
        x[5] = -0.5;
        {
            let fmt = ActFormat::Q8;
            let mut want = vec![0u8; act_bytes(fmt, 3, cols).unwrap()];
            scalar.quantize_act(fmt, &x, cols, &mut want).unwrap();
            assert_eq!(want[1] as i8, 2, "2.5 rounds half to even");
            assert_eq!(want[2] as i8, -2);
            assert_eq!(want[4] as i8, 4);
            assert_eq!(want[5] as i8, 0);
            for path in paths() {
                let mut got = vec![0u8; want.len()];
                kernels(path).quantize_act(fmt, &x, cols, &mut got).unwrap();
                assert_eq!(got, want, "{path} {fmt:?} cols {cols}");
            }
        }
    }
    // A block of tiny values (127 / amax overflows) quantizes to zeros.
    let tiny = [1e-40f32; 32];
    let mut out = [0u8; act::BLOCK_BYTES];
    for path in paths() {
        kernels(path)
            .quantize_act(ActFormat::Q8, &tiny, 32, &mut out)
            .unwrap();
        assert!(out[..32].iter().all(|b| *b == 0), "{path}");
    }
}

// ---------------------------------------------------------------------------
// Every path against docs/numerics.md, transcribed.

/// docs/numerics.md written out as directly as possible, with std's
/// correctly rounded `mul_add` and `round_ties_even` (not the `libm` calls
/// the scalar path uses) and the `half` crate's f16 rounding (which
/// `kv_store_is_identical_on_every_path` checks against F16C / `fcvtn`).
/// Indexed loops and `a = a + b`, to read like the document.
#[allow(clippy::needless_range_loop, clippy::assign_op_pattern)]
mod spec {
    use std::vec::Vec;

    use crate::gguf::GgmlType;

    pub struct ActBlock {
        pub q: [i8; 32],
        pub d: f32,
        pub s: f32,
    }

    fn f16_round(v: f32) -> f32 {
        half::f16::from_f32(v).to_f32()
    }

    /// One activation block of 32 values.
    pub fn quantize(x: &[f32]) -> ActBlock {
        let mut amax = 0f32;
        for v in x {
            if v.abs() > amax {
                amax = v.abs();
            }
        }
        let d = amax / 127.0;
        let mut id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        if id.is_infinite() {
            // arenalm's one addition: where ggml's 127 / amax overflows.
            id = 0.0;
        }
        let mut q = [0i8; 32];
        let mut sum = 0i32;
        for j in 0..32 {
            let p = x[j] * id; // one f32 multiply
            q[j] = p.round_ties_even() as i8;
            sum += q[j] as i32;
        }
        ActBlock {
            q,
            d: f16_round(d),
            s: f16_round(d * sum as f32),
        }
    }

    /// `(d_w, m_w, w_j)` of one weight block.
    pub fn weight_block(ty: GgmlType, b: &[u8]) -> (f32, f32, [i32; 32]) {
        let h = |i: usize| half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32();
        let nibble = |qs: &[u8], j: usize| {
            if j < 16 {
                (qs[j] & 15) as i32
            } else {
                (qs[j - 16] >> 4) as i32
            }
        };
        let mut w = [0i32; 32];
        match ty {
            GgmlType::Q8_0 => {
                for j in 0..32 {
                    w[j] = b[2 + j] as i8 as i32;
                }
                (h(0), 0.0, w)
            }
            GgmlType::Q4_0 => {
                for j in 0..32 {
                    w[j] = nibble(&b[2..18], j) - 8;
                }
                (h(0), 0.0, w)
            }
            GgmlType::Q4_1 => {
                for j in 0..32 {
                    w[j] = nibble(&b[4..20], j);
                }
                (h(0), h(2), w)
            }
            _ => unreachable!(),
        }
    }

    /// The float dot product of docs/numerics.md: 4 x 8 partial sums by
    /// FMA over the first `n - n % 32` values, ggml's `GGML_F32x8_REDUCE`,
    /// then the tail by FMA in order.
    pub fn float_dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let n = a.len();
        let m = n - n % 32;
        let mut acc = [[0f32; 8]; 4];
        for e in 0..m {
            let (j, l) = ((e / 8) % 4, e % 8);
            acc[j][l] = a[e].mul_add(b[e], acc[j][l]);
        }
        for l in 0..8 {
            acc[0][l] = acc[0][l] + acc[2][l];
            acc[1][l] = acc[1][l] + acc[3][l];
        }
        for l in 0..8 {
            acc[0][l] = acc[0][l] + acc[1][l];
        }
        let mut t = [0f32; 4];
        for l in 0..4 {
            t[l] = acc[0][l] + acc[0][l + 4];
        }
        let mut s = (t[0] + t[1]) + (t[2] + t[3]);
        for e in m..n {
            s = a[e].mul_add(b[e], s);
        }
        s
    }

    /// Float weights (F32, F16, BF16) or cached keys (Q8_0: `f32(d) * q`)
    /// as f32, converted with the `half` crate and bit shifts.
    pub fn float_values(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
        match ty {
            GgmlType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            GgmlType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            GgmlType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect(),
            GgmlType::Q8_0 => bytes
                .chunks_exact(34)
                .flat_map(|b| {
                    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                    b[2..].iter().map(move |q| *q as i8 as f32 * d)
                })
                .collect(),
            _ => unreachable!(),
        }
    }

    /// One output: weight row `w_row` (of `ty`) times the f32 row `x`.
    /// Q4_0: per block the exact sum of the 32 products, one FMA into the
    /// single accumulator. Q8_0 and Q4_1: eight lanes, each taking the
    /// exact sum of 4 products by FMA, `hsum_float_8` at the end (plus the
    /// minimum sum, added up by separate multiply and add, for Q4_1).
    pub fn dot(ty: GgmlType, w_row: &[u8], x: &[f32]) -> f32 {
        let bb = ty.type_size() as usize;
        let mut acc = [0f32; 8];
        let mut summs = 0f32;
        let mut single = 0f32;
        for (wb, xb) in w_row.chunks(bb).zip(x.chunks(32)) {
            let a = quantize(xb);
            let (dw, mw, w) = weight_block(ty, wb);
            let dd = dw * a.d;
            if ty == GgmlType::Q4_0 {
                let isum: i32 = (0..32).map(|j| w[j] * a.q[j] as i32).sum();
                single = (isum as f32).mul_add(dd, single);
                continue;
            }
            for l in 0..8 {
                let isum: i32 = (4 * l..4 * l + 4).map(|j| w[j] * a.q[j] as i32).sum();
                acc[l] = dd.mul_add(isum as f32, acc[l]);
            }
            if ty == GgmlType::Q4_1 {
                summs = summs + mw * a.s;
            }
        }
        if ty == GgmlType::Q4_0 {
            return single;
        }
        let r = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        if ty == GgmlType::Q4_1 {
            r + summs
        } else {
            r
        }
    }
}

impl Rng {
    /// Activation blocks of every awkward kind: exact ties `x * id = k + 0.5`
    /// (with power-of-two and other scales), all zeros, one massive value
    /// among small ones, a single nonzero, too small for `127 / amax`, and
    /// ordinary values.
    fn spec_activations(&mut self, n: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let mut b = [0f32; 32];
            match self.next() % 7 {
                0 => {
                    // amax = 127 * 2^e: id = 2^-e exactly.
                    let e = (self.next() % 17) as i32 - 8;
                    let scale = 2f32.powi(e);
                    for x in b.iter_mut() {
                        let k = (self.next() % 253) as f32 - 126.0;
                        *x = (k + if self.next().is_multiple_of(2) {
                            0.5
                        } else {
                            0.0
                        }) * scale;
                    }
                    b[(self.next() % 32) as usize] = 127.0 * scale;
                }
                1 => {}
                2 => {
                    for x in b.iter_mut() {
                        *x = self.unit() * 3.0;
                    }
                    b[(self.next() % 32) as usize] = -22_000.0 * (1.0 + self.unit() * 0.1);
                }
                3 => b[(self.next() % 32) as usize] = self.unit() * 5.0,
                4 => {
                    for x in b.iter_mut() {
                        *x = self.unit() * 1e-38;
                    }
                }
                5 => {
                    // Ties under a scale that is not a power of two: keep the
                    // values x with x * id exactly k + 0.5.
                    let amax = 1.0 + self.unit().abs() * 50.0;
                    let id = 127.0 / amax;
                    b[0] = amax;
                    for x in b.iter_mut().skip(1) {
                        let k = (self.next() % 254) as f32 - 127.0 + 0.5;
                        let c = k / id;
                        *x = if c * id == k && c.abs() <= amax {
                            c
                        } else {
                            self.unit() * amax
                        };
                    }
                }
                _ => {
                    for x in b.iter_mut() {
                        *x = self.unit() * 2.0;
                    }
                }
            }
            v.extend_from_slice(&b);
        }
        v.truncate(n);
        v
    }
}

#[test]
fn scalar_fma_is_correctly_rounded() {
    let check = |a: f32, b: f32, c: f32| {
        let got = scalar::fmaf(a, b, c);
        let want = a.mul_add(b, c);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "fma({a:e}, {b:e}, {c:e}) = {got:e}, want {want:e}"
        );
    };
    // Double-rounding traps: a * b = half an ulp of c minus a tiny bit, so
    // the f64 sum rounds onto the halfway point (and then to even, wrongly).
    let mut rng = Rng(47);
    let mut traps = 0;
    for _ in 0..2000 {
        let e = (rng.next() % 200) as i32 - 100;
        let odd = ((rng.next() as u32 >> 9) | 1 | (1 << 23)) as f32; // 24-bit odd significand
        let c = odd * 2f32.powi(e - 23);
        let (sa, sb) = (
            if rng.next().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            },
            if rng.next().is_multiple_of(2) {
                1.0f32
            } else {
                -1.0
            },
        );
        let a = sa * (1.0 + f32::EPSILON) * 2f32.powi(e - 24);
        let b = sb * (1.0 - f32::EPSILON);
        let c = c * sa * sb;
        let naive = (f64::from(a) * f64::from(b) + f64::from(c)) as f32;
        if naive != a.mul_add(b, c) {
            traps += 1;
        }
        check(a, b, c);
        check(-a, b, -c);
    }
    assert!(traps > 1000, "only {traps} double-rounding traps");
    // The same in f32's subnormal range, where the halfway points are
    // coarser: c an odd multiple of 2^-149, a * b just below 2^-150.
    let mut traps = 0;
    for _ in 0..2000 {
        let odd = ((rng.next() as u32 >> 10) | 1 | (1 << 21)) as f32;
        let c = odd * 2f32.powi(-149);
        let s = if rng.next().is_multiple_of(2) {
            1.0
        } else {
            -1.0f32
        };
        let a = s * (1.0 + f32::EPSILON) * 2f32.powi(-75);
        let b = (1.0 - f32::EPSILON) * 2f32.powi(-75);
        let naive = (f64::from(a) * f64::from(b) + f64::from(s * c)) as f32;
        if naive != a.mul_add(b, s * c) {
            traps += 1;
        }
        check(a, b, s * c);
    }
    assert!(traps > 500, "only {traps} subnormal double-rounding traps");
    // Random operands over a wide range, sums near zero, subnormal results.
    for i in 0..200_000 {
        let f = |rng: &mut Rng, span: u64| {
            let e = (rng.next() % span) as i32 - span as i32 / 2;
            rng.unit() * 2f32.powi(e)
        };
        let (a, b) = (f(&mut rng, 80), f(&mut rng, 80));
        let c = match i % 4 {
            0 => f(&mut rng, 160),
            1 => -(a * b) * (1.0 + rng.unit() * 1e-6),
            2 => f(&mut rng, 40) * 1e-38,
            _ => (rng.next() % 65_025) as f32 * 2f32.powi(-30),
        };
        check(a, b, c);
        check(a, (rng.next() % 65_025) as f32 - 32_512.0, c);
    }
    for (a, b, c) in [
        (0.0, 5.0, -0.0),
        (-0.0, 5.0, -0.0),
        (1e-30, 1e-30, 0.0),
        (f32::MAX, 2.0, -f32::MAX),
        (f32::MAX, 1.0, f32::MAX),
        (f32::INFINITY, 1.0, 1.0),
        (f32::NAN, 1.0, 1.0),
        (f32::MIN_POSITIVE, 0.5, 0.0),
    ] {
        check(a, b, c);
    }
}

#[test]
fn quantize_act_follows_the_spec_on_every_path() {
    let mut rng = Rng(41);
    let cols = 32 * 64;
    let x = rng.spec_activations(cols);
    // The inputs do exercise the rounding rule.
    let mut ties = 0;
    for xb in x.chunks(32) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        if amax == 0.0 || (127.0 / amax).is_infinite() {
            continue;
        }
        let id = 127.0 / amax;
        ties += xb.iter().filter(|v| (*v * id).fract().abs() == 0.5).count();
    }
    assert!(ties > 200, "only {ties} ties");
    {
        let fmt = ActFormat::Q8;
        for path in paths() {
            let mut got = vec![0u8; act_bytes(fmt, 1, cols).unwrap()];
            kernels(path).quantize_act(fmt, &x, cols, &mut got).unwrap();
            for (i, (xb, gb)) in x.chunks(32).zip(got.chunks(act::BLOCK_BYTES)).enumerate() {
                let want = spec::quantize(xb);
                let q: Vec<i8> = gb[..32].iter().map(|b| *b as i8).collect();
                assert_eq!(q, want.q, "{path} {fmt:?} block {i}: {xb:?}");
                let d = f32::from_ne_bytes(gb[32..36].try_into().unwrap());
                let s = f32::from_ne_bytes(gb[36..40].try_into().unwrap());
                let qsum = i32::from_ne_bytes(gb[40..44].try_into().unwrap());
                assert_eq!(d.to_bits(), want.d.to_bits(), "{path} block {i} d");
                assert_eq!(s.to_bits(), want.s.to_bits(), "{path} block {i} s");
                let want_sum: i32 = want.q.iter().map(|v| i32::from(*v)).sum();
                assert_eq!(qsum, want_sum, "{path} block {i} sum");
                for l in 0..8 {
                    let at = 44 + 4 * l;
                    let corr = i32::from_ne_bytes(gb[at..at + 4].try_into().unwrap());
                    let group: i32 = want.q[4 * l..4 * l + 4].iter().map(|v| i32::from(*v)).sum();
                    assert_eq!(corr, -128 * group, "{path} block {i} group {l}");
                }
            }
        }
    }
}

#[test]
fn integer_matmul_follows_the_spec_on_every_path() {
    let mut rng = Rng(43);
    for ty in INT_TYPES {
        for (rows, cols, batch, raw) in [
            (13, 96, 3, true),
            (9, 576, 2, false),
            (16, 1536, 1, true),
            (8, 64, 5, false),
        ] {
            let w = if raw {
                random_weights(&mut rng, ty, rows, cols)
            } else {
                quantized_weights(&mut rng, ty, rows, cols)
            };
            if raw && ty == GgmlType::Q8_0 {
                let rb = quant::row_bytes(ty, cols).unwrap();
                let has_min = w
                    .chunks(rb)
                    .any(|r| r.chunks(34).any(|b| b[2..].contains(&0x80)));
                assert!(has_min, "the weights include -128");
            }
            let case = Case {
                ty,
                rows,
                cols,
                batch,
                w,
                x: rng.spec_activations(batch * cols),
            };
            let rb = quant::row_bytes(ty, cols).unwrap();
            let want: Vec<f32> = (0..batch)
                .flat_map(|r| (0..rows).map(move |n| (r, n)))
                .map(|(r, n)| {
                    spec::dot(
                        ty,
                        &case.w[n * rb..(n + 1) * rb],
                        &case.x[r * cols..(r + 1) * cols],
                    )
                })
                .collect();
            for path in paths() {
                let got = case.run(&kernels(path), &Threads(2));
                assert!(
                    same_bits(&got, &want),
                    "{path} {ty} {rows}x{cols} batch {batch}: {}",
                    first_difference(&got, &want)
                );
            }
        }
    }
}

#[test]
fn integer_matmul_is_bit_identical_on_every_path() {
    let mut rng = Rng(11);
    let scalar = Kernels::scalar();
    let mut panel_cases = 0;
    for ty in INT_TYPES {
        for (i, (rows, cols, batch)) in SHAPES.into_iter().enumerate() {
            let case = Case::new(&mut rng, ty, rows, cols, batch, i % 2 == 1);
            let want = case.run(&scalar, &Serial);
            let panels = case.panels();
            for path in paths() {
                let k = kernels(path);
                for (layout, c) in [("plain", Some(&case)), ("panels", panels.as_ref())] {
                    let Some(c) = c else { continue };
                    let got = c.run(&k, &Serial);
                    assert!(
                        same_bits(&got, &want),
                        "{path} {ty} {layout} {rows}x{cols} batch {batch}: {}",
                        first_difference(&got, &want)
                    );
                }
            }
            panel_cases += usize::from(panels.is_some());
        }
    }
    assert!(panel_cases >= 18, "{panel_cases} shapes with a panel form");
}

/// Float-weight shapes (rows, cols, batch): column tails of every length
/// class (below 8, below 32, 32 plus a tail, whole groups), rows that leave
/// 1x1 remainders, batches that use 4x2 and 8x1 tiles.
const FLT_SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (9, 7, 3),
    (8, 13, 2),
    (17, 31, 5),
    (12, 32, 1),
    (16, 33, 4),
    (17, 64, 5),
    (12, 100, 1),
    (11, 127, 3),
    (9, 256, 2),
    (20, 576, 4),
    (8, 1536, 1),
];

#[test]
fn float_matmul_is_bit_identical_on_every_path() {
    let mut rng = Rng(13);
    let scalar = Kernels::scalar();
    for ty in FLT_TYPES {
        for (rows, cols, batch) in FLT_SHAPES {
            let case = Case::new(&mut rng, ty, rows, cols, batch, false);
            let want = case.run(&scalar, &Serial);
            for path in paths() {
                for t in 1..=4 {
                    let got = case.run(&kernels(path), &Threads(t));
                    assert!(
                        same_bits(&got, &want),
                        "{path} {ty} {rows}x{cols} batch {batch}, {t} threads: {}",
                        first_difference(&got, &want)
                    );
                }
            }
        }
    }
}

#[test]
fn float_matmul_follows_the_spec_on_every_path() {
    let mut rng = Rng(53);
    let u = f32::EPSILON as f64 / 2.0;
    let mut order_matters = 0;
    let mut total = 0;
    for ty in FLT_TYPES {
        for (rows, cols, batch) in FLT_SHAPES {
            let mut case = Case::new(&mut rng, ty, rows, cols, batch, false);
            // Wide dynamic range, so that another order of roundings would
            // give other bits.
            for (i, x) in case.x.iter_mut().enumerate() {
                *x *= [1.0, 1e3, 1e-3, 37.0][(i / 5) % 4];
            }
            let rb = quant::row_bytes(ty, cols).unwrap();
            let mut want = Vec::new();
            for r in 0..batch {
                let x = &case.x[r * cols..(r + 1) * cols];
                for n in 0..rows {
                    let w = spec::float_values(ty, &case.w[n * rb..(n + 1) * rb]);
                    let d = spec::float_dot(&w, x);
                    // The canonical order is not the plain sequential one
                    // (checked in bulk below), and it is accurate.
                    let seq = w.iter().zip(x).fold(0f32, |s, (a, b)| a.mul_add(*b, s));
                    order_matters += usize::from(seq.to_bits() != d.to_bits());
                    total += 1;
                    let exact: f64 = w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let mag: f64 = w
                        .iter()
                        .zip(x)
                        .map(|(a, b)| (*a as f64 * *b as f64).abs())
                        .sum();
                    let bound = 1.01 * cols as f64 * u * mag + 1e-30;
                    assert!(
                        (d as f64 - exact).abs() <= bound,
                        "spec {ty} {cols}: {d} vs {exact}"
                    );
                    want.push(d);
                }
            }
            for path in paths() {
                let got = case.run(&kernels(path), &Threads(2));
                assert!(
                    same_bits(&got, &want),
                    "{path} {ty} {rows}x{cols} batch {batch}: {}",
                    first_difference(&got, &want)
                );
            }
        }
    }
    assert!(
        order_matters * 4 > total,
        "only {order_matters} of {total} dots depend on the order"
    );
}

#[test]
fn matmul_is_close_to_f64_on_dequantized_weights() {
    let mut rng = Rng(17);
    let u = f32::EPSILON as f64 / 2.0;
    for ty in INT_TYPES.into_iter().chain(FLT_TYPES) {
        for (rows, cols, batch) in [(9, 64, 3), (16, 576, 2), (5, 1536, 1)] {
            let case = Case::new(&mut rng, ty, rows, cols, batch, false);
            let quantized = act_format(ty).unwrap() != ActFormat::F32;
            for path in paths() {
                let y = case.run(&kernels(path), &Serial);
                for r in 0..batch {
                    let x = &case.x[r * cols..(r + 1) * cols];
                    for n in 0..rows {
                        let w = case.weight_row(n);
                        let exact: f64 = w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
                        let mut bound = 1e-30;
                        for (wb, xb) in w.chunks(32).zip(x.chunks(32)) {
                            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                            let step = if quantized { amax / 127.0 } else { 0.0 };
                            // The scale is stored as f16: off by at most
                            // half an f16 ulp (2^-11 relative, 2^-25 below
                            // the normal range), and |q| <= 127.
                            let e16 = if quantized {
                                (step * 2f64.powi(-11)).max(2f64.powi(-25))
                            } else {
                                0.0
                            };
                            // |q d| + |m| <= 3 max|w| (Q4_1's m is a value of the block).
                            let wmag: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                            let wmax = wb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                            let mag: f64 = xb
                                .iter()
                                .map(|v| (v.abs() as f64 + step) * 3.0 * wmax)
                                .sum();
                            bound += (step / 2.0 + 127.0 * e16) * wmag * 1.001
                                + (cols / 32 + 8) as f64 * u * mag;
                            if ty == GgmlType::Q4_1 {
                                // m * s: s = f16(d * sum(q)) is off from
                                // d16 * sum(q) by its own f16 rounding plus
                                // |sum(q)| * |d - d16|.
                                let s_err = (32.0 * 127.0 * step * 2f64.powi(-11))
                                    .max(2f64.powi(-25))
                                    + 32.0 * 127.0 * e16;
                                bound += wmax * s_err * 1.001;
                            }
                        }
                        if !quantized {
                            let mag: f64 = w
                                .iter()
                                .zip(x)
                                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                                .sum();
                            bound = cols as f64 * u * mag * 1.01 + 1e-30;
                        }
                        let got = y[r * rows + n] as f64;
                        assert!(
                            (got - exact).abs() <= bound,
                            "{path} {ty} {rows}x{cols} ({r},{n}): {got} vs {exact}, bound {bound}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn arbitrary_activation_bytes_do_not_panic() {
    // Sums of i32::MIN, scales of NaN, values of -128: the quantized
    // activations are caller memory, so nothing in them may panic (debug
    // overflow checks included). Results are unspecified.
    let mut rng = Rng(37);
    for path in paths() {
        let k = kernels(path);
        for ty in INT_TYPES {
            let case = Case::new(&mut rng, ty, 19, 64, 3, true);
            let fmt = act_format(ty).unwrap();
            for fill in [None, Some(0x80u8), Some(0xff), Some(0x7f)] {
                let n = act_bytes(fmt, 3, 64).unwrap();
                let q = match fill {
                    None => rng.bytes(n),
                    Some(b) => vec![b; n],
                };
                let act = Act {
                    x: &[],
                    q: &q,
                    fmt,
                    rows: 3,
                    cols: 64,
                };
                let mut y = vec![0f32; 3 * 19];
                k.matmul(&Threads(2), &case.matrix(), &act, &mut y).unwrap();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tiling and threads.

#[test]
fn results_do_not_depend_on_threads_or_partition() {
    let mut rng = Rng(19);
    for path in paths() {
        let k = kernels(path);
        for ty in INT_TYPES.into_iter().chain(FLT_TYPES) {
            for (rows, cols, batch) in [(57, 96, 3), (64, 64, 2), (23, 32, 1)] {
                let case = Case::new(&mut rng, ty, rows, cols, batch, false);
                let one = case.run(&k, &Serial);
                for t in 1..=4 {
                    let got = case.run(&k, &Threads(t));
                    assert!(
                        same_bits(&got, &one),
                        "{path} {ty} {t} threads: {}",
                        first_difference(&got, &one)
                    );
                }
                let got = case.run(&k, &Backwards(3));
                assert!(same_bits(&got, &one), "{path} {ty} backwards");
                let got = case.run(&k, &Threads(200));
                assert!(same_bits(&got, &one), "{path} {ty} more threads than rows");
            }
        }
    }
}

#[test]
fn an_output_does_not_depend_on_its_tile() {
    // Dropping the first weight row moves every output into another tile
    // (or the 1x1 remainder); dropping the first batch row swaps 4x2 and
    // 8x1 tiles. The values must not change.
    let mut rng = Rng(23);
    for path in paths() {
        let k = kernels(path);
        for ty in INT_TYPES.into_iter().chain(FLT_TYPES) {
            let (rows, cols, batch) = (21, 64, 5);
            let case = Case::new(&mut rng, ty, rows, cols, batch, false);
            let full = case.run(&k, &Serial);
            let rb = quant::row_bytes(ty, cols).unwrap();
            let shifted_w = Case {
                w: case.w[rb..].to_vec(),
                rows: rows - 1,
                x: case.x.clone(),
                ..case
            };
            let y = shifted_w.run(&k, &Serial);
            for r in 0..batch {
                for n in 0..rows - 1 {
                    assert_eq!(
                        y[r * (rows - 1) + n].to_bits(),
                        full[r * rows + n + 1].to_bits(),
                        "{path} {ty}"
                    );
                }
            }
            let shifted_x = Case {
                x: shifted_w.x[cols..].to_vec(),
                batch: batch - 1,
                w: case.w.clone(),
                rows,
                ..shifted_w
            };
            let y = shifted_x.run(&k, &Serial);
            assert!(same_bits(&y, &full[rows..]), "{path} {ty} batch shift");
        }
    }
}

// ---------------------------------------------------------------------------
// KV cache.

fn kv_rows(rng: &mut Rng, ty: KvType, dim: usize, n: usize, stride: usize) -> Vec<u8> {
    let row = ty.row_bytes(dim).unwrap();
    let mut out = rng.bytes(n * stride);
    let k = Kernels::scalar();
    for t in 0..n {
        let x: Vec<f32> = (0..dim).map(|_| rng.unit() * 3.0).collect();
        k.kv_store(ty, &x, &mut out[t * stride..t * stride + row])
            .unwrap();
    }
    out
}

/// `kv_attend` on every path equals a transcription of llama.cpp's one-row
/// flash attention update (f16 accumulator for an F16 cache, std's
/// `mul_add` for the fused operations), bit for bit, over several pages.
#[test]
fn kv_attend_follows_llama_cpp_on_every_path() {
    let mut rng = Rng(29);
    let f16r = |x: f32| crate::quant::f16_to_f32(crate::quant::f32_to_f16(x));
    for ty in [KvType::F16, KvType::Q8_0, KvType::F32] {
        for dim in [32, 64, 96, 128, 72, 8, 3] {
            if ty.row_bytes(dim).is_none() {
                continue;
            }
            let n = 13;
            let stride = ty.row_bytes(dim).unwrap() + 6; // rows need not be packed
            let cache = kv_rows(&mut rng, ty, dim, n, stride);
            // Scores that rise, fall and repeat, so both branches run.
            let scores: Vec<f32> = (0..n).map(|t| rng.unit() * 4.0 + (t % 5) as f32).collect();
            let values: Vec<Vec<f32>> = (0..n)
                .map(|t| {
                    let mut v = vec![0f32; dim];
                    super::scalar::for_each_kv_value(ty, &cache[t * stride..], 0, dim, |i, x| {
                        v[i] = x
                    });
                    v
                })
                .collect();
            // The transcription.
            let round = |x: f32| if ty == KvType::F16 { f16r(x) } else { x };
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            let mut want = vec![0f32; dim];
            for (t, &s) in scores.iter().enumerate() {
                let (ms, vs);
                if s > m {
                    ms = crate::math::expf(m - s);
                    m = s;
                    for a in want.iter_mut() {
                        *a = round(*a * ms);
                    }
                    vs = 1.0;
                } else {
                    ms = 1.0;
                    vs = crate::math::expf(s - m);
                }
                for (a, v) in want.iter_mut().zip(&values[t]) {
                    *a = round(v.mul_add(vs, *a));
                }
                l = l.mul_add(ms, vs);
            }
            let _ = (m, l);
            for path in paths() {
                let k = kernels(path);
                let mut st = SoftmaxState::new();
                let mut acc = vec![0f32; dim];
                // In two pages, as the engine streams them.
                let split = 5;
                k.kv_attend(ty, &scores[..split], &cache, stride, &mut st, &mut acc)
                    .unwrap();
                k.kv_attend(
                    ty,
                    &scores[split..],
                    &cache[split * stride..],
                    stride,
                    &mut st,
                    &mut acc,
                )
                .unwrap();
                assert!(
                    same_bits(&acc, &want),
                    "{path} {ty:?} dim {dim}: {}",
                    first_difference(&acc, &want)
                );
                assert_eq!(
                    st.max.to_bits(),
                    m.to_bits(),
                    "{path} {ty:?} dim {dim}: max"
                );
                assert_eq!(
                    st.sum.to_bits(),
                    l.to_bits(),
                    "{path} {ty:?} dim {dim}: sum"
                );
            }
        }
    }
}

/// `kv_scores` on every path equals the spec's float dot of the query and
/// the dequantized keys, bit for bit (so every path equals scalar), and is
/// within the summation bound of the exact dot product.
#[test]
fn kv_scores_follow_the_spec_on_every_path() {
    let mut rng = Rng(59);
    let u = f32::EPSILON as f64 / 2.0;
    let mut order_matters = 0;
    let mut total = 0;
    let scalar = Kernels::scalar();
    for ty in [KvType::F16, KvType::Q8_0, KvType::F32] {
        let gty = match ty {
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::F32 => GgmlType::F32,
        };
        for dim in [
            16, 64, 80, 128, 256, 32, 96, 1, 3, 7, 31, 33, 45, 95, 127, 257,
        ] {
            let Some(row) = ty.row_bytes(dim) else {
                continue;
            };
            for (n, stride) in [(13, row + 6), (16, row), (1, row), (0, row)] {
                let cache = kv_rows(&mut rng, ty, dim, n, stride);
                let q: Vec<f32> = (0..dim)
                    .map(|i| rng.unit() * [1.0, 1e3, 1e-3, 37.0][(i / 3) % 4])
                    .collect();
                let mut want = vec![0f32; n];
                for (t, w) in want.iter_mut().enumerate() {
                    let keys = spec::float_values(gty, &cache[t * stride..t * stride + row]);
                    *w = spec::float_dot(&q, &keys);
                    let seq = q.iter().zip(&keys).fold(0f32, |s, (a, b)| a.mul_add(*b, s));
                    order_matters += usize::from(seq.to_bits() != w.to_bits());
                    total += 1;
                    let exact: f64 = q
                        .iter()
                        .zip(&keys)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let mag: f64 = q
                        .iter()
                        .zip(&keys)
                        .map(|(a, b)| (*a as f64 * *b as f64).abs())
                        .sum();
                    let bound = 1.01 * dim as f64 * u * mag + 1e-30;
                    assert!((*w as f64 - exact).abs() <= bound, "{ty:?} {dim}");
                }
                let mut s = vec![f32::NAN; n];
                scalar.kv_scores(ty, &q, &cache, stride, &mut s).unwrap();
                assert!(same_bits(&s, &want), "scalar {ty:?} dim {dim}");
                for path in paths() {
                    let mut s = vec![f32::NAN; n];
                    kernels(path)
                        .kv_scores(ty, &q, &cache, stride, &mut s)
                        .unwrap();
                    assert!(
                        same_bits(&s, &want),
                        "{path} {ty:?} dim {dim} keys {n}: {}",
                        first_difference(&s, &want)
                    );
                }
            }
        }
    }
    assert!(
        order_matters * 4 > total,
        "only {order_matters} of {total} dots depend on the order"
    );
}

/// Keys of extreme magnitudes (f16's largest and subnormal values, Q8_0's
/// -128 and subnormal scales, cancelling sums): still the same bits.
#[test]
fn kv_scores_with_extreme_keys_are_identical_on_every_path() {
    let mut rng = Rng(61);
    let scalar = Kernels::scalar();
    for ty in [KvType::F16, KvType::Q8_0, KvType::F32] {
        for dim in [64, 80, 33] {
            let Some(row) = ty.row_bytes(dim) else {
                continue;
            };
            let n = 9;
            let mut cache = rng.bytes(n * row);
            if ty == KvType::Q8_0 {
                // Finite scales only (a NaN scale has no defined bits).
                for b in cache.chunks_exact_mut(34) {
                    let d = (rng.next() % 0x7c00) as u16;
                    b[..2].copy_from_slice(&d.to_le_bytes());
                }
            } else if ty == KvType::F16 {
                for v in cache.chunks_exact_mut(2) {
                    let h = u16::from_le_bytes([v[0], v[1]]);
                    if h & 0x7c00 == 0x7c00 {
                        v.copy_from_slice(&(h & 0x83ff).to_le_bytes());
                    }
                }
            } else {
                for v in cache.chunks_exact_mut(4) {
                    let x = rng.unit() * 2f32.powi((rng.next() % 60) as i32 - 30);
                    v.copy_from_slice(&x.to_le_bytes());
                }
            }
            let q: Vec<f32> = (0..dim)
                .map(|_| rng.unit() * 2f32.powi((rng.next() % 40) as i32 - 20))
                .collect();
            let mut want = vec![0f32; n];
            scalar.kv_scores(ty, &q, &cache, row, &mut want).unwrap();
            for path in paths() {
                let mut s = vec![0f32; n];
                kernels(path)
                    .kv_scores(ty, &q, &cache, row, &mut s)
                    .unwrap();
                assert!(
                    same_bits(&s, &want),
                    "{path} {ty:?} dim {dim}: {}",
                    first_difference(&s, &want)
                );
            }
        }
    }
}

#[test]
fn kv_store_is_identical_on_every_path() {
    let mut rng = Rng(31);
    let specials = [
        0.0,
        -0.0,
        65504.0,
        65520.0,
        -1e9,
        1e-8,
        6.1e-5,
        1.0 + 1.0 / 2048.0,
        f32::INFINITY,
    ];
    for dim in [64, 40, 7] {
        let mut x: Vec<f32> = (0..dim).map(|_| rng.unit() * 100.0).collect();
        for (v, s) in x.iter_mut().zip(specials) {
            *v = s;
        }
        let mut want = vec![0u8; dim * 2];
        for (v, o) in x.iter().zip(want.chunks_exact_mut(2)) {
            o.copy_from_slice(&quant::f32_to_f16(*v).to_le_bytes());
        }
        for path in paths() {
            let k = kernels(path);
            let mut got = vec![0u8; dim * 2];
            k.kv_store(KvType::F16, &x, &mut got).unwrap();
            assert_eq!(got, want, "{path} f16 dim {dim}");
            if dim % 32 == 0 {
                let mut q = vec![0u8; KvType::Q8_0.row_bytes(dim).unwrap()];
                let mut r = q.clone();
                k.kv_store(KvType::Q8_0, &x, &mut q).unwrap();
                quant::quantize_row(GgmlType::Q8_0, &x, &mut r).unwrap();
                assert_eq!(q, r, "{path} q8_0");
            }
            // NaN stays NaN.
            let mut nan = [0u8; 16];
            k.kv_store(KvType::F16, &[f32::NAN; 8], &mut nan).unwrap();
            assert!(
                quant::f16_to_f32(u16::from_le_bytes([nan[0], nan[1]])).is_nan(),
                "{path}"
            );
        }
    }
}

#[test]
fn swiglu_is_identical_on_every_path() {
    let mut rng = Rng(29);
    for n in [0, 1, 7, 8, 9, 64, 1536, 1541] {
        let mut gate: Vec<f32> = (0..n).map(|_| rng.unit() * 12.0).collect();
        let up: Vec<f32> = (0..n).map(|_| rng.unit() * 3.0).collect();
        // Values where ggml's exp leaves the normal exponent range (-g
        // beyond +-87.3 or +-126 ln 2 scaling), and non-finite ones.
        for (i, v) in [
            100.0,
            -100.0,
            150.0,
            -200.0,
            f32::INFINITY,
            f32::NAN,
            -0.0,
            1e-40,
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(g) = gate.get_mut(i * 5 + 3) {
                *g = v;
            }
        }
        let mut want = gate.clone();
        crate::model::ops::swiglu(&mut want, &up);
        for path in paths() {
            let mut got = gate.clone();
            kernels(path).swiglu(&mut got, &up).unwrap();
            assert!(
                same_bits(&got, &want),
                "{path} n {n}: {}",
                first_difference(&got, &want)
            );
        }
    }
    assert!(Kernels::scalar().swiglu(&mut [0.0; 3], &[1.0; 2]).is_err());
}

#[test]
fn attend_page_equals_its_steps_on_every_path() {
    // The fused page attention against kv_scores, a scale and kv_attend
    // on the scalar path: pages of every length class around the fused
    // body's steps of 32 keys, head sizes with and without a multiple of 8,
    // scores far below the maximum (expf underflows to 0) and NaN.
    let mut rng = Rng(31);
    for ty in [KvType::F16, KvType::Q8_0, KvType::F32] {
        for dim in [64, 256, 72, 8, 3, 40] {
            let Some(rb) = ty.row_bytes(dim) else {
                continue;
            };
            for n in [1, 7, 16, 31, 32, 33, 70] {
                let stride = rb + 4;
                let keys = kv_rows(&mut rng, ty, dim, n, stride);
                let values = kv_rows(&mut rng, ty, dim, n, stride);
                let mut q: Vec<f32> = (0..dim).map(|_| rng.unit() * 2.0).collect();
                if n == 33 {
                    q[0] = 4000.0; // scores far apart: many factors underflow
                }
                let scale = 0.125;
                let starts = [
                    SoftmaxState::new(),
                    SoftmaxState {
                        max: 0.75,
                        sum: 3.5,
                    },
                ];
                for start in starts {
                    let init: Vec<f32> = (0..dim).map(|i| (i % 7) as f32 * 0.25).collect();
                    let mut want_acc = if start.sum == 0.0 {
                        vec![0.0; dim]
                    } else {
                        init.clone()
                    };
                    let mut want_st = start;
                    let mut want_scores = vec![0f32; n];
                    let s = Kernels::scalar();
                    s.kv_scores(ty, &q, &keys, stride, &mut want_scores)
                        .unwrap();
                    for x in want_scores.iter_mut() {
                        *x *= scale;
                    }
                    s.kv_attend(
                        ty,
                        &want_scores,
                        &values,
                        stride,
                        &mut want_st,
                        &mut want_acc,
                    )
                    .unwrap();
                    for path in paths() {
                        let mut acc = if start.sum == 0.0 {
                            vec![0.0; dim]
                        } else {
                            init.clone()
                        };
                        let mut st = start;
                        let mut scores = vec![0f32; n];
                        kernels(path)
                            .attend_page(
                                ty,
                                &q,
                                &keys,
                                &values,
                                stride,
                                scale,
                                &mut scores,
                                &mut st,
                                &mut acc,
                            )
                            .unwrap();
                        let what = std::format!("{path} {ty:?} dim {dim} n {n}");
                        assert!(same_bits(&scores, &want_scores), "{what} scores");
                        assert!(
                            same_bits(&acc, &want_acc),
                            "{what}: {}",
                            first_difference(&acc, &want_acc)
                        );
                        assert_eq!(st.max.to_bits(), want_st.max.to_bits(), "{what} max");
                        assert_eq!(st.sum.to_bits(), want_st.sum.to_bits(), "{what} sum");
                    }
                }
            }
        }
    }
    let k = Kernels::scalar();
    let mut st = SoftmaxState::new();
    let (keys, mut sc, mut acc) = (vec![0u8; 128], vec![0f32; 2], vec![0f32; 64]);
    assert!(
        k.attend_page(
            KvType::F16,
            &[0.0; 64],
            &keys,
            &keys,
            128,
            1.0,
            &mut sc,
            &mut st,
            &mut acc
        )
        .is_err(),
        "2 rows do not fit"
    );
    assert!(
        k.attend_page(
            KvType::F16,
            &[0.0; 32],
            &keys,
            &keys,
            64,
            1.0,
            &mut sc,
            &mut st,
            &mut acc
        )
        .is_err(),
        "q and acc differ"
    );
}

#[test]
fn attend_group_equals_each_head_alone_on_every_path() {
    let mut rng = Rng(37);
    for ty in [KvType::F16, KvType::Q8_0, KvType::F32] {
        for dim in [64, 256, 96, 40, 8] {
            let Some(rb) = ty.row_bytes(dim) else {
                continue;
            };
            for g in [1, 3, 4, 5, 8] {
                for n in [1, 16, 33] {
                    let stride = rb + 2;
                    let keys = kv_rows(&mut rng, ty, dim, n, stride);
                    let values = kv_rows(&mut rng, ty, dim, n, stride);
                    let q: Vec<f32> = (0..g * dim).map(|_| rng.unit() * 2.0).collect();
                    let start: Vec<SoftmaxState> = (0..g)
                        .map(|h| SoftmaxState {
                            max: if h % 2 == 0 { f32::NEG_INFINITY } else { 0.5 },
                            sum: if h % 2 == 0 { 0.0 } else { 2.0 },
                        })
                        .collect();
                    let init: Vec<f32> = (0..g * dim).map(|i| (i % 5) as f32 * 0.125).collect();
                    // The reference: each head alone, scalar path.
                    let s = Kernels::scalar();
                    let mut want_acc = init.clone();
                    let mut want_st = start.clone();
                    let mut want_sc = vec![0f32; g * n];
                    for h in 0..g {
                        s.attend_page(
                            ty,
                            &q[h * dim..(h + 1) * dim],
                            &keys,
                            &values,
                            stride,
                            0.125,
                            &mut want_sc[h * n..(h + 1) * n],
                            &mut want_st[h],
                            &mut want_acc[h * dim..(h + 1) * dim],
                        )
                        .unwrap();
                    }
                    for path in paths() {
                        let mut acc = init.clone();
                        let mut st = start.clone();
                        let mut sc = vec![0f32; g * n];
                        kernels(path)
                            .attend_group(
                                ty, &q, &keys, &values, stride, 0.125, &mut sc, &mut st, &mut acc,
                            )
                            .unwrap();
                        let what = std::format!("{path} {ty:?} dim {dim} g {g} n {n}");
                        assert!(same_bits(&sc, &want_sc), "{what} scores");
                        assert!(
                            same_bits(&acc, &want_acc),
                            "{what}: {}",
                            first_difference(&acc, &want_acc)
                        );
                        for (a, b) in st.iter().zip(&want_st) {
                            assert_eq!(
                                (a.max.to_bits(), a.sum.to_bits()),
                                (b.max.to_bits(), b.sum.to_bits()),
                                "{what} state"
                            );
                        }
                    }
                }
            }
        }
    }
    let k = Kernels::scalar();
    let mut st = [SoftmaxState::new(); 2];
    assert!(
        k.attend_group(
            KvType::F16,
            &[0.0; 64],
            &[0; 64],
            &[0; 64],
            64,
            1.0,
            &mut [0.0; 3],
            &mut st,
            &mut [0.0; 64]
        )
        .is_err(),
        "3 scores for 2 heads"
    );
    assert!(
        k.attend_group(
            KvType::F16,
            &[0.0; 64],
            &[0; 64],
            &[0; 64],
            64,
            1.0,
            &mut [0.0; 2],
            &mut st,
            &mut [0.0; 32]
        )
        .is_err(),
        "acc and q differ"
    );
}
