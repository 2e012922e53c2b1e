//! The memory planner: from a model's header and the parameters alone, the
//! exact arena bytes init will carve, item by item, and the largest context
//! a budget allows.
//!
//! # One description, two walks
//!
//! `EngineLayout::carve` lists every arena item of an engine, once, in
//! carve order. The planner runs it with a counting
//! [`Counter`]: the items' names, offsets and
//! bytes are the plan ([`MemoryPlan::items`]), and the summary fields are
//! sums over it. [`Engine::new`] runs the same walk over the arena, logs
//! what it carved, and refuses to start if the log differs from the plan
//! in any item. So plan == carve holds item by item by construction.
//!
//! | item | size |
//! |---|---|
//! | model index | `n_layers x size_of(LayerIndex)` (one [`TensorLoc`](crate::model::TensorLoc) per weight) |
//! | tokenizer tables | the tokenizer's own walk (12 items, see `tokenizer/load.rs`; none if the file has no tokenizer) |
//! | KV page pool | `pages x round64(page bytes)`, then `round64(4 x pages)` free-list links ([`Slab::carve`](super::Slab::carve)) |
//! | KV page table | `pages x 8` (one block handle per page) |
//! | scratch | one buffer per [`ScratchPlan`] field ([`super::scratch`]) |
//! | engine state | `size_of(Engine)` |
//!
//! Every item is rounded up to [`ARENA_ALIGN`] (64) bytes and starts on a
//! 64-byte boundary (see [`Arena`](super::Arena)), so the arena bytes of an engine are
//! the plain sum of its rounded items.
//!
//! `page bytes = page_tokens x kv_bytes_per_token` and
//! `kv_bytes_per_token = n_layers x 2 (K and V) x n_kv_heads x row_bytes(head_dim)`
//! with `row_bytes` = 2 x head_dim for F16, 4 x head_dim for F32 and
//! 34 x head_dim / 32 for Q8_0 ([`KvGeometry`]). Scratch is sized from the
//! model's [`ArchSpec`] (the what-if model's description) and, for the
//! quantized activations, each matmul's real weight type.
//!
//! With a fixed context, `pages = ceil(ctx / page_tokens)`. With "fill the
//! budget" (`ctx_tokens = 0`), the planner finds the largest page count whose
//! total fits, by binary search over the (monotone) counted total, and caps
//! it at the model's training context (or at [`MAX_CTX_TOKENS`] with
//! [`PlanParams::allow_ctx_beyond_train`]); the context is then
//! `pages x page_tokens`.
//!
//! # Refusals, cheapest first
//!
//! Every count has a cap (`MAX_*` below), checked by
//! [`PlanParams::validate`] before any model is looked at; a fixed context
//! longer than the model's training context is refused with both numbers
//! ([`Error::ContextBeyondTraining`]) unless the caller allows it. Only then
//! are sizes computed, with checked arithmetic.
//!
//! Weights are read in place from the model bytes and are not part of the
//! arena; the plan reports their size for the caller's total.

use super::arch::ArchSpec;
use super::carve::{ArenaItems, Carver, Counter, ItemGroup, Yield};
pub use super::scratch::{attn_slot_per_head, ScratchElems, ScratchPlan};
use super::scratch::{widest_act_bytes, Scratch, ScratchParams};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels::act_format;
use crate::kv::{KvCache, KvGeometry, KvParts, KvType};
use crate::mem::{Slab, ARENA_ALIGN};
use crate::model::{Hparams, LayerIndex, Model, TensorLoc};
use crate::tokenizer::{TableCounts, TableSlices, Tokenizer, TokenizerOptions};

