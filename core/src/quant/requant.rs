//! Requantizing a model's tensors: the conversion of one tensor through f32,
//! and the rule that says which tensors `llama-quantize` converts.

use super::{dequantize_row, quantize_row, row_bytes, supported, QK};
use crate::gguf::GgmlType;
use crate::{Error, Result, Shape};

/// Converts a whole tensor from `src_type` to `dst_type` through f32.
///
/// `src` holds a whole number of `src_type` blocks; `dst` must be exactly
/// the bytes of the same number of values in `dst_type`. The values are
/// decoded into `scratch` and re-encoded, `scratch.len()` (rounded down to a
/// multiple of 32) values at a time; every format here is blockwise within
/// a row, so the chunking does not change the result as long as the
/// tensor's rows are whole blocks of both types (which [`requant_target`]
/// guarantees). Pass at least one row of scratch.
///
/// When the types are equal the bytes are copied unchanged, as
/// `llama-quantize` does (re-encoding Q8_0 as Q8_0 would not be an identity).
pub fn requantize_tensor(
    src_type: GgmlType,
    src: &[u8],
    dst_type: GgmlType,
    dst: &mut [u8],
    scratch: &mut [f32],
) -> Result<()> {
    let src_block_bytes = row_bytes(src_type, block_of(src_type))?;
    if !src.len().is_multiple_of(src_block_bytes) {
        return Err(Error::InvalidArgument {
            what: "requantize_tensor: src is not a whole number of blocks",
        });
    }
    let n_values = (src.len() / src_block_bytes)
        .checked_mul(block_of(src_type))
        .ok_or(Error::Overflow {
            what: "requantize_tensor values",
        })?;
    if dst.len() != row_bytes(dst_type, n_values)? {
        return Err(Error::InvalidArgument {
            what: "requantize_tensor: dst length does not hold the same values in dst_type",
        });
    }
    if src_type == dst_type {
        dst.copy_from_slice(src);
        return Ok(());
    }
    let chunk = scratch.len() / QK * QK;
    if chunk == 0 && n_values > 0 {
        return Err(Error::InvalidArgument {
            what: "requantize_tensor: scratch holds fewer than 32 values",
        });
    }
    let mut done = 0usize;
    while done < n_values {
        let n = chunk.min(n_values - done);
        let src_at = done / block_of(src_type) * src_block_bytes;
        let dst_at = row_bytes(dst_type, done)?;
        let src_len = row_bytes(src_type, n)?;
        let dst_len = row_bytes(dst_type, n)?;
        let (Some(s), Some(d), Some(f)) = (
            src.get(src_at..src_at + src_len),
            dst.get_mut(dst_at..dst_at + dst_len),
            scratch.get_mut(..n),
        ) else {
            return Err(Error::InvalidArgument {
                what: "requantize_tensor: chunk out of bounds",
            });
        };
        dequantize_row(src_type, s, f)?;
        quantize_row(dst_type, f, d)?;
        done += n;
    }
    Ok(())
}

fn block_of(ty: GgmlType) -> usize {
    ty.block_size() as usize
}

