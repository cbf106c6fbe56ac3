//! Incidents, victims, groups and the loop diagnosis, built from the parsed
//! event stream in one pass (plus a small pass over compact kill/row records
//! at the end).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::envelope::{self, Messages};
use super::era::Era;
use super::input::LineSink;
use super::{Analysis, AnalyzeOptions, InputStats};
use crate::events::kernel::{self, Constraint, KernelEvent, Parser, Timestamp};
use crate::events::prefix::{Clock, When};

/// Lines looked at one by one after an OOM header before giving up on a
/// task table that has not appeared.
const CONTEXT_LINES: u32 = 1000;
const MAX_KILL_RECORDS: usize = 100_000;
const MAX_ROW_RECORDS: usize = 150_000;
/// Victims listed per incident (oom.group can kill a whole cgroup).
const MAX_VICTIMS_LISTED: usize = 200;
const MAX_PIDS_LISTED: usize = 40;
/// Tables older than this (same clock) do not start the victim's episode.
const EPISODE_S: f64 = 3600.0;

/// (newest pid, oldest pid, pid_max) of a table: see [`largest_gap`].
type Gap = Option<(u32, u32, u64)>;
/// Prefix pid counts less one incident's own rows, cached by (prefix, incident).
type OwnCache = ((usize, u64), HashMap<u32, u32>, Gap);

fn show_ts(ts: Option<&Timestamp>) -> Option<String> {
    match ts? {
        Timestamp::Monotonic(t) => Some(format!("[{t:.6}]")),
        Timestamp::Wall(s) => Some(s.clone()),
    }
}

/// Aggregate counts over all inputs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Incidents (OOM reports, or kill lines whose report was ratelimited).
    pub incidents: u64,
    /// `invoked oom-killer` headers (ratelimited by the kernel).
    pub oom_invocations: u64,
    /// `Kill process ... score N` selection lines (<= 5.0).
    pub chosen: u64,
    /// `Killed process` lines: the kills (never ratelimited).
    pub killed: u64,
    /// `Kill process ... sharing same memory` (also killed).
    pub killed_sharing_memory: u64,
    pub oom_group_sets: u64,
    pub reaped: u64,
    pub reap_failed: u64,
    pub no_killable: u64,
    pub victims_exiting: u64,
    pub panics: u64,
    pub task_table_rows: u64,
    pub would_have_killed: u64,
}

/// The task selected by `Kill process P (comm) score S` (<= 5.0).
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub pid: u32,
    pub name: String,
    pub score: Option<i64>,
    pub message: String,
}

/// A task that was signalled.
#[derive(Debug, Clone, Serialize)]
pub struct Victim {
    pub pid: u32,
    pub name: String,
    pub uid: Option<u32>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// From the matching `Kill process` line.
    pub score: Option<i64>,
    pub how: How,
    pub time: Option<String>,
    /// Was the pid in a task table printed before this OOM's own report?
    /// `None`: no such table.
    pub in_task_table: Option<bool>,
    /// Born during the OOM episode: absent from the episode's first task
    /// table (the earliest one printed before this kill, other than its own
    /// report's, within an hour) and newer than every process in it (pid
    /// order with wrap-around). `None`: no such table.
    pub respawned: Option<bool>,
    /// What the oom_reaper said about it, if anything.
    pub reaper: Option<Reaper>,
    #[serde(skip)]
    kill_no: Option<usize>,
}

/// How a victim was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// `Killed process`: the victim of the OOM killer.
    Killed,
    /// `Kill process ... sharing same memory` (<= 5.0).
    SharingMemory,
    /// Killed with its whole cgroup (`memory.oom.group`).
    OomGroup,
}

/// What the oom_reaper printed about a victim. Its `--json` form is the
/// sentence `render` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaper {
    /// `reaped process`, with the anon-rss left when printed.
    Reaped { anon_rss_kb: Option<u64> },
    /// `unable to reap`.
    Unable,
}

