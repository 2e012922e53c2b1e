//! The handle table: what an `alm_model *`, `alm_engine *` or
//! `alm_tokenizer *` really is.
//!
//! A handle is not an address. It is a number that names a slot of a
//! fixed-size table in the library's static memory, with the slot's
//! generation and the handle's type packed in:
//!
//! ```text
//!  bits  63 (or 31) .. 14   13 .. 7   6 .. 4   3 .. 0
//!        generation         slot      type     0000
//! ```
//!
//! Every call decodes the number and checks it against the table before
//! touching anything: a type that is not the one expected (an engine passed
//! as a tokenizer), a generation that is not the slot's live one (a freed
//! handle, a double free, the tokenizer of a freed engine) or a number the
//! library never returned is refused with `ALM_ERR_BAD_HANDLE`. Nothing is
//! ever read through the handle, so a stale handle is never a
//! use-after-free: the table outlives every handle.
//!
//! Generations count up per slot and slots are handed out round-robin, so a
//! stale handle could alias a live one only after its slot was reused
//! 2^18 times (on 32-bit targets; 2^50 on 64-bit ones).
//!
//! Each slot has a lock that calls take with `try_*`: engines and standalone
//! tokenizers are used exclusively (a second concurrent call on the same
//! handle gets `ALM_ERR_BUSY` instead of a data race or a wait), models are
//! shared (any number of concurrent readers; closing needs them gone). A
//! panic inside a call poisons its slot: the handle then refuses use with
//! `ALM_ERR_PANIC` until freed.
//!
//! The payload of a slot is small (the engine itself lives in the caller's
//! arena); [`static_bytes`] is the whole table's footprint.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, TryLockError};

use super::{alm_status, ErrBuf};

/// Most models open at once (`alm_model_open_*` beyond it: `ALM_ERR_FULL`).
pub const ALM_MAX_MODELS: u32 = 16;

/// Most engines alive at once (`alm_engine_create` beyond it: `ALM_ERR_FULL`).
pub const ALM_MAX_ENGINES: u32 = 32;

/// Most standalone tokenizers alive at once (`alm_tokenizer_create` beyond
/// it: `ALM_ERR_FULL`). Engines' tokenizers do not count.
pub const ALM_MAX_TOKENIZERS: u32 = 32;

/// The type of a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `alm_model *`.
    Model = 1,
    /// `alm_engine *`.
    Engine = 2,
    /// `alm_tokenizer *` from `alm_tokenizer_create`.
    Tokenizer = 3,
    /// `alm_tokenizer *` from `alm_engine_get_tokenizer`: names the engine's
    /// slot and generation, so it dies with the engine.
    EngineTokenizer = 4,
}

impl Kind {
    fn from_bits(bits: usize) -> Option<Kind> {
        match bits {
            1 => Some(Kind::Model),
            2 => Some(Kind::Engine),
            3 => Some(Kind::Tokenizer),
            4 => Some(Kind::EngineTokenizer),
            _ => None,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Model => "a model handle",
            Kind::Engine => "an engine handle",
            Kind::Tokenizer | Kind::EngineTokenizer => "a tokenizer handle",
        }
    }
}

const KIND_SHIFT: u32 = 4;
const SLOT_SHIFT: u32 = 7;
const GEN_SHIFT: u32 = 14;
const LOW_MASK: usize = (1 << KIND_SHIFT) - 1;
const KIND_MASK: usize = (1 << (SLOT_SHIFT - KIND_SHIFT)) - 1;
const SLOT_MASK: usize = (1 << (GEN_SHIFT - SLOT_SHIFT)) - 1;
const GEN_MASK: usize = usize::MAX >> GEN_SHIFT;

const _: () = assert!(ALM_MAX_MODELS as usize <= SLOT_MASK + 1);
const _: () = assert!(ALM_MAX_ENGINES as usize <= SLOT_MASK + 1);
const _: () = assert!(ALM_MAX_TOKENIZERS as usize <= SLOT_MASK + 1);