/// Parameters that decide the arena size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanParams {
    /// Context in tokens; 0 means "as many as the budget allows".
    pub ctx_tokens: u32,
    /// Accept a context longer than the model's training context. Off by
    /// default: a longer context is refused with
    /// [`Error::ContextBeyondTraining`], and "as many as the budget allows"
    /// stops at the training context. On: both go up to [`MAX_CTX_TOKENS`].
    pub allow_ctx_beyond_train: bool,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Tokens per KV page.
    pub page_tokens: u32,
    /// Most tokens evaluated in one micro-batch (prefill chunk).
    pub max_batch: u32,
    /// Most rows of logits one evaluation returns.
    pub max_outputs: u32,
    /// Worker threads (sizes per-task attention scratch).
    pub threads: u32,
    /// Tokenizer options (they size its encode scratch).
    pub tokenizer: TokenizerOptions,
}

impl Default for PlanParams {
    fn default() -> Self {
        PlanParams {
            ctx_tokens: 0,
            allow_ctx_beyond_train: false,
            kv_type: KvType::F16,
            page_tokens: 16,
            max_batch: 64,
            max_outputs: 1,
            threads: 1,
            tokenizer: TokenizerOptions::default(),
        }
    }
}

/// Largest context accepted, in tokens, even with
/// [`PlanParams::allow_ctx_beyond_train`].
pub const MAX_CTX_TOKENS: u32 = 1 << 24;
/// Largest KV page accepted, in tokens.
pub const MAX_PAGE_TOKENS: u32 = 1 << 16;
/// Largest micro-batch accepted, in tokens.
pub const MAX_BATCH: u32 = 1 << 16;
/// Largest number of logits rows one evaluation may return.
pub const MAX_OUTPUTS: u32 = 1 << 16;
/// Largest thread count (or task count of a caller's parallel-for) accepted.
pub const MAX_THREADS: u32 = 256;

/// `Ok` if `min <= value <= max`, else [`Error::OutOfRange`] naming `what`.
pub(crate) fn in_range(what: &'static str, value: u32, min: u32, max: u32) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            what,
            value: u64::from(value),
            min: u64::from(min),
            max: u64::from(max),
        })
    }
}

impl PlanParams {
    /// Checks every count against its cap (`MAX_*`), without looking at a
    /// model: cheap, so callers run it before anything else.
    pub fn validate(&self) -> Result<()> {
        in_range("ctx_tokens", self.ctx_tokens, 0, MAX_CTX_TOKENS)?;
        in_range("page_tokens", self.page_tokens, 1, MAX_PAGE_TOKENS)?;
        in_range("max_batch", self.max_batch, 1, MAX_BATCH)?;
        in_range("max_outputs", self.max_outputs, 1, MAX_OUTPUTS)?;
        in_range("threads", self.threads, 1, MAX_THREADS)?;
        Ok(())
    }

    /// The longest context these parameters allow for a model trained on
    /// `ctx_train` tokens.
    pub fn ctx_limit(&self, ctx_train: u32) -> u32 {
        if self.allow_ctx_beyond_train {
            MAX_CTX_TOKENS
        } else {
            ctx_train
        }
    }

    /// [`PlanParams::validate`], then refuses a fixed context longer than
    /// the model's training context unless explicitly allowed.
    pub fn check_for(&self, hp: &Hparams) -> Result<()> {
        self.validate()?;
        if self.ctx_tokens > self.ctx_limit(hp.ctx_train) {
            return Err(Error::ContextBeyondTraining {
                requested: self.ctx_tokens,
                trained: hp.ctx_train,
            });
        }
        Ok(())
    }
}

impl PlanParams {
    /// The parameters that size the scratch.
    pub fn scratch(&self) -> ScratchParams {
        ScratchParams {
            max_batch: self.max_batch,
            max_outputs: self.max_outputs,
            threads: self.threads,
            page_tokens: self.page_tokens,
        }
    }
}

