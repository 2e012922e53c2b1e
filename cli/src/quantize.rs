//! `arenalm quantize IN OUT TYPE`: a GGUF with every convertible tensor in
//! TYPE (`q8_0`, `q4_0`, `f16`), metadata copied, following llama-quantize's
//! rules for which tensors convert (see `arenalm_core::quant::requant_target`).
//! The shipped Q4_1 model requantized to q8_0, q4_0 or f16 reproduces
//! llama-quantize's tensor bytes exactly.

use std::io::Write;

use arenalm_core::gguf::{GgmlType, Gguf, GgufError, GgufErrorKind, GgufWriter, Sink, Value};
use arenalm_core::quant::{requant_target, requantize_tensor};

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

/// Runs the subcommand.
pub fn run(input: &str, output: &str, wanted: &str) -> Result<(), String> {
    let wanted = match wanted.to_ascii_lowercase().as_str() {
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        "f16" => GgmlType::F16,
        other => return Err(format!("{other:?} is not one of q8_0, q4_0, f16")),
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
    let ftype = file_type(wanted).ok_or("no file type for the target")?;
    let fail = |e: GgufError, w: Option<&std::io::Error>| match w {
        Some(io) => format!("writing {output}: {io}"),
        None => format!("writing {output}: {e}"),
    };
    let mut w = GgufWriter::new(sink, g.tensor_count(), g.metadata_count(), g.alignment())
        .map_err(|e| e.to_string())?;
    for (key, value) in g.metadata() {
        let value = match key {
            "general.file_type" => Value::U32(ftype),
            _ => value,
        };
        w.kv(key, value).map_err(|e| e.to_string())?;
    }
    let targets: Vec<GgmlType> = g
        .tensors()
        .map(|t| requant_target(t.name, &t.shape, t.ggml_type, wanted, has_output))
        .collect();
    for (t, &ty) in g.tensors().zip(&targets) {
        w.tensor_info(t.name, t.shape.as_slice(), ty)
            .map_err(|e| e.to_string())?;
    }
    let (mut in_bytes, mut out_bytes) = (0u64, 0u64);
    let mut scratch = vec![0f32; 1 << 16];
    for (t, &ty) in g.tensors().zip(&targets) {
        let dims = t.shape.as_slice();
        let size =
            arenalm_core::gguf::tensor_bytes(dims, ty).ok_or("tensor size overflows")? as usize;
        let mut dst = vec![0u8; size];
        requantize_tensor(t.ggml_type, t.data, ty, &mut dst, &mut scratch)
            .map_err(|e| format!("{}: {e}", t.name))?;
        w.tensor_data(dims, ty, &dst).map_err(|e| e.to_string())?;
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
        "{input} -> {output} ({}): tensors {} MiB -> {} MiB",
        wanted.name(),
        mib(in_bytes),
        mib(out_bytes)
    );
    Ok(())
}
