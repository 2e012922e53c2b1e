//! Test support: tiny synthetic llama-family GGUF files.
#![allow(dead_code)]

use std::string::{String, ToString};
use std::vec::Vec;

use crate::gguf::{GgmlType, GgufError, GgufWriter, Sink, Value, ValueType};

/// A sink into a `Vec`.
pub struct VecSink(pub Vec<u8>);

impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Deterministic xorshift generator for test data.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Shape and types of a tiny model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Blocks.
    pub n_layers: u64,
    /// Embedding width.
    pub dim: u64,
    /// Feed-forward width.
    pub ffn: u64,
    /// Query heads.
    pub n_heads: u64,
    /// KV heads.
    pub n_kv_heads: u64,
    /// Vocabulary.
    pub vocab: u64,
    /// Training context.
    pub ctx: u32,
    /// Type of the projection matrices.
    pub matrix_type: GgmlType,
    /// Whether `output.weight` is omitted.
    pub tied: bool,
    /// Replace the shape of one tensor (name, dims).
    pub override_shape: Option<(String, Vec<u64>)>,
    /// Replace the type of one tensor.
    pub override_type: Option<(String, GgmlType)>,
    /// Add an extra tensor with this name.
    pub extra_tensor: Option<String>,
    /// Leave out a tensor with this name.
    pub drop_tensor: Option<String>,
    /// Write the tensor table in an order shuffled with this seed.
    pub shuffle_seed: Option<u64>,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            arch: "llama",
            n_layers: 2,
            dim: 64,
            ffn: 96,
            n_heads: 4,
            n_kv_heads: 2,
            vocab: 300,
            ctx: 256,
            matrix_type: GgmlType::F32,
            tied: true,
            override_shape: None,
            override_type: None,
            extra_tensor: None,
            drop_tensor: None,
            shuffle_seed: None,
        }
    }
}

/// The tensors of `spec`: (name, dims innermost first, type).
pub fn tensor_list(spec: &TinySpec) -> Vec<(String, Vec<u64>, GgmlType)> {
    let (d, f, v) = (spec.dim, spec.ffn, spec.vocab);
    let hd = spec.dim / spec.n_heads;
    let (q, kv) = (spec.n_heads * hd, spec.n_kv_heads * hd);
    let m = spec.matrix_type;
    let mut out: Vec<(String, Vec<u64>, GgmlType)> = Vec::new();
    out.push(("token_embd.weight".into(), [d, v].into(), m));
    out.push(("output_norm.weight".into(), [d].into(), GgmlType::F32));
    if !spec.tied {
        out.push(("output.weight".into(), [d, v].into(), m));
    }
    for l in 0..spec.n_layers {
        let n = |s: &str| std::format!("blk.{l}.{s}");
        out.push((n("attn_norm.weight"), [d].into(), GgmlType::F32));
        out.push((n("attn_q.weight"), [d, q].into(), m));
        out.push((n("attn_k.weight"), [d, kv].into(), m));
        out.push((n("attn_v.weight"), [d, kv].into(), m));
        out.push((n("attn_output.weight"), [q, d].into(), m));
        out.push((n("ffn_norm.weight"), [d].into(), GgmlType::F32));
        out.push((n("ffn_gate.weight"), [d, f].into(), m));
        out.push((n("ffn_up.weight"), [d, f].into(), m));
        out.push((n("ffn_down.weight"), [f, d].into(), m));
        if spec.arch == "qwen2" {
            out.push((n("attn_q.bias"), [q].into(), GgmlType::F32));
            out.push((n("attn_k.bias"), [kv].into(), GgmlType::F32));
            out.push((n("attn_v.bias"), [kv].into(), GgmlType::F32));
        }
    }
    if let Some(extra) = &spec.extra_tensor {
        out.push((extra.clone(), [d].into(), GgmlType::F32));
    }
    if let Some(drop) = &spec.drop_tensor {
        out.retain(|t| &t.0 != drop);
    }
    for t in out.iter_mut() {
        if let Some((name, dims)) = &spec.override_shape {
            if &t.0 == name {
                t.1 = dims.clone();
            }
        }
        if let Some((name, ty)) = &spec.override_type {
            if &t.0 == name {
                t.2 = *ty;
            }
        }
    }
    if let Some(seed) = spec.shuffle_seed {
        let mut rng = Rng(seed | 1);
        for i in (1..out.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            out.swap(i, j);
        }
    }
    out
}

