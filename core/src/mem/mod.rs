//! Memory: the arena every run-time byte comes from, the slab the KV cache
//! pages live in, and the planner that says how much of both init will take.

pub mod arena;
pub mod plan;
pub mod slab;
pub mod whatif;

pub use arena::{Arena, Pod, ARENA_ALIGN};
pub use slab::{BlockId, Slab};
