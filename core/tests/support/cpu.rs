//! The CPU features of the machine running a test or bench: core's own
//! `cpuid` detection on x86_64, the kernel's hwcaps (through std) on
//! aarch64. One copy, included by path by the unit tests, the integration
//! tests and the benches (the host layer has its own, in `ffi`).

use arenalm_core::kernels::CpuFeatures;

/// What this CPU supports.
#[allow(dead_code)]
pub fn detected() -> CpuFeatures {
    #[cfg(target_arch = "aarch64")]
    {
        use arenalm_core::kernels::CpuFeature;
        let mut found = std::vec::Vec::new();
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push(CpuFeature::Neon);
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            found.push(CpuFeature::Dotprod);
        }
        if std::arch::is_aarch64_feature_detected!("i8mm") {
            found.push(CpuFeature::I8mm);
        }
        // SAFETY: each feature was just detected on this CPU.
        unsafe { CpuFeatures::assume(&found) }
    }
    #[cfg(not(target_arch = "aarch64"))]
    CpuFeatures::detect()
}
