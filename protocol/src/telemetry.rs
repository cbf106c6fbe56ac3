//! Telemetry, guest -> harness: one JSON object per line on the guest's
//! second serial port. The payload writes lines with [`Telemetry::line`]
//! (hand-written JSON, no dependencies); the harness reads them with
//! [`parse_line`] (serde, behind the `serde` feature). One enum, both ends.

use crate::json::Object;

/// Who a process is, as PID 1 and the master know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Role {
    Master,
    Worker,
    Canary,
    Sampler,
    /// Reparented to PID 1 after its parent died; role unknown to init.
    Orphan,
    /// A helper under test beside the workload (earlyoom, the PSI killer).
    Helper,
    #[cfg_attr(feature = "serde", serde(other))]
    Other,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Canary => "canary",
            Role::Sampler => "sampler",
            Role::Orphan => "orphan",
            Role::Helper => "helper",
            Role::Other => "other",
        }
    }
}

/// One telemetry record. `t` is guest `CLOCK_MONOTONIC` seconds, the clock
/// of the kernel's printk timestamps, so both streams share one timeline.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Telemetry {
    pub t: f64,
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub ev: Event,
}

/// What happened in the guest. Field names are the JSON keys; absent
/// optional fields are omitted from the line.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "ev", rename_all = "lowercase")
)]
pub enum Event {
    /// The payload is up; `t` here starts the observation window.
    Ready {
        #[cfg_attr(feature = "serde", serde(default))]
        name: String,
        /// `uname -r` of the guest kernel.
        #[cfg_attr(feature = "serde", serde(default))]
        kernel: String,
        #[cfg_attr(feature = "serde", serde(default))]
        mem_total_kib: Option<u64>,
        /// The payload's version.
        #[cfg_attr(feature = "serde", serde(default))]
        payload: Option<String>,
    },
    /// One step of setting up the guest (mounts, cgroup, sysctl,
    /// oom_score_adj) and whether it worked. `mitigation`: the step
    /// belongs to a mitigation under test, so its failure makes the run
    /// `n/a` (the mitigation was not applied).
    Setup {
        what: String,
        ok: bool,
        #[cfg_attr(feature = "serde", serde(default))]
        detail: String,
        #[cfg_attr(feature = "serde", serde(default))]
        mitigation: bool,
    },
    Spawn {
        pid: u32,
        #[cfg_attr(feature = "serde", serde(default))]
        ppid: Option<u32>,
        role: Role,
    },
    /// A child was reaped: killed by `signal`, or exited with `status`.
    Exit {
        pid: u32,
        role: Role,
        #[cfg_attr(feature = "serde", serde(default))]
        signal: Option<i32>,
        #[cfg_attr(feature = "serde", serde(default))]
        status: Option<i32>,
    },
    /// A canary tick and how late it woke, ms.
    Tick {
        seq: u64,
        late_ms: f64,
    },
    /// `/proc/meminfo` (KiB) and `/proc/vmstat` `oom_kill` (4.13+).
    Mem {
        #[cfg_attr(feature = "serde", serde(default))]
        mem_total_kib: Option<u64>,
        #[cfg_attr(feature = "serde", serde(default))]
        mem_available_kib: Option<u64>,
        #[cfg_attr(feature = "serde", serde(default))]
        mem_free_kib: Option<u64>,
        #[cfg_attr(feature = "serde", serde(default))]
        swap_free_kib: Option<u64>,
        #[cfg_attr(feature = "serde", serde(default))]
        oom_kill: Option<u64>,
        /// `/proc/vmstat` `pgmajfault`: page faults that had to read from
        /// a disk (a program's text dropped and read back).
        #[cfg_attr(feature = "serde", serde(default))]
        pgmajfault: Option<u64>,
        /// `/proc/vmstat` `workingset_refault_file` (5.9+; older kernels
        /// `workingset_refault`): evicted file pages read back soon after.
        #[cfg_attr(feature = "serde", serde(default))]
        refault_file: Option<u64>,
    },
    Error {
        msg: String,
    },
    /// A line a program in the guest printed (earlyoom, a real daemon),
    /// relayed with its time.
    Log {
        src: String,
        line: String,
    },
    /// A userspace killer of the payload's (the PSI killer) sent `signal`
    /// to `pid` (negative: a process group) for `reason`.
    Kill {
        killer: String,
        pid: i32,
        signal: i32,
        #[cfg_attr(feature = "serde", serde(default))]
        reason: String,
    },
    /// The window closed; power-off follows.
    Done {
        #[cfg_attr(feature = "serde", serde(default))]
        reason: String,
    },
}

