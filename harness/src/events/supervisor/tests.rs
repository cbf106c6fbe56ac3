//! Unit tests of the supervisor table: each wording read from the real
//! lines quoted in public reports.

use super::*;

fn ev(line: &str) -> Option<(Supervisor, SupervisorEvent)> {
    parse(line).map(|l| (l.supervisor, l.event))
}

fn died(pid: Option<u32>, name: Option<&str>, signal: u32) -> SupervisorEvent {
    SupervisorEvent::Died {
        pid,
        name: name.map(str::to_string),
        signal,
        lifetime_s: None,
    }
}

fn started(pid: Option<u32>, name: Option<&str>) -> SupervisorEvent {
    SupervisorEvent::Started {
        pid,
        name: name.map(str::to_string),
    }
}

#[test]
fn every_example_is_read_by_its_own_entry() {
    for (i, m) in MESSAGES.iter().enumerate() {
        assert!(
            m.keywords.iter().any(|k| m.example.contains(k)),
            "entry {i}: example lacks its keywords"
        );
        assert!((m.parse)(m.example).is_some(), "entry {i}: {}", m.example);
        let first = MESSAGES.iter().position(|o| {
            o.keywords.iter().any(|k| m.example.contains(k)) && (o.parse)(m.example).is_some()
        });
        assert_eq!(first, Some(i), "entry {i} is shadowed: {}", m.example);
        assert_eq!(parse(m.example).map(|l| l.supervisor), Some(m.supervisor));
        assert!(!m.checked.is_empty());
    }
}

#[test]
fn systemd_across_versions() {
    use SupervisorEvent::*;
    // v252 (Debian 12), cgroup v2
    assert_eq!(
        ev("Jan 18 09:51:00 host systemd[1]: nginx.service: Main process exited, code=killed, status=9/KILL"),
        Some((Supervisor::Systemd, died(None, Some("nginx.service"), 9)))
    );
    // v219 (CentOS 7): https://github.com/Supervisor/supervisor/issues/1193
    assert_eq!(
        ev("Jan 24 22:34:55 web systemd[1]: supervisord.service: main process exited, code=killed, status=9/KILL"),
        Some((Supervisor::Systemd, died(None, Some("supervisord.service"), 9)))
    );
    // a crash is not a kill
    assert_eq!(
        ev("x.service: Main process exited, code=dumped, status=11/SEGV"),
        None
    );
    assert_eq!(
        ev("app.service: Scheduled restart job, restart counter is at 5."),
        Some((
            Supervisor::Systemd,
            RestartScheduled {
                name: Some("app.service".into()),
                counter: Some(5),
                delay_s: None
            }
        ))
    );
    assert_eq!(ev("app.service: Scheduled restart job immediately on client request, restart counter is at 2."), None);
    assert_eq!(
        ev("app.service: Service RestartSec=1min 30s expired, scheduling restart."),
        Some((
            Supervisor::Systemd,
            RestartScheduled {
                name: Some("app.service".into()),
                counter: None,
                delay_s: Some(90.0)
            }
        ))
    );
    assert_eq!(
        ev("Jan 18 09:51:00 h systemd[1]: nginx.service holdoff time over, scheduling restart."),
        Some((
            Supervisor::Systemd,
            RestartScheduled {
                name: Some("nginx.service".into()),
                counter: None,
                delay_s: None
            }
        ))
    );
    // https://github.com/systemd/systemd/issues/4449
    assert_eq!(
        ev("[Sat Oct 22 04:31:47 2016] systemd[1]: systemd-journald.service has no holdoff time, scheduling restart."),
        Some((Supervisor::Systemd, RestartScheduled { name: Some("systemd-journald.service".into()), counter: None, delay_s: Some(0.0) }))
    );
    assert_eq!(
        ev("app.service: Service hold-off time over, scheduling restart."),
        Some((
            Supervisor::Systemd,
            RestartScheduled {
                name: Some("app.service".into()),
                counter: None,
                delay_s: None
            }
        ))
    );
    assert_eq!(
        ev("app.service: Start request repeated too quickly."),
        Some((
            Supervisor::Systemd,
            GaveUp {
                name: Some("app.service".into())
            }
        ))
    );
    assert_eq!(
        ev("start request repeated too quickly for app.service"),
        Some((
            Supervisor::Systemd,
            GaveUp {
                name: Some("app.service".into())
            }
        ))
    );
    // https://github.com/canonical/testflinger/issues/939
    assert_eq!(
        ev("Jan 23 12:41:16 agent-host-tel-l5 systemd[1]: supervisor.service: A process of this unit has been killed by the OOM killer."),
        Some((Supervisor::Systemd, OomNoticed { name: Some("supervisor.service".into()) }))
    );
    assert_eq!(
        ev("app.service: The kernel OOM killer killed some processes in this unit."),
        Some((
            Supervisor::Systemd,
            OomNoticed {
                name: Some("app.service".into())
            }
        ))
    );
}

