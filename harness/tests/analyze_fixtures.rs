//! Golden fixtures, syzkaller style: `tests/fixtures/logs/<name>.log` holds
//! one raw log; `<name>.log.snap` beside it holds the expected facts (the
//! human report). Regenerate with `INSTA_UPDATE=always cargo test -p oomlab
//! --test analyze_fixtures` (or `cargo insta review`).

use std::path::{Path, PathBuf};

use oomlab::analyze::{
    analyze_paths, exit_code, render_human, Analysis, AnalyzeOptions, BackOff, Era, GroupCall, How,
    LoopRule, Note, Reaper,
};
use oomlab::events::supervisor::Supervisor;
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

/// The analysis of one fixture, its input named `name` wherever it lives.
fn analysis_named(name: &str, path: &Path) -> Analysis {
    let mut a = analyze_paths(&[path.to_path_buf()], &AnalyzeOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = name.to_string();
    for i in &mut a.inputs {
        i.path.clone_from(&name);
    }
    for inc in &mut a.incidents {
        inc.input.clone_from(&name);
    }
    a
}

fn render_facts(a: &Analysis) -> String {
    format!("exit_code: {}\n{}", exit_code(a), render_human(a))
}

fn facts(name: &str, path: &Path) -> String {
    render_facts(&analysis_named(name, path))
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

/// Every fixture again with CRLF line ends (a log copied through Windows,
/// a serial console): the same report, word for word.
#[test]
fn every_fixture_reads_the_same_with_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for (name, path) in logs() {
        let raw = std::fs::read(&path).unwrap();
        // gzip is binary; a file that has CRLF already (the serial
        // consoles, the CRLF fixture) is its own replay.
        if name.ends_with(".gz") || memchr::memmem::find(&raw, b"\r\n").is_some() {
            continue;
        }
        let mut crlf = Vec::with_capacity(raw.len() + raw.len() / 40);
        for &b in &raw {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        let copy = dir.path().join(&name);
        std::fs::write(&copy, &crlf).unwrap();
        // Everything but the byte count (one more per line) is the same.
        let [lf, cr] = [&path, &copy].map(|p| {
            let mut a = analysis_named(&name, p);
            a.inputs.iter_mut().for_each(|i| i.bytes = 0);
            render_facts(&a)
        });
        assert_eq!(cr, lf, "{name} read differently with CRLF line ends");
        replayed += 1;
    }
    assert!(
        replayed >= 45,
        "only {replayed} fixtures replayed with CRLF"
    );
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
    // supervisors (each analysed alone here; the pairs also together, below)
    ("sup_systemd_252_start_limit_6.1.log", key_facts(&[4410, 4441, 4479, 4524, 4576], 0, 5, &[V50Plus, V54Plus], Some("node"))),
    ("sup_systemd_249_restart_counter_5.15.log", key_facts(&[23187], 0, 1, &[V50Plus, V54Plus], Some("celery"))),
    ("sup_systemd_219_rhel7_one_kill.log", key_facts(&[2198], 1, 1, &[V35To319, Rhel7], None)),
    ("sup_nginx_pair_kernel_5.10.log", key_facts(&[8356, 8361], 0, 2, &[V50Plus, V54Plus], None)),
    ("sup_nginx_pair_error.log", key_facts(&[], 0, 0, &[], None)),
    ("sup_php_fpm_syslog_6.1.log", key_facts(&[4101, 4108, 4113, 4121], 0, 4, &[V50Plus, V54Plus], Some("php-fpm8.2"))),
    ("sup_uwsgi_2.0_harakiri_and_oom_5.15.log", key_facts(&[5541, 5542, 5545], 0, 3, &[V50Plus, V54Plus], Some("uwsgi"))),
    ("sup_gunicorn_21_journal_5.4.log", key_facts(&[31005, 31020, 31027], 0, 3, &[V50Plus, V54Plus], Some("gunicorn"))),
    ("sup_supervisord_pair_kernel_5.4.log", key_facts(&[686253, 686301, 686342], 0, 3, &[V50Plus, V54Plus], Some("python3"))),
    ("sup_supervisord_pair_supervisord.log", key_facts(&[], 0, 0, &[], None)),
    ("sup_postgres_13_syslog_5.10.log", key_facts(&[24643], 0, 1, &[V415To67, V50Plus, V54Plus], None)),
    ("sup_kubelet_containerd_crashloop_5.15.log", key_facts(&[2101, 2245, 2398, 2533, 2701], 0, 5, &[V50Plus, V54Plus], Some("python"))),
    ("sup_docker_pair_kernel_6.1.log", key_facts(&[3110, 3342, 3571, 3806], 0, 4, &[V50Plus, V54Plus], Some("node"))),
    ("sup_docker_pair_events.log", key_facts(&[], 0, 0, &[], None)),
    // loop or burst
    ("burst_oom_group_no_table_6.1.log", key_facts(&[7311, 7290, 7305, 7308, 7313], 0, 5, &[V50Plus, V54Plus], None)),
    ("burst_grep_several_victims_5.15.log", key_facts(&[9120, 9388, 9415, 9502], 0, 4, &[V54Plus], None)),
    ("loop_sustained_no_table_5.10.log", key_facts(&[40110, 40127, 40139, 40158, 40169, 40184], 0, 6, &[V50Plus, V54Plus], Some("worker"))),
    ("stopped_quiet_tail_5.10.log", key_facts(&[40110, 40127, 40139, 40158, 40169, 40184], 0, 6, &[V50Plus, V54Plus], None)),
    // pastes a person edited, and damaged logs
    ("dirty_paste_lowercase_units_rhel7.log", key_facts(&[3301, 3302, 3318, 3325], 4, 4, &[V35To319, Rhel7], Some("php-fpm"))),
    ("dirty_paste_split_timestamp_4.19.log", key_facts(&[8356, 8390, 8431, 8467], 4, 4, &[], Some("java"))),
    ("dirty_paste_wrapped_72col_rhel6.log", key_facts(SEED_VICTIMS, 20, 19, &[V2636To34, Rhel6], Some("nginx"))),
    ("dirty_nul_and_colour_bytes_6.1.log", key_facts(&[120, 123, 125, 129, 132], 0, 5, &[V50Plus, V54Plus], Some("worker"))),
    // a real console of this project's guest on CentOS 6.8's kernel
    ("e1r_rhel6_console_sacrifice_child_2.6.32.log", key_facts(&[50, 49, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65], 17, 17, &[V2636To34, Rhel6], Some("nginx"))),
];

/// Fixtures read together (a kernel log and a supervisor's own log, as in
/// `oomlab analyze /var/log/kern.log /var/log/nginx/error.log`): the
/// supervisor's lines turn the call.
#[rustfmt::skip]
const PAIRS: &[(&str, &str, Option<&str>)] = &[
    ("sup_nginx_pair_kernel_5.10.log", "sup_nginx_pair_error.log", Some("nginx")),
    ("sup_supervisord_pair_kernel_5.4.log", "sup_supervisord_pair_supervisord.log", Some("python3")),
    ("sup_docker_pair_kernel_6.1.log", "sup_docker_pair_events.log", Some("node")),
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

fn an_pair(kernel: &str, other: &str) -> Analysis {
    analyze_paths(
        &[fixture_path(kernel), fixture_path(other)],
        &AnalyzeOptions::default(),
    )
    .expect(kernel)
}

/// The call on the group of `name`.
fn call_of(a: &Analysis, name: &str) -> GroupCall {
    a.groups
        .iter()
        .find(|g| g.name == name)
        .map(|g| g.call.clone())
        .unwrap_or_else(|| panic!("no group {name}"))
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

/// The supervisors' evidence, read off each fixture by hand.
#[test]
fn supervisor_fixture_facts() {
    // systemd v252: five kills in five episodes, each restarted 0.112 s
    // later, then the start limit
    let a = an("sup_systemd_252_start_limit_6.1.log");
    let l = &a.loops[0];
    assert_eq!((l.rule, l.episodes), (LoopRule::Supervisor, 5));
    assert_eq!(l.ended_by, Some(Supervisor::Systemd));
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.name.as_deref()),
        (Supervisor::Systemd, Some("api.service"))
    );
    assert_eq!(
        (e.deaths, e.respawns, e.oom_notices, e.restart_counter),
        (5, 5, 5, Some(5))
    );
    assert!(e.gave_up);
    let d = e.delay.expect("delays");
    assert!((d.median_s - 0.112).abs() < 0.002, "{d:?}");
    assert_eq!(e.back_off, BackOff::None);
    // ... which the kernel alone calls over: kills stopped 132 s before the end
    assert!(a.groups[0].tail_s.is_some_and(|t| t > 100.0));

    // systemd v249: one kernel kill, the restart counter at 4 (case 1a)
    let a = an("sup_systemd_249_restart_counter_5.15.log");
    assert_eq!(a.loops[0].rule, LoopRule::RestartCounter);
    assert_eq!(a.groups[0].supervisors[0].restart_counter, Some(4));
    assert!(a.notes.contains(&Note::DeathsUnmatched { count: 3 }));
    // the kill (dmesg -T, with a year) and systemd (journal, without) compared
    let d = a.groups[0].supervisors[0].delay.expect("delay");
    assert!((d.median_s - 5.0).abs() < 0.01, "{d:?}");

    // systemd v219 (RHEL 7): one kill, one restart 7 s later: not a loop
    let a = an("sup_systemd_219_rhel7_one_kill.log");
    assert_eq!(call_of(&a, "java"), GroupCall::Single);
    let e = &a.groups[0].supervisors[0];
    assert_eq!((e.deaths, e.respawns), (1, 1));
    assert_eq!(e.delay.map(|d| d.median_s), Some(7.0));

    // php-fpm to syslog: four deaths and respawns of pool www
    let a = an("sup_php_fpm_syslog_6.1.log");
    assert_eq!(a.loops[0].rule, LoopRule::Supervisor);
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.name.as_deref()),
        (Supervisor::PhpFpm, Some("pool www"))
    );
    assert_eq!((e.deaths, e.respawns, e.started_then_killed), (4, 4, 3));

    // uWSGI: the harakiri kill is uWSGI's own, the other three are OOM kills
    let a = an("sup_uwsgi_2.0_harakiri_and_oom_5.15.log");
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.deaths, e.respawns),
        (Supervisor::Uwsgi, 3, 3)
    );
    assert!(a.notes.iter().any(|n| matches!(
        n,
        Note::SelfKills {
            supervisor: Supervisor::Uwsgi,
            count: 1,
            ..
        }
    )));

    // gunicorn 21: `was sent SIGKILL! Perhaps out of memory?`, `Booting worker`
    let a = an("sup_gunicorn_21_journal_5.4.log");
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.deaths, e.respawns, e.started_then_killed),
        (Supervisor::Gunicorn, 3, 3, 2)
    );

    // PostgreSQL: one backend killed, the cluster reinitialized: no loop
    let a = an("sup_postgres_13_syslog_5.10.log");
    assert_eq!(call_of(&a, "postgres"), GroupCall::Single);
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.deaths, e.respawns),
        (Supervisor::Postgres, 1, 1)
    );

    // Kubernetes: containerd's TaskOOM per kill, the kubelet backing off
    // 10 s, 20 s, 40 s, 80 s, 160 s; each restart a new container cgroup
    let a = an("sup_kubelet_containerd_crashloop_5.15.log");
    assert_eq!(a.groups.len(), 1);
    assert_eq!(a.loops[0].rule, LoopRule::Supervisor);
    assert!(a.groups[0]
        .memcg
        .as_deref()
        .is_some_and(|m| m.ends_with("cri-containerd-*.scope")));
    let k = a.groups[0]
        .supervisors
        .iter()
        .find(|e| e.supervisor == Supervisor::Kubelet)
        .expect("kubelet");
    assert_eq!(
        k.back_off,
        BackOff::Grows {
            first_s: 10.0,
            last_s: 160.0
        }
    );
    let c = a.groups[0]
        .supervisors
        .iter()
        .find(|e| e.supervisor == Supervisor::Containerd)
        .expect("containerd");
    assert_eq!(c.oom_notices, 5);
}

