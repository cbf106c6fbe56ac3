//! Incidents as the kernel's events come, in one pass: an OOM report (or a
//! kill whose report was ratelimited) opens one, its lines fill it in.

use super::diagnosis;
use super::envelope::{self, Messages};
use super::era::Era;
use super::input::LineSink;
use super::model::{
    ChildSacrifice, Chosen, How, Incident, InputError, Note, Reaper, Repair, Repairs, Totals,
    Victim,
};
use super::records::{
    KillRec, Records, RowRec, SupRec, MAX_KILL_RECORDS, MAX_ROW_RECORDS, MAX_SUP_RECORDS,
};
use super::supervisors;
use super::wrap::{self, Continued};
use super::{Analysis, AnalyzeOptions, InputStats};
use crate::events::kernel::{self, Constraint, KernelEvent, Mended, Parser, Timestamp};
use crate::events::prefix::{split_prefix, When};
use crate::events::supervisor;

mod lines;

/// Lines looked at one by one after an OOM header before giving up on a
/// task table that has not appeared.
const CONTEXT_LINES: u32 = 1000;
/// Lines looked at one by one after a kill.
const AFTER_KILL_LINES: u32 = 2;
/// Victims listed per incident (oom.group can kill a whole cgroup).
const MAX_VICTIMS_LISTED: usize = 200;

/// A line's time as an incident or a victim shows it.
pub(super) fn show_ts(ts: Option<&Timestamp>) -> Option<String> {
    match ts? {
        Timestamp::Monotonic(t) => Some(format!("[{t:.6}]")),
        Timestamp::Wall(s) => Some(s.clone()),
    }
}

/// Builds the [`Analysis`] from the lines the input scan hands over, in one
/// pass: incidents as they come, and compact records for the diagnosis.
pub(crate) struct Builder {
    opts: AnalyzeOptions,
    parser: Parser,
    inputs: Vec<InputStats>,
    seq: u64,
    totals: Totals,
    cur: Option<Incident>,
    incidents: Vec<Incident>,
    omitted: u64,
    /// What the diagnosis will read.
    rec: Records,
    context_left: u32,
    panic: Option<String>,
    // context of the line being handled
    ctx_ts: Option<Timestamp>,
    ctx_uptime: Option<f64>,
    ctx_offset: u64,
    line_truncated_name: bool,
    /// Task-table snapshot counter: a new one at each header / OOM report.
    table_no: u32,
    /// A line that may continue on the next one (a wrapped paste).
    pending: Option<Pending>,
    /// The line being read may be held as `pending`.
    may_hold: bool,
    /// ... and asked to be.
    hold: bool,
    /// Repairs of the line being read, and whether it gave anything.
    line_repairs: Vec<Repair>,
    line_read: bool,
    repairs: Repairs,
    /// The last time seen in the current input, as printed and as a
    /// number, and its uptime.
    last_ts: Option<Timestamp>,
    last_when: Option<When>,
    last_uptime: Option<f64>,
    errors: Vec<InputError>,
    /// The last wall-clock stamp read as a number (syslog repeats a stamp
    /// for every line of a second).
    when_cache: Option<(String, Option<When>)>,
    /// The line handed over was taken into a join.
    consumed: bool,
}

/// A held line (see [`wrap`]).
struct Pending {
    raw: Vec<u8>,
    prev: Vec<u8>,
    offset: u64,
    joins: u8,
}

impl Builder {
    pub(crate) fn new(opts: AnalyzeOptions) -> Self {
        Builder {
            opts,
            parser: Parser::new(),
            inputs: Vec::new(),
            seq: 0,
            totals: Totals::default(),
            cur: None,
            incidents: Vec::new(),
            omitted: 0,
            rec: Records::default(),
            context_left: 0,
            panic: None,
            ctx_ts: None,
            ctx_uptime: None,
            ctx_offset: 0,
            line_truncated_name: false,
            table_no: 0,
            pending: None,
            may_hold: false,
            hold: false,
            line_repairs: Vec::new(),
            line_read: false,
            repairs: Repairs::default(),
            last_ts: None,
            last_when: None,
            last_uptime: None,
            errors: Vec::new(),
            when_cache: None,
            consumed: false,
        }
    }