#[test]
fn daemons_that_respawn_their_workers() {
    // https://github.com/Kong/kong/issues/9649
    assert_eq!(
        ev("2022/10/25 12:39:41 [alert] 1#0: worker process 31 exited on signal 9"),
        Some((Supervisor::Nginx, died(Some(31), Some("worker process"), 9)))
    );
    assert_eq!(
        ev("2022/10/25 12:39:41 [notice] 1#0: start worker process 33"),
        Some((Supervisor::Nginx, started(Some(33), Some("worker process"))))
    );
    assert_eq!(
        ev("2021/07/22 21:38:02 [notice] 218910#218910: start worker processes"),
        None
    );
    // https://github.com/nextcloud-snap/nextcloud-snap/issues/2852
    assert_eq!(
        ev("[18-Aug-2024 02:43:39] WARNING: [pool www] child 118112 exited on signal 9 (SIGKILL) after 12.605199 seconds from start"),
        Some((Supervisor::PhpFpm, SupervisorEvent::Died { pid: Some(118112), name: Some("pool www".into()), signal: 9, lifetime_s: Some(12.605199) }))
    );
    assert_eq!(
        ev("[18-Aug-2024 02:43:39] NOTICE: [pool www] child 118176 started"),
        Some((Supervisor::PhpFpm, started(Some(118176), Some("pool www"))))
    );
    // https://github.com/unbit/uwsgi/issues/1903
    assert_eq!(
        ev("Oct 20 08:54:50 futresolver01 uwsgi[3487]: DAMN ! worker 1 (pid: 5541) died, killed by signal 7 :( trying respawn ..."),
        Some((Supervisor::Uwsgi, died(Some(5541), Some("worker 1"), 7)))
    );
    assert_eq!(
        ev("DAMN ! worker 2 (pid: 77) MISTERIOUSLY killed by signal 9 :( trying respawn ..."),
        Some((Supervisor::Uwsgi, died(Some(77), Some("worker 2"), 9)))
    );
    assert_eq!(
        ev("DAMN ! worker 2 (pid: 77) MYSTERIOUSLY killed by signal 9 :( trying respawn ..."),
        Some((Supervisor::Uwsgi, died(Some(77), Some("worker 2"), 9)))
    );
    assert_eq!(
        ev("DAMN ! worker 3 (pid: 12) died :( trying respawn ..."),
        None
    );
    assert_eq!(
        ev("2023-05-08 16:00:32 - Respawned uWSGI worker 3 (new pid: 6654)"),
        Some((Supervisor::Uwsgi, started(Some(6654), Some("worker 3"))))
    );
    assert!(matches!(
        ev("Thu Jan 18 09:51:00 2024 - *** EVIL RELOAD ON WORKER 2 RSS: 1048576 (pid: 900) ***"),
        Some((
            Supervisor::Uwsgi,
            SupervisorEvent::SelfKill { pid: Some(900), .. }
        ))
    ));
    // https://github.com/benoitc/gunicorn/pull/2419 and freelawproject/courtlistener#2640
    assert_eq!(
        ev("[2020-09-12 05:37:52 +0000] [18] [ERROR] Worker (pid:21) was sent SIGKILL! Perhaps out of memory?"),
        Some((Supervisor::Gunicorn, died(Some(21), None, 9)))
    );
    assert_eq!(
        ev("[2023-05-11 18:13:57 +0000] [7] [WARNING] Worker with pid 14824 was terminated due to signal 9"),
        Some((Supervisor::Gunicorn, died(Some(14824), None, 9)))
    );
    assert_eq!(
        ev("[2023-05-11 18:13:57 +0000] [14852] [INFO] Booting worker with pid: 14852"),
        Some((Supervisor::Gunicorn, started(Some(14852), None)))
    );
    assert_eq!(
        ev("[2024-01-18 09:51:00 +0000] [1200] [ERROR] Worker (pid:1234) was sent code 139!"),
        None
    );
}

