//! Memory: the arena every run-time byte comes from, the slab the KV cache
//! pages live in, the one description of what init carves (walked by a
//! counting carver to plan and by the arena to carve), and the one sizing
//! model of architectures (the engine's own and what-if ones).

pub mod arch;
pub mod arena;
pub mod carve;
pub mod plan;
pub mod scratch;
pub mod slab;

pub use arena::{Arena, Pod, ARENA_ALIGN};
pub use carve::{
    ArenaItem, ArenaItems, Carved, Carver, Counted, Counter, ItemGroup, Logged, Span, Yield,
    MAX_ARENA_ITEMS,
};
pub use slab::{BlockId, Slab, SlabParts};