    pub(crate) fn begin_input(&mut self, path: &str, gzip: bool) {
        self.inputs.push(InputStats {
            path: path.to_string(),
            bytes: 0,
            lines_examined: 0,
            gzip,
            journal_json_lines: 0,
            supervisor_lines: 0,
            ends_at: None,
        });
        self.rec.input_end.push((None, None));
        self.context_left = 0;
        self.last_ts = None;
        self.last_when = None;
        self.last_uptime = None;
        self.ctx_ts = None;
        self.ctx_uptime = None;
    }

    pub(crate) fn end_input(&mut self, bytes: u64) {
        if let Some(i) = self.inputs.last_mut() {
            i.bytes = bytes;
        }
    }

    /// An input that could not be opened: reported, and left out.
    pub(crate) fn unreadable(&mut self, path: &str, error: String) {
        self.errors.push(InputError {
            path: path.to_string(),
            error,
            bytes_read: 0,
        });
    }

    /// An input whose reading failed part way: what was read counts.
    pub(crate) fn failed_input(&mut self, path: &str, error: String, bytes_read: u64) {
        self.errors.push(InputError {
            path: path.to_string(),
            error,
            bytes_read,
        });
    }

    /// The current line's time as a number.
    fn ctx_when(&mut self) -> Option<When> {
        match &self.ctx_ts {
            Some(Timestamp::Wall(w)) => {
                if let Some((s, when)) = &self.when_cache {
                    if s == w {
                        return *when;
                    }
                }
                let when = When::of(self.ctx_ts.as_ref());
                self.when_cache = Some((w.clone(), when));
                when
            }
            other => When::of(other.as_ref()),
        }
    }

    fn input_index(&self) -> usize {
        self.inputs.len().saturating_sub(1)
    }

    fn input_name(&self) -> String {
        self.inputs
            .last()
            .map(|i| i.path.clone())
            .unwrap_or_default()
    }

    fn close_incident(&mut self) {
        if let Some(inc) = self.cur.take() {
            if self.incidents.len() < self.opts.max_incidents {
                self.incidents.push(inc);
            } else {
                self.omitted += 1;
            }
        }
    }

    fn start_incident(&mut self) -> &mut Incident {
        self.close_incident();
        self.totals.incidents += 1;
        // past `max_incidents` an incident is only counted: what it would
        // show is not made
        let kept = self.incidents.len() < self.opts.max_incidents;
        let input = if kept {
            self.input_name()
        } else {
            String::new()
        };
        let mut inc = Incident::new(self.totals.incidents, &input, self.ctx_offset);
        inc.kept = kept;
        if kept {
            inc.time = show_ts(self.ctx_ts.as_ref());
        }
        inc.uptime_s = self.ctx_uptime;
        self.cur.insert(inc)
    }

    /// The current incident if it has no victim yet, else a new one.
    fn open_incident(&mut self) -> &mut Incident {
        let reuse = self
            .cur
            .as_ref()
            .is_some_and(|c| c.no_victims() && c.victim_exiting.is_none() && !c.no_killable);
        if !reuse {
            self.start_incident();
        }
        match self.cur {
            Some(ref mut c) => c,
            None => self.start_incident(),
        }
    }

    fn push_victim(&mut self, mut v: Victim, memcg: Option<String>) {
        self.totals.killed += u64::from(v.how != How::SharingMemory);
        if self.rec.kills.len() < MAX_KILL_RECORDS {
            let memcg = memcg.map(|m| self.rec.strings.id(&m));
            let name = self.rec.strings.id(&v.name);
            v.kill_no = Some(self.rec.kills.len());
            let incident = self.cur.as_ref().map_or(0, |c| c.index);
            let new_oom = self.cur.as_ref().is_some_and(|c| {
                c.no_victims()
                    && (c.header_printed || c.chosen.is_some() || c.summary_pid_uid.is_some())
            });
            let oom_group = self
                .cur
                .as_ref()
                .and_then(|c| c.oom_group.clone())
                .map(|g| self.rec.strings.id(&g));
            let when = self.ctx_when();
            self.rec.kills.push(KillRec {
                incident,
                truncated: self.line_truncated_name,
                pid: v.pid,
                name,
                uid: v.uid,
                memcg,
                when,
                uptime: self.ctx_uptime,
                ts: self.ctx_ts.clone(),
                seq: self.seq,
                input: self.input_index(),
                new_oom,
                oom_group,
                anon_rss_kb: v.anon_rss_kb,
            });
        } else {
            self.rec.kills_dropped += 1;
        }
        if let Some(c) = self.cur.as_mut() {
            if c.kept && c.victims.len() < MAX_VICTIMS_LISTED {
                c.victims.push(v);
            } else {
                c.victims_not_listed += 1;
            }
        }
    }

