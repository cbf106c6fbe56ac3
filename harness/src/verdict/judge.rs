//! Judging a record: the early verdict (may the run stop now?), the final
//! verdict with its one-sentence reason, and the evidence behind it.

use std::collections::HashSet;

use super::{
    ssh, Agreement, ChildSacrifice, Evidence, Judgement, RunRecord, Verdict,
    EARLY_LIVELOCK_MIN_KILLS, LIVELOCK_MIN_KILLS_OF_RESPAWNED,
};
use crate::scenario::Limits;

impl RunRecord {
    /// Worker spawns after the first `workers`: the master's re-forks.
    fn respawns(&self) -> &[(f64, u32)] {
        let n = self.workers.min(self.worker_spawns.len());
        &self.worker_spawns[n..]
    }

    /// When any OOM killer struck: the kernel's kills and those of a
    /// userspace killer in the guest (earlyoom, the PSI killer).
    fn kill_times(&self) -> Vec<f64> {
        self.kills
            .iter()
            .filter_map(|k| k.t)
            .chain(self.user_kills.iter().map(|u| u.t))
            .collect()
    }

    /// Kills per killer, the kernel first.
    fn kills_by(&self) -> Vec<(String, usize)> {
        let mut by: Vec<(String, usize)> = Vec::new();
        if !self.kills.is_empty() {
            by.push(("kernel".into(), self.kills.len()));
        }
        for u in &self.user_kills {
            match by.iter_mut().find(|(k, _)| *k == u.killer) {
                Some((_, n)) => *n += 1,
                None => by.push((u.killer.clone(), 1)),
            }
        }
        by
    }

