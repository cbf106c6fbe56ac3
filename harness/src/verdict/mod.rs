//! From events to a verdict: livelock, recovered, no-oom, panic, hang or
//! boot-failure, with the evidence that decided it.
//!
//! [`RunRecord`] is fed line by line while the VM runs (the runner asks it
//! for an early verdict and for liveness), and judged once at the end. The
//! same record can be rebuilt from a saved console log and telemetry file,
//! which is how the classifier's snapshot tests replay real runs.

use std::collections::HashSet;

use serde::Serialize;

use crate::events::kernel::{self, KernelEvent, Timestamp};
use crate::events::telemetry::{Role, Telemetry, TelemetryEvent};
use crate::events::timeline::{TimelineEntry, TimelineEvent};
use crate::scenario::{Limits, Verdict};

/// Fewest kills of respawned workers before a loop can be called early.
const EARLY_LIVELOCK_MIN_KILLS: usize = 10;

/// Fewest kills of re-forked workers that make a loop at all: one could be
/// a replacement that was simply unlucky; two is the OOM killer coming back
/// for what the master re-forked.
const LIVELOCK_MIN_KILLS_OF_RESPAWNED: usize = 2;

#[derive(Debug, Clone, Serialize)]
pub struct KillRecord {
    /// Guest seconds (printk clock), when the console line had a stamp.
    pub t: Option<f64>,
    pub pid: u32,
    pub name: String,
    pub anon_rss_kb: Option<u64>,
}

/// Everything observed in one run, in guest time.
#[derive(Debug, Default, Clone)]
pub struct RunRecord {
    pub workers: usize,
    pub ready_t: Option<f64>,
    pub kernel_release: Option<String>,
    pub done_t: Option<f64>,
    /// Latest guest time seen on either stream.
    pub last_guest_t: f64,
    pub oom_invocations: usize,
    pub chosen: usize,
    pub kills: Vec<KillRecord>,
    pub reaped: usize,
    pub oom_group_kills: usize,
    pub panic: Option<String>,
    pub panic_t: Option<f64>,
    /// (t, pid) of every worker the master forked, in order.
    pub worker_spawns: Vec<(f64, u32)>,
    pub worker_sigkills: usize,
    pub worker_other_exits: usize,
    pub master_pids: HashSet<u32>,
    pub master_exit_t: Option<f64>,
    pub exited: HashSet<u32>,
    pub ticks: Vec<(f64, f64)>,
    pub vmstat_oom_kill_first: Option<u64>,
    pub vmstat_oom_kill_last: Option<u64>,
    pub setup: Vec<(String, bool, String)>,
    pub guest_errors: Vec<String>,
    pub telemetry_unparsed: usize,
    pub console_lines: usize,
    /// Set by the runner: no `ready` within the boot limit.
    pub boot_timed_out: bool,
    /// Set by the runner: neither stream progressed for `hang_s`.
    pub hung: bool,
    /// Set by the runner when observation ended before the payload's
    /// `done` for a reason other than an early verdict (QEMU exited, the
    /// wall limit): the window is shorter than asked.
    pub cut_short: Option<String>,
    /// Set by the runner: stopped on an early verdict.
    pub stopped_early: bool,
    /// The canary's tick period (seconds): how long a silence means it
    /// stopped.
    pub canary_period_s: f64,
    /// Both streams' events in arrival order (task-table rows left out).
    pub timeline: Vec<TimelineEntry>,
    /// The same stateful parser `analyze` uses (task-table columns differ
    /// by era and follow the last header).
    parser: kernel::Parser,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agreement {
    /// `Killed process` lines on the console.
    pub console_kills: usize,
    /// Workers the master reaped with SIGKILL.
    pub telemetry_sigkills: usize,
    /// `/proc/vmstat oom_kill` growth over the run (last sample), if the
    /// kernel has the counter (4.13+).
    pub vmstat_oom_kills: Option<u64>,
    /// The two views tell the same story: every SIGKILL the master saw is a
    /// console kill, and kills not yet reaped at the end are at most the
    /// number of workers.
    pub agree: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub oom_kills: usize,
    pub oom_chosen: usize,
    pub oom_invocations: usize,
    pub respawns: usize,
    pub kills_of_respawned: usize,
    pub first_oom_s: Option<f64>,
    pub last_oom_s: Option<f64>,
    /// Kills per second between the first and the last kill.
    pub kill_rate_per_s: Option<f64>,
    /// Guest seconds from `ready` to the end of observation.
    pub window_s: f64,
    /// Kill- and respawn-free guest seconds at the end of the window.
    pub quiet_tail_s: f64,
    pub master_exited: bool,
    pub canary_ticks: usize,
    pub canary_max_late_ms: Option<f64>,
    pub canary_p99_late_ms: Option<f64>,
    pub agreement: Agreement,
    pub panic: Option<String>,
    pub victims: Vec<KillRecord>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// One sentence a person can read.
    pub why: String,
    pub evidence: Evidence,
}

impl RunRecord {
    pub fn new(workers: usize) -> Self {
        RunRecord {
            workers,
            canary_period_s: 0.1,
            ..Default::default()
        }
    }

