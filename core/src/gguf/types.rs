//! The ggml element-type table: every type id that can appear in a GGUF
//! tensor, with its block size and bytes per block, and whether arenalm's
//! kernels compute with it directly.

/// A ggml tensor element type, by its GGUF id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(non_camel_case_types, missing_docs)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    /// Interleaved Q4_0 (removed from GGUF by llama.cpp; recognised, not computed).
    Q4_0_4_4 = 31,
    /// Interleaved Q4_0 (removed).
    Q4_0_4_8 = 32,
    /// Interleaved Q4_0 (removed).
    Q4_0_8_8 = 33,
    TQ1_0 = 34,
    TQ2_0 = 35,
    /// Interleaved IQ4_NL (removed).
    IQ4_NL_4_4 = 36,
    /// Interleaved IQ4_NL (removed).
    IQ4_NL_4_8 = 37,
    /// Interleaved IQ4_NL (removed).
    IQ4_NL_8_8 = 38,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
    /// arenalm's Q4_0 in 16-row panels (`kernels::WeightLayout::Panel16`):
    /// the same bytes as Q4_0, reordered for the integer GEMM. Not a ggml
    /// type: other GGUF readers refuse it instead of misreading it.
    Q4_0_P16 = 1002,
    /// arenalm's Q4_1 in 16-row panels (see [`GgmlType::Q4_0_P16`]).
    Q4_1_P16 = 1003,
    /// arenalm's Q8_0 in 16-row panels (see [`GgmlType::Q4_0_P16`]).
    Q8_0_P16 = 1008,
}

/// `(type, name, values per block, bytes per block)`, one row per type.
///
/// Bytes per block follow ggml's block structs: e.g. Q8_0 is an f16 scale and
/// 32 int8 (2 + 32 = 34); Q4_1 an f16 scale, an f16 minimum and 16 bytes of
/// nibbles (2 + 2 + 16 = 20); Q6_K 128 + 64 + 16 + 2 = 210 for 256 values.
const TABLE: &[(GgmlType, &str, u32, u32)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110),
    (GgmlType::Q4_K, "Q4_K", 256, 144),
    (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210),
    (GgmlType::Q8_K, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, "IQ4_XS", 256, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::IQ1_M, "IQ1_M", 256, 56),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::Q4_0_4_4, "Q4_0_4_4", 32, 18),
    (GgmlType::Q4_0_4_8, "Q4_0_4_8", 32, 18),
    (GgmlType::Q4_0_8_8, "Q4_0_8_8", 32, 18),
    (GgmlType::TQ1_0, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, "TQ2_0", 256, 66),
    (GgmlType::IQ4_NL_4_4, "IQ4_NL_4_4", 32, 18),
    (GgmlType::IQ4_NL_4_8, "IQ4_NL_4_8", 32, 18),
    (GgmlType::IQ4_NL_8_8, "IQ4_NL_8_8", 32, 18),
    (GgmlType::MXFP4, "MXFP4", 32, 17),
    (GgmlType::NVFP4, "NVFP4", 64, 36),
    (GgmlType::Q1_0, "Q1_0", 128, 18),
    (GgmlType::Q2_0, "Q2_0", 64, 18),
    (GgmlType::Q4_0_P16, "Q4_0_P16", 32, 18),
    (GgmlType::Q4_1_P16, "Q4_1_P16", 32, 20),
    (GgmlType::Q8_0_P16, "Q8_0_P16", 32, 34),
];

impl GgmlType {
    /// Every known type, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|row| row.0)
    }

    /// The type with GGUF id `id`, if known.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.0 as u32 == id).map(|row| row.0)
    }

    /// The type named `name` (ggml's spelling, case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE
            .iter()
            .find(|row| row.1.eq_ignore_ascii_case(name))
            .map(|row| row.0)
    }

    fn row(self) -> &'static (GgmlType, &'static str, u32, u32) {
        // The table has one row per variant (checked by a test).
        TABLE.iter().find(|row| row.0 == self).unwrap_or(&TABLE[0])
    }

    /// GGUF id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Values per block.
    pub fn block_size(self) -> u32 {
        self.row().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u32 {
        self.row().3
    }

    /// Whether arenalm's kernels read this type in place as weights.
    /// Other types are recognised (the file parses and sizes are known) but
    /// a model using them needs a conversion the engine does not offer yet.
    pub fn computable(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q8_0
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q8_0_P16
                | GgmlType::Q4_0_P16
                | GgmlType::Q4_1_P16
        )
    }

    /// The plain ggml type of a panel-layout type (the type itself
    /// otherwise): same block size and bytes, rows stored one by one.
    pub fn plain(self) -> GgmlType {
        match self {
            GgmlType::Q8_0_P16 => GgmlType::Q8_0,
            GgmlType::Q4_0_P16 => GgmlType::Q4_0,
            GgmlType::Q4_1_P16 => GgmlType::Q4_1,
            t => t,
        }
    }

    /// The 16-row panel form of a plain type, if it has one.
    pub fn panel16(self) -> Option<GgmlType> {
        match self {
            GgmlType::Q8_0 => Some(GgmlType::Q8_0_P16),
            GgmlType::Q4_0 => Some(GgmlType::Q4_0_P16),
            GgmlType::Q4_1 => Some(GgmlType::Q4_1_P16),
            _ => None,
        }
    }

    /// Whether rows of this type are stored one after another (every ggml
    /// type); the panel types interleave 16 rows.
    pub fn rows_are_contiguous(self) -> bool {
        self.plain() == self
    }

    /// Bytes of a row of `n` values, `None` if `n` is not a whole number of
    /// blocks or the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let block = u64::from(self.block_size());
        if !n.is_multiple_of(block) {
            return None;
        }
        (n / block).checked_mul(u64::from(self.type_size()))
    }
}

impl core::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_row_per_id_and_round_trips() {
        let mut n = 0;
        for t in GgmlType::all() {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
            n += 1;
        }
        // 43 ids from 0 to 42, minus the two removed Q4_2 / Q4_3 (4, 5),
        // plus arenalm's three panel types.
        assert_eq!(n, 44);
        for t in GgmlType::all() {
            assert_eq!(t.plain().block_size(), t.block_size());
            assert_eq!(t.plain().type_size(), t.type_size());
            if let Some(p) = t.panel16() {
                assert_eq!(p.plain(), t);
                assert!(!p.rows_are_contiguous());
            }
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(43), None);
    }

    #[test]
    fn block_sizes_match_ggml_structs() {
        // Q4_0: f16 d + 32 nibbles = 2 + 16.
        assert_eq!(GgmlType::Q4_0.type_size(), 18);
        // Q4_K: f16 d + f16 dmin + 12 scale bytes + 128 nibble bytes.
        assert_eq!(GgmlType::Q4_K.type_size(), 2 + 2 + 12 + 128);
        // Q5_0: f16 d + 4 high-bit bytes + 16 nibble bytes.
        assert_eq!(GgmlType::Q5_0.type_size(), 2 + 4 + 16);
        // Q8_K: f32 d + 256 int8 + 16 int16 sums.
        assert_eq!(GgmlType::Q8_K.type_size(), 4 + 256 + 32);
        // A 576-wide Q8_0 row: 18 blocks of 34 bytes.
        assert_eq!(GgmlType::Q8_0.row_bytes(576), Some(612));
        assert_eq!(GgmlType::Q8_0.row_bytes(577), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
    }
}
