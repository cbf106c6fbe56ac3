//! The envelope around the kernel's text. One input line can be a plain
//! dmesg/syslog/journal line, a `journalctl -o json` record, or an rsyslog
//! line whose kernel newlines were escaped as `#012`; [`open`] takes out
//! the kernel messages inside, each with the time to file it under.

use std::borrow::Cow;

use super::model::Repair;
use crate::events::kernel::{split_prefix, LogLine, Timestamp};

/// What [`open`] hands over, in line order.
pub(crate) trait Messages {
    /// The time of the messages that follow: a line's own stamp, or a
    /// journal record's monotonic time.
    fn time(&mut self, ts: Option<Timestamp>, uptime: Option<f64>);
    /// A `journalctl -o json` record was read.
    fn journal_record(&mut self);
    /// One kernel message, its prefix stripped; `whole` when it is all of
    /// a plain text line (which a paste may have wrapped onto the next).
    fn message(&mut self, msg: &str, whole: bool);
    /// A userspace program's message (a syslog or journal line with
    /// another tag than the kernel's, a journal record of another
    /// transport).
    fn userspace(&mut self, msg: &str);
    /// Something was mended to read the line.
    fn repaired(&mut self, what: Repair);
}

/// `line` without the control characters a damaged or coloured log puts
/// inside its lines (NUL runs from a crash, ANSI colour sequences, stray
/// CRs, backspaces); tabs are kept. Borrowed when there were none.
pub(crate) fn without_controls(line: &[u8]) -> Cow<'_, [u8]> {
    let bad = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    // branch-free, so that the common case (none) runs vectorised
    let any_bad = line.iter().fold(false, |acc, &b| {
        acc | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    if !any_bad {
        return Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        i += 1;
        if b == 0x1b {
            // ESC [ params intermediates final: a CSI sequence (colours)
            if line.get(i) == Some(&b'[') {
                i += 1;
                while line.get(i).is_some_and(|c| (0x20..=0x3f).contains(c)) {
                    i += 1;
                }
                if line.get(i).is_some_and(|c| (0x40..=0x7e).contains(c)) {
                    i += 1;
                }
            }
            continue;
        }
        if !bad(b) {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// rsyslog's escaped newline.
fn hash012() -> &'static memchr::memmem::Finder<'static> {
    static F: std::sync::OnceLock<memchr::memmem::Finder<'static>> = std::sync::OnceLock::new();
    F.get_or_init(|| memchr::memmem::Finder::new(b"#012"))
}

/// Take the kernel messages out of one input line (no `\n`); `prev` is the
/// line before it, if short (a timestamp a paste split off).
pub(crate) fn open<M: Messages>(line: &[u8], prev: &[u8], m: &mut M) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = match without_controls(line) {
        Cow::Borrowed(l) => Cow::Borrowed(l),
        Cow::Owned(l) => {
            m.repaired(Repair::ControlChars);
            Cow::Owned(l)
        }
    };
    let text = match std::str::from_utf8(&line) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(&line),
    };
    if hash012().find(text.as_bytes()).is_some() {
        // rsyslog escaped the kernel's embedded newlines: the parts after
        // the first carry no stamp of their own.
        let mut parts = text.split("#012");
        if let Some(first) = parts.next() {
            one_line(first, prev, m, false);
        }
        for p in parts {
            let p = p.replace("#011", " ");
            m.message(split_prefix(&p).msg, false);
        }
        return;
    }
    one_line(&text, prev, m, true);
}

/// `text` has no stamp but the line before was one cut off it (`[
/// 8374.160134]` alone, `[ 8374.` then `160134] Killed ...`, `Jan 18
/// 09:51:00 host kernel:` alone): the two read as one line.
fn join_split_stamp(text: &str, prev: &[u8]) -> Option<String> {
    if prev.is_empty() || prev.len() > 64 || text.trim().is_empty() {
        return None;
    }
    let prev = std::str::from_utf8(prev)
        .ok()?
        .trim_end_matches(['\r', ' ']);
    if prev.is_empty() {
        return None;
    }
    let p = split_prefix(prev);
    // a line of its own (a message after its stamp) is not a fragment
    if p.ts.is_some() && !p.msg.trim().is_empty() {
        return None;
    }
    let body = text.trim_start();
    for sep in ["", " "] {
        let joined = format!("{prev}{sep}{body}");
        let l = split_prefix(&joined);
        if l.ts.is_some() && !l.msg.is_empty() && body.ends_with(l.msg) {
            return Some(joined);
        }
    }
    None
}

fn one_line<M: Messages>(text: &str, prev: &[u8], m: &mut M, whole: bool) {
    let t = text.trim_start();
    if t.starts_with('{') && t.contains("\"MESSAGE\"") && journal_record(t, m) {
        return;
    }
    let l = split_prefix(text);
    if l.ts.is_none() {
        if let Some(joined) = join_split_stamp(text, prev) {
            m.repaired(Repair::SplitTimestamp);
            let l = split_prefix(&joined);
            deliver(&l, &joined, m, whole);
            return;
        }
    }
    deliver(&l, text, m, whole);
}

/// A program's line goes over whole (what looked like its tag may be its
/// own words: supervisord's `INFO spawned: 'x'`).
fn deliver<M: Messages>(l: &LogLine<'_>, text: &str, m: &mut M, whole: bool) {
    m.time(l.ts.clone(), l.uptime);
    if l.source.is_some() {
        m.userspace(text);
    } else {
        m.message(l.msg, whole);
    }
}

/// A `journalctl -o json` record. False if it is not one.
fn journal_record<M: Messages>(t: &str, m: &mut M) -> bool {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(t) else {
        return false;
    };
    let msg = match o.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => s.clone(),
        // not UTF-8: journald stores an array of bytes
        Some(serde_json::Value::Array(a)) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => return false,
    };
    m.journal_record();
    let us = |k: &str| {
        o.get(k).and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| v.as_u64())
        })
    };
    let mono = us("_SOURCE_MONOTONIC_TIMESTAMP").or_else(|| us("__MONOTONIC_TIMESTAMP"));
    m.time(
        mono.map(|m| Timestamp::Monotonic(m as f64 / 1e6)),
        mono.map(|m| m as f64 / 1e6),
    );
    // a record of another transport than the kernel's is a program's
    let userspace = o
        .get("_TRANSPORT")
        .and_then(|v| v.as_str())
        .is_some_and(|t| t != "kernel");
    for part in msg.split('\n') {
        let p = part.trim_end_matches('\r');
        if userspace {
            m.userspace(p);
        } else {
            m.message(split_prefix(p).msg, false);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Vec<String>);
    impl Messages for Seen {
        fn time(&mut self, ts: Option<Timestamp>, _uptime: Option<f64>) {
            self.0.push(format!("time {ts:?}"));
        }
        fn journal_record(&mut self) {
            self.0.push("record".into());
        }
        fn message(&mut self, msg: &str, _whole: bool) {
            self.0.push(msg.to_string());
        }
        fn userspace(&mut self, msg: &str) {
            self.0.push(format!("user {msg}"));
        }
        fn repaired(&mut self, what: Repair) {
            self.0.push(format!("repaired {what:?}"));
        }
    }

    fn seen(line: &str) -> Vec<String> {
        seen_after(line, "")
    }

    fn seen_after(line: &str, prev: &str) -> Vec<String> {
        let mut s = Seen::default();
        open(line.as_bytes(), prev.as_bytes(), &mut s);
        s.0
    }

    #[test]
    fn split_stamps_and_control_characters() {
        assert_eq!(
            seen_after("Killed process 1 (a)", "[ 8374.160134]"),
            [
                "repaired SplitTimestamp",
                "time Some(Monotonic(8374.160134))",
                "Killed process 1 (a)"
            ]
        );
        assert_eq!(
            seen_after("160134] Killed process 1 (a)", "[ 8374."),
            [
                "repaired SplitTimestamp",
                "time Some(Monotonic(8374.160134))",
                "Killed process 1 (a)"
            ]
        );
        assert_eq!(
            seen_after("Killed process 1 (a)", "Jan 18 09:51:00 web01 kernel:"),
            [
                "repaired SplitTimestamp",
                "time Some(Wall(\"Jan 18 09:51:00\"))",
                "Killed process 1 (a)"
            ]
        );
        // a whole line before is not a fragment; nor is an elision
        assert_eq!(
            seen_after("Killed process 1 (a)", "[ 1.0] foo"),
            ["time None", "Killed process 1 (a)"]
        );
        assert_eq!(
            seen_after("Killed process 1 (a)", "..."),
            ["time None", "Killed process 1 (a)"]
        );
        assert_eq!(
            seen("\0\0Jan 18 09:51:00 h kernel: Killed\u{1b}[1m process 1, UID 2, (a)\0"),
            [
                "repaired ControlChars",
                "time Some(Wall(\"Jan 18 09:51:00\"))",
                "Killed process 1, UID 2, (a)"
            ]
        );
        assert_eq!(
            seen("Mar  3 14:02:10 web01 nginx: 2024/03/03 14:02:10 [alert] 9#9: worker process 5 exited on signal 9"),
            [
                "time Some(Wall(\"Mar  3 14:02:10\"))",
                "user Mar  3 14:02:10 web01 nginx: 2024/03/03 14:02:10 [alert] 9#9: worker process 5 exited on signal 9"
            ]
        );
    }

    #[test]
    fn plain_rsyslog_journal_and_userspace_lines() {
        assert_eq!(
            seen("[  1.500000] Killed process 1 (a)\r"),
            ["time Some(Monotonic(1.5))", "Killed process 1 (a)"]
        );
        assert_eq!(
            seen("Jan 18 09:50:59 h kernel: Mem-Info:#012[ 1] 0 1 2 3 x#011y"),
            [
                "time Some(Wall(\"Jan 18 09:50:59\"))",
                "Mem-Info:",
                "[ 1] 0 1 2 3 x y"
            ]
        );
        assert_eq!(
            seen(r#"{"MESSAGE":"a\nb","__MONOTONIC_TIMESTAMP":"2500000"}"#),
            ["record", "time Some(Monotonic(2.5))", "a", "b"]
        );
        assert_eq!(
            seen(r#"{"MESSAGE":[75,105,108,108],"_SOURCE_MONOTONIC_TIMESTAMP":1000000}"#),
            ["record", "time Some(Monotonic(1.0))", "Kill"]
        );
        assert_eq!(
            seen("Mar  3 14:02:10 web01 sshd[2211]: Killed process 1 (x)"),
            [
                "time Some(Wall(\"Mar  3 14:02:10\"))",
                "user Mar  3 14:02:10 web01 sshd[2211]: Killed process 1 (x)"
            ]
        );
        // not a journal record after all: read as text
        assert_eq!(seen("{\"MESSAGE\" x"), ["time None", "{\"MESSAGE\" x"]);
    }
}
