//! The master: keeps `workers` workers alive like nginx's master does, which
//! is what turns one OOM kill into a kill/respawn loop.
//!
//! It allocates almost nothing itself (small RSS, as the seed's master had)
//! so that the OOM killer's choice is between workers.

use std::collections::VecDeque;

use oomlab_protocol::conf::{GuestConf as Scenario, Respawn};
use oomlab_protocol::Role;

use crate::sys::{self, Fork};
use crate::telemetry;
use crate::worker;

pub const CGROUP_PROCS: &str = "/sys/fs/cgroup/oomlab/cgroup.procs";

struct Master<'a> {
    sc: &'a Scenario,
    pid: i32,
    forked: u64,
}

impl Master<'_> {
    /// Forks one worker, retrying every 10 ms while fork fails (ENOMEM
    /// under overcommit=2).
    fn spawn_worker(&mut self) {
        let mut failures: u64 = 0;
        loop {
            match sys::fork() {
                Ok(Fork::Child) => {
                    sys::unblock_all_signals();
                    worker::run(self.sc, self.forked == 0);
                }
                Ok(Fork::Parent(pid)) => {
                    self.forked += 1;
                    telemetry::spawn(pid, self.pid, Role::Worker);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    // One line per failure would be 100 lines/s; the 1st,
                    // 101st, 201st... tell the same story.
                    if failures % 100 == 1 {
                        telemetry::error(&format!(
                            "master: fork failed: {e} ({failures} in a row)"
                        ));
                    }
                    sys::sleep_ms(10);
                }
            }
        }
    }

    fn reaped(&mut self, pid: i32, how: sys::ExitKind, pending: &mut VecDeque<libc::timespec>) {
        telemetry::exit(pid, Role::Worker, how);
        match self.sc.respawn {
            Respawn::Immediate => self.spawn_worker(),
            Respawn::Delay => {
                pending.push_back(sys::add_ms(&sys::monotonic(), self.sc.respawn_delay_ms));
            }
            Respawn::None => {}
        }
    }

    fn set_own_oom_score_adj(&self) {
        if let Some(adj) = self.sc.master_oom_score_adj.map(|a| a.0) {
            match sys::set_oom_score_adj(adj) {
                Ok(()) => telemetry::setup("oom_score_adj", true, &format!("master={adj}")),
                Err(e) => telemetry::setup("oom_score_adj", false, &format!("master={adj}: {e}")),
            }
        }
    }
}

/// `join_cgroup`: move into the scenario's cgroup before the first fork, so
/// every worker is born inside it.
pub fn run(sc: &Scenario, join_cgroup: bool) -> ! {
    sys::set_comm(c"nginx");
    // Own process group: lets a self-test kill master and workers together.
    // SAFETY: plain syscall on ourselves.
    unsafe { libc::setpgid(0, 0) };
    sys::block_sigchld();
    let mut m = Master {
        sc,
        pid: sys::getpid(),
        forked: 0,
    };
    if join_cgroup {
        match sys::write_file(CGROUP_PROCS, &m.pid.to_string()) {
            Ok(()) => telemetry::setup("cgroup", true, &format!("master {} joined oomlab", m.pid)),
            Err(e) => telemetry::setup(
                "cgroup",
                false,
                &format!("master {} -> {CGROUP_PROCS}: {e}", m.pid),
            ),
        }
    }
    for i in 0..sc.workers {
        m.spawn_worker();
        // After the first fork, not before: workers inherit oom_score_adj,
        // and a master marked first must not hand its mark to them.
        if i == 0 {
            m.set_own_oom_score_adj();
        }
    }
    if sc.workers == 0 {
        m.set_own_oom_score_adj();
    }

    // Due times of delayed respawns, oldest first.
    let mut pending: VecDeque<libc::timespec> = VecDeque::with_capacity(sc.workers as usize);
    loop {
        let now = sys::monotonic();
        while pending
            .front()
            .is_some_and(|d| sys::diff_ms(d, &now) <= 0.0)
        {
            pending.pop_front();
            m.spawn_worker();
        }
        match pending.front() {
            None => match sys::reap(false) {
                Some((pid, how)) => m.reaped(pid, how, &mut pending),
                // respawn=none and every worker gone: idle like a master
                // with no workers would.
                None => sys::sleep_ms(3_600_000),
            },
            Some(due) => sys::wait_sigchld(sys::diff_ms(due, &sys::monotonic())),
        }
        // One pending SIGCHLD can stand for several dead children.
        while let Some((pid, how)) = sys::reap(true) {
            m.reaped(pid, how, &mut pending);
        }
    }
}
