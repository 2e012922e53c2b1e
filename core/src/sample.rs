//! Samplers over a row of logits, and a seeded random generator.
//!
//! The chain follows llama.cpp's default order: repetition penalty, top-k,
//! top-p, min-p, temperature, then a draw from the resulting distribution.
//! A temperature of zero (or below) is greedy decoding. The same seed and
//! the same logits give the same tokens.

use crate::error::{Error, Result, TokenizerError};
use crate::mem::Pod;

/// One sampling candidate: a token id and its (adjusted) logit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Logit, later probability.
    pub value: f32,
}

// SAFETY: repr(C) u32 + f32: no padding, every bit pattern valid.
unsafe impl Pod for Candidate {}

/// Most recent tokens the repetition penalty can look back over.
pub const MAX_PENALTY_WINDOW: usize = 256;

/// Sampling parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerParams {
    /// Temperature; `<= 0` means greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: u32,
    /// Keep the smallest set whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Drop tokens below `min_p` times the most likely one's probability (0 = off).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty considers (at most [`MAX_PENALTY_WINDOW`]).
    pub repeat_last_n: u32,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplerParams {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95,
    /// min-p 0.05, no repetition penalty over the last 64 tokens.
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        }
    }
}

/// A small, fast, seedable generator (SplitMix64 seeding, xoshiro256**).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

/// A sampler: parameters, generator state and recent tokens.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    params: SamplerParams,
    rng: Rng,
    history: [u32; MAX_PENALTY_WINDOW],
    history_len: usize,
    history_next: usize,
}

