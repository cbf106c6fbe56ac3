//! The task table an OOM report prints (`[ pid ]   uid  tgid ... name`):
//! its header, a [`super::MESSAGES`] entry, and its rows, which hold no
//! keyword and are read on their own path.

use super::{KernelEvent, TaskRow};

/// The header as an event (the `tgid` entry of [`super::MESSAGES`]).
pub(super) fn header(msg: &str) -> Option<KernelEvent> {
    parse_table_header(msg).map(|columns| KernelEvent::TaskTableHeader { columns })
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

/// Where a header puts the fields of its rows: indices among the numbers
/// after the pid (`want` of them before the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLayout {
    want: usize,
    uid: Option<usize>,
    tgid: Option<usize>,
    total_vm: Option<usize>,
    rss: Option<usize>,
    adj: Option<usize>,
}

impl RowLayout {
    /// The layout of a header's columns (including `pid` and `name`).
    pub fn of(cols: &[String]) -> RowLayout {
        let idx = |c: &str| {
            cols.iter()
                .position(|x| x == c)
                .and_then(|i| i.checked_sub(1))
        };
        RowLayout {
            want: cols.len().saturating_sub(2),
            uid: idx("uid"),
            tgid: idx("tgid"),
            total_vm: idx("total_vm"),
            rss: idx("rss"),
            adj: idx("oom_score_adj").or_else(|| idx("oom_adj")),
        }
    }
}

/// A task-table row, its name borrowed from the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskRowRef<'a> {
    pub pid: u32,
    pub uid: u32,
    pub tgid: u32,
    pub total_vm: u64,
    pub rss: u64,
    pub oom_adj: Option<i32>,
    pub name: &'a str,
}

impl TaskRowRef<'_> {
    pub fn to_owned_row(&self) -> TaskRow {
        TaskRow {
            pid: self.pid,
            uid: self.uid,
            tgid: self.tgid,
            total_vm: self.total_vm,
            rss: self.rss,
            oom_adj: self.oom_adj,
            name: self.name.to_string(),
        }
    }
}

/// Parse a task-table row. `columns` is the most recent header's column list
/// (including `pid` and `name`); without it, or when the row does not fit it,
/// the era is guessed from the number of numeric columns.
pub fn parse_task_row(msg: &str, columns: Option<&[String]>) -> Option<TaskRow> {
    let layout = columns.map(RowLayout::of);
    parse_task_row_ref(msg, layout.as_ref()).map(|r| r.to_owned_row())
}

/// A decimal integer, signed, all of `t` (at most 19 digits).
fn int(t: &[u8]) -> Option<i64> {
    let (neg, d) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, t),
    };
    if d.is_empty() || d.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(if neg { -v } else { v })
}

/// [`parse_task_row`] with the header's layout worked out once, and the
/// name borrowed.
pub fn parse_task_row_ref<'a>(msg: &'a str, layout: Option<&RowLayout>) -> Option<TaskRowRef<'a>> {
    let b = msg.as_bytes();
    let mut i = 0usize;
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let close = i + 1 + memchr::memchr(b']', b.get(i + 1..)?)?;
    let pid: u32 = u32::try_from(int(b.get(i + 1..close)?.trim_ascii())?).ok()?;
    let body_at = close + 1;
    let bytes = b.get(body_at..)?;
    // Up to 12 leading integers, with their end offsets.
    let mut buf = [(0i64, 0usize); 12];
    let mut count = 0usize;
    let mut pos = 0usize;
    while count < 12 {
        while matches!(bytes.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        let start = pos;
        while bytes.get(pos).is_some_and(|c| *c != b' ' && *c != b'\t') {
            pos += 1;
        }
        if pos == start {
            break;
        }
        let Some(v) = bytes.get(start..pos).and_then(int) else {
            break;
        };
        if let Some(slot) = buf.get_mut(count) {
            *slot = (v, pos);
        }
        count += 1;
    }
    let nums = buf.get(..count).unwrap_or_default();
    let name_of = |k: usize| -> &'a str {
        let end = match k.checked_sub(1).and_then(|i| nums.get(i)) {
            Some((_, e)) => *e,
            None => 0,
        };
        let r = msg.get(body_at + end..).unwrap_or("");
        let r = r.strip_prefix(' ').unwrap_or(r);
        // ASCII whitespace around a name is all the kernel prints
        let t = r.trim_ascii();
        if t.ends_with(|c: char| !c.is_ascii()) || t.starts_with(|c: char| !c.is_ascii()) {
            t.trim()
        } else {
            t
        }
    };
    let u = |i: usize| nums.get(i).and_then(|(v, _)| u64::try_from(*v).ok());
    let adj = |i: usize| nums.get(i).and_then(|(v, _)| i32::try_from(*v).ok());
    // With a header: columns after pid, before name.
    if let Some(l) = layout {
        if l.want >= 4 && nums.len() >= l.want {
            let get = |i: Option<usize>| i.and_then(u);
            // numbers beyond `want` belong to the name (a numeric comm)
            return Some(TaskRowRef {
                pid,
                uid: u32::try_from(get(l.uid)?).ok()?,
                tgid: u32::try_from(get(l.tgid)?).ok()?,
                total_vm: get(l.total_vm)?,
                rss: get(l.rss)?,
                oom_adj: l.adj.and_then(adj),
                name: name_of(l.want),
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
    Some(TaskRowRef {
        pid,
        uid: u32::try_from(u(0)?).ok()?,
        tgid: u32::try_from(u(1)?).ok()?,
        total_vm: u(2)?,
        rss: u(3)?,
        oom_adj,
        name: name_of(k),
    })
}
