//! Compact records of every kill and task-table row (the incidents keep
//! only the first ones in detail): what the diagnosis works on.

use std::collections::{BTreeSet, HashMap};

use super::era::Era;
use crate::events::prefix::{Timestamp, When};
use crate::events::supervisor::{Supervisor, SupervisorEvent};

/// Kill records kept for the diagnosis; later kills are only counted.
pub(super) const MAX_KILL_RECORDS: usize = 100_000;
/// Task-table rows kept for the diagnosis.
pub(super) const MAX_ROW_RECORDS: usize = 150_000;
/// Supervisor lines kept for the diagnosis.
pub(super) const MAX_SUP_RECORDS: usize = 100_000;

/// One kill, compactly (names and memcgs interned).
pub(super) struct KillRec {
    pub(super) incident: u64,
    /// The line was cut inside the name.
    pub(super) truncated: bool,
    pub(super) pid: u32,
    pub(super) name: u32,
    pub(super) uid: Option<u32>,
    pub(super) memcg: Option<u32>,
    pub(super) when: Option<When>,
    /// Seconds since boot, where the line had them (a syslog line with the
    /// kernel's own stamp after its wall-clock one).
    pub(super) uptime: Option<f64>,
    /// Its line's stamp, as printed.
    pub(super) ts: Option<Timestamp>,
    pub(super) seq: u64,
    /// Which input it came from.
    pub(super) input: usize,
    /// The first kill after an OOM header, selection or summary line: the
    /// kernel ran its OOM killer anew.
    pub(super) new_oom: bool,
    /// memory.oom.group's cgroup, for a kill of a group kill.
    pub(super) oom_group: Option<u32>,
    /// Its anon-rss when killed.
    pub(super) anon_rss_kb: Option<u64>,
}

/// One supervisor line.
pub(super) struct SupRec {
    pub(super) supervisor: Supervisor,
    pub(super) event: SupervisorEvent,
    pub(super) when: Option<When>,
    pub(super) seq: u64,
}

/// One task-table row, compactly.
pub(super) struct RowRec {
    /// The incident whose report printed it (0: none).
    pub(super) incident: u64,
    /// Which printed table (snapshot) it belongs to.
    pub(super) table: u32,
    pub(super) pid: u32,
    pub(super) uid: u32,
    pub(super) name: u32,
    pub(super) rss: u64,
    pub(super) total_vm: u64,
    pub(super) oom_adj: Option<i32>,
    pub(super) when: Option<When>,
    pub(super) seq: u64,
}

/// Strings stored once, named by number.
#[derive(Default)]
pub(super) struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub(super) fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }
    pub(super) fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }
}

/// Everything the diagnosis reads.
#[derive(Default)]
pub(super) struct Records {
    pub(super) kills: Vec<KillRec>,
    pub(super) kills_dropped: u64,
    pub(super) rows: Vec<RowRec>,
    pub(super) rows_dropped: u64,
    pub(super) strings: Interner,
    /// Kernel eras told from the formats seen.
    pub(super) eras: BTreeSet<Era>,
    pub(super) sups: Vec<SupRec>,
    pub(super) sups_dropped: u64,
    /// Per input: the time its last line (or failing that its last timed
    /// line seen) carries, and its uptime.
    pub(super) input_end: Vec<(Option<When>, Option<f64>)>,
    /// The largest `N pages RAM` of a Mem-Info dump.
    pub(super) ram_pages: Option<u64>,
}

impl Records {
    /// A victim name cut short by a truncated line (`Killed process 12
    /// (ngi`) takes the one longer name it is a prefix of.
    pub(super) fn mend_truncated_names(&mut self) {
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
}
