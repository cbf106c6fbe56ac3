//! Supervisor lines linked to the kernel's kills: a death line to the kill
//! of the same pid (or, for systemd units and containers, the kill just
//! before it in their cgroup), a respawn line to the death before it, and a
//! process a supervisor started to its later kill.

use std::collections::{HashMap, HashSet};

use super::model::{BackOff, Spread, SupervisorEvidence};
use super::records::Records;
use crate::events::prefix::When;
use crate::events::supervisor::{Supervisor, SupervisorEvent};

/// A death line and a kill without a pid to match are linked when the
/// kill came at most this long before the line (or 2 s after it).
const WINDOW_S: f64 = 30.0;
/// The kubelet logs its back-off long after the kill (10 s to 5 min).
const KUBELET_WINDOW_S: f64 = 600.0;

/// What one supervisor's lines say, gathered per (supervisor, name).
#[derive(Debug, Clone)]
pub(super) struct Evidence {
    pub(super) supervisor: Supervisor,
    pub(super) name: Option<String>,
    /// The kernel kills these lines are about.
    pub(super) kills: Vec<usize>,
    deaths: u64,
    respawns: u64,
    started_then_killed: u64,
    delays: Vec<f64>,
    /// Some delay was measured on whole-second stamps.
    coarse: bool,
    counter: Option<u32>,
    gave_up: bool,
    oom_notices: u64,
}

impl Evidence {
    fn new(supervisor: Supervisor, name: Option<String>) -> Evidence {
        Evidence {
            supervisor,
            name,
            kills: Vec::new(),
            deaths: 0,
            respawns: 0,
            started_then_killed: 0,
            delays: Vec::new(),
            coarse: false,
            counter: None,
            gave_up: false,
            oom_notices: 0,
        }
    }

    /// Does it prove a respawn (a respawn line after a linked death, a
    /// killed process it had started, a restart counter past 1)?
    pub(super) fn proves_respawn(&self) -> bool {
        self.respawns > 0 || self.started_then_killed > 0 || self.counter.is_some_and(|c| c >= 2)
    }

    /// Its restart counter says it restarted at least twice.
    pub(super) fn counter_says_repeated(&self) -> bool {
        self.counter.is_some_and(|c| c >= 2)
    }

    pub(super) fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// The report's form of it.
    pub(super) fn to_model(&self) -> SupervisorEvidence {
        let delay = spread(&self.delays, self.coarse);
        let back_off = if self.delays.len() >= 3 {
            let first = self.delays.first().copied().unwrap_or(0.0);
            let last = self.delays.last().copied().unwrap_or(0.0);
            let rising = self.delays.windows(2).filter(|w| w[1] > w[0] * 1.2).count();
            if last > first * 1.5 + 0.05 && rising * 2 >= self.delays.len() - 1 {
                BackOff::Grows {
                    first_s: first,
                    last_s: last,
                }
            } else {
                BackOff::None
            }
        } else {
            BackOff::Unknown
        };
        SupervisorEvidence {
            supervisor: self.supervisor,
            name: self.name.clone(),
            deaths: self.deaths,
            respawns: self.respawns,
            started_then_killed: self.started_then_killed,
            delay,
            restart_counter: self.counter,
            back_off,
            gave_up: self.gave_up,
            oom_notices: self.oom_notices,
        }
    }
}

fn spread(v: &[f64], whole_seconds: bool) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Some(Spread {
        min_s: round(*s.first()?),
        median_s: round(*s.get(s.len() / 2)?),
        max_s: round(*s.last()?),
        count: s.len() as u64,
        whole_seconds,
    })
}

/// Everything the supervisors' lines say, linked to the kills.
#[derive(Debug, Default)]
pub(super) struct Links {
    pub(super) evidence: Vec<Evidence>,
    /// Per kill: the supervisor whose log says it started that process.
    pub(super) started_by: HashMap<usize, Supervisor>,
    /// Death-by-SIGKILL lines that matched no kill.
    pub(super) unmatched_deaths: u64,
    /// Kills supervisors did themselves: (who, how many, why).
    pub(super) self_kills: Vec<(Supervisor, u64, String)>,
}

/// The name evidence is gathered under: the unit, program, pool or
/// container, where the supervisor has several; none for a master that
/// has only workers (nginx, uWSGI, gunicorn, PostgreSQL).
fn evidence_name(sup: Supervisor, name: Option<&str>) -> Option<String> {
    match sup {
        Supervisor::Systemd
        | Supervisor::Supervisord
        | Supervisor::PhpFpm
        | Supervisor::Kubelet
        | Supervisor::Docker => name.map(str::to_string),
        _ => None,
    }
}

