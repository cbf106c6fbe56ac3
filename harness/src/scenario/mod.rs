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
mod validate;
mod yaml;

pub use validate::kernel_problem;
use yaml::{de_mitigations, MitigationAt};
pub use yaml::{line_of_field, line_of_list_item};

use std::path::{Path, PathBuf};

use oomlab_protocol::GuestConf;
pub use oomlab_protocol::Mitigation;
use serde::{Deserialize, Serialize};

pub use crate::image::kernel::DEFAULT_KERNEL;
pub use crate::verdict::Verdict;
pub use oomlab_protocol::{Respawn, RootKind};

/// The folders of shipped scenarios, relative to the repository root:
/// the mitigation catalogue (every file runs on the default kernel and is
/// the demo's matrix), the machine scenarios (SSH, disk root, real
/// daemons: slower, their own tests), and fixes meant for old kernels
/// only (each file says what it does on today's).
pub const SHIPPED_DIRS: [&str; 3] = ["scenarios", "scenarios/machine", "scenarios/old-kernels"];

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

#[cfg(test)]
mod tests;
