//! Every English sentence of `oomlab analyze`: the human report (a few
//! summary lines first, details after), and the sentences that `--json`
//! shows for the model's typed facts ([`LoopFinding`]'s `summary`,
//! [`SpareReason`] as `why`, [`Reaper`], [`Note`]).

use std::fmt::{self, Display, Write};

use serde::{Serialize, Serializer};

use super::model::{How, LoopFinding, Note, Reaper, SpareReason};
use super::{Analysis, Incident, Victim};

impl Display for SpareReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpareReason::Immune => write!(f, "OOM-immune (oom_score_adj -1000 / oom_adj -17)"),
            SpareReason::RootDiscount {
                max_rss_pages,
                victims_rss_pages,
                victims_uid,
            } => write!(
                f,
                "root-owned: before 4.17 oom_badness() discounts CAP_SYS_ADMIN tasks (3% on RHEL 6 / 2.6.36+, /4 on vanilla 2.6.32), and these are small (max rss {max_rss_pages} pages{}), so uid {}'s copies always scored higher",
                victims_rss_pages.map_or(String::new(), |v| format!(" vs victims' {v}")),
                victims_uid.map_or("?".to_string(), |x| x.to_string())
            ),
            SpareReason::LowerBadness {
                max_rss_pages,
                victims_rss_pages,
            } => write!(
                f,
                "lower badness: max rss {max_rss_pages} pages vs victims' {victims_rss_pages}"
            ),
            SpareReason::Unknown => write!(f, "not chosen (the log gives no reason)"),
        }
    }
}

impl Display for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reaper::Reaped {
                anon_rss_kb: Some(kb),
            } => write!(f, "reaped (anon-rss now {kb} kB)"),
            Reaper::Reaped { anon_rss_kb: None } => write!(f, "reaped"),
            Reaper::Unable => write!(f, "unable to reap"),
        }
    }
}

impl Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::KillsNotClassified { count, kept } => write!(
                f,
                "{count} kills past the first {kept} were counted but not classified"
            ),
            Note::RowsNotKept { count, kept } => write!(
                f,
                "{count} task-table rows past the first {kept} were not kept"
            ),
            Note::NoTaskTable => write!(
                f,
                "no task table in the log (ratelimited, vm.oom_dump_tasks=0 or filtered out): respawns cannot be confirmed"
            ),
            Note::SelectionsWithoutKill { count } => write!(
                f,
                "{count} selection line(s) without a `Killed process` line (log cut, elided or the victim was already exiting)"
            ),
        }
    }
}

/// A loop finding's summary sentence.
impl Display for LoopFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = format!(
            "{}{}{}",
            self.name,
            self.uid.map_or(String::new(), |u| format!(" (uid {u})")),
            self.memcg
                .as_ref()
                .map_or(String::new(), |m| format!(" in {m}"))
        );
        let rate_s = match (self.span_s, self.kills_per_s) {
            (Some(s), Some(r)) => format!(" in {s:.0} s (~{r}/s)"),
            _ => String::new(),
        };
        let master_s = match (self.likely_master, self.likely_master_rss_pages) {
            (Some(pid), Some(rss)) => format!(
                "; likely master pid {pid} (same name and uid, never killed, rss {rss} pages)"
            ),
            _ => "; no never-killed parent of that name and uid in the task tables".to_string(),
        };
        if self.confirmed {
            write!(
                f,
                "kill/respawn loop: {who}: {} kills, {} of them respawned (born during the OOM episode: not in its first task table, newer pids){rate_s}{master_s}",
                self.kills, self.respawned_kills
            )
        } else {
            write!(
                f,
                "suspected kill/respawn loop: {who}: {} kills of {} distinct pids{rate_s}, no task table to confirm respawns{master_s}",
                self.kills, self.distinct_pids
            )
        }
    }
}

/// `--json` shows these typed facts as their sentences.
macro_rules! serialize_as_sentence {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_sentence!(SpareReason, Reaper, Note);

/// A loop finding in `--json`: its facts, then its summary sentence.
#[derive(Serialize)]
struct LoopJson<'a> {
    #[serde(flatten)]
    facts: &'a LoopFinding,
    summary: String,
}

