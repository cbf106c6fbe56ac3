//! A fast hash for maps keyed by numbers (pids, record indices): the
//! Firefox/rustc "Fx" multiply-rotate hash. Keys from the log's text
//! (names) keep std's keyed hash.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub(super) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            if let Some(d) = w.get_mut(..chunk.len()) {
                d.copy_from_slice(chunk);
            }
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A map keyed by numbers.
pub(super) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// A set of numbers.
pub(super) type IntSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;
