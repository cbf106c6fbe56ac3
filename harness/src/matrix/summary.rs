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
    /// report.json), relative to the matrix folder, so a matrix folder can
    /// be moved, archived by CI and merged.
    pub dir: PathBuf,
    /// None: the run could not happen (`error` says why).
    pub verdict: Option<Verdict>,
    pub error: Option<String>,
    /// What the run measured (absent when it could not happen): enough to
    /// rebuild its cell when shards are merged.
    pub metrics: Option<RunMetrics>,
}

/// One judged run's numbers, from its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub why: String,
    pub wall_s: f64,
    pub boot_s: Option<f64>,
    pub kernel_release: Option<String>,
    pub kernel_sha256: Option<String>,
    pub accel: String,
    pub qemu_version: String,
    pub oom_kills: usize,
    pub user_kills: usize,
    pub kills_by: Vec<(String, usize)>,
    pub respawns: usize,
    pub worker_failures: usize,
    pub kill_rate_per_s: Option<f64>,
    pub first_oom_s: Option<f64>,
    pub recovery_s: Option<f64>,
    pub canary_max_late_ms: Option<f64>,
    pub canary_p99_late_ms: Option<f64>,
    pub availability: Option<f64>,
    pub window_s: f64,
    pub master_exited: bool,
    /// SSH logins, when the scenario probed them: success rate and the
    /// longest stretch nobody could have logged in.
    #[serde(default)]
    pub ssh_success_rate: Option<f64>,
    #[serde(default)]
    pub ssh_longest_outage_s: Option<f64>,
}

impl RunRef {
    /// The summary's record of one run; `dir` relative to the matrix folder.
    pub fn of(repeat: usize, dir: PathBuf, result: &RunResult) -> RunRef {
        match result {
            RunResult::Judged(r) => RunRef {
                repeat,
                dir,
                verdict: Some(r.verdict),
                error: None,
                metrics: Some(RunMetrics::of(r)),
            },
            RunResult::Failed(e) => RunRef {
                repeat,
                dir,
                verdict: None,
                error: Some(e.clone()),
                metrics: None,
            },
        }
    }
}

impl RunMetrics {
    fn of(r: &Report) -> RunMetrics {
        let e = &r.evidence;
        RunMetrics {
            why: r.why.clone(),
            wall_s: r.timings.wall_s,
            boot_s: r.timings.boot_s,
            kernel_release: r.kernel.release.clone(),
            kernel_sha256: r.kernel.sha256.clone(),
            accel: r.accel.as_str().to_string(),
            qemu_version: r.qemu_version.clone(),
            oom_kills: e.oom_kills,
            user_kills: e.user_kills,
            kills_by: e.kills_by.clone(),
            respawns: e.respawns,
            worker_failures: e.worker_failures,
            kill_rate_per_s: e.kill_rate_per_s,
            first_oom_s: e.first_oom_s,
            recovery_s: e.recovery_s,
            canary_max_late_ms: e.canary_max_late_ms,
            canary_p99_late_ms: e.canary_p99_late_ms,
            availability: e.availability,
            window_s: e.window_s,
            master_exited: e.master_exited,
            ssh_success_rate: e.ssh.as_ref().and_then(|x| x.success_rate),
            ssh_longest_outage_s: e.ssh.as_ref().map(|x| x.longest_outage_s),
        }
    }
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
    pub kernel_sha256: Option<String>,
    pub accel: Option<String>,
    pub qemu_version: Option<String>,
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
    /// Medians of the SSH probe, when the scenario has one.
    #[serde(default)]
    pub ssh_success_rate: Option<f64>,
    #[serde(default)]
    pub ssh_longest_outage_s: Option<f64>,
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
    /// Cells whose mitigation the kernel cannot apply (`n/a`, unexpected).
    #[serde(default)]
    pub skipped: usize,
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
    out: &Path,
    wall_s: f64,
    jobs: usize,
    repeat: usize,
) -> MatrixSummary {
    let mut sorted: Vec<&(Planned, RunResult)> = runs.iter().collect();
    sorted.sort_by_key(|(p, _)| p.index);
    let mut cells: Vec<(
        std::sync::Arc<crate::scenario::Scenario>,
        String,
        Vec<RunRef>,
    )> = Vec::new();
    for (p, r) in sorted {
        let rel = p.dir.strip_prefix(out).unwrap_or(&p.dir).to_path_buf();
        let run = RunRef::of(p.repeat, rel, r);
        match cells
            .iter_mut()
            .find(|(s, k, _)| s.name == p.scenario.name && *k == p.kernel)
        {
            Some((_, _, rs)) => rs.push(run),
            None => cells.push((p.scenario.clone(), p.kernel.clone(), vec![run])),
        }
    }
    let cells = cells
        .into_iter()
        .map(|(sc, kernel, rs)| cell(&sc, &kernel, rs))
        .collect();
    totals(cells, wall_s, jobs, repeat)
}

