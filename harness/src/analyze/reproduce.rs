//! From a post-mortem to a reproduction: the scenario file (`scenarios/
//! *.yaml`) that gives the incident's shape in one of this project's small
//! guests, on the nearest catalogue kernel: the looping group's workers,
//! their memory, the respawn, the memory cgroup's limit. Every value says
//! in a comment which log line it came from, or that it was guessed.

use std::fmt::Write as _;

use super::era::Era;
use super::model::{BackOff, GroupCall, VictimGroup};
use super::Analysis;
use crate::events::kernel::Constraint;
use crate::image::kernel::Catalogue;

/// The guest every reproduction boots: the size of the shipped scenarios.
pub const GUEST_MIB: u32 = 256;
/// The share of the guest's memory the workers must ask for between them to
/// run it out of memory (the shipped seed scenario: 4 x 60 MiB of 256).
const FILL: f64 = 0.94;
/// Workers a reproduction runs at most (one vCPU).
const MAX_WORKERS: u32 = 16;

/// Why no scenario can be written.
#[derive(Debug, thiserror::Error)]
pub enum CannotReproduce {
    #[error("the log holds no OOM kill: there is nothing to reproduce")]
    NoKill,
    #[error("no kernel in the catalogue to run it on")]
    NoKernel,
}

/// A kernel version as a number: major * 1000 + minor.
fn version(major: u32, minor: u32) -> u32 {
    major * 1000 + minor
}

/// The versions an era's formats allow, inclusive.
fn era_versions(e: Era) -> (u32, u32) {
    const ANY: u32 = 99_999;
    match e {
        Era::V2632 | Era::Rhel6 => (version(2, 6), version(2, 6)),
        Era::V2636To34 => (version(2, 6), version(3, 4)),
        Era::V35To319 => (version(3, 5), version(3, 19)),
        Era::Rhel7 => (version(3, 10), version(3, 10)),
        Era::V40To414 => (version(4, 0), version(4, 14)),
        Era::V415To67 => (version(4, 15), version(6, 7)),
        Era::V50Plus => (version(5, 0), ANY),
        Era::V51To53 => (version(5, 1), version(5, 3)),
        Era::V54Plus => (version(5, 4), ANY),
        Era::V68Plus => (version(6, 8), ANY),
    }
}

/// `M.m` at the start of a kernel release (`5.10.0-32-cloud-amd64`).
fn release_version(release: &str) -> Option<u32> {
    let mut it = release.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some(version(major, minor))
}

/// The catalogue kernel nearest the eras the log's formats show: the oldest
/// within their versions, else the one closest to them. With no era known,
/// the catalogue's default.
fn nearest_kernel(eras: &[Era], cat: &Catalogue) -> Option<(String, String)> {
    let (mut lo, mut hi) = (0u32, 99_999u32);
    for e in eras {
        let (a, b) = era_versions(*e);
        // the most specific: the intersection, unless it is empty
        let (nlo, nhi) = (lo.max(a), hi.min(b));
        if nlo <= nhi {
            (lo, hi) = (nlo, nhi);
        }
    }
    if eras.is_empty() {
        let d = cat.get(&cat.default)?;
        return Some((d.name.clone(), d.release.clone()));
    }
    let distance = |v: u32| lo.saturating_sub(v).max(v.saturating_sub(hi));
    cat.kernels
        .iter()
        .filter_map(|k| release_version(&k.release).map(|v| (distance(v), v, k)))
        .min_by_key(|(d, v, _)| (*d, *v))
        .map(|(_, _, k)| (k.name.clone(), k.release.clone()))
}

/// How the era is shown in a comment.
fn eras_label(eras: &[Era]) -> String {
    super::era::labels(eras).unwrap_or_else(|| "not told by the formats".to_string())
}

fn mib_of_kb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The group a reproduction is of: the first loop's, else the group with
/// the most kills.
fn subject(a: &Analysis) -> Option<&VictimGroup> {
    a.loops
        .first()
        .and_then(|l| {
            a.groups
                .iter()
                .find(|g| g.is_loop && g.name == l.name && g.uid == l.uid && g.memcg == l.memcg)
        })
        .or_else(|| a.groups.first())
}

/// A scenario name from the log's file name.
fn scenario_name(source: &str) -> String {
    let mut stem = std::path::Path::new(source)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("log")
        .trim_start_matches('.');
    while let Some(s) = [".gz", ".log", ".txt", ".json"]
        .iter()
        .find_map(|x| stem.strip_suffix(x))
    {
        stem = s;
    }
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_start_matches(['-', '.']).to_string();
    if name.is_empty() {
        name = "log".into();
    }
    name.truncate(48);
    format!("{name}-repro")
}

