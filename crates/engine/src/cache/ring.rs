//! One ring of slots: the bookkeeping of which text position each slot holds, what is evicted,
//! and what a query may see. Every layer of one attention kind stores its K and V by the same
//! ring (see the [module docs](super)): a global ring keeps `sinks` pinned slots and a rolling
//! window; a sliding ring keeps no sinks and a window of the layer's trained span (plus the
//! slots a chunk needs, hidden by the view).

use candle_core::{Device, Tensor};

use super::CacheStats;
use crate::arch::AttentionKind;
use crate::Result;

/// Where the tokens of one forward chunk go in one ring, computed before any tensor is
/// touched.
#[derive(Debug, Clone)]
pub(crate) struct WritePlan {
    /// Text position of each token of the chunk.
    pub positions: Vec<u64>,
    /// Slot of each token of the chunk.
    pub slots: Vec<usize>,
    /// Cache place of each token, for its scores against the sinks.
    pub places: Vec<u64>,
    /// Whether any query must be masked from any slot (prefill, evicted holes, or slots past
    /// the view).
    pub needs_mask: bool,
}

/// Whether a query at text position `q` sees the slot holding text position `p`: not when the
/// slot is empty (`u64::MAX`), in the query's future, or, for a window token (`p >= pinned`),
/// `view` or more behind it (a sliding layer's span; evaluation's exact view).
/// [`Ring::mask`] and [`crate::attend::PromptAttention`] both decide by this.
#[inline]
pub(crate) fn visible(q: u64, p: u64, pinned: u64, view: u64) -> bool {
    p != u64::MAX && p <= q && !(p >= pinned && q - p >= view)
}

/// The mask of [`Ring::mask`] as data, for [`visible`].
#[derive(Debug, Clone)]
pub(crate) struct Visibility {
    /// Text position held by each slot read.
    pub slot_pos: Vec<u64>,
    pub pinned: u64,
    pub view: u64,
}

/// A ring's bookkeeping, as a snapshot stores it (the slots' count comes from the settings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RingState {
    pub sinks_used: usize,
    pub win_start: u64,
    pub win_len: usize,
    pub evicted_total: u64,
    pub slot_pos: Vec<u64>,
}

/// The slots of one attention kind.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// Which layers store their K and V by this ring.
    pub kind: AttentionKind,
    /// Pinned slots: the first tokens of the conversation, never evicted.
    pub sinks: usize,
    /// Slots of the rolling window.
    pub window: usize,
    pub evict_step: usize,
    /// Each query sees the sinks and at most this many of the most recent window tokens,
    /// itself included; older window slots stay written but hidden. `None`: all of them.
    pub view: Option<usize>,
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
}

