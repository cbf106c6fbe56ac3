//! The guest's network and SSH server: `lo` and `eth0` configured with four
//! ioctls (no DHCP, no routes: QEMU's host forward arrives from 10.0.2.2,
//! which is on-link), the entropy pool seeded from the host, then dropbear,
//! waited for until it listens.

use std::io;

use oomlab_protocol::guest;

use crate::sys;

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCSIFADDR: libc::c_ulong = 0x8916;
const SIOCSIFNETMASK: libc::c_ulong = 0x891c;
/// `_IOW('R', 0x03, int[2])`
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;

/// `struct ifreq`: the name, then a 24-byte union (flags or a sockaddr).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

impl IfReq {
    fn new(ifname: &str) -> IfReq {
        let mut name = [0u8; 16];
        let n = ifname.len().min(15);
        name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
        IfReq {
            name,
            data: [0; 24],
        }
    }

    /// A `sockaddr_in` with `addr` in the union.
    fn with_addr(ifname: &str, addr: [u8; 4]) -> IfReq {
        let mut r = IfReq::new(ifname);
        r.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        r.data[4..8].copy_from_slice(&addr);
        r
    }
}

fn ioctl(fd: i32, req: libc::c_ulong, r: &mut IfReq) -> io::Result<()> {
    // SAFETY: `r` is a valid, writable `struct ifreq`.
    if unsafe { libc::ioctl(fd, req as _, r as *mut IfReq) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_up(fd: i32, ifname: &str) -> io::Result<()> {
    let mut r = IfReq::new(ifname);
    ioctl(fd, SIOCGIFFLAGS, &mut r)?;
    let flags = i16::from_ne_bytes([r.data[0], r.data[1]]) | libc::IFF_UP as i16;
    r.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(fd, SIOCSIFFLAGS, &mut r)
}

/// `lo` up, `eth0` = 10.0.2.15/24 and up. The NIC appears while its
/// driver module loads; it is waited for briefly all the same.
pub fn up() -> io::Result<String> {
    let waited = wait_for("/sys/class/net/eth0", 2000);
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let res = (|| {
        set_up(fd, "lo")?;
        if !waited {
            return Err(io::Error::other(
                "no eth0 in /sys/class/net (is the virtio_net driver there?)",
            ));
        }
        ioctl(
            fd,
            SIOCSIFADDR,
            &mut IfReq::with_addr("eth0", guest::GUEST_IP),
        )?;
        ioctl(
            fd,
            SIOCSIFNETMASK,
            &mut IfReq::with_addr("eth0", guest::GUEST_NETMASK),
        )?;
        set_up(fd, "eth0")
    })();
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    res.map(|()| {
        let [a, b, c, d] = guest::GUEST_IP;
        format!("lo up, eth0 {a}.{b}.{c}.{d}/24 up")
    })
}

/// Polls for `path` every 10 ms, up to `ms`.
pub fn wait_for(path: &str, ms: u64) -> bool {
    let t0 = sys::monotonic();
    loop {
        if std::path::Path::new(path).exists() {
            return true;
        }
        if sys::diff_ms(&sys::monotonic(), &t0) >= ms as f64 {
            return false;
        }
        sys::sleep_ms(10);
    }
}

/// Credits the host's random bytes (the image's seed file, deleted
/// afterwards) to the entropy pool, so the CRNG is ready at once.
pub fn seed_entropy(path: &str) -> io::Result<String> {
    let seed = std::fs::read(path)?;
    let _ = std::fs::remove_file(path);
    if seed.len() < 32 {
        return Err(io::Error::other(format!(
            "{path}: {} bytes, want 32 or more",
            seed.len()
        )));
    }
    #[repr(C)]
    struct PoolInfo {
        entropy_count: i32,
        buf_size: i32,
        buf: [u8; 64],
    }
    let n = seed.len().min(64);
    let mut info = PoolInfo {
        entropy_count: (n * 8) as i32,
        buf_size: n as i32,
        buf: [0; 64],
    };
    info.buf[..n].copy_from_slice(&seed[..n]);
    // SAFETY: literal path.
    let fd = unsafe { libc::open(c"/dev/urandom".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `info` is a valid rand_pool_info with buf_size bytes.
    let rc = unsafe { libc::ioctl(fd, RNDADDENTROPY as _, &info as *const PoolInfo) };
    let err = io::Error::last_os_error();
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err);
    }
    Ok(format!("{} bits credited from the host", n * 8))
}

/// Whether `/proc/net/tcp` or `tcp6` text shows a socket listening on
/// `port` (state `0A`).
pub fn listening(tcp_text: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    tcp_text.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let local = f.nth(1).unwrap_or("");
        let state = f.nth(1).unwrap_or("");
        state == "0A" && local.rsplit(':').next() == Some(want.as_str())
    })
}

/// Waits until something listens on `port` (IPv4 or IPv6), up to `ms`;
/// the milliseconds it took.
pub fn wait_listening(port: u16, ms: u64) -> Option<f64> {
    let t0 = sys::monotonic();
    loop {
        let any = ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|p| {
            std::fs::read_to_string(p)
                .map(|t| listening(&t, port))
                .unwrap_or(false)
        });
        let took = sys::diff_ms(&sys::monotonic(), &t0);
        if any {
            return Some(took);
        }
        if took >= ms as f64 {
            return None;
        }
        sys::sleep_ms(20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_is_the_kernels_size_and_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        let r = IfReq::with_addr("eth0", [10, 0, 2, 15]);
        assert_eq!(&r.name[..5], b"eth0\0");
        assert_eq!(u16::from_ne_bytes([r.data[0], r.data[1]]), 2);
        assert_eq!(&r.data[4..8], &[10, 0, 2, 15]);
    }

    #[test]
    fn finds_a_listening_port() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0\n\
   1: 0F02000A:0016 0202000A:C8F4 01 00000000:00000000 00:00000000 00000000     0        0 0 1\n";
        assert!(listening(tcp, 22));
        assert!(!listening(tcp, 80));
        let established_only = "hdr\n   1: 0F02000A:0050 0202000A:C8F4 01 0:0 0:0 0 0 0 0\n";
        assert!(!listening(established_only, 80));
    }
}
