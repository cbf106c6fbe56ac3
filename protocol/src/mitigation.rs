//! The mitigations oomlab can put under test, each declared once in the
//! [`mitigations!`] invocation below: its name, its fields with their types
//! and defaults, and what it is. The same definition reads a scenario's YAML
//! entry (`- cgroup: {memory_max_mib: 150, oom_group: true}`, through
//! [`Mitigation::from_pairs`]), travels to the guest as one
//! `mitigation=cgroup memory_max_mib=150 oom_group=1` line of
//! `scenario.conf`, and documents itself ([`Mitigation::KINDS`]). The guest
//! payload applies each one; a step it cannot apply is reported as a
//! `setup` event with `mitigation: true`, and the run is then `n/a`.
//!
//! Adding a mitigation: an entry here (and its [`Mitigation::check`] arm),
//! its effect in the payload, a scenario file, a line in the docs.

use std::fmt;

use crate::conf::{ConfValue, OomScoreAdj};

/// When the master writes its own `oom_score_adj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdjWhen {
    /// After its first fork: workers forked earlier keep theirs; later
    /// forks (every respawn) inherit the master's value unless `workers`
    /// is set too.
    #[default]
    AfterFork,
    /// Before any fork: every worker inherits it (the naive way).
    BeforeFork,
}

impl ConfValue for AdjWhen {
    const SHAPE: &'static str = "after_fork|before_fork";
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "after_fork" => Ok(AdjWhen::AfterFork),
            "before_fork" => Ok(AdjWhen::BeforeFork),
            _ => Err(format!("expected after_fork or before_fork, got `{v}`")),
        }
    }
    fn show(&self) -> String {
        match self {
            AdjWhen::AfterFork => "after_fork",
            AdjWhen::BeforeFork => "before_fork",
        }
        .to_string()
    }
}

/// A dotted sysctl name (`vm.overcommit_memory`) that cannot climb out of
/// `/proc/sys` once its dots become slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlKey(pub String);

impl SysctlKey {
    /// `/proc/sys/vm/overcommit_memory` for `vm.overcommit_memory`.
    pub fn path(&self) -> String {
        format!("/proc/sys/{}", self.0.replace('.', "/"))
    }
}

impl ConfValue for SysctlKey {
    const SHAPE: &'static str = "dotted.name";
    fn parse(v: &str) -> Result<Self, String> {
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !v.split('.').any(|p| p.is_empty() || p == "..");
        if ok {
            Ok(SysctlKey(v.to_string()))
        } else {
            Err(format!(
                "`{v}` is not a sysctl name like vm.overcommit_memory"
            ))
        }
    }
    fn show(&self) -> String {
        self.0.clone()
    }
}

/// A program from a Debian package that runs in the guest: the image packs
/// it, with its interpreter and libraries, at `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestProgram {
    /// The Debian package that ships it.
    pub package: &'static str,
    /// Where it lives in the package and in the guest.
    pub path: &'static str,
}

/// Debian's earlyoom.
pub const EARLYOOM: GuestProgram = GuestProgram {
    package: "earlyoom",
    path: "/usr/bin/earlyoom",
};

/// Why a mitigation entry was refused: which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitigationError {
    /// `cgroup.memory_max_mib`, or just the kind for an unknown kind.
    pub field: String,
    pub msg: String,
}

impl fmt::Display for MitigationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.msg)
    }
}

/// One documented field of a mitigation.
#[derive(Debug, Clone, Copy)]
pub struct FieldDoc {
    pub name: &'static str,
    pub shape: &'static str,
    /// `req`: must be given; `opt`: may be left out; `one`: has a default.
    pub kind: &'static str,
    pub default: Option<fn() -> String>,
    pub doc: &'static str,
}

/// One documented mitigation kind.
#[derive(Debug, Clone, Copy)]
pub struct KindDoc {
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [FieldDoc],
}

macro_rules! field_type {
    (req $t:ty) => { $t };
    (opt $t:ty) => { Option<$t> };
    (one $t:ty) => { $t };
}

macro_rules! field_default_fn {
    (one $t:ty, $d:expr) => {
        Some(|| {
            ConfValue::show(&{
                let v: $t = $d;
                v
            })
        })
    };
    ($k:ident $t:ty,) => {
        None
    };
}

