//! From events to a verdict: livelock, recovered, no-oom, panic, hang or
//! boot-failure, with the evidence that decided it.
//!
//! [`RunRecord`] (record.rs) is fed line by line while the VM runs; through
//! [`Live`] it tells the runner when the guest is up and when the verdict
//! can no longer change. It is judged once at the end (judge.rs). The same
//! record can be rebuilt from a saved console log and telemetry file, which
//! is how the classifier's snapshot tests replay real runs.

use std::fmt;

use serde::{Deserialize, Serialize};

mod judge;
mod killers;
mod record;
pub mod ssh;

pub use record::{KillRecord, Live, RunRecord, Sacrifice, SetupStep, UserKill};
pub use ssh::{SshAttempt, SshEvidence, SshSetup};

/// Fewest kills of respawned workers before a loop can be called early.
const EARLY_LIVELOCK_MIN_KILLS: usize = 10;

/// Fewest kills of re-forked workers that make a loop at all: one could be
/// a replacement that was simply unlucky; two is the OOM killer coming back
/// for what the master re-forked.
const LIVELOCK_MIN_KILLS_OF_RESPAWNED: usize = 2;

/// The verdicts a run can end in; a scenario's `expect:` names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// OOM kills keep hitting respawned workers until the window closes.
    Livelock,
    /// At least one OOM kill, then a quiet stretch of `settle_s`.
    Recovered,
    /// No OOM kill at all.
    NoOom,
    /// The kernel panicked.
    Panic,
    /// Neither console nor telemetry progressed for `hang_s`.
    Hang,
    /// The payload never said `ready`.
    BootFailure,
    /// OOM kills, but neither a loop (kills of re-forked workers) nor a
    /// quiet stretch of `settle_s` was seen: the window was too short.
    Inconclusive,
    /// The guest stopped answering for `stall_s` or longer (the canary
    /// fell silent, or nobody could log in over SSH) and had not recovered
    /// when the window closed: the machine crawls, whether or not a
    /// kill/respawn loop spins underneath.
    Thrashing,
    /// A mitigation under test could not be applied by this kernel (its
    /// `setup` step failed): the run says nothing about it.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Livelock => "livelock",
            Verdict::Recovered => "recovered",
            Verdict::NoOom => "no-oom",
            Verdict::Panic => "panic",
            Verdict::Hang => "hang",
            Verdict::BootFailure => "boot-failure",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Thrashing => "thrashing",
            Verdict::NotApplicable => "n/a",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// `Killed process` lines: the kernel's OOM kills.
    pub oom_kills: usize,
    /// Kills by a userspace OOM killer in the guest (earlyoom, PSI killer).
    pub user_kills: usize,
    /// Kills per killer: `kernel`, `earlyoom`, `psi`.
    pub kills_by: Vec<(String, usize)>,
    /// Guest seconds from the first kill to the last kill or respawn, when
    /// the run ended quiet: how long the episode took to settle.
    pub recovery_s: Option<f64>,
    /// Share of the window with the full worker count alive.
    pub availability: Option<f64>,
    pub oom_chosen: usize,
    pub oom_invocations: usize,
    pub respawns: usize,
    /// Workers that exited on their own (status, or a signal other than
    /// SIGKILL): failed allocations, earlyoom's SIGTERM.
    pub worker_failures: usize,
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
    /// The canary's longest silence, seconds: its worst lateness, or the
    /// time since its last tick when the window closed, if longer.
    pub canary_silence_s: Option<f64>,
    /// The longest the guest stopped answering: the canary's silence or
    /// the longest SSH outage, whichever is longer.
    pub stall_s: Option<f64>,
    /// `pgmajfault` and `workingset_refault_file` growth over the run:
    /// program pages dropped and read back from the disk.
    pub major_faults: Option<u64>,
    pub file_refaults: Option<u64>,
    /// SSH logins from the host, when the scenario asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshEvidence>,
    pub agreement: Agreement,
    pub panic: Option<String>,
    pub victims: Vec<KillRecord>,
    /// The kernel chose one task and killed another (its child): <= 5.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_sacrifice: Option<ChildSacrifice>,
    pub notes: Vec<String>,
}

/// What the kernel did when it chose one task and killed another, told
/// about the task it chose most often.
#[derive(Debug, Clone, Serialize)]
pub struct ChildSacrifice {
    /// Kills of another task than the chosen one (all choices).
    pub kills: usize,
    pub chosen_pid: u32,
    pub chosen_name: String,
    /// `master`, `worker`, `canary`... as telemetry knows the pid; `other`.
    pub chosen_role: String,
    /// The badness score the kernel printed.
    pub score: Option<i64>,
    /// The first tasks killed in its stead.
    pub killed: Vec<u32>,
    /// One sentence, e.g. "chose the master (score 970), killed its child
    /// 50 instead".
    pub said: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// One sentence a person can read.
    pub why: String,
    pub evidence: Evidence,
}

#[cfg(test)]
mod tests;
