//! The per-run initramfs: the payload as `/init`, the few device nodes PID 1
//! needs before it can mount anything, and the scenario as plain text.

use std::io::Write;
use std::path::Path;

use super::cpio::CpioWriter;
use super::elf::GuestFile;
use super::tree::GuestTree;
use super::ImageError;

/// Device nodes created in the archive, so `/init` has a console and both
/// serial ports without devtmpfs: (path, major, minor).
pub const DEVICE_NODES: [(&str, u32, u32); 4] = [
    ("dev/console", 5, 1),
    ("dev/null", 1, 3),
    ("dev/ttyS0", 4, 64),
    ("dev/ttyS1", 4, 65),
];

/// Directories created in the archive (mount points and scratch).
pub const DIRS: [&str; 5] = ["dev", "proc", "sys", "oomlab", "tmp"];

/// Packs the archive into any writer: the fixed folders and device nodes,
/// the `tree` (programs, keys, modules...), the payload as `/init` and the
/// scenario. Pure apart from the writer: tested on a `Vec<u8>`.
pub fn pack<W: Write>(
    out: W,
    payload: &[u8],
    scenario_conf: &str,
    tree: &GuestTree,
) -> Result<W, ImageError> {
    let mut w = CpioWriter::new(out);
    for d in DIRS {
        // /tmp is world-writable with the sticky bit, as everywhere else.
        let perm = if d == "tmp" { 0o1777 } else { 0o755 };
        w.dir(d, perm)?;
    }
    tree.write_cpio(&mut w, &DIRS)?;
    for (name, major, minor) in DEVICE_NODES {
        let perm = if name == "dev/null" { 0o666 } else { 0o600 };
        w.char_dev(name, perm, major, minor)?;
    }
    w.file("init", 0o755, payload)?;
    w.file("oomlab/scenario.conf", 0o644, scenario_conf.as_bytes())?;
    w.finish()
}

/// Writes the initramfs to `out`, atomically: a crash never leaves a
/// half-written image. `files` are packed beside the payload.
pub fn write_initramfs(
    out: &Path,
    payload: &Path,
    scenario_conf: &str,
    files: &[GuestFile],
) -> Result<(), ImageError> {
    let data = std::fs::read(payload)
        .map_err(|e| ImageError::io(format!("read payload {}", payload.display()), e))?;
    let mut tree = GuestTree::new();
    tree.programs(files);
    write_initramfs_tree(out, &data, scenario_conf, &tree)
}

/// Writes the initramfs with the payload's bytes and a whole tree,
/// atomically.
pub fn write_initramfs_tree(
    out: &Path,
    payload: &[u8],
    scenario_conf: &str,
    tree: &GuestTree,
) -> Result<(), ImageError> {
    crate::atomic::write_atomic(out, |w| {
        pack(w, payload, scenario_conf, tree)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
    .map_err(|e| ImageError::io(format!("write {}", out.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn pack_has_every_entry() {
        let bytes = pack(Vec::new(), b"PAYLOAD", "name=t\n", &GuestTree::new()).unwrap();
        for name in ["dev\0", "proc\0", "sys\0", "oomlab\0", "tmp\0", "init\0"] {
            assert!(contains(&bytes, name.as_bytes()), "{name}");
        }
        for (n, _, _) in DEVICE_NODES {
            assert!(contains(&bytes, n.as_bytes()), "{n}");
        }
        assert!(contains(&bytes, b"oomlab/scenario.conf\0"));
        assert!(contains(&bytes, b"PAYLOAD"));
        assert!(contains(&bytes, b"name=t\n"));
        assert!(contains(&bytes, b"TRAILER!!!\0"));
    }

    #[test]
    fn extras_get_their_parent_folders_once() {
        let mut tree = GuestTree::new();
        tree.bytes("/usr/bin/earlyoom", 0o755, b"EO".to_vec());
        tree.bytes("/lib/x86_64-linux-gnu/libc.so.6", 0o755, b"LIBC".to_vec());
        tree.symlink("/bin/sh", "busybox");
        tree.dir("/tmp", 0o700);
        let bytes = pack(Vec::new(), b"P", "", &tree).unwrap();
        for name in [
            "usr\0",
            "usr/bin\0",
            "usr/bin/earlyoom\0",
            "lib/x86_64-linux-gnu\0",
            "bin/sh\0",
        ] {
            assert!(contains(&bytes, name.as_bytes()), "{name}");
        }
        let count = |n: &[u8]| bytes.windows(n.len()).filter(|w| *w == n).count();
        assert!(contains(&bytes, b"busybox"));
        assert_eq!(count(b"usr\0"), 1);
        assert_eq!(count(b"tmp\0"), 1, "the archive's own /tmp is not repeated");
    }

    #[test]
    fn write_is_atomic_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload");
        std::fs::write(&payload, b"\x7fELF").unwrap();
        let out = dir.path().join("initramfs.cpio");
        write_initramfs(&out, &payload, "duration_ms=1\n", &[]).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            bytes,
            pack(Vec::new(), b"\x7fELF", "duration_ms=1\n", &GuestTree::new()).unwrap()
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn missing_payload_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_initramfs(&dir.path().join("out"), &dir.path().join("nope"), "", &[])
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
