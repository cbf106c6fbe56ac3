//! The parsers of [`super::MESSAGES`], and [`own_timestamp`]: the stamp a
//! supervisor writes in front of its own lines when they are read from
//! its own file (nginx's `error.log`, php-fpm's log, ...).

use super::SupervisorEvent;

fn leading_u32(s: &str) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let v = s.get(..n)?.parse().ok()?;
    Some((v, s.get(n..)?))
}

/// The text right after the first `marker`.
fn after<'a>(s: &'a str, marker: &str) -> Option<&'a str> {
    let i = s.find(marker)?;
    s.get(i + marker.len()..)
}

/// `<unit>: ` right before byte `at` (systemd's LOG_UNIT_MESSAGE prefix).
fn unit_before(s: &str, at: usize) -> Option<String> {
    let before = s.get(..at)?.trim_end();
    let before = before.strip_suffix(':')?;
    let unit = before.rsplit([' ', '\t']).next()?;
    unit_name(unit)
}

/// A systemd unit name: `name.service`, `name.scope`, ...
fn unit_name(s: &str) -> Option<String> {
    let s = s.trim_matches(|c: char| c == '\'' || c == '"');
    let (base, kind) = s.rsplit_once('.')?;
    let known = [
        "service", "scope", "slice", "socket", "mount", "timer", "target", "path", "swap",
    ];
    (!base.is_empty() && known.contains(&kind)).then(|| s.to_string())
}

/// `<unit>: Main process exited, code=killed, status=9/KILL` (v220+) and
/// `<unit>: main process exited, code=killed, status=9/KILL` (v219).
pub(super) fn systemd_exited(msg: &str) -> Option<SupervisorEvent> {
    let i = msg
        .find("Main process exited, code=killed")
        .or_else(|| msg.find("main process exited, code=killed"))?;
    let name = unit_before(msg, i);
    let st = after(msg.get(i..)?, "status=")?;
    let (signal, _) = leading_u32(st)?;
    Some(SupervisorEvent::Died {
        pid: None,
        name,
        signal,
        lifetime_s: None,
    })
}

/// `<unit>: Scheduled restart job, restart counter is at N.` (v235+),
/// `<unit>: Scheduled restart job.` (v220-v234). A restart asked for by
/// hand (`immediately on client request`, v257+) is not a respawn.
pub(super) fn systemd_scheduled(msg: &str) -> Option<SupervisorEvent> {
    let i = msg.find("Scheduled restart job")?;
    let rest = msg.get(i..)?;
    if rest.contains("on client request") {
        return None;
    }
    let counter = after(rest, "restart counter is at ").and_then(|r| leading_u32(r).map(|x| x.0));
    Some(SupervisorEvent::RestartScheduled {
        name: unit_before(msg, i),
        counter,
        delay_s: None,
    })
}

/// systemd's `RestartSec=` span (`100ms`, `5s`, `1min 30s`), in seconds.
fn timespan_s(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for part in s.split_ascii_whitespace() {
        let n = part
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let v: f64 = part.get(..n)?.parse().ok()?;
        let unit = part.get(n..)?;
        let k = match unit {
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "s" | "sec" | "" => 1.0,
            "min" | "m" => 60.0,
            "h" | "hr" => 3600.0,
            _ => return None,
        };
        total += v * k;
        any = true;
    }
    any.then_some(total)
}

/// `<unit> holdoff time over, scheduling restart.` (v219),
/// `<unit>: Service hold-off time over, scheduling restart.` (v220-v238),
/// `<unit>: Service RestartSec=100ms expired, scheduling restart.`
/// (v239-v253) and the `no hold-off time` forms.
pub(super) fn systemd_scheduling(msg: &str) -> Option<SupervisorEvent> {
    let i = msg.find("scheduling restart")?;
    let head = msg.get(..i)?;
    let delay_s = if head.contains("no holdoff time") || head.contains("no hold-off time") {
        Some(0.0)
    } else {
        after(head, "RestartSec=").and_then(|r| {
            let end = r.find(" expired").unwrap_or(r.len());
            timespan_s(r.get(..end)?)
        })
    };
    let name = if let Some(j) = head.find("Service ") {
        unit_before(msg, j)
    } else {
        // v219: `<unit> holdoff time over` / `<unit> has no holdoff time`
        let j = head.find(" has no").or_else(|| head.find(" holdoff"))?;
        let unit = head.get(..j)?.rsplit([' ', '\t']).next()?;
        unit_name(unit)
    };
    Some(SupervisorEvent::RestartScheduled {
        name,
        counter: None,
        delay_s,
    })
}