/// One OOM report (or a ratelimited kill without one).
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub index: u64,
    pub input: String,
    /// Byte offset of its first line in the (decompressed) input.
    pub offset: u64,
    pub time: Option<String>,
    pub uptime_s: Option<f64>,
    pub header_printed: bool,
    pub invoking_task: Option<String>,
    pub gfp_mask: Option<String>,
    pub order: Option<i32>,
    pub invoking_oom_score_adj: Option<i32>,
    pub constraint: Constraint,
    /// memcg whose limit was hit (`oom_memcg=` / `limit of`).
    pub oom_memcg: Option<String>,
    /// memcg of the victim task (`task_memcg=` / `Task in`).
    pub task_memcg: Option<String>,
    pub memcg_usage_kb: Option<u64>,
    pub memcg_limit_kb: Option<u64>,
    pub task_table_rows: u64,
    pub chosen: Option<Chosen>,
    pub victims: Vec<Victim>,
    /// Victims past the first 200 of this incident (counted only).
    pub victims_not_listed: u64,
    pub oom_group: Option<String>,
    pub no_killable: bool,
    /// `OOM victim P (comm) is already exiting`: nothing killed.
    pub victim_exiting: Option<Chosen>,
    pub panic: Option<String>,
    #[serde(skip)]
    summary_pid_uid: Option<(u32, Option<u32>)>,
}

/// The process that most likely re-forks the victims.
#[derive(Debug, Clone, Serialize)]
pub struct MasterGuess {
    pub pid: u32,
    pub uid: u32,
    pub name: String,
    pub rss_pages: u64,
    pub total_vm_pages: u64,
}

/// Processes of the victims' name never chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Spared {
    pub uid: u32,
    pub count: usize,
    pub pids: Vec<u32>,
    pub max_rss_pages: u64,
    /// Why they were spared (`--json`: `why`, the sentence `render` writes).
    #[serde(rename = "why")]
    pub reason: SpareReason,
}

/// Why processes of the victims' name and another uid were never chosen.
/// Its `--json` form is the sentence `render` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpareReason {
    /// All of them OOM-immune: oom_score_adj -1000 (oom_adj -17).
    Immune,
    /// Root-owned and small, on a kernel whose `oom_badness()` discounts
    /// root ([`super::Era::has_root_bonus`]).
    RootDiscount {
        /// Their largest rss, in pages.
        max_rss_pages: u64,
        /// The victims' largest rss in a task table, in pages, if known.
        victims_rss_pages: Option<u64>,
        victims_uid: Option<u32>,
    },
    /// Smaller than the victims (badness is mostly rss).
    LowerBadness {
        max_rss_pages: u64,
        victims_rss_pages: u64,
    },
    /// The log does not say.
    Unknown,
}

/// Victims with the same (name, uid, memcg).
#[derive(Debug, Clone, Serialize)]
pub struct VictimGroup {
    pub name: String,
    pub uid: Option<u32>,
    pub memcg: Option<String>,
    pub kills: u64,
    pub distinct_pids: u64,
    pub respawned_kills: u64,
    pub in_table_kills: u64,
    /// Kills with no task table before them (cannot tell).
    pub unknown_kills: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub span_s: Option<f64>,
    pub kills_per_s: Option<f64>,
    /// Victim pids in kill order (first 40).
    pub pids: Vec<u32>,
    pub likely_master: Option<MasterGuess>,
    pub spared: Vec<Spared>,
    pub is_loop: bool,
}

/// A kill/respawn loop (or a suspected one).
#[derive(Debug, Clone, Serialize)]
pub struct LoopFinding {
    pub name: String,
    pub uid: Option<u32>,
    pub memcg: Option<String>,
    /// Confirmed by task tables (respawned pids); otherwise suspected from
    /// repeated kills of distinct pids with no table to compare against.
    pub confirmed: bool,
    pub kills: u64,
    pub respawned_kills: u64,
    pub kills_per_s: Option<f64>,
    pub span_s: Option<f64>,
    pub likely_master: Option<u32>,
    /// Distinct victim pids (the evidence of a suspected loop).
    #[serde(skip)]
    pub distinct_pids: u64,
    /// The likely master's rss, in pages.
    #[serde(skip)]
    pub likely_master_rss_pages: Option<u64>,
}

/// Something the reader of a report should know about the analysis
/// itself. Its `--json` form is the sentence `render` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Kills past the first `kept` were counted but not classified.
    KillsNotClassified { count: u64, kept: usize },
    /// Task-table rows past the first `kept` were not kept.
    RowsNotKept { count: u64, kept: usize },
    /// Kills but no task table: respawns cannot be confirmed.
    NoTaskTable,
    /// Selection lines with no `Killed process` line after them.
    SelectionsWithoutKill { count: u64 },
}

struct KillRec {
    incident: u64,
    /// The line was cut inside the name.
    truncated: bool,
    pid: u32,
    name: u32,
    uid: Option<u32>,
    memcg: Option<u32>,
    when: Option<When>,
    time: Option<String>,
    seq: u64,
}

