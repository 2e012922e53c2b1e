//! Header and index validation on synthetic models.

use std::string::ToString;
use std::vec;

use super::*;
use crate::error::{Error, ModelError, Name, Shape};
use crate::gguf::{GgmlType, Value};
use crate::model::hparams::{CAPS, MAX_CONTEXT, MAX_HEADS, MAX_HEAD_DIM};
use crate::testutil::{build_gguf, build_gguf_edit, tensor_size, zero_gguf, TinySpec};

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

/// The model of the default spec with metadata `edit`s applied.
fn edited(edit: &[(&str, Option<Value<'_>>)]) -> crate::Result<Model<'static>> {
    let bytes = build_gguf_edit(
        &TinySpec::default(),
        |_, d, t| vec![0u8; tensor_size(d, t)],
        &[],
        edit,
    );
    let leaked: &'static [u8] = std::boxed::Box::leak(bytes.into_boxed_slice());
    Model::from_bytes(leaked)
}

fn too_large(key: &str, value: u64, cap: u32) -> Error {
    Error::Model(ModelError::TooLarge {
        key: Name::new(key),
        value,
        cap: u64::from(cap),
    })
}

#[test]
fn head_count_and_key_length_of_65536_are_a_named_error_not_an_overflow() {
    // 65536 x 65536 = 2^32: wrapped to 0 before, which sized every attention
    // tensor as empty. Now the first dimension over its cap is named.
    let e = edited(&[
        ("llama.attention.head_count", Some(Value::U32(65536))),
        ("llama.attention.head_count_kv", Some(Value::U32(65536))),
        ("llama.attention.key_length", Some(Value::U32(65536))),
    ])
    .unwrap_err();
    assert_eq!(e, too_large("llama.attention.head_count", 65536, MAX_HEADS));
    let mut buf = [0u8; 128];
    assert_eq!(
        crate::fmt_util::write_to(&mut buf, format_args!("{e}")),
        "metadata llama.attention.head_count = 65536 exceeds the cap of 1024"
    );
    // The key length alone, too.
    assert_eq!(
        edited(&[("llama.attention.key_length", Some(Value::U32(65536)))]).unwrap_err(),
        too_large("llama.attention.key_length", 65536, MAX_HEAD_DIM)
    );
}

#[test]
fn every_dimension_cap_is_enforced_at_its_edge_with_its_own_error() {
    for (suffix, cap) in CAPS {
        let key = std::format!("llama.{suffix}");
        // One above the cap: the named error, in any integer type.
        for value in [
            Value::U32(cap + 1),
            Value::U64(u64::from(cap) + 1),
            Value::I64(i64::from(cap) + 1),
        ] {
            assert_eq!(
                edited(&[(&key, Some(value))]).unwrap_err(),
                too_large(&key, u64::from(cap) + 1, cap),
                "{key} = {value:?}"
            );
        }
        // Far above, beyond 32 bits: the same error with the value kept.
        assert_eq!(
            edited(&[(&key, Some(Value::U64(1 << 40)))]).unwrap_err(),
            too_large(&key, 1 << 40, cap),
        );
        // At the cap: whatever else is wrong with this tiny model, not that.
        match edited(&[(&key, Some(Value::U32(cap)))]) {
            Err(Error::Model(ModelError::TooLarge { key: k, .. })) if k.as_str() == key => {
                panic!("{key} = {cap} refused as too large")
            }
            Err(Error::Model(ModelError::TooLarge { .. })) => {}
            Err(Error::Model(_)) | Ok(_) => {}
            Err(other) => panic!("{key} = {cap}: {other:?}"),
        }
        // Zero: a bad value, not a division by zero later.
        assert!(
            matches!(
                edited(&[(&key, Some(Value::U32(0)))]),
                Err(Error::Model(ModelError::BadValue { .. }))
            ),
            "{key} = 0"
        );
    }
    // A head size derived from the width is capped as the key length.
    assert_eq!(
        edited(&[
            ("llama.embedding_length", Some(Value::U32(65536))),
            ("llama.attention.head_count", Some(Value::U32(1))),
            ("llama.attention.head_count_kv", Some(Value::U32(1))),
        ])
        .unwrap_err(),
        too_large("llama.attention.key_length", 65536, MAX_HEAD_DIM)
    );
    // Without vocab_size, the token list's length is capped.
    let tokens = crate::testutil::string_array_bytes(&["a"; 3]);
    assert!(edited(&[
        ("llama.vocab_size", None),
        (
            "tokenizer.ggml.tokens",
            Some(Value::Array(crate::gguf::ArrayView::new(
                crate::gguf::ValueType::String,
                3,
                &tokens
            )))
        ),
    ])
    .is_err());
    // YaRN's original context is capped like the context.
    assert_eq!(
        edited(&[
            ("llama.rope.scaling.type", Some(Value::String(b"yarn"))),
            (
                "llama.rope.scaling.original_context_length",
                Some(Value::U32(MAX_CONTEXT + 1))
            ),
        ])
        .unwrap_err(),
        too_large(
            "llama.rope.scaling.original_context_length",
            u64::from(MAX_CONTEXT) + 1,
            MAX_CONTEXT
        )
    );
}

#[test]
fn validate_refuses_hand_made_hyperparameters_and_products_never_wrap() {
    let bytes = zero_gguf(&TinySpec::default());
    let good = Model::from_bytes(&bytes).unwrap().hparams;
    assert!(good.validate().is_ok());
    let huge = Hparams {
        n_heads: u32::MAX,
        n_kv_heads: u32::MAX,
        head_dim: u32::MAX,
        ..good
    };
    // Saturating, never wrapping or panicking, even unvalidated.
    assert_eq!((huge.q_dim(), huge.kv_dim()), (u32::MAX, u32::MAX));
    assert!(matches!(
        huge.validate(),
        Err(Error::Model(ModelError::TooLarge { .. }))
    ));
    let no_kv = Hparams {
        n_kv_heads: 0,
        ..good
    };
    assert_eq!(no_kv.gqa_group(), 0);
    assert!(no_kv.validate().is_err());
    // Anything that sizes memory from hyperparameters validates them first.
    let m = Model::from_bytes(&bytes).unwrap();
    let bad = Model { hparams: huge, ..m };
    assert!(build_index(&bad.gguf, &bad.hparams, |_, _| {}).is_err());
}

#[test]
fn the_index_is_the_same_whatever_the_order_of_the_tensor_table() {
    let plain = zero_gguf(&TinySpec::default());
    let m = Model::from_bytes(&plain).unwrap();
    let mut want = vec![LayerIndex::default(); 2];
    build_index(&m.gguf, &m.hparams, |i, l| want[i as usize] = l).unwrap();
    for seed in 1..20 {
        let bytes = zero_gguf(&TinySpec {
            shuffle_seed: Some(seed),
            ..TinySpec::default()
        });
        let m2 = Model::from_bytes(&bytes).unwrap();
        let mut got = vec![LayerIndex::default(); 2];
        let mut order = vec![];
        build_index(&m2.gguf, &m2.hparams, |i, l| {
            order.push(i);
            got[i as usize] = l;
        })
        .unwrap();
        assert_eq!(order, [0, 1]);
        // Same shapes and types; offsets differ with the order.
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(
                (a.wq.rows, a.wq.cols, a.wq.len),
                (b.wq.rows, b.wq.cols, b.wq.len)
            );
            assert_eq!(
                (a.w_down.rows, a.w_down.cols),
                (b.w_down.rows, b.w_down.cols)
            );
            let t = m2
                .gguf
                .tensors()
                .find(|t| t.file_offset == a.wo.offset)
                .unwrap();
            assert!(t.name.ends_with("attn_output.weight"), "{}", t.name);
        }
        assert_eq!(m2.globals.weights_bytes, m.globals.weights_bytes);
    }
}

#[test]
fn non_canonical_layer_numbers_and_duplicates_are_refused() {
    for name in [
        "blk.00.attn_norm.weight",
        "blk.+0.attn_norm.weight",
        "blk.2.attn_norm.weight",
        "blk..attn_norm.weight",
        "blk.99999999999.attn_norm.weight",
        "blk.0.attn_q.bias",
    ] {
        let spec = TinySpec {
            extra_tensor: Some(name.to_string()),
            ..TinySpec::default()
        };
        assert_eq!(
            model_err(&spec),
            ModelError::UnexpectedTensor {
                name: Name::new(name)
            }
        );
    }
    // The same tensor twice: the reader's duplicate error.
    let spec = TinySpec {
        extra_tensor: Some("output_norm.weight".to_string()),
        ..TinySpec::default()
    };
    let bytes = zero_gguf(&spec);
    match Model::from_bytes(&bytes) {
        Err(Error::Gguf(e)) => assert_eq!(
            e.kind,
            crate::gguf::GgufErrorKind::DuplicateTensor {
                name: Name::new("output_norm.weight")
            }
        ),
        other => panic!("{other:?}"),
    }
}
