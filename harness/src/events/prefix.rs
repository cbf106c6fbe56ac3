//! What userspace puts in front of the kernel's text, and the clocks in it.
//!
//! [`split_prefix`] strips dmesg/syslog/journal timestamps, hostnames, tags
//! and `<6>` levels from a raw line; [`When::of`] turns the stamp it found
//! into a number of seconds on one of three clocks ([`Clock`]).

use serde::Serialize;

/// Where a line's time came from. Only `Monotonic` is comparable with the
/// payload's telemetry clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Timestamp {
    /// `[  123.456789]`: seconds since boot (printk clock).
    Monotonic(f64),
    /// A wall-clock stamp as printed (syslog, journal, `dmesg -T`); kept as text.
    Wall(String),
}

/// A log line with userspace's prefix removed.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine<'a> {
    pub ts: Option<Timestamp>,
    /// syslog/journal hostname, where the prefix had one.
    pub host: Option<&'a str>,
    /// The kernel's own text, without the trailing newline/CR.
    pub msg: &'a str,
    /// Seconds since boot when a wall-clock prefix (syslog, journal) was
    /// followed by the kernel's own `[  123.456789] ` stamp.
    pub uptime: Option<f64>,
    /// syslog/journal tag of a line that is *not* the kernel's (`sshd[12]`,
    /// `systemd[1]`); such lines should not be parsed as kernel messages.
    pub source: Option<&'a str>,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Month number (1-12) of a three-letter English month name.
pub fn month_number(m: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|x| *x == m)
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn is_digit(b: Option<&u8>) -> bool {
    matches!(b, Some(c) if c.is_ascii_digit())
}

/// `<N>` printk level (1-3 digits). Returns the rest.
fn strip_level(s: &str) -> &str {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return s;
    }
    let mut i = 1;
    while i < b.len() && i <= 4 && b[i].is_ascii_digit() {
        i += 1;
    }
    if i > 1 && b.get(i) == Some(&b'>') {
        s.get(i + 1..).unwrap_or("")
    } else {
        s
    }
}

