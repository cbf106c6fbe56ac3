//! `cargo xtask bench`: repeated runs of the seed scenario, summarised.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

const SCENARIO: &str = "scenarios/seed-livelock.yaml";

/// What one run's JSON report says.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub boot_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub verdict: String,
    pub oom_kills: Option<f64>,
    /// Whole command, process start to exit (kernel check and accelerator
    /// decision included), measured here.
    pub command_s: Option<f64>,
}

pub fn parse_report(json: &Value) -> RunResult {
    let num = |ptr: &str| json.pointer(ptr).and_then(Value::as_f64);
    let verdict = match json.get("verdict") {
        Some(Value::String(s)) => s.clone(),
        // A structured verdict: take its kind/name if it has one.
        Some(v) => v
            .get("kind")
            .or_else(|| v.get("name"))
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string),
        None => "?".to_string(),
    };
    RunResult {
        boot_s: num("/timings/boot_s"),
        wall_s: num("/timings/wall_s"),
        verdict,
        oom_kills: num("/evidence/oom_kills"),
        command_s: None,
    }
}

/// (min, median, max) of the present values.
pub fn stats(values: impl IntoIterator<Item = Option<f64>>) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], median, v[n - 1]))
}

/// Seconds with two decimals.
fn secs(v: f64) -> String {
    format!("{v:.2}")
}

/// Counts as integers, unless a median falls between two.
fn count(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The markdown table printed and written to target/bench/seed.md.
pub fn markdown(runs: &[RunResult], header: &str) -> String {
    let mut s = format!(
        "{header}\n\nboot_s: QEMU start to the payload's `ready`; wall_s: QEMU start to the verdict; command_s: `oomlab run` start to exit.\n\n| run | verdict | boot_s | wall_s | command_s | oom_kills |\n|---|---|---|---|---|---|\n"
    );
    let cell = |x: Option<f64>, f: fn(f64) -> String| x.map_or("-".to_string(), f);
    for (i, r) in runs.iter().enumerate() {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            r.verdict,
            cell(r.boot_s, secs),
            cell(r.wall_s, secs),
            cell(r.command_s, secs),
            cell(r.oom_kills, count)
        );
    }
    s += "\n| metric | min | median | max |\n|---|---|---|---|\n";
    type Field = fn(&RunResult) -> Option<f64>;
    type Format = fn(f64) -> String;
    let rows: [(&str, Field, Format); 4] = [
        ("boot_s", |r| r.boot_s, secs),
        ("wall_s", |r| r.wall_s, secs),
        ("command_s", |r| r.command_s, secs),
        ("oom_kills", |r| r.oom_kills, count),
    ];
    for (name, get, f) in rows {
        match stats(runs.iter().map(get)) {
            Some((lo, mid, hi)) => {
                s += &format!("| {name} | {} | {} | {} |\n", f(lo), f(mid), f(hi))
            }
            None => s += &format!("| {name} | - | - | - |\n"),
        }
    }
    s
}

/// What to time: the seed scenario by default, on its default kernel.
#[derive(Debug, Default, Clone)]
pub struct BenchSpec {
    pub scenario: Option<std::path::PathBuf>,
    pub kernel: Option<String>,
    /// Names the markdown file (`target/bench/<label>.md`) and its title.
    pub label: Option<String>,
}

/// The release build of `oomlab` every benchmark times.
pub fn release_oomlab(root: &Path) -> Result<std::path::PathBuf> {
    crate::cargo(&["build", "--release", "-p", "oomlab"])?;
    let bin = oomlab::image::payload::target_dir(root).join("release/oomlab");
    if !bin.is_file() {
        bail!("{} missing after the release build", bin.display());
    }
    Ok(bin)
}

/// A benchmark's table: printed, and written where it says.
pub fn publish(md: &str, path: &Path) -> Result<()> {
    println!("\n{md}");
    std::fs::write(path, md).with_context(|| format!("write {}", path.display()))?;
    println!("written to {}", path.display());
    Ok(())
}

