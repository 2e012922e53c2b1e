//! The public Rust API: an engine that runs a model inside one arena.
//!
//! [`Engine::new`] validates the model, computes the [`MemoryPlan`], and
//! carves exactly the planned items from the caller's buffer — the engine
//! struct itself included, so a C caller needs nothing but the buffer.
//! [`Engine::eval`] appends tokens to the sequence and returns logits for
//! the rows asked for.

use crate::error::{Error, Result, TokenizerError};
use crate::kernels::{
    act_format, Act, ActFormat, CpuFeatures, KernelPath, Kernels, Matrix, SoftmaxState,
};
use crate::kv::KvCache;
use crate::mem::arch::ArchSpec;
use crate::mem::carve::check_carved;
use crate::mem::plan::{EngineLayout, MemoryPlan, PlanParams};
use crate::mem::scratch::{attn_slot_per_head, split_attn_slot, Scratch};
use crate::mem::{Arena, Logged};
use crate::model::ops::{add_assign, add_bias, rmsnorm, Rope};
use crate::model::{build_index, Hparams, LayerIndex, Model, TensorLoc};
use crate::parallel::{Parallel, SharedMut};
use crate::sample::Sampler;
use crate::tokenizer::Tokenizer;

/// Everything that configures an engine.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct EngineParams {
    /// Memory-relevant parameters (context, KV type, batch, outputs, threads).
    pub plan: PlanParams,
    /// Force a kernel path (`None`: the best the CPU features allow).
    pub kernel: Option<KernelPath>,
}

/// Which rows of an evaluation produce logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Only the last token's row (generation).
    Last,
    /// Every token's row (scoring); at most `max_outputs` rows.
    All,
}

/// A model running inside a caller's arena.
pub struct Engine<'a> {
    model: Model<'a>,
    layers: &'a [LayerIndex],
    tokenizer: Option<Tokenizer<'a>>,
    kernels: Kernels,
    rope: Rope,
    kv: KvCache<'a>,
    s: Scratch<'a>,
    plan: MemoryPlan,
    params: PlanParams,
    n_logit_rows: usize,
    arena_used: usize,
    arena_skipped: usize,
}

fn matrix<'a>(bytes: &'a [u8], loc: &TensorLoc) -> Result<Matrix<'a>> {
    Ok(Matrix {
        data: loc.bytes(bytes).ok_or(Error::InvalidArgument {
            what: "weight outside the model bytes",
        })?,
        ty: loc.ty().ok_or(Error::InvalidArgument {
            what: "weight type unknown",
        })?,
        rows: loc.rows as usize,
        cols: loc.cols as usize,
    })
}

fn vector<'a>(bytes: &'a [u8], loc: &TensorLoc) -> Result<&'a [u8]> {
    loc.bytes(bytes).ok_or(Error::InvalidArgument {
        what: "vector outside the model bytes",
    })
}

