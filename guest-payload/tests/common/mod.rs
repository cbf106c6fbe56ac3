//! Running the payload in self-test mode (not PID 1, no guest) from the
//! integration tests: each test file includes this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The payload this build made.
pub const PAYLOAD: &str = env!("CARGO_BIN_EXE_guest-payload");

/// A telemetry line's field, unquoted (the lines are flat JSON objects).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// Runs `payload` in self-test mode on the guest configuration `conf`
/// (written to a temp file of its own named after `tag`, removed afterwards), after
/// `tweak` has had the command. `on_line` sees each telemetry line as it
/// comes, with the lines before it. Returns whether the payload exited 0,
/// and every line.
pub fn selftest(
    payload: &Path,
    tag: &str,
    conf: &str,
    tweak: impl FnOnce(&mut Command),
    mut on_line: impl FnMut(&str, &[String]),
) -> (bool, Vec<String>) {
    // Tests of one file run in parallel: one file per call.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("oomlab-{tag}-{}-{n}.conf", std::process::id()));
    std::fs::write(&path, conf).expect("write the guest configuration");
    let mut cmd = Command::new(payload);
    cmd.env("OOMLAB_PAYLOAD_SELFTEST", "1")
        .env("OOMLAB_SCENARIO", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    tweak(&mut cmd);
    let mut child = cmd.spawn().expect("spawn the payload");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        on_line(&line, &lines);
        lines.push(line);
    }
    let ok = child.wait().is_ok_and(|s| s.success());
    std::fs::remove_file(&path).ok();
    (ok, lines)
}
