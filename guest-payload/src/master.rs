//! The master: keeps `workers` workers alive like nginx's master does, which
//! is what turns one OOM kill into a kill/respawn loop. The mitigations that
//! live in a supervisor (its own `oom_score_adj`, respawn back-off, a
//! respawn limit) are applied here.
//!
//! It allocates almost nothing itself (small RSS, as the seed's master had)
//! so that the OOM killer's choice is between workers.

use std::collections::{HashMap, VecDeque};

use oomlab_protocol::{AdjWhen, Event, GuestConf as Scenario, Respawn, Role};

use crate::mitigate::{self, Plan};
use crate::sys::{self, Fork};
use crate::telemetry;
use crate::worker;

struct Master<'a> {
    sc: &'a Scenario,
    plan: &'a Plan,
    pid: i32,
    forked: u64,
    /// Birth time of each live worker (back-off resets on a long life).
    born: HashMap<i32, libc::timespec>,
    /// Current back-off wait, ms.
    backoff_ms: u64,
    /// Times of recent respawns (respawn limit).
    respawns: VecDeque<libc::timespec>,
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
                    worker::run(self.sc, self.plan, self.forked == 0, self.pid);
                }
                Ok(Fork::Parent(pid)) => {
                    self.forked += 1;
                    self.born.insert(pid, sys::monotonic());
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

    /// A respawn is due: unless the respawn limit says the service has
    /// failed (then the master stops it whole, as systemd stops a unit
    /// that hit `StartLimitBurst`, and exits).
    fn respawn(&mut self) {
        if let Some((burst, interval_ms)) = self.plan.limit {
            let now = sys::monotonic();
            while self
                .respawns
                .front()
                .is_some_and(|t| sys::diff_ms(&now, t) > interval_ms as f64)
            {
                self.respawns.pop_front();
            }
            if self.respawns.len() >= burst as usize {
                telemetry::emit(Event::Log {
                    src: "master".into(),
                    line: format!(
                        "respawn limit: {burst} respawns within {interval_ms} ms, giving up (stopping the service)"
                    ),
                });
                // SAFETY: the whole process group (master and workers).
                unsafe { libc::kill(0, libc::SIGKILL) };
                // SAFETY: not reached; if it is, leave quietly.
                unsafe { libc::_exit(1) };
            }
            self.respawns.push_back(now);
        }
        self.spawn_worker();
    }

    fn reaped(&mut self, pid: i32, how: sys::ExitKind, pending: &mut VecDeque<libc::timespec>) {
        telemetry::exit(pid, Role::Worker, how);
        let lived_ms = self
            .born
            .remove(&pid)
            .map(|b| sys::diff_ms(&sys::monotonic(), &b));
        let delay = match (self.sc.respawn, self.plan.backoff) {
            (Respawn::None, _) => return,
            (_, Some(b)) => {
                if lived_ms.is_some_and(|l| l >= b.reset_after_ms as f64) || self.backoff_ms == 0 {
                    self.backoff_ms = b.initial_ms;
                }
                let d = self.backoff_ms;
                self.backoff_ms = (self.backoff_ms * 2).min(b.max_ms);
                d
            }
            (Respawn::Delay, None) => self.sc.respawn_delay_ms,
            (Respawn::Immediate, None) => 0,
        };
        if delay == 0 {
            self.respawn();
        } else {
            pending.push_back(sys::add_ms(&sys::monotonic(), delay));
        }
    }

    fn set_own_oom_score_adj(&self, adj: i32) {
        let res = mitigate::set_own_oom_score_adj(adj);
        let detail = match &res {
            Ok(how) => format!("master {how}"),
            Err(_) => format!("master={adj}"),
        };
        mitigate::report("oom_score_adj", &detail, &res.map(|_| ()));
    }
}

/// `join`: the cgroup's procs file, joined before the first fork so every
/// worker is born inside it.
pub fn run(sc: &Scenario, plan: &Plan, join: Option<&str>) -> ! {
    sys::set_comm(c"nginx");
    // Own process group: a self-test, the PSI killer and the respawn limit
    // stop master and workers together through it.
    // SAFETY: plain syscall on ourselves.
    unsafe { libc::setpgid(0, 0) };
    sys::block_sigchld();
    let mut m = Master {
        sc,
        plan,
        pid: sys::getpid(),
        forked: 0,
        born: HashMap::new(),
        backoff_ms: 0,
        respawns: VecDeque::new(),
    };
    if let Some(procs) = join {
        mitigate::report(
            "cgroup",
            &format!("master {} joined via {procs}", m.pid),
            &sys::write_file(procs, &m.pid.to_string()),
        );
    }
    let adj = plan.master_adj;
    if let Some((v, AdjWhen::BeforeFork)) = adj {
        m.set_own_oom_score_adj(v);
    }
    for i in 0..sc.workers {
        m.spawn_worker();
        // After the first fork, not before: workers inherit oom_score_adj,
        // and a master marked first hands its mark to every worker.
        if i == 0 {
            if let Some((v, AdjWhen::AfterFork)) = adj {
                m.set_own_oom_score_adj(v);
            }
        }
    }
    if sc.workers == 0 {
        if let Some((v, AdjWhen::AfterFork)) = adj {
            m.set_own_oom_score_adj(v);
        }
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
            m.respawn();
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
