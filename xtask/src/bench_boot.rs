//! `cargo xtask bench-boot`: what each boot-time change buys, kernel by
//! kernel.
//!
//! Every kernel boots a boot-only scenario (a small worker, no SSH, a 2 s
//! window, TCG) under the steps of the tuning, added one at a time, from
//! the untuned boot to what oomlab does. `no_timer_check` cannot be taken
//! back from a scenario's command line and is in every step. The runs go
//! round-robin over the steps, so a change in the host's load falls on
//! every step alike.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::bench::{parse_report, publish, release_oomlab, stats};

/// One step of the tuning: the PVH entry on or off, and the command-line
/// words that undo the tunings not yet applied (a scenario's words come
/// after oomlab's own, and the last one wins).
pub struct Step {
    pub name: &'static str,
    pub what: &'static str,
    pub pvh: bool,
    pub cmdline: &'static [&'static str],
}

pub const STEPS: [Step; 4] = [
    Step {
        name: "untuned",
        what: "the bzImage decompressing itself, every boot message on the console (loglevel=7), the crypto self-tests",
        pvh: false,
        cmdline: &["loglevel=7", "cryptomgr.notests=0"],
    },
    Step {
        name: "+pvh",
        what: "the vmlinux ELF booted through its PVH entry (no decompression under TCG)",
        pvh: true,
        cmdline: &["loglevel=7", "cryptomgr.notests=0"],
    },
    Step {
        name: "+quiet",
        what: "loglevel=4 until the payload raises it (fewer trips through the emulated UART)",
        pvh: true,
        cmdline: &["cryptomgr.notests=0"],
    },
    Step {
        name: "+notests",
        what: "cryptomgr.notests: no crypto self-tests (what oomlab boots with)",
        pvh: true,
        cmdline: &[],
    },
];

/// The boot-only scenario of one step.
pub fn scenario_yaml(step: &Step) -> String {
    let words: Vec<String> = step.cmdline.iter().map(|w| format!("\"{w}\"")).collect();
    format!(
        "# cargo xtask bench-boot, step {name}\n\
         name: boot-{slug}\n\
         description: boot time only\n\
         vm: {{ memory_mib: 256, cpus: 1, accel: tcg, cmdline: [{words}] }}\n\
         limits: {{ duration_s: 2, settle_s: 1 }}\n\
         workload: {{ workers: 1, worker_mem_mib: 8 }}\n",
        name = step.name,
        slug = step.name.trim_start_matches('+'),
        words = words.join(", "),
    )
}

/// One kernel's boot times, per step in the order of `STEPS`.
pub struct KernelBoots {
    pub kernel: String,
    pub boot_s: Vec<Vec<f64>>,
}

fn median(v: &[f64]) -> Option<f64> {
    stats(v.iter().copied().map(Some)).map(|(_, m, _)| m)
}

/// The report: per kernel the median boot (min-max) of every step and the
/// whole gain; then what each step bought, as the median over kernels of
/// the drop in median boot it gave.
pub fn markdown(results: &[KernelBoots], runs: usize) -> String {
    let mut s = format!(
        "# Boot time (QEMU start to the payload's `ready`), TCG, {runs} runs per step, median (min-max) in s\n\n| kernel |"
    );
    for st in &STEPS {
        s += &format!(" {} |", st.name);
    }
    s += " untuned -> tuned |\n|---|";
    s += &"---|".repeat(STEPS.len() + 1);
    s += "\n";
    for k in results {
        s += &format!("| {} |", k.kernel);
        for v in &k.boot_s {
            match stats(v.iter().copied().map(Some)) {
                Some((lo, m, hi)) => s += &format!(" {m:.2} ({lo:.2}-{hi:.2}) |"),
                None => s += " - |",
            }
        }
        let first = k.boot_s.first().and_then(|v| median(v));
        let last = k.boot_s.last().and_then(|v| median(v));
        match (first, last) {
            (Some(a), Some(b)) => {
                s += &format!(" -{:.2} s ({:.0}%) |\n", a - b, 100.0 * (a - b) / a)
            }
            _ => s += " - |\n",
        }
    }
    s += "\n| step | what it changes | median gain over kernels |\n|---|---|---|\n";
    for (i, st) in STEPS.iter().enumerate().skip(1) {
        let gains: Vec<f64> = results
            .iter()
            .filter_map(|k| Some(median(k.boot_s.get(i - 1)?)? - median(k.boot_s.get(i)?)?))
            .collect();
        let gain = median(&gains).map_or("-".to_string(), |g| format!("{g:.2} s"));
        s += &format!("| {} | {} | {gain} |\n", st.name, st.what);
    }
    s
}