struct RowRec {
    /// The incident whose report printed it (0: none).
    incident: u64,
    /// Which printed table (snapshot) it belongs to.
    table: u32,
    pid: u32,
    uid: u32,
    name: u32,
    rss: u64,
    total_vm: u64,
    oom_adj: Option<i32>,
    when: Option<When>,
    seq: u64,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }
    fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }
}

pub(crate) struct Builder {
    opts: AnalyzeOptions,
    parser: Parser,
    inputs: Vec<InputStats>,
    seq: u64,
    totals: Totals,
    cur: Option<Incident>,
    incidents: Vec<Incident>,
    omitted: u64,
    kills: Vec<KillRec>,
    kills_dropped: u64,
    rows: Vec<RowRec>,
    rows_dropped: u64,
    strings: Interner,
    context_left: u32,
    panic: Option<String>,
    eras: BTreeSet<Era>,
    // context of the line being handled
    ctx_ts: Option<Timestamp>,
    ctx_uptime: Option<f64>,
    ctx_offset: u64,
    line_truncated_name: bool,
    /// Task-table snapshot counter: a new one at each header / OOM report.
    table_no: u32,
}

fn new_incident(index: u64, input: &str, offset: u64) -> Incident {
    Incident {
        index,
        input: input.to_string(),
        offset,
        time: None,
        uptime_s: None,
        header_printed: false,
        invoking_task: None,
        gfp_mask: None,
        order: None,
        invoking_oom_score_adj: None,
        constraint: Constraint::Unknown,
        oom_memcg: None,
        task_memcg: None,
        memcg_usage_kb: None,
        memcg_limit_kb: None,
        task_table_rows: 0,
        chosen: None,
        victims: Vec::new(),
        victims_not_listed: 0,
        oom_group: None,
        no_killable: false,
        victim_exiting: None,
        panic: None,
        summary_pid_uid: None,
    }
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
            kills: Vec::new(),
            kills_dropped: 0,
            rows: Vec::new(),
            rows_dropped: 0,
            strings: Interner::default(),
            context_left: 0,
            panic: None,
            eras: BTreeSet::new(),
            ctx_ts: None,
            ctx_uptime: None,
            ctx_offset: 0,
            line_truncated_name: false,
            table_no: 0,
        }
    }

    pub(crate) fn begin_input(&mut self, path: &str, gzip: bool) {
        self.inputs.push(InputStats {
            path: path.to_string(),
            bytes: 0,
            lines_examined: 0,
            gzip,
            journal_json_lines: 0,
        });
        self.context_left = 0;
    }

    pub(crate) fn end_input(&mut self, bytes: u64) {
        if let Some(i) = self.inputs.last_mut() {
            i.bytes = bytes;
        }
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
        let mut inc = new_incident(self.totals.incidents, &self.input_name(), self.ctx_offset);
        inc.time = show_ts(self.ctx_ts.as_ref());
        inc.uptime_s = self.ctx_uptime;
        self.cur.insert(inc)
    }

    /// The current incident if it has no victim yet, else a new one.
    fn open_incident(&mut self) -> &mut Incident {
        let reuse = self
            .cur
            .as_ref()
            .is_some_and(|c| c.victims.is_empty() && c.victim_exiting.is_none() && !c.no_killable);
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
        if self.kills.len() < MAX_KILL_RECORDS {
            let memcg = memcg.map(|m| self.strings.id(&m));
            let name = self.strings.id(&v.name);
            v.kill_no = Some(self.kills.len());
            let incident = self.cur.as_ref().map_or(0, |c| c.index);
            self.kills.push(KillRec {
                incident,
                truncated: self.line_truncated_name,
                pid: v.pid,
                name,
                uid: v.uid,
                memcg,
                when: When::of(self.ctx_ts.as_ref()),
                time: v.time.clone(),
                seq: self.seq,
            });
        } else {
            self.kills_dropped += 1;
        }
        if let Some(c) = self.cur.as_mut() {
            if c.victims.len() < MAX_VICTIMS_LISTED {
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
                    .is_none_or(|c| c.task_table_rows > 0 || !c.victims.is_empty())
                {
                    self.table_no += 1;
                }
                self.eras.insert(Era::from_table_columns(&columns));
                self.context_left = CONTEXT_LINES;
            }
            KernelEvent::TaskRow(r) => {
                self.totals.task_table_rows += 1;
                self.context_left = CONTEXT_LINES;
                if let Some(c) = self.cur.as_mut() {
                    if c.victims.is_empty() {
                        c.task_table_rows += 1;
                    }
                }
                if self.rows.len() < MAX_ROW_RECORDS {
                    let name = self.strings.id(&r.name);
                    let incident = self
                        .cur
                        .as_ref()
                        .filter(|c| c.victims.is_empty())
                        .map_or(0, |c| c.index);
                    self.rows.push(RowRec {
                        table: self.table_no,
                        incident,
                        pid: r.pid,
                        uid: r.uid,
                        name,
                        rss: r.rss,
                        total_vm: r.total_vm,
                        oom_adj: r.oom_adj,
                        when: When::of(self.ctx_ts.as_ref()),
                        seq: self.seq,
                    });
                } else {
                    self.rows_dropped += 1;
                }
            }
            KernelEvent::KillChosen {
                message,
                pid,
                name,
                score,
            } => {
                self.totals.chosen += 1;
                self.context_left = 0;
                self.eras.extend(Era::from_chosen_message(&message));
                let need_new = self
                    .cur
                    .as_ref()
                    .is_none_or(|c| c.chosen.is_some() || !c.victims.is_empty());
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
                self.context_left = 0;
                self.eras.extend(Era::from_killed(&k));
                let join = self
                    .cur
                    .as_ref()
                    .is_some_and(|c| c.victims.is_empty() || c.oom_group.is_some());
                let group = self
                    .cur
                    .as_ref()
                    .is_some_and(|c| c.oom_group.is_some() && !c.victims.is_empty());
                if !join {
                    self.start_incident();
                }
                let time = show_ts(self.ctx_ts.as_ref());
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
                self.eras.insert(Era::V50Plus);
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
        }
    }

    fn handle_msg(&mut self, msg: &str) {
        match self.parser.parse(msg) {
            Some(ev) => {
                self.line_truncated_name = match &ev {
                    KernelEvent::Killed(k) => !msg.contains(&format!("({})", k.name)),
                    _ => false,
                };
                self.event(ev);
            }
            None => {
                if self.context_left > 0 {
                    self.partial_row(msg);
                }
                self.context_left = self.context_left.saturating_sub(1);
            }
        }
    }

    /// A task-table row cut short or interleaved (`[  701]   999   701   9000 [  600.1] e1000e: ...`):
    /// its pid still proves the process existed at table time.
    fn partial_row(&mut self, msg: &str) {
        let Some(t) = msg.trim_start().strip_prefix('[') else {
            return;
        };
        let Some((inside, rest)) = t.split_once(']') else {
            return;
        };
        let Ok(pid) = inside.trim().parse::<u32>() else {
            return;
        };
        let mut it = rest.split_ascii_whitespace();
        let uid = it.next().and_then(|u| u.parse::<u32>().ok());
        let tgid = it.next().and_then(|u| u.parse::<u32>().ok());
        if uid.is_none() || tgid.is_none() || self.rows.len() >= MAX_ROW_RECORDS {
            return;
        }
        self.totals.task_table_rows += 1;
        let name = self.strings.id("");
        let incident = self
            .cur
            .as_ref()
            .filter(|c| c.victims.is_empty())
            .map_or(0, |c| c.index);
        self.rows.push(RowRec {
            table: self.table_no,
            incident,
            pid,
            uid: uid.unwrap_or(u32::MAX),
            name,
            rss: 0,
            total_vm: 0,
            oom_adj: None,
            when: When::of(self.ctx_ts.as_ref()),
            seq: self.seq,
        });
    }

    /// A victim name cut short by a truncated line (`Killed process 12
    /// (ngi`) takes the one longer name it is a prefix of.
    fn mend_truncated_names(&mut self) {
        let short: BTreeSet<u32> = self
            .kills
            .iter()
            .filter(|k| k.truncated)
            .map(|k| k.name)
            .collect();
        if short.is_empty() {
            return;
        }
        let mut full: BTreeSet<u32> = self.kills.iter().map(|k| k.name).collect();
        full.extend(self.rows.iter().map(|r| r.name));
        let mut remap: HashMap<u32, u32> = HashMap::new();
        for &n in short.iter().take(1000) {
            let short = self.strings.get(n);
            if short.is_empty() {
                continue;
            }
            let longer: Vec<u32> = full
                .iter()
                .copied()
                .filter(|&m| m != n && self.strings.get(m).starts_with(short))
                .collect();
            if let [only] = longer[..] {
                remap.insert(n, only);
            }
        }
        for k in self.kills.iter_mut().filter(|k| k.truncated) {
            if let Some(&m) = remap.get(&k.name) {
                k.name = m;
            }
        }
    }

    pub(crate) fn finish(mut self) -> Analysis {
        self.close_incident();
        self.mend_truncated_names();
        let classes = self.classify();
        for inc in &mut self.incidents {
            for v in &mut inc.victims {
                if let Some((in_t, resp, uid)) = v.kill_no.and_then(|k| classes.get(k)) {
                    v.in_task_table = *in_t;
                    v.respawned = *resp;
                    if v.uid.is_none() {
                        v.uid = *uid;
                    }
                }
            }
        }
        let (groups, loops) = self.groups(&classes);
        let mut notes = Vec::new();
        if self.kills_dropped > 0 {
            notes.push(Note::KillsNotClassified {
                count: self.kills_dropped,
                kept: MAX_KILL_RECORDS,
            });
        }
        if self.rows_dropped > 0 {
            notes.push(Note::RowsNotKept {
                count: self.rows_dropped,
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
        Analysis {
            inputs: self.inputs,
            totals: self.totals,
            loop_found: !loops.is_empty(),
            loops,
            groups,
            incidents: self.incidents,
            incidents_omitted: self.omitted,
            panic: self.panic,
            eras: self.eras.into_iter().collect(),
            notes,
        }
    }

    /// Per kill: (in an earlier task table, respawned, uid from the tables).
    fn classify(&self) -> Vec<(Option<bool>, Option<bool>, Option<u32>)> {
        let clock = self
            .rows
            .iter()
            .map(|r| r.when)
            .chain(self.kills.iter().map(|k| k.when))
            .try_fold(None, |acc: Option<Clock>, w| match (acc, w) {
                (_, None) => Err(()),
                (None, Some(w)) => Ok(Some(w.clock)),
                (Some(c), Some(w)) if c == w.clock => Ok(Some(c)),
                _ => Err(()),
            })
            .ok()
            .flatten();
        // Rows in "time" order: by timestamp when every line has one clock,
        // else by position in the input.
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        let key_row = |r: &RowRec| -> f64 {
            match (clock, r.when) {
                (Some(_), Some(w)) => w.t,
                _ => r.seq as f64,
            }
        };
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rows[*a], &self.rows[*b]);
            key_row(ra).total_cmp(&key_row(rb))
        });
        let keys: Vec<f64> = order.iter().map(|i| key_row(&self.rows[*i])).collect();
        let mut uid_of: HashMap<u32, u32> = HashMap::new();
        for r in &self.rows {
            uid_of.insert(r.pid, r.uid);
        }
        let pid_max = Era::smallest_pid_max(self.eras.iter().copied());
        // Position of each row in `order`, and the rows of each incident:
        // a victim's own report's table is not "earlier" (6.x prints one per
        // OOM, with the victim in it).
        let mut pos_of = vec![0usize; self.rows.len()];
        for (p, i) in order.iter().enumerate() {
            if let Some(x) = pos_of.get_mut(*i) {
                *x = p;
            }
        }
        let mut by_incident: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, r) in self.rows.iter().enumerate() {
            if r.incident != 0 {
                by_incident.entry(r.incident).or_default().push(i);
            }
        }
        // Snapshots (one printed table each), by their first row's key.
        struct Snap {
            key: f64,
            clock_t: Option<f64>,
            incident: u64,
            pids: HashSet<u32>,
            gap: Option<(u32, u32, u64)>,
        }
        let mut snaps: Vec<Snap> = Vec::new();
        {
            let mut idx: HashMap<u32, usize> = HashMap::new();
            for r in &self.rows {
                let i = *idx.entry(r.table).or_insert_with(|| {
                    snaps.push(Snap {
                        key: key_row(r),
                        clock_t: r.when.map(|w| w.t),
                        incident: r.incident,
                        pids: HashSet::new(),
                        gap: None,
                    });
                    snaps.len() - 1
                });
                if let Some(sn) = snaps.get_mut(i) {
                    sn.pids.insert(r.pid);
                }
            }
            for sn in &mut snaps {
                sn.gap = largest_gap(sn.pids.iter().copied(), pid_max);
            }
            snaps.sort_by(|a, b| a.key.total_cmp(&b.key));
        }
        let mut out = Vec::with_capacity(self.kills.len());
        let mut counts: HashMap<u32, u32> = HashMap::new();
        let mut set_n = 0usize;
        let mut gap: Option<(u32, u32, u64)> = None; // newest, oldest, pid_max
        let mut own_cache: Option<OwnCache> = None;
        for k in &self.kills {
            let kk = match (clock, k.when) {
                (Some(_), Some(w)) => w.t,
                _ => k.seq as f64,
            };
            let n = if clock.is_some() {
                keys.partition_point(|x| *x <= kk)
            } else {
                keys.partition_point(|x| *x < kk)
            };
            if n != set_n {
                if n < set_n {
                    counts.clear();
                    set_n = 0;
                }
                for i in order.get(set_n..n).unwrap_or_default() {
                    if let Some(r) = self.rows.get(*i) {
                        *counts.entry(r.pid).or_default() += 1;
                    }
                }
                set_n = n;
                gap = largest_gap(counts.keys().copied(), pid_max);
            }
            let uid = k.uid.or_else(|| uid_of.get(&k.pid).copied());
            // this incident's own rows within the prefix
            let own: Vec<u32> = by_incident
                .get(&k.incident)
                .map(|v| {
                    v.iter()
                        .filter(|i| pos_of.get(**i).is_some_and(|p| *p < n))
                        .filter_map(|i| self.rows.get(*i).map(|r| r.pid))
                        .collect()
                })
                .unwrap_or_default();
            let (in_t, g, empty) = if own.is_empty() {
                (counts.contains_key(&k.pid), gap, counts.is_empty())
            } else {
                let key = (n, k.incident);
                if own_cache.as_ref().is_none_or(|c| c.0 != key) {
                    let mut c = counts.clone();
                    for p in &own {
                        if let Some(x) = c.get_mut(p) {
                            *x = x.saturating_sub(1);
                        }
                    }
                    c.retain(|_, v| *v > 0);
                    let g = largest_gap(c.keys().copied(), pid_max);
                    own_cache = Some((key, c, g));
                }
                match &own_cache {
                    Some((_, c, g)) => (c.contains_key(&k.pid), *g, c.is_empty()),
                    None => (false, None, true),
                }
            };
            if empty {
                out.push((None, None, uid));
                continue;
            }
            let _ = g;
            // Respawned: born during the episode, i.e. absent from the first
            // table of the episode (the earliest one before this kill, other
            // than its own report's, at most EPISODE_S earlier) and newer
            // than every process in it.
            let first = snaps.iter().find(|sn| {
                let before = if clock.is_some() {
                    sn.key <= kk
                } else {
                    sn.key < kk
                };
                let near = match (clock, sn.clock_t, k.when) {
                    (Some(_), Some(t), Some(w)) => w.t - t <= EPISODE_S,
                    _ => true,
                };
                before && near && (sn.incident == 0 || sn.incident != k.incident)
            });
            let resp = first.map(|sn| {
                !sn.pids.contains(&k.pid)
                    && sn.gap.is_some_and(|(newest, oldest, pid_max)| {
                        in_gap(k.pid, newest, oldest, pid_max)
                    })
            });
            out.push((Some(in_t), resp, uid));
        }
        out
    }

    fn groups(
        &self,
        classes: &[(Option<bool>, Option<bool>, Option<u32>)],
    ) -> (Vec<VictimGroup>, Vec<LoopFinding>) {
        #[derive(Default)]
        struct Acc {
            kills: u64,
            pids: Vec<u32>,
            distinct: HashSet<u32>,
            incidents: HashSet<u64>,
            respawned: u64,
            in_table: u64,
            unknown: u64,
            first: Option<(Option<When>, Option<String>)>,
            last: Option<(Option<When>, Option<String>)>,
            victim_rss: Vec<u64>,
        }
        let mut accs: BTreeMap<(u32, Option<u32>, Option<u32>), Acc> = BTreeMap::new();
        let killed_pids: HashSet<u32> = self.kills.iter().map(|k| k.pid).collect();
        let mut row_by_pid: HashMap<u32, &RowRec> = HashMap::new();
        let mut rows_by_name: HashMap<u32, Vec<&RowRec>> = HashMap::new();
        for r in &self.rows {
            row_by_pid.insert(r.pid, r);
            rows_by_name.entry(r.name).or_default().push(r);
        }
        // Ratelimited kills print no memcg: inherit the last one seen for
        // the same (name, uid).
        let mut last_memcg: HashMap<(u32, Option<u32>), u32> = HashMap::new();
        let mut last_uid: HashMap<u32, u32> = HashMap::new();
        for (k, c) in self.kills.iter().zip(classes) {
            let uid = match c.2 {
                Some(u) => {
                    last_uid.insert(k.name, u);
                    Some(u)
                }
                None => last_uid.get(&k.name).copied(),
            };
            let memcg = match k.memcg {
                Some(m) => {
                    last_memcg.insert((k.name, uid), m);
                    Some(m)
                }
                None => last_memcg.get(&(k.name, uid)).copied(),
            };
            let a = accs.entry((k.name, uid, memcg)).or_default();
            a.kills += 1;
            if a.pids.len() < MAX_PIDS_LISTED {
                a.pids.push(k.pid);
            }
            a.distinct.insert(k.pid);
            a.incidents.insert(k.incident);
            match c.1 {
                Some(true) => a.respawned += 1,
                Some(false) => {}
                None => a.unknown += 1,
            }
            if c.0 == Some(true) {
                a.in_table += 1;
                if let Some(r) = row_by_pid.get(&k.pid) {
                    a.victim_rss.push(r.rss);
                }
            }
            if a.first.is_none() {
                a.first = Some((k.when, k.time.clone()));
            }
            a.last = Some((k.when, k.time.clone()));
        }
        let root_bonus = self.eras.iter().all(|e| e.has_root_bonus());
        let mut groups = Vec::new();
        let mut loops = Vec::new();
        for ((name_id, uid, memcg), a) in accs {
            let name = self.strings.get(name_id).to_string();
            let memcg = memcg.map(|m| self.strings.get(m).to_string());
            let (span, rate) = match (&a.first, &a.last) {
                (Some((Some(f), _)), Some((Some(l), _))) if f.clock == l.clock => {
                    let mut span = (l.t - f.t).max(0.0);
                    if f.coarse {
                        span += 1.0;
                    }
                    let rate = if span > 0.0 {
                        Some((a.kills as f64 / span * 100.0).round() / 100.0)
                    } else {
                        None
                    };
                    (Some(span), rate)
                }
                _ => (None, None),
            };
            // Same name and uid in the tables, never killed: lowest pid.
            let mut same: Vec<&RowRec> = rows_by_name
                .get(&name_id)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|r| !killed_pids.contains(&r.pid))
                        .collect()
                })
                .unwrap_or_default();
            same.sort_by_key(|r| r.pid);
            same.dedup_by_key(|r| r.pid);
            let confirmed = a.respawned >= self.opts.min_respawned_kills as u64;
            let suspected = !confirmed
                && a.unknown == a.kills
                && a.incidents.len() >= 3
                && a.distinct.len() as u64 >= (self.opts.min_respawned_kills as u64 + 1).max(3);
            let is_loop = confirmed || suspected;
            let master = uid
                .filter(|_| is_loop)
                .and_then(|u| same.iter().find(|r| r.uid == u))
                .map(|r| MasterGuess {
                    pid: r.pid,
                    uid: r.uid,
                    name: name.clone(),
                    rss_pages: r.rss,
                    total_vm_pages: r.total_vm,
                });
            let victim_rss = a.victim_rss.iter().copied().max().unwrap_or(0);
            let mut by_uid: BTreeMap<u32, Vec<&RowRec>> = BTreeMap::new();
            for r in &same {
                if master.as_ref().is_some_and(|m| m.pid == r.pid) {
                    continue;
                }
                by_uid.entry(r.uid).or_default().push(r);
            }
            let spared = by_uid
                .into_iter()
                .map(|(u, rs)| {
                    let max_rss = rs.iter().map(|r| r.rss).max().unwrap_or(0);
                    let immune = rs
                        .iter()
                        .all(|r| matches!(r.oom_adj, Some(-1000) | Some(-17)));
                    let reason = if immune {
                        SpareReason::Immune
                    } else if u == 0 && Some(u) != uid && root_bonus {
                        SpareReason::RootDiscount {
                            max_rss_pages: max_rss,
                            victims_rss_pages: (victim_rss > 0).then_some(victim_rss),
                            victims_uid: uid,
                        }
                    } else if victim_rss > 0 && max_rss < victim_rss {
                        SpareReason::LowerBadness {
                            max_rss_pages: max_rss,
                            victims_rss_pages: victim_rss,
                        }
                    } else {
                        SpareReason::Unknown
                    };
                    Spared {
                        uid: u,
                        count: rs.len(),
                        pids: rs.iter().take(MAX_PIDS_LISTED).map(|r| r.pid).collect(),
                        max_rss_pages: max_rss,
                        reason,
                    }
                })
                .collect();
            let g = VictimGroup {
                name: name.clone(),
                uid,
                memcg: memcg.clone(),
                kills: a.kills,
                distinct_pids: a.distinct.len() as u64,
                respawned_kills: a.respawned,
                in_table_kills: a.in_table,
                unknown_kills: a.unknown,
                first_time: a.first.and_then(|f| f.1),
                last_time: a.last.and_then(|l| l.1),
                span_s: span,
                kills_per_s: rate,
                pids: a.pids,
                likely_master: master,
                spared,
                is_loop,
            };
            if is_loop {
                loops.push(LoopFinding {
                    name: g.name.clone(),
                    uid: g.uid,
                    memcg: g.memcg.clone(),
                    confirmed,
                    kills: g.kills,
                    respawned_kills: g.respawned_kills,
                    kills_per_s: g.kills_per_s,
                    span_s: g.span_s,
                    likely_master: g.likely_master.as_ref().map(|m| m.pid),
                    distinct_pids: g.distinct_pids,
                    likely_master_rss_pages: g.likely_master.as_ref().map(|m| m.rss_pages),
                });
            }
            groups.push(g);
        }
        groups.sort_by(|a, b| b.kills.cmp(&a.kills).then(a.name.cmp(&b.name)));
        loops.sort_by(|a, b| {
            b.confirmed
                .cmp(&a.confirmed)
                .then(b.respawned_kills.cmp(&a.respawned_kills))
                .then(b.kills.cmp(&a.kills))
        });
        (groups, loops)
    }
}

