//! Interrupting the harness mid-run must leave no QEMU process, no temp dir
//! and no half-written report behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oomlab_e2e::{leftovers, oomlab_bin, processes_mentioning, root};

/// Start the seed scenario with a private TMPDIR, wait for the payload to
/// be up (QEMU certainly running), send `sig`, and check what is left.
fn interrupt_mid_run(sig: i32) -> Option<i32> {
    let tmp = tempfile::tempdir().unwrap();
    interrupt_mid_run_in(sig, tmp.path())
}

/// Kills the harness if the test fails before it is done with it, so a
/// failing test never leaves a run (and its QEMU) behind.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls until no process mentions `marker`, or the deadline passes; what
/// is still there then.
fn wait_gone(marker: &str, deadline: Duration) -> Vec<(u32, String)> {
    let start = Instant::now();
    loop {
        let left = processes_mentioning(marker);
        if left.is_empty() || start.elapsed() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt_mid_run_in(sig: i32, tmp: &std::path::Path) -> Option<i32> {
    let out = tmp.join("out");
    let private_tmp = tmp.join("tmp");
    std::fs::create_dir(&private_tmp).unwrap();
    let mut guard = Guard(None);
    let child = guard.0.insert(
        Command::new(oomlab_bin())
            .current_dir(root())
            .env("TMPDIR", &private_tmp)
            .args([
                "run",
                "scenarios/seed-livelock.yaml",
                "--accel",
                "tcg",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("oomlab ended before the payload was ready")
            .unwrap();
        seen.push(line.clone());
        if line.contains("payload ready") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{seen:?}");
    }
    let marker = private_tmp.to_string_lossy().into_owned();
    assert!(
        !processes_mentioning(&marker).is_empty(),
        "QEMU should be running with its socket under {marker}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    guard.0 = None;
    // PDEATHSIG is asynchronous: QEMU may need a moment to go.
    let left = wait_gone(&marker, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "QEMU left behind after signal {sig}: {left:?}"
    );
    if sig != libc::SIGKILL {
        assert_eq!(
            leftovers(&private_tmp, ""),
            Vec::<String>::new(),
            "temp files left"
        );
        assert!(
            !out.join("report.json").exists(),
            "no report for an interrupted run"
        );
        assert!(
            rest.iter().any(|l| l.contains("interrupted")),
            "the user is told: {rest:?}"
        );
    }
    status.code()
}

#[test]
fn sigint_kills_qemu_and_removes_temp_dirs() {
    assert_eq!(interrupt_mid_run(libc::SIGINT), Some(128 + libc::SIGINT));
}

#[test]
fn sigterm_kills_qemu_and_removes_temp_dirs() {
    assert_eq!(interrupt_mid_run(libc::SIGTERM), Some(128 + libc::SIGTERM));
}

/// SIGKILL gives the harness no chance to clean up: QEMU still dies, through
/// PR_SET_PDEATHSIG. The killed harness cannot remove its temp dir; the next
/// run sweeps it (its name carries the dead harness's pid).
#[test]
fn sigkill_of_the_harness_still_kills_qemu_and_next_run_sweeps() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(interrupt_mid_run_in(libc::SIGKILL, tmp.path()), None);
    let private_tmp = tmp.path().join("tmp");
    assert_eq!(
        leftovers(&private_tmp, "oomlab-run-").len(),
        1,
        "the killed run's dir"
    );
    oomlab::experiment::sweep_stale_scratch(&private_tmp);
    assert_eq!(leftovers(&private_tmp, "oomlab-run-"), Vec::<String>::new());
}

/// A matrix interrupted while two guests run: both QEMUs go, the temp
/// dirs go, and no summary or HTML report is written (the cells finished
/// so far keep their own complete report.json).
#[test]
fn sigint_stops_a_matrix_without_summary_or_qemu() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let private_tmp = tmp.path().join("tmp");
    std::fs::create_dir(&private_tmp).unwrap();
    let mut guard = Guard(None);
    let child = guard.0.insert(
        Command::new(oomlab_bin())
            .current_dir(root())
            .env("TMPDIR", &private_tmp)
            .args([
                "matrix",
                "scenarios/seed-livelock.yaml",
                "scenarios/oom-group.yaml",
                "--jobs",
                "2",
                "--accel",
                "tcg",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let marker = private_tmp.to_string_lossy().into_owned();
    let started = Instant::now();
    while processes_mentioning(&marker).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "two guests never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    guard.0 = None;
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    let left = wait_gone(&marker, Duration::from_secs(5));
    assert!(left.is_empty(), "QEMU left behind: {left:?}");
    assert_eq!(leftovers(&private_tmp, ""), Vec::<String>::new());
    assert!(!out.join("summary.json").exists());
    assert!(!out.join("report.html").exists());
}
