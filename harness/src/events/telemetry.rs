//! The payload's telemetry: one JSON object per line on the guest's second
//! serial port (guest-payload/PROTOCOL.md).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Worker,
    Canary,
    Sampler,
    /// Reparented to PID 1 after its parent died; role unknown to init.
    Orphan,
    #[serde(other)]
    Other,
}

/// One telemetry record. `t` is guest CLOCK_MONOTONIC seconds, the clock of
/// the kernel's printk timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub t: f64,
    #[serde(flatten)]
    pub ev: TelemetryEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum TelemetryEvent {
    Ready {
        #[serde(default)]
        name: String,
        #[serde(default)]
        kernel: String,
        #[serde(default)]
        mem_total_kib: Option<u64>,
        #[serde(default)]
        payload: Option<String>,
    },
    Setup {
        what: String,
        ok: bool,
        #[serde(default)]
        detail: String,
    },
    Spawn {
        pid: u32,
        #[serde(default)]
        ppid: Option<u32>,
        role: Role,
    },
    Exit {
        pid: u32,
        role: Role,
        #[serde(default)]
        signal: Option<i32>,
        #[serde(default)]
        status: Option<i32>,
    },
    Tick {
        seq: u64,
        late_ms: f64,
    },
    Mem {
        #[serde(default)]
        mem_total_kib: Option<u64>,
        #[serde(default)]
        mem_available_kib: Option<u64>,
        #[serde(default)]
        mem_free_kib: Option<u64>,
        #[serde(default)]
        swap_free_kib: Option<u64>,
        #[serde(default)]
        oom_kill: Option<u64>,
    },
    Error {
        msg: String,
    },
    Done {
        #[serde(default)]
        reason: String,
    },
}

/// Parse one line. Serial lines can arrive with a stray `\r` or garbage
/// from a guest that was writing while being killed: such lines are `None`
/// and counted by the caller, never fatal.
pub fn parse_line(line: &str) -> Option<Telemetry> {
    let line = line.trim_matches(|c: char| c == '\r' || c == '\n' || c == '\0' || c == ' ');
    let start = line.find('{')?;
    serde_json::from_str(&line[start..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let lines = [
            r#"{"t":1.5,"ev":"ready","name":"seed","kernel":"6.1.0-40-cloud-amd64","mem_total_kib":230000,"payload":"0.1.0"}"#,
            r#"{"t":1.6,"ev":"setup","what":"cgroup","ok":true,"detail":"memory.max=157286400"}"#,
            r#"{"t":1.7,"ev":"spawn","pid":42,"ppid":41,"role":"worker"}"#,
            r#"{"t":2.0,"ev":"exit","pid":42,"role":"worker","signal":9}"#,
            r#"{"t":2.1,"ev":"tick","seq":3,"late_ms":0.25}"#,
            r#"{"t":2.2,"ev":"mem","mem_available_kib":1000,"oom_kill":3}"#,
            r#"{"t":2.3,"ev":"error","msg":"fork: ENOMEM"}"#,
            "{\"t\":9.0,\"ev\":\"done\",\"reason\":\"duration\"}\r",
        ];
        let parsed: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        assert!(matches!(parsed[0].ev, TelemetryEvent::Ready { .. }));
        assert_eq!(
            parsed[3].ev,
            TelemetryEvent::Exit {
                pid: 42,
                role: Role::Worker,
                signal: Some(9),
                status: None
            }
        );
        assert_eq!(parsed[7].t, 9.0);
    }

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
