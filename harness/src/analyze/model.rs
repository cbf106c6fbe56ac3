//! What `oomlab analyze` reports: incidents, victims, groups and loop
//! findings, as typed facts (their sentences are written by `render`).

use serde::Serialize;

use crate::events::kernel::Constraint;
use crate::events::supervisor::Supervisor;

/// Aggregate counts over all inputs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Incidents (OOM reports, or kill lines whose report was ratelimited).
    pub incidents: u64,
    /// `invoked oom-killer` headers (ratelimited by the kernel).
    pub oom_invocations: u64,
    /// `Kill process ... score N` selection lines (<= 5.0).
    pub chosen: u64,
    /// `Killed process` lines: the kills (never ratelimited).
    pub killed: u64,
    /// `Kill process ... sharing same memory` (also killed).
    pub killed_sharing_memory: u64,
    pub oom_group_sets: u64,
    pub reaped: u64,
    pub reap_failed: u64,
    pub no_killable: u64,
    pub victims_exiting: u64,
    pub panics: u64,
    pub task_table_rows: u64,
    pub would_have_killed: u64,
}

/// The task selected by `Kill process P (comm) score S` (<= 5.0).
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub pid: u32,
    pub name: String,
    pub score: Option<i64>,
    pub message: String,
}

/// A task that was signalled.
#[derive(Debug, Clone, Serialize)]
pub struct Victim {
    pub pid: u32,
    pub name: String,
    pub uid: Option<u32>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// From the matching `Kill process` line.
    pub score: Option<i64>,
    pub how: How,
    pub time: Option<String>,
    /// Was the pid in a task table printed before this OOM's own report?
    /// `None`: no such table.
    pub in_task_table: Option<bool>,
    /// Born during the OOM episode: absent from the episode's first task
    /// table (the earliest one printed before this kill, other than its own
    /// report's, within an hour) and newer than every process in it (pid
    /// order with wrap-around). `None`: no such table.
    pub respawned: Option<bool>,
    /// What the oom_reaper said about it, if anything.
    pub reaper: Option<Reaper>,
    /// The supervisor whose log says it started this process (after an
    /// earlier kill): a respawn proven in userspace.
    pub started_by: Option<Supervisor>,
    /// Its index among the kill records, if it was kept.
    #[serde(skip)]
    pub(super) kill_no: Option<usize>,
}

/// How a victim was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// `Killed process`: the victim of the OOM killer.
    Killed,
    /// `Kill process ... sharing same memory` (<= 5.0).
    SharingMemory,
    /// Killed with its whole cgroup (`memory.oom.group`).
    OomGroup,
}

/// What the oom_reaper printed about a victim. Its `--json` form is the
/// sentence `render` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaper {
    /// `reaped process`, with the anon-rss left when printed.
    Reaped { anon_rss_kb: Option<u64> },
    /// `unable to reap`.
    Unable,
}

/// One OOM report (or a ratelimited kill without one).
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub index: u64,
    pub input: String,
    /// Byte offset of its first line in the (decompressed) input.
    pub offset: u64,
    pub time: Option<String>,
    pub uptime_s: Option<f64>,
    pub header_printed: bool,
    pub invoking_task: Option<String>,
    pub gfp_mask: Option<String>,
    pub order: Option<i32>,
    pub invoking_oom_score_adj: Option<i32>,
    pub constraint: Constraint,
    /// memcg whose limit was hit (`oom_memcg=` / `limit of`).
    pub oom_memcg: Option<String>,
    /// memcg of the victim task (`task_memcg=` / `Task in`).
    pub task_memcg: Option<String>,
    pub memcg_usage_kb: Option<u64>,
    pub memcg_limit_kb: Option<u64>,
    pub task_table_rows: u64,
    pub chosen: Option<Chosen>,
    /// <= 5.0: the kernel chose one task and killed another (its child:
    /// the "sacrifice child" step, removed in 5.1 by commit bbbe48029720).
    /// `--json`: the sentence `render` writes for it.
    pub sacrificed_child: Option<ChildSacrifice>,
    pub victims: Vec<Victim>,
    /// Victims past the first 200 of this incident (counted only).
    pub victims_not_listed: u64,
    pub oom_group: Option<String>,
    pub no_killable: bool,
    /// `OOM victim P (comm) is already exiting`: nothing killed.
    pub victim_exiting: Option<Chosen>,
    pub panic: Option<String>,
    /// pid and uid of the 5.0+ `oom-kill:` summary line.
    #[serde(skip)]
    pub(super) summary_pid_uid: Option<(u32, Option<u32>)>,
    /// Kept in detail (within `max_incidents`), or only counted.
    #[serde(skip)]
    pub(super) kept: bool,
}

/// The kernel chose `chosen` and killed `victim`, its child, instead
/// (<= 5.0's `oom_kill_process()`: the chosen task's biggest child with
/// its own memory goes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSacrifice {
    pub chosen_pid: u32,
    pub chosen_name: String,
    pub score: Option<i64>,
    pub victim_pid: u32,
}

