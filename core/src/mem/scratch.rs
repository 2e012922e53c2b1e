//! The forward pass's scratch buffers: what each holds, how many elements
//! it takes (from an architecture's [`ScratchShape`] and the run's
//! [`ScratchParams`]), and the named parts the forward pass splits the
//! `work` buffer into. The engine's plan and the what-if model
//! ([`super::arch`]) both size scratch here, so the two cannot disagree.
//!
//! # Buffers (in carve order; `b` = `max_batch`)
//!
//! | buffer | elements |
//! |---|---|
//! | `x` residual stream | `b x dim` f32 |
//! | `xb` normalized input / projection output | `b x dim` f32 |
//! | `work` | `b x max(attention phase row, feed-forward phase row)` f32 |
//! | `act` quantized activations | the widest matmul input, in its weight type's activation format (bytes) |
//! | `attn` per-task attention scores | `threads x heads_per_kv_head x attn_slot_per_head(page_tokens)` f32 |
//! | `rope` cosines and sines | `b x rope_dim` f32 |
//! | `logits` | `max_outputs x vocab` f32 |
//! | `candidates` sampler | `vocab` ([`Candidate`]: u32 id + f32 value) |
//!
//! The two phases of `work` never live at once, so they share its bytes:
//! each is a list of named parts of `b x width` values, back to back
//! ([`WorkPhase`]). Grouped-query attention: `q`, `k`, `v`, `att` (query,
//! key, value and attention-output rows). Feed-forward: `gate`, `up`
//! (and `router` logits for a mixture of experts).

use super::carve::{Carved, Carver, Counted, ItemGroup, Yield};
use crate::error::{Error, Result};
use crate::kernels::{act_bytes, ActFormat};
use crate::sample::Candidate;

/// Run parameters that size the scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchParams {
    /// Most tokens evaluated in one micro-batch.
    pub max_batch: u32,
    /// Most rows of logits one evaluation returns.
    pub max_outputs: u32,
    /// Worker threads (each has its own attention state).
    pub threads: u32,
    /// Tokens per KV page (attention scores one page at a time).
    pub page_tokens: u32,
}

/// Most named parts in one phase of `work`.
pub const MAX_WORK_PARTS: usize = 6;