/// A summary's counts, from its cells.
pub fn totals(cells: Vec<CellSummary>, wall_s: f64, jobs: usize, repeat: usize) -> MatrixSummary {
    // A mitigation the kernel cannot apply is skipped, not failed (expect
    // `n/a` for that kernel to make it a plain match).
    let skipped = cells
        .iter()
        .filter(|c| !c.matches && c.verdict == Some(Verdict::NotApplicable))
        .count();
    let mismatched = cells
        .iter()
        .filter(|c| c.stable && !c.matches && c.verdict != Some(Verdict::NotApplicable))
        .count();
    let unstable = cells
        .iter()
        .filter(|c| !c.stable && !c.counts.contains_key("error"))
        .count();
    let runs = cells.iter().map(|c| c.runs.len()).sum();
    let errors = cells
        .iter()
        .flat_map(|c| &c.runs)
        .filter(|r| r.error.is_some())
        .count();
    MatrixSummary {
        cells,
        runs,
        jobs,
        repeat,
        wall_s: (wall_s * 10.0).round() / 10.0,
        mismatched,
        unstable,
        skipped,
        errors,
    }
}

/// One (scenario, kernel) cell from its runs.
pub fn cell(sc: &crate::scenario::Scenario, kernel: &str, runs: Vec<RunRef>) -> CellSummary {
    let ms: Vec<RunMetrics> = runs.iter().filter_map(|r| r.metrics.clone()).collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        let k = r.verdict.map_or("error", |v| v.as_str()).to_string();
        *counts.entry(k).or_default() += 1;
    }
    let stable = counts.len() == 1 && !counts.contains_key("error");
    let verdict = if stable {
        runs.first().and_then(|r| r.verdict)
    } else {
        None
    };
    let release = ms.iter().find_map(|m| m.kernel_release.clone());
    let expected = sc.expected_for(kernel, release.as_deref());
    let m = |f: &dyn Fn(&RunMetrics) -> Option<f64>| median(ms.iter().filter_map(f).collect());
    let mut c = CellSummary {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        mitigations: sc.mitigations.iter().map(|x| x.to_string()).collect(),
        kernel: kernel.to_string(),
        kernel_release: release,
        kernel_sha256: ms.iter().find_map(|m| m.kernel_sha256.clone()),
        accel: ms.first().map(|m| m.accel.clone()),
        qemu_version: ms
            .first()
            .map(|m| m.qemu_version.clone())
            .filter(|v| !v.is_empty()),
        expected,
        verdict,
        counts,
        stable,
        matches: stable && expected.is_none_or(|e| Some(e) == verdict),
        oom_kills: m(&|r| Some(r.oom_kills as f64)),
        user_kills: m(&|r| Some(r.user_kills as f64)),
        respawns: m(&|r| Some(r.respawns as f64)),
        kill_rate_per_s: m(&|r| r.kill_rate_per_s),
        first_oom_s: m(&|r| r.first_oom_s),
        recovery_s: m(&|r| r.recovery_s),
        canary_max_late_ms: m(&|r| r.canary_max_late_ms),
        canary_p99_late_ms: m(&|r| r.canary_p99_late_ms),
        availability: m(&|r| r.availability),
        failed_forks: m(&|r| Some(r.worker_failures as f64)),
        window_s: m(&|r| Some(r.window_s)),
        ssh_success_rate: m(&|r| r.ssh_success_rate),
        ssh_longest_outage_s: m(&|r| r.ssh_longest_outage_s),
        sentence: String::new(),
        runs,
    };
    c.sentence = sentence(&c, &ms);
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
pub fn sentence(c: &CellSummary, runs: &[RunMetrics]) -> String {
    if !c.stable {
        let parts: Vec<String> = c.counts.iter().map(|(v, k)| format!("{v} {k}x")).collect();
        return format!("unstable across repeats: {}", parts.join(", "));
    }
    let Some(v) = c.verdict else {
        return "could not run".into();
    };
    let first = runs.first();
    // Who killed, when it was not (only) the kernel: "(3 by the kernel, 15
    // by earlyoom)", medians over the cell's runs like the totals, so the
    // parts add up to the total the sentence gives.
    let mut killers: Vec<&str> = Vec::new();
    for (k, _) in runs.iter().flat_map(|r| &r.kills_by) {
        if !killers.contains(&k.as_str()) {
            killers.push(k);
        }
    }
    let by: Vec<(&str, f64)> = killers
        .into_iter()
        .map(|k| {
            let count = |r: &RunMetrics| {
                r.kills_by
                    .iter()
                    .find(|(x, _)| x == k)
                    .map_or(0.0, |(_, n)| *n as f64)
            };
            let med = if k == "kernel" {
                c.oom_kills
            } else {
                median(runs.iter().map(count).collect())
            };
            (k, med.unwrap_or(0.0))
        })
        .collect();
    let killer = match by.as_slice() {
        [] => String::new(),
        [("kernel", _)] => String::new(),
        [(k, _)] => format!(" by {k}"),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|(k, count)| {
                    let who = if *k == "kernel" { "the kernel" } else { k };
                    format!("{} by {who}", n(Some(*count)))
                })
                .collect();
            format!(" ({})", parts.join(", "))
        }
    };
    let master_gone = first.is_some_and(|r| r.master_exited);
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
        "{} cell(s), {} run(s), {} at a time, {:.1} s wall; {} mismatched, {} unstable, {} n/a, {} run(s) failed",
        s.cells.len(),
        s.runs,
        s.jobs,
        s.wall_s,
        s.mismatched,
        s.unstable,
        s.skipped,
        s.errors
    )
}

