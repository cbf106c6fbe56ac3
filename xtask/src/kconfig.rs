//! `cargo xtask kconfig`: the config fragment a kernel developer merges
//! into their own tree so that a self-built kernel boots in oomlab the
//! first time (`scripts/kconfig/merge_config.sh .config oomlab.config`,
//! then `make olddefconfig`).
//!
//! Every option is one that Debian's kernels in the catalogue have (the
//! test below checks each against their `config` files), so the list
//! cannot drift into misspelt or vanished symbols unnoticed.

/// One option of the fragment.
pub struct Opt {
    pub name: &'static str,
    /// What the fragment sets (`y`, or a number).
    pub value: &'static str,
    /// A distribution kernel may have it as a module (`m`): oomlab boots
    /// without loading modules, so the fragment asks for `y`, but Debian's
    /// `m` is not a mistake in the list.
    pub module_ok: bool,
    pub why: &'static str,
}

const fn y(name: &'static str, why: &'static str) -> Opt {
    Opt {
        name,
        value: "y",
        module_ok: false,
        why,
    }
}

const fn ym(name: &'static str, why: &'static str) -> Opt {
    Opt {
        name,
        value: "y",
        module_ok: true,
        why,
    }
}

/// The fragment, grouped by what needs it.
pub const OPTIONS: &[Opt] = &[
    y("64BIT", "the payload is an x86_64 static binary"),
    y("BINFMT_ELF", "to run /init"),
    y("MULTIUSER", "uids: workers may run as an unprivileged user"),
    y("PRINTK", "the OOM killer's messages are the evidence"),
    y("PRINTK_TIME", "printk stamps share the payload's clock"),
    y("TTY", "consoles"),
    y(
        "SERIAL_8250",
        "ttyS0 (console) and ttyS1 (telemetry), no module needed",
    ),
    y("SERIAL_8250_CONSOLE", "console=ttyS0"),
    y(
        "BLK_DEV_INITRD",
        "the payload and scenario come as an initramfs",
    ),
    y("RD_GZIP", "gzip-compressed initramfs"),
    y("DEVTMPFS", "/dev/ttyS1 without mknod"),
    y("PROC_FS", "/proc/meminfo, /proc/vmstat, oom_score_adj"),
    y("SYSFS", "/sys (cgroup v2 is mounted under it)"),
    y("TMPFS", "cgroup v1 fallback mount point"),
    y("FUTEX", "the static libc's locks"),
    y("POSIX_TIMERS", "clock_nanosleep, clock_gettime"),
    y("CGROUPS", "the cgroup mitigations"),
    y("MEMCG", "memory.max, memory.high, memory.oom.group"),
    y(
        "CGROUP_PIDS",
        "a cgroup controller the mitigations may enable",
    ),
    y("PSI", "the PSI killer and memory.pressure"),
    y("SWAP", "the swap columns in meminfo (SWAP=n hides them)"),
    y("UNIX", "unix sockets (earlyoom and other real programs)"),
    y("INET", "TCP/IP for workloads with a network"),
    y("PCI", "virtio devices sit on PCI"),
    y(
        "ACPI",
        "power-off: QEMU's `pc` machine exits on an ACPI power-off",
    ),
    y("MAGIC_SYSRQ", "sysrq-f, a manual OOM kill"),
    ym("VIRTIO_PCI", "virtio devices"),
    ym(
        "VIRTIO_NET",
        "a network device, for workloads that need one",
    ),
    ym("VIRTIO_BLK", "a disk, for page-cache scenarios"),
    ym("EXT4_FS", "a filesystem on that disk"),
];

/// The fragment's text.
pub fn fragment() -> String {
    let mut s = String::from(
        "# oomlab: what a kernel needs to boot in oomlab (QEMU, direct kernel boot,\n\
         # initramfs as root, 8250 UARTs ttyS0/ttyS1).\n\
         # Merge: scripts/kconfig/merge_config.sh .config oomlab.config && make olddefconfig\n",
    );
    for o in OPTIONS {
        s.push_str(&format!("# {}\nCONFIG_{}={}\n", o.why, o.name, o.value));
    }
    s
}