/// One phase of the `work` buffer: named parts, each `rows x width` f32,
/// back to back. Defined once per architecture; the planner sizes `work`
/// from it and the forward pass splits `work` with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkPhase {
    parts: [(&'static str, usize); MAX_WORK_PARTS],
    len: usize,
}

impl WorkPhase {
    /// A phase of the given `(name, width)` parts (at most [`MAX_WORK_PARTS`];
    /// parts of width 0 are left out).
    pub fn new(parts: &[(&'static str, usize)]) -> Result<WorkPhase> {
        let mut out = WorkPhase {
            parts: [("", 0); MAX_WORK_PARTS],
            len: 0,
        };
        for &(name, width) in parts.iter().filter(|p| p.1 > 0) {
            let slot = out.parts.get_mut(out.len).ok_or(Error::InvalidArgument {
                what: "internal: more work parts than MAX_WORK_PARTS",
            })?;
            *slot = (name, width);
            out.len += 1;
        }
        Ok(out)
    }

    /// The `(name, width)` parts, in order.
    pub fn parts(&self) -> &[(&'static str, usize)] {
        self.parts.get(..self.len).unwrap_or(&[])
    }

    /// Values per row of the whole phase (the sum of the widths).
    pub fn row(&self) -> Result<usize> {
        self.parts()
            .iter()
            .try_fold(0usize, |acc, p| acc.checked_add(p.1))
            .ok_or(Error::Overflow {
                what: "work buffer row",
            })
    }

    /// Splits `work` into this phase's `N` parts of `rows x width` values
    /// (the forward pass's named sub-slices).
    pub fn split<'w, const N: usize>(
        &self,
        work: &'w mut [f32],
        rows: usize,
    ) -> Result<[&'w mut [f32]; N]> {
        let bad = Error::InvalidArgument {
            what: "work buffer split: parts or size differ from the plan",
        };
        if self.len != N {
            return Err(bad);
        }
        let mut out: [&'w mut [f32]; N] = core::array::from_fn(|_| <&mut [f32]>::default());
        let mut rest = work;
        for (slot, &(_, width)) in out.iter_mut().zip(self.parts()) {
            let n = rows.checked_mul(width).ok_or(bad)?;
            let (head, tail) = core::mem::take(&mut rest)
                .split_at_mut_checked(n)
                .ok_or(bad)?;
            *slot = head;
            rest = tail;
        }
        Ok(out)
    }
}

/// The widths an architecture (or one tensor-parallel shard of it) sizes
/// the scratch with; see [`super::arch::ArchSpec::scratch_shape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchShape {
    /// Residual stream width.
    pub dim: usize,
    /// The attention phase of `work`.
    pub attn: WorkPhase,
    /// The feed-forward phase of `work`.
    pub ffn: WorkPhase,
    /// Query heads that share one cached key/value head (their attention
    /// runs in one task, each with its own state).
    pub heads_per_kv_head: usize,
    /// RoPE cosines and sines per row.
    pub rope_dim: usize,
    /// Logits per output row.
    pub vocab: usize,
}

/// f32 values of attention scratch per query head: the scores of one page.
/// (Each head's running output accumulates in its attention-output row of
/// `work`, its running max and sum on the attending task's stack.)
pub fn attn_slot_per_head(page_tokens: u32) -> usize {
    page_tokens as usize
}

/// The scores of one page for `heads` query heads (`page_tokens` per
/// head) at the start of one task's attention slot: the layout
/// [`attn_slot_per_head`] counts. A slot too small is an error.
pub fn split_attn_slot(slot: &mut [f32], heads: usize, page_tokens: usize) -> Result<&mut [f32]> {
    let bad = Error::InvalidArgument {
        what: "attention slot smaller than the plan's",
    };
    let n_scores = heads.checked_mul(page_tokens).ok_or(bad)?;
    slot.get_mut(..n_scores).ok_or(bad)
}

/// Scratch buffers, in bytes (each rounded to 64), in carve order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScratchPlan {
    /// Residual stream, `max_batch x dim` f32.
    pub x: usize,
    /// Normalized input / projection output, `max_batch x dim` f32.
    pub xb: usize,
    /// Phase buffer: attention (`q, k, v, att`: `max_batch x (2 q_dim + 2 kv_dim)`)
    /// and feed-forward (`gate, up`: `max_batch x 2 ffn_dim`) share it, f32.
    pub work: usize,
    /// Quantized activations for the widest matmul input, in the kernels' format.
    pub act: usize,
    /// Per-task attention state: `threads x gqa_group x (page_tokens + head_dim)` f32
    /// (scores of a page and the running output, per query head).
    pub attn: usize,
    /// RoPE cosines and sines of each row's position: `max_batch x rope_dim` f32.
    pub rope: usize,
    /// Logits, `max_outputs x vocab` f32.
    pub logits: usize,
    /// Sampler candidates, `vocab x (u32 id + f32 value)`.
    pub candidates: usize,
}

impl ScratchPlan {
    /// Sum of all scratch buffers (saturating: the fields are public, and
    /// on a 32-bit target real sizes can overflow the sum; a saturated
    /// total is refused by any budget).
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

    /// The bytes of a counted scratch walk.
    pub(crate) fn of(s: &Scratch<'_, Counted>) -> ScratchPlan {
        ScratchPlan {
            x: s.x.bytes,
            xb: s.xb.bytes,
            work: s.work.bytes,
            act: s.act.bytes,
            attn: s.attn.bytes,
            rope: s.rope.bytes,
            logits: s.logits.bytes,
            candidates: s.candidates.bytes,
        }
    }
}

/// Element counts of the scratch buffers (what a walk carves).
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

fn mul(a: usize, b: usize, what: &'static str) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Overflow { what })
}

impl ScratchShape {
    /// The element counts for these run parameters, with `act_bytes` of
    /// quantized activations (from [`widest_act_bytes`]).
    pub fn elems(&self, p: &ScratchParams, act_bytes: usize) -> Result<ScratchElems> {
        let b = p.max_batch as usize;
        let x = mul(b, self.dim, SCRATCH_X)?;
        let phase_row = self.attn.row()?.max(self.ffn.row()?);
        let per_task = mul(
            self.heads_per_kv_head,
            attn_slot_per_head(p.page_tokens),
            SCRATCH_ATTN,
        )?;
        Ok(ScratchElems {
            x,
            xb: x,
            work: mul(b, phase_row, SCRATCH_WORK)?,
            act_bytes,
            attn: mul(p.threads as usize, per_task, SCRATCH_ATTN)?,
            rope: mul(b, self.rope_dim, SCRATCH_ROPE)?,
            logits: mul(p.max_outputs as usize, self.vocab, SCRATCH_LOGITS)?,
            candidates: self.vocab,
        })
    }
}

/// The widest quantized activation buffer `rows` rows need, over matmul
/// inputs given as `(activation format, input width)`: the one rule for
/// the `act` buffer.
pub fn widest_act_bytes(
    rows: usize,
    inputs: impl IntoIterator<Item = (ActFormat, usize)>,
) -> Result<usize> {
    let mut widest = 0usize;
    for (fmt, cols) in inputs {
        let bytes = act_bytes(fmt, rows, cols).ok_or(Error::InvalidArgument {
            what: "a quantized matmul input is not whole 32-value blocks (or its size overflows)",
        })?;
        widest = widest.max(bytes);
    }
    Ok(widest)
}

/// Arena item name of the residual stream.
pub const SCRATCH_X: &str = "scratch: x";
/// Arena item name of `xb`.
pub const SCRATCH_XB: &str = "scratch: xb";
/// Arena item name of the phase buffer.
pub const SCRATCH_WORK: &str = "scratch: work";
/// Arena item name of the quantized activations.
pub const SCRATCH_ACT: &str = "scratch: act";
/// Arena item name of the per-task attention state.
pub const SCRATCH_ATTN: &str = "scratch: attn";
/// Arena item name of the RoPE table.
pub const SCRATCH_ROPE: &str = "scratch: rope";
/// Arena item name of the logits.
pub const SCRATCH_LOGITS: &str = "scratch: logits";
/// Arena item name of the sampler candidates.
pub const SCRATCH_CANDIDATES: &str = "scratch: candidates";

/// The scratch buffers: real slices when carved (the engine's), spans
/// when counted (the plan's).
pub(crate) struct Scratch<'a, Y: Yield<'a> = Carved> {
    pub(crate) x: Y::Slice<f32>,
    pub(crate) xb: Y::Slice<f32>,
    pub(crate) work: Y::Slice<f32>,
    pub(crate) act: Y::Slice<u8>,
    pub(crate) attn: Y::Slice<f32>,
    pub(crate) rope: Y::Slice<f32>,
    pub(crate) logits: Y::Slice<f32>,
    pub(crate) candidates: Y::Slice<Candidate>,
}

impl<'a, Y: Yield<'a>> Scratch<'a, Y> {
    /// The scratch items, in order: the one list.
    pub(crate) fn carve<C: Carver<'a, Out = Y>>(c: &mut C, e: &ScratchElems) -> Result<Self> {
        const G: ItemGroup = ItemGroup::Scratch;
        Ok(Scratch {
            x: c.slice(G, SCRATCH_X, e.x)?,
            xb: c.slice(G, SCRATCH_XB, e.xb)?,
            work: c.slice(G, SCRATCH_WORK, e.work)?,
            act: c.slice(G, SCRATCH_ACT, e.act_bytes)?,
            attn: c.slice(G, SCRATCH_ATTN, e.attn)?,
            rope: c.slice(G, SCRATCH_ROPE, e.rope)?,
            logits: c.slice(G, SCRATCH_LOGITS, e.logits)?,
            candidates: c.slice(G, SCRATCH_CANDIDATES, e.candidates)?,
        })
    }
}

