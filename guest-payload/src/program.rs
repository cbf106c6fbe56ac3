//! A real program as the workload (Debian's nginx...): PID 1 starts it in
//! place of its own master, relays what it prints as `log` events, and a
//! follower reports its children's births and deaths as the master's
//! `spawn` and `exit` events, so the verdict reads a real daemon exactly
//! as it reads the payload's own master.
//!
//! The follower listens to the kernel's process events (the netlink proc
//! connector, `CONFIG_PROC_EVENTS`): every fork and every exit with its
//! wait status, as it happens. Without it, it polls `/proc` (exits are then
//! reported without their signal).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::{self, BufRead, BufReader};
use std::os::fd::FromRawFd;

use oomlab_protocol::{Event, Role};

use crate::mitigate::{self, Plan};
use crate::sys::{self, Fork};
use crate::telemetry;

/// What was started: the program (the master) and its two helpers.
pub struct Started {
    pub master: i32,
    pub helpers: Vec<i32>,
}

fn pipe() -> io::Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

fn close(fd: i32) {
    // SAFETY: closing an fd we own.
    unsafe { libc::close(fd) };
}

/// Starts `argv` as the workload: it joins the cgroup (`join`) and takes
/// the master's `oom_score_adj` before it runs, and only runs once the
/// follower listens, so no child is missed.
pub fn start(argv: &[String], plan: &Plan, join: Option<&str>) -> Option<Started> {
    let name = argv[0].rsplit('/').next().unwrap_or("program").to_string();
    if let Err(e) = std::fs::metadata(&argv[0]) {
        mitigate::report("program", &format!("{} in the image", argv[0]), &Err(e));
        return None;
    }
    let cargs: Vec<CString> = argv
        .iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let ((out_r, out_w), (go_r, go_w)) = match (pipe(), pipe()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            mitigate::report("program", "pipe", &Err(e));
            return None;
        }
    };
    let master = match sys::fork() {
        Ok(Fork::Child) => {
            sys::unblock_all_signals();
            close(out_r);
            close(go_w);
            // Own process group, as the payload's master has: the PSI killer
            // and a self-test stop the whole service through it.
            // SAFETY: plain syscalls on ourselves and our fds.
            unsafe {
                libc::setpgid(0, 0);
                libc::dup2(out_w, 1);
                libc::dup2(out_w, 2);
                libc::close(out_w);
            }
            let me = sys::getpid();
            if let Some(procs) = join {
                mitigate::report(
                    "cgroup",
                    &format!("{name} {me} joined via {procs}"),
                    &sys::write_file(procs, &me.to_string()),
                );
            }
            if let Some((adj, _)) = plan.master_adj {
                // Before exec: the program's children inherit it.
                let res = mitigate::set_own_oom_score_adj(adj);
                mitigate::report(
                    "oom_score_adj",
                    &format!("{name} (before exec) {adj}"),
                    &res.map(|_| ()),
                );
            }
            let mut b = [0u8; 1];
            // SAFETY: valid buffer; blocks until the follower is ready.
            unsafe { libc::read(go_r, b.as_mut_ptr().cast(), 1) };
            close(go_r);
            // SAFETY: argv built before the fork, null-terminated.
            unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
            telemetry::error(&format!("exec {}: {}", argv[0], io::Error::last_os_error()));
            // SAFETY: leave without running PID 1's code.
            unsafe { libc::_exit(127) }
        }
        Ok(Fork::Parent(pid)) => pid,
        Err(e) => {
            mitigate::report("program", "fork", &Err(e));
            for fd in [out_r, out_w, go_r, go_w] {
                close(fd);
            }
            return None;
        }
    };
    telemetry::spawn(master, sys::getpid(), Role::Master);
    mitigate::report("program", &argv.join(" "), &Ok(()));
    let mut helpers = Vec::new();
    match sys::fork() {
        Ok(Fork::Child) => {
            sys::unblock_all_signals();
            sys::set_comm(c"follower");
            let _ = mitigate::set_own_oom_score_adj(-1000);
            for fd in [out_r, out_w, go_r] {
                close(fd);
            }
            follow(master, go_w)
        }
        Ok(Fork::Parent(pid)) => {
            telemetry::spawn(pid, sys::getpid(), Role::Helper);
            helpers.push(pid);
        }
        Err(e) => {
            telemetry::error(&format!("follower: fork: {e}"));
            // Let the program run all the same.
            // SAFETY: one byte from a static buffer.
            unsafe { libc::write(go_w, b"g".as_ptr().cast(), 1) };
        }
    }
    match sys::fork() {
        Ok(Fork::Child) => {
            sys::unblock_all_signals();
            sys::set_comm(c"relay");
            let _ = mitigate::set_own_oom_score_adj(-1000);
            for fd in [out_w, go_r, go_w] {
                close(fd);
            }
            relay(&name, out_r);
            // SAFETY: the relay's work is done.
            unsafe { libc::_exit(0) }
        }
        Ok(Fork::Parent(pid)) => {
            telemetry::spawn(pid, sys::getpid(), Role::Helper);
            helpers.push(pid);
        }
        Err(e) => telemetry::error(&format!("relay: fork: {e}")),
    }
    for fd in [out_r, out_w, go_r, go_w] {
        close(fd);
    }
    Some(Started { master, helpers })
}

