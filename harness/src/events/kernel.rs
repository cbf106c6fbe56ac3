//! Typed kernel-log events: the one parser shared by the live harness (QEMU
//! console) and `oomlab analyze` (real logs of any era).
//!
//! Two layers: [`split_prefix`] (module [`super::prefix`]) strips what
//! userspace added in front of the kernel's text (dmesg/syslog/journal
//! timestamps, hostnames, `<6>` levels), and [`parse_message`] turns the
//! kernel's own text into a [`KernelEvent`].
//!
//! Every kernel message the parser knows is one entry of [`MESSAGES`]: its
//! keywords, its parser and an example line. The fast-reject keyword set
//! ([`keywords`], [`anchors`], used by [`maybe_oom`], [`parse_message_with`]
//! and `analyze`'s input scan) is derived from that table, so a new message
//! is one new entry. Task-table rows (lines starting with `[`, which hold no
//! keyword) are read by [`parse_task_row`].

use serde::Serialize;

mod messages;
mod task_table;
#[cfg(test)]
mod tests;

pub use super::prefix::{month_number, split_prefix, LogLine, Timestamp};
pub use messages::constraint_from_message;
pub use task_table::{parse_task_row, parse_task_row_ref, RowLayout, TaskRowRef};

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
    /// The line ended inside the name (`Killed process 12 (ngi`).
    #[serde(skip)]
    pub name_cut: bool,
    /// Its fields were edited by a person (see [`Mended::fields`]).
    #[serde(skip)]
    pub fields_mended: bool,
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
    TaskTableHeader {
        columns: Vec<String>,
    },
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
    MemcgTaskIn {
        task_memcg: String,
        limit_memcg: String,
    },
    /// `memory: usage %llukB, limit %llukB, failcnt %lu`
    MemcgUsage {
        usage_kb: u64,
        limit_kb: u64,
        failcnt: u64,
    },
    /// `oom_reaper: reaped process P (comm), now anon-rss:...`
    Reaped {
        pid: u32,
        name: String,
        anon_rss_kb: Option<u64>,
    },
    /// `Tasks in <path> are going to be killed due to memory.oom.group set`
    OomGroup {
        memcg: String,
    },
    /// `Out of memory and no killable processes...`
    NoKillable,
    /// `OOM victim P (comm) is already exiting. Skip killing the task`
    VictimExiting {
        pid: u32,
        name: String,
    },
    /// `Kernel panic - not syncing: <reason>`
    Panic {
        reason: String,
    },
    /// `oom_reaper: unable to reap pid:P (comm)`
    ReapFailed {
        pid: u32,
        name: String,
    },
    /// 4.x memcg: `Memory limit reached of cgroup <path>`
    MemcgLimitReached {
        memcg: String,
    },
    /// <= 5.0: `Kill process P (comm) sharing same memory`: also SIGKILLed,
    /// with no `Killed process` line of its own.
    KillSharing {
        pid: u32,
        name: String,
    },
    /// `Rebooting in N seconds..`: a panic with `kernel.panic=N` reboots.
    Rebooting {
        after_s: u64,
    },
    /// RHEL 6 `vm.would_have_oomkilled`: `Would have killed process P (comm). But continuing instead.`
    WouldHaveKilled {
        pid: u32,
        name: String,
    },
}

// ---------------------------------------------------------------------------
// The messages
// ---------------------------------------------------------------------------

/// One kernel message the parser knows.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    /// Literal text that every line of this message holds (one of them is
    /// enough). A line holding none of them is never handed to `parse`, and
    /// the fast-reject keyword set is the union of all entries' keywords.
    pub keywords: &'static [&'static str],
    /// Parse a line (prefix already stripped) that holds one of the
    /// keywords. `None`: not this message after all (or too damaged to
    /// read); the next entry is tried.
    pub parse: fn(&str) -> Option<KernelEvent>,
    /// A line of this message as the kernel prints it (checked by a test:
    /// `parse` reads it, and no earlier entry takes it).
    pub example: &'static str,
}

