//! With the `cuda` feature, compiles `src/attend.cu` to PTX with nvcc (the same toolkit candle's
//! own kernels need); the driver compiles the PTX for the GPU it finds at run time. Without the
//! feature this does nothing, so the default build needs no GPU toolkit.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo::rerun-if-changed=src/attend.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    // PTX for an older architecture runs on newer GPUs (the driver compiles it); 75 is the
    // oldest CUDA 13 supports. CUDA_COMPUTE_CAP is the variable candle's kernels read too.
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "75".to_string());
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("attend.ptx");
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3"])
        .arg(format!("--gpu-architecture=compute_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg("src/attend.cu")
        .status()
        .unwrap_or_else(|e| {
            panic!("running {nvcc} (the `cuda` feature needs the CUDA toolkit): {e}")
        });
    assert!(status.success(), "{nvcc} failed on src/attend.cu");
}
