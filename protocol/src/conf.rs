//! `/oomlab/scenario.conf`: what the harness tells the guest, as plain
//! `key=value` lines (PID 1 has no YAML parser).
//!
//! Every key is declared once, in the [`guest_conf!`] invocation below: its
//! type, its default and its meaning. The harness renders a [`GuestConf`]
//! with [`GuestConf::render`]; the payload reads it with [`parse`]; the key
//! table of PROTOCOL.md is generated from [`GuestConf::KEYS`]. Adding a key
//! is one line here.
//!
//! Parsing never fails as a whole: PID 1 must still run (and power off), so
//! bad lines become [`Diag`]nostics that the payload reports as `error`
//! events.

use std::fmt;

use crate::mitigation::Mitigation;

/// A value that can stand right of `=`.
pub trait ConfValue: Sized {
    /// How the value is written, for the key table.
    const SHAPE: &'static str;
    fn parse(v: &str) -> Result<Self, String>;
    fn show(&self) -> String;
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl ConfValue for $t {
            const SHAPE: &'static str = stringify!($t);
            fn parse(v: &str) -> Result<Self, String> {
                v.parse().map_err(|_| format!("invalid value `{v}` (expected {})", stringify!($t)))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
numeric!(u32, u64, i32);

impl ConfValue for String {
    const SHAPE: &'static str = "text";
    fn parse(v: &str) -> Result<Self, String> {
        Ok(v.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl ConfValue for bool {
    const SHAPE: &'static str = "0|1";
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => Err(format!("expected 0 or 1 (or false/true), got `{v}`")),
        }
    }
    fn show(&self) -> String {
        u8::from(*self).to_string()
    }
}

/// How the master replaces a dead worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Respawn {
    /// nginx: re-fork as soon as a worker is reaped.
    #[default]
    Immediate,
    /// Re-fork `respawn_delay_ms` after the worker was reaped.
    Delay,
    /// Never re-fork.
    None,
}

impl ConfValue for Respawn {
    const SHAPE: &'static str = "immediate|delay|none";
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "immediate" => Ok(Respawn::Immediate),
            "delay" => Ok(Respawn::Delay),
            "none" => Ok(Respawn::None),
            _ => Err(format!("expected immediate|delay|none, got `{v}`")),
        }
    }
    fn show(&self) -> String {
        match self {
            Respawn::Immediate => "immediate",
            Respawn::Delay => "delay",
            Respawn::None => "none",
        }
        .to_string()
    }
}

/// What the guest runs on once the modules are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum RootKind {
    /// Stay on the initramfs: every page of every program is in RAM and
    /// can never be evicted.
    #[default]
    Initramfs,
    /// Mount the ext4 disk [`crate::guest::ROOT_DEV`] and switch root to it,
    /// as a real machine runs: program pages can be dropped under memory
    /// pressure and read back from the disk.
    Disk,
}

impl ConfValue for RootKind {
    const SHAPE: &'static str = "initramfs|disk";
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "initramfs" => Ok(RootKind::Initramfs),
            "disk" => Ok(RootKind::Disk),
            _ => Err(format!("expected initramfs or disk, got `{v}`")),
        }
    }
    fn show(&self) -> String {
        match self {
            RootKind::Initramfs => "initramfs",
            RootKind::Disk => "disk",
        }
        .to_string()
    }
}

/// An `oom_score_adj` value, -1000..=1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomScoreAdj(pub i32);

impl ConfValue for OomScoreAdj {
    const SHAPE: &'static str = "-1000..=1000";
    fn parse(v: &str) -> Result<Self, String> {
        let n = i32::parse(v)?;
        if (-1000..=1000).contains(&n) {
            Ok(OomScoreAdj(n))
        } else {
            Err(format!("{n} is outside -1000..=1000"))
        }
    }
    fn show(&self) -> String {
        self.0.to_string()
    }
}

/// One documented key, for PROTOCOL.md.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub name: &'static str,
    pub shape: &'static str,
    /// `one`: always written; `opt`: written when set; `many`: repeatable.
    pub kind: &'static str,
    pub doc: &'static str,
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

macro_rules! slot_type {
    (one $t:ty) => { $t };
    (opt $t:ty) => { Option<$t> };
    (many $t:ty) => { Vec<$t> };
}

macro_rules! slot_default {
    (one $d:expr) => {
        $d
    };
    (opt) => {
        None
    };
    (many) => {
        Vec::new()
    };
}

macro_rules! slot_set {
    (one $slot:expr, $v:expr) => {
        $slot = ConfValue::parse($v)?
    };
    (opt $slot:expr, $v:expr) => {
        $slot = Some(ConfValue::parse($v)?)
    };
    (many $slot:expr, $v:expr) => {
        $slot.push(ConfValue::parse($v)?)
    };
}

