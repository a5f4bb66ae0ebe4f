//! The perplexity runner's modes: scoring a chunk per forward through a view cache equals
//! feeding one token at a time through a plain sink cache; dense equals streaming while
//! nothing is evicted; recompute equals a fresh forward per scored token.

mod common;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use common::*;
use sinkchat_engine::eval::{self, Mode};
use sinkchat_engine::model::Logits;
use sinkchat_engine::{CacheConfig, LoadOptions, Model, SinkCache};

fn tiny(arch: &str, dir: &tempfile::TempDir) -> Model {
    let t = if arch == "llama" {
        Tiny::llama(2)
    } else {
        Tiny::qwen2(2)
    };
    let path = dir.path().join(format!("{arch}.gguf"));
    write_tiny(&t, &path, GgmlDType::F32);
    Model::load(&path, &Device::Cpu, LoadOptions::default()).unwrap()
}

fn ids(n: usize, vocab: u32) -> Vec<u32> {
    let mut s = 7u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32 % vocab
        })
        .collect()
}

/// NLL of each token fed one at a time through a plain cache of `sinks + window` slots.
fn one_at_a_time(model: &Model, ids: &[u32], sinks: usize, window: usize) -> Vec<f64> {
    let cfg = CacheConfig {
        sinks,
        window,
        evict_step: 1,
        precision: sinkchat_engine::KvPrecision::F32,
    };
    let mut cache = SinkCache::new(model.spec(), cfg, &Device::Cpu).unwrap();
    let mut out = Vec::new();
    for k in 0..ids.len() - 1 {
        let row = model
            .forward(&ids[k..k + 1], &mut cache, Logits::Last)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        out.push(lse - row[ids[k + 1] as usize] as f64);
    }
    out
}

#[test]
fn chunked_view_equals_one_token_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        let model = tiny(arch, &dir);
        let ids = ids(300, 96);
        for (sinks, window) in [(4, 48), (0, 48), (2, 17)] {
            let want = one_at_a_time(&model, &ids, sinks, window);
            let mode = if sinks == 0 {
                Mode::Window { window }
            } else {
                Mode::Streaming {
                    sinks,
                    window: sinks + window,
                }
            };
            for chunk in [1, 7, 32] {
                let got = eval::run(&model, &ids, mode, chunk, 100, |_| {}).unwrap();
                assert_eq!(got.nll.len(), ids.len() - 1);
                for (k, &(i, nll)) in got.nll.iter().enumerate() {
                    assert_eq!(i, k + 1);
                    assert!(
                        (nll - want[k]).abs() < 1e-4,
                        "{arch} sinks {sinks} window {window} chunk {chunk}: token {i}: {nll} vs {}",
                        want[k]
                    );
                }
                let ppl = eval::perplexity_of(&got.nll);
                assert!((got.perplexity - ppl).abs() < 1e-9 && ppl.is_finite());
            }
        }
    }
}

#[test]
fn dense_equals_streaming_before_eviction_and_differs_after() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny("llama", &dir);
    let ids = ids(200, 96);
    let dense = eval::run(&model, &ids, Mode::Dense, 64, 100, |_| {}).unwrap();
    let roomy = eval::run(
        &model,
        &ids,
        Mode::Streaming {
            sinks: 4,
            window: 256,
        },
        64,
        100,
        |_| {},
    )
    .unwrap();
    assert_eq!(
        dense.nll, roomy.nll,
        "nothing evicted: the same computation"
    );
    let tight = eval::run(
        &model,
        &ids,
        Mode::Streaming {
            sinks: 4,
            window: 36,
        },
        64,
        100,
        |_| {},
    )
    .unwrap();
    assert_eq!(dense.nll[..35], tight.nll[..35]);
    assert!(dense.nll[100..]
        .iter()
        .zip(&tight.nll[100..])
        .any(|(a, b)| a.1 != b.1));
}

#[test]
fn recompute_scores_each_sample_with_a_fresh_window() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny("qwen2", &dir);
    let ids = ids(150, 96);
    let run = eval::run(
        &model,
        &ids,
        Mode::Recompute {
            window: 40,
            stride: 25,
        },
        64,
        100,
        |_| {},
    )
    .unwrap();
    let idx: Vec<usize> = run.nll.iter().map(|p| p.0).collect();
    assert_eq!(idx, vec![25, 50, 75, 100, 125]);
    for &(t, nll) in &run.nll {
        // A dense run over exactly the window before `t` predicts `t` with its last row.
        let ctx = &ids[t.saturating_sub(40)..=t];
        let d = eval::run(&model, ctx, Mode::Dense, 64, 100, |_| {}).unwrap();
        let last = d.nll.last().unwrap();
        assert!(
            (last.1 - nll).abs() < 1e-4,
            "token {t}: {} vs {nll}",
            last.1
        );
    }
}

#[test]
fn bad_settings_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny("llama", &dir);
    let ids = ids(50, 96);
    assert!(eval::run(
        &model,
        &ids,
        Mode::Streaming {
            sinks: 4,
            window: 4
        },
        8,
        10,
        |_| {}
    )
    .is_err());
    assert!(eval::run(&model, &ids, Mode::Window { window: 0 }, 8, 10, |_| {}).is_err());
    assert!(eval::run(
        &model,
        &ids,
        Mode::Recompute {
            window: 8,
            stride: 0
        },
        8,
        10,
        |_| {}
    )
    .is_err());
    assert!(eval::run(&model, &ids[..1], Mode::Dense, 8, 10, |_| {}).is_err());
}

#[test]
fn a_stream_of_pieces_scores_as_the_whole_text_and_context_is_read_but_not_scored() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny("llama", &dir);
    let ids = ids(300, 96);
    let (sinks, window) = (4, 52);
    let want = one_at_a_time(&model, &ids, sinks, window - sinks);
    // Pieces of uneven length, no context: the same NLLs as the text scored in one go.
    let mut stream = eval::Stream::new(&model, sinks, window, 16).unwrap();
    let mut got = Vec::new();
    let mut at = 0;
    for len in [1, 30, 5, 64, 100, 100] {
        got.extend(stream.feed(&[], &ids[at..at + len]).unwrap());
        at += len;
        assert_eq!(stream.fed(), at as u64);
    }
    assert_eq!(got.len(), ids.len() - 1);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-4, "token {}: {g} vs {w}", k + 1);
    }
    assert_eq!(stream.visible_from(), 300 - 48);

    // Context before a piece: read (it moves the window), not scored; the piece's tokens are
    // scored as if the context were part of the text.
    let context = &ids[0..20];
    let mut with = eval::Stream::new(&model, sinks, window, 16).unwrap();
    with.feed(&[], &ids[0..100]).unwrap();
    let scored = with.feed(context, &ids[100..150]).unwrap();
    assert_eq!(scored.len(), 50);
    assert_eq!(with.fed(), 170);
    let text: Vec<u32> = ids[0..100]
        .iter()
        .chain(context)
        .chain(&ids[100..150])
        .copied()
        .collect();
    let whole = one_at_a_time(&model, &text, sinks, window - sinks);
    for (k, s) in scored.iter().enumerate() {
        let w = whole[119 + k]; // predicts text[120 + k] = ids[100 + k]
        assert!((s - w).abs() < 1e-4, "scored token {k}: {s} vs {w}");
    }
}
