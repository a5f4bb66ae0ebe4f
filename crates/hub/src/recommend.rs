//! Which model suits this computer: "Best for this computer", "Fits", "Slow here", "Too large
//! for this computer", "Needs more free disk space". A pure function of the computer's figures
//! (memory, the GPU's memory, free disk, a decode speed measured here) and the models' (file
//! size, memory, layers), so that every rule is tested over machines this one is not.

use serde::Serialize;

/// This computer as the recommendation sees it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Machine {
    /// All its memory; `None` where the system does not say.
    pub memory_bytes: Option<u64>,
    /// The GPU's own memory, when the engine runs on one.
    pub gpu_memory_bytes: Option<u64>,
    /// Free space in the models folder.
    pub free_disk_bytes: Option<u64>,
    /// How fast it decodes on the CPU, measured here; `None` until measured.
    pub speed: Option<Speed>,
}

/// A decode step on the CPU costs `file bytes / bytes_per_s + layers x layer_s`: every weight
/// is read once per token, and each layer adds work that does not grow with its size. Both
/// figures are measured on this computer (`sinkchat_engine::probe`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ts_rs::TS)]
pub struct Speed {
    /// Weight bytes the decode kernel reads per second.
    pub bytes_per_s: f64,
    /// Seconds each layer adds to a step beyond reading its weights.
    pub layer_s: f64,
}

impl Speed {
    /// The speed that explains a measured step: `step_s` seconds per token of a model of
    /// `file_bytes` and `layers`, with weights read at `bytes_per_s`. The part of the step the
    /// bytes do not explain is spread over the layers (none when the bytes explain it all).
    pub fn calibrated(bytes_per_s: f64, step_s: f64, file_bytes: u64, layers: u32) -> Self {
        let rest = step_s - file_bytes as f64 / bytes_per_s;
        Self {
            bytes_per_s,
            layer_s: (rest / layers.max(1) as f64).max(0.0),
        }
    }

    /// Estimated decode tokens per second of a model of `file_bytes` and `layers` on the CPU.
    pub fn tokens_per_s(&self, file_bytes: u64, layers: u32) -> f64 {
        1.0 / (file_bytes as f64 / self.bytes_per_s + layers as f64 * self.layer_s)
    }
}

/// A model to advise on: a catalog entry or an installed file.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The catalog's id, or an installed file's name.
    pub key: String,
    pub file_bytes: u64,
    /// Memory to run it ([`sinkchat_engine::inspect::run_memory`]).
    pub memory_bytes: u64,
    pub layers: u32,
    /// On this computer already (needs no disk space).
    pub installed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// The one to choose: the largest model that fits and answers at a comfortable speed.
    Best,
    Fits,
    /// Fits, but answers slower than people read.
    Slow,
    /// Needs more memory than this computer can spare.
    TooLarge,
    /// Its download would not fit on the disk.
    NoRoom,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Advice {
    pub key: String,
    pub fit: Fit,
    /// The one memory figure shown for the model.
    pub memory_bytes: u64,
    /// Estimated decode speed here; `None` on a GPU or before the speed is measured.
    pub tokens_per_s: Option<f64>,
    /// Runs on the GPU (it fits the GPU's memory).
    pub on_gpu: bool,
}

/// Share of all memory a model may use: the system, a browser and the rest keep the others.
pub const MEMORY_SHARE: f64 = 0.6;
/// Share of the GPU's memory a model may use (the driver and the screen keep some).
pub const GPU_SHARE: f64 = 0.9;
/// Below this, answers come slower than people read (about 5 words, 7 tokens, a second).
pub const SLOW_TOKENS_PER_S: f64 = 8.0;
/// At or above this a model answers comfortably: about twice reading speed.
pub const COMFORTABLE_TOKENS_PER_S: f64 = 15.0;
/// Free disk a download leaves at least (the system needs room too).
pub const DISK_MARGIN: u64 = 1_000_000_000;

