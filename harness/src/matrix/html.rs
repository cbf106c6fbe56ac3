//! The matrix as one self-contained HTML page: the summary table on top,
//! then per run a timeline drawn as inline SVG (OOM kills, userspace
//! kills, respawns, MemAvailable and canary lateness on one guest-time
//! axis). No script, no network, no external file: it opens anywhere.
//!
//! SVG written by hand rather than with a plotting crate: four marks and
//! two lines on one axis need a few dozen lines, the output stays small and
//! exact (every mark is an element a test can count), and nothing is
//! rasterised or styled behind our back.

use std::fmt::Write as _;
use std::path::Path;

use super::summary::{CellSummary, MatrixSummary, RunRef};

/// What one run's `timeline.jsonl` says, on guest seconds since `ready`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    pub kills: Vec<f64>,
    pub user_kills: Vec<f64>,
    pub respawns: Vec<f64>,
    /// (t, MemAvailable MiB)
    pub mem: Vec<(f64, f64)>,
    pub mem_total_mib: Option<f64>,
    /// (t, canary lateness ms)
    pub canary: Vec<(f64, f64)>,
    pub panic: Option<f64>,
    /// SSH logins: (t, succeeded).
    pub ssh: Vec<(f64, bool)>,
    pub end: f64,
}

/// Reads a run's `timeline.jsonl` (missing or unreadable: empty).
pub fn load_series(run_dir: &Path) -> Series {
    let text = std::fs::read_to_string(run_dir.join("timeline.jsonl")).unwrap_or_default();
    series_of(&text)
}

pub fn series_of(text: &str) -> Series {
    use serde_json::Value;
    let mut s = Series::default();
    let mut ready = None;
    let mut first_kill: Option<f64> = None;
    let mut raw = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(t) = v["t"].as_f64() else { continue };
        if v["payload"]["ev"] == "ready" && ready.is_none() {
            ready = Some(t);
        }
        raw.push((t, v));
    }
    let t0 = ready.unwrap_or(0.0);
    for (t, v) in &raw {
        let t = t - t0;
        let k = &v["kernel"];
        let p = &v["payload"];
        if let Some(ok) = v["ssh"]["ok"].as_bool() {
            s.ssh.push((t, ok));
        }
        if k["event"] == "killed" {
            s.kills.push(t);
            first_kill = Some(first_kill.map_or(t, |f: f64| f.min(t)));
        } else if k["event"] == "panic" {
            s.panic.get_or_insert(t);
        }
        match p["ev"].as_str() {
            Some("kill") => {
                s.user_kills.push(t);
                first_kill = Some(first_kill.map_or(t, |f: f64| f.min(t)));
            }
            Some("log")
                if p["line"]
                    .as_str()
                    .is_some_and(|l| l.contains("sending SIG")) =>
            {
                s.user_kills.push(t);
                first_kill = Some(first_kill.map_or(t, |f: f64| f.min(t)));
            }
            Some("mem") => {
                if let Some(a) = p["mem_available_kib"].as_f64() {
                    s.mem.push((t, a / 1024.0));
                }
                if let Some(tot) = p["mem_total_kib"].as_f64() {
                    s.mem_total_mib = Some(tot / 1024.0);
                }
            }
            Some("tick") => {
                if let Some(l) = p["late_ms"].as_f64() {
                    s.canary.push((t, l));
                }
            }
            _ => {}
        }
        s.end = s.end.max(t);
    }
    // Worker forks after the first kill are the master's re-forks.
    for (t, v) in &raw {
        let t = t - t0;
        let p = &v["payload"];
        if p["ev"] == "spawn" && p["role"] == "worker" && first_kill.is_some_and(|f| t >= f) {
            s.respawns.push(t);
        }
    }
    s
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const W: f64 = 720.0;
const H: f64 = 206.0;
const X0: f64 = 48.0;
const X1: f64 = 700.0;