/// `--json`'s `loops` (see [`LoopJson`]).
pub(super) fn serialize_loops<S: Serializer>(
    loops: &[LoopFinding],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(loops.iter().map(|l| LoopJson {
        facts: l,
        summary: l.to_string(),
    }))
}

fn how(h: How) -> &'static str {
    match h {
        How::Killed => "killed",
        How::SharingMemory => "sharing memory",
        How::OomGroup => "oom group",
    }
}

fn opt<T: std::fmt::Display>(label: &str, v: Option<T>) -> String {
    v.map_or(String::new(), |v| format!(" {label}{v}"))
}

fn victim_line(v: &Victim) -> String {
    let mut s = format!("{} {} ({})", how(v.how), v.pid, v.name);
    s += &opt("uid ", v.uid);
    s += &opt("score ", v.score);
    s += &opt("total-vm ", v.total_vm_kb.map(|x| format!("{x}kB")));
    s += &opt("anon-rss ", v.anon_rss_kb.map(|x| format!("{x}kB")));
    s += &opt("file-rss ", v.file_rss_kb.map(|x| format!("{x}kB")));
    s += &opt("shmem-rss ", v.shmem_rss_kb.map(|x| format!("{x}kB")));
    s += &opt("oom_score_adj ", v.oom_score_adj);
    match (v.in_task_table, v.respawned) {
        (Some(true), Some(true)) => {
            s += " [in an earlier task table; respawned: born during the OOM episode]"
        }
        (Some(true), _) => s += " [in an earlier task table]",
        (_, Some(true)) => s += " [respawned: born during the OOM episode]",
        (Some(false), _) => s += " [not in an earlier task table]",
        _ => {}
    }
    if let Some(r) = &v.reaper {
        s += &format!("; oom_reaper: {r}");
    }
    s
}

fn incident_lines(out: &mut String, inc: &Incident) {
    let _ = write!(
        out,
        "  #{} {}",
        inc.index,
        inc.time.as_deref().unwrap_or("(no time)")
    );
    if let Some(t) = &inc.invoking_task {
        let _ = write!(out, " {t} invoked oom-killer");
        out.push_str(&opt("gfp_mask=", inc.gfp_mask.as_deref()));
        out.push_str(&opt("order=", inc.order));
    } else if !inc.header_printed {
        out.push_str(" (no OOM header before it: ratelimited or not in the log)");
    }
    let _ = write!(out, "; constraint {:?}", inc.constraint);
    out.push_str(&opt("memcg ", inc.oom_memcg.as_deref()));
    if let Some(t) = &inc.task_memcg {
        if inc.oom_memcg.as_deref() != Some(t.as_str()) {
            let _ = write!(out, " task_memcg {t}");
        }
    }
    if let (Some(u), Some(l)) = (inc.memcg_usage_kb, inc.memcg_limit_kb) {
        let _ = write!(out, " usage {u}kB/limit {l}kB");
    }
    if inc.task_table_rows > 0 {
        let _ = write!(out, "; {} task rows", inc.task_table_rows);
    }
    out.push('\n');
    if let Some(c) = &inc.chosen {
        let _ = writeln!(
            out,
            "      chose {} ({}){} [{}]",
            c.pid,
            c.name,
            opt("score ", c.score),
            c.message
        );
    }
    for v in &inc.victims {
        let _ = writeln!(out, "      {}", victim_line(v));
    }
    if inc.victims_not_listed > 0 {
        let _ = writeln!(
            out,
            "      ... {} more victim(s) not listed",
            inc.victims_not_listed
        );
    }
    if let Some(g) = &inc.oom_group {
        let _ = writeln!(out, "      memory.oom.group: whole cgroup {g} killed");
    }
    if let Some(e) = &inc.victim_exiting {
        let _ = writeln!(
            out,
            "      victim {} ({}) already exiting: nothing killed",
            e.pid, e.name
        );
    }
    if inc.no_killable {
        let _ = writeln!(out, "      no killable process");
    }
    if let Some(p) = &inc.panic {
        let _ = writeln!(out, "      KERNEL PANIC: {p}");
    }
}

