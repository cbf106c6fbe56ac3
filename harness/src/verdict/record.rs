//! The run record: everything observed in one run, in guest time, fed line
//! by line from both streams.

use std::collections::HashSet;

use serde::Serialize;

use crate::events::kernel::{self, KernelEvent, Timestamp};
use crate::events::telemetry::{Role, Telemetry, TelemetryEvent};
use crate::events::timeline::{TimelineEntry, TimelineEvent};
use crate::scenario::Limits;
use crate::vm::{StopReason, Watch};

use super::{killers, SshAttempt, SshSetup, Verdict};

/// One step of the guest's set-up, as its `setup` event told it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetupStep {
    pub what: String,
    pub ok: bool,
    pub detail: String,
    /// Part of a mitigation under test: its failure makes the run `n/a`.
    pub mitigation: bool,
}

/// A kill by a userspace OOM killer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserKill {
    pub t: f64,
    pub killer: String,
    /// Negative: the whole process group.
    pub pid: i32,
    pub name: String,
}

/// One `Killed process` line.
#[derive(Debug, Clone, Serialize)]
pub struct KillRecord {
    /// Guest seconds (printk clock), when the console line had a stamp.
    pub t: Option<f64>,
    pub pid: u32,
    pub name: String,
    pub anon_rss_kb: Option<u64>,
}

