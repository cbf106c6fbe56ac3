//! Golden fixtures, syzkaller style: `tests/fixtures/logs/<name>.log` holds
//! one raw log; `<name>.log.snap` beside it holds the expected facts (the
//! human report). Regenerate with `INSTA_UPDATE=always cargo test -p oomlab
//! --test analyze_fixtures` (or `cargo insta review`).

use std::path::{Path, PathBuf};

use oomlab::analyze::{
    analyze_paths, exit_code, render_human, Analysis, AnalyzeOptions, Era, How, Reaper,
};
use Era::*;

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

/// The key facts of one fixture, read off its raw log by hand: what a blind
/// snapshot update must not be able to change.
struct Facts {
    /// Victims' pids in log order (`Killed process`, `sharing same memory`
    /// and memory.oom.group kills).
    victims: &'static [u32],
    /// `Kill process ... score` selection lines.
    chosen: u64,
    /// `Killed process` lines.
    killed: u64,
    /// Eras the formats give away.
    eras: &'static [Era],
    /// The loop call: the looping group's name, or `None` for no loop.
    looping: Option<&'static str>,
}

const fn key_facts(
    victims: &'static [u32],
    chosen: u64,
    killed: u64,
    eras: &'static [Era],
    looping: Option<&'static str>,
) -> Facts {
    Facts {
        victims,
        chosen,
        killed,
        eras,
        looping,
    }
}

/// One entry per file of tests/fixtures/logs (checked by
/// [`every_fixture_has_hand_written_facts`]):
/// (file, victims, chosen, killed, eras, loop).
#[rustfmt::skip]
const FACTS: &[(&str, Facts)] = &[
    ("dirty_crlf_rhel6.log", key_facts(&[201, 202, 203], 3, 3, &[V2636To34, Rhel6], Some("nginx"))),
    ("dirty_gzip_5.15.log.gz", key_facts(&[5100, 5230, 5301], 0, 3, &[V415To67, V50Plus, V54Plus], Some("celery"))),
    ("dirty_interleaved_truncated.log", key_facts(&[700, 703, 705, 709], 0, 4, &[V415To67, V50Plus, V54Plus], None)),
    ("dirty_non_utf8.log", key_facts(&[42], 0, 1, &[V54Plus], None)),
    ("dirty_rsyslog_012.log", key_facts(&[12345], 0, 1, &[V415To67, V50Plus, V54Plus], None)),
    ("e0_pre2.6.32_syslog.log", key_facts(&[2600], 1, 1, &[], None)),
    ("e1_2.6.32_vanilla_dmesg.log", key_facts(&[1301], 1, 1, &[V2632], None)),
    ("e1o_openvz_rhel6.log", key_facts(&[4444], 0, 1, &[], None)),
    ("e1r_rhel6_syslog_php_fpm_loop.log", key_facts(&[4100, 4101, 4103, 4105, 4107, 4109, 4111, 4113], 8, 8, &[V2636To34, Rhel6], Some("php-fpm"))),
    ("e2_3.4_upstream_sharing_memory.log", key_facts(&[812, 900], 1, 1, &[V2636To34], None)),
    ("e3_3.10_upstream_dmesg.log", key_facts(&[2301], 1, 1, &[V35To319], None)),
    ("e3r_rhel7_memcg_syslog.log", key_facts(&[9911], 1, 1, &[V35To319, Rhel7], None)),
    ("e4_4.4_dmesg_T.log", key_facts(&[1500], 1, 1, &[V40To414], None)),
    ("e5_4.13_double_space_rhel8_style.log", key_facts(&[620], 0, 1, &[V51To53], None)),
    ("e6_4.19_oom_group_reaper.log", key_facts(&[2003, 2001, 2002], 1, 3, &[V415To67], None)),
    ("e7_5.0_summary.log", key_facts(&[777], 1, 1, &[V415To67, V50Plus], None)),
    ("e8_5.3_prefix_no_uid.log", key_facts(&[3333], 0, 1, &[V50Plus, V51To53], None)),
    ("e9_5.4_journal_short_gunicorn_loop.log", key_facts(&[31005, 31020, 31027, 31034, 31041, 31048], 0, 6, &[V415To67, V50Plus, V54Plus], Some("gunicorn"))),
    ("e10_6.8_table_memcg_unable_to_reap.log", key_facts(&[640], 0, 1, &[V50Plus, V54Plus, V68Plus], None)),
    ("journal_json_6.5.log", key_facts(&[8000, 8001], 0, 2, &[V415To67, V50Plus, V54Plus], None)),
    ("journal_short_iso_5.15.log", key_facts(&[300, 310], 0, 2, &[V54Plus], None)),
    ("journal_short_monotonic_6.1.log", key_facts(&[300], 0, 1, &[V54Plus], None)),
    ("no_killable_4.19_deadlock_panic.log", key_facts(&[], 0, 0, &[V415To67], None)),
    ("no_oom.log", key_facts(&[], 0, 0, &[], None)),
    ("panic_on_oom_6.1.log", key_facts(&[], 0, 0, &[V415To67, V50Plus], None)),
    ("qemu_serial_6.12_loop.log", key_facts(&[120, 121, 122, 123], 0, 4, &[V50Plus, V54Plus, V68Plus], Some("worker"))),
    ("seed_centos6_messages.log", key_facts(SEED_VICTIMS, 20, 19, &[V2636To34, Rhel6], Some("nginx"))),
    ("victim_exiting_6.1.log", key_facts(&[], 0, 0, &[V50Plus], None)),
];

