//! The token sampler: one persistent, seedable instance per runner (ExecuTorch built a new one
//! per token, seeded from the clock's seconds), drawing with a xorshift64* generator. One
//! chain, in this order:
//!
//! 1. logit bias (added to the raw logits);
//! 2. penalties over the last `repetition_window` tokens: repetition (divide a positive logit,
//!    multiply a negative one), then frequency (× each token's count) and presence (once per
//!    token seen), as llama.cpp's penalties sampler;
//! 3. temperature 0: argmax of what steps 1–2 left (no further stage changes the argmax);
//! 4. otherwise temperature, then either mirostat v2 (which replaces the cuts) or top-k,
//!    softmax, locally typical sampling (typical-p), min-p and top-p;
//! 5. the draw.
//!
//! `n_probs` reports, for each sampled token, its log-probability and the top alternatives
//! under the distribution after steps 1–2 at temperature 1 (what the model says, with the
//! caller's bias and penalties; OpenAI's `logprobs`).

/// Sampling parameters (a subset of [`crate::GenerationConfig`]).
#[derive(Debug, Clone, PartialEq)]
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
    /// Recent tokens the penalties apply to.
    pub repetition_window: usize,
    /// Subtracted from the logit of every token seen in the window (0 = off).
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the window (0 = off).
    pub frequency_penalty: f32,
    /// Added to the logits of these token ids (`-inf` bans a token).
    pub logit_bias: Vec<(u32, f32)>,
    /// Locally typical sampling: keep the tokens closest to the distribution's entropy until
    /// their mass reaches this (1.0 = off).
    pub typical_p: f32,
    /// Mirostat v2 `(tau, eta)`: target surprise in bits and learning rate; replaces top-k,
    /// typical-p, top-p and min-p.
    pub mirostat: Option<(f32, f32)>,
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
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            typical_p: 1.0,
            mirostat: None,
        }
    }
}

impl SamplerParams {
    /// Whether steps 1–2 of the chain change any logit.
    fn adjusts_logits(&self) -> bool {
        let window = self.repetition_window > 0;
        !self.logit_bias.is_empty()
            || (window
                && (self.repetition_penalty != 1.0
                    || self.presence_penalty != 0.0
                    || self.frequency_penalty != 0.0))
    }
}

/// A sampled token's log-probability and the most likely alternatives (`n_probs` of them),
/// under the distribution after logit bias and penalties at temperature 1.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token.
    pub id: u32,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// A persistent sampler with its own random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    state: u64,
    /// Scratch: (token, logit/probability) candidates, reused across calls.
    cand: Vec<(u32, f32)>,
    /// Scratch: scaled logits, then probabilities, of the whole vocabulary.
    probs: Vec<f32>,
    /// Scratch: the logits after bias and penalties (for `n_probs`).
    adjusted: Vec<f32>,
    /// Mirostat v2's running maximum surprise (`None` until the first draw: then `2·tau`).
    mu: Option<f32>,
}

/// Where [`Sampler::keep`] left the distribution.
enum Kept {
    /// No finite logit: fall back to argmax.
    None,
    /// Every token, probabilities in `probs` (vocabulary order).
    All,
    /// The kept `(token, probability)` pairs in `cand`.
    Cand,
}

/// Candidates in descending order, the ties by token id.
fn by_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Refill `cand` with the `(token, value)` pairs of `values` that `keep` accepts, in token order.
fn gather(cand: &mut Vec<(u32, f32)>, values: &[f32], keep: impl Fn(f32) -> bool) {
    cand.clear();
    cand.extend(
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| keep(**v))
            .map(|(i, &v)| (i as u32, v)),
    );
}

/// Sorts `cand` (descending) and keeps its shortest head whose probability mass reaches
/// `top_p` (at least one token). The running sum is f64: over a flat distribution f32 sums
/// drift by dozens of tokens.
fn top_p_head(cand: &mut Vec<(u32, f32)>, top_p: f32) {
    cand.sort_unstable_by(by_desc);
    let mut cum = 0.0f64;
    let mut keep = cand.len();
    for (i, c) in cand.iter().enumerate() {
        cum += c.1 as f64;
        if cum >= top_p as f64 {
            keep = i + 1;
            break;
        }
    }
    cand.truncate(keep.max(1));
}