fn name_of(ev: &SupervisorEvent) -> Option<&str> {
    match ev {
        SupervisorEvent::Died { name, .. }
        | SupervisorEvent::Started { name, .. }
        | SupervisorEvent::RestartScheduled { name, .. }
        | SupervisorEvent::GaveUp { name }
        | SupervisorEvent::OomNoticed { name } => name.as_deref(),
        SupervisorEvent::SelfKill { .. } => None,
    }
}

/// Seconds from `a` to `b`, where comparable.
fn gap(a: Option<When>, b: Option<When>) -> Option<f64> {
    b?.since(&a?)
}

/// Is either stamp whole seconds only?
fn coarse(a: Option<When>, b: Option<When>) -> bool {
    a.is_some_and(|w| w.coarse) || b.is_some_and(|w| w.coarse)
}

/// Link the supervisor lines of `rec` to its kills.
pub(super) fn link(rec: &Records) -> Links {
    let mut links = Links::default();
    if rec.sups.is_empty() {
        return links;
    }
    let mut by_pid: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, k) in rec.kills.iter().enumerate() {
        by_pid.entry(k.pid).or_default().push(i);
    }
    let mut sups: Vec<&super::records::SupRec> = rec.sups.iter().collect();
    sups.sort_by_key(|s| s.seq);
    let mut acc: Vec<Evidence> = Vec::new();
    let mut acc_of: HashMap<(Supervisor, Option<String>), usize> = HashMap::new();
    // per (supervisor, slot): the linked kill waiting for its respawn
    let mut waiting: HashMap<(Supervisor, Option<String>), (usize, Option<When>)> = HashMap::new();
    let mut spawned_pid: HashMap<(Supervisor, String), u32> = HashMap::new();
    let mut self_killed: HashSet<(Supervisor, u32)> = HashSet::new();
    let mut self_kills: HashMap<(Supervisor, String), u64> = HashMap::new();
    let mut started: Vec<(Supervisor, u32, Option<When>, usize)> = Vec::new();
    let mut last_back_off: HashMap<Option<String>, f64> = HashMap::new();

    let nearest = |cands: &[usize], when: Option<When>| -> Option<usize> {
        if cands.len() == 1 {
            return cands.first().copied();
        }
        cands
            .iter()
            .copied()
            .filter_map(|k| {
                let d = gap(rec.kills.get(k)?.when, when)?;
                Some((k, d.abs()))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|x| x.0)
            .or_else(|| cands.last().copied())
    };
    // the last kill before `when` (within `window`; else one at most 2 s
    // after it, the clocks of two programs differing a little), in the
    // cgroup `hint` names where the kill's cgroup is known
    let by_time = |when: Option<When>, window: f64, hint: Option<&str>| -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        // a kill before the line ranks before any after it
        let rank = |d: f64| if d >= 0.0 { d } else { window - d };
        for (i, k) in rec.kills.iter().enumerate() {
            let Some(d) = gap(k.when, when) else {
                continue;
            };
            if !(-2.0..=window).contains(&d) {
                continue;
            }
            if let (Some(h), Some(m)) = (hint, k.memcg) {
                if !rec.strings.get(m).contains(h) {
                    continue;
                }
            }
            if best.is_none_or(|(_, bd)| rank(d) < rank(bd)) {
                best = Some((i, d));
            }
        }
        best.map(|b| b.0)
    };

    for s in sups {
        let sup = s.supervisor;
        let name = name_of(&s.event);
        let key = (sup, evidence_name(sup, name));
        let slot = (sup, name.map(str::to_string));
        let ai = *acc_of.entry(key.clone()).or_insert_with(|| {
            acc.push(Evidence::new(sup, key.1.clone()));
            acc.len() - 1
        });
        let Some(ev_acc) = acc.get_mut(ai) else {
            continue;
        };
        match &s.event {
            SupervisorEvent::SelfKill { pid, why } => {
                if let Some(p) = pid {
                    self_killed.insert((sup, *p));
                }
                *self_kills.entry((sup, why.clone())).or_default() += 1;
            }
            SupervisorEvent::Died {
                pid, name, signal, ..
            } => {
                if *signal != 9 {
                    continue;
                }
                let pid = pid.or_else(|| {
                    name.as_ref()
                        .and_then(|n| spawned_pid.get(&(sup, n.clone())).copied())
                });
                if pid.is_some_and(|p| self_killed.contains(&(sup, p))) {
                    continue;
                }
                let kill = match pid {
                    Some(p) => by_pid.get(&p).and_then(|c| nearest(c, s.when)),
                    None => {
                        let hint = if sup == Supervisor::Systemd {
                            name.as_deref()
                        } else {
                            None
                        };
                        by_time(s.when, WINDOW_S, hint)
                    }
                };
                match kill {
                    Some(k) => {
                        ev_acc.deaths += 1;
                        ev_acc.kills.push(k);
                        let kw = rec.kills.get(k).and_then(|x| x.when);
                        waiting.insert(slot, (k, kw.or(s.when)));
                    }
                    None => links.unmatched_deaths += 1,
                }
            }
            SupervisorEvent::OomNoticed { name } => {
                let hint = name.as_deref();
                let kill =
                    by_time(s.when, WINDOW_S, hint).or_else(|| by_time(s.when, WINDOW_S, None));
                if let Some(k) = kill {
                    ev_acc.oom_notices += 1;
                    ev_acc.kills.push(k);
                    if sup == Supervisor::Systemd {
                        let kw = rec.kills.get(k).and_then(|x| x.when);
                        waiting.insert(slot, (k, kw.or(s.when)));
                    }
                }
            }
            SupervisorEvent::Started { pid, name } => {
                if let (Some(p), Some(n)) = (pid, name) {
                    spawned_pid.insert((sup, n.clone()), *p);
                }
                // uWSGI respawns a slot; the others any worker
                let w = if sup == Supervisor::Uwsgi || evidence_name(sup, name.as_deref()).is_some()
                {
                    waiting.remove(&slot)
                } else {
                    let k = waiting.keys().find(|(ws, _)| *ws == sup).cloned();
                    k.and_then(|k| waiting.remove(&k))
                };
                if let Some((_, kw)) = w {
                    ev_acc.respawns += 1;
                    if let Some(d) = gap(kw, s.when).filter(|d| *d >= 0.0) {
                        ev_acc.delays.push(d);
                        ev_acc.coarse |= coarse(kw, s.when);
                    }
                    // a respawn: if the kernel kills it too, the loop went round
                    if let Some(p) = pid {
                        started.push((sup, *p, s.when, ai));
                    }
                }
            }
            SupervisorEvent::RestartScheduled {
                counter, delay_s, ..
            } => {
                if let Some(c) = counter {
                    ev_acc.counter = Some(ev_acc.counter.map_or(*c, |x| x.max(*c)));
                }
                if sup == Supervisor::Kubelet {
                    // one line per pod sync: a new back-off step is a restart
                    let prev = last_back_off.get(&key.1).copied();
                    if let Some(d) = delay_s {
                        if prev != Some(*d) {
                            last_back_off.insert(key.1.clone(), *d);
                            ev_acc.respawns += 1;
                            ev_acc.delays.push(*d);
                        }
                    } else {
                        ev_acc.respawns += 1;
                    }
                    if let Some(k) = by_time(s.when, KUBELET_WINDOW_S, None) {
                        if !ev_acc.kills.contains(&k) {
                            ev_acc.kills.push(k);
                        }
                    }
                    continue;
                }
                let w = waiting.remove(&slot);
                match w {
                    Some((k, kw)) => {
                        ev_acc.respawns += 1;
                        if !ev_acc.kills.contains(&k) {
                            ev_acc.kills.push(k);
                        }
                        if let Some(d) = gap(kw, s.when).filter(|d| *d >= 0.0) {
                            ev_acc.delays.push(d);
                            ev_acc.coarse |= coarse(kw, s.when);
                        }
                    }
                    None => {
                        // a restart of a unit whose kill came just before
                        if counter.is_some() {
                            if let Some(k) = by_time(s.when, WINDOW_S, name) {
                                if !ev_acc.kills.contains(&k) {
                                    ev_acc.kills.push(k);
                                }
                            }
                        }
                    }
                }
            }
            SupervisorEvent::GaveUp { .. } => ev_acc.gave_up = true,
        }
    }
    // processes a supervisor started that the kernel killed later
    for (sup, pid, when, ai) in started {
        let Some(cands) = by_pid.get(&pid) else {
            continue;
        };
        for &k in cands {
            let after = gap(when, rec.kills.get(k).and_then(|x| x.when)).is_none_or(|d| d >= -1.0);
            if after && !links.started_by.contains_key(&k) {
                links.started_by.insert(k, sup);
                if let Some(e) = acc.get_mut(ai) {
                    e.started_then_killed += 1;
                    if !e.kills.contains(&k) {
                        e.kills.push(k);
                    }
                }
            }
        }
    }
    links.evidence = acc.into_iter().filter(|e| !e.kills.is_empty()).collect();
    let mut sk: Vec<(Supervisor, u64, String)> = self_kills
        .into_iter()
        .map(|((s, why), n)| (s, n, why))
        .collect();
    sk.sort();
    links.self_kills = sk;
    links
}