/// Every kernel message the parser knows, in the order they are tried: the
/// first entry whose `parse` returns an event wins. Order matters where one
/// line can hold several keywords: a panic quotes the OOM message that
/// caused it, and "sharing same memory" is a `Kill process` line that is
/// not a selection.
///
/// The formats of each era are in `shared/notes/OOM-FORMATS.md`.
pub const MESSAGES: &[Message] = &[
    Message {
        keywords: &["Kernel panic"],
        parse: messages::panic,
        example: "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled",
    },
    Message {
        keywords: &["Would have killed process"],
        parse: messages::would_have_killed,
        example: "Would have killed process 3 (x). But continuing instead.",
    },
    Message {
        keywords: &["Killed process", "OOM killed process"],
        parse: messages::killed,
        example: "Out of memory: Killed process 77 (npm start) total-vm:10kB, anon-rss:9kB, file-rss:1kB, shmem-rss:0kB, UID:1001 pgtables:120kB oom_score_adj:-500",
    },
    Message {
        keywords: &["Kill process", "kill process"],
        parse: messages::kill_sharing,
        example: "Kill process 4 (y) sharing same memory",
    },
    Message {
        keywords: &["Kill process", "kill process"],
        parse: messages::kill_chosen,
        example: "Out of memory: Kill process 8356 (nginx) score 5 or sacrifice child",
    },
    Message {
        keywords: &["invoked oom-killer"],
        parse: messages::invoked,
        example: "nginx invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=0",
    },
    Message {
        keywords: &["oom-kill:"],
        parse: messages::summary,
        example: "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=abc,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=python3,pid=7,uid=0",
    },
    Message {
        keywords: &["oom_reaper:"],
        parse: messages::reaped,
        example: "oom_reaper: reaped process 99 (stress), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    },
    Message {
        keywords: &["oom_reaper:"],
        parse: messages::reap_failed,
        example: "oom_reaper: unable to reap pid:99 (stress)",
    },
    Message {
        keywords: &["memory.oom.group"],
        parse: messages::oom_group,
        example: "Tasks in /a/b are going to be killed due to memory.oom.group set",
    },
    Message {
        keywords: &["Task in "],
        parse: messages::memcg_task_in,
        example: "Task in /docker/abc killed as a result of limit of /docker",
    },
    Message {
        keywords: &["memory: usage"],
        parse: messages::memcg_usage,
        example: "memory: usage 524288kB, limit 524288kB, failcnt 1234",
    },
    Message {
        keywords: &["Memory limit reached"],
        parse: messages::memcg_limit_reached,
        example: "Memory limit reached of cgroup /foo",
    },
    Message {
        keywords: &["OOM victim"],
        parse: messages::victim_exiting,
        example: "Memory cgroup out of memory: OOM victim 5 (x y) is already exiting. Skip killing the task",
    },
    Message {
        keywords: &["Rebooting in"],
        parse: messages::rebooting,
        example: "Rebooting in 1 seconds..",
    },
    Message {
        keywords: &["no killable"],
        parse: messages::no_killable,
        example: "Out of memory and no killable processes...",
    },
    // The task table's header (its rows hold no keyword: see `parse_task_row`).
    Message {
        keywords: &["tgid"],
        parse: task_table::header,
        example: "[ pid ]   uid  tgid total_vm      rss cpu oom_adj oom_score_adj name",
    },
];

/// Lines holding one of these are never events, whatever else they hold:
/// the kernel's trailer that repeats a panic's reason.
const NOT_EVENTS: &[&str] = &["end Kernel panic - not syncing"];

/// The fast-reject keyword set: every entry's keywords, once each, in table
/// order. Every OOM-related message (other than bare task-table rows, which
/// start with `[`) holds at least one.
pub fn keywords() -> &'static [&'static str] {
    static KW: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KW.get_or_init(|| super::distinct(MESSAGES.iter().flat_map(|m| m.keywords)))
}

