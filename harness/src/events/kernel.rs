//! Typed kernel-log events: the one parser shared by the live harness (QEMU
//! console) and `oomlab analyze` (real logs of any era).
//!
//! Two layers: [`split_prefix`] (module [`super::prefix`]) strips what
//! userspace added in front of the kernel's text (dmesg/syslog/journal
//! timestamps, hostnames, `<6>` levels), and [`parse_message`] turns the
//! kernel's own text into a [`KernelEvent`].

use serde::Serialize;

pub use super::prefix::{month_number, split_prefix, LogLine, Timestamp};

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
    /// RHEL 6 `vm.would_have_oomkilled`: `Would have killed process P (comm). But continuing instead.`
    WouldHaveKilled {
        pid: u32,
        name: String,
    },
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// Substrings of which every OOM-related message (other than bare task-table
/// rows, which start with `[`) contains at least one. Used for the cheap
/// rejection in [`parse_message`] and by `analyze` to scan whole buffers.
pub const ANCHORS: &[&str] = &[
    "illed process", // Killed process, OOM killed process
    "ill process",   // Kill process, kill process
    "invoked oom-killer",
    "oom-kill:",
    "oom_reaper:",
    "memory.oom.group",
    "no killable",
    "OOM victim",
    "Kernel panic",
    "Task in ",
    "memory: usage",
    "tgid",
    "Memory limit reached",
    "Would have killed",
];

fn anchor_matcher() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(ANCHORS)
            .expect("fixed literal patterns always build")
    })
}

/// The shared multi-anchor matcher (see [`ANCHORS`]).
pub fn anchors() -> &'static aho_corasick::AhoCorasick {
    anchor_matcher()
}

/// Cheap test: could `msg` be an OOM-related message? False means
/// [`parse_message`] would return `None`.
pub fn maybe_oom(msg: &str) -> bool {
    let t = msg.trim_start();
    t.starts_with('[') || anchor_matcher().is_match(msg)
}

fn leading_u32(s: &str) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let v = s.get(..n)?.parse().ok()?;
    Some((v, s.get(n..)?))
}

fn leading_u64(s: &str) -> Option<u64> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s.get(..n)?.parse().ok()
}

fn leading_i64(s: &str) -> Option<i64> {
    let neg = s.starts_with('-');
    let body = if neg { s.get(1..)? } else { s };
    let n = body.bytes().take_while(u8::is_ascii_digit).count();
    let v: i64 = body.get(..n)?.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// `key<digits>` anywhere in `s`.
fn field_u64(s: &str, key: &str) -> Option<u64> {
    let i = s.find(key)?;
    leading_u64(s.get(i + key.len()..)?)
}

fn field_i64(s: &str, key: &str) -> Option<i64> {
    let i = s.find(key)?;
    leading_i64(s.get(i + key.len()..)?)
}

fn field_i32(s: &str, key: &str) -> Option<i32> {
    field_i64(s, key).and_then(|v| i32::try_from(v).ok())
}

fn field_u32(s: &str, key: &str) -> Option<u32> {
    field_u64(s, key).and_then(|v| u32::try_from(v).ok())
}

/// Split `comm) <trailer>` at the `)` that is followed by one of the known
/// trailers (comm may itself contain `)`). `at_end` also accepts a `)` (or
/// `).`) that ends the text. Falls back to the last `)` when `lenient`.
fn split_comm<'a>(
    s: &'a str,
    trailers: &[&str],
    at_end: bool,
    lenient: bool,
) -> Option<(&'a str, &'a str)> {
    let mut last = None;
    for pos in memchr::memchr_iter(b')', s.as_bytes()) {
        let (Some(name), Some(rest)) = (s.get(..pos), s.get(pos + 1..)) else {
            continue;
        };
        if trailers.iter().any(|t| rest.starts_with(t)) {
            return Some((name, rest));
        }
        let r = rest.trim_end();
        if at_end && (r.is_empty() || r == ".") {
            return Some((name, rest));
        }
        last = Some((name, rest));
    }
    if lenient {
        // Truncated line: `Killed process 12 (ngi` -> the partial name.
        return last.or(Some((s.trim_end(), "")));
    }
    None
}

/// The `<msg>: ` in front of a marker, without the colon, if any.
fn message_before(before: &str) -> Option<String> {
    let m = before.trim_end();
    let m = m.strip_suffix(':').unwrap_or(m).trim();
    if m.is_empty() {
        None
    } else {
        Some(m.to_string())
    }
}

