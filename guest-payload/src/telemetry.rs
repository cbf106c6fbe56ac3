//! Telemetry writer: one JSON object per line, each line a single `write(2)`
//! (PROTOCOL.md). Hand-written so PID 1 needs no serializer crate.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys;

/// Where lines go. Forked children inherit both the fd and this value.
static FD: AtomicI32 = AtomicI32::new(libc::STDOUT_FILENO);

pub fn set_fd(fd: i32) {
    FD.store(fd, Ordering::Relaxed);
}

/// One event being built; `emit` writes it.
#[must_use]
pub struct Line {
    buf: String,
}

impl Line {
    /// An event stamped now (`CLOCK_MONOTONIC`).
    pub fn new(ev: &str) -> Line {
        Line::at(sys::monotonic_secs(), ev)
    }

    pub fn at(t: f64, ev: &str) -> Line {
        let mut buf = String::with_capacity(128);
        buf.push_str("{\"t\":");
        push_float(&mut buf, t, 6);
        buf.push_str(",\"ev\":");
        push_json_str(&mut buf, ev);
        Line { buf }
    }

    fn key(&mut self, k: &str) {
        self.buf.push(',');
        push_json_str(&mut self.buf, k);
        self.buf.push(':');
    }

    pub fn str(mut self, k: &str, v: &str) -> Line {
        self.key(k);
        push_json_str(&mut self.buf, v);
        self
    }

    pub fn uint(mut self, k: &str, v: u64) -> Line {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    pub fn int(mut self, k: &str, v: i64) -> Line {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Omits the field when `None` (PROTOCOL.md: "absent field").
    pub fn opt_uint(self, k: &str, v: Option<u64>) -> Line {
        match v {
            Some(v) => self.uint(k, v),
            None => self,
        }
    }

    /// Fixed 3 decimals (ms resolution to the µs).
    pub fn ms(mut self, k: &str, v: f64) -> Line {
        self.key(k);
        push_float(&mut self.buf, v, 3);
        self
    }

    pub fn bool(mut self, k: &str, v: bool) -> Line {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn finish(mut self) -> String {
        self.buf.push_str("}\n");
        self.buf
    }

    pub fn emit(self) {
        let line = self.finish();
        sys::write_all(FD.load(Ordering::Relaxed), line.as_bytes());
    }
}

/// JSON has no NaN/inf; `null` keeps the line parseable.
fn push_float(buf: &mut String, v: f64, decimals: usize) {
    if v.is_finite() {
        let _ = write!(buf, "{v:.decimals$}");
    } else {
        buf.push_str("null");
    }
}

/// Appends `s` as a JSON string literal (RFC 8259 escapes).
pub fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            '\u{8}' => buf.push_str("\\b"),
            '\u{c}' => buf.push_str("\\f"),
            // DEL and U+2028/2029 are legal JSON but confuse line-oriented
            // readers and terminals; escaping them costs nothing.
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

/// Waits until the port has really sent what was written: the last lines
/// before power-off would otherwise die in the UART's buffer.
pub fn drain() {
    // SAFETY: tcdrain on a non-tty fd just fails.
    unsafe { libc::tcdrain(FD.load(Ordering::Relaxed)) };
}

pub fn error(msg: &str) {
    Line::new("error").str("msg", msg).emit();
}

pub fn setup(what: &str, ok: bool, detail: &str) {
    Line::new("setup")
        .str("what", what)
        .bool("ok", ok)
        .str("detail", detail)
        .emit();
}

pub fn spawn(pid: i32, ppid: i32, role: &str) {
    Line::new("spawn")
        .int("pid", pid.into())
        .int("ppid", ppid.into())
        .str("role", role)
        .emit();
}

pub fn exit(pid: i32, role: &str, how: sys::ExitKind) {
    let line = Line::new("exit").int("pid", pid.into()).str("role", role);
    match how {
        sys::ExitKind::Signal(s) => line.int("signal", s.into()),
        sys::ExitKind::Status(s) => line.int("status", s.into()),
    }
    .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut b = String::new();
        push_json_str(&mut b, s);
        b
    }

    #[test]
    fn escapes_specials() {
        assert_eq!(esc("plain"), "\"plain\"");
        assert_eq!(esc("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(esc("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(esc("\u{0}\u{1f}\u{7f}"), r#""\u0000\u001f\u007f""#);
        assert_eq!(esc("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(esc("\u{2028}"), r#""\u2028""#);
        assert_eq!(esc("é漢"), "\"é漢\"");
    }

    #[test]
    fn builds_a_line() {
        let l = Line::at(12.5, "exit")
            .int("pid", 42)
            .str("role", "worker")
            .int("signal", 9)
            .finish();
        assert_eq!(
            l,
            "{\"t\":12.500000,\"ev\":\"exit\",\"pid\":42,\"role\":\"worker\",\"signal\":9}\n"
        );
    }

    #[test]
    fn numbers_and_absent_fields() {
        let l = Line::at(0.0, "mem")
            .opt_uint("mem_total_kib", Some(1024))
            .opt_uint("oom_kill", None)
            .ms("late_ms", 1.23456)
            .ms("nan", f64::NAN)
            .bool("ok", false)
            .finish();
        assert_eq!(
            l,
            "{\"t\":0.000000,\"ev\":\"mem\",\"mem_total_kib\":1024,\"late_ms\":1.235,\"nan\":null,\"ok\":false}\n"
        );
        assert_eq!(l.matches('\n').count(), 1);
    }
}