/// The arena bytes an engine takes, item by item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Model weights read in place from the caller's model bytes (not in the arena).
    pub weights_in_place_bytes: u64,
    /// Weights converted into the arena at init. Zero: every accepted
    /// weight type is read in place (others are refused by name).
    pub weights_converted_bytes: usize,
    /// The engine's own state.
    pub engine_state_bytes: usize,
    /// Per-layer weight locations.
    pub model_index_bytes: usize,
    /// Tokenizer tables and encode scratch.
    pub tokenizer_bytes: usize,
    /// KV cache bytes per token (unrounded).
    pub kv_bytes_per_token: usize,
    /// Tokens per page.
    pub kv_page_tokens: u32,
    /// Bytes of one page in the pool (rounded to 64).
    pub kv_bytes_per_page: usize,
    /// Pages in the pool.
    pub kv_pages: u32,
    /// The page pool (pages and free-list links).
    pub kv_pool_bytes: usize,
    /// The sequence's page table.
    pub page_table_bytes: usize,
    /// Context capacity in tokens.
    pub ctx_tokens: u32,
    /// Scratch buffers.
    pub scratch: ScratchPlan,
    /// Element counts of the scratch buffers.
    pub scratch_elems: ScratchElems,
    /// Total arena bytes (from a 64-byte-aligned start).
    pub total_bytes: usize,
    /// Every arena item in carve order, with its offset and bytes: the
    /// walk the fields above are sums of. For an engine
    /// ([`Engine::plan`]), what init actually carved (checked equal to
    /// the plan, item by item).
    pub items: ArenaItems,
}

fn overflow(what: &'static str) -> Error {
    Error::Overflow { what }
}

/// Whether the model carries a tokenizer (`tokenizer.ggml.model`). Without
/// one the engine runs on token ids alone and plans no tokenizer bytes.
pub fn has_tokenizer(model: &Model<'_>) -> Result<bool> {
    Ok(model.gguf.get("tokenizer.ggml.model")?.is_some())
}

/// The name of the engine state item.
pub const ENGINE_STATE: &str = "engine state";
/// The name of the model index item.
pub const MODEL_INDEX: &str = "model index";

/// What [`EngineLayout::carve`] yields, one field per item (or group).
pub(crate) struct EngineParts<'a, Y: Yield<'a>> {
    pub(crate) layers: Y::Slice<LayerIndex>,
    pub(crate) tokenizer: Option<TableSlices<'a, Y>>,
    pub(crate) kv: KvParts<'a, Y>,
    pub(crate) scratch: Scratch<'a, Y>,
    pub(crate) state: Y::Slot<Engine<'a>>,
}

/// Everything that sizes an engine's arena, as counts: computed once from
/// the model and the parameters (the expensive part: reading the
/// tokenizer's metadata and every weight's type), then walked for any page
/// count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineLayout {
    pub(crate) weights_in_place: u64,
    pub(crate) n_layers: usize,
    pub(crate) tokenizer: Option<TableCounts>,
    pub(crate) kv: KvGeometry,
    pub(crate) scratch: ScratchElems,
    /// The most pages the context limit allows.
    pub(crate) max_pages: u32,
    /// The fixed context asked for (0: fill a budget).
    pub(crate) ctx_tokens: u32,
}

impl EngineLayout {
    /// The layout for `model` with `p` (hyperparameters and counts checked
    /// against their caps and the training context first: a hand-made
    /// `Model` has not been through `Model::from_bytes`).
    pub(crate) fn new(model: &Model<'_>, p: &PlanParams) -> Result<EngineLayout> {
        let hp = &model.hparams;
        hp.validate()?;
        p.check_for(hp)?;
        let kv = KvGeometry::new(
            hp.n_layers as usize,
            hp.n_kv_heads as usize,
            hp.head_dim as usize,
            p.kv_type,
            p.page_tokens as usize,
        )?;
        let tokenizer = if has_tokenizer(model)? {
            Some(Tokenizer::table_counts(&model.gguf, &p.tokenizer)?)
        } else {
            None
        };
        let shape = ArchSpec::from_hparams(hp).scratch_shape()?;
        let scratch = shape.elems(&p.scratch(), act_bytes(model, p.max_batch as usize)?)?;
        Ok(EngineLayout {
            weights_in_place: model.globals.weights_bytes,
            n_layers: hp.n_layers as usize,
            tokenizer,
            kv,
            scratch,
            max_pages: pages_for(p.ctx_limit(hp.ctx_train), p.page_tokens),
            ctx_tokens: p.ctx_tokens,
        })
    }

