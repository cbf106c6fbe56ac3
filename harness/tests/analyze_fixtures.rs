//! Golden fixtures, syzkaller style: `tests/fixtures/logs/<name>.log` holds
//! one raw log; `<name>.log.snap` beside it holds the expected facts (the
//! human report). Regenerate with `INSTA_UPDATE=always cargo test -p oomlab
//! --test analyze_fixtures` (or `cargo insta review`).

use std::path::{Path, PathBuf};

use oomlab::analyze::{analyze_paths, exit_code, render_human, AnalyzeOptions, Reaper};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/logs")
}

/// Real consoles of this project's guests are the recorded runs'
/// `console.log`s, named here `real_guest_<run>.log`.
const REAL_GUEST: &str = "real_guest_";

fn runs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/runs")
}

/// Where the fixture called `name` lives.
fn fixture_path(name: &str) -> PathBuf {
    match name
        .strip_prefix(REAL_GUEST)
        .and_then(|n| n.strip_suffix(".log"))
    {
        Some(run) => runs_dir().join(run).join("console.log"),
        None => fixtures_dir().join(name),
    }
}

/// (snapshot name, path) of every fixture.
fn logs() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !n.ends_with(".snap")
                && !n.ends_with(".new")
                && !n.ends_with(".md")
                && !n.starts_with('.')
        })
        .map(|p| {
            let n = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_string();
            (n, p)
        })
        .collect();
    for run in std::fs::read_dir(runs_dir()).expect("runs dir").flatten() {
        let log = run.path().join("console.log");
        if log.is_file() {
            let n = format!("{REAL_GUEST}{}.log", run.file_name().to_string_lossy());
            v.push((n, log));
        }
    }
    v.sort();
    v
}

fn facts(name: &str, path: &Path) -> String {
    let mut a = analyze_paths(&[path.to_path_buf()], &AnalyzeOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = name.to_string();
    for i in &mut a.inputs {
        i.path.clone_from(&name);
    }
    for inc in &mut a.incidents {
        inc.input.clone_from(&name);
    }
    format!("exit_code: {}\n{}", exit_code(&a), render_human(&a))
}

#[test]
fn golden_fixtures() {
    let all = logs();
    assert!(
        all.len() >= 20,
        "expected the fixture corpus, found {}",
        all.len()
    );
    for (name, path) in all {
        let report = facts(&name, &path);
        insta::with_settings!({
            snapshot_path => fixtures_dir(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            info => &name,
        }, {
            insta::assert_snapshot!(name, report);
        });
    }
}

/// Facts checked by hand, so a blind snapshot update cannot hide a
/// regression in the things issue #3 asks for.
#[test]
fn fixture_facts() {
    let an = |n: &str| analyze_paths(&[fixture_path(n)], &AnalyzeOptions::default()).expect(n);

    let a = an("e1_2.6.32_vanilla_dmesg.log");
    assert_eq!((a.totals.chosen, a.totals.killed), (1, 1));
    let inc = &a.incidents[0];
    assert_eq!(inc.chosen.as_ref().map(|c| c.pid), Some(1300));
    assert_eq!(inc.victims[0].pid, 1301);
    assert_eq!(inc.victims[0].uid, Some(1000));

    let a = an("e1r_rhel6_syslog_php_fpm_loop.log");
    assert!(a.loop_found);
    assert_eq!(a.loops[0].likely_master, Some(4000));
    assert!(a.groups[0].spared.iter().any(|s| s.uid == 0));

    let a = an("e3r_rhel7_memcg_syslog.log");
    let inc = &a.incidents[0];
    assert_eq!(
        inc.oom_memcg.as_deref(),
        Some("/system.slice/mysqld.service")
    );
    assert_eq!(inc.memcg_usage_kb, Some(2097152));
    assert_eq!(inc.victims[0].uid, Some(27));

    let a = an("e6_4.19_oom_group_reaper.log");
    assert_eq!(a.totals.killed, 3);
    assert_eq!(a.incidents.len(), 1);
    assert_eq!(a.incidents[0].oom_group.as_deref(), Some("/app"));
    assert!(matches!(
        a.incidents[0].victims[0].reaper,
        Some(Reaper::Reaped { .. })
    ));

    let a = an("e9_5.4_journal_short_gunicorn_loop.log");
    assert!(a.loop_found);
    assert_eq!(a.loops[0].likely_master, Some(30990));
    assert_eq!(
        a.loops[0].memcg.as_deref(),
        Some("/system.slice/app.service")
    );

    let a = an("e10_6.8_table_memcg_unable_to_reap.log");
    assert_eq!(a.incidents[0].victims[0].reaper, Some(Reaper::Unable));

    let a = an("panic_on_oom_6.1.log");
    assert_eq!(a.totals.panics, 1);
    assert!(a
        .panic
        .as_deref()
        .is_some_and(|p| p.contains("panic_on_oom")));

    let a = an("no_killable_4.19_deadlock_panic.log");
    assert!(a.incidents[0].no_killable);
    assert_eq!(a.panic.as_deref(), Some("System is deadlocked on memory"));

    let a = an("dirty_gzip_5.15.log.gz");
    assert!(a.inputs[0].gzip);
    assert_eq!(a.totals.killed, 3);

    let a = an("journal_json_6.5.log");
    assert_eq!(a.totals.killed, 2);

    let a = an("dirty_rsyslog_012.log");
    assert_eq!(a.totals.task_table_rows, 1);
    assert_eq!(a.incidents[0].task_table_rows, 1);

    // Real consoles of this project's guests (tests/fixtures/runs): the
    // livelock runs are loops on every kernel, the mitigations are not.
    for (log, master) in [
        ("real_guest_seed-livelock-5.10.log", 70),
        ("real_guest_seed-livelock-6.1.log", 78),
        ("real_guest_seed-livelock-6.12.log", 131),
    ] {
        let a = an(log);
        assert!(a.loop_found, "{log}");
        assert_eq!(a.loops[0].likely_master, Some(master), "{log}");
    }
    for log in [
        "real_guest_oom-group-5.10.log",
        "real_guest_oom-group-6.1.log",
        "real_guest_oom-group-6.12.log",
        "real_guest_kill-master-first-6.1.log",
        "real_guest_overcommit-never-6.1.log",
    ] {
        assert!(!an(log).loop_found, "{log}");
    }

    let a = an("no_oom.log");
    assert_eq!((a.totals.killed, exit_code(&a)), (0, 0));
}

#[test]
fn several_inputs_and_unreadable_input() {
    let d = fixtures_dir();
    let a = analyze_paths(
        &[
            d.join("e7_5.0_summary.log"),
            d.join("dirty_gzip_5.15.log.gz"),
        ],
        &AnalyzeOptions::default(),
    )
    .expect("two inputs");
    assert_eq!(a.inputs.len(), 2);
    assert_eq!(a.totals.killed, 4);
    assert!(analyze_paths(&[d.join("does-not-exist.log")], &AnalyzeOptions::default()).is_err());
}
