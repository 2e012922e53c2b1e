//! A pool of equal-size blocks carved from an arena.
//!
//! The slab owns `n` blocks of `block_bytes` each (rounded up to
//! [`ARENA_ALIGN`](super::ARENA_ALIGN) so every block is aligned) and a link
//! table with one `u32` per block. A free block's link is the index of the
//! next free block; a taken block's link is [`TAKEN`]. Taking and giving back
//! are O(1); giving back a block twice, or a block of another slab, is an
//! error and changes nothing.
//!
//! Blocks are named by [`BlockId`], which carries a tag of the slab that made
//! it, so a handle from one slab is refused by another.

use super::arena::Arena;
use super::carve::{Carved, Carver, Counter, ItemGroup, Yield};
use crate::error::{Error, Result, SlabError};

/// Link value of a taken block.
const TAKEN: u32 = u32::MAX;
/// Link value that ends the free list.
const END: u32 = u32::MAX - 1;

/// A handle to one block of a [`Slab`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockId {
    index: u32,
    tag: u32,
}

impl BlockId {
    /// The block's index in its slab (0-based).
    pub fn index(self) -> u32 {
        self.index
    }
}

// SAFETY: two u32 fields under repr(C): no padding, any bit pattern is a
// value (an all-zero handle is simply refused by `check` unless it matches).
unsafe impl crate::mem::Pod for BlockId {}

/// What [`Slab::carve`] yields: the block area and the link table (real
/// slices when carved, spans when counted).
pub struct SlabParts<'a, Y: Yield<'a>> {
    /// `blocks x stride` bytes of blocks.
    pub data: Y::Slice<u8>,
    /// One link per block.
    pub links: Y::Slice<u32>,
    /// Bytes between block starts ([`Slab::stride`]).
    pub stride: usize,
}

/// Equal-size blocks with O(1) take and give back.
pub struct Slab<'a> {
    data: &'a mut [u8],
    links: &'a mut [u32],
    block_bytes: usize,
    free_head: u32,
    free_count: u32,
    tag: u32,
}

impl<'a> Slab<'a> {
    /// Largest block count a slab accepts (indices must stay below the link markers).
    pub const MAX_BLOCKS: u32 = u32::MAX - 2;

    /// Bytes between the starts of two blocks: `block_bytes` rounded up to
    /// [`ARENA_ALIGN`](super::ARENA_ALIGN), so every block is aligned.
    pub fn stride(block_bytes: usize) -> Option<usize> {
        Arena::round(block_bytes)
    }

