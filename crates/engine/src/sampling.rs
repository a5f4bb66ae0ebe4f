//! `Sampler`: temperature, top-k, top-p, repetition penalty, seeded so the same seed gives the
//! same text.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// Sampling settings of one reply.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    /// 1.0 means no nucleus cut.
    pub top_p: f32,
    /// 1.0 means no penalty.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
    pub max_tokens: usize,
    /// Text that ends the reply as soon as the reply ends with it (the text itself has already
    /// been streamed and stays in the reply).
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
            max_tokens: 512,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSampling(m));
        if !(self.temperature.is_finite() && (0.0..=5.0).contains(&self.temperature)) {
            return bad(format!(
                "temperature must be between 0 and 5, not {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!(
                "top-p must be above 0 and at most 1, not {}",
                self.top_p
            ));
        }
        if !(self.repeat_penalty.is_finite() && (0.5..=3.0).contains(&self.repeat_penalty)) {
            return bad(format!(
                "the repetition penalty must be between 0.5 and 3, not {}",
                self.repeat_penalty
            ));
        }
        if self.max_tokens == 0 {
            return bad("the reply must be allowed at least one token".into());
        }
        Ok(())
    }
}

/// Draws tokens from logits.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = StdRng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    /// Picks the next token given the logits and the recent tokens (for the penalty).
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let p = &self.params;
        let mut logits = logits.to_vec();
        if p.repeat_penalty != 1.0 {
            let start = recent.len().saturating_sub(p.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &recent[start..] {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l >= 0.0 {
                            *l / p.repeat_penalty
                        } else {
                            *l * p.repeat_penalty
                        };
                    }
                }
            }
        }
        if p.temperature == 0.0 {
            return argmax(&logits);
        }
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if p.top_k > 0 && p.top_k < idx.len() {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0]];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((logits[i] - max) / p.temperature).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, &q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, &q) in probs.iter().enumerate() {
            r -= q;
            if r <= 0.0 {
                return idx[i] as u32;
            }
        }
        idx[probs.len() - 1] as u32
    }
}

pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37 % 100) as f32) / 10.0).collect()
    }

    #[test]
    fn greedy_picks_max() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        let l = logits();
        assert_eq!(s.sample(&l, &[]), argmax(&l));
        assert_eq!(l[argmax(&l) as usize], 9.9);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_respected() {
        let p = SamplingParams {
            temperature: 1.5,
            top_k: 5,
            ..SamplingParams::default()
        };
        let l = logits();
        let mut top: Vec<usize> = (0..100).collect();
        top.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let top5: Vec<u32> = top[..5].iter().map(|&i| i as u32).collect();
        let mut a = Sampler::new(p.clone()).unwrap();
        let mut b = Sampler::new(p).unwrap();
        let da: Vec<u32> = (0..50).map(|_| a.sample(&l, &[])).collect();
        let db: Vec<u32> = (0..50).map(|_| b.sample(&l, &[])).collect();
        assert_eq!(da, db);
        assert!(da.iter().all(|t| top5.contains(t)));
        assert!(da.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn repetition_penalty_moves_argmax() {
        let mut l = vec![0.0f32; 10];
        l[3] = 2.0;
        l[4] = 1.9;
        let p = SamplingParams {
            repeat_penalty: 1.5,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p).unwrap();
        assert_eq!(s.sample(&l, &[3]), 4);
    }

    #[test]
    fn rejects_bad_settings() {
        for p in [
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                repeat_penalty: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                max_tokens: 0,
                ..Default::default()
            },
        ] {
            assert!(Sampler::new(p).is_err());
        }
    }
}
