//! A disk root and swap. Stage 1 (the initramfs) mounts the ext4 disk,
//! moves `/dev`, `/proc` and `/sys` onto it, frees the initramfs (ramfs
//! pages can never be reclaimed) and runs `/init` from the disk: from then
//! on every program, the payload included, pages in from the disk and can
//! be evicted, as on a real machine.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;

use oomlab_protocol::guest;

use crate::net::wait_for;
use crate::sys;

const EXT4_SUPER_MAGIC: i64 = 0xEF53;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn check(rc: i32) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `/` is already the disk (ext4): the payload is stage 2.
pub fn on_disk_root() -> bool {
    // SAFETY: zeroed out-struct, literal path.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/".as_ptr(), &mut s) == 0 && s.f_type as i64 == EXT4_SUPER_MAGIC
    }
}

fn mount_move(from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: NUL-terminated paths; MS_MOVE takes no type or data.
    check(unsafe {
        libc::mount(
            f.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    })
}

/// Deletes everything under `dir` that lives on device `dev` (the
/// initramfs), not crossing into other mounts.
fn free_tree(dir: &std::path::Path, dev: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.dev() != dev {
            continue;
        }
        if md.is_dir() {
            free_tree(&p, dev);
            let _ = std::fs::remove_dir(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Mounts the disk and switches root to it, then runs the disk's `/init`.
/// Only returns on failure (stage 1 then goes on on the initramfs and the
/// caller reports the failure).
pub fn switch_root() -> io::Error {
    match try_switch_root() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_switch_root() -> io::Result<std::convert::Infallible> {
    if !wait_for(guest::ROOT_DEV, 3000) {
        return Err(io::Error::other(format!(
            "{} never appeared (is the virtio_blk driver there?)",
            guest::ROOT_DEV
        )));
    }
    std::fs::create_dir_all(guest::NEW_ROOT)?;
    let (dev, target, fs) = (cstr(guest::ROOT_DEV)?, cstr(guest::NEW_ROOT)?, c"ext4");
    // SAFETY: NUL-terminated strings, no data.
    check(unsafe {
        libc::mount(
            dev.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOATIME,
            std::ptr::null(),
        )
    })
    .map_err(|e| io::Error::new(e.kind(), format!("mount {}: {e}", guest::ROOT_DEV)))?;
    for m in ["/dev", "/proc", "/sys"] {
        mount_move(m, &format!("{}{m}", guest::NEW_ROOT))
            .map_err(|e| io::Error::new(e.kind(), format!("move {m}: {e}")))?;
    }
    let old_dev = std::fs::metadata("/")?.dev();
    std::env::set_current_dir(guest::NEW_ROOT)?;
    free_tree(std::path::Path::new("/"), old_dev);
    mount_move(".", "/")?;
    // SAFETY: literal paths.
    check(unsafe { libc::chroot(c".".as_ptr()) })?;
    std::env::set_current_dir("/")?;
    let argv = [c"/init".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: null-terminated arrays of NUL-terminated strings.
    unsafe { libc::execve(c"/init".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(io::Error::other(format!(
        "exec /init on the disk: {}",
        io::Error::last_os_error()
    )))
}

/// `swapon` a device that already holds a swap signature.
pub fn swap_on(dev: &str) -> io::Result<String> {
    wait_for(dev, 3000);
    let c = cstr(dev)?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::swapon(c.as_ptr(), 0) })?;
    Ok(format!("swapon {dev}"))
}

/// zram swap: size the device, write the swap header, `swapon`.
pub fn zram_on(mib: u64) -> io::Result<String> {
    const DEV: &str = "/dev/zram0";
    if !wait_for("/sys/block/zram0", 2000) {
        return Err(io::Error::other(
            "no /sys/block/zram0 (is the zram module there?)",
        ));
    }
    sys::write_file("/sys/block/zram0/disksize", &format!("{mib}M"))?;
    wait_for(DEV, 2000);
    let header = guest::swap_header(mib * 256);
    std::fs::OpenOptions::new()
        .write(true)
        .open(DEV)
        .and_then(|mut f| io::Write::write_all(&mut f, &header))?;
    swap_on(DEV).map(|s| format!("{s} ({mib} MiB zram)"))
}
