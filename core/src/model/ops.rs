//! The small element-wise operations of the forward pass, written to match
//! ggml's arithmetic where it matters for agreement with llama.cpp.

use super::hparams::{Hparams, RopeScaling, RopeStyle};
use crate::error::{Error, Result};

/// Reads the f32 at index `i` of little-endian bytes (any alignment);
/// 0 if the bytes end before it (whatever `i`, even near `usize::MAX`).
#[inline]
pub fn f32_at(bytes: &[u8], i: usize) -> f32 {
    let Some(start) = i.checked_mul(4) else {
        return 0.0;
    };
    match bytes.get(start..).and_then(|rest| rest.first_chunk::<4>()) {
        Some(b) => f32::from_le_bytes(*b),
        None => 0.0,
    }
}

/// `out = x / sqrt(mean(x^2) + eps) * w`, with the sum of squares in f64
/// as ggml accumulates it. `w` is an F32 tensor's bytes.
pub fn rmsnorm(x: &[f32], w: &[u8], eps: f32, out: &mut [f32]) -> Result<()> {
    if out.len() != x.len() || Some(w.len()) != x.len().checked_mul(4) || x.is_empty() {
        return Err(Error::InvalidArgument {
            what: "rmsnorm lengths",
        });
    }
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        *o = (v * scale) * f32_at(w, i);
    }
    Ok(())
}

/// Per-model RoPE constants.
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    /// Rotated dimensions per head.
    pub dims: usize,
    /// `base^(-2 / dims)`: the ratio between consecutive pair frequencies.
    pub theta_scale: f32,
    /// Position multiplier (1 / linear scaling factor).
    pub freq_scale: f32,
    /// Pairing.
    pub style: RopeStyle,
}

impl Rope {
    /// RoPE constants of `hp`.
    pub fn new(hp: &Hparams) -> Result<Rope> {
        let freq_scale = match hp.rope_scaling {
            RopeScaling::None => 1.0,
            RopeScaling::Linear { factor } => 1.0 / factor,
            RopeScaling::Yarn { .. } => {
                return Err(crate::error::ModelError::Unsupported {
                    what: "YaRN RoPE scaling",
                }
                .into())
            }
        };
        Ok(Rope {
            dims: hp.rope_dim as usize,
            theta_scale: libm::powf(hp.rope_base, -2.0 / hp.rope_dim as f32),
            freq_scale,
            style: hp.arch.rope_style(),
        })
    }

    /// Fills `cos_sin` (`dims` values: `dims/2` cosines then `dims/2` sines)
    /// for position `pos`. Like ggml, the angle of pair `i` is
    /// `pos * theta_scale^i` built by repeated f32 multiplication, divided by
    /// the pair's frequency factor when the model has them.
    pub fn angles(
        &self,
        pos: usize,
        freq_factors: Option<&[u8]>,
        cos_sin: &mut [f32],
    ) -> Result<()> {
        let half = self.dims / 2;
        if cos_sin.len() != self.dims {
            return Err(Error::InvalidArgument {
                what: "rope table length",
            });
        }
        let (cos, sin) = cos_sin.split_at_mut(half);
        let mut theta = pos as f32;
        for i in 0..half {
            let ff = freq_factors.map(|f| f32_at(f, i)).unwrap_or(1.0);
            let angle = self.freq_scale * (theta / ff);
            cos[i] = crate::math::cosf(angle);
            sin[i] = crate::math::sinf(angle);
            theta *= self.theta_scale;
        }
        Ok(())
    }

    /// Rotates every head of `x` (`n_heads` heads of `head_dim`) in place.
    /// A `head_dim` of 0 (no heads), a trailing partial head, or pairs
    /// beyond `cos_sin` or the head are left as they are.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cos_sin: &[f32]) {
        if head_dim == 0 {
            return;
        }
        let half = self.dims / 2;
        let (cos, sin) = cos_sin.split_at(half.min(cos_sin.len()));
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half.min(cos.len()).min(sin.len()) {
                let (a, b) = match self.style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::NeoX => (i, i + half),
                };
                if b >= head.len() {
                    break;
                }
                let (x0, x1) = (head[a], head[b]);
                // ggml's `x0*cos - x1*sin` and `x0*sin + x1*cos`, as GCC
                // contracts them with FMA: the first product fused.
                head[a] = crate::kernels::fmaf(x0, cos[i], -(x1 * sin[i]));
                head[b] = crate::kernels::fmaf(x0, sin[i], x1 * cos[i]);
            }
        }
    }
}

/// `gate = silu(gate) * up`, element-wise: `(g / (1 + exp(-g))) * u` with
/// [`ggml_expf`], rounded step by step as ggml's `ggml_vec_swiglu_f32`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + ggml_expf(-*g)) * u;
    }
}

