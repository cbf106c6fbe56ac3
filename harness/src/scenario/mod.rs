//! Scenario files: what to boot, what to run in the guest, what to expect.
//!
//! YAML, unknown fields rejected, every error names the file, the field and
//! the line. A scenario is turned into the guest's `scenario.conf`
//! (protocol/PROTOCOL.md) by [`Scenario::guest_conf`].
//!
//! Files are read once, at most 256 KiB of them, and bounded before and while
//! parsing (size, control characters, nesting, alias expansion, list
//! lengths): see [`bounds`]. Anchors and aliases are allowed, within those
//! bounds.

pub mod bounds;

use std::path::{Path, PathBuf};

use oomlab_protocol::GuestConf;
pub use oomlab_protocol::Mitigation;
use serde::{Deserialize, Serialize};

pub use crate::image::kernel::DEFAULT_KERNEL;
pub use crate::verdict::Verdict;
pub use oomlab_protocol::{Respawn, RootKind};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Probe KVM by booting; fall back to TCG and say why.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The verdict this scenario should produce; exit code 1 when it differs.
    #[serde(default)]
    pub expect: Option<Verdict>,
    /// Kernels on which another verdict is expected: keys are catalogue
    /// names, `uname -r` releases, or patterns with `*` (`"2.6.32*"`,
    /// `"*-rt-amd64"`); an exact key beats a pattern, a longer pattern a
    /// shorter one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub expect_kernels: std::collections::BTreeMap<String, Verdict>,
    #[serde(default)]
    pub vm: VmSpec,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub workload: Workload,
    /// `- cgroup: {...}` maps (or a bare `- psi_killer` for all defaults):
    /// what people write by hand. Kinds and fields are defined once, in
    /// the protocol crate (`oomlab_protocol::mitigation`).
    #[serde(default, deserialize_with = "de_mitigations")]
    pub mitigations: Vec<Mitigation>,
    /// Log into the guest over SSH for the whole window (see probe_ssh).
    #[serde(default)]
    pub ssh: SshSpec,
}

/// The SSH availability probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSpec {
    pub enabled: bool,
    /// One login every this many ms (one at a time).
    pub interval_ms: u32,
    /// A login that takes longer failed: a person gives up.
    pub timeout_ms: u32,
}

impl Default for SshSpec {
    fn default() -> Self {
        SshSpec {
            enabled: false,
            interval_ms: 1000,
            timeout_ms: 10_000,
        }
    }
}

/// Swap for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SwapKind {
    #[default]
    None,
    /// A second virtio disk with a swap signature.
    Disk,
    /// Compressed RAM (the zram module).
    Zram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SwapSpec {
    pub kind: SwapKind,
    pub mib: u32,
}

/// QEMU's I/O throttling of the root disk (0 = none). A host's page cache
/// makes an emulated disk faster than most real ones; a throttled one
/// reads back evicted program pages as slowly as a busy real disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpec {
    pub iops: u32,
    pub bps_kib: u32,
    /// Burst allowance, seconds at 20x the rate (boot reads the programs
    /// once at full speed); 0 = none.
    pub burst_s: u32,
}

/// A real program as the workload (instead of the payload's own master).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProgramSpec {
    /// The Debian package that ships it (fetched with `apt-get download`,
    /// never installed); empty: `path` is taken from the host.
    pub package: String,
    /// Absolute path, in the package and in the guest.
    pub path: String,
    pub args: Vec<String>,
    /// Packages whose libraries are preferred over the host's (best
    /// effort: a name this suite lacks is skipped).
    pub lib_packages: Vec<String>,
    /// Files written into the guest (configuration).
    pub files: Vec<FileSpec>,
    /// Folders created in the guest.
    pub dirs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub content: String,
    #[serde(default = "default_file_mode")]
    pub mode: u32,
}

fn default_file_mode() -> u32 {
    0o644
}

