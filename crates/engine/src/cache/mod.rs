//! `SinkCache`: the StreamingLLM KV cache of one conversation.
//!
//! Layout, per layer, of the K and V tensors `(n_kv_head, capacity, head_dim)`, preallocated
//! once on the model's device and written in place. A layer stores its K and V by the ring of
//! its attention kind ([`ring::Ring`]; every layer of one kind shares one ring's bookkeeping):
//!
//! - a **global** layer (every layer of most models) keeps the StreamingLLM layout: slots
//!   `0..sinks` hold the first `sinks` tokens of the conversation for ever (the attention sinks,
//!   and by default the whole system prompt with them); slots `sinks..capacity` are a ring
//!   buffer of the most recent `window` tokens. Window token `j` (the `j`-th token after the
//!   sinks, so text position `sinks + j`) lives in slot `sinks + j % window`. Evicting the
//!   oldest token costs nothing: its slot is overwritten.
//! - a **sliding** layer (Gemma's local layers, trained to see only the last `n` tokens) keeps
//!   no sinks and a ring of its own span, plus the slots one chunk of a prompt needs (hidden
//!   from each query past its span, [`ring::visible`]): its memory is its trained window
//!   whatever the chat's window is, and it never sees more than it was trained on.
//!
//! Positions: StreamingLLM assigns positions by place in the cache (sinks `0..S`, the window
//! `S..S+w` in order, the query next). Keys are stored rotated at their *text* position. For
//! two window tokens, or a window token and the query, the difference of text positions equals
//! the difference of cache places, because the window is always a contiguous run of text; RoPE
//! scores depend only on that difference, so window scores are exact with no re-rotation ever.
//! The sinks are stored at their own places `0..S` too, and the query is rotated a second time
//! at its cache place for its scores against them. Angles are computed from integers in f64
//! (see `rope`), so nothing drifts however long the conversation runs. A sliding ring has no
//! sinks, so all its scores are between window tokens: exact the same way.
//!
//! Precision: K and V are kept in f16 or f32 ([`KvPrecision`]). f16 halves the cache's memory
//! and the bytes a decode step reads from it (llama.cpp's default too); values are computed in
//! f32 and rounded once, when written, on the CPU and on a CUDA GPU alike. f32 is kept for the
//! exactness tests (a streamed cache against a fresh forward), for whoever wants the model's
//! numbers bit for bit, and on Metal.

mod ring;
#[cfg(test)]
mod tests;

use candle_core::{DType, Device, Tensor};

use crate::arch::AttentionKind;
use crate::{spec::ModelSpec, Error, Result};

use ring::Counts;
pub(crate) use ring::{visible, Ring, RingState, Visibility, WritePlan};

/// The longest chunk of a prompt a sliding ring makes room for: its span plus this, less one.
pub const SLIDING_CHUNK: usize = 256;

/// How a cache stores K and V.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS,
)]
#[serde(rename_all = "lowercase")]
pub enum KvPrecision {
    /// Half precision: half the memory; the values written are rounded to f16.
    F16,
    /// Single precision, exactly what the model computed. The default of a settings file or a
    /// snapshot written before the choice existed (their caches were f32).
    #[default]
    F32,
}

impl KvPrecision {
    /// Bytes of one stored value.
    pub fn bytes(self) -> usize {
        match self {
            KvPrecision::F16 => 2,
            KvPrecision::F32 => 4,
        }
    }

    /// What a cache on `device` actually stores: as asked on the CPU and on a CUDA GPU, whose
    /// attention kernels read both (`attend.rs`, `attend.cu`); f32 on Metal, which has no
    /// kernel of ours.
    pub fn on(self, device: &Device) -> KvPrecision {
        if device.is_metal() {
            KvPrecision::F32
        } else {
            self
        }
    }

    pub(crate) fn dtype(self) -> DType {
        match self {
            KvPrecision::F16 => DType::F16,
            KvPrecision::F32 => DType::F32,
        }
    }
}

/// Settings of a sink cache, fixed for the life of a conversation's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
pub struct CacheConfig {
    /// Pinned slots: the first tokens of the conversation, never evicted.
    pub sinks: usize,
    /// Slots of the rolling window of recent tokens.
    pub window: usize,
    /// Tokens evicted at once when the window is full (1 as in the paper).
    pub evict_step: usize,
    /// How K and V are stored (absent from settings and snapshots written before the choice:
    /// f32, what those caches were).
    #[serde(default)]
    pub precision: KvPrecision,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            sinks: 4,
            window: 2044,
            evict_step: 1,
            precision: KvPrecision::F16,
        }
    }
}

