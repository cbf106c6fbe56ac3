//! `/oomlab/scenario.conf`: plain `key=value` lines (PROTOCOL.md).
//!
//! Parsing never fails as a whole: PID 1 must still run (and power off), so
//! bad lines become diagnostics that the caller reports as `error` events.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Respawn {
    /// nginx: re-fork as soon as a worker is reaped.
    Immediate,
    /// Re-fork `respawn_delay_ms` after the worker was reaped.
    Delay,
    /// Never re-fork.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub duration_ms: u64,
    pub workers: u32,
    pub worker_mem_kib: u64,
    pub worker_step_kib: u64,
    pub worker_step_ms: u64,
    pub touch_ms: u64,
    pub respawn: Respawn,
    pub respawn_delay_ms: u64,
    pub canary_ms: u64,
    pub sample_ms: u64,
    pub cgroup_memory_max_kib: Option<u64>,
    pub cgroup_oom_group: bool,
    /// `(dotted.key, value)` in file order.
    pub sysctls: Vec<(String, String)>,
    pub master_oom_score_adj: Option<i32>,
    pub worker_oom_score_adj: Option<i32>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "unnamed".into(),
            duration_ms: 10_000,
            workers: 4,
            worker_mem_kib: 61_440,
            worker_step_kib: 0,
            worker_step_ms: 0,
            touch_ms: 50,
            respawn: Respawn::Immediate,
            respawn_delay_ms: 0,
            canary_ms: 100,
            sample_ms: 500,
            cgroup_memory_max_kib: None,
            cgroup_oom_group: false,
            sysctls: Vec::new(),
            master_oom_score_adj: None,
            worker_oom_score_adj: None,
        }
    }
}

/// A problem with one line; the line was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scenario.conf line {}: {}", self.line, self.msg)
    }
}

fn num<T: FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("`{key}`: invalid value `{v}`"))
}

fn oom_adj(key: &str, v: &str) -> Result<i32, String> {
    let n: i32 = num(key, v)?;
    if (-1000..=1000).contains(&n) {
        Ok(n)
    } else {
        Err(format!("`{key}`: {n} is outside -1000..=1000"))
    }
}

fn sysctl(v: &str) -> Result<(String, String), String> {
    let (k, val) = v
        .split_once('=')
        .ok_or_else(|| format!("`sysctl`: expected path.with.dots=value, got `{v}`"))?;
    let k = k.trim();
    // The key becomes a path under /proc/sys: refuse anything that could
    // climb out of it.
    let bad_part = k.split('.').any(|p| p.is_empty() || p == "..");
    if k.is_empty() || k.contains('/') || bad_part {
        return Err(format!("`sysctl`: bad key `{k}`"));
    }
    Ok((k.to_string(), val.trim().to_string()))
}

impl Scenario {
    /// Applies one `key=value`; `Err` leaves the scenario unchanged.
    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "name" => self.name = v.to_string(),
            "duration_ms" => self.duration_ms = num(key, v)?,
            "workers" => self.workers = num(key, v)?,
            "worker_mem_kib" => self.worker_mem_kib = num(key, v)?,
            "worker_step_kib" => self.worker_step_kib = num(key, v)?,
            "worker_step_ms" => self.worker_step_ms = num(key, v)?,
            "touch_ms" => self.touch_ms = num(key, v)?,
            "respawn" => {
                self.respawn = match v {
                    "immediate" => Respawn::Immediate,
                    "delay" => Respawn::Delay,
                    "none" => Respawn::None,
                    _ => {
                        return Err(format!(
                            "`respawn`: expected immediate|delay|none, got `{v}`"
                        ))
                    }
                }
            }
            "respawn_delay_ms" => self.respawn_delay_ms = num(key, v)?,
            "canary_ms" => self.canary_ms = num(key, v)?,
            "sample_ms" => self.sample_ms = num(key, v)?,
            "cgroup_memory_max_kib" => self.cgroup_memory_max_kib = Some(num(key, v)?),
            "cgroup_oom_group" => {
                self.cgroup_oom_group = match v {
                    "0" => false,
                    "1" => true,
                    _ => return Err(format!("`cgroup_oom_group`: expected 0 or 1, got `{v}`")),
                }
            }
            "sysctl" => self.sysctls.push(sysctl(v)?),
            "master_oom_score_adj" => self.master_oom_score_adj = Some(oom_adj(key, v)?),
            "worker_oom_score_adj" => self.worker_oom_score_adj = Some(oom_adj(key, v)?),
            _ => return Err(format!("unknown key `{key}`")),
        }
        Ok(())
    }
}

