//! The shipped scenarios, booted for real and judged, through the `oomlab`
//! binary exactly as a user runs it (`--accel auto`: the KVM probe runs or
//! its cached answer is used, and the report says which accelerator ran).

use std::path::Path;
use std::process::Command;

use oomlab_e2e::{oomlab_bin, root};
use serde_json::Value;

fn run(scenario: &str, out: &Path) -> (i32, Value, String) {
    let json = out.join("report.json");
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .args(["run", scenario, "--out"])
        .arg(out.join("run"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run oomlab");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no report ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let v: Value = serde_json::from_str(&text).expect("report is JSON");
    (
        o.status.code().unwrap_or(-1),
        v,
        format!("{stdout}\n{stderr}"),
    )
}

fn num(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

fn common_checks(v: &Value, out: &Path) {
    let accel = v["accel"].as_str().unwrap();
    assert!(accel == "tcg" || accel == "kvm");
    assert_eq!(v["accel_decision"]["used"], accel);
    // `auto` was asked for, so the report says what the probe found.
    assert_eq!(v["accel_decision"]["requested"], "auto");
    assert!(!v["accel_decision"]["reason"].as_str().unwrap().is_empty());
    assert!(v["kernel"]["release"]
        .as_str()
        .unwrap()
        .starts_with(char::is_numeric));
    assert!(num(v, "timings.boot_s") > 0.0);
    assert!(num(v, "timings.wall_s") >= num(v, "timings.boot_s"));
    // The raw console log is kept and holds what the verdict counted.
    let console = std::fs::read_to_string(out.join("run/console.log")).unwrap();
    let kills = console.matches("Killed process").count() as f64;
    assert_eq!(
        kills,
        num(v, "evidence.oom_kills"),
        "console.log and report disagree"
    );
    assert!(out.join("run/telemetry.jsonl").is_file());
    // One guest-time line for both streams, sorted, with every kill on it.
    let timeline = std::fs::read_to_string(out.join("run/timeline.jsonl")).unwrap();
    let entries: Vec<Value> = timeline
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let times: Vec<f64> = entries.iter().map(|e| e["t"].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timeline not sorted"
    );
    let killed = entries
        .iter()
        .filter(|e| e["kernel"]["event"] == "killed")
        .count() as f64;
    assert_eq!(killed, num(v, "evidence.oom_kills"));
    assert!(entries.iter().any(|e| e["payload"]["ev"] == "ready"));
}

#[test]
fn seed_scenario_is_judged_a_livelock() {
    let out = tempfile::tempdir().unwrap();
    let (code, v, logs) = run("scenarios/seed-livelock.yaml", out.path());
    assert_eq!(v["verdict"], "livelock", "{logs}");
    assert_eq!(v["expected"], "livelock");
    assert_eq!(code, 0, "{logs}");
    assert!(num(&v, "evidence.oom_kills") >= 10.0, "{v:#}");
    assert!(num(&v, "evidence.respawns") >= 10.0, "{v:#}");
    assert!(num(&v, "evidence.kills_of_respawned") >= 10.0, "{v:#}");
    assert!(num(&v, "evidence.first_oom_s") >= 0.0);
    assert!(num(&v, "evidence.canary_max_late_ms") >= 0.0);
    assert_eq!(v["evidence"]["agreement"]["agree"], true, "{v:#}");
    assert_eq!(v["evidence"]["master_exited"], false);
    common_checks(&v, out.path());
}

#[test]
fn oom_group_scenario_recovers() {
    let out = tempfile::tempdir().unwrap();
    let (code, v, logs) = run("scenarios/oom-group.yaml", out.path());
    assert_eq!(v["verdict"], "recovered", "{logs}");
    assert_eq!(code, 0, "{logs}");
    assert!(num(&v, "evidence.oom_kills") >= 1.0);
    // memory.oom.group takes the master with the workers: nothing re-forks.
    assert_eq!(v["evidence"]["master_exited"], true, "{v:#}");
    assert!(num(&v, "evidence.quiet_tail_s") >= 3.0);
    common_checks(&v, out.path());
    let console = std::fs::read_to_string(out.path().join("run/console.log")).unwrap();
    assert!(
        console.contains("are going to be killed due to memory.oom.group set"),
        "the kernel should say it killed the group"
    );
}

#[test]
fn mismatch_exits_1_and_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nvm:\n  memroy_mib: 1\n").unwrap();
    let o = Command::new(oomlab_bin())
        .arg("run")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.yaml:3:") && err.contains("memroy_mib"),
        "{err}"
    );

    // A kernel that is neither in the catalogue nor a file: bad input too,
    // caught before anything boots.
    let nokernel = dir.path().join("nokernel.yaml");
    std::fs::write(&nokernel, "name: x\nvm:\n  kernel: debian-potato-2.2\n").unwrap();
    let o = Command::new(oomlab_bin())
        .arg("run")
        .arg(&nokernel)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nokernel.yaml:3:") && err.contains("vm.kernel"),
        "{err}"
    );

    // A scenario that cannot reach OOM but claims it will: verdict no-oom, exit 1.
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        "name: small\nexpect: livelock\nlimits: { duration_s: 3, settle_s: 1 }\nworkload: { workers: 1, worker_mem_mib: 8 }\n",
    )
    .unwrap();
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .arg("run")
        .arg(&wrong)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("NO-OOM") && all.contains("MISMATCH"), "{all}");
}
