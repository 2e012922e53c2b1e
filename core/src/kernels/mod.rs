//! Compute kernels: a scalar reference for every operation and SIMD bodies
//! for x86_64 AVX2 and aarch64 NEON (with and without dotprod), chosen once
//! at run time.
//!
#![allow(clippy::needless_range_loop)]
//! INTERIM: this file is a plain reference implementation with the
//! contracted API, used to bring up the forward pass; the SIMD kernels
//! replace it.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::kv::KvType;
use crate::parallel::Parallel;

/// A kernel implementation family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPath {
    /// Portable scalar code.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C.
    Avx2,
    /// aarch64 NEON.
    Neon,
    /// aarch64 NEON with the dot-product extension.
    NeonDotprod,
}

impl KernelPath {
    /// Command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Neon => "neon",
            KernelPath::NeonDotprod => "neon-dotprod",
        }
    }

    /// Parses [`KernelPath::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [
            KernelPath::Scalar,
            KernelPath::Avx2,
            KernelPath::Neon,
            KernelPath::NeonDotprod,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// CPU features the kernels may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    avx2: bool,
    fma: bool,
    f16c: bool,
    neon: bool,
    dotprod: bool,
}

impl CpuFeatures {
    /// No features: scalar only.
    pub const fn none() -> Self {
        CpuFeatures {
            avx2: false,
            fma: false,
            f16c: false,
            neon: false,
            dotprod: false,
        }
    }

    /// Features enabled at compile time.
    pub fn compile_time() -> Self {
        CpuFeatures::none()
    }

    /// Features as detected by the host.
    ///
    /// # Safety
    ///
    /// The CPU running this process must have every feature claimed.
    pub unsafe fn assume(avx2: bool, fma: bool, f16c: bool, neon: bool, dotprod: bool) -> Self {
        CpuFeatures {
            avx2,
            fma,
            f16c,
            neon,
            dotprod,
        }
    }

    /// The fastest path these features allow.
    pub fn best_path(&self) -> KernelPath {
        KernelPath::Scalar
    }

    /// Whether `path` can run.
    pub fn supports(&self, path: KernelPath) -> bool {
        path == KernelPath::Scalar
    }
}

/// The kernel table chosen at init.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    path: KernelPath,
}

/// How a matmul wants its activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// Plain f32.
    F32,
    /// Q8_0 blocks.
    Q8_0,
    /// Q8_1 blocks.
    Q8_1,
}

/// The activation format the matmul of a `weight`-typed matrix needs.
pub fn act_format(weight: GgmlType) -> Result<ActFormat> {
    match weight {
        GgmlType::Q8_0 | GgmlType::Q4_0 => Ok(ActFormat::Q8_0),
        GgmlType::Q4_1 => Ok(ActFormat::Q8_1),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Ok(ActFormat::F32),
        _ => Err(Error::InvalidArgument {
            what: "no kernel reads this weight type",
        }),
    }
}

/// Bytes of quantized activations for `rows` rows of `cols` values.
pub fn act_bytes(fmt: ActFormat, rows: usize, cols: usize) -> Option<usize> {
    let per_block = match fmt {
        ActFormat::F32 => return Some(0),
        ActFormat::Q8_0 => 34,
        ActFormat::Q8_1 => 36,
    };
    if cols % 32 != 0 {
        return None;
    }
    rows.checked_mul(cols / 32)?.checked_mul(per_block)
}

/// A weight matrix read in place: row `n` holds `cols` values.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// Raw bytes, rows back to back.
    pub data: &'a [u8],
    /// Element type.
    pub ty: GgmlType,
    /// Rows (output features).
    pub rows: usize,
    /// Values per row (input features).
    pub cols: usize,
}