    fn set_reaper(&mut self, pid: u32, outcome: Reaper) {
        let cur = self.cur.iter_mut();
        let recent = self.incidents.iter_mut().rev().take(64);
        for inc in cur.chain(recent) {
            if let Some(v) = inc.victims.iter_mut().rev().find(|v| v.pid == pid) {
                if v.reaper.is_none() {
                    v.reaper = Some(outcome);
                }
                return;
            }
        }
    }

    fn event(&mut self, ev: KernelEvent) {
        match ev {
            KernelEvent::OomInvoked {
                task,
                gfp_mask,
                order,
                oom_score_adj,
            } => {
                self.totals.oom_invocations += 1;
                self.table_no += 1;
                let inc = self.start_incident();
                inc.header_printed = true;
                inc.invoking_task = Some(task);
                inc.gfp_mask = gfp_mask;
                inc.order = order;
                inc.invoking_oom_score_adj = oom_score_adj;
                self.context_left = CONTEXT_LINES;
            }
            KernelEvent::TaskTableHeader { columns } => {
                if self
                    .cur
                    .as_ref()
                    .is_none_or(|c| c.task_table_rows > 0 || !c.no_victims())
                {
                    self.table_no += 1;
                }
                self.rec.eras.insert(Era::from_table_columns(&columns));
                self.context_left = CONTEXT_LINES;
            }
            KernelEvent::TaskRow(r) => {
                let r = kernel::TaskRowRef {
                    pid: r.pid,
                    uid: r.uid,
                    tgid: r.tgid,
                    total_vm: r.total_vm,
                    rss: r.rss,
                    oom_adj: r.oom_adj,
                    name: &r.name,
                };
                self.task_row(&r);
            }
            KernelEvent::KillChosen {
                message,
                pid,
                name,
                score,
            } => {
                self.totals.chosen += 1;
                self.context_left = 0;
                self.rec.eras.extend(Era::from_chosen_message(&message));
                let need_new = self
                    .cur
                    .as_ref()
                    .is_none_or(|c| c.chosen.is_some() || !c.no_victims());
                let inc = if need_new {
                    self.start_incident()
                } else {
                    self.open_incident()
                };
                if inc.constraint == Constraint::Unknown {
                    inc.constraint = kernel::constraint_from_message(&message);
                }
                inc.chosen = Some(Chosen {
                    pid,
                    name,
                    score,
                    message,
                });
            }
            KernelEvent::Killed(k) => {
                // a kill storm goes on line after line: those lines are
                // read without the anchor scan
                self.context_left = AFTER_KILL_LINES;
                self.rec.eras.extend(Era::from_killed(&k));
                let join = self
                    .cur
                    .as_ref()
                    .is_some_and(|c| c.no_victims() || c.oom_group.is_some());
                let group = self
                    .cur
                    .as_ref()
                    .is_some_and(|c| c.oom_group.is_some() && !c.no_victims());
                if !join {
                    self.start_incident();
                }
                // a victim's time is shown only for incidents kept in detail
                let kept = self.cur.as_ref().is_some_and(|c| c.kept);
                let time = if kept {
                    show_ts(self.ctx_ts.as_ref())
                } else {
                    None
                };
                let Some(inc) = self.cur.as_mut() else { return };
                if let Some(m) = &k.message {
                    if inc.constraint == Constraint::Unknown {
                        inc.constraint = kernel::constraint_from_message(m);
                    }
                }
                let score = inc
                    .chosen
                    .as_ref()
                    .filter(|c| c.pid == k.pid)
                    .and_then(|c| c.score);
                let uid = k.uid.or_else(|| {
                    inc.summary_pid_uid
                        .filter(|(p, _)| *p == k.pid)
                        .and_then(|(_, u)| u)
                });
                let memcg = inc.task_memcg.clone();
                if inc.no_victims() && inc.sacrificed_child.is_none() {
                    if let Some(c) = inc.chosen.as_ref().filter(|c| c.pid != k.pid) {
                        inc.sacrificed_child = Some(ChildSacrifice {
                            chosen_pid: c.pid,
                            chosen_name: c.name.clone(),
                            score: c.score,
                            victim_pid: k.pid,
                        });
                    }
                }
                let v = Victim {
                    pid: k.pid,
                    name: k.name,
                    uid,
                    total_vm_kb: k.total_vm_kb,
                    anon_rss_kb: k.anon_rss_kb,
                    file_rss_kb: k.file_rss_kb,
                    shmem_rss_kb: k.shmem_rss_kb,
                    pgtables_kb: k.pgtables_kb,
                    oom_score_adj: k.oom_score_adj,
                    score,
                    how: if group { How::OomGroup } else { How::Killed },
                    time,
                    in_task_table: None,
                    respawned: None,
                    reaper: None,
                    started_by: None,
                    kill_no: None,
                };
                self.push_victim(v, memcg);
            }
            KernelEvent::KillSharing { pid, name } => {
                self.totals.killed_sharing_memory += 1;
                if self.cur.is_none() {
                    self.start_incident();
                }
                let time = show_ts(self.ctx_ts.as_ref());
                let memcg = self.cur.as_ref().and_then(|c| c.task_memcg.clone());
                let v = Victim {
                    pid,
                    name,
                    uid: None,
                    total_vm_kb: None,
                    anon_rss_kb: None,
                    file_rss_kb: None,
                    shmem_rss_kb: None,
                    pgtables_kb: None,
                    oom_score_adj: None,
                    score: None,
                    how: How::SharingMemory,
                    time,
                    in_task_table: None,
                    respawned: None,
                    reaper: None,
                    started_by: None,
                    kill_no: None,
                };
                self.push_victim(v, memcg);
            }
            KernelEvent::OomSummary {
                constraint,
                oom_memcg,
                task_memcg,
                task: _,
                pid,
                uid,
            } => {
                self.rec.eras.insert(Era::V50Plus);
                self.context_left = 0;
                let inc = self.open_incident();
                inc.constraint = constraint;
                if oom_memcg.is_some() {
                    inc.oom_memcg = oom_memcg;
                }
                if task_memcg.is_some() {
                    inc.task_memcg = task_memcg;
                }
                inc.summary_pid_uid = Some((pid, uid));
            }
            KernelEvent::MemcgTaskIn {
                task_memcg,
                limit_memcg,
            } => {
                let inc = self.open_incident();
                inc.constraint = Constraint::Memcg;
                inc.task_memcg = Some(task_memcg);
                inc.oom_memcg = Some(limit_memcg);
            }
            KernelEvent::MemcgUsage {
                usage_kb, limit_kb, ..
            } => {
                let inc = self.open_incident();
                if inc.memcg_usage_kb.is_none() {
                    inc.memcg_usage_kb = Some(usage_kb);
                    inc.memcg_limit_kb = Some(limit_kb);
                }
            }
            KernelEvent::MemcgLimitReached { memcg } => {
                let inc = self.open_incident();
                inc.constraint = Constraint::Memcg;
                inc.oom_memcg = Some(memcg);
            }
            KernelEvent::Reaped {
                pid, anon_rss_kb, ..
            } => {
                self.totals.reaped += 1;
                self.set_reaper(pid, Reaper::Reaped { anon_rss_kb });
            }
            KernelEvent::ReapFailed { pid, .. } => {
                self.totals.reap_failed += 1;
                self.set_reaper(pid, Reaper::Unable);
            }
            KernelEvent::OomGroup { memcg } => {
                self.totals.oom_group_sets += 1;
                if self.cur.is_none() {
                    self.start_incident();
                }
                if let Some(c) = self.cur.as_mut() {
                    c.oom_group = Some(memcg);
                }
            }
            KernelEvent::NoKillable => {
                self.totals.no_killable += 1;
                self.context_left = 0;
                self.open_incident().no_killable = true;
            }
            KernelEvent::VictimExiting { pid, name } => {
                self.totals.victims_exiting += 1;
                self.context_left = 0;
                self.open_incident().victim_exiting = Some(Chosen {
                    pid,
                    name,
                    score: None,
                    message: "already exiting".to_string(),
                });
            }
            KernelEvent::Panic { reason } => {
                self.totals.panics += 1;
                self.context_left = 0;
                if self.panic.is_none() {
                    self.panic = Some(reason.clone());
                }
                if let Some(c) = self.cur.as_mut() {
                    c.panic.get_or_insert(reason);
                }
            }
            KernelEvent::WouldHaveKilled { .. } => self.totals.would_have_killed += 1,
            // The panic itself carries the story; the reboot that follows
            // only ends the log.
            KernelEvent::Rebooting { .. } => {}
        }
    }