/// The token whose cumulative probability first exceeds `r` × the total (the last on rounding).
fn draw(items: impl Iterator<Item = (usize, f32)> + Clone, r: f32) -> u32 {
    let total: f32 = items.clone().map(|(_, q)| q).sum();
    let target = r * total;
    let mut cum = 0.0;
    let mut last = 0;
    for (i, q) in items {
        if q <= 0.0 {
            continue;
        }
        cum += q;
        last = i;
        if target < cum {
            return i as u32;
        }
    }
    last as u32
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub fn new(seed: u64) -> Sampler {
        let mut s = Sampler {
            state: 0,
            cand: Vec::new(),
            probs: Vec::new(),
            adjusted: Vec::new(),
            mu: None,
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

    /// Forget per-generation state (mirostat's running surprise); call at the start of each
    /// generation.
    pub fn begin(&mut self) {
        self.mu = None;
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
        if p.temperature <= 0.0 {
            if !p.adjusts_logits() {
                return argmax(logits);
            }
            self.scaled(logits, recent, p, 1.0);
            return argmax(&self.probs);
        }
        let r = self.coin();
        if let Some((tau, eta)) = p.mirostat {
            return self.mirostat_v2(logits, recent, p, tau, eta, r);
        }
        match self.keep(logits, recent, p) {
            Kept::None => argmax_by(logits, |_, l| l),
            Kept::All => draw(self.probs.iter().copied().enumerate(), r),
            Kept::Cand => draw(self.cand.iter().map(|&(i, q)| (i as usize, q)), r),
        }
    }

    /// Like [`Sampler::sample`], and also the sampled token's log-probability with the
    /// `n_probs` most likely alternatives (see [`TokenLogprob`]).
    pub fn sample_with_logprobs(
        &mut self,
        logits: &[f32],
        recent: &[u32],
        p: &SamplerParams,
        n_probs: usize,
    ) -> (u32, TokenLogprob) {
        let id = self.sample(logits, recent, p);
        // The adjusted logits at temperature 1, then a log-softmax.
        let mut adjusted = std::mem::take(&mut self.adjusted);
        let saved = std::mem::take(&mut self.probs);
        self.scaled(logits, recent, p, 1.0);
        adjusted.clear();
        adjusted.extend_from_slice(&self.probs);
        self.probs = saved;
        let max = adjusted.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        // log-sum-exp in f64: a near-certain token keeps a logprob just below 0, not 0.
        let lse = if max == f32::NEG_INFINITY {
            0.0
        } else {
            let sum: f64 = adjusted.iter().map(|&v| ((v - max) as f64).exp()).sum();
            max as f64 + sum.ln()
        };
        let lp = |v: f32| {
            if v == f32::NEG_INFINITY {
                v
            } else {
                (v as f64 - lse) as f32
            }
        };
        let mut top: Vec<(u32, f32)> = Vec::with_capacity(n_probs);
        if n_probs > 0 {
            let mut cand: Vec<(u32, f32)> = adjusted
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as u32, v))
                .collect();
            let k = n_probs.min(cand.len());
            if k > 0 && k < cand.len() {
                cand.select_nth_unstable_by(k - 1, by_desc);
            }
            cand.truncate(k);
            cand.sort_unstable_by(by_desc);
            top.extend(cand.into_iter().map(|(i, v)| (i, lp(v))));
        }
        let logprob = adjusted
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&v| lp(v));
        self.adjusted = adjusted;
        (id, TokenLogprob { id, logprob, top })
    }

    /// `self.probs` = the logits with the logit bias and the penalties of the recent window
    /// applied (steps 1–2 of the chain), times `inv_t`; non-finite logits as -inf. Returns
    /// whether every logit was finite.
    fn scaled(&mut self, logits: &[f32], recent: &[u32], p: &SamplerParams, inv_t: f32) -> bool {
        let mut finite = true;
        self.probs.clear();
        self.probs.extend(logits.iter().map(|&l| {
            if l.is_finite() {
                l
            } else {
                finite = false;
                f32::NEG_INFINITY
            }
        }));
        for &(id, b) in &p.logit_bias {
            if let Some(v) = self.probs.get_mut(id as usize) {
                *v += b;
            }
        }
        if p.repetition_window > 0
            && (p.repetition_penalty != 1.0
                || p.presence_penalty != 0.0
                || p.frequency_penalty != 0.0)
        {
            let window = &recent[recent.len().saturating_sub(p.repetition_window)..];
            // Each distinct token once, with its count (the window is short: sort a copy).
            let mut seen: Vec<u32> = window.to_vec();
            seen.sort_unstable();
            let mut i = 0;
            while i < seen.len() {
                let id = seen[i];
                let n = seen[i..].iter().take_while(|&&t| t == id).count();
                i += n;
                let Some(v) = self.probs.get_mut(id as usize) else {
                    continue;
                };
                if !v.is_finite() {
                    continue;
                }
                if p.repetition_penalty != 1.0 {
                    *v = if *v > 0.0 {
                        *v / p.repetition_penalty
                    } else {
                        *v * p.repetition_penalty
                    };
                }
                *v -= n as f32 * p.frequency_penalty + p.presence_penalty;
            }
        }
        if inv_t != 1.0 {
            for v in self.probs.iter_mut() {
                *v *= inv_t;
            }
        }
        finite
    }

    /// Mirostat v2: softmax at the temperature, drop the tokens whose surprise `-log2 p`
    /// exceeds `mu`, draw from the rest (renormalised), then move `mu` toward the target
    /// surprise `tau` by `eta` × the error.
    fn mirostat_v2(
        &mut self,
        logits: &[f32],
        recent: &[u32],
        p: &SamplerParams,
        tau: f32,
        eta: f32,
        r: f32,
    ) -> u32 {
        let finite = self.scaled(logits, recent, p, 1.0 / p.temperature);
        if !finite && self.probs.iter().all(|v| *v == f32::NEG_INFINITY) {
            return argmax_by(logits, |_, l| l);
        }
        lmrun_kernels::ops::softmax_inplace(&mut self.probs);
        let mu = *self.mu.get_or_insert(2.0 * tau);
        // Surprise <= mu  <=>  p >= 2^-mu; the most likely token always stays.
        let floor = (-mu).exp2();
        gather(&mut self.cand, &self.probs, |v| v >= floor && v > 0.0);
        if self.cand.is_empty() {
            let best = argmax(&self.probs);
            self.cand
                .push((best, self.probs[best as usize].max(f32::MIN_POSITIVE)));
        }
        let total: f32 = self.cand.iter().map(|c| c.1).sum();
        let id = draw(self.cand.iter().map(|&(i, q)| (i as usize, q)), r);
        let q = self
            .cand
            .iter()
            .find(|c| c.0 == id)
            .map_or(1.0, |c| c.1 / total);
        let surprise = -q.max(f32::MIN_POSITIVE).log2();
        self.mu = Some(mu - eta * (surprise - tau));
        id
    }

    /// The distribution to draw from: temperature and repetition penalty applied, then top-k,
    /// softmax, min-p and top-p. Leaves the probabilities of the whole vocabulary in
    /// `self.probs` ([`Kept::All`]) or the kept `(token, probability)` pairs in `self.cand`
    /// ([`Kept::Cand`]).
    fn keep(&mut self, logits: &[f32], recent: &[u32], p: &SamplerParams) -> Kept {
        let finite = self.scaled(logits, recent, p, 1.0 / p.temperature);
        if !finite && self.probs.iter().all(|v| *v == f32::NEG_INFINITY) {
            return Kept::None;
        }
        // Top-k: only the k largest stay (ties by token id); the rest are masked out below.
        let mut top_k = false;
        if p.top_k > 0 {
            gather(&mut self.cand, &self.probs, |v| v > f32::NEG_INFINITY);
            if p.top_k < self.cand.len() {
                self.cand.select_nth_unstable_by(p.top_k - 1, by_desc);
                self.cand.truncate(p.top_k);
                self.probs.fill(f32::NEG_INFINITY);
                for &(i, v) in &self.cand {
                    self.probs[i as usize] = v;
                }
                top_k = true;
            }
        }
        // Softmax over the vocabulary (SIMD), then the cuts by probability threshold: only the
        // tokens above the threshold are ever gathered and sorted (a full sort of Gemma's
        // 262,144 logits took 12 ms a token, more than the model's forward pass).
        lmrun_kernels::ops::softmax_inplace(&mut self.probs);
        // the SIMD exp is clamped, not exactly 0 far below the maximum: masked tokens to 0
        if top_k {
            for c in &mut self.cand {
                c.1 = self.probs[c.0 as usize];
            }
            self.probs.fill(0.0);
            for &(i, q) in &self.cand {
                self.probs[i as usize] = q;
            }
        } else if !finite {
            for (v, l) in self.probs.iter_mut().zip(logits) {
                if !l.is_finite() {
                    *v = 0.0;
                }
            }
        }
        if p.typical_p > 0.0 && p.typical_p < 1.0 {
            self.typical(p.typical_p);
        }
        let pmax = self.probs.iter().fold(0f32, |m, &v| m.max(v));
        let floor = if p.min_p > 0.0 {
            (pmax * p.min_p).min(pmax)
        } else {
            0.0
        };
        let top_p = p.top_p > 0.0 && p.top_p < 1.0;
        if !top_p && floor == 0.0 {
            return Kept::All;
        }
        // Top-p keeps the shortest head (descending) whose mass reaches p, min-p the tokens at
        // or above `floor`; both are heads of the sorted order, so together the shorter one.
        // A threshold whose tokens already hold p of the mass contains the whole top-p head.
        let mut t = floor;
        if top_p {
            for rel in [1e-3f32, 1e-5, 1e-7] {
                let cand_t = (pmax * rel).max(floor);
                let mass: f64 = self
                    .probs
                    .iter()
                    .filter(|&&v| v >= cand_t)
                    .map(|&v| v as f64)
                    .sum();
                if mass >= p.top_p as f64 {
                    t = cand_t;
                    break;
                }
            }
        }
        gather(&mut self.cand, &self.probs, |v| v >= t && v > 0.0);
        if top_p {
            top_p_head(&mut self.cand, p.top_p);
        }
        Kept::Cand
    }
}

