//! The classifier on hand-made event streams; real recorded runs are
//! replayed in harness/tests/replay_runs.rs.
use super::*;
use crate::events::kernel::KernelEvent;
use crate::scenario::Limits;

fn limits() -> Limits {
    Limits {
        duration_s: 10.0,
        settle_s: 3.0,
        ..Limits::default()
    }
}

fn tel(rec: &mut RunRecord, line: String) {
    assert!(rec.ingest_telemetry_line(&line).is_some(), "{line}");
}

fn kill(rec: &mut RunRecord, t: f64, pid: u32) {
    let line = format!(
        "[{t:12.6}] Out of memory: Killed process {pid} (nginx) total-vm:63000kB, anon-rss:60000kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:160kB oom_score_adj:0"
    );
    assert!(
        matches!(rec.ingest_console(&line), Some(KernelEvent::Killed(_))),
        "{line}"
    );
}

/// ready at 2 s, master 10 with 4 workers 11..14, canary ticking to `end`.
fn base(end: f64) -> RunRecord {
    let mut r = RunRecord::new(4);
    tel(
        &mut r,
        r#"{"t":2.0,"ev":"ready","name":"x","kernel":"6.1.0-test"}"#.into(),
    );
    tel(
        &mut r,
        r#"{"t":2.0,"ev":"spawn","pid":10,"ppid":1,"role":"master"}"#.into(),
    );
    for pid in 11..15 {
        tel(
            &mut r,
            format!(r#"{{"t":2.1,"ev":"spawn","pid":{pid},"ppid":10,"role":"worker"}}"#),
        );
    }
    let mut t = 2.0;
    let mut seq = 0;
    while t <= end {
        tel(
            &mut r,
            format!(r#"{{"t":{t},"ev":"tick","seq":{seq},"late_ms":1.5}}"#),
        );
        t += 0.1;
        seq += 1;
    }
    r
}

fn respawn_loop(r: &mut RunRecord, from: f64, to: f64, every: f64) {
    let mut t = from;
    let mut victim = 11;
    let mut next = 100;
    while t < to {
        kill(r, t, victim);
        tel(
            r,
            format!(
                r#"{{"t":{},"ev":"exit","pid":{victim},"role":"worker","signal":9}}"#,
                t + 0.01
            ),
        );
        tel(
            r,
            format!(
                r#"{{"t":{},"ev":"spawn","pid":{next},"ppid":10,"role":"worker"}}"#,
                t + 0.02
            ),
        );
        victim = next;
        next += 1;
        t += every;
    }
}

#[test]
fn endless_kills_of_respawned_workers_is_livelock() {
    let mut r = base(12.0);
    respawn_loop(&mut r, 3.0, 12.0, 0.15);
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    let j = r.judge(&limits());
    assert_eq!(j.verdict, Verdict::Livelock, "{}", j.why);
    assert!(j.evidence.oom_kills >= 50);
    assert_eq!(j.evidence.kills_of_respawned, j.evidence.oom_kills - 1);
    assert!(j.evidence.agreement.agree);
    assert_eq!(j.evidence.first_oom_s, Some(1.0));
}

#[test]
fn kills_then_quiet_is_recovered() {
    let mut r = base(12.0);
    respawn_loop(&mut r, 3.0, 4.0, 0.2);
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    let j = r.judge(&limits());
    assert_eq!(j.verdict, Verdict::Recovered, "{}", j.why);
    assert!(j.evidence.quiet_tail_s >= 7.5);
}

#[test]
fn quiet_tail_shorter_than_settle_is_still_livelock() {
    let mut r = base(12.0);
    respawn_loop(&mut r, 3.0, 10.0, 0.2);
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    assert_eq!(r.judge(&limits()).verdict, Verdict::Livelock);
}

#[test]
fn respawns_without_kills_is_no_oom_and_counted() {
    let mut r = base(12.0);
    for i in 0..30 {
        let t = 3.0 + f64::from(i) * 0.1;
        tel(
            &mut r,
            format!(
                r#"{{"t":{t},"ev":"exit","pid":{},"role":"worker","status":1}}"#,
                11 + i
            ),
        );
        tel(
            &mut r,
            format!(
                r#"{{"t":{t},"ev":"spawn","pid":{},"ppid":10,"role":"worker"}}"#,
                200 + i
            ),
        );
    }
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    let j = r.judge(&limits());
    assert_eq!(j.verdict, Verdict::NoOom);
    assert_eq!(j.evidence.respawns, 30);
    assert!(j.why.contains("respawn storm"), "{}", j.why);
}

#[test]
fn panic_wins() {
    let mut r = base(5.0);
    respawn_loop(&mut r, 3.0, 4.0, 0.2);
    r.ingest_console("[    4.500000] Kernel panic - not syncing: System is deadlocked on memory");
    assert_eq!(r.judge(&limits()).verdict, Verdict::Panic);
    assert_eq!(
        r.early_verdict(&limits()).map(|v| v.0),
        Some(Verdict::Panic)
    );
}

#[test]
fn no_ready_is_boot_failure_and_silence_is_hang() {
    let mut r = RunRecord::new(4);
    r.ingest_console("[    0.000000] Linux version 6.1.0");
    r.boot_timed_out = true;
    assert_eq!(r.judge(&limits()).verdict, Verdict::BootFailure);
    let mut r = base(4.0);
    r.hung = true;
    assert_eq!(r.judge(&limits()).verdict, Verdict::Hang);
}

#[test]
fn quiet_but_dead_canary_is_hang_not_recovered() {
    let mut r = base(4.0);
    respawn_loop(&mut r, 3.0, 3.5, 0.2);
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    assert_eq!(r.judge(&limits()).verdict, Verdict::Hang);
}

#[test]
fn early_livelock_needs_a_steady_loop() {
    let mut r = base(8.0);
    respawn_loop(&mut r, 3.0, 5.0, 0.2);
    assert_eq!(r.early_verdict(&limits()), None, "only 2 s of loop");
    respawn_loop(&mut r, 5.0, 9.5, 0.2);
    let (v, why) = r.early_verdict(&limits()).expect("steady loop");
    assert_eq!(v, Verdict::Livelock, "{why}");
}

#[test]
fn early_recovered_needs_the_whole_workload_gone() {
    let mut r = base(9.0);
    respawn_loop(&mut r, 3.0, 3.3, 0.2);
    assert_eq!(r.early_verdict(&limits()), None, "master still alive");
    tel(
        &mut r,
        r#"{"t":3.4,"ev":"exit","pid":10,"role":"master","signal":9}"#.into(),
    );
    for pid in [12, 13, 14, 101] {
        tel(
            &mut r,
            format!(r#"{{"t":3.4,"ev":"exit","pid":{pid},"role":"orphan","signal":9}}"#),
        );
    }
    let (v, _) = r.early_verdict(&limits()).expect("all gone, quiet for 5 s");
    assert_eq!(v, Verdict::Recovered);
}

#[test]
fn kills_without_refork_and_a_short_tail_are_inconclusive_not_livelock() {
    // respawn: none — the original workers are killed, nothing re-forks,
    // the last kill lands 1 s before the window closes.
    let mut r = base(12.0);
    kill(&mut r, 3.0, 11);
    kill(&mut r, 11.0, 12);
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    let j = r.judge(&limits());
    assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.why);
    assert!(j.why.contains("observe longer"), "{}", j.why);
}

#[test]
fn a_slow_canary_is_not_taken_for_a_dead_one() {
    // Ticks every 2 s: a last tick 1.5 s before the end is on schedule.
    let mut r = RunRecord::new(4);
    r.canary_period_s = 2.0;
    tel(&mut r, r#"{"t":2.0,"ev":"ready"}"#.into());
    for (i, t) in [2.0, 4.0, 6.0, 8.0, 10.5].iter().enumerate() {
        tel(
            &mut r,
            format!(r#"{{"t":{t},"ev":"tick","seq":{i},"late_ms":0}}"#),
        );
    }
    kill(&mut r, 3.0, 11);
    tel(
        &mut r,
        r#"{"t":12.0,"ev":"done","reason":"duration"}"#.into(),
    );
    assert_eq!(r.judge(&limits()).verdict, Verdict::Recovered);
}

#[test]
fn vmstat_ahead_of_the_console_is_a_disagreement() {
    let mut r = base(4.0);
    respawn_loop(&mut r, 3.0, 3.5, 0.2);
    tel(&mut r, r#"{"t":2.1,"ev":"mem","oom_kill":0}"#.into());
    tel(&mut r, r#"{"t":3.9,"ev":"mem","oom_kill":9}"#.into());
    let a = r.evidence().agreement;
    assert_eq!(a.vmstat_oom_kills, Some(9));
    assert!(!a.agree, "{a:?}");
}

#[test]
fn a_burst_has_no_kill_rate() {
    let mut r = base(12.0);
    for (i, pid) in (11..15).enumerate() {
        kill(&mut r, 3.0 + i as f64 * 0.01, pid);
    }
    assert_eq!(r.evidence().kill_rate_per_s, None);
}

#[test]
fn a_guest_that_stops_answering_is_thrashing_not_a_livelock() {
    let mut r = RunRecord::new(2);
    tel(
        &mut r,
        r#"{"t":1.0,"ev":"ready","name":"x","kernel":"6.1"}"#.into(),
    );
    tel(
        &mut r,
        r#"{"t":1.1,"ev":"spawn","pid":10,"ppid":1,"role":"master"}"#.into(),
    );
    for i in 0..30u32 {
        let (t, pid) = (1.2 + f64::from(i), 11 + i);
        tel(
            &mut r,
            format!(r#"{{"t":{t},"ev":"spawn","pid":{pid},"ppid":10,"role":"worker"}}"#),
        );
        kill(&mut r, t + 0.5, pid);
    }
    // Ticks every 0.1 s, but one stall of 12 s in the middle.
    let mut t = 1.0;
    let mut seq = 0;
    while t < 31.0 {
        seq += 1;
        let late = if (15.0..15.1).contains(&t) {
            12_000.0
        } else {
            1.0
        };
        tel(
            &mut r,
            format!(r#"{{"t":{t},"ev":"tick","seq":{seq},"late_ms":{late}}}"#),
        );
        t += if late > 1.0 { 12.0 } else { 0.1 };
    }
    tel(
        &mut r,
        r#"{"t":31.0,"ev":"done","reason":"duration"}"#.into(),
    );
    let j = r.judge(&limits());
    assert_eq!(j.verdict, Verdict::Thrashing, "{}", j.why);
    assert!(j.why.contains("canary fell silent for 12.0 s"), "{}", j.why);
    assert_eq!(j.evidence.stall_s, Some(12.0));

    // The same record without the stall is the clean loop.
    let mut clean = r.clone();
    clean.ticks.retain(|(_, l)| *l < 1000.0);
    assert_eq!(clean.judge(&limits()).verdict, Verdict::Livelock);

    // SSH logins that fail for 20 s make it thrashing too.
    let setup = SshSetup::default();
    let att = |t: f64, ok: bool| SshAttempt {
        t,
        ok,
        latency_ms: if ok { 300.0 } else { 5000.0 },
        error: (!ok).then(|| "timeout".into()),
    };
    let mut s = clean.clone();
    s.add_ssh(
        setup,
        vec![
            att(2.0, true),
            att(5.0, false),
            att(11.0, false),
            att(17.0, false),
            att(25.0, true),
        ],
    );
    let j = s.judge(&limits());
    assert_eq!(j.verdict, Verdict::Thrashing, "{}", j.why);
    assert!(
        j.why.contains("no SSH login worked for 20.0 s"),
        "{}",
        j.why
    );
    let ssh = j.evidence.ssh.unwrap();
    assert_eq!((ssh.ok, ssh.failed), (2, 3));
}

#[test]
fn a_failed_machine_step_is_na_and_says_so() {
    let mut r = RunRecord::new(1);
    tel(
        &mut r,
        r#"{"t":0.5,"ev":"setup","what":"root","ok":false,"detail":"switch root to /dev/vda: no disk","mitigation":true}"#.into(),
    );
    tel(
        &mut r,
        r#"{"t":1.0,"ev":"ready","name":"x","kernel":"6.1"}"#.into(),
    );
    let j = r.judge(&limits());
    assert_eq!(j.verdict, Verdict::NotApplicable);
    assert!(
        j.why
            .starts_with("the scenario's machine could not be set up: root"),
        "{}",
        j.why
    );
}

#[test]
fn without_an_ssh_server_the_run_is_judged_without_ssh_evidence() {
    let mut r = base(12.0);
    tel(
        &mut r,
        r#"{"t":1.5,"ev":"setup","what":"net","ok":false,"detail":"eth0 10.0.2.15/24: no eth0","mitigation":false}"#.into(),
    );
    let failed: Vec<SshAttempt> = (0..10)
        .map(|i| SshAttempt {
            t: 2.0 + i as f64,
            ok: false,
            latency_ms: 1.0,
            error: Some("connect: refused".into()),
        })
        .collect();
    r.add_ssh(SshSetup::default(), failed);
    let j = r.judge(&limits());
    assert_ne!(j.verdict, Verdict::Thrashing, "{}", j.why);
    assert_ne!(j.verdict, Verdict::NotApplicable, "{}", j.why);
    assert!(j.evidence.ssh.is_none());
    assert!(
        j.evidence
            .notes
            .iter()
            .any(|n| n.contains("SSH probe could not run")),
        "{:?}",
        j.evidence.notes
    );
}
