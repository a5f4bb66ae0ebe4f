//! `SinkCache`: the StreamingLLM KV cache of one conversation.
//!
//! Layout, per layer, of the K and V tensors `(n_kv_head, capacity, head_dim)`, preallocated
//! once on the model's device and written in place:
//!
//! - slots `0..sinks` hold the first `sinks` tokens of the conversation for ever (the attention
//!   sinks, and by default the whole system prompt with them);
//! - slots `sinks..capacity` are a ring buffer of the most recent `window` tokens. Window token
//!   `j` (the `j`-th token after the sinks, so text position `sinks + j`) lives in slot
//!   `sinks + j % window`. Evicting the oldest token costs nothing: its slot is overwritten.
//!
//! Positions: StreamingLLM assigns positions by place in the cache (sinks `0..S`, the window
//! `S..S+w` in order, the query next). Keys are stored rotated at their *text* position. For
//! two window tokens, or a window token and the query, the difference of text positions equals
//! the difference of cache places, because the window is always a contiguous run of text; RoPE
//! scores depend only on that difference, so window scores are exact with no re-rotation ever.
//! The sinks are stored at their own places `0..S` too, and the query is rotated a second time
//! at its cache place for its scores against them. Angles are computed from integers in f64
//! (see `rope`), so nothing drifts however long the conversation runs.
//!
//! Precision: K and V are kept in f16 or f32 ([`KvPrecision`]). f16 halves the cache's memory
//! and the bytes a decode step reads from it (llama.cpp's default too); values are computed in
//! f32 and rounded once, when written. f32 is kept for the exactness tests (a streamed cache
//! against a fresh forward) and for GPUs, whose attention kernel reads f32.

use candle_core::{DType, Device, Tensor};

