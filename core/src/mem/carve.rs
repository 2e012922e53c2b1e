//! One description of an arena, walked two ways: counting (the plan) and
//! carving (init).
//!
//! A *walk* is a function, generic over a [`Carver`], that names every item
//! it takes from an arena, in order: [`Carver::slice`] for `n` values of a
//! plain-data type, [`Carver::slot`] for the place of one value of any type.
//! Run with a [`Counter`], the walk takes nothing: each item becomes a
//! [`Span`] (offset, bytes, elements) and an entry of an [`ArenaItems`] list,
//! and the counter's total is the plan. Run with an [`Arena`] (or a
//! [`Logged`] arena, which also lists what it carved), the same walk carves
//! the same items and yields real slices. Both use the arena's own rounding
//! ([`Arena::footprint`]), so a plan equals the carving item by item by
//! construction: there is no second list to keep in sync.
//!
//! What a walk yields is decided by the carver's [`Yield`]: [`Counted`]
//! gives spans, [`Carved`] gives `&mut` slices and uninitialised slots. A
//! walk's result type is written once, generic over it, and the counting
//! walk cannot touch data it does not have.

use core::fmt;
use core::mem::MaybeUninit;

use super::arena::{Arena, Pod};
use crate::error::{Error, Result};

/// What kind of arena item an entry is: the planner sums items by group
/// into its summary fields (`model_index_bytes`, `tokenizer_bytes`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemGroup {
    /// Per-layer weight locations.
    ModelIndex,
    /// Tokenizer tables and encode scratch.
    Tokenizer,
    /// The KV page pool: pages and their free-list links.
    KvPool,
    /// The sequence's KV page table.
    KvPageTable,
    /// Scratch buffers of the forward pass.
    Scratch,
    /// The state struct itself (an engine, or a standalone tokenizer).
    State,
}

impl ItemGroup {
    /// A short lower-case name (used as a JSON value).
    pub fn name(self) -> &'static str {
        match self {
            ItemGroup::ModelIndex => "model_index",
            ItemGroup::Tokenizer => "tokenizer",
            ItemGroup::KvPool => "kv_pool",
            ItemGroup::KvPageTable => "kv_page_table",
            ItemGroup::Scratch => "scratch",
            ItemGroup::State => "state",
        }
    }
}

/// One item of an arena: where it starts (from the walk's first byte) and
/// how many bytes it takes (rounded to the arena alignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaItem {
    /// What the item is (also the `what` of a budget error while carving it).
    pub name: &'static str,
    /// Its group.
    pub group: ItemGroup,
    /// Byte offset from the start of the walk.
    pub offset: usize,
    /// Bytes taken, a multiple of [`super::ARENA_ALIGN`] (0 for an empty item).
    pub bytes: usize,
}

impl ArenaItem {
    const EMPTY: ArenaItem = ArenaItem {
        name: "",
        group: ItemGroup::State,
        offset: 0,
        bytes: 0,
    };
}

/// Most items one walk may list. An engine lists 25 (model index,
/// 12 tokenizer items, pool pages and links, page table, 8 scratch
/// buffers, the engine state).
pub const MAX_ARENA_ITEMS: usize = 32;

/// The items of a walk, in order (a fixed-capacity list: core has no heap).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ArenaItems {
    items: [ArenaItem; MAX_ARENA_ITEMS],
    len: usize,
}

impl Default for ArenaItems {
    fn default() -> Self {
        ArenaItems {
            items: [ArenaItem::EMPTY; MAX_ARENA_ITEMS],
            len: 0,
        }
    }
}

impl fmt::Debug for ArenaItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl ArenaItems {
    /// The items, in walk order.
    pub fn as_slice(&self) -> &[ArenaItem] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Iterates over the items.
    pub fn iter(&self) -> core::slice::Iter<'_, ArenaItem> {
        self.as_slice().iter()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ArenaItem> {
        self.iter().find(|i| i.name == name)
    }

    /// Bytes of all items of `group` (no overflow: the items were summed
    /// with checked arithmetic when recorded).
    pub fn group_bytes(&self, group: ItemGroup) -> usize {
        self.iter()
            .filter(|i| i.group == group)
            .fold(0usize, |acc, i| acc.saturating_add(i.bytes))
    }

    /// Bytes of every item: where the walk ends.
    pub fn total(&self) -> usize {
        self.as_slice()
            .last()
            .map_or(0, |i| i.offset.saturating_add(i.bytes))
    }

    fn push(&mut self, item: ArenaItem) -> Result<()> {
        let slot = self.items.get_mut(self.len).ok_or(Error::Overflow {
            what: "arena item list (MAX_ARENA_ITEMS)",
        })?;
        *slot = item;
        self.len += 1;
        Ok(())
    }
}

/// Where a counted item would be: what a counting walk yields for each item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Byte offset from the start of the walk.
    pub offset: usize,
    /// Bytes taken (rounded).
    pub bytes: usize,
    /// Elements asked for (1 for a slot).
    pub len: usize,
}

