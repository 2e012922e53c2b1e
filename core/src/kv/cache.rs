//! One sequence's paged KV cache: a slab of pages and a page table.

use super::KvGeometry;
use crate::error::{Error, Result};
use crate::mem::{Arena, BlockId, Carved, Carver, ItemGroup, Slab, SlabParts, Yield};

/// The KV cache of one sequence.
///
/// Invariant: pages `0..n_pages` of the page table are taken blocks of the
/// slab, in position order; token `t` lives in page `t / page_tokens`, row
/// `t % page_tokens`; `n_tokens <= n_pages * page_tokens <= max_tokens`
/// rounded up to a page.
pub struct KvCache<'a> {
    geom: KvGeometry,
    slab: Slab<'a>,
    table: &'a mut [BlockId],
    n_pages: usize,
    n_tokens: usize,
    max_tokens: usize,
}

/// What [`KvCache::carve`] yields: the page pool and the page table.
pub struct KvParts<'a, Y: Yield<'a>> {
    /// The pool: pages and their links.
    pub pool: SlabParts<'a, Y>,
    /// One block handle per page.
    pub table: Y::Slice<BlockId>,
}

/// Arena item names of the cache (also the `what` of a budget error).
pub const KV_PAGES: &str = "kv page pool";
/// The free-list links of the pool.
pub const KV_LINKS: &str = "kv page pool links";
/// The page table.
pub const KV_TABLE: &str = "kv page table";

