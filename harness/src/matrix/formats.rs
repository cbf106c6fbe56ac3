//! The matrix in the formats kernel CI already reads: JUnit XML, KTAP
//! (`Documentation/dev-tools/ktap.rst`) and KCIDB JSON (schema v5.3). One
//! test per (kernel, scenario) cell: pass when stable and as expected, fail
//! when not, skip when the mitigation cannot be applied (`n/a`), error when
//! a run could not happen.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::summary::{CellSummary, MatrixSummary};
use crate::verdict::Verdict;

/// How a cell counts for CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    Error,
}

pub fn outcome(c: &CellSummary) -> Outcome {
    if c.counts.contains_key("error") {
        Outcome::Error
    } else if c.verdict == Some(Verdict::NotApplicable)
        && c.expected != Some(Verdict::NotApplicable)
    {
        Outcome::Skip
    } else if c.matches {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

/// Why a cell failed, was skipped or errored, in one line.
fn reason(c: &CellSummary) -> String {
    let line = |s: &str| s.replace(['\n', '\r'], " ");
    match outcome(c) {
        Outcome::Pass => line(&c.sentence),
        Outcome::Skip => line(
            c.sentence
                .trim_start_matches("cannot apply on this kernel: "),
        ),
        Outcome::Error => {
            let errors: Vec<&str> = c.runs.iter().filter_map(|r| r.error.as_deref()).collect();
            line(&format!("could not run: {}", errors.join("; ")))
        }
        Outcome::Fail if !c.stable => line(&c.sentence),
        Outcome::Fail => line(&format!(
            "verdict {} but {} expected: {}",
            c.verdict.map_or("-", |v| v.as_str()),
            c.expected.map_or("-", |v| v.as_str()),
            c.sentence
        )),
    }
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn secs(c: &CellSummary) -> f64 {
    let walls: Vec<f64> = c
        .runs
        .iter()
        .filter_map(|r| r.metrics.as_ref().map(|m| m.wall_s))
        .collect();
    walls.iter().sum::<f64>()
}

/// Kernels in the order their first cell appears.
fn kernels(s: &MatrixSummary) -> Vec<&str> {
    let mut k: Vec<&str> = Vec::new();
    for c in &s.cells {
        if !k.contains(&c.kernel.as_str()) {
            k.push(&c.kernel);
        }
    }
    k
}

/// JUnit XML: a `<testsuite>` per kernel, a `<testcase>` per scenario;
/// valid against both Jenkins' junit-4 and junit-10 schemas (children in
/// their fixed order, `<skipped/>` without attributes, plain decimal times).
pub fn junit(s: &MatrixSummary) -> String {
    let count = |f: &dyn Fn(Outcome) -> bool| s.cells.iter().filter(|c| f(outcome(c))).count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        r#"<testsuites name="oomlab" tests="{}" failures="{}" errors="{}" time="{:.3}">"#,
        s.cells.len(),
        count(&|x| x == Outcome::Fail),
        count(&|x| x == Outcome::Error),
        s.wall_s
    );
    for k in kernels(s) {
        let cells: Vec<&CellSummary> = s.cells.iter().filter(|c| c.kernel == k).collect();
        let n = |want: Outcome| cells.iter().filter(|c| outcome(c) == want).count();
        let time: f64 = cells.iter().map(|c| secs(c)).sum();
        let _ = writeln!(
            o,
            r#"  <testsuite name="{}" tests="{}" failures="{}" errors="{}" skipped="{}" time="{:.3}">"#,
            xml(k),
            cells.len(),
            n(Outcome::Fail),
            n(Outcome::Error),
            n(Outcome::Skip),
            time
        );
        for c in cells {
            let _ = write!(
                o,
                r#"    <testcase name="{}" classname="oomlab.{}" time="{:.3}">"#,
                xml(&c.scenario),
                xml(&c.kernel),
                secs(c)
            );
            match outcome(c) {
                Outcome::Pass => {}
                Outcome::Skip => o.push_str("<skipped/>"),
                Outcome::Fail => {
                    let _ = write!(
                        o,
                        r#"<failure type="{}" message="{}">{}</failure>"#,
                        if c.stable { "mismatch" } else { "unstable" },
                        xml(&reason(c)),
                        xml(&reason(c))
                    );
                }
                Outcome::Error => {
                    let _ = write!(
                        o,
                        r#"<error type="run" message="{0}">{0}</error>"#,
                        xml(&reason(c))
                    );
                }
            }
            let _ = writeln!(
                o,
                "<system-out>{}</system-out></testcase>",
                xml(&format!(
                    "{}\nverdicts: {:?}\nruns: {}",
                    c.sentence,
                    c.counts,
                    c.runs
                        .iter()
                        .map(|r| r.dir.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            );
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

/// A KTAP description: no `#` (it would start a directive), one line.
fn ktap_text(s: &str) -> String {
    s.replace('#', "no.").replace(['\n', '\r'], " ")
}

/// KTAP version 1: the top level has one test per kernel, each a subtest
/// (indented two spaces) with one result per scenario; `# SKIP reason` for
/// `n/a`; diagnostics as `#` lines just before the result they explain.
pub fn ktap(s: &MatrixSummary) -> String {
    let ks = kernels(s);
    let mut o = format!("KTAP version 1\n1..{}\n", ks.len());
    for (i, k) in ks.iter().enumerate() {
        let cells: Vec<&CellSummary> = s.cells.iter().filter(|c| c.kernel == *k).collect();
        let _ = writeln!(
            o,
            "  KTAP version 1\n  # Subtest: {}\n  1..{}",
            ktap_text(k),
            cells.len()
        );
        let mut failed = false;
        for (j, c) in cells.iter().enumerate() {
            let _ = writeln!(o, "  # {}", ktap_text(&c.sentence));
            if let Some(r) = &c.kernel_release {
                let _ = writeln!(o, "  # release {}", ktap_text(r));
            }
            let name = ktap_text(&c.scenario);
            match outcome(c) {
                Outcome::Pass => {
                    let _ = writeln!(o, "  ok {} {name}", j + 1);
                }
                Outcome::Skip => {
                    let _ = writeln!(o, "  ok {} {name} # SKIP {}", j + 1, ktap_text(&reason(c)));
                }
                Outcome::Fail => {
                    failed = true;
                    let _ = writeln!(o, "  # {}", ktap_text(&reason(c)));
                    let _ = writeln!(o, "  not ok {} {name}", j + 1);
                }
                Outcome::Error => {
                    failed = true;
                    let _ = writeln!(o, "  # {}", ktap_text(&reason(c)));
                    let _ = writeln!(o, "  not ok {} {name} # ERROR", j + 1);
                }
            }
        }
        let _ = writeln!(
            o,
            "{} {} {}",
            if failed { "not ok" } else { "ok" },
            i + 1,
            ktap_text(k)
        );
    }
    o
}

/// The kernel's OOM lines of a run's console, at most 16 KiB (the KCIDB
/// `log_excerpt` limit), last lines kept.
fn log_excerpt(run_dir: &Path) -> Option<String> {
    let text = std::fs::read(run_dir.join("console.log")).ok()?;
    let text = String::from_utf8_lossy(&text);
    let wanted: Vec<&str> = text
        .lines()
        .filter(|l| {
            [
                "Killed process",
                "Out of memory",
                "invoked oom-killer",
                "Kernel panic",
                "oom-kill:",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    let mut out = String::new();
    for l in wanted.iter().rev() {
        let l = l.replace('\0', " ");
        if out.len() + l.len() + 1 > 16_000 {
            break;
        }
        out.insert_str(0, &format!("{l}\n"));
    }
    (!out.is_empty()).then_some(out)
}

/// `[a-z0-9_]+:...` ids need lower case and no odd characters.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// KCIDB v5.3: one checkout (this matrix), one build per kernel, one test
/// per cell. `out` is the matrix folder (for the log excerpts).
pub fn kcidb(s: &MatrixSummary, out: &Path, host: &str) -> Value {
    let mut keys: Vec<String> = s
        .cells
        .iter()
        .map(|c| format!("{}@{}", c.scenario, c.kernel))
        .collect();
    keys.sort();
    let digest = {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(keys.join("\n").as_bytes());
        h.iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let checkout = format!("oomlab:matrix-{digest}");
    let builds: Vec<Value> = kernels(s)
        .iter()
        .map(|k| {
            let c = s
                .cells
                .iter()
                .find(|c| c.kernel == *k)
                .expect("a cell of this kernel");
            let mut b = json!({
                "id": format!("oomlab:{}", id_part(k)),
                "checkout_id": checkout,
                "origin": "oomlab",
                "architecture": "x86_64",
                "config_name": k,
                "status": "PASS",
            });
            if let Some(r) = &c.kernel_release {
                b["comment"] = json!(format!("kernel release {r}"));
            }
            if let Some(sha) = &c.kernel_sha256 {
                b["misc"] = json!({ "vmlinuz_sha256": sha });
            }
            b
        })
        .collect();
    let tests: Vec<Value> = s
        .cells
        .iter()
        .map(|c| {
            let status = match outcome(c) {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
                Outcome::Error => "ERROR",
            };
            let path = format!("oomlab.{}", c.scenario.replace('.', "_"));
            let env = format!(
                "{}, {}, on {host}",
                c.qemu_version.as_deref().unwrap_or("QEMU"),
                c.accel.as_deref().unwrap_or("?").to_uppercase()
            );
            let mut t = json!({
                "id": format!("oomlab:{}:{}", id_part(&c.kernel), id_part(&c.scenario)),
                "build_id": format!("oomlab:{}", id_part(&c.kernel)),
                "origin": "oomlab",
                "path": path,
                "status": status,
                "duration": (secs(c) * 1000.0).round() / 1000.0,
                "comment": reason(c),
                "environment": {
                    "comment": env,
                    "misc": {
                        "accel": c.accel,
                        "qemu": c.qemu_version,
                        "host": host,
                    },
                },
                "misc": {
                    "verdict": c.verdict.map(|v| v.as_str()),
                    "expected": c.expected.map(|v| v.as_str()),
                    "verdicts": c.counts,
                    "oom_kills": c.oom_kills,
                    "kill_rate_per_s": c.kill_rate_per_s,
                    "first_oom_s": c.first_oom_s,
                    "canary_max_late_ms": c.canary_max_late_ms,
                },
            });
            if let Some(log) = c.runs.first().and_then(|r| log_excerpt(&out.join(&r.dir))) {
                t["log_excerpt"] = json!(log);
            }
            t
        })
        .collect();
    json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": [{ "id": checkout, "origin": "oomlab", "tree_name": "oomlab", "valid": true }],
        "builds": builds,
        "tests": tests,
    })
}

/// This machine's name, for the record (`/proc/sys/kernel/hostname`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