    /// The slab's items, the one description of its arena bytes: `blocks x
    /// stride` bytes of blocks named `names.0`, then one `u32` link per
    /// block named `names.1`, both in `group`. Counted, it sizes the slab;
    /// carved, it yields the parts [`Slab::from_parts`] builds it from.
    pub fn carve<'c, C: Carver<'c>>(
        c: &mut C,
        group: ItemGroup,
        names: (&'static str, &'static str),
        block_bytes: usize,
        blocks: u32,
    ) -> Result<SlabParts<'c, C::Out>> {
        if blocks > Self::MAX_BLOCKS {
            return Err(Error::InvalidArgument {
                what: "slab block count exceeds Slab::MAX_BLOCKS",
            });
        }
        if block_bytes == 0 {
            return Err(Error::InvalidArgument {
                what: "slab block size is zero",
            });
        }
        let overflow = Error::Overflow { what: names.0 };
        let stride = Self::stride(block_bytes).ok_or(overflow)?;
        let total = stride.checked_mul(blocks as usize).ok_or(overflow)?;
        Ok(SlabParts {
            data: c.slice::<u8>(group, names.0, total)?,
            links: c.slice::<u32>(group, names.1, blocks as usize)?,
            stride,
        })
    }

    /// Arena bytes a slab of `blocks` blocks of `block_bytes` takes (the
    /// counted [`Slab::carve`]). `None` on overflow or a refused size.
    pub fn bytes_needed(block_bytes: usize, blocks: u32) -> Option<usize> {
        let mut counter = Counter::new();
        Slab::carve(
            &mut counter,
            ItemGroup::KvPool,
            ("", ""),
            block_bytes,
            blocks,
        )
        .ok()?;
        Some(counter.used())
    }

    /// Carves a slab of `blocks` blocks of at least `block_bytes` each. The
    /// whole footprint is checked first, so a failure leaves the arena untouched.
    pub fn new(
        arena: &mut Arena<'a>,
        block_bytes: usize,
        blocks: u32,
        what: &'static str,
    ) -> Result<Slab<'a>> {
        let needed = Self::bytes_needed(block_bytes, blocks).ok_or(Error::Overflow { what })?;
        if needed > arena.remaining() {
            return Err(Error::Budget {
                what,
                needed,
                available: arena.remaining(),
            });
        }
        let parts = Slab::carve(arena, ItemGroup::KvPool, (what, what), block_bytes, blocks)?;
        Ok(Slab::from_parts(parts))
    }

    /// The slab over carved parts (see [`Slab::carve`]): every block free.
    pub fn from_parts(parts: SlabParts<'a, Carved>) -> Slab<'a> {
        let SlabParts {
            data,
            links,
            stride,
        } = parts;
        let blocks = links.len() as u32;
        for (i, link) in links.iter_mut().enumerate() {
            let next = i as u32 + 1;
            *link = if next < blocks { next } else { END };
        }
        // Mix the block area's address into a tag that identifies this slab.
        let addr = data.as_ptr() as usize as u64;
        let tag = ((addr >> 6) ^ (addr >> 32) ^ 0x9E37_79B9) as u32;
        Slab {
            data,
            links,
            block_bytes: stride,
            free_head: if blocks > 0 { 0 } else { END },
            free_count: blocks,
            tag,
        }
    }

    /// Bytes in each block (the requested size rounded up to 64).
    pub fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Total number of blocks.
    pub fn blocks(&self) -> u32 {
        self.links.len() as u32
    }

    /// Number of free blocks.
    pub fn free_count(&self) -> u32 {
        self.free_count
    }

    /// Number of taken blocks.
    pub fn taken_count(&self) -> u32 {
        self.blocks() - self.free_count
    }

    /// Takes a free block. Its contents are whatever the last user left.
    pub fn take(&mut self) -> Result<BlockId> {
        let index = self.free_head;
        let slot = match self.links.get_mut(index as usize) {
            Some(slot) => slot,
            None => {
                return Err(SlabError::Exhausted {
                    blocks: self.blocks(),
                }
                .into())
            }
        };
        self.free_head = *slot;
        *slot = TAKEN;
        self.free_count -= 1;
        Ok(BlockId {
            index,
            tag: self.tag,
        })
    }

    /// Gives a taken block back.
    pub fn give_back(&mut self, id: BlockId) -> Result<()> {
        self.check(id)?;
        let slot = &mut self.links[id.index as usize];
        if *slot != TAKEN {
            return Err(SlabError::DoubleFree { index: id.index }.into());
        }
        *slot = self.free_head;
        self.free_head = id.index;
        self.free_count += 1;
        Ok(())
    }

    /// Whether `id` is a taken block of this slab.
    pub fn is_taken(&self, id: BlockId) -> bool {
        self.check(id).is_ok() && self.links[id.index as usize] == TAKEN
    }

    /// The bytes of a block of this slab.
    pub fn block(&self, id: BlockId) -> Result<&[u8]> {
        self.check(id)?;
        let start = id.index as usize * self.block_bytes;
        Ok(&self.data[start..start + self.block_bytes])
    }

    /// The bytes of a block of this slab, writable.
    pub fn block_mut(&mut self, id: BlockId) -> Result<&mut [u8]> {
        self.check(id)?;
        let start = id.index as usize * self.block_bytes;
        Ok(&mut self.data[start..start + self.block_bytes])
    }

    /// Gives every block back.
    pub fn reset(&mut self) {
        let n = self.blocks();
        for (i, link) in self.links.iter_mut().enumerate() {
            let next = i as u32 + 1;
            *link = if next < n { next } else { END };
        }
        self.free_head = if n > 0 { 0 } else { END };
        self.free_count = n;
    }

    fn check(&self, id: BlockId) -> Result<()> {
        if id.tag != self.tag || id.index >= self.blocks() {
            return Err(SlabError::Foreign { index: id.index }.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Buf([u8; 4096]);

    #[test]
    fn bytes_needed_is_rounded_blocks_plus_links() {
        // 5 blocks of 100 bytes: stride 128, data 640; links 20 bytes -> 64.
        assert_eq!(Slab::bytes_needed(100, 5), Some(640 + 64));
        assert_eq!(Slab::bytes_needed(usize::MAX, 2), None);
    }

    #[test]
    fn take_all_then_exhausted_then_give_back() {
        let mut buf = Buf([0; 4096]);
        let mut arena = Arena::new(&mut buf.0);
        let mut slab = Slab::new(&mut arena, 100, 5, "pages").unwrap();
        assert_eq!(arena.used(), Slab::bytes_needed(100, 5).unwrap());
        let ids: [BlockId; 5] = core::array::from_fn(|_| slab.take().unwrap());
        assert_eq!(slab.free_count(), 0);
        assert_eq!(
            slab.take().unwrap_err(),
            Error::Slab(SlabError::Exhausted { blocks: 5 })
        );
        slab.give_back(ids[2]).unwrap();
        assert_eq!(slab.take().unwrap(), ids[2]);
    }

    #[test]
    fn double_free_and_foreign_blocks_are_refused_without_corruption() {
        let mut buf = Buf([0; 4096]);
        let mut arena = Arena::new(&mut buf.0);
        let mut a = Slab::new(&mut arena, 64, 4, "a").unwrap();
        let mut b = Slab::new(&mut arena, 64, 4, "b").unwrap();
        let x = a.take().unwrap();
        let y = b.take().unwrap();
        a.give_back(x).unwrap();
        assert_eq!(
            a.give_back(x).unwrap_err(),
            Error::Slab(SlabError::DoubleFree { index: 0 })
        );
        assert_eq!(
            a.give_back(y).unwrap_err(),
            Error::Slab(SlabError::Foreign { index: 0 })
        );
        assert!(a.block(y).is_err());
        assert_eq!(a.free_count(), 4);
        // The free list is intact: four distinct takes succeed.
        let mut seen = [false; 4];
        for _ in 0..4 {
            let id = a.take().unwrap();
            assert!(!seen[id.index() as usize]);
            seen[id.index() as usize] = true;
        }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_writable() {
        let mut buf = Buf([0; 4096]);
        let mut arena = Arena::new(&mut buf.0);
        let mut slab = Slab::new(&mut arena, 70, 3, "p").unwrap();
        assert_eq!(slab.block_bytes(), 128);
        let ids: [BlockId; 3] = core::array::from_fn(|_| slab.take().unwrap());
        for (k, id) in ids.iter().enumerate() {
            let b = slab.block_mut(*id).unwrap();
            assert_eq!(b.as_ptr() as usize % 64, 0);
            b.fill(k as u8 + 1);
        }
        for (k, id) in ids.iter().enumerate() {
            assert!(slab.block(*id).unwrap().iter().all(|&v| v == k as u8 + 1));
        }
    }

    #[test]
    fn too_small_arena_is_a_budget_error_and_takes_nothing() {
        let mut buf = Buf([0; 4096]);
        let mut arena = Arena::new(&mut buf.0[..1000]);
        let err = Slab::new(&mut arena, 256, 4, "kv").err().unwrap();
        assert_eq!(
            err,
            Error::Budget {
                what: "kv",
                needed: 1024 + 64,
                available: 1000
            }
        );
        assert_eq!(arena.used(), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Random take / give-back sequences keep the slab's books
            /// consistent with a simple model: a set of taken indices.
            #[test]
            fn matches_a_set_model(ops in proptest::collection::vec((any::<bool>(), 0usize..16), 0..200)) {
                let mut buf = Buf([0; 4096]);
                let mut arena = Arena::new(&mut buf.0);
                let mut slab = Slab::new(&mut arena, 64, 12, "p").unwrap();
                let mut taken: [Option<BlockId>; 12] = [None; 12];
                let mut last_given: Option<BlockId> = None;
                for (take, pick) in ops {
                    let n_taken = taken.iter().filter(|t| t.is_some()).count();
                    if take {
                        match slab.take() {
                            Ok(id) => {
                                let i = id.index() as usize;
                                prop_assert!(taken[i].is_none());
                                taken[i] = Some(id);
                            }
                            Err(_) => prop_assert_eq!(n_taken, 12),
                        }
                    } else if let Some(id) = taken[pick % 12].take() {
                        slab.give_back(id).unwrap();
                        last_given = Some(id);
                    } else if let Some(id) = last_given {
                        // Giving back a free block must fail and change nothing.
                        if taken[id.index() as usize].is_none() {
                            prop_assert!(slab.give_back(id).is_err());
                        }
                    }
                    let n_taken = taken.iter().filter(|t| t.is_some()).count() as u32;
                    prop_assert_eq!(slab.taken_count(), n_taken);
                    for (i, t) in taken.iter().enumerate() {
                        if let Some(id) = t {
                            prop_assert!(slab.is_taken(*id));
                            prop_assert_eq!(id.index() as usize, i);
                        }
                    }
                }
            }
        }
    }
}