/// The shared matcher of [`keywords`]: the cheap rejection in
/// [`parse_message`]; `analyze` scans whole buffers with the same keywords.
pub fn anchors() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(keywords())
            .expect("fixed literal patterns always build")
    })
}

/// Cheap test: could `msg` be an OOM-related message? False means
/// [`parse_message`] would return `None`.
pub fn maybe_oom(msg: &str) -> bool {
    let t = msg.trim_start();
    t.starts_with('[') || anchors().is_match(msg) || table().loose.is_match(msg)
}

/// Does `msg` hold one of the keywords of [`MESSAGES`] (in any case)?
pub fn has_keyword(msg: &str) -> bool {
    anchors().is_match(msg) || table().loose.is_match(msg)
}

/// What had to be mended in a line before it could be read: the report
/// says so ([`parse_message_mended`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mended {
    /// A keyword in another case (`killed process`, `out of memory: kill
    /// process`): read as the kernel prints it.
    pub keyword_case: bool,
    /// Fields with spaces after their colon (`total-vm: 1234 kB`) or
    /// units in another case (`kb`).
    pub fields: bool,
}

/// The matchers the parser needs, built once from [`MESSAGES`].
struct Table {
    /// Every keyword (no keyword overlaps another in a line, so the
    /// leftmost matches are all of them); the SIMD searcher where the CPU
    /// has one, which reads a short line fastest.
    exact: aho_corasick::AhoCorasick,
    packed: Option<aho_corasick::packed::Searcher>,
    /// Keyword index -> the entries holding it, as a bit set over
    /// [`MESSAGES`].
    entries_of: Vec<u64>,
    /// The keywords in any ASCII case (only tried when the exact ones fail).
    loose: aho_corasick::AhoCorasick,
    /// The index of `Kernel panic` among the keywords.
    panic_keyword: Option<usize>,
}

fn table() -> &'static Table {
    static T: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let kw = keywords();
        let entries_of = kw
            .iter()
            .map(|k| {
                MESSAGES
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.keywords.contains(k))
                    .fold(0u64, |acc, (i, _)| acc | (1u64 << i))
            })
            .collect();
        let mut pb = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder();
        pb.extend(kw);
        Table {
            packed: pb.build(),
            panic_keyword: kw.iter().position(|k| *k == "Kernel panic"),
            exact: aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(kw)
                .expect("fixed literal patterns always build"),
            entries_of,
            loose: aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(kw)
                .expect("fixed literal patterns always build"),
        }
    })
}

/// Parse the kernel's own text. `None` for lines that are not OOM-related.
///
/// Task-table rows are parsed by their number of columns; use [`Parser`] to
/// parse them against the most recent header instead.
pub fn parse_message(msg: &str) -> Option<KernelEvent> {
    parse_message_with(msg, None)
}

/// [`parse_message`] with the column list of the current task-table header.
pub fn parse_message_with(msg: &str, columns: Option<&[String]>) -> Option<KernelEvent> {
    parse_message_mended(msg, columns).map(|(ev, _)| ev)
}

/// [`parse_message_with`], which also reads lines a person edited: a
/// keyword in another case, spaces after a field's colon, `kb` units. The
/// exact forms are tried first; [`Mended`] says what had to be mended.
pub fn parse_message_mended(
    msg: &str,
    columns: Option<&[String]>,
) -> Option<(KernelEvent, Mended)> {
    read_message(msg, columns).ok()
}

