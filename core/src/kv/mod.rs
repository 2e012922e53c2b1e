//! The paged KV cache: element types, page geometry, and (with the engine)
//! per-sequence page tables over a slab of pages.
//!
//! A page holds [`KvGeometry::page_tokens`] tokens of keys and values for
//! every layer, laid out `[layer][K, V][kv_head][token][head_dim]`, so one
//! page table per sequence serves all layers and, for one head, a page's keys
//! are contiguous rows. Sequences grow page by page; nothing is reserved for
//! the maximum context up front.

use crate::error::{Error, Result};

/// Element type of cached keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    /// IEEE half precision (the default; what llama.cpp uses).
    #[default]
    F16,
    /// ggml Q8_0 blocks of 32 values (34 bytes per block).
    Q8_0,
    /// Single precision.
    F32,
}

impl KvType {
    /// Bytes of one cached row of `dim` values; `None` if `dim` does not fit
    /// the type (Q8_0 needs a multiple of 32) or the size overflows.
    pub fn row_bytes(self, dim: usize) -> Option<usize> {
        match self {
            KvType::F16 => dim.checked_mul(2),
            KvType::F32 => dim.checked_mul(4),
            KvType::Q8_0 => {
                if !dim.is_multiple_of(32) {
                    None
                } else {
                    (dim / 32).checked_mul(34)
                }
            }
        }
    }

    /// The name used on command lines and in JSON (`f16`, `q8_0`, `f32`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::F32 => "f32",
        }
    }

    /// Parses [`KvType::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<KvType> {
        [KvType::F16, KvType::Q8_0, KvType::F32]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// Sizes of the cache derived from the model and the element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvGeometry {
    /// Layers.
    pub n_layers: usize,
    /// KV heads.
    pub n_kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Element type.
    pub kv_type: KvType,
    /// Tokens per page.
    pub page_tokens: usize,
    /// Bytes of one head's row for one token (`row_bytes(head_dim)`).
    pub row_bytes: usize,
}

impl KvGeometry {
    /// Geometry for the given model sizes; checks every product.
    pub fn new(
        n_layers: usize,
        n_kv_heads: usize,
        head_dim: usize,
        kv_type: KvType,
        page_tokens: usize,
    ) -> Result<KvGeometry> {
        if page_tokens == 0 {
            return Err(Error::InvalidArgument {
                what: "KV page size must be at least one token",
            });
        }
        if n_layers == 0 || n_kv_heads == 0 || head_dim == 0 {
            return Err(Error::InvalidArgument {
                what: "KV geometry needs at least one layer, one KV head and one value per head",
            });
        }
        let row_bytes = kv_type.row_bytes(head_dim).ok_or(Error::InvalidArgument {
            what: "head size does not fit the KV element type (q8_0 needs a multiple of 32)",
        })?;
        let g = KvGeometry {
            n_layers,
            n_kv_heads,
            head_dim,
            kv_type,
            page_tokens,
            row_bytes,
        };
        g.page_bytes().ok_or(Error::Overflow {
            what: "KV page size",
        })?;
        g.check()?;
        Ok(g)
    }

    /// Cache bytes one token takes in one layer: (K and V) x KV heads x
    /// row bytes. The what-if model ([`crate::mem::arch`]) sizes every
    /// grouped-query layer with this too.
    pub fn layer_bytes_per_token(&self) -> Option<usize> {
        self.n_kv_heads.checked_mul(2)?.checked_mul(self.row_bytes)
    }

    /// Cache bytes one token takes: layers x [`KvGeometry::layer_bytes_per_token`].
    pub fn bytes_per_token(&self) -> Option<usize> {
        self.n_layers.checked_mul(self.layer_bytes_per_token()?)
    }

    /// Bytes of one page's content (before slab rounding).
    pub fn page_bytes(&self) -> Option<usize> {
        self.bytes_per_token()?.checked_mul(self.page_tokens)
    }

    /// Whether this geometry is one [`KvGeometry::new`] accepts (the
    /// fields are public, so a hand-made value may not be): every count
    /// non-zero, `row_bytes` that of `head_dim`, and the page size in range.
    pub fn check(&self) -> Result<()> {
        if self.page_tokens == 0
            || self.n_layers == 0
            || self.n_kv_heads == 0
            || self.head_dim == 0
            || self.kv_type.row_bytes(self.head_dim) != Some(self.row_bytes)
        {
            return Err(Error::InvalidArgument {
                what: "KV geometry not made by KvGeometry::new",
            });
        }
        match self.page_bytes() {
            Some(_) => Ok(()),
            None => Err(Error::Overflow {
                what: "KV page size",
            }),
        }
    }

