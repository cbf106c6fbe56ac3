//! The classifier on five runs recorded on CentOS 6's kernel
//! (2.6.32-642.6.2.el6, under QEMU TCG), kept in tests/fixtures/runs-el6:
//! the incident's own kernel generation, as data. Each folder holds the
//! run's console log, telemetry, report (as the harness of that day wrote
//! it) and scenario (in today's format). The verdicts expected today are
//! below, with why; the full judgements are insta snapshots.

mod common;
use common::{merged, replay};

use std::path::{Path, PathBuf};

use oomlab::scenario::Scenario;
use oomlab::verdict::{RunRecord, Verdict};

/// (run, verdict today, why that one).
const EXPECTED: &[(&str, Verdict, &str)] = &[
    (
        "seed-default",
        Verdict::Inconclusive,
        "one OOM kill, then 3,103 workers exiting on their own: 2.6.32's heuristic \
         overcommit refuses each new worker's single 60 MiB mmap (free memory, not RAM + \
         swap, is the bound before 5.2), so the kernel never gets to kill again; no loop \
         of OOM kills, no quiet tail either",
    ),
    (
        "seed-stepwise",
        Verdict::Livelock,
        "workers growing 4 MiB at a time get past the overcommit check: the loop",
    ),
    (
        "kill-master-first-stepwise",
        Verdict::Livelock,
        "the kernel chooses the master (oom_score_adj 1000) and sacrifices a child \
         instead, every time: the fix does not work on its own kernel",
    ),
    (
        "oom-group-stepwise",
        Verdict::NotApplicable,
        "no cgroup v2 on 2.6.32: the payload's setup steps say so, the mitigation was never \
         in place",
    ),
    (
        "overcommit-never-stepwise",
        Verdict::NoOom,
        "strict overcommit: no OOM kill, a respawn storm",
    ),
];

fn dir(run: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/runs-el6")
        .join(run)
}

#[test]
fn every_recorded_el6_run_is_listed() {
    let root = dir("");
    let mut found: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|e| e.0.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn el6_runs_get_todays_verdicts() {
    for (run, expected, because) in EXPECTED {
        let (scenario, rec) = replay(&dir(run));
        let j = rec.judge(&scenario.limits);
        assert_eq!(j.verdict, *expected, "{run} ({because}): {}", j.why);
        insta::with_settings!({snapshot_suffix => format!("el6-{run}"), prepend_module_to_snapshot => false}, {
            insta::assert_yaml_snapshot!("judgement", j);
        });
    }
}

#[test]
fn el6_child_sacrifice_is_named() {
    let (scenario, rec) = replay(&dir("kill-master-first-stepwise"));
    let j = rec.judge(&scenario.limits);
    let cs = j.evidence.child_sacrifice.as_ref().expect("sacrifice seen");
    assert_eq!((cs.chosen_pid, cs.chosen_role.as_str()), (48, "master"));
    assert_eq!(cs.score, Some(970));
    assert_eq!(cs.killed.first(), Some(&50));
    assert!(
        j.why
            .contains("the kernel chose the master (score 970), killed its child 50 instead"),
        "{}",
        j.why
    );
    // Where the kernel killed what it chose, nothing is claimed.
    let (scenario, rec) = replay(&dir("seed-stepwise"));
    let j = rec.judge(&scenario.limits);
    assert!(
        j.evidence.child_sacrifice.is_none(),
        "{:?}",
        j.evidence.child_sacrifice
    );
    let (_, rec) = replay(&dir("seed-default"));
    let j = rec.judge(&scenario.limits);
    assert!(j.why.contains("exited on their own"), "{}", j.why);
}

/// The early verdict, replayed in time order, never contradicts today's.
#[test]
fn el6_early_verdicts_agree() {
    for (run, expected, _) in EXPECTED {
        let d = dir(run);
        let scenario = Scenario::load(&d.join("scenario.yaml")).unwrap();
        let lines = merged(&d);
        let mut rec = RunRecord::for_workload(&scenario.workload);
        for (_, console, line) in lines {
            if console {
                rec.ingest_console(&line);
            } else {
                rec.ingest_telemetry_line(&line);
            }
            if let Some((v, why)) = rec.early_verdict(&scenario.limits) {
                assert_eq!(v, *expected, "{run}: {why}");
                break;
            }
        }
    }
}
