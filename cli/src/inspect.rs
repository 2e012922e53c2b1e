//! `arenalm inspect`: metadata, hyperparameters and the tensor table.

use arenalm_core::gguf::{Gguf, Value};
use arenalm_core::model::Model;
use serde_json::{json, Map};

use crate::common::map_model;

/// How many leading array elements to show.
const ARRAY_HEAD: usize = 8;

fn value_json(v: &Value<'_>, full: bool) -> serde_json::Value {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(String::from_utf8_lossy(s)),
        Value::Array(a) => {
            let take = if full { a.len() } else { ARRAY_HEAD };
            let items: Vec<_> = a.iter().take(take).map(|e| value_json(&e, full)).collect();
            if full {
                json!(items)
            } else {
                json!({"array_of": a.elem_type().name(), "len": a.len(), "head": items})
            }
        }
    }
}

fn value_text(v: &Value<'_>) -> String {
    match v {
        Value::String(s) => {
            let s = String::from_utf8_lossy(s);
            let short: String = s.chars().take(120).collect();
            if short.len() < s.len() {
                format!("{short:?}… ({} bytes)", s.len())
            } else {
                format!("{short:?}")
            }
        }
        Value::Array(a) => {
            let head: Vec<String> = a.iter().take(ARRAY_HEAD).map(|e| value_text(&e)).collect();
            let more = if a.len() > ARRAY_HEAD { ", …" } else { "" };
            format!(
                "[{} x {}] [{}{}]",
                a.elem_type().name(),
                a.len(),
                head.join(", "),
                more
            )
        }
        other => value_json(other, false).to_string(),
    }
}

/// Runs the subcommand.
pub fn run(path: &str, as_json: bool, full: bool) -> Result<(), String> {
    let map = map_model(path)?;
    let bytes = map.bytes();
    let g = Gguf::parse(bytes).map_err(|e| format!("{path}: {e}"))?;
    let model = Model::from_gguf(g);
    if as_json {
        let mut meta = Map::new();
        for (k, v) in g.metadata() {
            meta.insert(k.to_string(), value_json(&v, full));
        }
        let tensors: Vec<_> = g
            .tensors()
            .map(|t| {
                json!({
                    "name": t.name,
                    "type": t.ggml_type.name(),
                    "shape": t.shape.as_slice(),
                    "bytes": t.n_bytes(),
                    "offset": t.offset,
                })
            })
            .collect();
        let hparams = match &model {
            Ok(m) => {
                let h = m.hparams;
                json!({
                    "arch": h.arch.name(), "n_layers": h.n_layers, "dim": h.dim,
                    "ffn_dim": h.ffn_dim, "n_heads": h.n_heads, "n_kv_heads": h.n_kv_heads,
                    "head_dim": h.head_dim, "rope_dim": h.rope_dim, "rope_base": h.rope_base,
                    "rms_eps": h.rms_eps, "ctx_train": h.ctx_train, "vocab": h.vocab,
                    "tied_embeddings": h.tied_embeddings,
                    "weights_bytes": m.globals.weights_bytes,
                })
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        let out = json!({
            "file": path,
            "file_bytes": bytes.len(),
            "gguf_version": g.version(),
            "alignment": g.alignment(),
            "data_offset": g.data_start(),
            "metadata_count": g.metadata_count(),
            "tensor_count": g.tensor_count(),
            "metadata": meta,
            "hparams": hparams,
            "tensors": tensors,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "{path}: GGUF v{}, {} bytes, {} metadata entries, {} tensors, alignment {}, data at {}",
        g.version(),
        bytes.len(),
        g.metadata_count(),
        g.tensor_count(),
        g.alignment(),
        g.data_start()
    );
    println!("\nmetadata:");
    for (k, v) in g.metadata() {
        println!("  {k} = {}", value_text(&v));
    }
    match &model {
        Ok(m) => {
            let h = m.hparams;
            println!(
                "\nmodel: {} with {} layers, width {}, ffn {}, {} query / {} KV heads of {}, \
                 vocab {}, context {}, RoPE base {} over {} dims, rms eps {:e}{}",
                h.arch.name(),
                h.n_layers,
                h.dim,
                h.ffn_dim,
                h.n_heads,
                h.n_kv_heads,
                h.head_dim,
                h.vocab,
                h.ctx_train,
                h.rope_base,
                h.rope_dim,
                h.rms_eps,
                if h.tied_embeddings {
                    ", tied embeddings"
                } else {
                    ""
                }
            );
        }
        Err(e) => println!("\nnot runnable by arenalm: {e}"),
    }
    println!(
        "\n{:<36} {:<6} {:<18} {:>12} {:>12}",
        "tensor", "type", "shape", "bytes", "offset"
    );
    let mut total = 0u64;
    for t in g.tensors() {
        total += t.n_bytes();
        let shape = format!("{}", t.shape);
        println!(
            "{:<36} {:<6} {:<18} {:>12} {:>12}",
            t.name,
            t.ggml_type.name(),
            shape,
            t.n_bytes(),
            t.offset
        );
    }
    println!("{:<36} {:<6} {:<18} {:>12}", "total", "", "", total);
    Ok(())
}
