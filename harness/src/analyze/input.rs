//! Streaming input: files, stdin, gzip; a reused buffer, big reads, and a
//! cheap anchor scan so that only candidate lines are parsed.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Read size and the longest line kept whole; longer lines are cut.
pub(crate) const CHUNK: usize = 1 << 20;

/// A line longer than this is no log line: the input is refused there
/// (`/dev/zero` piped in would otherwise be read for ever, one endless
/// line, in bounded memory).
pub(crate) const MAX_LINE: u64 = 64 << 20;

/// The longest previous line handed over with a line ([`LineSink::line`]'s
/// `prev`): enough for a timestamp a paste split off its line.
const PREV_MAX: usize = 128;

/// Open `path` (`-` = stdin), transparently gunzipping gzip data.
/// Character devices are refused (`/dev/zero` never ends, `/dev/kmsg`
/// waits for ever): pipe them in (`dmesg | oomlab analyze -`) instead.
pub(crate) fn open(path: &Path) -> io::Result<(Box<dyn Read>, bool)> {
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        let f = std::fs::File::open(path)?;
        {
            use std::os::unix::fs::FileTypeExt;
            if f.metadata()?.file_type().is_char_device() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a character device, not a log file (pipe it in instead, e.g. `dmesg | oomlab analyze -`)",
                ));
            }
        }
        Box::new(f)
    };
    let mut br = BufReader::with_capacity(64 * 1024, raw);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(br)), true))
    } else {
        Ok((Box::new(br), false))
    }
}

/// What the scanner asks of its consumer, line by line.
pub(crate) trait LineSink {
    /// Handle one whole line (no `\n`); `prev` is the line before it when
    /// that one was short (at most 128 bytes; else empty), `offset` the
    /// line's byte offset in the (decompressed) input.
    fn line(&mut self, line: &[u8], prev: &[u8], offset: u64);
    /// True while every line must be looked at (inside an OOM report, where
    /// task-table rows carry no anchor; after a line that may continue on
    /// the next one).
    fn wants_every_line(&self) -> bool;
    /// The input ended; `last` is the start of its last non-empty line
    /// (for the time the log ends at).
    fn end(&mut self, last: &[u8]);
}

/// What the input scan looks for: a line holding none of these is skipped
/// unparsed. Each is a piece of one or more keywords of the kernel's
/// messages ([`crate::events::kernel::MESSAGES`]), of the supervisors'
/// ([`crate::events::supervisor::MESSAGES`]), or `"MESSAGE":[` (a journal
/// JSON record whose message was not UTF-8, an array of bytes). Pieces
/// that drop a keyword's first letter (`illed process`, `ernel panic`)
/// also find the keyword typed in lower case.
///
/// The first [`CONSOLE_ANCHORS`] are the kernel's and systemd's (systemd
/// writes to the kernel's log when the journal is not running): all that a
/// kernel console (`dmesg`, a serial capture) can hold. An input that
/// starts like one is scanned for these only: every pattern more costs
/// the multi-pattern search time on every byte.
///
/// At most 32 in all, so that the search stays the fast (slim) Teddy
/// variant. The tests check that every keyword of both tables holds one
/// of these.
pub(crate) const SCAN_ANCHORS: &[&str] = &[
    // the kernel
    "illed process",
    "ill process",
    "ernel panic",
    "oom-kill",
    "oom_reaper",
    "oom.group",
    "ask in ",
    "memory: usage",
    "emory limit reached",
    "OOM victim",
    "ebooting in",
    "no killable",
    "tgid",
    "\"MESSAGE\":[",
    // systemd
    "code=killed",
    "restart job",
    "scheduling restart",
    "repeated too quickly",
    "OOM killer",
    // the other supervisors
    "worker process ",
    "[pool ",
    "pid: ",
    "SIGKILL",
    "terminated",
    "WORKER",
    "spawned: '",
    "gave up: ",
    "OOMKilled",
    "TaskOOM",
    "failed container",
    "container ",
];

/// The bytes an input's kind is told from.
const SNIFF: usize = 64 << 10;