/// A decoded handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Id {
    pub(crate) kind: Kind,
    pub(crate) slot: usize,
    pub(crate) gen: usize,
}

impl Id {
    /// The handle's number.
    pub(crate) fn value(self) -> usize {
        (self.gen << GEN_SHIFT) | (self.slot << SLOT_SHIFT) | ((self.kind as usize) << KIND_SHIFT)
    }

    /// The handle as the opaque pointer the header declares. It has no
    /// provenance: it is never dereferenced, by the library or the caller.
    pub(crate) fn to_ptr<H>(self) -> *mut H {
        std::ptr::without_provenance_mut(self.value())
    }

    /// Decodes a handle pointer (only its number is used).
    pub(crate) fn from_ptr<H>(p: *const H) -> Result<Id, HandleError> {
        let value = p.addr();
        if value == 0 {
            return Err(HandleError::Null);
        }
        if value & LOW_MASK != 0 {
            return Err(HandleError::NotAHandle);
        }
        let kind =
            Kind::from_bits((value >> KIND_SHIFT) & KIND_MASK).ok_or(HandleError::NotAHandle)?;
        let gen = value >> GEN_SHIFT;
        if gen == 0 {
            return Err(HandleError::NotAHandle);
        }
        Ok(Id {
            kind,
            slot: (value >> SLOT_SHIFT) & SLOT_MASK,
            gen,
        })
    }

    /// Decodes a handle that must be of type `expected`.
    pub(crate) fn expect<H>(p: *const H, expected: Kind) -> Result<Id, HandleError> {
        let id = Id::from_ptr(p)?;
        if id.kind != expected {
            return Err(HandleError::Foreign(id.kind));
        }
        Ok(id)
    }
}

/// Why a handle was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandleError {
    /// NULL.
    Null,
    /// A number the library never hands out.
    NotAHandle,
    /// A handle of another type.
    Foreign(Kind),
    /// Freed or closed (or the engine of an engine's tokenizer was freed).
    Stale(Kind),
    /// Another call holds it.
    Busy,
    /// A panic happened during an earlier call on it.
    Broken,
    /// A model with this many engines attached.
    InUse(usize),
}

impl HandleError {
    /// Writes the message for argument `name` (expected: `expected`) and
    /// returns the status.
    pub(crate) fn report(self, err: &ErrBuf, name: &str, expected: Kind) -> alm_status {
        use alm_status::*;
        match self {
            HandleError::Null => {
                err.fail_with(ALM_ERR_NULL_ARGUMENT, format_args!("`{name}` is NULL"))
            }
            HandleError::NotAHandle => err.fail_with(
                ALM_ERR_BAD_HANDLE,
                format_args!("`{name}` is not a handle this library returned"),
            ),
            HandleError::Foreign(k) => err.fail_with(
                ALM_ERR_BAD_HANDLE,
                format_args!("`{name}` is {}, not {}", k.noun(), expected.noun()),
            ),
            HandleError::Stale(Kind::EngineTokenizer) => err.fail_with(
                ALM_ERR_BAD_HANDLE,
                format_args!("`{name}` belongs to an engine that was freed"),
            ),
            HandleError::Stale(k) => err.fail_with(
                ALM_ERR_BAD_HANDLE,
                format_args!("`{name}` is {} that was already freed or closed", k.noun()),
            ),
            HandleError::Busy => err.fail_with(
                ALM_ERR_BUSY,
                format_args!(
                    "`{name}` is in use by another call right now; use it from one thread at a time"
                ),
            ),
            HandleError::Broken => err.fail_with(
                ALM_ERR_PANIC,
                format_args!("`{name}` was interrupted by an internal error earlier; free it"),
            ),
            HandleError::InUse(n) => err.fail_with(
                ALM_ERR_IN_USE,
                format_args!("`{name}` still has {n} engine(s); free them first"),
            ),
        }
    }
}