/// What a walk yields per item, decided by the carver.
pub trait Yield<'a> {
    /// For `n` values of `T`.
    type Slice<T: Pod>;
    /// For the place of one `T`.
    type Slot<T: 'a>;
}

/// A counting walk's yield: a [`Span`] per item, no memory.
#[derive(Debug)]
pub enum Counted {}

impl<'a> Yield<'a> for Counted {
    type Slice<T: Pod> = Span;
    type Slot<T: 'a> = Span;
}

/// A carving walk's yield: zeroed slices and uninitialised slots in the arena.
#[derive(Debug)]
pub enum Carved {}

impl<'a> Yield<'a> for Carved {
    type Slice<T: Pod> = &'a mut [T];
    type Slot<T: 'a> = &'a mut MaybeUninit<T>;
}

/// Takes the items of a walk, one by one (see the module doc).
pub trait Carver<'a> {
    /// What each item yields.
    type Out: Yield<'a>;

    /// `n` values of `T` (zeroed when carved).
    fn slice<T: Pod>(
        &mut self,
        group: ItemGroup,
        name: &'static str,
        n: usize,
    ) -> Result<<Self::Out as Yield<'a>>::Slice<T>>;

    /// The place of one `T`, to be written once built.
    fn slot<T: 'a>(
        &mut self,
        group: ItemGroup,
        name: &'static str,
    ) -> Result<<Self::Out as Yield<'a>>::Slot<T>>;
}

/// The counting carver: takes nothing, lists every item with its offset and
/// bytes. Its total is what the same walk carves from an aligned arena.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    items: ArenaItems,
    used: usize,
}

impl Counter {
    /// A counter at offset 0.
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Bytes counted so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The items counted so far.
    pub fn items(&self) -> &ArenaItems {
        &self.items
    }

    fn record(
        &mut self,
        group: ItemGroup,
        name: &'static str,
        bytes: usize,
        len: usize,
    ) -> Result<Span> {
        let offset = self.used;
        let end = offset
            .checked_add(bytes)
            .ok_or(Error::Overflow { what: name })?;
        self.items.push(ArenaItem {
            name,
            group,
            offset,
            bytes,
        })?;
        self.used = end;
        Ok(Span { offset, bytes, len })
    }
}

impl<'a> Carver<'a> for Counter {
    type Out = Counted;

    fn slice<T: Pod>(&mut self, group: ItemGroup, name: &'static str, n: usize) -> Result<Span> {
        let bytes = Arena::footprint::<T>(n, name)?;
        self.record(group, name, bytes, n)
    }

    fn slot<T: 'a>(&mut self, group: ItemGroup, name: &'static str) -> Result<Span> {
        let bytes = Arena::footprint::<T>(1, name)?;
        self.record(group, name, bytes, 1)
    }
}

impl<'a> Carver<'a> for Arena<'a> {
    type Out = Carved;

    fn slice<T: Pod>(
        &mut self,
        _group: ItemGroup,
        name: &'static str,
        n: usize,
    ) -> Result<&'a mut [T]> {
        self.take_slice(n, name)
    }

    fn slot<T: 'a>(
        &mut self,
        _group: ItemGroup,
        name: &'static str,
    ) -> Result<&'a mut MaybeUninit<T>> {
        self.take_uninit(name)
    }
}

/// An arena carver that also lists what it carved, as the arena saw it
/// (offsets from the arena's use when logging began, bytes by how far the
/// arena moved), to be compared with a [`Counter`]'s list.
pub struct Logged<'r, 'a> {
    arena: &'r mut Arena<'a>,
    start: usize,
    items: ArenaItems,
}

impl<'r, 'a> Logged<'r, 'a> {
    /// Logs carving from `arena`, from its current use on.
    pub fn new(arena: &'r mut Arena<'a>) -> Logged<'r, 'a> {
        let start = arena.used();
        Logged {
            arena,
            start,
            items: ArenaItems::default(),
        }
    }

    /// What was carved, in order.
    pub fn items(&self) -> &ArenaItems {
        &self.items
    }

    fn record<R>(
        &mut self,
        group: ItemGroup,
        name: &'static str,
        take: impl FnOnce(&mut Arena<'a>) -> Result<R>,
    ) -> Result<R> {
        let before = self.arena.used();
        let out = take(self.arena)?;
        let after = self.arena.used();
        self.items.push(ArenaItem {
            name,
            group,
            offset: before.saturating_sub(self.start),
            bytes: after.saturating_sub(before),
        })?;
        Ok(out)
    }
}

impl<'a> Carver<'a> for Logged<'_, 'a> {
    type Out = Carved;

    fn slice<T: Pod>(
        &mut self,
        group: ItemGroup,
        name: &'static str,
        n: usize,
    ) -> Result<&'a mut [T]> {
        self.record(group, name, |a| a.take_slice(n, name))
    }

    fn slot<T: 'a>(
        &mut self,
        group: ItemGroup,
        name: &'static str,
    ) -> Result<&'a mut MaybeUninit<T>> {
        self.record(group, name, |a| a.take_uninit(name))
    }
}

