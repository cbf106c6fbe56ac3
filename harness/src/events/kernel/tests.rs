//! Unit tests of the kernel-message parser.

use super::*;

fn ev(line: &str) -> Option<KernelEvent> {
    parse_message(split_prefix(line).msg)
}

fn killed(line: &str) -> Killed {
    match ev(line) {
        Some(KernelEvent::Killed(k)) => k,
        other => panic!("not Killed: {other:?} for {line}"),
    }
}

#[test]
fn killed_2_6_32_vanilla_and_e0() {
    let k = killed("Killed process 2592 (mysql)");
    assert_eq!(
        (k.pid, k.name.as_str(), k.total_vm_kb),
        (2592, "mysql", None)
    );
    let k = killed("Out of Memory: Killed process 2592 (mysql).");
    assert_eq!((k.pid, k.name.as_str()), (2592, "mysql"));
    assert_eq!(k.message.as_deref(), Some("Out of Memory"));
}

#[test]
fn killed_rhel6() {
    let k = killed(
        "Killed process 8356, UID 2188, (nginx) total-vm:117136kB, anon-rss:45388kB, file-rss:4kB",
    );
    assert_eq!(k.pid, 8356);
    assert_eq!(k.uid, Some(2188));
    assert_eq!(k.name, "nginx");
    assert_eq!(k.total_vm_kb, Some(117136));
    assert_eq!(k.anon_rss_kb, Some(45388));
    assert_eq!(k.file_rss_kb, Some(4));
    let k = killed(
        "Killed process 1153:#0, UID 0, (sniproxy) total-vm:1kB, anon-rss:2kB, file-rss:3kB",
    );
    assert_eq!((k.pid, k.uid, k.name.as_str()), (1153, Some(0), "sniproxy"));
}

#[test]
fn killed_3x_4x_rhel7() {
    let k = killed("Killed process 1234 (java) total-vm:1000kB, anon-rss:900kB, file-rss:10kB");
    assert_eq!((k.pid, k.uid, k.shmem_rss_kb), (1234, None, None));
    let k = killed(
        "Killed process 1234 (java) total-vm:1000kB, anon-rss:900kB, file-rss:10kB, shmem-rss:5kB",
    );
    assert_eq!(k.shmem_rss_kb, Some(5));
    let k = killed("Killed process 4321 (GC Thread#9), UID 1000, total-vm:10kB, anon-rss:9kB, file-rss:1kB, shmem-rss:0kB");
    assert_eq!(
        (k.pid, k.uid, k.name.as_str()),
        (4321, Some(1000), "GC Thread#9")
    );
}

#[test]
fn killed_5x_prefix_uid() {
    let k = killed("Out of memory: Killed process 77 (npm start) total-vm:10kB, anon-rss:9kB, file-rss:1kB, shmem-rss:0kB, UID:1001 pgtables:120kB oom_score_adj:-500");
    assert_eq!(k.message.as_deref(), Some("Out of memory"));
    assert_eq!(
        (k.pid, k.name.as_str(), k.uid),
        (77, "npm start", Some(1001))
    );
    assert_eq!((k.pgtables_kb, k.oom_score_adj), (Some(120), Some(-500)));
    let k = killed("Memory cgroup out of memory: Killed process 5 ((resolved)) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB");
    assert_eq!(k.name, "(resolved)");
    let k = killed("Out of memory: Killed process 6 (a) total-vm:x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:1kB oom_score_adj:0");
    assert_eq!(k.name, "a");
    let k = killed("Out of memory: Killed process 9 (runc:[1:CHILD]) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0");
    assert_eq!(k.name, "runc:[1:CHILD]");
}

#[test]
fn killed_openvz_and_truncated() {
    let k = killed("OOM killed process 12 (httpd) score 0 vm:100kB, rss:50kB, swap:0kB");
    assert_eq!(
        (k.pid, k.name.as_str(), k.total_vm_kb),
        (12, "httpd", Some(100))
    );
    let k = killed("Killed process 12 (ngi");
    assert_eq!((k.pid, k.name.as_str()), (12, "ngi"));
    assert!(ev("Killed process (x)").is_none());
}

