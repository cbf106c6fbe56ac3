//! Where a run writes: its private scratch dir (removed on every way out,
//! swept after a SIGKILL), and its output folder (claimed fresh, locked for
//! the run, an earlier run's derived files removed first).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{io, ExperimentError};

const SCRATCH_PREFIX: &str = "oomlab-run-";

/// A per-run temp dir named after this process, so a later run can tell
/// the leftovers of a harness that was SIGKILLed (the one exit path that
/// runs no destructor) from those of a harness still running.
pub(crate) fn scratch_dir() -> Result<tempfile::TempDir, ExperimentError> {
    sweep_stale_scratch(&std::env::temp_dir());
    tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(io("create the run's temp dir"))
}

/// Remove `oomlab-run-<pid>-*` dirs whose process is gone.
pub fn sweep_stale_scratch(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The lock file of an output folder; it holds the pid of the run that
/// holds (or last held) the lock, and stays in the folder.
pub const OUT_DIR_LOCK: &str = ".oomlab.lock";

/// One run's claim on its output folder: an exclusive `flock` on
/// [`OUT_DIR_LOCK`], held while this value lives. The kernel drops it when
/// the process ends, however it ends, so a crashed run never leaves the
/// folder locked.
#[derive(Debug)]
pub struct OutDirLock {
    _file: std::fs::File,
}

impl OutDirLock {
    /// Claim `dir` (which must exist), or say which run holds it.
    pub fn acquire(dir: &Path) -> Result<OutDirLock, ExperimentError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        let path = dir.join(OUT_DIR_LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        // SAFETY: flock on a descriptor this function owns; no memory is
        // shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = (&file).take(32).read_to_string(&mut text);
                return Err(ExperimentError::OutDirBusy {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            return Err(ExperimentError::Io {
                what: format!("lock {}", path.display()),
                source: err,
            });
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io(format!("write {}", path.display())))?;
        Ok(OutDirLock { _file: file })
    }
}

/// The files a run derives at its end. A run removes those of an earlier
/// run in its folder first (the raw logs it truncates itself), so a folder
/// never mixes two runs' files.
pub(super) const DERIVED_FILES: [&str; 2] = ["report.json", "timeline.jsonl"];

/// Create a folder that did not exist: `base`, or `base-2`, `base-3`...,
/// claimed with an atomic `mkdir`, so two runs started at once never share.
pub fn claim_fresh_dir(base: &Path) -> std::io::Result<PathBuf> {
    if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for i in 1u32..10_000 {
        let candidate = if i == 1 {
            base.to_path_buf()
        } else {
            base.with_file_name(format!("{name}-{i}"))
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free folder name after {} and 9999 others",
        base.display()
    )))
}

/// `base`, or `base-2`, `base-3`... whichever does not exist yet. Only a
/// name: the run's [`OutDirLock`] is what keeps two runs apart.
pub fn fresh_dir(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (2u32..)
        .map(|i| base.with_file_name(format!("{name}-{i}")))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

pub(super) fn default_out_dir(name: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("oomlab-runs").join(format!("{name}-{secs}"))
}