impl CacheConfig {
    pub fn validate(&self) -> Result<()> {
        if self.window == 0 {
            return Err(Error::InvalidCacheConfig(
                "the window must hold at least one token".into(),
            ));
        }
        if self.window < self.sinks {
            return Err(Error::InvalidCacheConfig(format!(
                "the window ({}) is smaller than the sinks ({})",
                self.window, self.sinks
            )));
        }
        if self.evict_step == 0 || self.evict_step > self.window {
            return Err(Error::InvalidCacheConfig(format!(
                "the eviction step must be between 1 and the window size ({}), not {}",
                self.window, self.evict_step
            )));
        }
        if self
            .sinks
            .checked_add(self.window)
            .is_none_or(|n| n > 1 << 24)
        {
            return Err(Error::InvalidCacheConfig(
                "the cache is too large (at most 16,777,216 tokens)".into(),
            ));
        }
        Ok(())
    }

    pub fn capacity(&self) -> usize {
        self.sinks + self.window
    }

    /// Most tokens the pinned opening of a chat may take (system prompt and anything pinned
    /// with it): half the window. A longer opening scrolls like other text.
    pub fn pin_budget(&self) -> usize {
        self.window / 2
    }

    /// Most tokens of transcript a memory rebuilt from it reads back: three quarters of the
    /// window, so the new turn and the reply still have room.
    pub fn rebuild_budget(&self) -> usize {
        self.window * 3 / 4
    }

    /// Room kept for a reply when judging what the next turn will push out of the window: the
    /// longest reply asked for, at most the quarter of the window that a rebuild leaves for the
    /// new turn and the reply.
    pub fn reply_room(&self, max_tokens: usize) -> usize {
        max_tokens.min(self.window - self.rebuild_budget())
    }
}

/// What the gauge shows after each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
pub struct CacheStats {
    pub capacity: usize,
    pub pinned: usize,
    pub pinned_used: usize,
    pub window: usize,
    pub window_used: usize,
    pub tokens_seen: u64,
    pub evicted_total: u64,
    pub evicted_last_step: u64,
    /// Text position of the oldest token still in the window (equal to `pinned` before any
    /// eviction).
    pub window_start: u64,
    pub bytes: usize,
    pub device: String,
    /// Tokens of the pinned part that are the opening's tail span
    /// ([`crate::engine::Spans::opening_tail`]). Set by the engine, which knows the opening.
    #[serde(default)]
    pub opening_tail_used: usize,
    /// Room the pin budget leaves for that span beside the rest of the opening.
    #[serde(default)]
    pub opening_tail_room: usize,
    /// Tokens in the window that are turns' head spans ([`crate::engine::Spans::turn_head`]);
    /// they scroll out with their turn.
    #[serde(default)]
    pub turn_head_used: usize,
    /// Layers that see only a sliding span of recent tokens (Gemma's local layers), and that
    /// span: they keep their own small ring, counted in `bytes`. 0: none.
    #[serde(default)]
    pub sliding_layers: usize,
    #[serde(default)]
    pub sliding_window: usize,
}

/// A cache's bookkeeping, as a snapshot stores it: its settings, the main ring's (the global
/// one where the model has global layers; the same JSON as before rings existed) and any other
/// ring's, in ring order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CacheState {
    pub config: CacheConfig,
    #[serde(flatten)]
    pub main: RingState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<RingState>,
}

impl CacheState {
    /// The figures a cache with this bookkeeping shows (a parked cache, read from its
    /// snapshot's header without its tensors), for a model shaped like `spec` on `device`.
    pub(crate) fn stats(&self, spec: &ModelSpec, device: &Device) -> CacheStats {
        let (rings, layer_ring) = SinkCache::rings(spec, self.config, None);
        let main = &rings[0];
        let mut stats = Counts::of(main.sinks, main.window, &self.main).stats(
            0,
            SinkCache::bytes_of(spec, &rings, &layer_ring, self.config.precision.on(device)),
            crate::device::device_label(device).to_string(),
        );
        SinkCache::sliding_figures(&rings, &layer_ring, &mut stats);
        stats
    }
}

/// One layer's preallocated K and V, `(n_kv_head, capacity, head_dim)` each.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

/// The attention-sink KV cache of one conversation.
#[derive(Debug, Clone)]
pub struct SinkCache {
    config: CacheConfig,
    /// One ring per attention kind among the layers; the first is the main one, which the
    /// gauge shows (the global ring where there are global layers).
    rings: Vec<Ring>,
    /// The ring each layer stores its K and V by.
    layer_ring: Vec<usize>,
    pub(crate) layers: Vec<LayerKv>,
    device: Device,
    bytes: usize,
}

