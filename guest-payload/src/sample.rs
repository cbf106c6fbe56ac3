//! `mem` samples: `/proc/meminfo` plus the `oom_kill` counter of `/proc/vmstat`.

use oomlab_protocol::Event;

use crate::telemetry;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemSample {
    pub mem_total_kib: Option<u64>,
    pub mem_available_kib: Option<u64>,
    pub mem_free_kib: Option<u64>,
    pub swap_free_kib: Option<u64>,
    /// `/proc/vmstat` has it since 4.13.
    pub oom_kill: Option<u64>,
    pub pgmajfault: Option<u64>,
    /// `workingset_refault_file` (5.9+), else `workingset_refault`.
    pub refault_file: Option<u64>,
}

/// Value of `Key:   1234 kB` in meminfo-style text.
fn meminfo_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Value of `key 1234` in vmstat-style text.
fn vmstat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next()? != key {
            return None;
        }
        it.next()?.parse().ok()
    })
}

pub fn parse(meminfo: &str, vmstat: &str) -> MemSample {
    MemSample {
        mem_total_kib: meminfo_field(meminfo, "MemTotal"),
        mem_available_kib: meminfo_field(meminfo, "MemAvailable"),
        mem_free_kib: meminfo_field(meminfo, "MemFree"),
        swap_free_kib: meminfo_field(meminfo, "SwapFree"),
        oom_kill: vmstat_field(vmstat, "oom_kill"),
        pgmajfault: vmstat_field(vmstat, "pgmajfault"),
        refault_file: vmstat_field(vmstat, "workingset_refault_file")
            .or_else(|| vmstat_field(vmstat, "workingset_refault")),
    }
}

pub fn read() -> MemSample {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    parse(&meminfo, &vmstat)
}

pub fn emit(s: &MemSample) {
    telemetry::emit(Event::Mem {
        mem_total_kib: s.mem_total_kib,
        mem_available_kib: s.mem_available_kib,
        mem_free_kib: s.mem_free_kib,
        swap_free_kib: s.swap_free_kib,
        oom_kill: s.oom_kill,
        pgmajfault: s.pgmajfault,
        refault_file: s.refault_file,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let meminfo = "MemTotal:         230000 kB\nMemFree:           12000 kB\n\
                       MemAvailable:      15000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n";
        let vmstat = "nr_free_pages 3000\noom_kill_x 9\noom_kill 17\npgmajfault 5\n\
                      workingset_refault_anon 1\nworkingset_refault_file 44\n";
        let s = parse(meminfo, vmstat);
        assert_eq!(
            s,
            MemSample {
                mem_total_kib: Some(230_000),
                mem_available_kib: Some(15_000),
                mem_free_kib: Some(12_000),
                swap_free_kib: Some(0),
                oom_kill: Some(17),
                pgmajfault: Some(5),
                refault_file: Some(44),
            }
        );
    }

    #[test]
    fn old_kernels_lack_fields() {
        let s = parse("MemTotal: 100 kB\n", "pgfault 5\n");
        assert_eq!(s.mem_total_kib, Some(100));
        assert_eq!(s.mem_available_kib, None);
        assert_eq!(s.oom_kill, None);
        let s = parse("", "workingset_refault 7\n");
        assert_eq!(s.refault_file, Some(7));
    }
}
