//! Every English sentence of `oomlab analyze`: the human report (a few
//! summary lines first, details after), and the sentences that `--json`
//! shows for the model's typed facts ([`LoopFinding`]'s `summary`,
//! [`SpareReason`] as `why`, [`Reaper`], [`Note`]).

use std::fmt::{self, Display, Write};

use serde::{Serialize, Serializer};

use super::model::{
    BackOff, ChildSacrifice, GroupCall, How, LoopFinding, LoopRule, Note, Reaper, Repairs,
    SpareReason, SupervisorEvidence, VictimGroup,
};
use super::{Analysis, Incident, Victim};
use crate::events::supervisor::Supervisor;

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
            Note::ChildSacrificed {
                chosen_pid,
                chosen_name,
                times,
            } => {
                write!(
                    f,
                    "the kernel chose {chosen_pid} ({chosen_name}) {times} time(s) and killed one of its children instead each time (the 'sacrifice child' step of <= 5.0 kernels, removed in 5.1 by commit bbbe48029720)"
                )?;
                if *times >= 2 {
                    write!(
                        f,
                        ": making that task the first choice does not end a loop of its children on such a kernel"
                    )?;
                }
                Ok(())
            }
            Note::InputsUnreadable { count } => write!(
                f,
                "{count} input(s) could not be read, or not to their end (see the errors): the rest was analysed"
            ),
            Note::DeathsUnmatched { count } => write!(
                f,
                "{count} supervisor line(s) about a death by SIGKILL matched no kernel kill (the kernel log does not cover their time, or they were not OOM kills)"
            ),
            Note::SelfKills {
                supervisor,
                count,
                why,
            } => write!(
                f,
                "{} killed {count} process(es) itself ({why}): not OOM kills, left out",
                supervisor.label()
            ),
        }
    }
}

impl Display for LoopRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopRule::TaskTable => write!(
                f,
                "kills in several OOM episodes, of processes born during the episode (task tables)"
            ),
            LoopRule::Supervisor => write!(
                f,
                "kills in several OOM episodes, respawns shown by the supervisor's log"
            ),
            LoopRule::RestartCounter => write!(
                f,
                "the supervisor's restart counter: it restarted what the kernel killed again and again"
            ),
            LoopRule::Sustained => write!(
                f,
                "kills of fresh pids in several OOM episodes, going on to the end of the log"
            ),
        }
    }
}

/// Seconds, briefly.
fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

impl Display for GroupCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupCall::Loop(r) => write!(f, "loop: {r}"),
            GroupCall::Single => write!(f, "one kill"),
            GroupCall::Burst {
                kills,
                span_s,
                oom_group,
            } => {
                write!(f, "not a loop: {kills} kills in one OOM episode")?;
                if let Some(s) = span_s {
                    write!(f, " within {}", secs(*s))?;
                }
                match oom_group {
                    Some(g) => write!(f, " (memory.oom.group kill of {g})"),
                    None => write!(f, " (a memory.oom.group kill or several victims of one OOM)"),
                }
            }
            GroupCall::Stopped { episodes, tail_s } => write!(
                f,
                "not a loop (any more): kills in {episodes} OOM episodes, then none for {} until the log ends",
                secs(*tail_s)
            ),
            GroupCall::Unproven { episodes } => write!(
                f,
                "not a loop: kills in {episodes} OOM episode(s), too few (or of old processes) to call a loop without a respawn seen"
            ),
        }
    }
}

impl Display for ChildSacrifice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chose {} ({}{}), killed its child {} instead (the 'sacrifice child' step of <= 5.0 kernels, removed in 5.1)",
            self.chosen_pid,
            self.chosen_name,
            self.score.map_or(String::new(), |s| format!(", score {s}")),
            self.victim_pid
        )
    }
}

impl Display for Repairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = [
            (self.keyword_case, "lower-case keyword"),
            (self.fields, "units or spacing"),
            (self.split_timestamp, "split timestamp"),
            (self.wrapped_line, "wrapped line"),
            (self.control_chars, "control characters"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(_, k)| *k)
        .collect();
        write!(f, "{} line(s) ({})", self.lines, kinds.join(", "))
    }
}

/// What one supervisor's log says, and what it means for mitigation.
fn supervisor_line(e: &SupervisorEvidence) -> String {
    let who = match &e.name {
        Some(n) => format!("{} ({n})", e.supervisor.label()),
        None => e.supervisor.label().to_string(),
    };
    let mut facts = Vec::new();
    if e.deaths > 0 {
        facts.push(format!(
            "{} death(s) by SIGKILL matched to kernel kills",
            e.deaths
        ));
    }
    if e.oom_notices > 0 {
        facts.push(format!("{} OOM notice(s)", e.oom_notices));
    }
    if e.respawns > 0 {
        let what = if e.supervisor == Supervisor::Systemd || e.supervisor == Supervisor::Kubelet {
            "restart(s) scheduled"
        } else {
            "respawn(s)"
        };
        facts.push(format!("{} {what}", e.respawns));
    }
    if e.started_then_killed > 0 {
        facts.push(format!(
            "{} process(es) it started killed again",
            e.started_then_killed
        ));
    }
    if let Some(c) = e.restart_counter {
        facts.push(format!("restart counter reached {c}"));
    }
    if let Some(d) = &e.delay {
        if d.whole_seconds && d.max_s < 1.5 {
            facts.push("respawned within a second of the kill (whole-second stamps)".to_string());
        } else if d.count == 1 || (d.max_s - d.min_s).abs() < 0.0005 {
            facts.push(format!("respawned {} after the kill", secs(d.median_s)));
        } else {
            facts.push(format!(
                "respawned {}-{} after the kill (median {})",
                secs(d.min_s),
                secs(d.max_s),
                secs(d.median_s)
            ));
        }
    }
    match e.back_off {
        BackOff::Grows { first_s, last_s } => facts.push(format!(
            "backing off: waits grew from {} to {}",
            secs(first_s),
            secs(last_s)
        )),
        BackOff::None => facts.push("no back-off: the same wait every time".to_string()),
        BackOff::Unknown => {}
    }
    if e.gave_up {
        facts.push("then it gave up restarting".to_string());
    }
    format!(
        "{who}: {}; by default it {}",
        facts.join(", "),
        e.supervisor.respawn_policy()
    )
}