/// Activations: `rows` rows of `cols` values, and their quantized form.
#[derive(Clone, Copy, Debug)]
pub struct Act<'a> {
    /// f32 values, row-major.
    pub x: &'a [f32],
    /// Quantized values as written by [`Kernels::quantize_act`].
    pub q: &'a [u8],
    /// Format of `q`.
    pub fmt: ActFormat,
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` values of type `ty` from `src`.
fn dequant(ty: GgmlType, src: &[u8], out: &mut [f32]) -> Result<()> {
    let n = out.len();
    match ty {
        GgmlType::F32 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f32::from_le_bytes([
                    src[4 * i],
                    src[4 * i + 1],
                    src[4 * i + 2],
                    src[4 * i + 3],
                ]);
            }
        }
        GgmlType::F16 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f16_at(src, 2 * i);
            }
        }
        GgmlType::BF16 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = half::bf16::from_le_bytes([src[2 * i], src[2 * i + 1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for b in 0..n / 32 {
                let blk = &src[b * 34..b * 34 + 34];
                let d = f16_at(blk, 0);
                for j in 0..32 {
                    out[b * 32 + j] = d * (blk[2 + j] as i8) as f32;
                }
            }
        }
        GgmlType::Q4_0 => {
            for b in 0..n / 32 {
                let blk = &src[b * 18..b * 18 + 18];
                let d = f16_at(blk, 0);
                for j in 0..16 {
                    out[b * 32 + j] = ((blk[2 + j] & 15) as i32 - 8) as f32 * d;
                    out[b * 32 + j + 16] = ((blk[2 + j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        GgmlType::Q4_1 => {
            for b in 0..n / 32 {
                let blk = &src[b * 20..b * 20 + 20];
                let d = f16_at(blk, 0);
                let m = f16_at(blk, 2);
                for j in 0..16 {
                    out[b * 32 + j] = (blk[4 + j] & 15) as f32 * d + m;
                    out[b * 32 + j + 16] = (blk[4 + j] >> 4) as f32 * d + m;
                }
            }
        }
        _ => {
            return Err(Error::InvalidArgument {
                what: "no kernel reads this type",
            })
        }
    }
    Ok(())
}

impl Kernels {
    /// Chooses the kernels for `features`, or the forced path.
    pub fn new(features: &CpuFeatures, force: Option<KernelPath>) -> Result<Kernels> {
        let path = force.unwrap_or(features.best_path());
        if !features.supports(path) {
            return Err(Error::InvalidArgument {
                what: "the CPU does not support the forced kernel path",
            });
        }
        Ok(Kernels { path })
    }

    /// Scalar kernels.
    pub fn scalar() -> Kernels {
        Kernels {
            path: KernelPath::Scalar,
        }
    }

    /// The chosen path.
    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// Quantizes activation rows.
    pub fn quantize_act(
        &self,
        _fmt: ActFormat,
        _x: &[f32],
        _cols: usize,
        _out: &mut [u8],
    ) -> Result<()> {
        Ok(())
    }

    /// `y[r * w.rows + n] = sum_k W[n][k] * x[r][k]`.
    pub fn matmul(
        &self,
        _par: &dyn Parallel,
        w: &Matrix<'_>,
        x: &Act<'_>,
        y: &mut [f32],
    ) -> Result<()> {
        let row_bytes =
            w.ty.row_bytes(w.cols as u64)
                .ok_or(Error::InvalidArgument {
                    what: "matmul cols",
                })? as usize;
        if x.cols != w.cols
            || x.x.len() < x.rows * x.cols
            || y.len() < x.rows * w.rows
            || w.data.len() < w.rows * row_bytes
        {
            return Err(Error::InvalidArgument {
                what: "matmul shapes",
            });
        }
        let mut tmp = [0f32; 8192];
        let wrow = &mut tmp[..w.cols];
        let mut xq_store = [0f32; 64 * 1536];
        let xs: &[f32] = if x.fmt == ActFormat::F32 || option_env!("ALM_NOQ").is_some() {
            x.x
        } else {
            let xq = &mut xq_store[..x.rows * x.cols];
            for (o, chunk) in xq.chunks_mut(32).zip(x.x.chunks(32)) {
                let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                let dh = half::f16::from_f32(d).to_f32();
                for (oo, v) in o.iter_mut().zip(chunk) {
                    *oo = libm::rintf(v * id) * dh;
                }
            }
            xq
        };
        if (w.ty == GgmlType::Q8_0 || w.ty == GgmlType::Q4_0)
            && x.fmt == ActFormat::Q8_0
            && option_env!("ALM_NOQ").is_none()
        {
            let mut qx = [0i8; 64 * 1536];
            let mut dx = [0f32; 4096];
            let nbk = x.cols / 32;
            for r in 0..x.rows {
                for bk in 0..nbk {
                    let chunk = &x.x[r * x.cols + bk * 32..r * x.cols + bk * 32 + 32];
                    let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                    for j in 0..32 {
                        qx[r * x.cols + bk * 32 + j] = libm::rintf(chunk[j] * id) as i8;
                    }
                    dx[r * nbk + bk] = half::f16::from_f32(amax / 127.0).to_f32();
                }
            }
            let bb = if w.ty == GgmlType::Q8_0 { 34 } else { 18 };
            for n in 0..w.rows {
                let wr = &w.data[n * row_bytes..(n + 1) * row_bytes];
                for r in 0..x.rows {
                    let mut acc = [0f32; 8];
                    for bk in 0..nbk {
                        let blk = &wr[bk * bb..bk * bb + bb];
                        let mut wq = [0i32; 32];
                        if w.ty == GgmlType::Q8_0 {
                            for j in 0..32 {
                                wq[j] = blk[2 + j] as i8 as i32;
                            }
                        } else {
                            for j in 0..16 {
                                wq[j] = (blk[2 + j] & 15) as i32 - 8;
                                wq[j + 16] = (blk[2 + j] >> 4) as i32 - 8;
                            }
                        }
                        let dd = f16_at(blk, 0) * dx[r * nbk + bk];
                        for l in 0..8 {
                            let mut isum = 0i32;
                            for j in 4 * l..4 * l + 4 {
                                isum += wq[j] * qx[r * x.cols + bk * 32 + j] as i32;
                            }
                            acc[l] = libm::fmaf(dd, isum as f32, acc[l]);
                        }
                    }
                    y[r * w.rows + n] = ((acc[0] + acc[4]) + (acc[2] + acc[6]))
                        + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                }
            }
            return Ok(());
        }
        if w.ty == GgmlType::Q4_1 && x.fmt == ActFormat::Q8_1 && option_env!("ALM_NOQ").is_none() {
            // ggml-exact block formula: d_w*d_x*sum(q_w q_x) + m_w * f16(d_x32 * sum q_x)
            let mut qx = [0i8; 64 * 1536];
            let mut dx = [0f32; 4096];
            let mut sx = [0f32; 4096];
            let nbk = x.cols / 32;
            for r in 0..x.rows {
                for bk in 0..nbk {
                    let chunk = &x.x[r * x.cols + bk * 32..r * x.cols + bk * 32 + 32];
                    let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                    let mut sum = 0i32;
                    for j in 0..32 {
                        let q = libm::rintf(chunk[j] * id) as i32;
                        qx[r * x.cols + bk * 32 + j] = q as i8;
                        sum += q;
                    }
                    dx[r * nbk + bk] = half::f16::from_f32(d).to_f32();
                    sx[r * nbk + bk] = half::f16::from_f32(d * sum as f32).to_f32();
                }
            }
            for n in 0..w.rows {
                let wr = &w.data[n * row_bytes..(n + 1) * row_bytes];
                for r in 0..x.rows {
                    let mut acc = [0f32; 8];
                    let mut summs = 0f32;
                    for bk in 0..nbk {
                        let blk = &wr[bk * 20..bk * 20 + 20];
                        let dw = f16_at(blk, 0);
                        let mw = f16_at(blk, 2);
                        let mut wq = [0i32; 32];
                        for j in 0..16 {
                            wq[j] = (blk[4 + j] & 15) as i32;
                            wq[j + 16] = (blk[4 + j] >> 4) as i32;
                        }
                        let dd = dw * dx[r * nbk + bk];
                        for l in 0..8 {
                            let mut isum = 0i32;
                            for j in 4 * l..4 * l + 4 {
                                isum += wq[j] * qx[r * x.cols + bk * 32 + j] as i32;
                            }
                            acc[l] = libm::fmaf(dd, isum as f32, acc[l]);
                        }
                        summs += mw * sx[r * nbk + bk];
                    }
                    let h = ((acc[0] + acc[4]) + (acc[2] + acc[6]))
                        + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                    y[r * w.rows + n] = h + summs;
                }
            }
            return Ok(());
        }
        for n in 0..w.rows {
            dequant(w.ty, &w.data[n * row_bytes..(n + 1) * row_bytes], wrow)?;
            for r in 0..x.rows {
                let xr = &xs[r * x.cols..(r + 1) * x.cols];
                let mut s = 0.0f64;
                for k in 0..w.cols {
                    s += (wrow[k] * xr[k]) as f64;
                }
                y[r * w.rows + n] = s as f32;
            }
        }
        Ok(())
    }

    /// Dot products of `q` with `out.len()` cached rows at `stride` bytes.
    pub fn kv_scores(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        stride: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let mut tmp = [0f32; 1024];
        let row = &mut tmp[..q.len()];
        for (t, o) in out.iter_mut().enumerate() {
            kv_load(ty, &k[t * stride..], row)?;
            *o = row.iter().zip(q).map(|(a, b)| a * b).sum();
        }
        Ok(())
    }

    /// `acc += sum_t p[t] * V_t`.
    pub fn kv_accumulate(
        &self,
        ty: KvType,
        p: &[f32],
        v: &[u8],
        stride: usize,
        acc: &mut [f32],
    ) -> Result<()> {
        let mut tmp = [0f32; 1024];
        let row = &mut tmp[..acc.len()];
        for (t, &pt) in p.iter().enumerate() {
            kv_load(ty, &v[t * stride..], row)?;
            for (a, r) in acc.iter_mut().zip(row.iter()) {
                *a += pt * r;
            }
        }
        Ok(())
    }

    /// Stores one row in the KV element type.
    pub fn kv_store(&self, ty: KvType, x: &[f32], out: &mut [u8]) -> Result<()> {
        match ty {
            KvType::F32 => {
                for (i, v) in x.iter().enumerate() {
                    out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            KvType::F16 => {
                for (i, v) in x.iter().enumerate() {
                    out[2 * i..2 * i + 2].copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                }
            }
            KvType::Q8_0 => {
                for (b, chunk) in x.chunks(32).enumerate() {
                    let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    let blk = &mut out[b * 34..b * 34 + 34];
                    blk[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
                    for (j, v) in chunk.iter().enumerate() {
                        blk[2 + j] = (libm::roundf(v * id) as i8) as u8;
                    }
                }
            }
        }
        Ok(())
    }
}

fn kv_load(ty: KvType, src: &[u8], out: &mut [f32]) -> Result<()> {
    match ty {
        KvType::F32 => dequant(GgmlType::F32, src, out),
        KvType::F16 => dequant(GgmlType::F16, src, out),
        KvType::Q8_0 => dequant(GgmlType::Q8_0, src, out),
    }
}

/// Dequantizes a row (interim helper used by the embedding lookup).
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) -> Result<()> {
    dequant(ty, src, out)
}
