//! One guest-time line for both streams: what the kernel printed and what
//! the payload reported, ordered by the clock they share (printk stamps and
//! CLOCK_MONOTONIC). Written as `timeline.jsonl` beside each run's logs, for
//! people and for the report's timelines.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::kernel::KernelEvent;
use super::telemetry::TelemetryEvent;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum TimelineEvent {
    Kernel(KernelEvent),
    Payload(TelemetryEvent),
    /// An SSH login the host tried (its start on the guest's clock).
    Ssh(crate::verdict::SshAttempt),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineEntry {
    /// Guest seconds. A kernel line without a stamp takes the latest time
    /// seen before it.
    pub t: f64,
    #[serde(flatten)]
    pub event: TimelineEvent,
}

/// Sort by guest time (stable: same-time entries keep arrival order) and
/// write one JSON object per line, atomically.
pub fn write_jsonl(path: &Path, entries: &mut [TimelineEntry]) -> std::io::Result<()> {
    entries.sort_by(|a, b| a.t.total_cmp(&b.t));
    crate::atomic::write_atomic(path, |w| {
        for e in entries.iter() {
            serde_json::to_writer(&mut *w, e)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_guest_time_and_tagged_by_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vec![
            TimelineEntry {
                t: 2.0,
                event: TimelineEvent::Payload(TelemetryEvent::Done {
                    reason: "duration".into(),
                }),
            },
            TimelineEntry {
                t: 1.0,
                event: TimelineEvent::Kernel(KernelEvent::NoKillable),
            },
        ];
        let p = dir.path().join("timeline.jsonl");
        write_jsonl(&p, &mut v).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "{\"t\":1.0,\"kernel\":{\"event\":\"no_killable\"}}\n{\"t\":2.0,\"payload\":{\"ev\":\"done\",\"reason\":\"duration\"}}\n"
        );
    }
}