    /// Share of the window with the full worker count alive: the service
    /// at full strength. None before `ready`.
    fn availability(&self) -> Option<f64> {
        let ready = self.ready_t?;
        let end = self.window_end();
        if end <= ready || self.workers == 0 {
            return None;
        }
        let mut events: Vec<(f64, i64)> = self
            .worker_spawns
            .iter()
            .map(|(t, _)| (*t, 1))
            .chain(self.worker_exits.iter().map(|(t, _)| (*t, -1)))
            .collect();
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut alive, mut at, mut full) = (0i64, ready, 0.0);
        for (t, d) in events {
            let t = t.clamp(ready, end);
            if alive >= self.workers as i64 {
                full += t - at;
            }
            at = t;
            alive += d;
        }
        if alive >= self.workers as i64 {
            full += end - at;
        }
        Some(full / (end - ready))
    }

    fn window_end(&self) -> f64 {
        self.done_t.unwrap_or(self.last_guest_t)
    }

    /// Guest seconds at the end with no kill and no respawn.
    fn quiet_tail(&self) -> f64 {
        let end = self.window_end();
        let last_kill = self.kill_times().into_iter().fold(f64::NAN, f64::max);
        let first_kill = self.kill_times().into_iter().fold(f64::NAN, f64::min);
        // Respawns before the first kill are the initial fill-up races, not
        // the loop.
        let last_respawn = self
            .respawns()
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| first_kill.is_nan() || *t >= first_kill)
            .fold(f64::NAN, f64::max);
        let since = last_kill.max(last_respawn);
        if since.is_nan() {
            end - self.ready_t.unwrap_or(end)
        } else {
            (end - since).max(0.0)
        }
    }

    fn kills_of_respawned(&self) -> usize {
        let respawned: HashSet<u32> = self.respawns().iter().map(|(_, p)| *p).collect();
        let user = self
            .user_kills
            .iter()
            .filter(|u| u32::try_from(u.pid).is_ok_and(|p| respawned.contains(&p)))
            .count();
        self.kills
            .iter()
            .filter(|k| respawned.contains(&k.pid))
            .count()
            + user
    }

    fn agreement(&self) -> Agreement {
        let console = self.kills.len();
        let sig = self.worker_sigkills;
        // A userspace killer's SIGKILLs are the master's SIGKILLs too: one
        // per killed worker, or a whole group (workers and master).
        let user: usize = self
            .user_kills
            .iter()
            .map(|u| if u.pid > 0 { 1 } else { self.workers + 1 })
            .sum();
        let vmstat = match (self.vmstat_oom_kill_first, self.vmstat_oom_kill_last) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        // Kills can still be unreaped when the window closes (at most one
        // per worker slot, plus a master killed by oom.group). The vmstat
        // counter is sampled, so it may lag the console, never lead it.
        let agree = sig <= console + user
            && console.saturating_sub(sig) <= self.workers + 1
            && vmstat.is_none_or(|v| v <= console as u64);
        Agreement {
            console_kills: console,
            telemetry_sigkills: sig,
            vmstat_oom_kills: vmstat,
            agree,
        }
    }

    /// The canary's longest silence, seconds: its worst lateness (after a
    /// stall it emits the missed ticks, the first one as late as the
    /// stall), or the time since its last tick when the window closed. None
    /// without a canary.
    fn canary_silence(&self) -> Option<f64> {
        let (last_t, _) = *self.ticks.last()?;
        let worst = self
            .ticks
            .iter()
            .map(|(_, l)| l / 1000.0)
            .fold(0.0, f64::max);
        let tail = self.window_end() - last_t - self.canary_period_s;
        Some(worst.max(tail).max(0.0))
    }

    /// Why the guest's SSH server never came up (no network driver...):
    /// the probe then says nothing about the guest.
    pub fn ssh_unavailable(&self) -> Option<String> {
        self.setup
            .iter()
            .find(|st| !st.ok && ["net", "entropy", "dropbear", "ssh"].contains(&st.what.as_str()))
            .map(|st| format!("{}: {}", st.what, st.detail))
    }

    /// The longest the guest stopped answering: the canary's silence or the
    /// longest SSH outage.
    pub fn stall_s(&self) -> Option<f64> {
        let ssh = (!self.ssh.is_empty() && self.ssh_unavailable().is_none())
            .then(|| ssh::longest_outage(&self.ssh).0);
        match (self.canary_silence(), ssh) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0).max(b.unwrap_or(0.0))),
        }
    }

    /// The canary was still ticking at `end`: its last tick is at most ten
    /// periods (and at least a second) old.
    fn canary_alive_at(&self, end: f64) -> bool {
        let slack = (10.0 * self.canary_period_s).max(1.0);
        self.ticks.last().is_some_and(|(t, _)| *t >= end - slack)
    }

    /// A verdict that can no longer change, so the run may stop before its
    /// window closes. Conservative: `recovered` only when the whole workload
    /// is gone (nothing left to re-fork), `livelock` only for a steady loop
    /// with its master alive.
    pub fn early_verdict(&self, limits: &Limits) -> Option<(Verdict, String)> {
        if let Some(why) = self.not_applied() {
            return Some((Verdict::NotApplicable, why));
        }
        if let Some(reason) = &self.panic {
            return Some((Verdict::Panic, format!("kernel panic: {reason}")));
        }
        let ready = self.ready_t?;
        let kills = self.kill_times();
        let first = kills.iter().copied().fold(f64::NAN, f64::min);
        if kills.is_empty() || first.is_nan() {
            return None;
        }
        let now = self.last_guest_t;
        let all_workers_gone = self
            .worker_spawns
            .iter()
            .all(|(_, p)| self.exited.contains(p));
        if self.master_exit_t.is_some()
            && all_workers_gone
            && self.quiet_tail() >= limits.settle_s
            && self.canary_alive_at(now)
        {
            return Some((
                Verdict::Recovered,
                "master and every worker are gone and the guest stayed quiet".into(),
            ));
        }
        // A steady loop: enough kills of re-forked workers, over at least
        // two settle periods, with no gap of half a settle period anywhere.
        let mut sorted = kills.clone();
        sorted.sort_by(f64::total_cmp);
        let max_gap = sorted
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(0.0, f64::max)
            .max(now - sorted[sorted.len() - 1]);
        // A guest that stalls is not a clean loop: no early livelock while
        // the canary is (or was) silent for half the stall limit.
        let ticking = self
            .ticks
            .last()
            .is_some_and(|(t, _)| now - t < limits.stall_s / 2.0);
        let stalled = self
            .canary_silence()
            .is_some_and(|s| s >= limits.stall_s / 2.0);
        if self.master_exit_t.is_none()
            && (self.ticks.is_empty() || (ticking && !stalled))
            && self.kills_of_respawned() >= EARLY_LIVELOCK_MIN_KILLS
            && now - first >= 2.0 * limits.settle_s
            && now - ready >= limits.duration_s / 2.0
            && max_gap < limits.settle_s / 2.0
        {
            return Some((
                Verdict::Livelock,
                format!(
                    "steady loop: {} kills of re-forked workers over {:.1} s, never {:.1} s apart, master alive",
                    self.kills_of_respawned(),
                    now - first,
                    limits.settle_s / 2.0
                ),
            ));
        }
        None
    }

    /// What telemetry says a pid was.
    fn role_of(&self, pid: u32) -> &'static str {
        if self.master_pids.contains(&pid) {
            "master"
        } else if self.worker_spawns.iter().any(|(_, p)| *p == pid) {
            "worker"
        } else {
            "other"
        }
    }

    /// The kernel's choices that it did not kill itself, told about the
    /// task it chose most often.
    fn child_sacrifice(&self) -> Option<ChildSacrifice> {
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for s in &self.sacrifices {
            match counts.iter_mut().find(|(p, _)| *p == s.chosen_pid) {
                Some((_, n)) => *n += 1,
                None => counts.push((s.chosen_pid, 1)),
            }
        }
        let (pid, n) = counts.iter().copied().max_by_key(|(_, n)| *n)?;
        let of_it: Vec<_> = self
            .sacrifices
            .iter()
            .filter(|s| s.chosen_pid == pid)
            .collect();
        let first = of_it[0];
        let role = self.role_of(pid);
        let killed: Vec<u32> = of_it.iter().take(8).map(|s| s.killed_pid).collect();
        let who = match role {
            "master" => "the master".to_string(),
            "worker" => format!("worker {pid}"),
            _ => format!("{} {pid}", first.chosen_name),
        };
        let score = first
            .score
            .map_or_else(String::new, |s| format!(" (score {s})"));
        let mut said = format!(
            "chose {who}{score}, killed its child {} instead",
            first.killed_pid
        );
        if n > 1 {
            said.push_str(&format!(" ({n} times, child sacrifice: kernels up to 5.0)"));
        } else {
            said.push_str(" (child sacrifice: kernels up to 5.0)");
        }
        Some(ChildSacrifice {
            kills: self.sacrifices.len(),
            chosen_pid: pid,
            chosen_name: first.chosen_name.clone(),
            chosen_role: role.to_string(),
            score: first.score,
            killed,
            said,
        })
    }

    pub fn judge(&self, limits: &Limits) -> Judgement {
        let mut evidence = self.evidence();
        let (verdict, mut why) = self.decide(limits, &evidence);
        // "Settled after" means something only for a run that settled.
        if verdict != Verdict::Recovered {
            evidence.recovery_s = None;
        }
        if let Some(cs) = &evidence.child_sacrifice {
            if matches!(
                verdict,
                Verdict::Livelock | Verdict::Recovered | Verdict::Inconclusive
            ) {
                why.push_str(&format!("; the kernel {}", cs.said));
            }
        }
        Judgement {
            verdict,
            why,
            evidence,
        }
    }

    /// The first mitigation step the guest could not apply, in words: the
    /// run then says nothing about that mitigation.
    pub fn not_applied(&self) -> Option<String> {
        self.setup
            .iter()
            .find(|st| st.mitigation && !st.ok)
            .map(|st| {
                // Steps of the machine the scenario asked for (modules, disk
                // root, swap, network, SSH, a program) rather than of a
                // mitigation.
                const MACHINE: &[&str] = &[
                    "module", "root", "swap", "net", "entropy", "dropbear", "ssh", "program",
                ];
                let what = if MACHINE.contains(&st.what.as_str()) {
                    "the scenario's machine could not be set up"
                } else {
                    "mitigation not applied"
                };
                format!("{what}: {}: {}", st.what, st.detail)
            })
    }

    fn decide(&self, limits: &Limits, ev: &Evidence) -> (Verdict, String) {
        if let Some(why) = self.not_applied() {
            return (Verdict::NotApplicable, why);
        }
        if let Some(reason) = &self.panic {
            let reboot = match self.reboot_after_s {
                Some(n) => format!("; the kernel rebooted after {n} s (kernel.panic={n})"),
                None => String::new(),
            };
            return (Verdict::Panic, format!("kernel panic: {reason}{reboot}"));
        }
        if self.ready_t.is_none() {
            let why = if let Some(cut) = &self.cut_short {
                format!("the payload never reported ready: {cut}")
            } else if self.boot_timed_out {
                format!(
                    "the payload never reported ready within {} s",
                    limits.boot_s
                )
            } else {
                "the guest ended before the payload reported ready".to_string()
            };
            return (Verdict::BootFailure, why);
        }
        if self.hung {
            return (
                Verdict::Hang,
                format!(
                    "neither the console nor telemetry moved for {} s",
                    limits.hang_s
                ),
            );
        }
        let tail = ev.quiet_tail_s;
        let recovered = (ev.oom_kills > 0 || ev.user_kills > 0)
            && tail >= limits.settle_s
            && self.canary_alive_at(self.window_end());
        if let Some(stall) = ev.stall_s.filter(|s| *s >= limits.stall_s) {
            if !recovered {
                let who = match (&ev.ssh, ev.canary_silence_s) {
                    (Some(s), c) if s.longest_outage_s >= c.unwrap_or(0.0) => format!(
                        "no SSH login worked for {:.1} s ({} of {} logins failed)",
                        s.longest_outage_s, s.failed, s.attempts
                    ),
                    _ => format!(
                        "the canary fell silent for {:.1} s",
                        ev.canary_silence_s.unwrap_or(stall)
                    ),
                };
                let faults = match (ev.major_faults, ev.file_refaults) {
                    (Some(m), Some(r)) => format!("; {m} major faults, {r} file refaults"),
                    (Some(m), None) => format!("; {m} major faults"),
                    _ => String::new(),
                };
                let under = if ev.oom_kills + ev.user_kills == 0 {
                    "no OOM kill".to_string()
                } else {
                    format!(
                        "{} ({} of re-forked workers)",
                        kills_phrase(ev),
                        ev.kills_of_respawned
                    )
                };
                return (
                    Verdict::Thrashing,
                    format!(
                        "the guest stopped answering: {who} (stall limit {} s), with {under}{faults}",
                        limits.stall_s
                    ),
                );
            }
        }
        if ev.oom_kills == 0 && ev.user_kills == 0 {
            return (
                Verdict::NoOom,
                format!(
                    "no OOM kill in {:.1} s ({} respawns{})",
                    ev.window_s,
                    ev.respawns,
                    if ev.respawns > 0 {
                        ": a respawn storm without OOM"
                    } else {
                        ""
                    }
                ),
            );
        }
        if tail >= limits.settle_s {
            let end = self.window_end();
            if self.canary_alive_at(end) {
                return (
                    Verdict::Recovered,
                    format!(
                        "{} OOM kill(s), then {:.1} s with no kill and no respawn while the canary ticked{}",
                        ev.oom_kills,
                        tail,
                        match ev.stall_s {
                            Some(st) if st >= limits.stall_s =>
                                format!(" (after the guest stopped answering for {st:.1} s)"),
                            _ => String::new(),
                        }
                    ),
                );
            }
            return (
                Verdict::Hang,
                format!(
                    "kills stopped {:.1} s before the end, but the canary stopped ticking too",
                    tail
                ),
            );
        }
        if ev.kills_of_respawned < LIVELOCK_MIN_KILLS_OF_RESPAWNED {
            // Workers that die on their own, many times over, are what
            // keeps the tail from going quiet: say so instead of "observe
            // longer", which would not help.
            if self.worker_other_exits > self.workers.max(1) * 10 {
                return (
                    Verdict::Inconclusive,
                    format!(
                        "{} OOM kill(s), {} of re-forked workers: no loop of OOM kills, but {} workers exited on their own (no SIGKILL) and were re-forked: their allocations were refused, a respawn storm; kernels before 5.2 refuse (heuristic overcommit) any single mapping larger than the memory free at that moment, so let workers grow in steps (worker_step_mib)",
                        ev.oom_kills, ev.kills_of_respawned, self.worker_other_exits
                    ),
                );
            }
            return (
                Verdict::Inconclusive,
                format!(
                    "{}, {} of re-forked workers: no loop shown, and only {:.1} s quiet at the end (settle {} s); observe longer",
                    kills_phrase(ev),
                    ev.kills_of_respawned,
                    tail,
                    limits.settle_s
                ),
            );
        }
        let rate = ev
            .kill_rate_per_s
            .map_or_else(String::new, |r| format!(" at {r:.1}/s"));
        let when = if self.stopped_early {
            "steady when the run stopped on its early verdict"
        } else {
            "still going when the window closed"
        };
        (
            Verdict::Livelock,
            format!(
                "{} ({} of re-forked workers){rate}, {when} (quiet tail {:.1} s < settle {} s)",
                kills_phrase(ev),
                ev.kills_of_respawned,
                tail,
                limits.settle_s
            ),
        )
    }

    pub fn evidence(&self) -> Evidence {
        let ready = self.ready_t.unwrap_or(0.0);
        let kills = self.kill_times();
        let first = kills.iter().copied().reduce(f64::min);
        let last = kills.iter().copied().reduce(f64::max);
        // A rate over less than a second (one oom.group burst) says nothing
        // about a loop; it is left out rather than shown as "300/s".
        let rate = match (first, last) {
            (Some(a), Some(b)) if b - a >= 1.0 && kills.len() > 1 => {
                Some((kills.len() - 1) as f64 / (b - a))
            }
            _ => None,
        };
        let mut late: Vec<f64> = self.ticks.iter().map(|(_, l)| *l).collect();
        late.sort_by(f64::total_cmp);
        let p99 =
            (!late.is_empty()).then(|| late[((late.len() - 1) as f64 * 0.99).round() as usize]);
        let mut notes = Vec::new();
        if let Some(cut) = &self.cut_short {
            notes.push(format!("observation cut short: {cut}"));
        }
        for st in &self.setup {
            if !st.ok {
                notes.push(format!("guest setup failed: {}: {}", st.what, st.detail));
            }
        }
        for e in self.guest_errors.iter().take(5) {
            notes.push(format!("guest error: {e}"));
        }
        if self.telemetry_unparsed > 0 {
            notes.push(format!(
                "{} telemetry line(s) unreadable",
                self.telemetry_unparsed
            ));
        }
        if self.worker_other_exits > 0 {
            notes.push(format!(
                "{} worker(s) exited without SIGKILL (allocation failures?)",
                self.worker_other_exits
            ));
        }
        let delta = |v: Option<(u64, u64)>| v.map(|(a, b)| b.saturating_sub(a));
        let unavailable = self.ssh_unavailable();
        if let (Some(why), Some(_)) = (&unavailable, &self.ssh_setup) {
            notes.push(format!(
                "the SSH probe could not run (the guest's SSH server never came up: {why}); no SSH evidence"
            ));
        }
        let ssh = self
            .ssh_setup
            .as_ref()
            .filter(|_| unavailable.is_none())
            .map(|setup| ssh::evidence(&self.ssh, setup, ready, self.window_end().max(ready), 5));
        if let Some(s) = &ssh {
            if s.attempts > 0 && !s.could_log_in {
                notes.push(format!(
                    "no SSH login worked in {} attempts ({})",
                    s.attempts,
                    s.errors
                        .iter()
                        .map(|(e, n)| format!("{n}x {e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let recovery_s = match (first, last) {
            (Some(f), Some(l)) if self.quiet_tail() > 0.0 => {
                let last_respawn = self.respawns().iter().map(|(t, _)| *t).fold(l, f64::max);
                Some(round3(last_respawn.max(l) - f))
            }
            _ => None,
        };
        Evidence {
            oom_kills: self.kills.len(),
            user_kills: self.user_kills.len(),
            kills_by: self.kills_by(),
            recovery_s,
            availability: self.availability().map(round3),
            oom_chosen: self.chosen,
            oom_invocations: self.oom_invocations,
            respawns: self.respawns().len(),
            worker_failures: self.worker_other_exits,
            kills_of_respawned: self.kills_of_respawned(),
            first_oom_s: first.map(|t| round3(t - ready)),
            last_oom_s: last.map(|t| round3(t - ready)),
            kill_rate_per_s: rate.map(round3),
            window_s: round3((self.window_end() - ready).max(0.0)),
            quiet_tail_s: round3(self.quiet_tail()),
            master_exited: self.master_exit_t.is_some(),
            canary_ticks: self.ticks.len(),
            canary_max_late_ms: late.last().copied().map(round3),
            canary_p99_late_ms: p99.map(round3),
            canary_silence_s: self.canary_silence().map(round3),
            stall_s: self.stall_s().map(round3),
            major_faults: delta(self.major_faults),
            file_refaults: delta(self.file_refaults),
            ssh,
            agreement: self.agreement(),
            panic: self.panic.clone(),
            victims: self.kills.iter().take(8).cloned().collect(),
            child_sacrifice: self.child_sacrifice(),
            notes,
        }
    }
}

/// "7 OOM kills", or "7 OOM kills by the kernel, 11 by earlyoom".
fn kills_phrase(ev: &Evidence) -> String {
    match ev.kills_by.as_slice() {
        [(k, n)] if k == "kernel" => format!("{n} OOM kill{}", if *n == 1 { "" } else { "s" }),
        by => {
            let total: usize = by.iter().map(|(_, n)| n).sum();
            let parts: Vec<String> = by.iter().map(|(k, n)| format!("{n} by {k}")).collect();
            format!("{total} OOM kills ({})", parts.join(", "))
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