fn relay(src: &str, fd: i32) {
    // SAFETY: fd is the read end we own from here on.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    for line in BufReader::new(file).split(b'\n') {
        let Ok(line) = line else { break };
        telemetry::emit(Event::Log {
            src: src.to_string(),
            line: String::from_utf8_lossy(&line).trim_end().to_string(),
        });
    }
}

/// A process event the follower cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    Fork { parent: u32, child: u32 },
    Exit { pid: u32, status: u32 },
}

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NETLINK_CONNECTOR: i32 = 11;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Parses one netlink datagram of the proc connector: fork events of new
/// processes (not threads) and exits of whole processes.
pub fn parse_proc_event(b: &[u8]) -> Option<ProcEvent> {
    let ev = NLMSG_HDRLEN + CN_MSG_LEN;
    let what = u32_at(b, ev)?;
    // what, cpu, timestamp_ns (u64), then the event's own fields.
    let data = ev + 16;
    match what {
        PROC_EVENT_FORK => {
            let (ppid, ptgid, cpid, ctgid) = (
                u32_at(b, data)?,
                u32_at(b, data + 4)?,
                u32_at(b, data + 8)?,
                u32_at(b, data + 12)?,
            );
            let _ = ppid;
            (cpid == ctgid).then_some(ProcEvent::Fork {
                parent: ptgid,
                child: cpid,
            })
        }
        PROC_EVENT_EXIT => {
            let (pid, tgid, code) = (u32_at(b, data)?, u32_at(b, data + 4)?, u32_at(b, data + 8)?);
            (pid == tgid).then_some(ProcEvent::Exit { pid, status: code })
        }
        _ => None,
    }
}