impl SinkCache {
    /// Allocates the cache for `spec` on `device`; nothing is allocated later.
    pub fn new(spec: &ModelSpec, config: CacheConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        Self::build(spec, config, None, device)
    }

    /// The rings for `spec`'s layers and each layer's ring: the global ring first (`config`'s
    /// sinks and window, or `view` = `(window seen, chunk)` for [`SinkCache::with_view`]), then
    /// one per sliding span, each with room for a chunk of [`SLIDING_CHUNK`] (or `view`'s).
    fn rings(
        spec: &ModelSpec,
        config: CacheConfig,
        view: Option<(usize, usize)>,
    ) -> (Vec<Ring>, Vec<usize>) {
        let kinds: Vec<AttentionKind> = if spec.layer_kinds.len() == spec.n_layer {
            spec.layer_kinds.clone()
        } else {
            vec![AttentionKind::Global; spec.n_layer]
        };
        let mut order: Vec<AttentionKind> = Vec::new();
        if kinds.contains(&AttentionKind::Global) {
            order.push(AttentionKind::Global);
        }
        for k in &kinds {
            if !order.contains(k) {
                order.push(*k);
            }
        }
        let rings = order
            .iter()
            .map(|k| match *k {
                AttentionKind::Global => Ring::new(
                    *k,
                    config.sinks,
                    config.window,
                    config.evict_step,
                    view.map(|v| v.0),
                ),
                AttentionKind::Sliding(n) => {
                    let chunk = view.map_or(n.min(SLIDING_CHUNK), |v| v.1).max(1);
                    Ring::new(*k, 0, n + chunk - 1, 1, Some(n))
                }
            })
            .collect();
        let layer_ring = kinds
            .iter()
            .map(|k| order.iter().position(|o| o == k).expect("listed"))
            .collect();
        (rings, layer_ring)
    }

    /// Bytes a cache shaped by `config` takes for `spec` on `device`, every layer's ring
    /// counted (checked against the memory free before anything is allocated).
    pub fn bytes_for(spec: &ModelSpec, config: CacheConfig, device: &Device) -> usize {
        let (rings, layer_ring) = Self::rings(spec, config, None);
        Self::bytes_of(spec, &rings, &layer_ring, config.precision.on(device))
    }

    /// Bytes of K and V of `rings` laid out over `spec`'s layers, stored in `precision`.
    fn bytes_of(spec: &ModelSpec, rings: &[Ring], layer_ring: &[usize], p: KvPrecision) -> usize {
        layer_ring
            .iter()
            .map(|&r| 2 * spec.n_kv_head * rings[r].capacity() * spec.head_dim * p.bytes())
            .sum()
    }

    /// The sliding layers' count and span, beside the main ring's figures.
    fn sliding_figures(rings: &[Ring], layer_ring: &[usize], stats: &mut CacheStats) {
        let sliding: Vec<usize> = layer_ring
            .iter()
            .filter_map(|&r| match rings[r].kind {
                AttentionKind::Sliding(n) => Some(n),
                AttentionKind::Global => None,
            })
            .collect();
        stats.sliding_layers = sliding.len();
        stats.sliding_window = sliding.first().copied().unwrap_or(0);
    }

    fn build(
        spec: &ModelSpec,
        config: CacheConfig,
        view: Option<(usize, usize)>,
        device: &Device,
    ) -> Result<Self> {
        let (rings, layer_ring) = Self::rings(spec, config, view);
        let precision = config.precision.on(device);
        let mut layers = Vec::with_capacity(spec.n_layer);
        for &r in &layer_ring {
            let shape = (spec.n_kv_head, rings[r].capacity(), spec.head_dim);
            layers.push(LayerKv {
                k: Tensor::zeros(shape, precision.dtype(), device)?,
                v: Tensor::zeros(shape, precision.dtype(), device)?,
            });
        }
        let bytes = Self::bytes_of(spec, &rings, &layer_ring, precision);
        Ok(Self {
            config,
            rings,
            layer_ring,
            layers,
            device: device.clone(),
            bytes,
        })
    }

