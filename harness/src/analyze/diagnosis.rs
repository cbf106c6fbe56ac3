//! The diagnosis: which kills were of processes born during the OOM
//! episode (respawned), victims grouped by (name, uid, memcg), the
//! processes spared, and which groups are kill/respawn loops.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::era::Era;
use super::model::{LoopFinding, MasterGuess, SpareReason, Spared, VictimGroup};
use super::records::{Records, RowRec};
use crate::events::prefix::{Clock, When};

/// Pids listed per victim group and per spared set.
const MAX_PIDS_LISTED: usize = 40;
/// Tables older than this (same clock) do not start the victim's episode.
const EPISODE_S: f64 = 3600.0;

/// (newest pid, oldest pid, pid_max) of a table: see [`largest_gap`].
type Gap = Option<(u32, u32, u64)>;
/// Prefix pid counts less one incident's own rows, cached by (prefix, incident).
type OwnCache = ((usize, u64), HashMap<u32, u32>, Gap);

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
    let mut uid_of: HashMap<u32, u32> = HashMap::new();
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
    let mut by_incident: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, r) in rec.rows.iter().enumerate() {
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
        for r in &rec.rows {
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
    let mut out = Vec::with_capacity(rec.kills.len());
    let mut counts: HashMap<u32, u32> = HashMap::new();
    let mut set_n = 0usize;
    let mut gap: Option<(u32, u32, u64)> = None; // newest, oldest, pid_max
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
            gap = largest_gap(counts.keys().copied(), pid_max);
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
            out.push(KillClass {
                in_table: None,
                respawned: None,
                uid,
            });
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

/// Victims grouped by (name, uid, memcg), and the groups that are loops:
/// confirmed by `min_respawned_kills` respawned kills, or suspected.
pub(super) fn groups(
    rec: &Records,
    classes: &[KillClass],
    min_respawned_kills: usize,
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
    let killed_pids: HashSet<u32> = rec.kills.iter().map(|k| k.pid).collect();
    let mut row_by_pid: HashMap<u32, &RowRec> = HashMap::new();
    let mut rows_by_name: HashMap<u32, Vec<&RowRec>> = HashMap::new();
    for r in &rec.rows {
        row_by_pid.insert(r.pid, r);
        rows_by_name.entry(r.name).or_default().push(r);
    }
    // Ratelimited kills print no memcg: inherit the last one seen for
    // the same (name, uid).
    let mut last_memcg: HashMap<(u32, Option<u32>), u32> = HashMap::new();
    let mut last_uid: HashMap<u32, u32> = HashMap::new();
    for (k, c) in rec.kills.iter().zip(classes) {
        let uid = match c.uid {
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
        match c.respawned {
            Some(true) => a.respawned += 1,
            Some(false) => {}
            None => a.unknown += 1,
        }
        if c.in_table == Some(true) {
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
    let root_bonus = rec.eras.iter().all(|e| e.has_root_bonus());
    let mut groups = Vec::new();
    let mut loops = Vec::new();
    for ((name_id, uid, memcg), a) in accs {
        let name = rec.strings.get(name_id).to_string();
        let memcg = memcg.map(|m| rec.strings.get(m).to_string());
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
        let confirmed = a.respawned >= min_respawned_kills as u64;
        let suspected = !confirmed
            && a.unknown == a.kills
            && a.incidents.len() >= 3
            && a.distinct.len() as u64 >= (min_respawned_kills as u64 + 1).max(3);
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