/// Classify the `%s` message of a kill line (<= 5.0 selection line, 5.1+
/// killed line) into a constraint.
pub fn constraint_from_message(message: &str) -> Constraint {
    let m = message.to_ascii_lowercase();
    if m.contains("memory cgroup") {
        Constraint::Memcg
    } else if m.contains("oom_kill_allocating_task") {
        Constraint::AllocatingTask
    } else if m.contains("mpol_bind") || m.contains("memory policy") {
        Constraint::MemoryPolicy
    } else if m.contains("cpuset") {
        Constraint::Cpuset
    } else if m.contains("out of memory") {
        Constraint::Global
    } else {
        Constraint::Unknown
    }
}

fn parse_killed(msg: &str) -> Option<KernelEvent> {
    // OpenVZ RHEL6: `%s: OOM killed process %d (%s) score %d vm:%lukB, rss:%lukB, swap:%lukB`
    let (i, marker) = if let Some(i) = msg.find("OOM killed process ") {
        (i, "OOM killed process ")
    } else {
        (msg.find("Killed process ")?, "Killed process ")
    };
    let message = message_before(msg.get(..i)?);
    let after = msg.get(i + marker.len()..)?;
    let (pid, mut rest) = leading_u32(after)?;
    // Linux-VServer RHEL6 builds: `%d:#%u, UID ...`
    if let Some(r) = rest.strip_prefix(":#") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        rest = r.get(n..)?;
    }
    let mut uid = None;
    let comm_and_tail;
    if let Some(r) = rest.strip_prefix(", UID ") {
        // RHEL 6: `Killed process %d, UID %d, (%s) total-vm:...`
        let (u, r) = leading_u32(r)?;
        uid = Some(u);
        let r = r.trim_start_matches([',', ' ']);
        comm_and_tail = r.strip_prefix('(')?;
    } else {
        comm_and_tail = rest.strip_prefix(" (")?;
    }
    let (name, tail) = split_comm(
        comm_and_tail,
        &[" total-vm:", ", UID ", " score ", " vm:", ", total-vm:"],
        true,
        true,
    )?;
    if uid.is_none() {
        // RHEL 7: `(%s), UID %d, total-vm`; 5.4+: `, UID:%u pgtables`
        uid = tail
            .strip_prefix(", UID ")
            .and_then(leading_u32)
            .map(|x| x.0)
            .or_else(|| field_u32(tail, "UID:"));
    }
    let total_vm_kb = field_u64(tail, "total-vm:").or_else(|| field_u64(tail, " vm:"));
    Some(KernelEvent::Killed(Killed {
        message,
        pid,
        name: name.to_string(),
        uid,
        total_vm_kb,
        anon_rss_kb: field_u64(tail, "anon-rss:"),
        file_rss_kb: field_u64(tail, "file-rss:"),
        shmem_rss_kb: field_u64(tail, "shmem-rss:"),
        pgtables_kb: field_u64(tail, "pgtables:"),
        oom_score_adj: field_i32(tail, "oom_score_adj:"),
    }))
}

fn parse_kill_chosen(msg: &str) -> Option<KernelEvent> {
    let (i, marker) = if let Some(i) = msg.find("Kill process ") {
        (i, "Kill process ")
    } else {
        (msg.find("kill process ")?, "kill process ")
    };
    let before = msg.get(..i)?;
    let after = msg.get(i + marker.len()..)?;
    let (pid, rest) = leading_u32(after)?;
    let comm = rest.strip_prefix(" (")?;
    let (name, tail) = split_comm(
        comm,
        &[" score ", " sharing same memory", " or ", " and children"],
        true,
        true,
    )?;
    if tail.starts_with(" sharing same memory") {
        return Some(KernelEvent::KillSharing {
            pid,
            name: name.to_string(),
        });
    }
    Some(KernelEvent::KillChosen {
        message: message_before(before).unwrap_or_default(),
        pid,
        name: name.to_string(),
        score: field_i64(tail, " score "),
    })
}