impl Sampler {
    /// Locally typical sampling over `self.probs`: keep the tokens whose surprise `-ln p` is
    /// closest to the entropy until their mass reaches `typical_p` (at least one), zero the
    /// rest (the kept ones are not renormalised here: the draw divides by the total).
    fn typical(&mut self, typical_p: f32) {
        let entropy: f64 = self
            .probs
            .iter()
            .filter(|&&q| q > 0.0)
            .map(|&q| -(q as f64) * (q as f64).ln())
            .sum();
        gather(&mut self.cand, &self.probs, |v| v > 0.0);
        let dist = |q: f32| ((-(q as f64).ln()) - entropy).abs();
        self.cand
            .sort_unstable_by(|a, b| dist(a.1).total_cmp(&dist(b.1)).then(a.0.cmp(&b.0)));
        let mut cum = 0.0f64;
        let mut keep = self.cand.len();
        for (i, c) in self.cand.iter().enumerate() {
            cum += c.1 as f64;
            if cum >= typical_p as f64 {
                keep = i + 1;
                break;
            }
        }
        self.probs.fill(0.0);
        for &(i, q) in &self.cand[..keep.max(1)] {
            self.probs[i as usize] = q;
        }
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

    /// The kept set the straightforward way: sort everything, softmax, top-p prefix, min-p.
    fn reference_cut(logits: &[f32], p: &SamplerParams) -> Vec<u32> {
        let mut c: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / p.temperature))
            .collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        let max = c[0].1;
        let sum: f64 = c.iter().map(|x| ((x.1 - max) as f64).exp()).sum();
        let probs: Vec<f64> = c.iter().map(|x| ((x.1 - max) as f64).exp() / sum).collect();
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        let mut ids: Vec<u32> = c[..keep].iter().map(|x| x.0).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn top_k_and_cuts_keep_what_a_full_sort_keeps() {
        let mut rng = Sampler::new(5);
        let n = 50_000;
        for (top_k, top_p, min_p, scale) in [
            (0usize, 0.9f32, 0.0f32, 3.0f32),
            (0, 0.5, 0.0, 8.0),
            (0, 0.99, 0.0, 0.5),
            (0, 0.9, 0.05, 3.0),
            (40, 0.95, 0.05, 3.0),
            (0, 1.0, 0.1, 5.0),
        ] {
            let logits: Vec<f32> = (0..n).map(|_| (rng.coin() * 2.0 - 1.0) * scale).collect();
            let p = SamplerParams {
                temperature: 0.8,
                top_k,
                top_p,
                min_p,
                ..Default::default()
            };
            let mut s = Sampler::new(1);
            assert!(matches!(s.keep(&logits, &[], &p), Kept::Cand));
            let mut got: Vec<u32> = s.cand.iter().map(|c| c.0).collect();
            got.sort_unstable();
            let want = reference_cut(&logits, &p);
            // f32 vs f64 sums may move a top-p boundary by a token
            assert!(
                got.len().abs_diff(want.len()) <= 1,
                "{top_k} {top_p} {min_p}: kept {} vs {}",
                got.len(),
                want.len()
            );
            let common = got.iter().filter(|t| want.binary_search(t).is_ok()).count();
            assert!(
                common + 1 >= want.len().max(got.len()),
                "{top_k} {top_p} {min_p}"
            );
            let total: f32 = s.cand.iter().map(|c| c.1).sum();
            assert!(total > 0.0 && total <= 1.0 + 1e-4);
        }
    }

