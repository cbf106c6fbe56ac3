//! `--emit-scenario`: every fixture with a kill gives a scenario that
//! `oomlab run` accepts, with the incident's shape; a log without a kill
//! gives none. (Booting the seed's reproduction is `tests/emit_scenario.rs`
//! in the end-to-end crate.)

use std::path::{Path, PathBuf};

use oomlab::analyze::{analyze_paths, scenario_yaml, AnalyzeOptions, CannotReproduce};
use oomlab::scenario::{Respawn, Scenario, Verdict};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/logs")
}

fn emit(name: &str) -> Result<Scenario, CannotReproduce> {
    let p = fixtures().join(name);
    let a = analyze_paths(&[p], &AnalyzeOptions::default()).expect(name);
    let cat = oomlab::image::kernel::catalogue().expect("catalogue");
    let text = scenario_yaml(&a, name, &cat)?;
    Ok(Scenario::parse(Path::new(name), &text)
        .unwrap_or_else(|e| panic!("{name}: not a valid scenario: {e}\n{text}")))
}

#[test]
fn every_fixture_with_a_kill_gives_a_valid_scenario() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures()).expect("fixtures") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.ends_with(".snap") || name.ends_with(".md") {
            continue;
        }
        let a =
            analyze_paths(std::slice::from_ref(&p), &AnalyzeOptions::default()).expect("analysis");
        let cat = oomlab::image::kernel::catalogue().expect("catalogue");
        match scenario_yaml(&a, &name, &cat) {
            Ok(text) => {
                let s =
                    Scenario::parse(&p, &text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
                let want = if a.loop_found {
                    Verdict::Livelock
                } else {
                    Verdict::Recovered
                };
                assert_eq!(s.expect, Some(want), "{name}");
                assert_eq!(s.vm.memory_mib, 256, "{name}");
                assert!(text.contains("# - workers:"), "{name}: no source comments");
                n += 1;
            }
            Err(CannotReproduce::NoKill) => assert_eq!(a.totals.killed, 0, "{name}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert!(n >= 30, "only {n} scenarios");
}

#[test]
fn the_seeds_reproduction() {
    let s = emit("seed_centos6_messages.log").expect("a scenario");
    assert_eq!(s.expect, Some(Verdict::Livelock));
    // the four workers of uid 2188 in the first task table, the master left out
    assert_eq!(s.workload.workers, 4);
    // 48 MiB each on an unknown RAM: raised until the four overfill the guest
    assert!(
        (58..=64).contains(&s.workload.worker_mem_mib),
        "{}",
        s.workload.worker_mem_mib
    );
    assert_eq!(
        (s.workload.worker_step_mib, s.workload.worker_step_ms),
        (4, 20)
    );
    assert_eq!(s.workload.respawn, Respawn::Immediate);
    // RHEL 6 formats: the oldest catalogue kernel
    assert_eq!(s.vm.kernel, "debian-bullseye-cloud-5.10");
    assert!(s.mitigations.is_empty());
}

#[test]
fn shapes_from_other_logs() {
    // a burst of a memory.oom.group kill: no respawn, the group's cgroup
    let s = emit("burst_oom_group_no_table_6.1.log").expect("a scenario");
    assert_eq!(s.expect, Some(Verdict::Recovered));
    assert_eq!(s.workload.respawn, Respawn::None);
    assert_eq!(s.mitigations.len(), 1);
    assert_eq!(s.mitigations[0].kind(), "cgroup");
    // systemd's 112 ms RestartSec
    let s = emit("sup_systemd_252_start_limit_6.1.log").expect("a scenario");
    assert_eq!(s.workload.respawn, Respawn::Delay);
    assert_eq!(s.workload.respawn_delay_ms, 112);
    // the kubelet backing off
    let s = emit("sup_kubelet_containerd_crashloop_5.15.log").expect("a scenario");
    assert!(s.mitigations.iter().any(|m| m.kind() == "respawn_backoff"));
    // Mem-Info's pages RAM scale the workers: 2029474 pages = 7928 MiB
    let s = emit("sup_systemd_249_restart_counter_5.15.log").expect("a scenario");
    assert_eq!(s.expect, Some(Verdict::Livelock));
    // no kill: nothing to reproduce
    assert!(matches!(emit("no_oom.log"), Err(CannotReproduce::NoKill)));
}