    /// A cache for scoring long texts in chunks exactly as if they were fed one token at a
    /// time through a cache of `sinks + window` slots: `chunk - 1` extra window slots hold the
    /// tokens that a one-token-at-a-time cache would already have evicted, and the mask hides
    /// them from each query that would no longer see them, so every query sees the sinks plus
    /// the `window` most recent tokens, at the same cache places. Perplexity runs use it to
    /// score a chunk per forward instead of a token. (Sliding rings get room for the chunk
    /// too.)
    pub fn with_view(
        spec: &ModelSpec,
        sinks: usize,
        window: usize,
        chunk: usize,
        precision: KvPrecision,
        device: &Device,
    ) -> Result<Self> {
        if chunk == 0 {
            return Err(Error::InvalidCacheConfig(
                "the chunk must hold a token".into(),
            ));
        }
        let config = CacheConfig {
            sinks,
            window: window + chunk - 1,
            evict_step: 1,
            precision,
        };
        CacheConfig { window, ..config }.validate()?;
        Self::build(spec, config, Some((window, chunk)), device)
    }

    /// Largest chunk a [`SinkCache::with_view`] cache takes while keeping its exactness.
    pub fn view_chunk(&self) -> Option<usize> {
        self.rings[0].view.map(|v| self.config.window - v + 1)
    }