/// A slot's contents. `Option<T>` would do, but its `None` is not always
/// zero bytes (rustc may put the tag in a niche of `T`), which would move
/// the tables from `.bss` to `.data`; an explicit flag keeps them zero.
struct Entry<T> {
    /// Whether `value` is initialized.
    occupied: bool,
    /// The generation of the last value put here (the live one, if any).
    generation: usize,
    value: MaybeUninit<T>,
}

impl<T> Entry<T> {
    const fn empty() -> Self {
        Entry {
            occupied: false,
            generation: 0,
            value: MaybeUninit::uninit(),
        }
    }

    fn get(&self) -> Option<&T> {
        // SAFETY: `occupied` says `value` is initialized.
        self.occupied
            .then(|| unsafe { self.value.assume_init_ref() })
    }

    fn get_mut(&mut self) -> Option<&mut T> {
        // SAFETY: `occupied` says `value` is initialized.
        self.occupied
            .then(|| unsafe { self.value.assume_init_mut() })
    }

    fn put(&mut self, value: T) {
        drop(self.take());
        self.value.write(value);
        self.occupied = true;
    }

    fn take(&mut self) -> Option<T> {
        if !self.occupied {
            return None;
        }
        self.occupied = false;
        // SAFETY: it was initialized, and `occupied` is now false, so it is
        // read out exactly once.
        Some(unsafe { self.value.assume_init_read() })
    }
}

impl<T> Drop for Entry<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// One slot of a [`Table`].
pub(crate) struct Slot<T> {
    /// The live value's generation; 0 when the slot is free.
    live: AtomicUsize,
    /// Handles that depend on this one (engines on a model).
    dependents: AtomicUsize,
    cell: RwLock<Entry<T>>,
}

impl<T> Slot<T> {
    const fn new() -> Self {
        Slot {
            live: AtomicUsize::new(0),
            dependents: AtomicUsize::new(0),
            cell: RwLock::new(Entry::empty()),
        }
    }

    /// Records one more dependent (an engine created on this model).
    pub(crate) fn add_dependent(&self) {
        self.dependents.fetch_add(1, Ordering::AcqRel);
    }
}

/// A value a [`Table`] holds, with the type of its handles.
pub(crate) trait Handled {
    /// The type of the handles to it.
    const KIND: Kind;
}

/// A fixed table of `N` slots holding values of one handle type. Every
/// byte of an empty table is zero, so the tables sit in `.bss`.
pub(crate) struct Table<T, const N: usize> {
    /// Where the next search for a free slot starts (round-robin).
    cursor: AtomicUsize,
    slots: [Slot<T>; N],
}

impl<T: Handled, const N: usize> Table<T, N> {
    /// An empty table (usable in a `static`).
    pub(crate) const fn new() -> Self {
        Table {
            cursor: AtomicUsize::new(0),
            slots: [const { Slot::new() }; N],
        }
    }

    /// The slot `id` names if its generation is live.
    fn live_slot(&self, id: Id) -> Result<&Slot<T>, HandleError> {
        let slot = self.slots.get(id.slot).ok_or(HandleError::NotAHandle)?;
        if slot.live.load(Ordering::Acquire) != id.gen & GEN_MASK {
            return Err(HandleError::Stale(id.kind));
        }
        Ok(slot)
    }

    /// Whether `id` names a live value (without taking its lock).
    pub(crate) fn is_live(&self, id: Id) -> bool {
        self.live_slot(id).is_ok()
    }

