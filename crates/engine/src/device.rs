//! Picks the device at run time: a GPU when the build has one and it answers, else the CPU.

use candle_core::Device;

/// A `/proc/meminfo` figure (`MemAvailable`, `MemTotal`) in bytes; `None` where it is not known.
fn meminfo(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory the system can give now without swapping (Linux's `MemAvailable`), in bytes;
/// `None` where it is not known.
pub fn available_memory() -> Option<u64> {
    meminfo("MemAvailable")
}

/// All the memory this computer has (Linux's `MemTotal`), in bytes; `None` where it is not
/// known.
pub fn total_memory() -> Option<u64> {
    meminfo("MemTotal")
}

/// The GPU's (free, total) memory as its driver says, when `device` is a CUDA GPU.
#[cfg(feature = "cuda")]
fn cuda_memory(device: &Device) -> Option<(u64, u64)> {
    match device {
        Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, total)| (free as u64, total as u64)),
        _ => None,
    }
}

/// The GPU's own memory, all of it, when the engine runs on one; `None` on the CPU.
pub fn gpu_memory(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Some((_free, total)) = cuda_memory(device) {
        return Some(total);
    }
    let _ = device;
    None
}

/// Memory free now on `device`: the system's for the CPU, the GPU's own for CUDA (asked of
/// the driver, after the model's weights are on it).
pub fn free_memory(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => available_memory(),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => cuda_memory(device).map(|(free, _total)| free),
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

/// Whether `caches` memories of `bytes_each` fit in the memory free now on `device` (RAM, or
/// the GPU's own memory) ([`cache_fits`] with [`free_memory`]). `Err` says why not, with the
/// figures.
pub fn check_cache_memory(
    bytes_each: u64,
    caches: u64,
    device: &Device,
) -> std::result::Result<(), String> {
    cache_fits(bytes_each, caches, free_memory(device))
}

/// The memory budget itself, with the memory free as an input (so it is tested without the
/// device): `caches` memories of `bytes_each` must fit in three quarters of `free`, so the model,
/// the app and the system keep room. Where the free memory is not known (Metal, a driver that
/// does not say), the allocator reports a failure in plain words instead.
pub fn cache_fits(
    bytes_each: u64,
    caches: u64,
    free: Option<u64>,
) -> std::result::Result<(), String> {
    let Some(free) = free else {
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
    choose_device().0
}

/// The best device this build can use, and, when a GPU build finds no GPU it can use (none is
/// there, the driver is too old for the build, the device will not start), one sentence saying
/// so for the status bar; the reason goes to the log. The CPU carries on either way.
pub fn choose_device() -> (Device, Option<String>) {
    #[cfg(feature = "cuda")]
    {
        // A driver that misbehaves is a reason to use the CPU, never a crash.
        match std::panic::catch_unwind(|| Device::new_cuda(0)) {
            Ok(Ok(d)) => return (d, None),
            Ok(Err(e)) => {
                // The first line: candle appends a backtrace to driver errors.
                let why = e.to_string();
                let why = why.lines().next().unwrap_or_default();
                tracing::warn!(error = why, "no usable NVIDIA GPU; running on the CPU")
            }
            Err(_) => tracing::warn!("the NVIDIA driver failed inside; running on the CPU"),
        }
        return (Device::Cpu, Some(NO_GPU.to_string()));
    }
    #[cfg(feature = "metal")]
    {
        if let Ok(d) = Device::new_metal(0) {
            return (d, None);
        }
        tracing::warn!("no usable Metal GPU; running on the CPU");
        return (Device::Cpu, Some(NO_GPU.to_string()));
    }
    #[allow(unreachable_code)]
    (Device::Cpu, None)
}

/// What the status bar says when a GPU build runs on the CPU.
pub const NO_GPU: &str = "This GPU build of SinkChat found no GPU it can use (none is there, or \
     its driver is too old for it), so it runs on the CPU and replies come slower; the log says \
     why.";

/// A short name for the UI: "CPU", "CUDA GPU" or "Metal GPU".
pub fn device_label(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "CPU",
        Device::Cuda(_) => "CUDA GPU",
        Device::Metal(_) => "Metal GPU",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget: three quarters of what is free, for every memory kept ready; refusals give
    /// the figures; an unknown amount refuses nothing (the allocator speaks then).
    #[test]
    fn memories_fit_in_three_quarters_of_the_free_memory() {
        let gb = 1_000_000_000u64;
        assert!(cache_fits(gb, 4, Some(8 * gb)).is_ok());
        assert!(cache_fits(gb, 6, Some(8 * gb)).is_ok());
        let e = cache_fits(gb, 7, Some(8 * gb)).unwrap_err();
        assert!(
            e.contains("1.0 GB") && e.contains("7.0 GB") && e.contains("8.0 GB"),
            "{e}"
        );
        assert!(cache_fits(u64::MAX, 4, Some(gb)).is_err(), "no overflow");
        assert!(cache_fits(100 * gb, 4, None).is_ok());
        // A GPU's own figure decides on a GPU: 80 GB free takes what 8 GB refuses.
        assert!(cache_fits(3 * gb, 4, Some(80 * gb)).is_ok());
        assert!(cache_fits(3 * gb, 4, Some(8 * gb)).is_err());
    }
}