    /// A record for a scenario's workload (workers, canary period).
    pub fn for_workload(w: &crate::scenario::Workload) -> Self {
        RunRecord {
            canary_period_s: f64::from(w.canary_ms) / 1000.0,
            ..RunRecord::new(w.workers as usize)
        }
    }

    fn see_t(&mut self, t: f64) {
        if t.is_finite() && t > self.last_guest_t {
            self.last_guest_t = t;
        }
    }

    /// One line of the kernel console. Returns the parsed event, if any, so
    /// the caller can show it.
    pub fn ingest_console(&mut self, raw: &str) -> Option<KernelEvent> {
        self.console_lines += 1;
        let (line, ev) = self.parser.parse_line(raw);
        let t = match line.ts {
            Some(Timestamp::Monotonic(t)) => Some(t),
            _ => None,
        };
        if let Some(t) = t {
            self.see_t(t);
        }
        let ev = ev?;
        if !matches!(
            ev,
            KernelEvent::TaskRow(_) | KernelEvent::TaskTableHeader { .. }
        ) {
            self.timeline.push(TimelineEntry {
                t: t.unwrap_or(self.last_guest_t),
                event: TimelineEvent::Kernel(ev.clone()),
            });
        }
        match &ev {
            KernelEvent::OomInvoked { .. } => self.oom_invocations += 1,
            KernelEvent::KillChosen { .. } => self.chosen += 1,
            KernelEvent::Killed(k) => self.kills.push(KillRecord {
                t,
                pid: k.pid,
                name: k.name.clone(),
                anon_rss_kb: k.anon_rss_kb,
            }),
            KernelEvent::Reaped { .. } => self.reaped += 1,
            KernelEvent::OomGroup { .. } => self.oom_group_kills += 1,
            KernelEvent::Panic { reason } if self.panic.is_none() => {
                self.panic = Some(reason.clone());
                self.panic_t = t;
            }
            _ => {}
        }
        Some(ev)
    }

    /// One telemetry line; unparseable lines are counted, not fatal.
    pub fn ingest_telemetry_line(&mut self, raw: &str) -> Option<Telemetry> {
        if raw.trim().is_empty() {
            return None;
        }
        match crate::events::telemetry::parse_line(raw) {
            Some(tel) => {
                self.ingest_telemetry(&tel);
                Some(tel)
            }
            None => {
                self.telemetry_unparsed += 1;
                None
            }
        }
    }