/// How many of [`SCAN_ANCHORS`] a kernel console is scanned for.
pub(crate) const CONSOLE_ANCHORS: usize = 19;

fn build(pats: &[&str]) -> aho_corasick::AhoCorasick {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(pats)
        .expect("fixed literal patterns always build")
}

fn scan_anchors(console: bool) -> &'static aho_corasick::AhoCorasick {
    static ALL: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    static CONSOLE: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    if console {
        CONSOLE.get_or_init(|| build(SCAN_ANCHORS.get(..CONSOLE_ANCHORS).unwrap_or_default()))
    } else {
        ALL.get_or_init(|| build(SCAN_ANCHORS))
    }
}

/// Does `head` (an input's first bytes) look like a kernel console: lines
/// of `dmesg` (`[   12.345678] `, `[Mon Jan ...] `) or of a serial capture
/// with printk levels (`<6>[...`), and nothing else?
fn kernel_console(head: &[u8]) -> bool {
    let mut lines = 0usize;
    let mut console = 0usize;
    for line in head.split(|b| *b == b'\n').take(2000) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let shaped = match line {
            [b'[', c, ..] => c.is_ascii_digit() || *c == b' ' || c.is_ascii_uppercase(),
            [b'<', c, ..] => c.is_ascii_digit(),
            _ => false,
        };
        console += usize::from(shaped);
    }
    lines >= 4 && console * 100 >= lines * 98
}

/// The line before the next region's first line, kept across reads.
#[derive(Default)]
struct Carry {
    /// Its first bytes (up to [`PREV_MAX`]).
    head: Vec<u8>,
    /// Its whole length.
    len: u64,
}

impl Carry {
    fn set(&mut self, line: &[u8], len: u64) {
        self.head.clear();
        self.head
            .extend_from_slice(line.get(..PREV_MAX.min(line.len())).unwrap_or_default());
        self.len = len;
    }
    /// As `prev`: the line when it was short, else nothing.
    fn prev(&self) -> &[u8] {
        if self.len as usize <= PREV_MAX {
            &self.head
        } else {
            &[]
        }
    }
}

/// Stream `r` into `sink`. Lines that contain no anchor are skipped without
/// being split out, unless the sink asks for every line. A line longer
/// than [`MAX_LINE`] ends the input with an error.
pub(crate) fn scan<R: Read + ?Sized, S: LineSink>(r: &mut R, sink: &mut S) -> io::Result<u64> {
    // the scan's patterns are chosen once, on the input's first bytes
    let mut ac: Option<&aho_corasick::AhoCorasick> = None;
    let mut unsearched: Option<usize> = None;
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0usize;
    let mut base: u64 = 0; // offset of buf[0]
    let mut total: u64 = 0;
    // When a line was longer than the buffer: skip to the next newline.
    let mut skipping = false;
    let mut long_line: u64 = 0;
    // The last line of what was scanned, and the last non-empty one.
    let mut carry = Carry::default();
    let mut last = Carry::default();
    loop {
        let old = filled;
        let n = match r.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                sink.end(&last.head);
                return Err(e);
            }
        };
        total += n as u64;
        filled += n;
        let eof = n == 0;
        // The kept tail never holds a newline, so only new bytes are searched
        // (and those read while the input's kind was still being told).
        let mut new_from = unsearched.take().unwrap_or(old);
        if skipping {
            match memchr::memchr(b'\n', buf.get(old..filled).unwrap_or_default()) {
                Some(i) => {
                    let cut = old + i + 1;
                    buf.copy_within(cut..filled, 0);
                    base += cut as u64;
                    filled -= cut;
                    new_from = 0;
                    skipping = false;
                    long_line = 0;
                }
                None => {
                    base += filled as u64;
                    long_line += filled as u64;
                    filled = 0;
                    if long_line > MAX_LINE {
                        sink.end(&last.head);
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "more than {} MiB without a line break at byte {base}: not a text log",
                                MAX_LINE >> 20
                            ),
                        ));
                    }
                    if eof {
                        break;
                    }
                    continue;
                }
            }
        }
        // the patterns are chosen on the first 64 KiB, whatever the reads
        if ac.is_none() && !eof && filled < SNIFF && !skipping {
            unsearched = Some(new_from);
            continue;
        }
        let end = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', buf.get(new_from..filled).unwrap_or_default()) {
                Some(i) => new_from + i + 1,
                None if filled < buf.len() => continue,
                None => {
                    // A line longer than the buffer: parse its head, skip the rest.
                    let head = buf.get(..filled).unwrap_or_default();
                    sink.line(head, carry.prev(), base);
                    carry.set(head, u64::MAX);
                    last.set(head, u64::MAX);
                    skipping = true;
                    long_line = filled as u64;
                    base += filled as u64;
                    filled = 0;
                    continue;
                }
            }
        };
        let ac = *ac.get_or_insert_with(|| {
            scan_anchors(kernel_console(
                buf.get(..filled.min(SNIFF)).unwrap_or_default(),
            ))
        });
        let region = buf.get(..end).unwrap_or_default();
        scan_region(region, base, &carry, ac, sink);
        remember_last_lines(region, &mut carry, &mut last);
        buf.copy_within(end..filled, 0);
        base += end as u64;
        filled -= end;
        if eof {
            break;
        }
    }
    sink.end(&last.head);
    Ok(total)
}