impl<'a> Engine<'a> {
    /// Builds an engine for the model in `model_bytes` inside `arena`.
    ///
    /// With `params.plan.ctx_tokens == 0` the context is the largest that
    /// fits the arena (capped at the training context). The arena should be
    /// 64-byte aligned; otherwise up to 63 leading bytes are skipped. Fails
    /// with [`Error::OutOfRange`] for a count above its cap,
    /// [`Error::ContextBeyondTraining`] for a context longer than the model
    /// was trained for (unless allowed), and [`Error::Budget`] (needed /
    /// available) if the plan does not fit.
    pub fn new(
        model_bytes: &'a [u8],
        arena: &'a mut [u8],
        params: &EngineParams,
        features: &CpuFeatures,
    ) -> Result<&'a mut Engine<'a>> {
        // Cheapest first: the counts against their caps, before the model
        // is parsed or a byte of the arena is touched.
        params.plan.validate()?;
        let model = Model::from_bytes(model_bytes)?;
        let rope = Rope::new(&model.hparams)?;
        let kernels = Kernels::new(features, params.kernel)?;
        let buffer_len = arena.len();
        let mut arena = Arena::new(arena);
        let layout = EngineLayout::new(&model, &params.plan)?;
        let plan = if params.plan.ctx_tokens > 0 {
            layout.plan_fixed()?
        } else {
            layout
                .plan_for_budget(arena.capacity())
                .map_err(|e| match e {
                    Error::Budget { what, needed, .. } => Error::Budget {
                        what,
                        needed: needed.saturating_add(arena.skipped()),
                        available: buffer_len,
                    },
                    e => e,
                })?
        };
        if plan.total_bytes > arena.capacity() {
            return Err(Error::Budget {
                what: "engine (plan total)",
                needed: plan.total_bytes.saturating_add(arena.skipped()),
                available: buffer_len,
            });
        }

        // Carve the planned items (the same walk, over the arena), and
        // refuse to start if anything was carved differently.
        let mut logged = Logged::new(&mut arena);
        let parts = layout.carve(&mut logged, plan.kv_pages)?;
        check_carved(
            &plan.items,
            logged.items(),
            "internal: arena carving differs from the plan",
        )?;
        let carved = *logged.items();

        // Fill what was carved.
        let hp = model.hparams;
        let layers = parts.layers;
        build_index(&model.gguf, &hp, |i, l| {
            if let Some(slot) = layers.get_mut(i as usize) {
                *slot = l;
            }
        })?;
        let tokenizer = match parts.tokenizer {
            Some(tables) => Some(Tokenizer::from_slices(
                &model.gguf,
                &params.plan.tokenizer,
                tables,
            )?),
            None => None,
        };
        let kv = KvCache::from_parts(parts.kv, layout.kv, plan.ctx_tokens as usize);
        let arena_used = arena.used();
        if arena_used != plan.total_bytes {
            // The planner and init disagree: a bug, refused rather than hidden.
            return Err(Error::InvalidArgument {
                what: "internal: arena carving differs from the plan",
            });
        }
        let engine = Engine {
            model,
            layers,
            tokenizer,
            kernels,
            rope,
            kv,
            s: parts.scratch,
            plan: MemoryPlan {
                items: carved,
                ..plan
            },
            params: params.plan,
            n_logit_rows: 0,
            arena_used,
            arena_skipped: arena.skipped(),
        };
        Ok(parts.state.write(engine))
    }

    /// The model's hyperparameters.
    pub fn hparams(&self) -> &Hparams {
        &self.model.hparams
    }

