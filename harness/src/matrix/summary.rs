//! From the runs of a matrix to its cells: verdicts across repeats,
//! medians of what was measured, and a sentence per cell saying what the
//! mitigation did; then the terminal table, Markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Planned, RunResult};
use crate::report::Report;
use crate::verdict::Verdict;

/// One run of a cell, as the summary keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRef {
    pub repeat: usize,
    /// The run's folder (console.log, telemetry.jsonl, timeline.jsonl,
    /// report.json).
    pub dir: PathBuf,
    /// None: the run could not happen (`error` says why).
    pub verdict: Option<Verdict>,
    pub error: Option<String>,
    pub wall_s: Option<f64>,
    pub boot_s: Option<f64>,
    pub kill_rate_per_s: Option<f64>,
}

/// One (scenario, kernel) cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSummary {
    pub scenario: String,
    pub description: String,
    /// The mitigations under test, as `kind field=value ...`.
    pub mitigations: Vec<String>,
    pub kernel: String,
    pub kernel_release: Option<String>,
    pub accel: Option<String>,
    pub expected: Option<Verdict>,
    /// The verdict when every repeat agreed; None when unstable or failed.
    pub verdict: Option<Verdict>,
    /// Runs per verdict (`error` for runs that could not happen).
    pub counts: BTreeMap<String, usize>,
    pub stable: bool,
    /// Stable, and the verdict is the expected one (or none is expected).
    pub matches: bool,
    /// Medians over the judged runs.
    pub oom_kills: Option<f64>,
    pub user_kills: Option<f64>,
    pub respawns: Option<f64>,
    pub kill_rate_per_s: Option<f64>,
    pub first_oom_s: Option<f64>,
    pub recovery_s: Option<f64>,
    pub canary_max_late_ms: Option<f64>,
    pub canary_p99_late_ms: Option<f64>,
    pub availability: Option<f64>,
    pub failed_forks: Option<f64>,
    pub window_s: Option<f64>,
    /// What the mitigation did, in one line.
    pub sentence: String,
    pub runs: Vec<RunRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixSummary {
    pub cells: Vec<CellSummary>,
    pub runs: usize,
    pub jobs: usize,
    pub repeat: usize,
    /// Wall seconds for the whole matrix, preparation included.
    pub wall_s: f64,
    pub mismatched: usize,
    pub unstable: usize,
    /// Runs that could not happen.
    pub errors: usize,
}

