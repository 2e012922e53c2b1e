//! Compute kernels: a scalar reference for every operation and SIMD bodies
//! for x86_64 (AVX2, AVX-VNNI, AVX-512 VNNI) and aarch64 (NEON, with
//! dotprod, with i8mm), chosen once at run time.
//!
//! # Dispatch
//!
//! [`CpuFeatures`] says what the CPU can do: [`CpuFeatures::detect`] asks
//! `cpuid`/`xgetbv` on x86_64; on aarch64 the host layer reads the kernel's
//! hwcaps and vouches for them through the unsafe [`CpuFeatures::assume`].
//! [`Kernels::new`] picks the best [`KernelPath`] or the one a caller
//! forces, and refuses a path the features lack, so a SIMD body can never
//! run on a CPU without its instructions. Every public operation checks its
//! lengths, then calls the chosen path's body.
//!
//! # Matrix multiplication
//!
//! Weights are used in place, in their stored block format. Quantized
//! weights (Q8_0, Q4_0, Q4_1) multiply activations quantized per 32-value
//! block ([`Kernels::quantize_act`]) with integer dot products; the f32
//! formats (F32, F16, BF16) multiply f32 activations with f32 FMAs. On x86
//! the integer GEMM reads weights in 16-row panels ([`WeightLayout`]):
//! packed from plain rows on the fly, or stored that way in the file.
//!
//! The integer paths are **bit-identical across every path**, and compute
//! what llama.cpp's x86 kernels compute by default for each type
//! (`docs/numerics.md` has the full definition). Q8_0 and Q4_1, per output,
//! eight f32 lanes, block after block:
//!
//! ```text
//! dd      = d_w * d_a                              (f32 multiply)
//! isum[l] = sum of w_j * a_j over j in 4l..4l+4    (exact i32)
//! acc[l]  = fma(dd, isum[l], acc[l])               (fused)
//! Q4_1:     summs = summs + m_w * s_a              (multiply, then add)
//! result  = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))
//!           [+ summs for Q4_1]
//! ```
//!
//! Q4_0, per output, one f32 accumulator: `acc = fma(isum, dd, acc)` with
//! `isum` the exact sum of the block's 32 products.
//! (`w_j`: Q8_0's int8, Q4_0's nibble - 8, Q4_1's nibble; `d_a` and `s_a`
//! are the activation block's f16-rounded scale and `d * sum(q_a)`.)
//!
//! The float dot products — the F32 / F16 / BF16 weight matmul and
//! [`Kernels::kv_scores`] (f32 query against F16, Q8_0 or F32 keys) — are
//! bit-identical across every path too. The values are converted to f32
//! exactly (Q8_0 keys as `f32(d) * q`), and a dot of `n` values follows
//! ggml's `ggml_vec_dot_f32` (AVX2 with FMA), with `m = n - n % 32`:
//!
//! ```text
//! acc[j][l] = 0                                     (4 accumulators x 8 lanes)
//! e in 0..m:  acc[(e/8)%4][e%8] = fma(a_e, b_e, acc[(e/8)%4][e%8])
//! acc0 += acc2; acc1 += acc3; acc0 += acc1          (lane-wise)
//! t[l] = acc0[l] + acc0[l+4]                        (l = 0..4)
//! s = (t0 + t1) + (t2 + t3)
//! e in m..n:  s = fma(a_e, b_e, s)                  (the tail, in order)
//! ```
//!
//! Work is split by output feature: [`Kernels::matmul`] cuts the weight rows
//! into a few pieces per thread and [`Parallel::run`] hands them out as
//! threads ask. Each output is computed by the same instruction sequence
//! whichever tile, remainder path or thread computes it, so results are
//! bit-identical for any thread count.
//!
//! # Activation layout
//!
//! [`ActFormat::Q8`] activations are private to this module: [`act_bytes`]
//! says how many bytes they take and [`Kernels::quantize_act`] writes them.
//! (Today: per 32-value block, 32 x i8, the f16-rounded scale and `d * sum`
//! as f32, the exact sum and eight group corrections as i32; a block is 76
//! bytes.) Quantized values are in `-127..=127`.

mod act;
mod layout;
mod matmul;
mod out;
mod scalar;

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_int;

#[cfg(test)]
mod tests;

use crate::gguf::GgmlType;
use crate::parallel::Parallel;
use crate::{Error, Result};
pub use layout::WeightLayout;
pub(crate) use scalar::{fmaf, kv_round};

