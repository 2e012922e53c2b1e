//! `sinf`, `cosf` and `expf` that compute the bits glibc's do.
//!
//! llama.cpp calls the C library's `sinf` / `cosf` for RoPE and `expf` in
//! its attention softmax. SmolLM2 amplifies a last-bit difference in any of
//! them into visible logit differences (docs/numerics.md), so arenalm
//! computes what glibc computes (since glibc 2.28 these are Arm's optimized
//! routines): a range reduction, then a polynomial in double precision,
//! rounded once to f32. The `libm` crate's (musl's) versions are as
//! accurate but round differently for a few arguments in a hundred.
//!
//! On x86-64 CPUs with FMA, glibc runs these functions compiled with FMA
//! contraction (its `-fma` variants), so each `a * b + c` below is one
//! fused multiply-add, as there. The functions take the fused multiply-add
//! (`a * b + c`, rounded once) as a parameter: the kernels pass the CPU's
//! instruction, [`sinf`],
//! [`cosf`] and [`expf`] use `libm::fma` (exact, in software).

/// `sin(x)` as glibc's `sinf` computes it on an x86-64 CPU with FMA.
pub fn sinf(x: f32) -> f32 {
    sinf_with(x, libm::fma)
}

/// `cos(x)` as glibc's `cosf` computes it on an x86-64 CPU with FMA.
pub fn cosf(x: f32) -> f32 {
    cosf_with(x, libm::fma)
}

/// `e^x` as glibc's `expf` computes it on an x86-64 CPU with FMA.
pub fn expf(x: f32) -> f32 {
    expf_with(x, libm::fma)
}

/// Polynomial coefficients for sine and cosine on [-pi/4, pi/4]; the
/// second table negates the cosine polynomial (quadrants 2 and 3).
struct SinCos {
    c: [f64; 5],
    s: [f64; 3],
}

const TABLE: [SinCos; 2] = [
    SinCos {
        c: [
            1.0,
            f64::from_bits(0xbfdf_ffff_fd0c_621c),
            f64::from_bits(0x3fa5_5553_e106_8f19),
            f64::from_bits(0xbf56_c087_e89a_359d),
            f64::from_bits(0x3ef9_9343_027b_f8c3),
        ],
        s: [
            f64::from_bits(0xbfc5_5554_5995_a603),
            f64::from_bits(0x3f81_1076_0523_0bc4),
            f64::from_bits(0xbf29_94eb_3774_cf24),
        ],
    },
    SinCos {
        c: [
            -1.0,
            f64::from_bits(0x3fdf_ffff_fd0c_621c),
            f64::from_bits(0xbfa5_5553_e106_8f19),
            f64::from_bits(0x3f56_c087_e89a_359d),
            f64::from_bits(0xbef9_9343_027b_f8c3),
        ],
        s: [
            f64::from_bits(0xbfc5_5554_5995_a603),
            f64::from_bits(0x3f81_1076_0523_0bc4),
            f64::from_bits(0xbf29_94eb_3774_cf24),
        ],
    },
];

/// Sign of the sine in quadrants 0..3.
const SIGN: [f64; 4] = [1.0, -1.0, -1.0, 1.0];
/// 2/pi * 2^24: the quadrant lands in bits 24..31 of the product.
const HPI_INV: f64 = f64::from_bits(0x4164_5f30_6dc9_c883);
/// pi/2.
const HPI: f64 = f64::from_bits(0x3ff9_21fb_5444_2d18);
/// 2 pi * 2^-64.
const PI63: f64 = f64::from_bits(0x3c19_21fb_5444_2d18);
/// 4/pi to 192 bits; entry `i` holds bits `8i .. 8i + 32`.
const INV_PIO4: [u32; 24] = [
    0xa2, 0xa2f9, 0xa2f983, 0xa2f9836e, 0xf9836e4e, 0x836e4e44, 0x6e4e4415, 0x4e441529, 0x441529fc,
    0x1529fc27, 0x29fc2757, 0xfc2757d1, 0x2757d1f5, 0x57d1f534, 0xd1f534dd, 0xf534ddc0, 0x34ddc0db,
    0xddc0db62, 0xc0db6295, 0xdb629599, 0x6295993c, 0x95993c43, 0x993c4390, 0x3c439041,
];

/// The top 12 bits of `x` without the sign: exponent and 4 mantissa bits.
fn abstop12(x: f32) -> u32 {
    (x.to_bits() >> 20) & 0x7ff
}

// abstop12 of the thresholds: pi/4 (as f32), 2^-12, 120, infinity.
const TOP_PIO4: u32 = 0x3f4;
const TOP_TINY: u32 = 0x398;
const TOP_120: u32 = 0x42f;
const TOP_INF: u32 = 0x7f8;