    /// Bytes of the block of one (layer, K or V, head) inside a page:
    /// `page_tokens` rows (saturating; exact, and at most the page size,
    /// for a geometry that passes [`KvGeometry::check`]).
    pub fn head_block_bytes(&self) -> usize {
        self.page_tokens.saturating_mul(self.row_bytes)
    }

    /// Byte offset, inside a page, of the rows of `(layer, is_value, head)`;
    /// `None` if the layer or head is out of range or the offset overflows.
    pub fn head_block_offset(&self, layer: usize, is_value: bool, head: usize) -> Option<usize> {
        if layer >= self.n_layers || head >= self.n_kv_heads {
            return None;
        }
        layer
            .checked_mul(2)?
            .checked_add(usize::from(is_value))?
            .checked_mul(self.n_kv_heads)?
            .checked_add(head)?
            .checked_mul(self.head_block_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_f16_is_23040_bytes_per_token() {
        // 30 layers x 2 (K and V) x 3 KV heads x 64 values x 2 bytes = 23,040.
        let g = KvGeometry::new(30, 3, 64, KvType::F16, 16).unwrap();
        assert_eq!(g.bytes_per_token(), Some(23_040));
        // A page of 16 tokens: 368,640 bytes.
        assert_eq!(g.page_bytes(), Some(368_640));
    }

    #[test]
    fn q8_0_and_f32_rows() {
        // Q8_0: 64 values = 2 blocks of 34 bytes = 68; per token 30 x 2 x 3 x 68 = 12,240.
        let g = KvGeometry::new(30, 3, 64, KvType::Q8_0, 16).unwrap();
        assert_eq!(g.bytes_per_token(), Some(12_240));
        // F32: 30 x 2 x 3 x 256 = 46,080.
        let g = KvGeometry::new(30, 3, 64, KvType::F32, 16).unwrap();
        assert_eq!(g.bytes_per_token(), Some(46_080));
        assert!(KvGeometry::new(30, 3, 48, KvType::Q8_0, 16).is_err());
        assert!(KvGeometry::new(30, 3, 64, KvType::F16, 0).is_err());
    }

    #[test]
    fn degenerate_geometries_are_errors_not_panics() {
        // Zero layers, heads or head size: refused (a zero page would make
        // every later division and offset meaningless).
        assert!(KvGeometry::new(0, 3, 64, KvType::F16, 16).is_err());
        assert!(KvGeometry::new(30, 0, 64, KvType::F16, 16).is_err());
        assert!(KvGeometry::new(30, 3, 0, KvType::F16, 16).is_err());
        // Products that overflow.
        assert!(KvGeometry::new(usize::MAX, 3, 64, KvType::F16, 16).is_err());
        assert!(KvGeometry::new(1, 1, usize::MAX, KvType::F32, 1).is_err());
        assert!(KvGeometry::new(1, 1, 64, KvType::F16, usize::MAX).is_err());
        // A hand-made geometry is caught by `check`.
        let g = KvGeometry::new(2, 1, 32, KvType::F16, 4).unwrap();
        for bad in [
            KvGeometry {
                page_tokens: 0,
                ..g
            },
            KvGeometry { row_bytes: 1, ..g },
            KvGeometry { n_layers: 0, ..g },
            KvGeometry {
                n_layers: usize::MAX,
                ..g
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn head_blocks_tile_the_page() {
        let g = KvGeometry::new(2, 3, 64, KvType::F16, 4).unwrap();
        // Last block of the page ends exactly at the page size.
        let last = g.head_block_offset(1, true, 2).unwrap() + g.head_block_bytes();
        assert_eq!(Some(last), g.page_bytes());
        assert_eq!(g.head_block_offset(0, true, 0), Some(3 * 4 * 128));
        // Out of range or overflowing: None, never a wrapped offset.
        assert_eq!(g.head_block_offset(2, false, 0), None);
        assert_eq!(g.head_block_offset(0, false, 3), None);
        let wide = KvGeometry {
            n_layers: usize::MAX,
            ..g
        };
        assert_eq!(wide.head_block_offset(usize::MAX - 1, true, 0), None);
    }

    #[test]
    fn names_round_trip() {
        for t in [KvType::F16, KvType::Q8_0, KvType::F32] {
            assert_eq!(KvType::from_name(t.name()), Some(t));
        }
        assert_eq!(KvType::from_name("Q8_0"), Some(KvType::Q8_0));
        assert_eq!(KvType::from_name("q4"), None);
    }
}

mod cache;
pub use cache::{KvCache, KvParts, KV_LINKS, KV_PAGES, KV_TABLE};