    /// Every arena item of an engine with `pages` KV pages, in carve order:
    /// the one description the plan counts and init carves.
    pub(crate) fn carve<'a, C: Carver<'a>>(
        &self,
        c: &mut C,
        pages: u32,
    ) -> Result<EngineParts<'a, C::Out>> {
        Ok(EngineParts {
            layers: c.slice::<LayerIndex>(ItemGroup::ModelIndex, MODEL_INDEX, self.n_layers)?,
            tokenizer: match &self.tokenizer {
                Some(t) => Some(t.carve(c)?),
                None => None,
            },
            kv: KvCache::carve(c, &self.kv, pages)?,
            scratch: Scratch::carve(c, &self.scratch)?,
            state: c.slot::<Engine<'a>>(ItemGroup::State, ENGINE_STATE)?,
        })
    }

    /// The plan with `pages` KV pages: the counted walk.
    pub(crate) fn plan(&self, pages: u32) -> Result<MemoryPlan> {
        let mut counter = Counter::new();
        let parts = self.carve(&mut counter, pages)?;
        let items = *counter.items();
        let page_bytes = self.kv.page_bytes().ok_or(overflow("KV page"))?;
        let page_tokens = self.kv.page_tokens as u32;
        let ctx_tokens = if self.ctx_tokens > 0 {
            self.ctx_tokens
        } else {
            pages.saturating_mul(page_tokens)
        };
        Ok(MemoryPlan {
            weights_in_place_bytes: self.weights_in_place,
            weights_converted_bytes: 0,
            engine_state_bytes: items.group_bytes(ItemGroup::State),
            model_index_bytes: items.group_bytes(ItemGroup::ModelIndex),
            tokenizer_bytes: items.group_bytes(ItemGroup::Tokenizer),
            kv_bytes_per_token: self.kv.bytes_per_token().ok_or(overflow("KV"))?,
            kv_page_tokens: page_tokens,
            kv_bytes_per_page: Slab::stride(page_bytes).ok_or(overflow("KV page"))?,
            kv_pages: pages,
            kv_pool_bytes: items.group_bytes(ItemGroup::KvPool),
            page_table_bytes: items.group_bytes(ItemGroup::KvPageTable),
            ctx_tokens,
            scratch: ScratchPlan::of(&parts.scratch),
            scratch_elems: self.scratch,
            total_bytes: counter.used(),
            items,
        })
    }

    /// The plan for a fixed context (`ctx_tokens > 0`): whole pages.
    pub(crate) fn plan_fixed(&self) -> Result<MemoryPlan> {
        if self.ctx_tokens == 0 {
            return Err(Error::InvalidArgument {
                what: "a plan without a budget needs ctx_tokens > 0",
            });
        }
        self.plan(pages_for(self.ctx_tokens, self.kv.page_tokens as u32))
    }

    /// The plan for a budget (see [`plan_for_budget`]).
    pub(crate) fn plan_for_budget(&self, budget_bytes: usize) -> Result<MemoryPlan> {
        if self.ctx_tokens > 0 {
            let p = self.plan_fixed()?;
            if p.total_bytes > budget_bytes {
                return Err(Error::Budget {
                    what: "engine (plan total)",
                    needed: p.total_bytes,
                    available: budget_bytes,
                });
            }
            return Ok(p);
        }
        let fits = |pages: u32| -> bool {
            self.plan(pages)
                .map(|p| p.total_bytes <= budget_bytes)
                .unwrap_or(false)
        };
        if !fits(1) {
            let needed = self.plan(1)?.total_bytes;
            return Err(Error::Budget {
                what: "engine with one KV page",
                needed,
                available: budget_bytes,
            });
        }
        // Largest page count that fits: the total is monotone in pages.
        let (mut lo, mut hi) = (1u32, self.max_pages.max(1));
        if fits(hi) {
            lo = hi;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.plan(lo)
    }
}

