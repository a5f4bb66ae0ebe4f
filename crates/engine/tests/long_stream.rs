//! 20,000 tokens through one SmolLM2 conversation with a small window: a pasted text far longer
//! than the window streams through chunked prefill, then the model writes on. Memory stays
//! flat, nothing panics, and the output stays in the vocabulary and in English.

mod common;

use candle_core::Device;
use sinkchat_engine::model::Logits;
use sinkchat_engine::sampling::{Sampler, SamplingParams};
use sinkchat_engine::{CacheConfig, GgufTokenizer, LoadOptions, Model, SinkCache};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

const SENTENCES: &[&str] = &[
    "The morning train left the station a little after seven.",
    "She packed bread, cheese and two apples for the long walk.",
    "Rain had fallen all night, and the river ran high and brown.",
    "In the village square an old man was selling fresh honey.",
    "The children laughed as the dog chased its own tail.",
    "He wrote a letter to his sister and posted it before noon.",
    "Clouds gathered over the hills while the farmers worked.",
    "A small boat drifted slowly past the lighthouse.",
    "The library was quiet except for the ticking of a clock.",
    "They planted tomatoes, beans and sunflowers in the garden.",
    "At dinner everyone talked about the coming summer fair.",
    "The teacher explained how bees make honey from flowers.",
];

#[test]
fn twenty_thousand_tokens_flat_memory_sane_output() {
    let path = common::smollm_path();
    let dev = Device::Cpu;
    let model = Model::load(&path, &dev, LoadOptions::default()).unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let tk = GgufTokenizer::from_gguf(
        &candle_core::quantized::gguf_file::Content::read(&mut f).unwrap(),
    )
    .unwrap();
    let mut cache = SinkCache::new(
        model.spec(),
        CacheConfig {
            sinks: 4,
            window: 252,
            evict_step: 1,
            precision: sinkchat_engine::KvPrecision::F32,
        },
        &dev,
    )
    .unwrap();

    // A pasted text of ~18,000 tokens, in a deterministic shuffled order.
    let mut text = String::from("<|im_start|>user\nPlease read this diary and continue it.\n\n");
    let mut state = 7u64;
    let mut n_tokens = 0;
    while n_tokens < 18_000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        let s = SENTENCES[(state >> 33) as usize % SENTENCES.len()];
        text.push_str(s);
        text.push(' ');
        n_tokens += 12;
    }
    text.push_str("<|im_end|>\n<|im_start|>assistant\n");
    let ids = tk.encode(&text, true).unwrap();
    assert!(ids.len() >= 17_000, "{}", ids.len());

    // The first 2,000 tokens fill the cache and warm the allocator; memory is measured from
    // there on.
    model.prefill(&ids[..2000], &mut cache, 64, |_| {}).unwrap();
    let rss_start = rss_kib();
    let mut logits = model.prefill(&ids[2000..], &mut cache, 64, |_| {}).unwrap();
    let mut sampler = Sampler::new(SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        repeat_penalty: 1.1,
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    let mut out = Vec::new();
    let target = 20_000 - ids.len();
    while out.len() < target {
        let v: Vec<f32> = logits.to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "non-finite logits after {} tokens",
            cache.tokens_seen()
        );
        let t = sampler.sample(&v, &out);
        assert!((t as usize) < tk.vocab_size());
        out.push(t);
        logits = model.forward(&[t], &mut cache, Logits::Last).unwrap();
    }
    let rss_end = rss_kib();
    let stats = cache.stats();
    assert!(stats.tokens_seen >= 20_000);
    assert_eq!(stats.window_used, 252);
    assert_eq!(stats.evicted_total, stats.tokens_seen - 256);
    // Memory: the cache was allocated up front; 18,000 more tokens add no more than noise.
    assert!(
        rss_end < rss_start + 64 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );

    // The model still writes English: mostly letters and spaces, and common words.
    let reply = tk.decode(&out).unwrap();
    let letters = reply
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
        .count();
    assert!(
        letters as f64 > 0.75 * reply.chars().count() as f64,
        "not prose: {}",
        &reply[..reply.len().min(500)]
    );
    let lower = reply.to_lowercase();
    let common = [" the ", " and ", " a ", " to ", " of ", " was ", " in "];
    assert!(
        common.iter().filter(|w| lower.contains(*w)).count() >= 4,
        "{}",
        &reply[..reply.len().min(500)]
    );
}
