//! Compute kernels: a scalar reference for every operation and SIMD bodies
//! for x86_64 AVX2 and aarch64 NEON (with and without dotprod), chosen once
//! at run time.