/// Sine (even `n`) or cosine (odd `n`) polynomial of the reduced `x`,
/// `x2 = x * x`.
#[inline(always)]
fn sin_poly<F: Fn(f64, f64, f64) -> f64 + Copy>(
    x: f64,
    x2: f64,
    p: &SinCos,
    n: u32,
    fma: F,
) -> f32 {
    if n & 1 == 0 {
        let x3 = x * x2;
        let s1 = fma(x2, p.s[2], p.s[1]);
        let x7 = x3 * x2;
        let s = fma(x3, p.s[0], x);
        fma(x7, s1, s) as f32
    } else {
        let x4 = x2 * x2;
        let c2 = fma(x2, p.c[4], p.c[3]);
        let c1 = fma(x2, p.c[1], p.c[0]);
        let x6 = x4 * x2;
        let c = fma(x4, p.c[2], c1);
        fma(x6, c2, c) as f32
    }
}

/// `x` minus the nearest multiple `n` of pi/2, for |x| < 120, and `n`.
#[inline(always)]
fn reduce_fast<F: Fn(f64, f64, f64) -> f64 + Copy>(x: f64, fma: F) -> (f64, u32) {
    let r = x * HPI_INV;
    // C's truncating conversion; |r| < 2^30 here.
    let n = ((r as i32).wrapping_add(0x80_0000)) >> 24;
    (fma(-f64::from(n), HPI, x), n as u32)
}

/// The same for any finite |x| >= 120 (bits `xi`, sign ignored), exactly
/// in fixed point with 4/pi to 192 bits.
fn reduce_large(xi: u32) -> (f64, u32) {
    let i = ((xi >> 26) & 15) as usize;
    let shift = (xi >> 23) & 7;
    let m = ((xi & 0xff_ffff) | 0x80_0000) << shift;
    let (a0, a4, a8) = (INV_PIO4[i], INV_PIO4[i + 4], INV_PIO4[i + 8]);
    let res0 = u64::from(m.wrapping_mul(a0));
    let res1 = u64::from(m) * u64::from(a4);
    let res2 = u64::from(m) * u64::from(a8);
    let res0 = ((res2 >> 32) | (res0 << 32)).wrapping_add(res1);
    let n = res0.wrapping_add(1 << 61) >> 62;
    let res0 = res0.wrapping_sub(n << 62);
    (res0 as i64 as f64 * PI63, n as u32)
}

/// [`sinf`] (`cos == false`) and [`cosf`] with a given fused multiply-add.
#[inline(always)]
fn sincos_with<F: Fn(f64, f64, f64) -> f64 + Copy>(y: f32, cos: bool, fma: F) -> f32 {
    let x = f64::from(y);
    let top = abstop12(y);
    let flip = u32::from(cos);
    if top < TOP_PIO4 {
        if top < TOP_TINY {
            return if cos { 1.0 } else { y };
        }
        sin_poly(x, x * x, &TABLE[0], flip, fma)
    } else if top < TOP_120 {
        let (r, n) = reduce_fast(x, fma);
        let p = &TABLE[((n >> 1) & 1) as usize];
        let r = r * SIGN[(n & 3) as usize];
        sin_poly(r, r * r, p, n ^ flip, fma)
    } else if top < TOP_INF {
        let xi = y.to_bits();
        let (r, n) = reduce_large(xi);
        let q = n.wrapping_add(xi >> 31);
        let p = &TABLE[((q >> 1) & 1) as usize];
        let r = r * SIGN[(q & 3) as usize];
        sin_poly(r, r * r, p, n ^ flip, fma)
    } else {
        f32::NAN // infinity or NaN: invalid
    }
}

/// [`sinf`] with a given fused multiply-add.
#[inline(always)]
pub fn sinf_with<F: Fn(f64, f64, f64) -> f64 + Copy>(x: f32, fma: F) -> f32 {
    sincos_with(x, false, fma)
}

/// [`cosf`] with a given fused multiply-add.
#[inline(always)]
pub fn cosf_with<F: Fn(f64, f64, f64) -> f64 + Copy>(x: f32, fma: F) -> f32 {
    sincos_with(x, true, fma)
}

/// `2^(i/32)` as bits, minus `i << 47`: with `k = 32 m + i`,
/// `2^(k/32)` is the double with bits `EXP2_TABLE[i] + (k << 47)`.
pub(crate) const EXP2_TABLE: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// [`expf`] with a given fused multiply-add.
#[inline(always)]
pub fn expf_with<F: Fn(f64, f64, f64) -> f64 + Copy>(x: f32, fma: F) -> f32 {
    let e = &EXPF;
    if expf_is_special(x) {
        // |x| >= 88, or NaN.
        if x == f32::NEG_INFINITY {
            return 0.0;
        }
        if x.is_nan() || x.is_infinite() {
            return x + x;
        }
        if x > f32::from_bits(0x42b1_7217) {
            return f32::INFINITY;
        }
        if x < f32::from_bits(0xc2cf_f1b4) {
            return 0.0;
        }
    }
    let z = e.inv_ln2_n * f64::from(x);
    let kd = z + e.shift;
    let ki = kd.to_bits();
    let kd = kd - e.shift;
    let r = z - kd;
    let t = EXP2_TABLE[(ki % 32) as usize].wrapping_add(ki.wrapping_shl(47));
    let s = f64::from_bits(t);
    let zz = fma(e.c0, r, e.c1);
    let r2 = r * r;
    let y = fma(e.c2, r, 1.0);
    let y = fma(zz, r2, y);
    (y * s) as f32
}