/// The seed's victims in kill order (8353, 8354, 8356 and 8357 were in its
/// first task table; the other fifteen were respawned).
const SEED_VICTIMS: &[u32] = &[
    8356, 8353, 8354, 8359, 8358, 8357, 8363, 8361, 8360, 8364, 8369, 8368, 8377, 8367, 8379, 8380,
    8378, 8382, 8381,
];

fn an(name: &str) -> Analysis {
    analyze_paths(&[fixture_path(name)], &AnalyzeOptions::default()).expect(name)
}

#[test]
fn every_fixture_has_hand_written_facts() {
    let listed: Vec<&str> = FACTS.iter().map(|(n, _)| *n).collect();
    for (name, _) in logs() {
        if !name.starts_with(REAL_GUEST) {
            assert!(
                listed.contains(&name.as_str()),
                "{name}: no hand-written facts in FACTS"
            );
        }
    }
    for n in listed {
        assert!(fixture_path(n).is_file(), "{n}: listed in FACTS, not found");
    }
}

/// Victim pids, counts, eras and the loop call of every fixture.
#[test]
fn fixture_key_facts() {
    for (name, f) in FACTS {
        let a = an(name);
        let pids: Vec<u32> = a
            .incidents
            .iter()
            .flat_map(|i| &i.victims)
            .map(|v| v.pid)
            .collect();
        assert_eq!(pids, f.victims, "{name}: victims");
        assert_eq!(
            (a.totals.chosen, a.totals.killed),
            (f.chosen, f.killed),
            "{name}: (chosen, killed)"
        );
        assert_eq!(a.eras, f.eras, "{name}: eras");
        assert_eq!(
            a.loops.first().map(|l| l.name.as_str()),
            f.looping,
            "{name}: loop"
        );
        assert_eq!(exit_code(&a), i32::from(f.looping.is_some()), "{name}");
    }
}