/// KV pages that hold `ctx_tokens` tokens: whole pages.
fn pages_for(ctx_tokens: u32, page_tokens: u32) -> u32 {
    ctx_tokens.div_ceil(page_tokens.max(1))
}

/// The widest quantized activation any matmul of `model` needs for `rows`
/// rows: each weight's input width in the format its type calls for.
fn act_bytes(model: &Model<'_>, rows: usize) -> Result<usize> {
    let format = |loc: &TensorLoc| -> Result<(crate::kernels::ActFormat, usize)> {
        let ty = loc.ty().ok_or(Error::InvalidArgument {
            what: "weight type unknown",
        })?;
        Ok((act_format(ty)?, loc.cols as usize))
    };
    let mut widest = widest_act_bytes(rows, [format(&model.globals.output)?])?;
    let mut first_err: Option<Error> = None;
    crate::model::build_index(&model.gguf, &model.hparams, |_, l| {
        for loc in [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down] {
            match format(&loc).and_then(|f| widest_act_bytes(rows, [f])) {
                Ok(bytes) => widest = widest.max(bytes),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    })?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(widest),
    }
}

/// The plan for a fixed context (`params.ctx_tokens > 0`).
///
/// The context capacity is rounded up to whole pages; the engine still stops
/// at `ctx_tokens`.
pub fn plan(model: &Model<'_>, params: &PlanParams) -> Result<MemoryPlan> {
    if params.ctx_tokens == 0 {
        return Err(Error::InvalidArgument {
            what: "a plan without a budget needs ctx_tokens > 0",
        });
    }
    EngineLayout::new(model, params)?.plan_fixed()
}

/// The plan for a budget of `budget_bytes` (from a 64-byte-aligned start).
///
/// With `params.ctx_tokens == 0` the context is the largest whole number of
/// pages that fits, capped at the model's training context (see
/// [`PlanParams::ctx_limit`]). With a fixed
/// context the plan must fit, or the error says needed and available.
pub fn plan_for_budget(
    model: &Model<'_>,
    params: &PlanParams,
    budget_bytes: usize,
) -> Result<MemoryPlan> {
    EngineLayout::new(model, params)?.plan_for_budget(budget_bytes)
}

/// The largest context (in tokens, whole pages, at most
/// [`PlanParams::ctx_limit`]) that fits `budget_bytes` with these parameters.
pub fn max_context_for_budget(
    model: &Model<'_>,
    params: &PlanParams,
    budget_bytes: usize,
) -> Result<u32> {
    let fill = PlanParams {
        ctx_tokens: 0,
        ..*params
    };
    Ok(plan_for_budget(model, &fill, budget_bytes)?.ctx_tokens)
}

const _: () = assert!(ARENA_ALIGN == 64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::testutil::{zero_gguf, TinySpec};

    fn tiny() -> std::vec::Vec<u8> {
        zero_gguf(&TinySpec::default())
    }

    fn params() -> PlanParams {
        PlanParams {
            ctx_tokens: 64,
            kv_type: KvType::F16,
            page_tokens: 16,
            max_batch: 8,
            max_outputs: 2,
            threads: 2,
            ..PlanParams::default()
        }
    }

    #[test]
    fn every_item_of_a_tiny_plan_matches_hand_arithmetic() {
        // Tiny model: 2 layers, dim 64, ffn 96, 4 heads / 2 KV heads of 16,
        // vocab 300, f32 weights, rope over all 16 dims.
        let bytes = tiny();
        let model = Model::from_bytes(&bytes).unwrap();
        let p = plan(&model, &params()).unwrap();
        // KV per token: 2 layers x 2 (K, V) x 2 heads x 16 x 2 bytes = 256.
        assert_eq!(p.kv_bytes_per_token, 256);
        // A 16-token page: 4,096 bytes (already a multiple of 64).
        assert_eq!(p.kv_bytes_per_page, 4096);
        // 64 tokens = 4 pages: 4 x 4,096 + links 4 x 4 = 16 -> 64: 16,448.
        assert_eq!((p.kv_pages, p.kv_pool_bytes), (4, 16_448));
        // Page table: 4 handles of 8 bytes = 32 -> 64.
        assert_eq!(p.page_table_bytes, 64);
        // Model index: 2 layers x 12 locations x 32 bytes = 768.
        assert_eq!(p.model_index_bytes, 768);
        let s = p.scratch;
        // x and xb: batch 8 x 64 f32 = 2,048 each.
        assert_eq!((s.x, s.xb), (2048, 2048));
        // Work: max(8 x (2 x 64 + 2 x 32), 8 x 2 x 96) = 1,536 f32 = 6,144.
        assert_eq!(s.work, 6144);
        // f32 weights need no quantized activations.
        assert_eq!(s.act, 0);
        // Attention: 2 threads x 2 heads per KV head x 16 page scores = 64 f32 = 256.
        assert_eq!(s.attn, 256);
        // RoPE: 8 rows x 16 cos/sin values = 128 f32 = 512.
        assert_eq!(s.rope, 512);
        // Logits: 2 rows x 300 f32 = 2,400 -> 2,432; candidates 300 x 8 = 2,400 -> 2,432.
        assert_eq!((s.logits, s.candidates), (2432, 2432));
        assert_eq!(s.total(), 15_872);
        // Total: index 768 + KV 16,448 + table 64 + scratch 15,872 + tokenizer + engine.
        assert_eq!(
            p.total_bytes,
            768 + 16_448 + 64 + 15_872 + p.tokenizer_bytes + p.engine_state_bytes
        );
        assert_eq!(
            p.items.iter().map(|i| i.bytes).sum::<usize>(),
            p.total_bytes
        );
        assert_eq!(p.engine_state_bytes % 64, 0);
        // Weights stay in the model bytes.
        assert_eq!(p.weights_converted_bytes, 0);
        assert_eq!(p.weights_in_place_bytes, model.globals.weights_bytes);
    }

    #[test]
    fn the_budget_decides_the_context() {
        let bytes = tiny();
        let model = Model::from_bytes(&bytes).unwrap();
        let fill = PlanParams {
            ctx_tokens: 0,
            ..params()
        };
        let fixed = plan(&model, &params()).unwrap();
        let fixed = fixed.total_bytes - fixed.kv_pool_bytes - fixed.page_table_bytes;
        // 10 pages: 40,960 + links 40 -> 64 + table 80 -> 128 = 41,152.
        let budget = fixed + 41_152;
        let p = plan_for_budget(&model, &fill, budget).unwrap();
        assert_eq!((p.kv_pages, p.ctx_tokens), (10, 160));
        assert_eq!(p.total_bytes, budget);
        // One byte less: 9 pages.
        assert_eq!(
            max_context_for_budget(&model, &fill, budget - 1).unwrap(),
            144
        );
        // A huge budget stops at the training context (256 tokens = 16 pages).
        assert_eq!(max_context_for_budget(&model, &fill, 1 << 40).unwrap(), 256);
        // Too small for even one page: the error says what one page needs.
        let one_page = fixed + 4096 + 64 + 64;
        match plan_for_budget(&model, &fill, one_page - 1) {
            Err(Error::Budget {
                needed, available, ..
            }) => {
                assert_eq!((needed, available), (one_page, one_page - 1))
            }
            other => panic!("{other:?}"),
        }
        // A fixed context that does not fit says needed / available.
        let need = plan(&model, &params()).unwrap().total_bytes;
        assert_eq!(
            plan_for_budget(&model, &params(), need - 1).unwrap_err(),
            Error::Budget {
                what: "engine (plan total)",
                needed: need,
                available: need - 1
            }
        );
    }

    #[test]
    fn kv_types_and_bad_params() {
        let bytes = tiny();
        let model = Model::from_bytes(&bytes).unwrap();
        // Q8_0: a 16-value head is not a whole block.
        let q8 = PlanParams {
            kv_type: KvType::Q8_0,
            ..params()
        };
        assert!(plan(&model, &q8).is_err());
        // F32: 2 x 2 x 2 x 16 x 4 = 512 bytes a token.
        let f32p = PlanParams {
            kv_type: KvType::F32,
            ..params()
        };
        assert_eq!(plan(&model, &f32p).unwrap().kv_bytes_per_token, 512);
        for bad in [
            PlanParams {
                max_batch: 0,
                ..params()
            },
            PlanParams {
                page_tokens: 0,
                ..params()
            },
            PlanParams {
                threads: MAX_THREADS + 1,
                ..params()
            },
            PlanParams {
                max_outputs: 0,
                ..params()
            },
            PlanParams {
                ctx_tokens: 0,
                ..params()
            },
        ] {
            assert!(plan(&model, &bad).is_err(), "{bad:?}");
        }
        // The refusal names the count, its value and the accepted range.
        let huge = PlanParams {
            threads: 1 << 20,
            ..params()
        };
        assert_eq!(
            plan(&model, &huge).unwrap_err(),
            Error::OutOfRange {
                what: "threads",
                value: 1 << 20,
                min: 1,
                max: 256
            }
        );
        // A context that is not a whole number of pages rounds the pool up.
        let odd = PlanParams {
            ctx_tokens: 17,
            ..params()
        };
        let p = plan(&model, &odd).unwrap();
        assert_eq!((p.kv_pages, p.ctx_tokens), (2, 17));
    }

    #[test]
    fn a_context_beyond_training_needs_an_explicit_override() {
        // The tiny model was trained on 256 tokens.
        let bytes = tiny();
        let model = Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.hparams.ctx_train, 256);
        let at_train = PlanParams {
            ctx_tokens: 256,
            ..params()
        };
        assert!(plan(&model, &at_train).is_ok());
        let beyond = PlanParams {
            ctx_tokens: 257,
            ..params()
        };
        assert_eq!(
            plan(&model, &beyond).unwrap_err(),
            Error::ContextBeyondTraining {
                requested: 257,
                trained: 256
            }
        );
        assert!(plan_for_budget(&model, &beyond, 1 << 30).is_err());
        let allowed = PlanParams {
            allow_ctx_beyond_train: true,
            ..beyond
        };
        assert_eq!(plan(&model, &allowed).unwrap().ctx_tokens, 257);
        // Filling a budget stops at the training context unless allowed.
        let fill = PlanParams {
            ctx_tokens: 0,
            ..params()
        };
        assert_eq!(max_context_for_budget(&model, &fill, 1 << 30).unwrap(), 256);
        let fill_beyond = PlanParams {
            allow_ctx_beyond_train: true,
            ..fill
        };
        assert!(max_context_for_budget(&model, &fill_beyond, 1 << 30).unwrap() > 256);
        // Even allowed, the absolute cap holds.
        let absurd = PlanParams {
            ctx_tokens: MAX_CTX_TOKENS + 1,
            ..allowed
        };
        assert!(matches!(
            plan(&model, &absurd),
            Err(Error::OutOfRange {
                what: "ctx_tokens",
                ..
            })
        ));
    }
}