macro_rules! field_finish {
    (req $t:ty, $slot:expr, $field:expr) => {
        $slot.ok_or_else(|| MitigationError {
            field: $field,
            msg: "is required".into(),
        })?
    };
    (opt $t:ty, $slot:expr, $field:expr) => {
        $slot
    };
    (one $t:ty, $slot:expr, $field:expr, $d:expr) => {
        $slot.unwrap_or($d)
    };
}

macro_rules! field_show {
    (opt, $v:expr, $name:expr, $out:expr) => {
        if let Some(v) = $v {
            $out.push(($name, ConfValue::show(v)));
        }
    };
    ($k:ident, $v:expr, $name:expr, $out:expr) => {
        $out.push(($name, ConfValue::show($v)))
    };
}

macro_rules! mitigations {
    ($(
        $(#[doc = $vdoc:literal])+
        $variant:ident = $kind:literal {
            $( $(#[doc = $fdoc:literal])+ $field:ident : $fk:ident $ft:ty $(= $default:expr)? , )*
        }
    )*) => {
        /// A mitigation under test (see the module docs).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Mitigation {
            $( $(#[doc = $vdoc])+ $variant { $( $(#[doc = $fdoc])+ $field: field_type!($fk $ft), )* }, )*
        }

        impl Mitigation {
            /// Every kind with its fields, for the docs.
            pub const KINDS: &'static [KindDoc] = &[$(
                KindDoc {
                    name: $kind,
                    doc: concat!($($vdoc),+),
                    fields: &[$(
                        FieldDoc {
                            name: stringify!($field),
                            shape: <$ft as ConfValue>::SHAPE,
                            kind: stringify!($fk),
                            default: field_default_fn!($fk $ft, $($default)?),
                            doc: concat!($($fdoc),+),
                        },
                    )*],
                },
            )*];

            /// Its name in scenario files and `scenario.conf`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Mitigation::$variant { .. } => $kind, )*
                }
            }

            /// Builds one from its kind and `field=value` pairs (each value
            /// as text), checking every value's type and range.
            pub fn from_pairs(kind: &str, pairs: &[(&str, &str)]) -> Result<Mitigation, MitigationError> {
                match kind {
                    $( $kind => {
                        $( let mut $field: Option<$ft> = None; )*
                        for (k, v) in pairs {
                            let field = format!("{}.{k}", $kind);
                            match *k {
                                $( stringify!($field) => {
                                    if $field.is_some() {
                                        return Err(MitigationError { field, msg: "given twice".into() });
                                    }
                                    $field = Some(<$ft as ConfValue>::parse(v)
                                        .map_err(|msg| MitigationError { field, msg })?);
                                } )*
                                _ => {
                                    let known: &[&str] = &[$(stringify!($field)),*];
                                    return Err(MitigationError {
                                        field,
                                        msg: format!("unknown field (known: {})", known.join(", ")),
                                    });
                                }
                            }
                        }
                        Ok(Mitigation::$variant {
                            $( $field: field_finish!($fk $ft, $field, format!("{}.{}", $kind, stringify!($field)) $(, $default)?), )*
                        })
                    } )*
                    _ => {
                        let known: &[&str] = &[$($kind),*];
                        Err(MitigationError {
                            field: kind.to_string(),
                            msg: format!("unknown mitigation (known: {})", known.join(", ")),
                        })
                    }
                }
            }

            /// Its fields as `(name, value)` text pairs; absent optional
            /// fields are left out.
            pub fn pairs(&self) -> Vec<(&'static str, String)> {
                let mut out = Vec::new();
                match self {
                    $( Mitigation::$variant { $($field),* } => {
                        $( field_show!($fk, $field, stringify!($field), out); )*
                    } )*
                }
                out
            }
        }
    };
}