    /// Runs `f` on the value `id` names, shared with other readers.
    pub(crate) fn with_ref<R>(
        &self,
        id: Id,
        f: impl FnOnce(&T, &Slot<T>) -> R,
    ) -> Result<R, HandleError> {
        let slot = self.live_slot(id)?;
        let guard = match slot.cell.try_read() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(HandleError::Busy),
            Err(TryLockError::Poisoned(_)) => return Err(HandleError::Broken),
        };
        match (guard.get(), guard.generation == id.gen) {
            (Some(v), true) => Ok(f(v, slot)),
            _ => Err(HandleError::Stale(id.kind)),
        }
    }

    /// Runs `f` on the value `id` names, exclusively.
    pub(crate) fn with_mut<R>(
        &self,
        id: Id,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, HandleError> {
        let slot = self.live_slot(id)?;
        let mut guard = match slot.cell.try_write() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(HandleError::Busy),
            Err(TryLockError::Poisoned(_)) => return Err(HandleError::Broken),
        };
        let generation = guard.generation;
        match (guard.get_mut(), generation == id.gen) {
            (Some(v), true) => Ok(f(v)),
            _ => Err(HandleError::Stale(id.kind)),
        }
    }

    /// Takes the value out of its slot (a poisoned slot included) and makes
    /// every handle to it stale. Refused while it has dependents.
    pub(crate) fn remove(&self, id: Id) -> Result<T, HandleError> {
        let slot = self.live_slot(id)?;
        let mut guard = match slot.cell.try_write() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(HandleError::Busy),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if !guard.occupied || guard.generation != id.gen {
            return Err(HandleError::Stale(id.kind));
        }
        let dependents = slot.dependents.load(Ordering::Acquire);
        if dependents != 0 {
            return Err(HandleError::InUse(dependents));
        }
        let value = guard.take().ok_or(HandleError::Stale(id.kind))?;
        slot.live.store(0, Ordering::Release);
        drop(guard);
        slot.cell.clear_poison();
        Ok(value)
    }

    /// Forgets one dependent of slot `index` (an engine of this model was freed).
    pub(crate) fn remove_dependent(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            let _ = slot
                .dependents
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Locks a free slot for a value to come, or `None` when all `N` are taken.
    pub(crate) fn reserve(&self) -> Option<Reservation<'_, T>> {
        let start = self.cursor.load(Ordering::Relaxed);
        for i in 0..N {
            let index = (start + i) % N;
            let Some(slot) = self.slots.get(index) else {
                continue;
            };
            if slot.live.load(Ordering::Acquire) != 0 {
                continue;
            }
            if let Ok(guard) = slot.cell.try_write() {
                if !guard.occupied {
                    self.cursor.store(index + 1, Ordering::Relaxed);
                    return Some(Reservation {
                        guard,
                        slot,
                        id: Id {
                            kind: T::KIND,
                            slot: index,
                            gen: 0,
                        },
                    });
                }
            }
        }
        None
    }
}

/// A free slot locked for a value being built; dropping it leaves the slot free.
pub(crate) struct Reservation<'t, T> {
    guard: std::sync::RwLockWriteGuard<'t, Entry<T>>,
    slot: &'t Slot<T>,
    id: Id,
}

impl<T> Reservation<'_, T> {
    /// Puts `value` in the slot under a new generation; returns its handle.
    pub(crate) fn fill(mut self, value: T) -> Id {
        let mut gen = self.guard.generation.wrapping_add(1) & GEN_MASK;
        if gen == 0 {
            gen = 1;
        }
        self.guard.generation = gen;
        self.guard.put(value);
        self.slot.dependents.store(0, Ordering::Release);
        self.slot.live.store(gen, Ordering::Release);
        Id { gen, ..self.id }
    }
}

/// Bytes of static memory a table takes.
#[cfg(test)]
pub(crate) const fn table_bytes<T: Handled, const N: usize>() -> usize {
    std::mem::size_of::<Table<T, N>>()
}