/// The subscribe message: netlink header, connector header, LISTEN.
fn listen_message(pid: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(len);
    m.extend((len as u32).to_ne_bytes());
    m.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
    m.extend(0u16.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    m.extend(pid.to_ne_bytes());
    m.extend(CN_IDX_PROC.to_ne_bytes());
    m.extend(CN_VAL_PROC.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // seq
    m.extend(0u32.to_ne_bytes()); // ack
    m.extend(4u16.to_ne_bytes()); // len
    m.extend(0u16.to_ne_bytes()); // flags
    m.extend(PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

fn connector() -> io::Result<i32> {
    // SAFETY: plain socket calls on a fresh fd; structs zeroed then filled.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let buf: libc::c_int = 4 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&buf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_pid = sys::getpid() as u32;
        sa.nl_groups = CN_IDX_PROC;
        if libc::bind(
            fd,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        ) != 0
        {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        let m = listen_message(sys::getpid() as u32);
        if libc::send(fd, m.as_ptr().cast(), m.len(), 0) < 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// The master's children, as spawn and exit events.
#[derive(Default)]
pub struct Tree {
    pub master: u32,
    pub workers: HashSet<u32>,
}

impl Tree {
    /// What `ev` means for the master's children, as a telemetry event.
    pub fn see(&mut self, ev: ProcEvent) -> Option<Event> {
        match ev {
            ProcEvent::Fork { parent, child } if parent == self.master => {
                self.workers.insert(child);
                Some(Event::Spawn {
                    pid: child,
                    ppid: Some(parent),
                    role: Role::Worker,
                })
            }
            ProcEvent::Exit { pid, status } if self.workers.remove(&pid) => {
                let (signal, status) = if status & 0x7f != 0 {
                    (Some((status & 0x7f) as i32), None)
                } else {
                    (None, Some(((status >> 8) & 0xff) as i32))
                };
                Some(Event::Exit {
                    pid,
                    role: Role::Worker,
                    signal,
                    status,
                })
            }
            _ => None,
        }
    }
}

fn follow(master: i32, go_w: i32) -> ! {
    let mut tree = Tree {
        master: master as u32,
        ..Tree::default()
    };
    let conn = connector();
    // The program may run now.
    // SAFETY: one byte from a static buffer, then our fd closed.
    unsafe {
        libc::write(go_w, b"g".as_ptr().cast(), 1);
        libc::close(go_w);
    }
    match conn {
        Ok(fd) => {
            telemetry::setup("follower", true, "proc connector (fork/exit events)");
            let mut buf = vec![0u8; 8192];
            loop {
                // SAFETY: valid buffer.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        telemetry::error("follower: process events lost (ENOBUFS)");
                    } else if e.kind() != io::ErrorKind::Interrupted {
                        telemetry::error(&format!("follower: recv: {e}"));
                        sys::sleep_ms(100);
                    }
                    continue;
                }
                if let Some(ev) = parse_proc_event(&buf[..n as usize]).and_then(|e| tree.see(e)) {
                    telemetry::emit(ev);
                }
            }
        }
        Err(e) => {
            telemetry::setup(
                "follower",
                false,
                &format!("proc connector: {e}; polling /proc (exits without signals)"),
            );
            poll_proc(&mut tree)
        }
    }
}

/// `pid -> ppid` of every process, from `/proc/*/stat`.
fn parents() -> HashMap<u32, u32> {
    let mut m = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return m;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parens.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            m.insert(pid, ppid);
        }
    }
    m
}

fn poll_proc(tree: &mut Tree) -> ! {
    loop {
        let now = parents();
        let children: Vec<u32> = now
            .iter()
            .filter(|(_, &pp)| pp == tree.master)
            .map(|(&p, _)| p)
            .collect();
        for c in children {
            if !tree.workers.contains(&c) {
                if let Some(ev) = tree.see(ProcEvent::Fork {
                    parent: tree.master,
                    child: c,
                }) {
                    telemetry::emit(ev);
                }
            }
        }
        let gone: Vec<u32> = tree
            .workers
            .iter()
            .copied()
            .filter(|p| !now.contains_key(p))
            .collect();
        for pid in gone {
            tree.workers.remove(&pid);
            telemetry::emit(Event::Exit {
                pid,
                role: Role::Worker,
                signal: None,
                status: None,
            });
        }
        sys::sleep_ms(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(what: u32, fields: [u32; 4]) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDRLEN + CN_MSG_LEN];
        b.extend(what.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(123u64.to_ne_bytes());
        for f in fields {
            b.extend(f.to_ne_bytes());
        }
        b
    }

    #[test]
    fn fork_and_exit_events() {
        assert_eq!(
            parse_proc_event(&event(PROC_EVENT_FORK, [100, 100, 101, 101])),
            Some(ProcEvent::Fork {
                parent: 100,
                child: 101
            })
        );
        // A new thread is not a new process.
        assert_eq!(
            parse_proc_event(&event(PROC_EVENT_FORK, [100, 100, 102, 101])),
            None
        );
        assert_eq!(
            parse_proc_event(&event(PROC_EVENT_EXIT, [101, 101, 9, 17])),
            Some(ProcEvent::Exit {
                pid: 101,
                status: 9
            })
        );
        assert_eq!(parse_proc_event(&event(0x2, [0; 4])), None);
        assert_eq!(parse_proc_event(&[0u8; 10]), None);
    }

    #[test]
    fn the_tree_reports_the_masters_children_only() {
        let mut t = Tree {
            master: 100,
            ..Tree::default()
        };
        assert!(t
            .see(ProcEvent::Fork {
                parent: 7,
                child: 8
            })
            .is_none());
        assert_eq!(
            t.see(ProcEvent::Fork {
                parent: 100,
                child: 101
            }),
            Some(Event::Spawn {
                pid: 101,
                ppid: Some(100),
                role: Role::Worker
            })
        );
        assert_eq!(
            t.see(ProcEvent::Exit {
                pid: 101,
                status: 9
            }),
            Some(Event::Exit {
                pid: 101,
                role: Role::Worker,
                signal: Some(9),
                status: None
            })
        );
        // Exit status 1 is `1 << 8` in a wait status.
        t.see(ProcEvent::Fork {
            parent: 100,
            child: 102,
        });
        assert_eq!(
            t.see(ProcEvent::Exit {
                pid: 102,
                status: 1 << 8
            }),
            Some(Event::Exit {
                pid: 102,
                role: Role::Worker,
                signal: None,
                status: Some(1)
            })
        );
        assert!(t.see(ProcEvent::Exit { pid: 8, status: 9 }).is_none());
        assert_eq!(listen_message(5).len(), 40);
    }
}
