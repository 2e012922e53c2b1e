//! The std host layer: model files mapped read-only, CPU feature detection,
//! and a persistent thread pool. Everything here allocates only at setup.

pub mod pool;

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::path::Path;

use arenalm_core::error::Name;
use arenalm_core::kernels::{CpuFeatures, KernelPath};

pub use pool::ThreadPool;

/// A model file mapped read-only into memory.
pub struct MappedModel {
    map: memmap2::Mmap,
}

/// Why a model file could not be mapped.
#[derive(Debug)]
pub enum OpenError {
    /// The operating system refused (open, stat or mmap).
    Io(std::io::Error),
    /// The path names something other than a regular file.
    NotRegular(&'static str),
}

/// Writes the C library's text for OS error `code` (as std would, but
/// through a stack buffer: std copies it to the heap).
#[cfg(unix)]
fn write_os_error(f: &mut fmt::Formatter<'_>, code: i32) -> fmt::Result {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: `buf` is writable for its length; the XSI `strerror_r` writes
    // a NUL-terminated message into it and returns 0, or fails.
    let rc = unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    // SAFETY: on success `buf` holds a NUL-terminated string (the last byte
    // is never written otherwise, so it stays a terminator).
    let text = (rc == 0).then(|| unsafe { CStr::from_ptr(buf.as_ptr()) });
    match text.and_then(|t| t.to_str().ok()) {
        Some(t) => write!(f, "{t} (os error {code})"),
        None => write!(f, "os error {code}"),
    }
}

#[cfg(not(unix))]
fn write_os_error(f: &mut fmt::Formatter<'_>, code: i32) -> fmt::Result {
    write!(f, "os error {code}")
}

impl fmt::Display for OpenError {
    /// Formats without allocating.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => match e.raw_os_error() {
                Some(code) => write_os_error(f, code),
                None => write!(f, "{}", e.kind()),
            },
            OpenError::NotRegular(what) => write!(f, "not a regular file ({what})"),
        }
    }
}

impl std::error::Error for OpenError {}

/// What a non-regular file is, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a plain file"
    }
}

/// Opens `path` for reading without blocking (a FIFO would otherwise wait
/// for a writer) and without allocating.
#[cfg(unix)]
fn open_nonblocking(path: &CStr) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: `path` is NUL-terminated; `open` only reads it.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a file descriptor we just opened and own alone.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(not(unix))]
fn open_nonblocking(path: &CStr) -> std::io::Result<File> {
    let path = path
        .to_str()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    File::open(path)
}

impl MappedModel {
    /// Maps the regular file at `path`. Anything else (a directory, a FIFO,
    /// a device) is refused without blocking.
    pub fn open(path: impl AsRef<Path>) -> Result<MappedModel, OpenError> {
        let bytes = path.as_ref().as_os_str().as_encoded_bytes().to_vec();
        let c = std::ffi::CString::new(bytes)
            .map_err(|_| OpenError::Io(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
        MappedModel::open_c(&c)
    }

    /// [`MappedModel::open`] for a C path; allocates nothing.
    pub fn open_c(path: &CStr) -> Result<MappedModel, OpenError> {
        let file = open_nonblocking(path).map_err(OpenError::Io)?;
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.file_type().is_file() {
            return Err(OpenError::NotRegular(file_kind(meta.file_type())));
        }
        // SAFETY: the map is read-only and private to this process. If another
        // process truncates or rewrites the file while it is mapped, reads may
        // fault or see new bytes; that is the documented contract of mapping
        // model files (llama.cpp does the same), and every byte is still
        // bounds-checked by the GGUF reader.
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(OpenError::Io)?;
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
        // No allocation: the C API promises none after setup.
        let probes = [
            (
                std::arch::is_aarch64_feature_detected!("neon"),
                CpuFeature::Neon,
            ),
            (
                std::arch::is_aarch64_feature_detected!("dotprod"),
                CpuFeature::Dotprod,
            ),
            (
                std::arch::is_aarch64_feature_detected!("i8mm"),
                CpuFeature::I8mm,
            ),
        ];
        let mut found = [CpuFeature::Neon; 3];
        let mut n = 0;
        for (has, f) in probes {
            if has {
                found[n] = f;
                n += 1;
            }
        }
        // SAFETY: each flag comes from the kernel's hwcaps on this machine.
        unsafe { CpuFeatures::assume(&found[..n]) }
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

/// `ALM_KERNEL` holds a value that names no kernel path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadKernelEnv {
    /// The value (truncated to [`Name::CAPACITY`] bytes).
    pub value: Name,
}

impl fmt::Display for BadKernelEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KERNEL_ENV}={:?} is not one of auto", self.value)?;
        for p in KernelPath::ALL {
            write!(f, ", {}", p.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for BadKernelEnv {}

/// The kernel path forced by `ALM_KERNEL` (`auto` or a [`KernelPath`] name),
/// if any. An unknown value is an error naming it.
///
/// Reads the variable with the C library's `getenv`, so it allocates
/// nothing; like any C library that reads the environment, it must not run
/// while another thread calls `setenv`.
pub fn kernel_from_env() -> Result<Option<KernelPath>, BadKernelEnv> {
    #[cfg(unix)]
    let value: Option<&[u8]> = {
        // SAFETY: the name is NUL-terminated; `getenv` returns NULL or a
        // NUL-terminated string that stays valid while nobody changes the
        // environment (the documented contract of this function), and we
        // copy what we need before returning.
        let ptr = unsafe { libc::getenv(c"ALM_KERNEL".as_ptr()) };
        // SAFETY: non-NULL results of `getenv` are NUL-terminated strings.
        (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_bytes())
    };
    #[cfg(not(unix))]
    let owned = std::env::var_os(KERNEL_ENV);
    #[cfg(not(unix))]
    let value: Option<&[u8]> = owned.as_ref().map(|v| v.as_encoded_bytes());
    match value {
        None => Ok(None),
        Some(b"") | Some(b"auto") => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(KernelPath::from_name)
            .map(Some)
            .ok_or(BadKernelEnv {
                value: Name::from_bytes(v),
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
        let e = MappedModel::open("/nonexistent/model.gguf").err().unwrap();
        assert_eq!(e.to_string(), "No such file or directory (os error 2)");
    }

    #[cfg(unix)]
    #[test]
    fn directories_and_fifos_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("arenalm-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = MappedModel::open(&dir).err().unwrap();
        assert_eq!(e.to_string(), "not a regular file (a directory)");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Without O_NONBLOCK this open would wait forever for a writer.
        let e = MappedModel::open_c(&c).err().unwrap();
        assert_eq!(e.to_string(), "not a regular file (a FIFO)");
        let e = MappedModel::open("/dev/null").err().unwrap();
        assert_eq!(e.to_string(), "not a regular file (a character device)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