    pub fn ingest_telemetry(&mut self, tel: &Telemetry) {
        self.see_t(tel.t);
        self.timeline.push(TimelineEntry {
            t: tel.t,
            event: TimelineEvent::Payload(tel.ev.clone()),
        });
        match &tel.ev {
            TelemetryEvent::Ready { kernel, .. } => {
                self.ready_t.get_or_insert(tel.t);
                if !kernel.is_empty() {
                    self.kernel_release = Some(kernel.clone());
                }
            }
            TelemetryEvent::Setup { what, ok, detail } => {
                self.setup.push((what.clone(), *ok, detail.clone()))
            }
            TelemetryEvent::Spawn { pid, role, .. } => match role {
                Role::Worker => self.worker_spawns.push((tel.t, *pid)),
                Role::Master => {
                    self.master_pids.insert(*pid);
                }
                _ => {}
            },
            TelemetryEvent::Exit {
                pid, role, signal, ..
            } => {
                self.exited.insert(*pid);
                match role {
                    Role::Master => {
                        self.master_exit_t.get_or_insert(tel.t);
                    }
                    Role::Worker | Role::Orphan => {
                        if *signal == Some(libc::SIGKILL) {
                            self.worker_sigkills += 1;
                        } else {
                            self.worker_other_exits += 1;
                        }
                    }
                    _ => {}
                }
                if self.master_pids.contains(pid) {
                    self.master_exit_t.get_or_insert(tel.t);
                }
            }
            TelemetryEvent::Tick { late_ms, .. } => self.ticks.push((tel.t, *late_ms)),
            TelemetryEvent::Mem { oom_kill, .. } => {
                if let Some(n) = oom_kill {
                    self.vmstat_oom_kill_first.get_or_insert(*n);
                    self.vmstat_oom_kill_last = Some(*n);
                }
            }
            TelemetryEvent::Error { msg } => {
                if self.guest_errors.len() < 50 {
                    self.guest_errors.push(msg.clone());
                }
            }
            TelemetryEvent::Done { .. } => {
                self.done_t.get_or_insert(tel.t);
            }
        }
    }

    /// Worker spawns after the first `workers`: the master's re-forks.
    fn respawns(&self) -> &[(f64, u32)] {
        let n = self.workers.min(self.worker_spawns.len());
        &self.worker_spawns[n..]
    }

    fn kill_times(&self) -> Vec<f64> {
        self.kills.iter().filter_map(|k| k.t).collect()
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
        self.kills
            .iter()
            .filter(|k| respawned.contains(&k.pid))
            .count()
    }

    fn agreement(&self) -> Agreement {
        let console = self.kills.len();
        let sig = self.worker_sigkills;
        let vmstat = match (self.vmstat_oom_kill_first, self.vmstat_oom_kill_last) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        // Kills can still be unreaped when the window closes (at most one
        // per worker slot, plus a master killed by oom.group). The vmstat
        // counter is sampled, so it may lag the console, never lead it.
        let agree = sig <= console
            && console - sig <= self.workers + 1
            && vmstat.is_none_or(|v| v <= console as u64);
        Agreement {
            console_kills: console,
            telemetry_sigkills: sig,
            vmstat_oom_kills: vmstat,
            agree,
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
        if self.master_exit_t.is_none()
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

    pub fn judge(&self, limits: &Limits) -> Judgement {
        let evidence = self.evidence();
        let (verdict, why) = self.decide(limits, &evidence);
        Judgement {
            verdict,
            why,
            evidence,
        }
    }

    fn decide(&self, limits: &Limits, ev: &Evidence) -> (Verdict, String) {
        if let Some(reason) = &self.panic {
            return (Verdict::Panic, format!("kernel panic: {reason}"));
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
        if ev.oom_kills == 0 {
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
        let tail = ev.quiet_tail_s;
        if tail >= limits.settle_s {
            let end = self.window_end();
            if self.canary_alive_at(end) {
                return (
                    Verdict::Recovered,
                    format!(
                        "{} OOM kill(s), then {:.1} s with no kill and no respawn while the canary ticked",
                        ev.oom_kills, tail
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
            return (
                Verdict::Inconclusive,
                format!(
                    "{} OOM kill(s), {} of re-forked workers: no loop shown, and only {:.1} s quiet at the end (settle {} s); observe longer",
                    ev.oom_kills, ev.kills_of_respawned, tail, limits.settle_s
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
                "{} OOM kills ({} of re-forked workers){rate}, {when} (quiet tail {:.1} s < settle {} s)",
                ev.oom_kills, ev.kills_of_respawned, tail, limits.settle_s
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
        for (what, ok, detail) in &self.setup {
            if !ok {
                notes.push(format!("guest setup failed: {what}: {detail}"));
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
        Evidence {
            oom_kills: self.kills.len(),
            oom_chosen: self.chosen,
            oom_invocations: self.oom_invocations,
            respawns: self.respawns().len(),
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
            agreement: self.agreement(),
            panic: self.panic.clone(),
            victims: self.kills.iter().take(8).cloned().collect(),
            notes,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests;