fn pid_comm_after<'a>(
    msg: &'a str,
    marker: &str,
    trailers: &[&str],
) -> Option<(u32, &'a str, &'a str)> {
    let i = msg.find(marker)?;
    let after = msg.get(i + marker.len()..)?;
    let (pid, rest) = leading_u32(after)?;
    let comm = rest.strip_prefix(" (")?;
    let (name, tail) = split_comm(comm, trailers, true, true)?;
    Some((pid, name, tail))
}

fn parse_invoked(msg: &str) -> Option<KernelEvent> {
    let i = msg.find(" invoked oom-killer")?;
    let task = msg.get(..i)?.trim().to_string();
    let rest = msg.get(i..)?;
    let gfp_mask = rest.find("gfp_mask=").and_then(|j| {
        let v = rest.get(j + "gfp_mask=".len()..)?;
        let end = v.find([',', ' ']).unwrap_or(v.len());
        v.get(..end).map(str::to_string)
    });
    Some(KernelEvent::OomInvoked {
        task,
        gfp_mask,
        order: field_i32(rest, "order="),
        oom_score_adj: field_i32(rest, "oom_score_adj="),
    })
}

fn parse_summary(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("oom-kill:")?;
    let s = msg.get(i + "oom-kill:".len()..)?.trim_end();
    let constraint = match s
        .strip_prefix("constraint=")
        .map(|r| r.split(',').next().unwrap_or(""))
    {
        Some("CONSTRAINT_NONE") => Constraint::Global,
        Some("CONSTRAINT_CPUSET") => Constraint::Cpuset,
        Some("CONSTRAINT_MEMORY_POLICY") => Constraint::MemoryPolicy,
        Some("CONSTRAINT_MEMCG") => Constraint::Memcg,
        _ => Constraint::Unknown,
    };
    // Parse from the end: `,task=%s,pid=%d,uid=%d`.
    let (head, uid) = match s.rfind(",uid=") {
        Some(j) => (
            s.get(..j)?,
            s.get(j + 5..).and_then(|u| leading_u32(u)).map(|x| x.0),
        ),
        None => (s, None),
    };
    let j = head.rfind(",pid=")?;
    let pid = leading_u32(head.get(j + 5..)?)?.0;
    let head = head.get(..j)?;
    let tm = head.find(",task_memcg=");
    let search_from = tm.map(|t| t + 1).unwrap_or(0);
    // Leftmost `,task=` after task_memcg whose comm fits TASK_COMM_LEN
    // (both the path and the comm may contain `,task=`).
    let mut task_at = None;
    let mut from = search_from;
    while let Some(k) = head.get(from..).and_then(|h| h.find(",task=")) {
        let at = from + k;
        let comm_len = head.len().saturating_sub(at + 6);
        if task_at.is_none() || comm_len <= 15 {
            task_at = Some(at);
            if comm_len <= 15 {
                break;
            }
        }
        from = at + 1;
    }
    let task_at = task_at?;
    let task = head.get(task_at + 6..)?.to_string();
    let task_memcg = tm
        .and_then(|t| head.get(t + ",task_memcg=".len()..task_at))
        .map(str::to_string);
    let oom_memcg = head.find(",oom_memcg=").and_then(|o| {
        let v = head.get(o + ",oom_memcg=".len()..)?;
        let end = v.find(",task_memcg=").unwrap_or(v.len());
        v.get(..end).map(str::to_string)
    });
    Some(KernelEvent::OomSummary {
        constraint,
        oom_memcg,
        task_memcg,
        task,
        pid,
        uid,
    })
}

/// Task-table header columns, e.g. `["pid", "uid", "tgid", "total_vm",
/// "rss", "cpu", "oom_adj", "oom_score_adj", "name"]`.
fn parse_table_header(msg: &str) -> Option<Vec<String>> {
    let t = msg.trim_start().strip_prefix('[')?;
    let close = t.find(']')?;
    if t.get(..close)?.trim() != "pid" {
        return None;
    }
    let mut cols = vec!["pid".to_string()];
    cols.extend(
        t.get(close + 1..)?
            .split_ascii_whitespace()
            .map(str::to_string),
    );
    if cols.len() < 4 || cols.last().map(String::as_str) != Some("name") {
        return None;
    }
    Some(cols)
}