/// `<unit>: Start request repeated too quickly.` (v220+), `start request
/// repeated too quickly for <unit>` (v219).
pub(super) fn systemd_start_limit(msg: &str) -> Option<SupervisorEvent> {
    if let Some(i) = msg.find("Start request repeated too quickly") {
        return Some(SupervisorEvent::GaveUp {
            name: unit_before(msg, i),
        });
    }
    let r = after(msg, "start request repeated too quickly for ")?;
    Some(SupervisorEvent::GaveUp {
        name: unit_name(r.trim_end()),
    })
}

/// `<unit>: A process of this unit has been killed by the OOM killer.`
/// (v243-v258), `<unit>: The kernel OOM killer killed some processes in
/// this unit.` (v259+).
pub(super) fn systemd_oom_notice(msg: &str) -> Option<SupervisorEvent> {
    let i = msg
        .find("A process of this unit has been killed by the OOM killer")
        .or_else(|| msg.find("The kernel OOM killer killed some processes"))?;
    Some(SupervisorEvent::OomNoticed {
        name: unit_before(msg, i),
    })
}

/// nginx: `worker process N exited on signal 9` (alert) and `start worker
/// process N` (notice).
pub(super) fn nginx(msg: &str) -> Option<SupervisorEvent> {
    let i = msg.find("worker process ")?;
    let (pid, rest) = leading_u32(msg.get(i + "worker process ".len()..)?)?;
    if msg.get(..i)?.ends_with("start ") {
        return Some(SupervisorEvent::Started {
            pid: Some(pid),
            name: Some("worker process".into()),
        });
    }
    let (signal, _) = leading_u32(rest.strip_prefix(" exited on signal ")?)?;
    Some(SupervisorEvent::Died {
        pid: Some(pid),
        name: Some("worker process".into()),
        signal,
        lifetime_s: None,
    })
}

/// php-fpm: `[pool P] child N exited on signal 9 (SIGKILL) after S seconds
/// from start` and `[pool P] child N started`.
pub(super) fn php_fpm(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "[pool ")?;
    let (pool, r) = r.split_once("] child ")?;
    let (pid, r) = leading_u32(r)?;
    let name = Some(format!("pool {pool}"));
    if r.trim_end() == " started" {
        return Some(SupervisorEvent::Started {
            pid: Some(pid),
            name,
        });
    }
    let (signal, r) = leading_u32(r.strip_prefix(" exited on signal ")?)?;
    let lifetime_s = after(r, " after ").and_then(|t| {
        let n = t
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        t.get(..n)?.parse().ok()
    });
    Some(SupervisorEvent::Died {
        pid: Some(pid),
        name,
        signal,
        lifetime_s,
    })
}

/// uWSGI: `DAMN ! worker W (pid: N) died, killed by signal 9 :( trying
/// respawn ...`, and the `MISTERIOUSLY`/`MYSTERIOUSLY killed by signal`
/// form. A death with no signal (`died :(`) is not a kill.
pub(super) fn uwsgi_died(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "DAMN ! worker ")?;
    let (slot, r) = leading_u32(r)?;
    let (pid, r) = leading_u32(r.strip_prefix(" (pid: ")?)?;
    let (signal, _) = leading_u32(after(r, "killed by signal ")?)?;
    Some(SupervisorEvent::Died {
        pid: Some(pid),
        name: Some(format!("worker {slot}")),
        signal,
        lifetime_s: None,
    })
}

/// uWSGI: `Respawned uWSGI worker W (new pid: N)`.
pub(super) fn uwsgi_respawned(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "Respawned uWSGI worker ")?;
    let (slot, r) = leading_u32(r)?;
    let (pid, _) = leading_u32(r.strip_prefix(" (new pid: ")?)?;
    Some(SupervisorEvent::Started {
        pid: Some(pid),
        name: Some(format!("worker {slot}")),
    })
}