/// A family of kernel bodies. Each needs some CPU features; see
/// [`CpuFeatures::supports`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Portable Rust; the reference every other path is tested against.
    Scalar,
    /// x86_64 AVX2 with FMA and F16C.
    Avx2,
    /// x86_64 AVX2 with the VEX-encoded 256-bit VNNI dot product
    /// (`vpdpbusd` ymm; Intel Alder Lake / Gracemont and later).
    AvxVnni,
    /// x86_64 AVX-512 (F, BW, VL) with 512-bit VNNI (`vpdpbusd` zmm; Intel
    /// Ice Lake and later servers, AMD Zen 4 and later).
    Avx512Vnni,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 Advanced SIMD with the dot-product extension (`sdot`).
    NeonDotprod,
    /// aarch64 Advanced SIMD with dotprod and the int8 matrix multiply
    /// extension (`smmla`; Cortex-A510/A710/X2, Neoverse N2/V1 and later).
    NeonI8mm,
}

impl KernelPath {
    /// Every path, portable first.
    pub const ALL: [KernelPath; 7] = [
        KernelPath::Scalar,
        KernelPath::Avx2,
        KernelPath::AvxVnni,
        KernelPath::Avx512Vnni,
        KernelPath::Neon,
        KernelPath::NeonDotprod,
        KernelPath::NeonI8mm,
    ];

    /// Stable name: `"scalar"`, `"avx2"`, `"avx-vnni"`, `"avx512-vnni"`,
    /// `"neon"`, `"neon-dotprod"`, `"neon-i8mm"`.
    pub fn name(&self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::AvxVnni => "avx-vnni",
            KernelPath::Avx512Vnni => "avx512-vnni",
            KernelPath::Neon => "neon",
            KernelPath::NeonDotprod => "neon-dotprod",
            KernelPath::NeonI8mm => "neon-i8mm",
        }
    }

    /// The path named `name` (as [`KernelPath::name`] spells it, ASCII case
    /// ignored).
    pub fn from_name(name: &str) -> Option<Self> {
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The CPU features the path needs (see [`CpuFeatures::supports`]).
    pub fn requires(&self) -> &'static [CpuFeature] {
        use CpuFeature::*;
        match self {
            KernelPath::Scalar => &[],
            KernelPath::Avx2 => &[Avx2, Fma, F16c],
            KernelPath::AvxVnni => &[Avx2, Fma, F16c, AvxVnni],
            KernelPath::Avx512Vnni => &[Avx2, Fma, F16c, Avx512f, Avx512bw, Avx512vl, Avx512vnni],
            KernelPath::Neon => &[Neon],
            KernelPath::NeonDotprod => &[Neon, Dotprod],
            KernelPath::NeonI8mm => &[Neon, Dotprod, I8mm],
        }
    }

    /// The architecture the path's bodies are built for.
    fn arch_is_built(&self) -> bool {
        match self {
            KernelPath::Scalar => true,
            KernelPath::Avx2 | KernelPath::AvxVnni | KernelPath::Avx512Vnni => {
                cfg!(target_arch = "x86_64")
            }
            KernelPath::Neon | KernelPath::NeonDotprod | KernelPath::NeonI8mm => {
                cfg!(target_arch = "aarch64")
            }
        }
    }
}

impl core::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One CPU feature the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuFeature {
    /// x86_64 AVX2.
    Avx2,
    /// x86_64 FMA3.
    Fma,
    /// x86_64 F16C (half-precision conversions).
    F16c,
    /// x86_64 AVX-VNNI (VEX `vpdpbusd`).
    AvxVnni,
    /// x86_64 AVX-512 Foundation.
    Avx512f,
    /// x86_64 AVX-512 Byte and Word.
    Avx512bw,
    /// x86_64 AVX-512 Vector Length (the 128/256-bit EVEX forms).
    Avx512vl,
    /// x86_64 AVX-512 VNNI.
    Avx512vnni,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 dot product (`sdot`).
    Dotprod,
    /// aarch64 int8 matrix multiply (`smmla`).
    I8mm,
}

impl CpuFeature {
    /// Every feature.
    pub const ALL: [CpuFeature; 11] = [
        CpuFeature::Avx2,
        CpuFeature::Fma,
        CpuFeature::F16c,
        CpuFeature::AvxVnni,
        CpuFeature::Avx512f,
        CpuFeature::Avx512bw,
        CpuFeature::Avx512vl,
        CpuFeature::Avx512vnni,
        CpuFeature::Neon,
        CpuFeature::Dotprod,
        CpuFeature::I8mm,
    ];

