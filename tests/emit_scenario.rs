//! From a post-mortem to a running reproduction: `oomlab analyze LOG
//! --emit-scenario OUT.yaml` on the seed's log writes a scenario that
//! `oomlab run` boots and judges a livelock; a log with no loop gives a
//! scenario expecting recovery, a log with no kill none at all. Real QEMU,
//! the real kernel and payload, through the binary as a user runs it.

use std::path::Path;
use std::process::Command;

use oomlab_e2e::{oomlab_bin, root, run_oomlab};

fn analyze_emit(log: &str, out: &Path) -> (i32, String) {
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .args(["analyze", log, "--emit-scenario"])
        .arg(out)
        .output()
        .expect("run oomlab analyze");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_seeds_log_reproduces_as_a_livelock() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("seed-repro.yaml");
    let (code, err) = analyze_emit("tests/fixtures/logs/seed_centos6_messages.log", &yaml);
    // the analysis found the loop (exit 1) and wrote the scenario
    assert_eq!(code, 1, "{err}");
    let text = std::fs::read_to_string(&yaml).expect("scenario written");
    assert!(text.contains("expect: livelock"), "{text}");
    assert!(
        text.contains("# - workers: 4 nginx process(es) of uid 2188"),
        "{text}"
    );
    let (code, v, logs) = run_oomlab(&yaml, dir.path());
    assert_eq!(v["verdict"], "livelock", "{logs}\n{text}");
    assert_eq!(v["expected"], "livelock");
    assert_eq!(code, 0, "{logs}");
    assert!(
        v["evidence"]["kills_of_respawned"].as_f64().unwrap_or(0.0) >= 3.0,
        "{v:#}"
    );
}

#[test]
fn a_log_without_a_loop_or_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    // a memory.oom.group burst: a scenario that expects recovery, valid for `run`
    let yaml = dir.path().join("burst.yaml");
    let (code, err) = analyze_emit(
        "tests/fixtures/logs/burst_oom_group_no_table_6.1.log",
        &yaml,
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&yaml).expect("scenario written");
    assert!(text.contains("expect: recovered"), "{text}");
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .arg("check")
        .arg(&yaml)
        .output()
        .expect("oomlab check");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // no kill at all: it says it cannot, and writes nothing
    let none = dir.path().join("none.yaml");
    let (code, err) = analyze_emit("tests/fixtures/logs/no_oom.log", &none);
    assert_eq!(code, 2);
    assert!(err.contains("nothing to reproduce"), "{err}");
    assert!(!none.exists());
}
