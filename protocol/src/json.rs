//! The few JSON pieces the telemetry writer needs, by hand: the payload is
//! PID 1 of a tiny guest and carries no serializer crate.

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal (RFC 8259 escapes).
pub fn push_str(buf: &mut String, s: &str) {
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

/// JSON has no NaN/inf; `null` keeps the line parseable.
pub fn push_float(buf: &mut String, v: f64, decimals: usize) {
    if v.is_finite() {
        let _ = write!(buf, "{v:.decimals$}");
    } else {
        buf.push_str("null");
    }
}

/// One JSON object being built, one field at a time.
pub struct Object {
    buf: String,
}

impl Object {
    pub fn new() -> Object {
        let mut buf = String::with_capacity(128);
        buf.push('{');
        Object { buf }
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_str(&mut self.buf, k);
        self.buf.push(':');
    }

    pub fn str(mut self, k: &str, v: &str) -> Object {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }

    pub fn int(mut self, k: &str, v: impl Into<i64>) -> Object {
        self.key(k);
        let _ = write!(self.buf, "{}", v.into());
        self
    }

    pub fn uint(mut self, k: &str, v: u64) -> Object {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    pub fn float(mut self, k: &str, v: f64, decimals: usize) -> Object {
        self.key(k);
        push_float(&mut self.buf, v, decimals);
        self
    }

    pub fn bool(mut self, k: &str, v: bool) -> Object {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// Absent fields are omitted, never written as `null`.
    pub fn opt_uint(self, k: &str, v: Option<u64>) -> Object {
        match v {
            Some(v) => self.uint(k, v),
            None => self,
        }
    }

    pub fn opt_int(self, k: &str, v: Option<i64>) -> Object {
        match v {
            Some(v) => self.int(k, v),
            None => self,
        }
    }

    pub fn opt_str(self, k: &str, v: Option<&str>) -> Object {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }

    /// The object as one line, `\n` included.
    pub fn line(mut self) -> String {
        self.buf.push_str("}\n");
        self.buf
    }
}

impl Default for Object {
    fn default() -> Self {
        Object::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut b = String::new();
        push_str(&mut b, s);
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
    fn objects_omit_absent_fields_and_never_write_nan() {
        let l = Object::new()
            .opt_uint("a", Some(1024))
            .opt_uint("b", None)
            .float("c", 1.23456, 3)
            .float("nan", f64::NAN, 3)
            .bool("ok", false)
            .line();
        assert_eq!(l, "{\"a\":1024,\"c\":1.235,\"nan\":null,\"ok\":false}\n");
    }
}