impl Sampler {
    /// A sampler with `params`; refuses values outside their range.
    pub fn new(params: SamplerParams) -> Result<Sampler> {
        let p = &params;
        let bad = |what| Err(Error::InvalidArgument { what });
        if !p.temperature.is_finite() {
            return bad("temperature must be finite");
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&p.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if !(p.repeat_penalty.is_finite() && p.repeat_penalty > 0.0) {
            return bad("repeat_penalty must be positive");
        }
        Ok(Sampler {
            params,
            rng: Rng::new(params.seed),
            history: [0; MAX_PENALTY_WINDOW],
            history_len: 0,
            history_next: 0,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Records `token` as generated (or as part of the prompt) for the penalty.
    ///
    /// The sampler does not know the vocabulary: an id outside the rows
    /// sampled later makes [`Sampler::sample`] fail (`BadTokenId`) while it
    /// is among the last `repeat_last_n`, so check ids before accepting them
    /// (`alm_engine_accept` refuses them here).
    pub fn accept(&mut self, token: u32) {
        self.history[self.history_next] = token;
        self.history_next = (self.history_next + 1) % MAX_PENALTY_WINDOW;
        self.history_len = (self.history_len + 1).min(MAX_PENALTY_WINDOW);
    }

    /// Forgets the recent tokens and reseeds.
    pub fn reset(&mut self) {
        self.history_len = 0;
        self.history_next = 0;
        self.rng = Rng::new(self.params.seed);
    }

    /// The last `n` accepted tokens (most recent last), up to the window.
    fn recent(&self, n: usize) -> impl Iterator<Item = u32> + '_ {
        let n = n.min(self.history_len);
        let start = (self.history_next + MAX_PENALTY_WINDOW - n) % MAX_PENALTY_WINDOW;
        (0..n).map(move |i| self.history[(start + i) % MAX_PENALTY_WINDOW])
    }

    /// Picks a token from `logits` (one row), using `candidates` (at least
    /// `logits.len()` entries) as working memory. Does not call
    /// [`Sampler::accept`].
    pub fn sample(&mut self, logits: &[f32], candidates: &mut [Candidate]) -> Result<u32> {
        let n = logits.len();
        if n == 0 || candidates.len() < n || n > u32::MAX as usize {
            return Err(Error::InvalidArgument {
                what: "sampler needs a non-empty logits row and as many candidates",
            });
        }
        let cands = &mut candidates[..n];
        for (i, (c, &l)) in cands.iter_mut().zip(logits).enumerate() {
            *c = Candidate {
                id: i as u32,
                value: if l.is_nan() { f32::NEG_INFINITY } else { l },
            };
        }
        self.apply_penalty(cands)?;
        let p = self.params;
        if p.temperature <= 0.0 {
            return Ok(argmax(cands));
        }
        // Top-k: the k best, sorted by logit, best first.
        let k = if p.top_k == 0 {
            n
        } else {
            (p.top_k as usize).min(n)
        };
        let by_value_desc =
            |a: &Candidate, b: &Candidate| b.value.total_cmp(&a.value).then(a.id.cmp(&b.id));
        if k < n {
            cands.select_nth_unstable_by(k - 1, by_value_desc);
        }
        let kept = &mut cands[..k];
        kept.sort_unstable_by(by_value_desc);
        // Top-p on the softmax of the (untempered) logits.
        softmax(kept);
        let mut keep = kept.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0f32;
            for (i, c) in kept.iter().enumerate() {
                cum += c.value;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        // Min-p relative to the most likely token.
        if p.min_p > 0.0 {
            let threshold = kept[0].value * p.min_p;
            let above = kept[..keep]
                .iter()
                .take_while(|c| c.value >= threshold)
                .count();
            keep = above.max(1);
        }
        let kept = &mut kept[..keep];
        // Temperature on the log-probabilities, then a draw.
        for c in kept.iter_mut() {
            c.value = if c.value > 0.0 {
                libm::logf(c.value) / p.temperature
            } else {
                f32::NEG_INFINITY
            };
        }
        softmax(kept);
        let r = self.rng.next_f32();
        let mut cum = 0.0f32;
        for c in kept.iter() {
            cum += c.value;
            if r < cum {
                return Ok(c.id);
            }
        }
        Ok(kept.last().map(|c| c.id).unwrap_or(0))
    }

    fn apply_penalty(&self, cands: &mut [Candidate]) -> Result<()> {
        let p = self.params;
        if p.repeat_penalty == 1.0 || p.repeat_last_n == 0 {
            return Ok(());
        }
        let n = (p.repeat_last_n as usize).min(MAX_PENALTY_WINDOW);
        let vocab = cands.len();
        for (i, tok) in self.recent(n).enumerate() {
            // Penalize each distinct token once.
            if self.recent(n).take(i).any(|t| t == tok) {
                continue;
            }
            let c = cands
                .get_mut(tok as usize)
                .ok_or(TokenizerError::BadTokenId {
                    id: tok,
                    vocab: vocab as u32,
                })?;
            c.value = if c.value > 0.0 {
                c.value / p.repeat_penalty
            } else {
                c.value * p.repeat_penalty
            };
        }
        Ok(())
    }
}

/// Index of the largest value (the first on ties).
fn argmax(cands: &[Candidate]) -> u32 {
    let mut best = 0usize;
    for (i, c) in cands.iter().enumerate() {
        if c.value > cands[best].value {
            best = i;
        }
    }
    cands.get(best).map(|c| c.id).unwrap_or(0)
}

/// Replaces values by their softmax (in place).
fn softmax(cands: &mut [Candidate]) {
    let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.value));
    let mut sum = 0.0f32;
    for c in cands.iter_mut() {
        c.value = if max == f32::NEG_INFINITY {
            1.0
        } else {
            libm::expf(c.value - max)
        };
        sum += c.value;
    }
    if sum > 0.0 {
        for c in cands.iter_mut() {
            c.value /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn sample_with(params: SamplerParams, logits: &[f32]) -> u32 {
        let mut s = Sampler::new(params).unwrap();
        let mut c = vec![Candidate::default(); logits.len()];
        s.sample(logits, &mut c).unwrap()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(
            sample_with(SamplerParams::greedy(), &[0.1, 3.0, -2.0, 3.0]),
            1
        );
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_temperature() {
        let p = SamplerParams {
            temperature: 5.0,
            top_k: 1,
            ..SamplerParams::default()
        };
        for seed in 0..20 {
            assert_eq!(
                sample_with(SamplerParams { seed, ..p }, &[1.0, 0.5, 2.0, 1.9]),
                2
            );
        }
    }

    #[test]
    fn same_seed_same_draws_and_distribution_follows_probabilities() {
        // Two tokens with logits ln(3) and 0: probabilities 3/4 and 1/4.
        let logits = [libm::logf(3.0), 0.0];
        let p = SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        };
        let mut a = Sampler::new(p).unwrap();
        let mut b = Sampler::new(p).unwrap();
        let mut c = vec![Candidate::default(); 2];
        let mut zeros = 0;
        for _ in 0..4000 {
            let x = a.sample(&logits, &mut c).unwrap();
            assert_eq!(x, b.sample(&logits, &mut c).unwrap());
            zeros += usize::from(x == 0);
        }
        // 3000 expected; a binomial sd of sqrt(4000 * 3/16) ~ 27, so +-150 is > 5 sd.
        assert!((2850..=3150).contains(&zeros), "{zeros}");
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities 0.5, 0.3, 0.15, 0.05 (from logs).
        let logits = [0.5f32, 0.3, 0.15, 0.05].map(libm::logf);
        let base = SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        };
        // top_p 0.6: keeps {0, 1} (0.5 < 0.6 <= 0.8).
        for seed in 0..200 {
            let t = sample_with(
                SamplerParams {
                    seed,
                    top_p: 0.6,
                    ..base
                },
                &logits,
            );
            assert!(t <= 1);
        }
        // min_p 0.5: keeps tokens with p >= 0.25: {0, 1}.
        for seed in 0..200 {
            let t = sample_with(
                SamplerParams {
                    seed,
                    min_p: 0.5,
                    ..base
                },
                &logits,
            );
            assert!(t <= 1);
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let mut s = Sampler::new(SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        })
        .unwrap();
        let mut c = vec![Candidate::default(); 3];
        // Token 0 leads with 3.0; penalised to 1.5 it loses to token 1 (2.0).
        s.accept(0);
        s.accept(0);
        assert_eq!(s.sample(&[3.0, 2.0, -1.0], &mut c).unwrap(), 1);
        // A negative logit gets more negative: -0.5 * 2 = -1 < -0.9.
        let mut s = Sampler::new(SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        })
        .unwrap();
        s.accept(0);
        assert_eq!(s.sample(&[-0.5, -0.9, -3.0], &mut c).unwrap(), 1);
        // A token id outside the vocabulary in the history is an error.
        s.accept(99);
        assert!(s.sample(&[1.0, 0.0, 0.0], &mut c).is_err());
    }

    #[test]
    fn bad_params_and_buffers_are_refused() {
        assert!(Sampler::new(SamplerParams {
            top_p: 0.0,
            ..SamplerParams::default()
        })
        .is_err());
        assert!(Sampler::new(SamplerParams {
            temperature: f32::NAN,
            ..SamplerParams::default()
        })
        .is_err());
        let mut s = Sampler::new(SamplerParams::default()).unwrap();
        let mut c = vec![Candidate::default(); 1];
        assert!(s.sample(&[1.0, 2.0], &mut c).is_err());
        assert!(s.sample(&[], &mut c).is_err());
    }
}
