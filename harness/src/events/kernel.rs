//! Typed kernel-log events: the one parser shared by the live harness (QEMU
//! console) and `oomlab analyze` (real logs of any era).
//!
//! Two layers: [`split_prefix`] strips what userspace added in front of the
//! kernel's text (dmesg/syslog/journal timestamps, hostnames, `<6>` levels),
//! and [`parse_message`] turns the kernel's own text into a [`KernelEvent`].

use serde::Serialize;

/// Where a line's time came from. Only `Monotonic` is comparable with the
/// payload's telemetry clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Timestamp {
    /// `[  123.456789]`: seconds since boot (printk clock).
    Monotonic(f64),
    /// A wall-clock stamp as printed (syslog, journal, `dmesg -T`); kept as text.
    Wall(String),
}

/// A log line with userspace's prefix removed.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine<'a> {
    pub ts: Option<Timestamp>,
    /// syslog/journal hostname, where the prefix had one.
    pub host: Option<&'a str>,
    /// The kernel's own text, without the trailing newline/CR.
    pub msg: &'a str,
}

/// What constrained an OOM: the whole machine, a memory cgroup, a cpuset or a
/// mempolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    Global,
    Memcg,
    Cpuset,
    MemoryPolicy,
    /// `oom_kill_allocating_task` was set.
    AllocatingTask,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    pub pid: u32,
    pub uid: u32,
    pub tgid: u32,
    /// pages
    pub total_vm: u64,
    /// pages
    pub rss: u64,
    /// `oom_score_adj` (3.x+) or `oom_adj` (2.6.32 table), as printed.
    pub oom_adj: Option<i32>,
    pub name: String,
}

/// `Killed process ...`: the task that was actually signalled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Killed {
    /// Prefix on 5.1+ (`Out of memory`, `Memory cgroup out of memory`, ...).
    pub message: Option<String>,
    pub pid: u32,
    pub name: String,
    pub uid: Option<u32>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KernelEvent {
    /// `<task> invoked oom-killer: gfp_mask=..., order=N, oom_score_adj=N`
    OomInvoked {
        task: String,
        gfp_mask: Option<String>,
        order: Option<i32>,
        oom_score_adj: Option<i32>,
    },
    /// The task-table header; `columns` as printed (they changed by era).
    TaskTableHeader { columns: Vec<String> },
    TaskRow(TaskRow),
    /// <= 5.0: `<msg>: Kill process P (comm) score S or sacrifice child`
    /// (2.6.32 vanilla: `kill process ... or a child`). Selected, not yet killed.
    KillChosen {
        message: String,
        pid: u32,
        name: String,
        score: Option<i64>,
    },
    Killed(Killed),
    /// 5.0+ one-line summary `oom-kill:constraint=...`.
    OomSummary {
        constraint: Constraint,
        oom_memcg: Option<String>,
        task_memcg: Option<String>,
        task: String,
        pid: u32,
        uid: Option<u32>,
    },
    /// <5.0 memcg: `Task in X killed as a result of limit of Y`.
    MemcgTaskIn { task_memcg: String, limit_memcg: String },
    /// `memory: usage %llukB, limit %llukB, failcnt %lu`
    MemcgUsage { usage_kb: u64, limit_kb: u64, failcnt: u64 },
    /// `oom_reaper: reaped process P (comm), now anon-rss:...`
    Reaped { pid: u32, name: String, anon_rss_kb: Option<u64> },
    /// `Tasks in <path> are going to be killed due to memory.oom.group set`
    OomGroup { memcg: String },
    /// `Out of memory and no killable processes...`
    NoKillable,
    /// `OOM victim P (comm) is already exiting. Skip killing the task`
    VictimExiting { pid: u32, name: String },
    /// `Kernel panic - not syncing: <reason>`
    Panic { reason: String },
}

/// Strip userspace's prefix. Never fails: unknown prefixes leave `msg` as
/// the whole line.
pub fn split_prefix(line: &str) -> LogLine<'_> {
    let _ = line;
    todo!("filled by the parser work")
}

/// Parse the kernel's own text. `None` for lines that are not OOM-related.
pub fn parse_message(msg: &str) -> Option<KernelEvent> {
    let _ = msg;
    todo!("filled by the parser work")
}
