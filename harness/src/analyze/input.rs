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
/// At most 32, so that the multi-pattern search stays the fast (slim)
/// Teddy variant: a 33rd pattern halves the scan's speed. The tests check
/// that every keyword of both tables holds one of these.
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
    // the supervisors
    "code=killed",
    "restart job",
    "scheduling restart",
    "repeated too quickly",
    "OOM killer",
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

fn scan_anchors() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(SCAN_ANCHORS)
            .expect("fixed literal patterns always build")
    })
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
    let ac = scan_anchors();
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
        // The kept tail never holds a newline, so only new bytes are searched.
        let mut new_from = old;
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
        let holds = |k: &str| SCAN_ANCHORS.iter().any(|a| k.contains(a));
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
        for k in crate::events::supervisor::keywords() {
            assert!(holds(k), "supervisor keyword {k:?}");
        }
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