#[test]
fn supervisord_postgres_and_containers() {
    // https://github.com/Supervisor/supervisor/issues/907
    assert_eq!(
        ev("2017-03-14 11:23:36,752 INFO exited: 01 (terminated by SIGKILL; not expected)"),
        Some((Supervisor::Supervisord, died(None, Some("01"), 9)))
    );
    assert_eq!(
        ev("2024-01-18 09:51:00,123 WARN exited: app (terminated by SIGKILL (core dumped); not expected)"),
        Some((Supervisor::Supervisord, died(None, Some("app"), 9)))
    );
    assert_eq!(
        ev("2017-03-14 11:23:36,754 INFO spawned: '01' with pid 686253"),
        Some((Supervisor::Supervisord, started(Some(686253), Some("01"))))
    );
    assert_eq!(
        ev("2023-07-15 00:56:00,572 INFO gave up: apache2 entered FATAL state, too many start retries too quickly"),
        Some((Supervisor::Supervisord, SupervisorEvent::GaveUp { name: Some("apache2".into()) }))
    );
    // https://github.com/docker-library/postgres/issues/809
    assert_eq!(
        ev("postgres_1  | 2021-01-18 21:19:30.017 UTC [1] LOG:  server process (PID 315) was terminated by signal 9: Killed"),
        Some((Supervisor::Postgres, died(Some(315), Some("server process"), 9)))
    );
    assert_eq!(
        ev("2026-01-29 14:57:17.387 GMT [1] LOG:  client backend (PID 3368) was terminated by signal 9: Killed"),
        Some((Supervisor::Postgres, died(Some(3368), Some("client backend"), 9)))
    );
    assert_eq!(
        ev("[1] LOG:  all server processes terminated; reinitializing"),
        Some((Supervisor::Postgres, started(None, Some("postgres"))))
    );
    assert_eq!(
        ev("2019-05-04T18:05:45.011072877-05:00 container die 29d72966e0be (exitCode=137, image=app, name=web)"),
        Some((Supervisor::Docker, died(None, Some("web"), 9)))
    );
    assert_eq!(
        ev("2019-05-04T18:05:45Z container die 29d7 (exitCode=1, name=web)"),
        None
    );
    assert_eq!(
        ev("    Reason:       OOMKilled"),
        Some((
            Supervisor::Docker,
            SupervisorEvent::OomNoticed { name: None }
        ))
    );
    assert_eq!(ev("\"OOMKilled\": false,"), None);
    // https://github.com/containerd/containerd/issues/8893
    assert_eq!(
        ev(
            r#"Sep 01 19:12:33 tmp-node containerd[1472]: time="2023-09-01T19:12:33.012922721Z" level=info msg="TaskOOM event container_id:\"4bcba7fc4369fee4\"""#
        ),
        Some((
            Supervisor::Containerd,
            SupervisorEvent::OomNoticed {
                name: Some("4bcba7fc4369fee4".into())
            }
        ))
    );
    assert_eq!(
        ev("time=\"2020-01-01T00:00:00Z\" level=info msg=\"TaskOOM event &TaskOOM{ContainerID:abc123,}\""),
        Some((Supervisor::Containerd, SupervisorEvent::OomNoticed { name: Some("abc123".into()) }))
    );
    // https://github.com/kubernetes/kubernetes/issues/54760 and #123602
    assert_eq!(
        ev(
            r#"Oct 29 13:16:48 centos02 kubelet[4919]: E1029 13:16:48.471488    4919 pod_workers.go:182] Error syncing pod cc89ef7c ("alpine-368057524-bgt0m_default(cc89ef7c)"), skipping: failed to "StartContainer" for "alpine" with CrashLoopBackOff: "Back-off 5m0s restarting failed container=alpine pod=alpine-368057524-bgt0m_default(cc89ef7c)""#
        ),
        Some((
            Supervisor::Kubelet,
            SupervisorEvent::RestartScheduled {
                name: Some("alpine".into()),
                counter: None,
                delay_s: Some(300.0)
            }
        ))
    );
    assert_eq!(
        ev("  Warning  BackOff    4m53s (x72 over 20m)  kubelet  Back-off restarting failed container manager in pod web_default(1234)"),
        Some((Supervisor::Kubelet, SupervisorEvent::RestartScheduled { name: Some("manager".into()), counter: None, delay_s: None }))
    );
    assert_eq!(
        ev("back-off 1m20s restarting failed container=app pod=p"),
        Some((
            Supervisor::Kubelet,
            SupervisorEvent::RestartScheduled {
                name: Some("app".into()),
                counter: None,
                delay_s: Some(80.0)
            }
        ))
    );
}

#[test]
fn own_stamps() {
    let cases = [
        (
            "2022/10/25 12:39:41 [alert] 1#0: worker process 31 exited on signal 9",
            Some("2022-10-25 12:39:41"),
        ),
        (
            "[18-Aug-2024 02:43:39] WARNING: [pool www] child 1",
            Some("2024-08-18 02:43:39"),
        ),
        (
            "[2020-09-12 05:37:52 +0000] [18] [ERROR] Worker",
            Some("2020-09-12 05:37:52"),
        ),
        (
            "2017-03-14 11:23:36,752 INFO exited: 01",
            Some("2017-03-14 11:23:36.752"),
        ),
        (
            "postgres_1  | 2021-01-18 21:19:30.017 UTC [1] LOG:  x",
            Some("2021-01-18 21:19:30.017"),
        ),
        (
            "Wed Jul 27 07:25:07 2016 - *** HARAKIRI",
            Some("Wed Jul 27 07:25:07 2016"),
        ),
        (
            "E0301 01:06:01.286649    1869 pod_workers.go:1294] x",
            Some("Mar 01 01:06:01.286649"),
        ),
        (
            "time=\"2023-09-01T19:12:33.012922721Z\" level=info",
            Some("2023-09-01 19:12:33.012922721"),
        ),
        ("DAMN ! worker 1 (pid: 108) died", None),
    ];
    for (line, want) in cases {
        assert_eq!(own_timestamp(line).as_deref(), want, "{line}");
        if let Some(w) = want {
            assert!(
                crate::events::prefix::parse_wall(w).is_some(),
                "{w} is not read back"
            );
        }
    }
}
