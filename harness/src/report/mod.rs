//! The run's report: a terminal summary for people, JSON for machines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::text::printable;
use crate::verdict::{Evidence, Verdict};
use crate::vm::accel::AccelDecision;
use crate::vm::{AccelKind, StopReason};

#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    /// Catalogue name or the path given.
    pub name: String,
    /// `uname -r` as the payload saw it.
    pub release: Option<String>,
    pub sha256: Option<String>,
    /// Verified against the catalogue's sha256 (false: a kernel of your own,
    /// or one that replaced a pin that left the mirror).
    pub pinned: bool,
}

/// A real program in the guest and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramInfo {
    pub package: String,
    pub version: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Wall seconds from QEMU start to the payload's `ready`.
    pub boot_s: Option<f64>,
    /// Wall seconds from QEMU start to the verdict.
    pub wall_s: f64,
    /// Wall seconds spent deciding the accelerator (0 when cached).
    pub accel_probe_s: f64,
    /// The run stopped before its window closed because the verdict could
    /// no longer change.
    pub stopped_early: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub verdict: Verdict,
    pub expected: Option<Verdict>,
    /// `expected` is absent or equals `verdict`.
    pub matches: bool,
    pub why: String,
    /// The accelerator that ran the VM: `kvm` or `tcg`.
    pub accel: AccelKind,
    /// How it was chosen: what was asked, the probe's answer, why.
    pub accel_decision: AccelDecision,
    pub kernel: KernelInfo,
    pub evidence: Evidence,
    pub timings: Timings,
    pub stop: StopReason,
    /// Where the raw console log, telemetry and this report were kept.
    pub out_dir: Option<PathBuf>,
    pub qemu_argv: Vec<String>,
    /// The uid the workers ran as (the master stays root), when not root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_uid: Option<u32>,
    /// `qemu-system-x86_64 --version`, first line.
    #[serde(default)]
    pub qemu_version: String,
    /// Real programs packed into the guest (earlyoom...), with their
    /// Debian package versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramInfo>,
    /// Writing the run's evidence failed (disk full, ...): what is on disk
    /// is incomplete, and the run is not to be trusted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence_errors: Vec<String>,
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2} s"))
}

/// A few lines a tired on-call engineer reads first. Every string that came
/// from input (the scenario, the kernel image, the guest) is escaped with
/// [`printable`].
pub fn render_terminal(r: &Report) -> String {
    let e = &r.evidence;
    let mut s = String::new();
    let mark = match (r.expected, r.matches) {
        (None, _) => String::new(),
        (Some(x), true) => format!("  (expected {x}: ok)"),
        (Some(x), false) => format!("  (expected {x}: MISMATCH)"),
    };
    let lost = if r.evidence_errors.is_empty() {
        ""
    } else {
        "  [EVIDENCE INCOMPLETE: no verdict is claimed]"
    };
    let _ = writeln!(
        s,
        "{}: {}{}{}",
        printable(&r.scenario),
        r.verdict.as_str().to_uppercase(),
        mark,
        lost
    );
    let _ = writeln!(s, "  why:      {}", printable(&r.why));
    let _ = writeln!(
        s,
        "  accel:    {}{} ({})",
        r.accel.as_str(),
        if r.accel_decision.cached {
            ", cached probe"
        } else {
            ""
        },
        printable(&r.accel_decision.reason)
    );
    let _ = writeln!(
        s,
        "  kernel:   {} ({})",
        printable(r.kernel.release.as_deref().unwrap_or("release unknown")),
        printable(&r.kernel.name)
    );
    if let Some(uid) = r.worker_uid {
        let _ = writeln!(s, "  workers:  uid {uid} (master root)");
    }
    let _ = writeln!(
        s,
        "  oom:      {} kills ({} of re-forked workers), {} respawns, first at {}, last at {}, {}",
        e.oom_kills,
        e.kills_of_respawned,
        e.respawns,
        opt_s(e.first_oom_s),
        opt_s(e.last_oom_s),
        e.kill_rate_per_s
            .map_or_else(|| "rate -".into(), |r| format!("{r:.1} kills/s")),
    );
    let _ = writeln!(
        s,
        "  canary:   {} ticks, worst {} ms late, p99 {} ms; quiet tail {:.1} s of {:.1} s",
        e.canary_ticks,
        e.canary_max_late_ms
            .map_or("-".into(), |v| format!("{v:.0}")),
        e.canary_p99_late_ms
            .map_or("-".into(), |v| format!("{v:.0}")),
        e.quiet_tail_s,
        e.window_s
    );
    if let Some(ssh) = &e.ssh {
        let _ = writeln!(
            s,
            "  ssh:      {}/{} logins ok ({}), p50 {} ms, p95 {} ms, longest outage {:.1} s{}",
            ssh.ok,
            ssh.attempts,
            ssh.success_rate
                .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
            ssh.p50_ms.map_or("-".into(), |v| format!("{v:.0}")),
            ssh.p95_ms.map_or("-".into(), |v| format!("{v:.0}")),
            ssh.longest_outage_s,
            ssh.outage_from_s
                .filter(|_| ssh.longest_outage_s > 0.0)
                .map_or(String::new(), |f| format!(" from {f:.1} s"))
        );
        let slices: Vec<String> = ssh
            .over_time
            .iter()
            .map(|sl| {
                format!(
                    "{:.0}-{:.0}s {}/{} {}",
                    sl.from_s,
                    sl.to_s,
                    sl.ok,
                    sl.ok + sl.failed,
                    sl.p50_ms.map_or("-".into(), |v| format!("{v:.0}ms"))
                )
            })
            .collect();
        if !slices.is_empty() {
            let _ = writeln!(s, "  ssh/time: {}", slices.join(" | "));
        }
    }
    if e.stall_s.is_some() || e.major_faults.is_some() {
        let _ = writeln!(
            s,
            "  stall:    guest unresponsive at most {} (canary silent {}); {} major faults, {} file refaults",
            e.stall_s.map_or("-".into(), |v| format!("{v:.1} s")),
            e.canary_silence_s.map_or("-".into(), |v| format!("{v:.1} s")),
            e.major_faults.map_or("-".into(), |v| v.to_string()),
            e.file_refaults.map_or("-".into(), |v| v.to_string()),
        );
    }
    let a = &e.agreement;
    let _ = writeln!(
        s,
        "  views:    console {} kills, telemetry {} SIGKILLs, vmstat {}: {}",
        a.console_kills,
        a.telemetry_sigkills,
        a.vmstat_oom_kills.map_or("-".into(), |v| v.to_string()),
        if a.agree { "agree" } else { "DISAGREE" }
    );
    let _ = writeln!(
        s,
        "  time:     boot {}, verdict after {:.1} s wall; stopped: {}",
        opt_s(r.timings.boot_s),
        r.timings.wall_s,
        printable(&r.stop.to_string())
    );
    if let Some(cs) = &e.child_sacrifice {
        let _ = writeln!(s, "  choice:   the kernel {}", cs.said);
    }
    for n in &e.notes {
        let _ = writeln!(s, "  note:     {}", printable(n));
    }
    for n in &r.evidence_errors {
        let _ = writeln!(s, "  ERROR:    {}", printable(n));
    }
    if let Some(d) = &r.out_dir {
        let _ = writeln!(s, "  logs:     {}", printable(&d.display().to_string()));
    }
    s
}

/// Write JSON atomically: an interrupted run never leaves a half-written
/// report.
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    crate::atomic::write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        std::io::Write::write_all(w, b"\n")
    })
}