/// Bytes of a tensor.
pub fn tensor_size(dims: &[u64], ty: GgmlType) -> usize {
    crate::gguf::tensor_bytes(dims, ty).unwrap() as usize
}

/// Builds the GGUF of `spec`, with `fill(name, dims, type)` giving each
/// tensor's bytes, plus whatever metadata `extra_kv` adds (a key that the
/// builder writes too then appears twice).
pub fn build_gguf(
    spec: &TinySpec,
    fill: impl FnMut(&str, &[u64], GgmlType) -> Vec<u8>,
    extra_kv: &[(&str, Value<'_>)],
) -> Vec<u8> {
    build_gguf_edit(spec, fill, extra_kv, &[])
}

/// [`build_gguf`], then every `(key, value)` of `edit` replaces the builder's
/// entry for `key` (appended if there is none; removed if `value` is `None`).
pub fn build_gguf_edit(
    spec: &TinySpec,
    mut fill: impl FnMut(&str, &[u64], GgmlType) -> Vec<u8>,
    extra_kv: &[(&str, Value<'_>)],
    edit: &[(&str, Option<Value<'_>>)],
) -> Vec<u8> {
    let tensors = tensor_list(spec);
    let a = spec.arch;
    let mut kvs: Vec<(String, Value<'_>)> = [
        (
            "general.architecture".to_string(),
            Value::String(a.as_bytes()),
        ),
        (
            std::format!("{a}.block_count"),
            Value::U32(spec.n_layers as u32),
        ),
        (std::format!("{a}.context_length"), Value::U32(spec.ctx)),
        (
            std::format!("{a}.embedding_length"),
            Value::U32(spec.dim as u32),
        ),
        (
            std::format!("{a}.feed_forward_length"),
            Value::U32(spec.ffn as u32),
        ),
        (
            std::format!("{a}.attention.head_count"),
            Value::U32(spec.n_heads as u32),
        ),
        (
            std::format!("{a}.attention.head_count_kv"),
            Value::U32(spec.n_kv_heads as u32),
        ),
        (std::format!("{a}.rope.freq_base"), Value::F32(10000.0)),
        (
            std::format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (
            std::format!("{a}.vocab_size"),
            Value::U32(spec.vocab as u32),
        ),
    ]
    .into_iter()
    .chain(extra_kv.iter().map(|(k, v)| (k.to_string(), *v)))
    .collect();
    for (key, value) in edit {
        match (kvs.iter().position(|(k, _)| k == key), value) {
            (Some(i), Some(v)) => kvs[i].1 = *v,
            (Some(i), None) => {
                kvs.remove(i);
            }
            (None, Some(v)) => kvs.push((key.to_string(), *v)),
            (None, None) => {}
        }
    }
    let mut w = GgufWriter::with_default_alignment(
        VecSink(Vec::new()),
        tensors.len() as u64,
        kvs.len() as u64,
    )
    .unwrap();
    for (k, v) in &kvs {
        w.kv(k, *v).unwrap();
    }
    for (name, dims, ty) in &tensors {
        w.tensor_info(name, dims, *ty).unwrap();
    }
    for (name, dims, ty) in &tensors {
        let data = fill(name, dims, *ty);
        w.tensor_data(dims, *ty, &data).unwrap();
    }
    w.finish().unwrap().0
}

/// Builds `spec` with zeroed tensor data and no extra metadata.
pub fn zero_gguf(spec: &TinySpec) -> Vec<u8> {
    build_gguf(
        spec,
        |_, dims, ty| std::vec![0u8; tensor_size(dims, ty)],
        &[],
    )
}

/// A string array value's raw element bytes, for `Value::Array`.
pub fn string_array_bytes(items: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// Array element type of string arrays (re-exported for callers).
pub const STRING: ValueType = ValueType::String;