/// The type `llama-quantize` gives tensor `name` of `shape` (stored as
/// `src`) when asked for `wanted`, restricted to the types arenalm writes.
///
/// `has_output` says whether the model has its own `output.weight`; without
/// one, `token_embd.weight` doubles as the output head and follows the
/// output rule. The rules, from `llama_model_quantize_impl` and
/// `llama_tensor_get_type`:
///
/// * Only names ending in `weight` with two or more dimensions are
///   converted, and never norms (`*_norm.weight`), positional embeddings or
///   token types: 1-D tensors such as the RMS-norm weights stay as they are
///   (F32).
/// * For a quantized `wanted`, the output head (`output.weight`, or the
///   tied `token_embd.weight`) gets Q8_0 when its row length is not a
///   multiple of `wanted`'s block, and Q6_K otherwise unless `wanted` is
///   Q8_0 — and Q6_K falls back to Q8_0 when the row is not a multiple of
///   256. arenalm does not write Q6_K, so the head always gets Q8_0 here;
///   this matches `llama-quantize` whenever the row length is not a
///   multiple of 256 (SmolLM2: 576) and is one step more precise otherwise.
/// * For F16 / BF16 / F32 `wanted`, every converted tensor gets `wanted`.
/// * A tensor already of the target type is copied as is.
///
/// Where `llama-quantize` would refuse (a row length that is not a whole
/// number of blocks of the target, or a target arenalm cannot write) the
/// tensor keeps `src`, i.e. is copied.
pub fn requant_target(
    name: &str,
    shape: &Shape,
    src: GgmlType,
    wanted: GgmlType,
    has_output: bool,
) -> GgmlType {
    let converted = name.ends_with("weight")
        && shape.n_dims >= 2
        && !name.contains("_norm.weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !name.contains("ffn_gate_inp.weight");
    if !converted || !supported(wanted) || !supported(src) {
        return src;
    }
    let is_output = name == "output.weight" || (!has_output && name == "token_embd.weight");
    let is_quantized = !matches!(wanted, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
    let target = if is_quantized && is_output {
        GgmlType::Q8_0
    } else {
        wanted
    };
    let row = shape.dims[0];
    if !row.is_multiple_of(u64::from(target.block_size())) {
        return src;
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(cols: u64, rows: u64) -> Shape {
        Shape::new(&[cols, rows])
    }

    #[test]
    fn norms_and_vectors_keep_their_type() {
        let v = Shape::new(&[576]);
        for wanted in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16] {
            assert_eq!(
                requant_target("blk.0.attn_norm.weight", &v, GgmlType::F32, wanted, false),
                GgmlType::F32
            );
            assert_eq!(
                requant_target("output_norm.weight", &v, GgmlType::F32, wanted, false),
                GgmlType::F32
            );
            // 2-D but a norm: still kept.
            assert_eq!(
                requant_target(
                    "blk.0.q_norm.weight",
                    &matrix(64, 2),
                    GgmlType::F32,
                    wanted,
                    false
                ),
                GgmlType::F32
            );
        }
    }

    #[test]
    fn smollm2_rules_match_the_reference_types() {
        // The types in tests/reference/requant-tensor-sha256.json.
        let q4_1 = GgmlType::Q4_1;
        let attn = matrix(576, 576);
        let embd = matrix(576, 49152);
        let cases = [
            (GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0),
            (GgmlType::Q4_0, GgmlType::Q4_0, GgmlType::Q8_0),
            (GgmlType::F16, GgmlType::F16, GgmlType::F16),
        ];
        for (wanted, weights, tied_embd) in cases {
            for name in ["blk.3.attn_q.weight", "blk.29.ffn_down.weight"] {
                assert_eq!(requant_target(name, &attn, q4_1, wanted, false), weights);
            }
            assert_eq!(
                requant_target("token_embd.weight", &embd, GgmlType::Q8_0, wanted, false),
                tied_embd
            );
        }
    }

    #[test]
    fn untied_embeddings_follow_the_wanted_type_and_output_gets_q8_0() {
        let embd = matrix(576, 49152);
        assert_eq!(
            requant_target(
                "token_embd.weight",
                &embd,
                GgmlType::F16,
                GgmlType::Q4_0,
                true
            ),
            GgmlType::Q4_0
        );
        assert_eq!(
            requant_target("output.weight", &embd, GgmlType::F16, GgmlType::Q4_0, true),
            GgmlType::Q8_0
        );
    }

    #[test]
    fn rows_that_are_not_whole_blocks_are_copied() {
        assert_eq!(
            requant_target(
                "blk.0.attn_q.weight",
                &matrix(48, 4),
                GgmlType::F32,
                GgmlType::Q8_0,
                true
            ),
            GgmlType::F32
        );
        assert_eq!(
            requant_target(
                "blk.0.attn_q.weight",
                &matrix(48, 4),
                GgmlType::F32,
                GgmlType::F16,
                true
            ),
            GgmlType::F16
        );
        // A target arenalm does not write.
        assert_eq!(
            requant_target(
                "blk.0.attn_q.weight",
                &matrix(256, 4),
                GgmlType::F32,
                GgmlType::Q6_K,
                true
            ),
            GgmlType::F32
        );
    }

    #[test]
    fn requantize_copies_equal_types_and_converts_through_f32() {
        let x: [f32; 64] = core::array::from_fn(|i| (i as f32 - 30.0) * 0.37);
        let mut q4 = [0u8; 40];
        quantize_row(GgmlType::Q4_1, &x, &mut q4).unwrap();
        // Same type: bytes copied.
        let mut same = [0u8; 40];
        let mut scratch = [0f32; 32];
        requantize_tensor(GgmlType::Q4_1, &q4, GgmlType::Q4_1, &mut same, &mut scratch).unwrap();
        assert_eq!(same, q4);
        // Q4_1 -> Q8_0 in 32-value chunks equals doing the whole row at once.
        let mut chunked = [0u8; 68];
        requantize_tensor(
            GgmlType::Q4_1,
            &q4,
            GgmlType::Q8_0,
            &mut chunked,
            &mut scratch,
        )
        .unwrap();
        let mut f = [0f32; 64];
        dequantize_row(GgmlType::Q4_1, &q4, &mut f).unwrap();
        let mut whole = [0u8; 68];
        quantize_row(GgmlType::Q8_0, &f, &mut whole).unwrap();
        assert_eq!(chunked, whole);
        // Bad lengths are errors.
        assert!(requantize_tensor(
            GgmlType::Q4_1,
            &q4[..39],
            GgmlType::Q8_0,
            &mut whole,
            &mut scratch
        )
        .is_err());
        assert!(requantize_tensor(
            GgmlType::Q4_1,
            &q4,
            GgmlType::Q8_0,
            &mut whole[..67],
            &mut scratch
        )
        .is_err());
        assert!(requantize_tensor(
            GgmlType::Q4_1,
            &q4,
            GgmlType::Q8_0,
            &mut whole,
            &mut scratch[..31]
        )
        .is_err());
        assert!(requantize_tensor(
            GgmlType::Q6_K,
            &q4,
            GgmlType::Q8_0,
            &mut whole,
            &mut scratch
        )
        .is_err());
    }
}