/// uWSGI's own kills: `*** HARAKIRI ON WORKER W (pid: N, ...` and `***
/// EVIL RELOAD ON WORKER W RSS: R (pid: N) ***`.
pub(super) fn uwsgi_self_kill(msg: &str) -> Option<SupervisorEvent> {
    let why = if msg.contains("HARAKIRI ON WORKER") {
        "harakiri: a request ran past its time limit"
    } else if msg.contains("EVIL RELOAD ON WORKER") {
        "evil reload: a worker over its own memory limit"
    } else {
        return None;
    };
    let pid = after(msg, "(pid: ").and_then(|r| leading_u32(r).map(|x| x.0));
    Some(SupervisorEvent::SelfKill {
        pid,
        why: why.into(),
    })
}

/// gunicorn: `Worker (pid:N) was sent SIGKILL! Perhaps out of memory?`
/// (21.0+) and `Worker with pid N was terminated due to signal S` (20.1).
pub(super) fn gunicorn_died(msg: &str) -> Option<SupervisorEvent> {
    if let Some(r) = after(msg, "Worker (pid:") {
        let (pid, r) = leading_u32(r)?;
        r.starts_with(") was sent SIGKILL")
            .then_some(SupervisorEvent::Died {
                pid: Some(pid),
                name: None,
                signal: 9,
                lifetime_s: None,
            })
    } else {
        let r = after(msg, "Worker with pid ")?;
        let (pid, r) = leading_u32(r)?;
        let (signal, _) = leading_u32(r.strip_prefix(" was terminated due to signal ")?)?;
        Some(SupervisorEvent::Died {
            pid: Some(pid),
            name: None,
            signal,
            lifetime_s: None,
        })
    }
}

/// gunicorn: `Booting worker with pid: N`.
pub(super) fn gunicorn_booting(msg: &str) -> Option<SupervisorEvent> {
    let (pid, _) = leading_u32(after(msg, "Booting worker with pid: ")?)?;
    Some(SupervisorEvent::Started {
        pid: Some(pid),
        name: None,
    })
}

/// gunicorn's own kill: `WORKER TIMEOUT (pid:N)`.
pub(super) fn gunicorn_timeout(msg: &str) -> Option<SupervisorEvent> {
    let (pid, _) = leading_u32(after(msg, "WORKER TIMEOUT (pid:")?)?;
    Some(SupervisorEvent::SelfKill {
        pid: Some(pid),
        why: "worker timeout: a worker silent past --timeout".into(),
    })
}

/// supervisord: `exited: NAME (terminated by SIGKILL; not expected)`.
pub(super) fn supervisord_exited(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "exited: ")?;
    let (name, _) = r.split_once(" (terminated by SIGKILL")?;
    Some(SupervisorEvent::Died {
        pid: None,
        name: Some(name.to_string()),
        signal: 9,
        lifetime_s: None,
    })
}

/// supervisord: `spawned: 'NAME' with pid N`.
pub(super) fn supervisord_spawned(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "spawned: '")?;
    let (name, r) = r.split_once("' with pid ")?;
    let (pid, _) = leading_u32(r)?;
    Some(SupervisorEvent::Started {
        pid: Some(pid),
        name: Some(name.to_string()),
    })
}

/// supervisord: `gave up: NAME entered FATAL state, ...`.
pub(super) fn supervisord_gave_up(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "gave up: ")?;
    let (name, _) = r.split_once(" entered FATAL state")?;
    Some(SupervisorEvent::GaveUp {
        name: Some(name.to_string()),
    })
}

/// PostgreSQL: `PROCNAME (PID N) was terminated by signal 9: Killed`
/// (`server process` up to 17, `client backend` in 18).
pub(super) fn postgres_terminated(msg: &str) -> Option<SupervisorEvent> {
    let i = msg.find(" was terminated by signal ")?;
    let head = msg.get(..i)?;
    let j = head.rfind(" (PID ")?;
    let (pid, close) = leading_u32(head.get(j + " (PID ".len()..)?)?;
    if close != ")" {
        return None;
    }
    let (signal, _) = leading_u32(msg.get(i + " was terminated by signal ".len()..)?)?;
    let procname = head.get(..j)?;
    let procname = procname
        .rsplit_once(":  ")
        .map_or(procname, |(_, p)| p)
        .trim();
    Some(SupervisorEvent::Died {
        pid: Some(pid),
        name: Some(procname.to_string()),
        signal,
        lifetime_s: None,
    })
}