/// Parses the file. Blank lines and `#` comments are skipped; a repeated key
/// overrides the earlier one, except `sysctl` which accumulates.
pub fn parse(text: &str) -> (Scenario, Vec<Diag>) {
    let mut sc = Scenario::default();
    let mut diags = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let res = match line.split_once('=') {
            Some((k, v)) => sc.set(k.trim(), v.trim()),
            None => Err(format!("expected key=value, got `{line}`")),
        };
        if let Err(msg) = res {
            diags.push(Diag { line: i + 1, msg });
        }
    }
    (sc, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_defaults() {
        let (sc, d) = parse("");
        assert!(d.is_empty());
        assert_eq!(sc, Scenario::default());
        assert_eq!(sc.name, "unnamed");
        assert_eq!(sc.duration_ms, 10_000);
        assert_eq!(sc.workers, 4);
        assert_eq!(sc.worker_mem_kib, 61_440);
        assert_eq!(sc.touch_ms, 50);
        assert_eq!(sc.respawn, Respawn::Immediate);
        assert_eq!(sc.canary_ms, 100);
        assert_eq!(sc.sample_ms, 500);
        assert_eq!(sc.cgroup_memory_max_kib, None);
    }

    #[test]
    fn every_key() {
        let text = "\
name=seed nginx
duration_ms=12000
workers=6
worker_mem_kib=1024
worker_step_kib=256
worker_step_ms=5
touch_ms=20
respawn=delay
respawn_delay_ms=300
canary_ms=250
sample_ms=1000
cgroup_memory_max_kib=153600
cgroup_oom_group=1
sysctl=vm.overcommit_memory=2
sysctl = vm.overcommit_ratio = 50
master_oom_score_adj=1000
worker_oom_score_adj=-17
";
        let (sc, d) = parse(text);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(sc.name, "seed nginx");
        assert_eq!(sc.duration_ms, 12_000);
        assert_eq!(sc.workers, 6);
        assert_eq!(sc.worker_mem_kib, 1024);
        assert_eq!(sc.worker_step_kib, 256);
        assert_eq!(sc.worker_step_ms, 5);
        assert_eq!(sc.touch_ms, 20);
        assert_eq!(sc.respawn, Respawn::Delay);
        assert_eq!(sc.respawn_delay_ms, 300);
        assert_eq!(sc.canary_ms, 250);
        assert_eq!(sc.sample_ms, 1000);
        assert_eq!(sc.cgroup_memory_max_kib, Some(153_600));
        assert!(sc.cgroup_oom_group);
        assert_eq!(
            sc.sysctls,
            vec![
                ("vm.overcommit_memory".to_string(), "2".to_string()),
                ("vm.overcommit_ratio".to_string(), "50".to_string()),
            ]
        );
        assert_eq!(sc.master_oom_score_adj, Some(1000));
        assert_eq!(sc.worker_oom_score_adj, Some(-17));
    }

    #[test]
    fn comments_blanks_crlf_and_overrides() {
        let (sc, d) = parse("# hi\r\n\r\n  workers = 2 \r\nworkers=3\r\nrespawn=none\r\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(sc.workers, 3);
        assert_eq!(sc.respawn, Respawn::None);
    }

    #[test]
    fn bad_lines_are_reported_and_ignored() {
        let text = "\
workers=2
bogus=1
workers=lots
no equals sign
respawn=sometimes
cgroup_oom_group=yes
master_oom_score_adj=1001
sysctl=vm/../../etc=1
sysctl=novalue
sysctl=vm..x=1
duration_ms=-5
";
        let (sc, d) = parse(text);
        assert_eq!(sc.workers, 2, "a bad value keeps the previous one");
        assert_eq!(sc.respawn, Respawn::Immediate);
        assert!(!sc.cgroup_oom_group);
        assert_eq!(sc.master_oom_score_adj, None);
        assert!(sc.sysctls.is_empty());
        assert_eq!(sc.duration_ms, 10_000);
        let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(
            d[0].to_string(),
            "scenario.conf line 2: unknown key `bogus`"
        );
    }

    #[test]
    fn value_may_contain_equals_and_name_may_be_empty() {
        let (sc, d) = parse("name=a=b\n");
        assert!(d.is_empty());
        assert_eq!(sc.name, "a=b");
        let (sc, _) = parse("name=\n");
        assert_eq!(sc.name, "");
    }
}
