//! PID 1 duties: mount, open the telemetry port, read the scenario, start
//! canary and master, reap and sample until the window closes, power off.

use std::io;

use oomlab_protocol::conf::{self, GuestConf as Scenario};
use oomlab_protocol::{guest, Event, Role, RootKind, CONF_PATH};

use crate::mitigate::{self, Plan};
use crate::sys::{self, Fork};
use crate::telemetry;
use crate::{canary, disk, helpers, load, master, modules, net, program, sample};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// PID 1 of the guest.
    Guest,
    /// Run by hand (`OOMLAB_PAYLOAD_SELFTEST=1`): no mounts, cgroups, sysctls
    /// or power-off; telemetry on stdout; only our own children are killed.
    SelfTest,
}

/// Console (stderr) line that can never panic: PID 1 must not die over a
/// broken console.
fn console(msg: &str) {
    sys::write_all(2, format!("oomlab payload: {msg}\n").as_bytes());
}

/// Entry point. In the guest it never returns.
pub fn run() -> i32 {
    let pid1 = sys::getpid() == 1;
    let selftest = std::env::var_os("OOMLAB_PAYLOAD_SELFTEST").is_some_and(|v| v == "1");
    if !pid1 && !selftest {
        console("must run as PID 1 (/init); set OOMLAB_PAYLOAD_SELFTEST=1 for a dry run");
        return 2;
    }
    install_panic_hook();
    let code = orchestrate(if pid1 { Mode::Guest } else { Mode::SelfTest });
    if pid1 {
        telemetry::drain();
        sys::power_off();
    }
    code
}

/// A panic anywhere must not return from PID 1 (the kernel would panic
/// with "Attempted to kill init"): report it and power off instead. In a
/// child, report it and die quietly.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("panic in pid {}: {info}", sys::getpid());
        telemetry::error(&msg);
        console(&msg);
        if sys::getpid() == 1 {
            telemetry::drain();
            sys::power_off();
        }
        // SAFETY: ends this process without unwinding into inherited state.
        unsafe { libc::_exit(101) };
    }));
}

