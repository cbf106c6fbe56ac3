//! Thin, safe wrappers over the few syscalls the payload needs.

use std::ffi::{CStr, CString};
use std::io;
use std::time::Duration;

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Signal(i32),
    Status(i32),
}

impl ExitKind {
    fn from_wait_status(st: i32) -> ExitKind {
        if libc::WIFSIGNALED(st) {
            ExitKind::Signal(libc::WTERMSIG(st))
        } else {
            ExitKind::Status(libc::WEXITSTATUS(st))
        }
    }
}

pub fn monotonic() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

pub fn secs(ts: &libc::timespec) -> f64 {
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

pub fn monotonic_secs() -> f64 {
    secs(&monotonic())
}

pub fn add_ms(ts: &libc::timespec, ms: u64) -> libc::timespec {
    let nsec = ts.tv_nsec as u64 + (ms % 1000) * 1_000_000;
    let mut out = *ts;
    // time_t is i64 on x86_64 (gnu and musl); naming the alias is deprecated
    // on musl.
    out.tv_sec += (ms / 1000 + nsec / 1_000_000_000) as i64;
    out.tv_nsec = (nsec % 1_000_000_000) as _;
    out
}

/// `a - b` in milliseconds.
pub fn diff_ms(a: &libc::timespec, b: &libc::timespec) -> f64 {
    (a.tv_sec - b.tv_sec) as f64 * 1e3 + (a.tv_nsec - b.tv_nsec) as f64 / 1e6
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Sleeps until `deadline` on CLOCK_MONOTONIC (absolute, so no drift).
pub fn sleep_until(deadline: &libc::timespec) {
    loop {
        // SAFETY: valid pointers; a null remainder is allowed with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                deadline,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Writes all of `buf`, retrying on EINTR; errors are dropped (nowhere to
/// report a failing telemetry channel).
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Writes a kernel control file (procfs, cgroupfs) with one `write(2)`, which
/// is how those files expect to be written.
pub fn write_file(path: &str, contents: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let n = f.write(contents.as_bytes())?;
    if n != contents.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

pub fn set_comm(name: &CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 15).
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Drops to `uid` (gid the same number, no supplementary groups), for
/// good: setuid as root sets the saved uid too.
pub fn drop_to_uid(uid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on ourselves; setgroups gets no pointer with
    // a zero count.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn getpid() -> i32 {
    // SAFETY: always succeeds.
    unsafe { libc::getpid() }
}

pub enum Fork {
    Child,
    Parent(i32),
}

/// The payload is single-threaded whenever it forks, so the child may keep
/// using std (no lock can be held by a vanished thread).
pub fn fork() -> io::Result<Fork> {
    // SAFETY: see above.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// `mount -t fstype source target`, creating `target`; an already mounted
/// target (EBUSY) counts as success.
pub fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    mount_opts(source, target, fstype, "")
}

/// [`mount`] with `-o opts` (e.g. `memory` for cgroup v1).
pub fn mount_opts(source: &str, target: &str, fstype: &str, opts: &str) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let c = |s: &str| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let (src, tgt, fs, data) = (c(source)?, c(target)?, c(fstype)?, c(opts)?);
    let data_ptr = if opts.is_empty() {
        std::ptr::null()
    } else {
        data.as_ptr().cast()
    };
    // SAFETY: NUL-terminated strings; data is NUL-terminated or null.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), 0, data_ptr) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    Err(err)
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Blocked SIGCHLD stays pending instead of being discarded, so
/// `wait_sigchld` can sleep until a child dies *or* a timeout.
pub fn block_sigchld() {
    let set = sigchld_set();
    // SAFETY: valid set pointer.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Children inherit the mask over fork; give them a clean one.
pub fn unblock_all_signals() {
    // SAFETY: valid set pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Waits (SIGCHLD blocked) until a SIGCHLD is pending or `timeout_ms` passes.
pub fn wait_sigchld(timeout_ms: f64) {
    if timeout_ms <= 0.0 {
        return;
    }
    let ns = (timeout_ms * 1e6) as u64;
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as _,
        tv_nsec: (ns % 1_000_000_000) as _,
    };
    let set = sigchld_set();
    // SAFETY: valid pointers; info may be null.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
}

/// `waitpid(-1)`; `None` when no child is left (ECHILD) or, with `nohang`,
/// none has exited yet.
pub fn reap(nohang: bool) -> Option<(i32, ExitKind)> {
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        let mut st = 0;
        // SAFETY: valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut st, flags) };
        if pid > 0 {
            return Some((pid, ExitKind::from_wait_status(st)));
        }
        if pid == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; release is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Opens a tty for writing in raw mode: no `\n` -> `\r\n` or other output
/// processing, so the harness reads exactly the bytes written.
pub fn open_raw_tty(path: &CStr) -> io::Result<i32> {
    // SAFETY: NUL-terminated path; O_NOCTTY keeps PID 1 from acquiring it as
    // controlling terminal; programs it runs do not inherit it.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is open; the termios is filled by tcgetattr before use.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
    }
    Ok(fd)
}

/// When the initramfs lacks `/dev/console` the kernel starts us with fds
/// 0-2 closed; point them at the console once devtmpfs is mounted.
pub fn ensure_console_fds() {
    // SAFETY: fcntl on a possibly closed fd just fails with EBADF.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } != -1 {
        return;
    }
    // SAFETY: literal path; dup2 onto the standard fds.
    unsafe {
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return;
        }
        for target in 0..3 {
            if fd != target {
                libc::dup2(fd, target);
            }
        }
        if fd > 2 {
            libc::close(fd);
        }
    }
}

/// PID 1's way out: kill everyone, flush, power off. Never returns.
pub fn power_off() -> ! {
    // SAFETY: plain syscalls; only ever called in PID 1 of the guest.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot() failed: exiting would panic the kernel; park instead.
    loop {
        sleep_ms(3_600_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespec_math() {
        let a = libc::timespec {
            tv_sec: 5,
            tv_nsec: 900_000_000,
        };
        let b = add_ms(&a, 1250);
        assert_eq!((b.tv_sec, b.tv_nsec), (7, 150_000_000));
        assert!((diff_ms(&b, &a) - 1250.0).abs() < 1e-9);
        assert!((diff_ms(&a, &b) + 1250.0).abs() < 1e-9);
        assert!((secs(&b) - 7.15).abs() < 1e-9);
    }
}