/// PostgreSQL: `all server processes terminated; reinitializing`.
pub(super) fn postgres_reinit(msg: &str) -> Option<SupervisorEvent> {
    msg.contains("all server processes terminated; reinitializing")
        .then(|| SupervisorEvent::Started {
            pid: None,
            name: Some("postgres".into()),
        })
}

/// `docker events`: `container die ID (exitCode=137, ..., name=N)`.
pub(super) fn docker_die(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "container die ")?;
    if !after(r, "(")?.contains("exitCode=137") {
        return None;
    }
    Some(SupervisorEvent::Died {
        pid: None,
        name: docker_name(r),
        signal: 9,
        lifetime_s: None,
    })
}

/// The container's `name=` attribute in a `docker events` line, else its id.
fn docker_name(r: &str) -> Option<String> {
    let id = r.split([' ', '(']).next()?;
    after(r, "(")
        .and_then(|attrs| after(attrs, "name="))
        .map(|n| n.split([',', ')']).next().unwrap_or(n).to_string())
        .or_else(|| (!id.is_empty()).then(|| id.to_string()))
}

/// `docker events`: `container start ID (..., name=N)`.
pub(super) fn docker_start(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "container start ")?;
    Some(SupervisorEvent::Started {
        pid: None,
        name: docker_name(r),
    })
}

/// `docker events`: `container oom ID (..., name=N)`.
pub(super) fn docker_oom(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "container oom ")?;
    Some(SupervisorEvent::OomNoticed {
        name: docker_name(r),
    })
}

/// `"OOMKilled": true` (`docker inspect`) and `Reason: OOMKilled`
/// (`kubectl describe`).
pub(super) fn oom_killed_state(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "OOMKilled")?;
    let r = r.trim_start_matches(['"', ':', ' ']);
    let yes = r.starts_with("true") || msg.contains("Reason:");
    yes.then_some(SupervisorEvent::OomNoticed { name: None })
}

