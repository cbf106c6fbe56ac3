//! The parsers of [`super::MESSAGES`], one per kernel message, and the
//! field readers they share. Each is handed a line (prefix stripped) that
//! holds one of its entry's keywords, and returns `None` when the line is
//! not its message after all.

use super::{Constraint, KernelEvent, Killed};

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

/// `key<digits>` anywhere in `s` (spaces a person put after the key are
/// skipped: [`fields_mended`] tells).
fn field_u64(s: &str, key: &str) -> Option<u64> {
    let i = s.find(key)?;
    leading_u64(s.get(i + key.len()..)?.trim_start_matches(' '))
}

fn field_i64(s: &str, key: &str) -> Option<i64> {
    let i = s.find(key)?;
    leading_i64(s.get(i + key.len()..)?.trim_start_matches(' '))
}

/// The memory and identity fields of a `Killed process` line.
const KILLED_FIELDS: &[&str] = &[
    "total-vm:",
    "anon-rss:",
    "file-rss:",
    "shmem-rss:",
    "pgtables:",
    "UID:",
    "oom_score_adj:",
];

/// Did a person edit the fields of this `Killed process` line: a space
/// after a field's colon (`total-vm: 1234kB`), a space before the unit
/// (`1234 kB`) or the unit in another case (`kb`, `KB`)? The kernel prints
/// none of these.
pub(super) fn fields_mended(msg: &str) -> bool {
    let b = msg.as_bytes();
    let spaced = KILLED_FIELDS.iter().any(|k| {
        msg.find(k)
            .is_some_and(|i| b.get(i + k.len()) == Some(&b' '))
    });
    if spaced {
        return true;
    }
    // digits, then an odd unit
    b.windows(3).enumerate().any(|(i, w)| {
        let unit_at = |j: usize| b.get(j..j + 2);
        w[0].is_ascii_digit()
            && ((w[1] == b' ' && matches!(unit_at(i + 2), Some(b"kB" | b"kb" | b"KB" | b"Kb")))
                || matches!(&w[1..], b"kb" | b"KB" | b"Kb"))
    })
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

/// `Killed process ...` of every era, and OpenVZ's `OOM killed process`.
pub(super) fn killed(msg: &str) -> Option<KernelEvent> {
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

/// `[<msg>: ]Kill process P (comm) <tail>` (2.6.32 vanilla: `kill process`):
/// (text before the marker, pid, comm, tail).
fn kill_line(msg: &str) -> Option<(&str, u32, &str, &str)> {
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
    Some((before, pid, name, tail))
}

/// `Kill process P (comm) sharing same memory` (<= 5.0).
pub(super) fn kill_sharing(msg: &str) -> Option<KernelEvent> {
    let (_, pid, name, tail) = kill_line(msg)?;
    tail.starts_with(" sharing same memory")
        .then(|| KernelEvent::KillSharing {
            pid,
            name: name.to_string(),
        })
}

/// `<msg>: Kill process P (comm) score S or sacrifice child` (<= 5.0).
pub(super) fn kill_chosen(msg: &str) -> Option<KernelEvent> {
    let (before, pid, name, tail) = kill_line(msg)?;
    if tail.starts_with(" sharing same memory") {
        return None;
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

/// `<task> invoked oom-killer: gfp_mask=..., order=N, ...`
pub(super) fn invoked(msg: &str) -> Option<KernelEvent> {
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

/// 5.0+ `oom-kill:constraint=...,task=...,pid=...,uid=...`
pub(super) fn summary(msg: &str) -> Option<KernelEvent> {
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

/// `Kernel panic - not syncing: <reason>`
pub(super) fn panic(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("Kernel panic - not syncing")?;
    let r = msg.get(i + "Kernel panic - not syncing".len()..)?;
    let r = r.strip_prefix(':').unwrap_or(r).trim();
    Some(KernelEvent::Panic {
        reason: r.to_string(),
    })
}

/// RHEL 6: `Would have killed process P (comm). But continuing instead.`
pub(super) fn would_have_killed(msg: &str) -> Option<KernelEvent> {
    let p = msg.find("Would have killed process ")?;
    let (pid, name, _) = pid_comm_after(msg.get(p..)?, "Would have killed process ", &[". But"])?;
    Some(KernelEvent::WouldHaveKilled {
        pid,
        name: name.to_string(),
    })
}

/// `oom_reaper: reaped process P (comm), now anon-rss:...`
pub(super) fn reaped(msg: &str) -> Option<KernelEvent> {
    if !msg.contains("reaped process ") {
        return None;
    }
    let (pid, name, tail) = pid_comm_after(msg, "reaped process ", &[", now", ","])?;
    Some(KernelEvent::Reaped {
        pid,
        name: name.to_string(),
        anon_rss_kb: field_u64(tail, "anon-rss:"),
    })
}

/// `oom_reaper: unable to reap pid:P (comm)`
pub(super) fn reap_failed(msg: &str) -> Option<KernelEvent> {
    if !msg.contains("unable to reap pid:") {
        return None;
    }
    let (pid, name, _) = pid_comm_after(msg, "unable to reap pid:", &[])?;
    Some(KernelEvent::ReapFailed {
        pid,
        name: name.to_string(),
    })
}

/// `Tasks in <path> are going to be killed due to memory.oom.group set`
pub(super) fn oom_group(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("Tasks in ")?;
    let r = msg.get(i + "Tasks in ".len()..)?;
    let j = r.find(" are going to be killed due to memory.oom.group")?;
    Some(KernelEvent::OomGroup {
        memcg: r.get(..j)?.to_string(),
    })
}

/// < 5.0 memcg: `Task in X killed as a result of limit of Y`
pub(super) fn memcg_task_in(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("Task in ")?;
    let r = msg.get(i + "Task in ".len()..)?;
    let (a, b) = r.split_once(" killed as a result of limit of ")?;
    Some(KernelEvent::MemcgTaskIn {
        task_memcg: a.to_string(),
        limit_memcg: b.trim_end().to_string(),
    })
}

/// `memory: usage %llukB, limit %llukB, failcnt %lu` (not the
/// `memory+swap:` and `kmem:` lines after it).
pub(super) fn memcg_usage(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("memory: usage ")?;
    let before = msg.get(..i)?;
    if before.ends_with('+') || before.ends_with("k") {
        return None; // memory+swap:, kmem:
    }
    let r = msg.get(i..)?;
    Some(KernelEvent::MemcgUsage {
        usage_kb: field_u64(r, "usage ")?,
        limit_kb: field_u64(r, "limit ")?,
        failcnt: field_u64(r, "failcnt ").unwrap_or(0),
    })
}

/// 4.x memcg: `Memory limit reached of cgroup <path>`
pub(super) fn memcg_limit_reached(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("Memory limit reached of cgroup ")?;
    Some(KernelEvent::MemcgLimitReached {
        memcg: msg
            .get(i + "Memory limit reached of cgroup ".len()..)?
            .trim_end()
            .to_string(),
    })
}

/// `OOM victim P (comm) is already exiting. Skip killing the task`
pub(super) fn victim_exiting(msg: &str) -> Option<KernelEvent> {
    if !msg.contains("OOM victim ") || !msg.contains("already exiting") {
        return None;
    }
    let (pid, name, _) = pid_comm_after(msg, "OOM victim ", &[" is already exiting"])?;
    Some(KernelEvent::VictimExiting {
        pid,
        name: name.to_string(),
    })
}

/// `Out of memory and no killable processes...`
pub(super) fn no_killable(msg: &str) -> Option<KernelEvent> {
    msg.contains("Out of memory and no killable processes")
        .then_some(KernelEvent::NoKillable)
}

/// After a panic with `kernel.panic=N` (N > 0): `Rebooting in N seconds..`
/// (kernel/panic.c, every era).
pub(super) fn rebooting(msg: &str) -> Option<KernelEvent> {
    let i = msg.find("Rebooting in ")?;
    let r = msg.get(i + "Rebooting in ".len()..)?;
    let n = r.bytes().take_while(u8::is_ascii_digit).count();
    let secs = r.get(..n)?.parse().ok()?;
    r.get(n..)?
        .starts_with(" second")
        .then_some(KernelEvent::Rebooting { after_s: secs })
}