mitigations! {
    /// `oom_score_adj` for the master and/or the workers. The kernel's OOM
    /// killer picks the task with the highest badness; `1000` makes a task
    /// the first choice, `-1000` exempts it. Children inherit the value at
    /// fork. Needs `/proc/PID/oom_score_adj` (2.6.36, backported to RHEL 6;
    /// older kernels only have `oom_adj`, -17..15, used as the fallback).
    OomScoreAdj = "oom_score_adj" {
        /// The master's value.
        master: opt OomScoreAdj,
        /// Written by every worker right after it is forked.
        workers: opt OomScoreAdj,
        /// When the master writes its own value.
        when: one AdjWhen = AdjWhen::AfterFork,
    }
    /// A sysctl written under `/proc/sys` before the master starts.
    Sysctl = "sysctl" {
        /// Dotted name, e.g. `vm.overcommit_memory`.
        key: req SysctlKey,
        /// The value written.
        value: req String,
    }
    /// Master and workers in a memory cgroup of their own. cgroup v2
    /// (`memory.max`, `memory.high`, `memory.oom.group`) where the kernel
    /// has it; cgroup v1 `memory.limit_in_bytes` where it has only v1 (2.6.32
    /// to 4.4 era), which has no group kill and no `memory.high`: asking
    /// for those there makes the run `n/a`.
    Cgroup = "cgroup" {
        /// Hard limit (`memory.max` / `memory.limit_in_bytes`), MiB.
        memory_max_mib: opt u32,
        /// Throttling threshold (`memory.high`), MiB: reclaim and sleep
        /// instead of killing, until `memory_max_mib` is reached.
        memory_high_mib: opt u32,
        /// `memory.oom.group`: one OOM kills the whole group (4.19+).
        oom_group: one bool = false,
    }
    /// The master waits before re-forking a dead worker, doubling the wait
    /// after each death up to a cap, like Kubernetes' CrashLoopBackOff
    /// (10 s doubling to 300 s there; scaled down here).
    RespawnBackoff = "respawn_backoff" {
        /// First wait, ms.
        initial_ms: one u32 = 100,
        /// Longest wait, ms.
        max_ms: one u32 = 3_000,
        /// A worker that lived this long resets the wait to `initial_ms`.
        reset_after_ms: one u32 = 10_000,
    }
    /// The master gives up re-forking after `burst` respawns within
    /// `interval_ms` (systemd's `StartLimitBurst` / `StartLimitIntervalSec`),
    /// and exits.
    RespawnLimit = "respawn_limit" {
        /// Respawns allowed within the interval.
        burst: one u32 = 5,
        /// The interval, ms.
        interval_ms: one u32 = 10_000,
    }
    /// Debian's `earlyoom` in the guest: it kills the process with the
    /// highest `oom_score` (SIGTERM, then SIGKILL) when available memory
    /// and free swap are both below their thresholds, before the kernel's
    /// OOM killer has to.
    Earlyoom = "earlyoom" {
        /// `-m`: act below this share of available memory, percent.
        mem_min_percent: one u32 = 10,
        /// `-s`: and below this share of free swap, percent.
        swap_min_percent: one u32 = 10,
        /// `-g`: kill the victim's whole process group (master and workers).
        process_group: one bool = false,
    }
    /// A pressure-stall (PSI) killer in the guest: it opens a trigger on
    /// `/proc/pressure/memory` and kills the master's whole process group
    /// when tasks stall on memory for `stall_ms` within `window_ms`
    /// (kernels 5.2+ with PSI enabled).
    PsiKiller = "psi_killer" {
        /// Stall time that fires the trigger, ms ("some" tasks stalled).
        stall_ms: one u32 = 150,
        /// Tracking window, ms (500..=10000).
        window_ms: one u32 = 1_000,
    }
}