macro_rules! slot_write {
    (one $slot:expr, $key:expr, $out:expr) => {
        line($out, $key, &ConfValue::show(&$slot))
    };
    (opt $slot:expr, $key:expr, $out:expr) => {
        if let Some(v) = &$slot {
            line($out, $key, &ConfValue::show(v))
        }
    };
    (many $slot:expr, $key:expr, $out:expr) => {
        for v in &$slot {
            line($out, $key, &ConfValue::show(v))
        }
    };
}

fn line(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    out.push('\n');
}

/// Declares [`GuestConf`]: `key: one TYPE = DEFAULT` (always written),
/// `key: opt TYPE` (written when set), `key: many TYPE` (repeatable).
macro_rules! guest_conf {
    ($( $(#[doc = $doc:literal])+ $key:ident : $kind:ident $ty:ty $(= $default:expr)? ; )*) => {
        /// The guest's scenario: every key of `scenario.conf`.
        #[derive(Debug, Clone, PartialEq)]
        pub struct GuestConf {
            $( $(#[doc = $doc])+ pub $key: slot_type!($kind $ty), )*
        }

        impl Default for GuestConf {
            fn default() -> Self {
                GuestConf { $( $key: slot_default!($kind $($default)?), )* }
            }
        }

        impl GuestConf {
            /// Every key, in file order, with its documentation.
            pub const KEYS: &'static [KeyDoc] = &[$(
                KeyDoc {
                    name: stringify!($key),
                    shape: <$ty as ConfValue>::SHAPE,
                    kind: stringify!($kind),
                    doc: concat!($($doc),+),
                },
            )*];

            /// Applies one `key=value`; `Err` leaves the conf unchanged.
            fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
                match key {
                    $( stringify!($key) => { slot_set!($kind self.$key, v); } )*
                    _ => return Err(format!("unknown key `{key}`")),
                }
                Ok(())
            }

            /// The file's text: every `one` key, set `opt` keys, each
            /// element of `many` keys, in declaration order.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $( slot_write!($kind self.$key, stringify!($key), &mut out); )*
                out
            }
        }
    };
}

guest_conf! {
    /// Scenario name, echoed in `ready`.
    name: one String = "unnamed".to_string();
    /// Observation window in ms, counted from `ready`; then `done` and power-off.
    duration_ms: one u64 = 10_000;
    /// Workers the master keeps alive.
    workers: one u32 = 4;
    /// KiB each worker allocates and keeps touching.
    worker_mem_kib: one u64 = 61_440;
    /// Grow in steps of this many KiB (0 = all at once).
    worker_step_kib: one u64 = 0;
    /// Pause between two steps, ms.
    worker_step_ms: one u64 = 0;
    /// Pause between two passes over the worker's memory, ms.
    touch_ms: one u64 = 50;
    /// How the master replaces a dead worker.
    respawn: one Respawn = Respawn::Immediate;
    /// Delay before re-forking, ms, with `respawn=delay`.
    respawn_delay_ms: one u64 = 0;
    /// Canary tick period, ms (0 = no canary).
    canary_ms: one u64 = 100;
    /// `/proc/meminfo` + `/proc/vmstat` sample period, ms (0 = only the baseline sample).
    sample_ms: one u64 = 500;
    /// Workers drop to this uid (and gid) right after fork, as nginx's do; the master stays root (absent: workers stay root).
    worker_uid: opt u32;
    /// Workers die (SIGKILL, `PR_SET_PDEATHSIG`) when their master dies, instead of living on as orphans (absent: they live on).
    worker_die_with_master: opt bool;
    /// A mitigation under test, as `kind field=value ...` (see the
    /// mitigation tables below).
    mitigation: many Mitigation;
    /// A kernel module file to load with `finit_module` before anything
    /// else, in the order given (dependencies first; `.ko.xz` files with
    /// `MODULE_INIT_COMPRESSED_FILE`).
    module: many String;
    /// What to run on after the modules: `disk` mounts `/dev/vda` (ext4)
    /// and switches root to it, then runs `/init` from the disk.
    root: one RootKind = RootKind::Initramfs;
    /// Bring up `lo` and `eth0` as 10.0.2.15/24 (QEMU user networking; the
    /// host forward arrives from 10.0.2.2, so no route is needed).
    net: one bool = false;
    /// Start the SSH server (dropbear, host key in the image) and wait
    /// until it listens on port 22 before `ready`; needs `net`.
    ssh: one bool = false;
    /// A block device that holds a swap signature, to `swapon`.
    swap_dev: opt String;
    /// zram swap of this many MiB (0 = none); needs the zram module.
    zram_mib: one u64 = 0;
    /// Run this program as the workload instead of the payload's own
    /// master (absolute path in the image); its children are its workers.
    program: opt String;
    /// One argument of `program` (repeatable, in order).
    program_arg: many String;
    /// Slow clients inside the guest: connect to 127.0.0.1 on this TCP port
    /// (0 = none), send a request body short of its `Content-Length` and
    /// hold the connection.
    load_port: one u32 = 0;
    /// Connections the slow clients keep open.
    load_connections: one u32 = 0;
    /// KiB of body each connection sends (it announces one byte more).
    load_body_kib: one u64 = 0;
}

