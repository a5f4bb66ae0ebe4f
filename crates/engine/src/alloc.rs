//! Process-wide allocator settings for running a model: call [`tune_allocator`] once at the
//! start of a program that runs one.
//!
//! Why: every op of a forward pass allocates its output, and a prompt chunk's are megabytes
//! (a 0.5B model's gate/up output for 512 tokens is 20 MB). glibc serves such sizes with a
//! fresh `mmap` and returns them with `munmap` when freed (and trims the heap top back to the
//! kernel past 128 KiB), so every op faulted in and zeroed new pages: `perf` put a tenth of a
//! 512-token prompt in the kernel's page-fault path, and the prompt ran 25-30% slower. Keeping
//! blocks under 32 MiB on the heap and up to 256 MiB of free heap for reuse removes that;
//! larger blocks (model weights) are still mapped and unmapped, so unloading a model still
//! returns its memory.

/// Sets glibc's mmap threshold to 32 MiB (its maximum) and its trim threshold to 256 MiB.
/// Does nothing on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes two tunables of the allocator; it is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
