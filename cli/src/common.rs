//! Helpers shared by the subcommands: sizes, models, arenas, threads.

use std::alloc::{alloc_zeroed, dealloc, Layout};

use arenalm::host::{kernel_from_env, MappedModel, ThreadPool};
use arenalm_core::kernels::KernelPath;
use arenalm_core::kv::KvType;
use arenalm_core::parallel::{Parallel, Serial};

/// Parses a byte size: a number with an optional unit. `K`, `M`, `G`,
/// `KiB`, `MiB`, `GiB` are powers of 1024; `KB`, `MB`, `GB` powers of 1000;
/// `B` or nothing means bytes. Decimals are allowed (`1.5GB`).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 1048576, 64MiB, 1.5GB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let bytes = (value * mult).floor();
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as usize)
}

/// Parses a KV element type name.
pub fn parse_kv(text: &str) -> Result<KvType, String> {
    KvType::from_name(text).ok_or_else(|| format!("{text:?} is not one of f16, q8_0, f32"))
}

/// A `--kernel` value: `auto` (None) or a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelArg(pub Option<KernelPath>);

/// Parses `auto` or a kernel path name.
pub fn parse_kernel(text: &str) -> Result<KernelArg, String> {
    if text == "auto" {
        return Ok(KernelArg(None));
    }
    KernelPath::from_name(text)
        .map(|k| KernelArg(Some(k)))
        .ok_or_else(|| {
            let names: Vec<&str> = KernelPath::ALL.iter().map(|p| p.name()).collect();
            format!("{text:?} is not one of auto, {}", names.join(", "))
        })
}

/// The kernel to force: the command line's choice, else `ALM_KERNEL`.
pub fn kernel_choice(cli: Option<KernelPath>) -> Result<Option<KernelPath>, String> {
    match cli {
        Some(k) => Ok(Some(k)),
        None => kernel_from_env().map_err(|e| e.to_string()),
    }
}

/// Maps a model file, with the path in the error.
pub fn map_model(path: &str) -> Result<MappedModel, String> {
    MappedModel::open(path).map_err(|e| format!("cannot open {path}: {e}"))
}

/// A 64-byte-aligned, zeroed heap buffer standing in for a caller's arena.
pub struct ArenaBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl ArenaBuf {
    /// Allocates `len` bytes (at least one).
    pub fn new(len: usize) -> Result<ArenaBuf, String> {
        let layout = Layout::from_size_align(len.max(1), 64)
            .map_err(|e| format!("arena of {len} bytes: {e}"))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(format!("cannot allocate an arena of {len} bytes"));
        }
        Ok(ArenaBuf { ptr, layout })
    }

    /// The bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `layout.size()` initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for ArenaBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// A thread pool of `n` threads, or the calling thread alone.
pub enum Threads {
    /// One thread.
    One(Serial),
    /// A pool.
    Pool(ThreadPool),
}

impl Threads {
    /// `n` threads (0 is taken as 1).
    pub fn new(n: usize) -> Result<Threads, String> {
        if n <= 1 {
            Ok(Threads::One(Serial))
        } else {
            ThreadPool::new(n)
                .map(Threads::Pool)
                .map_err(|e| format!("cannot start {n} threads: {e}"))
        }
    }

    /// As a core `Parallel`.
    pub fn get(&self) -> &dyn Parallel {
        match self {
            Threads::One(s) => s,
            Threads::Pool(p) => p,
        }
    }
}

/// Bytes as MiB with two decimals.
pub fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1024.0 * 1024.0))
}

/// Peak resident set size of this process in bytes (Linux), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1").is_err());
    }
}
