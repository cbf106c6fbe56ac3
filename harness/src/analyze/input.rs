//! Streaming input: files, stdin, gzip; a reused buffer, big reads, and a
//! cheap anchor scan so that only candidate lines are parsed.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Read size and the longest line kept whole; longer lines are cut.
pub(crate) const CHUNK: usize = 1 << 20;

/// Open `path` (`-` = stdin), transparently gunzipping gzip data.
pub(crate) fn open(path: &Path) -> io::Result<(Box<dyn Read>, bool)> {
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(path)?)
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
    /// Handle one whole line (no `\n`); `offset` is its byte offset in the
    /// (decompressed) input.
    fn line(&mut self, line: &[u8], offset: u64);
    /// True while every line must be looked at (inside an OOM report, where
    /// task-table rows carry no anchor).
    fn wants_every_line(&self) -> bool;
}

/// The kernel's anchors plus `"MESSAGE":[`: journal JSON records whose
/// message was not UTF-8 (an array of bytes) cannot be matched textually.
fn scan_anchors() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        let mut pats: Vec<&str> = crate::events::kernel::keywords().to_vec();
        pats.push("\"MESSAGE\":[");
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(pats)
            .expect("fixed literal patterns always build")
    })
}

/// Stream `r` into `sink`. Lines that contain no anchor are skipped without
/// being split out, unless the sink asks for every line.
pub(crate) fn scan<R: Read + ?Sized, S: LineSink>(r: &mut R, sink: &mut S) -> io::Result<u64> {
    let ac = scan_anchors();
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0usize;
    let mut base: u64 = 0; // offset of buf[0]
    let mut total: u64 = 0;
    // When a line was longer than the buffer: skip to the next newline.
    let mut skipping = false;
    loop {
        let old = filled;
        let n = match r.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
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
                }
                None => {
                    base += filled as u64;
                    filled = 0;
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
                    sink.line(buf.get(..filled).unwrap_or_default(), base);
                    skipping = true;
                    base += filled as u64;
                    filled = 0;
                    continue;
                }
            }
        };
        scan_region(buf.get(..end).unwrap_or_default(), base, ac, sink);
        buf.copy_within(end..filled, 0);
        base += end as u64;
        filled -= end;
        if eof {
            break;
        }
    }
    Ok(total)
}

fn scan_region<S: LineSink>(
    region: &[u8],
    base: u64,
    ac: &aho_corasick::AhoCorasick,
    sink: &mut S,
) {
    let mut pos = 0usize;
    while pos < region.len() {
        if sink.wants_every_line() {
            let rest = region.get(pos..).unwrap_or_default();
            let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            sink.line(rest.get(..len).unwrap_or_default(), base + pos as u64);
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
        sink.line(region.get(ls..le).unwrap_or_default(), base + ls as u64);
        pos = le + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<String>, bool);
    impl LineSink for Collect {
        fn line(&mut self, line: &[u8], _offset: u64) {
            self.0.push(String::from_utf8_lossy(line).into_owned());
        }
        fn wants_every_line(&self) -> bool {
            self.1
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
