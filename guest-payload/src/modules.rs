//! Kernel modules from the image, loaded in the order the harness resolved
//! (each module's `depends=` first): Debian's virtio drivers are modules.

use std::ffi::CString;
use std::io;

use crate::sys;
use crate::telemetry;

/// `MODULE_INIT_COMPRESSED_FILE` (5.17+): the kernel decompresses the file.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// The `finit_module` flags for a module file: compressed ones are
/// decompressed by the kernel itself.
pub fn flags_for(path: &str) -> libc::c_uint {
    if path.ends_with(".xz") || path.ends_with(".zst") || path.ends_with(".gz") {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    }
}

/// Loads one module file; a module that is already loaded (or built in
/// under the same name) counts as loaded.
pub fn load(path: &str) -> io::Result<()> {
    let c = CString::new(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an open fd, an empty NUL-terminated parameter string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            fd,
            c"".as_ptr(),
            flags_for(path) as libc::c_long,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    if rc == 0 || err.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Loads every module in order, one `setup` event each (with how long it
/// took); a failure is reported and the next module is still tried. What
/// needed the module (the disk root, the network) reports its own failure.
pub fn load_all(paths: &[String]) -> bool {
    let mut all = true;
    for p in paths {
        let t0 = sys::monotonic();
        let res = load(p);
        let ms = sys::diff_ms(&sys::monotonic(), &t0);
        let name = p.rsplit('/').next().unwrap_or(p);
        let detail = format!("{name} ({ms:.0} ms)");
        match res {
            Ok(()) => telemetry::setup("module", true, &detail),
            Err(e) => {
                telemetry::setup("module", false, &format!("{detail}: {e}"));
                all = false;
            }
        }
    }
    if !paths.is_empty() {
        telemetry::setup("modules", all, &format!("{} loaded", paths.len()));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_modules_ask_the_kernel_to_decompress() {
        assert_eq!(flags_for("/lib/modules/virtio_net.ko"), 0);
        assert_eq!(flags_for("/lib/modules/virtio_net.ko.xz"), 4);
        assert!(load("/nonexistent/x.ko").is_err());
    }
}