/// The report for people: summary first (loops, counts, panic), then
/// groups and every incident.
pub fn render_human(a: &Analysis) -> String {
    let mut out = String::new();
    let t = &a.totals;
    if a.loops.is_empty() {
        let _ = writeln!(out, "No kill/respawn loop found.");
    }
    for l in &a.loops {
        let _ = writeln!(out, "LOOP: {l}");
    }
    for g in a.groups.iter().filter(|g| g.is_loop) {
        for s in &g.spared {
            let _ = writeln!(
                out,
                "  spared: {} {} process(es) of uid {} never chosen: {}",
                s.count, g.name, s.uid, s.reason
            );
        }
    }
    let _ = writeln!(
        out,
        "OOM: {} incident(s), {} header(s), {} chosen, {} killed, {} reaped{}{}",
        t.incidents,
        t.oom_invocations,
        t.chosen,
        t.killed,
        t.reaped,
        if t.no_killable > 0 {
            format!(", {} with no killable process", t.no_killable)
        } else {
            String::new()
        },
        match &a.panic {
            Some(p) => format!("; KERNEL PANIC: {p}"),
            None => "; no panic".to_string(),
        }
    );
    if let Some(e) = super::era::labels(&a.eras) {
        let _ = writeln!(out, "Kernel era (from formats): {e}");
    }
    for n in &a.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out.push('\n');
    if !a.groups.is_empty() {
        let _ = writeln!(out, "Victims by (name, uid, memcg):");
        for g in &a.groups {
            let _ = writeln!(
                out,
                "  {} uid {} memcg {}: {} kill(s), {} pid(s), {} respawned, {} in task table, {} unknown{}{}",
                g.name,
                g.uid.map_or("?".to_string(), |u| u.to_string()),
                g.memcg.as_deref().unwrap_or("-"),
                g.kills,
                g.distinct_pids,
                g.respawned_kills,
                g.in_table_kills,
                g.unknown_kills,
                match (g.span_s, g.kills_per_s) {
                    (Some(s), Some(r)) => format!(", {s:.1} s, {r}/s"),
                    _ => String::new(),
                },
                if g.is_loop { " LOOP" } else { "" }
            );
            let pids: Vec<String> = g.pids.iter().map(u32::to_string).collect();
            let _ = writeln!(out, "    pids: {}", pids.join(" "));
            if let Some(m) = &g.likely_master {
                let _ = writeln!(
                    out,
                    "    likely master: {} ({}) uid {} rss {} pages, never killed",
                    m.pid, m.name, m.uid, m.rss_pages
                );
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Incidents:");
    for inc in &a.incidents {
        incident_lines(&mut out, inc);
    }
    if a.incidents_omitted > 0 {
        let _ = writeln!(
            out,
            "  ... {} more incident(s) not shown",
            a.incidents_omitted
        );
    }
    for i in &a.inputs {
        let _ = writeln!(
            out,
            "input {}: {} bytes{}, {} line(s) examined{}",
            i.path,
            i.bytes,
            if i.gzip { " (gzip)" } else { "" },
            i.lines_examined,
            if i.journal_json_lines > 0 {
                format!(", {} journal JSON record(s)", i.journal_json_lines)
            } else {
                String::new()
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).expect("serializable")
    }

    #[test]
    fn typed_facts_serialize_as_their_sentences() {
        assert_eq!(
            json(&Note::KillsNotClassified {
                count: 5,
                kept: 100_000
            }),
            "\"5 kills past the first 100000 were counted but not classified\""
        );
        assert_eq!(
            json(&Note::RowsNotKept {
                count: 7,
                kept: 150_000
            }),
            "\"7 task-table rows past the first 150000 were not kept\""
        );
        assert_eq!(
            json(&Reaper::Reaped {
                anon_rss_kb: Some(0)
            }),
            "\"reaped (anon-rss now 0 kB)\""
        );
        assert_eq!(json(&Reaper::Unable), "\"unable to reap\"");
        assert_eq!(
            json(&SpareReason::LowerBadness {
                max_rss_pages: 10,
                victims_rss_pages: 20
            }),
            "\"lower badness: max rss 10 pages vs victims' 20\""
        );
    }
}