use crate::{spec::ModelSpec, Error, Result};

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

    /// What a cache on `device` actually stores: f16 only on the CPU, whose attention reads
    /// it; a GPU's attention kernel (`attend.cu`) reads f32.
    pub fn on(self, device: &Device) -> KvPrecision {
        if device.is_cpu() {
            self
        } else {
            KvPrecision::F32
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

    /// Bytes of K and V per cached token for a model whose f32 figure is
    /// `f32_bytes_per_token` ([`ModelSpec::kv_bytes_per_token`]), as stored on `device`.
    pub fn kv_bytes_per_token(&self, f32_bytes_per_token: usize, device: &Device) -> usize {
        f32_bytes_per_token / 4 * self.precision.on(device).bytes()
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
    /// Tokens of the pinned part that are messages the user pinned (the rest is the system
    /// prompt and the first tokens). Set by the engine, which knows the chat's opening.
    #[serde(default)]
    pub pins_used: usize,
    /// Room the pinned part has for pinned messages: half the window, less the system prompt.
    #[serde(default)]
    pub pins_room: usize,
    /// Tokens in the window that are earlier messages given back by recall; they scroll out
    /// with the turn that brought them.
    #[serde(default)]
    pub recalled_used: usize,
}

/// A cache's bookkeeping, as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CacheState {
    pub config: CacheConfig,
    pub sinks_used: usize,
    pub win_start: u64,
    pub win_len: usize,
    pub evicted_total: u64,
    pub slot_pos: Vec<u64>,
}

impl CacheState {
    /// The figures a cache with this bookkeeping shows (a parked cache, read from its
    /// snapshot's header without its tensors). `kv_bytes_per_token`: as the cache stores them
    /// ([`CacheConfig::kv_bytes_per_token`]).
    pub(crate) fn stats(&self, kv_bytes_per_token: usize, device: &str) -> CacheStats {
        Counts {
            config: self.config,
            sinks_used: self.sinks_used,
            win_start: self.win_start,
            win_len: self.win_len,
            evicted_total: self.evicted_total,
        }
        .stats(
            0,
            self.config.capacity().saturating_mul(kv_bytes_per_token),
            device.to_string(),
        )
    }
}

/// The bookkeeping every figure of a cache derives from, a live cache's or a parked one's:
/// one place computes them.
#[derive(Clone, Copy)]
struct Counts {
    config: CacheConfig,
    sinks_used: usize,
    win_start: u64,
    win_len: usize,
    evicted_total: u64,
}

impl Counts {
    fn tokens_seen(&self) -> u64 {
        if self.win_len == 0 && self.win_start == 0 {
            self.sinks_used as u64
        } else {
            (self.config.sinks as u64) + self.win_start + self.win_len as u64
        }
    }

    fn window_start(&self) -> u64 {
        self.config.sinks as u64 + self.win_start
    }

    fn stats(&self, evicted_last_step: u64, bytes: usize, device: String) -> CacheStats {
        CacheStats {
            capacity: self.config.capacity(),
            pinned: self.config.sinks,
            pinned_used: self.sinks_used,
            window: self.config.window,
            window_used: self.win_len,
            tokens_seen: self.tokens_seen(),
            evicted_total: self.evicted_total,
            evicted_last_step,
            window_start: self.window_start(),
            bytes,
            device,
            pins_used: 0,
            pins_room: 0,
            recalled_used: 0,
        }
    }
}

/// One layer's preallocated K and V, `(n_kv_head, capacity, head_dim)` each.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

/// Where the tokens of one forward chunk go, computed before any tensor is touched.
#[derive(Debug, Clone)]
pub(crate) struct WritePlan {
    /// Text position of each token of the chunk.
    pub positions: Vec<u64>,
    /// Slot of each token of the chunk.
    pub slots: Vec<usize>,
    /// Cache place of each token, for its scores against the sinks.
    pub places: Vec<u64>,
    /// Whether any query must be masked from any slot (prefill, or evicted holes).
    pub needs_mask: bool,
}

/// Whether a query at text position `q` sees the slot holding text position `p`: not when the
/// slot is empty (`u64::MAX`), in the query's future, or, for a window token (`p >= pinned`),
/// `view` or more behind it (evaluation only). [`SinkCache::mask`] and
/// [`crate::attend::PromptAttention`] both decide by this.
#[inline]
pub(crate) fn visible(q: u64, p: u64, pinned: u64, view: u64) -> bool {
    p != u64::MAX && p <= q && !(p >= pinned && q - p >= view)
}

/// The mask of [`SinkCache::mask`] as data, for [`visible`].
#[derive(Debug, Clone)]
pub(crate) struct Visibility {
    /// Text position held by each slot read.
    pub slot_pos: Vec<u64>,
    pub pinned: u64,
    pub view: u64,
}

/// The attention-sink KV cache of one conversation.
#[derive(Debug, Clone)]
pub struct SinkCache {
    config: CacheConfig,
    pub(crate) layers: Vec<LayerKv>,
    /// Text position held by each slot, `u64::MAX` for an empty or evicted slot.
    slot_pos: Vec<u64>,
    /// Pinned tokens written so far (`<= sinks`).
    sinks_used: usize,
    /// Index `j` of the oldest window token still held.
    win_start: u64,
    /// Window tokens held: `win_start..win_start + win_len`.
    win_len: usize,
    evicted_total: u64,
    evicted_last: u64,
    /// Evaluation only (see [`SinkCache::with_view`]): each query sees the sinks and at most
    /// this many of the most recent window tokens, itself included.
    view: Option<usize>,
    device: Device,
    bytes: usize,
}

impl SinkCache {
    /// Allocates the cache for `spec` on `device`; nothing is allocated later.
    pub fn new(spec: &ModelSpec, config: CacheConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let cap = config.capacity();
        let shape = (spec.n_kv_head, cap, spec.head_dim);
        let precision = config.precision.on(device);
        let mut layers = Vec::with_capacity(spec.n_layer);
        for _ in 0..spec.n_layer {
            layers.push(LayerKv {
                k: Tensor::zeros(shape, precision.dtype(), device)?,
                v: Tensor::zeros(shape, precision.dtype(), device)?,
            });
        }
        Ok(Self {
            config,
            layers,
            slot_pos: vec![u64::MAX; cap],
            sinks_used: 0,
            win_start: 0,
            win_len: 0,
            evicted_total: 0,
            evicted_last: 0,
            view: None,
            device: device.clone(),
            bytes: spec.n_layer * 2 * spec.n_kv_head * cap * spec.head_dim * precision.bytes(),
        })
    }

    /// A cache for scoring long texts in chunks exactly as if they were fed one token at a
    /// time through a cache of `sinks + window` slots: `chunk - 1` extra window slots hold the
    /// tokens that a one-token-at-a-time cache would already have evicted, and the mask hides
    /// them from each query that would no longer see them, so every query sees the sinks plus
    /// the `window` most recent tokens, at the same cache places. Perplexity runs use it to
    /// score a chunk per forward instead of a token.
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
        let mut c = Self::new(spec, config, device)?;
        c.view = Some(window);
        Ok(c)
    }

    /// Largest chunk a [`SinkCache::with_view`] cache takes while keeping its exactness.
    pub fn view_chunk(&self) -> Option<usize> {
        self.view.map(|v| self.config.window - v + 1)
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

    fn counts(&self) -> Counts {
        Counts {
            config: self.config,
            sinks_used: self.sinks_used,
            win_start: self.win_start,
            win_len: self.win_len,
            evicted_total: self.evicted_total,
        }
    }

    /// Tokens the conversation has fed through this cache.
    pub fn tokens_seen(&self) -> u64 {
        self.counts().tokens_seen()
    }

    /// Text position of the oldest token still visible after the pinned ones.
    pub fn window_start(&self) -> u64 {
        self.counts().window_start()
    }

    /// Tokens held: pinned plus window.
    pub fn len(&self) -> usize {
        self.sinks_used + self.win_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        self.counts().stats(
            self.evicted_last,
            self.bytes,
            crate::device::device_label(&self.device).to_string(),
        )
    }

    /// Forgets everything (the tensors stay allocated).
    pub fn clear(&mut self) {
        self.slot_pos.fill(u64::MAX);
        self.sinks_used = 0;
        self.win_start = 0;
        self.win_len = 0;
        self.evicted_total = 0;
        self.evicted_last = 0;
    }

    /// Largest chunk one forward may feed: a chunk must not overwrite its own tokens.
    pub fn max_chunk(&self) -> usize {
        self.config.window
    }

    /// Reserves slots for `n` new tokens, evicting the oldest window tokens as needed, and
    /// says where each goes. Must be followed by a forward that writes them.
    pub(crate) fn plan_write(&mut self, n: usize) -> WritePlan {
        assert!(
            n >= 1 && n <= self.max_chunk(),
            "chunk of {n} tokens does not fit"
        );
        let s = self.config.sinks;
        let w = self.config.window;
        let to_sinks = (s - self.sinks_used).min(n);
        let to_window = n - to_sinks;
        // Make room: evict at least what is needed, in multiples of the eviction step.
        let overflow = (self.win_len + to_window).saturating_sub(w);
        let mut evict = 0;
        if overflow > 0 {
            evict = overflow.div_ceil(self.config.evict_step) * self.config.evict_step;
            evict = evict.min(self.win_len);
        }
        for _ in 0..evict {
            let slot = s + (self.win_start % w as u64) as usize;
            self.slot_pos[slot] = u64::MAX;
            self.win_start += 1;
            self.win_len -= 1;
        }
        self.evicted_last = evict as u64;
        self.evicted_total += evict as u64;

        let mut positions = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        let mut places = Vec::with_capacity(n);
        for _ in 0..to_sinks {
            let p = self.sinks_used;
            positions.push(p as u64);
            slots.push(p);
            places.push(p as u64);
            self.slot_pos[p] = p as u64;
            self.sinks_used += 1;
        }
        for _ in 0..to_window {
            let j = self.win_start + self.win_len as u64;
            let slot = s + (j % w as u64) as usize;
            let pos = s as u64 + j;
            positions.push(pos);
            slots.push(slot);
            self.win_len += 1;
            // The query's place: after the sinks and the window tokens it sees.
            let seen = (j - self.win_start) as usize + 1;
            let seen = self.view.map_or(seen, |v| seen.min(v));
            places.push((s + seen - 1) as u64);
            self.slot_pos[slot] = pos;
        }
        // Masking is needed when queries of one chunk must not see each other's future, or
        // when evicted holes sit among the slots read.
        let read = self.read_len();
        let held = self.sinks_used + self.win_len;
        let needs_mask = n > 1 || held != read || self.view.is_some_and(|v| self.win_len > v);
        WritePlan {
            positions,
            slots,
            places,
            needs_mask,
        }
    }

    /// Number of leading slots an attention read covers: the pinned slots in use, plus every
    /// window slot ever written (those are contiguous after the sinks until the ring wraps).
    pub(crate) fn read_len(&self) -> usize {
        if self.win_len == 0 && self.win_start == 0 {
            return self.sinks_used;
        }
        let written = (self.win_start + self.win_len as u64).min(self.config.window as u64);
        self.config.sinks + written as usize
    }

    /// Number of pinned slots read with the query's cache place (`read_len` minus the window).
    pub(crate) fn sinks_read(&self) -> usize {
        self.sinks_used
    }

    /// Whether every held token still sits at the cache place equal to its text position,
    /// which is true until the first eviction: then one score matmul covers all slots.
    pub(crate) fn positions_are_places(&self) -> bool {
        self.win_start == 0 && self.view.is_none_or(|v| self.win_len <= v)
    }

    /// Additive mask `(n, read_len)`: 0 where query `i` (text position `positions[i]`) may
    /// see the slot, -inf where the slot is empty, evicted, or in the query's future.
    pub(crate) fn mask(&self, positions: &[u64]) -> Result<Tensor> {
        let read = self.read_len();
        let s = self.config.sinks as u64;
        // With a view, window tokens more than `view` behind the query are hidden.
        let view = self.view.map_or(u64::MAX, |v| v as u64);
        let mut m = Vec::with_capacity(positions.len() * read);
        for &q in positions {
            for &p in &self.slot_pos[..read] {
                m.push(if visible(q, p, s, view) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
        Ok(Tensor::from_vec(m, (positions.len(), read), &self.device)?)
    }

    /// What decides visibility as [`SinkCache::mask`] does, for an attention that applies it
    /// itself ([`crate::attend::PromptAttention`]) instead of adding an `(n, read)` mask.
    pub(crate) fn visibility(&self) -> Visibility {
        Visibility {
            slot_pos: self.slot_pos[..self.read_len()].to_vec(),
            pinned: self.config.sinks as u64,
            view: self.view.map_or(u64::MAX, |v| v as u64),
        }
    }

    /// Text position held by each of the first `read_len` slots (`None` when empty).
    pub fn slot_positions(&self) -> Vec<Option<u64>> {
        self.slot_pos[..self.read_len()]
            .iter()
            .map(|&p| (p != u64::MAX).then_some(p))
            .collect()
    }

    /// Cache place of each held slot (sinks `0..S`, then the window in text order), `None` for
    /// empty slots: the positions StreamingLLM assigns.
    pub fn slot_places(&self) -> Vec<Option<u64>> {
        let s = self.config.sinks as u64;
        self.slot_positions()
            .into_iter()
            .map(|p| {
                p.map(|p| {
                    if p < s {
                        p
                    } else {
                        s + (p - s - self.win_start)
                    }
                })
            })
            .collect()
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
    /// V of the first `read_len` slots, `(n_kv_head, read_len, head_dim)` values each, stored
    /// little-endian in `values` precision (what [`SinkCache::write_layers`] wrote). Values go
    /// into the tensors as they are stored; only where the new cache holds another precision
    /// (an f16 snapshot restored on a GPU, whose cache is f32) are they converted, exactly.
    pub(crate) fn from_parts(
        spec: &ModelSpec,
        state: &CacheState,
        data: &[u8],
        values: KvPrecision,
        device: &Device,
    ) -> Result<Self> {
        let mut c = Self::new(spec, state.config, device)?;
        let cap = state.config.capacity();
        let bad = |what: &str| Error::Snapshot(what.to_string());
        if state.slot_pos.len() != cap
            || state.sinks_used > state.config.sinks
            || state.win_len > state.config.window
        {
            return Err(bad("its bookkeeping does not fit its settings"));
        }
        c.slot_pos = state.slot_pos.clone();
        c.sinks_used = state.sinks_used;
        c.win_start = state.win_start;
        c.win_len = state.win_len;
        c.evicted_total = state.evicted_total;
        let read = c.read_len();
        let per = spec.n_kv_head * read * spec.head_dim * values.bytes();
        if data.len() != 2 * spec.n_layer * per {
            return Err(bad("its data does not fit the model"));
        }
        if read == 0 {
            return Ok(c);
        }
        let shape = (spec.n_kv_head, read, spec.head_dim);
        let dtype = c.precision().dtype();
        for (li, kv) in data.chunks_exact(2 * per).enumerate() {
            let put = |bytes: &[u8]| -> Result<Tensor> {
                Ok(Tensor::from_raw_buffer(
                    bytes,
                    values.dtype(),
                    &[shape.0, shape.1, shape.2],
                    device,
                )?
                .to_dtype(dtype)?)
            };
            c.layers[li].k.slice_set(&put(&kv[..per])?, 1, 0)?;
            c.layers[li].v.slice_set(&put(&kv[per..])?, 1, 0)?;
        }
        Ok(c)
    }

    /// The bookkeeping a snapshot stores next to the tensors.
    pub(crate) fn state(&self) -> CacheState {
        CacheState {
            config: self.config,
            sinks_used: self.sinks_used,
            win_start: self.win_start,
            win_len: self.win_len,
            evicted_total: self.evicted_total,
            slot_pos: self.slot_pos.clone(),
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
        let read = self.read_len();
        if read == 0 {
            return Ok(());
        }
        for l in &self.layers {
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

#[cfg(test)]
mod tests {
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
        let p = c.plan_write(3);
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
        let p = c.plan_write(1); // evicts 2 (step), leaves a hole
        assert_eq!(c.stats().evicted_last_step, 2);
        assert_eq!(p.positions, vec![5]);
        assert!(p.needs_mask, "evicted hole must be masked");
        let m = c.mask(&p.positions).unwrap().to_vec2::<f32>().unwrap();
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
            let p = c.plan_write(n);
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
}