pub fn bench_boot(root: &Path, runs: usize, kernels: &[String]) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let kernels: Vec<String> = if kernels.is_empty() {
        oomlab::image::kernel::catalogue()?
            .kernels
            .into_iter()
            .map(|k| k.name)
            .collect()
    } else {
        kernels.to_vec()
    };
    let bin = release_oomlab(root)?;
    let out_dir = root.join("target/bench/boot");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let mut scenarios = Vec::new();
    for st in &STEPS {
        let path = out_dir.join(format!("{}.yaml", st.name.trim_start_matches('+')));
        std::fs::write(&path, scenario_yaml(st))
            .with_context(|| format!("write {}", path.display()))?;
        scenarios.push(path);
    }
    let mut results = Vec::new();
    for kernel in &kernels {
        let mut boot_s = vec![Vec::new(); STEPS.len()];
        for r in 1..=runs {
            for (i, st) in STEPS.iter().enumerate() {
                let tag = format!("{kernel}-{}-{r}", st.name.trim_start_matches('+'));
                let json = out_dir.join(format!("{tag}.json"));
                println!(
                    "+ oomlab run {} --kernel {kernel}  ({r}/{runs})",
                    scenarios[i].display()
                );
                let mut cmd = Command::new(&bin);
                cmd.arg("run")
                    .arg(&scenarios[i])
                    .args(["--kernel", kernel, "--json"])
                    .arg(&json)
                    .arg("--out")
                    .arg(out_dir.join(&tag))
                    .stdout(std::process::Stdio::null());
                if st.pvh {
                    cmd.env_remove("OOMLAB_PVH");
                } else {
                    cmd.env("OOMLAB_PVH", "0");
                }
                let status = cmd
                    .status()
                    .with_context(|| format!("run {}", bin.display()))?;
                let text = std::fs::read_to_string(&json).with_context(|| {
                    format!("{tag} ({status}) wrote no report at {}", json.display())
                })?;
                let report = parse_report(&serde_json::from_str(&text)?);
                match report.boot_s {
                    Some(b) => boot_s[i].push(b),
                    None => println!("  {tag}: no boot time ({})", report.verdict),
                }
            }
        }
        results.push(KernelBoots {
            kernel: kernel.clone(),
            boot_s,
        });
    }
    publish(
        &markdown(&results, runs),
        &root.join("target/bench/boot.md"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_undo_the_tunings_not_yet_applied() {
        let y = scenario_yaml(&STEPS[0]);
        assert!(
            y.contains("cmdline: [\"loglevel=7\", \"cryptomgr.notests=0\"]"),
            "{y}"
        );
        assert!(y.contains("name: boot-untuned"), "{y}");
        assert!(scenario_yaml(&STEPS[3]).contains("cmdline: []"));
        assert!(!STEPS[0].pvh && STEPS[1..].iter().all(|s| s.pvh));
    }

    #[test]
    fn table_gives_medians_and_gains() {
        let k = |name: &str, base: f64| KernelBoots {
            kernel: name.into(),
            boot_s: vec![
                vec![base + 2.0, base + 2.2, base + 2.1],
                vec![base + 1.0],
                vec![base + 0.5],
                vec![base, base + 0.1],
            ],
        };
        let md = markdown(&[k("a", 1.0), k("b", 2.0)], 3);
        assert!(md.contains("| a | 3.10 (3.00-3.20) | 2.00 (2.00-2.00) | 1.50 (1.50-1.50) | 1.05 (1.00-1.10) | -2.05 s (66%) |"), "{md}");
        assert!(md.contains("| +pvh | the vmlinux ELF"), "{md}");
        assert!(md.contains("| 1.10 s |"), "{md}");
        assert!(md.contains("| 0.50 s |"), "{md}");
        assert!(md.contains("| 0.45 s |"), "{md}");
    }
}
