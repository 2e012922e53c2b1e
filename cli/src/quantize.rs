//! `arenalm quantize IN OUT [TYPE] [--repack]`: a GGUF with every
//! convertible tensor in TYPE (`q8_0`, `q4_0`, `f16`), metadata copied,
//! following llama-quantize's rules for which tensors convert (see
//! `arenalm_core::quant::requant_target`). The shipped Q4_1 model
//! requantized to q8_0, q4_0 or f16 reproduces llama-quantize's tensor bytes
//! exactly. With `--repack`, every Q8_0, Q4_0 or Q4_1 matrix (a 2-D
//! `*weight` tensor) with a multiple of 16 rows is then stored in the 16-row
//! panel layout (`arenalm_core::kernels::to_panel_layout`): the same bytes
//! reordered, read in place by the GEMM with no pack step.

use std::io::Write;

use arenalm_core::gguf::{GgmlType, Gguf, GgufError, GgufErrorKind, GgufWriter, Sink, Value};
use arenalm_core::kernels::to_panel_layout;
use arenalm_core::quant::{requant_target, requantize_tensor};
use arenalm_core::Shape;

use crate::common::{map_model, mib};

/// A GGUF sink over any writer, keeping the I/O error for the report.
struct IoSink<W: Write> {
    out: W,
    error: Option<std::io::Error>,
}

impl<W: Write> Sink for IoSink<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.out.write_all(bytes).map_err(|e| {
            self.error = Some(e);
            GgufError {
                kind: GgufErrorKind::WriterMisuse { what: "I/O error" },
                offset: 0,
            }
        })
    }
}

/// llama.cpp's `general.file_type` (llama_ftype) for a target type.
fn file_type(t: GgmlType) -> Option<u32> {
    match t {
        GgmlType::F32 => Some(0),
        GgmlType::F16 => Some(1),
        GgmlType::Q4_0 => Some(2),
        GgmlType::Q4_1 => Some(3),
        GgmlType::Q8_0 => Some(7),
        GgmlType::BF16 => Some(32),
        _ => None,
    }
}

/// Whether `--repack` stores tensor `name` of `shape` and type `ty` in
/// panels: a 2-D weight matrix of a type with a panel form and a multiple of
/// 16 rows.
fn repackable(name: &str, shape: &Shape, ty: GgmlType) -> bool {
    name.ends_with("weight")
        && shape.n_dims == 2
        && ty.panel16().is_some()
        && shape.dims[1].is_multiple_of(16)
}

/// Runs the subcommand.
pub fn run(input: &str, output: &str, wanted: Option<&str>, repack: bool) -> Result<(), String> {
    let wanted = match wanted.map(str::to_ascii_lowercase).as_deref() {
        Some("q8_0") => Some(GgmlType::Q8_0),
        Some("q4_0") => Some(GgmlType::Q4_0),
        Some("f16") => Some(GgmlType::F16),
        None if repack => None,
        None => return Err("give a target type (q8_0, q4_0, f16), --repack, or both".into()),
        Some(other) => return Err(format!("{other:?} is not one of q8_0, q4_0, f16")),
    };
    let map = map_model(input)?;
    let g = Gguf::parse(map.bytes()).map_err(|e| format!("{input}: {e}"))?;
    let has_output = g
        .tensor("output.weight")
        .map_err(|e| e.to_string())?
        .is_some();
    let file = std::fs::File::create(output).map_err(|e| format!("cannot create {output}: {e}"))?;
    let sink = IoSink {
        out: std::io::BufWriter::with_capacity(1 << 20, file),
        error: None,
    };
    let ftype = match wanted {
        Some(w) => Some(file_type(w).ok_or("no file type for the target")?),
        None => None,
    };
    let fail = |e: GgufError, w: Option<&std::io::Error>| match w {
        Some(io) => format!("writing {output}: {io}"),
        None => format!("writing {output}: {e}"),
    };
    let mut w = GgufWriter::new(sink, g.tensor_count(), g.metadata_count(), g.alignment())
        .map_err(|e| e.to_string())?;
    for (key, value) in g.metadata() {
        let value = match (key, ftype) {
            ("general.file_type", Some(ftype)) => Value::U32(ftype),
            _ => value,
        };
        w.kv(key, value).map_err(|e| e.to_string())?;
    }
    // (type after conversion, type stored: its panel form with --repack)
    let targets: Vec<(GgmlType, GgmlType)> = g
        .tensors()
        .map(|t| {
            let ty = match wanted {
                Some(w) => requant_target(t.name, &t.shape, t.ggml_type, w, has_output),
                None => t.ggml_type,
            };
            let stored = match ty.panel16() {
                Some(p) if repack && repackable(t.name, &t.shape, ty) => p,
                _ => ty,
            };
            (ty, stored)
        })
        .collect();
    for (t, &(_, stored)) in g.tensors().zip(&targets) {
        w.tensor_info(t.name, t.shape.as_slice(), stored)
            .map_err(|e| e.to_string())?;
    }
    let (mut in_bytes, mut out_bytes) = (0u64, 0u64);
    let mut scratch = vec![0f32; 1 << 16];
    let mut panels = Vec::new();
    let mut n_repacked = 0;
    for (t, &(ty, stored)) in g.tensors().zip(&targets) {
        let dims = t.shape.as_slice();
        let size =
            arenalm_core::gguf::tensor_bytes(dims, ty).ok_or("tensor size overflows")? as usize;
        let mut dst = vec![0u8; size];
        requantize_tensor(t.ggml_type, t.data, ty, &mut dst, &mut scratch)
            .map_err(|e| format!("{}: {e}", t.name))?;
        if stored != ty {
            panels.resize(size, 0);
            let (cols, rows) = (t.shape.dims[0] as usize, t.shape.dims[1] as usize);
            to_panel_layout(ty, &dst, rows, cols, &mut panels)
                .map_err(|e| format!("{}: {e}", t.name))?;
            std::mem::swap(&mut dst, &mut panels);
            n_repacked += 1;
        }
        w.tensor_data(dims, stored, &dst)
            .map_err(|e| e.to_string())?;
        in_bytes += t.n_bytes();
        out_bytes += size as u64;
    }
    let mut sink = match w.finish() {
        Ok(s) => s,
        Err(e) => return Err(fail(e, None)),
    };
    if let Some(e) = sink.error.take() {
        return Err(format!("writing {output}: {e}"));
    }
    sink.out
        .flush()
        .map_err(|e| format!("writing {output}: {e}"))?;
    eprintln!(
        "{input} -> {output} ({}{}): tensors {} MiB -> {} MiB",
        wanted.map_or("types kept", |w| w.name()),
        if repack {
            format!(", {n_repacked} matrices in 16-row panels")
        } else {
            String::new()
        },
        mib(in_bytes),
        mib(out_bytes)
    );
    Ok(())
}
