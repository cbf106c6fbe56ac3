//! Slow clients inside the guest: each connection announces a request
//! body one byte longer than it sends, sends the rest, and holds the
//! connection. A server that buffers request bodies in memory (nginx with
//! a large `client_body_buffer_size`) keeps every such body resident in
//! the worker that accepted it, until the connection goes away. A closed
//! connection (its worker was killed) is opened again after 200 ms.

use std::io;

use oomlab_protocol::Event;

use crate::sys;
use crate::telemetry;

const RETRY_MS: f64 = 200.0;

/// The request head for a body of `body` bytes, announced one byte longer.
pub fn request_head(body: u64) -> Vec<u8> {
    format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body + 1
    )
    .into_bytes()
}

struct Conn {
    fd: i32,
    sent: u64,
    retry_at: libc::timespec,
}

fn open(port: u16) -> io::Result<i32> {
    // SAFETY: plain socket calls; the sockaddr is fully initialised.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let rc = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// Runs the clients forever: `conns` connections to 127.0.0.1:`port`, each
/// sending `body_kib` KiB.
pub fn run(port: u16, conns: u32, body_kib: u64) -> ! {
    sys::set_comm(c"load");
    let body = body_kib * 1024;
    let head = request_head(body);
    let total = head.len() as u64 + body;
    let zeros = vec![0u8; 64 * 1024];
    let mut cs: Vec<Conn> = (0..conns)
        .map(|_| Conn {
            fd: -1,
            sent: 0,
            retry_at: sys::monotonic(),
        })
        .collect();
    let (mut opens, mut resets, mut full) = (0u64, 0u64, 0u64);
    let mut report_at = sys::add_ms(&sys::monotonic(), 5000);
    loop {
        let now = sys::monotonic();
        for c in cs.iter_mut() {
            if c.fd < 0 && sys::diff_ms(&now, &c.retry_at) >= 0.0 {
                match open(port) {
                    Ok(fd) => {
                        c.fd = fd;
                        c.sent = 0;
                        opens += 1;
                    }
                    Err(_) => c.retry_at = sys::add_ms(&now, RETRY_MS as u64),
                }
            }
        }
        let mut pfds: Vec<libc::pollfd> = cs
            .iter()
            .map(|c| libc::pollfd {
                fd: c.fd,
                events: libc::POLLIN | if c.sent < total { libc::POLLOUT } else { 0 },
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds (negative fds are ignored).
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        let now = sys::monotonic();
        for (c, p) in cs.iter_mut().zip(&pfds) {
            if c.fd < 0 || p.revents == 0 {
                continue;
            }
            let mut drop = p.revents & (libc::POLLERR | libc::POLLHUP) != 0;
            if !drop && p.revents & libc::POLLIN != 0 {
                let mut b = [0u8; 512];
                // SAFETY: valid buffer.
                let n = unsafe { libc::read(c.fd, b.as_mut_ptr().cast(), b.len()) };
                drop = n <= 0;
            }
            if !drop && p.revents & libc::POLLOUT != 0 && c.sent < total {
                let (ptr, len) = if c.sent < head.len() as u64 {
                    let s = &head[c.sent as usize..];
                    (s.as_ptr(), s.len())
                } else {
                    let left = (total - c.sent).min(zeros.len() as u64) as usize;
                    (zeros.as_ptr(), left)
                };
                // SAFETY: ptr..ptr+len is inside `head` or `zeros`.
                let n = unsafe { libc::send(c.fd, ptr.cast(), len, libc::MSG_NOSIGNAL) };
                if n > 0 {
                    c.sent += n as u64;
                    if c.sent == total {
                        full += 1;
                    }
                } else if io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                    drop = true;
                }
            }
            if drop {
                // SAFETY: our fd.
                unsafe { libc::close(c.fd) };
                c.fd = -1;
                c.retry_at = sys::add_ms(&now, RETRY_MS as u64);
                resets += 1;
            }
        }
        if sys::diff_ms(&now, &report_at) >= 0.0 {
            let held = cs.iter().filter(|c| c.fd >= 0 && c.sent == total).count();
            telemetry::emit(Event::Log {
                src: "load".into(),
                line: format!(
                    "opens={opens} resets={resets} bodies_sent={full} holding={held}/{conns}"
                ),
            });
            report_at = sys::add_ms(&now, 5000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_announces_one_byte_more() {
        let h = String::from_utf8(request_head(1024)).unwrap();
        assert!(h.starts_with("POST /upload HTTP/1.1\r\n"));
        assert!(h.contains("Content-Length: 1025\r\n"));
        assert!(h.ends_with("\r\n\r\n"));
    }
}