/// The largest circular gap between used pids: (newest, oldest, pid_max).
/// Pids are handed out upwards and wrap at pid_max, so the newest process is
/// the one just before the largest gap. `era_pid_max`: where the era's
/// kernels wrap pids ([`Era::pid_max`]); larger pids than that in the table
/// mean a larger pid_max (4194304, or failing that 2^32).
fn largest_gap(pids: impl Iterator<Item = u32>, era_pid_max: u64) -> Option<(u32, u32, u64)> {
    let mut v: Vec<u32> = pids.collect();
    v.sort_unstable();
    let (&first, &last) = (v.first()?, v.last()?);
    let pid_max: u64 = if u64::from(last) < era_pid_max {
        era_pid_max
    } else if last < 4_194_304 {
        4_194_304
    } else {
        u64::from(u32::MAX) + 1
    };
    let mut best = (last, first, pid_max - u64::from(last) + u64::from(first));
    for w in v.windows(2) {
        if let [a, b] = w {
            let g = u64::from(*b - *a);
            if g > best.2 {
                best = (*a, *b, g);
            }
        }
    }
    Some((best.0, best.1, pid_max))
}

/// Is `pid` strictly between `newest` and `oldest`, going upwards and
/// wrapping at `pid_max`?
fn in_gap(pid: u32, newest: u32, oldest: u32, pid_max: u64) -> bool {
    let (p, n, o) = (u64::from(pid), u64::from(newest), u64::from(oldest));
    let d_pid = (p + pid_max - n) % pid_max;
    let d_old = (o + pid_max - n) % pid_max;
    let d_old = if d_old == 0 { pid_max } else { d_old };
    d_pid > 0 && d_pid < d_old
}

