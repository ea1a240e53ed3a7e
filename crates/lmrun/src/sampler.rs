//! The token sampler: one persistent, seedable instance per runner (ExecuTorch built a new one
//! per token, seeded from the clock's seconds). Temperature 0 is argmax; otherwise repetition
//! penalty, temperature, top-k, softmax, top-p and min-p are applied in llama.cpp's order and a
//! token is drawn with a xorshift64* generator.

/// Sampling parameters (a subset of [`crate::GenerationConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerParams {
    /// 0 = argmax.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    /// Recent tokens the penalty applies to.
    pub repetition_window: usize,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repetition_window: 64,
        }
    }
}

/// A persistent sampler with its own random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    state: u64,
    /// Scratch: (token, logit/probability) candidates, reused across calls.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub fn new(seed: u64) -> Sampler {
        let mut s = Sampler {
            state: 0,
            cand: Vec::new(),
        };
        s.reseed(seed);
        s
    }

    /// A sampler seeded from the clock.
    pub fn from_clock() -> Sampler {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Sampler::new(t)
    }

    /// Restart the random sequence from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        self.state = if z == 0 { 0x2545_F491_4F6C_DD1D } else { z };
    }

    fn next_u32(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// A uniform float in [0, 1).
    fn coin(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }

    /// Pick the next token from `logits` (one row of vocabulary scores). `recent` is the token
    /// history the repetition penalty looks at. Never panics: an empty row gives token 0.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32], p: &SamplerParams) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        let penalise = p.repetition_penalty != 1.0 && p.repetition_window > 0 && !recent.is_empty();
        let window = &recent[recent.len().saturating_sub(p.repetition_window)..];
        let penalised = |id: u32, l: f32| -> f32 {
            if penalise && window.contains(&id) {
                if l > 0.0 {
                    l / p.repetition_penalty
                } else {
                    l * p.repetition_penalty
                }
            } else {
                l
            }
        };
        if p.temperature <= 0.0 {
            return argmax_by(logits, |i, l| penalised(i as u32, l));
        }
        let inv_t = 1.0 / p.temperature;
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (i as u32, penalised(i as u32, l) * inv_t)),
        );
        if self.cand.is_empty() {
            return argmax_by(logits, |_, l| l);
        }
        // Sort by logit, descending (top-k first keeps the sort cheap when it is on).
        let by_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(p.top_k - 1, by_desc);
            self.cand.truncate(p.top_k);
        }
        self.cand.sort_unstable_by(by_desc);
        // Softmax.
        let max = self.cand[0].1;
        let mut sum = 0.0f32;
        for c in &mut self.cand {
            c.1 = (c.1 - max).exp();
            sum += c.1;
        }
        for c in &mut self.cand {
            c.1 /= sum;
        }
        // Top-p: keep the shortest prefix reaching p.
        if p.top_p > 0.0 && p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = self.cand.len();
            for (i, c) in self.cand.iter().enumerate() {
                cum += c.1;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep);
        }
        // Min-p: relative to the most likely token.
        if p.min_p > 0.0 {
            let floor = self.cand[0].1 * p.min_p;
            let keep = self.cand.iter().take_while(|c| c.1 >= floor).count().max(1);
            self.cand.truncate(keep);
        }
        let total: f32 = self.cand.iter().map(|c| c.1).sum();
        let r = self.coin() * total;
        let mut cum = 0.0;
        for c in &self.cand {
            cum += c.1;
            if r < cum {
                return c.0;
            }
        }
        self.cand.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    argmax_by(logits, |_, l| l)
}

fn argmax_by(logits: &[f32], f: impl Fn(usize, f32) -> f32) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        let v = f(i, l);
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplerParams {
        SamplerParams {
            temperature: t,
            ..Default::default()
        }
    }

    #[test]
    fn temperature_zero_is_argmax_first_max_wins() {
        let mut s = Sampler::new(1);
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0], &[], &params(0.0)), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
        assert_eq!(s.sample(&[], &[], &params(0.7)), 0);
    }

    #[test]
    fn seeded_runs_repeat_and_seeds_differ() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(seed);
            (0..50)
                .map(|_| s.sample(&logits, &[], &params(1.0)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_min_p_cut() {
        let logits = [1.0, 5.0, 4.9, -2.0];
        let mut s = Sampler::new(7);
        let p = SamplerParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[], &p), 1);
        }
        let p = SamplerParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[], &p), 1, "token 1 alone holds > 50%");
        }
        let p = SamplerParams {
            temperature: 1.0,
            min_p: 0.5,
            ..Default::default()
        };
        for _ in 0..50 {
            let t = s.sample(&logits, &[], &p);
            assert!(t == 1 || t == 2, "{t}");
        }
    }

    #[test]
    fn distribution_follows_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4, 3/4
        let mut s = Sampler::new(99);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| s.sample(&logits, &[], &params(1.0)) == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
    }

    #[test]
    fn repetition_penalty_demotes_recent_tokens() {
        let logits = [2.0, 1.9];
        let mut s = Sampler::new(0);
        let p = SamplerParams {
            repetition_penalty: 1.5,
            ..Default::default()
        };
        assert_eq!(s.sample(&logits, &[0], &p), 1);
        assert_eq!(s.sample(&logits, &[1], &p), 0);
        let p_out = SamplerParams {
            repetition_window: 1,
            ..p
        };
        // token 0 fell out of the one-token window
        assert_eq!(s.sample(&logits, &[0, 1], &p_out), 0);
    }
}