impl Mitigation {
    /// The programs the guest image must hold for this mitigation.
    pub fn programs(&self) -> &'static [GuestProgram] {
        match self {
            Mitigation::Earlyoom { .. } => &[EARLYOOM],
            _ => &[],
        }
    }

    /// Checks that need more than one field, or the VM's memory: `Err`
    /// names the field.
    pub fn check(&self, vm_memory_mib: u32) -> Result<(), MitigationError> {
        let bad = |field: &str, msg: String| {
            Err(MitigationError {
                field: format!("{}.{field}", self.kind()),
                msg,
            })
        };
        match self {
            Mitigation::OomScoreAdj {
                master, workers, ..
            } => {
                if master.is_none() && workers.is_none() {
                    return bad("master", "set `master`, `workers` or both".into());
                }
            }
            Mitigation::Sysctl { value, .. } => {
                if value.contains(['\n', '\r', '\0']) || value.len() > 256 {
                    return bad("value", "must be one line of at most 256 bytes".into());
                }
            }
            Mitigation::Cgroup {
                memory_max_mib,
                memory_high_mib,
                ..
            } => {
                if memory_max_mib.is_none() && memory_high_mib.is_none() {
                    return bad(
                        "memory_max_mib",
                        "set `memory_max_mib`, `memory_high_mib` or both".into(),
                    );
                }
                for (f, v) in [
                    ("memory_max_mib", memory_max_mib),
                    ("memory_high_mib", memory_high_mib),
                ] {
                    if let Some(v) = v {
                        if *v == 0 || *v >= vm_memory_mib {
                            return bad(
                                f,
                                format!(
                                    "{v} must be between 1 and vm.memory_mib ({vm_memory_mib}) exclusive"
                                ),
                            );
                        }
                    }
                }
                if let (Some(h), Some(m)) = (memory_high_mib, memory_max_mib) {
                    if h >= m {
                        return bad(
                            "memory_high_mib",
                            format!("{h} must be below memory_max_mib ({m})"),
                        );
                    }
                }
            }
            Mitigation::RespawnBackoff {
                initial_ms, max_ms, ..
            } => {
                if *initial_ms == 0 || initial_ms > max_ms || *max_ms > 600_000 {
                    return bad(
                        "initial_ms",
                        format!(
                            "need 1 <= initial_ms ({initial_ms}) <= max_ms ({max_ms}) <= 600000"
                        ),
                    );
                }
            }
            Mitigation::RespawnLimit { burst, interval_ms } => {
                if *burst == 0 || *interval_ms == 0 {
                    return bad("burst", "burst and interval_ms must be at least 1".into());
                }
            }
            Mitigation::Earlyoom {
                mem_min_percent,
                swap_min_percent,
                ..
            } => {
                for (f, v) in [
                    ("mem_min_percent", mem_min_percent),
                    ("swap_min_percent", swap_min_percent),
                ] {
                    if !(1..=100).contains(v) {
                        return bad(f, format!("{v} is out of range 1..=100"));
                    }
                }
            }
            Mitigation::PsiKiller {
                stall_ms,
                window_ms,
            } => {
                // The kernel accepts windows of 500 ms to 10 s, and a
                // threshold below the window.
                if !(500..=10_000).contains(window_ms) {
                    return bad(
                        "window_ms",
                        format!("{window_ms} is out of range 500..=10000"),
                    );
                }
                if *stall_ms == 0 || stall_ms >= window_ms {
                    return bad(
                        "stall_ms",
                        format!(
                            "{stall_ms} must be between 1 and window_ms ({window_ms}) exclusive"
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// `kind field=value field=value`: one `scenario.conf` line. Values are
/// percent-encoded where they hold `%` or whitespace.
impl ConfValue for Mitigation {
    const SHAPE: &'static str = "kind field=value ...";
    fn parse(v: &str) -> Result<Self, String> {
        let mut words = v.split_whitespace();
        let kind = words.next().ok_or("empty mitigation")?;
        let mut pairs = Vec::new();
        for w in words {
            let (k, val) = w
                .split_once('=')
                .ok_or_else(|| format!("expected field=value, got `{w}`"))?;
            pairs.push((k, decode(val)?));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Mitigation::from_pairs(kind, &refs).map_err(|e| e.to_string())
    }
    fn show(&self) -> String {
        let mut s = self.kind().to_string();
        for (k, v) in self.pairs() {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(&encode(&v));
        }
        s
    }
}

impl fmt::Display for Mitigation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show())
    }
}

/// `{kind: {field: "value", ...}}`, which a scenario file reads back.
#[cfg(feature = "serde")]
impl serde::Serialize for Mitigation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Fields(Vec<(&'static str, String)>);
        impl serde::Serialize for Fields {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in &self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.kind(), &Fields(self.pairs()))?;
        m.end()
    }
}

fn encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '%' => s.push_str("%25"),
            ' ' => s.push_str("%20"),
            '\t' => s.push_str("%09"),
            c => s.push(c),
        }
    }
    s
}

fn decode(v: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in `{v}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{v}` is not UTF-8 once decoded"))
}

/// The mitigation table of the docs, generated from [`Mitigation::KINDS`].
pub fn kinds_markdown() -> String {
    let mut s = String::new();
    for k in Mitigation::KINDS {
        s.push_str(&format!("#### `{}`\n\n{}\n\n", k.name, k.doc.trim()));
        s.push_str("| field | value | default | meaning |\n|---|---|---|---|\n");
        for f in k.fields {
            let default = match (f.kind, f.default) {
                ("req", _) => "required".to_string(),
                (_, Some(d)) => format!("`{}`", d()),
                _ => "absent".to_string(),
            };
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                f.name,
                f.shape.replace('|', "\\|"),
                default,
                f.doc.trim()
            ));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: &str, pairs: &[(&str, &str)]) -> Result<Mitigation, MitigationError> {
        Mitigation::from_pairs(kind, pairs)
    }

    #[test]
    fn defaults_required_and_optional_fields() {
        let c = m("cgroup", &[("memory_max_mib", "150")]).unwrap();
        assert_eq!(
            c,
            Mitigation::Cgroup {
                memory_max_mib: Some(150),
                memory_high_mib: None,
                oom_group: false
            }
        );
        let e = m("sysctl", &[("key", "vm.panic_on_oom")]).unwrap_err();
        assert_eq!(e.field, "sysctl.value");
        assert!(e.msg.contains("required"));
        let b = m("respawn_backoff", &[]).unwrap();
        assert_eq!(
            b,
            Mitigation::RespawnBackoff {
                initial_ms: 100,
                max_ms: 3000,
                reset_after_ms: 10_000
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = m("cgroup", &[("memroy_max_mib", "1")]).unwrap_err();
        assert_eq!(e.field, "cgroup.memroy_max_mib");
        assert!(e.msg.contains("unknown field") && e.msg.contains("memory_max_mib"));
        let e = m("oom_score_adj", &[("master", "1001")]).unwrap_err();
        assert_eq!(e.field, "oom_score_adj.master");
        let e = m("oom_score_adj", &[("when", "later")]).unwrap_err();
        assert_eq!(e.field, "oom_score_adj.when");
        let e = m("nope", &[]).unwrap_err();
        assert!(e.msg.contains("earlyoom"), "{e}");
        let e = m("sysctl", &[("key", "vm/../etc"), ("value", "1")]).unwrap_err();
        assert_eq!(e.field, "sysctl.key");
        let e = m("cgroup", &[("oom_group", "1"), ("oom_group", "0")]).unwrap_err();
        assert!(e.msg.contains("twice"));
    }

    #[test]
    fn checks_across_fields() {
        let c = m(
            "cgroup",
            &[("memory_max_mib", "150"), ("memory_high_mib", "200")],
        )
        .unwrap();
        assert_eq!(c.check(256).unwrap_err().field, "cgroup.memory_high_mib");
        let c = m("cgroup", &[("memory_max_mib", "300")]).unwrap();
        assert_eq!(c.check(256).unwrap_err().field, "cgroup.memory_max_mib");
        assert!(m("cgroup", &[("oom_group", "1")])
            .unwrap()
            .check(256)
            .is_err());
        assert!(m("oom_score_adj", &[]).unwrap().check(256).is_err());
        let p = m("psi_killer", &[("stall_ms", "2000")]).unwrap();
        assert_eq!(p.check(256).unwrap_err().field, "psi_killer.stall_ms");
    }

    #[test]
    fn conf_line_round_trips_every_kind() {
        let all = [
            m(
                "oom_score_adj",
                &[("master", "1000"), ("when", "before_fork")],
            )
            .unwrap(),
            m(
                "sysctl",
                &[("key", "kernel.core_pattern"), ("value", "a b%c")],
            )
            .unwrap(),
            m(
                "cgroup",
                &[("memory_max_mib", "150"), ("oom_group", "true")],
            )
            .unwrap(),
            m("respawn_backoff", &[("max_ms", "5000")]).unwrap(),
            m("respawn_limit", &[]).unwrap(),
            m("earlyoom", &[("process_group", "1")]).unwrap(),
            m("psi_killer", &[]).unwrap(),
        ];
        assert_eq!(all.len(), Mitigation::KINDS.len());
        for x in all {
            let line = x.show();
            if x.kind() == "sysctl" {
                assert!(line.ends_with("value=a%20b%25c"), "{line}");
            }
            assert_eq!(Mitigation::parse(&line), Ok(x.clone()), "{line}");
        }
    }
}