impl LineSink for Builder {
    fn line(&mut self, line: &[u8], offset: u64) {
        self.seq += 1;
        self.ctx_offset = offset;
        if let Some(i) = self.inputs.last_mut() {
            i.lines_examined += 1;
        }
        envelope::open(line, self);
    }

    fn wants_every_line(&self) -> bool {
        self.context_left > 0
    }
}

impl Messages for Builder {
    fn time(&mut self, ts: Option<Timestamp>, uptime: Option<f64>) {
        self.ctx_ts = ts;
        self.ctx_uptime = uptime;
    }

    fn journal_record(&mut self) {
        if let Some(i) = self.inputs.last_mut() {
            i.journal_json_lines += 1;
        }
    }

    fn message(&mut self, msg: &str) {
        self.handle_msg(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_and_wrap() {
        let set: HashSet<u32> = [29640, 29645, 30747, 8353, 8357].into_iter().collect();
        let (n, o, m) = largest_gap(set.iter().copied(), 32_768).unwrap();
        assert_eq!((n, o, m), (8357, 29640, 32768));
        assert!(in_gap(8358, n, o, m));
        assert!(!in_gap(8357, n, o, m));
        assert!(!in_gap(30000, n, o, m));
        // a modern system: no wrap, the newest is the highest pid
        let set: HashSet<u32> = [1, 800, 5000, 25000, 25010].into_iter().collect();
        let (n, _, m) = largest_gap(set.iter().copied(), 4_194_304).unwrap();
        assert_eq!((n, m), (25010, 4_194_304));
        let set: HashSet<u32> = [100, 200].into_iter().collect();
        let (n, o, m) = largest_gap(set.iter().copied(), 32_768).unwrap();
        assert_eq!((n, o), (200, 100));
        assert!(in_gap(201, n, o, m));
        assert!(in_gap(5, n, o, m));
        assert!(!in_gap(150, n, o, m));
    }
}