    /// The validated model.
    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    /// The tokenizer, if the model file has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer<'a>> {
        self.tokenizer.as_ref()
    }

    /// The tokenizer, mutable (encoding uses its scratch).
    pub fn tokenizer_mut(&mut self) -> Option<&mut Tokenizer<'a>> {
        self.tokenizer.as_mut()
    }

    /// The tokenizer, or an error saying the model has none.
    pub fn require_tokenizer(&mut self) -> Result<&mut Tokenizer<'a>> {
        self.tokenizer
            .as_mut()
            .ok_or(Error::Model(crate::error::ModelError::Unsupported {
                what: "the model file has no tokenizer (pass token ids)",
            }))
    }

    /// The plan the arena was carved by; its `items` list what init
    /// actually carved (checked equal to the plan, item by item).
    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// The kernel path in use.
    pub fn kernel_path(&self) -> KernelPath {
        self.kernels.path()
    }

    /// Arena bytes in use (equal to the plan's total), plus any bytes
    /// skipped to align the start.
    pub fn arena_used(&self) -> usize {
        self.arena_used + self.arena_skipped
    }

    /// Tokens in the sequence (the position of the next token).
    pub fn n_past(&self) -> usize {
        self.kv.len()
    }

    /// Context capacity in tokens.
    pub fn ctx_capacity(&self) -> usize {
        self.kv.capacity()
    }

    /// Vocabulary size (length of a logits row).
    pub fn vocab(&self) -> usize {
        self.model.hparams.vocab as usize
    }

    /// Forgets the sequence.
    pub fn reset(&mut self) -> Result<()> {
        self.n_logit_rows = 0;
        self.kv.clear()
    }

    /// Keeps the first `n` tokens of the sequence and forgets the rest.
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        self.n_logit_rows = 0;
        self.kv.truncate(n)
    }

    /// The logits rows of the last evaluation.
    pub fn logits(&self) -> &[f32] {
        let n = self.n_logit_rows * self.vocab();
        self.s.logits.get(..n).unwrap_or(&[])
    }

    /// Samples the next token from the last row of logits.
    pub fn sample(&mut self, sampler: &mut Sampler) -> Result<u32> {
        let vocab = self.vocab();
        if self.n_logit_rows == 0 {
            return Err(Error::InvalidArgument {
                what: "no logits to sample from: evaluate first",
            });
        }
        let start = (self.n_logit_rows - 1) * vocab;
        let row = self
            .s
            .logits
            .get(start..start + vocab)
            .ok_or(Error::InvalidArgument {
                what: "logits row out of range",
            })?;
        sampler.sample(row, self.s.candidates)
    }

    /// Appends `tokens` to the sequence and returns logits (`rows x vocab`)
    /// for the rows `outputs` selects. Nothing changes if the call fails its
    /// checks (a bad token id, more rows than `max_outputs`, a full context).
    pub fn eval(&mut self, par: &dyn Parallel, tokens: &[u32], outputs: Outputs) -> Result<&[f32]> {
        let vocab = self.vocab();
        if tokens.is_empty() {
            return Err(Error::InvalidArgument {
                what: "no tokens to evaluate",
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(TokenizerError::BadTokenId {
                id,
                vocab: vocab as u32,
            }
            .into());
        }
        let n_out = match outputs {
            Outputs::Last => 1,
            Outputs::All => tokens.len(),
        };
        if n_out > self.params.max_outputs as usize {
            return Err(Error::InvalidArgument {
                what: "more logits rows requested than max_outputs",
            });
        }
        let start = self.kv.len();
        let end = start.checked_add(tokens.len()).ok_or(Error::Overflow {
            what: "sequence length",
        })?;
        self.kv.reserve(end)?;
        self.n_logit_rows = 0;
        let batch = self.params.max_batch as usize;
        let mut out_row = 0;
        for (i, chunk) in tokens.chunks(batch).enumerate() {
            let pos0 = start + i * batch;
            let chunk_end = pos0 + chunk.len();
            // Rows of this chunk that produce logits, as a range of chunk rows.
            let rows = match outputs {
                Outputs::All => 0..chunk.len(),
                Outputs::Last if chunk_end == end => chunk.len() - 1..chunk.len(),
                Outputs::Last => 0..0,
            };
            let result = self.forward(par, chunk, pos0, rows.clone(), out_row);
            if let Err(e) = result {
                // Leave the sequence as it was before the call.
                let _ = self.kv.truncate(start);
                return Err(e);
            }
            out_row += rows.len();
        }
        self.kv.set_len(end)?;
        self.n_logit_rows = n_out;
        Ok(self.logits())
    }

    /// One micro-batch: `tokens` at positions `pos0..`, logits for chunk rows
    /// `out_rows` written from logits row `out_base` on.
    fn forward(
        &mut self,
        par: &dyn Parallel,
        tokens: &[u32],
        pos0: usize,
        out_rows: core::ops::Range<usize>,
        out_base: usize,
    ) -> Result<()> {
        let hp = self.model.hparams;
        let bytes = self.model.gguf.bytes();
        let n = tokens.len();
        let dim = hp.dim as usize;
        let q_dim = hp.q_dim() as usize;
        let kv_dim = hp.kv_dim() as usize;
        let ffn = hp.ffn_dim as usize;
        let head_dim = hp.head_dim as usize;
        let b = self.params.max_batch as usize;
        let k = self.kernels;
        let g = &self.model.globals;

        // Embeddings.
        let embd = matrix(bytes, &g.token_embd)?;
        for (r, &t) in tokens.iter().enumerate() {
            embd.dequantize_row(t as usize, &mut self.s.x[r * dim..(r + 1) * dim])?;
        }

        // RoPE angles for each row's position, shared by all layers.
        let rope_dims = self.rope.dims;
        let freq_factors = if g.rope_freqs.is_absent() {
            None
        } else {
            Some(vector(bytes, &g.rope_freqs)?)
        };
        let cos_sin_all = &mut *self.s.rope;
        for r in 0..n {
            self.rope.angles(
                pos0 + r,
                freq_factors,
                &mut cos_sin_all[r * rope_dims..(r + 1) * rope_dims],
            )?;
        }

        // The named parts of `work`, as the plan sized it.
        let shape = ArchSpec::from_hparams(&hp).scratch_shape()?;
        for (li, layer) in self.layers.iter().enumerate() {
            let [q, kk, vv, att] = shape.attn.split(self.s.work, b)?;
            let xb = &mut self.s.xb[..n * dim];

            // Attention block.
            let norm = vector(bytes, &layer.attn_norm)?;
            for r in 0..n {
                rmsnorm(
                    &self.s.x[r * dim..(r + 1) * dim],
                    norm,
                    hp.rms_eps,
                    &mut xb[r * dim..(r + 1) * dim],
                )?;
            }
            let mut quantized: Option<ActFormat> = None;
            for (loc, out, width, bias) in [
                (&layer.wq, &mut q[..n * q_dim], q_dim, &layer.bq),
                (&layer.wk, &mut kk[..n * kv_dim], kv_dim, &layer.bk),
                (&layer.wv, &mut vv[..n * kv_dim], kv_dim, &layer.bv),
            ] {
                let w = matrix(bytes, loc)?;
                let act = quantize_for(&k, &w, xb, n, dim, self.s.act, &mut quantized)?;
                k.matmul(par, &w, &act, out)?;
                if !bias.is_absent() {
                    let bias = vector(bytes, bias)?;
                    for row in out.chunks_exact_mut(width) {
                        add_bias(row, bias);
                    }
                }
            }
            for r in 0..n {
                let cs = &cos_sin_all[r * rope_dims..(r + 1) * rope_dims];
                self.rope
                    .apply(&mut q[r * q_dim..(r + 1) * q_dim], head_dim, cs);
                self.rope
                    .apply(&mut kk[r * kv_dim..(r + 1) * kv_dim], head_dim, cs);
            }
            // llama.cpp's flash attention takes the query in the keys'
            // dot-product type: f16 for an F16 cache.
            for x in q[..n * q_dim].iter_mut() {
                *x = crate::kernels::kv_round(self.params.kv_type, *x);
            }
            // Store K and V rows of this batch in the cache.
            for r in 0..n {
                for h in 0..hp.n_kv_heads as usize {
                    let src_k = &kk[r * kv_dim + h * head_dim..r * kv_dim + (h + 1) * head_dim];
                    k.kv_store(
                        self.params.kv_type,
                        src_k,
                        self.kv.row_mut(li, false, h, pos0 + r)?,
                    )?;
                    let src_v = &vv[r * kv_dim + h * head_dim..r * kv_dim + (h + 1) * head_dim];
                    k.kv_store(
                        self.params.kv_type,
                        src_v,
                        self.kv.row_mut(li, true, h, pos0 + r)?,
                    )?;
                }
            }
            attention(
                par,
                &k,
                &self.kv,
                &hp,
                li,
                &q[..n * q_dim],
                &mut att[..n * q_dim],
                self.s.attn,
                pos0,
                n,
                self.params.page_tokens as usize,
            )?;
            let wo = matrix(bytes, &layer.wo)?;
            let mut quantized = None;
            let act = quantize_for(
                &k,
                &wo,
                &att[..n * q_dim],
                n,
                q_dim,
                self.s.act,
                &mut quantized,
            )?;
            k.matmul(par, &wo, &act, xb)?;
            add_assign(&mut self.s.x[..n * dim], xb);

            // Feed-forward block.
            let norm = vector(bytes, &layer.ffn_norm)?;
            for r in 0..n {
                rmsnorm(
                    &self.s.x[r * dim..(r + 1) * dim],
                    norm,
                    hp.rms_eps,
                    &mut xb[r * dim..(r + 1) * dim],
                )?;
            }
            let [gate, up] = shape.ffn.split(self.s.work, b)?;
            let (gate, up) = (&mut gate[..n * ffn], &mut up[..n * ffn]);
            let mut quantized = None;
            let w_gate = matrix(bytes, &layer.w_gate)?;
            let act = quantize_for(&k, &w_gate, xb, n, dim, self.s.act, &mut quantized)?;
            k.matmul(par, &w_gate, &act, gate)?;
            let w_up = matrix(bytes, &layer.w_up)?;
            let act = quantize_for(&k, &w_up, xb, n, dim, self.s.act, &mut quantized)?;
            k.matmul(par, &w_up, &act, up)?;
            k.swiglu(gate, up)?;
            let w_down = matrix(bytes, &layer.w_down)?;
            let mut quantized = None;
            let act = quantize_for(&k, &w_down, gate, n, ffn, self.s.act, &mut quantized)?;
            k.matmul(par, &w_down, &act, xb)?;
            add_assign(&mut self.s.x[..n * dim], xb);
        }

        // Output head, only for the rows asked for.
        let n_out = out_rows.len();
        if n_out == 0 {
            return Ok(());
        }
        let norm = vector(bytes, &g.output_norm)?;
        for (i, r) in out_rows.enumerate() {
            rmsnorm(
                &self.s.x[r * dim..(r + 1) * dim],
                norm,
                hp.rms_eps,
                &mut self.s.xb[i * dim..(i + 1) * dim],
            )?;
        }
        let out = matrix(bytes, &g.output)?;
        let vocab = hp.vocab as usize;
        let logits = self
            .s
            .logits
            .get_mut(out_base * vocab..(out_base + n_out) * vocab)
            .ok_or(Error::InvalidArgument {
                what: "logits rows beyond max_outputs",
            })?;
        let mut quantized = None;
        let act = quantize_for(
            &k,
            &out,
            &self.s.xb[..n_out * dim],
            n_out,
            dim,
            self.s.act,
            &mut quantized,
        )?;
        k.matmul(par, &out, &act, logits)
    }
}

/// Quantizes `x` (`rows x cols`) into `buf` in the format `w` needs, unless
/// it is already there in that format.
fn quantize_for<'b>(
    k: &Kernels,
    w: &Matrix<'_>,
    x: &'b [f32],
    rows: usize,
    cols: usize,
    buf: &'b mut [u8],
    done: &mut Option<ActFormat>,
) -> Result<Act<'b>> {
    let fmt = act_format(w.ty)?;
    let bytes = crate::kernels::act_bytes(fmt, rows, cols).ok_or(Error::Overflow {
        what: "activation buffer",
    })?;
    let available = buf.len();
    let q = buf.get_mut(..bytes).ok_or(Error::Budget {
        what: "activation buffer",
        needed: bytes,
        available,
    })?;
    if *done != Some(fmt) {
        k.quantize_act(fmt, x, cols, q)?;
        *done = Some(fmt);
    }
    Ok(Act {
        x,
        q,
        fmt,
        rows,
        cols,
    })
}