/// Parse a task-table row. `columns` is the most recent header's column list
/// (including `pid` and `name`); without it, or when the row does not fit it,
/// the era is guessed from the number of numeric columns.
pub fn parse_task_row(msg: &str, columns: Option<&[String]>) -> Option<TaskRow> {
    let t = msg.trim_start().strip_prefix('[')?;
    let close = t.find(']')?;
    let pid: u32 = t.get(..close)?.trim().parse().ok()?;
    let body = t.get(close + 1..)?;
    // Up to 12 leading integers, with their end offsets.
    let mut nums: Vec<(i64, usize)> = Vec::with_capacity(12);
    let mut pos = 0usize;
    let bytes = body.as_bytes();
    while nums.len() < 12 {
        let start = pos
            + bytes
                .get(pos..)?
                .iter()
                .take_while(|c| **c == b' ' || **c == b'\t')
                .count();
        let rest = body.get(start..)?;
        let tok_len = rest
            .bytes()
            .take_while(|c| *c != b' ' && *c != b'\t')
            .count();
        if tok_len == 0 {
            break;
        }
        let Some(v) = rest.get(..tok_len).and_then(|x| x.parse::<i64>().ok()) else {
            break;
        };
        nums.push((v, start + tok_len));
        pos = start + tok_len;
    }
    let name_of = |k: usize| -> String {
        let end = match k.checked_sub(1).and_then(|i| nums.get(i)) {
            Some((_, e)) => *e,
            None => 0,
        };
        let r = body.get(end..).unwrap_or("");
        r.strip_prefix(' ')
            .unwrap_or(r)
            .trim_start()
            .trim_end()
            .to_string()
    };
    let u = |i: usize| nums.get(i).and_then(|(v, _)| u64::try_from(*v).ok());
    let adj = |i: usize| nums.get(i).and_then(|(v, _)| i32::try_from(*v).ok());
    // With a header: columns after pid, before name.
    if let Some(cols) = columns {
        let want = cols.len().saturating_sub(2);
        if want >= 4 && nums.len() >= want {
            let idx = |c: &str| {
                cols.iter()
                    .position(|x| x == c)
                    .and_then(|i| i.checked_sub(1))
            };
            let get = |c: &str| idx(c).and_then(u);
            let adj_i = idx("oom_score_adj").or_else(|| idx("oom_adj"));
            // numbers beyond `want` belong to the name (a numeric comm)
            return Some(TaskRow {
                pid,
                uid: u32::try_from(get("uid")?).ok()?,
                tgid: u32::try_from(get("tgid")?).ok()?,
                total_vm: get("total_vm")?,
                rss: get("rss")?,
                oom_adj: adj_i.and_then(adj),
                name: name_of(want),
            });
        }
    }
    let k = nums.len();
    if k < 4 {
        return None;
    }
    // 6: 2.6.32 (cpu oom_adj); 7: RHEL6/3.4, 3.10, 4.15+; 8: 4.4-4.14;
    // 10: 6.8+. The last numeric column is the adjustment in all of them.
    let oom_adj = if k >= 6 { adj(k - 1) } else { None };
    Some(TaskRow {
        pid,
        uid: u32::try_from(u(0)?).ok()?,
        tgid: u32::try_from(u(1)?).ok()?,
        total_vm: u(2)?,
        rss: u(3)?,
        oom_adj,
        name: name_of(k),
    })
}

fn parse_bracketed(msg: &str, columns: Option<&[String]>) -> Option<KernelEvent> {
    if let Some(cols) = parse_table_header(msg) {
        return Some(KernelEvent::TaskTableHeader { columns: cols });
    }
    parse_task_row(msg, columns).map(KernelEvent::TaskRow)
}

