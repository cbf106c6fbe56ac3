//! The diagnosis: which kills were of processes born during the OOM
//! episode (respawned), victims grouped by (name, uid, memcg), the
//! processes spared, and which groups are kill/respawn loops.

use std::collections::{BTreeMap, HashMap};

use super::era::Era;
use super::fxhash::{IntMap, IntSet};
use super::model::{
    GroupCall, LoopFinding, LoopRule, MasterGuess, SpareReason, Spared, VictimGroup,
};
use super::records::{KillRec, Records, RowRec};
use super::supervisors::Links;
use crate::events::prefix::{Clock, When};

/// Pids listed per victim group and per spared set.
const MAX_PIDS_LISTED: usize = 40;
/// Tables older than this (same clock) do not start the victim's episode.
const EPISODE_S: f64 = 3600.0;
/// Kills closer than this are one OOM episode (a memory.oom.group kill, the
/// victims of one OOM; a serial console takes up to ~15 ms a line). A
/// killed worker's replacement needs longer to fork and fill its memory.
const BURST_S: f64 = 0.05;
/// A loop goes on to the end of the log: its last kill at most this many
/// typical gaps between its episodes before the end...
const TAIL_GAPS: f64 = 3.0;
/// ... or this many seconds, whichever is longer.
const TAIL_MIN_S: f64 = 5.0;

/// Seconds between two kills on their finest common clock (the kernel's
/// uptime, else their stamps), and whether that clock counts whole seconds.
fn kill_gap(a: &KillRec, b: &KillRec) -> Option<(f64, bool)> {
    if let (Some(x), Some(y)) = (a.uptime, b.uptime) {
        return Some((y - x, false));
    }
    let (x, y) = (a.when?, b.when?);
    Some((y.since(&x)?, x.coarse || y.coarse))
}

/// The OOM episode of each kill, in kill order: a kill starts a new one
/// unless it belongs to the same OOM report as the one before (a group
/// kill, a process sharing the victim's memory) or came less than
/// [`BURST_S`] after it. Where whole-second stamps cannot tell, a new OOM
/// header or selection line before the kill starts a new episode.
pub(super) fn episodes(rec: &Records) -> Vec<u32> {
    let mut out = Vec::with_capacity(rec.kills.len());
    let mut ep = 0u32;
    let mut prev: Option<&KillRec> = None;
    for k in &rec.kills {
        let new = match prev {
            None => true,
            Some(p) if p.input != k.input => true,
            Some(p) if p.incident == k.incident => false,
            Some(p) => match kill_gap(p, k) {
                Some((g, false)) => g.abs() >= BURST_S,
                Some((g, true)) => g.abs() >= 1.0 || k.new_oom,
                None => k.new_oom,
            },
        };
        if new && prev.is_some() {
            ep += 1;
        }
        out.push(ep);
        prev = Some(k);
    }
    out
}

/// Seconds from kill `k` to the end of its input, where comparable.
fn tail_of(rec: &Records, k: &KillRec) -> Option<f64> {
    let (end, end_up) = rec.input_end.get(k.input).copied()?;
    let t = match (k.when, end) {
        (Some(w), Some(e)) => e.since(&w),
        _ => None,
    }
    .or_else(|| Some(end_up? - k.uptime?))?;
    Some(t.max(0.0))
}

/// Prefix pid counts less one incident's own rows, cached by (prefix, incident).
type OwnCache = ((usize, u64), IntMap<u32, u32>);

/// What the task tables say about one kill.
#[derive(Debug, Clone, Copy)]
pub(super) struct KillClass {
    /// In a task table printed before this OOM's own report (`None`: no
    /// such table).
    pub(super) in_table: Option<bool>,
    /// Born during the OOM episode (see `Victim::respawned`).
    pub(super) respawned: Option<bool>,
    /// From the kill line, or else from the task tables.
    pub(super) uid: Option<u32>,
}

