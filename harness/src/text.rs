//! Text that came from input (scenario fields, kernel and guest output,
//! log lines, file names), made safe to print on a terminal.
//!
//! A terminal obeys what it is sent: an ESC starts a control sequence
//! (colours, cursor moves, window titles, on some terminals worse), a CR
//! or a backspace overwrites what was printed, and the bidirectional
//! overrides reorder what a reader sees (`U+202E` makes `exe.txt` look
//! like `txt.exe`). Everything oomlab prints that it did not write itself
//! goes through [`printable`] (one line) or [`printable_lines`] (text whose
//! line breaks are meant).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters never printed raw: the C0 controls (tab and line feed
/// included; [`printable_lines`] keeps those two), DEL, the C1 controls,
/// and the Unicode bidirectional controls (embeddings, overrides,
/// isolates and the marks that steer them).
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `s` with every [`is_unsafe`] character written as an escape: `\x1b` for
/// ASCII controls, `\u{202e}` for the others. Borrowed when nothing needed
/// escaping (the common case).
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, is_unsafe)
}

/// As [`printable`], but line feeds and tabs are kept: for multi-line text
/// such as QEMU's stderr. A CR is still escaped (it would let one line
/// overwrite another).
pub fn printable_lines(s: &str) -> Cow<'_, str> {
    escape(s, |c| c != '\n' && c != '\t' && is_unsafe(c))
}

fn escape(s: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `s`, and how many bytes were left out: for
/// messages that quote input of any length.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!("{}... ({} more bytes)", &s[..at], s.len() - at)),
    }
}

/// The first [`is_unsafe`] character of `s` other than those `allowed`,
/// with its byte offset: for validation that refuses them outright.
pub fn first_unsafe(s: &str, allowed: &[char]) -> Option<(usize, char)> {
    s.char_indices()
        .find(|&(_, c)| is_unsafe(c) && !allowed.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_and_keeps_the_rest() {
        assert!(matches!(printable("plain ünïcode 日本"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}[31mred"), "a\\x1b[31mred");
        assert_eq!(printable("nul\0 del\u{7f}"), "nul\\x00 del\\x7f");
        assert_eq!(printable("c1\u{9b}2J"), "c1\\u{9b}2J");
        assert_eq!(printable("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(printable("iso\u{2066}x\u{2069}"), "iso\\u{2066}x\\u{2069}");
        assert_eq!(printable("two\nlines\r"), "two\\x0alines\\x0d");
        assert_eq!(printable_lines("two\n\tlines\r"), "two\n\tlines\\x0d");
        assert_eq!(
            printable_lines("x\u{1b}]0;title\u{7}"),
            "x\\x1b]0;title\\x07"
        );
    }

    #[test]
    fn nothing_unsafe_survives() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!printable(&all).chars().any(is_unsafe));
        assert!(!printable_lines(&all)
            .chars()
            .any(|c| is_unsafe(c) && c != '\n' && c != '\t'));
    }

    #[test]
    fn clip_keeps_short_text_and_counts_the_rest() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 1), "é... (4 more bytes)");
    }

    #[test]
    fn first_unsafe_finds_the_offset() {
        assert_eq!(first_unsafe("ok\ttab", &['\t']), None);
        assert_eq!(first_unsafe("ok\ttab", &[]), Some((2, '\t')));
        assert_eq!(first_unsafe("é\u{202e}", &[]), Some((2, '\u{202e}')));
    }
}
