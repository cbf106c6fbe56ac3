//! Bounded mutation fuzzer for scenario files (the companion of
//! `fuzz_parser`, which covers kernel logs).
//!
//! ```text
//! cargo run --release -p oomlab --example fuzz_scenario -- --seconds 30 [--seed N]
//! ```
//!
//! Seeds: the shipped `scenarios/*.yaml` plus hostile built-ins (deep
//! nesting, anchors and aliases, tags, control characters, huge lists).
//! Each iteration mutates a seed (bit flips, insertions of YAML fragments,
//! splices, truncation, a chunk repeated up to past the size cap, wrapping
//! in brackets) and parses it as a scenario from bytes, as `load` does.
//! It must never panic, no error may carry a raw control character, an
//! accepted scenario must be within the bounds, and no input may take more
//! than `--max-ms` (default 10 000: a bound on quadratic blow-ups, generous
//! for debug builds on a busy machine). A failing input is saved to
//! `fuzz-scenario-<n>.yaml` in the temp dir and the run exits 1.

use std::panic;
use std::path::Path;
use std::time::{Duration, Instant};

use oomlab::scenario::{bounds, Scenario};

mod fuzz_support;
use fuzz_support::{corpus, mutate_bytes, num_arg, Rng};

const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "- ",
    "? ",
    "&a ",
    "*a",
    "&b [*a, *a, *a, *a]",
    "<<: *a",
    "!tag ",
    "!!str ",
    "!!binary ",
    "|\n  ",
    ">-\n  ",
    "'",
    "\"",
    "\"\\e[31m\"",
    "\"\\u202e\"",
    "\"\\0\"",
    "\u{1b}[2J",
    "\u{202e}",
    "\u{0}",
    "\u{7f}",
    "\u{9b}",
    "\t",
    "\r\n",
    "\n",
    "#",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "name: ",
    "description: ",
    "vm:\n  ",
    "cmdline: ",
    "kernel: ",
    "memory_mib: ",
    "limits:\n  ",
    "duration_s: ",
    ".nan",
    ".inf",
    "-.inf",
    "1e309",
    "99999999999999999999999",
    "-1",
    "0x10",
    "0o7",
    "~",
    "null",
    "true",
    "mitigations:\n  - ",
    "sysctl: {key: vm.x, value: \"1\"}",
    "cgroup: {memory_max_mib: 100}",
    "psi_killer",
    "oom_score_adj: {master: 1000}",
    "workload:\n  ",
    "respawn: delay",
    "expect: livelock",
    "\u{feff}",
    "é",
    "\u{fffd}",
];

/// Hostile files people and attackers write.
fn builtin_seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<String> = vec![
        format!(
            "name: t\nvm: {{cmdline: {}{}}}\n",
            "[".repeat(64),
            "]".repeat(64)
        ),
        format!("name: t\nx:\n{}a\n", "- ".repeat(64)),
        "name: t\nvm:\n  cmdline: &a [a, b]\nmitigations: [*a, *a]\n".into(),
        "name: &n t\ndescription: *n\n".into(),
        {
            let mut l = "name: t\nl0: &l0 [x,x,x,x,x,x,x,x,x]\n".to_string();
            for i in 1..6 {
                l += &format!(
                    "l{i}: &l{i} [{}]\n",
                    vec![format!("*l{}", i - 1); 9].join(",")
                );
            }
            l
        },
        format!(
            "name: t\nmitigations:\n{}",
            "  - sysctl: {key: vm.x, value: \"1\"}\n".repeat(40)
        ),
        format!("name: t\nvm:\n  cmdline: [{}]\n", vec!["a=1"; 70].join(",")),
        "name: \"t\\e[2J\"\ndescription: \"\\u202e\"\n".into(),
        "name: t\n---\nname: u\n".into(),
        "name: !x {a: 1}\nvm: !!map {cpus: 2}\n".into(),
        "name: t\n? [a, b]\n: c\n".into(),
    ];
    s.push(String::new());
    s.into_iter().map(String::into_bytes).collect()
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(6) {
        match rng.below(9) {
            // flip, insert a byte, a fragment (twice as often: YAML breaks
            // at its punctuation), truncate, splice
            op @ 0..=5 => mutate_bytes(rng, &mut v, [0, 1, 2, 2, 3, 4][op], seeds, FRAGMENTS),
            // Grow: one chunk many times, now and then past the size cap.
            6 if !v.is_empty() && rng.below(16) == 0 => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(40)).min(v.len());
                let times = 1 + rng.below((bounds::MAX_FILE_BYTES + 4096) / (b - a));
                let chunk = v[a..b].repeat(times);
                v.splice(b..b, chunk);
            }
            // Nest: wrap a value in brackets, sometimes past the depth cap.
            7 => {
                let n = 1 + rng.below(2 * bounds::MAX_FLOW_DEPTH);
                let i = rng.below(v.len() + 1);
                let tail = v.split_off(i);
                v.extend(std::iter::repeat_n(b'[', n));
                v.extend(tail);
                v.extend(std::iter::repeat_n(b']', n));
            }
            // join two lines
            _ => mutate_bytes(rng, &mut v, 5, seeds, FRAGMENTS),
        }
    }
    v
}

