//! The cache's bookkeeping on tiny shapes.

use super::*;
use crate::spec::Architecture;

fn spec() -> ModelSpec {
    ModelSpec {
        architecture: Architecture::Llama,
        name: "t".into(),
        n_layer: 1,
        n_head: 2,
        n_kv_head: 1,
        head_dim: 4,
        embedding_length: 8,
        rope_freq_base: 10_000.0,
        rms_norm_eps: 1e-5,
        trained_context: 64,
        vocab_size: 10,
        sliding: None,
        rope_freq_base_sliding: 10_000.0,
        rope_linear_factor: 1.0,
        attention_scale: 0.5,
        final_logit_softcap: None,
        layer_kinds: vec![],
    }
}

fn cfg(sinks: usize, window: usize, evict_step: usize) -> CacheConfig {
    CacheConfig {
        sinks,
        window,
        evict_step,
        precision: KvPrecision::F32,
    }
}

#[test]
fn rejects_bad_settings() {
    let d = Device::Cpu;
    assert!(SinkCache::new(&spec(), cfg(4, 0, 1), &d).is_err());
    assert!(SinkCache::new(&spec(), cfg(8, 4, 1), &d).is_err());
    assert!(SinkCache::new(&spec(), cfg(2, 4, 0), &d).is_err());
    assert!(SinkCache::new(&spec(), cfg(2, 4, 5), &d).is_err());
    let e = SinkCache::new(&spec(), cfg(8, 4, 1), &d).unwrap_err();
    assert!(e.to_string().contains("smaller than the sinks"), "{e}");
}

