//! SSH logins into the guest, as the host-side probe made them: could a
//! person have logged in, how fast, and for how long could they not.

use serde::Serialize;

/// One login attempt (connect, authenticate, `cat /proc/loadavg`,
/// disconnect).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SshAttempt {
    /// Guest seconds when the attempt started (mapped from the host's clock
    /// through the arrival of `ready`).
    pub t: f64,
    pub ok: bool,
    /// Until the command's output and exit status came back, or until it
    /// failed or timed out.
    pub latency_ms: f64,
    /// Why it failed: `timeout`, or the client's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The logins of a stretch of the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SshSlice {
    /// Seconds from `ready`.
    pub from_s: f64,
    pub to_s: f64,
    pub ok: usize,
    pub failed: usize,
    pub p50_ms: Option<f64>,
}

/// What the logins say, for the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SshEvidence {
    pub attempts: usize,
    pub ok: usize,
    pub failed: usize,
    /// `ok / attempts`.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The longest stretch in which nobody could have logged in: from the
    /// start of a failed attempt to the start of the next successful one
    /// (or the end of the last failed one).
    pub longest_outage_s: f64,
    /// When that stretch began, seconds from `ready`.
    pub outage_from_s: Option<f64>,
    /// At least one login worked.
    pub could_log_in: bool,
    /// Failures by reason.
    pub errors: Vec<(String, usize)>,
    /// Success and latency over the window, in equal slices.
    pub over_time: Vec<SshSlice>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// The per-run keys (public fingerprints): fresh for every run.
    pub host_key: String,
    pub client_key: String,
    /// The host port QEMU forwarded to the guest's port 22 (on 127.0.0.1).
    pub port: u16,
}

/// How the probe was set up, for the evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SshSetup {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub host_key: String,
    pub client_key: String,
    pub port: u16,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// The longest outage and when it started (guest seconds).
pub fn longest_outage(attempts: &[SshAttempt]) -> (f64, Option<f64>) {
    let mut sorted: Vec<&SshAttempt> = attempts.iter().collect();
    sorted.sort_by(|a, b| a.t.total_cmp(&b.t));
    let (mut best, mut at) = (0.0f64, None);
    let mut start: Option<f64> = None;
    let mut last_end = f64::NAN;
    for a in sorted {
        if a.ok {
            if let Some(s) = start.take() {
                if a.t - s > best {
                    best = a.t - s;
                    at = Some(s);
                }
            }
        } else {
            start.get_or_insert(a.t);
            last_end = a.t + a.latency_ms / 1000.0;
        }
    }
    if let Some(s) = start {
        if last_end - s > best {
            best = last_end - s;
            at = Some(s);
        }
    }
    (best, at)
}

/// The evidence from `attempts`, `ready` and the window's end (guest
/// seconds), cut into `slices` equal stretches.
pub fn evidence(
    attempts: &[SshAttempt],
    setup: &SshSetup,
    ready: f64,
    end: f64,
    slices: usize,
) -> SshEvidence {
    let ok = attempts.iter().filter(|a| a.ok).count();
    let mut lat: Vec<f64> = attempts
        .iter()
        .filter(|a| a.ok)
        .map(|a| a.latency_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut errors: Vec<(String, usize)> = Vec::new();
    for a in attempts.iter().filter(|a| !a.ok) {
        let e = a.error.clone().unwrap_or_else(|| "failed".into());
        match errors.iter_mut().find(|(k, _)| *k == e) {
            Some((_, n)) => *n += 1,
            None => errors.push((e, 1)),
        }
    }
    let (outage, from) = longest_outage(attempts);
    let mut over_time = Vec::new();
    if end > ready && slices > 0 {
        let w = (end - ready) / slices as f64;
        for i in 0..slices {
            let (a, b) = (ready + w * i as f64, ready + w * (i + 1) as f64);
            let inside: Vec<&SshAttempt> = attempts
                .iter()
                .filter(|x| x.t >= a && (x.t < b || (i + 1 == slices && x.t <= b)))
                .collect();
            let mut l: Vec<f64> = inside
                .iter()
                .filter(|x| x.ok)
                .map(|x| x.latency_ms)
                .collect();
            l.sort_by(f64::total_cmp);
            over_time.push(SshSlice {
                from_s: round3(a - ready),
                to_s: round3(b - ready),
                ok: l.len(),
                failed: inside.len() - l.len(),
                p50_ms: percentile(&l, 0.5).map(round3),
            });
        }
    }
    SshEvidence {
        attempts: attempts.len(),
        ok,
        failed: attempts.len() - ok,
        success_rate: (!attempts.is_empty()).then(|| round3(ok as f64 / attempts.len() as f64)),
        p50_ms: percentile(&lat, 0.5).map(round3),
        p95_ms: percentile(&lat, 0.95).map(round3),
        max_ms: lat.last().copied().map(round3),
        longest_outage_s: round3(outage),
        outage_from_s: from.map(|f| round3(f - ready)),
        could_log_in: ok > 0,
        errors,
        over_time,
        interval_ms: setup.interval_ms,
        timeout_ms: setup.timeout_ms,
        host_key: setup.host_key.clone(),
        client_key: setup.client_key.clone(),
        port: setup.port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(t: f64, ok: bool, ms: f64) -> SshAttempt {
        SshAttempt {
            t,
            ok,
            latency_ms: ms,
            error: (!ok).then(|| "timeout".to_string()),
        }
    }

    #[test]
    fn outage_runs_from_first_failure_to_next_success() {
        let v = [
            a(1.0, true, 300.0),
            a(2.0, false, 10_000.0),
            a(12.0, false, 10_000.0),
            a(22.0, true, 900.0),
            a(23.0, false, 500.0),
        ];
        assert_eq!(longest_outage(&v), (20.0, Some(2.0)));
        // A failure at the end lasts until its own end.
        let tail = [a(1.0, true, 300.0), a(2.0, false, 10_000.0)];
        assert_eq!(longest_outage(&tail), (10.0, Some(2.0)));
        assert_eq!(longest_outage(&[a(1.0, true, 1.0)]), (0.0, None));
        assert_eq!(longest_outage(&[]), (0.0, None));
    }

    #[test]
    fn evidence_rates_latencies_and_slices() {
        let v = [
            a(10.5, true, 300.0),
            a(11.5, true, 500.0),
            a(12.5, false, 10_000.0),
            a(15.5, true, 700.0),
        ];
        let e = evidence(&v, &SshSetup::default(), 10.0, 16.0, 2);
        assert_eq!((e.attempts, e.ok, e.failed), (4, 3, 1));
        assert_eq!(e.success_rate, Some(0.75));
        assert_eq!(e.p50_ms, Some(500.0));
        assert_eq!(e.max_ms, Some(700.0));
        assert_eq!(e.longest_outage_s, 3.0);
        assert_eq!(e.outage_from_s, Some(2.5));
        assert!(e.could_log_in);
        assert_eq!(e.errors, vec![("timeout".to_string(), 1)]);
        assert_eq!(e.over_time.len(), 2);
        assert_eq!((e.over_time[0].ok, e.over_time[0].failed), (2, 1));
        assert_eq!((e.over_time[1].ok, e.over_time[1].failed), (1, 0));
        assert_eq!(e.over_time[1].to_s, 6.0);
    }
}
