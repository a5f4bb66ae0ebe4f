//! Parallel writes into one buffer on candle's thread pool (the kernels of our own).

/// A pointer the pool's threads write through at disjoint places; each use says why its
/// places are disjoint and why the buffer outlives the parallel region. In a closure, copy the
/// whole wrapper (`let p = ptr;`) before using `p.0`: a closure that names only the field
/// captures the raw pointer, which is not `Send`.
pub(crate) struct SendPtr<T>(pub *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: see the type's contract above: writes at disjoint places while the buffer lives.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Calls `fill(i, row)` for each row `i` of `out` (rows of `width`), on candle's pool when
/// there are at least `min_parallel` rows (below that, the wake-up costs more than the work).
pub(crate) fn rows_mut<T: Send>(
    out: &mut [T],
    width: usize,
    min_parallel: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) {
    if width == 0 {
        return;
    }
    let rows = out.len() / width;
    if rows < min_parallel {
        for (i, row) in out.chunks_exact_mut(width).enumerate() {
            fill(i, row);
        }
        return;
    }
    let ptr = SendPtr(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(rows, |range| {
        let p = ptr;
        for i in range {
            // SAFETY: row `i` lies inside `out` (i < rows) and is handed to this call only;
            // `out` is borrowed for the whole parallel region.
            fill(i, unsafe {
                std::slice::from_raw_parts_mut(p.0.add(i * width), width)
            });
        }
    });
}

#[cfg(test)]
mod tests {
    /// Every row is filled once, with its own index, on one thread and on the pool.
    #[test]
    fn rows_are_filled_once_each() {
        for (rows, min) in [(3, 4), (37, 4)] {
            let mut out = vec![0u32; rows * 5];
            super::rows_mut(&mut out, 5, min, |i, r| {
                for x in r.iter_mut() {
                    *x += i as u32 + 1;
                }
            });
            for (i, r) in out.chunks(5).enumerate() {
                assert!(r.iter().all(|&x| x == i as u32 + 1), "row {i}: {r:?}");
            }
        }
    }
}