/// The process that most likely re-forks the victims.
#[derive(Debug, Clone, Serialize)]
pub struct MasterGuess {
    pub pid: u32,
    pub uid: u32,
    pub name: String,
    pub rss_pages: u64,
    pub total_vm_pages: u64,
}

/// Processes of the victims' name never chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Spared {
    pub uid: u32,
    pub count: usize,
    pub pids: Vec<u32>,
    pub max_rss_pages: u64,
    /// Why they were spared (`--json`: `why`, the sentence `render` writes).
    #[serde(rename = "why")]
    pub reason: SpareReason,
}

/// Why processes of the victims' name and another uid were never chosen.
/// Its `--json` form is the sentence `render` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpareReason {
    /// All of them OOM-immune: oom_score_adj -1000 (oom_adj -17).
    Immune,
    /// Root-owned and small, on a kernel whose `oom_badness()` discounts
    /// root ([`super::Era::has_root_bonus`]).
    RootDiscount {
        /// Their largest rss, in pages.
        max_rss_pages: u64,
        /// The victims' largest rss in a task table, in pages, if known.
        victims_rss_pages: Option<u64>,
        victims_uid: Option<u32>,
    },
    /// Smaller than the victims (badness is mostly rss).
    LowerBadness {
        max_rss_pages: u64,
        victims_rss_pages: u64,
    },
    /// The log does not say.
    Unknown,
}

/// Victims with the same (name, uid, memcg).
#[derive(Debug, Clone, Serialize)]
pub struct VictimGroup {
    pub name: String,
    pub uid: Option<u32>,
    pub memcg: Option<String>,
    pub kills: u64,
    pub distinct_pids: u64,
    pub respawned_kills: u64,
    pub in_table_kills: u64,
    /// Kills with no task table before them (cannot tell).
    pub unknown_kills: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub span_s: Option<f64>,
    pub kills_per_s: Option<f64>,
    /// Victim pids in kill order (first 40).
    pub pids: Vec<u32>,
    pub likely_master: Option<MasterGuess>,
    pub spared: Vec<Spared>,
    pub is_loop: bool,
    /// OOM episodes its kills fell in (kills less than 50 ms apart, or of
    /// one OOM report, are one episode).
    pub episodes: u64,
    /// Seconds from its last kill to the end of the log (`None`: the log
    /// gives no comparable time).
    pub tail_s: Option<f64>,
    /// The call on this group, and why (`--json`: the sentence `render`
    /// writes for it).
    pub call: GroupCall,
    /// What supervisors' logs say about its processes.
    pub supervisors: Vec<SupervisorEvidence>,
    /// Its processes alive in the first task table that lists any (its
    /// likely master left out): how many workers the master keeps.
    pub workers_in_table: Option<u64>,
    /// The median anon-rss of its victims when killed, kB.
    pub victim_anon_rss_kb: Option<u64>,
}

/// Which rule made a group a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopRule {
    /// Kills in two or more episodes, of processes born during the OOM
    /// episode (absent from its first task table, newer pids).
    TaskTable,
    /// Kills in two or more episodes, and a supervisor's log shows it
    /// respawning what was killed.
    Supervisor,
    /// A kill, and the supervisor's restart counter (systemd's) says it
    /// restarted what was killed again and again.
    RestartCounter,
    /// Kills of fresh pids in three or more episodes, going on to the end
    /// of the log; no task table or supervisor line to confirm a respawn.
    Sustained,
}

/// The call on one victim group.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupCall {
    Loop(LoopRule),
    /// One kill.
    Single,
    /// Several kills within one OOM episode: a memory.oom.group kill
    /// (`oom_group`: its cgroup) or several victims of one OOM.
    Burst {
        kills: u64,
        span_s: Option<f64>,
        oom_group: Option<String>,
    },
    /// Kills in several episodes, then nothing for `tail_s` until the log
    /// ends: it recovered.
    Stopped {
        episodes: u64,
        tail_s: f64,
    },
    /// Kills in several episodes, too few (or of old processes) to call a
    /// loop without a respawn seen.
    Unproven {
        episodes: u64,
    },
}

/// How long a supervisor took to respawn, over the respawns it logged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min_s: f64,
    pub median_s: f64,
    pub max_s: f64,
    pub count: u64,
    /// Measured on whole-second stamps (a 0 is "within the second").
    pub whole_seconds: bool,
}

/// Whether a supervisor waits longer after each death.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BackOff {
    /// Its delays (or restart counter) show none.
    None,
    /// Its delays grew from `first_s` to `last_s`.
    Grows { first_s: f64, last_s: f64 },
    /// Too few respawns to tell.
    Unknown,
}

/// What one supervisor's log says about one victim group.
#[derive(Debug, Clone, Serialize)]
pub struct SupervisorEvidence {
    pub supervisor: Supervisor,
    /// Its unit, pool, program or container, where it names one.
    pub name: Option<String>,
    /// Its lines reporting a death by signal that matched a kernel kill.
    pub deaths: u64,
    /// Its respawn or restart lines after those deaths.
    pub respawns: u64,
    /// Processes it started that the kernel killed later.
    pub started_then_killed: u64,
    /// Kill to respawn, where both have comparable times.
    pub delay: Option<Spread>,
    /// systemd's restart counter, the highest seen.
    pub restart_counter: Option<u32>,
    pub back_off: BackOff,
    /// It stopped restarting (systemd's start limit, supervisord's FATAL).
    pub gave_up: bool,
    /// Its own notices of an OOM kill (systemd, containerd, Docker).
    pub oom_notices: u64,
}

