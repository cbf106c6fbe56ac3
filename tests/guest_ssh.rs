//! The SSH availability probe against a real guest: a real dropbear in the
//! guest, QEMU's user network, russh on the host. Keys are fresh for every
//! run, the forwarded port listens on the loopback address only, and the
//! report carries the logins.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomlab_e2e::{listeners, num, oomlab_bin, processes_mentioning, root};
use serde_json::Value;

/// The seed scenario with the probe on, as a file in `dir`.
fn seed_with_ssh(dir: &Path) -> std::path::PathBuf {
    let seed = std::fs::read_to_string(root().join("scenarios/seed-livelock.yaml")).unwrap();
    let text = if seed.contains("\nssh:") {
        seed
    } else {
        seed.replace("\nworkload:", "\nssh:\n  enabled: true\nworkload:")
    };
    let p = dir.join("seed-ssh.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `scenario` with a private TMPDIR; while QEMU runs, reads the
/// forwarded port off its command line and the host's listening sockets
/// for that port. Returns the report and those sockets' addresses.
fn run_watching_the_port(scenario: &Path, out: &Path) -> (Value, u16, Vec<String>, Vec<String>) {
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = Command::new(oomlab_bin())
        .current_dir(root())
        .env("TMPDIR", &tmp)
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out.join("run"))
        .arg("--json")
        .arg(out.join("report.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("oomlab ended before the payload was ready: {seen:#?}");
        };
        seen.push(line.clone());
        if line.contains("payload ready") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{seen:?}");
    }
    let marker = tmp.to_string_lossy().into_owned();
    let qemu = processes_mentioning(&marker);
    let port = qemu
        .iter()
        .find_map(|(_, cmd)| {
            let at = cmd.find("hostfwd=tcp:")? + "hostfwd=tcp:".len();
            let rest = &cmd[at..];
            let (addr, rest) = rest.split_once(':')?;
            assert_eq!(addr, "127.0.0.1", "{cmd}");
            rest.split('-').next()?.parse::<u16>().ok()
        })
        .unwrap_or_else(|| panic!("no QEMU with a host forward: {qemu:?}"));
    let v4 = listeners(&std::fs::read_to_string("/proc/net/tcp").unwrap(), port);
    let v6 = listeners(
        &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default(),
        port,
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(out.join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}), {status}: {seen:?} {rest:?}"));
    (serde_json::from_str(&text).unwrap(), port, v4, v6)
}

#[test]
fn logins_are_reported_keys_are_fresh_and_the_port_is_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = seed_with_ssh(dir.path());
    let (a, port_a, v4, v6) = run_watching_the_port(&scenario, &dir.path().join("a"));
    // 0100007F is 127.0.0.1 as /proc/net/tcp writes it (little-endian).
    assert_eq!(
        v4,
        vec!["0100007F".to_string()],
        "listening sockets on {port_a}"
    );
    assert!(v6.is_empty(), "no IPv6 listener on {port_a}: {v6:?}");

    let ssh = &a["evidence"]["ssh"];
    assert!(num(ssh, "attempts") >= 2.0, "{ssh:#}");
    assert!(num(ssh, "ok") >= 1.0, "{ssh:#}");
    assert_eq!(ssh["could_log_in"], true);
    assert!(num(ssh, "p50_ms") > 0.0);
    assert!(!ssh["over_time"].as_array().unwrap().is_empty());
    assert_eq!(num(ssh, "port") as u16, port_a);
    assert_eq!(a["verdict"], "livelock", "{:#}", a["why"]);
    // Every login is on the timeline.
    let timeline = std::fs::read_to_string(dir.path().join("a/run/timeline.jsonl")).unwrap();
    let logins = timeline.lines().filter(|l| l.contains("\"ssh\":{")).count();
    assert_eq!(logins as f64, num(ssh, "attempts"));
    // No private key in the kept output, and the run's temp dir is gone.
    for e in std::fs::read_dir(dir.path().join("a/run"))
        .unwrap()
        .flatten()
    {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{}", e.path().display());
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("a/tmp")).unwrap().count(),
        0,
        "scratch (with the keys) removed"
    );

    let (b, _, _, _) = run_watching_the_port(&scenario, &dir.path().join("b"));
    let key = |v: &Value, k: &str| v["evidence"]["ssh"][k].as_str().unwrap().to_string();
    assert!(key(&a, "host_key").starts_with("SHA256:"));
    assert_ne!(key(&a, "host_key"), key(&b, "host_key"), "host keys differ");
    assert_ne!(
        key(&a, "client_key"),
        key(&b, "client_key"),
        "client keys differ"
    );
}
