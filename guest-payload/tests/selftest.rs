//! Runs the real binary in its self-test mode (not PID 1): the whole
//! canary/master/worker/sampler orchestration on the host, minus mounts,
//! cgroups, sysctls and power-off.

mod common;
use common::{field, selftest, PAYLOAD};

use std::process::Command;

#[test]
fn refuses_to_run_when_not_pid1() {
    let out = Command::new(env!("CARGO_BIN_EXE_guest-payload"))
        .env_remove("OOMLAB_PAYLOAD_SELFTEST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn selftest_respawns_a_killed_worker() {
    let conf = "name=self \"test\"\nduration_ms=1500\nworkers=2\nworker_mem_kib=512\n\
                canary_ms=50\nsample_ms=300\nbogus_key=1\nmitigation=sysctl key=vm.overcommit_memory value=2\n";
    let mut victim = None;
    let (ok, lines) = selftest(
        PAYLOAD.as_ref(),
        "selftest",
        conf,
        |_| {},
        |line, _| {
            if victim.is_none()
                && line.contains("\"ev\":\"spawn\"")
                && line.contains("\"role\":\"worker\"")
            {
                let pid: i32 = field(line, "pid").unwrap().parse().unwrap();
                // SAFETY: plain kill of a worker the payload just reported.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                victim = Some(pid);
            }
        },
    );
    let all = lines.join("\n");
    assert!(ok, "{all}");

    for l in &lines {
        assert!(l.starts_with("{\"t\":") && l.ends_with('}'), "{l}");
    }
    let count = |ev: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("\"ev\":\"{ev}\"")))
            .count()
    };
    assert_eq!(count("ready"), 1, "{all}");
    assert!(all.contains("\"name\":\"self \\\"test\\\"\""), "{all}");
    assert!(all.contains("unknown key `bogus_key`"), "{all}");
    assert!(
        all.contains("\"what\":\"sysctl:vm.overcommit_memory\",\"ok\":false"),
        "{all}"
    );
    assert!(count("tick") >= 10, "{all}");
    assert!(count("mem") >= 3, "{all}");
    assert_eq!(count("done"), 1, "{all}");
    assert!(lines.last().unwrap().contains("\"ev\":\"done\""), "{all}");
    let victim = victim.expect("no worker spawned");
    assert!(
        all.contains(&format!(
            "\"ev\":\"exit\",\"pid\":{victim},\"role\":\"worker\",\"signal\":9"
        )),
        "{all}"
    );
    // 2 initial workers + the replacement.
    let workers = lines
        .iter()
        .filter(|l| l.contains("\"role\":\"worker\"") && l.contains("\"spawn\""))
        .count();
    assert!(workers >= 3, "{all}");
}