/// Scenarios run on more than one kernel, each with its cells in kernel
/// order: the comparison view.
pub fn by_kernel(s: &MatrixSummary) -> Vec<(&str, Vec<&CellSummary>)> {
    let mut out: Vec<(&str, Vec<&CellSummary>)> = Vec::new();
    for c in &s.cells {
        match out.iter_mut().find(|(n, _)| *n == c.scenario) {
            Some((_, v)) => v.push(c),
            None => out.push((&c.scenario, vec![c])),
        }
    }
    out.retain(|(_, v)| v.len() > 1);
    out
}

const COMPARE_HEADER: [&str; 7] = [
    "kernel",
    "release",
    "verdict",
    "kills/s",
    "1st OOM s",
    "settled after s",
    "canary max/p99 ms",
];

fn compare_rows(cells: &[&CellSummary]) -> Vec<[String; 7]> {
    cells
        .iter()
        .map(|c| {
            [
                c.kernel.clone(),
                c.kernel_release.clone().unwrap_or_else(|| "-".into()),
                verdict_cell(c),
                n(c.kill_rate_per_s),
                n(c.first_oom_s),
                n(c.recovery_s),
                format!("{}/{}", n(c.canary_max_late_ms), n(c.canary_p99_late_ms)),
            ]
        })
        .collect()
}

/// Per scenario, one row per kernel: a behaviour change between kernels
/// shows at a glance.
pub fn render_comparison_terminal(s: &MatrixSummary) -> String {
    let mut out = String::new();
    for (name, cells) in by_kernel(s) {
        let rows = compare_rows(&cells);
        let mut width = COMPARE_HEADER.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let _ = writeln!(out, "\n{name}, kernel by kernel:");
        for r in std::iter::once(COMPARE_HEADER.map(String::from)).chain(rows) {
            for (i, c) in r.iter().enumerate() {
                let _ = write!(out, "  {c:<w$}", w = width[i]);
            }
            out.push('\n');
        }
    }
    out
}