impl<'a> KvCache<'a> {
    /// The cache's arena items for `pages` pages of `geom`: the page pool
    /// ([`Slab::carve`]) and the page table, one [`BlockId`] per page. A
    /// geometry that fails [`KvGeometry::check`] (a hand-made one: the
    /// fields are public) is refused before anything is carved.
    pub fn carve<C: Carver<'a>>(
        c: &mut C,
        geom: &KvGeometry,
        pages: u32,
    ) -> Result<KvParts<'a, C::Out>> {
        geom.check()?;
        let page_bytes = geom
            .page_bytes()
            .ok_or(Error::Overflow { what: KV_PAGES })?;
        Ok(KvParts {
            pool: Slab::carve(
                c,
                ItemGroup::KvPool,
                (KV_PAGES, KV_LINKS),
                page_bytes,
                pages,
            )?,
            table: c.slice::<BlockId>(ItemGroup::KvPageTable, KV_TABLE, pages as usize)?,
        })
    }

    /// The cache over carved parts. The sequence may hold up to
    /// `max_tokens` tokens (at most the pages' room). Pass the geometry the
    /// parts were carved for; any other gives wrong rows, never a panic.
    pub fn from_parts(parts: KvParts<'a, Carved>, geom: KvGeometry, max_tokens: usize) -> Self {
        let slab = Slab::from_parts(parts.pool);
        let room = (slab.blocks() as usize).saturating_mul(geom.page_tokens);
        KvCache {
            geom,
            slab,
            table: parts.table,
            n_pages: 0,
            n_tokens: 0,
            max_tokens: max_tokens.min(room),
        }
    }

    /// Carves a pool of `pages` pages and a page table from `arena`. The
    /// sequence may hold up to `max_tokens` tokens (at most the pages' room).
    /// A geometry that fails [`KvGeometry::check`] is refused ([`KvCache::carve`]).
    pub fn new(
        arena: &mut Arena<'a>,
        geom: KvGeometry,
        pages: u32,
        max_tokens: usize,
    ) -> Result<KvCache<'a>> {
        let parts = KvCache::carve(arena, &geom, pages)?;
        Ok(KvCache::from_parts(parts, geom, max_tokens))
    }

    /// Geometry.
    pub fn geometry(&self) -> &KvGeometry {
        &self.geom
    }

    /// Tokens per page, at least 1 (a geometry given to
    /// [`KvCache::from_parts`] need not have been checked).
    fn page_tokens(&self) -> usize {
        self.geom.page_tokens.max(1)
    }

    /// Tokens stored.
    pub fn len(&self) -> usize {
        self.n_tokens
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.n_tokens == 0
    }

    /// Most tokens the sequence can hold.
    pub fn capacity(&self) -> usize {
        self.max_tokens
    }

    /// Pages in use.
    pub fn pages_in_use(&self) -> usize {
        self.n_pages
    }

    /// Free pages in the pool.
    pub fn free_pages(&self) -> u32 {
        self.slab.free_count()
    }

    /// Makes room for `total` tokens (taking pages as needed). Fails with
    /// [`Error::Full`] beyond the capacity, changing nothing.
    pub fn reserve(&mut self, total: usize) -> Result<()> {
        if total > self.max_tokens {
            return Err(Error::Full {
                what: "KV cache (context)",
                capacity: self.max_tokens,
            });
        }
        let pages_needed = total.div_ceil(self.page_tokens());
        while self.n_pages < pages_needed {
            let id = self.slab.take()?;
            match self.table.get_mut(self.n_pages) {
                Some(slot) => *slot = id,
                None => {
                    self.slab.give_back(id)?;
                    return Err(Error::Full {
                        what: "KV page table",
                        capacity: self.table.len(),
                    });
                }
            }
            self.n_pages += 1;
        }
        Ok(())
    }

    /// Records that tokens `0..total` hold valid rows (after writing them).
    pub fn set_len(&mut self, total: usize) -> Result<()> {
        if total > self.n_pages.saturating_mul(self.page_tokens()) {
            return Err(Error::InvalidArgument {
                what: "KV length beyond reserved pages",
            });
        }
        self.n_tokens = total;
        Ok(())
    }

    /// Forgets tokens from `len` on and gives back pages no longer needed.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        let len = len.min(self.n_tokens);
        let keep = len.div_ceil(self.page_tokens());
        while self.n_pages > keep {
            self.n_pages -= 1;
            let id = *self.table.get(self.n_pages).ok_or(Error::InvalidArgument {
                what: "internal: KV page table shorter than the pages in use",
            })?;
            self.slab.give_back(id)?;
        }
        self.n_tokens = len;
        Ok(())
    }

    /// Forgets every token.
    pub fn clear(&mut self) -> Result<()> {
        self.truncate(0)
    }

    /// The row of `(layer, K or V, head)` for token `pos`, writable.
    pub fn row_mut(
        &mut self,
        layer: usize,
        is_value: bool,
        head: usize,
        pos: usize,
    ) -> Result<&mut [u8]> {
        let g = self.geom;
        let block_start =
            g.head_block_offset(layer, is_value, head)
                .ok_or(Error::InvalidArgument {
                    what: "KV layer or head out of range",
                })?;
        let page = pos / self.page_tokens();
        let id = *self
            .table
            .get(..self.n_pages)
            .and_then(|t| t.get(page))
            .ok_or(Error::InvalidArgument {
                what: "KV position beyond reserved pages",
            })?;
        let row = (pos % self.page_tokens())
            .checked_mul(g.row_bytes)
            .and_then(|r| r.checked_add(block_start));
        let block = self.slab.block_mut(id)?;
        row.and_then(|start| block.get_mut(start..start.checked_add(g.row_bytes)?))
            .ok_or(Error::InvalidArgument {
                what: "KV row outside its page",
            })
    }

    /// The `page_tokens` rows of `(layer, K or V, head)` in page `page`.
    pub fn head_block(
        &self,
        page: usize,
        layer: usize,
        is_value: bool,
        head: usize,
    ) -> Result<&[u8]> {
        let g = self.geom;
        let start = g
            .head_block_offset(layer, is_value, head)
            .ok_or(Error::InvalidArgument {
                what: "KV layer or head out of range",
            })?;
        let id = *self
            .table
            .get(..self.n_pages)
            .and_then(|t| t.get(page))
            .ok_or(Error::InvalidArgument {
                what: "KV page not in use",
            })?;
        let end = start.checked_add(g.head_block_bytes());
        let block = self.slab.block(id)?;
        end.and_then(|end| block.get(start..end))
            .ok_or(Error::InvalidArgument {
                what: "KV block outside its page",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvType;

    #[repr(C, align(64))]
    struct Buf([u8; 1 << 16]);

    #[test]
    fn grows_page_by_page_and_gives_pages_back() {
        let mut buf = std::boxed::Box::new(Buf([0; 1 << 16]));
        let mut arena = Arena::new(&mut buf.0);
        // 2 layers, 1 head of 32 f16: 2 * 2 * 64 = 256 bytes a token, 4-token pages.
        let g = KvGeometry::new(2, 1, 32, KvType::F16, 4).unwrap();
        let mut kv = KvCache::new(&mut arena, g, 5, 18).unwrap();
        assert_eq!(kv.capacity(), 18);
        kv.reserve(5).unwrap();
        assert_eq!(kv.pages_in_use(), 2);
        assert_eq!(kv.free_pages(), 3);
        for pos in 0..5 {
            kv.row_mut(1, true, 0, pos).unwrap().fill(pos as u8 + 1);
        }
        kv.set_len(5).unwrap();
        let block = kv.head_block(1, 1, true, 0).unwrap();
        assert_eq!(block.len(), 4 * 64);
        assert!(block[..64].iter().all(|&b| b == 5)); // token 4 is row 0 of page 1
        assert!(kv.row_mut(0, false, 0, 8).is_err()); // page 2 not reserved
        assert_eq!(
            kv.reserve(19).unwrap_err(),
            Error::Full {
                what: "KV cache (context)",
                capacity: 18
            }
        );
        kv.truncate(3).unwrap();
        assert_eq!((kv.len(), kv.pages_in_use(), kv.free_pages()), (3, 1, 4));
        kv.clear().unwrap();
        assert_eq!(kv.free_pages(), 5);
    }

    #[test]
    fn hand_made_geometries_and_wild_positions_are_errors() {
        let mut buf = std::boxed::Box::new(Buf([0; 1 << 16]));
        let mut arena = Arena::new(&mut buf.0);
        let g = KvGeometry::new(2, 1, 32, KvType::F16, 4).unwrap();
        // Zero-token pages would divide by zero in every lookup.
        let zero = KvGeometry {
            page_tokens: 0,
            ..g
        };
        assert!(KvCache::new(&mut arena, zero, 4, 16).is_err());
        // Parts carved for one geometry, given another: wrong rows at
        // worst, never a division by zero.
        let parts = KvCache::carve(&mut arena, &g, 4).unwrap();
        let mut odd = KvCache::from_parts(parts, zero, 16);
        assert!(odd.reserve(1).is_err());
        odd.clear().unwrap();
        assert!(odd.set_len(1).is_err());
        assert!(odd.row_mut(0, false, 0, 0).is_err());
        let mut kv = KvCache::new(&mut arena, g, 4, 16).unwrap();
        kv.reserve(4).unwrap();
        for (layer, head, pos) in [
            (2, 0, 0),
            (0, 1, 0),
            (usize::MAX, 0, 0),
            (0, usize::MAX, 0),
            (0, 0, usize::MAX),
            (0, 0, 4),
        ] {
            assert!(kv.row_mut(layer, false, head, pos).is_err());
        }
        assert!(kv.head_block(usize::MAX, 0, false, 0).is_err());
        assert!(kv.head_block(0, usize::MAX, true, 0).is_err());
        assert!(kv.set_len(usize::MAX).is_err());
        assert!(kv.reserve(usize::MAX).is_err());
        kv.truncate(usize::MAX).unwrap();
        assert_eq!(kv.len(), 0);
    }
}
