//! What the two mutation fuzzers (`fuzz_parser`, `fuzz_scenario`) share:
//! a small seeded generator, their flags, their seed corpus and the byte
//! mutations that do not depend on the input's format.

use std::path::Path;

/// xorshift64*: reproducible from `--seed`, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The number after `--name` on the command line, if any.
pub fn num_arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
}

/// `fragments`, then every file of `dir` (relative to the harness crate)
/// whose extension is not in `skip`.
pub fn corpus(fragments: &[&str], dir: &str, skip: &[&str]) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = fragments.iter().map(|f| f.as_bytes().to_vec()).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| skip.iter().any(|s| x == *s)) {
                continue;
            }
            if let Ok(b) = std::fs::read(&p) {
                seeds.push(b);
            }
        }
    }
    seeds
}

/// The format-blind mutations, `op` 0 to 5: flip a bit, insert a byte,
/// insert a fragment, truncate, splice a piece of another seed, join two
/// lines. Other values of `op` do nothing (the caller's own mutations).
pub fn mutate_bytes(
    rng: &mut Rng,
    v: &mut Vec<u8>,
    op: usize,
    seeds: &[Vec<u8>],
    fragments: &[&str],
) {
    match op {
        0 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(v.len() + 1);
            v.insert(i, rng.next() as u8);
        }
        2 => {
            let f = fragments[rng.below(fragments.len())].as_bytes();
            let i = rng.below(v.len() + 1);
            v.splice(i..i, f.iter().copied());
        }
        3 if !v.is_empty() => {
            let i = rng.below(v.len());
            v.truncate(i);
        }
        4 => {
            let other = &seeds[rng.below(seeds.len())];
            if !other.is_empty() {
                let a = rng.below(other.len());
                let b = (a + rng.below(200)).min(other.len());
                let i = rng.below(v.len() + 1);
                v.splice(i..i, other[a..b].iter().copied());
            }
        }
        5 => {
            if let Some(p) = v.iter().position(|c| *c == b'\n') {
                v.remove(p);
            }
        }
        _ => {}
    }
}