/// Case 1b: a few kills with fresh pids a second apart and no task table
/// are no loop from the kernel log alone; the supervisor's own log, given
/// beside it, shows the respawns.
#[test]
fn pairs_read_together() {
    for (kernel, other, looping) in PAIRS {
        let a = an_pair(kernel, other);
        assert_eq!(
            a.loops.first().map(|l| l.name.as_str()),
            *looping,
            "{kernel} + {other}"
        );
        assert_eq!(a.loops[0].rule, LoopRule::Supervisor, "{kernel} + {other}");
        assert!(a.loops[0].confirmed);
        assert_eq!(exit_code(&a), 1);
    }
    assert_eq!(
        call_of(&an("sup_nginx_pair_kernel_5.10.log"), "nginx"),
        GroupCall::Unproven { episodes: 2 }
    );
    let a = an_pair("sup_nginx_pair_kernel_5.10.log", "sup_nginx_pair_error.log");
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.deaths, e.respawns, e.started_then_killed),
        (Supervisor::Nginx, 2, 2, 1)
    );
    let a = an_pair(
        "sup_supervisord_pair_kernel_5.4.log",
        "sup_supervisord_pair_supervisord.log",
    );
    let e = &a.groups[0].supervisors[0];
    // `exited:` names no pid: the pid comes from the `spawned:` before it
    assert_eq!(
        (e.name.as_deref(), e.deaths, e.respawns),
        (Some("ingest"), 3, 3)
    );
    let a = an_pair(
        "sup_docker_pair_kernel_6.1.log",
        "sup_docker_pair_events.log",
    );
    let e = &a.groups[0].supervisors[0];
    assert_eq!(
        (e.supervisor, e.deaths, e.respawns),
        (Supervisor::Docker, 4, 4)
    );
    assert!(matches!(e.back_off, BackOff::Grows { .. }), "{e:?}");
}