    const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Whether this build already requires the feature of every CPU it runs
    /// on (`cfg!(target_feature = ...)`).
    fn compile_time(self) -> bool {
        match self {
            CpuFeature::Avx2 => cfg!(all(target_arch = "x86_64", target_feature = "avx2")),
            CpuFeature::Fma => cfg!(all(target_arch = "x86_64", target_feature = "fma")),
            CpuFeature::F16c => cfg!(all(target_arch = "x86_64", target_feature = "f16c")),
            CpuFeature::AvxVnni => cfg!(all(target_arch = "x86_64", target_feature = "avxvnni")),
            CpuFeature::Avx512f => cfg!(all(target_arch = "x86_64", target_feature = "avx512f")),
            CpuFeature::Avx512bw => {
                cfg!(all(target_arch = "x86_64", target_feature = "avx512bw"))
            }
            CpuFeature::Avx512vl => {
                cfg!(all(target_arch = "x86_64", target_feature = "avx512vl"))
            }
            CpuFeature::Avx512vnni => {
                cfg!(all(target_arch = "x86_64", target_feature = "avx512vnni"))
            }
            CpuFeature::Neon => cfg!(all(target_arch = "aarch64", target_feature = "neon")),
            CpuFeature::Dotprod => cfg!(all(target_arch = "aarch64", target_feature = "dotprod")),
            CpuFeature::I8mm => cfg!(all(target_arch = "aarch64", target_feature = "i8mm")),
        }
    }
}

/// The CPU features the kernels care about.
///
/// A value that claims a feature is a promise that the running CPU has it:
/// only [`CpuFeatures::compile_time`] (the build already requires them) and
/// the unsafe [`CpuFeatures::assume`] create such values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    bits: u32,
}

impl CpuFeatures {
    /// No features: only the scalar path.
    pub const fn none() -> Self {
        CpuFeatures { bits: 0 }
    }

    /// The features this build already requires of every CPU it runs on
    /// (`cfg!(target_feature = ...)`), e.g. NEON on aarch64, AVX2 with
    /// `-C target-cpu=native` on a recent x86.
    pub fn compile_time() -> Self {
        let bits = CpuFeature::ALL
            .into_iter()
            .filter(|f| f.compile_time())
            .fold(0, |b, f| b | f.bit());
        CpuFeatures { bits }
    }

    /// The features of the running CPU that this code can find out without
    /// an operating system: on x86_64 from `cpuid` and `xgetbv` (a feature
    /// counts only if the OS also saves its registers); elsewhere the
    /// compile-time set (aarch64 needs the kernel's hwcaps: the host layer
    /// adds them through [`CpuFeatures::assume`]).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let found = x86_detect();
            let bits = CpuFeature::ALL
                .into_iter()
                .filter(|f| found(*f))
                .fold(0, |b, f| b | f.bit());
            CpuFeatures { bits }.union(Self::compile_time())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::compile_time()
        }
    }

    /// Every feature either value claims.
    #[cfg(target_arch = "x86_64")]
    fn union(self, other: Self) -> Self {
        CpuFeatures {
            bits: self.bits | other.bits,
        }
    }

    /// Features detected at run time by the host layer.
    ///
    /// # Safety
    ///
    /// The CPU this process runs on must have every feature in `features`,
    /// and the operating system must preserve the registers they use (for
    /// AVX and AVX-512: the XSAVE state the OS enables, as `xgetbv` reports).
    /// Kernels built from these features execute those instructions.
    pub unsafe fn assume(features: &[CpuFeature]) -> Self {
        CpuFeatures {
            bits: features.iter().fold(0, |b, f| b | f.bit()),
        }
    }

    /// Whether the value claims `feature`.
    pub fn has(&self, feature: CpuFeature) -> bool {
        self.bits & feature.bit() != 0
    }

    /// These features without `feature` (always safe: claiming less).
    pub fn without(self, feature: CpuFeature) -> Self {
        CpuFeatures {
            bits: self.bits & !feature.bit(),
        }
    }

    /// Whether `path` can run: the build targets its architecture and the
    /// CPU has its features.
    pub fn supports(&self, path: KernelPath) -> bool {
        path.arch_is_built() && path.requires().iter().all(|f| self.has(*f))
    }

    /// The fastest supported path.
    pub fn best_path(&self) -> KernelPath {
        [
            KernelPath::NeonI8mm,
            KernelPath::NeonDotprod,
            KernelPath::Neon,
            KernelPath::Avx512Vnni,
            KernelPath::AvxVnni,
            KernelPath::Avx2,
        ]
        .into_iter()
        .find(|p| self.supports(*p))
        .unwrap_or(KernelPath::Scalar)
    }
}

