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