/// Parse as `Scenario::load` does after reading: whether it was accepted,
/// or what broke.
fn run_one(input: &[u8]) -> Result<bool, String> {
    let path = Path::new("fuzz.yaml");
    let parsed = bounds::utf8(path, input.to_vec()).and_then(|text| Scenario::parse(path, &text));
    match parsed {
        Err(e) => {
            let msg = e.to_string();
            if msg.chars().any(oomlab::text::is_unsafe) {
                return Err(format!("raw control character in the error: {msg:?}"));
            }
            Ok(false)
        }
        Ok(s) => {
            let within = input.len() <= bounds::MAX_FILE_BYTES
                && s.mitigations.len() <= bounds::MAX_MITIGATIONS
                && s.vm.cmdline.len() <= bounds::MAX_CMDLINE_WORDS
                && s.description.len() <= bounds::MAX_DESCRIPTION
                && !s
                    .description
                    .contains(|c: char| c != '\n' && c != '\t' && oomlab::text::is_unsafe(c))
                && !s.vm.kernel.contains(oomlab::text::is_unsafe);
            if !within {
                return Err("accepted a scenario outside the bounds".into());
            }
            let _ = s.guest_conf().render();
            Ok(true)
        }
    }
}

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss
}

fn main() {
    let seconds = num_arg("--seconds").unwrap_or(30);
    let seed = num_arg("--seed").unwrap_or(0x5eed_5ce7_a210);
    let max = Duration::from_millis(num_arg("--max-ms").unwrap_or(10_000));
    let mut seeds = builtin_seeds();
    seeds.extend(corpus(&[], "../scenarios", &[]));
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    panic::set_hook(Box::new(|_| {}));
    let (mut iters, mut accepted, mut slowest) = (0u64, 0u64, Duration::ZERO);
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &seeds);
        iters += 1;
        let started = Instant::now();
        let outcome = panic::catch_unwind(|| run_one(&input));
        let took = started.elapsed();
        slowest = slowest.max(took);
        let failure = match outcome {
            Err(_) => Some("PANIC".to_string()),
            Ok(Err(why)) => Some(why),
            Ok(Ok(_)) if took > max => Some(format!("took {took:?}, more than {max:?}")),
            Ok(Ok(ok)) => {
                accepted += u64::from(ok);
                None
            }
        };
        if let Some(why) = failure {
            let _ = panic::take_hook();
            let path = std::env::temp_dir().join(format!("fuzz-scenario-{iters}.yaml"));
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "{why} on iteration {iters}; input saved to {}",
                path.display()
            );
            let _ = run_one(&input); // again, with the default hook for a panic's message
            std::process::exit(1);
        }
    }
    println!(
        "fuzz_scenario: {iters} inputs ({accepted} accepted) in {seconds} s, {} seeds, seed \
         {seed:#x}: no panic, all within bounds; slowest {slowest:.1?}, peak RSS {} MiB",
        seeds.len(),
        peak_rss_kib() / 1024
    );
}