/// `cpuid` and `xgetbv`: which of the x86 features the CPU has and the OS
/// enables.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `cpuid` is a safe function in newer Rust only.
fn x86_detect() -> impl Fn(CpuFeature) -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    // SAFETY: `cpuid` exists on every x86_64 CPU; leaf 7 is read only when
    // leaf 0 says it exists.
    let (max_leaf, l1) = unsafe { (__cpuid(0).eax, __cpuid(1)) };
    let bit = |r: u32, n: u32| r & (1 << n) != 0;
    let osxsave = bit(l1.ecx, 27);
    // SAFETY: `xgetbv` is available when CPUID.1:ECX.OSXSAVE is set.
    let xcr0 = if osxsave { unsafe { _xgetbv(0) } } else { 0 };
    // AVX needs the XMM and YMM state saved; AVX-512 also the opmask and
    // both halves of the ZMM state.
    let os_avx = xcr0 & 0b110 == 0b110;
    let os_avx512 = os_avx && xcr0 & 0b1110_0000 == 0b1110_0000;
    let (l7, l7_1) = if max_leaf >= 7 {
        // SAFETY: leaf 7 exists (checked above).
        unsafe { (__cpuid_count(7, 0), __cpuid_count(7, 1)) }
    } else {
        (__cpuid_zero(), __cpuid_zero())
    };
    let avx = os_avx && bit(l1.ecx, 28);
    move |f| match f {
        CpuFeature::Avx2 => avx && bit(l7.ebx, 5),
        CpuFeature::Fma => avx && bit(l1.ecx, 12),
        CpuFeature::F16c => avx && bit(l1.ecx, 29),
        CpuFeature::AvxVnni => avx && bit(l7_1.eax, 4),
        CpuFeature::Avx512f => os_avx512 && bit(l7.ebx, 16),
        CpuFeature::Avx512bw => os_avx512 && bit(l7.ebx, 30),
        CpuFeature::Avx512vl => os_avx512 && bit(l7.ebx, 31),
        CpuFeature::Avx512vnni => os_avx512 && bit(l7.ecx, 11),
        CpuFeature::Neon | CpuFeature::Dotprod | CpuFeature::I8mm => false,
    }
}

/// An all-zero `cpuid` result.
#[cfg(target_arch = "x86_64")]
fn __cpuid_zero() -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::CpuidResult {
        eax: 0,
        ebx: 0,
        ecx: 0,
        edx: 0,
    }
}

/// The kernel bodies chosen for this CPU: every operation of the engine's
/// hot loop, with lengths checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    /// Invariant: the running CPU supports `path` (see [`Kernels::new`]).
    path: KernelPath,
}

impl Kernels {
    /// The best path `features` allow, or `force` if given.
    ///
    /// Forcing a path the features (or the build's architecture) lack is an
    /// error, never undefined behaviour.
    pub fn new(features: &CpuFeatures, force: Option<KernelPath>) -> Result<Kernels> {
        let path = force.unwrap_or_else(|| features.best_path());
        if !features.supports(path) {
            return Err(Error::InvalidArgument {
                what: match path {
                    KernelPath::Scalar => "kernel path scalar is not supported",
                    KernelPath::Avx2 => {
                        "kernel path avx2 needs an x86_64 build and a CPU with AVX2, FMA and F16C"
                    }
                    KernelPath::AvxVnni => {
                        "kernel path avx-vnni needs an x86_64 build and a CPU with AVX2, FMA, F16C and AVX-VNNI"
                    }
                    KernelPath::Avx512Vnni => {
                        "kernel path avx512-vnni needs an x86_64 build and a CPU with AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI"
                    }
                    KernelPath::Neon => "kernel path neon needs an aarch64 build and NEON",
                    KernelPath::NeonDotprod => {
                        "kernel path neon-dotprod needs an aarch64 build and a CPU with dotprod"
                    }
                    KernelPath::NeonI8mm => {
                        "kernel path neon-i8mm needs an aarch64 build and a CPU with dotprod and i8mm"
                    }
                },
            });
        }
        Ok(Kernels { path })
    }

    /// The portable reference path.
    pub fn scalar() -> Kernels {
        Kernels {
            path: KernelPath::Scalar,
        }
    }

    /// The chosen path.
    pub fn path(&self) -> KernelPath {
        self.path
    }
}

/// What a weight type's matmul wants its activations as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActFormat {
    /// Plain f32 rows (for F32, F16 and BF16 weights).
    F32,
    /// 8-bit blocks of 32 with a scale, a scaled sum and an exact sum (for
    /// Q8_0, Q4_0 and Q4_1 weights, plain or in panels).
    Q8,
}

