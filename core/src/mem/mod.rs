//! Memory: the arena every run-time byte comes from, the slab the KV cache
//! pages live in, the planner that says how much of both init will take,
//! and the carvers that walk one description of an arena two ways
//! (counting and carving).

pub mod arena;
pub mod carve;
pub mod plan;
pub mod slab;
pub mod whatif;

pub use arena::{Arena, Pod, ARENA_ALIGN};
pub use carve::{
    ArenaItem, ArenaItems, Carved, Carver, Counted, Counter, ItemGroup, Logged, Span, Yield,
    MAX_ARENA_ITEMS,
};
pub use slab::{BlockId, Slab, SlabParts};
