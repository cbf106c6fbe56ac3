//! The classifier on recorded runs: each folder of tests/fixtures/runs holds
//! a real run's raw console log and telemetry, and the scenario it ran. The
//! folder's `scenario.yaml` header (`expect:`) is the expected verdict; the
//! full judgement is an insta snapshot (regenerate: `INSTA_UPDATE=always
//! cargo test -p oomlab --test replay_runs`, then review the diff).

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

/// Rebuild the record the live runner would have built: console lines and
/// telemetry lines interleaved by guest time is not needed, since the
/// record only accumulates.
fn replay(dir: &Path) -> (Scenario, RunRecord) {
    let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let mut rec = RunRecord::new(scenario.workload.workers as usize);
    let console = std::fs::read(dir.join("console.log")).unwrap();
    for line in String::from_utf8_lossy(&console).lines() {
        rec.ingest_console(line);
    }
    let telemetry = std::fs::read_to_string(dir.join("telemetry.jsonl")).unwrap();
    for line in telemetry.lines() {
        rec.ingest_telemetry_line(line);
    }
    (scenario, rec)
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