/// The activation format `weight`'s matmul reads: the integer formats take
/// [`ActFormat::Q8`], F32, F16 and BF16 take [`ActFormat::F32`]. Other
/// types have no matmul: an error.
pub fn act_format(weight: GgmlType) -> Result<ActFormat> {
    if matmul::int_kind(weight).is_some() {
        return Ok(ActFormat::Q8);
    }
    match weight {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Ok(ActFormat::F32),
        _ => Err(Error::InvalidArgument {
            what: "no matmul kernel for this weight type",
        }),
    }
}

/// Bytes of `rows` activation rows of `cols` values quantized as `fmt`
/// (0 for [`ActFormat::F32`], which is read from the f32 rows directly).
/// `None` if `cols` is not a multiple of 32 for a quantized format, or the
/// size overflows.
pub fn act_bytes(fmt: ActFormat, rows: usize, cols: usize) -> Option<usize> {
    match fmt {
        ActFormat::F32 => Some(0),
        ActFormat::Q8 => rows.checked_mul(act::row_bytes(cols)?),
    }
}

/// A weight matrix read in place: `rows` output features, each a row of
/// `cols` values of `ty` at byte offset `n * row_bytes` of `data`.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// The rows, back to back (any alignment).
    pub data: &'a [u8],
    /// Element type.
    pub ty: GgmlType,
    /// Output features (GGUF `ne[1]`).
    pub rows: usize,
    /// Values per row (GGUF `ne[0]`).
    pub cols: usize,
}

impl Matrix<'_> {
    /// Row `n` as f32 (`out`: `cols` values), whatever the layout: the
    /// embedding lookup of a token.
    pub fn dequantize_row(&self, n: usize, out: &mut [f32]) -> Result<()> {
        if out.len() != self.cols || n >= self.rows {
            return Err(bad("dequantize_row: row out of range or out.len() != cols"));
        }
        let Some((kind, WeightLayout::Panel16)) = matmul::int_kind(self.ty) else {
            let row_bytes = crate::quant::row_bytes(self.ty, self.cols)?;
            let start = n
                .checked_mul(row_bytes)
                .ok_or(Error::Overflow { what: "row offset" })?;
            let src = self
                .data
                .get(start..start.saturating_add(row_bytes))
                .ok_or(bad("dequantize_row: row outside the matrix data"))?;
            return crate::quant::dequantize_row(self.ty, src, out);
        };
        let nb = self.cols / crate::quant::QK;
        let mut block = [0u8; 34];
        let block = block.get_mut(..kind.block_bytes()).unwrap_or(&mut []);
        for (b, chunk) in out.chunks_exact_mut(crate::quant::QK).enumerate() {
            if !layout::unpack_block(kind, self.data, nb, n, b, block) {
                return Err(bad("dequantize_row: block outside the matrix data"));
            }
            crate::quant::dequantize_row(self.ty.plain(), block, chunk)?;
        }
        Ok(())
    }
}

/// Rewrites a plain matrix of `rows` x `cols` values of `ty` (`plain`) in
/// the 16-row panel layout ([`WeightLayout::Panel16`]) into `out` (the same
/// length) and returns the panel type. An error if `ty` has no panel form
/// or `rows` is not a multiple of 16.
pub fn to_panel_layout(
    ty: GgmlType,
    plain: &[u8],
    rows: usize,
    cols: usize,
    out: &mut [u8],
) -> Result<GgmlType> {
    let (panel_ty, Some((kind, WeightLayout::Plain))) = (ty.panel16(), matmul::int_kind(ty)) else {
        return Err(bad("to_panel_layout: the type has no panel layout"));
    };
    let panel_ty = panel_ty.ok_or(bad("to_panel_layout: the type has no panel layout"))?;
    if !cols.is_multiple_of(crate::quant::QK)
        || !layout::to_panels(kind, plain, rows, cols / crate::quant::QK, out)
    {
        return Err(bad(
            "to_panel_layout: rows not a multiple of 16, or lengths do not match the shape",
        ));
    }
    Ok(panel_ty)
}

/// Activations for [`Kernels::matmul`]: `rows` batch rows of `cols` values.
#[derive(Clone, Copy, Debug)]
pub struct Act<'a> {
    /// `rows * cols` f32, row-major; read when `fmt` is [`ActFormat::F32`]
    /// (may be empty otherwise).
    pub x: &'a [f32],
    /// The output of [`Kernels::quantize_act`] for the same rows; read when
    /// `fmt` is quantized (may be empty otherwise).
    pub q: &'a [u8],
    /// Which of the two is read; must be `act_format(weight type)`.
    pub fmt: ActFormat,
    /// Batch rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
}

/// Element type of cached keys and values (defined with the KV cache).
pub use crate::kv::KvType;

const fn bad(what: &'static str) -> Error {
    Error::InvalidArgument { what }
}