/// One run's timeline as an SVG element.
pub fn svg(s: &Series) -> String {
    let end = s.end.max(1.0);
    let x = |t: f64| X0 + (t.clamp(0.0, end) / end) * (X1 - X0);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="timeline" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="timeline">"#
    );
    // Lanes and axis.
    let _ = write!(
        o,
        r##"<text x="4" y="24" class="lbl">kills</text><text x="4" y="52" class="lbl">forks</text><text x="4" y="70" class="lbl">ssh</text><text x="4" y="116" class="lbl">MiB / ms</text><line x1="{X0}" y1="184" x2="{X1}" y2="184" class="axis"/>"##
    );
    let step = if end > 30.0 {
        5.0
    } else if end > 12.0 {
        2.0
    } else {
        1.0
    };
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let _ = write!(
            o,
            r#"<line x1="{:.1}" y1="184" x2="{:.1}" y2="188" class="axis"/><text x="{:.1}" y="200" class="tick">{t:.0}s</text>"#,
            x(t),
            x(t),
            x(t) - 6.0
        );
        t += step;
    }
    for &t in &s.kills {
        let _ = write!(
            o,
            r#"<line class="kill" x1="{0:.1}" y1="10" x2="{0:.1}" y2="34"/>"#,
            x(t)
        );
    }
    for &t in &s.user_kills {
        let _ = write!(
            o,
            r#"<line class="ukill" x1="{0:.1}" y1="10" x2="{0:.1}" y2="34"/>"#,
            x(t)
        );
    }
    for &t in &s.respawns {
        let _ = write!(
            o,
            r#"<line class="respawn" x1="{0:.1}" y1="42" x2="{0:.1}" y2="58"/>"#,
            x(t)
        );
    }
    for &(t, ok) in &s.ssh {
        let class = if ok { "sshok" } else { "sshfail" };
        let _ = write!(
            o,
            r#"<circle class="{class}" cx="{:.1}" cy="66" r="3"/>"#,
            x(t)
        );
    }
    if let Some(t) = s.panic {
        let _ = write!(
            o,
            r#"<line class="panic" x1="{0:.1}" y1="6" x2="{0:.1}" y2="182"/>"#,
            x(t)
        );
    }
    // MemAvailable against total memory, canary lateness against its worst.
    let (y0, y1) = (180.0, 82.0);
    let mem_max = s
        .mem_total_mib
        .or_else(|| s.mem.iter().map(|m| m.1).reduce(f64::max))
        .unwrap_or(1.0)
        .max(1.0);
    let late_max = s.canary.iter().map(|c| c.1).fold(1.0, f64::max);
    let poly = |pts: &[(f64, f64)], max: f64, class: &str| {
        if pts.is_empty() {
            return String::new();
        }
        let p: Vec<String> = pts
            .iter()
            .map(|(t, v)| {
                format!(
                    "{:.1},{:.1}",
                    x(*t),
                    y0 - (v / max).clamp(0.0, 1.0) * (y0 - y1)
                )
            })
            .collect();
        format!(r#"<polyline class="{class}" points="{}"/>"#, p.join(" "))
    };
    o.push_str(&poly(&s.mem, mem_max, "mem"));
    o.push_str(&poly(&s.canary, late_max, "canary"));
    let _ = write!(
        o,
        r#"<text x="{X1}" y="94" class="note" text-anchor="end">MemAvailable (max {mem_max:.0} MiB) · canary late (max {late_max:.0} ms)</text>"#
    );
    o.push_str("</svg>");
    o
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 12px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.v-livelock { color: #b00020; font-weight: 600; } .v-recovered { color: #1b7f3b; font-weight: 600; }
.v-no-oom { color: #5b5bd6; font-weight: 600; } .v-panic { color: #8a4b00; font-weight: 600; }
.bad { background: #fde8e8; }
.legend span { margin-right: 14px; }
svg.timeline { background: #fafafa; border: 1px solid #e3e3e3; }
.kill { stroke: #d7263d; stroke-width: 2; } .ukill { stroke: #f08c00; stroke-width: 2; }
.respawn { stroke: #1f6feb; stroke-width: 1.5; } .panic { stroke: #000; stroke-width: 2; stroke-dasharray: 4 3; }
.mem { fill: none; stroke: #2da44e; stroke-width: 1.5; } .canary { fill: none; stroke: #8250df; stroke-width: 1.2; }
.sshok { fill: #2da44e; } .sshfail { fill: #d7263d; }
.axis { stroke: #888; } .tick, .lbl, .note { font-size: 10px; fill: #555; }
.run { display: inline-block; margin: 0 16px 16px 0; vertical-align: top; }
"#;

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

/// A run folder's path for a link: relative to the matrix folder already.
fn rel(_out: &Path, p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn verdict_html(c: &CellSummary) -> String {
    match c.verdict {
        Some(v) => {
            let mut s = format!(r#"<span class="v-{0}">{0}</span>"#, esc(v.as_str()));
            if let (Some(e), false) = (c.expected, c.matches) {
                let _ = write!(s, " (expected {})", esc(e.as_str()));
            }
            s
        }
        None if c.stable => "error".into(),
        None => {
            let parts: Vec<String> = c
                .counts
                .iter()
                .map(|(v, n)| format!("{} {n}×", esc(v)))
                .collect();
            format!("UNSTABLE: {}", parts.join(", "))
        }
    }
}

fn run_block(out: &Path, c: &CellSummary, r: &RunRef, series: &Series) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<div class="run"><div><b>{}</b> on {} · run {} · {} · <a href="{}">console.log</a> · <a href="{}">report.json</a></div>"#,
        esc(&c.scenario),
        esc(&c.kernel),
        r.repeat,
        r.verdict.map_or_else(
            || esc(r.error.as_deref().unwrap_or("error")),
            |v| esc(v.as_str())
        ),
        esc(&rel(out, &r.dir.join("console.log"))),
        esc(&rel(out, &r.dir.join("report.json"))),
    );
    o.push_str(&svg(series));
    o.push_str("</div>");
    o
}

/// The whole page; `out` is the matrix folder (links are relative to it).
pub fn render(s: &MatrixSummary, out: &Path) -> String {
    render_with(s, out, &|r: &RunRef| load_series(&out.join(&r.dir)))
}

/// [`render`] with the timelines from `load` (tests).
pub fn render_with(s: &MatrixSummary, out: &Path, load: &dyn Fn(&RunRef) -> Series) -> String {
    let mut o = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        o,
        "<title>oomlab matrix</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        o,
        "<h1>oomlab matrix</h1><p>{} cell(s), {} run(s), {} guest(s) at a time, {:.1} s wall; {} mismatched, {} unstable, {} failed.</p>",
        s.cells.len(),
        s.runs,
        s.jobs,
        s.wall_s,
        s.mismatched,
        s.unstable,
        s.errors
    );
    o.push_str("<table><tr><th>scenario</th><th>kernel</th><th>verdict</th><th>kills</th><th>kills/s</th><th>respawns</th><th>1st OOM s</th><th>settled after s</th><th>canary max / p99 ms</th><th>SSH ok / longest outage s</th><th>full strength</th><th>accel</th><th>what it did</th><th>runs</th></tr>");
    for c in &s.cells {
        let bad = if c.matches { "" } else { r#" class="bad""# };
        let kills = c.oom_kills.zip(c.user_kills).map(|(a, b)| a + b);
        let links: Vec<String> = c
            .runs
            .iter()
            .map(|r| {
                format!(
                    r#"<a href="{}">{}</a>"#,
                    esc(&rel(out, &r.dir.join("console.log"))),
                    r.repeat
                )
            })
            .collect();
        let _ = write!(
            o,
            r#"<tr{bad}><td title="{}">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{} / {}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&c.mitigations.join("; ")),
            esc(&c.scenario),
            esc(&c.kernel),
            verdict_html(c),
            num(kills),
            num(c.kill_rate_per_s),
            num(c.respawns),
            num(c.first_oom_s),
            num(c.recovery_s),
            num(c.canary_max_late_ms),
            num(c.canary_p99_late_ms),
            match (c.ssh_success_rate, c.ssh_longest_outage_s) {
                (Some(r), o) => format!("{:.0}% / {}", r * 100.0, num(o)),
                (None, Some(o)) => format!("– / {}", num(Some(o))),
                (None, None) => "–".into(),
            },
            c.availability
                .map_or("–".into(), |a| format!("{:.0}%", a * 100.0)),
            esc(c.accel.as_deref().unwrap_or("–")),
            esc(&c.sentence),
            links.join(" ")
        );
    }
    o.push_str("</table>");
    for (name, cells) in super::summary::by_kernel(s) {
        let _ = write!(
            o,
            "<h2>{}, kernel by kernel</h2><table><tr><th>kernel</th><th>release</th><th>verdict</th><th>kills/s</th><th>1st OOM s</th><th>settled after s</th><th>canary max / p99 ms</th></tr>",
            esc(name)
        );
        for c in cells {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{} / {}</td></tr>"#,
                esc(&c.kernel),
                esc(c.kernel_release.as_deref().unwrap_or("–")),
                verdict_html(c),
                num(c.kill_rate_per_s),
                num(c.first_oom_s),
                num(c.recovery_s),
                num(c.canary_max_late_ms),
                num(c.canary_p99_late_ms)
            );
        }
        o.push_str("</table>");
    }
    o.push_str(r#"<p class="legend"><span style="color:#d7263d">| kernel OOM kill</span><span style="color:#f08c00">| userspace kill</span><span style="color:#1f6feb">| re-fork</span><span style="color:#2da44e">— MemAvailable</span><span style="color:#8250df">— canary lateness</span><span>┆ panic</span><span style="color:#2da44e">● SSH login</span><span style="color:#d7263d">● SSH failed</span></p>"#);
    for c in &s.cells {
        let _ = write!(
            o,
            "<h2>{} on {}</h2><p>{} — {}</p>",
            esc(&c.scenario),
            esc(&c.kernel),
            esc(&c.description),
            esc(&c.sentence)
        );
        for r in &c.runs {
            o.push_str(&run_block(out, c, r, &load(r)));
        }
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMELINE: &str = r#"{"t":1.0,"payload":{"ev":"ready","name":"x","kernel":"6.1"}}
{"t":1.1,"payload":{"ev":"spawn","pid":10,"role":"worker"}}
{"t":1.2,"payload":{"ev":"mem","mem_total_kib":230000,"mem_available_kib":100000}}
{"t":2.0,"kernel":{"event":"killed","pid":10,"name":"nginx"}}
{"t":2.01,"payload":{"ev":"spawn","pid":11,"role":"worker"}}
{"t":2.5,"payload":{"ev":"tick","seq":1,"late_ms":3.5}}
{"t":3.0,"payload":{"ev":"log","src":"earlyoom","line":"sending SIGTERM to process 11 uid 0 \"nginx\": badness 1"}}
{"t":4.0,"payload":{"ev":"kill","killer":"psi","pid":-9,"signal":9}}
not json
{"t":5.0,"kernel":{"event":"panic","reason":"x"}}
{"t":4.5,"ssh":{"t":4.5,"ok":true,"latency_ms":300.0}}
{"t":4.6,"ssh":{"t":4.6,"ok":false,"latency_ms":5000.0,"error":"timeout"}}
"#;

    #[test]
    fn series_on_guest_time_from_ready() {
        let s = series_of(TIMELINE);
        assert_eq!(s.kills, vec![1.0]);
        assert_eq!(s.user_kills, vec![2.0, 3.0]);
        assert_eq!(
            s.respawns.len(),
            1,
            "the fork before the first kill is not a re-fork"
        );
        assert_eq!(s.mem.len(), 1);
        assert_eq!(s.canary, vec![(1.5, 3.5)]);
        assert_eq!(s.panic, Some(4.0));
        assert_eq!(s.end, 4.0);
    }

    #[test]
    fn svg_has_one_mark_per_event_and_escapes_text() {
        let svg = svg(&series_of(TIMELINE));
        assert_eq!(svg.matches(r#"class="kill""#).count(), 1);
        assert_eq!(svg.matches(r#"class="ukill""#).count(), 2);
        assert_eq!(svg.matches(r#"class="respawn""#).count(), 1);
        assert_eq!(svg.matches(r#"class="sshok""#).count(), 1);
        assert_eq!(svg.matches(r#"class="sshfail""#).count(), 1);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("\u{1b}[31m"), "\u{fffd}[31m");
    }
}
