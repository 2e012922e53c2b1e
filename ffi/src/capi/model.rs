//! Models: open from bytes or a file, describe, close.

use std::ffi::{c_char, CStr};

use arenalm_core::gguf::Value;
use arenalm_core::model::Model;

use super::handles::{HandleError, Handled, Id, Kind, Table, ALM_MAX_MODELS};
use super::versioned::{fill_out, versioned};
use super::{alm_status, caller_slice, caller_slice_mut, guard, out_ptr, tri, ErrBuf};
use crate::host::MappedModel;

/// An opened, validated model (opaque handle).
///
/// A handle is a number naming a slot of the library's handle table, never
/// an address: do not dereference it. Calls check it before use, so a
/// closed, foreign or made-up handle is `ALM_ERR_BAD_HANDLE` (never a
/// crash). A model may be used by any number of threads at once.
///
/// The slot holds the parsed header (about 300 bytes of static memory) and,
/// for `alm_model_open_file`, the file mapping. The tensor data is read in
/// place: from your bytes, or from the mapping.
pub struct alm_model {
    _private: [u8; 0],
}

/// What a model slot holds.
pub(crate) struct ModelHandle {
    /// Declared before `_map` so it is dropped first: it borrows the map's bytes.
    pub(crate) model: Model<'static>,
    pub(crate) bytes: &'static [u8],
    _map: Option<MappedModel>,
}

impl Handled for ModelHandle {
    const KIND: Kind = Kind::Model;
}

/// The model table.
pub(crate) static MODELS: Table<ModelHandle, { ALM_MAX_MODELS as usize }> = Table::new();

/// Bytes of static memory of the model table.
#[cfg(test)]
pub(crate) const fn table_bytes() -> usize {
    super::handles::table_bytes::<ModelHandle, { ALM_MAX_MODELS as usize }>()
}

fn table_full(err: &ErrBuf) -> alm_status {
    err.fail_with(
        alm_status::ALM_ERR_FULL,
        format_args!("all {ALM_MAX_MODELS} model handles (ALM_MAX_MODELS) are open; close one"),
    )
}

/// Validates `bytes` and puts the model in a reserved slot.
fn open(
    bytes: &'static [u8],
    map: Option<MappedModel>,
    out: &mut *mut alm_model,
    err: &ErrBuf,
) -> alm_status {
    let Some(slot) = MODELS.reserve() else {
        return table_full(err);
    };
    match Model::from_bytes(bytes) {
        Ok(model) => {
            let id = slot.fill(ModelHandle {
                model,
                bytes,
                _map: map,
            });
            *out = id.to_ptr();
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
/// file the engine cannot run (the message names the key or tensor),
/// `ALM_ERR_FULL` when `ALM_MAX_MODELS` models are open. `*out` is NULL on
/// failure.
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
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, out, "out") });
        *out = std::ptr::null_mut();
        if bytes.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`bytes` is NULL"),
            );
        }
        // SAFETY: the caller guarantees `len` readable bytes that outlive the model.
        let bytes: &'static [u8] = tri!(unsafe { caller_slice(&err, bytes, len, "bytes") });
        open(bytes, None, out, &err)
    })
}

/// Opens a model by mapping the file at `path` (NUL-terminated, any bytes
/// the OS accepts) read-only. Only a regular file is opened: a directory, a
/// FIFO or a device is `ALM_ERR_IO` at once (the open never blocks). The
/// mapping is the one resource this call takes from the OS; it is unmapped
/// by `alm_model_close`. Returns `ALM_ERR_IO` if the file cannot be opened
/// or mapped, otherwise as `alm_model_open_bytes`.
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
        // SAFETY: writable per the contract.
        let out = tri!(unsafe { out_ptr(&err, out, "out") });
        *out = std::ptr::null_mut();
        if path.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`path` is NULL"),
            );
        }
        // SAFETY: the caller guarantees a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(path) };
        let map = match MappedModel::open_c(path) {
            Ok(m) => m,
            Err(e) => {
                return err.fail_with(
                    alm_status::ALM_ERR_IO,
                    format_args!("cannot map {}: {e}", Lossy(path.to_bytes())),
                )
            }
        };
        // SAFETY: the mapping's bytes do not move when the `MappedModel` value
        // moves into the slot, and the slot drops `model` (which borrows
        // them) before the map.
        let bytes: &'static [u8] =
            unsafe { std::slice::from_raw_parts(map.bytes().as_ptr(), map.bytes().len()) };
        open(bytes, Some(map), out, &err)
    })
}

