//! The parsers of [`super::MESSAGES`], one per kernel message, and the
//! field readers they share. Each is handed a line (prefix stripped) that
//! holds one of its entry's keywords, and returns `None` when the line is
//! not its message after all.

use super::{Constraint, KernelEvent, Killed};

/// The first `needle` in `hay`: a first-byte scan, which beats building a
/// general searcher for each of these short lines.
pub(super) fn find(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    memchr::memchr_iter(first, h).find(|&i| h.get(i..i + n.len()) == Some(n))
}

/// The last `needle` in `hay`.
fn rfind(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    memchr::memrchr_iter(first, h).find(|&i| h.get(i..i + n.len()) == Some(n))
}

fn contains(hay: &str, needle: &str) -> bool {
    find(hay, needle).is_some()
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

/// `key<digits>` anywhere in `s` (spaces a person put after the key are
/// skipped: [`fields_mended`] tells).
fn field_u64(s: &str, key: &str) -> Option<u64> {
    let i = find(s, key)?;
    leading_u64(s.get(i + key.len()..)?.trim_start_matches(' '))
}

fn field_i64(s: &str, key: &str) -> Option<i64> {
    let i = find(s, key)?;
    leading_i64(s.get(i + key.len()..)?.trim_start_matches(' '))
}

fn field_i32(s: &str, key: &str) -> Option<i32> {
    field_i64(s, key).and_then(|v| i32::try_from(v).ok())
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
    // the kernel's own forms first: no lower-cased copy of the line
    let has = |needle: &str| {
        let (h, n) = (message.as_bytes(), needle.as_bytes());
        h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    };
    if message == "Out of memory" {
        Constraint::Global
    } else if message == "Memory cgroup out of memory" || has("memory cgroup") {
        Constraint::Memcg
    } else if has("oom_kill_allocating_task") {
        Constraint::AllocatingTask
    } else if has("mpol_bind") || has("memory policy") {
        Constraint::MemoryPolicy
    } else if has("cpuset") {
        Constraint::Cpuset
    } else if has("out of memory") {
        Constraint::Global
    } else {
        Constraint::Unknown
    }
}

/// `Killed process ...` of every era, and OpenVZ's `OOM killed process`.
pub(super) fn killed(msg: &str) -> Option<KernelEvent> {
    // OpenVZ RHEL6: `%s: OOM killed process %d (%s) score %d vm:%lukB, rss:%lukB, swap:%lukB`
    let (i, marker) = if let Some(i) = find(msg, "OOM killed process ") {
        (i, "OOM killed process ")
    } else {
        (find(msg, "Killed process ")?, "Killed process ")
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
    let f = killed_fields(tail);
    if uid.is_none() {
        // RHEL 7: `(%s), UID %d, total-vm`; 5.4+: `, UID:%u pgtables`
        uid = tail
            .strip_prefix(", UID ")
            .and_then(leading_u32)
            .map(|x| x.0)
            .or(f.uid);
    }
    Some(KernelEvent::Killed(Killed {
        message,
        pid,
        name: name.to_string(),
        uid,
        total_vm_kb: f.total_vm.or(f.vm),
        anon_rss_kb: f.anon_rss,
        file_rss_kb: f.file_rss,
        shmem_rss_kb: f.shmem_rss,
        pgtables_kb: f.pgtables,
        oom_score_adj: f.oom_score_adj,
        name_cut: !comm_and_tail.contains(')'),
        fields_mended: f.mended,
    }))
}

/// The `key:value` fields after a `Killed process` line's name, read in
/// one pass (the first of each key counts).
#[derive(Default)]
struct KilledFields {
    total_vm: Option<u64>,
    vm: Option<u64>,
    anon_rss: Option<u64>,
    file_rss: Option<u64>,
    shmem_rss: Option<u64>,
    pgtables: Option<u64>,
    uid: Option<u32>,
    oom_score_adj: Option<i32>,
    /// A space after a colon or before a unit, or a unit in another case
    /// than `kB`: a person edited the line.
    mended: bool,
}

fn killed_fields(tail: &str) -> KilledFields {
    let mut f = KilledFields::default();
    let b = tail.as_bytes();
    for colon in memchr::memchr_iter(b':', b) {
        let key_start = b
            .get(..colon)
            .unwrap_or_default()
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'))
            .map_or(0, |i| i + 1);
        let key = tail.get(key_start..colon).unwrap_or("");
        let slot_u64 = match key {
            "total-vm" => Some(&mut f.total_vm),
            "vm" => Some(&mut f.vm),
            "anon-rss" => Some(&mut f.anon_rss),
            "file-rss" => Some(&mut f.file_rss),
            "shmem-rss" => Some(&mut f.shmem_rss),
            "pgtables" => Some(&mut f.pgtables),
            "UID" | "oom_score_adj" => None,
            _ => continue,
        };
        let raw = tail.get(colon + 1..).unwrap_or("");
        let v = raw.trim_start_matches(' ');
        let spaced = v.len() != raw.len();
        let neg = v.starts_with('-');
        let digits = v.get(usize::from(neg)..).unwrap_or("");
        let n = digits.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(val) = digits.get(..n).unwrap_or("").parse::<u64>() else {
            continue;
        };
        let unit = digits.get(n..).unwrap_or("");
        let unit_odd = match unit.get(..2) {
            Some("kB") => false,
            Some("kb" | "KB" | "Kb") => true,
            _ => unit.starts_with(" kB") || unit.starts_with(" kb") || unit.starts_with(" KB"),
        };
        f.mended |= spaced || unit_odd;
        match (slot_u64, key) {
            (Some(slot), _) => {
                if slot.is_none() {
                    *slot = Some(val);
                }
            }
            (None, "UID") => {
                if f.uid.is_none() {
                    f.uid = u32::try_from(val).ok();
                }
            }
            (None, _) => {
                if f.oom_score_adj.is_none() {
                    let v = i64::try_from(val).ok().map(|v| if neg { -v } else { v });
                    f.oom_score_adj = v.and_then(|v| i32::try_from(v).ok());
                }
            }
        }
    }
    f
}

/// `[<msg>: ]Kill process P (comm) <tail>` (2.6.32 vanilla: `kill process`):
/// (text before the marker, pid, comm, tail).
fn kill_line(msg: &str) -> Option<(&str, u32, &str, &str)> {
    let (i, marker) = if let Some(i) = find(msg, "Kill process ") {
        (i, "Kill process ")
    } else {
        (find(msg, "kill process ")?, "kill process ")
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
    if !contains(msg, " sharing same memory") {
        return None;
    }
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
    let i = find(msg, marker)?;
    let after = msg.get(i + marker.len()..)?;
    let (pid, rest) = leading_u32(after)?;
    let comm = rest.strip_prefix(" (")?;
    let (name, tail) = split_comm(comm, trailers, true, true)?;
    Some((pid, name, tail))
}

/// `<task> invoked oom-killer: gfp_mask=..., order=N, ...`
pub(super) fn invoked(msg: &str) -> Option<KernelEvent> {
    let i = find(msg, " invoked oom-killer")?;
    let task = msg.get(..i)?.trim().to_string();
    let rest = msg.get(i..)?;
    let gfp_mask = find(rest, "gfp_mask=").and_then(|j| {
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
    let i = find(msg, "oom-kill:")?;
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
    let (head, uid) = match rfind(s, ",uid=") {
        Some(j) => (
            s.get(..j)?,
            s.get(j + 5..).and_then(|u| leading_u32(u)).map(|x| x.0),
        ),
        None => (s, None),
    };
    let j = rfind(head, ",pid=")?;
    let pid = leading_u32(head.get(j + 5..)?)?.0;
    let head = head.get(..j)?;
    let tm = find(head, ",task_memcg=");
    let search_from = tm.map(|t| t + 1).unwrap_or(0);
    // Leftmost `,task=` after task_memcg whose comm fits TASK_COMM_LEN
    // (both the path and the comm may contain `,task=`).
    let mut task_at = None;
    let mut from = search_from;
    while let Some(k) = head.get(from..).and_then(|h| find(h, ",task=")) {
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
    let oom_memcg = find(head, ",oom_memcg=").and_then(|o| {
        let v = head.get(o + ",oom_memcg=".len()..)?;
        let end = find(v, ",task_memcg=").unwrap_or(v.len());
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
    let i = find(msg, "Kernel panic - not syncing")?;
    let r = msg.get(i + "Kernel panic - not syncing".len()..)?;
    let r = r.strip_prefix(':').unwrap_or(r).trim();
    Some(KernelEvent::Panic {
        reason: r.to_string(),
    })
}

/// RHEL 6: `Would have killed process P (comm). But continuing instead.`
pub(super) fn would_have_killed(msg: &str) -> Option<KernelEvent> {
    let p = find(msg, "Would have killed process ")?;
    let (pid, name, _) = pid_comm_after(msg.get(p..)?, "Would have killed process ", &[". But"])?;
    Some(KernelEvent::WouldHaveKilled {
        pid,
        name: name.to_string(),
    })
}

/// `oom_reaper: reaped process P (comm), now anon-rss:...`
pub(super) fn reaped(msg: &str) -> Option<KernelEvent> {
    if !contains(msg, "reaped process ") {
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
    if !contains(msg, "unable to reap pid:") {
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
    let i = find(msg, "Tasks in ")?;
    let r = msg.get(i + "Tasks in ".len()..)?;
    let j = find(r, " are going to be killed due to memory.oom.group")?;
    Some(KernelEvent::OomGroup {
        memcg: r.get(..j)?.to_string(),
    })
}

/// < 5.0 memcg: `Task in X killed as a result of limit of Y`
pub(super) fn memcg_task_in(msg: &str) -> Option<KernelEvent> {
    let i = find(msg, "Task in ")?;
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
    let i = find(msg, "memory: usage ")?;
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
    let i = find(msg, "Memory limit reached of cgroup ")?;
    Some(KernelEvent::MemcgLimitReached {
        memcg: msg
            .get(i + "Memory limit reached of cgroup ".len()..)?
            .trim_end()
            .to_string(),
    })
}

/// `OOM victim P (comm) is already exiting. Skip killing the task`
pub(super) fn victim_exiting(msg: &str) -> Option<KernelEvent> {
    if !contains(msg, "OOM victim ") || !contains(msg, "already exiting") {
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
    contains(msg, "Out of memory and no killable processes").then_some(KernelEvent::NoKillable)
}

/// After a panic with `kernel.panic=N` (N > 0): `Rebooting in N seconds..`
/// (kernel/panic.c, every era).
pub(super) fn rebooting(msg: &str) -> Option<KernelEvent> {
    let i = find(msg, "Rebooting in ")?;
    let r = msg.get(i + "Rebooting in ".len()..)?;
    let n = r.bytes().take_while(u8::is_ascii_digit).count();
    let secs = r.get(..n)?.parse().ok()?;
    r.get(n..)?
        .starts_with(" second")
        .then_some(KernelEvent::Rebooting { after_s: secs })
}
