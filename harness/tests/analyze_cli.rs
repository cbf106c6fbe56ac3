//! `oomlab analyze` through the binary: unreadable inputs among good ones,
//! inputs that never end, and log text that tries to steer the terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/logs")
        .join(name)
}

/// `oomlab analyze ARGS` with `stdin`, killed if it runs past `secs`.
fn analyze(args: &[&std::ffi::OsStr], stdin: Stdio, secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oomlab"))
        .arg("analyze")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oomlab");
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "oomlab analyze ran past {secs} s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_missing_input_among_good_ones_is_reported_and_the_rest_analysed() {
    let seed = fixture("seed_centos6_messages.log");
    let missing = fixture("no-such-file.log");
    let o = analyze(&[missing.as_os_str(), seed.as_os_str()], Stdio::null(), 60);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stdout.starts_with("LOOP: kill/respawn loop: nginx"),
        "{stdout}"
    );
    assert!(stderr.contains("no-such-file.log"), "{stderr}");
    // and with nothing readable at all: the errors, no report
    let o = analyze(&[missing.as_os_str()], Stdio::null(), 60);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-file.log"));
}

#[test]
fn endless_inputs_end() {
    // a character device is refused at once
    let o = analyze(&[std::ffi::OsStr::new("/dev/zero")], Stdio::null(), 30);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("character device"));
    // an endless line on stdin stops at the longest line a log can have
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let o = analyze(&[std::ffi::OsStr::new("-")], Stdio::from(zero), 120);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("without a line break"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn log_text_cannot_steer_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("hostile.log");
    let mut f = std::fs::File::create(&p).expect("create");
    // a comm with a bidi override and a C1 control, a NUL and an escape
    // sequence inside the kill line (the kill must still be read)
    writeln!(
        f,
        "[  10.000001] Out of memory: Killed process 42\0 (ev\u{202e}il\u{9b}) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0\u{1b}]0;owned\u{7}"
    )
    .expect("write");
    drop(f);
    let o = analyze(&[p.as_os_str()], Stdio::null(), 60);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("killed 42 (ev\\u{202e}il\\u{9b})"), "{out}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{202e}') && !out.contains('\u{9b}'));
    assert!(
        out.contains("repaired: 1 line(s) (control characters)"),
        "{out}"
    );
}