    /// `(layers, kv heads, head dim)` of the tensors.
    pub fn shape(&self) -> (usize, usize, usize) {
        let d = self
            .layers
            .first()
            .map(|l| l.k.dims().to_vec())
            .unwrap_or_default();
        (
            self.layers.len(),
            d.first().copied().unwrap_or(0),
            d.get(2).copied().unwrap_or(0),
        )
    }

    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// How K and V are stored here (f32 on a GPU whatever the settings ask).
    pub fn precision(&self) -> KvPrecision {
        self.config.precision.on(&self.device)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tokens the conversation has fed through this cache.
    pub fn tokens_seen(&self) -> u64 {
        self.rings[0].tokens_seen()
    }

    /// Text position of the oldest token still visible after the pinned ones.
    pub fn window_start(&self) -> u64 {
        self.rings[0].window_start()
    }

    /// Tokens held by the main ring: pinned plus window.
    pub fn len(&self) -> usize {
        self.rings[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = self.rings[0].stats(
            self.bytes,
            crate::device::device_label(&self.device).to_string(),
        );
        Self::sliding_figures(&self.rings, &self.layer_ring, &mut stats);
        stats
    }

    /// Forgets everything (the tensors stay allocated).
    pub fn clear(&mut self) {
        for r in &mut self.rings {
            r.clear();
        }
    }

    /// Largest chunk one forward may feed: a chunk must not overwrite its own tokens, nor a
    /// sliding ring's tokens that the chunk's first query still sees.
    pub fn max_chunk(&self) -> usize {
        self.rings
            .iter()
            .map(Ring::max_chunk)
            .min()
            .unwrap_or(1)
            .max(1)
    }

    /// Reserves slots for `n` new tokens in every ring, evicting the oldest window tokens as
    /// needed, and says where each goes, ring by ring. Must be followed by a forward that
    /// writes them.
    pub(crate) fn plan_write(&mut self, n: usize) -> Vec<WritePlan> {
        assert!(
            n >= 1 && n <= self.max_chunk(),
            "chunk of {n} tokens does not fit"
        );
        self.rings.iter_mut().map(|r| r.plan_write(n)).collect()
    }

    /// The rings, the main one first.
    pub(crate) fn rings_ref(&self) -> &[Ring] {
        &self.rings
    }

    /// The ring layer `layer` stores its K and V by.
    pub(crate) fn ring_of(&self, layer: usize) -> usize {
        self.layer_ring[layer]
    }

    /// Text position held by each of the main ring's first read slots (`None` when empty).
    pub fn slot_positions(&self) -> Vec<Option<u64>> {
        self.rings[0].slot_positions()
    }

    /// Cache place of each slot the main ring holds (see [`Ring::slot_places`]).
    pub fn slot_places(&self) -> Vec<Option<u64>> {
        self.rings[0].slot_places()
    }

    /// The K tensor of one layer, `(n_kv_head, capacity, head_dim)`: keys rotated at their
    /// text positions (see the module docs).
    pub fn layer_keys(&self, layer: usize) -> &Tensor {
        &self.layers[layer].k
    }

    pub fn layer_values(&self, layer: usize) -> &Tensor {
        &self.layers[layer].v
    }

    /// Rebuilds a cache from a snapshot's parts: its bookkeeping and `data`, per layer K then
    /// V of the first slots its ring has read, `(n_kv_head, read, head_dim)` values each,
    /// stored little-endian in `values` precision (what [`SinkCache::write_layers`] wrote).
    /// Values go into the tensors as they are stored; only where the new cache holds another
    /// precision (an f16 snapshot restored on a GPU, whose cache is f32) are they converted,
    /// exactly.
    pub(crate) fn from_parts(
        spec: &ModelSpec,
        state: &CacheState,
        data: &[u8],
        values: KvPrecision,
        device: &Device,
    ) -> Result<Self> {
        let bad = |what: &str| Error::Snapshot(what.to_string());
        state
            .config
            .validate()
            .map_err(|_| bad("its settings are not valid"))?;
        let mut c = Self::new(spec, state.config, device)?;
        if state.more.len() + 1 != c.rings.len() {
            return Err(bad("its rings do not fit the model"));
        }
        let states = std::iter::once(&state.main).chain(&state.more);
        for (ring, s) in c.rings.iter_mut().zip(states) {
            if !ring.restore(s) {
                return Err(bad("its bookkeeping does not fit its settings"));
            }
        }
        if data.len() != c.data_len(values) {
            return Err(bad("its data does not fit the model"));
        }
        let dtype = c.precision().dtype();
        let mut at = 0;
        for li in 0..c.layers.len() {
            let read = c.rings[c.layer_ring[li]].read_len();
            let per = spec.n_kv_head * read * spec.head_dim * values.bytes();
            if read == 0 {
                continue;
            }
            let shape = [spec.n_kv_head, read, spec.head_dim];
            let put = |bytes: &[u8]| -> Result<Tensor> {
                Ok(
                    Tensor::from_raw_buffer(bytes, values.dtype(), &shape, device)?
                        .to_dtype(dtype)?,
                )
            };
            let k = put(&data[at..at + per])?;
            let v = put(&data[at + per..at + 2 * per])?;
            c.layers[li].k.slice_set(&k, 1, 0)?;
            c.layers[li].v.slice_set(&v, 1, 0)?;
            at += 2 * per;
        }
        Ok(c)
    }

    /// Bytes [`SinkCache::write_layers`] writes with values in `values` precision.
    pub(crate) fn data_len(&self, values: KvPrecision) -> usize {
        let (_, nkv, hd) = self.shape();
        self.layer_ring
            .iter()
            .map(|&r| 2 * nkv * self.rings[r].read_len() * hd * values.bytes())
            .sum()
    }

    /// The bookkeeping a snapshot stores next to the tensors.
    pub(crate) fn state(&self) -> CacheState {
        CacheState {
            config: self.config,
            main: self.rings[0].state(),
            more: self.rings[1..].iter().map(Ring::state).collect(),
        }
    }

    /// The first `read` slots of one of this cache's K or V tensors, `(n_kv_head, read,
    /// head_dim)`, in f32: f32 as it is (a view), f16 on the CPU widened head by head with
    /// F16C (candle's own conversion of the strided slots went value by value, and made a
    /// 512-token prompt a tenth slower).
    pub(crate) fn read_f32(t: &Tensor, read: usize) -> Result<Tensor> {
        use half::slice::HalfFloatSliceExt;
        let part = t.narrow(1, 0, read)?;
        if t.dtype() != DType::F16 || !t.device().is_cpu() || read == 0 {
            return Ok(part.to_dtype(DType::F32)?);
        }
        let (nkv, cap, hd) = t.dims3()?;
        let (storage, layout) = t.storage_and_layout();
        let (candle_core::Storage::Cpu(candle_core::CpuStorage::F16(d)), Some((start, _))) =
            (&*storage, layout.contiguous_offsets())
        else {
            return Ok(part.to_dtype(DType::F32)?);
        };
        let mut out = vec![0f32; nkv * read * hd];
        for (h, dst) in out.chunks_exact_mut(read * hd).enumerate() {
            let src = start + h * cap * hd;
            d[src..src + read * hd].convert_to_f32_slice(dst);
        }
        Ok(Tensor::from_vec(out, (nkv, read, hd), t.device())?)
    }

    /// Appends K then V of the slots written so far, per layer, to `out` as they are stored
    /// (little-endian f16 or f32, [`SinkCache::precision`]): what a snapshot holds, with no
    /// conversion either way.
    pub(crate) fn write_layers(&self, out: &mut Vec<u8>) -> Result<()> {
        for (li, l) in self.layers.iter().enumerate() {
            let read = self.rings[self.layer_ring[li]].read_len();
            if read == 0 {
                continue;
            }
            for t in [&l.k, &l.v] {
                let part = t.narrow(1, 0, read)?.flatten_all()?;
                match self.precision() {
                    KvPrecision::F16 => {
                        for x in part.to_vec1::<half::f16>()? {
                            out.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                    KvPrecision::F32 => {
                        for x in part.to_vec1::<f32>()? {
                            out.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
