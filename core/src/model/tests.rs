//! Header and index validation on synthetic models.

use std::string::ToString;
use std::vec;

use super::*;
use crate::error::{Error, ModelError, Name, Shape};
use crate::gguf::{GgmlType, Value};
use crate::testutil::{build_gguf, tensor_size, zero_gguf, TinySpec};

fn model_err(spec: &TinySpec) -> ModelError {
    let bytes = zero_gguf(spec);
    match Model::from_bytes(&bytes) {
        Err(Error::Model(e)) => e,
        other => panic!("expected a model error, got {other:?}"),
    }
}

#[test]
fn tiny_llama_reads_every_hyperparameter() {
    let spec = TinySpec::default();
    let bytes = zero_gguf(&spec);
    let m = Model::from_bytes(&bytes).unwrap();
    let hp = m.hparams;
    assert_eq!(hp.arch, Arch::Llama);
    assert_eq!((hp.n_layers, hp.dim, hp.ffn_dim), (2, 64, 96));
    assert_eq!((hp.n_heads, hp.n_kv_heads, hp.head_dim), (4, 2, 16));
    assert_eq!((hp.q_dim(), hp.kv_dim(), hp.gqa_group()), (64, 32, 2));
    assert_eq!(hp.rope_dim, 16);
    assert_eq!(hp.rope_base, 10000.0);
    assert_eq!(hp.rope_scaling, RopeScaling::None);
    assert_eq!(hp.vocab, 300);
    assert!(hp.tied_embeddings);
    assert_eq!(m.globals.output, m.globals.token_embd);
    // Weights: embeddings 64x300 + norm 64, and per layer 2 norms of 64 plus
    // q 64x64, k 32x64, v 32x64, o 64x64, gate/up 96x64 each, down 64x96,
    // all f32: (19200 + 64 + 2 * (128 + 4096 + 2048 + 2048 + 4096 + 3 * 6144)) * 4.
    let per_layer = 128 + 4096 + 2048 + 2048 + 4096 + 3 * 6144;
    assert_eq!(m.globals.weights_bytes, (19_200 + 64 + 2 * per_layer) * 4);
}

#[test]
fn untied_output_and_qwen2_biases_are_indexed() {
    let spec = TinySpec {
        tied: false,
        arch: "qwen2",
        ..TinySpec::default()
    };
    let bytes = zero_gguf(&spec);
    let m = Model::from_bytes(&bytes).unwrap();
    assert!(!m.hparams.tied_embeddings);
    assert_ne!(m.globals.output, m.globals.token_embd);
    assert_eq!(m.hparams.arch.rope_style(), RopeStyle::NeoX);
    let mut layers = vec![LayerIndex::default(); 2];
    build_index(&m.gguf, &m.hparams, |i, l| layers[i as usize] = l).unwrap();
    assert_eq!(layers[1].bq.len, 64 * 4);
    assert_eq!(layers[1].bk.cols, 32);
    assert_eq!((layers[0].w_down.rows, layers[0].w_down.cols), (64, 96));
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let spec = TinySpec {
        override_shape: Some(("blk.1.attn_k.weight".to_string(), vec![64, 48])),
        ..TinySpec::default()
    };
    assert_eq!(
        model_err(&spec),
        ModelError::ShapeMismatch {
            name: Name::new("blk.1.attn_k.weight"),
            expected: Shape::new(&[64, 32]),
            found: Shape::new(&[64, 48]),
        }
    );
}

#[test]
fn missing_unexpected_and_untyped_tensors_are_errors() {
    let spec = TinySpec {
        drop_tensor: Some("blk.0.ffn_up.weight".to_string()),
        ..TinySpec::default()
    };
    assert_eq!(
        model_err(&spec),
        ModelError::MissingTensor {
            name: Name::new("blk.0.ffn_up.weight")
        }
    );
    let spec = TinySpec {
        extra_tensor: Some("blk.0.attn_q_norm.weight".to_string()),
        ..TinySpec::default()
    };
    assert_eq!(
        model_err(&spec),
        ModelError::UnexpectedTensor {
            name: Name::new("blk.0.attn_q_norm.weight")
        }
    );
    let spec = TinySpec {
        override_type: Some(("blk.0.ffn_down.weight".to_string(), GgmlType::Q6_K)),
        ffn: 256,
        ..TinySpec::default()
    };
    assert_eq!(
        model_err(&spec),
        ModelError::UnsupportedType {
            name: Name::new("blk.0.ffn_down.weight"),
            ggml_type: GgmlType::Q6_K.id()
        }
    );
    let spec = TinySpec {
        override_type: Some(("output_norm.weight".to_string(), GgmlType::F16)),
        ..TinySpec::default()
    };
    assert!(matches!(
        model_err(&spec),
        ModelError::UnsupportedType { .. }
    ));
}

fn with_kv(kv: &[(&str, Value<'_>)]) -> crate::Result<Model<'static>> {
    let spec = TinySpec::default();
    let bytes = build_gguf(&spec, |_, d, t| vec![0u8; tensor_size(d, t)], kv);
    let leaked: &'static [u8] = std::boxed::Box::leak(bytes.into_boxed_slice());
    Model::from_bytes(leaked)
}

#[test]
fn bad_hyperparameters_are_refused_with_the_key() {
    // A duplicate key (the builder writes head_count_kv = 2 already).
    assert!(matches!(
        with_kv(&[("llama.attention.head_count_kv", Value::U32(3))]),
        Err(Error::Gguf(_))
    ));
    let spec = TinySpec {
        n_kv_heads: 3,
        ..TinySpec::default()
    };
    let bytes = zero_gguf(&spec);
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(Error::Model(ModelError::BadValue { .. }))
    ));
    let spec = TinySpec {
        arch: "mamba",
        ..TinySpec::default()
    };
    assert_eq!(
        model_err(&spec),
        ModelError::UnsupportedArchitecture {
            name: Name::new("mamba")
        }
    );
    match with_kv(&[("llama.rope.scaling.type", Value::String(b"linear"))]) {
        Err(Error::Model(ModelError::BadValue { key, .. })) => {
            assert_eq!(key.as_str(), "llama.rope.scaling.factor")
        }
        other => panic!("{other:?}"),
    }
    let m = with_kv(&[
        ("llama.rope.scaling.type", Value::String(b"linear")),
        ("llama.rope.scaling.factor", Value::F32(4.0)),
    ])
    .unwrap();
    assert_eq!(m.hparams.rope_scaling, RopeScaling::Linear { factor: 4.0 });
    assert!(with_kv(&[("llama.rope.dimension_count", Value::U32(15))]).is_err());
    assert!(with_kv(&[("llama.attention.key_length", Value::U32(0))]).is_err());
}
