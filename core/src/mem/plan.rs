//! The memory planner: from a model's header and the parameters alone, the
//! exact arena bytes init will carve, item by item, and the largest context
//! a budget allows.
//!
//! # Algorithm
//!
//! Every arena allocation is rounded up to [`ARENA_ALIGN`] (64) bytes and
//! starts on a 64-byte boundary (see [`Arena`]), so the arena bytes of an
//! engine are the plain sum of its rounded items. Init carves exactly these
//! items, in this order, using the numbers of this plan:
//!
//! | item | size |
//! |---|---|
//! | model index | `n_layers x size_of(LayerIndex)` (one [`TensorLoc`](crate::model::TensorLoc) per weight) |
//! | tokenizer tables | what the tokenizer reports for this vocabulary (0 if the file has none) |
//! | KV page pool | `pages x round64(page bytes)` + `round64(4 x pages)` free-list links |
//! | page table | `pages x 8` (one block handle per page) |
//! | scratch | one buffer per [`ScratchPlan`] field, each rounded |
//! | engine state | `size_of(Engine)` |
//!
//! `page bytes = page_tokens x kv_bytes_per_token` and
//! `kv_bytes_per_token = n_layers x 2 (K and V) x n_kv_heads x row_bytes(head_dim)`
//! with `row_bytes` = 2 x head_dim for F16, 4 x head_dim for F32 and
//! 34 x head_dim / 32 for Q8_0.
//!
//! With a fixed context, `pages = ceil(ctx / page_tokens)`. With "fill the
//! budget" (`ctx_tokens = 0`), the planner finds the largest page count whose
//! total fits, by binary search over the (monotone) total, and caps it at the
//! model's training context (or at [`MAX_CTX_TOKENS`] with
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

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels::{act_bytes, act_format};
use crate::kv::{KvGeometry, KvType};
use crate::mem::{Arena, Slab, ARENA_ALIGN};
use crate::model::{Hparams, LayerIndex, Model, TensorLoc};
use crate::tokenizer::{Tokenizer, TokenizerOptions};

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

fn in_range(what: &'static str, value: u32, min: u32, max: u32) -> Result<()> {
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

/// Scratch buffers, in bytes (each rounded to 64), in carve order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScratchPlan {
    /// Residual stream, `max_batch x dim` f32.
    pub x: usize,
    /// Normalized input / projection output, `max_batch x dim` f32.
    pub xb: usize,
    /// Phase buffer: attention (`q, k, v, out`: `max_batch x (2 q_dim + 2 kv_dim)`)
    /// and feed-forward (`gate, up`: `max_batch x 2 ffn_dim`) share it, f32.
    pub work: usize,
    /// Quantized activations for the widest matmul input, in the kernels' format.
    pub act: usize,
    /// Per-task attention state: `threads x gqa_group x (page_tokens + head_dim + 2)` f32
    /// (scores of a page, the running output, running max and sum, per query head).
    pub attn: usize,
    /// RoPE cosines and sines of each row's position: `max_batch x rope_dim` f32.
    pub rope: usize,
    /// Logits, `max_outputs x vocab` f32.
    pub logits: usize,
    /// Sampler candidates, `vocab x (u32 id + f32 value)`.
    pub candidates: usize,
}

impl ScratchPlan {
    /// Sum of all scratch buffers (saturating, so an absurd plan is refused
    /// by the checked total rather than wrapped).
    pub fn total(&self) -> usize {
        [
            self.x,
            self.xb,
            self.work,
            self.act,
            self.attn,
            self.rope,
            self.logits,
            self.candidates,
        ]
        .iter()
        .fold(0usize, |sum, &b| sum.saturating_add(b))
    }
}

/// Element counts behind [`ScratchPlan`], used by init to carve typed slices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScratchElems {
    /// f32 in `x`.
    pub x: usize,
    /// f32 in `xb`.
    pub xb: usize,
    /// f32 in `work`.
    pub work: usize,
    /// Bytes of `act`.
    pub act_bytes: usize,
    /// f32 in `attn`.
    pub attn: usize,
    /// f32 in `rope`.
    pub rope: usize,
    /// f32 in `logits`.
    pub logits: usize,
    /// Entries in `candidates` (each a u32 and an f32).
    pub candidates: usize,
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
}