    #[test]
    fn threshold_cuts_keep_what_a_full_sort_keeps() {
        let mut rng = Sampler::new(8);
        let n = 262_144;
        for (top_p, min_p, scale) in [
            (0.9f32, 0.0f32, 3.0f32),
            (0.5, 0.0, 8.0),
            (0.99, 0.0, 0.3),
            (0.9, 0.05, 3.0),
            (1.0, 0.1, 5.0),
            (0.95, 2.0, 5.0),
        ] {
            let logits: Vec<f32> = (0..n).map(|_| (rng.coin() * 2.0 - 1.0) * scale).collect();
            let p = SamplerParams {
                temperature: 0.8,
                top_p,
                min_p,
                ..Default::default()
            };
            let mut s = Sampler::new(1);
            let mut got: Vec<u32> = match s.keep(&logits, &[], &p) {
                Kept::Cand => s.cand.iter().map(|c| c.0).collect(),
                _ => panic!("a cut was asked for"),
            };
            got.sort_unstable();
            let want = reference_cut(&logits, &p);
            // f32 vs f64 sums may move a top-p boundary by a token
            let common = got.iter().filter(|t| want.binary_search(t).is_ok()).count();
            assert!(
                common + 1 >= want.len().max(got.len()),
                "top_p {top_p} min_p {min_p}: kept {} vs {} ({common} common)",
                got.len(),
                want.len()
            );
        }
        // non-finite logits are never drawn
        let mut logits = vec![f32::NEG_INFINITY; 1000];
        logits[3] = 0.0;
        logits[7] = f32::NAN;
        logits[9] = 0.5;
        let mut s = Sampler::new(2);
        for _ in 0..200 {
            let t = s.sample(&logits, &[], &params(1.0));
            assert!(t == 3 || t == 9, "{t}");
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

    #[test]
    fn typical_p_keeps_the_tokens_nearest_the_entropy() {
        // Two likely tokens and a flat tail whose surprise is nearer the entropy than theirs: a
        // tiny typical_p keeps only the most typical token (a tail one), never the likeliest.
        let logits: Vec<f32> = (0..50)
            .map(|i| if i == 7 || i == 9 { 3.0 } else { 0.0 })
            .collect();
        let p = SamplerParams {
            temperature: 1.0,
            typical_p: 1e-4,
            ..Default::default()
        };
        let probs: Vec<f64> = {
            let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b));
            let e: Vec<f64> = logits.iter().map(|&l| ((l - m) as f64).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|v| v / z).collect()
        };
        let h: f64 = probs.iter().map(|q| -q * q.ln()).sum();
        let want = (0..50)
            .min_by(|&a, &b| {
                let d = |i: usize| (-probs[i].ln() - h).abs();
                d(a).total_cmp(&d(b)).then(a.cmp(&b))
            })
            .unwrap() as u32;
        assert_ne!(want, 7, "the dominant token is not the typical one here");
        let mut s = Sampler::new(3);
        for _ in 0..30 {
            assert_eq!(s.sample(&logits, &[], &p), want);
        }
    }

