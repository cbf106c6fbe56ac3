//! The kernel era, told from the formats a log shows, and what the
//! diagnosis needs to know about it.

use serde::Serializer;

use crate::events::kernel::Killed;

/// A range of kernel versions whose OOM messages look alike (see
/// `shared/notes/OOM-FORMATS.md`). The variants are in the order of their
/// labels, which is the order a report lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Era {
    /// Upstream 2.6.32: task table `cpu oom_adj name`.
    V2632,
    /// 2.6.36 to 3.4 (and RHEL 6): `oom_adj oom_score_adj` columns.
    V2636To34,
    /// 3.5 to 3.19 (and RHEL 7): `nr_ptes swapents` columns.
    V35To319,
    /// 4.0 to 4.14: `nr_ptes nr_pmds swapents` columns.
    V40To414,
    /// 4.15 to 6.7: `pgtables_bytes` column.
    V415To67,
    /// 5.0 and later: the `oom-kill:` summary line.
    V50Plus,
    /// 5.1 to 5.3 (or RHEL 8): `<msg>: Killed process` with shmem-rss but
    /// no pgtables.
    V51To53,
    /// 5.4 and later: `pgtables:` in the Killed line.
    V54Plus,
    /// 6.8 and later: `rss_anon rss_file rss_shmem` columns.
    V68Plus,
    /// RHEL 6 (2.6.32-*.el6): `Killed process P, UID U, (comm)`.
    Rhel6,
    /// RHEL 7 (3.10.0-*.el7): `Killed process P (comm), UID U` with shmem-rss.
    Rhel7,
}

impl Era {
    /// Every era, in order.
    pub const ALL: [Era; 11] = [
        Era::V2632,
        Era::V2636To34,
        Era::V35To319,
        Era::V40To414,
        Era::V415To67,
        Era::V50Plus,
        Era::V51To53,
        Era::V54Plus,
        Era::V68Plus,
        Era::Rhel6,
        Era::Rhel7,
    ];

    /// How a report names the era.
    pub fn label(self) -> &'static str {
        match self {
            Era::V2632 => "2.6.32 vanilla",
            Era::V2636To34 => "2.6.36-3.4 (RHEL 6: 2.6.32)",
            Era::V35To319 => "3.5-3.19 (RHEL 7: 3.10)",
            Era::V40To414 => "4.0-4.14",
            Era::V415To67 => "4.15-6.7",
            Era::V50Plus => "5.0+",
            Era::V51To53 => "5.1-5.3 (or RHEL 8)",
            Era::V54Plus => "5.4+",
            Era::V68Plus => "6.8+",
            Era::Rhel6 => "RHEL 6 (2.6.32-*.el6)",
            Era::Rhel7 => "RHEL 7 (3.10.0-*.el7)",
        }
    }

    /// Is this one of the 2.6/3.x/4.0-4.14 formats? Such machines predate
    /// both systemd's pid_max=4194304 and the end of the root discount.
    fn is_old(self) -> bool {
        matches!(
            self,
            Era::V2632 | Era::V2636To34 | Era::V35To319 | Era::V40To414 | Era::Rhel6 | Era::Rhel7
        )
    }

    /// Where pids wrap on machines of this era: 32768 (the kernel's
    /// default) on kernels that predate systemd raising it to 4194304.
    pub fn pid_max(self) -> u64 {
        if self.is_old() {
            32_768
        } else {
            4_194_304
        }
    }

    /// Does `oom_badness()` discount root-owned (CAP_SYS_ADMIN) tasks (3% on
    /// RHEL 6 / 2.6.36+, /4 on vanilla 2.6.32)? Gone in 4.17; the 4.15-6.7
    /// table format is counted as without it.
    pub fn has_root_bonus(self) -> bool {
        self.is_old()
    }

    /// The era of a task-table header's columns.
    pub fn from_table_columns(columns: &[String]) -> Era {
        let has = |c: &str| columns.iter().any(|x| x == c);
        if has("rss_anon") {
            Era::V68Plus
        } else if has("pgtables_bytes") {
            Era::V415To67
        } else if has("nr_pmds") {
            Era::V40To414
        } else if has("nr_ptes") {
            Era::V35To319
        } else if has("oom_score_adj") {
            Era::V2636To34
        } else {
            Era::V2632
        }
    }

    /// The era a `Killed process` line's fields give away, if any.
    pub fn from_killed(k: &Killed) -> Option<Era> {
        if k.pgtables_kb.is_some() {
            Some(Era::V54Plus)
        } else if k.uid.is_some() && k.shmem_rss_kb.is_some() {
            Some(Era::Rhel7)
        } else if k.uid.is_some() {
            Some(Era::Rhel6)
        } else if k.message.is_some() && k.shmem_rss_kb.is_some() {
            Some(Era::V51To53)
        } else {
            None
        }
    }

    /// The era a `Kill process` selection line's message gives away, if any.
    pub fn from_chosen_message(message: &str) -> Option<Era> {
        (message.starts_with("Out of memory") && message.contains("kill")).then_some(Era::V2632)
    }

    /// The smallest [`Era::pid_max`] of `eras` (4194304 when none is known).
    pub fn smallest_pid_max(eras: impl IntoIterator<Item = Era>) -> u64 {
        eras.into_iter()
            .map(Era::pid_max)
            .min()
            .unwrap_or(4_194_304)
    }
}

/// The labels of `eras`, comma-separated (`None` for none).
pub fn labels(eras: &[Era]) -> Option<String> {
    if eras.is_empty() {
        return None;
    }
    Some(
        eras.iter()
            .map(|e| e.label())
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// `--json` shows the eras as one string of labels (as it always did).
pub(super) fn serialize_labels<S: Serializer>(eras: &[Era], s: S) -> Result<S::Ok, S::Error> {
    match labels(eras) {
        Some(l) => s.serialize_some(&l),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_in_label_order() {
        let mut by_label = Era::ALL;
        by_label.sort_by_key(|e| e.label());
        assert_eq!(by_label, Era::ALL);
        let mut by_ord = Era::ALL;
        by_ord.sort();
        assert_eq!(by_ord, Era::ALL);
    }

    #[test]
    fn old_formats_wrap_pids_at_32768_and_discount_root() {
        for e in Era::ALL {
            let old = e.label().starts_with('2')
                || e.label().starts_with('3')
                || e.label().starts_with("4.0")
                || e.label().starts_with("RHEL");
            assert_eq!(e.pid_max() == 32_768, old, "{e:?}");
            assert_eq!(e.has_root_bonus(), old, "{e:?}");
        }
        assert_eq!(Era::smallest_pid_max([]), 4_194_304);
        assert_eq!(Era::smallest_pid_max([Era::V50Plus, Era::Rhel6]), 32_768);
    }
}
