//! Faults around a real run, through the `oomlab` binary with the real
//! kernel and payload: a QEMU that cannot start the guest is "the run could
//! not happen" (exit 3) with QEMU's words, never a guest BOOT-FAILURE.
//! (The fake-QEMU versions of these, and the other hostile-input cases,
//! are in `harness/tests/cli_hostile.rs`.)

use std::process::Command;

use oomlab_e2e::{oomlab_bin, root};

#[test]
fn a_qemu_that_exits_at_once_is_not_a_boot_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .env("OOMLAB_QEMU", "/bin/false")
        .args([
            "run",
            "scenarios/seed-livelock.yaml",
            "--accel",
            "tcg",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run oomlab");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "cannot run: QEMU failed before the guest printed anything (QEMU exited with status 1)"
        ),
        "{text}"
    );
    assert!(!text.contains("BOOT-FAILURE"), "{text}");
    // A run that never got going leaves no folder and no report.
    assert!(!out.exists(), "{text}");
}

#[test]
fn a_qemu_that_is_missing_names_itself() {
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .env("OOMLAB_QEMU", "/nonexistent/qemu-system-x86_64")
        .args(["run", "scenarios/seed-livelock.yaml", "--accel", "tcg"])
        .output()
        .expect("run oomlab");
    let text = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("/nonexistent/qemu-system-x86_64"), "{text}");
}
