//! The lines that process supervisors print when a process they manage
//! dies of a signal and when they start it again: systemd, nginx, php-fpm,
//! uWSGI, gunicorn, supervisord, PostgreSQL's postmaster, Docker,
//! containerd and the kubelet. `oomlab analyze` links them to the kernel's
//! kills (by pid, unit or time) to prove a respawn that the kernel log
//! alone cannot show.
//!
//! Like the kernel's [`super::kernel::MESSAGES`], every wording is one
//! entry of [`MESSAGES`]: its keywords, its parser, an example and the
//! versions of the supervisor whose source prints it. Each wording was
//! read in the supervisor's own source, across the versions named.
//!
//! Apache httpd has no entry: `ap_process_child_status()` returns in
//! silence for a child killed by SIGKILL (`case SIGKILL: break;`, in
//! 2.0.65, 2.2.34 and 2.4.62 alike), so an OOM-killed Apache child leaves
//! nothing in `error_log`, and the prefork parent logs no respawn.

mod parsers;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use parsers::own_timestamp;

/// A process supervisor whose lines `analyze` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    Systemd,
    Nginx,
    PhpFpm,
    Uwsgi,
    Gunicorn,
    Supervisord,
    Postgres,
    Docker,
    Containerd,
    Kubelet,
}

impl Supervisor {
    /// How a report names it.
    pub fn label(self) -> &'static str {
        match self {
            Supervisor::Systemd => "systemd",
            Supervisor::Nginx => "nginx master",
            Supervisor::PhpFpm => "php-fpm master",
            Supervisor::Uwsgi => "uWSGI master",
            Supervisor::Gunicorn => "gunicorn arbiter",
            Supervisor::Supervisord => "supervisord",
            Supervisor::Postgres => "PostgreSQL postmaster",
            Supervisor::Docker => "Docker",
            Supervisor::Containerd => "containerd",
            Supervisor::Kubelet => "kubelet",
        }
    }

    /// How it restarts what died, as its source does it (the default
    /// settings): the report's mitigation advice.
    pub fn respawn_policy(self) -> &'static str {
        match self {
            Supervisor::Systemd => "restarts after RestartSec= (default 100 ms) with no back-off unless RestartSteps= is set (v254+), and stops after StartLimitBurst= (5) starts within StartLimitIntervalSec= (10 s)",
            Supervisor::Nginx => "re-forks a worker the moment it is reaped, with no delay, no back-off and no limit",
            Supervisor::PhpFpm => "re-forks a child at once, with no back-off (its emergency_restart_threshold counts only SIGSEGV/SIGBUS)",
            Supervisor::Uwsgi => "respawns a worker at once; it sleeps 2 s only when more workers die within a second than it has",
            Supervisor::Gunicorn => "boots a new worker on its next loop (under a second), with no back-off and no limit",
            Supervisor::Supervisord => "restarts a program that had been running at once, with no back-off (the 1 s, 2 s, 3 s back-off and startretries apply only to programs dying while still starting)",
            Supervisor::Postgres => "kills every backend and restarts the whole cluster at once (restart_after_crash = on)",
            Supervisor::Docker => "restarts after 100 ms doubling to 1 min (reset after 10 s of running)",
            Supervisor::Containerd => "does not restart containers itself (the kubelet or Docker does)",
            Supervisor::Kubelet => "restarts after 10 s doubling to 5 min (CrashLoopBackOff)",
        }
    }

    /// Does it restart with a growing delay by default?
    pub fn backs_off_by_default(self) -> bool {
        matches!(self, Supervisor::Docker | Supervisor::Kubelet)
    }
}

/// What a supervisor line says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SupervisorEvent {
    /// A process it manages died of signal `signal`. `pid` where the line
    /// names it (systemd and supervisord do not); `name`: the unit,
    /// program, pool or worker slot.
    Died {
        pid: Option<u32>,
        name: Option<String>,
        signal: u32,
        /// How long the process had lived (php-fpm says so).
        lifetime_s: Option<f64>,
    },
    /// It started a process (again): `pid` where the line names it.
    Started {
        pid: Option<u32>,
        name: Option<String>,
    },
    /// It scheduled a restart: systemd's restart counter, the kubelet's
    /// back-off, systemd's `RestartSec=`.
    RestartScheduled {
        name: Option<String>,
        counter: Option<u32>,
        delay_s: Option<f64>,
    },
    /// It stopped restarting: systemd's start limit, supervisord's FATAL.
    GaveUp { name: Option<String> },
    /// It killed the process itself (uWSGI's harakiri and evil reload,
    /// gunicorn's worker timeout): the SIGKILL that follows is not an OOM
    /// kill.
    SelfKill { pid: Option<u32>, why: String },
    /// It noticed an OOM kill in what it manages (systemd's cgroup v2
    /// notice, containerd's TaskOOM, Docker's OOMKilled).
    OomNoticed { name: Option<String> },
}