/// Advice for each model, in the given order. At most one is [`Fit::Best`]: of the models
/// that fit (memory and disk) and are not slow, the largest file that answers comfortably
/// (on the GPU, or at [`COMFORTABLE_TOKENS_PER_S`] by the measured speed); when none does, the
/// fastest of them; when every model that fits is slow, the fastest of those. Without a
/// measured speed no CPU model counts as comfortable, so the smallest fitting one is
/// recommended rather than a guess at a larger one. None when nothing fits.
pub fn advise(machine: &Machine, models: &[Candidate]) -> Vec<Advice> {
    let mut out: Vec<Advice> = models
        .iter()
        .map(|m| {
            let on_gpu = machine
                .gpu_memory_bytes
                .is_some_and(|g| m.memory_bytes as f64 <= g as f64 * GPU_SHARE);
            let tokens_per_s = match (on_gpu, machine.speed) {
                (false, Some(s)) => Some(s.tokens_per_s(m.file_bytes, m.layers)),
                _ => None,
            };
            let too_large = !on_gpu
                && machine
                    .memory_bytes
                    .is_some_and(|t| m.memory_bytes as f64 > t as f64 * MEMORY_SHARE);
            let no_room = !m.installed
                && machine
                    .free_disk_bytes
                    .is_some_and(|f| m.file_bytes.saturating_add(DISK_MARGIN) > f);
            let fit = if too_large {
                Fit::TooLarge
            } else if no_room {
                Fit::NoRoom
            } else if tokens_per_s.is_some_and(|t| t < SLOW_TOKENS_PER_S) {
                Fit::Slow
            } else {
                Fit::Fits
            };
            Advice {
                key: m.key.clone(),
                fit,
                memory_bytes: m.memory_bytes,
                tokens_per_s,
                on_gpu,
            }
        })
        .collect();
    let fits: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].fit == Fit::Fits)
        .collect();
    let slow: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].fit == Fit::Slow)
        .collect();
    let comfortable = |i: usize| {
        out[i].on_gpu
            || out[i]
                .tokens_per_s
                .is_some_and(|t| t >= COMFORTABLE_TOKENS_PER_S)
    };
    let fastest = |among: &[usize]| {
        among.iter().copied().fold(None::<usize>, |b, i| match b {
            Some(j) if faster_or_same(&out[j], &models[j], &out[i], &models[i]) => Some(j),
            _ => Some(i),
        })
    };
    // Largest comfortable file; ties go to the earlier entry. None comfortable: the fastest
    // that is not slow; all slow: the fastest of them (still the one to choose here).
    let best = fits
        .iter()
        .copied()
        .filter(|&i| comfortable(i))
        .fold(None::<usize>, |b, i| match b {
            Some(j) if models[j].file_bytes >= models[i].file_bytes => Some(j),
            _ => Some(i),
        })
        .or_else(|| fastest(&fits))
        .or_else(|| fastest(&slow));
    if let Some(i) = best {
        out[i].fit = Fit::Best;
    }
    out
}

fn faster_or_same(a: &Advice, am: &Candidate, b: &Advice, bm: &Candidate) -> bool {
    match (a.tokens_per_s, b.tokens_per_s) {
        (Some(x), Some(y)) => x >= y,
        _ => am.file_bytes <= bm.file_bytes,
    }
}