/// The constants of [`expf_with`], shared with the vector versions.
pub(crate) struct ExpfConsts {
    /// `32 / ln 2`.
    pub(crate) inv_ln2_n: f64,
    /// `1.5 * 2^52`: adding it rounds to an integer.
    pub(crate) shift: f64,
    /// The polynomial for `2^(r/32) - 1`.
    pub(crate) c0: f64,
    /// See `c0`.
    pub(crate) c1: f64,
    /// See `c0`.
    pub(crate) c2: f64,
}

/// See [`ExpfConsts`].
pub(crate) const EXPF: ExpfConsts = {
    const N: f64 = 32.0;
    ExpfConsts {
        inv_ln2_n: f64::from_bits(0x3ff7_1547_652b_82fe) * N,
        shift: f64::from_bits(0x4338_0000_0000_0000),
        c0: f64::from_bits(0x3fac_6af8_4b91_2394) / (N * N * N),
        c1: f64::from_bits(0x3fce_bfce_50fa_c4f3) / (N * N),
        c2: f64::from_bits(0x3fe6_2e42_ff0c_52d6) / N,
    }
};

/// Whether [`expf_with`] takes its special-case branch for `x` (`|x| >= 88`,
/// infinities and NaN); everything else follows the table and polynomial.
#[inline(always)]
pub(crate) fn expf_is_special(x: f32) -> bool {
    (x.to_bits() >> 20) & 0x7ff >= 0x42b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardware_fma_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every f32 from `lo` to `hi` (same sign) in steps of `step` bit patterns.
    fn sweep(lo: f32, hi: f32, step: u32, mut f: impl FnMut(f32)) {
        let (a, b) = (
            lo.to_bits().min(hi.to_bits()),
            lo.to_bits().max(hi.to_bits()),
        );
        let mut i = a;
        while i <= b {
            f(f32::from_bits(i));
            i = match i.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
    }

    /// On x86-64 with FMA (where glibc runs its FMA variants, as on the
    /// machine that made llama.cpp's reference outputs) every result equals
    /// glibc's bit for bit, over the ranges arenalm uses: RoPE angles up to
    /// 2^17 and softmax arguments from -110 to 90, plus the special values.
    #[test]
    fn equals_glibc_bit_for_bit() {
        assert!(
            !cfg!(target_arch = "x86_64") || hardware_fma_available(),
            "glibc runs its FMA variants only on CPUs with FMA; this test needs one"
        );
        if !cfg!(all(
            target_arch = "x86_64",
            target_os = "linux",
            target_env = "gnu"
        )) {
            return; // glibc x86-64 is the reference; other C libraries differ.
        }
        // glibc's functions: Rust's `f32::sin` and friends call the C
        // library's `sinf`, `cosf` and `expf`.
        let (gsin, gcos, gexp) = (f32::sin, f32::cos, f32::exp);
        let mut bad = 0u64;
        let mut n = 0u64;
        let mut check = |what: &str, x: f32, ours: f32, theirs: f32| {
            n += 1;
            if ours.to_bits() != theirs.to_bits() && !(ours.is_nan() && theirs.is_nan()) {
                if bad < 10 {
                    std::eprintln!(
                        "{what}({x:e} = {:#010x}): ours {ours:e}, glibc {theirs:e}",
                        x.to_bits()
                    );
                }
                bad += 1;
            }
        };
        for (lo, hi) in [(0.0f32, 131072.0f32), (-0.0, -131072.0)] {
            sweep(lo, hi, 13, |x| {
                check("sinf", x, sinf(x), gsin(x));
                check("cosf", x, cosf(x), gcos(x));
            });
        }
        for (lo, hi) in [(0.0f32, 90.0f32), (-0.0, -110.0)] {
            sweep(lo, hi, 7, |x| check("expf", x, expf(x), gexp(x)));
        }
        for x in [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN,
            1e-40,
            -1e-40,
        ] {
            check("sinf", x, sinf(x), gsin(x));
            check("cosf", x, cosf(x), gcos(x));
            check("expf", x, expf(x), gexp(x));
        }
        assert_eq!(bad, 0, "{bad} of {n} results differ from glibc's");
    }
}