/// `[  123.456789]` (+ optional one space). Returns (seconds, rest).
fn strip_monotonic(s: &str) -> Option<(f64, &str)> {
    let inner_start = s.strip_prefix('[')?;
    let close = inner_start.bytes().take(25).position(|b| b == b']')?;
    if close > 24 {
        return None;
    }
    let inner = inner_start.get(..close)?.trim_start_matches(' ');
    let dot = memchr::memchr(b'.', inner.as_bytes())?;
    let (a, f) = (inner.get(..dot)?, inner.get(dot + 1..)?);
    if a.is_empty()
        || f.is_empty()
        || !a.bytes().all(|c| c.is_ascii_digit())
        || !f.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // seconds with up to 9 decimals, below 2^53 as an integer: one exact
    // division, rounded as `parse` rounds the decimal (both are the
    // correctly rounded value of the same rational)
    let n = u64::try_from(a.len() + f.len()).ok()?;
    let v: f64 = if f.len() <= 9 && n <= 15 {
        let digits = a
            .bytes()
            .chain(f.bytes())
            .fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
        const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
        digits as f64 / POW10.get(f.len()).copied()?
    } else {
        inner.parse().ok()?
    };
    let rest = inner_start.get(close + 1..)?;
    Some((v, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `HH:MM:SS` with optional `.fraction`; returns its byte length.
fn clock_len(b: &[u8]) -> Option<usize> {
    let ok = b.len() >= 8
        && is_digit(b.first())
        && is_digit(b.get(1))
        && b.get(2) == Some(&b':')
        && is_digit(b.get(3))
        && is_digit(b.get(4))
        && b.get(5) == Some(&b':')
        && is_digit(b.get(6))
        && is_digit(b.get(7));
    if !ok {
        return None;
    }
    let mut n = 8;
    // `.123` (syslog, journal), `,123` (Python's logging, supervisord)
    if matches!(b.get(8), Some(&b'.') | Some(&b',')) && is_digit(b.get(9)) {
        n = 9;
        while is_digit(b.get(n)) {
            n += 1;
        }
    }
    Some(n)
}

/// `[Thu Dec  7 00:05:15 2017]` (+ one space).
fn strip_dmesg_t(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    if !(20..=32).contains(&close) {
        return None;
    }
    let ts = inner.get(..close)?;
    let day = ts.get(..3)?;
    if !DAYS.contains(&day) || ts.as_bytes().get(3) != Some(&b' ') {
        return None;
    }
    let after_day = ts.get(4..)?;
    let (_, n) = syslog_stamp_len(after_day)?;
    let year = after_day.get(n..)?.trim();
    if year.len() != 4 || !year.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let rest = inner.get(close + 1..)?;
    Some((ts, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `Mon dd HH:MM:SS[.frac]` (day space- or zero-padded). Returns (month, len).
fn syslog_stamp_len(s: &str) -> Option<(u32, usize)> {
    let b = s.as_bytes();
    let month = month_number(s.get(..3)?)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let mut i = 4;
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    let d0 = i;
    while is_digit(b.get(i)) && i < d0 + 2 {
        i += 1;
    }
    if i == d0 || b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let n = clock_len(b.get(i..)?)?;
    Some((month, i + n))
}

/// ISO 8601 `2017-12-07T00:05:15[.frac][Z|+hh:mm|+hhmm]`; returns its length.
fn iso_stamp_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let date_ok = b.len() >= 19
        && b.iter().take(4).all(|c| c.is_ascii_digit())
        && b.get(4) == Some(&b'-')
        && is_digit(b.get(5))
        && is_digit(b.get(6))
        && b.get(7) == Some(&b'-')
        && is_digit(b.get(8))
        && is_digit(b.get(9))
        && matches!(b.get(10), Some(b'T') | Some(b' '));
    if !date_ok {
        return None;
    }
    let mut i = 11 + clock_len(b.get(11..)?)?;
    match b.get(i) {
        Some(b'Z') => i += 1,
        Some(b'+') | Some(b'-') => {
            let z0 = i + 1;
            i = z0;
            while i < z0 + 5 && (is_digit(b.get(i)) || b.get(i) == Some(&b':')) {
                i += 1;
            }
        }
        _ => {}
    }
    Some(i)
}

/// After a syslog/journal stamp: `kernel: ` or `host kernel: `. Returns
/// (host, rest) when the tag is the kernel's.
fn strip_kernel_tag(s: &str) -> Option<(Option<&str>, &str)> {
    if let Some(r) = s.strip_prefix("kernel:") {
        return Some((None, r.strip_prefix(' ').unwrap_or(r)));
    }
    let (host, r) = s.split_once(' ')?;
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    let r = r.strip_prefix("kernel:")?;
    Some((Some(host), r.strip_prefix(' ').unwrap_or(r)))
}

/// After a stamp, `[host ]tag: ` of a userspace program. Returns (host, tag, rest).
fn strip_other_tag(s: &str) -> Option<(Option<&str>, &str, &str)> {
    let (first, rest) = s.split_once(' ')?;
    if let Some(tag) = first.strip_suffix(':') {
        if !tag.is_empty() && tag != "kernel" {
            return Some((None, tag, rest));
        }
        return None;
    }
    let (second, rest2) = rest.split_once(' ').unwrap_or((rest, ""));
    let tag = second.strip_suffix(':')?;
    if tag.is_empty() || tag == "kernel" || first.is_empty() {
        return None;
    }
    Some((Some(first), tag, rest2))
}

/// Strip userspace's prefix. Never fails: unknown prefixes leave `msg` as
/// the whole line.
///
/// Understood: `dmesg` (`[  123.456789] `), `dmesg -T`
/// (`[Thu Dec  7 00:05:15 2017] `), syslog/rsyslog
/// (`Jan 18 09:50:59 [host ]kernel: [[  12.3] ]`), journalctl `short`,
/// `short-precise`, `short-iso` and `short-monotonic`, RFC 3339 rsyslog
/// stamps, a bare `kernel: `, and `<6>` printk levels anywhere among these.
pub fn split_prefix(line: &str) -> LogLine<'_> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut out = LogLine {
        ts: None,
        host: None,
        msg: line,
        uptime: None,
        source: None,
    };
    let mut s = strip_level(line);
    let mut tagged = false;
    if s.starts_with('[') {
        if let Some((t, rest)) = strip_monotonic(s) {
            out.ts = Some(Timestamp::Monotonic(t));
            s = rest;
            // journalctl -o short-monotonic: `[  12.34] host kernel: `
            if let Some((host, rest)) = strip_kernel_tag(s) {
                out.host = host;
                s = rest;
                tagged = true;
            }
        } else if let Some((t, rest)) = strip_dmesg_t(s) {
            out.ts = Some(Timestamp::Wall(t.to_string()));
            s = rest;
        }
    } else if let Some(n) = syslog_stamp_len(s)
        .map(|(_, n)| n)
        .or_else(|| iso_stamp_len(s))
    {
        // syslog / journal `short` and `short-iso`: stamp, host, tag.
        if let (Some(ts), Some(rest)) = (s.get(..n), s.get(n..)) {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            out.ts = Some(Timestamp::Wall(ts.to_string()));
            s = rest;
            if let Some((host, rest)) = strip_kernel_tag(s) {
                out.host = host;
                s = rest;
                tagged = true;
            } else if let Some((host, tag, rest)) = strip_other_tag(s) {
                out.host = host;
                out.source = Some(tag);
                s = rest;
            }
        }
    } else if let Some(rest) = s.strip_prefix("kernel: ") {
        s = rest;
        tagged = true;
    }
    s = strip_level(s);
    if tagged {
        if let Some((t, rest)) = strip_monotonic(s) {
            if out.ts.is_none() {
                out.ts = Some(Timestamp::Monotonic(t));
            } else {
                out.uptime = Some(t);
            }
            s = strip_level(rest);
        }
    }
    if let Some(Timestamp::Monotonic(t)) = out.ts {
        out.uptime.get_or_insert(t);
    }
    out.msg = s;
    out
}

// ---------------------------------------------------------------------------
// Wall clocks
// ---------------------------------------------------------------------------

/// Which clock a [`When`] is on. Times on different clocks cannot be
/// compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    /// Seconds since boot.
    Mono,
    /// syslog's `Jan 18 09:50:59`: no year, so only comparable within one
    /// year (months count as 31 days).
    WallNoYear,
    /// ISO 8601 and `dmesg -T`: seconds since the epoch (time zone ignored).
    WallYear,
}

/// A line's time as a number.
#[derive(Debug, Clone, Copy)]
pub struct When {
    pub clock: Clock,
    pub t: f64,
    /// whole seconds only (syslog): a span of 0 s means "within 1 s".
    pub coarse: bool,
}

impl When {
    /// The time of a stamp found by [`split_prefix`] (a wall-clock stamp
    /// that cannot be read gives `None`).
    pub fn of(ts: Option<&Timestamp>) -> Option<When> {
        match ts? {
            Timestamp::Monotonic(t) => Some(When {
                clock: Clock::Mono,
                t: *t,
                coarse: false,
            }),
            Timestamp::Wall(s) => parse_wall(s),
        }
    }
}

impl When {
    /// Seconds from `earlier` to `self`, when their clocks can be compared:
    /// the same clock, or a wall clock with a year against one without
    /// (syslog), compared on the yearless scale.
    pub fn since(&self, earlier: &When) -> Option<f64> {
        match (self.clock, earlier.clock) {
            (a, b) if a == b => Some(self.t - earlier.t),
            (Clock::WallYear, Clock::WallNoYear) => Some(no_year(self.t) - earlier.t),
            (Clock::WallNoYear, Clock::WallYear) => Some(self.t - no_year(earlier.t)),
            _ => None,
        }
    }
}

/// A [`Clock::WallYear`] time on the [`Clock::WallNoYear`] scale.
fn no_year(epoch_s: f64) -> f64 {
    let days = (epoch_s / 86400.0).floor();
    let secs = epoch_s - days * 86400.0;
    let (_, m, d) = civil_from_days(days as i64);
    f64::from(m * 31 + d) * 86400.0 + secs
}

/// The date of a day number since 1970-01-01 (inverse of
/// [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `HH:MM:SS[.frac]` in seconds, and whether it had no fraction.
fn clock_secs(s: &str) -> Option<(f64, bool)> {
    let h: f64 = s.get(0..2)?.parse().ok()?;
    let m: f64 = s.get(3..5)?.parse().ok()?;
    let sec_txt = s.get(6..)?;
    let n = sec_txt
        .bytes()
        .take_while(|c| c.is_ascii_digit() || *c == b'.' || *c == b',')
        .count();
    let sec: f64 = sec_txt.get(..n)?.replace(',', ".").parse().ok()?;
    Some((h * 3600.0 + m * 60.0 + sec, n <= 2))
}

/// Read a wall-clock stamp as printed ([`Timestamp::Wall`]): syslog,
/// ISO 8601 or `dmesg -T`.
pub fn parse_wall(s: &str) -> Option<When> {
    let s = s.trim();
    // ISO 8601
    if s.as_bytes().get(4) == Some(&b'-') {
        let y: i64 = s.get(0..4)?.parse().ok()?;
        let mo: u32 = s.get(5..7)?.parse().ok()?;
        let d: u32 = s.get(8..10)?.parse().ok()?;
        let (secs, coarse) = clock_secs(s.get(11..)?)?;
        return Some(When {
            clock: Clock::WallYear,
            t: days_from_civil(y, mo, d) as f64 * 86400.0 + secs,
            coarse,
        });
    }
    // dmesg -T: `Thu Dec  7 00:05:15 2017`
    let (body, year) = if s.as_bytes().get(3) == Some(&b' ')
        && month_number(s.get(4..7).unwrap_or("")).is_some()
    {
        let body = s.get(4..)?;
        let (b, y) = body.rsplit_once(' ')?;
        (b, Some(y.parse::<i64>().ok()?))
    } else {
        (s, None)
    };
    let mo = month_number(body.get(0..3)?)?;
    let mut parts = body.get(3..)?.split_ascii_whitespace();
    let d: u32 = parts.next()?.parse().ok()?;
    let (secs, coarse) = clock_secs(parts.next()?)?;
    Some(match year {
        Some(y) => When {
            clock: Clock::WallYear,
            t: days_from_civil(y, mo, d) as f64 * 86400.0 + secs,
            coarse,
        },
        None => When {
            clock: Clock::WallNoYear,
            t: f64::from(mo * 31 + d) * 86400.0 + secs,
            coarse,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_dmesg() {
        let l = split_prefix("[  123.456789] Out of memory: Killed process 1 (a)\r\n");
        assert_eq!(l.ts, Some(Timestamp::Monotonic(123.456789)));
        assert_eq!(l.msg, "Out of memory: Killed process 1 (a)");
        assert_eq!(l.uptime, Some(123.456789));
    }

    #[test]
    fn monotonic_stamps_read_as_parse_reads_them() {
        for s in [
            "2.845334",
            "0.000001",
            "86210.114000",
            "99999.999999",
            "1.5",
            "123456.123456789",
        ] {
            let line = format!("[{s}] x");
            assert_eq!(
                strip_monotonic(&line).map(|x| x.0),
                s.parse::<f64>().ok(),
                "{s}"
            );
        }
    }

    #[test]
    fn prefix_dmesg_t() {
        let l = split_prefix("[Thu Dec  7 00:05:15 2017] Killed process 1 (a)");
        assert_eq!(
            l.ts,
            Some(Timestamp::Wall("Thu Dec  7 00:05:15 2017".into()))
        );
        assert_eq!(l.msg, "Killed process 1 (a)");
    }

    #[test]
    fn prefix_syslog_host_and_no_host() {
        let l = split_prefix("Jan 18 09:51:00 guomai131030 kernel: Killed process 8364, UID 2188, (nginx) total-vm:1kB");
        assert_eq!(l.ts, Some(Timestamp::Wall("Jan 18 09:51:00".into())));
        assert_eq!(l.host, Some("guomai131030"));
        assert!(l.msg.starts_with("Killed process 8364"));
        let l = split_prefix("Jan 18 09:50:59 kernel: [ 8353] 2188 8353 29284 4840 0 0 0 nginx");
        assert_eq!(l.host, None);
        assert_eq!(l.msg, "[ 8353] 2188 8353 29284 4840 0 0 0 nginx");
        let l = split_prefix("May  8 10:00:01 h kernel: [ 9610.328720] foo");
        assert_eq!(l.ts, Some(Timestamp::Wall("May  8 10:00:01".into())));
        assert_eq!(l.uptime, Some(9610.328720));
        assert_eq!(l.msg, "foo");
        let l = split_prefix("Aug 19 00:32:04 kernel: [ 9610.328720] foo");
        assert_eq!(l.msg, "foo");
    }

    #[test]
    fn prefix_userspace_tag() {
        let l = split_prefix("Mar  3 14:02:10 web01 sshd[2211]: Killed process 1 (x)");
        assert_eq!(
            (l.host, l.source, l.msg),
            (Some("web01"), Some("sshd[2211]"), "Killed process 1 (x)")
        );
        let l = split_prefix("2024-03-01T10:00:00+0000 host systemd[1]: app.service: killed");
        assert_eq!(l.source, Some("systemd[1]"));
        let l = split_prefix("Jan 18 09:50:59 kernel: Killed process 1 (x)");
        assert_eq!(l.source, None);
    }

    #[test]
    fn prefix_journal_forms() {
        let l = split_prefix("2017-12-07T00:05:15+0100 host kernel: bar");
        assert_eq!(
            l.ts,
            Some(Timestamp::Wall("2017-12-07T00:05:15+0100".into()))
        );
        assert_eq!(l.msg, "bar");
        let l = split_prefix("2023-01-02T03:04:05.123456+00:00 host kernel: bar");
        assert_eq!(l.msg, "bar");
        let l = split_prefix("[  12.500000] host kernel: bar");
        assert_eq!(l.ts, Some(Timestamp::Monotonic(12.5)));
        assert_eq!(l.host, Some("host"));
        assert_eq!(l.msg, "bar");
        let l = split_prefix("May 07 21:43:54.123456 host kernel: bar");
        assert_eq!(l.msg, "bar");
        assert_eq!(split_prefix("kernel: bar").msg, "bar");
        let l = split_prefix("<6>[    1.000000] bar");
        assert_eq!(l.msg, "bar");
        assert_eq!(l.ts, Some(Timestamp::Monotonic(1.0)));
        assert_eq!(split_prefix("no prefix here").msg, "no prefix here");
        // a task row after a tag is not an uptime stamp
        assert_eq!(
            split_prefix("kernel: [ 8202] 0 8202 1 1 0 0 0 bash").msg,
            "[ 8202] 0 8202 1 1 0 0 0 bash"
        );
    }

    #[test]
    fn wall_clocks() {
        let a = parse_wall("Jan 18 09:50:59").unwrap();
        let b = parse_wall("Jan 18 09:51:00").unwrap();
        assert!(a.coarse && b.t - a.t == 1.0 && a.clock == Clock::WallNoYear);
        let c = parse_wall("Thu Dec  7 00:05:15 2017").unwrap();
        let d = parse_wall("2017-12-07T00:05:16+0100").unwrap();
        assert_eq!(c.clock, Clock::WallYear);
        assert_eq!(d.t - c.t, 1.0);
        assert!(parse_wall("2017-12-07T00:05:16.5Z").is_some_and(|w| !w.coarse));
        // a clock with a year against syslog's yearless one
        let e = parse_wall("2017-12-07 00:05:20,250").unwrap();
        let f = parse_wall("Dec  7 00:05:15").unwrap();
        assert_eq!(e.since(&f), Some(5.25));
        assert_eq!(f.since(&e), Some(-5.25));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        let mono = When {
            clock: Clock::Mono,
            t: 1.0,
            coarse: false,
        };
        assert_eq!(mono.since(&f), None);
    }
}
