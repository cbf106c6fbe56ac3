//! Helpers shared by the harness's integration tests (each test file is
//! its own crate and includes this module; not every file uses all of it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (this crate lives in `<root>/harness`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// The fake QEMU (`examples/fake_qemu.rs`), built once per test binary.
pub fn fake_qemu() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "-p", "oomlab", "--example", "fake_qemu"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot build the fake QEMU");
        // target/<profile>/deps/<this test> -> target/<profile>/examples/fake_qemu;
        // the build above is a debug one, which a release test run falls back to.
        let exe = std::env::current_exe().expect("current exe");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let here = profile.join("examples/fake_qemu");
        if here.is_file() {
            here
        } else {
            profile
                .parent()
                .expect("target/")
                .join("debug/examples/fake_qemu")
        }
    })
    .clone()
}

/// Both streams merged on guest time, as the live runner sees them (give or
/// take transport jitter).
pub fn merged(dir: &Path) -> Vec<(f64, bool, String)> {
    use oomlab::events::kernel::{split_prefix, Timestamp};
    let mut v = Vec::new();
    let console = std::fs::read(dir.join("console.log")).unwrap();
    let mut t = 0.0;
    for line in String::from_utf8_lossy(&console).lines() {
        if let Some(Timestamp::Monotonic(ts)) = split_prefix(line).ts {
            t = ts;
        }
        v.push((t, true, line.to_string()));
    }
    // Read lossily: a recorded stream may hold a torn, non-UTF-8 line.
    let telemetry = std::fs::read(dir.join("telemetry.jsonl")).unwrap();
    for line in String::from_utf8_lossy(&telemetry).lines() {
        if let Some(tel) = oomlab::events::telemetry::parse_line(line) {
            v.push((tel.t, false, line.to_string()));
        }
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Rebuild the record the live runner would have built from a recorded
/// run's folder (scenario, console, telemetry). The streams need no
/// interleaving: the record only accumulates. Every recorded run ended at
/// the payload's `done` or on the live early verdict.
pub fn replay(dir: &Path) -> (oomlab::scenario::Scenario, oomlab::verdict::RunRecord) {
    let scenario = oomlab::scenario::Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let mut rec = oomlab::verdict::RunRecord::for_workload(&scenario.workload);
    let console = std::fs::read(dir.join("console.log")).unwrap();
    for line in String::from_utf8_lossy(&console).lines() {
        rec.ingest_console(line);
    }
    let telemetry = std::fs::read(dir.join("telemetry.jsonl")).unwrap();
    for line in String::from_utf8_lossy(&telemetry).lines() {
        rec.ingest_telemetry_line(line);
    }
    rec.stopped_early = rec.done_t.is_none();
    (scenario, rec)
}