/// Causal attention of `n` query rows (positions `pos0..pos0+n`) against
/// the cache, streaming page by page with an online softmax. Work items are
/// (block of [`ATTN_ROWS`] rows, KV head) pairs dealt round-robin to tasks;
/// each task has its own slot of `attn_scratch` and writes only its items'
/// output heads.
#[allow(clippy::too_many_arguments)]
fn attention(
    par: &dyn Parallel,
    k: &Kernels,
    kv: &KvCache<'_>,
    hp: &Hparams,
    layer: usize,
    q: &[f32],
    out: &mut [f32],
    attn_scratch: &mut [f32],
    pos0: usize,
    n: usize,
    page_tokens: usize,
) -> Result<()> {
    let head_dim = hp.head_dim as usize;
    let q_dim = hp.q_dim() as usize;
    let n_kv = hp.n_kv_heads as usize;
    let group = hp.gqa_group() as usize;
    let slot_len = group * attn_slot_per_head(page_tokens as u32);
    let blocks = n.div_ceil(ATTN_ROWS);
    let items = blocks * n_kv;
    let tasks = par
        .threads()
        .min(items)
        .max(1)
        .min(attn_scratch.len() / slot_len.max(1));
    if tasks == 0 {
        return Err(Error::InvalidArgument {
            what: "attention scratch too small",
        });
    }
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    let kv_type = kv.geometry().kv_type;
    let row_bytes = kv.geometry().row_bytes;
    let shared_out = SharedMut::new(out);
    let shared_slots = SharedMut::new(attn_scratch);
    let failed = core::sync::atomic::AtomicBool::new(false);
    let heads = group * head_dim;

    par.run(tasks, &|task| {
        // SAFETY: task `task` is the only one that uses slot `task`.
        let Some(slot) = (unsafe { shared_slots.range(task * slot_len, slot_len) }) else {
            failed.store(true, core::sync::atomic::Ordering::Relaxed);
            return;
        };
        // Items round-robin: later rows attend to more keys, so contiguous
        // ranges would leave the last task the most work.
        for item in (task..items).step_by(tasks) {
            let (block, g) = (item / n_kv, item % n_kv);
            let r0 = block * ATTN_ROWS;
            let rows = (n - r0).min(ATTN_ROWS);
            let mut q_rows: [&[f32]; ATTN_ROWS] = [&[]; ATTN_ROWS];
            let mut dsts: [&mut [f32]; ATTN_ROWS] = Default::default();
            let mut ok = true;
            for (i, (qr, dst)) in q_rows
                .iter_mut()
                .zip(dsts.iter_mut())
                .take(rows)
                .enumerate()
            {
                let at = (r0 + i) * q_dim + g * heads;
                // SAFETY: item (block, g) owns heads g*group..(g+1)*group of
                // the block's rows, and items are split disjointly between
                // tasks.
                match (q.get(at..at + heads), unsafe {
                    shared_out.range(at, heads)
                }) {
                    (Some(qs), Some(d)) => (*qr, *dst) = (qs, d),
                    _ => ok = false,
                }
            }
            let block_rows = AttnRows {
                q: &q_rows[..rows],
                first_keys: pos0 + r0 + 1,
            };
            if !ok
                || attend_rows(
                    k,
                    kv,
                    kv_type,
                    row_bytes,
                    layer,
                    g,
                    &block_rows,
                    &mut dsts[..rows],
                    slot,
                    page_tokens,
                    head_dim,
                    group,
                    scale,
                )
                .is_err()
            {
                failed.store(true, core::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    if failed.load(core::sync::atomic::Ordering::Relaxed) {
        return Err(Error::InvalidArgument {
            what: "attention failed on an internal bound",
        });
    }
    Ok(())
}

/// Query heads attended together by one [`Kernels::attend_group`] call.
const GROUP_CHUNK: usize = 8;

/// Consecutive query rows attended by one work item: each cached page is
/// fetched once for all of them and stays in L1 while they use it.
const ATTN_ROWS: usize = 4;

/// The query rows of one attention work item: row `i` holds the `group`
/// heads' queries and sees the first `first_keys + i` cached tokens.
struct AttnRows<'a> {
    q: &'a [&'a [f32]],
    first_keys: usize,
}

/// Attention of the `group` query heads sharing KV head `kv_head` in each
/// of `rows`, written to `dst` (one slice of `group * head_dim` per row):
/// page by page, and within a page row by row, the heads' scores of the
/// page's keys, then the keys streamed one by one into each head's running
/// softmax state and output, which accumulates in place in `dst`
/// ([`Kernels::attend_group`]: llama.cpp's one-row flash attention, each
/// key and value row read once for up to [`GROUP_CHUNK`] heads). Every
/// row sees the same operations in the same order as when it is alone.
#[allow(clippy::too_many_arguments)]
fn attend_rows(
    k: &Kernels,
    kv: &KvCache<'_>,
    kv_type: crate::kv::KvType,
    row_bytes: usize,
    layer: usize,
    kv_head: usize,
    rows: &AttnRows<'_>,
    dst: &mut [&mut [f32]],
    slot: &mut [f32],
    page_tokens: usize,
    head_dim: usize,
    group: usize,
    scale: f32,
) -> Result<()> {
    let scores = split_attn_slot(slot, group, page_tokens)?;
    let n_rows = rows.q.len().min(dst.len()).min(ATTN_ROWS);
    for d in dst.iter_mut() {
        d.fill(0.0);
    }
    let bad = Error::InvalidArgument {
        what: "attention row shorter than its heads",
    };
    let n_keys_max = rows.first_keys + n_rows.saturating_sub(1);
    let n_pages = n_keys_max.div_ceil(page_tokens);
    let mut h0 = 0;
    while h0 < group {
        let gc = (group - h0).min(GROUP_CHUNK);
        let heads = h0 * head_dim..(h0 + gc) * head_dim;
        let mut states = [[SoftmaxState::new(); GROUP_CHUNK]; ATTN_ROWS];
        for page in 0..n_pages {
            let keys = kv.head_block(page, layer, false, kv_head)?;
            let values = kv.head_block(page, layer, true, kv_head)?;
            // Pages are slab blocks anywhere in the pool: no hardware
            // prefetcher guesses the next one.
            if page + 1 < n_pages {
                k.prefetch(kv.head_block(page + 1, layer, false, kv_head)?);
                k.prefetch(kv.head_block(page + 1, layer, true, kv_head)?);
            }
            for (i, (q_row, d)) in rows.q.iter().zip(dst.iter_mut()).take(n_rows).enumerate() {
                let n_keys = rows.first_keys + i;
                let Some(n_t) = n_keys
                    .checked_sub(page * page_tokens)
                    .map(|left| left.min(page_tokens))
                    .filter(|&t| t > 0)
                else {
                    continue;
                };
                k.attend_group(
                    kv_type,
                    q_row.get(heads.clone()).ok_or(bad)?,
                    keys,
                    values,
                    row_bytes,
                    scale,
                    scores.get_mut(..gc * n_t).ok_or(bad)?,
                    &mut states[i][..gc],
                    d.get_mut(heads.clone()).ok_or(bad)?,
                )?;
            }
        }
        for (d, st) in dst.iter_mut().zip(&states).take(n_rows) {
            let out = d.get_mut(heads.clone()).ok_or(bad)?;
            for (state, acc) in st.iter().zip(out.chunks_exact_mut(head_dim)) {
                state.normalize_in_place(acc);
            }
        }
        h0 += gc;
    }
    Ok(())
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