/// The scenario (YAML, with comments) that reproduces the incident `a`
/// read from `source` (a file name, shown in comments), on the nearest
/// kernel of `cat`.
pub fn scenario_yaml(
    a: &Analysis,
    source: &str,
    cat: &Catalogue,
) -> Result<String, CannotReproduce> {
    let g = subject(a).ok_or(CannotReproduce::NoKill)?;
    if a.totals.killed == 0 {
        return Err(CannotReproduce::NoKill);
    }
    let (kernel, release) = nearest_kernel(&a.eras, cat).ok_or(CannotReproduce::NoKernel)?;
    let looping = g.is_loop;
    let loop_finding = a.loops.first();
    let source = crate::text::printable(source).replace(['\n', '\r'], " ");
    let who = super::render::who(&g.name, g.uid, g.memcg.as_deref());
    let who = crate::text::printable(&who).into_owned();

    // The incident's numbers, and where each came from.
    let mut notes: Vec<String> = Vec::new();
    let workers_seen = g.workers_in_table.filter(|n| *n > 0);
    let workers = match workers_seen {
        Some(n) => {
            notes.push(format!(
                "workers: {n} {} process(es) of uid {} in the first task table that lists them{}",
                g.name,
                g.uid.map_or("?".into(), |u| u.to_string()),
                match loop_finding.and_then(|l| l.likely_master) {
                    Some(m) => format!(" (the likely master, pid {m}, left out)"),
                    None => String::new(),
                }
            ));
            u32::try_from(n).unwrap_or(MAX_WORKERS)
        }
        None => {
            notes.push(format!(
                "workers: GUESSED 4 (no task table lists the {} processes; nginx and php-fpm start about that many per core)",
                g.name
            ));
            4
        }
    };
    let rss_kb = g.victim_anon_rss_kb.filter(|r| *r > 0);
    let worker_mib = match rss_kb {
        Some(kb) => {
            notes.push(format!(
                "per-worker memory: {:.0} MiB, the median anon-rss of the {} `Killed process` line(s) of the group",
                mib_of_kb(kb),
                g.kills
            ));
            mib_of_kb(kb)
        }
        None => {
            notes.push(
                "per-worker memory: GUESSED 60 MiB (the kill lines of this era print no anon-rss)"
                    .into(),
            );
            60.0
        }
    };
    let demand = f64::from(workers) * worker_mib;
    let ram_mib = match a.ram_kb {
        Some(kb) => {
            notes.push(format!(
                "RAM: {:.0} MiB, from Mem-Info's `N pages RAM` (4 KiB pages)",
                mib_of_kb(kb)
            ));
            mib_of_kb(kb)
        }
        None => {
            let guess = demand / 0.9;
            notes.push(format!(
                "RAM: GUESSED {guess:.0} MiB (no Mem-Info in the log: the workers' {demand:.0} MiB taken as 90% of it)"
            ));
            guess
        }
    };
    let ratio = f64::from(GUEST_MIB) / ram_mib.max(1.0);

    // The memory cgroup whose limit was hit, if it was a memcg OOM.
    let memcg_limit_kb = a
        .incidents
        .iter()
        .filter(|i| i.constraint == Constraint::Memcg && i.victims.iter().any(|v| v.name == g.name))
        .find_map(|i| i.memcg_limit_kb);
    let memcg_guest = memcg_limit_kb.map(|kb| {
        let scaled = (mib_of_kb(kb) * ratio).round();
        (scaled.clamp(32.0, f64::from(GUEST_MIB) * 0.75)) as u32
    });

    // Scale to the guest: workers kept (up to MAX_WORKERS), memory by the
    // ratio of the guest's RAM to the incident's, and never less than it
    // takes for the workers alone to fill the guest (or the cgroup) as the
    // incident's whole load filled its machine.
    let workers_guest = workers.clamp(1, MAX_WORKERS);
    let scaled = worker_mib * ratio * f64::from(workers) / f64::from(workers_guest);
    let room = match memcg_guest {
        Some(m) => f64::from(m) * 1.2,
        None => f64::from(GUEST_MIB) * FILL,
    };
    let floor = room / f64::from(workers_guest);
    let worker_guest = scaled.max(floor).ceil().clamp(8.0, 200.0) as u32;

    // The supervisor's respawn, where its log shows one.
    let sup = g
        .supervisors
        .iter()
        .find(|e| e.delay.is_some() || e.respawns > 0);
    let delay_ms = sup
        .and_then(|e| e.delay)
        .map(|d| (d.median_s * 1000.0).round() as u32)
        .filter(|ms| *ms >= 50);
    let backs_off = sup.is_some_and(|e| matches!(e.back_off, BackOff::Grows { .. }));

    let expect = if looping { "livelock" } else { "recovered" };
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by `oomlab analyze {source} --emit-scenario`: the incident of that log,"
    );
    let _ = writeln!(
        y,
        "# reproduced in a {GUEST_MIB} MiB guest. From the log ({}):",
        if looping {
            "a kill/respawn loop"
        } else {
            "no kill/respawn loop"
        }
    );
    let _ = writeln!(
        y,
        "# - the group: {who}, {} kill(s); {}",
        g.kills,
        crate::text::printable(&g.call.to_string())
    );
    for n in &notes {
        let _ = writeln!(y, "# - {}", crate::text::printable(n));
    }
    let _ = writeln!(
        y,
        "# - kernel: {} from the formats; the nearest catalogue kernel is {kernel} ({release})",
        eras_label(&a.eras)
    );
    if let Some(l) = loop_finding.filter(|_| looping) {
        let _ = writeln!(
            y,
            "# - the loop: {}",
            crate::text::printable(&l.to_string())
        );
    }
    let _ = writeln!(y, "# Scaled to the guest: each worker's memory times {GUEST_MIB}/{ram_mib:.0} (the guest's RAM over the");
    let _ = writeln!(
        y,
        "# incident's), raised to at least {room:.0} MiB over the workers: the incident's other"
    );
    let _ = writeln!(
        y,
        "# processes are not reproduced, so the workers alone must overfill the guest as the"
    );
    let _ = writeln!(
        y,
        "# whole load overfilled the machine. They grow 4 MiB every 20 ms, as a heap grows under"
    );
    let _ = writeln!(
        y,
        "# load (what makes the loop happen on 2.6.32's heuristic overcommit too)."
    );
    if let Some(uid) = g.uid.filter(|u| *u != 0) {
        let _ = writeln!(
            y,
            "# The incident's workers ran as uid {uid}; this payload's run as root (on kernels before"
        );
        let _ = writeln!(
            y,
            "# 4.17 root's tasks get a small discount in the OOM killer's badness)."
        );
    }
    let _ = writeln!(y, "name: {}", scenario_name(&source));
    let _ = writeln!(
        y,
        "description: \"reproduction of {}: {} {} worker(s) of ~{worker_guest} MiB in a {GUEST_MIB} MiB guest\"",
        source.replace(['"', '\\'], "'"),
        workers_guest,
        crate::text::printable(&g.name).replace(['"', '\\'], "'")
    );
    let _ = writeln!(y, "expect: {expect}");
    let _ = writeln!(y, "vm:");
    let _ = writeln!(y, "  memory_mib: {GUEST_MIB}");
    let _ = writeln!(y, "  cpus: 1");
    let _ = writeln!(y, "  accel: auto");
    let _ = writeln!(
        y,
        "  # nearest to the incident's kernel ({})",
        eras_label(&a.eras)
    );
    let _ = writeln!(y, "  kernel: {kernel}");
    let _ = writeln!(y, "limits:");
    let _ = writeln!(y, "  duration_s: 10");
    let _ = writeln!(y, "  settle_s: 3");
    let _ = writeln!(y, "workload:");
    let _ = writeln!(
        y,
        "  # {}{}",
        match workers_seen {
            Some(n) => format!("{n} worker(s) in the incident"),
            None => "no task table: guessed".to_string(),
        },
        if workers_guest != workers {
            format!(", capped at {MAX_WORKERS}")
        } else {
            String::new()
        }
    );
    let _ = writeln!(y, "  workers: {workers_guest}");
    let _ = writeln!(
        y,
        "  # {worker_mib:.0} MiB each in the incident, x {GUEST_MIB}/{ram_mib:.0} = {scaled:.0} MiB, at least {floor:.0} MiB"
    );
    let _ = writeln!(y, "  worker_mem_mib: {worker_guest}");
    let _ = writeln!(y, "  worker_step_mib: 4");
    let _ = writeln!(y, "  worker_step_ms: 20");
    if !looping {
        let _ = writeln!(
            y,
            "  # no respawn of a killed process in the log: nothing re-forks here either"
        );
        let _ = writeln!(y, "  respawn: none");
    } else if let (true, Some(e)) = (backs_off, sup) {
        let _ = writeln!(
            y,
            "  # {} backed off between restarts (its own log); reproduced below, scaled down",
            e.supervisor.label()
        );
        let _ = writeln!(y, "  respawn: immediate");
    } else if let (Some(ms), Some(e)) = (delay_ms, sup) {
        // the window is 10 s and a 3 s quiet stretch is a recovery: longer
        // waits are cut to 1 s, which keeps the loop's shape
        let _ = writeln!(
            y,
            "  # {} respawned {ms} ms after a kill (median, its own log){}",
            e.supervisor.label(),
            if ms > 1000 {
                "; cut to 1000 ms to fit the 10 s window"
            } else {
                ""
            }
        );
        let _ = writeln!(y, "  respawn: delay");
        let _ = writeln!(y, "  respawn_delay_ms: {}", ms.min(1000));
    } else {
        let _ = writeln!(
            y,
            "  # the master re-forks at once{}",
            match sup {
                Some(e) => format!(" (as the {} does)", e.supervisor.label()),
                None => String::new(),
            }
        );
        let _ = writeln!(y, "  respawn: immediate");
    }
    let cgroup = memcg_guest.zip(memcg_limit_kb);
    let back_off = sup
        .filter(|_| looping && backs_off)
        .and_then(|e| match e.back_off {
            BackOff::Grows { first_s, last_s } => Some((e, first_s, last_s)),
            _ => None,
        });
    if cgroup.is_some() || back_off.is_some() {
        let _ = writeln!(y, "mitigations:");
    }
    if let Some((e, first_s, last_s)) = back_off {
        let _ = writeln!(
            y,
            "  # {}'s back-off, {first_s:.1} s growing to {last_s:.0} s, scaled down to fit the 10 s",
            e.supervisor.label()
        );
        let _ = writeln!(y, "  # window as scenarios/respawn-backoff.yaml does");
        let _ = writeln!(y, "  - respawn_backoff:");
        let _ = writeln!(y, "      initial_ms: 250");
        let _ = writeln!(y, "      max_ms: 2000");
    }
    if let Some((m, kb)) = cgroup {
        let _ = writeln!(
            y,
            "  # a memory cgroup OOM: `memory: usage ..., limit {kb}kB` ({:.0} MiB) x {GUEST_MIB}/{ram_mib:.0}",
            mib_of_kb(kb)
        );
        let _ = writeln!(y, "  - cgroup:");
        let _ = writeln!(y, "      memory_max_mib: {m}");
        if let GroupCall::Burst {
            oom_group: Some(_), ..
        } = g.call
        {
            let _ = writeln!(y, "      # the log shows a memory.oom.group kill");
            let _ = writeln!(y, "      oom_group: true");
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_nearest_to_the_eras() {
        let cat = crate::image::kernel::catalogue().expect("catalogue");
        let k = |eras: &[Era]| nearest_kernel(eras, &cat).map(|x| x.1);
        // 2.6.32 and 3.10: the oldest kernel there is
        let oldest = cat
            .kernels
            .iter()
            .filter_map(|k| release_version(&k.release).map(|v| (v, k.release.clone())))
            .min()
            .map(|x| x.1);
        assert_eq!(k(&[Era::V2636To34, Era::Rhel6]), oldest);
        // 5.4+ and no 6.8 table: one within 5.4-6.7, the oldest such
        let r = k(&[Era::V415To67, Era::V50Plus, Era::V54Plus]).expect("a kernel");
        let v = release_version(&r).expect("version");
        assert!((version(5, 4)..=version(6, 7)).contains(&v), "{r}");
        assert_eq!(
            release_version("5.10.0-32-cloud-amd64"),
            Some(version(5, 10))
        );
        assert_eq!(
            release_version("6.12.117+deb13-cloud-amd64"),
            Some(version(6, 12))
        );
    }

    #[test]
    fn names_are_scenario_names() {
        assert_eq!(scenario_name("/var/log/messages"), "messages-repro");
        assert_eq!(
            scenario_name("seed_centos6_messages.log"),
            "seed_centos6_messages-repro"
        );
        assert_eq!(scenario_name(".hidden log.gz"), "hidden-log-repro");
        assert_eq!(
            scenario_name("e9_5.4_journal.log.gz"),
            "e9_5.4_journal-repro"
        );
        assert_eq!(scenario_name("-"), "log-repro");
    }
}