/// An option's state in a `.config` text: `Some("y")`, `Some("m")`,
/// `Some("n")` for `# CONFIG_X is not set`, None when absent.
pub fn state<'a>(config: &'a str, name: &str) -> Option<&'a str> {
    let set = format!("CONFIG_{name}=");
    let unset = format!("# CONFIG_{name} is not set");
    config.lines().find_map(|l| {
        if let Some(v) = l.strip_prefix(&set) {
            Some(v.trim())
        } else if l.trim_end() == unset {
            Some("n")
        } else {
            None
        }
    })
}

/// What is wrong with the fragment against one kernel's config: one line
/// per option that is absent, not set, or a module where `y` is needed.
pub fn problems(config: &str) -> Vec<String> {
    OPTIONS
        .iter()
        .filter_map(|o| match state(config, o.name) {
            Some(v) if v == o.value => None,
            Some("m") if o.module_ok => None,
            Some("n") => Some(format!("CONFIG_{} is not set", o.name)),
            Some(v) => Some(format!(
                "CONFIG_{}={v}, the fragment says {}",
                o.name, o.value
            )),
            None => Some(format!("CONFIG_{} does not exist", o.name)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oomlab::image::kernel;

    #[test]
    fn fragment_is_mergeable_text() {
        let f = fragment();
        let set: Vec<&str> = f.lines().filter(|l| l.starts_with("CONFIG_")).collect();
        assert_eq!(set.len(), OPTIONS.len());
        for l in f.lines() {
            assert!(l.starts_with('#') || l.starts_with("CONFIG_"), "{l}");
        }
        let mut names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPTIONS.len(), "an option is listed twice");
    }

    #[test]
    fn config_states() {
        let c = "CONFIG_A=y\nCONFIG_AB=m\n# CONFIG_B is not set\nCONFIG_N=32\n";
        assert_eq!(state(c, "A"), Some("y"));
        assert_eq!(state(c, "AB"), Some("m"));
        assert_eq!(state(c, "B"), Some("n"));
        assert_eq!(state(c, "N"), Some("32"));
        assert_eq!(state(c, "C"), None);
        // A misspelt or unset option is caught.
        let p = problems("CONFIG_64BIT=y\n# CONFIG_PSI is not set\nCONFIG_VIRTIO_PCI=m\n");
        assert!(p.contains(&"CONFIG_PSI is not set".to_string()), "{p:?}");
        assert!(
            p.contains(&"CONFIG_MEMCG does not exist".to_string()),
            "{p:?}"
        );
        assert!(!p.iter().any(|l| l.contains("VIRTIO_PCI")), "{p:?}");
        assert!(!p.iter().any(|l| l.contains("64BIT")), "{p:?}");
    }

    /// Every option of the fragment, checked against the `config` of every
    /// catalogue kernel that is cached (`oomlab kernels --fetch NAME`
    /// caches it with the kernel). No kernel is built. With no config
    /// cached at all the test says so loudly and checks nothing.
    #[test]
    fn fragment_options_exist_in_catalogue_kernels() {
        let cat = kernel::catalogue().unwrap();
        let mut checked = Vec::new();
        let mut missing = Vec::new();
        let mut failures = Vec::new();
        for k in &cat.kernels {
            let config = kernel::cache_state(k).ok().and_then(|(_, c)| c);
            let Some(path) = config else {
                missing.push(k.name.clone());
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            for p in problems(&text) {
                failures.push(format!("{} ({}): {p}", k.name, path.display()));
            }
            checked.push(k.name.clone());
        }
        if checked.is_empty() {
            eprintln!(
                "SKIPPED fragment_options_exist_in_catalogue_kernels: no catalogue kernel's \
                 config is cached; run `oomlab kernels --fetch NAME` (or --all) first. \
                 NOTHING WAS CHECKED."
            );
            return;
        }
        if !missing.is_empty() {
            eprintln!(
                "kconfig: no cached config for {} (not checked)",
                missing.join(", ")
            );
        }
        eprintln!("kconfig: fragment checked against {}", checked.join(", "));
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
