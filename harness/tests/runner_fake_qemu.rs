//! The VM runner's I/O paths without booting anything: a fake QEMU
//! (`examples/fake_qemu.rs`) plays scripted guests on the two streams, and
//! the runner must keep the logs, feed the watch, honour every limit and
//! report why it stopped. The real QEMU crosses the same boundary in the
//! end-to-end tests (`tests/boot_scenarios.rs`).

mod common;
use common::fake_qemu;

use std::path::{Path, PathBuf};

use oomlab::scenario::Limits;
use oomlab::verdict::{Live, RunRecord};
use oomlab::vm::{self, AccelKind, RunOutcome, StopPolicy, StopReason, VmConfig};

struct Ran {
    out: RunOutcome,
    record: RunRecord,
    logs: tempfile::TempDir,
}

fn limits(early: bool) -> Limits {
    Limits {
        duration_s: 4.0,
        settle_s: 1.0,
        hang_s: 1.5,
        boot_s: 2.0,
        wall_s: 20.0,
        early_verdict: early,
        ..Limits::default()
    }
}

fn run_script(script: &str, pace_ms: u64, limits: Limits, prepare: impl FnOnce(&Path)) -> Ran {
    let scratch = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    prepare(logs.path());
    let cfg = VmConfig {
        qemu: fake_qemu(),
        accel: AccelKind::Tcg,
        kernel: PathBuf::from("no-kernel"),
        initrd: PathBuf::from("no-initrd"),
        memory_mib: 256,
        cpus: 1,
        cmdline: format!("console=ttyS0 fake.script={script} fake.pace_ms={pace_ms}"),
        scratch: scratch.path().to_path_buf(),
        keep_logs: Some(logs.path().to_path_buf()),
        devices: Vec::new(),
    };
    let mut record = RunRecord::new(4);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy: StopPolicy = limits.stop_policy();
    let out = rt
        .block_on(vm::run(
            &cfg,
            policy,
            &mut Live {
                record: &mut record,
                limits: &limits,
            },
            None,
            Box::pin(std::future::pending()),
        ))
        .unwrap();
    record.apply_stop(&out.stop, &limits);
    Ran { out, record, logs }
}

#[test]
fn a_whole_run_is_read_kept_and_ends_with_qemu() {
    let r = run_script("loop", 0, limits(false), |_| {});
    assert_eq!(r.out.stop, StopReason::QemuExited(Some(0)));
    assert!(r.out.boot_s.is_some());
    assert!(!r.out.guest_silent);
    assert!(r.out.log_errors.is_empty(), "{:?}", r.out.log_errors);
    assert_eq!(r.record.kills.len(), 20);
    assert!(r.record.done_t.is_some());
    assert_eq!(r.record.worker_sigkills, 20);
    let console = std::fs::read_to_string(r.logs.path().join("console.log")).unwrap();
    assert_eq!(console.matches("Killed process").count(), 20);
    let telemetry = std::fs::read_to_string(r.logs.path().join("telemetry.jsonl")).unwrap();
    assert_eq!(telemetry.matches("\"ev\":\"exit\"").count(), 20);
    let j = r.record.judge(&limits(false));
    assert_eq!(j.verdict, oomlab::verdict::Verdict::Livelock, "{}", j.why);
}

#[test]
fn the_watch_can_stop_a_run_early() {
    let r = run_script("endless", 25, limits(true), |_| {});
    match &r.out.stop {
        StopReason::EarlyVerdict(why) => assert!(why.contains("steady loop"), "{why}"),
        other => panic!("expected an early verdict, got {other}"),
    }
    assert!(r.record.stopped_early);
}

#[test]
fn boot_and_hang_limits() {
    let r = run_script("noboot", 0, limits(false), |_| {});
    assert_eq!(r.out.stop, StopReason::BootLimit);
    assert!(r.record.boot_timed_out);
    assert!(r.out.boot_s.is_none());
    let r = run_script("hang", 0, limits(false), |_| {});
    assert_eq!(r.out.stop, StopReason::HangLimit);
    assert!(r.record.hung);
}

#[test]
fn a_qemu_that_fails_at_once_is_silent_with_its_stderr_kept() {
    let r = run_script("fail", 0, limits(false), |_| {});
    assert_eq!(r.out.stop, StopReason::QemuExited(Some(1)));
    assert!(r.out.guest_silent);
    assert!(
        r.out.qemu_stderr.contains("Permission denied"),
        "{}",
        r.out.qemu_stderr
    );
}

#[test]
fn a_panic_ends_with_qemu_not_with_an_early_stop() {
    let r = run_script("panic", 0, limits(true), |_| {});
    assert_eq!(r.out.stop, StopReason::QemuExited(Some(0)));
    assert!(r
        .record
        .panic
        .as_deref()
        .is_some_and(|p| p.contains("panic_on_oom")));
}

#[test]
fn a_log_that_cannot_be_written_is_reported() {
    // console.log points at a device that is always full.
    let r = run_script("loop", 0, limits(false), |dir| {
        std::os::unix::fs::symlink("/dev/full", dir.join("console.log")).unwrap();
    });
    assert_eq!(r.out.log_errors.len(), 1, "{:?}", r.out.log_errors);
    assert!(r.out.log_errors[0].contains("console.log"));
    // The in-memory record still saw every line.
    assert_eq!(r.record.kills.len(), 20);
}
