//! Telemetry writer: events of the `oomlab-protocol` crate, one JSON line
//! each, each line a single `write(2)` (protocol/PROTOCOL.md).

use std::sync::atomic::{AtomicI32, Ordering};

use oomlab_protocol::{Event, Role, Telemetry};

use crate::sys;

/// Where lines go. Forked children inherit both the fd and this value.
static FD: AtomicI32 = AtomicI32::new(libc::STDOUT_FILENO);

pub fn set_fd(fd: i32) {
    FD.store(fd, Ordering::Relaxed);
}

/// Writes `ev` stamped `t` (guest `CLOCK_MONOTONIC` seconds).
pub fn emit_at(t: f64, ev: Event) {
    let line = Telemetry { t, ev }.line();
    sys::write_all(FD.load(Ordering::Relaxed), line.as_bytes());
}

/// Writes `ev` stamped now.
pub fn emit(ev: Event) {
    emit_at(sys::monotonic_secs(), ev);
}

/// Waits until the port has really sent what was written: the last lines
/// before power-off would otherwise die in the UART's buffer.
pub fn drain() {
    // SAFETY: tcdrain on a non-tty fd just fails.
    unsafe { libc::tcdrain(FD.load(Ordering::Relaxed)) };
}

pub fn error(msg: &str) {
    emit(Event::Error {
        msg: msg.to_string(),
    });
}

/// A set-up step of the payload's own (mounts, the canary): not part of a
/// mitigation (those are reported by `mitigate::report`).
pub fn setup(what: &str, ok: bool, detail: &str) {
    emit(Event::Setup {
        what: what.to_string(),
        ok,
        detail: detail.to_string(),
        mitigation: false,
    });
}

/// A workload step's outcome (not a mitigation), as a `setup` event.
pub fn setup_step(what: &str, detail: &str, res: &std::io::Result<()>) {
    match res {
        Ok(()) => setup(what, true, detail),
        Err(e) => setup(what, false, &format!("{detail}: {e}")),
    }
}

/// Pids are positive and fit u32; anything else is reported as 0.
fn pid_u32(pid: i32) -> u32 {
    u32::try_from(pid).unwrap_or(0)
}

pub fn spawn(pid: i32, ppid: i32, role: Role) {
    emit(Event::Spawn {
        pid: pid_u32(pid),
        ppid: Some(pid_u32(ppid)),
        role,
    });
}

pub fn exit(pid: i32, role: Role, how: sys::ExitKind) {
    let (signal, status) = match how {
        sys::ExitKind::Signal(s) => (Some(s), None),
        sys::ExitKind::Status(s) => (None, Some(s)),
    };
    emit(Event::Exit {
        pid: pid_u32(pid),
        role,
        signal,
        status,
    });
}