pub fn bench(root: &Path, runs: usize, spec: &BenchSpec) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let scenario = spec
        .scenario
        .as_ref()
        .map_or_else(|| SCENARIO.to_string(), |p| p.display().to_string());
    let label = spec.label.clone().unwrap_or_else(|| "seed".to_string());
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("--label `{label}`: use letters, digits, . _ -");
    }
    let bin = release_oomlab(root)?;
    let out_dir = root.join("target/bench").join(&label);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let mut results = Vec::new();
    for i in 1..=runs {
        let json = out_dir.join(format!("r{i}.json"));
        let _ = std::fs::remove_file(&json);
        let run_dir = out_dir.join(format!("r{i}"));
        let _ = std::fs::remove_dir_all(&run_dir);
        println!(
            "+ oomlab run {scenario} --json {}  ({i}/{runs})",
            json.display()
        );
        let started = std::time::Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.args(["run", &scenario, "--json"])
            .arg(&json)
            .arg("--out")
            .arg(&run_dir);
        if let Some(k) = &spec.kernel {
            cmd.args(["--kernel", k]);
        }
        let status = cmd
            .status()
            .with_context(|| format!("run {}", bin.display()))?;
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("run {i} ({status}) wrote no report at {}", json.display()))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("parse {}", json.display()))?;
        let mut r = parse_report(&value);
        r.command_s = Some(started.elapsed().as_secs_f64());
        results.push(r);
    }
    let kernel = spec.kernel.as_deref().unwrap_or("its default kernel");
    let md = markdown(
        &results,
        &format!("# {label}: {scenario} on {kernel}: {runs} runs"),
    );
    publish(&md, &root.join("target/bench").join(format!("{label}.md")))
}

/// One matrix run's summary.json, as the comparison needs it.
struct MatrixRun {
    jobs: usize,
    wall_s: f64,
    runs: usize,
    mismatched: u64,
    unstable: u64,
    /// scenario -> (verdict or UNSTABLE, median kill rate)
    cells: Vec<(String, String, Option<f64>)>,
}