/// The running state of one query head's online softmax
/// ([`Kernels::kv_attend`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxState {
    /// The largest score seen so far (`-inf` before the first key).
    pub max: f32,
    /// The sum over the keys seen of `exp(score - max)`.
    pub sum: f32,
}

impl SoftmaxState {
    /// The state before any key: `max = -inf`, `sum = 0`.
    pub const fn new() -> Self {
        Self {
            max: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }

    /// `acc[d] *= 1 / sum` (0 when no key was seen): the attention output,
    /// multiplied by the reciprocal as ggml does.
    pub fn normalize_in_place(&self, acc: &mut [f32]) {
        let inv = if self.sum == 0.0 { 0.0 } else { 1.0 / self.sum };
        for a in acc {
            *a *= inv;
        }
    }
}

impl Default for SoftmaxState {
    fn default() -> Self {
        Self::new()
    }
}

/// `n` rows of `row_bytes` at `stride` fit in `len` bytes.
fn rows_fit(n: usize, row_bytes: usize, stride: usize, len: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    if stride < row_bytes {
        return Err(bad("KV stride is smaller than a row"));
    }
    let end = (n - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(row_bytes))
        .ok_or(Error::Overflow { what: "KV rows" })?;
    if end > len {
        return Err(bad("KV rows extend past the end of the cache bytes"));
    }
    Ok(())
}

impl Kernels {
    /// Quantizes the rows of `x` (each `cols` values) as `fmt` into `out`,
    /// which must be exactly `act_bytes(fmt, x.len() / cols, cols)` bytes.
    ///
    /// Per 32-value block, as ggml's AVX2 `quantize_row_q8_0` / `_q8_1`:
    /// `q = round_half_even(x * (127 / amax))` (one f32 multiply), the scale
    /// `amax / 127` and the sum `(amax / 127) * sum(q)` rounded to f16. All
    /// paths write identical bytes for finite inputs. Nothing to do (and
    /// `out` must be empty) for [`ActFormat::F32`].
    pub fn quantize_act(
        &self,
        fmt: ActFormat,
        x: &[f32],
        cols: usize,
        out: &mut [u8],
    ) -> Result<()> {
        if cols == 0 || !x.len().is_multiple_of(cols) {
            return Err(bad(
                "quantize_act: x.len() is not a multiple of cols (or cols is 0)",
            ));
        }
        let rows = x.len() / cols;
        let need =
            act_bytes(fmt, rows, cols).ok_or(bad("quantize_act: cols is not a multiple of 32"))?;
        if out.len() != need {
            return Err(bad("quantize_act: out.len() != act_bytes(fmt, rows, cols)"));
        }
        if fmt == ActFormat::F32 || rows == 0 {
            return Ok(());
        }
        let row_bytes = need / rows;
        for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
            self.with_isa(|isa| isa.quantize_act_row(xr, or));
        }
        Ok(())
    }

    /// `y[r * w.rows + n] = sum_k W[n][k] * x[r][k]` for every batch row `r`
    /// and output feature `n`.
    ///
    /// Checks, each an error: `x.fmt == act_format(w.ty)`, `x.cols ==
    /// w.cols`, `w.data.len() == w.rows * row bytes`, the activation
    /// buffer exactly `x.rows` rows (`x.x` for F32, `x.q` of
    /// [`act_bytes`] otherwise), `y.len() == x.rows * w.rows`. Runs
    /// `par.threads()` tasks, each owning a contiguous range of `n`; the
    /// result does not depend on the thread count. An error is also
    /// returned if `par` does not run every task.
    pub fn matmul(&self, par: &dyn Parallel, w: &Matrix, x: &Act, y: &mut [f32]) -> Result<()> {
        let fmt = act_format(w.ty)?;
        if x.fmt != fmt {
            return Err(bad(
                "matmul: activation format does not match the weight type",
            ));
        }
        if x.cols != w.cols {
            return Err(bad("matmul: activation and weight column counts differ"));
        }
        let row_bytes =
            w.ty.row_bytes(w.cols as u64)
                .and_then(|b| usize::try_from(b).ok())
                .ok_or(bad("matmul: weight row is not a whole number of blocks"))?;
        if Some(w.data.len()) != w.rows.checked_mul(row_bytes) {
            return Err(bad("matmul: weight data length != rows * row bytes"));
        }
        if !w.ty.rows_are_contiguous() && !w.rows.is_multiple_of(layout::PANEL_ROWS) {
            return Err(bad(
                "matmul: a panel-layout matrix needs a multiple of 16 rows",
            ));
        }
        match fmt {
            ActFormat::F32 => {
                if Some(x.x.len()) != x.rows.checked_mul(x.cols) {
                    return Err(bad("matmul: x.x.len() != rows * cols"));
                }
            }
            _ => {
                if Some(x.q.len()) != act_bytes(fmt, x.rows, x.cols) {
                    return Err(bad("matmul: x.q.len() != act_bytes(fmt, rows, cols)"));
                }
            }
        }
        if Some(y.len()) != x.rows.checked_mul(w.rows) {
            return Err(bad("matmul: y.len() != x.rows * w.rows"));
        }
        if y.is_empty() {
            return Ok(());
        }
        let job = matmul::Job::new(w, x, row_bytes);
        self.with_isa(|isa| matmul::run(isa, par, &job, y))
    }