impl Event {
    /// The `ev` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Ready { .. } => "ready",
            Event::Setup { .. } => "setup",
            Event::Spawn { .. } => "spawn",
            Event::Exit { .. } => "exit",
            Event::Tick { .. } => "tick",
            Event::Mem { .. } => "mem",
            Event::Error { .. } => "error",
            Event::Log { .. } => "log",
            Event::Kill { .. } => "kill",
            Event::Done { .. } => "done",
        }
    }

    /// One example of every variant (docs and round-trip tests).
    pub fn examples() -> Vec<Event> {
        vec![
            Event::Ready {
                name: "seed-livelock".into(),
                kernel: "6.1.0-50-cloud-amd64".into(),
                mem_total_kib: Some(231_000),
                payload: Some("0.1.0".into()),
            },
            Event::Setup {
                what: "cgroup".into(),
                ok: true,
                detail: "memory.max=157286400".into(),
                mitigation: true,
            },
            Event::Spawn {
                pid: 42,
                ppid: Some(41),
                role: Role::Worker,
            },
            Event::Exit {
                pid: 42,
                role: Role::Worker,
                signal: Some(9),
                status: None,
            },
            Event::Tick {
                seq: 3,
                late_ms: 0.25,
            },
            Event::Mem {
                mem_total_kib: Some(231_000),
                mem_available_kib: Some(15_000),
                mem_free_kib: Some(12_000),
                swap_free_kib: Some(0),
                oom_kill: Some(17),
                pgmajfault: Some(912),
                refault_file: Some(4_410),
            },
            Event::Error {
                msg: "master: fork failed".into(),
            },
            Event::Log {
                src: "earlyoom".into(),
                line: "sending SIGTERM to process 212 uid 0 \"nginx\": badness 870, VmRSS 58 MiB"
                    .into(),
            },
            Event::Kill {
                killer: "psi".into(),
                pid: -48,
                signal: 9,
                reason: "memory some stall 150 ms in 1000 ms".into(),
            },
            Event::Done {
                reason: "duration".into(),
            },
        ]
    }
}

impl Telemetry {
    /// The wire form: one JSON object and its `\n`, to be written with a
    /// single `write(2)` (the tty layer keeps whole writes together, so
    /// lines from several processes never mix).
    pub fn line(&self) -> String {
        let o = Object::new()
            .float("t", self.t, 6)
            .str("ev", self.ev.name());
        match &self.ev {
            Event::Ready {
                name,
                kernel,
                mem_total_kib,
                payload,
            } => o
                .str("name", name)
                .str("kernel", kernel)
                .opt_uint("mem_total_kib", *mem_total_kib)
                .opt_str("payload", payload.as_deref()),
            Event::Setup {
                what,
                ok,
                detail,
                mitigation,
            } => o
                .str("what", what)
                .bool("ok", *ok)
                .str("detail", detail)
                .bool("mitigation", *mitigation),
            Event::Spawn { pid, ppid, role } => o
                .uint("pid", u64::from(*pid))
                .opt_uint("ppid", ppid.map(u64::from))
                .str("role", role.as_str()),
            Event::Exit {
                pid,
                role,
                signal,
                status,
            } => o
                .uint("pid", u64::from(*pid))
                .str("role", role.as_str())
                .opt_int("signal", signal.map(i64::from))
                .opt_int("status", status.map(i64::from)),
            Event::Tick { seq, late_ms } => o.uint("seq", *seq).float("late_ms", *late_ms, 3),
            Event::Mem {
                mem_total_kib,
                mem_available_kib,
                mem_free_kib,
                swap_free_kib,
                oom_kill,
                pgmajfault,
                refault_file,
            } => o
                .opt_uint("mem_total_kib", *mem_total_kib)
                .opt_uint("mem_available_kib", *mem_available_kib)
                .opt_uint("mem_free_kib", *mem_free_kib)
                .opt_uint("swap_free_kib", *swap_free_kib)
                .opt_uint("oom_kill", *oom_kill)
                .opt_uint("pgmajfault", *pgmajfault)
                .opt_uint("refault_file", *refault_file),
            Event::Error { msg } => o.str("msg", msg),
            Event::Log { src, line } => o.str("src", src).str("line", line),
            Event::Kill {
                killer,
                pid,
                signal,
                reason,
            } => o
                .str("killer", killer)
                .int("pid", *pid)
                .int("signal", *signal)
                .str("reason", reason),
            Event::Done { reason } => o.str("reason", reason),
        }
        .line()
    }
}