impl MemoryPlan {
    /// `(name, bytes)` of every arena item, in carve order.
    pub fn items(&self) -> [(&'static str, usize); 13] {
        let s = &self.scratch;
        [
            ("model index", self.model_index_bytes),
            ("tokenizer tables", self.tokenizer_bytes),
            ("kv page pool", self.kv_pool_bytes),
            ("kv page table", self.page_table_bytes),
            ("scratch: residual x", s.x),
            ("scratch: xb", s.xb),
            ("scratch: attention/ffn work", s.work),
            ("scratch: quantized activations", s.act),
            ("scratch: attention tasks", s.attn),
            ("scratch: rope", s.rope),
            ("scratch: logits", s.logits),
            ("scratch: sampler candidates", s.candidates),
            ("engine state", self.engine_state_bytes),
        ]
    }
}

/// Everything of the plan that does not depend on the page count.
struct Fixed {
    weights: u64,
    engine: usize,
    index: usize,
    tokenizer: usize,
    geometry: KvGeometry,
    scratch: ScratchPlan,
    elems: ScratchElems,
    max_pages: u32,
}

fn overflow(what: &'static str) -> Error {
    Error::Overflow { what }
}

fn f32_bytes(n: usize, what: &'static str) -> Result<usize> {
    Arena::bytes_for::<f32>(n).ok_or(overflow(what))
}

/// Scratch sizes for `hp` with weight types from the model.
fn scratch_plan(model: &Model<'_>, p: &PlanParams) -> Result<(ScratchPlan, ScratchElems)> {
    let hp: &Hparams = &model.hparams;
    let b = p.max_batch as usize;
    let dim = hp.dim as usize;
    let q_dim = hp.q_dim() as usize;
    let kv_dim = hp.kv_dim() as usize;
    let ffn = hp.ffn_dim as usize;
    let mul = |a: usize, c: usize, what| a.checked_mul(c).ok_or(overflow(what));

    let x = mul(b, dim, "scratch x")?;
    let attn_phase = mul(b, 2 * q_dim + 2 * kv_dim, "attention buffers")?;
    let ffn_phase = mul(b, 2 * ffn, "feed-forward buffers")?;
    let work = attn_phase.max(ffn_phase);

    // Quantized activations: the widest input of any matmul, in the format
    // its weight type needs. Inputs: dim (q, k, v, gate, up, output head),
    // q_dim (attention output), ffn (down).
    let mut act = 0usize;
    let mut consider = |loc: &TensorLoc, cols: usize, rows: usize| -> Result<()> {
        let ty = loc.ty().ok_or(Error::InvalidArgument {
            what: "weight type unknown",
        })?;
        let fmt = act_format(ty)?;
        let bytes = act_bytes(fmt, rows, cols).ok_or(overflow("activation buffer"))?;
        act = act.max(bytes);
        Ok(())
    };
    let mut first_err: Option<Error> = None;
    crate::model::build_index(&model.gguf, hp, |_, l| {
        for (loc, cols) in [
            (l.wq, dim),
            (l.wk, dim),
            (l.wv, dim),
            (l.wo, q_dim),
            (l.w_gate, dim),
            (l.w_up, dim),
            (l.w_down, ffn),
        ] {
            if let Err(e) = consider(&loc, cols, b) {
                first_err.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = first_err {
        return Err(e);
    }
    consider(&model.globals.output, dim, b)?;

    let group = hp.gqa_group() as usize;
    let per_task = mul(
        group,
        attn_slot_per_head(p.page_tokens, hp.head_dim),
        "attention scratch",
    )?;
    let attn = mul(p.threads as usize, per_task, "attention scratch")?;
    let rope = mul(b, hp.rope_dim as usize, "rope scratch")?;
    let logits = mul(p.max_outputs as usize, hp.vocab as usize, "logits")?;
    let candidates = hp.vocab as usize;

    let elems = ScratchElems {
        x,
        xb: x,
        work,
        act_bytes: act,
        attn,
        rope,
        logits,
        candidates,
    };
    let plan = ScratchPlan {
        x: f32_bytes(x, "scratch x")?,
        xb: f32_bytes(x, "scratch xb")?,
        work: f32_bytes(work, "scratch work")?,
        act: Arena::round(act).ok_or(overflow("activation buffer"))?,
        attn: f32_bytes(attn, "attention scratch")?,
        rope: f32_bytes(rope, "rope scratch")?,
        logits: f32_bytes(logits, "logits")?,
        candidates: Arena::bytes_for::<crate::sample::Candidate>(candidates)
            .ok_or(overflow("candidates"))?,
    };
    Ok((plan, elems))
}

/// f32 values of attention state per query head: scores of one page, the
/// running output, and the running max and sum. Saturating: on a 32-bit
/// target two `u32`s overflow `usize`, and the checked products that use
/// this refuse a saturated width.
pub fn attn_slot_per_head(page_tokens: u32, head_dim: u32) -> usize {
    (page_tokens as usize)
        .saturating_add(head_dim as usize)
        .saturating_add(2)
}

fn fixed_part(model: &Model<'_>, p: &PlanParams) -> Result<Fixed> {
    let hp = &model.hparams;
    hp.validate()?;
    p.check_for(hp)?;
    let geometry = KvGeometry::new(
        hp.n_layers as usize,
        hp.n_kv_heads as usize,
        hp.head_dim as usize,
        p.kv_type,
        p.page_tokens as usize,
    )?;
    let (scratch, elems) = scratch_plan(model, p)?;
    let max_pages = p.ctx_limit(hp.ctx_train).div_ceil(p.page_tokens);
    Ok(Fixed {
        weights: model.globals.weights_bytes,
        engine: Arena::bytes_for::<Engine<'static>>(1).ok_or(overflow("engine state"))?,
        index: Arena::bytes_for::<LayerIndex>(hp.n_layers as usize)
            .ok_or(overflow("model index"))?,
        tokenizer: tokenizer_bytes(model, &p.tokenizer)?,
        geometry,
        scratch,
        elems,
        max_pages,
    })
}

/// Whether the model carries a tokenizer (`tokenizer.ggml.model`). Without
/// one the engine runs on token ids alone and plans no tokenizer bytes.
pub fn has_tokenizer(model: &Model<'_>) -> Result<bool> {
    Ok(model.gguf.get("tokenizer.ggml.model")?.is_some())
}

fn tokenizer_bytes(model: &Model<'_>, opts: &TokenizerOptions) -> Result<usize> {
    if has_tokenizer(model)? {
        Tokenizer::arena_bytes(&model.gguf, opts)
    } else {
        Ok(0)
    }
}

/// Bytes of the page table for `pages` pages (one [`crate::mem::BlockId`] each).
fn page_table_bytes(pages: u32) -> Option<usize> {
    Arena::bytes_for::<crate::mem::BlockId>(pages as usize)
}

fn assemble(f: &Fixed, pages: u32) -> Result<MemoryPlan> {
    let page_bytes = f.geometry.page_bytes().ok_or(overflow("KV page"))?;
    let kv_pool = Slab::bytes_needed(page_bytes, pages).ok_or(overflow("KV pool"))?;
    let table = page_table_bytes(pages).ok_or(overflow("page table"))?;
    let total = [
        f.engine,
        f.index,
        f.tokenizer,
        kv_pool,
        table,
        f.scratch.total(),
    ]
    .iter()
    .try_fold(0usize, |acc, &v| acc.checked_add(v))
    .ok_or(overflow("arena total"))?;
    let page_tokens = f.geometry.page_tokens as u32;
    Ok(MemoryPlan {
        weights_in_place_bytes: f.weights,
        weights_converted_bytes: 0,
        engine_state_bytes: f.engine,
        model_index_bytes: f.index,
        tokenizer_bytes: f.tokenizer,
        kv_bytes_per_token: f.geometry.bytes_per_token().ok_or(overflow("KV"))?,
        kv_page_tokens: page_tokens,
        kv_bytes_per_page: Arena::round(page_bytes).ok_or(overflow("KV page"))?,
        kv_pages: pages,
        kv_pool_bytes: kv_pool,
        page_table_bytes: table,
        ctx_tokens: pages.saturating_mul(page_tokens),
        scratch: f.scratch,
        scratch_elems: f.elems,
        total_bytes: total,
    })
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
    let f = fixed_part(model, params)?;
    let pages = params.ctx_tokens.div_ceil(params.page_tokens);
    let mut plan = assemble(&f, pages)?;
    plan.ctx_tokens = params.ctx_tokens;
    Ok(plan)
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
    if params.ctx_tokens > 0 {
        let p = plan(model, params)?;
        if p.total_bytes > budget_bytes {
            return Err(Error::Budget {
                what: "engine (plan total)",
                needed: p.total_bytes,
                available: budget_bytes,
            });
        }
        return Ok(p);
    }
    let f = fixed_part(model, params)?;
    let fits = |pages: u32| -> bool {
        assemble(&f, pages)
            .map(|p| p.total_bytes <= budget_bytes)
            .unwrap_or(false)
    };
    if !fits(1) {
        let needed = assemble(&f, 1)?.total_bytes;
        return Err(Error::Budget {
            what: "engine with one KV page",
            needed,
            available: budget_bytes,
        });
    }
    // Largest page count that fits: total is monotone in pages.
    let (mut lo, mut hi) = (1u32, f.max_pages.max(1));
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
    assemble(&f, lo)
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
        // Attention: 2 threads x 2 heads per KV head x (16 + 16 + 2) = 136 f32 = 544 -> 576.
        assert_eq!(s.attn, 576);
        // RoPE: 8 rows x 16 cos/sin values = 128 f32 = 512.
        assert_eq!(s.rope, 512);
        // Logits: 2 rows x 300 f32 = 2,400 -> 2,432; candidates 300 x 8 = 2,400 -> 2,432.
        assert_eq!((s.logits, s.candidates), (2432, 2432));
        assert_eq!(s.total(), 16_192);
        // Total: index 768 + KV 16,448 + table 64 + scratch 16,192 + tokenizer + engine.
        assert_eq!(
            p.total_bytes,
            768 + 16_448 + 64 + 16_192 + p.tokenizer_bytes + p.engine_state_bytes
        );
        assert_eq!(p.items().iter().map(|i| i.1).sum::<usize>(), p.total_bytes);
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
