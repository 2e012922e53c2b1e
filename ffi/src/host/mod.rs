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

/// The CPU features of the running machine: on x86_64 from `cpuid` and
/// `xgetbv` (core's own detection); on aarch64 from the kernel's hwcaps.
pub fn detect_cpu() -> CpuFeatures {
    #[cfg(target_arch = "aarch64")]
    {
        use arenalm_core::kernels::CpuFeature;
        let mut found = Vec::new();
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push(CpuFeature::Neon);
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            found.push(CpuFeature::Dotprod);
        }
        if std::arch::is_aarch64_feature_detected!("i8mm") {
            found.push(CpuFeature::I8mm);
        }
        // SAFETY: each flag comes from the kernel's hwcaps on this machine.
        unsafe { CpuFeatures::assume(&found) }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        CpuFeatures::detect()
    }
}

/// Names of the CPU features the kernels use that this machine has.
pub fn cpu_feature_names() -> Vec<String> {
    let found = detect_cpu();
    arenalm_core::kernels::CpuFeature::ALL
        .into_iter()
        .filter(|f| found.has(*f))
        .map(|f| format!("{f:?}").to_lowercase())
        .collect()
}

/// Name of the environment variable that forces a kernel path.
pub const KERNEL_ENV: &str = "ALM_KERNEL";

/// The kernel path forced by `ALM_KERNEL` (`auto` or a [`KernelPath`] name),
/// if any. An unknown value is an error naming it.
pub fn kernel_from_env() -> Result<Option<KernelPath>, String> {
    match std::env::var(KERNEL_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() || v == "auto" => Ok(None),
        Ok(v) => KernelPath::from_name(&v).map(Some).ok_or_else(|| {
            let names: Vec<&str> = KernelPath::ALL.iter().map(|p| p.name()).collect();
            format!(
                "{KERNEL_ENV}={v:?} is not one of auto, {}",
                names.join(", ")
            )
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