    /// One task-table row.
    fn task_row(&mut self, r: &kernel::TaskRowRef<'_>) {
        self.totals.task_table_rows += 1;
        self.context_left = CONTEXT_LINES;
        if let Some(c) = self.cur.as_mut() {
            if c.no_victims() {
                c.task_table_rows += 1;
            }
        }
        if self.rec.rows.len() < MAX_ROW_RECORDS {
            let name = self.rec.strings.id(r.name);
            self.push_row(r.pid, r.uid, name, r.rss, r.total_vm, r.oom_adj);
        } else {
            self.rec.rows_dropped += 1;
        }
    }

    /// Keeps a row, tied to the open incident while it has no victim yet
    /// (a table is printed before its kill).
    fn push_row(
        &mut self,
        pid: u32,
        uid: u32,
        name: u32,
        rss: u64,
        total_vm: u64,
        oom_adj: Option<i32>,
    ) {
        let incident = self
            .cur
            .as_ref()
            .filter(|c| c.no_victims())
            .map_or(0, |c| c.index);
        let when = self.ctx_when();
        self.rec.rows.push(RowRec {
            table: self.table_no,
            incident,
            pid,
            uid,
            name,
            rss,
            total_vm,
            oom_adj,
            when,
            seq: self.seq,
        });
    }