/// containerd (CRI): `TaskOOM event container_id:"ID"` (newer) or
/// `&TaskOOM{ContainerID:ID,}` (gogo builds).
pub(super) fn containerd_task_oom(msg: &str) -> Option<SupervisorEvent> {
    let r = after(msg, "TaskOOM")?;
    let id = after(r, "container_id:")
        .or_else(|| after(r, "ContainerID:"))
        .map(|v| {
            v.trim_start_matches(['\\', '"'])
                .split(['\\', '"', ',', '}', ' '])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|s| !s.is_empty());
    Some(SupervisorEvent::OomNoticed { name: id })
}

/// Go's `time.Duration` text (`5m0s`, `40s`, `1m20s`, `2.5s`), in seconds.
fn go_duration_s(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if n == 0 {
            break;
        }
        let v: f64 = rest.get(..n)?.parse().ok()?;
        rest = rest.get(n..)?;
        let (k, len) = if rest.starts_with("ms") {
            (1e-3, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += v * k;
        rest = rest.get(len..)?;
        any = true;
    }
    any.then_some(total)
}

/// kubelet: `back-off 5m0s restarting failed container=C pod=P` (and
/// `Back-off`), the event `Back-off restarting failed container C in pod
/// P`, and the older bare `Back-off restarting failed container`.
pub(super) fn kubelet_back_off(msg: &str) -> Option<SupervisorEvent> {
    let i = msg.find("restarting failed container")?;
    let head = msg.get(..i)?.trim_end();
    let delay_s = head
        .rsplit(' ')
        .next()
        .filter(|d| d.bytes().next().is_some_and(|c| c.is_ascii_digit()))
        .and_then(go_duration_s);
    let tail = msg.get(i + "restarting failed container".len()..)?;
    let name = if let Some(r) = tail.strip_prefix('=') {
        r.split([' ', '\\', '"']).next().map(str::to_string)
    } else {
        tail.strip_prefix(' ')
            .and_then(|r| r.split(' ').next())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    Some(SupervisorEvent::RestartScheduled {
        name,
        counter: None,
        delay_s,
    })
}

// ---------------------------------------------------------------------------
// Their own stamps
// ---------------------------------------------------------------------------

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn digits(b: &[u8], at: usize, n: usize) -> bool {
    b.get(at..at + n)
        .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
}

/// `HH:MM:SS` with an optional `.fraction` or `,fraction`, at `at`; its length.
fn clock_at(b: &[u8], at: usize) -> Option<usize> {
    let ok = digits(b, at, 2)
        && b.get(at + 2) == Some(&b':')
        && digits(b, at + 3, 2)
        && b.get(at + 5) == Some(&b':')
        && digits(b, at + 6, 2);
    if !ok {
        return None;
    }
    let mut n = 8;
    if matches!(b.get(at + 8), Some(b'.') | Some(b',')) && digits(b, at + 9, 1) {
        n = 9;
        while digits(b, at + n, 1) {
            n += 1;
        }
    }
    Some(n)
}

/// The stamp a supervisor wrote at the start of its own line, rewritten
/// in a form [`crate::events::prefix::parse_wall`] reads (`YYYY-MM-DD
/// HH:MM:SS[.frac]`, or `Mon DD HH:MM:SS[.frac]` for klog's yearless
/// stamps). Looked for at the start of `msg`, after a `|` (compose) or a
/// `time="` (logrus): nginx `2024/01/18 09:51:00`, php-fpm `[18-Jan-2024
/// 09:51:00]`, gunicorn `[2024-01-18 09:51:00 +0000]`, supervisord
/// `2024-01-18 09:51:00,123`, PostgreSQL `2024-01-18 09:51:00.123 UTC`,
/// uWSGI `Thu Jan 18 09:51:00 2024 - `, klog `E0118 09:51:00.123456`.
pub fn own_timestamp(msg: &str) -> Option<String> {
    let mut starts = vec![0usize];
    if let Some(i) = msg.find("| ") {
        if i < 64 {
            starts.push(i + 2);
        }
    }
    if let Some(i) = msg.find("time=\"") {
        if i < 64 {
            starts.push(i + 6);
        }
    }
    starts.into_iter().find_map(|s| {
        let t = msg.get(s..)?.trim_start();
        stamp_at(t.trim_start_matches('['))
    })
}

fn stamp_at(t: &str) -> Option<String> {
    let b = t.as_bytes();
    let clock = |at: usize| clock_at(b, at).and_then(|n| t.get(at..at + n));
    // YYYY/MM/DD or YYYY-MM-DD, then a space or a T
    if digits(b, 0, 4)
        && matches!(b.get(4), Some(b'/') | Some(b'-'))
        && digits(b, 5, 2)
        && b.get(7) == b.get(4)
        && digits(b, 8, 2)
        && matches!(b.get(10), Some(b' ') | Some(b'T'))
    {
        let c = clock(11)?.replace(',', ".");
        return Some(format!(
            "{}-{}-{} {c}",
            t.get(0..4)?,
            t.get(5..7)?,
            t.get(8..10)?
        ));
    }
    // DD-Mon-YYYY HH:MM:SS (php-fpm)
    if digits(b, 0, 2) && b.get(2) == Some(&b'-') && b.get(6) == Some(&b'-') && digits(b, 7, 4) {
        let m = MONTHS.iter().position(|m| Some(*m) == t.get(3..6))? + 1;
        let c = clock(12)?;
        return Some(format!("{}-{m:02}-{} {c}", t.get(7..11)?, t.get(0..2)?));
    }
    // klog: `E0118 09:51:00.123456`
    if matches!(b.first(), Some(b'I' | b'W' | b'E' | b'F'))
        && digits(b, 1, 4)
        && b.get(5) == Some(&b' ')
    {
        let m: usize = t.get(1..3)?.parse().ok()?;
        let mon = MONTHS.get(m.checked_sub(1)?)?;
        let c = clock(6)?;
        return Some(format!("{mon} {} {c}", t.get(3..5)?));
    }
    // ctime: `Thu Jan 18 09:51:00 2024`
    if b.get(3) == Some(&b' ') && MONTHS.contains(&t.get(4..7)?) {
        let rest = t.get(8..)?.trim_start();
        let (day, r) = rest.split_once(' ')?;
        let c = clock_at(r.as_bytes(), 0).and_then(|n| r.get(..n))?;
        let year = r.get(c.len() + 1..c.len() + 5)?;
        if year.bytes().all(|x| x.is_ascii_digit()) {
            return Some(format!(
                "{} {} {day:0>2} {c} {year}",
                t.get(0..3)?,
                t.get(4..7)?
            ));
        }
    }
    None
}
