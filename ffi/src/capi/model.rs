//! Models: open from bytes or a file, describe, close.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

use arenalm_core::gguf::Value;
use arenalm_core::model::Model;

use super::{alm_status, guard, out_ref, write_sized, ErrBuf};
use crate::host::MappedModel;

/// An opened, validated model (opaque).
pub struct alm_model {
    _private: [u8; 0],
}

/// What an `alm_model` handle points to.
pub(crate) struct ModelHandle {
    /// Declared before `map` so it is dropped first: it borrows the map's bytes.
    pub(crate) model: Model<'static>,
    pub(crate) bytes: &'static [u8],
    pub(crate) engines: AtomicUsize,
    _map: Option<MappedModel>,
}

impl ModelHandle {
    /// The handle behind a non-null `alm_model` pointer.
    ///
    /// # Safety
    ///
    /// `m` must be a live pointer returned by `alm_model_open_*`.
    pub(crate) unsafe fn from_ptr<'h>(m: *const alm_model) -> Option<&'h ModelHandle> {
        // SAFETY: per the contract, `m` is NULL or a `Box<ModelHandle>` pointer.
        unsafe { m.cast::<ModelHandle>().as_ref() }
    }
}

fn open(
    bytes: &'static [u8],
    map: Option<MappedModel>,
    out: &mut *mut alm_model,
    err: &ErrBuf,
) -> alm_status {
    match Model::from_bytes(bytes) {
        Ok(model) => {
            let handle = Box::new(ModelHandle {
                model,
                bytes,
                engines: AtomicUsize::new(0),
                _map: map,
            });
            *out = Box::into_raw(handle).cast::<alm_model>();
            alm_status::ALM_OK
        }
        Err(e) => err.fail(&e),
    }
}

/// Opens a model over caller-owned GGUF bytes (a linked array, flash, your
/// own mapping). Nothing is copied: the bytes must stay valid and unchanged
/// until `alm_model_close`. The whole header and tensor table are validated.
///
/// Returns `ALM_ERR_GGUF` for malformed bytes, `ALM_ERR_MODEL` for a valid
/// file the engine cannot run (the message names the key or tensor).
///
/// # Safety
///
/// `bytes` must point to `len` readable bytes that outlive the model; `out`
/// must be writable; `err` must be NULL or point to `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_model_open_bytes(
    bytes: *const u8,
    len: usize,
    out: *mut *mut alm_model,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        let out = out_ref!(err, out, "out");
        *out = std::ptr::null_mut();
        if bytes.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`bytes` is NULL");
        }
        // SAFETY: the caller guarantees `len` readable bytes that outlive the model.
        let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(bytes, len) };
        open(bytes, None, out, &err)
    })
}

/// Opens a model by mapping the file at `path` (a NUL-terminated path)
/// read-only. Returns `ALM_ERR_IO` if it cannot be opened or mapped.
///
/// # Safety
///
/// `path` must be a NUL-terminated string; `out` writable; `err` NULL or
/// `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_model_open_file(
    path: *const c_char,
    out: *mut *mut alm_model,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        let out = out_ref!(err, out, "out");
        *out = std::ptr::null_mut();
        if path.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`path` is NULL");
        }
        // SAFETY: the caller guarantees a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(path) };
        let Ok(path) = path.to_str() else {
            return err.fail_with(alm_status::ALM_ERR_INVALID_ARGUMENT, "path is not UTF-8");
        };
        let map = match MappedModel::open(path) {
            Ok(m) => m,
            Err(e) => {
                return err.fail_with(alm_status::ALM_ERR_IO, &format!("cannot map {path}: {e}"))
            }
        };
        // SAFETY: the mapping's bytes do not move when the `MappedModel` value
        // moves into the handle, and the handle drops `model` (which borrows
        // them) before the map.
        let bytes: &'static [u8] =
            unsafe { std::slice::from_raw_parts(map.bytes().as_ptr(), map.bytes().len()) };
        open(bytes, Some(map), out, &err)
    })
}

/// Closes a model. NULL is accepted. Returns `ALM_ERR_IN_USE` (and closes
/// nothing) while engines created from it are alive.
///
/// # Safety
///
/// `model` must be NULL or a live handle from `alm_model_open_*`, not used
/// after a successful close.
#[no_mangle]
pub unsafe extern "C" fn alm_model_close(model: *mut alm_model) -> alm_status {
    guard(ErrBuf::new(std::ptr::null_mut(), 0), || {
        if model.is_null() {
            return alm_status::ALM_OK;
        }
        // SAFETY: a live handle per the contract.
        let handle = unsafe { ModelHandle::from_ptr(model) };
        if let Some(h) = handle {
            if h.engines.load(Ordering::Acquire) != 0 {
                return alm_status::ALM_ERR_IN_USE;
            }
        }
        // SAFETY: the pointer came from `Box::into_raw` in `open`.
        drop(unsafe { Box::from_raw(model.cast::<ModelHandle>()) });
        alm_status::ALM_OK
    })
}

