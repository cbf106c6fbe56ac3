//! Debian's nginx as the workload: its workers grow past the guest's memory
//! through nginx's own request-body buffering, the kernel kills them and the
//! real master re-forks them (livelock); memory.oom.group around nginx ends
//! it (recovered).

use oomlab_e2e::{num, root, run_oomlab};

#[test]
fn real_nginx_loops() {
    let out = tempfile::tempdir().unwrap();
    let (code, v, logs) = run_oomlab(
        &root().join("scenarios/machine/nginx-livelock.yaml"),
        out.path(),
    );
    assert_eq!(v["verdict"], "livelock", "{logs}");
    assert_eq!(code, 0, "{logs}");
    assert!(num(&v, "evidence.kills_of_respawned") >= 2.0, "{v:#}");
    assert_eq!(v["evidence"]["master_exited"], false);
    assert!(v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["package"] == "nginx" && p["path"] == "/usr/sbin/nginx"));
    let console = std::fs::read_to_string(out.path().join("run/console.log")).unwrap();
    assert!(
        console.contains("(nginx)") && console.contains("UID:33"),
        "workers run as www-data and are the victims"
    );
    // nginx's own error log, relayed: the master saw its workers die and
    // started new ones.
    let tel = std::fs::read_to_string(out.path().join("run/telemetry.jsonl")).unwrap();
    assert!(
        tel.contains("exited on signal 9"),
        "nginx's error log relayed"
    );
    assert!(tel.contains("start worker process"));
    assert!(num(&v, "evidence.ssh.ok") >= 1.0);
}

#[test]
fn oom_group_around_real_nginx_recovers() {
    let out = tempfile::tempdir().unwrap();
    let (code, v, logs) = run_oomlab(
        &root().join("scenarios/machine/nginx-oom-group.yaml"),
        out.path(),
    );
    assert_eq!(v["verdict"], "recovered", "{logs}");
    assert_eq!(code, 0, "{logs}");
    assert_eq!(v["evidence"]["master_exited"], true, "{v:#}");
    assert_eq!(num(&v, "evidence.respawns"), 0.0, "{v:#}");
    let console = std::fs::read_to_string(out.path().join("run/console.log")).unwrap();
    assert!(
        console.contains("memory.oom.group"),
        "the kernel killed the group"
    );
}