    /// `out[t] = dot(q, K_t)` for `t` in `0..out.len()`, where `K_t` is the
    /// row of `q.len()` values of `ty` at byte offset `t * stride` of `k`.
    ///
    /// Each dot is the canonical float dot product (module docs), so every
    /// path gives identical results.
    pub fn kv_scores(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        stride: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let row = ty.row_bytes(q.len()).ok_or(bad(
            "kv_scores: head dimension is not a whole number of blocks",
        ))?;
        rows_fit(out.len(), row, stride, k.len())?;
        self.with_isa(|isa| isa.kv_scores(ty, q, k, stride, out));
        Ok(())
    }

    /// Streams the keys of one KV page into one query head's attention:
    /// llama.cpp's one-row flash attention (`flash_attn_ext`), key by key.
    ///
    /// `scores[t]` is the scaled score of key `t`, whose value row `V_t`
    /// (`acc.len()` values of `ty`) sits at byte offset `t * stride` of `v`.
    /// `state` and `acc` carry the running maximum, the running sum and the
    /// unnormalized output across pages; start with [`SoftmaxState::new`]
    /// and zeros, and finish with [`SoftmaxState::normalize_in_place`]. For each key,
    /// in order:
    ///
    /// ```text
    /// if s > max:  ms = expf(max - s); max = s; acc = acc * ms; vs = 1
    /// else:        ms = 1;             vs = expf(s - max)
    /// acc = fma(V_t, vs, acc)                        (element-wise)
    /// sum = fma(sum, ms, vs)
    /// ```
    ///
    /// With an F16 cache `acc` holds f16 values: both `acc` updates round
    /// to f16, as ggml's F16 accumulator does. Every path computes the same
    /// bits (`expf` is [`crate::math::expf`] on every path).
    pub fn kv_attend(
        &self,
        ty: KvType,
        scores: &[f32],
        v: &[u8],
        stride: usize,
        state: &mut SoftmaxState,
        acc: &mut [f32],
    ) -> Result<()> {
        let row = ty.row_bytes(acc.len()).ok_or(bad(
            "kv_attend: head dimension is not a whole number of blocks",
        ))?;
        rows_fit(scores.len(), row, stride, v.len())?;
        self.with_isa(|isa| matmul::attend_keys(isa, ty, scores, v, stride, row, state, acc));
        Ok(())
    }

