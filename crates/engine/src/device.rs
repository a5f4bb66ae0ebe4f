//! Picks the device at run time: a GPU when the build has one and it answers, else the CPU.

use candle_core::Device;

/// Memory the system can give now without swapping (Linux's `MemAvailable`), in bytes;
/// `None` where it is not known.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory free now on `device`: the system's for the CPU, the GPU's own for CUDA (asked of
/// the driver, after the model's weights are on it).
pub fn free_memory(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => available_memory(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _total)| free as u64),
        _ => None,
    }
}

/// Bytes as people read them: "1.5 GB".
pub fn human_bytes(b: u64) -> String {
    const G: f64 = 1e9;
    const M: f64 = 1e6;
    let b = b as f64;
    if b >= G {
        format!("{:.1} GB", b / G)
    } else {
        format!("{:.0} MB", (b / M).max(1.0))
    }
}

/// Whether `caches` caches of `capacity` tokens, at `kv_bytes_per_token` each, fit in the
/// memory free now on `device` (RAM, or the GPU's memory) (three quarters of it, so the model, the app and the system keep room).
/// `Err` says why not, with the figures.
pub fn check_cache_memory(
    kv_bytes_per_token: usize,
    capacity: usize,
    caches: u64,
    device: &Device,
) -> std::result::Result<(), String> {
    let bytes_each = (kv_bytes_per_token as u64).saturating_mul(capacity as u64);
    // Where the free memory is not known (Metal, a driver that does not say), the allocator
    // reports a failure in plain words instead.
    let Some(free) = free_memory(device) else {
        return Ok(());
    };
    let total = bytes_each.saturating_mul(caches);
    if total > free / 4 * 3 {
        return Err(format!(
            "the model's memory of a chat would take {} ({} for the {caches} chats kept ready), \
             and this computer has {} free; choose a smaller window",
            human_bytes(bytes_each),
            human_bytes(total),
            human_bytes(free)
        ));
    }
    Ok(())
}

/// The best device this build can use. CUDA and Metal are cargo features; without them, or
/// when no GPU answers, this is the CPU.
pub fn best_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}

/// A short name for the UI: "CPU", "CUDA GPU" or "Metal GPU".
pub fn device_label(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "CPU",
        Device::Cuda(_) => "CUDA GPU",
        Device::Metal(_) => "Metal GPU",
    }
}