/// A loop finding's summary sentence.
impl Display for LoopFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = who(&self.name, self.uid, self.memcg.as_deref());
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
        let tail = match self.tail_s {
            Some(t) => format!(", the last {} before the log ends", secs(t)),
            None => ", no times to measure a quiet tail by".to_string(),
        };
        let ended = match self.ended_by {
            Some(s) => format!("; {} then gave up restarting it", s.label()),
            None => String::new(),
        };
        let what = match self.rule {
            LoopRule::TaskTable => format!(
                "kill/respawn loop: {who}: {} kills, {} of them respawned (born during the OOM episode: not in its first task table, newer pids){rate_s}{master_s}",
                self.kills, self.respawned_kills
            ),
            LoopRule::Supervisor | LoopRule::RestartCounter => {
                let sups: Vec<&str> = self.supervisors.iter().map(|s| s.label()).collect();
                format!(
                    "kill/respawn loop: {who}: {} kill(s) of {} distinct pid(s){rate_s}, respawned by {} (per its own log){master_s}",
                    self.kills,
                    self.distinct_pids,
                    sups.join(", ")
                )
            }
            LoopRule::Sustained => format!(
                "suspected kill/respawn loop: {who}: {} kills of {} distinct pids{rate_s}, no task table or supervisor line to confirm respawns{master_s}",
                self.kills, self.distinct_pids
            ),
        };
        write!(
            f,
            "{what} [rule: {}; {} episodes{tail}]{ended}",
            self.rule, self.episodes
        )
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
serialize_as_sentence!(SpareReason, Reaper, Note, GroupCall, ChildSacrifice);

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
    if let Some(sup) = v.started_by {
        s += &format!(" [started by the {} after an earlier kill]", sup.label());
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
    if let Some(sc) = &inc.sacrificed_child {
        let _ = writeln!(out, "      {sc}");
    } else if let Some(c) = &inc.chosen {
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
        for e in &g.supervisors {
            let _ = writeln!(out, "  supervisor: {}", supervisor_line(e));
        }
        for s in &g.spared {
            let _ = writeln!(
                out,
                "  spared: {} {} process(es) of uid {} never chosen: {}",
                s.count, g.name, s.uid, s.reason
            );
        }
    }
    for g in a.groups.iter().filter(|g| !g.is_loop && g.kills > 1) {
        let _ = writeln!(out, "{}: {}", group_who(g), g.call);
        for e in &g.supervisors {
            let _ = writeln!(out, "  supervisor: {}", supervisor_line(e));
        }
    }
    for g in a
        .groups
        .iter()
        .filter(|g| !g.is_loop && g.kills == 1 && !g.supervisors.is_empty())
    {
        let _ = writeln!(out, "{}: one kill", group_who(g));
        for e in &g.supervisors {
            let _ = writeln!(out, "  supervisor: {}", supervisor_line(e));
        }
    }
    if a.repaired.lines > 0 {
        let _ = writeln!(out, "repaired: {}", a.repaired);
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
                "  {} uid {} memcg {}: {} kill(s), {} pid(s), {} respawned, {} in task table, {} unknown{}, {} episode(s){}{}",
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
                g.episodes,
                match g.tail_s {
                    Some(t) => format!(", quiet {} before the end", secs(t)),
                    None => String::new(),
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
            "input {}: {} bytes{}, {} line(s) examined{}{}",
            i.path,
            i.bytes,
            if i.gzip { " (gzip)" } else { "" },
            i.lines_examined,
            if i.journal_json_lines > 0 {
                format!(", {} journal JSON record(s)", i.journal_json_lines)
            } else {
                String::new()
            },
            if i.supervisor_lines > 0 {
                format!(", {} supervisor line(s)", i.supervisor_lines)
            } else {
                String::new()
            }
        );
    }
    for e in &a.unreadable {
        let _ = writeln!(
            out,
            "input {}: unreadable{}: {}",
            e.path,
            if e.bytes_read > 0 {
                format!(" after {} bytes", e.bytes_read)
            } else {
                String::new()
            },
            e.error
        );
    }
    // names, paths and messages come from the log: nothing in them may
    // steer the terminal
    crate::text::printable_lines(&out).into_owned()
}

/// A group of victims as every sentence names it: `nginx (uid 2188) in
/// /memcg`.
pub(crate) fn who(name: &str, uid: Option<u32>, memcg: Option<&str>) -> String {
    format!(
        "{name}{}{}",
        uid.map_or(String::new(), |u| format!(" (uid {u})")),
        memcg.map_or(String::new(), |m| format!(" in {m}"))
    )
}

/// A group as the summary names it.
fn group_who(g: &VictimGroup) -> String {
    who(&g.name, g.uid, g.memcg.as_deref())
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