/// Slow clients in the guest (see the payload's load.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSpec {
    pub port: u16,
    pub connections: u32,
    pub body_kib: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmSpec {
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// A kernel catalogue name (images/kernels.yaml) or a path to a bzImage.
    pub kernel: String,
    /// Extra kernel command-line words, appended after oomlab's own.
    pub cmdline: Vec<String>,
    /// `initramfs` (nothing can be evicted) or `disk` (an ext4 root on a
    /// virtio disk, as a real machine has).
    pub root: RootKind,
    pub swap: SwapSpec,
    /// Throttling of the root disk.
    pub disk: DiskSpec,
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            memory_mib: 256,
            cpus: 1,
            accel: Accel::Auto,
            kernel: DEFAULT_KERNEL.to_string(),
            cmdline: Vec::new(),
            root: RootKind::Initramfs,
            swap: SwapSpec::default(),
            disk: DiskSpec::default(),
        }
    }
}

/// Times in seconds. `duration_s` and `settle_s` are guest time; the rest
/// are wall-clock limits enforced by the harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Observation window, from the payload's `ready`.
    pub duration_s: f64,
    /// A kill-free (and respawn-free) stretch this long means "recovered".
    pub settle_s: f64,
    /// No console and no telemetry output for this long means "hang".
    pub hang_s: f64,
    /// From QEMU start to the payload's `ready`.
    pub boot_s: f64,
    /// Hard wall-clock limit for the whole run; 0 = derived.
    pub wall_s: f64,
    /// Stop as soon as the verdict can no longer change (see verdict::early).
    pub early_verdict: bool,
    /// The guest stopped answering for this long (canary silent, or no SSH
    /// login possible) and did not recover: `thrashing`.
    pub stall_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            duration_s: 12.0,
            settle_s: 3.0,
            hang_s: 15.0,
            boot_s: 60.0,
            wall_s: 0.0,
            early_verdict: true,
            stall_s: 10.0,
        }
    }
}

impl Limits {
    /// The hard limit actually enforced: the configured one, or boot +
    /// window + generous slack for a slow TCG host.
    pub fn wall_limit_s(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.wall_s
        } else {
            self.boot_s + self.duration_s * 2.0 + 30.0
        }
    }

    /// The wall-clock limits the VM runner enforces for these limits.
    pub fn stop_policy(&self) -> crate::vm::StopPolicy {
        crate::vm::StopPolicy {
            boot_s: self.boot_s,
            hang_s: self.hang_s,
            wall_s: self.wall_limit_s(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    pub workers: u32,
    pub worker_mem_mib: u32,
    /// Grow in steps of this much (0 = all at once), mimicking a worker whose
    /// heap grows with traffic.
    pub worker_step_mib: u32,
    pub worker_step_ms: u32,
    pub touch_ms: u32,
    pub respawn: Respawn,
    pub respawn_delay_ms: u32,
    pub canary_ms: u32,
    pub sample_ms: u32,
    /// Workers run as this uid (and gid), the master as root, as nginx's
    /// `user` directive does; absent: workers stay root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_uid: Option<u32>,
    /// Workers get SIGKILL when their master dies (`PR_SET_PDEATHSIG`)
    /// instead of living on as orphans.
    pub worker_die_with_master: bool,
    /// Run this program instead of the payload's master; `workers` is
    /// then how many workers it keeps.
    pub program: Option<ProgramSpec>,
    /// Slow clients for the program.
    pub load: Option<LoadSpec>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            workers: 4,
            worker_mem_mib: 60,
            worker_step_mib: 0,
            worker_step_ms: 0,
            touch_ms: 50,
            respawn: Respawn::Immediate,
            respawn_delay_ms: 0,
            canary_ms: 100,
            sample_ms: 500,
            worker_uid: None,
            worker_die_with_master: false,
            program: None,
            load: None,
        }
    }
}