/// Parse one line. Serial lines can arrive with a stray `\r` or garbage
/// from a guest that was writing while being killed: such lines are `None`
/// and counted by the caller, never fatal.
#[cfg(feature = "serde")]
pub fn parse_line(line: &str) -> Option<Telemetry> {
    let line = line.trim_matches(|c: char| c == '\r' || c == '\n' || c == '\0' || c == ' ');
    let start = line.find('{')?;
    serde_json::from_str(&line[start..]).ok()
}

/// The event table of PROTOCOL.md: each event's example line.
pub fn events_markdown() -> String {
    let mut s = String::from("| `ev` | example line |\n|---|---|\n");
    for ev in Event::examples() {
        let line = Telemetry {
            t: 12.5,
            ev: ev.clone(),
        }
        .line();
        s.push_str(&format!("| `{}` | `{}` |\n", ev.name(), line.trim_end()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_cover_every_variant_once() {
        let names: Vec<&str> = Event::examples().iter().map(Event::name).collect();
        let mut dedup = names.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
        // Adding a variant breaks `name()`'s match; this count is its twin.
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn lines_are_single_json_objects() {
        let l = Telemetry {
            t: 12.5,
            ev: Event::Exit {
                pid: 42,
                role: Role::Worker,
                signal: Some(9),
                status: None,
            },
        }
        .line();
        assert_eq!(
            l,
            "{\"t\":12.500000,\"ev\":\"exit\",\"pid\":42,\"role\":\"worker\",\"signal\":9}\n"
        );
        for ev in Event::examples() {
            let l = Telemetry { t: 1.0, ev }.line();
            assert_eq!(l.matches('\n').count(), 1, "{l}");
            assert!(l.starts_with("{\"t\":") && l.ends_with("}\n"), "{l}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn every_variant_round_trips() {
        for ev in Event::examples() {
            let tel = Telemetry { t: 3.25, ev };
            let back = parse_line(&tel.line()).unwrap_or_else(|| panic!("{}", tel.line()));
            assert_eq!(back, tel);
        }
        let hostile = Telemetry {
            t: 1.0,
            ev: Event::Error {
                msg: "a \"quoted\"\n\u{1b}[31m\u{2028} line".into(),
            },
        };
        assert_eq!(parse_line(&hostile.line()), Some(hostile));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn garbage_is_none_not_an_error() {
        for l in [
            "",
            "\0\0",
            "{",
            "{\"t\":1}",
            "{\"t\":1,\"ev\":\"nope\"}",
            "nginx",
        ] {
            assert_eq!(parse_line(l), None, "{l:?}");
        }
        // Leading noise before the object is tolerated.
        assert!(parse_line("\u{1}{\"t\":1,\"ev\":\"done\"}").is_some());
    }
}
