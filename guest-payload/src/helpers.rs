//! Userspace OOM killers under test, run beside the workload: Debian's
//! `earlyoom` (a real program packed into the image, its output relayed as
//! `log` events) and the payload's own PSI killer.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader};
use std::os::fd::FromRawFd;

use oomlab_protocol::{Event, Role};

use crate::mitigate::{self, EarlyoomSpec};
use crate::sys::{self, Fork};
use crate::telemetry;

/// Where the image puts earlyoom (with its libraries).
pub const EARLYOOM: &str = oomlab_protocol::mitigation::EARLYOOM.path;

/// earlyoom's command line for `spec`.
pub fn earlyoom_args(spec: &EarlyoomSpec) -> Vec<String> {
    let mut v = vec![
        EARLYOOM.to_string(),
        "-m".into(),
        spec.mem_min_percent.to_string(),
        "-s".into(),
        spec.swap_min_percent.to_string(),
        // One memory report a second: enough to see it working.
        "-r".into(),
        "1".into(),
    ];
    if spec.process_group {
        v.push("-g".into());
    }
    v
}

/// Forks a relay that runs `argv` with stdout and stderr on a pipe and
/// emits every line it prints as a `log` event from `src`. The relay and
/// the program are exempt from the OOM killer, as a system daemon would be.
pub fn spawn_relayed(src: &'static str, argv: &[String]) -> Option<i32> {
    if let Err(e) = std::fs::metadata(&argv[0]) {
        mitigate::report(src, &format!("{} in the image", argv[0]), &Err(e));
        return None;
    }
    match sys::fork() {
        Ok(Fork::Child) => {
            sys::unblock_all_signals();
            sys::set_comm(c"relay");
            let _ = mitigate::set_own_oom_score_adj(-1000);
            relay(src, argv);
            // SAFETY: the relay's work is done; do not run init's code.
            unsafe { libc::_exit(0) }
        }
        Ok(Fork::Parent(pid)) => {
            telemetry::spawn(pid, sys::getpid(), Role::Helper);
            mitigate::report(src, &argv.join(" "), &Ok(()));
            Some(pid)
        }
        Err(e) => {
            mitigate::report(src, "fork", &Err(e));
            None
        }
    }
}

fn relay(src: &'static str, argv: &[String]) {
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        telemetry::error(&format!("{src}: pipe: {}", io::Error::last_os_error()));
        return;
    }
    let (r, w) = (fds[0], fds[1]);
    let cargs: Vec<CString> = argv
        .iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    match sys::fork() {
        Ok(Fork::Child) => {
            // SAFETY: fds are ours; execv gets NUL-terminated strings and a
            // null-terminated array built before the fork.
            unsafe {
                libc::dup2(w, 1);
                libc::dup2(w, 2);
                libc::close(r);
                libc::close(w);
                libc::execv(ptrs[0], ptrs.as_ptr());
            }
            let e = io::Error::last_os_error();
            telemetry::error(&format!("{src}: exec {}: {e}", argv[0]));
            // SAFETY: exec failed; leave without running the relay's code.
            unsafe { libc::_exit(127) }
        }
        Ok(Fork::Parent(_)) => {}
        Err(e) => {
            telemetry::error(&format!("{src}: fork: {e}"));
            return;
        }
    }
    // SAFETY: w is our copy of the write end.
    unsafe { libc::close(w) };
    // SAFETY: r is an open fd we own from here on.
    let file = unsafe { std::fs::File::from_raw_fd(r) };
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        telemetry::emit(Event::Log {
            src: src.to_string(),
            line,
        });
    }
}

/// Forks the PSI killer: a trigger on `/proc/pressure/memory` ("some"
/// tasks stalled `stall_ms` within `window_ms`); when it fires, the
/// master's whole process group is killed.
pub fn spawn_psi_killer(stall_ms: u32, window_ms: u32, master: i32) -> Option<i32> {
    // Open in PID 1 first, so a kernel without PSI is a clean setup failure.
    let trigger = format!(
        "some {} {}",
        u64::from(stall_ms) * 1000,
        u64::from(window_ms) * 1000
    );
    let fd = match open_trigger(&trigger) {
        Ok(fd) => fd,
        Err(e) => {
            mitigate::report(
                "psi_killer",
                &format!("/proc/pressure/memory trigger `{trigger}` (needs PSI, 5.2+)"),
                &Err(e),
            );
            return None;
        }
    };
    match sys::fork() {
        Ok(Fork::Child) => {
            sys::unblock_all_signals();
            sys::set_comm(c"psi-killer");
            let _ = mitigate::set_own_oom_score_adj(-1000);
            psi_loop(fd, master, stall_ms, window_ms)
        }
        Ok(Fork::Parent(pid)) => {
            // SAFETY: the child owns the trigger now.
            unsafe { libc::close(fd) };
            telemetry::spawn(pid, sys::getpid(), Role::Helper);
            mitigate::report(
                "psi_killer",
                &format!("trigger `{trigger}`, target group {master}"),
                &Ok(()),
            );
            Some(pid)
        }
        Err(e) => {
            mitigate::report("psi_killer", "fork", &Err(e));
            None
        }
    }
}

fn open_trigger(trigger: &str) -> io::Result<i32> {
    // SAFETY: literal path.
    let fd = unsafe {
        libc::open(
            c"/proc/pressure/memory".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut bytes = trigger.as_bytes().to_vec();
    bytes.push(0);
    // SAFETY: valid buffer.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

fn psi_loop(fd: i32, master: i32, stall_ms: u32, window_ms: u32) -> ! {
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            telemetry::error(&format!("psi_killer: poll: {}", io::Error::last_os_error()));
            sys::sleep_ms(3_600_000);
            continue;
        }
        if p.revents & libc::POLLERR != 0 {
            telemetry::error("psi_killer: the trigger went away");
            sys::sleep_ms(3_600_000);
            continue;
        }
        if p.revents & libc::POLLPRI != 0 {
            // SAFETY: signalling the master's process group.
            if unsafe { libc::kill(-master, libc::SIGKILL) } == 0 {
                telemetry::emit(Event::Kill {
                    killer: "psi".into(),
                    pid: -master,
                    signal: libc::SIGKILL,
                    reason: format!("memory some stall {stall_ms} ms within {window_ms} ms"),
                });
            }
            // One service, one kill: with its group gone there is nothing
            // left to act on (and the trigger would keep firing).
            loop {
                sys::sleep_ms(3_600_000);
            }
        }
    }
}
