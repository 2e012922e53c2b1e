//! An indexed binary min-heap over symbol positions, shared by the BPE and
//! SentencePiece merge loops.
//!
//! Each symbol has at most one live candidate merge (with its right
//! neighbour), so the heap is keyed by the left symbol: `key(i) =
//! (prio[i] << 32) | i`. Smaller `prio` is better; equal priorities pop the
//! leftmost pair first, which is llama.cpp's tie-break for both tokenizers.
//! Updating or removing a symbol's candidate is O(log n), so long words never
//! cause rescans. All storage is caller scratch; indices are checked.

/// Marks "not in the heap" in `pos`.
pub(crate) const ABSENT: u32 = u32::MAX;

pub(crate) struct Heap<'s> {
    /// Heap array of symbol indices.
    heap: &'s mut [u32],
    /// Position of each symbol in `heap`, or [`ABSENT`].
    pos: &'s mut [u32],
    /// Priority of each symbol's candidate merge.
    prio: &'s mut [u32],
    len: usize,
}

impl<'s> Heap<'s> {
    /// An empty heap for `n` symbols (the slices must hold at least `n`).
    pub(crate) fn new(
        heap: &'s mut [u32],
        pos: &'s mut [u32],
        prio: &'s mut [u32],
        n: usize,
    ) -> Heap<'s> {
        let n = n.min(heap.len()).min(pos.len()).min(prio.len());
        for p in pos.iter_mut().take(n) {
            *p = ABSENT;
        }
        Heap {
            heap,
            pos,
            prio,
            len: 0,
        }
    }

    #[inline]
    fn key(&self, sym: u32) -> u64 {
        let prio = self.prio.get(sym as usize).copied().unwrap_or(u32::MAX);
        (u64::from(prio) << 32) | u64::from(sym)
    }

    #[inline]
    fn key_at(&self, slot: usize) -> u64 {
        self.heap.get(slot).map_or(u64::MAX, |&s| self.key(s))
    }

    #[inline]
    fn place(&mut self, slot: usize, sym: u32) {
        if let Some(h) = self.heap.get_mut(slot) {
            *h = sym;
        }
        if let Some(p) = self.pos.get_mut(sym as usize) {
            *p = slot as u32;
        }
    }

    fn sift_up(&mut self, mut slot: usize) {
        let Some(&sym) = self.heap.get(slot) else {
            return;
        };
        let key = self.key(sym);
        while slot > 0 {
            let parent = (slot - 1) / 2;
            let Some(&psym) = self.heap.get(parent) else {
                break;
            };
            if self.key(psym) <= key {
                break;
            }
            self.place(slot, psym);
            slot = parent;
        }
        self.place(slot, sym);
    }

    fn sift_down(&mut self, mut slot: usize) {
        let Some(&sym) = self.heap.get(slot) else {
            return;
        };
        let key = self.key(sym);
        loop {
            let left = 2 * slot + 1;
            if left >= self.len {
                break;
            }
            let right = left + 1;
            let child = if right < self.len && self.key_at(right) < self.key_at(left) {
                right
            } else {
                left
            };
            if self.key_at(child) >= key {
                break;
            }
            let csym = self.heap.get(child).copied().unwrap_or(0);
            self.place(slot, csym);
            slot = child;
        }
        self.place(slot, sym);
    }

    /// Sets symbol `sym`'s candidate priority, inserting or moving it.
    pub(crate) fn set(&mut self, sym: u32, prio: u32) {
        let Some(slot_prio) = self.prio.get_mut(sym as usize) else {
            return;
        };
        *slot_prio = prio;
        match self.pos.get(sym as usize).copied() {
            Some(ABSENT) => {
                if self.len >= self.heap.len() {
                    return;
                }
                let slot = self.len;
                self.len += 1;
                self.place(slot, sym);
                self.sift_up(slot);
            }
            Some(slot) => {
                let slot = slot as usize;
                self.sift_up(slot);
                if let Some(&s) = self.pos.get(sym as usize) {
                    self.sift_down(s as usize);
                }
            }
            None => {}
        }
    }

    /// Removes symbol `sym`'s candidate, if any.
    pub(crate) fn remove(&mut self, sym: u32) {
        let Some(&slot) = self.pos.get(sym as usize) else {
            return;
        };
        if slot == ABSENT {
            return;
        }
        let slot = slot as usize;
        if let Some(p) = self.pos.get_mut(sym as usize) {
            *p = ABSENT;
        }
        self.len -= 1;
        if slot == self.len {
            return;
        }
        let last = self.heap.get(self.len).copied().unwrap_or(0);
        self.place(slot, last);
        self.sift_up(slot);
        if let Some(&s) = self.pos.get(last as usize) {
            self.sift_down(s as usize);
        }
    }

    /// The symbol with the best candidate, without removing it.
    pub(crate) fn peek(&self) -> Option<u32> {
        if self.len == 0 {
            None
        } else {
            self.heap.first().copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_priority_then_leftmost_with_updates_and_removals() {
        let mut heap = [0u32; 8];
        let mut pos = [0u32; 8];
        let mut prio = [0u32; 8];
        let mut h = Heap::new(&mut heap, &mut pos, &mut prio, 8);
        for (sym, p) in [(0, 5), (1, 3), (2, 3), (3, 9), (4, 1), (5, 7)] {
            h.set(sym, p);
        }
        h.set(4, 8); // worsen
        h.set(3, 0); // improve
        h.remove(5);
        let mut order = std::vec::Vec::new();
        while let Some(s) = h.peek() {
            order.push(s);
            h.remove(s);
        }
        assert_eq!(order, [3, 1, 2, 0, 4]);
    }
}
