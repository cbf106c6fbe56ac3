//! The classifier on recorded runs: each folder of tests/fixtures/runs holds
//! a real run's raw console log and telemetry, and the scenario it ran. The
//! folder's `scenario.yaml` header (`expect:`) is the expected verdict; the
//! full judgement is an insta snapshot (regenerate: `INSTA_UPDATE=always
//! cargo test -p oomlab --test replay_runs`, then review the diff).

mod common;
use common::{merged, replay};

use std::path::{Path, PathBuf};

use oomlab::scenario::Scenario;
use oomlab::verdict::RunRecord;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/runs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn recorded_runs_get_their_expected_verdict() {
    let dirs = fixtures();
    assert!(dirs.len() >= 2, "recorded runs missing");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (scenario, rec) = replay(&dir);
        // The live run may have stopped early; the replayed window ends
        // where the recording ends, so the judgement is the same one.
        let j = rec.judge(&scenario.limits);
        assert_eq!(Some(j.verdict), scenario.expect, "{name}: {}", j.why);
        insta::with_settings!({snapshot_suffix => name.clone(), prepend_module_to_snapshot => false}, {
            insta::assert_yaml_snapshot!("judgement", j);
        });
    }
}

/// The early verdict, replayed line by line in time order: when it fires
/// it names the expected verdict, and it does fire for every run that the
/// live harness stopped early (no `done` in its telemetry).
#[test]
fn early_verdicts_on_recorded_runs_agree_with_the_expected_ones() {
    let mut fired = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
        let mut rec = RunRecord::for_workload(&scenario.workload);
        let mut first = None;
        for (_, is_console, line) in merged(&dir) {
            if is_console {
                rec.ingest_console(&line);
            } else {
                rec.ingest_telemetry_line(&line);
            }
            if first.is_none() {
                first = rec.early_verdict(&scenario.limits);
            }
        }
        let stopped_early = rec.done_t.is_none();
        match first {
            Some((v, why)) => {
                fired += 1;
                assert_eq!(Some(v), scenario.expect, "{name}: {why}");
            }
            None => {
                // Never fired: the live run must have gone to `done`, and
                // the full-window judgement carries the verdict alone.
                assert!(
                    !stopped_early,
                    "{name}: the live run stopped early, the replay never did"
                );
                let j = rec.judge(&scenario.limits);
                assert_eq!(Some(j.verdict), scenario.expect, "{name}: {}", j.why);
            }
        }
    }
    assert!(fired > 0, "no recorded run exercised the early verdict");
}