#[test]
fn chosen_lines() {
    match ev("Out of memory: Kill process 8356 (nginx) score 5 or sacrifice child") {
        Some(KernelEvent::KillChosen {
            message,
            pid,
            name,
            score,
        }) => {
            assert_eq!(
                (message.as_str(), pid, name.as_str(), score),
                ("Out of memory", 8356, "nginx", Some(5))
            );
        }
        o => panic!("{o:?}"),
    }
    match ev("Out of memory: kill process 10 (a b) score 300 or a child") {
        Some(KernelEvent::KillChosen {
            pid, name, score, ..
        }) => assert_eq!((pid, name.as_str(), score), (10, "a b", Some(300))),
        o => panic!("{o:?}"),
    }
    match ev("Memory cgroup out of memory: Kill process 3 (x) score 1000 or sacrifice child") {
        Some(KernelEvent::KillChosen { message, .. }) => {
            assert_eq!(constraint_from_message(&message), Constraint::Memcg)
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(
        ev("Kill process 4 (y) sharing same memory"),
        Some(KernelEvent::KillSharing {
            pid: 4,
            name: "y".into()
        })
    );
}

#[test]
fn invoked_header_eras() {
    let cases = [
        ("nginx invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=0", Some(0), Some("0x201da")),
        ("httpd invoked oom-killer: gfp_mask=0x201d2, order=0, oomkilladj=0", None, Some("0x201d2")),
        ("java invoked oom-killer: gfp_mask=0x24201ca(GFP_HIGHUSER_MOVABLE|__GFP_COLD), nodemask=(null),  order=0, oom_score_adj=-998", Some(-998), Some("0x24201ca(GFP_HIGHUSER_MOVABLE|__GFP_COLD)")),
        ("CPU 2/KVM invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0", Some(0), Some("0x100cca(GFP_HIGHUSER_MOVABLE)")),
    ];
    for (line, adj, gfp) in cases {
        match ev(line) {
            Some(KernelEvent::OomInvoked {
                oom_score_adj,
                gfp_mask,
                order,
                ..
            }) => {
                assert_eq!(oom_score_adj, adj, "{line}");
                assert_eq!(gfp_mask.as_deref(), gfp, "{line}");
                assert_eq!(order, Some(0));
            }
            o => panic!("{o:?}"),
        }
    }
    match ev("CPU 2/KVM invoked oom-killer: gfp_mask=0x0(), order=-1, oom_score_adj=0") {
        Some(KernelEvent::OomInvoked { task, order, .. }) => {
            assert_eq!((task.as_str(), order), ("CPU 2/KVM", Some(-1)))
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn summary_line() {
    let l = "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/app.service,task=a,task=b,pid=42,uid=1000";
    match ev(l) {
        Some(KernelEvent::OomSummary {
            constraint,
            oom_memcg,
            task_memcg,
            task,
            pid,
            uid,
        }) => {
            assert_eq!(constraint, Constraint::Global);
            assert_eq!(oom_memcg, None);
            assert_eq!(task_memcg.as_deref(), Some("/system.slice/app.service"));
            assert_eq!((task.as_str(), pid, uid), ("a,task=b", 42, Some(1000)));
        }
        o => panic!("{o:?}"),
    }
    let l = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=abc,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=python3,pid=7,uid=0";
    match ev(l) {
        Some(KernelEvent::OomSummary {
            constraint,
            oom_memcg,
            task_memcg,
            ..
        }) => {
            assert_eq!(constraint, Constraint::Memcg);
            assert_eq!(oom_memcg.as_deref(), Some("/kubepods/pod1"));
            assert_eq!(task_memcg.as_deref(), Some("/kubepods/pod1/c1"));
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn memcg_reaper_group_misc() {
    assert_eq!(
        ev("Task in /docker/abc killed as a result of limit of /docker"),
        Some(KernelEvent::MemcgTaskIn {
            task_memcg: "/docker/abc".into(),
            limit_memcg: "/docker".into()
        })
    );
    assert_eq!(
        ev("memory: usage 524288kB, limit 524288kB, failcnt 1234"),
        Some(KernelEvent::MemcgUsage {
            usage_kb: 524288,
            limit_kb: 524288,
            failcnt: 1234
        })
    );
    assert_eq!(ev("memory+swap: usage 1kB, limit 2kB, failcnt 0"), None);
    assert_eq!(ev("kmem: usage 1kB, limit 2kB, failcnt 0"), None);
    assert_eq!(
        ev("oom_reaper: reaped process 99 (stress), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"),
        Some(KernelEvent::Reaped {
            pid: 99,
            name: "stress".into(),
            anon_rss_kb: Some(0)
        })
    );
    assert_eq!(
        ev("oom_reaper: unable to reap pid:99 (stress)"),
        Some(KernelEvent::ReapFailed {
            pid: 99,
            name: "stress".into()
        })
    );
    assert_eq!(
        ev("Tasks in /a/b are going to be killed due to memory.oom.group set"),
        Some(KernelEvent::OomGroup {
            memcg: "/a/b".into()
        })
    );
    assert_eq!(
        ev("Out of memory and no killable processes..."),
        Some(KernelEvent::NoKillable)
    );
    assert_eq!(
        ev("Kernel panic - not syncing: Out of memory and no killable processes..."),
        Some(KernelEvent::Panic {
            reason: "Out of memory and no killable processes...".into()
        })
    );
    assert_eq!(
        ev("Kernel panic - not syncing: System is deadlocked on memory"),
        Some(KernelEvent::Panic {
            reason: "System is deadlocked on memory".into()
        })
    );
    assert_eq!(
        ev("---[ end Kernel panic - not syncing: System is deadlocked on memory ]---"),
        None
    );
    assert_eq!(
        ev("Memory cgroup out of memory: OOM victim 5 (x y) is already exiting. Skip killing the task"),
        Some(KernelEvent::VictimExiting { pid: 5, name: "x y".into() })
    );
    assert_eq!(
        ev("Memory limit reached of cgroup /foo"),
        Some(KernelEvent::MemcgLimitReached {
            memcg: "/foo".into()
        })
    );
    assert_eq!(
        ev("Would have killed process 3 (x). But continuing instead."),
        Some(KernelEvent::WouldHaveKilled {
            pid: 3,
            name: "x".into()
        })
    );
    assert_eq!(
        ev("usb 1-1: new high-speed USB device number 2 using xhci_hcd"),
        None
    );
    assert_eq!(ev("[drm] Initialized"), None);
}

#[test]
fn task_tables_by_era() {
    let mut p = Parser::new();
    let rows = [
        ("[ pid ]   uid  tgid total_vm      rss cpu oom_adj name", "[ 1234]     0  1234    12345      678   1     -17 sshd", -17),
        ("[ pid ]   uid  tgid total_vm      rss cpu oom_adj oom_score_adj name", "[ 1234]     0  1234    12345      678   1     0         -1000 sshd", -1000),
        ("[ pid ]   uid  tgid total_vm      rss nr_ptes swapents oom_score_adj name", "[ 1234]     0  1234    12345      678      20        0         -1000 sshd", -1000),
        ("[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name", "[ 1234]     0  1234    12345      678      20       3        0         -1000 sshd", -1000),
        ("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name", "[   1234]     0  1234    12345      678   204800        0         -1000 sshd", -1000),
        ("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name", "[   1234]     0  1234    12345      678      600       78         0   204800        0         -1000 sshd", -1000),
    ];
    for (h, r, adj) in rows {
        assert!(
            matches!(p.parse(h), Some(KernelEvent::TaskTableHeader { .. })),
            "{h}"
        );
        for cols in [p.columns().map(<[String]>::to_vec), None] {
            let row = parse_task_row(r, cols.as_deref()).unwrap_or_else(|| panic!("{r}"));
            assert_eq!(
                (row.pid, row.uid, row.tgid, row.total_vm, row.rss),
                (1234, 0, 1234, 12345, 678),
                "{r}"
            );
            assert_eq!(row.oom_adj, Some(adj), "{r}");
            assert_eq!(row.name, "sshd");
        }
    }
    // comm with spaces, and a purely numeric comm with a known header
    let row = parse_task_row("[   77]  1000    77  100  10  4096  0  0 GC Thread#9", None).unwrap();
    assert_eq!(row.name, "GC Thread#9");
    let cols: Vec<String> = "pid uid tgid total_vm rss pgtables_bytes swapents oom_score_adj name"
        .split(' ')
        .map(String::from)
        .collect();
    let row = parse_task_row("[   77]  1000    77  100  10  4096  0  0 1234", Some(&cols)).unwrap();
    assert_eq!(row.name, "1234");
    // truncated row keeps what it has
    let row = parse_task_row("[ 8202] 0 8202 27050 55", None).unwrap();
    assert_eq!(
        (row.pid, row.rss, row.oom_adj, row.name.as_str()),
        (8202, 55, None, "")
    );
    assert!(parse_task_row("[ 8202] 0 82", None).is_none());
    assert!(parse_task_row("[   12.345] 0 1 2 3 4 x", None).is_none());
}

#[test]
fn fast_reject() {
    assert!(!maybe_oom(
        "EXT4-fs (sda1): mounted filesystem with ordered data mode"
    ));
    assert!(maybe_oom("Out of memory: Killed process 1 (a)"));
    assert!(maybe_oom("[ 1] 0 1 2 3 4 5 x"));
}

/// The name of an event's variant. A new variant fails to compile here
/// until it is named; name it in [`every_event_has_a_message`] too, which
/// then asks for a table entry that produces it.
fn variant(ev: &KernelEvent) -> &'static str {
    match ev {
        KernelEvent::OomInvoked { .. } => "OomInvoked",
        KernelEvent::TaskTableHeader { .. } => "TaskTableHeader",
        KernelEvent::TaskRow(_) => "TaskRow",
        KernelEvent::KillChosen { .. } => "KillChosen",
        KernelEvent::Killed(_) => "Killed",
        KernelEvent::OomSummary { .. } => "OomSummary",
        KernelEvent::MemcgTaskIn { .. } => "MemcgTaskIn",
        KernelEvent::MemcgUsage { .. } => "MemcgUsage",
        KernelEvent::Reaped { .. } => "Reaped",
        KernelEvent::OomGroup { .. } => "OomGroup",
        KernelEvent::NoKillable => "NoKillable",
        KernelEvent::VictimExiting { .. } => "VictimExiting",
        KernelEvent::Panic { .. } => "Panic",
        KernelEvent::ReapFailed { .. } => "ReapFailed",
        KernelEvent::MemcgLimitReached { .. } => "MemcgLimitReached",
        KernelEvent::KillSharing { .. } => "KillSharing",
        KernelEvent::WouldHaveKilled { .. } => "WouldHaveKilled",
        KernelEvent::Rebooting { .. } => "Rebooting",
    }
}

#[test]
fn every_message_is_one_entry() {
    let set = keywords();
    for m in MESSAGES {
        assert!(!m.keywords.is_empty(), "{}", m.example);
        for k in m.keywords {
            assert!(set.contains(k), "keyword {k:?} not in the anchor set");
            assert!(!k.is_empty());
        }
        assert!(
            m.keywords.iter().any(|k| m.example.contains(k)),
            "the example holds none of its keywords: {}",
            m.example
        );
        assert!(anchors().is_match(m.example), "{}", m.example);
        assert!(maybe_oom(m.example), "{}", m.example);
        let ev = (m.parse)(m.example);
        assert!(
            ev.is_some(),
            "its parser does not read its example: {}",
            m.example
        );
        assert_eq!(
            parse_message(m.example),
            ev,
            "an earlier entry takes the example: {}",
            m.example
        );
    }
    // and the anchor set is nothing but the entries' keywords
    for k in set {
        assert!(MESSAGES.iter().any(|m| m.keywords.contains(k)), "{k}");
    }
    assert_eq!(anchors().patterns_len(), set.len());
}

#[test]
fn every_event_has_a_message() {
    let made: Vec<&str> = MESSAGES
        .iter()
        .filter_map(|m| (m.parse)(m.example))
        .map(|e| variant(&e))
        .collect();
    // every variant (the rows have their own path, below)
    let all = [
        "OomInvoked",
        "TaskTableHeader",
        "KillChosen",
        "Killed",
        "OomSummary",
        "MemcgTaskIn",
        "MemcgUsage",
        "Reaped",
        "OomGroup",
        "NoKillable",
        "VictimExiting",
        "Panic",
        "ReapFailed",
        "MemcgLimitReached",
        "KillSharing",
        "WouldHaveKilled",
        "Rebooting",
    ];
    for v in all {
        assert!(made.contains(&v), "no MESSAGES entry produces {v}");
    }
    let row = parse_message("[ 1234]     0  1234    12345      678   1     -17 sshd");
    assert_eq!(row.as_ref().map(variant), Some("TaskRow"));
}

#[test]
fn panic_trailer_is_not_an_event() {
    assert_eq!(
        ev("---[ end Kernel panic - not syncing: Out of memory and no killable processes... ]---"),
        None
    );
}

#[test]
fn reboot_after_a_panic() {
    assert_eq!(
        parse_message("Rebooting in 30 seconds.."),
        Some(KernelEvent::Rebooting { after_s: 30 })
    );
    assert_eq!(parse_message("Rebooting in a while"), None);
}

#[test]
fn edited_lines_are_read_and_said_so() {
    // a keyword in lower case, the exact form preferred
    let (ev, m) = parse_message_mended(
        "out of memory: killed process 3301 (php-fpm), UID 48, total-vm: 1648400kb, anon-rss: 1204880kb, file-rss: 0kb, shmem-rss: 0kb",
        None,
    )
    .expect("read");
    assert_eq!(
        m,
        Mended {
            keyword_case: true,
            fields: true
        }
    );
    match ev {
        KernelEvent::Killed(k) => {
            assert_eq!(
                (k.pid, k.uid, k.total_vm_kb),
                (3301, Some(48), Some(1648400))
            );
            assert_eq!(k.shmem_rss_kb, Some(0));
        }
        other => panic!("{other:?}"),
    }
    let (_, m) = parse_message_mended(
        "Killed process 1 (a) total-vm:1 kB, anon-rss:1kB, file-rss:0kB",
        None,
    )
    .expect("read");
    assert_eq!((m.keyword_case, m.fields), (false, true));
    let (_, m) = parse_message_mended(
        "Out of memory: Killed process 77 (npm start) total-vm:10kB, anon-rss:9kB, file-rss:1kB, shmem-rss:0kB, UID:1001 pgtables:120kB oom_score_adj:-500",
        None,
    )
    .expect("read");
    assert_eq!(m, Mended::default());
    // 2.6.32's own lower-case `kill process` is no repair
    let (_, m) = parse_message_mended(
        "Out of memory: kill process 1300 (bash) score 262245 or a child",
        None,
    )
    .expect("read");
    assert_eq!(m, Mended::default());
    assert!(has_keyword("KILLED PROCESS 1 (x)"));
    assert!(!has_keyword("EXT4-fs (sda1): mounted"));
}