/// One wording of one supervisor.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    pub supervisor: Supervisor,
    /// Literal text every line of this wording holds (one is enough).
    pub keywords: &'static [&'static str],
    /// Parse a line holding a keyword; `None` if it is not this wording.
    pub parse: fn(&str) -> Option<SupervisorEvent>,
    /// A line as the supervisor prints it (a test reads it).
    pub example: &'static str,
    /// The wording, and the versions whose source prints it.
    pub checked: &'static str,
}

/// Every supervisor wording `analyze` reads, in the order they are tried.
pub const MESSAGES: &[Message] = &[
    // systemd: src/core/service.c, unit.c, cgroup.c
    Message {
        supervisor: Supervisor::Systemd,
        keywords: &["process exited, code=killed"],
        parse: parsers::systemd_exited,
        example: "nginx.service: Main process exited, code=killed, status=9/KILL",
        checked: "`<unit>: Main process exited, code=killed, status=9/KILL`: v220-v260.1 (v240+ through unit_log_process_exit); `<unit>: main process exited, code=killed, status=9/KILL`: v219 (RHEL 7)",
    },
    Message {
        supervisor: Supervisor::Systemd,
        keywords: &["Scheduled restart job"],
        parse: parsers::systemd_scheduled,
        example: "nginx.service: Scheduled restart job, restart counter is at 3.",
        checked: "`<unit>: Scheduled restart job, restart counter is at N.`: v235-v260.1 (INFO); `Scheduled restart job.`: v220-v234 (DEBUG)",
    },
    Message {
        supervisor: Supervisor::Systemd,
        keywords: &["scheduling restart"],
        parse: parsers::systemd_scheduling,
        example: "nginx.service: Service RestartSec=100ms expired, scheduling restart.",
        checked: "`<unit> holdoff time over, scheduling restart.`: v219; `<unit>: Service hold-off time over, scheduling restart.`: v220-v238; `<unit>: Service RestartSec=<span> expired, scheduling restart.`: v239-v253 (INFO to v243, DEBUG from v244)",
    },
    Message {
        supervisor: Supervisor::Systemd,
        keywords: &["request repeated too quickly"],
        parse: parsers::systemd_start_limit,
        example: "nginx.service: Start request repeated too quickly.",
        checked: "`<unit>: Start request repeated too quickly.`: v220-v260.1; `start request repeated too quickly for <unit>`: v219",
    },
    Message {
        supervisor: Supervisor::Systemd,
        keywords: &["OOM killer"],
        parse: parsers::systemd_oom_notice,
        example: "app.service: A process of this unit has been killed by the OOM killer.",
        checked: "`<unit>: A process of this unit has been killed by the OOM killer.`: v243-v258 (cgroup v2); `<unit>: The kernel OOM killer killed some processes in this unit.`: v259-v260.1",
    },
    // nginx: src/os/unix/ngx_process.c
    Message {
        supervisor: Supervisor::Nginx,
        keywords: &["worker process "],
        parse: parsers::nginx,
        example: "2024/01/18 09:51:00 [alert] 30747#30747: worker process 8356 exited on signal 9",
        checked: "`[alert] worker process N exited on signal 9`, `[notice] start worker process N` (notice: absent at the default `error_log` level): 0.7.69, 1.0.15, 1.10.3, 1.18.0, 1.24.0, 1.26.0 (unchanged since 0.1.13)",
    },
    // php-fpm: sapi/fpm/fpm/fpm_children.c
    Message {
        supervisor: Supervisor::PhpFpm,
        keywords: &["[pool "],
        parse: parsers::php_fpm,
        example: "[18-Aug-2024 02:43:39] WARNING: [pool www] child 118112 exited on signal 9 (SIGKILL) after 12.605199 seconds from start",
        checked: "`[pool P] child N exited on signal 9 (SIGKILL) after S seconds from start`, `[pool P] child N started`: PHP 5.3.25 to 8.x (fpm_children.c unchanged)",
    },
    // uWSGI: core/master.c, core/master_utils.c, core/master_checks.c
    Message {
        supervisor: Supervisor::Uwsgi,
        keywords: &["(pid: "],
        parse: parsers::uwsgi_died,
        example: "DAMN ! worker 1 (pid: 108) died, killed by signal 9 :( trying respawn ...",
        checked: "`DAMN ! worker W (pid: N) died, killed by signal 9 :( trying respawn ...`: 1.9.21-2.0.30; `... MISTERIOUSLY killed by signal 9 ...`: releases to 2.0.30, `MYSTERIOUSLY`: master (unreleased)",
    },
    Message {
        supervisor: Supervisor::Uwsgi,
        keywords: &["(new pid: "],
        parse: parsers::uwsgi_respawned,
        example: "Respawned uWSGI worker 1 (new pid: 149)",
        checked: "`Respawned uWSGI worker W (new pid: N)`: 1.4.10-2.0.30",
    },
    Message {
        supervisor: Supervisor::Uwsgi,
        keywords: &["ON WORKER"],
        parse: parsers::uwsgi_self_kill,
        example: "Wed Jul 27 07:25:07 2016 - *** HARAKIRI ON WORKER 9 (pid: 18949, try: 1) ***",
        checked: "`*** HARAKIRI ON WORKER W (pid: N, try: T) ***` (2.0.x; `graceful:` added later), `*** EVIL RELOAD ON WORKER W RSS: R (pid: N) ***`: uWSGI's own SIGKILLs",
    },
    // gunicorn: gunicorn/arbiter.py, workers/base.py
    Message {
        supervisor: Supervisor::Gunicorn,
        keywords: &["was sent SIGKILL", "terminated due to signal"],
        parse: parsers::gunicorn_died,
        example: "[2020-09-12 05:37:52 +0000] [18] [ERROR] Worker (pid:21) was sent SIGKILL! Perhaps out of memory?",
        checked: "`Worker (pid:N) was sent SIGKILL! Perhaps out of memory?`: 21.0.0-26.1.0; `Worker with pid N was terminated due to signal 9`: 20.1.0; nothing at all: 19.9.0-20.0.4",
    },
    Message {
        supervisor: Supervisor::Gunicorn,
        keywords: &["Booting worker with pid: "],
        parse: parsers::gunicorn_booting,
        example: "[2020-09-12 05:37:52 +0000] [22] [INFO] Booting worker with pid: 22",
        checked: "`Booting worker with pid: N` (logged by the new worker): 19.9.0-26.1.0",
    },
    Message {
        supervisor: Supervisor::Gunicorn,
        keywords: &["WORKER TIMEOUT"],
        parse: parsers::gunicorn_timeout,
        example: "[2024-01-18 09:51:00 +0000] [1200] [CRITICAL] WORKER TIMEOUT (pid:1234)",
        checked: "`WORKER TIMEOUT (pid:N)`: 19.9.0-26.1.0 (gunicorn's own SIGKILL follows)",
    },
    // supervisord: supervisor/process.py
    Message {
        supervisor: Supervisor::Supervisord,
        keywords: &["terminated by SIGKILL"],
        parse: parsers::supervisord_exited,
        example: "2017-03-14 11:23:36,752 INFO exited: 01 (terminated by SIGKILL; not expected)",
        checked: "`exited: NAME (terminated by SIGKILL; not expected)` (no pid): 3.0-4.3.0 (INFO up to 4.2.4, WARN from 4.2.5)",
    },
    Message {
        supervisor: Supervisor::Supervisord,
        keywords: &["spawned: '"],
        parse: parsers::supervisord_spawned,
        example: "2017-03-14 11:23:36,754 INFO spawned: '01' with pid 686253",
        checked: "`spawned: 'NAME' with pid N`: 3.0-4.3.0",
    },
    Message {
        supervisor: Supervisor::Supervisord,
        keywords: &["gave up: "],
        parse: parsers::supervisord_gave_up,
        example: "2023-07-15 00:56:00,572 INFO gave up: apache2 entered FATAL state, too many start retries too quickly",
        checked: "`gave up: NAME entered FATAL state, too many start retries too quickly`: 3.0-4.3.0",
    },
    // PostgreSQL: src/backend/postmaster/postmaster.c
    Message {
        supervisor: Supervisor::Postgres,
        keywords: &["was terminated by signal"],
        parse: parsers::postgres_terminated,
        example: "2021-01-18 21:19:30.017 UTC [1] LOG:  server process (PID 315) was terminated by signal 9: Killed",
        checked: "`server process (PID N) was terminated by signal 9: Killed`: PostgreSQL up to 17; `client backend (PID N) ...`: 18 (PMChild code); `background worker \"X\" (PID N) ...`",
    },
    Message {
        supervisor: Supervisor::Postgres,
        keywords: &["server processes terminated"],
        parse: parsers::postgres_reinit,
        example: "2021-11-26 16:51:20.123 UTC [1] LOG:  all server processes terminated; reinitializing",
        checked: "`all server processes terminated; reinitializing`: every release with restart_after_crash",
    },
    // Docker (moby), containerd CRI, kubelet
    Message {
        supervisor: Supervisor::Docker,
        keywords: &["container die "],
        parse: parsers::docker_die,
        example: "2019-05-04T18:05:45.011072877-05:00 container die 29d72966e0be (exitCode=137, image=app, name=web)",
        checked: "`docker events`: `container die ID (exitCode=137, ..., name=N)`: 20.10.24, 24.0.9, 28.5.2",
    },
    Message {
        supervisor: Supervisor::Docker,
        keywords: &["container start "],
        parse: parsers::docker_start,
        example: "2019-05-04T18:05:45.311072877-05:00 container start 29d72966e0be (image=app, name=web)",
        checked: "`docker events`: `container start ID (..., name=N)` (a restart policy's restart): 20.10.24, 24.0.9, 28.5.2",
    },
    Message {
        supervisor: Supervisor::Docker,
        keywords: &["container oom "],
        parse: parsers::docker_oom,
        example: "2019-05-04T18:05:45.011072877-05:00 container oom 29d72966e0be (image=app, name=web)",
        checked: "`docker events`: `container oom ID (..., name=N)`: 20.10.24, 24.0.9, 28.5.2",
    },
    Message {
        supervisor: Supervisor::Docker,
        keywords: &["OOMKilled"],
        parse: parsers::oom_killed_state,
        example: "            \"OOMKilled\": true,",
        checked: "`\"OOMKilled\": true` (`docker inspect`), `Reason: OOMKilled` (`kubectl describe`): Docker 20.10-28.5, Kubernetes 1.x",
    },
    Message {
        supervisor: Supervisor::Containerd,
        keywords: &["TaskOOM"],
        parse: parsers::containerd_task_oom,
        example: "time=\"2023-09-01T19:12:33.012922721Z\" level=info msg=\"TaskOOM event container_id:\\\"4bcba7fc4369\\\"\"",
        checked: "`TaskOOM event container_id:\"ID\"` (`&TaskOOM{ContainerID:ID,}` on gogo builds): CRI plugin 1.5-2.1",
    },
    Message {
        supervisor: Supervisor::Kubelet,
        keywords: &["restarting failed container"],
        parse: parsers::kubelet_back_off,
        example: "E0301 01:06:01.286649    1869 pod_workers.go:1294] \"Error syncing pod, skipping\" err=\"failed to \\\"StartContainer\\\" for \\\"alpine\\\" with CrashLoopBackOff: \\\"back-off 5m0s restarting failed container=alpine pod=restarting-pod_default(ca0d5836)\\\"\"",
        checked: "`Back-off D restarting failed container=C pod=P` (glog) / `back-off D restarting failed container=C` (structured klog); event `Back-off restarting failed container C in pod P` (1.26+), `Back-off restarting failed container` (older)",
    },
];

/// A supervisor line, read.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorLine {
    pub supervisor: Supervisor,
    pub event: SupervisorEvent,
}

/// The keywords of every entry, once each, in table order.
pub fn keywords() -> &'static [&'static str] {
    static KW: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KW.get_or_init(|| super::distinct(MESSAGES.iter().flat_map(|m| m.keywords)))
}

fn matcher() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(keywords())
            .expect("fixed literal patterns always build")
    })
}

/// Read one line (any prefix left on: the parsers look for their wording
/// anywhere). `None`: not a supervisor line `analyze` knows.
pub fn parse(msg: &str) -> Option<SupervisorLine> {
    if !matcher().is_match(msg) {
        return None;
    }
    MESSAGES
        .iter()
        .filter(|m| m.keywords.iter().any(|k| msg.contains(k)))
        .find_map(|m| {
            (m.parse)(msg).map(|event| SupervisorLine {
                supervisor: m.supervisor,
                event,
            })
        })
}