fn read_matrix(jobs: usize, summary: &Value) -> MatrixRun {
    let cells = summary["cells"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["scenario"].as_str().unwrap_or("?").to_string(),
                        c["verdict"]
                            .as_str()
                            .map_or_else(|| "UNSTABLE".to_string(), str::to_string),
                        c["kill_rate_per_s"].as_f64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    MatrixRun {
        jobs,
        wall_s: summary["wall_s"].as_f64().unwrap_or(f64::NAN),
        runs: summary["runs"].as_u64().unwrap_or(0) as usize,
        mismatched: summary["mismatched"].as_u64().unwrap_or(0),
        unstable: summary["unstable"].as_u64().unwrap_or(0),
        cells,
    }
}

/// The comparison table: wall time per `--jobs`, and per cell the verdict
/// and kill rate with one guest at a time and with several.
fn matrix_markdown(runs: &[MatrixRun], repeat: usize) -> String {
    let mut s = format!(
        "# oomlab matrix scenarios/*.yaml --repeat {repeat}: one guest at a time vs several\n\n| jobs | runs | wall s | s per run | mismatched | unstable |\n|---|---|---|---|---|---|\n"
    );
    for r in runs {
        s += &format!(
            "| {} | {} | {:.1} | {:.2} | {} | {} |\n",
            r.jobs,
            r.runs,
            r.wall_s,
            r.wall_s / r.runs.max(1) as f64,
            r.mismatched,
            r.unstable
        );
    }
    let Some(first) = runs.first() else {
        return s;
    };
    s += "\n| scenario |";
    for r in runs {
        s += &format!(" verdict (jobs {0}) | kills/s (jobs {0}) |", r.jobs);
    }
    s += "\n|---|";
    s += &"---|---|".repeat(runs.len());
    s += "\n";
    for (name, _, _) in &first.cells {
        s += &format!("| {name} |");
        for r in runs {
            match r.cells.iter().find(|c| &c.0 == name) {
                Some((_, v, k)) => {
                    s += &format!(" {v} | {} |", k.map_or("-".into(), |k| format!("{k:.2}")))
                }
                None => s += " - | - |",
            }
        }
        s += "\n";
    }
    s
}

/// `cargo xtask bench-matrix`: the whole matrix with one guest at a time,
/// then with one per core; wall times and kill rates side by side in
/// target/bench/matrix.md.
pub fn bench_matrix(root: &Path, repeat: usize, jobs: &[usize]) -> Result<()> {
    let bin = release_oomlab(root)?;
    let mut scenarios: Vec<String> = std::fs::read_dir(root.join("scenarios"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    scenarios.sort();
    let out_dir = root.join("target/bench");
    let mut results = Vec::new();
    for &j in jobs {
        let out = out_dir.join(format!("matrix-jobs{j}"));
        let _ = std::fs::remove_dir_all(&out);
        println!(
            "+ oomlab matrix scenarios/*.yaml --jobs {j} --repeat {repeat} --out {}",
            out.display()
        );
        let status = Command::new(&bin)
            .args([
                "matrix",
                "--jobs",
                &j.to_string(),
                "--repeat",
                &repeat.to_string(),
                "--out",
            ])
            .arg(&out)
            .args(&scenarios)
            .status()
            .with_context(|| format!("run {}", bin.display()))?;
        let path = out.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("matrix ({status}) wrote no {}", path.display()))?;
        results.push(read_matrix(j, &serde_json::from_str(&text)?));
    }
    let md = matrix_markdown(&results, repeat);
    publish(&md, &out_dir.join("matrix.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_comparison_table() {
        let v = |jobs: usize, rate: f64| {
            read_matrix(
                jobs,
                &serde_json::json!({"wall_s": 80.0, "runs": 16, "mismatched": 0, "unstable": 1,
                    "cells": [{"scenario": "seed", "verdict": "livelock", "kill_rate_per_s": rate},
                              {"scenario": "x", "verdict": null}]}),
            )
        };
        let md = matrix_markdown(&[v(1, 5.0), v(2, 4.25)], 1);
        assert!(md.contains("| 2 | 16 | 80.0 | 5.00 | 0 | 1 |"), "{md}");
        assert!(
            md.contains("| seed | livelock | 5.00 | livelock | 4.25 |"),
            "{md}"
        );
        assert!(md.contains("| x | UNSTABLE | - | UNSTABLE | - |"), "{md}");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(
            stats([Some(3.0), Some(1.0), Some(2.0)]),
            Some((1.0, 2.0, 3.0))
        );
        assert_eq!(stats([Some(4.0), None, Some(1.0)]), Some((1.0, 2.5, 4.0)));
        assert_eq!(stats([None]), None);
    }

    #[test]
    fn reads_report_fields() {
        let v: Value = serde_json::json!({
            "verdict": "livelock",
            "timings": {"boot_s": 1.9, "wall_s": 14.0},
            "evidence": {"oom_kills": 120}
        });
        let r = parse_report(&v);
        assert_eq!(r.verdict, "livelock");
        assert_eq!(r.boot_s, Some(1.9));
        assert_eq!(r.oom_kills, Some(120.0));
        let r = parse_report(&serde_json::json!({"verdict": {"kind": "recovered"}}));
        assert_eq!((r.verdict.as_str(), r.wall_s), ("recovered", None));
    }

    #[test]
    fn markdown_has_rows_and_summary() {
        let r = RunResult {
            boot_s: Some(1.0),
            wall_s: Some(2.0),
            verdict: "livelock".into(),
            oom_kills: None,
            command_s: Some(3.0),
        };
        let kills = RunResult {
            oom_kills: Some(30.0),
            ..r.clone()
        };
        assert!(markdown(&[kills], "").contains("| 1 | livelock | 1.00 | 2.00 | 3.00 | 30 |"));
        let md = markdown(&[r.clone(), r], "# t");
        assert!(
            md.contains("| 2 | livelock | 1.00 | 2.00 | 3.00 | - |"),
            "{md}"
        );
        assert!(md.contains("| wall_s | 2.00 | 2.00 | 2.00 |"));
        assert!(md.contains("| oom_kills | - | - | - |"));
    }
}
