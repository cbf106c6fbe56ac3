//! A disk root makes the seed's loop a crawl: evicted program pages are
//! read back from a (throttled) disk and logins time out for many seconds.
//! Judged `thrashing`, not a clean `livelock`.

use oomlab_e2e::{num, root, run_oomlab};

#[test]
fn disk_root_thrashes() {
    let out = tempfile::tempdir().unwrap();
    let (code, v, logs) = run_oomlab(
        &root().join("scenarios/machine/seed-disk-thrashing.yaml"),
        out.path(),
    );
    assert_eq!(v["verdict"], "thrashing", "{logs}");
    assert_eq!(code, 0, "{logs}");
    let e = &v["evidence"];
    assert!(num(e, "stall_s") >= 10.0, "{e:#}");
    assert!(
        num(e, "file_refaults") > 0.0,
        "program pages read back: {e:#}"
    );
    assert!(num(e, "oom_kills") >= 1.0);
    assert!(num(e, "ssh.failed") >= 1.0, "{:#}", e["ssh"]);
    // The guest really ran from the disk.
    let tel = std::fs::read_to_string(out.path().join("run/telemetry.jsonl")).unwrap();
    assert!(
        tel.contains("running from /dev/vda (ext4)"),
        "stage 2 on the disk"
    );
}
