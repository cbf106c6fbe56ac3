//! The envelope around the kernel's text. One input line can be a plain
//! dmesg/syslog/journal line, a `journalctl -o json` record, or an rsyslog
//! line whose kernel newlines were escaped as `#012`; [`open`] takes out
//! the kernel messages inside, each with the time to file it under.

use crate::events::kernel::{split_prefix, Timestamp};

/// What [`open`] hands over, in line order.
pub(crate) trait Messages {
    /// The time of the messages that follow: a line's own stamp, or a
    /// journal record's monotonic time.
    fn time(&mut self, ts: Option<Timestamp>, uptime: Option<f64>);
    /// A `journalctl -o json` record was read.
    fn journal_record(&mut self);
    /// One kernel message, its prefix stripped.
    fn message(&mut self, msg: &str);
}

/// Take the kernel messages out of one input line (no `\n`).
pub(crate) fn open<M: Messages>(line: &[u8], m: &mut M) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    if memchr::memmem::find(text.as_bytes(), b"#012").is_some() {
        // rsyslog escaped the kernel's embedded newlines: the parts after
        // the first carry no stamp of their own.
        let mut parts = text.split("#012");
        if let Some(first) = parts.next() {
            one_line(first, m);
        }
        for p in parts {
            let p = p.replace("#011", " ");
            m.message(split_prefix(&p).msg);
        }
        return;
    }
    one_line(&text, m);
}

fn one_line<M: Messages>(text: &str, m: &mut M) {
    let t = text.trim_start();
    if t.starts_with('{') && t.contains("\"MESSAGE\"") && journal_record(t, m) {
        return;
    }
    let l = split_prefix(text);
    m.time(l.ts, l.uptime);
    if l.source.is_some() {
        return; // a userspace program's line in a syslog file
    }
    m.message(l.msg);
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
    for part in msg.split('\n') {
        let p = part.trim_end_matches('\r');
        m.message(split_prefix(p).msg);
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
        fn message(&mut self, msg: &str) {
            self.0.push(msg.to_string());
        }
    }

    fn seen(line: &str) -> Vec<String> {
        let mut s = Seen::default();
        open(line.as_bytes(), &mut s);
        s.0
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
            ["time Some(Wall(\"Mar  3 14:02:10\"))"]
        );
        // not a journal record after all: read as text
        assert_eq!(seen("{\"MESSAGE\" x"), ["time None", "{\"MESSAGE\" x"]);
    }
}
