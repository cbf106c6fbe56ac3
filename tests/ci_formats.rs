//! The matrix's CI formats on every kind of cell (pass, mismatch, n/a,
//! unstable, a run that could not happen), checked by their consumers'
//! own readers: KCIDB's schema (`kcidb-io`), a JUnit parser
//! (`junitparser`), and the KTAP grammar. No guest is booted here; the
//! matrix tests produce the same files from real runs.

use std::path::{Path, PathBuf};

use oomlab::matrix::summary::{self, RunMetrics, RunRef};
use oomlab::scenario::Scenario;
use oomlab::verdict::Verdict;
use oomlab_e2e::{ktap, python_check, JUNIT_READ, KCIDB_VALIDATE};
use serde_json::Value;

fn metrics(kills: usize) -> RunMetrics {
    RunMetrics {
        why: "why".into(),
        wall_s: 8.5,
        boot_s: Some(2.0),
        kernel_release: Some("6.1.0-50-cloud-amd64".into()),
        kernel_sha256: Some("ab".repeat(32)),
        accel: "tcg".into(),
        qemu_version: "QEMU emulator version 7.2.0".into(),
        oom_kills: kills,
        user_kills: 0,
        kills_by: vec![("kernel".into(), kills)],
        respawns: kills,
        worker_failures: 0,
        kill_rate_per_s: Some(4.5),
        first_oom_s: Some(0.8),
        recovery_s: None,
        canary_max_late_ms: Some(3.0),
        canary_p99_late_ms: Some(2.0),
        availability: Some(0.97),
        window_s: 7.0,
        master_exited: false,
        ssh_success_rate: Some(1.0),
        ssh_longest_outage_s: Some(0.0),
    }
}

fn run(repeat: usize, v: Option<Verdict>) -> RunRef {
    RunRef {
        repeat,
        dir: PathBuf::from(format!("x/run-{repeat}")),
        verdict: v,
        error: v
            .is_none()
            .then(|| "QEMU failed before the guest printed anything".into()),
        metrics: v.map(|_| metrics(12)),
    }
}

fn scenario(name: &str, expect: &str) -> Scenario {
    Scenario::parse(
        Path::new("s.yaml"),
        &format!("name: {name}\nexpect: {expect}\n"),
    )
    .unwrap()
}

fn write_formats(dir: &Path) {
    let k1 = "debian-bookworm-cloud-6.1";
    let k2 = "my-kernel<&>\"'";
    let cells = vec![
        summary::cell(
            &scenario("seed", "livelock"),
            k1,
            vec![run(1, Some(Verdict::Livelock))],
        ),
        summary::cell(
            &scenario("group", "recovered"),
            k1,
            vec![run(1, Some(Verdict::Livelock))],
        ),
        summary::cell(
            &scenario("psi", "recovered"),
            k2,
            vec![run(1, Some(Verdict::NotApplicable))],
        ),
        summary::cell(
            &scenario("flaky", "livelock"),
            k2,
            vec![
                run(1, Some(Verdict::Livelock)),
                run(2, Some(Verdict::Recovered)),
            ],
        ),
        summary::cell(&scenario("broken", "livelock"), k2, vec![run(1, None)]),
        summary::cell(
            &scenario("seed", "livelock"),
            k2,
            vec![run(1, Some(Verdict::Livelock))],
        ),
    ];
    let s = summary::totals(cells, 42.0, 2, 2);
    assert_eq!((s.mismatched, s.unstable, s.errors), (1, 1, 1));
    assert_eq!(s.exit_code(), 3);
    summary::write_all(dir, &s).unwrap();
}

#[test]
fn every_kind_of_cell_reads_back_in_every_format() {
    let d = tempfile::tempdir().unwrap();
    write_formats(d.path());

    let n = python_check(KCIDB_VALIDATE, &d.path().join("kcidb.json"));
    assert_eq!(n.trim(), "6");
    let k: Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("kcidb.json")).unwrap())
            .unwrap();
    let statuses: Vec<&str> = k["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["PASS", "FAIL", "SKIP", "FAIL", "ERROR", "PASS"]);

    // The scenario run on two kernels gets its kernel-by-kernel view.
    let md = std::fs::read_to_string(d.path().join("summary.md")).unwrap();
    assert!(md.contains("## seed, kernel by kernel"), "{md}");
    assert!(!md.contains("## group, kernel by kernel"));
    let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    assert!(html.contains("seed, kernel by kernel"));

    // Per kernel: (tests, failures, errors, skipped).
    let j: Value =
        serde_json::from_str(&python_check(JUNIT_READ, &d.path().join("junit.xml"))).unwrap();
    assert_eq!(j[0][0], "debian-bookworm-cloud-6.1");
    assert_eq!(
        (&j[0][1], &j[0][2], &j[0][3], &j[0][4]),
        (&2.into(), &1.into(), &0.into(), &0.into())
    );
    assert_eq!(j[1][0], "my-kernel<&>\"'", "names survive XML escaping");
    assert_eq!(
        (&j[1][1], &j[1][2], &j[1][3], &j[1][4]),
        (&4.into(), &1.into(), &1.into(), &1.into())
    );

    let t = ktap::parse(&std::fs::read_to_string(d.path().join("results.ktap")).unwrap()).unwrap();
    assert_eq!(t.len(), 2);
    assert!(!t[0].ok && !t[1].ok);
    let psi = &t[1].subtests[0];
    assert!(
        psi.ok
            && psi
                .directive
                .as_deref()
                .is_some_and(|d| d.starts_with("SKIP")),
        "{psi:?}"
    );
    assert_eq!(t[1].subtests[2].directive.as_deref(), Some("ERROR"));
}

/// The shipped CI definition is valid YAML that shards with `--shard I/N`
/// over as many jobs as it declares, and merges them with `oomlab merge`.
#[test]
fn shipped_ci_matrix_definition_shards_and_merges() {
    let path = oomlab_e2e::root().join("ci/github-matrix.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let shards = y["env"]["SHARDS"].as_u64().unwrap();
    let matrix = y["jobs"]["shard"]["strategy"]["matrix"]["shard"]
        .as_sequence()
        .unwrap();
    assert_eq!(matrix.len() as u64, shards);
    assert!(text.contains("--shard ${{ matrix.shard }}/$SHARDS"));
    assert!(text.contains("oomlab -- merge shard-* --out merged"));
    // Every kernel it names is in the catalogue.
    let cat = oomlab::image::kernel::catalogue().unwrap();
    for k in y["env"]["KERNELS"]
        .as_str()
        .unwrap()
        .split("--kernel")
        .skip(1)
    {
        assert!(cat.get(k.trim()).is_some(), "{k} is not a catalogue kernel");
    }
}