impl Ring {
    pub fn new(
        kind: AttentionKind,
        sinks: usize,
        window: usize,
        evict_step: usize,
        view: Option<usize>,
    ) -> Self {
        Self {
            kind,
            sinks,
            window,
            evict_step,
            view,
            slot_pos: vec![u64::MAX; sinks + window],
            sinks_used: 0,
            win_start: 0,
            win_len: 0,
            evicted_total: 0,
            evicted_last: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.sinks + self.window
    }

    /// Largest chunk one forward may feed: a chunk must not overwrite its own tokens, nor (with
    /// a view) the tokens its first query still sees.
    pub fn max_chunk(&self) -> usize {
        match self.view {
            Some(v) => self.window + 1 - v.min(self.window),
            None => self.window,
        }
    }

    pub fn clear(&mut self) {
        self.slot_pos.fill(u64::MAX);
        self.sinks_used = 0;
        self.win_start = 0;
        self.win_len = 0;
        self.evicted_total = 0;
        self.evicted_last = 0;
    }

    /// Tokens held: pinned plus window.
    pub fn len(&self) -> usize {
        self.sinks_used + self.win_len
    }

    pub fn tokens_seen(&self) -> u64 {
        self.state_counts().tokens_seen()
    }

    pub fn window_start(&self) -> u64 {
        self.state_counts().window_start()
    }

    fn state_counts(&self) -> Counts {
        Counts {
            sinks: self.sinks,
            window: self.window,
            sinks_used: self.sinks_used,
            win_start: self.win_start,
            win_len: self.win_len,
            evicted_total: self.evicted_total,
        }
    }

    /// The gauge's figures of this ring (bytes and device filled by the cache).
    pub fn stats(&self, bytes: usize, device: String) -> CacheStats {
        self.state_counts().stats(self.evicted_last, bytes, device)
    }

    /// Reserves slots for `n` new tokens, evicting the oldest window tokens as needed, and
    /// says where each goes. Must be followed by a forward that writes them.
    pub fn plan_write(&mut self, n: usize) -> WritePlan {
        let s = self.sinks;
        let w = self.window;
        let to_sinks = (s - self.sinks_used).min(n);
        let to_window = n - to_sinks;
        // Make room: evict at least what is needed, in multiples of the eviction step.
        let overflow = (self.win_len + to_window).saturating_sub(w);
        let mut evict = 0;
        if overflow > 0 {
            evict = overflow.div_ceil(self.evict_step) * self.evict_step;
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
        // Masking is needed when queries of one chunk must not see each other's future, when
        // evicted holes sit among the slots read, or when slots past the view are held.
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
    pub fn read_len(&self) -> usize {
        if self.win_len == 0 && self.win_start == 0 {
            return self.sinks_used;
        }
        let written = (self.win_start + self.win_len as u64).min(self.window as u64);
        self.sinks + written as usize
    }

    /// Number of pinned slots read with the query's cache place (`read_len` minus the window).
    pub fn sinks_read(&self) -> usize {
        self.sinks_used
    }

    /// Whether every held token still sits at the cache place equal to its text position,
    /// which is true until the first eviction: then one score matmul covers all slots.
    pub fn positions_are_places(&self) -> bool {
        self.win_start == 0 && self.view.is_none_or(|v| self.win_len <= v)
    }

    /// Additive mask `(n, read_len)`: 0 where query `i` (text position `positions[i]`) may
    /// see the slot, -inf where the slot is empty, evicted, past the view or in the query's
    /// future.
    pub fn mask(&self, positions: &[u64], device: &Device) -> Result<Tensor> {
        let v = self.visibility();
        let mut m = Vec::with_capacity(positions.len() * v.slot_pos.len());
        for &q in positions {
            for &p in &v.slot_pos {
                m.push(if visible(q, p, v.pinned, v.view) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
        Ok(Tensor::from_vec(
            m,
            (positions.len(), v.slot_pos.len()),
            device,
        )?)
    }

    /// What decides visibility as [`Ring::mask`] does, for an attention that applies it
    /// itself ([`crate::attend::PromptAttention`]) instead of adding an `(n, read)` mask.
    pub fn visibility(&self) -> Visibility {
        Visibility {
            slot_pos: self.slot_pos[..self.read_len()].to_vec(),
            pinned: self.sinks as u64,
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
        let s = self.sinks as u64;
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

    pub fn state(&self) -> RingState {
        RingState {
            sinks_used: self.sinks_used,
            win_start: self.win_start,
            win_len: self.win_len,
            evicted_total: self.evicted_total,
            slot_pos: self.slot_pos.clone(),
        }
    }

    /// Takes a snapshot's bookkeeping; `false` (nothing changed) when it does not fit this
    /// ring's settings.
    pub fn restore(&mut self, state: &RingState) -> bool {
        let fits = state.slot_pos.len() == self.capacity()
            && state.sinks_used <= self.sinks
            && state.win_len <= self.window;
        if fits {
            self.slot_pos = state.slot_pos.clone();
            self.sinks_used = state.sinks_used;
            self.win_start = state.win_start;
            self.win_len = state.win_len;
            self.evicted_total = state.evicted_total;
        }
        fits
    }
}

/// The bookkeeping every figure of a ring derives from, a live ring's or a parked one's: one
/// place computes them.
#[derive(Clone, Copy)]
pub(crate) struct Counts {
    pub sinks: usize,
    pub window: usize,
    pub sinks_used: usize,
    pub win_start: u64,
    pub win_len: usize,
    pub evicted_total: u64,
}

impl Counts {
    pub fn of(sinks: usize, window: usize, s: &RingState) -> Self {
        Counts {
            sinks,
            window,
            sinks_used: s.sinks_used,
            win_start: s.win_start,
            win_len: s.win_len,
            evicted_total: s.evicted_total,
        }
    }

    fn tokens_seen(&self) -> u64 {
        if self.win_len == 0 && self.win_start == 0 {
            self.sinks_used as u64
        } else {
            (self.sinks as u64) + self.win_start + self.win_len as u64
        }
    }

    fn window_start(&self) -> u64 {
        self.sinks as u64 + self.win_start
    }

    pub fn stats(&self, evicted_last_step: u64, bytes: usize, device: String) -> CacheStats {
        CacheStats {
            capacity: self.sinks + self.window,
            pinned: self.sinks,
            pinned_used: self.sinks_used,
            window: self.window,
            window_used: self.win_len,
            tokens_seen: self.tokens_seen(),
            evicted_total: self.evicted_total,
            evicted_last_step,
            window_start: self.window_start(),
            bytes,
            device,
            ..CacheStats::default()
        }
    }
}