fn parse_anchored(msg: &str) -> Option<KernelEvent> {
    if let Some(i) = msg.find("Kernel panic - not syncing") {
        let r = msg.get(i + "Kernel panic - not syncing".len()..)?;
        let r = r.strip_prefix(':').unwrap_or(r).trim();
        if msg.get(..i).is_some_and(|b| b.ends_with("end ")) {
            return None; // `---[ end Kernel panic ...]---` trailer
        }
        return Some(KernelEvent::Panic {
            reason: r.to_string(),
        });
    }
    if msg.contains("illed process") {
        if let Some(p) = msg.find("Would have killed process ") {
            let (pid, name, _) =
                pid_comm_after(msg.get(p..)?, "Would have killed process ", &[". But"])?;
            return Some(KernelEvent::WouldHaveKilled {
                pid,
                name: name.to_string(),
            });
        }
        if let Some(ev) = parse_killed(msg) {
            return Some(ev);
        }
    }
    if msg.contains("ill process ") {
        if let Some(ev) = parse_kill_chosen(msg) {
            return Some(ev);
        }
    }
    if msg.contains(" invoked oom-killer") {
        return parse_invoked(msg);
    }
    if msg.contains("oom-kill:") {
        return parse_summary(msg);
    }
    if msg.contains("oom_reaper:") {
        if msg.contains("reaped process ") {
            let (pid, name, tail) = pid_comm_after(msg, "reaped process ", &[", now", ","])?;
            return Some(KernelEvent::Reaped {
                pid,
                name: name.to_string(),
                anon_rss_kb: field_u64(tail, "anon-rss:"),
            });
        }
        if msg.contains("unable to reap pid:") {
            let (pid, name, _) = pid_comm_after(msg, "unable to reap pid:", &[])?;
            return Some(KernelEvent::ReapFailed {
                pid,
                name: name.to_string(),
            });
        }
        return None;
    }
    if let Some(i) = msg.find("Tasks in ") {
        let r = msg.get(i + "Tasks in ".len()..)?;
        let j = r.find(" are going to be killed due to memory.oom.group")?;
        return Some(KernelEvent::OomGroup {
            memcg: r.get(..j)?.to_string(),
        });
    }
    if let Some(i) = msg.find("Task in ") {
        let r = msg.get(i + "Task in ".len()..)?;
        let (a, b) = r.split_once(" killed as a result of limit of ")?;
        return Some(KernelEvent::MemcgTaskIn {
            task_memcg: a.to_string(),
            limit_memcg: b.trim_end().to_string(),
        });
    }
    if let Some(i) = msg.find("memory: usage ") {
        let before = msg.get(..i)?;
        if before.ends_with('+') || before.ends_with("k") {
            return None; // memory+swap:, kmem:
        }
        let r = msg.get(i..)?;
        return Some(KernelEvent::MemcgUsage {
            usage_kb: field_u64(r, "usage ")?,
            limit_kb: field_u64(r, "limit ")?,
            failcnt: field_u64(r, "failcnt ").unwrap_or(0),
        });
    }
    if let Some(i) = msg.find("Memory limit reached of cgroup ") {
        return Some(KernelEvent::MemcgLimitReached {
            memcg: msg
                .get(i + "Memory limit reached of cgroup ".len()..)?
                .trim_end()
                .to_string(),
        });
    }
    if msg.contains("OOM victim ") && msg.contains("already exiting") {
        let (pid, name, _) = pid_comm_after(msg, "OOM victim ", &[" is already exiting"])?;
        return Some(KernelEvent::VictimExiting {
            pid,
            name: name.to_string(),
        });
    }
    if msg.contains("Out of memory and no killable processes") {
        return Some(KernelEvent::NoKillable);
    }
    None
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
    if msg.trim_start().starts_with('[') {
        if let Some(ev) = parse_bracketed(msg, columns) {
            return Some(ev);
        }
    }
    if !anchor_matcher().is_match(msg) {
        return None;
    }
    parse_anchored(msg)
}