/// Loop or burst: which rule fired, or why none did.
#[test]
fn loop_or_burst() {
    let a = an("burst_oom_group_no_table_6.1.log");
    match call_of(&a, "gunicorn") {
        GroupCall::Burst {
            kills,
            span_s,
            oom_group,
        } => {
            assert_eq!(kills, 5);
            assert!(span_s.is_some_and(|s| s < 0.002));
            assert_eq!(oom_group.as_deref(), Some("/system.slice/web.service"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(exit_code(&a), 0);
    let a = an("burst_grep_several_victims_5.15.log");
    assert_eq!(
        call_of(&a, "chrome"),
        GroupCall::Burst {
            kills: 4,
            span_s: None,
            oom_group: None
        }
    );
    let a = an("loop_sustained_no_table_5.10.log");
    assert_eq!(
        (a.loops[0].rule, a.loops[0].confirmed, a.loops[0].episodes),
        (LoopRule::Sustained, false, 6)
    );
    let a = an("stopped_quiet_tail_5.10.log");
    assert!(
        matches!(call_of(&a, "worker"), GroupCall::Stopped { episodes: 6, tail_s } if tail_s > 500.0)
    );
    // the group kills of this project's guests are bursts; the livelocks loops
    for log in [
        "real_guest_oom-group-5.10.log",
        "real_guest_oom-group-6.1.log",
        "real_guest_oom-group-6.12.log",
    ] {
        assert!(
            matches!(
                call_of(&an(log), "nginx"),
                GroupCall::Burst {
                    oom_group: Some(_),
                    ..
                }
            ),
            "{log}"
        );
    }
    for log in [
        "real_guest_seed-livelock-5.10.log",
        "seed_centos6_messages.log",
        "e1r_rhel6_console_sacrifice_child_2.6.32.log",
    ] {
        assert_eq!(an(log).loops[0].rule, LoopRule::TaskTable, "{log}");
    }
}

/// What was mended in the dirty pastes, and that it changes nothing else.
#[test]
fn dirty_pastes_are_repaired_and_said_so() {
    let a = an("dirty_paste_lowercase_units_rhel7.log");
    assert_eq!(
        (a.repaired.lines, a.repaired.keyword_case, a.repaired.fields),
        (3, 3, 3)
    );
    let v = &a.incidents[0].victims[0];
    assert_eq!(
        (v.total_vm_kb, v.anon_rss_kb, v.uid),
        (Some(1648400), Some(1204880), Some(48))
    );
    let a = an("dirty_paste_split_timestamp_4.19.log");
    assert_eq!((a.repaired.lines, a.repaired.split_timestamp), (5, 5));
    assert_eq!(a.incidents[1].time.as_deref(), Some("[8376.211345]"));
    // the wrapped seed reads exactly as the seed
    let w = an("dirty_paste_wrapped_72col_rhel6.log");
    let s = an("seed_centos6_messages.log");
    assert_eq!(w.repaired.wrapped_line, w.repaired.lines);
    assert!(w.repaired.lines >= 38);
    assert_eq!(
        format!("{:?}", w.groups),
        format!("{:?}", s.groups),
        "the wrapped paste and the seed differ"
    );
    let a = an("dirty_nul_and_colour_bytes_6.1.log");
    assert!(a.repaired.control_chars >= 5);
    assert!(render_human(&a).contains("repaired: "));
    // nothing was repaired in a clean log
    assert_eq!(an("seed_centos6_messages.log").repaired.lines, 0);
}

/// <= 5.0: the kernel chose one task and killed another (its child).
#[test]
fn sacrifice_child() {
    let a = an("e1r_rhel6_console_sacrifice_child_2.6.32.log");
    let sc = a.incidents[0].sacrificed_child.as_ref().expect("sacrifice");
    assert_eq!(
        (sc.chosen_pid, sc.score, sc.victim_pid),
        (48, Some(970), 50)
    );
    assert!(render_human(&a).contains("chose 48 (nginx, score 970), killed its child 50 instead"));
    assert!(a.notes.iter().any(|n| matches!(
        n,
        Note::ChildSacrificed {
            chosen_pid: 48,
            times: 17,
            ..
        }
    )));
    let j = serde_json::to_value(&a).expect("json");
    assert!(
        j["incidents"][0]["sacrificed_child"].as_str().is_some_and(
            |s| s.starts_with("chose 48 (nginx, score 970), killed its child 50 instead")
        )
    );
    // the same pid chosen and killed: no sacrifice
    assert!(an("seed_centos6_messages.log")
        .incidents
        .iter()
        .all(|i| i.sacrificed_child.is_none()));
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
    // one unreadable input among good ones: the good ones are analysed,
    // the bad one reported, and the exit status is 2
    let a = analyze_paths(
        &[
            d.join("does-not-exist.log"),
            d.join("seed_centos6_messages.log"),
        ],
        &AnalyzeOptions::default(),
    )
    .expect("one readable input");
    assert!(a.loop_found);
    assert_eq!(a.unreadable.len(), 1);
    assert!(a.unreadable[0].path.ends_with("does-not-exist.log"));
    assert_eq!(exit_code(&a), 2);
    assert!(render_human(&a).contains("does-not-exist.log: unreadable"));
}