    #[test]
    fn mirostat_v2_low_target_is_greedy_high_target_samples() {
        let logits: Vec<f32> = (0..64).map(|i| ((i * 29) % 17) as f32 * 0.2).collect();
        let best = argmax(&logits);
        let low = SamplerParams {
            temperature: 1.0,
            mirostat: Some((0.01, 0.1)),
            ..Default::default()
        };
        let mut s = Sampler::new(5);
        s.begin();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[], &low), best);
        }
        let high = SamplerParams {
            mirostat: Some((10.0, 0.1)),
            ..low
        };
        s.begin();
        let drawn: std::collections::HashSet<u32> =
            (0..50).map(|_| s.sample(&logits, &[], &high)).collect();
        assert!(drawn.len() > 5, "{drawn:?}");
    }

    #[test]
    fn frequency_penalty_counts_occurrences() {
        let logits = vec![1.0f32, 1.0, 1.0];
        let p = SamplerParams {
            temperature: 0.0,
            frequency_penalty: 0.4,
            ..Default::default()
        };
        let mut s = Sampler::new(1);
        // token 0 seen twice (-0.8), token 1 once (-0.4): token 2 wins
        assert_eq!(s.sample(&logits, &[0, 1, 0], &p), 2);
        // with only token 0 seen twice and 2 seen three times, 1 wins
        assert_eq!(s.sample(&logits, &[0, 2, 0, 2, 2], &p), 1);
    }
}