/// Checks that a carving went exactly as counted, item by item; the error
/// names the walk. A mismatch is a bug in a carver, refused rather than hidden.
pub fn check_carved(counted: &ArenaItems, carved: &ArenaItems, what: &'static str) -> Result<()> {
    if counted == carved {
        Ok(())
    } else {
        Err(Error::InvalidArgument { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Buf([u8; 4096]);

    /// A small walk: three slices of different types and a slot.
    struct Parts<'a, Y: Yield<'a>> {
        a: Y::Slice<f32>,
        b: Y::Slice<u8>,
        c: Y::Slice<u64>,
        s: Y::Slot<(u32, &'a str)>,
    }

    fn walk<'a, C: Carver<'a>>(c: &mut C, n: usize) -> Result<Parts<'a, C::Out>> {
        Ok(Parts {
            a: c.slice(ItemGroup::Scratch, "a", n)?,
            b: c.slice(ItemGroup::Scratch, "b", 0)?,
            c: c.slice(ItemGroup::Tokenizer, "c", 3 * n + 1)?,
            s: c.slot(ItemGroup::State, "s")?,
        })
    }

    #[test]
    fn counting_and_carving_the_same_walk_list_the_same_items() {
        for n in [0usize, 1, 15, 16, 17, 100] {
            let mut counter = Counter::new();
            let counted = walk(&mut counter, n).unwrap();
            // a: 4n bytes rounded; b: nothing; c: 8 (3n + 1) rounded; s: one line.
            let round = |x: usize| x.div_ceil(64) * 64;
            assert_eq!(counted.a.bytes, round(4 * n));
            assert_eq!(
                counted.b,
                Span {
                    offset: round(4 * n),
                    bytes: 0,
                    len: 0
                }
            );
            assert_eq!(counted.c.offset, round(4 * n));
            assert_eq!(counted.c.bytes, round(8 * (3 * n + 1)));
            assert_eq!(counted.s.bytes, 64);
            assert_eq!(counter.used(), counter.items().total());

            let mut buf = Buf([0xEE; 4096]);
            let base = buf.0.as_ptr() as usize;
            let mut arena = Arena::new(&mut buf.0);
            arena.take_bytes(10, "before").unwrap(); // logging starts mid-arena
            let mut logged = Logged::new(&mut arena);
            let carved = walk(&mut logged, n).unwrap();
            assert_eq!(logged.items(), counter.items(), "n = {n}");
            check_carved(counter.items(), logged.items(), "test").unwrap();
            // The spans are where the slices really are (after the first 64 bytes).
            assert_eq!(carved.a.as_ptr() as usize - base - 64, counted.a.offset);
            assert_eq!(carved.c.as_ptr() as usize - base - 64, counted.c.offset);
            assert_eq!(carved.s as *mut _ as usize - base - 64, counted.s.offset);
            assert_eq!(
                (carved.a.len(), carved.b.len(), carved.c.len()),
                (n, 0, 3 * n + 1)
            );
            assert!(carved.c.iter().all(|&v| v == 0));
            let s = carved.s.write((7, "x"));
            assert_eq!(*s, (7, "x"));
            assert_eq!(arena.used(), 64 + counter.used());
        }
    }

    #[test]
    fn a_walk_that_does_not_fit_fails_with_the_item_name() {
        let mut buf = Buf([0; 4096]);
        let mut arena = Arena::new(&mut buf.0[..256]);
        let err = walk(&mut Logged::new(&mut arena), 100).err().unwrap();
        // a: 400 -> 448 bytes > 256.
        assert_eq!(
            err,
            Error::Budget {
                what: "a",
                needed: 448,
                available: 256
            }
        );
        let mut counter = Counter::new();
        let e = walk(&mut counter, usize::MAX / 2).err().unwrap();
        assert_eq!(e, Error::Overflow { what: "a" });
    }

    #[test]
    fn more_items_than_the_list_holds_is_an_error_not_a_panic() {
        let mut counter = Counter::new();
        for _ in 0..MAX_ARENA_ITEMS {
            Carver::slice::<u8>(&mut counter, ItemGroup::Scratch, "x", 1).unwrap();
        }
        assert!(matches!(
            Carver::slice::<u8>(&mut counter, ItemGroup::Scratch, "x", 1),
            Err(Error::Overflow { .. })
        ));
        assert_eq!(counter.items().len(), MAX_ARENA_ITEMS);
        assert_eq!(counter.items().group_bytes(ItemGroup::Scratch), 64 * 32);
        assert_eq!(counter.used(), 64 * 32);
    }

    #[test]
    fn a_differing_carving_is_refused() {
        let mut a = Counter::new();
        let mut b = Counter::new();
        walk(&mut a, 3).unwrap();
        walk(&mut b, 40).unwrap();
        assert_eq!(
            check_carved(a.items(), b.items(), "walk"),
            Err(Error::InvalidArgument { what: "walk" })
        );
    }
}