fn render_comparison_markdown(s: &MatrixSummary) -> String {
    let mut out = String::new();
    for (name, cells) in by_kernel(s) {
        let _ = writeln!(out, "\n## {name}, kernel by kernel\n");
        let _ = writeln!(out, "| {} |", COMPARE_HEADER.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(COMPARE_HEADER.len()));
        for r in compare_rows(&cells) {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    }
    out
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
    out.push_str(&render_comparison_terminal(s));
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
    out.push_str(&render_comparison_markdown(s));
    let _ = writeln!(out, "\n{}", footer(s));
    out
}

/// `summary.json`, `summary.md` and `report.html` in `out`, each written
/// atomically.
/// The files a matrix writes at its end.
pub const OUTPUTS: [&str; 6] = [
    "summary.json",
    "summary.md",
    "junit.xml",
    "results.ktap",
    "kcidb.json",
    "report.html",
];

/// Every output of a matrix in `out`, each written atomically:
/// `summary.json`, `summary.md`, `report.html`, and for CI `junit.xml`,
/// `results.ktap` and `kcidb.json`.
pub fn write_all(out: &Path, s: &MatrixSummary) -> std::io::Result<()> {
    use super::formats;
    crate::report::write_json(&out.join("summary.json"), s)?;
    crate::atomic::write_bytes(&out.join("summary.md"), render_markdown(s).as_bytes())?;
    crate::atomic::write_bytes(&out.join("junit.xml"), formats::junit(s).as_bytes())?;
    crate::atomic::write_bytes(&out.join("results.ktap"), formats::ktap(s).as_bytes())?;
    crate::report::write_json(
        &out.join("kcidb.json"),
        &formats::kcidb(s, out, &formats::host_name()),
    )?;
    let html = super::html::render(s, out);
    crate::atomic::write_bytes(&out.join("report.html"), html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn run(repeat: usize, kernel: usize, earlyoom: usize) -> RunRef {
        let kills_by: Vec<(String, usize)> = [("kernel", kernel), ("earlyoom", earlyoom)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        let metrics: RunMetrics = serde_json::from_value(serde_json::json!({
            "why": "", "wall_s": 9.0, "boot_s": 2.0, "kernel_release": null,
            "kernel_sha256": null, "accel": "tcg", "qemu_version": "",
            "oom_kills": kernel, "user_kills": earlyoom, "kills_by": kills_by,
            "respawns": kernel + earlyoom, "worker_failures": 0,
            "kill_rate_per_s": 3.0, "first_oom_s": 1.0, "recovery_s": null,
            "canary_max_late_ms": 5.0, "canary_p99_late_ms": 4.0,
            "availability": 0.98, "window_s": 7.0, "master_exited": false
        }))
        .unwrap();
        RunRef {
            repeat,
            dir: PathBuf::from(format!("run-{repeat}")),
            verdict: Some(Verdict::Livelock),
            error: None,
            metrics: Some(metrics),
        }
    }

    /// Over repeats, who killed is given as medians like the total, so the
    /// parts add up to it (not the first run's split beside the medians).
    #[test]
    fn the_killers_split_adds_up_to_the_total_over_repeats() {
        let sc = Scenario::parse(Path::new("e.yaml"), "name: e\nexpect: livelock\n").unwrap();
        let c = cell(&sc, "k", vec![run(1, 7, 13), run(2, 3, 15), run(3, 2, 16)]);
        assert_eq!(c.oom_kills, Some(3.0));
        assert_eq!(c.user_kills, Some(15.0));
        assert!(
            c.sentence
                .starts_with("loop continues: 18 kills (3 by the kernel, 15 by earlyoom) at 3/s"),
            "{}",
            c.sentence
        );
        // One killer only: named, no split.
        let c = cell(&sc, "k", vec![run(1, 0, 9)]);
        assert!(
            c.sentence
                .starts_with("loop continues: 9 kills by earlyoom"),
            "{}",
            c.sentence
        );
        let c = cell(&sc, "k", vec![run(1, 9, 0)]);
        assert!(
            c.sentence.starts_with("loop continues: 9 kills at"),
            "{}",
            c.sentence
        );
    }
}