/// Bytes of static memory all handle tables take together.
#[cfg(test)]
pub(crate) fn static_bytes() -> usize {
    super::model::table_bytes() + super::engine::table_bytes() + super::tokenizer::table_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Handled for u64 {
        const KIND: Kind = Kind::Engine;
    }
    impl Handled for u8 {
        const KIND: Kind = Kind::Model;
    }

    static TABLE: Table<u64, 3> = Table::new();

    #[test]
    fn stale_foreign_and_made_up_handles_are_refused() {
        let a = TABLE.reserve().unwrap().fill(7);
        let pa: *mut u8 = a.to_ptr();
        assert_eq!(Id::expect(pa, Kind::Engine), Ok(a));
        assert_eq!(
            Id::expect(pa, Kind::Model),
            Err(HandleError::Foreign(Kind::Engine))
        );
        assert_eq!(TABLE.with_mut(a, |v| *v), Ok(7));
        assert_eq!(TABLE.remove(a), Ok(7));
        // Double free and use after free.
        assert_eq!(TABLE.remove(a), Err(HandleError::Stale(Kind::Engine)));
        assert_eq!(
            TABLE.with_mut(a, |v| *v),
            Err(HandleError::Stale(Kind::Engine))
        );
        // The slot comes back only after the others were used, under a new generation.
        let b = TABLE.reserve().unwrap().fill(8);
        let c = TABLE.reserve().unwrap().fill(9);
        assert_ne!(b.slot, a.slot);
        assert_ne!(c.slot, a.slot);
        let d = TABLE.reserve().unwrap().fill(10);
        assert_eq!(d.slot, a.slot);
        assert_ne!(d.gen, a.gen);
        assert_eq!(
            TABLE.with_mut(a, |v| *v),
            Err(HandleError::Stale(Kind::Engine))
        );
        // Full.
        assert!(TABLE.reserve().is_none());
        // Numbers the library never returns.
        for v in [1usize, 8, 0x10, a.value() | 1, usize::MAX] {
            let p = std::ptr::without_provenance::<u8>(v);
            assert!(
                Id::from_ptr(p).is_err()
                    || TABLE.with_mut(Id::from_ptr(p).unwrap(), |_| ()).is_err()
            );
        }
        assert_eq!(Id::from_ptr(std::ptr::null::<u8>()), Err(HandleError::Null));
        for id in [b, c, d] {
            TABLE.remove(id).unwrap();
        }
    }

    #[test]
    fn a_busy_handle_is_refused_not_waited_for() {
        static BUSY: Table<u8, 1> = Table::new();
        let id = BUSY.reserve().unwrap().fill(1);
        let inner = BUSY.with_mut(id, |_| BUSY.with_mut(id, |_| ()));
        assert_eq!(inner, Ok(Err(HandleError::Busy)));
        // Readers share; a remover waits for none of them.
        static SHARED: Table<u8, 1> = Table::new();
        let m = SHARED.reserve().unwrap().fill(1);
        let nested = SHARED.with_ref(m, |_, _| SHARED.with_ref(m, |v, _| *v));
        assert_eq!(nested, Ok(Ok(1)));
        let during = SHARED.with_ref(m, |_, _| SHARED.remove(m));
        assert_eq!(during, Ok(Err(HandleError::Busy)));
        // Dependents keep it open.
        SHARED.with_ref(m, |_, slot| slot.add_dependent()).unwrap();
        assert_eq!(SHARED.remove(m), Err(HandleError::InUse(1)));
        SHARED.remove_dependent(m.slot);
        assert_eq!(SHARED.remove(m), Ok(1));
    }

    #[test]
    fn a_panic_breaks_the_handle_until_it_is_freed() {
        static T: Table<u8, 1> = Table::new();
        let id = T.reserve().unwrap().fill(5);
        let r = std::panic::catch_unwind(|| T.with_mut(id, |_| panic!("boom")));
        assert!(r.is_err());
        assert_eq!(T.with_mut(id, |v| *v), Err(HandleError::Broken));
        assert_eq!(T.remove(id), Ok(5));
        let again = T.reserve().unwrap().fill(6);
        assert_eq!(T.with_mut(again, |v| *v), Ok(6));
    }

    #[test]
    fn the_static_tables_stay_small() {
        // The header promises at most 48 KiB of static memory for the tables.
        let bytes = static_bytes();
        assert!(bytes <= 48 * 1024, "{bytes} bytes");
    }
}