impl MatrixSummary {
    /// 0: every cell stable and as expected; 1: some cell differs or is
    /// unstable; 3: some run could not happen.
    pub fn exit_code(&self) -> u8 {
        if self.errors > 0 {
            3
        } else if self.mismatched > 0 || self.unstable > 0 {
            1
        } else {
            0
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((m * 1000.0).round() / 1000.0)
}

/// Cells in the order the scenarios were given, kernels in order.
pub fn summarize(
    runs: &[(Planned, RunResult)],
    wall_s: f64,
    jobs: usize,
    repeat: usize,
) -> MatrixSummary {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_cell: BTreeMap<(String, String), Vec<&(Planned, RunResult)>> = BTreeMap::new();
    let mut sorted: Vec<&(Planned, RunResult)> = runs.iter().collect();
    sorted.sort_by_key(|(p, _)| p.index);
    for r in sorted {
        let key = (r.0.scenario.name.clone(), r.0.kernel.clone());
        if !by_cell.contains_key(&key) {
            order.push(key.clone());
        }
        by_cell.entry(key).or_default().push(r);
    }
    let mut cells = Vec::new();
    for key in order {
        let rs = &by_cell[&key];
        cells.push(cell(rs));
    }
    // Scenarios in the order given, kernels in the order given: the plan
    // is repeat-major, so the first pass already has that order.
    let mismatched = cells.iter().filter(|c| c.stable && !c.matches).count();
    let unstable = cells.iter().filter(|c| !c.stable).count();
    let errors = runs
        .iter()
        .filter(|(_, r)| matches!(r, RunResult::Failed(_)))
        .count();
    MatrixSummary {
        cells,
        runs: runs.len(),
        jobs,
        repeat,
        wall_s: (wall_s * 10.0).round() / 10.0,
        mismatched,
        unstable,
        errors,
    }
}

fn cell(rs: &[&(Planned, RunResult)]) -> CellSummary {
    let planned = &rs[0].0;
    let sc = &planned.scenario;
    let reports: Vec<&Report> = rs
        .iter()
        .filter_map(|(_, r)| match r {
            RunResult::Judged(rep) => Some(rep.as_ref()),
            RunResult::Failed(_) => None,
        })
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in rs {
        let k = match r {
            RunResult::Judged(rep) => rep.verdict.as_str().to_string(),
            RunResult::Failed(_) => "error".to_string(),
        };
        *counts.entry(k).or_default() += 1;
    }
    let stable = counts.len() == 1 && !counts.contains_key("error");
    let verdict = if stable {
        reports.first().map(|r| r.verdict)
    } else {
        None
    };
    let release = reports.iter().find_map(|r| r.kernel.release.clone());
    let expected = sc.expected_for(&planned.kernel, release.as_deref());
    let m =
        |f: &dyn Fn(&Report) -> Option<f64>| median(reports.iter().filter_map(|r| f(r)).collect());
    let mut c = CellSummary {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        mitigations: sc.mitigations.iter().map(|x| x.to_string()).collect(),
        kernel: planned.kernel.clone(),
        kernel_release: release,
        accel: reports.first().map(|r| r.accel.as_str().to_string()),
        expected,
        verdict,
        counts,
        stable,
        matches: stable && expected.is_none_or(|e| Some(e) == verdict),
        oom_kills: m(&|r| Some(r.evidence.oom_kills as f64)),
        user_kills: m(&|r| Some(r.evidence.user_kills as f64)),
        respawns: m(&|r| Some(r.evidence.respawns as f64)),
        kill_rate_per_s: m(&|r| r.evidence.kill_rate_per_s),
        first_oom_s: m(&|r| r.evidence.first_oom_s),
        recovery_s: m(&|r| r.evidence.recovery_s),
        canary_max_late_ms: m(&|r| r.evidence.canary_max_late_ms),
        canary_p99_late_ms: m(&|r| r.evidence.canary_p99_late_ms),
        availability: m(&|r| r.evidence.availability),
        failed_forks: m(&|r| Some(r.evidence.worker_failures as f64)),
        window_s: m(&|r| Some(r.evidence.window_s)),
        sentence: String::new(),
        runs: rs
            .iter()
            .map(|(p, r)| match r {
                RunResult::Judged(rep) => RunRef {
                    repeat: p.repeat,
                    dir: p.dir.clone(),
                    verdict: Some(rep.verdict),
                    error: None,
                    wall_s: Some(rep.timings.wall_s),
                    boot_s: rep.timings.boot_s,
                    kill_rate_per_s: rep.evidence.kill_rate_per_s,
                },
                RunResult::Failed(e) => RunRef {
                    repeat: p.repeat,
                    dir: p.dir.clone(),
                    verdict: None,
                    error: Some(e.clone()),
                    wall_s: None,
                    boot_s: None,
                    kill_rate_per_s: None,
                },
            })
            .collect(),
    };
    c.sentence = sentence(&c, reports.first().copied());
    c
}

fn n(v: Option<f64>) -> String {
    match v {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

/// What the mitigation did, in one line a person can act on.
pub fn sentence(c: &CellSummary, first: Option<&Report>) -> String {
    if !c.stable {
        let parts: Vec<String> = c.counts.iter().map(|(v, k)| format!("{v} {k}x")).collect();
        return format!("unstable across repeats: {}", parts.join(", "));
    }
    let Some(v) = c.verdict else {
        return "could not run".into();
    };
    let by = first
        .map(|r| r.evidence.kills_by.clone())
        .unwrap_or_default();
    // Who killed, when it was not (only) the kernel: "(5 by earlyoom, 3 by
    // the kernel)", from the first run.
    let killer = match by.as_slice() {
        [] => String::new(),
        [(k, _)] if k == "kernel" => String::new(),
        [(k, _)] => format!(" by {k}"),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|(k, n)| {
                    format!(
                        "{n} by {}",
                        if k == "kernel" {
                            "the kernel"
                        } else {
                            k.as_str()
                        }
                    )
                })
                .collect();
            format!(" ({})", parts.join(", "))
        }
    };
    let master_gone = first.is_some_and(|r| r.evidence.master_exited);
    match v {
        Verdict::Livelock => format!(
            "loop continues: {} kills{killer} at {}/s, each re-forked worker killed again",
            n(c.oom_kills.zip(c.user_kills).map(|(a, b)| a + b).or(c.oom_kills)),
            n(c.kill_rate_per_s)
        ),
        Verdict::Recovered if master_gone => format!(
            "ends the loop after {} kill(s){killer} ({} s to settle); the service is down until restarted",
            n(c.oom_kills.zip(c.user_kills).map(|(a, b)| a + b).or(c.oom_kills)),
            n(c.recovery_s)
        ),
        Verdict::Recovered => format!(
            "the loop stops after {} kill(s){killer}; the service keeps running",
            n(c.oom_kills.zip(c.user_kills).map(|(a, b)| a + b).or(c.oom_kills))
        ),
        Verdict::NoOom => {
            let fails = c.failed_forks.unwrap_or(0.0);
            if fails > 0.0 {
                format!(
                    "no OOM, but {} failed workers re-forked in {} s",
                    n(Some(fails)),
                    n(c.window_s)
                )
            } else {
                format!("no OOM in {} s", n(c.window_s))
            }
        }
        Verdict::Panic => "the first OOM panics the kernel: the node reboots".into(),
        Verdict::NotApplicable => format!(
            "cannot apply on this kernel: {}",
            first.map_or(String::new(), |r| r
                .why
                .trim_start_matches("mitigation not applied: ")
                .to_string())
        ),
        Verdict::Hang => "the guest hangs".into(),
        Verdict::BootFailure => "the guest does not boot".into(),
        Verdict::Thrashing => "the guest stops answering (thrashing)".into(),
        Verdict::Inconclusive => format!(
            "inconclusive: {}",
            first.map_or(String::new(), |r| r.why.clone())
        ),
    }
}

fn verdict_cell(c: &CellSummary) -> String {
    let v = match c.verdict {
        Some(v) => v.as_str().to_string(),
        None if c.stable => "error".into(),
        None => "UNSTABLE".into(),
    };
    match (c.expected, c.matches) {
        (_, true) => v,
        (Some(e), false) if c.stable => format!("{v} (want {e})"),
        _ => v,
    }
}

/// The table for the terminal (fixed-width) and for Markdown.
fn rows(s: &MatrixSummary) -> Vec<[String; 9]> {
    s.cells
        .iter()
        .map(|c| {
            [
                c.scenario.clone(),
                c.kernel.clone(),
                verdict_cell(c),
                n(c.oom_kills.zip(c.user_kills).map(|(a, b)| a + b)),
                n(c.kill_rate_per_s),
                n(c.first_oom_s),
                n(c.canary_max_late_ms),
                c.availability
                    .map_or("-".into(), |a| format!("{:.0}%", a * 100.0)),
                c.sentence.clone(),
            ]
        })
        .collect()
}

const HEADER: [&str; 9] = [
    "scenario",
    "kernel",
    "verdict",
    "kills",
    "kills/s",
    "1st OOM s",
    "canary max ms",
    "full strength",
    "what it did",
];

fn footer(s: &MatrixSummary) -> String {
    format!(
        "{} cell(s), {} run(s), {} at a time, {:.1} s wall; {} mismatched, {} unstable, {} run(s) failed",
        s.cells.len(),
        s.runs,
        s.jobs,
        s.wall_s,
        s.mismatched,
        s.unstable,
        s.errors
    )
}

pub fn render_terminal(s: &MatrixSummary) -> String {
    let rows = rows(s);
    let mut width = HEADER.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r.iter()).take(8) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: &[String]| {
        for (i, c) in cols.iter().enumerate() {
            if i < 8 {
                let _ = write!(out, "{c:<w$}  ", w = width[i]);
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    };
    line(&mut out, &HEADER.map(String::from));
    for r in &rows {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{}", footer(s));
    out
}

pub fn render_markdown(s: &MatrixSummary) -> String {
    let mut out = String::from("# oomlab matrix\n\n");
    let esc = |c: &str| c.replace('|', "\\|");
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for r in rows(s) {
        let cols: Vec<String> = r.iter().map(|c| esc(c)).collect();
        let _ = writeln!(out, "| {} |", cols.join(" | "));
    }
    let _ = writeln!(out, "\n{}", footer(s));
    out
}

/// `summary.json`, `summary.md` and `report.html` in `out`, each written
/// atomically.
pub fn write_all(out: &Path, s: &MatrixSummary) -> std::io::Result<()> {
    crate::report::write_json(&out.join("summary.json"), s)?;
    crate::atomic::write_bytes(&out.join("summary.md"), render_markdown(s).as_bytes())?;
    let html = super::html::render(s, out);
    crate::atomic::write_bytes(&out.join("report.html"), html.as_bytes())
}