/// [`parse_message_mended`], which also tells a line that holds a keyword
/// (in any case) but reads as no message (`Err(true)`: cut short,
/// damaged) from one that holds none (`Err(false)`).
pub fn read_message(msg: &str, columns: Option<&[String]>) -> Result<(KernelEvent, Mended), bool> {
    if msg.trim_ascii_start().starts_with('[') {
        if let Some(ev) = task_table::header(msg)
            .or_else(|| parse_task_row(msg, columns).map(KernelEvent::TaskRow))
        {
            return Ok((ev, Mended::default()));
        }
    }
    let (ev, keyword) = parse_exact(msg);
    if let Some(ev) = ev {
        let fields = matches!(&ev, KernelEvent::Killed(k) if k.fields_mended);
        return Ok((
            ev,
            Mended {
                keyword_case: false,
                fields,
            },
        ));
    }
    // A keyword in another case: read it as the kernel prints it.
    let t = table();
    let Some(m) = t.loose.find(msg) else {
        return Err(keyword);
    };
    let Some(kw) = keywords().get(m.pattern().as_usize()).copied() else {
        return Err(true);
    };
    if msg.get(m.range()) == Some(kw) {
        return Err(true);
    }
    let (Some(a), Some(b)) = (msg.get(..m.start()), msg.get(m.end()..)) else {
        return Err(true);
    };
    let fixed = format!("{a}{kw}{b}");
    match parse_exact(&fixed).0 {
        Some(ev) => {
            let fields = matches!(&ev, KernelEvent::Killed(k) if k.fields_mended);
            Ok((
                ev,
                Mended {
                    keyword_case: true,
                    fields,
                },
            ))
        }
        None => Err(true),
    }
}

/// The entries whose keywords `msg` holds, tried in table order; and
/// whether it held a keyword at all.
fn parse_exact(msg: &str) -> (Option<KernelEvent>, bool) {
    let t = table();
    let mut entries = 0u64;
    let mut panic_word = false;
    let mut seen = |k: usize| {
        entries |= t.entries_of.get(k).copied().unwrap_or(0);
        panic_word |= Some(k) == t.panic_keyword;
    };
    match &t.packed {
        Some(p) => p.find_iter(msg).for_each(|m| seen(m.pattern().as_usize())),
        None => t
            .exact
            .find_iter(msg)
            .for_each(|m| seen(m.pattern().as_usize())),
    }
    // the panic trailer quotes the panic: checked only where one is named
    if entries == 0 || (panic_word && NOT_EVENTS.iter().any(|s| msg.contains(s))) {
        return (None, entries != 0);
    }
    let ev = MESSAGES
        .iter()
        .enumerate()
        .filter(|(i, _)| entries & (1u64 << i) != 0)
        .find_map(|(_, m)| (m.parse)(msg));
    (ev, true)
}

/// Stateful wrapper over [`parse_message`]: remembers the last task-table
/// header so rows are read with that era's columns.
#[derive(Debug, Default, Clone)]
pub struct Parser {
    columns: Option<Vec<String>>,
    layout: Option<RowLayout>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current header's columns, if one was seen.
    pub fn columns(&self) -> Option<&[String]> {
        self.columns.as_deref()
    }

    /// Parse one message (prefix already stripped).
    pub fn parse(&mut self, msg: &str) -> Option<KernelEvent> {
        self.parse_mended(msg).map(|(ev, _)| ev)
    }

    /// [`Parser::parse`], saying what had to be mended
    /// ([`parse_message_mended`]).
    pub fn parse_mended(&mut self, msg: &str) -> Option<(KernelEvent, Mended)> {
        self.read(msg).ok()
    }

    /// [`read_message`] with the current header's columns.
    pub fn read(&mut self, msg: &str) -> Result<(KernelEvent, Mended), bool> {
        let (ev, mended) = read_message(msg, self.columns.as_deref())?;
        if let KernelEvent::TaskTableHeader { columns } = &ev {
            self.layout = Some(RowLayout::of(columns));
            self.columns = Some(columns.clone());
        }
        Ok((ev, mended))
    }

    /// A task-table row (not a header), read with the last header's
    /// columns, its name borrowed: the fast path for the many rows of a
    /// report.
    pub fn row<'a>(&self, msg: &'a str) -> Option<TaskRowRef<'a>> {
        parse_task_row_ref(msg, self.layout.as_ref())
    }

    /// Strip the prefix and parse a whole raw line.
    pub fn parse_line<'a>(&mut self, raw: &'a str) -> (LogLine<'a>, Option<KernelEvent>) {
        let l = split_prefix(raw);
        let ev = self.parse(l.msg);
        (l, ev)
    }
}