/// The catalog as candidates (`installed`: file names on this computer).
pub fn catalog_candidates(installed: &[String]) -> Vec<Candidate> {
    crate::CATALOG
        .iter()
        .map(|c| Candidate {
            key: c.id.to_string(),
            file_bytes: c.size_bytes,
            memory_bytes: c.memory_bytes,
            layers: c.layers,
            installed: installed.iter().any(|f| f == c.file),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    /// About this 2-core machine's measured figures (2026-12): 25 GB/s, 0.1 ms a layer.
    const HERE: Speed = Speed {
        bytes_per_s: 25e9,
        layer_s: 1e-4,
    };

    fn machine(memory_gb: u64, gpu_gb: Option<u64>, disk_gb: u64, speed: Option<Speed>) -> Machine {
        Machine {
            memory_bytes: Some(memory_gb * GB),
            gpu_memory_bytes: gpu_gb.map(|g| g * GB),
            free_disk_bytes: Some(disk_gb * GB),
            speed,
        }
    }

    fn fit_of<'a>(a: &'a [Advice], key: &str) -> &'a Advice {
        a.iter().find(|x| x.key == key).unwrap()
    }

    fn best(a: &[Advice]) -> Vec<&str> {
        a.iter()
            .filter(|x| x.fit == Fit::Best)
            .map(|x| x.key.as_str())
            .collect()
    }

    #[test]
    fn the_speed_a_step_was_calibrated_on_is_the_speed_it_estimates() {
        let s = Speed::calibrated(25e9, 1.0 / 150.0, 98_362_432, 30);
        assert!((s.tokens_per_s(98_362_432, 30) - 150.0).abs() < 1e-6);
        assert!(s.layer_s > 0.0);
        // A step the bytes alone explain leaves no per-layer cost, never a negative one.
        let s = Speed::calibrated(1e9, 0.01, 2 * GB, 30);
        assert_eq!(s.layer_s, 0.0);
        // Larger files are slower, more layers are slower.
        assert!(HERE.tokens_per_s(GB, 24) < HERE.tokens_per_s(GB / 2, 24));
        assert!(HERE.tokens_per_s(GB, 40) < HERE.tokens_per_s(GB, 20));
    }

    #[test]
    fn eight_sixteen_and_thirty_two_gigabytes_without_a_gpu() {
        let cands = catalog_candidates(&[]);
        for gb in [4, 8, 16, 32] {
            let a = advise(&machine(gb, None, 500, Some(HERE)), &cands);
            assert_eq!(best(&a).len(), 1, "{gb} GB: one best");
            for (c, x) in cands.iter().zip(&a) {
                let too_large = c.memory_bytes as f64 > gb as f64 * 1e9 * MEMORY_SHARE;
                assert_eq!(x.fit == Fit::TooLarge, too_large, "{gb} GB, {}", c.key);
                assert_eq!(x.memory_bytes, c.memory_bytes);
                assert!(!x.on_gpu);
            }
        }
        // 4 GB cannot spare the 7B model's memory; 8 GB can, but on two cores it is slow.
        let m4 = advise(&machine(4, None, 500, Some(HERE)), &cands);
        assert_eq!(fit_of(&m4, "mistral-7b").fit, Fit::TooLarge);
        let m8 = advise(&machine(8, None, 500, Some(HERE)), &cands);
        assert_eq!(fit_of(&m8, "mistral-7b").fit, Fit::Slow);
        let m16 = advise(&machine(16, None, 500, Some(HERE)), &cands);
        // The recommendation is the same model at 16 and 32 GB on the same processor: memory
        // past what the model needs does not make it faster.
        let m32 = advise(&machine(32, None, 500, Some(HERE)), &cands);
        assert_eq!(best(&m8), best(&m32));
        assert_eq!(best(&m16), best(&m32));
        // It answers comfortably, and nothing larger that fits does.
        let b = fit_of(&m32, best(&m32)[0]);
        assert!(b.tokens_per_s.unwrap() >= COMFORTABLE_TOKENS_PER_S);
        let b_size = cands.iter().find(|c| c.key == b.key).unwrap().file_bytes;
        for (c, x) in cands.iter().zip(&m32) {
            if c.file_bytes > b_size && x.fit != Fit::TooLarge {
                assert!(
                    x.tokens_per_s.unwrap() < COMFORTABLE_TOKENS_PER_S,
                    "{}",
                    c.key
                );
            }
        }
    }

    #[test]
    fn a_faster_processor_recommends_a_larger_model_and_a_slower_one_a_smaller() {
        let cands = catalog_candidates(&[]);
        let size = |a: &[Advice]| {
            let k = best(a)[0];
            cands.iter().find(|c| c.key == k).unwrap().file_bytes
        };
        let slow = Speed {
            bytes_per_s: 5e9,
            layer_s: 5e-4,
        };
        let fast = Speed {
            bytes_per_s: 90e9,
            layer_s: 3e-5,
        };
        let here = size(&advise(&machine(32, None, 500, Some(HERE)), &cands));
        assert!(size(&advise(&machine(32, None, 500, Some(slow)), &cands)) < here);
        assert!(size(&advise(&machine(32, None, 500, Some(fast)), &cands)) > here);
        // A very slow computer marks the larger models slow and still recommends one.
        let crawl = Speed {
            bytes_per_s: 1e9,
            layer_s: 1e-3,
        };
        let a = advise(&machine(8, None, 500, Some(crawl)), &cands);
        assert_eq!(fit_of(&a, "qwen2.5-3b").fit, Fit::Slow);
        assert_eq!(best(&a).len(), 1);
        // All that fit are slow there: the fastest of them is still the one to choose.
        let crawl = Speed {
            bytes_per_s: 2e8,
            layer_s: 1e-2,
        };
        let a = advise(&machine(8, None, 500, Some(crawl)), &cands);
        assert!(a
            .iter()
            .all(|x| matches!(x.fit, Fit::Slow | Fit::Best | Fit::TooLarge)));
        let b = fit_of(&a, best(&a)[0]);
        assert!(a.iter().all(|x| x.tokens_per_s <= b.tokens_per_s));
    }

    #[test]
    fn a_gpu_takes_the_models_its_memory_holds() {
        let cands = catalog_candidates(&[]);
        // 24 GB of GPU memory holds every model: the largest is recommended, on the GPU,
        // even on an 8 GB computer.
        let a = advise(&machine(8, Some(24), 500, Some(HERE)), &cands);
        assert_eq!(best(&a), vec!["mistral-7b"]);
        assert!(a.iter().all(|x| x.on_gpu && x.tokens_per_s.is_none()));
        // 4 GB of GPU memory: the small ones on the GPU, the larger on the CPU by its rules
        // (on a 4 GB computer, too large there).
        let a = advise(&machine(4, Some(4), 500, Some(HERE)), &cands);
        for (c, x) in cands.iter().zip(&a) {
            assert_eq!(
                x.on_gpu,
                c.memory_bytes as f64 <= 4e9 * GPU_SHARE,
                "{}",
                c.key
            );
        }
        assert_eq!(fit_of(&a, "mistral-7b").fit, Fit::TooLarge);
        let b = best(&a)[0];
        assert!(fit_of(&a, b).on_gpu, "the best runs on the GPU: {b}");
    }

    #[test]
    fn little_disk_space_rules_out_downloads_but_not_installed_models() {
        let cands = catalog_candidates(&["SmolLM2-135M-Instruct.Q4_1.gguf".into()]);
        let a = advise(&machine(16, None, 1, Some(HERE)), &cands);
        for (c, x) in cands.iter().zip(&a) {
            if c.installed {
                assert_ne!(x.fit, Fit::NoRoom, "{}", c.key);
            } else {
                assert_eq!(x.fit, Fit::NoRoom, "{}", c.key);
            }
        }
        // The model already here is the one to use.
        assert_eq!(best(&a), vec!["smollm2-135m"]);
        // 1.6 GB free: the downloads under 600 MB still fit.
        let mut m = machine(16, None, 0, Some(HERE));
        m.free_disk_bytes = Some(1_600_000_000);
        let a = advise(&m, &cands);
        for (c, x) in cands.iter().zip(&a) {
            let room = c.installed || c.file_bytes + DISK_MARGIN <= 1_600_000_000;
            assert_eq!(x.fit != Fit::NoRoom, room, "{}", c.key);
        }
    }

    #[test]
    fn without_a_measured_speed_the_smallest_fitting_model_is_recommended() {
        let cands = catalog_candidates(&[]);
        let a = advise(&machine(32, None, 500, None), &cands);
        let smallest = cands.iter().min_by_key(|c| c.file_bytes).unwrap();
        assert_eq!(best(&a), vec![smallest.key.as_str()]);
        assert!(a
            .iter()
            .all(|x| x.tokens_per_s.is_none() && x.fit != Fit::Slow));
        // Nothing known at all: nothing is called too large either.
        let blank = Machine {
            memory_bytes: None,
            gpu_memory_bytes: None,
            free_disk_bytes: None,
            speed: None,
        };
        let a = advise(&blank, &cands);
        assert!(a.iter().all(|x| matches!(x.fit, Fit::Fits | Fit::Best)));
    }

    #[test]
    fn a_computer_nothing_fits_gets_no_recommendation() {
        let cands = catalog_candidates(&[]);
        let mut m = machine(0, None, 500, Some(HERE));
        m.memory_bytes = Some(200_000_000);
        let a = advise(&m, &cands);
        assert!(best(&a).is_empty());
        assert!(a.iter().all(|x| x.fit == Fit::TooLarge));
    }
}