/// After a region: its last line (the next region's first `prev`) and its
/// last non-empty line.
fn remember_last_lines(region: &[u8], carry: &mut Carry, last: &mut Carry) {
    if region.is_empty() {
        return;
    }
    let body = region.strip_suffix(b"\n").unwrap_or(region);
    let ls = memchr::memrchr(b'\n', body).map_or(0, |i| i + 1);
    let line = body.get(ls..).unwrap_or_default();
    carry.set(line, line.len() as u64);
    // the last non-empty line: walk back over empty ones
    let mut end = body.len();
    loop {
        let s = memchr::memrchr(b'\n', body.get(..end).unwrap_or_default()).map_or(0, |i| i + 1);
        let l = body.get(s..end).unwrap_or_default();
        if !l.iter().all(u8::is_ascii_whitespace) {
            last.set(l, l.len() as u64);
            return;
        }
        if s == 0 {
            return;
        }
        end = s - 1;
    }
}

fn scan_region<S: LineSink>(
    region: &[u8],
    base: u64,
    carry: &Carry,
    ac: &aho_corasick::AhoCorasick,
    sink: &mut S,
) {
    // The line before the one at `ls`.
    let prev_of = |ls: usize| -> &[u8] {
        if ls == 0 {
            return carry.prev();
        }
        let pe = ls - 1;
        let ps = memchr::memrchr(b'\n', region.get(..pe).unwrap_or_default()).map_or(0, |i| i + 1);
        if pe - ps <= PREV_MAX {
            region.get(ps..pe).unwrap_or_default()
        } else {
            &[]
        }
    };
    let mut pos = 0usize;
    while pos < region.len() {
        if sink.wants_every_line() {
            let rest = region.get(pos..).unwrap_or_default();
            let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            sink.line(
                rest.get(..len).unwrap_or_default(),
                prev_of(pos),
                base + pos as u64,
            );
            pos += len + 1;
            continue;
        }
        let hay = region.get(pos..).unwrap_or_default();
        // A task-table row or header right at a line start after an OOM
        // header is caught through wants_every_line; here only anchors.
        let Some(m) = ac.find(hay) else { break };
        let hit = pos + m.start();
        let ls = memchr::memrchr(b'\n', region.get(..hit).unwrap_or_default()).map_or(0, |i| i + 1);
        let ls = ls.max(pos);
        let tail = region.get(hit..).unwrap_or_default();
        let le = hit + memchr::memchr(b'\n', tail).unwrap_or(tail.len());
        sink.line(
            region.get(ls..le).unwrap_or_default(),
            prev_of(ls),
            base + ls as u64,
        );
        pos = le + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<String>, bool);
    impl LineSink for Collect {
        fn line(&mut self, line: &[u8], _prev: &[u8], _offset: u64) {
            self.0.push(String::from_utf8_lossy(line).into_owned());
        }
        fn wants_every_line(&self) -> bool {
            self.1
        }
        fn end(&mut self, _last: &[u8]) {}
    }

    #[test]
    fn every_keyword_holds_a_scan_anchor() {
        assert!(SCAN_ANCHORS.len() <= 32, "more than 32 anchors: slow scan");
        let console = SCAN_ANCHORS
            .get(..CONSOLE_ANCHORS)
            .expect("console anchors");
        let holds = |k: &str| console.iter().any(|a| k.contains(a));
        for k in crate::events::kernel::keywords() {
            assert!(holds(k), "kernel keyword {k:?}");
            // and typed in lower case (the first letter)
            let mut lower = k.to_string();
            if let Some(f) = lower.get_mut(..1) {
                f.make_ascii_lowercase();
            }
            if k.chars().nth(1).is_some_and(|c| c.is_ascii_lowercase()) {
                assert!(holds(&lower), "kernel keyword {lower:?}");
            }
        }
        // systemd's on a console too, the others' in any other input
        for m in crate::events::supervisor::MESSAGES {
            for k in m.keywords {
                if m.supervisor == crate::events::supervisor::Supervisor::Systemd {
                    assert!(holds(k), "systemd keyword {k:?}");
                } else {
                    assert!(SCAN_ANCHORS.iter().any(|a| k.contains(a)), "keyword {k:?}");
                    assert!(!holds(k), "{k:?}: put its anchor after the console ones");
                }
            }
        }
    }

    #[test]
    fn consoles_are_told_from_other_logs() {
        let dmesg = "[    0.000000] Linux version 6.1.0\n[    1.5] x\n[Mon Jan  1 00:00:00 2024] y\n<6>[ 2.0] z\n";
        assert!(kernel_console(dmesg.as_bytes()));
        let syslog = "[    0.000000] Linux version 6.1.0\n[    1.5] x\n[    1.6] y\nJan 18 09:51:00 host nginx: z\n";
        assert!(!kernel_console(syslog.as_bytes()));
        assert!(!kernel_console(
            b"2024/01/18 09:51:00 [alert] 1#0: worker process 31 exited on signal 9\n"
        ));
        // a supervisor's line in a console is not looked for, systemd's is
        let mut c = Collect(vec![], false);
        let text = format!("{dmesg}[ 3.0] systemd[1]: a.service: Main process exited, code=killed, status=9/KILL\n[ 3.1] uwsgi: DAMN ! worker 1 (pid: 5) died, killed by signal 9\n");
        scan(&mut text.as_bytes(), &mut c).unwrap();
        assert_eq!(c.0.len(), 1, "{:?}", c.0);
    }

    #[test]
    fn every_line_and_anchor_modes() {
        let text = "a\nKilled process 1 (x)\n\nb\nc Kill process 2 (y) score 1\nlast tgid";
        let mut c = Collect(vec![], true);
        scan(&mut text.as_bytes(), &mut c).unwrap();
        assert_eq!(c.0.len(), 6);
        let mut c = Collect(vec![], false);
        scan(&mut text.as_bytes(), &mut c).unwrap();
        assert_eq!(
            c.0,
            vec![
                "Killed process 1 (x)",
                "c Kill process 2 (y) score 1",
                "last tgid"
            ]
        );
    }

    #[test]
    fn long_lines_and_small_reads() {
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(7).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut text = "x".repeat(CHUNK * 2 + 5);
        text.push_str("\nKilled process 1 (x)\n");
        let mut c = Collect(vec![], false);
        scan(&mut Slow(text.as_bytes()), &mut c).unwrap();
        // the head of the over-long line is handed over, cut; then the kill
        assert_eq!(c.0.len(), 2);
        assert_eq!(c.0[0].len(), CHUNK);
        assert_eq!(c.0[1], "Killed process 1 (x)");
        let mut c = Collect(vec![], false);
        scan(&mut Slow(b"a\nKilled process 2 (y)\nb"), &mut c).unwrap();
        assert_eq!(c.0, vec!["Killed process 2 (y)"]);
    }
}