/// Shows bytes as text, invalid UTF-8 as U+FFFD, without allocating.
struct Lossy<'b>(&'b [u8]);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

/// Closes a model: unmaps its file (if it was opened from one) and frees its
/// handle. NULL is accepted (`ALM_OK`). Returns `ALM_ERR_IN_USE` (and
/// closes nothing) while engines created from it are alive,
/// `ALM_ERR_BUSY` while another thread is using it, and
/// `ALM_ERR_BAD_HANDLE` for a handle already closed (a double close) or not
/// a model.
///
/// # Safety
///
/// None beyond the conventions: the handle is only a number.
#[no_mangle]
pub unsafe extern "C" fn alm_model_close(model: *mut alm_model) -> alm_status {
    let err = ErrBuf::none();
    guard(err, || {
        let id = match Id::expect(model, Kind::Model) {
            Ok(id) => id,
            Err(HandleError::Null) => return alm_status::ALM_OK,
            Err(e) => return e.report(&err, "model", Kind::Model),
        };
        match MODELS.remove(id) {
            Ok(handle) => {
                drop(handle);
                alm_status::ALM_OK
            }
            Err(e) => e.report(&err, "model", Kind::Model),
        }
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

versioned!(alm_model_info {
    size: u32,
    n_layers: u32,
    dim: u32,
    ffn_dim: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    rope_dim: u32,
    ctx_train: u32,
    vocab: u32,
    rope_base: f32,
    rms_eps: f32,
    tied_embeddings: u32,
    file_type: u32,
    gguf_version: u32,
    tensor_count: u64,
    metadata_count: u64,
    weights_bytes: u64,
    file_bytes: u64,
});

/// Describes `model`: fills `info` (whose `size` the caller sets to
/// `sizeof(alm_model_info)`) and writes the architecture name,
/// NUL-terminated, into `arch` (`arch_len` bytes; may be NULL).
/// `ALM_ERR_BUFFER_TOO_SMALL` if the name was truncated (`info` is filled).
///
/// # Safety
///
/// `info` writable for `info->size` bytes; `arch` NULL or `arch_len`
/// writable bytes; `err` NULL or `err_len` writable bytes.
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
        let id =
            tri!(Id::expect(model, Kind::Model).map_err(|e| e.report(&err, "model", Kind::Model)));
        if info.is_null() {
            return err.fail_with(
                alm_status::ALM_ERR_NULL_ARGUMENT,
                format_args!("`info` is NULL"),
            );
        }
        // SAFETY: `arch_len` writable bytes (or NULL) per the contract.
        let arch = tri!(unsafe {
            caller_slice_mut(
                &err,
                arch.cast::<u8>(),
                if arch.is_null() { 0 } else { arch_len },
                "arch",
            )
        });
        let result = MODELS.with_ref(id, |h, _| {
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
            // SAFETY: `info` is non-null with `info->size` writable bytes.
            let s = unsafe { fill_out(&err, info, value, "info") };
            if s != alm_status::ALM_OK || arch.is_empty() {
                return s;
            }
            let name = match g.get("general.architecture") {
                Ok(Some(Value::String(s))) => s,
                _ => b"",
            };
            let n = name.len().min(arch.len() - 1);
            arch[..n].copy_from_slice(&name[..n]);
            arch[n] = 0;
            if n < name.len() {
                return err.fail_with(
                    alm_status::ALM_ERR_BUFFER_TOO_SMALL,
                    format_args!(
                        "architecture name truncated: {} bytes needed",
                        name.len() + 1
                    ),
                );
            }
            alm_status::ALM_OK
        });
        result.unwrap_or_else(|e| e.report(&err, "model", Kind::Model))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::versioned::assert_listing_matches;

    #[test]
    fn the_info_listing_matches_the_struct() {
        assert_listing_matches::<alm_model_info>();
    }
}