/// One `mitigations:` entry of a scenario file, read through the protocol
/// crate's own field parser, so YAML and `scenario.conf` accept exactly the
/// same values.
fn mitigation_from_yaml(v: &serde_yaml::Value) -> Result<Mitigation, (String, String)> {
    use serde_yaml::Value;
    let scalar = |field: &str, v: &Value| -> Result<String, (String, String)> {
        match v {
            Value::String(s) if crate::text::first_unsafe(s, &[]).is_some() => Err((
                field.to_string(),
                format!(
                    "control characters are not allowed (`{}`)",
                    crate::text::printable(s)
                ),
            )),
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err((field.to_string(), "expected a single value".to_string())),
        }
    };
    let (kind, fields) = match v {
        Value::String(kind) => (kind.clone(), None),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, f) = m.iter().next().expect("one entry");
            let kind = scalar("mitigation", k)?;
            (kind, Some(f))
        }
        _ => {
            return Err((
                "mitigations".to_string(),
                "expected `- kind: {field: value, ...}` (one kind per entry) or `- kind`".into(),
            ))
        }
    };
    let mut pairs = Vec::new();
    match fields {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let k = scalar("field name", k)?;
                let v = scalar(&format!("{kind}.{k}"), v)?;
                pairs.push((k, v));
            }
        }
        Some(_) => return Err((kind, "expected a map of fields".to_string())),
    }
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Mitigation::from_pairs(&kind, &refs).map_err(|e| (e.field, e.msg))
}

/// serde_yaml places custom errors at the start of the document, so the
/// entry's index and field travel in the message, and [`Scenario::parse`]
/// finds the line itself.
struct MitigationAt {
    index: usize,
    field: String,
    msg: String,
}

const MITIGATION_ERR: &str = "\u{1}mitigation\u{1}";

impl MitigationAt {
    fn to_error_text(&self) -> String {
        format!(
            "{MITIGATION_ERR}{}\u{1}{}\u{1}{}\u{1}",
            self.index, self.field, self.msg
        )
    }

    fn from_error(text: &str) -> Option<MitigationAt> {
        let rest = &text[text.find(MITIGATION_ERR)? + MITIGATION_ERR.len()..];
        let mut parts = rest.split('\u{1}');
        Some(MitigationAt {
            index: parts.next()?.parse().ok()?,
            field: parts.next()?.to_string(),
            msg: parts.next()?.to_string(),
        })
    }

    fn into_error(self, path: &Path, text: &str) -> ScenarioError {
        ScenarioError::Invalid {
            path: path.to_path_buf(),
            line: line_of_list_item(text, "mitigations", self.index, &self.field),
            field: format!("mitigations.{}", self.field),
            msg: self.msg,
        }
    }
}

fn de_mitigations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Mitigation>, D::Error> {
    let raw: Vec<serde_yaml::Value> = Deserialize::deserialize(d)?;
    raw.iter()
        .enumerate()
        .map(|(index, v)| {
            mitigation_from_yaml(v).map_err(|(field, msg)| {
                serde::de::Error::custom(MitigationAt { index, field, msg }.to_error_text())
            })
        })
        .collect()
}

/// Why a scenario file was refused. Every message names the file; parse
/// errors name the line and the field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    ParseNoLocation { path: PathBuf, msg: String },
    #[error("{path}:{line}: field `{field}`: {msg}")]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        msg: String,
    },
    /// One of the [`bounds`]: `limit` names it; `line` is 0 when the limit
    /// is about the whole file.
    #[error("{path}{}: {limit} limit exceeded: {detail}", at_line(*line))]
    Limit {
        path: PathBuf,
        line: usize,
        limit: &'static str,
        detail: String,
    },
}

fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// A scenario with the text it was read from (for the line numbers of later
/// checks): the file is read once.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub scenario: Scenario,
    pub text: String,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Self::load_file(path).map(|f| f.scenario)
    }

    /// Read `path` once (at most [`bounds::MAX_FILE_BYTES`], whatever kind
    /// of file it is), parse and validate it, and keep its text.
    pub fn load_file(path: &Path) -> Result<ScenarioFile, ScenarioError> {
        let text = bounds::utf8(path, bounds::read_capped(path)?)?;
        let scenario = Self::parse(path, &text)?;
        Ok(ScenarioFile { scenario, text })
    }

    /// Parse and validate `text`; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let yaml_error = |e: serde_yaml::Error| {
            if let Some(invalid) = MitigationAt::from_error(&e.to_string()) {
                return invalid.into_error(path, text);
            }
            match e.location() {
                // serde quotes keys and values as written: escaped here, so
                // no message carries a control character.
                Some(loc) => ScenarioError::Parse {
                    path: path.to_path_buf(),
                    line: loc.line(),
                    column: loc.column(),
                    msg: crate::text::printable(&e.to_string()).into_owned(),
                },
                None => ScenarioError::ParseNoLocation {
                    path: path.to_path_buf(),
                    msg: crate::text::printable(&e.to_string()).into_owned(),
                },
            }
        };
        bounds::prescan(path, text)?;
        bounds::walk_budget(path, text)?.map_err(yaml_error)?;
        let scenario: Scenario = serde_yaml::from_str(text).map_err(yaml_error)?;
        scenario.validate(path, text)?;
        Ok(scenario)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ScenarioError> {
        let bad = |field: &str, msg: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            line: line_of_field(text, field),
            field: field.to_string(),
            msg,
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        // The name becomes a folder and file name (run output, --json):
        // no separators, no dot-files, nothing a shell would mangle.
        let name_ok = self.name.len() <= 64
            && !self.name.starts_with(['.', '-'])
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(bad(
                "name",
                format!(
                    "`{}` must be 1-64 of A-Z a-z 0-9 . _ - and not start with '.' or '-'",
                    crate::text::printable(&crate::text::clip(&self.name, 80))
                ),
            ));
        }
        let over = |field: &str, limit: &'static str, detail: String| ScenarioError::Limit {
            path: path.to_path_buf(),
            line: line_of_field(text, field),
            limit,
            detail: format!("`{field}`: {detail}"),
        };
        // Printed on the terminal and kept in reports: one line of prose,
        // or a block of them; nothing a terminal would act on.
        if self.description.len() > bounds::MAX_DESCRIPTION {
            return Err(over(
                "description",
                "description length",
                format!(
                    "{} bytes, at most {}",
                    self.description.len(),
                    bounds::MAX_DESCRIPTION
                ),
            ));
        }
        if let Some((at, c)) = crate::text::first_unsafe(&self.description, &['\n', '\t']) {
            return Err(bad(
                "description",
                format!(
                    "control character {} (at byte {at} of the text) is not allowed",
                    crate::text::printable(c.encode_utf8(&mut [0; 4]))
                ),
            ));
        }
        let vm = &self.vm;
        if let Some((_, c)) = crate::text::first_unsafe(&vm.kernel, &[]) {
            return Err(bad(
                "vm.kernel",
                format!(
                    "control character {} is not allowed",
                    crate::text::printable(c.encode_utf8(&mut [0; 4]))
                ),
            ));
        }
        if vm.cmdline.len() > bounds::MAX_CMDLINE_WORDS {
            return Err(over(
                "vm.cmdline",
                "list length",
                format!(
                    "{} words, at most {}",
                    vm.cmdline.len(),
                    bounds::MAX_CMDLINE_WORDS
                ),
            ));
        }
        for w in &vm.cmdline {
            if w.len() > bounds::MAX_CMDLINE_WORD {
                return Err(over(
                    "vm.cmdline",
                    "word length",
                    format!(
                        "a word of {} bytes, at most {}",
                        w.len(),
                        bounds::MAX_CMDLINE_WORD
                    ),
                ));
            }
            if w.is_empty()
                || w.chars()
                    .any(|c| c.is_whitespace() || crate::text::is_unsafe(c))
            {
                return Err(bad(
                    "vm.cmdline",
                    format!(
                        "`{}` must be one non-empty word: no spaces, no control characters",
                        crate::text::printable(w)
                    ),
                ));
            }
        }
        let cmdline = crate::vm::args::kernel_cmdline(&vm.cmdline);
        if cmdline.len() > bounds::MAX_KERNEL_CMDLINE {
            return Err(over(
                "vm.cmdline",
                "kernel command line",
                format!(
                    "with oomlab's own words the command line has {} bytes; the kernel \
                     keeps {} and would drop the rest",
                    cmdline.len(),
                    bounds::MAX_KERNEL_CMDLINE
                ),
            ));
        }
        if self.mitigations.len() > bounds::MAX_MITIGATIONS {
            return Err(over(
                "mitigations",
                "list length",
                format!(
                    "{} entries, at most {}",
                    self.mitigations.len(),
                    bounds::MAX_MITIGATIONS
                ),
            ));
        }
        if !(64..=65536).contains(&vm.memory_mib) {
            return Err(bad(
                "vm.memory_mib",
                format!("{} is out of range 64..=65536", vm.memory_mib),
            ));
        }
        if !(1..=64).contains(&vm.cpus) {
            return Err(bad(
                "vm.cpus",
                format!("{} is out of range 1..=64", vm.cpus),
            ));
        }
        if vm.kernel.trim().is_empty() {
            return Err(bad(
                "vm.kernel",
                "must name a catalogue kernel or a path".into(),
            ));
        }
        let l = &self.limits;
        for (field, v, min) in [
            ("limits.duration_s", l.duration_s, 1.0),
            ("limits.settle_s", l.settle_s, 0.1),
            ("limits.hang_s", l.hang_s, 1.0),
            ("limits.boot_s", l.boot_s, 1.0),
        ] {
            if !v.is_finite() || v < min || v > 3600.0 {
                return Err(bad(field, format!("{v} is out of range {min}..=3600")));
            }
        }
        if !l.wall_s.is_finite() || l.wall_s < 0.0 || l.wall_s > 7200.0 {
            return Err(bad(
                "limits.wall_s",
                format!("{} is out of range 0..=7200", l.wall_s),
            ));
        }
        if l.settle_s >= l.duration_s {
            return Err(bad(
                "limits.settle_s",
                format!(
                    "{} must be shorter than limits.duration_s ({}): a quiet stretch must fit in the window",
                    l.settle_s, l.duration_s
                ),
            ));
        }
        if l.wall_s > 0.0 && l.wall_s < l.duration_s {
            return Err(bad(
                "limits.wall_s",
                format!(
                    "{} is shorter than limits.duration_s ({})",
                    l.wall_s, l.duration_s
                ),
            ));
        }
        let w = &self.workload;
        if !(1..=256).contains(&w.workers) {
            return Err(bad(
                "workload.workers",
                format!("{} is out of range 1..=256", w.workers),
            ));
        }
        if w.worker_mem_mib == 0 {
            return Err(bad("workload.worker_mem_mib", "must be at least 1".into()));
        }
        if w.worker_step_mib > w.worker_mem_mib {
            return Err(bad(
                "workload.worker_step_mib",
                format!(
                    "{} is larger than worker_mem_mib ({})",
                    w.worker_step_mib, w.worker_mem_mib
                ),
            ));
        }
        if !(10..=10_000).contains(&w.canary_ms) {
            return Err(bad(
                "workload.canary_ms",
                format!("{} is out of range 10..=10000", w.canary_ms),
            ));
        }
        if !(50..=60_000).contains(&w.sample_ms) {
            return Err(bad(
                "workload.sample_ms",
                format!("{} is out of range 50..=60000", w.sample_ms),
            ));
        }
        if l.hang_s * 1000.0 < 3.0 * f64::from(w.canary_ms) {
            return Err(bad(
                "limits.hang_s",
                format!(
                    "{} s is shorter than three canary ticks ({} ms each): a healthy guest would look hung",
                    l.hang_s, w.canary_ms
                ),
            ));
        }
        if let Some(uid) = w.worker_uid {
            if uid == 0 || uid == u32::MAX {
                return Err(bad(
                    "workload.worker_uid",
                    format!(
                        "{uid} is not an unprivileged uid (1..=4294967294; leave it out for root)"
                    ),
                ));
            }
        }
        if w.respawn != Respawn::Delay && w.respawn_delay_ms != 0 {
            return Err(bad(
                "workload.respawn_delay_ms",
                "is only meaningful with `respawn: delay`".into(),
            ));
        }
        self.validate_guest(&bad)?;
        let mut kinds = std::collections::HashSet::new();
        for m in &self.mitigations {
            let unique = !matches!(m, Mitigation::Sysctl { .. });
            if unique && !kinds.insert(m.kind()) {
                return Err(bad(
                    &format!("mitigations.{}", m.kind()),
                    "given twice".into(),
                ));
            }
            m.check(vm.memory_mib)
                .map_err(|e| bad(&format!("mitigations.{}", e.field), e.msg))?;
        }
        Ok(())
    }

    /// Checks of the machine options: SSH, disk, swap, program, load.
    fn validate_guest(
        &self,
        bad: &dyn Fn(&str, String) -> ScenarioError,
    ) -> Result<(), ScenarioError> {
        let ssh = &self.ssh;
        if !(100..=60_000).contains(&ssh.interval_ms) {
            return Err(bad(
                "ssh.interval_ms",
                format!("{} is out of range 100..=60000", ssh.interval_ms),
            ));
        }
        if !(500..=120_000).contains(&ssh.timeout_ms) {
            return Err(bad(
                "ssh.timeout_ms",
                format!("{} is out of range 500..=120000", ssh.timeout_ms),
            ));
        }
        let sw = &self.vm.swap;
        if sw.kind != SwapKind::None && !(4..=4096).contains(&sw.mib) {
            return Err(bad(
                "vm.swap.mib",
                format!("{} is out of range 4..=4096", sw.mib),
            ));
        }
        let l = &self.limits;
        if !l.stall_s.is_finite() || !(1.0..=3600.0).contains(&l.stall_s) {
            return Err(bad(
                "limits.stall_s",
                format!("{} is out of range 1..=3600", l.stall_s),
            ));
        }
        let d = &self.vm.disk;
        if (d.iops > 0 || d.bps_kib > 0) && self.vm.root != RootKind::Disk {
            return Err(bad(
                "vm.disk",
                "throttles the root disk: needs `vm.root: disk`".into(),
            ));
        }
        if let Some(p) = &self.workload.program {
            let path_ok = |p: &str| {
                p.starts_with('/')
                    && p.len() <= 256
                    && !p.split('/').any(|c| c == "..")
                    && p.chars().all(|c| !c.is_control())
            };
            if !path_ok(&p.path) {
                return Err(bad(
                    "workload.program.path",
                    format!("`{}` must be an absolute path without `..`", p.path),
                ));
            }
            let pkg_ok = |n: &str| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
                    && n.len() <= 100
            };
            if !pkg_ok(&p.package) || p.lib_packages.iter().any(|n| n.is_empty() || !pkg_ok(n)) {
                return Err(bad(
                    "workload.program.package",
                    "Debian package names are lowercase letters, digits, `+`, `-` and `.`".into(),
                ));
            }
            for f in &p.files {
                if !path_ok(&f.path) || f.mode > 0o7777 {
                    return Err(bad(
                        "workload.program.files",
                        format!(
                            "`{}`: an absolute path without `..`, mode <= 0o7777",
                            f.path
                        ),
                    ));
                }
            }
            if let Some(d) = p.dirs.iter().find(|d| !path_ok(d)) {
                return Err(bad(
                    "workload.program.dirs",
                    format!("`{d}` must be an absolute path without `..`"),
                ));
            }
            if p.args.iter().any(|a| a.contains('\n') || a.trim() != a) {
                return Err(bad(
                    "workload.program.args",
                    "arguments cannot hold newlines or leading/trailing spaces".into(),
                ));
            }
        }
        if let Some(ld) = &self.workload.load {
            if ld.port == 0 || ld.connections == 0 || ld.connections > 256 || ld.body_kib == 0 {
                return Err(bad(
                    "workload.load",
                    "needs a port, 1..=256 connections and a body_kib".into(),
                ));
            }
        }
        Ok(())
    }

    /// What the guest is told (protocol/PROTOCOL.md): the payload's
    /// `scenario.conf`.
    pub fn guest_conf(&self) -> GuestConf {
        let w = &self.workload;
        let mut c = GuestConf {
            name: self.name.clone(),
            duration_ms: (self.limits.duration_s * 1000.0).round() as u64,
            workers: w.workers,
            worker_mem_kib: u64::from(w.worker_mem_mib) * 1024,
            worker_step_kib: u64::from(w.worker_step_mib) * 1024,
            worker_step_ms: u64::from(w.worker_step_ms),
            touch_ms: u64::from(w.touch_ms),
            respawn: w.respawn,
            respawn_delay_ms: u64::from(w.respawn_delay_ms),
            canary_ms: u64::from(w.canary_ms),
            sample_ms: u64::from(w.sample_ms),
            worker_uid: w.worker_uid,
            worker_die_with_master: w.worker_die_with_master.then_some(true),
            ..GuestConf::default()
        };
        c.mitigation = self.mitigations.clone();
        c.root = self.vm.root;
        c.ssh = self.ssh.enabled;
        c.net = self.ssh.enabled;
        if let Some(p) = &w.program {
            c.program = Some(p.path.clone());
            c.program_arg = p.args.clone();
        }
        if let Some(l) = &w.load {
            c.load_port = u32::from(l.port);
            c.load_connections = l.connections;
            c.load_body_kib = u64::from(l.body_kib);
        }
        // Modules and swap devices depend on the kernel and the image:
        // the image stage fills them in.
        c
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Scenario {
    /// The verdict expected on a kernel (catalogue name or file name, and
    /// its `uname -r` when known): `expect_kernels` first, else `expect`.
    pub fn expected_for(&self, kernel: &str, release: Option<&str>) -> Option<Verdict> {
        let names = [Some(kernel), release];
        let exact = self
            .expect_kernels
            .iter()
            .find(|(k, _)| names.contains(&Some(k.as_str())));
        if let Some((_, v)) = exact {
            return Some(*v);
        }
        self.expect_kernels
            .iter()
            .filter(|(k, _)| k.contains('*') && names.iter().flatten().any(|n| glob_match(k, n)))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, v)| *v)
            .or(self.expect)
    }

    /// `vm.kernel` must be a catalogue name (`known`) or a file that is an
    /// x86 Linux boot image ([`kernel_problem`]): checked before anything
    /// boots, so a typo or a wrong file is bad input (exit 2), not a run
    /// that could not happen. `text` is the file's YAML, for the line.
    pub fn check_kernel(
        &self,
        path: &Path,
        text: &str,
        known: &[&str],
    ) -> Result<(), ScenarioError> {
        match kernel_problem(&self.vm.kernel, known) {
            None => Ok(()),
            Some(msg) => Err(ScenarioError::Invalid {
                path: path.to_path_buf(),
                line: line_of_field(text, "vm.kernel"),
                field: "vm.kernel".into(),
                msg,
            }),
        }
    }
}