/// Facts checked by hand beyond the key ones, so a blind snapshot update
/// cannot hide a regression in the things issue #3 asks for.
#[test]
fn fixture_facts() {
    let a = an("e0_pre2.6.32_syslog.log");
    // selected the parent, killed a child
    assert_eq!(a.incidents[0].chosen.as_ref().map(|c| c.pid), Some(2592));
    assert_eq!(a.incidents[0].victims[0].name, "mysqld");

    let a = an("e1_2.6.32_vanilla_dmesg.log");
    let inc = &a.incidents[0];
    assert_eq!(inc.chosen.as_ref().map(|c| c.pid), Some(1300));
    assert_eq!(inc.victims[0].uid, Some(1000));

    let a = an("e1o_openvz_rhel6.log");
    let v = &a.incidents[0].victims[0];
    assert_eq!((v.name.as_str(), v.total_vm_kb), ("java", Some(2_000_000)));

    let a = an("e1r_rhel6_syslog_php_fpm_loop.log");
    assert_eq!(a.loops[0].likely_master, Some(4000));
    assert_eq!((a.loops[0].kills, a.loops[0].respawned_kills), (8, 6));
    assert!(a.groups[0].spared.iter().any(|s| s.uid == 0));

    let a = an("e2_3.4_upstream_sharing_memory.log");
    let v = &a.incidents[0].victims;
    assert_eq!((v[0].how, v[1].how), (How::Killed, How::SharingMemory));
    assert_eq!(a.totals.killed_sharing_memory, 1);

    let a = an("e3r_rhel7_memcg_syslog.log");
    let inc = &a.incidents[0];
    assert_eq!(
        inc.oom_memcg.as_deref(),
        Some("/system.slice/mysqld.service")
    );
    assert_eq!(inc.memcg_usage_kb, Some(2097152));
    assert_eq!(inc.victims[0].uid, Some(27));

    let a = an("e6_4.19_oom_group_reaper.log");
    assert_eq!(a.incidents.len(), 1);
    assert_eq!(a.incidents[0].oom_group.as_deref(), Some("/app"));
    let hows: Vec<How> = a.incidents[0].victims.iter().map(|v| v.how).collect();
    assert_eq!(hows, [How::Killed, How::OomGroup, How::OomGroup]);
    assert!(matches!(
        a.incidents[0].victims[0].reaper,
        Some(Reaper::Reaped { .. })
    ));

    // the uid of a 5.0-5.3 victim comes from the oom-kill: summary line
    let a = an("e7_5.0_summary.log");
    assert_eq!(a.incidents[0].victims[0].uid, Some(1000));
    let a = an("e8_5.3_prefix_no_uid.log");
    assert_eq!(a.incidents[0].victims[0].uid, Some(1000));

    let a = an("e9_5.4_journal_short_gunicorn_loop.log");
    assert_eq!(a.loops[0].likely_master, Some(30990));
    assert_eq!(
        a.loops[0].memcg.as_deref(),
        Some("/system.slice/app.service")
    );

    let a = an("e10_6.8_table_memcg_unable_to_reap.log");
    assert_eq!(a.incidents[0].victims[0].reaper, Some(Reaper::Unable));

    let a = an("panic_on_oom_6.1.log");
    // the `---[ end Kernel panic` trailer is not a second panic
    assert_eq!(a.totals.panics, 1);
    assert!(a
        .panic
        .as_deref()
        .is_some_and(|p| p.contains("panic_on_oom")));

    let a = an("no_killable_4.19_deadlock_panic.log");
    assert!(a.incidents[0].no_killable);
    assert_eq!(a.panic.as_deref(), Some("System is deadlocked on memory"));

    let a = an("victim_exiting_6.1.log");
    assert_eq!(
        a.incidents[0].victim_exiting.as_ref().map(|c| c.pid),
        Some(900)
    );

    let a = an("dirty_gzip_5.15.log.gz");
    assert!(a.inputs[0].gzip);
    assert_eq!(a.loops[0].likely_master, Some(5000));

    let a = an("dirty_crlf_rhel6.log");
    assert_eq!(a.loops[0].likely_master, Some(200));

    // a name cut by a truncated line (`(redis-se`) joins its group
    let a = an("dirty_interleaved_truncated.log");
    assert_eq!(a.groups.len(), 1);
    assert_eq!(
        (a.groups[0].name.as_str(), a.groups[0].kills),
        ("redis-server", 4)
    );

    let a = an("dirty_non_utf8.log");
    assert!(a.incidents[0].victims[0].name.starts_with("app"));

    let a = an("journal_json_6.5.log");
    assert_eq!(a.inputs[0].journal_json_lines, 7);

    let a = an("journal_short_monotonic_6.1.log");
    assert_eq!(a.incidents[0].victims[0].name, "(sd-pam)");

    let a = an("dirty_rsyslog_012.log");
    assert_eq!(a.totals.task_table_rows, 1);
    assert_eq!(a.incidents[0].task_table_rows, 1);
    assert_eq!(
        a.incidents[0].task_memcg.as_deref(),
        Some("/kubepods/burstable/pod1234/abcd")
    );

    let a = an("qemu_serial_6.12_loop.log");
    assert_eq!(
        (a.loops[0].respawned_kills, a.loops[0].likely_master),
        (3, None)
    );

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