/// A model's hyperparameters and file facts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct alm_model_info {
    /// Set by the caller to `sizeof(alm_model_info)`.
    pub size: u32,
    /// Transformer blocks.
    pub n_layers: u32,
    /// Embedding width.
    pub dim: u32,
    /// Feed-forward width.
    pub ffn_dim: u32,
    /// Query heads.
    pub n_heads: u32,
    /// KV heads.
    pub n_kv_heads: u32,
    /// Values per head.
    pub head_dim: u32,
    /// RoPE-rotated dimensions per head.
    pub rope_dim: u32,
    /// Training context length.
    pub ctx_train: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// 1 if the output head is the embedding matrix.
    pub tied_embeddings: u32,
    /// `general.file_type` (llama_ftype), or 0xFFFFFFFF if absent.
    pub file_type: u32,
    /// GGUF version.
    pub gguf_version: u32,
    /// Tensors in the file.
    pub tensor_count: u64,
    /// Metadata entries.
    pub metadata_count: u64,
    /// Bytes of the weights the engine reads (in place).
    pub weights_bytes: u64,
    /// Bytes of the whole file.
    pub file_bytes: u64,
}

/// Describes `model`: fills `info` (whose `size` the caller sets to
/// `sizeof(alm_model_info)`) and writes the architecture name,
/// NUL-terminated, into `arch` (`arch_len` bytes; may be NULL).
///
/// # Safety
///
/// `model` a live handle; `info` writable for `info->size` bytes; `arch`
/// NULL or `arch_len` writable bytes; `err` NULL or `err_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn alm_model_get_info(
    model: *const alm_model,
    info: *mut alm_model_info,
    arch: *mut c_char,
    arch_len: usize,
    err: *mut c_char,
    err_len: usize,
) -> alm_status {
    let err = ErrBuf::new(err, err_len);
    guard(err, || {
        // SAFETY: a live handle or NULL per the contract.
        let Some(h) = (unsafe { ModelHandle::from_ptr(model) }) else {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`model` is NULL");
        };
        if info.is_null() {
            return err.fail_with(alm_status::ALM_ERR_NULL_ARGUMENT, "`info` is NULL");
        }
        // SAFETY: `info` is non-null and starts with the caller's size field.
        let size = unsafe { std::ptr::read_unaligned(info.cast::<u32>()) } as usize;
        if size < 4 {
            return err.fail_with(alm_status::ALM_ERR_INVALID_ARGUMENT, "`info->size` not set");
        }
        let hp = &h.model.hparams;
        let g = &h.model.gguf;
        let file_type = match g.get("general.file_type") {
            Ok(Some(v)) => v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(u32::MAX),
            _ => u32::MAX,
        };
        let value = alm_model_info {
            size: 0,
            n_layers: hp.n_layers,
            dim: hp.dim,
            ffn_dim: hp.ffn_dim,
            n_heads: hp.n_heads,
            n_kv_heads: hp.n_kv_heads,
            head_dim: hp.head_dim,
            rope_dim: hp.rope_dim,
            ctx_train: hp.ctx_train,
            vocab: hp.vocab,
            rope_base: hp.rope_base,
            rms_eps: hp.rms_eps,
            tied_embeddings: u32::from(hp.tied_embeddings),
            file_type,
            gguf_version: g.version(),
            tensor_count: g.tensor_count(),
            metadata_count: g.metadata_count(),
            weights_bytes: h.model.globals.weights_bytes,
            file_bytes: h.bytes.len() as u64,
        };
        // SAFETY: `info` has `size` writable bytes.
        unsafe { write_sized(value, info, size) };
        if !arch.is_null() && arch_len > 0 {
            let name = match g.get("general.architecture") {
                Ok(Some(Value::String(s))) => s,
                _ => b"",
            };
            let n = name.len().min(arch_len - 1);
            // SAFETY: `arch` has `arch_len > n` writable bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(name.as_ptr(), arch.cast::<u8>(), n);
                *arch.add(n) = 0;
            }
            if n < name.len() {
                return err.fail_with(
                    alm_status::ALM_ERR_BUFFER_TOO_SMALL,
                    "architecture name truncated",
                );
            }
        }
        alm_status::ALM_OK
    })
}
