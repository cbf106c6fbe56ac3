//! Bounded mutation fuzzer for the kernel-log parser and `analyze` (a
//! stand-in for `cargo fuzz`, which needs a nightly toolchain).
//!
//! ```text
//! cargo run --release -p oomlab --example fuzz_parser -- --seconds 30 [--seed N]
//! ```
//!
//! Seeds: every file in `tests/fixtures/logs/` plus built-in lines. Each
//! iteration mutates a seed (bit flips, byte insertions, splices of OOM
//! fragments, truncation, line joins) and runs `split_prefix`,
//! `parse_message`, a stateful `Parser` and `analyze_bytes` on it. A panic is
//! caught, the input saved to `fuzz-crash-<n>.bin` in the temp dir, and the
//! run exits 1.

use std::panic;
use std::time::{Duration, Instant};

use oomlab::analyze::{analyze_bytes, AnalyzeOptions};
use oomlab::events::kernel::{self, Parser};

mod fuzz_support;
use fuzz_support::{corpus, mutate_bytes, num_arg, Rng};

const FRAGMENTS: &[&str] = &[
    "Killed process ", "Kill process ", ", UID ", " (", ")", ") total-vm:", "kB, ", "anon-rss:",
    "UID:", " pgtables:", " oom_score_adj:", "-1000", "4294967296", "99999999999999999999",
    "[ pid ]   uid  tgid total_vm      rss cpu oom_adj oom_score_adj name", "[  pid  ]", "[", "]",
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a/b,task=",
    ",pid=", ",uid=", "invoked oom-killer: gfp_mask=", "order=", "oom_reaper: reaped process ",
    "Tasks in ", " are going to be killed due to memory.oom.group set", "Task in ",
    " killed as a result of limit of ", "memory: usage ", "Kernel panic - not syncing: ",
    "OOM victim ", " is already exiting", "#012", "\r", "\n", "\u{fffd}", "é", "<6>",
    "Jan 18 09:50:59 host kernel: ", "[  123.456789] ", "[Thu Dec  7 00:05:15 2017] ",
    "2017-12-07T00:05:15+0100 ", "{\"MESSAGE\":\"", "\"}", "{\"MESSAGE\":[",
    "Would have killed process ", "OOM killed process ", " sharing same memory",
    "Memory limit reached of cgroup ", "---[ end Kernel panic - not syncing: ",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    // work on a window so that inputs stay small and fast
    if v.len() > 4096 {
        let start = rng.below(v.len() - 4096);
        v = v[start..start + 4096].to_vec();
    }
    for _ in 0..=rng.below(8) {
        match rng.below(7) {
            // cut out up to 64 bytes
            6 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + rng.below(64)).min(v.len());
                v.drain(a..b);
            }
            op => mutate_bytes(rng, &mut v, op, seeds, FRAGMENTS),
        }
    }
    v
}

fn run_one(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut p = Parser::new();
    for line in text.split('\n') {
        let l = kernel::split_prefix(line);
        let _ = kernel::parse_message(l.msg);
        let _ = p.parse(l.msg);
    }
    let a = analyze_bytes(input, &AnalyzeOptions::default());
    let _ = oomlab::analyze::render_human(&a);
}

fn main() {
    let seconds = num_arg("--seconds").unwrap_or(30);
    let seed = num_arg("--seed").unwrap_or(0x5eed_0f00_11a5);
    let seeds = corpus(FRAGMENTS, "../tests/fixtures/logs", &["snap", "md"]);
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    panic::set_hook(Box::new(|_| {}));
    let mut iters: u64 = 0;
    let mut bytes: u64 = 0;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let input = mutate(&mut rng, &seeds);
            bytes += input.len() as u64;
            iters += 1;
            if panic::catch_unwind(|| run_one(&input)).is_err() {
                let _ = panic::take_hook();
                let path = std::env::temp_dir().join(format!("fuzz-crash-{iters}.bin"));
                let _ = std::fs::write(&path, &input);
                eprintln!(
                    "PANIC on iteration {iters}; input saved to {}",
                    path.display()
                );
                run_one(&input); // re-run with the default hook for the message
                std::process::exit(1);
            }
        }
    }
    println!(
        "fuzz_parser: {iters} inputs ({:.1} MiB) in {seconds} s, {} seeds, seed {seed:#x}: no panic",
        bytes as f64 / 1048576.0,
        seeds.len()
    );
}