/// What is wrong with a kernel spec (`vm.kernel`, `run --kernel`): not a
/// catalogue name (`known`) and not an existing file, or a file that is not
/// an x86 Linux boot image (see [`crate::image::kernel::check_boot_image`]).
/// `None` when it can be booted as far as a header can tell.
pub fn kernel_problem(spec: &str, known: &[&str]) -> Option<String> {
    if known.contains(&spec) {
        return None;
    }
    let file = Path::new(spec);
    if std::fs::metadata(file).is_err() {
        return Some(format!(
            "`{spec}` is neither a catalogue kernel ({}) nor an existing file",
            known.join(", ")
        ));
    }
    crate::image::kernel::check_boot_image(file)
        .err()
        .map(|why| format!("`{spec}` is not an x86 Linux boot image: {why}"))
}

/// Line of the `index`-th item of the top-level list `key`, or of its
/// `field` (last dotted part) when that is written in the item. 0 when
/// not found.
pub fn line_of_list_item(text: &str, key: &str, index: usize, field: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    }) else {
        return 0;
    };
    let items: Vec<usize> = (start + 1..lines.len())
        .take_while(|&i| {
            let l = lines[i];
            l.trim().is_empty() || l.starts_with([' ', '-', '#'])
        })
        .filter(|&i| lines[i].trim_start().starts_with('-'))
        .collect();
    let Some(&at) = items.get(index) else {
        return start + 1;
    };
    let end = items.get(index + 1).copied().unwrap_or(lines.len());
    let last = field.rsplit('.').next().unwrap_or(field);
    (at..end)
        .find(|&i| {
            lines[i]
                .find(last)
                .is_some_and(|p| lines[i][p + last.len()..].trim_start().starts_with(':'))
        })
        .unwrap_or(at)
        + 1
}

/// Best-effort line of a (possibly dotted) field in the YAML text, for
/// semantic errors that serde cannot locate: the line of the last path
/// component found after its parent's line. 0 when not written at all
/// (a default was used).
pub fn line_of_field(text: &str, dotted: &str) -> usize {
    let mut from = 0usize;
    let mut found = 0usize;
    for part in dotted.split('.') {
        let hit = text.lines().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(part)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        });
        match hit {
            Some((i, _)) => {
                found = i + 1;
                from = i;
            }
            None => return found,
        }
    }
    found
}

#[cfg(test)]
mod tests;
