//! `worker_uid`: workers drop to an unprivileged uid right after fork (after
//! their own oom_score_adj write), the master stays root, as nginx does.

mod common;
use common::{field, selftest, PAYLOAD};

fn uid_of(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn workers_run_as_the_given_uid_master_as_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED workers_run_as_the_given_uid_master_as_root: needs root to drop privileges"
        );
        return;
    }
    let conf = "name=uid\nduration_ms=3000\nworkers=2\nworker_mem_kib=512\ncanary_ms=50\n\
                worker_uid=2188\nmitigation=oom_score_adj master=1000 workers=0\n";
    let mut uids = Vec::new();
    let mut master_uid = None;
    let (ok, lines) = selftest(
        PAYLOAD.as_ref(),
        "uid",
        conf,
        |_| {},
        |line, before| {
            if line.contains("\"ev\":\"spawn\"") && line.contains("\"role\":\"master\"") {
                master_uid = uid_of(field(line, "pid").unwrap());
            }
            // The first `setup worker_uid` comes from a worker that has dropped.
            if line.contains("\"what\":\"worker_uid\"") && uids.is_empty() {
                for l in before {
                    if l.contains("\"role\":\"worker\"") && l.contains("\"spawn\"") {
                        let pid = field(l, "pid").unwrap();
                        // Workers drop right after fork; give a late one a moment.
                        for _ in 0..50 {
                            if uid_of(pid) == Some(2188) {
                                break;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        uids.push(uid_of(pid));
                    }
                }
            }
        },
    );
    assert!(ok);
    let all = lines.join("\n");
    assert!(
        all.contains("\"what\":\"worker_uid\",\"ok\":true,\"detail\":\"worker uid=2188 gid=2188\""),
        "{all}"
    );
    // Read while the run goes on; on a very busy machine a process may be
    // gone before its line is read: then there is nothing to look at.
    assert!(
        matches!(master_uid, Some(0) | None),
        "{master_uid:?}\n{all}"
    );
    let seen: Vec<u32> = uids.iter().flatten().copied().collect();
    assert!(seen.iter().all(|u| *u == 2188), "{uids:?}\n{all}");
    if master_uid.is_none() || seen.is_empty() {
        eprintln!("worker_uid: processes gone before they were looked at: {master_uid:?} {uids:?}");
    }
    // The worker set its oom_score_adj (0, below the master's 1000 it
    // inherited) before dropping root, which a uid-2188 process could not.
    assert!(
        all.contains(
            "\"what\":\"oom_score_adj\",\"ok\":true,\"detail\":\"worker oom_score_adj=0\""
        ),
        "{all}"
    );
    assert!(!all.contains("\"detail\":\"worker=0: "), "{all}");
}
