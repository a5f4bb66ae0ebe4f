//! Picks the device at run time: a GPU when the build has one and it answers, else the CPU.

use candle_core::Device;

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