/// What the task tables say about each kill, in kill order.
pub(super) fn classify(rec: &Records) -> Vec<KillClass> {
    let clock = rec
        .rows
        .iter()
        .map(|r| r.when)
        .chain(rec.kills.iter().map(|k| k.when))
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
    let mut order: Vec<usize> = (0..rec.rows.len()).collect();
    let key_row = |r: &RowRec| -> f64 {
        match (clock, r.when) {
            (Some(_), Some(w)) => w.t,
            _ => r.seq as f64,
        }
    };
    order.sort_by(|a, b| {
        let (ra, rb) = (&rec.rows[*a], &rec.rows[*b]);
        key_row(ra).total_cmp(&key_row(rb))
    });
    let keys: Vec<f64> = order.iter().map(|i| key_row(&rec.rows[*i])).collect();
    let mut uid_of: IntMap<u32, u32> = IntMap::default();
    for r in &rec.rows {
        uid_of.insert(r.pid, r.uid);
    }
    let pid_max = Era::smallest_pid_max(rec.eras.iter().copied());
    // Position of each row in `order`, and the rows of each incident:
    // a victim's own report's table is not "earlier" (6.x prints one per
    // OOM, with the victim in it).
    let mut pos_of = vec![0usize; rec.rows.len()];
    for (p, i) in order.iter().enumerate() {
        if let Some(x) = pos_of.get_mut(*i) {
            *x = p;
        }
    }
    let mut by_incident: IntMap<u64, Vec<usize>> = IntMap::default();
    for (i, r) in rec.rows.iter().enumerate() {
        if r.incident != 0 {
            by_incident.entry(r.incident).or_default().push(i);
        }
    }
    // Snapshots (one printed table each), by their first row's key.
    struct Snap {
        key: f64,
        incident: u64,
        pids: IntSet<u32>,
        gap: Option<(u32, u32, u64)>,
    }
    let mut snaps: Vec<Snap> = Vec::new();
    {
        let mut idx: IntMap<u32, usize> = IntMap::default();
        for r in &rec.rows {
            let i = *idx.entry(r.table).or_insert_with(|| {
                snaps.push(Snap {
                    key: key_row(r),
                    incident: r.incident,
                    pids: IntSet::default(),
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
    let mut out = Vec::with_capacity(rec.kills.len());
    let mut counts: IntMap<u32, u32> = IntMap::default();
    let mut set_n = 0usize;
    let mut own_cache: Option<OwnCache> = None;
    for k in &rec.kills {
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
                if let Some(r) = rec.rows.get(*i) {
                    *counts.entry(r.pid).or_default() += 1;
                }
            }
            set_n = n;
        }
        let uid = k.uid.or_else(|| uid_of.get(&k.pid).copied());
        // this incident's own rows within the prefix
        let own: Vec<u32> = by_incident
            .get(&k.incident)
            .map(|v| {
                v.iter()
                    .filter(|i| pos_of.get(**i).is_some_and(|p| *p < n))
                    .filter_map(|i| rec.rows.get(*i).map(|r| r.pid))
                    .collect()
            })
            .unwrap_or_default();
        let (in_t, empty) = if own.is_empty() {
            (counts.contains_key(&k.pid), counts.is_empty())
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
                own_cache = Some((key, c));
            }
            match &own_cache {
                Some((_, c)) => (c.contains_key(&k.pid), c.is_empty()),
                None => (false, true),
            }
        };
        if empty {
            out.push(KillClass {
                in_table: None,
                respawned: None,
                uid,
            });
            continue;
        }
        // Respawned: born during the episode, i.e. absent from the first
        // table of the episode (the earliest one before this kill, other
        // than its own report's, at most EPISODE_S earlier) and newer
        // than every process in it. The snapshots are in key order: the
        // candidates are one run of them.
        let (lo, hi) = if clock.is_some() {
            (
                snaps.partition_point(|sn| sn.key < kk - EPISODE_S),
                snaps.partition_point(|sn| sn.key <= kk),
            )
        } else {
            (0, snaps.partition_point(|sn| sn.key < kk))
        };
        let first = snaps
            .get(lo..hi.max(lo))
            .unwrap_or_default()
            .iter()
            .find(|sn| sn.incident == 0 || sn.incident != k.incident);
        let resp = first.map(|sn| {
            !sn.pids.contains(&k.pid)
                && sn
                    .gap
                    .is_some_and(|(newest, oldest, pid_max)| in_gap(k.pid, newest, oldest, pid_max))
        });
        out.push(KillClass {
            in_table: Some(in_t),
            respawned: resp,
            uid,
        });
    }
    out
}

/// Victims grouped by (name, uid, memcg), and the groups that are loops
/// (see [`LoopRule`]), each with the rule that fired or why it is none.
pub(super) fn groups(
    rec: &Records,
    classes: &[KillClass],
    links: &Links,
    min_respawned_kills: usize,
) -> (Vec<VictimGroup>, Vec<LoopFinding>) {
    #[derive(Default)]
    struct Acc {
        kills: u64,
        pids: Vec<u32>,
        distinct: IntSet<u32>,
        respawned: u64,
        in_table: u64,
        unknown: u64,
        /// kills not shown by a task table to be of old processes
        fresh: IntSet<u32>,
        first: Option<Option<When>>,
        last: Option<Option<When>>,
        victim_rss: Vec<u64>,
        episodes: Vec<u32>,
        /// the first kill of each of its episodes
        episode_kills: Vec<usize>,
        last_kill: usize,
        first_kill: usize,
        oom_group: Option<u32>,
        members: IntSet<usize>,
        anon_rss: Vec<u64>,
    }
    let episode = episodes(rec);
    // a restarted container is a new cgroup with a new id: group by the rest
    let mut cg_names: Vec<String> = Vec::new();
    let mut cg_ids: HashMap<String, u32> = HashMap::new();
    let mut cg_of: IntMap<u32, u32> = IntMap::default();
    let mut cgroup = |m: u32| -> u32 {
        *cg_of.entry(m).or_insert_with(|| {
            let g = without_container_id(rec.strings.get(m));
            *cg_ids.entry(g.clone()).or_insert_with(|| {
                cg_names.push(g);
                u32::try_from(cg_names.len() - 1).unwrap_or(u32::MAX)
            })
        })
    };
    let mut accs: BTreeMap<(u32, Option<u32>, Option<u32>), Acc> = BTreeMap::new();
    let killed_pids: IntSet<u32> = rec.kills.iter().map(|k| k.pid).collect();
    let mut row_by_pid: IntMap<u32, &RowRec> = IntMap::default();
    let mut rows_by_name: IntMap<u32, Vec<&RowRec>> = IntMap::default();
    for r in &rec.rows {
        row_by_pid.insert(r.pid, r);
        rows_by_name.entry(r.name).or_default().push(r);
    }
    // Ratelimited kills print no memcg: inherit the last one seen for
    // the same (name, uid).
    let mut last_memcg: IntMap<(u32, Option<u32>), u32> = IntMap::default();
    let mut last_uid: IntMap<u32, u32> = IntMap::default();
    for (i, (k, c)) in rec.kills.iter().zip(classes).enumerate() {
        let uid = match c.uid {
            Some(u) => {
                last_uid.insert(k.name, u);
                Some(u)
            }
            None => last_uid.get(&k.name).copied(),
        };
        let memcg = match k.memcg.map(&mut cgroup) {
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
        a.members.insert(i);
        if let Some(r) = k.anon_rss_kb {
            a.anon_rss.push(r);
        }
        match c.respawned {
            Some(true) => a.respawned += 1,
            Some(false) => {}
            None => a.unknown += 1,
        }
        if c.respawned != Some(false) {
            a.fresh.insert(k.pid);
        }
        if c.in_table == Some(true) {
            a.in_table += 1;
            if let Some(r) = row_by_pid.get(&k.pid) {
                a.victim_rss.push(r.rss);
            }
        }
        let ep = episode.get(i).copied().unwrap_or(0);
        // episodes only grow along the kills
        if a.episodes.last() != Some(&ep) {
            a.episodes.push(ep);
            a.episode_kills.push(i);
        }
        if a.first.is_none() {
            a.first = Some(k.when);
            a.first_kill = i;
        }
        a.last = Some(k.when);
        a.last_kill = i;
        if k.oom_group.is_some() {
            a.oom_group = k.oom_group;
        }
    }
    let root_bonus = rec.eras.iter().all(|e| e.has_root_bonus());
    let mut groups = Vec::new();
    let mut loops = Vec::new();
    for ((name_id, uid, memcg), a) in accs {
        let name = rec.strings.get(name_id).to_string();
        let memcg = memcg.and_then(|m| cg_names.get(m as usize).cloned());
        let (span, rate) = match (&a.first, &a.last) {
            (Some(Some(f)), Some(Some(l))) if f.clock == l.clock => {
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
        // what the supervisors say about these kills
        let evidence: Vec<_> = links
            .evidence
            .iter()
            .filter(|e| e.kills.iter().any(|k| a.members.contains(k)))
            .collect();
        let episodes = a.episodes.len() as u64;
        let last_k = rec.kills.get(a.last_kill);
        let tail_s = last_k
            .and_then(|k| tail_of(rec, k))
            .map(|t| (t * 1000.0).round() / 1000.0);
        // the typical gap between its episodes
        let mut gaps: Vec<f64> = a
            .episode_kills
            .windows(2)
            .filter_map(|w| {
                let (x, y) = (rec.kills.get(w[0])?, rec.kills.get(w[1])?);
                kill_gap(x, y).map(|g| g.0.abs())
            })
            .collect();
        gaps.sort_by(f64::total_cmp);
        let typical_gap = gaps.get(gaps.len() / 2).copied();
        let goes_on = match tail_s {
            Some(t) => t <= (typical_gap.unwrap_or(0.0) * TAIL_GAPS).max(TAIL_MIN_S),
            // no times to measure a quiet tail by
            None => true,
        };
        let supervised = evidence.iter().any(|e| e.proves_respawn());
        let counter_repeated = evidence.iter().any(|e| e.counter_says_repeated());
        let rule = if episodes >= 2 && a.respawned >= min_respawned_kills as u64 {
            Some(LoopRule::TaskTable)
        } else if episodes >= 2 && supervised {
            Some(LoopRule::Supervisor)
        } else if counter_repeated {
            Some(LoopRule::RestartCounter)
        } else if episodes >= 3 && a.fresh.len() >= 3 && goes_on {
            Some(LoopRule::Sustained)
        } else {
            None
        };
        let call = match rule {
            Some(r) => GroupCall::Loop(r),
            None if a.kills <= 1 => GroupCall::Single,
            None if episodes <= 1 => {
                // (whole-second stamps cannot say how long it took)
                let span_s = rec.kills.get(a.first_kill).zip(last_k).and_then(|(f, l)| {
                    kill_gap(f, l)
                        .filter(|g| !g.1)
                        .map(|g| (g.0.abs() * 1000.0).round() / 1000.0)
                });
                GroupCall::Burst {
                    kills: a.kills,
                    span_s,
                    oom_group: a.oom_group.map(|g| rec.strings.get(g).to_string()),
                }
            }
            None => match tail_s {
                Some(t) if !goes_on && episodes >= 3 && a.fresh.len() >= 3 => GroupCall::Stopped {
                    episodes,
                    tail_s: t,
                },
                _ => GroupCall::Unproven { episodes },
            },
        };
        let is_loop = rule.is_some();
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
        let ended_by = evidence.iter().find(|e| e.gave_up()).map(|e| e.supervisor);
        // the first table listing any of its processes (name and uid)
        let workers_in_table = uid.and_then(|u| {
            let rows = rows_by_name.get(&name_id)?;
            let first = rows.iter().filter(|r| r.uid == u).map(|r| r.table).min()?;
            let pids: IntSet<u32> = rows
                .iter()
                .filter(|r| r.uid == u && r.table == first)
                .filter(|r| master.as_ref().is_none_or(|m| m.pid != r.pid))
                .map(|r| r.pid)
                .collect();
            Some(pids.len() as u64)
        });
        let victim_anon_rss_kb = {
            let mut v = a.anon_rss.clone();
            v.sort_unstable();
            v.get(v.len() / 2).copied()
        };
        let g = VictimGroup {
            name: name.clone(),
            uid,
            memcg: memcg.clone(),
            kills: a.kills,
            distinct_pids: a.distinct.len() as u64,
            respawned_kills: a.respawned,
            in_table_kills: a.in_table,
            unknown_kills: a.unknown,
            first_time: rec
                .kills
                .get(a.first_kill)
                .and_then(|k| super::incidents::show_ts(k.ts.as_ref())),
            last_time: rec
                .kills
                .get(a.last_kill)
                .and_then(|k| super::incidents::show_ts(k.ts.as_ref())),
            span_s: span,
            kills_per_s: rate,
            pids: a.pids,
            likely_master: master,
            spared,
            is_loop,
            episodes,
            tail_s,
            call: call.clone(),
            supervisors: evidence.iter().map(|e| e.to_model()).collect(),
            workers_in_table,
            victim_anon_rss_kb,
        };
        if let Some(rule) = rule {
            let mut sups: Vec<_> = evidence
                .iter()
                .filter(|e| e.proves_respawn())
                .map(|e| e.supervisor)
                .collect();
            sups.dedup();
            loops.push(LoopFinding {
                name: g.name.clone(),
                uid: g.uid,
                memcg: g.memcg.clone(),
                confirmed: rule != LoopRule::Sustained,
                kills: g.kills,
                respawned_kills: g.respawned_kills,
                kills_per_s: g.kills_per_s,
                span_s: g.span_s,
                likely_master: g.likely_master.as_ref().map(|m| m.pid),
                rule,
                episodes,
                tail_s,
                supervisors: sups,
                ended_by,
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

/// A cgroup path with a container id in its last part (`.../cri-containerd-
/// <64 hex>.scope`, `.../docker-<id>.scope`, `/docker/<id>`) written with
/// `*` in its place: Kubernetes restarts a container as a new one, in a new
/// cgroup, and its kills are still one group.
fn without_container_id(path: &str) -> String {
    let (dir, last) = path.rsplit_once('/').unwrap_or(("", path));
    let b = last.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        let run = b
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if run >= 32 {
            out.push('*');
            changed = true;
            i += run;
        } else {
            let n = run.max(1);
            out.push_str(last.get(i..i + n).unwrap_or(""));
            i += n;
        }
    }
    if !changed {
        return path.to_string();
    }
    if path.contains('/') {
        format!("{dir}/{out}")
    } else {
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_left_out_of_groups() {
        let id = "4bcba7fc4369fee4d7d2e6263b58fce52cfc928c6a31cfac4d43c838708991ce";
        assert_eq!(
            without_container_id(&format!(
                "/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"
            )),
            "/kubepods.slice/kubepods-pod1.slice/cri-containerd-*.scope"
        );
        assert_eq!(without_container_id(&format!("/docker/{id}")), "/docker/*");
        assert_eq!(
            without_container_id("/system.slice/app.service"),
            "/system.slice/app.service"
        );
    }

    #[test]
    fn gap_and_wrap() {
        let set: IntSet<u32> = [29640, 29645, 30747, 8353, 8357].into_iter().collect();
        let (n, o, m) = largest_gap(set.iter().copied(), 32_768).unwrap();
        assert_eq!((n, o, m), (8357, 29640, 32768));
        assert!(in_gap(8358, n, o, m));
        assert!(!in_gap(8357, n, o, m));
        assert!(!in_gap(30000, n, o, m));
        // a modern system: no wrap, the newest is the highest pid
        let set: IntSet<u32> = [1, 800, 5000, 25000, 25010].into_iter().collect();
        let (n, _, m) = largest_gap(set.iter().copied(), 4_194_304).unwrap();
        assert_eq!((n, m), (25010, 4_194_304));
        let set: IntSet<u32> = [100, 200].into_iter().collect();
        let (n, o, m) = largest_gap(set.iter().copied(), 32_768).unwrap();
        assert_eq!((n, o), (200, 100));
        assert!(in_gap(201, n, o, m));
        assert!(in_gap(5, n, o, m));
        assert!(!in_gap(150, n, o, m));
    }
}
