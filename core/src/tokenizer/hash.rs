//! Open-addressing hash tables laid out in arena `u32` slots.
//!
//! A slot holds `0` (empty) or `(tag << id_bits) | (id + 1)`, where `tag` is
//! taken from high hash bits so most mismatches are rejected without looking
//! at the key. The capacity is a power of two at least 1.5 times the number
//! of keys (load factor at most 2/3), probed linearly; keys are never removed.

/// A byte-stream hasher: bytes are packed into little-endian 64-bit words,
/// each folded in with a multiply (FxHash's step), then the tail and the
/// length, then an avalanche. Feeding bytes one by one or as slices gives
/// the same hash.
#[derive(Clone, Copy)]
pub(crate) struct Hasher {
    state: u64,
    word: u64,
    n_in_word: u32,
    len: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher {
    pub(crate) fn new() -> Self {
        Hasher {
            state: 0,
            word: 0,
            n_in_word: 0,
            len: 0,
        }
    }

    #[inline]
    fn fold(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }

    #[inline]
    pub(crate) fn byte(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * self.n_in_word);
        self.n_in_word += 1;
        self.len = self.len.wrapping_add(1);
        if self.n_in_word == 8 {
            let w = self.word;
            self.fold(w);
            self.word = 0;
            self.n_in_word = 0;
        }
    }

    #[inline]
    pub(crate) fn bytes(&mut self, mut s: &[u8]) {
        if self.n_in_word == 0 {
            while let Some((chunk, rest)) = s.split_first_chunk::<8>() {
                self.fold(u64::from_le_bytes(*chunk));
                self.len = self.len.wrapping_add(8);
                s = rest;
            }
        }
        for &b in s {
            self.byte(b);
        }
    }

    #[inline]
    pub(crate) fn finish(self) -> u64 {
        let mut h = self;
        if h.n_in_word > 0 {
            let w = h.word;
            h.fold(w);
        }
        mix(h.state ^ h.len.rotate_left(32))
    }
}

/// A 64-bit finaliser (from SplitMix64).
#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of a byte string.
#[inline]
pub(crate) fn hash_bytes(s: &[u8]) -> u64 {
    let mut h = Hasher::new();
    h.bytes(s);
    h.finish()
}

/// Slots for `keys` keys: a power of two >= 1.5 x keys, at least 16.
pub(crate) fn capacity_for(keys: usize) -> Option<usize> {
    let want = keys.checked_add(keys / 2)?.checked_add(1)?.max(16);
    want.checked_next_power_of_two()
}

/// Geometry of a table: how slot words split into tag and id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    id_bits: u32,
    mask: usize,
}

impl Geometry {
    /// A table of `slots` slots (a power of two) for ids below `max_ids`.
    pub(crate) fn new(slots: usize, max_ids: u32) -> Geometry {
        // At least one id bit, so tags never take the whole word.
        Geometry {
            id_bits: 32 - max_ids.max(1).leading_zeros(),
            mask: slots.saturating_sub(1),
        }
    }

    #[inline]
    fn tag(&self, hash: u64) -> u32 {
        if self.id_bits >= 32 {
            0
        } else {
            ((hash >> 40) as u32) & ((1u32 << (32 - self.id_bits)) - 1)
        }
    }

    #[inline]
    fn id_mask(&self) -> u32 {
        if self.id_bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.id_bits) - 1
        }
    }

    /// Every id in `slots`, in slot order.
    pub(crate) fn ids<'s>(&self, slots: &'s [u32]) -> impl Iterator<Item = u32> + 's {
        let mask = self.id_mask();
        slots
            .iter()
            .filter(|&&s| s != 0)
            .map(move |&s| (s & mask).wrapping_sub(1))
    }

    /// The id whose key `eq` accepts, probing from `hash`.
    #[inline]
    pub(crate) fn find(
        &self,
        slots: &[u32],
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let tag = self.tag(hash);
        let mut i = (hash as usize) & self.mask;
        for _ in 0..slots.len() {
            let slot = *slots.get(i)?;
            if slot == 0 {
                return None;
            }
            let id = (slot & self.id_mask()).wrapping_sub(1);
            if ((slot >> self.id_bits.min(31)) == tag || self.id_bits >= 32) && eq(id) {
                return Some(id);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Inserts `id` unless `eq` accepts an id already there; returns the id
    /// that holds the key afterwards. `None` if the table is full.
    pub(crate) fn insert(
        &self,
        slots: &mut [u32],
        hash: u64,
        id: u32,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let tag = self.tag(hash);
        let mut i = (hash as usize) & self.mask;
        for _ in 0..slots.len() {
            let slot = slots.get_mut(i)?;
            if *slot == 0 {
                let tag_part = if self.id_bits >= 32 {
                    0
                } else {
                    tag << self.id_bits
                };
                *slot = tag_part | (id.wrapping_add(1) & self.id_mask());
                return Some(id);
            }
            let other = (*slot & self.id_mask()).wrapping_sub(1);
            if ((*slot >> self.id_bits.min(31)) == tag || self.id_bits >= 32) && eq(other) {
                return Some(other);
            }
            i = (i + 1) & self.mask;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_for_no_keys_and_for_huge_ids_does_not_overflow() {
        for max_ids in [0, 1, 2, u32::MAX / 2, u32::MAX] {
            let g = Geometry::new(16, max_ids);
            let mut slots = [0u32; 16];
            assert_eq!(g.find(&slots, 12345, |_| true), None);
            assert_eq!(g.insert(&mut slots, 12345, 0, |_| false), Some(0));
            assert_eq!(g.find(&slots, 12345, |id| id == 0), Some(0));
        }
    }

    #[test]
    fn streaming_and_slice_hashes_agree() {
        let data: std::vec::Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..data.len() {
            let mut a = Hasher::new();
            data[..n].iter().for_each(|&b| a.byte(b));
            assert_eq!(a.finish(), hash_bytes(&data[..n]), "{n}");
        }
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
    }

    #[test]
    fn insert_find_and_duplicates() {
        let keys: [&[u8]; 5] = [b"a", b"b", b"ab", b"", b"hello"];
        let slots_n = capacity_for(keys.len()).unwrap();
        assert_eq!(slots_n, 16);
        let mut slots = [0u32; 16];
        let g = Geometry::new(slots_n, keys.len() as u32);
        for (id, k) in keys.iter().enumerate() {
            let got = g.insert(&mut slots, hash_bytes(k), id as u32, |o| {
                keys[o as usize] == *k
            });
            assert_eq!(got, Some(id as u32));
        }
        // A duplicate key reports the first id.
        assert_eq!(
            g.insert(&mut slots, hash_bytes(b"ab"), 9, |o| keys[o as usize]
                == b"ab"),
            Some(2)
        );
        for (id, k) in keys.iter().enumerate() {
            assert_eq!(
                g.find(&slots, hash_bytes(k), |o| keys[o as usize] == *k),
                Some(id as u32)
            );
        }
        assert_eq!(
            g.find(&slots, hash_bytes(b"zz"), |o| keys[o as usize] == b"zz"),
            None
        );
    }
}