fn orchestrate(mode: Mode) -> i32 {
    let guest = mode == Mode::Guest;
    let mut mounts = Vec::new();
    // After a switch to the disk root, stage 1's mounts were moved along.
    let stage2 = guest && disk::on_disk_root();
    if guest {
        for (src, target, fstype) in [
            ("proc", "/proc", "proc"),
            ("sysfs", "/sys", "sysfs"),
            ("devtmpfs", "/dev", "devtmpfs"),
        ] {
            let res = if stage2 {
                Ok(())
            } else {
                sys::mount(src, target, fstype)
            };
            mounts.push((format!("{fstype} on {target}"), res));
        }
        sys::ensure_console_fds();
    }
    console(&format!(
        "{VERSION} starting ({})",
        if guest { "pid 1" } else { "self-test" }
    ));
    if guest {
        match sys::open_raw_tty(c"/dev/ttyS1") {
            Ok(fd) => telemetry::set_fd(fd),
            Err(e) => {
                console(&format!("/dev/ttyS1: {e}; telemetry goes to the console"));
                telemetry::set_fd(1);
            }
        }
    }
    for (what, res) in &mounts {
        report("mount", what, res);
    }
    if guest {
        // The kernel booted quietly (its messages cost time on an emulated
        // UART); from here on every level reaches the console, the OOM
        // task table (KERN_INFO) included: that is the evidence.
        report(
            "console_loglevel",
            "7 in /proc/sys/kernel/printk",
            &sys::write_file("/proc/sys/kernel/printk", "7"),
        );
    }

    let conf_path = match mode {
        Mode::Guest => CONF_PATH.to_string(),
        Mode::SelfTest => std::env::var("OOMLAB_SCENARIO").unwrap_or_else(|_| CONF_PATH.into()),
    };
    let text = std::fs::read_to_string(&conf_path).unwrap_or_else(|e| {
        telemetry::error(&format!("{conf_path}: {e}; using defaults"));
        String::new()
    });
    let (sc, diags) = conf::parse(&text);
    for d in &diags {
        telemetry::error(&d.to_string());
    }

    if guest {
        bring_up(&sc, stage2);
    } else {
        for (asked, what) in [
            (!sc.module.is_empty(), "module"),
            (sc.root == RootKind::Disk, "root"),
            (sc.net, "net"),
            (sc.ssh, "ssh"),
            (sc.swap_dev.is_some() || sc.zram_mib > 0, "swap"),
        ] {
            if asked {
                telemetry::setup(what, false, "skipped in self-test");
            }
        }
    }

    let first = sample::read();
    let ready = sys::monotonic();
    telemetry::emit_at(
        sys::secs(&ready),
        Event::Ready {
            name: sc.name.clone(),
            kernel: sys::kernel_release(),
            mem_total_kib: first.mem_total_kib,
            payload: Some(VERSION.to_string()),
        },
    );

    let plan = Plan::of(&sc);
    let skip = |what: &str| {
        mitigate::report(
            what,
            "skipped in self-test",
            &Err(io::Error::other("needs PID 1 of a guest")),
        )
    };
    let join = match (&plan.cgroup, guest) {
        (Some(spec), true) => mitigate::setup_cgroup(spec),
        (Some(_), false) => {
            skip("cgroup");
            None
        }
        (None, _) => None,
    };
    if guest {
        mitigate::apply_sysctls(&plan);
    } else {
        for (key, _, _) in &plan.sysctls {
            skip(&format!("sysctl:{key}"));
        }
    }

    // Blocked before the first fork, so no child's death can slip by.
    sys::block_sigchld();
    if mode == Mode::SelfTest {
        // Orphaned workers come back to us, as they would to PID 1.
        // SAFETY: plain prctl on ourselves.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    }
    let mut children: Vec<(i32, Role)> = Vec::with_capacity(4);
    if sc.canary_ms > 0 {
        if let Some(pid) = fork_child(Role::Canary, || {
            sys::unblock_all_signals();
            canary::run(sc.canary_ms)
        }) {
            children.push((pid, Role::Canary));
        }
    }
    let join_file = join.as_ref().map(|j| j.procs_file.as_str());
    let master = match &sc.program {
        Some(path) => {
            refuse_master_only(&plan);
            let mut argv = vec![path.clone()];
            argv.extend(sc.program_arg.iter().cloned());
            program::start(&argv, &plan, join_file).map(|st| {
                children.extend(st.helpers.iter().map(|&p| (p, Role::Helper)));
                st.master
            })
        }
        None => fork_child(Role::Master, || master::run(&sc, &plan, join_file)),
    };
    if let Some(pid) = master {
        children.push((pid, Role::Master));
    }
    if sc.load_port > 0 {
        let port = u16::try_from(sc.load_port).unwrap_or(80);
        let (conns, kib) = (sc.load_connections, sc.load_body_kib);
        if let Some(pid) = fork_child(Role::Helper, move || {
            sys::unblock_all_signals();
            // The clients stand for the outside world: never the victim.
            let _ = mitigate::set_own_oom_score_adj(-1000);
            load::run(port, conns, kib)
        }) {
            children.push((pid, Role::Helper));
        }
    }
    if let Some(spec) = &plan.earlyoom {
        if guest {
            if let Some(pid) = helpers::spawn_relayed("earlyoom", &helpers::earlyoom_args(spec)) {
                children.push((pid, Role::Helper));
            }
        } else {
            skip("earlyoom");
        }
    }
    if let (Some((stall, window)), Some(master)) = (plan.psi, master) {
        if guest {
            if let Some(pid) = helpers::spawn_psi_killer(stall, window, master) {
                children.push((pid, Role::Helper));
            }
        } else {
            skip("psi_killer");
        }
    }

    sample::emit(&sample::read());
    // A program's workers are followed (program.rs); when its master dies
    // they come to PID 1 as orphans, already reported.
    supervise(&sc, &ready, &mut children, sc.program.is_none());

    // Stop the workload before saying `done`, so `done` is the last line:
    // a canary tick written after it would be outside the window.
    if mode == Mode::SelfTest {
        // The master leads a process group holding all workers, orphans too.
        for &(pid, role) in &children {
            let target = if role == Role::Master { -pid } else { pid };
            // SAFETY: plain kill of our own children.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
        if let Some(pid) = master {
            // SAFETY: as above; covers a master that died before its workers.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    } else {
        // SAFETY: PID 1 signalling every other process of the guest.
        unsafe { libc::kill(-1, libc::SIGKILL) };
    }
    while sys::reap(false).is_some() {}
    telemetry::emit(Event::Done {
        reason: "duration".to_string(),
    });
    console(if guest { "done, powering off" } else { "done" });
    0
}

/// Reaps children (ours by role, reparented ones as "orphan") and samples
/// memory until `duration_ms` after `ready`.
fn supervise(
    sc: &Scenario,
    ready: &libc::timespec,
    children: &mut Vec<(i32, Role)>,
    report_orphans: bool,
) {
    let deadline = sys::add_ms(ready, sc.duration_ms);
    let mut next_sample = sys::add_ms(ready, sc.sample_ms);
    loop {
        while let Some((pid, how)) = sys::reap(true) {
            match children.iter().position(|&(p, _)| p == pid) {
                Some(i) => telemetry::exit(pid, children.swap_remove(i).1, how),
                None if report_orphans => telemetry::exit(pid, Role::Orphan, how),
                None => {}
            }
        }
        let now = sys::monotonic();
        if sys::diff_ms(&now, &deadline) >= 0.0 {
            return;
        }
        let mut wake = deadline;
        if sc.sample_ms > 0 {
            if sys::diff_ms(&now, &next_sample) >= 0.0 {
                sample::emit(&sample::read());
                next_sample = sys::add_ms(&next_sample, sc.sample_ms);
                // After a stall, resume the cadence instead of catching up.
                if sys::diff_ms(&next_sample, &now) <= 0.0 {
                    next_sample = sys::add_ms(&now, sc.sample_ms);
                }
            }
            if sys::diff_ms(&next_sample, &wake) < 0.0 {
                wake = next_sample;
            }
        }
        sys::wait_sigchld(sys::diff_ms(&wake, &sys::monotonic()));
    }
}

/// What the scenario asked of the machine before the workload: modules,
/// the disk root (stage 1 switches to it and runs the disk's `/init`, which
/// comes back here as stage 2), swap, the network and the SSH server. Each
/// step is a `setup` event that makes the run `n/a` if it fails.
fn bring_up(sc: &Scenario, stage2: bool) {
    if stage2 {
        telemetry::setup(
            "root",
            true,
            &format!("running from {} (ext4)", guest::ROOT_DEV),
        );
    } else {
        modules::load_all(&sc.module);
        if sc.root == RootKind::Disk {
            let e = disk::switch_root();
            mitigate::report(
                "root",
                &format!("switch root to {}", guest::ROOT_DEV),
                &Err(e),
            );
        }
    }
    // The swap is part of the machine under test: its failure makes the
    // run `n/a`. The network and the SSH server are the probe's: without
    // them the run is still judged, without SSH evidence.
    let step = |what: &str, desc: &str, subject: bool, res: io::Result<String>| -> bool {
        let (detail, res) = match res {
            Ok(d) => (d, Ok(())),
            Err(e) => (desc.to_string(), Err(e)),
        };
        if subject {
            return mitigate::report(what, &detail, &res);
        }
        match &res {
            Ok(()) => telemetry::setup(what, true, &detail),
            Err(e) => telemetry::setup(what, false, &format!("{detail}: {e}")),
        }
        res.is_ok()
    };
    if let Some(dev) = &sc.swap_dev {
        step("swap", &format!("swapon {dev}"), true, disk::swap_on(dev));
    }
    if sc.zram_mib > 0 {
        step("swap", "zram", true, disk::zram_on(sc.zram_mib));
    }
    let net_ok = !sc.net || step("net", "eth0 10.0.2.15/24", false, net::up());
    // No network: no SSH server to wait for (nobody could reach it).
    if sc.ssh && net_ok {
        step(
            "entropy",
            guest::SEED,
            false,
            net::seed_entropy(guest::SEED),
        );
        let argv = guest::dropbear_argv();
        let res = match helpers::spawn_relayed("dropbear", &argv) {
            Some(_) => net::wait_listening(guest::SSH_PORT, 15_000)
                .map(|ms| format!("dropbear listening on port 22 after {ms:.0} ms"))
                .ok_or_else(|| io::Error::other("dropbear did not listen on port 22 within 15 s")),
            None => Err(io::Error::other("dropbear did not start")),
        };
        step("ssh", "dropbear on port 22", false, res);
    }
}

/// Mitigations that live in the payload's own master cannot be applied to
/// a real program: each is reported as not applied (the run is `n/a`).
fn refuse_master_only(plan: &Plan) {
    let refuse = |what: &str| {
        mitigate::report(
            what,
            "the payload's master applies it; a program workload cannot",
            &Err(io::Error::other("not applicable to a program workload")),
        )
    };
    if plan.backoff.is_some() {
        refuse("respawn_backoff");
    }
    if plan.limit.is_some() {
        refuse("respawn_limit");
    }
    if plan.worker_adj.is_some() {
        refuse("oom_score_adj");
    }
}

/// Forks `body` as a child of init and reports its `spawn`; a failed fork
/// is reported and the run goes on without that child.
fn fork_child(role: Role, body: impl FnOnce()) -> Option<i32> {
    match sys::fork() {
        Ok(Fork::Child) => {
            body();
            // SAFETY: bodies never return; if one did, it must not run init's code.
            unsafe { libc::_exit(0) }
        }
        Ok(Fork::Parent(pid)) => {
            telemetry::spawn(pid, sys::getpid(), role);
            Some(pid)
        }
        Err(e) => {
            telemetry::error(&format!("fork {}: {e}", role.as_str()));
            None
        }
    }
}

fn report(what: &str, detail: &str, res: &io::Result<()>) -> bool {
    match res {
        Ok(()) => telemetry::setup(what, true, detail),
        Err(e) => telemetry::setup(what, false, &format!("{detail}: {e}")),
    }
    res.is_ok()
}