/// A kernel (<= 5.0) that chose one task and killed another: `Kill
/// process P ... or sacrifice child` followed by `Killed process C`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sacrifice {
    pub t: Option<f64>,
    pub chosen_pid: u32,
    pub chosen_name: String,
    pub score: Option<i64>,
    pub killed_pid: u32,
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
    /// Kills of another task than the one the kernel chose.
    pub sacrifices: Vec<Sacrifice>,
    /// The last `Kill process` choice, until its `Killed process` line.
    pending_choice: Option<(u32, String, Option<i64>)>,
    pub reaped: usize,
    pub oom_group_kills: usize,
    pub panic: Option<String>,
    pub panic_t: Option<f64>,
    /// `Rebooting in N seconds..` after the panic (`kernel.panic=N`).
    pub reboot_after_s: Option<u64>,
    /// (t, pid) of every worker the master forked, in order.
    pub worker_spawns: Vec<(f64, u32)>,
    pub worker_sigkills: usize,
    pub worker_other_exits: usize,
    pub master_pids: HashSet<u32>,
    pub master_exit_t: Option<f64>,
    /// (t, pid) of every worker (or orphan) the payload saw exit.
    pub worker_exits: Vec<(f64, u32)>,
    pub exited: HashSet<u32>,
    pub ticks: Vec<(f64, f64)>,
    pub vmstat_oom_kill_first: Option<u64>,
    pub vmstat_oom_kill_last: Option<u64>,
    /// (first, last) samples of `pgmajfault` and of file refaults.
    pub major_faults: Option<(u64, u64)>,
    pub file_refaults: Option<(u64, u64)>,
    /// The host's SSH logins, in guest time, and how the probe was set up.
    pub ssh: Vec<SshAttempt>,
    pub ssh_setup: Option<SshSetup>,
    pub setup: Vec<SetupStep>,
    pub guest_errors: Vec<String>,
    /// Kills by a userspace OOM killer in the guest (earlyoom, the PSI
    /// killer): `pid` negative for a whole process group.
    pub user_kills: Vec<UserKill>,
    /// Lines programs in the guest printed (first 200).
    pub guest_logs: Vec<String>,
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
    /// Workers get SIGKILL when their master dies: such deaths of orphans
    /// are not OOM kills.
    pub workers_die_with_master: bool,
    /// Both streams' events in arrival order (task-table rows left out).
    pub timeline: Vec<TimelineEntry>,
    /// The same stateful parser `analyze` uses (task-table columns differ
    /// by era and follow the last header).
    parser: kernel::Parser,
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
            workers_die_with_master: w.worker_die_with_master,
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
            KernelEvent::KillChosen {
                pid, name, score, ..
            } => {
                self.chosen += 1;
                self.pending_choice = Some((*pid, name.clone(), *score));
            }
            KernelEvent::Killed(k) => {
                if let Some((pid, name, score)) = self.pending_choice.take() {
                    if pid != k.pid {
                        self.sacrifices.push(Sacrifice {
                            t,
                            chosen_pid: pid,
                            chosen_name: name,
                            score,
                            killed_pid: k.pid,
                        });
                    }
                }
                self.kills.push(KillRecord {
                    t,
                    pid: k.pid,
                    name: k.name.clone(),
                    anon_rss_kb: k.anon_rss_kb,
                })
            }
            KernelEvent::Reaped { .. } => self.reaped += 1,
            KernelEvent::OomGroup { .. } => self.oom_group_kills += 1,
            KernelEvent::Rebooting { after_s } => self.reboot_after_s = Some(*after_s),
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
            TelemetryEvent::Setup {
                what,
                ok,
                detail,
                mitigation,
            } => self.setup.push(SetupStep {
                what: what.clone(),
                ok: *ok,
                detail: detail.clone(),
                mitigation: *mitigation || legacy_mitigation_step(what, detail),
            }),
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
                    // An orphan is a worker whose master died; with
                    // PR_SET_PDEATHSIG that death killed it, not the OOM
                    // killer (whose kills the console counts anyway).
                    Role::Orphan if self.workers_die_with_master => {}
                    Role::Worker | Role::Orphan => {
                        self.worker_exits.push((tel.t, *pid));
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
            TelemetryEvent::Mem {
                oom_kill,
                pgmajfault,
                refault_file,
                ..
            } => {
                if let Some(n) = oom_kill {
                    self.vmstat_oom_kill_first.get_or_insert(*n);
                    self.vmstat_oom_kill_last = Some(*n);
                }
                for (v, slot) in [
                    (pgmajfault, &mut self.major_faults),
                    (refault_file, &mut self.file_refaults),
                ] {
                    if let Some(n) = v {
                        slot.get_or_insert((*n, *n)).1 = *n;
                    }
                }
            }
            TelemetryEvent::Error { msg } => {
                if self.guest_errors.len() < 50 {
                    self.guest_errors.push(msg.clone());
                }
            }
            TelemetryEvent::Log { src, line } => {
                if let Some((pid, name)) = killers::earlyoom_kill(line) {
                    self.user_kills.push(UserKill {
                        t: tel.t,
                        killer: src.clone(),
                        pid: pid as i32,
                        name,
                    });
                }
                if self.guest_logs.len() < 200 {
                    self.guest_logs.push(format!("{src}: {line}"));
                }
            }
            TelemetryEvent::Kill { killer, pid, .. } => self.user_kills.push(UserKill {
                t: tel.t,
                killer: killer.clone(),
                pid: *pid,
                name: String::new(),
            }),
            TelemetryEvent::Done { .. } => {
                self.done_t.get_or_insert(tel.t);
            }
        }
    }

    /// The SSH probe's logins (already in guest time), onto the record and
    /// its timeline.
    pub fn add_ssh(&mut self, setup: SshSetup, attempts: Vec<SshAttempt>) {
        for a in &attempts {
            self.timeline.push(TimelineEntry {
                t: a.t,
                event: TimelineEvent::Ssh(a.clone()),
            });
        }
        self.ssh.extend(attempts);
        self.ssh_setup = Some(setup);
    }

    /// What the way observation ended says about the run: the limits the
    /// runner enforced become facts the verdict weighs.
    pub fn apply_stop(&mut self, stop: &StopReason, limits: &Limits) {
        match stop {
            StopReason::EarlyVerdict(_) => self.stopped_early = true,
            StopReason::BootLimit => self.boot_timed_out = true,
            StopReason::HangLimit => self.hung = true,
            StopReason::WallLimit if self.ready_t.is_none() => self.boot_timed_out = true,
            StopReason::QemuExited(_) | StopReason::WallLimit
                if self.done_t.is_none() && self.panic.is_none() =>
            {
                let guest = self.last_guest_t - self.ready_t.unwrap_or(0.0);
                self.cut_short = Some(format!(
                    "{stop} after {guest:.1} s of the {} s window, before the payload's `done`",
                    limits.duration_s
                ));
            }
            _ => {}
        }
    }
}

/// Payloads older than the `mitigation` flag (the recorded runs under
/// tests/fixtures) reported their mitigation steps under these names; the
/// canary's own `oom_score_adj` was never one.
fn legacy_mitigation_step(what: &str, detail: &str) -> bool {
    what == "cgroup"
        || what.starts_with("sysctl:")
        || (what == "oom_score_adj" && !detail.starts_with("canary"))
}

/// A record being filled live, with the limits it is judged against: what
/// the runner watches.
pub struct Live<'a> {
    pub record: &'a mut RunRecord,
    pub limits: &'a Limits,
}

impl Watch for Live<'_> {
    fn console(&mut self, line: &str) -> Option<KernelEvent> {
        self.record.ingest_console(line)
    }

    fn telemetry(&mut self, line: &str) -> Option<Telemetry> {
        self.record.ingest_telemetry_line(line)
    }

    fn booted(&self) -> bool {
        self.record.ready_t.is_some()
    }

    fn stop_early(&self) -> Option<String> {
        if !self.limits.early_verdict {
            return None;
        }
        match self.record.early_verdict(self.limits)? {
            // A panic's last lines still arrive; QEMU exits by itself
            // (panic=-1, -no-reboot) right after.
            (Verdict::Panic, _) => None,
            (_, why) => Some(why),
        }
    }
}