    /// Close the last incident, run the diagnosis and hand over the result.
    pub(crate) fn finish(mut self) -> Analysis {
        self.close_incident();
        self.rec.mend_truncated_names();
        let classes = diagnosis::classify(&self.rec);
        for inc in &mut self.incidents {
            for v in &mut inc.victims {
                if let Some(c) = v.kill_no.and_then(|k| classes.get(k)) {
                    v.in_task_table = c.in_table;
                    v.respawned = c.respawned;
                    if v.uid.is_none() {
                        v.uid = c.uid;
                    }
                }
            }
        }
        let links = supervisors::link(&self.rec);
        for inc in &mut self.incidents {
            for v in &mut inc.victims {
                if let Some(s) = v.kill_no.and_then(|k| links.started_by.get(&k)) {
                    v.started_by = Some(*s);
                }
            }
        }
        let (groups, loops) =
            diagnosis::groups(&self.rec, &classes, &links, self.opts.min_respawned_kills);
        let mut notes = Vec::new();
        if !self.errors.is_empty() {
            notes.push(Note::InputsUnreadable {
                count: self.errors.len() as u64,
            });
        }
        if self.rec.kills_dropped > 0 {
            notes.push(Note::KillsNotClassified {
                count: self.rec.kills_dropped,
                kept: MAX_KILL_RECORDS,
            });
        }
        if self.rec.rows_dropped > 0 {
            notes.push(Note::RowsNotKept {
                count: self.rec.rows_dropped,
                kept: MAX_ROW_RECORDS,
            });
        }
        if self.totals.killed > 0 && self.totals.task_table_rows == 0 {
            notes.push(Note::NoTaskTable);
        }
        let killed = self.totals.killed + self.totals.killed_sharing_memory;
        if self.totals.chosen > killed {
            notes.push(Note::SelectionsWithoutKill {
                count: self.totals.chosen - killed,
            });
        }
        let mut sacrificed: std::collections::BTreeMap<(u32, String), u64> = Default::default();
        for sc in self
            .incidents
            .iter()
            .filter_map(|i| i.sacrificed_child.as_ref())
        {
            *sacrificed
                .entry((sc.chosen_pid, sc.chosen_name.clone()))
                .or_default() += 1;
        }
        for ((chosen_pid, chosen_name), times) in sacrificed {
            notes.push(Note::ChildSacrificed {
                chosen_pid,
                chosen_name,
                times,
            });
        }
        if links.unmatched_deaths > 0 {
            notes.push(Note::DeathsUnmatched {
                count: links.unmatched_deaths,
            });
        }
        for (supervisor, count, why) in links.self_kills {
            notes.push(Note::SelfKills {
                supervisor,
                count,
                why,
            });
        }
        Analysis {
            unreadable: self.errors,
            repaired: self.repairs,
            ram_kb: self.rec.ram_pages.map(|p| p * 4),
            inputs: self.inputs,
            totals: self.totals,
            loop_found: !loops.is_empty(),
            loops,
            groups,
            incidents: self.incidents,
            incidents_omitted: self.omitted,
            panic: self.panic,
            eras: self.rec.eras.into_iter().collect(),
            notes,
        }
    }
}
