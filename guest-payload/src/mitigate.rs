//! The mitigations under test, applied in the guest. Each step that could
//! fail is reported as a `setup` event with `mitigation: true`; a failed one
//! makes the harness call the run `n/a` instead of judging a mitigation that
//! was never in place.
//!
//! What runs where: sysctls, the cgroup and the userspace killers are set up
//! by PID 1; `oom_score_adj`, back-off and respawn limits are the master's
//! (master.rs) and the workers' (worker.rs) business.

use std::io;

use oomlab_protocol::{AdjWhen, Event, GuestConf, Mitigation, OomScoreAdj};

use crate::sys;
use crate::telemetry;

/// A mitigation step's outcome, as a `setup` event.
pub fn report(what: &str, detail: &str, res: &io::Result<()>) -> bool {
    let (ok, detail) = match res {
        Ok(()) => (true, detail.to_string()),
        Err(e) => (false, format!("{detail}: {e}")),
    };
    telemetry::emit(Event::Setup {
        what: what.to_string(),
        ok,
        detail,
        mitigation: true,
    });
    ok
}

/// What the scenario asks of the guest, pulled out of its mitigation list.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub master_adj: Option<(i32, AdjWhen)>,
    pub worker_adj: Option<i32>,
    pub cgroup: Option<CgroupSpec>,
    pub backoff: Option<Backoff>,
    pub limit: Option<(u32, u64)>,
    pub earlyoom: Option<EarlyoomSpec>,
    pub psi: Option<(u32, u32)>,
    pub sysctls: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub struct CgroupSpec {
    pub max_mib: Option<u32>,
    pub high_mib: Option<u32>,
    pub oom_group: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub reset_after_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct EarlyoomSpec {
    pub mem_min_percent: u32,
    pub swap_min_percent: u32,
    pub process_group: bool,
}

impl Plan {
    pub fn of(conf: &GuestConf) -> Plan {
        let mut p = Plan::default();
        for m in &conf.mitigation {
            match m {
                Mitigation::OomScoreAdj {
                    master,
                    workers,
                    when,
                } => {
                    p.master_adj = master.map(|OomScoreAdj(v)| (v, *when));
                    p.worker_adj = workers.map(|OomScoreAdj(v)| v);
                }
                Mitigation::Sysctl { key, value } => {
                    p.sysctls.push((key.0.clone(), key.path(), value.clone()))
                }
                Mitigation::Cgroup {
                    memory_max_mib,
                    memory_high_mib,
                    oom_group,
                } => {
                    p.cgroup = Some(CgroupSpec {
                        max_mib: *memory_max_mib,
                        high_mib: *memory_high_mib,
                        oom_group: *oom_group,
                    })
                }
                Mitigation::RespawnBackoff {
                    initial_ms,
                    max_ms,
                    reset_after_ms,
                } => {
                    p.backoff = Some(Backoff {
                        initial_ms: u64::from(*initial_ms),
                        max_ms: u64::from(*max_ms),
                        reset_after_ms: u64::from(*reset_after_ms),
                    })
                }
                Mitigation::RespawnLimit { burst, interval_ms } => {
                    p.limit = Some((*burst, u64::from(*interval_ms)))
                }
                Mitigation::Earlyoom {
                    mem_min_percent,
                    swap_min_percent,
                    process_group,
                } => {
                    p.earlyoom = Some(EarlyoomSpec {
                        mem_min_percent: *mem_min_percent,
                        swap_min_percent: *swap_min_percent,
                        process_group: *process_group,
                    })
                }
                Mitigation::PsiKiller {
                    stall_ms,
                    window_ms,
                } => p.psi = Some((*stall_ms, *window_ms)),
            }
        }
        p
    }
}

/// Sysctls, before the master starts. Every key must exist: a kernel
/// without it cannot apply the mitigation.
pub fn apply_sysctls(plan: &Plan) {
    for (key, path, value) in &plan.sysctls {
        report(
            &format!("sysctl:{key}"),
            &format!("{path}={value}"),
            &sys::write_file(path, value),
        );
    }
}

/// `oom_score_adj` of the calling process, falling back to the old
/// `oom_adj` (-17..=15) on kernels that predate `oom_score_adj`. Returns
/// what was written.
pub fn set_own_oom_score_adj(v: i32) -> io::Result<String> {
    match sys::write_file("/proc/self/oom_score_adj", &v.to_string()) {
        Ok(()) => Ok(format!("oom_score_adj={v}")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The kernel's own mapping (fs/proc/base.c): -1000 -> -17
            // (OOM_DISABLE), 1000 -> 15 (OOM_ADJUST_MAX).
            let adj = if v == -1000 {
                -17
            } else {
                (v * 17 / 1000).clamp(-16, 15)
            };
            sys::write_file("/proc/self/oom_adj", &adj.to_string())
                .map(|()| format!("oom_adj={adj} (this kernel has no oom_score_adj)"))
        }
        Err(e) => Err(e),
    }
}

/// Where the cgroup lives, and the file a process writes its pid into to
/// join it.
pub struct CgroupJoin {
    pub procs_file: String,
}

const CG_MOUNT: &str = "/oomlab/cg";

/// The group for master and workers: cgroup v2 where the kernel has it,
/// else cgroup v1's memory controller (limit only: v1 has neither
/// `memory.high` nor a group kill, so asking for those fails the step).
/// Each step is one `setup` event; the first failure stops the chain.
pub fn setup_cgroup(spec: &CgroupSpec) -> Option<CgroupJoin> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let has = |fs: &str| {
        filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs))
    };
    let step = |detail: &str, res: io::Result<()>| report("cgroup", detail, &res);
    let dir = format!("{CG_MOUNT}/oomlab");
    let mib = |m: u32| u64::from(m) * 1024 * 1024;
    if has("cgroup2") {
        let ok = step(
            &format!("mount cgroup2 on {CG_MOUNT}"),
            sys::mount("cgroup2", CG_MOUNT, "cgroup2"),
        ) && step(
            "+memory in cgroup.subtree_control",
            sys::write_file(&format!("{CG_MOUNT}/cgroup.subtree_control"), "+memory"),
        ) && step(&format!("mkdir {dir}"), mkdir(&dir))
            && spec.max_mib.is_none_or(|m| {
                step(
                    &format!("memory.max={}", mib(m)),
                    sys::write_file(&format!("{dir}/memory.max"), &mib(m).to_string()),
                )
            })
            && spec.high_mib.is_none_or(|m| {
                step(
                    &format!("memory.high={}", mib(m)),
                    sys::write_file(&format!("{dir}/memory.high"), &mib(m).to_string()),
                )
            })
            && (!spec.oom_group
                || step(
                    "memory.oom.group=1",
                    sys::write_file(&format!("{dir}/memory.oom.group"), "1"),
                ));
        return ok.then(|| CgroupJoin {
            procs_file: format!("{dir}/cgroup.procs"),
        });
    }
    if !has("cgroup") {
        step(
            "memory cgroup",
            Err(io::Error::other(
                "the kernel has neither cgroup v2 nor cgroup v1 (/proc/filesystems)",
            )),
        );
        return None;
    }
    let unsupported = |what: &str| {
        step(
            what,
            Err(io::Error::other(
                "cgroup v1 only on this kernel (no cgroup2 in /proc/filesystems)",
            )),
        )
    };
    if spec.oom_group {
        unsupported("memory.oom.group=1");
        return None;
    }
    if spec.high_mib.is_some() {
        unsupported("memory.high");
        return None;
    }
    let ok = step(
        &format!("mount cgroup v1 memory on {CG_MOUNT}"),
        sys::mount_opts("cgroup", CG_MOUNT, "cgroup", "memory"),
    ) && step(&format!("mkdir {dir}"), mkdir(&dir))
        && spec.max_mib.is_none_or(|m| {
            step(
                &format!("memory.limit_in_bytes={} (cgroup v1)", mib(m)),
                sys::write_file(&format!("{dir}/memory.limit_in_bytes"), &mib(m).to_string()),
            )
        });
    ok.then(|| CgroupJoin {
        procs_file: format!("{dir}/tasks"),
    })
}

fn mkdir(dir: &str) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}