/// Parses the file. Blank lines and `#` comments are skipped; a repeated key
/// overrides the earlier one, except repeatable (`many`) keys, which
/// accumulate.
pub fn parse(text: &str) -> (GuestConf, Vec<Diag>) {
    let mut conf = GuestConf::default();
    let mut diags = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let res = match l.split_once('=') {
            Some((k, v)) => {
                let k = k.trim();
                conf.set(k, v.trim()).map_err(|e| {
                    if e.starts_with("unknown key") {
                        e
                    } else {
                        format!("`{k}`: {e}")
                    }
                })
            }
            None => Err(format!("expected key=value, got `{l}`")),
        };
        if let Err(msg) = res {
            diags.push(Diag { line: i + 1, msg });
        }
    }
    (conf, diags)
}

/// The key table of PROTOCOL.md, generated from [`GuestConf::KEYS`].
pub fn keys_markdown() -> String {
    let defaults = GuestConf::default().render();
    let default_of = |key: &str| {
        defaults.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    };
    let mut s = String::from("| key | value | default | meaning |\n|---|---|---|---|\n");
    for k in GuestConf::KEYS {
        let default = match (k.kind, default_of(k.name)) {
            (_, Some(v)) => format!("`{v}`"),
            ("many", None) => "none (repeatable)".to_string(),
            _ => "absent".to_string(),
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.name,
            k.shape.replace('|', "\\|"),
            default,
            k.doc.trim()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_defaults() {
        let (c, d) = parse("");
        assert!(d.is_empty());
        assert_eq!(c, GuestConf::default());
        assert_eq!(c.name, "unnamed");
        assert_eq!(c.duration_ms, 10_000);
        assert_eq!(c.workers, 4);
        assert_eq!(c.worker_mem_kib, 61_440);
        assert_eq!(c.respawn, Respawn::Immediate);
        assert!(c.mitigation.is_empty());
    }

    fn mit(line: &str) -> Mitigation {
        Mitigation::parse(line).unwrap()
    }

    #[test]
    fn render_then_parse_is_identity() {
        let c = GuestConf {
            name: "seed nginx".into(),
            duration_ms: 12_000,
            workers: 6,
            worker_step_kib: 256,
            respawn: Respawn::Delay,
            respawn_delay_ms: 300,
            mitigation: vec![
                mit("cgroup memory_max_mib=150 oom_group=1"),
                mit("sysctl key=vm.overcommit_memory value=2"),
                mit("oom_score_adj master=1000 workers=0"),
            ],
            ..GuestConf::default()
        };
        let text = c.render();
        let (back, d) = parse(&text);
        assert!(d.is_empty(), "{d:?}\n{text}");
        assert_eq!(back, c);
        assert!(
            text.contains("mitigation=sysctl key=vm.overcommit_memory value=2\n"),
            "{text}"
        );
    }

    #[test]
    fn comments_blanks_crlf_and_overrides() {
        let (c, d) = parse("# hi\r\n\r\n  workers = 2 \r\nworkers=3\r\nrespawn=none\r\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.workers, 3);
        assert_eq!(c.respawn, Respawn::None);
    }

    #[test]
    fn bad_lines_are_reported_and_ignored() {
        let text = "\
workers=2
bogus=1
workers=lots
no equals sign
respawn=sometimes
mitigation=cgroup oom_group=yes
mitigation=oom_score_adj master=1001
mitigation=sysctl key=vm/../../etc value=1
mitigation=sysctl novalue
mitigation=teleport
duration_ms=-5
";
        let (c, d) = parse(text);
        assert_eq!(c.workers, 2, "a bad value keeps the previous one");
        assert_eq!(c.respawn, Respawn::Immediate);
        assert!(c.mitigation.is_empty());
        assert_eq!(c.duration_ms, 10_000);
        let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(
            d[0].to_string(),
            "scenario.conf line 2: unknown key `bogus`"
        );
        assert!(d[4].msg.contains("cgroup.oom_group"), "{}", d[4]);
        assert!(d[5].msg.contains("oom_score_adj.master"), "{}", d[5]);
    }

    #[test]
    fn value_may_contain_equals_and_name_may_be_empty() {
        let (c, d) = parse("name=a=b\n");
        assert!(d.is_empty());
        assert_eq!(c.name, "a=b");
        let (c, _) = parse("name=\n");
        assert_eq!(c.name, "");
    }

    #[test]
    fn every_key_is_documented_once() {
        let mut names: Vec<&str> = GuestConf::KEYS.iter().map(|k| k.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for k in GuestConf::KEYS {
            assert!(!k.doc.trim().is_empty(), "{}", k.name);
        }
        let table = keys_markdown();
        assert_eq!(table.lines().count(), n + 2);
    }
}