/// `e^x` as ggml's vector `ggml_v_expf` computes it on AVX2 and NEON (a
/// routine adapted from Arm's optimized routines: at most 1.95 ulp from
/// `e^x`; beyond about 88.38 it gives infinity, below about -103.97 zero).
/// ggml computes SiLU with it, and the model's activations at a sequence's
/// first positions are sensitive enough that a differently rounded `exp`
/// shows in the logits, so arenalm computes the same bits, lane by lane.
pub fn ggml_expf(x: f32) -> f32 {
    use crate::kernels::fmaf;
    let c = |bits: u32| f32::from_bits(bits);
    let shift = c(0x4b40_0000); // 0x1.8p23: rounds x / ln 2 to an integer
    let z = fmaf(x, c(0x3fb8_aa3b), shift); // 0x1.715476p+0 = 1 / ln 2
    let n = z - shift;
    // b = x - n * ln 2, ln 2 split as 0x1.62e4p-1 + 0x1.7f7d1cp-20.
    let b = fmaf(-n, c(0x35bf_be8e), fmaf(-n, c(0x3f31_7200), x));
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits())); // 2^n
    let u = b * b;
    let j = fmaf(
        fmaf(
            fmaf(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            fmaf(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        c(0x3f7f_fff6) * b,
    ); // e^b - 1
    if n.abs() <= 126.0 || n.is_nan() {
        return fmaf(k, j, k);
    }
    // 2^n out of f32's normal exponent range: scale in two steps.
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        fmaf(s2, j, s2) * s1
    }
}

/// `x += y`, element-wise.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `x += bias` where `bias` is an F32 tensor's bytes (one row per head set).
pub fn add_bias(x: &mut [f32], bias: &[u8]) {
    for (i, v) in x.iter_mut().enumerate() {
        *v += f32_at(bias, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &[f32]) -> std::vec::Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn rmsnorm_of_3_4_is_scaled_by_one_over_rms() {
        // mean of squares (9 + 16) / 2 = 12.5; scale 1/sqrt(12.5 + eps).
        let mut out = [0.0; 2];
        rmsnorm(&[3.0, 4.0], &bytes(&[1.0, 2.0]), 0.0, &mut out).unwrap();
        let s = 1.0 / 12.5f32.sqrt();
        assert!((out[0] - 3.0 * s).abs() < 1e-6);
        assert!((out[1] - 8.0 * s).abs() < 1e-6);
        assert!(rmsnorm(&[1.0], &bytes(&[1.0, 1.0]), 0.0, &mut [0.0]).is_err());
    }

    fn rope(style: RopeStyle) -> Rope {
        Rope {
            dims: 4,
            theta_scale: libm::powf(10000.0, -2.0 / 4.0),
            freq_scale: 1.0,
            style,
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position_times_frequency() {
        // Pair 0 turns by pos * 1, pair 1 by pos * 10000^(-1/2) = pos / 100.
        let r = rope(RopeStyle::Normal);
        let mut cs = [0.0; 4];
        r.angles(3, None, &mut cs).unwrap();
        assert!((cs[0] - 3f32.cos()).abs() < 1e-6);
        assert!((cs[3] - 0.03f32.sin()).abs() < 1e-6);
        let mut x = [1.0, 0.0, 0.0, 1.0];
        r.apply(&mut x, 4, &cs);
        // (1, 0) -> (cos 3, sin 3); (0, 1) -> (-sin .03, cos .03).
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[1] - 3f32.sin()).abs() < 1e-6);
        assert!((x[2] + 0.03f32.sin()).abs() < 1e-6 && (x[3] - 0.03f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn neox_pairs_halves() {
        let r = rope(RopeStyle::NeoX);
        let mut cs = [0.0; 4];
        r.angles(1, None, &mut cs).unwrap();
        let mut x = [1.0, 0.0, 0.0, 0.0];
        r.apply(&mut x, 4, &cs);
        // Element 0 pairs with element 2.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(x[1], 0.0);
    }

    #[test]
    fn degenerate_arguments_are_handled_without_panics() {
        // A zero head size rotates nothing (chunks of 0 would panic).
        let r = rope(RopeStyle::Normal);
        let mut x = [1.0, 2.0];
        r.apply(&mut x, 0, &[0.5; 4]);
        assert_eq!(x, [1.0, 2.0]);
        // A table shorter than the rotated dims, or a head shorter than a pair.
        r.apply(&mut x, 1, &[]);
        r.apply(&mut x, 2, &[0.0]);
        assert_eq!(x, [1.0, 2.0]);
        // Offsets that overflow read as absent values.
        assert_eq!(f32_at(&[0; 8], usize::MAX), 0.0);
        assert_eq!(f32_at(&[0; 8], usize::MAX / 4 + 1), 0.0);
        assert_eq!(f32_at(&1.5f32.to_le_bytes(), 0), 1.5);
        // Empty and mismatched slices are errors.
        assert!(rmsnorm(&[], &[], 1e-5, &mut []).is_err());
        assert!(rmsnorm(&[1.0], &[0; 4], 1e-5, &mut [0.0, 0.0]).is_err());
        let mut cs = [0.0; 3];
        assert!(r.angles(usize::MAX, None, &mut cs).is_err());
        let mut cs = [0.0; 4];
        r.angles(usize::MAX, Some(&[]), &mut cs).unwrap();
        // Element-wise helpers stop at the shorter slice.
        let mut a = [1.0, 2.0];
        add_assign(&mut a, &[1.0]);
        add_bias(&mut a, &[0u8; 3]);
        swiglu(&mut a, &[]);
        assert_eq!(a, [2.0, 2.0]);
    }

    #[test]
    fn swiglu_matches_definition() {
        let mut g = [0.0, 1.0, -2.0];
        swiglu(&mut g, &[5.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
        assert!((g[2] - (-2.0 / (1.0 + 2f32.exp()))).abs() < 1e-6);
    }
}