#[test]
fn ring_keeps_sinks_and_most_recent_window() {
    let mut c = SinkCache::new(&spec(), cfg(2, 4, 1), &Device::Cpu).unwrap();
    let p = c.plan_write(3).remove(0);
    assert_eq!(p.positions, vec![0, 1, 2]);
    assert_eq!(p.slots, vec![0, 1, 2]);
    for _ in 0..7 {
        c.plan_write(1);
    }
    // 10 tokens seen: sinks 0,1, window 6..9.
    assert_eq!(c.tokens_seen(), 10);
    assert_eq!(c.stats().evicted_total, 4);
    let mut held: Vec<u64> = c.slot_positions().into_iter().flatten().collect();
    held.sort();
    assert_eq!(held, vec![0, 1, 6, 7, 8, 9]);
    let mut places: Vec<u64> = c.slot_places().into_iter().flatten().collect();
    places.sort();
    assert_eq!(places, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(c.window_start(), 6);
}

/// An f16 cache's slots come back widened exactly, an empty read included (a snapshot
/// of a cache that holds nothing yet).
#[test]
fn f16_slots_read_back_exactly() {
    let mut c = SinkCache::new(
        &spec(),
        CacheConfig {
            precision: KvPrecision::F16,
            ..cfg(2, 4, 1)
        },
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(c.layers[0].k.dtype(), DType::F16);
    assert_eq!(c.stats().bytes, 2 * 6 * 4 * 2);
    let mut empty = Vec::new();
    c.write_layers(&mut empty).unwrap();
    assert!(
        empty.is_empty(),
        "a cache that holds nothing writes nothing"
    );
    let vals: Vec<f32> = (0..24).map(|i| i as f32 / 8.0 - 1.3).collect();
    let t = Tensor::from_vec(vals, (1, 6, 4), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap();
    c.layers[0].k = t.clone();
    let want = t.narrow(1, 0, 3).unwrap().to_dtype(DType::F32).unwrap();
    let got = SinkCache::read_f32(&c.layers[0].k, 3).unwrap();
    assert_eq!(got.dims(), &[1, 3, 4]);
    assert_eq!(
        got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(
        SinkCache::read_f32(&c.layers[0].k, 0).unwrap().dims(),
        &[1, 0, 4]
    );
}

#[test]
fn chunk_eviction_and_masks() {
    let mut c = SinkCache::new(&spec(), cfg(1, 4, 2), &Device::Cpu).unwrap();
    c.plan_write(1);
    c.plan_write(4); // sink 0, window 1..4, full
    let p = c.plan_write(1).remove(0); // evicts 2 (step), leaves a hole
    assert_eq!(c.stats().evicted_last_step, 2);
    assert_eq!(p.positions, vec![5]);
    assert!(p.needs_mask, "evicted hole must be masked");
    let m = c.rings[0]
        .mask(&p.positions, &Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let holes = m[0].iter().filter(|x| x.is_infinite()).count();
    assert_eq!(holes, 1);
    // Query places are contiguous after the sinks.
    assert_eq!(p.places, vec![1 + 2]);
}

#[test]
fn ten_million_tokens_no_drift() {
    let mut c = SinkCache::new(&spec(), cfg(4, 16, 1), &Device::Cpu).unwrap();
    let mut seen = 0u64;
    while seen < 10_000_000 {
        let n = if seen < 100 {
            1
        } else {
            16.min((10_000_000 - seen) as usize)
        };
        let p = c.plan_write(n).remove(0);
        seen += n as u64;
        assert_eq!(*p.positions.last().unwrap(), seen - 1);
    }
    assert_eq!(c.tokens_seen(), 10_000_000);
    let mut places: Vec<u64> = c.slot_places().into_iter().flatten().collect();
    places.sort();
    assert_eq!(places, (0..20).collect::<Vec<_>>());
    let held: Vec<u64> = c.slot_positions().into_iter().flatten().collect();
    assert!(held.contains(&(10_000_000 - 1)) && held.contains(&(10_000_000 - 16)));
}

fn mixed(sliding: usize) -> ModelSpec {
    ModelSpec {
        n_layer: 3,
        layer_kinds: vec![
            AttentionKind::Sliding(sliding),
            AttentionKind::Global,
            AttentionKind::Sliding(sliding),
        ],
        ..spec()
    }
}

/// A model whose layers differ keeps one ring per kind: the global ring (sinks and the
/// window) first, whatever the layers' order, and a sliding ring of the layer's own span
/// with room for a chunk, no sinks; each layer's tensors are its ring's size.
#[test]
fn sliding_layers_keep_their_own_ring_without_sinks() {
    let c = SinkCache::new(&mixed(8), cfg(2, 32, 1), &Device::Cpu).unwrap();
    assert_eq!(c.rings.len(), 2);
    assert_eq!((c.rings[0].sinks, c.rings[0].window), (2, 32));
    assert_eq!((c.rings[1].sinks, c.rings[1].window), (0, 8 + 8 - 1));
    assert_eq!(c.rings[1].view, Some(8));
    assert_eq!((c.ring_of(0), c.ring_of(1), c.ring_of(2)), (1, 0, 1));
    assert_eq!(c.layers[0].k.dims(), &[1, 15, 4]);
    assert_eq!(c.layers[1].k.dims(), &[1, 34, 4]);
    let s = c.stats();
    assert_eq!((s.sliding_layers, s.sliding_window), (2, 8));
    assert_eq!(s.bytes, 2 * 4 * 4 * (34 + 2 * 15));
    assert_eq!(s.capacity, 34, "the gauge shows the global ring");
    assert_eq!(
        c.max_chunk(),
        8,
        "a chunk fits the sliding ring's spare slots"
    );
    // Without sliding layers nothing changes.
    let plain = SinkCache::new(&spec(), cfg(2, 32, 1), &Device::Cpu).unwrap();
    assert_eq!(plain.rings.len(), 1);
    assert_eq!(plain.stats().sliding_layers, 0);
    assert_eq!(plain.max_chunk(), 32);
}

/// After any stream, in chunks or token by token, a sliding ring's query sees exactly the last
/// `span` tokens, itself included, and nothing older: the trained sliding window.
#[test]
fn a_sliding_ring_shows_each_query_exactly_its_span() {
    for chunk in [1, 3, 8] {
        let mut c = SinkCache::new(&mixed(8), cfg(2, 32, 1), &Device::Cpu).unwrap();
        let mut fed = 0u64;
        while fed < 100 {
            let n = chunk.min((100 - fed) as usize);
            let plans = c.plan_write(n);
            let p = &plans[1];
            let v = c.rings[1].visibility();
            for &q in &p.positions {
                let seen: Vec<u64> = v
                    .slot_pos
                    .iter()
                    .copied()
                    .filter(|&s| visible(q, s, v.pinned, v.view))
                    .collect();
                let mut seen = seen;
                seen.sort();
                let want: Vec<u64> = (q.saturating_sub(7)..=q).collect();
                assert_eq!(seen, want, "chunk {chunk}, query {q}");
            }
            assert!(p.needs_mask || fed < 8, "chunk {chunk} at {fed}");
            fed += n as u64;
        }
        assert_eq!(c.tokens_seen(), 100);
        assert_eq!(c.rings[1].tokens_seen(), 100);
    }
}

/// A snapshot's bookkeeping holds every ring and comes back whole; one whose rings do not
/// fit the model is refused.
#[test]
fn the_state_of_every_ring_round_trips() {
    let m = mixed(8);
    let mut c = SinkCache::new(&m, cfg(2, 32, 1), &Device::Cpu).unwrap();
    for _ in 0..50 {
        c.plan_write(1);
    }
    let state = c.state();
    assert_eq!(state.more.len(), 1);
    let json = serde_json::to_value(&state).unwrap();
    assert!(
        json.get("slot_pos").is_some(),
        "the main ring keeps its old fields"
    );
    let back: CacheState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
    let mut data = Vec::new();
    c.write_layers(&mut data).unwrap();
    assert_eq!(data.len(), c.data_len(KvPrecision::F32));
    let r = SinkCache::from_parts(&m, &state, &data, KvPrecision::F32, &Device::Cpu).unwrap();
    assert_eq!(r.state(), state);
    let mut live = c.stats();
    live.evicted_last_step = 0; // a figure of the last step, not kept
    assert_eq!(r.stats(), live);
    let parked = state.stats(&m, &Device::Cpu);
    assert_eq!((parked.tokens_seen, parked.bytes), (50, c.stats().bytes));
    assert_eq!(parked.sliding_layers, 2);
    let e = SinkCache::from_parts(&spec(), &state, &data, KvPrecision::F32, &Device::Cpu);
    assert!(
        e.is_err(),
        "a snapshot with a sliding ring on a model without one"
    );
}