/// The bytes of the scratch for `elems`, counted by the one walk.
pub fn scratch_plan(elems: &ScratchElems) -> Result<ScratchPlan> {
    let mut counter = super::carve::Counter::new();
    let spans = Scratch::carve(&mut counter, elems)?;
    Ok(ScratchPlan::of(&spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_phases_split_into_their_named_parts() {
        let phase =
            WorkPhase::new(&[("q", 4), ("k", 2), ("v", 2), ("none", 0), ("att", 4)]).unwrap();
        assert_eq!(phase.parts().len(), 4);
        assert_eq!(phase.row().unwrap(), 12);
        let mut work = [0f32; 40];
        let [q, k, v, att] = phase.split::<4>(&mut work, 3).unwrap();
        assert_eq!((q.len(), k.len(), v.len(), att.len()), (12, 6, 6, 12));
        q[0] = 1.0;
        att[11] = 2.0;
        assert_eq!((work[0], work[35]), (1.0, 2.0));
        // A buffer too small or a different part count is refused.
        let mut small = [0f32; 35];
        assert!(phase.split::<4>(&mut small, 3).is_err());
        assert!(phase.split::<3>(&mut work, 3).is_err());
        assert!(WorkPhase::new(&[("a", 1); MAX_WORK_PARTS + 1]).is_err());
    }

    #[test]
    fn an_attention_slot_holds_one_page_of_scores_per_head() {
        // 3 heads, pages of 4: 12 scores.
        assert_eq!(attn_slot_per_head(4), 4);
        let mut slot = [0f32; 13];
        let scores = split_attn_slot(&mut slot, 3, 4).unwrap();
        assert_eq!(scores.len(), 12);
        scores[11] = 1.0;
        assert_eq!((slot[11], slot[12]), (1.0, 0.0));
        // One value short, or sizes that overflow, are refused.
        assert!(split_attn_slot(&mut slot[..11], 3, 4).is_err());
        assert!(split_attn_slot(&mut slot, usize::MAX, 4).is_err());
    }

    #[test]
    fn scratch_elements_follow_the_shape() {
        // dim 64, attention parts 64 + 32 + 32 + 64 = 192 a row, ffn 2 x 96 =
        // 192 a row, 2 query heads per KV head of 16, rope 16, vocab 300.
        let shape = ScratchShape {
            dim: 64,
            attn: WorkPhase::new(&[("q", 64), ("k", 32), ("v", 32), ("att", 64)]).unwrap(),
            ffn: WorkPhase::new(&[("gate", 96), ("up", 96)]).unwrap(),
            heads_per_kv_head: 2,
            rope_dim: 16,
            vocab: 300,
        };
        let p = ScratchParams {
            max_batch: 8,
            max_outputs: 2,
            threads: 2,
            page_tokens: 16,
        };
        let e = shape.elems(&p, 100).unwrap();
        // x: 8 x 64 = 512; work 8 x 192 = 1,536; attn 2 x 2 x 16 = 64;
        // rope 8 x 16 = 128; logits 2 x 300 = 600; candidates 300.
        assert_eq!(
            (
                e.x,
                e.xb,
                e.work,
                e.act_bytes,
                e.attn,
                e.rope,
                e.logits,
                e.candidates
            ),
            (512, 512, 1536, 100, 64, 128, 600, 300)
        );
        let s = scratch_plan(&e).unwrap();
        // Bytes: 2,048, 2,048, 6,144, 100 -> 128, 256, 512, 2,400 -> 2,432, 2,400 -> 2,432.
        assert_eq!(
            (
                s.x,
                s.xb,
                s.work,
                s.act,
                s.attn,
                s.rope,
                s.logits,
                s.candidates
            ),
            (2048, 2048, 6144, 128, 256, 512, 2432, 2432)
        );
    }

    #[test]
    fn the_widest_activation_decides_the_act_buffer() {
        // One Q8 activation block per 32 values (its size is the kernels' business).
        let block = act_bytes(ActFormat::Q8, 1, 32).unwrap();
        // 4 rows of 96 values = 4 x 3 blocks; the f32 input needs no buffer.
        assert_eq!(
            widest_act_bytes(
                4,
                [
                    (ActFormat::Q8, 64),
                    (ActFormat::Q8, 96),
                    (ActFormat::F32, 1024)
                ]
            )
            .unwrap(),
            12 * block
        );
        assert_eq!(widest_act_bytes(4, [(ActFormat::F32, 64)]).unwrap(), 0);
        assert!(widest_act_bytes(4, [(ActFormat::Q8, 48)]).is_err());
    }
}