/// Stateful wrapper over [`parse_message`]: remembers the last task-table
/// header so rows are read with that era's columns.
#[derive(Debug, Default, Clone)]
pub struct Parser {
    columns: Option<Vec<String>>,
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
        let ev = parse_message_with(msg, self.columns.as_deref())?;
        if let KernelEvent::TaskTableHeader { columns } = &ev {
            self.columns = Some(columns.clone());
        }
        Some(ev)
    }

    /// Strip the prefix and parse a whole raw line.
    pub fn parse_line<'a>(&mut self, raw: &'a str) -> (LogLine<'a>, Option<KernelEvent>) {
        let l = split_prefix(raw);
        let ev = self.parse(l.msg);
        (l, ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> Option<KernelEvent> {
        parse_message(split_prefix(line).msg)
    }

    fn killed(line: &str) -> Killed {
        match ev(line) {
            Some(KernelEvent::Killed(k)) => k,
            other => panic!("not Killed: {other:?} for {line}"),
        }
    }

    #[test]
    fn killed_2_6_32_vanilla_and_e0() {
        let k = killed("Killed process 2592 (mysql)");
        assert_eq!(
            (k.pid, k.name.as_str(), k.total_vm_kb),
            (2592, "mysql", None)
        );
        let k = killed("Out of Memory: Killed process 2592 (mysql).");
        assert_eq!((k.pid, k.name.as_str()), (2592, "mysql"));
        assert_eq!(k.message.as_deref(), Some("Out of Memory"));
    }

    #[test]
    fn killed_rhel6() {
        let k = killed("Killed process 8356, UID 2188, (nginx) total-vm:117136kB, anon-rss:45388kB, file-rss:4kB");
        assert_eq!(k.pid, 8356);
        assert_eq!(k.uid, Some(2188));
        assert_eq!(k.name, "nginx");
        assert_eq!(k.total_vm_kb, Some(117136));
        assert_eq!(k.anon_rss_kb, Some(45388));
        assert_eq!(k.file_rss_kb, Some(4));
        let k = killed(
            "Killed process 1153:#0, UID 0, (sniproxy) total-vm:1kB, anon-rss:2kB, file-rss:3kB",
        );
        assert_eq!((k.pid, k.uid, k.name.as_str()), (1153, Some(0), "sniproxy"));
    }

    #[test]
    fn killed_3x_4x_rhel7() {
        let k = killed("Killed process 1234 (java) total-vm:1000kB, anon-rss:900kB, file-rss:10kB");
        assert_eq!((k.pid, k.uid, k.shmem_rss_kb), (1234, None, None));
        let k = killed("Killed process 1234 (java) total-vm:1000kB, anon-rss:900kB, file-rss:10kB, shmem-rss:5kB");
        assert_eq!(k.shmem_rss_kb, Some(5));
        let k = killed("Killed process 4321 (GC Thread#9), UID 1000, total-vm:10kB, anon-rss:9kB, file-rss:1kB, shmem-rss:0kB");
        assert_eq!(
            (k.pid, k.uid, k.name.as_str()),
            (4321, Some(1000), "GC Thread#9")
        );
    }

    #[test]
    fn killed_5x_prefix_uid() {
        let k = killed("Out of memory: Killed process 77 (npm start) total-vm:10kB, anon-rss:9kB, file-rss:1kB, shmem-rss:0kB, UID:1001 pgtables:120kB oom_score_adj:-500");
        assert_eq!(k.message.as_deref(), Some("Out of memory"));
        assert_eq!(
            (k.pid, k.name.as_str(), k.uid),
            (77, "npm start", Some(1001))
        );
        assert_eq!((k.pgtables_kb, k.oom_score_adj), (Some(120), Some(-500)));
        let k = killed("Memory cgroup out of memory: Killed process 5 ((resolved)) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB");
        assert_eq!(k.name, "(resolved)");
        let k = killed("Out of memory: Killed process 6 (a) total-vm:x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:1kB oom_score_adj:0");
        assert_eq!(k.name, "a");
        let k = killed("Out of memory: Killed process 9 (runc:[1:CHILD]) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0");
        assert_eq!(k.name, "runc:[1:CHILD]");
    }

    #[test]
    fn killed_openvz_and_truncated() {
        let k = killed("OOM killed process 12 (httpd) score 0 vm:100kB, rss:50kB, swap:0kB");
        assert_eq!(
            (k.pid, k.name.as_str(), k.total_vm_kb),
            (12, "httpd", Some(100))
        );
        let k = killed("Killed process 12 (ngi");
        assert_eq!((k.pid, k.name.as_str()), (12, "ngi"));
        assert!(ev("Killed process (x)").is_none());
    }

    #[test]
    fn chosen_lines() {
        match ev("Out of memory: Kill process 8356 (nginx) score 5 or sacrifice child") {
            Some(KernelEvent::KillChosen {
                message,
                pid,
                name,
                score,
            }) => {
                assert_eq!(
                    (message.as_str(), pid, name.as_str(), score),
                    ("Out of memory", 8356, "nginx", Some(5))
                );
            }
            o => panic!("{o:?}"),
        }
        match ev("Out of memory: kill process 10 (a b) score 300 or a child") {
            Some(KernelEvent::KillChosen {
                pid, name, score, ..
            }) => assert_eq!((pid, name.as_str(), score), (10, "a b", Some(300))),
            o => panic!("{o:?}"),
        }
        match ev("Memory cgroup out of memory: Kill process 3 (x) score 1000 or sacrifice child") {
            Some(KernelEvent::KillChosen { message, .. }) => {
                assert_eq!(constraint_from_message(&message), Constraint::Memcg)
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            ev("Kill process 4 (y) sharing same memory"),
            Some(KernelEvent::KillSharing {
                pid: 4,
                name: "y".into()
            })
        );
    }

    #[test]
    fn invoked_header_eras() {
        let cases = [
            ("nginx invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=0", Some(0), Some("0x201da")),
            ("httpd invoked oom-killer: gfp_mask=0x201d2, order=0, oomkilladj=0", None, Some("0x201d2")),
            ("java invoked oom-killer: gfp_mask=0x24201ca(GFP_HIGHUSER_MOVABLE|__GFP_COLD), nodemask=(null),  order=0, oom_score_adj=-998", Some(-998), Some("0x24201ca(GFP_HIGHUSER_MOVABLE|__GFP_COLD)")),
            ("CPU 2/KVM invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0", Some(0), Some("0x100cca(GFP_HIGHUSER_MOVABLE)")),
        ];
        for (line, adj, gfp) in cases {
            match ev(line) {
                Some(KernelEvent::OomInvoked {
                    oom_score_adj,
                    gfp_mask,
                    order,
                    ..
                }) => {
                    assert_eq!(oom_score_adj, adj, "{line}");
                    assert_eq!(gfp_mask.as_deref(), gfp, "{line}");
                    assert_eq!(order, Some(0));
                }
                o => panic!("{o:?}"),
            }
        }
        match ev("CPU 2/KVM invoked oom-killer: gfp_mask=0x0(), order=-1, oom_score_adj=0") {
            Some(KernelEvent::OomInvoked { task, order, .. }) => {
                assert_eq!((task.as_str(), order), ("CPU 2/KVM", Some(-1)))
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn summary_line() {
        let l = "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/app.service,task=a,task=b,pid=42,uid=1000";
        match ev(l) {
            Some(KernelEvent::OomSummary {
                constraint,
                oom_memcg,
                task_memcg,
                task,
                pid,
                uid,
            }) => {
                assert_eq!(constraint, Constraint::Global);
                assert_eq!(oom_memcg, None);
                assert_eq!(task_memcg.as_deref(), Some("/system.slice/app.service"));
                assert_eq!((task.as_str(), pid, uid), ("a,task=b", 42, Some(1000)));
            }
            o => panic!("{o:?}"),
        }
        let l = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=abc,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=python3,pid=7,uid=0";
        match ev(l) {
            Some(KernelEvent::OomSummary {
                constraint,
                oom_memcg,
                task_memcg,
                ..
            }) => {
                assert_eq!(constraint, Constraint::Memcg);
                assert_eq!(oom_memcg.as_deref(), Some("/kubepods/pod1"));
                assert_eq!(task_memcg.as_deref(), Some("/kubepods/pod1/c1"));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn memcg_reaper_group_misc() {
        assert_eq!(
            ev("Task in /docker/abc killed as a result of limit of /docker"),
            Some(KernelEvent::MemcgTaskIn {
                task_memcg: "/docker/abc".into(),
                limit_memcg: "/docker".into()
            })
        );
        assert_eq!(
            ev("memory: usage 524288kB, limit 524288kB, failcnt 1234"),
            Some(KernelEvent::MemcgUsage {
                usage_kb: 524288,
                limit_kb: 524288,
                failcnt: 1234
            })
        );
        assert_eq!(ev("memory+swap: usage 1kB, limit 2kB, failcnt 0"), None);
        assert_eq!(ev("kmem: usage 1kB, limit 2kB, failcnt 0"), None);
        assert_eq!(
            ev("oom_reaper: reaped process 99 (stress), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"),
            Some(KernelEvent::Reaped { pid: 99, name: "stress".into(), anon_rss_kb: Some(0) })
        );
        assert_eq!(
            ev("oom_reaper: unable to reap pid:99 (stress)"),
            Some(KernelEvent::ReapFailed {
                pid: 99,
                name: "stress".into()
            })
        );
        assert_eq!(
            ev("Tasks in /a/b are going to be killed due to memory.oom.group set"),
            Some(KernelEvent::OomGroup {
                memcg: "/a/b".into()
            })
        );
        assert_eq!(
            ev("Out of memory and no killable processes..."),
            Some(KernelEvent::NoKillable)
        );
        assert_eq!(
            ev("Kernel panic - not syncing: Out of memory and no killable processes..."),
            Some(KernelEvent::Panic {
                reason: "Out of memory and no killable processes...".into()
            })
        );
        assert_eq!(
            ev("Kernel panic - not syncing: System is deadlocked on memory"),
            Some(KernelEvent::Panic {
                reason: "System is deadlocked on memory".into()
            })
        );
        assert_eq!(
            ev("---[ end Kernel panic - not syncing: System is deadlocked on memory ]---"),
            None
        );
        assert_eq!(
            ev("Memory cgroup out of memory: OOM victim 5 (x y) is already exiting. Skip killing the task"),
            Some(KernelEvent::VictimExiting { pid: 5, name: "x y".into() })
        );
        assert_eq!(
            ev("Memory limit reached of cgroup /foo"),
            Some(KernelEvent::MemcgLimitReached {
                memcg: "/foo".into()
            })
        );
        assert_eq!(
            ev("Would have killed process 3 (x). But continuing instead."),
            Some(KernelEvent::WouldHaveKilled {
                pid: 3,
                name: "x".into()
            })
        );
        assert_eq!(
            ev("usb 1-1: new high-speed USB device number 2 using xhci_hcd"),
            None
        );
        assert_eq!(ev("[drm] Initialized"), None);
    }

    #[test]
    fn task_tables_by_era() {
        let mut p = Parser::new();
        let rows = [
            ("[ pid ]   uid  tgid total_vm      rss cpu oom_adj name", "[ 1234]     0  1234    12345      678   1     -17 sshd", -17),
            ("[ pid ]   uid  tgid total_vm      rss cpu oom_adj oom_score_adj name", "[ 1234]     0  1234    12345      678   1     0         -1000 sshd", -1000),
            ("[ pid ]   uid  tgid total_vm      rss nr_ptes swapents oom_score_adj name", "[ 1234]     0  1234    12345      678      20        0         -1000 sshd", -1000),
            ("[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name", "[ 1234]     0  1234    12345      678      20       3        0         -1000 sshd", -1000),
            ("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name", "[   1234]     0  1234    12345      678   204800        0         -1000 sshd", -1000),
            ("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name", "[   1234]     0  1234    12345      678      600       78         0   204800        0         -1000 sshd", -1000),
        ];
        for (h, r, adj) in rows {
            assert!(
                matches!(p.parse(h), Some(KernelEvent::TaskTableHeader { .. })),
                "{h}"
            );
            for cols in [p.columns().map(<[String]>::to_vec), None] {
                let row = parse_task_row(r, cols.as_deref()).unwrap_or_else(|| panic!("{r}"));
                assert_eq!(
                    (row.pid, row.uid, row.tgid, row.total_vm, row.rss),
                    (1234, 0, 1234, 12345, 678),
                    "{r}"
                );
                assert_eq!(row.oom_adj, Some(adj), "{r}");
                assert_eq!(row.name, "sshd");
            }
        }
        // comm with spaces, and a purely numeric comm with a known header
        let row =
            parse_task_row("[   77]  1000    77  100  10  4096  0  0 GC Thread#9", None).unwrap();
        assert_eq!(row.name, "GC Thread#9");
        let cols: Vec<String> =
            "pid uid tgid total_vm rss pgtables_bytes swapents oom_score_adj name"
                .split(' ')
                .map(String::from)
                .collect();
        let row =
            parse_task_row("[   77]  1000    77  100  10  4096  0  0 1234", Some(&cols)).unwrap();
        assert_eq!(row.name, "1234");
        // truncated row keeps what it has
        let row = parse_task_row("[ 8202] 0 8202 27050 55", None).unwrap();
        assert_eq!(
            (row.pid, row.rss, row.oom_adj, row.name.as_str()),
            (8202, 55, None, "")
        );
        assert!(parse_task_row("[ 8202] 0 82", None).is_none());
        assert!(parse_task_row("[   12.345] 0 1 2 3 4 x", None).is_none());
    }

    #[test]
    fn fast_reject() {
        assert!(!maybe_oom(
            "EXT4-fs (sda1): mounted filesystem with ordered data mode"
        ));
        assert!(maybe_oom("Out of memory: Killed process 1 (a)"));
        assert!(maybe_oom("[ 1] 0 1 2 3 4 5 x"));
    }
}
