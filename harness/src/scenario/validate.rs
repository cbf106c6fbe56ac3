//! Checks a parsed scenario must pass before anything boots; every error
//! names the field and its line.

use std::path::Path;

use super::*;

impl Scenario {
    pub(super) fn validate(&self, path: &Path, text: &str) -> Result<(), ScenarioError> {
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