/// Lines mended before they could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Repair {
    /// A keyword in another case (`killed process`).
    KeywordCase,
    /// Spaces after a field's colon, odd units (`kb`).
    Fields,
    /// A timestamp cut off its line.
    SplitTimestamp,
    /// A long line hard-wrapped onto the next (a mail client, a terminal).
    WrappedLine,
    /// NUL bytes, colour sequences and other control characters.
    ControlChars,
}

/// How many read lines were mended, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Repairs {
    /// Lines mended (a line can need several repairs).
    pub lines: u64,
    pub keyword_case: u64,
    pub fields: u64,
    pub split_timestamp: u64,
    pub wrapped_line: u64,
    pub control_chars: u64,
}

impl Repairs {
    pub(super) fn add(&mut self, r: Repair) {
        match r {
            Repair::KeywordCase => self.keyword_case += 1,
            Repair::Fields => self.fields += 1,
            Repair::SplitTimestamp => self.split_timestamp += 1,
            Repair::WrappedLine => self.wrapped_line += 1,
            Repair::ControlChars => self.control_chars += 1,
        }
    }
}

/// An input that could not be read (or not to its end).
#[derive(Debug, Clone, Serialize)]
pub struct InputError {
    pub path: String,
    pub error: String,
    /// Bytes read before the error (what was read is analysed).
    pub bytes_read: u64,
}

/// A kill/respawn loop (or a suspected one).
#[derive(Debug, Clone, Serialize)]
pub struct LoopFinding {
    pub name: String,
    pub uid: Option<u32>,
    pub memcg: Option<String>,
    /// Confirmed by task tables (respawned pids); otherwise suspected from
    /// repeated kills of distinct pids with no table to compare against.
    pub confirmed: bool,
    pub kills: u64,
    pub respawned_kills: u64,
    pub kills_per_s: Option<f64>,
    pub span_s: Option<f64>,
    pub likely_master: Option<u32>,
    /// The rule that made it a loop.
    pub rule: LoopRule,
    /// OOM episodes its kills fell in.
    pub episodes: u64,
    /// Seconds from its last kill to the end of the log.
    pub tail_s: Option<f64>,
    /// The supervisors whose logs show the respawns.
    pub supervisors: Vec<Supervisor>,
    /// A supervisor stopped restarting it.
    pub ended_by: Option<Supervisor>,
    /// Distinct victim pids (the evidence of a suspected loop).
    #[serde(skip)]
    pub distinct_pids: u64,
    /// The likely master's rss, in pages.
    #[serde(skip)]
    pub likely_master_rss_pages: Option<u64>,
}

/// Something the reader of a report should know about the analysis
/// itself. Its `--json` form is the sentence `render` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Kills past the first `kept` were counted but not classified.
    KillsNotClassified { count: u64, kept: usize },
    /// Task-table rows past the first `kept` were not kept.
    RowsNotKept { count: u64, kept: usize },
    /// Kills but no task table: respawns cannot be confirmed.
    NoTaskTable,
    /// Selection lines with no `Killed process` line after them.
    SelectionsWithoutKill { count: u64 },
    /// Inputs that could not be read (or not to their end).
    InputsUnreadable { count: u64 },
    /// The kernel chose this task `times` times and killed one of its
    /// children instead each time (<= 5.0).
    ChildSacrificed {
        chosen_pid: u32,
        chosen_name: String,
        times: u64,
    },
    /// Supervisor lines about deaths by SIGKILL that matched no kernel kill
    /// (the kernel log does not cover their time, or they were not OOM
    /// kills).
    DeathsUnmatched { count: u64 },
    /// Kills a supervisor did itself (uWSGI harakiri, gunicorn timeout):
    /// not OOM kills.
    SelfKills {
        supervisor: Supervisor,
        count: u64,
        why: String,
    },
}

impl Incident {
    /// An incident with nothing known yet.
    pub(super) fn new(index: u64, input: &str, offset: u64) -> Incident {
        Incident {
            index,
            input: input.to_string(),
            offset,
            time: None,
            uptime_s: None,
            header_printed: false,
            invoking_task: None,
            gfp_mask: None,
            order: None,
            invoking_oom_score_adj: None,
            constraint: Constraint::Unknown,
            oom_memcg: None,
            task_memcg: None,
            memcg_usage_kb: None,
            memcg_limit_kb: None,
            task_table_rows: 0,
            chosen: None,
            sacrificed_child: None,
            victims: Vec::new(),
            victims_not_listed: 0,
            oom_group: None,
            no_killable: false,
            victim_exiting: None,
            panic: None,
            summary_pid_uid: None,
            kept: true,
        }
    }

    /// No victim yet (listed or only counted).
    pub(super) fn no_victims(&self) -> bool {
        self.victims.is_empty() && self.victims_not_listed == 0
    }
}
