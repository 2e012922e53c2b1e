//! The std host layer: model files mapped read-only, CPU feature detection,
//! and a persistent thread pool. Everything here allocates only at setup.

pub mod pool;

use std::fs::File;
use std::path::Path;

use arenalm_core::kernels::{CpuFeatures, KernelPath};

pub use pool::ThreadPool;

/// A model file mapped read-only into memory.
pub struct MappedModel {
    map: memmap2::Mmap,
}

impl MappedModel {
    /// Maps the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<MappedModel> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and private to this process. If another
        // process truncates or rewrites the file while it is mapped, reads may
        // fault or see new bytes; that is the documented contract of mapping
        // model files (llama.cpp does the same), and every byte is still
        // bounds-checked by the GGUF reader.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        Ok(MappedModel { map })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// The CPU features of the running machine.
pub fn detect_cpu() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2");
        let fma = std::is_x86_feature_detected!("fma");
        let f16c = std::is_x86_feature_detected!("f16c");
        // SAFETY: each flag comes from cpuid on this machine.
        unsafe { CpuFeatures::assume(avx2, fma, f16c, false, false) }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let neon = std::arch::is_aarch64_feature_detected!("neon");
        let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        // SAFETY: each flag comes from the kernel's hwcaps on this machine.
        unsafe { CpuFeatures::assume(false, false, false, neon, dotprod) }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        CpuFeatures::compile_time()
    }
}

/// Names of the CPU features that matter to the kernels and that this
/// machine has (as cpuid or the kernel's hwcaps report them), for reports.
pub fn cpu_feature_names() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut names = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::is_x86_feature_detected!($f) {
                    names.push($f);
                }
            )*};
        }
        probe!(
            "avx2",
            "fma",
            "f16c",
            "avxvnni",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_aarch64_feature_detected!($f) {
                    names.push($f);
                }
            )*};
        }
        probe!("neon", "dotprod", "i8mm");
    }
    names
}

/// Name of the environment variable that forces a kernel path.
pub const KERNEL_ENV: &str = "ALM_KERNEL";

/// The kernel path forced by `ALM_KERNEL` (`auto`, `scalar`, `avx2`, `neon`,
/// `neon-dotprod`), if any. An unknown value is an error naming it.
pub fn kernel_from_env() -> Result<Option<KernelPath>, String> {
    match std::env::var(KERNEL_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() || v == "auto" => Ok(None),
        Ok(v) => KernelPath::from_name(&v).map(Some).ok_or_else(|| {
            format!("{KERNEL_ENV}={v:?} is not one of auto, scalar, avx2, neon, neon-dotprod")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_features_allow_their_best_path() {
        let f = detect_cpu();
        assert!(f.supports(f.best_path()));
        assert!(f.supports(KernelPath::Scalar));
    }

    #[test]
    fn mapping_a_missing_file_is_an_io_error() {
        assert!(MappedModel::open("/nonexistent/model.gguf").is_err());
    }
}