    /// One page of attention for one query head, fused: the scaled scores
    /// `scores[t] = scale * dot(q, K_t)` of the `scores.len()` keys `K_t`
    /// (rows of `q.len()` values of `ty` at byte offset `t * stride` of
    /// `k`), then [`Kernels::kv_attend`] over the value rows in `v` (same
    /// stride). Exactly the bits of [`Kernels::kv_scores`], a multiply by
    /// `scale`, and [`Kernels::kv_attend`]; `scores` is scratch whose
    /// contents afterwards are the scaled scores.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_page(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        v: &[u8],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
        state: &mut SoftmaxState,
        acc: &mut [f32],
    ) -> Result<()> {
        let row = ty.row_bytes(q.len()).ok_or(bad(
            "attend_page: head dimension is not a whole number of blocks",
        ))?;
        if acc.len() != q.len() {
            return Err(bad("attend_page: acc.len() != q.len()"));
        }
        rows_fit(scores.len(), row, stride, k.len())?;
        rows_fit(scores.len(), row, stride, v.len())?;
        self.with_isa(|isa| isa.attend_page(ty, q, k, v, stride, scale, scores, state, acc));
        Ok(())
    }

    /// [`Kernels::attend_page`] for the `g = states.len()` query heads that
    /// share one KV head, at once: `q` holds their queries (`g * dim`
    /// values), `acc` their accumulators (`g * dim`), `scores` is scratch
    /// (`g * n` for `n` keys: head `h`'s scaled scores end up at `h * n..`).
    /// Every head gets exactly the bits [`Kernels::attend_page`] gives it
    /// alone; the group shares each key and value row's loads.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_group(
        &self,
        ty: KvType,
        q: &[f32],
        k: &[u8],
        v: &[u8],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
        states: &mut [SoftmaxState],
        acc: &mut [f32],
    ) -> Result<()> {
        let g = states.len();
        if g == 0 || !q.len().is_multiple_of(g) || acc.len() != q.len() {
            return Err(bad(
                "attend_group: q and acc must hold the same whole number of heads",
            ));
        }
        if !scores.len().is_multiple_of(g) {
            return Err(bad("attend_group: scores must hold n keys per head"));
        }
        let (dim, n) = (q.len() / g, scores.len() / g);
        let row = ty.row_bytes(dim).ok_or(bad(
            "attend_group: head dimension is not a whole number of blocks",
        ))?;
        rows_fit(n, row, stride, k.len())?;
        rows_fit(n, row, stride, v.len())?;
        self.with_isa(|isa| isa.attend_group(ty, q, k, v, stride, scale, scores, states, acc));
        Ok(())
    }

    /// Asks the CPU to start loading `data` into its caches (a hint: no
    /// effect on any result; nothing on paths without a prefetch
    /// instruction).
    #[inline]
    pub fn prefetch(&self, data: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if self.path != KernelPath::Scalar {
            for line in data.chunks(64) {
                // SAFETY: SSE is part of x86_64; a prefetch never faults.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = data;
    }

    /// Writes `x` as one row of `ty` into `out` (exactly `ty.row_bytes(x.len())`
    /// bytes): F16 rounds to nearest even (like F16C), Q8_0 follows ggml's
    /// `quantize_row_q8_0_ref`, F32 is copied.
    pub fn kv_store(&self, ty: KvType, x: &[f32], out: &mut [u8]) -> Result<()> {
        let row = ty
            .row_bytes(x.len())
            .ok_or(bad("kv_store: row is not a whole number of blocks"))?;
        if out.len() != row {
            return Err(bad("kv_store: out.len() != row bytes"));
        }
        match ty {
            KvType::F16 => self.with_isa(|isa| isa.kv_store_f16(x, out)),
            KvType::Q8_0 => crate::quant::quantize_row(GgmlType::Q8_0, x, out)?,
            KvType::F32 => crate::quant::quantize_row(GgmlType::F32, x, out)?,
        }
        Ok(())
    }

    /// The SwiGLU gate of the feed-forward block, in place:
    /// `gate[i] = silu(gate[i]) * up[i]` with ggml's vector `expf`, bit for
    /// bit as [`crate::model::ops::swiglu`] on every path. The slices must
    /// have the same length.
    pub fn swiglu(&self, gate: &mut [f32], up: &[f32]) -> Result<()> {
        if gate.len() != up.len() {
            return Err(bad("swiglu: gate and up lengths differ"));
        }
        self.with_isa(|isa| isa.swiglu(gate, up));
        Ok(())
    }

    /// Runs `f` with the instruction-set token of this path.
    fn with_isa<R>(&self, f: impl FnOnce(&dyn matmul::Isa) -> R) -> R {
        match self.path {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => {
                // SAFETY: `Kernels` only holds `Avx2` when `CpuFeatures`
                // (whose constructors vouch for the CPU) supports it.
                let isa = unsafe { x86_int::X86::<x86_int::Avx2Dot>::new() };
                f(&isa)
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::AvxVnni => {
                // SAFETY: as above, the CPU has AVX2, FMA, F16C and AVX-VNNI.
                let isa = unsafe { x86_int::X86::<x86_int::AvxVnniDot>::new() };
                f(&isa)
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512Vnni => {
                // SAFETY: as above, the CPU has AVX2, FMA, F16C and AVX-512
                // F/BW/VL/VNNI.
                let isa = unsafe { x86_int::X86::<x86_int::Avx512Dot>::new() };
                f(&isa)
            }
            #[cfg(target_arch = "aarch64")]
            KernelPath::Neon => {
                // SAFETY: as above, the CPU has NEON.
                let isa = unsafe { aarch64_neon::Neon::<false>::new() };
                f(&isa)
            }
            #[cfg(target_arch = "aarch64")]
            KernelPath::NeonDotprod => {
                // SAFETY: as above, the CPU has NEON and dotprod.
                let isa = unsafe { aarch64_neon::Neon::<true>::new() };
                f(&isa)
            }
            #[cfg(target_arch = "aarch64")]
            KernelPath::NeonI8mm => {
                // SAFETY: as above, the CPU has NEON, dotprod and i8mm.
                let isa = unsafe { aarch64_neon::NeonI8mm::new() };
                f(&isa)
            }
            _ => f(&scalar::Scalar),
        }
    }
}
